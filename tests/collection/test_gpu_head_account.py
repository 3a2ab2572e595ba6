"""A GPU node deployed by a Ray head's own account, with vcsim enforcing VMware's privileges (as
test_head_account_deploys.py does for a plain node): the host reads (its read-only grant on each host of the
cluster), the hardware upgrade, the devices and the locked reservation (its role) are all it needs."""

import hashlib

import pytest
from conftest import deploy_task
from pyVmomi import vim

from testbed import simulator, vsphere
from testbed.gpus import API_VERSION, gpu_layout



@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    with simulator.Vcsim(enforce_permissions=True, api_version=API_VERSION) as sim:
        yield sim


def test_the_heads_account_deploys_a_gpu_node_with_only_its_grants(vcsim, play, test_ova):
    gpu = next(gpu for gpus in gpu_layout()["hosts"].values() for gpu in gpus if gpu["mode"] == "passthrough")
    sha256 = hashlib.sha256(test_ova.read_bytes()).hexdigest()
    # `ray up`, as the operator: the template (the head's account may not import).
    made = play([deploy_task("gpuh", test_ova, names=["gpuh-operator-0"], ovf_sha256=sha256, power_on=False)]).result
    assert made.get("failed") is not True, made
    as_head = dict(vcsim.endpoint.environment(), VMWARE_USER=vcsim.endpoint.head_username,
                   VMWARE_PASSWORD=vcsim.endpoint.head_password)
    deployed = play([deploy_task("gpuh", test_ova, names=["gpuh-head-0"], ovf_sha256=sha256, gpus=[
        dict(model=gpu["model"], vendor_id=gpu["vendor_id"], device_id=gpu["device_id"])])], env=as_head).result
    assert deployed.get("failed") is not True, deployed["msg"]
    admin = vcsim.endpoint.connect()
    try:
        holders = {props["name"]: [binding.vm._moId for binding in props.get("config.assignableHardwareBinding") or []]
                   for props in vsphere.objects_of_type(admin, vim.HostSystem, [
                       "name", "config.assignableHardwareBinding"]).values()}
        vm = vsphere.find_by_name(admin, vim.VirtualMachine, "gpuh-head-0")
        assert holders[deployed["gpu_hosts"]["gpuh-head-0"]] == [vm._moId]
    finally:
        vsphere.disconnect(admin)
