"""node_deploy as a Ray head's own account, with vcsim enforcing its grants and filtering its reads as vCenter does.

vcsim's -enforce-permissions (testbed/vcsim/permissions.go, read_filter.go)
checks the account's privileges along both of a VM's chains and leaves out
of views and property reads what it may not read. The account has what
vcenter_prepare.yml grants it (meta/vcenter_requirements.yml's
autoscaler_grants): the autoscaler role on the cluster's folder, a narrow
role each on the pool, the datastore and the network, read-only on the
datacenter and the cluster. Nothing on the distributed switch.
"""

import base64
import hashlib
import json

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


# An ip_pool deploy as the head's account: the read of the folder's address records, the clone's create
# spec and the reconfigure that writes the network config (guestinfo.metadata, the network-config vApp
# property) need nothing beyond what vcenter_prepare.yml grants.
POOL = dict(cidr="198.18.5.0/24", range="198.18.5.200-198.18.5.254", gateway="198.18.5.1")


def test_the_heads_account_takes_the_next_free_address_and_writes_the_network_config(vcsim, play, test_ova):
    # `ray up`, as the operator: the template (the head's account may not import) and the first node.
    # Given the image's hash, the head's deploy finds the template without reading the image (no import check).
    sha256 = hashlib.sha256(test_ova.read_bytes()).hexdigest()
    made = play([deploy_task("pooled", test_ova, names=["pooled-head"], ip_pool=POOL, ovf_sha256=sha256)]).result
    assert made.get("failed") is not True, made.get("msg")
    deployed = play([deploy_task("pooled", test_ova, names=["pooled-worker-0"], ip_pool=POOL, ovf_sha256=sha256)],
                    env=as_head(vcsim.endpoint)).result
    assert deployed.get("failed") is not True, deployed.get("msg")
    admin = vcsim.endpoint.connect()
    try:
        found = vsphere.objects_of_type(admin, vim.VirtualMachine, ["name", "config.extraConfig",
                                                                    "config.hardware.device", "config.vAppConfig.property"])
        vms = {props["name"]: props for props in found.values()}
    finally:
        vsphere.disconnect(admin)
    for name, address in (("pooled-head", "198.18.5.200"), ("pooled-worker-0", "198.18.5.201")):
        extra = {option.key: option.value for option in vms[name]["config.extraConfig"]}
        assert extra["ray-vsphere.ip-address"] == address
        (nic,) = [device for device in vms[name]["config.hardware.device"]
                  if isinstance(device, vim.vm.device.VirtualEthernetCard)]
        network = json.loads(base64.b64decode(extra["guestinfo.metadata"]))["network"]
        assert network["ethernets"]["id0"]["match"]["macaddress"] == nic.macAddress.lower()
        assert network["ethernets"]["id0"]["addresses"] == [address + "/24"]
        (ovf,) = [prop.value for prop in vms[name]["config.vAppConfig.property"] if prop.id == "network-config"]
        assert json.loads(base64.b64decode(ovf)) == {"network": network}
