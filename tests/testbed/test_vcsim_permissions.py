"""vcsim's -enforce-permissions (testbed/vcsim/permissions.go, read_filter.go): an account given a role gets only what it grants.

The autoscaler account has what vcenter_prepare.yml grants (meta/vcenter_requirements.yml's
autoscaler_grants): the role ray-vsphere-autoscaler on the testbed's `ray` folder, a narrow role
each on the pool, the datastore and the network, ReadOnly on the datacenter and the cluster.
Inside the folder it may do what a head's autoscaler does; outside, and an import anywhere,
vcsim refuses with NoPermission as vCenter does. A VM inherits along its folder chain and its
resource pool chain; what the account may not read is left out of its views and reads.
The end-to-end `ray up` test runs with the same enforcement, which shows the grants are enough.
"""

import pytest
from pyVmomi import vim, vmodl

from ray_provider import head_scope
from testbed import privileges, simulator, vsphere
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


def autoscaler_grant(admin, entity, role_name, propagate):
    manager = admin.content.authorizationManager
    role_id = next(role.roleId for role in manager.roleList if role.name == role_name)
    manager.SetEntityPermissions(entity, [vim.AuthorizationManager.Permission(
        entity=entity, principal=simulator.AUTOSCALER_PRINCIPAL, group=False, roleId=role_id, propagate=propagate)])


def held_on(head, entity, privilege):
    content = head.content
    [answer] = content.authorizationManager.HasPrivilegeOnEntities(
        entity=[entity], sessionId=content.sessionManager.currentSession.key, privId=[privilege])
    return answer.privAvailability[0].isGranted


def test_a_vm_inherits_from_its_resource_pool_as_from_its_folder(enforcing_vcsim, test_ova):
    """vSphere Security, "Hierarchical Inheritance of Permissions": both chains, their union."""
    admin = enforcing_vcsim.endpoint.connect()
    head = as_autoscaler(enforcing_vcsim)
    placement = simulator.default_placement(admin)
    pool = placement["resource_pool"]
    datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
    # In the cluster's pool, but not in its folder: the narrow, non-propagating pool grant reaches it not.
    other_team = import_ova(admin, test_ova, "perm-other-team", **dict(placement, folder=datacenter.vmFolder))
    other_team_as_head = vim.VirtualMachine(other_team._moId, head._stub)
    pool_as_head = vim.ResourcePool(pool._moId, head._stub)
    try:
        refused(lambda: other_team_as_head.PowerOnVM_Task(), "VirtualMachine.Interact.PowerOn", other_team)
        assert not held_on(head, pool_as_head, "VirtualMachine.Interact.PowerOn")
        assert held_on(head, pool_as_head, "Resource.AssignVMToPool")
        assert held_on(head, vim.Folder(placement["folder"]._moId, head._stub), "VirtualMachine.Interact.PowerOn")

        # The grant vcenter_prepare.yml made before: the autoscaler role, propagating, on the pool. It reaches
        # the other team's VM through its pool, though its folder gives the account nothing.
        autoscaler_grant(admin, pool, privileges.role_name(privileges.AUTOSCALER), True)
        assert held_on(head, pool_as_head, "VirtualMachine.Interact.PowerOn")
        vsphere.wait_for_task(head, other_team_as_head.PowerOnVM_Task())
    finally:
        autoscaler_grant(admin, pool, privileges.load()["placement_roles"]["pool"]["name"], False)
        vsphere.disconnect(head)
        vsphere.disconnect(admin)


