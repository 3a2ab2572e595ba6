"""GPU nodes on vcsim's fake GPU hosts (testbed/gpu_hosts.yml): placed where a device is free, all or nothing.

vcsim binds a passthrough device or a vGPU at power-on and refuses a power-on with
none left on the VM's host, as vCenter does (testbed/vcsim/gpu_admission.go). Every
oracle here is read at vcsim: which VM each host's config.assignableHardwareBinding
and config.graphicsInfo name, which VMs exist; never what node_deploy reports.
"""

import pytest
from conftest import deploy_task, in_process_client, module_params, task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _build, _gpu_placement
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from testbed import simulator, vsphere
from testbed.gpus import API_VERSION, gpu_layout

LAYOUT = gpu_layout()


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    with simulator.Vcsim(api_version=API_VERSION) as sim:
        yield sim


def gpus_of(mode):
    """{host name: [gpu]} of the layout's GPUs in mode (passthrough or vgpu)."""
    found = {}
    for host, gpus in LAYOUT["hosts"].items():
        found.update({host: [gpu for gpu in gpus if gpu["mode"] == mode]} if any(g["mode"] == mode for g in gpus) else {})
    return found


PASSTHROUGH_HOSTS = gpus_of("passthrough")
(VGPU_HOST,) = gpus_of("vgpu")
A100 = next(gpu for gpus in PASSTHROUGH_HOSTS.values() for gpu in gpus)
PASSTHROUGH = [dict(model=A100["model"], vendor_id=A100["vendor_id"], device_id=A100["device_id"])]


def read_hosts(service_instance):
    """{host name: props} of the GPU cluster's hosts, read afresh at vcsim."""
    return {props["name"]: props for props in vsphere.objects_of_type(service_instance, vim.HostSystem, [
        "name", "config.assignableHardwareBinding", "config.graphicsInfo"]).values()}


def vm_names(service_instance, moids=None):
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"])
    return sorted(props["name"] for vm, props in found.items() if moids is None or vm._moId in moids)


def holders(service_instance):
    """{host name: sorted names of the VMs holding its passthrough devices or its vGPUs}, at vcsim."""
    held = {}
    for name, props in read_hosts(service_instance).items():
        moids = {binding.vm._moId for binding in props.get("config.assignableHardwareBinding") or []}
        moids |= {vm._moId for info in props.get("config.graphicsInfo") or [] for vm in info.vm or []}
        if moids:
            held[name] = vm_names(service_instance, moids)
    return held


def gpu_deploy(cluster, ova, **options):
    return deploy_task(cluster, ova, clone_from_template=True, **options)


def test_passthrough_nodes_fill_the_hosts_then_fail_cleanly_and_a_deleted_node_frees_its_device(
        play, test_ova, service_instance):
    first = play([gpu_deploy("gpu-a", test_ova, node_type="a100", request_id="r1", count=2, gpus=PASSTHROUGH)]).result
    assert first.get("failed") is not True, first.get("msg")
    names = sorted(first["created"])
    # One device per host: the two nodes of one call on two different hosts, each holding that host's device.
    held = holders(service_instance)
    assert sorted(held) == sorted(PASSTHROUGH_HOSTS) and sorted(sum(held.values(), [])) == names
    assert first["gpu_hosts"] == {name: host for host, vms in held.items() for name in vms}
    # What power-on admission asks of a passthrough VM, and the template every node type clones stays GPU-free.
    configs = {props["name"]: props for props in vsphere.objects_of_type(service_instance, vim.VirtualMachine, [
        "name", "config.version", "config.template", "config.memoryReservationLockedToMax", "config.hardware.device",
        "config.extraConfig"]).values()}
    for name in names:
        config = configs[name]
        assert config["config.version"] == "vmx-17" and config["config.memoryReservationLockedToMax"] is True
        extra = {option.key: option.value for option in config["config.extraConfig"]}
        assert extra["pciPassthru.use64bitMMIO"] == "TRUE" and extra["pciPassthru.64bitMMIOSizeGB"] == "128"
        (device,) = [d for d in config["config.hardware.device"] if isinstance(d, vim.vm.device.VirtualPCIPassthrough)]
        assert [(a.vendorId, a.deviceId) for a in device.backing.allowedDevice] == [(A100["vendor_id"], A100["device_id"])]
    templates = [config for config in configs.values() if config.get("config.template")]
    assert templates and not [d for config in templates for d in config["config.hardware.device"]
                              if isinstance(d, vim.vm.device.VirtualPCIPassthrough)]

    before = vm_names(service_instance)
    full = play([gpu_deploy("gpu-a", test_ova, node_type="a100", request_id="r2", gpus=PASSTHROUGH)]).result
    assert full.get("failed") is True and full["failure"] == FAILURE_GPU_CAPACITY
    assert "free A100" in full["msg"] and full["gpu_model"] == "A100"
    assert vm_names(service_instance) == before  # nothing left behind, nothing made

    freed_host = next(host for host, vms in held.items() if vms == [names[0]])
    deleted = play([task("node_delete", cluster_name="gpu-a", names=[names[0]])]).result
    assert deleted.get("failed") is not True, deleted.get("msg")
    assert freed_host not in holders(service_instance)
    again = play([gpu_deploy("gpu-a", test_ova, node_type="a100", request_id="r3", gpus=PASSTHROUGH)]).result
    assert again.get("failed") is not True, again.get("msg")
    assert holders(service_instance)[freed_host] == again["created"]
    play([task("node_delete", cluster_name="gpu-a", all_nodes=True)])
    assert holders(service_instance) == {}


