"""A GPU node of an ip_pool made again on another host at power-on (its device was taken): while it was gone its address
was free, and another caller took it; the node made again loses it to that older VM and takes the next one.

On vcsim's fake GPU hosts (testbed/gpu_hosts.yml), as tests/collection/test_gpu_deploy.py. Oracles read at vcsim.
"""

import pytest
from conftest import deploy_task, in_process_client, module_params, task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _build, _gpu_placement, _ledger
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from testbed import simulator, vsphere
from testbed.gpus import API_VERSION, gpu_layout
from testbed.ova_import import import_ova

POOL = dict(cidr="198.18.5.0/24", range="198.18.5.200-198.18.5.210", gateway="198.18.5.1")
A100 = next(gpu for gpus in gpu_layout()["hosts"].values() for gpu in gpus if gpu["mode"] == "passthrough")
PASSTHROUGH = [dict(model=A100["model"], vendor_id=A100["vendor_id"], device_id=A100["device_id"])]


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    with simulator.Vcsim(api_version=API_VERSION) as sim:
        yield sim


def recorded_addresses(service_instance):
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name", "config.extraConfig"])
    return {props["name"]: extra["ray-vsphere.ip-address"] for props in found.values()
            for extra in [{option.key: option.value for option in props.get("config.extraConfig") or []}]
            if "ray-vsphere.ip-address" in extra}


def test_a_gpu_node_made_again_on_another_host_checks_its_address_again(
        vcsim, play, test_ova, cluster_key_file, service_instance, monkeypatch):
    # The other caller's GPU VM, powered off: it holds no device yet.
    other = play([deploy_task("gpu-other", test_ova, names=["gpu-other-0"], gpus=PASSTHROUGH, power_on=False,
                              clone_from_template=True)]).result
    assert other.get("failed") is not True, other.get("msg")
    other_vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, "gpu-other-0")
    assign = _gpu_placement.GpuPlan.assign

    def assign_then_the_other_caller_powers_on(plan, names):
        assign(plan, names)
        vsphere.wait_for_task(service_instance, other_vm.PowerOnVM_Task())  # takes the device planned for ours

    remove = _ledger.Ledger.remove
    taker = []

    def remove_then_another_caller_takes_the_freed_address(ledger, name):
        remove(ledger, name)
        if not taker:  # made while ours is gone: older than the node made again
            taker.append(import_ova(service_instance, test_ova, "pool-taker", **simulator.default_placement(
                service_instance), extra_config={"ray-vsphere.ip-address": "198.18.5.200"}))

    monkeypatch.setattr(_gpu_placement.GpuPlan, "assign", assign_then_the_other_caller_powers_on)
    monkeypatch.setattr(_ledger.Ledger, "remove", remove_then_another_caller_takes_the_freed_address)
    params = module_params(vcsim, cluster_key_file, cluster_name="gpu-x", ovf=str(test_ova), names=["gpu-x-0"],
                           ip_pool=dict(POOL, dns_servers=[], search_domains=[]),
                           gpus=[dict(entry, label=None, count=1, memory_gb=None) for entry in PASSTHROUGH])
    with in_process_client(vcsim) as client:
        _build.deploy(client, params, False, ClusterKey.from_file(str(cluster_key_file), "gpu-x"))
    assert taker, "the node was made again on another host"
    assert recorded_addresses(service_instance) == {"pool-taker": "198.18.5.200", "gpu-x-0": "198.18.5.201"}
    states = {props["name"]: props["runtime.powerState"] for props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name", "runtime.powerState"]).values()}
    assert states["gpu-x-0"] == "poweredOn"
    vsphere.wait_for_task(service_instance, taker[0].Destroy_Task())
    for cluster in ("gpu-x", "gpu-other"):
        play([task("node_delete", cluster_name=cluster, all_nodes=True)])
