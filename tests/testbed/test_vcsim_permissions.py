"""vcsim's -enforce-permissions (testbed/vcsim/permissions.go): an account given a role gets only what it grants.

The autoscaler account has the role ray-vsphere-autoscaler where the testbed's
clusters go (the `ray` folder, the pool, the datastore, the network: what
vcenter_prepare.yml grants) and ReadOnly on the datacenter. Inside, it may do
what a head's autoscaler does; outside, and an import anywhere, vcsim refuses
with NoPermission as vCenter does. The end-to-end `ray up` test runs with the
same enforcement, which shows the role is enough.
"""

import pytest
from pyVmomi import vim

from testbed import simulator, vsphere
from testbed.ova_import import import_ova


@pytest.fixture(scope="module")
def enforcing_vcsim(testbed_prerequisites):
    with simulator.Vcsim(enforce_permissions=True) as sim:
        yield sim


def as_autoscaler(sim):
    endpoint = sim.endpoint
    return vsphere.connect(endpoint.host, endpoint.port, sim.autoscaler_username, sim.autoscaler_password,
                           endpoint.ca_path)


def refused(call, privilege, entity):
    with pytest.raises(vim.fault.NoPermission) as raised:
        call()
    assert (raised.value.privilegeId, raised.value.object._moId) == (privilege, entity._moId)


def test_the_autoscaler_role_acts_inside_the_clusters_folder_only_and_never_imports(enforcing_vcsim, test_ova):
    admin = enforcing_vcsim.endpoint.connect()
    head = as_autoscaler(enforcing_vcsim)
    try:
        placement = simulator.default_placement(admin)
        inside = import_ova(admin, test_ova, "perm-inside", **placement)
        datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
        outside = import_ova(admin, test_ova, "perm-outside", **dict(placement, folder=datacenter.vmFolder))
        inside_as_head, outside_as_head = (vim.VirtualMachine(vm._moId, head._stub) for vm in (inside, outside))
        fields = {field.name: field.key for field in admin.content.customFieldsManager.field}

        # Inside: power, tag, clone into the folder, delete.
        vsphere.wait_for_task(head, inside_as_head.PowerOnVM_Task())
        head.content.customFieldsManager.SetField(entity=inside_as_head, key=fields["ray-node-status"], value="up-to-date")
        folder_as_head = vim.Folder(placement["folder"]._moId, head._stub)
        pool_as_head = vim.ResourcePool(placement["resource_pool"]._moId, head._stub)
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool_as_head), powerOn=False, template=False)
        clone = vsphere.wait_for_task(head, inside_as_head.CloneVM_Task(folder=folder_as_head, name="perm-clone", spec=spec))
        vsphere.wait_for_task(head, vim.VirtualMachine(clone._moId, head._stub).Destroy_Task())

        # Outside the folder: refused, naming the privilege and the object, as vCenter does.
        refused(lambda: outside_as_head.PowerOnVM_Task(), "VirtualMachine.Interact.PowerOn", outside)
        refused(lambda: head.content.customFieldsManager.SetField(entity=outside_as_head, key=fields["ray-node-status"],
                                                                  value="up-to-date"),
                "Global.SetCustomField", outside)
        refused(lambda: outside_as_head.Destroy_Task(), "VirtualMachine.Inventory.Delete", outside)
        root_folder_as_head = vim.Folder(datacenter.vmFolder._moId, head._stub)
        refused(lambda: inside_as_head.CloneVM_Task(folder=root_folder_as_head, name="perm-escape", spec=spec),
                "VirtualMachine.Inventory.CreateFromExisting", datacenter.vmFolder)
        other_pool = vsphere.find_by_name(admin, vim.ResourcePool, "DC0_C1_RP1")
        escape = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=vim.ResourcePool(other_pool._moId, head._stub)),
                                  powerOn=False, template=False)
        refused(lambda: inside_as_head.CloneVM_Task(folder=folder_as_head, name="perm-escape", spec=escape),
                "Resource.AssignVMToPool", other_pool)
        # No import, even into its own folder: the head clones the template `ray up` made.
        refused(lambda: pool_as_head.ImportVApp(spec=vim.ImportSpec(), folder=folder_as_head),
                "VApp.Import", placement["resource_pool"])

        # The administrator, given no role anywhere, is not checked.
        vsphere.wait_for_task(admin, outside.PowerOnVM_Task())
        assert [props["name"] for props in vsphere.objects_of_type(admin, vim.VirtualMachine, ["name"]).values()
                if props["name"] == "perm-escape"] == []
    finally:
        vsphere.disconnect(head)
        vsphere.disconnect(admin)