def test_vgpu_nodes_share_the_vgpu_host_as_far_as_the_profile_fits(play, test_ova, service_instance):
    profile = "grid_a100-20c"
    two = play([gpu_deploy("gpu-v", test_ova, node_type="vgpu", request_id="v1", count=2, vgpu_profile=profile)]).result
    assert two.get("failed") is not True, two.get("msg")
    assert holders(service_instance) == {VGPU_HOST: sorted(two["created"])}
    before = vm_names(service_instance)
    third = play([gpu_deploy("gpu-v", test_ova, node_type="vgpu", request_id="v2", vgpu_profile=profile)]).result
    assert third.get("failed") is True and third["failure"] == FAILURE_GPU_CAPACITY and "A100" in third["msg"]
    assert vm_names(service_instance) == before
    play([task("node_delete", cluster_name="gpu-v", all_nodes=True)])
    assert holders(service_instance) == {}


def test_check_mode_plans_the_hosts_and_makes_nothing(play, test_ova, service_instance):
    before = vm_names(service_instance)
    planned = play([gpu_deploy("gpu-c", test_ova, request_id="c1", count=2, gpus=PASSTHROUGH)], check=True).result
    assert planned.get("failed") is not True, planned.get("msg")
    assert sorted(planned["gpu_hosts"].values()) == sorted(PASSTHROUGH_HOSTS)
    assert vm_names(service_instance) == before



def test_a_device_another_caller_takes_after_the_placement_read_moves_the_node_to_the_next_host(
        vcsim, play, test_ova, cluster_key_file, service_instance, monkeypatch):
    # The other caller's VM, with a passthrough GPU planned on the first host, powered off: it holds nothing yet.
    other = play([gpu_deploy("gpu-other", test_ova, names=["gpu-other-0"], gpus=PASSTHROUGH, power_on=False)]).result
    assert other.get("failed") is not True, other.get("msg")
    (taken_host,) = other["gpu_hosts"].values()
    other_vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, "gpu-other-0")
    assign = _gpu_placement.GpuPlan.assign

    def assign_then_the_other_caller_powers_on(plan, names):
        assign(plan, names)
        assert plan.report()["gpu-x-0"] == taken_host  # this call counted on the device the other takes now
        vsphere.wait_for_task(service_instance, other_vm.PowerOnVM_Task())

    monkeypatch.setattr(_gpu_placement.GpuPlan, "assign", assign_then_the_other_caller_powers_on)
    params = module_params(vcsim, cluster_key_file, cluster_name="gpu-x", ovf=str(test_ova), names=["gpu-x-0"],
                           gpus=[dict(entry, label=None, count=1, memory_gb=None) for entry in PASSTHROUGH])
    with in_process_client(vcsim) as client:
        result = _build.deploy(client, params, False, ClusterKey.from_file(str(cluster_key_file), "gpu-x"))
    (next_host,) = set(PASSTHROUGH_HOSTS) - {taken_host}
    assert result["gpu_hosts"] == {"gpu-x-0": next_host}
    assert holders(service_instance) == {taken_host: ["gpu-other-0"], next_host: ["gpu-x-0"]}
    assert vm_names(service_instance).count("gpu-x-0") == 1  # the first try, on the taken host, is gone
    for cluster in ("gpu-x", "gpu-other"):
        play([task("node_delete", cluster_name=cluster, all_nodes=True)])
    assert holders(service_instance) == {}
