# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A node's GPUs: node_deploy's GPU options, their checks, and what a new VM gets for them.

Dynamic DirectPath I/O is a VirtualPCIPassthrough with a
VirtualPCIPassthroughDynamicBackingInfo (allowedDevice vendor/device ids,
customLabel), NVIDIA vGPU one with a VirtualPCIPassthroughVmiopBackingInfo
(vgpu: the profile). Both need the VM's memory fully reserved
(memoryReservationLockedToMax), large-BAR GPUs a 64-bit MMIO window
(pciPassthru.use64bitMMIO, pciPassthru.64bitMMIOSizeGB), and Dynamic DirectPath
hardware version 17 (vSphere 7.0).

The devices go in by a ReconfigVM after the VM is made (clone or import), never
in the creating call: vCenter refuses a device the VM's hardware version does
not support (DeviceUnsupportedForVmVersion), and the image's template, which
every clone starts from, is vmx-13 or so; it is upgraded first (UpgradeVM_Task).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere, _waiter

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

# Names as close as the API and its users have them: CAPV's pciDevices (vendorId, deviceId, customLabel) and
# vgpuDevices (profileName); community.vmware's vmware_guest_vgpu (vgpu: the profile). model is Ray's accelerator_type.
GPU_OPTIONS = dict(
    gpus=dict(type="list", elements="dict", options=dict(
        model=dict(type="str", required=True),
        vendor_id=dict(type="int"),
        device_id=dict(type="int"),
        label=dict(type="str"),
        count=dict(type="int", default=1),
        memory_gb=dict(type="int"),
    )),
    vgpu_profile=dict(type="str"),
    vgpu_model=dict(type="str"),
)

# Dynamic DirectPath I/O came with virtual hardware 17 (vSphere 7.0, "Virtual Machine Compatibility").
MIN_HARDWARE_VERSION = 17
# The 64-bit MMIO window when a GPU's memory is not given: enough for the 80 GB GPUs (A100 80GB, H100) ML runs on.
DEFAULT_GPU_MEMORY_GB = 80
MAX_PCI_ID = 0xFFFF
# NVIDIA's vGPU profile names: grid_<gpu>-<framebuffer GB><series>, MIG-backed ones grid_<gpu>-<slices>-<GB><series>.
VGPU_PROFILE = re.compile(r"^grid_(?P<gpu>[a-z0-9]+)-(?:\d+-)?(?P<framebuffer>\d+)[a-z]+$")
MMIO_ENABLE_KEY = "pciPassthru.use64bitMMIO"
MMIO_SIZE_KEY = "pciPassthru.64bitMMIOSizeGB"


def vgpu_framebuffer_gb(profile):
    """The framebuffer in GB a vGPU profile name says (grid_a100-20c: 20); None for a name of another form."""
    match = VGPU_PROFILE.match(profile or "")
    return int(match.group("framebuffer")) if match else None


def vgpu_model_of(profile):
    """Ray's accelerator_type for a vGPU profile: grid_a100-20c -> A100; None for a name of another form."""
    match = VGPU_PROFILE.match(profile or "")
    return match.group("gpu").upper() if match else None


def mmio_size_gb(memory_gb):
    """The 64-bit MMIO window for GPUs of these memory sizes: their sum rounded up to a power of two.

    VMware's rule for large-BAR devices (KB 2142307, "VMware vSphere
    VMDirectPath I/O: Requirements for Platforms and Devices", and NVIDIA's
    "Deploying the NVIDIA AI Enterprise on VMware vSphere": 64bitMMIOSizeGB
    is the GPUs' total memory rounded up to the next power of two).
    """
    total = max(sum(memory_gb), 1)
    size = 1
    while size < total:
        size *= 2
    return size