def test_views_and_property_reads_leave_out_what_the_account_cannot_read(enforcing_vcsim, test_ova):
    admin = enforcing_vcsim.endpoint.connect()
    head = as_autoscaler(enforcing_vcsim)
    try:
        placement = simulator.default_placement(admin)
        datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
        inside = import_ova(admin, test_ova, "perm-read-inside", **placement)
        outside = import_ova(admin, test_ova, "perm-read-outside", **dict(placement, folder=datacenter.vmFolder))
        everything = vsphere.objects_of_type(admin, vim.VirtualMachine, ["name"])
        in_folder = {vm._moId for vm in admin.content.viewManager.CreateContainerView(
            placement["folder"], [vim.VirtualMachine], True).view}
        assert outside._moId in {vm._moId for vm in everything} and len(everything) > len(in_folder)

        # A container view over all of vCenter lists the VMs of the account's folder, and no other.
        view = head.content.viewManager.CreateContainerView(head.content.rootFolder, [vim.VirtualMachine], True)
        assert {vm._moId for vm in view.view} == in_folder
        assert {vm._moId for vm in vsphere.objects_of_type(head, vim.VirtualMachine, ["name"])} == in_folder
        assert inside._moId in in_folder

        # RetrievePropertiesEx on objects named one by one: what it may not read is left out.
        collector = vmodl.query.PropertyCollector
        spec = collector.FilterSpec(
            objectSet=[collector.ObjectSpec(obj=vim.VirtualMachine(vm._moId, head._stub)) for vm in (inside, outside)],
            propSet=[collector.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
        result = head.content.propertyCollector.RetrievePropertiesEx([spec], collector.RetrieveOptions())
        assert [content.obj._moId for content in result.objects] == [inside._moId]
        # A collector of its own waiting for updates on such a view: the same VMs, and no other.
        own = head.content.propertyCollector.CreatePropertyCollector()
        try:
            own.CreateFilter(collector.FilterSpec(
                objectSet=[collector.ObjectSpec(obj=view, skip=True, selectSet=[collector.TraversalSpec(
                    name="view", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[collector.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])]), True)
            updates = own.WaitForUpdatesEx("", collector.WaitOptions(maxWaitSeconds=0))
            assert {update.obj._moId for filter_update in updates.filterSet
                    for update in filter_update.objectSet} == in_folder
        finally:
            own.DestroyPropertyCollector()
        # Nor the other cluster, nor a datastore or network it was given nothing on.
        other_cluster = vsphere.find_by_name(admin, vim.ClusterComputeResource, simulator.CLUSTERS[1])
        assert {obj._moId for obj in vsphere.objects_of_type(head, vim.ClusterComputeResource, ["name"])} == {
            vsphere.find_by_name(admin, vim.ClusterComputeResource, simulator.CLUSTERS[0])._moId}
        assert other_cluster._moId not in {obj._moId for obj in vsphere.objects_of_type(head, vim.ManagedEntity, ["name"])}
        assert [props["name"] for props in vsphere.objects_of_type(head, vim.Datastore, ["name"]).values()] == [
            simulator.DATASTORES[0]]
    finally:
        vsphere.disconnect(head)
        vsphere.disconnect(admin)


def test_ray_up_refuses_a_head_account_with_vm_privileges_on_its_pool(enforcing_vcsim):
    """head_config's login check of the head account (bootstrap_config) asks vCenter with HasPrivilegeOnEntities."""
    admin = enforcing_vcsim.endpoint.connect()
    head = as_autoscaler(enforcing_vcsim)
    node_types = [dict(node_type="worker", datacenter=simulator.DATACENTER, cluster=simulator.CLUSTERS[0],
                       resource_pool=simulator.RESOURCE_POOL, vm_folder=simulator.VM_FOLDER,
                       datastore=simulator.DATASTORES[0], network=simulator.NETWORK)]
    pool = simulator.default_placement(admin)["resource_pool"]
    try:
        assert head_scope.pool_privilege_problems(head, simulator.AUTOSCALER_USERNAME, node_types) == []
        # Granted on the cluster, propagating: it reaches the pool, and every VM in it, through the pool chain.
        cluster = vsphere.find_by_name(admin, vim.ClusterComputeResource, simulator.CLUSTERS[0])
        # (without the pool's own permission, which would override what propagates from above it)
        admin.content.authorizationManager.RemoveEntityPermission(pool, simulator.AUTOSCALER_PRINCIPAL, False)
        autoscaler_grant(admin, cluster, privileges.role_name(privileges.AUTOSCALER), True)
        [problem] = head_scope.pool_privilege_problems(head, simulator.AUTOSCALER_USERNAME, node_types)
        assert problem.startswith(f"the head's account '{simulator.AUTOSCALER_USERNAME}' holds ")
        assert "VirtualMachine.Interact.PowerOn" in problem and f"on resource pool {simulator.RESOURCE_POOL}" in problem
        assert "Resource.AssignVMToPool" not in problem.split(" on resource pool")[0]
    finally:
        autoscaler_grant(admin, vsphere.find_by_name(admin, vim.ClusterComputeResource, simulator.CLUSTERS[0]),
                         "ReadOnly", False)
        autoscaler_grant(admin, pool, privileges.load()["placement_roles"]["pool"]["name"], False)
        vsphere.disconnect(head)
        vsphere.disconnect(admin)
