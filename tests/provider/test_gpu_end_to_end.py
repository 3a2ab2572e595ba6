"""`ray up` with a CPU type and two GPU types on the testbed's fake GPU hosts (testbed/gpu_hosts.yml), autoscaler v2.

One cluster for every step, so the test stays within a few minutes: Ray's
autoscaler launches a worker of the type a task's resources ask for, through
the provider, which fills each GPU type's resources (GPU, accelerator_type)
from its node settings; node_deploy places each GPU worker on a host with a
free device; the guest's nvidia-smi lists what its host bound at power-on
(testbed/guests/pci.py). Where a VM is and what it holds is read at vcsim,
not from the provider's or the deploy's own bookkeeping.
"""

import collections
import json
import re

import pytest
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY
from ray_provider.runs import LAUNCH_CATEGORIES
from testbed import PROJECT_ROOT, gpus, ray_cluster, vsphere
from testbed.guests import vcsim_with_guests
from test_ray_up_end_to_end import (a_failure_stays_one, cluster_key, head_monitor_log, ray_ssh_of,  # noqa: F401
                                    wait_for, wait_for_launch_failures)  # fixtures among them

pytestmark = pytest.mark.slow

GPU_EXAMPLE = PROJECT_ROOT / "examples" / "ray-cluster.gpu.yaml"
A100 = "A100"
VGPU_PROFILE_GIB = 20
# The vGPU type's own accelerator_type: a task that asks for an A100 gets a whole one, not a 20 GB slice.
VGPU_MODEL = f"{A100}-{VGPU_PROFILE_GIB}C"
CAPACITY_CATEGORY = LAUNCH_CATEGORIES[FAILURE_GPU_CAPACITY]
AUTOSCALER_V2 = {"RAY_UP_enable_autoscaler_v2": "1"}

# What a task or actor on a worker reports: its node's address, what nvidia-smi there lists, the GPUs Ray gave it.
DRIVER = """
import json, subprocess, sys, ray
ray.init(address="auto", namespace="gpu-end-to-end", logging_level="ERROR")


def node_view():
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return {"ip": ray.util.get_node_ip_address(), "nvidia_smi_exit": listed.returncode,
            "nvidia_smi": listed.stdout.splitlines(), "gpu_ids": ray.get_gpu_ids()}


@ray.remote(num_cpus=1)
def cpu_task():
    return node_view()


@ray.remote(num_cpus=1, num_gpus=1)
class GpuHolder:
    # Detached, it keeps its GPU, so the next GPU request needs another worker.
    def view(self):
        return node_view()


def hold(accelerators):
    return {name: GpuHolder.options(name=name, lifetime="detached", accelerator_type=accelerator).remote()
            for name, accelerator in accelerators.items()}
"""
GPU_HOLDERS = DRIVER + """
holders = hold(json.loads(sys.argv[2]))
print("RESULT " + json.dumps({name: ray.get(holder.view.remote(), timeout=int(sys.argv[1]))
                              for name, holder in holders.items()}))
"""
# A GPU request no host can serve, left pending as a user's job would leave it, and a CPU task beside it.
CPU_TASK_BESIDE_GPU_REQUEST = DRIVER + """
hold(json.loads(sys.argv[2]))
print("RESULT " + json.dumps(ray.get(cpu_task.remote(), timeout=int(sys.argv[1]))))
"""


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites):
    # vcsim checks the head account's privileges, as vCenter does: the autoscaler role must do for GPU workers too.
    with vcsim_with_guests(enforce_permissions=True, api_version=gpus.API_VERSION) as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


def layout_hosts(mode):
    """{host name: its GPU of that mode} of the testbed's GPU layout."""
    return {host: gpu for host, host_gpus in gpus.gpu_layout()["hosts"].items() for gpu in host_gpus
            if gpu["mode"] == mode}