def gpu_problems(params):
    """(option, problem) for GPU options the type check lets through but a deploy cannot use."""
    problems = []
    entries = params.get("gpus") or []
    for index, entry in enumerate(entries):
        where = "gpus[%d]" % index
        if not (entry.get("model") or "").strip():
            problems.append((where, "model must name the GPU (Ray's accelerator_type, e.g. A100), not %r"
                             % entry.get("model")))
        if entry.get("count") is not None and entry["count"] < 1:
            problems.append((where, "count must be at least 1, not %s" % entry["count"]))
        if entry.get("memory_gb") is not None and entry["memory_gb"] < 1:
            problems.append((where, "memory_gb must be at least 1, not %s" % entry["memory_gb"]))
        for key in ("vendor_id", "device_id"):
            if entry.get(key) is not None and not 0 <= entry[key] <= MAX_PCI_ID:
                problems.append((where, "%s must be a PCI id, 0 to 0xFFFF, not %s" % (key, entry[key])))
        ids = [key for key in ("vendor_id", "device_id") if entry.get(key) is not None]
        if len(ids) == 1:
            problems.append((where, "give both vendor_id and device_id, not %s alone" % ids[0]))
        if not ids and not entry.get("label"):
            problems.append((where, "give vendor_id and device_id, or label (the device's hardware label on its "
                                    "host), or both"))
    models = sorted(set((entry.get("model") or "").strip() for entry in entries) - set([""]))
    if len(models) > 1:
        problems.append(("gpus", "name one model for all entries, not %s: a Ray node has one accelerator_type"
                         % ", ".join(models)))
    profile = params.get("vgpu_profile")
    if profile is not None and not profile.strip():
        problems.append(("vgpu_profile", "must name an NVIDIA vGPU profile (e.g. grid_a100-20c), not %r" % profile))
    if params.get("vgpu_model") is not None and not profile:
        problems.append(("vgpu_model", "is the model of vgpu_profile, which is not set"))
    if params.get("vgpu_model") is not None and not params["vgpu_model"].strip():
        problems.append(("vgpu_model", "must name the GPU (Ray's accelerator_type, e.g. A100), not %r"
                         % params["vgpu_model"]))
    if profile and profile.strip() and not params.get("vgpu_model") and not vgpu_model_of(profile):
        problems.append(("vgpu_model", "required for vgpu_profile %r, whose model cannot be read from its name "
                                       "(NVIDIA's grid_<gpu>-<size><series>)" % profile))
    return problems


class PassthroughGpu(object):
    """One gpus entry: which devices (vendor/device ids, label) and how many."""

    def __init__(self, entry):
        self.model = entry["model"].strip()
        self.vendor_id = entry.get("vendor_id")
        self.device_id = entry.get("device_id")
        self.label = entry.get("label") or None
        self.count = entry.get("count") or 1
        self.memory_gb = entry.get("memory_gb") or DEFAULT_GPU_MEMORY_GB

    def matches(self, vendor_id, device_id, label):
        """Whether a host's device (its ids as unsigned, its hardware label) is one of these."""
        if self.vendor_id is not None and (vendor_id, device_id) != (self.vendor_id, self.device_id):
            return False
        return self.label is None or self.label == label

    def devices(self):
        """The VirtualPCIPassthrough devices (count of them) a VM gets for this entry."""
        allowed = []
        if self.vendor_id is not None:
            allowed = [vim.vm.device.VirtualPCIPassthrough.AllowedDevice(vendorId=self.vendor_id,
                                                                         deviceId=self.device_id)]
        backing = vim.vm.device.VirtualPCIPassthrough.DynamicBackingInfo(
            allowedDevice=allowed, customLabel=self.label or "", deviceName="", useAutoDetect=False)
        return [vim.vm.device.VirtualPCIPassthrough(backing=backing, key=0) for ordinal in range(self.count)]


