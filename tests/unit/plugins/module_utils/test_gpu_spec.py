"""What a GPU node's VM gets (_gpu): the devices, the locked reservation, the MMIO window, the hardware upgrade;
and the GPU options refused before anything is made, each naming its option."""

import pytest
from deploy_request_tools import request
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _gpu, _waiter
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import (
    DEPLOY_OPTIONS, MUTUALLY_EXCLUSIVE, value_problems)

A100 = dict(model="A100", vendor_id=0x10DE, device_id=0x20B5, label=None, count=1, memory_gb=None)


def entry(**overrides):
    return dict(A100, **overrides)


def extra(spec):
    return dict((option.key, option.value) for option in spec.extraConfig)


def test_passthrough_gets_dynamic_directpath_devices_with_allowed_ids_label_and_count():
    spec = _gpu.GpuRequest({"gpus": [entry(label="a100", count=2)]}).config_spec()
    devices = [change.device for change in spec.deviceChange]
    assert [change.operation for change in spec.deviceChange] == ["add", "add"]
    assert all(isinstance(device, vim.vm.device.VirtualPCIPassthrough) for device in devices)
    assert len(set(device.key for device in devices)) == 2 and all(device.key < 0 for device in devices)
    for device in devices:
        assert isinstance(device.backing, vim.vm.device.VirtualPCIPassthrough.DynamicBackingInfo)
        assert [(allowed.vendorId, allowed.deviceId) for allowed in device.backing.allowedDevice] == [(0x10DE, 0x20B5)]
        assert device.backing.customLabel == "a100"
    assert spec.memoryReservationLockedToMax is True
    # two 80 GB (the default) GPUs: 160 GB, rounded up to a power of two
    assert extra(spec) == {"pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": "256"}


def test_a_label_alone_allows_any_device_of_that_label():
    spec = _gpu.GpuRequest({"gpus": [entry(vendor_id=None, device_id=None, label="a100")]}).config_spec()
    backing = spec.deviceChange[0].device.backing
    assert list(backing.allowedDevice) == [] and backing.customLabel == "a100"


@pytest.mark.parametrize("memories, size", [([40], 64), ([40, 40], 128), ([16], 16), ([80], 128), ([24, 24, 24], 128)])
def test_the_mmio_window_is_the_gpus_memory_rounded_up_to_a_power_of_two(memories, size):
    assert _gpu.mmio_size_gb(memories) == size


def test_a_vgpu_gets_a_vmiop_backing_of_its_profile_and_a_window_of_its_framebuffer():
    gpu = _gpu.GpuRequest({"vgpu_profile": "grid_a100-20c"})
    spec = gpu.config_spec()
    (change,) = spec.deviceChange
    assert isinstance(change.device.backing, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo)
    assert change.device.backing.vgpu == "grid_a100-20c"
    assert spec.memoryReservationLockedToMax is True
    assert extra(spec)["pciPassthru.64bitMMIOSizeGB"] == "32"
    assert gpu.model == "A100"


@pytest.mark.parametrize("profile, model, framebuffer", [
    ("grid_a100-20c", "A100", 20), ("grid_a100-4c", "A100", 4), ("grid_a100d-3-40c", "A100D", 40),
    ("grid_t4-16q", "T4", 16), ("nvidia_a100-20c", None, None)])
def test_the_model_and_framebuffer_are_read_from_nvidias_profile_names(profile, model, framebuffer):
    assert (_gpu.vgpu_model_of(profile), _gpu.vgpu_framebuffer_gb(profile)) == (model, framebuffer)


def test_vgpu_model_overrides_the_model_read_from_the_profile():
    assert _gpu.GpuRequest({"vgpu_profile": "grid_a100-20c", "vgpu_model": "A100-40G"}).model == "A100-40G"