def vgpu_profile():
    """The layout's vGPU profile of VGPU_PROFILE_GIB (grid_a100-20c)."""
    (vgpu_gpu,) = {gpu["device_id"]: gpu for gpu in layout_hosts("vgpu").values()}.values()
    (profile,) = [p["name"] for p in vgpu_gpu["vgpu_profiles"] if p["framebuffer_gib"] == VGPU_PROFILE_GIB]
    return profile


def gpu_cluster_yaml(path, name, key):
    """examples/ray-cluster.gpu.yaml for one cluster that goes through every step.

    Idle workers stay (the requests come one step after another); a third A100 worker is allowed, so that its launch
    finds both A100 hosts full.
    """
    return ray_cluster.provider_cluster_yaml(path, name, key, example=GPU_EXAMPLE, idle_timeout_minutes=10, **{
        "available_node_types.a100.max_workers": 3,
        "available_node_types.a100_vgpu.max_workers": 1,
    })


def vms_at_vcsim(sim):
    """{VM name: {host, ip, passthrough}} of every VM at vcsim but templates, read there."""
    service_instance = sim.endpoint.connect()
    try:
        hosts = {host._moId: props["name"] for host, props in
                 vsphere.objects_of_type(service_instance, vim.HostSystem, ["name"]).items()}
        vms = vsphere.objects_of_type(service_instance, vim.VirtualMachine, [
            "name", "config.template", "runtime.host", "guest.ipAddress", "config.hardware.device"])
    finally:
        service_instance.content.sessionManager.Logout()
    return {props["name"]: {"host": hosts.get(getattr(props.get("runtime.host"), "_moId", None)),
                            "ip": props.get("guest.ipAddress"),
                            "passthrough": [_backing(device.backing) for device in props.get("config.hardware.device") or []
                                            if isinstance(device, vim.vm.device.VirtualPCIPassthrough)]}
            for props in vms.values() if not props.get("config.template")}


def _backing(backing):
    if isinstance(backing, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo):
        return f"vgpu:{backing.vgpu}"
    return f"dynamic:{backing.customLabel}"


def held_devices(sim):
    """[(host, VM moid)] of every passthrough binding and vGPU user the hosts report at vcsim."""
    service_instance = sim.endpoint.connect()
    try:
        hosts = vsphere.objects_of_type(service_instance, vim.HostSystem, [
            "name", "config.assignableHardwareBinding", "config.graphicsInfo"])
    finally:
        service_instance.content.sessionManager.Logout()
    return sorted([(props["name"], binding.vm._moId) for props in hosts.values()
                   for binding in props.get("config.assignableHardwareBinding") or []]
                  + [(props["name"], vm._moId) for props in hosts.values()
                     for info in props.get("config.graphicsInfo") or [] for vm in info.vm or []])


def worker_at(cluster_vms, ip):
    (name,) = [name for name, vm in cluster_vms.items() if vm["ip"] == ip]
    return cluster_vms[name]