class GpuRequest(object):
    """The GPUs each node of a deploy gets: passthrough entries, or one vGPU profile."""

    def __init__(self, params):
        self.passthrough = [PassthroughGpu(entry) for entry in params.get("gpus") or []]
        self.vgpu_profile = params.get("vgpu_profile") or None
        self.model = (self.passthrough[0].model if self.passthrough
                      else (params.get("vgpu_model") or "").strip() or vgpu_model_of(self.vgpu_profile))

    @classmethod
    def of(cls, params):
        """The GpuRequest of checked params; None when they ask for no GPU."""
        return cls(params) if params.get("gpus") or params.get("vgpu_profile") else None

    @property
    def count(self):
        return sum(entry.count for entry in self.passthrough) if self.passthrough else 1

    def describe(self):
        """What one node asks for, in words: "1 A100 (vendor 0x10de device 0x20b5)", "vGPU grid_a100-20c (A100)"."""
        if self.vgpu_profile:
            return "vGPU %s (%s)" % (self.vgpu_profile, self.model)
        parts = []
        for entry in self.passthrough:
            which = ["vendor 0x%04x device 0x%04x" % (entry.vendor_id, entry.device_id)] if entry.vendor_id is not None else []
            which += ["label %s" % entry.label] if entry.label else []
            parts.append("%d %s (%s)" % (entry.count, entry.model, ", ".join(which)))
        return " and ".join(parts)

    def mmio_size_gb(self):
        if self.vgpu_profile:
            return mmio_size_gb([vgpu_framebuffer_gb(self.vgpu_profile) or DEFAULT_GPU_MEMORY_GB])
        return mmio_size_gb(sum(([entry.memory_gb] * entry.count for entry in self.passthrough), []))

    def devices(self):
        if self.vgpu_profile:
            backing = vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu=self.vgpu_profile)
            return [vim.vm.device.VirtualPCIPassthrough(backing=backing, key=0)]
        return [device for entry in self.passthrough for device in entry.devices()]

    def config_spec(self):
        """The ReconfigVM spec that gives a VM these GPUs: devices, locked memory reservation, 64-bit MMIO window."""
        devices = self.devices()
        for index, device in enumerate(devices):
            device.key = -(index + 1)  # new devices take negative keys, unique within the spec
        return vim.vm.ConfigSpec(
            deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=device) for device in devices],
            memoryReservationLockedToMax=True,
            extraConfig=[vim.option.OptionValue(key=MMIO_ENABLE_KEY, value="TRUE"),
                         vim.option.OptionValue(key=MMIO_SIZE_KEY, value=str(self.mmio_size_gb()))])


def api_problem(about, gpu):
    """Why this vCenter cannot be given gpu's devices, or None; about: its ServiceContent.about.

    Dynamic DirectPath I/O's backing is a type of the vSphere API 7.0: to an
    older vCenter pyVmomi would send it as the base backing it knows, a
    device that matches nothing.
    """
    match = re.match(r"^(\d+)\.", about.apiVersion or "")
    if gpu.passthrough and (not match or int(match.group(1)) < 7):
        return ("gpus: Dynamic DirectPath I/O needs vCenter 7.0 or later (vSphere API 7.0); %s speaks API %s"
                % (about.fullName or "this vCenter", about.apiVersion))
    return None


def hardware_version(version):
    """17 for "vmx-17"; 0 for anything else."""
    match = re.match(r"^vmx-(\d+)$", version or "")
    return int(match.group(1)) if match else 0


def give_gpus(service_instance, vm, name, gpu, timeout):
    """Upgrade vm's virtual hardware to MIN_HARDWARE_VERSION when lower, then give it gpu's devices (one ReconfigVM)."""
    version = _vsphere.read(service_instance, vm, ["config.version"]).get("config.version")
    if hardware_version(version) < MIN_HARDWARE_VERSION:
        target = "vmx-%d" % MIN_HARDWARE_VERSION
        _waiter.run_task(service_instance, "UpgradeVM_Task (%s to %s, for Dynamic DirectPath I/O) on VM %s"
                         % (version, target, name), lambda: vm.UpgradeVM_Task(version=target), timeout)
    spec = gpu.config_spec()
    _waiter.run_task(service_instance, "ReconfigVM_Task (GPUs: %s) on VM %s" % (gpu.describe(), name),
                     lambda: vm.ReconfigVM_Task(spec), timeout)
