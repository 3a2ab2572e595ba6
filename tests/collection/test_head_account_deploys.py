"""node_deploy as a Ray head's own account, with vcsim enforcing its grants and filtering its reads as vCenter does.

vcsim's -enforce-permissions (testbed/vcsim/permissions.go, read_filter.go)
checks the account's privileges along both of a VM's chains and leaves out
of views and property reads what it may not read. The account has what
vcenter_prepare.yml grants it (meta/vcenter_requirements.yml's
autoscaler_grants): the autoscaler role on the cluster's folder, a narrow
role each on the pool, the datastore and the network, read-only on the
datacenter and the cluster. Nothing on the distributed switch.
"""

import hashlib

import pytest
from conftest import deploy_task
from pyVmomi import vim

from testbed import privileges, simulator, vsphere




@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    with simulator.Vcsim(enforce_permissions=True) as sim:
        yield sim


def as_head(endpoint):
    return dict(endpoint.environment(), VMWARE_USER=endpoint.head_username, VMWARE_PASSWORD=endpoint.head_password)


def test_the_heads_account_deploys_onto_a_distributed_port_group_with_only_its_grants(vcsim, play, test_ova):
    admin = vcsim.endpoint.connect()
    try:
        port_group = vsphere.find_by_name(admin, vim.dvs.DistributedVirtualPortgroup, simulator.PORT_GROUP)
        switch = port_group.config.distributedVirtualSwitch
        manager = admin.content.authorizationManager
        network_role = privileges.load()["placement_roles"]["network"]["name"]
        # As vcenter_prepare.yml grants it with vcenter_prepare_network_type=DistributedVirtualPortgroup.
        manager.SetEntityPermissions(port_group, [vim.AuthorizationManager.Permission(
            entity=port_group, principal=simulator.AUTOSCALER_PRINCIPAL, group=False, propagate=False,
            roleId=next(role.roleId for role in manager.roleList if role.name == network_role))])
        sha256 = hashlib.sha256(test_ova.read_bytes()).hexdigest()
        # `ray up`, as the operator: the template (the head's account may not import).
        made = play([deploy_task("dvpg", test_ova, names=["dvpg-operator-0"], network=simulator.PORT_GROUP,
                                 ovf_sha256=sha256, power_on=False)]).result
        assert made.get("failed") is not True, made

        deployed = play([deploy_task("dvpg", test_ova, names=["dvpg-head-0"], network=simulator.PORT_GROUP,
                                     ovf_sha256=sha256)], env=as_head(vcsim.endpoint)).result
        assert deployed.get("failed") is not True, deployed["msg"]
        vm = vsphere.find_by_name(admin, vim.VirtualMachine, "dvpg-head-0")
        nics = [device for device in vm.config.hardware.device if isinstance(device, vim.vm.device.VirtualEthernetCard)]
        assert nics and [(nic.backing.port.switchUuid, nic.backing.port.portgroupKey) for nic in nics] == [
            (switch.uuid, port_group.key)] * len(nics)
        assert vsphere.objects_of_type(admin, vim.VirtualMachine, ["runtime.powerState"])[vm] == {
            "runtime.powerState": "poweredOn"}
    finally:
        vsphere.disconnect(admin)