@pytest.mark.parametrize("params, option, words", [
    ({"gpus": [entry(count=0)]}, "gpus[0]", "count must be at least 1, not 0"),
    ({"gpus": [entry(model=" ")]}, "gpus[0]", "model must name the GPU"),
    ({"gpus": [entry(vendor_id=0x10000)]}, "gpus[0]", "vendor_id must be a PCI id, 0 to 0xFFFF, not 65536"),
    ({"gpus": [entry(device_id=-1)]}, "gpus[0]", "device_id must be a PCI id"),
    ({"gpus": [entry(device_id=None)]}, "gpus[0]", "give both vendor_id and device_id, not vendor_id alone"),
    ({"gpus": [entry(vendor_id=None, device_id=None)]}, "gpus[0]", "or label"),
    ({"gpus": [entry(memory_gb=0)]}, "gpus[0]", "memory_gb must be at least 1"),
    ({"gpus": [entry(), entry(model="H100")]}, "gpus", "name one model for all entries, not A100, H100"),
    ({"vgpu_model": "A100"}, "vgpu_model", "vgpu_profile, which is not set"),
    ({"vgpu_profile": ""}, "vgpu_profile", "must name an NVIDIA vGPU profile"),
    ({"vgpu_profile": "custom-profile"}, "vgpu_model", "required for vgpu_profile 'custom-profile'"),
])
def test_gpu_values_a_deploy_cannot_use_are_named(params, option, words):
    problems = value_problems(params)
    assert [(found, text) for found, text in problems if words in text] and all(
        found == option for found, text in problems if words in text), problems


def test_good_gpu_values_raise_nothing():
    assert value_problems({"gpus": [entry(), entry(vendor_id=None, device_id=None, label="a100", count=2)]}) == []
    assert value_problems({"vgpu_profile": "grid_a100-20c"}) == []
    assert value_problems({"vgpu_profile": "custom-profile", "vgpu_model": "A100"}) == []


def test_gpus_and_a_vgpu_are_mutually_exclusive_and_in_the_one_option_schema():
    assert ("gpus", "vgpu_profile") in MUTUALLY_EXCLUSIVE
    assert DEPLOY_OPTIONS["gpus"]["options"]["count"]["default"] == 1
    assert DEPLOY_OPTIONS["gpus"]["options"]["model"]["required"] is True


def test_a_deploy_request_with_a_bad_gpu_value_fails_before_anything(tmp_path):
    with pytest.raises(RayVsphereError, match=r"gpus\[0\] count must be at least 1"):
        request(tmp_path, gpus=[entry(count=0)])
    for folder in ("gpu", "none"):
        (tmp_path / folder).mkdir()
    assert request(tmp_path / "gpu", gpus=[entry()]).gpu.model == "A100"
    assert request(tmp_path / "none").gpu is None


class Vm:
    def __init__(self, version):
        self.version, self.calls = version, []

    def UpgradeVM_Task(self, version):
        self.calls.append(("UpgradeVM_Task", version))

    def ReconfigVM_Task(self, spec):
        self.calls.append(("ReconfigVM_Task", len(spec.deviceChange)))


@pytest.mark.parametrize("version, upgraded", [("vmx-13", True), ("vmx-17", False), ("vmx-21", False)])
def test_give_gpus_upgrades_older_hardware_to_vmx_17_before_adding_the_devices(monkeypatch, version, upgraded):
    vm = Vm(version)
    monkeypatch.setattr(_gpu._vsphere, "read", lambda si, obj, paths: {"config.version": obj.version})
    monkeypatch.setattr(_waiter, "run_task", lambda si, action, call, timeout=0: call())
    _gpu.give_gpus(None, vm, "n0", _gpu.GpuRequest({"gpus": [entry(count=2)]}), 60)
    assert vm.calls == ([("UpgradeVM_Task", "vmx-17")] if upgraded else []) + [("ReconfigVM_Task", 2)]


@pytest.mark.parametrize("api_version, refused", [("6.5", True), ("6.7.3", True), ("7.0", False), ("8.0.3.0", False)])
def test_dynamic_directpath_is_refused_before_vcenter_7_whose_api_lacks_its_backing(api_version, refused):
    about = vim.AboutInfo(apiVersion=api_version, fullName="VMware vCenter Server %s" % api_version)
    problem = _gpu.api_problem(about, _gpu.GpuRequest({"gpus": [entry()]}))
    assert bool(problem) is refused and (not refused or "needs vCenter 7.0 or later" in problem)
    assert _gpu.api_problem(about, _gpu.GpuRequest({"vgpu_profile": "grid_a100-20c"})) is None  # vGPU: API 6.0
