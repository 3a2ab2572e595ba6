"""Which host a GPU node goes to (_gpu_placement), counted from hosts as vCenter describes them (pyVmomi's own data
objects), with the hosts' reads replaced by a fake cluster."""

import pytest
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _gpu, _gpu_placement
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._placement import Placement

NVIDIA, A100_ID = 0x10DE, 0x20B5
GB = 1024 * 1024  # in KB
A100 = {"gpus": [dict(model="A100", vendor_id=NVIDIA, device_id=A100_ID, label=None, count=1, memory_gb=None)]}


def intel_devices(count):
    return [vim.host.PciDevice(id="0000:00:%02x.0" % index, vendorId=0x8086 - 0x10000, deviceId=0x1234)
            for index in range(count)]


def host_props(name, gpus=(), bound=(), label="a100", vgpu=None, intel=3, maintenance=False):
    """A host's properties: passthrough GPUs by pci id (listed after Intel devices, passthru info in reverse order,
    as the two lists are not aligned), bindings {pci id: vm}, vgpu: (memory GB, mode, [vms], [profiles offered])."""
    devices = intel_devices(intel) + [vim.host.PciDevice(id=pci, vendorId=NVIDIA, deviceId=A100_ID) for pci in gpus]
    passthru = [vim.host.PciPassthruInfo(id=pci, passthruEnabled=True, passthruActive=True, passthruCapable=True,
                                         hardwareLabel=label) for pci in reversed(gpus)]
    props = {"name": name, "runtime.connectionState": "connected", "runtime.inMaintenanceMode": maintenance,
             "hardware.pciDevice": devices, "config.pciPassthruInfo": passthru,
             "config.assignableHardwareBinding": [vim.host.AssignableHardwareBinding(instanceId=pci, vm=vm)
                                                  for pci, vm in dict(bound).items()]}
    if vgpu:
        memory, mode, vms, offered = vgpu
        props["config.graphicsInfo"] = [vim.host.GraphicsInfo(pciId="0000:af:00.0", graphicsType="sharedDirect",
                                                              vgpuMode=mode, memorySizeInKB=memory * GB, vm=vms)]
        props["config.sharedPassthruGpuTypes"] = offered
    return props


class Cluster:
    """The fake vCenter: hosts {HostSystem: props}, VMs' vGPU profiles, DRS; counts the host reads."""

    def __init__(self, monkeypatch, hosts, profiles=None, drs=False):
        self.hosts, self.profiles, self.reads = hosts, profiles or {}, 0
        self.compute = vim.ClusterComputeResource("domain-c1")
        drs_config = vim.cluster.ConfigInfoEx(drsConfig=vim.cluster.DrsConfigInfo(enabled=drs))

        def objects_below(si, root, managed_type, paths):
            assert root is self.compute and managed_type is vim.HostSystem
            self.reads += 1
            return dict(self.hosts)

        def read(si, obj, paths):
            return {"configurationEx": drs_config} if obj is self.compute else dict(self.hosts[obj])

        def retrieve(si, specs):
            vms = [each.obj for each in specs[0].objectSet]
            return dict((vm, {"config.hardware.device": [vim.vm.device.VirtualPCIPassthrough(
                backing=vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu=self.profiles[vm._moId]))]})
                for vm in vms if vm._moId in self.profiles)

        monkeypatch.setattr(_gpu_placement._vsphere, "objects_below", objects_below)
        monkeypatch.setattr(_gpu_placement._vsphere, "read", read)
        monkeypatch.setattr(_gpu_placement._vsphere, "retrieve", retrieve)

    def plan(self, params, ours=(), host=None):
        placement = Placement(None, None, host, None, None, None, self.compute)
        return _gpu_placement.GpuPlan(None, placement, _gpu.GpuRequest(params), lambda: list(ours), "cluster C0")


def hosts(*props):
    return dict((vim.HostSystem("host-%d" % index), each) for index, each in enumerate(props))


def test_nodes_of_one_call_never_count_on_one_device_twice(monkeypatch):
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"]), host_props("H1", ["0000:3b:00.0"]),
                                         host_props("H2")))
    plan = cluster.plan(A100)
    plan.assign(["n0", "n1"])
    assert plan.report() == {"n0": "H0", "n1": "H1"}
    assert cluster.reads == 1  # every host in one read, whatever the number of nodes
    with pytest.raises(RayVsphereError) as raised:
        plan.assign(["n2"])
    assert raised.value.details == {"failure": FAILURE_GPU_CAPACITY, "gpu_model": "A100"}
    assert "no host of cluster C0 has a free A100 for node n2" in str(raised.value)
    assert "H0 (1 matching devices, 1 free)" in str(raised.value)  # free at the host; this call's n0 holds it


def test_a_device_another_vm_holds_is_not_free_one_of_ours_counts_once(monkeypatch):
    other, ours = vim.VirtualMachine("vm-other"), vim.VirtualMachine("vm-ours")
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"], bound={"0000:3b:00.0": other}),
                                         host_props("H1", ["0000:3b:00.0"], bound={"0000:3b:00.0": ours})))
    plan = cluster.plan(A100, ours=["vm-ours"])
    plan.assign(["n0"])
    assert plan.report() == {"n0": "H1"}
    with pytest.raises(RayVsphereError, match="free A100"):
        plan.assign(["n1"])