def test_ray_up_launches_gpu_workers_for_gpu_tasks_only_on_free_devices_reports_exhausted_capacity_and_ray_down_frees_them(
        testbed, cluster_key, tmp_path, ray_ssh_of):
    sim, guests = testbed
    name = "e2e-gpu"
    ray_ssh_of(name)
    passthrough_hosts, vgpu_hosts = layout_hosts("passthrough"), layout_hosts("vgpu")
    config = gpu_cluster_yaml(tmp_path / "cluster.yaml", name, cluster_key)
    state_dir = tmp_path / "state"
    before = set(vms_at_vcsim(sim))

    def cluster_vms():
        return {vm_name: vm for vm_name, vm in vms_at_vcsim(sim).items() if vm_name not in before}

    up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config),
                             extra_env=AUTOSCALER_V2)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    (head,) = cluster_vms().values()
    assert head["passthrough"] == []
    head_ip = head["ip"]

    monitor_log = head_monitor_log(head_ip, cluster_key)

    def launches():
        """{node type: nodes} the head's autoscaler asked the provider for so far."""
        counts = collections.Counter()
        for count, node_type in re.findall(r"Launching (\d+) nodes of type (\S+)\.", monitor_log("Launching")):
            counts[node_type] += int(count)
        return counts

    # Two A100 holders and a vGPU holder: a passthrough worker on each A100 host (the second skips the first's,
    # full), a vGPU worker on the vGPU host; each lists its GPU.
    holders = {"a100-1": A100, "a100-2": A100, "vgpu-1": VGPU_MODEL}
    held = ray_cluster.run_driver(head_ip, cluster_key, GPU_HOLDERS, ["240", json.dumps(holders)], timeout=300)
    assert launches() == {"a100": 2, "a100_vgpu": 1}, monitor_log("aunch|ray_vsphere")[-6000:]
    assert monitor_log("Failed to launch") == "", "a launch failed while devices were free"
    vms = cluster_vms()
    a100_workers = [worker_at(vms, held[holder]["ip"]) for holder in ("a100-1", "a100-2")]
    for holder, worker in zip(("a100-1", "a100-2"), a100_workers):
        view = held[holder]
        assert (view["gpu_ids"], view["nvidia_smi_exit"], len(view["nvidia_smi"])) == ([0], 0, 1), view
        assert re.fullmatch(rf"GPU 0: NVIDIA .*\b{A100}\b.* \(UUID: GPU-[0-9a-f-]{{36}}\)", view["nvidia_smi"][0]), view
        assert worker["host"] in passthrough_hosts, worker
        assert worker["passthrough"] == [f"dynamic:{passthrough_hosts[worker['host']]['custom_label']}"], worker
    assert a100_workers[0]["host"] != a100_workers[1]["host"], "the second A100 worker went to a host already full"
    vgpu_view, vgpu_worker = held["vgpu-1"], worker_at(vms, held["vgpu-1"]["ip"])
    assert (vgpu_view["gpu_ids"], vgpu_view["nvidia_smi_exit"], len(vgpu_view["nvidia_smi"])) == ([0], 0, 1), vgpu_view
    assert re.fullmatch(rf"GPU 0: GRID {VGPU_MODEL} \(UUID: GPU-[0-9a-f-]{{36}}\)", vgpu_view["nvidia_smi"][0]), vgpu_view
    assert vgpu_worker["host"] in vgpu_hosts and vgpu_worker["passthrough"] == [f"vgpu:{vgpu_profile()}"], vgpu_worker
    assert len(vms) == 4, f"the head, two A100 and one vGPU worker: {vms}"

    # A third A100 (both A100 hosts are full) and a CPU task, while every GPU worker's CPU is taken: the CPU task
    # gets a CPU worker, no GPU worker; the A100 launch fails with Ray's capacity category and leaves no VM.
    cpu = ray_cluster.run_driver(head_ip, cluster_key, CPU_TASK_BESIDE_GPU_REQUEST, ["180", json.dumps({"a100-3": A100})],
                                 timeout=240)
    failed = wait_for_launch_failures(monitor_log, "the third A100 worker's launch to fail", "of type a100:",
                                      CAPACITY_CATEGORY, timeout=180, interval=3)
    assert f"free {A100}" in failed[0], failed
    with_cpu_worker = cluster_vms()
    (cpu_worker,) = set(with_cpu_worker) - set(vms)
    assert with_cpu_worker == dict(vms, **{cpu_worker: with_cpu_worker[cpu_worker]}), \
        "the failed launch left a VM behind, or moved one"
    assert worker_at(with_cpu_worker, cpu["ip"]) == with_cpu_worker[cpu_worker], cpu
    assert with_cpu_worker[cpu_worker]["passthrough"] == [] and launches()["cpu"] == 1, launches()
    assert (cpu["nvidia_smi_exit"], cpu["gpu_ids"]) == (9, []), cpu

    down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config), extra_env=AUTOSCALER_V2)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_vms() == {}
    wait_for("every guest to stop", lambda: guests.guests() == {}, timeout=30, interval=0.5)
    assert held_devices(sim) == [], "a device stayed bound after ray down"