def test_count_needs_that_many_free_devices_on_one_host(monkeypatch):
    two = dict(A100["gpus"][0], count=2)
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"]),
                                         host_props("H1", ["0000:3b:00.0", "0000:af:00.0"])))
    plan = cluster.plan({"gpus": [two]})
    plan.assign(["n0"])
    assert plan.report() == {"n0": "H1"}


@pytest.mark.parametrize("label, placed", [("a100", "H1"), ("h100", None)])
def test_a_label_matches_the_hosts_hardware_label(monkeypatch, label, placed):
    by_label = dict(A100["gpus"][0], vendor_id=None, device_id=None, label=label)
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"], label="other"),
                                         host_props("H1", ["0000:3b:00.0"], label="a100")))
    plan = cluster.plan({"gpus": [by_label]})
    if placed:
        plan.assign(["n0"])
        assert plan.report() == {"n0": placed}
    else:
        with pytest.raises(RayVsphereError, match="has 1 A100 .* at all, free or not") as raised:
            plan.assign(["n0"])
        assert "failure" not in raised.value.details  # a request to correct, not capacity to wait for


def test_a_host_in_maintenance_is_skipped(monkeypatch):
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"], maintenance=True),
                                         host_props("H1", ["0000:3b:00.0"])))
    plan = cluster.plan(A100)
    plan.assign(["n0"])
    assert plan.report() == {"n0": "H1"}


def test_move_tries_the_next_host_never_the_one_that_failed(monkeypatch):
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"]), host_props("H1", ["0000:3b:00.0"])))
    plan = cluster.plan(A100)
    plan.assign(["n0"])
    assert plan.report() == {"n0": "H0"}
    assert plan.move("n0")._moId == "host-1" and plan.report() == {"n0": "H1"}
    assert cluster.reads == 2  # the hosts read afresh: the bindings changed
    with pytest.raises(RayVsphereError) as raised:
        plan.move("n0")
    assert raised.value.details["failure"] == FAILURE_GPU_CAPACITY


VGPU = {"vgpu_profile": "grid_a100-20c"}
PROFILES = ["grid_a100-4c", "grid_a100-10c", "grid_a100-20c", "grid_a100-40c"]


@pytest.mark.parametrize("others, mode, room", [
    ({}, "sameSize", 2),  # 40 GB over 20 GB
    ({"vm-1": "grid_a100-20c"}, "sameSize", 1),
    ({"vm-1": "grid_a100-20c", "vm-2": "grid_a100-20c"}, "sameSize", 0),
    ({"vm-1": "grid_a100-10c"}, "sameSize", 0),  # one profile size at a time
    ({"vm-1": "grid_a100-10c"}, "mixedSize", 1),  # 10 + 20 <= 40
    ({"vm-1": None}, "sameSize", 0),  # a VM whose profile this account cannot read: the GPU is not counted on
])
def test_vgpu_room_follows_the_same_size_rule_and_the_gpus_memory(monkeypatch, others, mode, room):
    vms = [vim.VirtualMachine(moid) for moid in others]
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"]),
                                         host_props("H2", vgpu=(40, mode, vms, PROFILES))),
                      profiles=dict((moid, profile) for moid, profile in others.items() if profile))
    plan = cluster.plan(VGPU)
    names = ["n%d" % index for index in range(room)]
    plan.assign(names)
    assert set(plan.report().values()) <= {"H2"}
    with pytest.raises(RayVsphereError, match="free A100"):
        plan.assign(["extra"])


def test_a_host_that_does_not_offer_the_profile_takes_none(monkeypatch):
    cluster = Cluster(monkeypatch, hosts(host_props("H2", vgpu=(40, "sameSize", [], ["grid_a100-4c"]))))
    with pytest.raises(RayVsphereError, match="offers grid_a100-20c: no") as raised:
        cluster.plan(VGPU).assign(["n0"])
    assert "at all, free or not" in str(raised.value) and "failure" not in raised.value.details


def test_devices_all_held_are_capacity_devices_missing_everywhere_are_not(monkeypatch):
    other = vim.VirtualMachine("vm-other")
    held = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"], bound={"0000:3b:00.0": other})))
    with pytest.raises(RayVsphereError) as raised:
        held.plan(A100).assign(["n0"])
    assert raised.value.details.get("failure") == FAILURE_GPU_CAPACITY
    two = dict(A100["gpus"][0], count=2)  # one device on the only host: never enough, free or not
    with pytest.raises(RayVsphereError, match="at all, free or not") as raised:
        held.plan({"gpus": [two]}).assign(["n0"])
    assert "failure" not in raised.value.details


def test_with_drs_vcenter_picks_and_no_host_is_read(monkeypatch):
    cluster = Cluster(monkeypatch, hosts(host_props("H0")), drs=True)
    plan = cluster.plan(A100)
    plan.assign(["n0", "n1"])
    assert plan.report() == {"n0": None, "n1": None} and cluster.reads == 0


def test_an_esxi_host_placement_reads_and_checks_that_host_only(monkeypatch):
    cluster = Cluster(monkeypatch, hosts(host_props("H0", ["0000:3b:00.0"]), host_props("H1", ["0000:3b:00.0"])))
    only = next(host for host, props in cluster.hosts.items() if props["name"] == "H1")
    plan = cluster.plan(A100, host=only)
    plan.assign(["n0"])
    assert plan.report() == {"n0": "H1"} and cluster.reads == 0
    with pytest.raises(RayVsphereError, match="H1 \\(1 matching devices, 1 free\\)"):
        plan.assign(["n1"])
