# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which host each new GPU node goes to: one with a free matching device, counted as the hosts say.

With DRS on, vCenter picks a host with a free device at power-on, so the
hosts are only read to report. Without DRS (or on one ESXi host) the caller
must pick, and power-on fails when the device is taken: so each node gets a
host that, by the hosts' own bookkeeping and this call's other nodes, has a
device left for it.

- Passthrough devices: the host's hardware.pciDevice (ids) and
  config.pciPassthruInfo (enabled for passthrough; hardwareLabel, the label
  Dynamic DirectPath's customLabel matches), matched on .id (the two lists
  are not in one order), less those config.assignableHardwareBinding says
  another VM holds.
- vGPU: config.graphicsInfo's sharedDirect GPUs and the VMs on each, less
  nothing but what fits: a GPU in NVIDIA's default same-size mode holds one
  profile at a time, as many as its memory over the profile's framebuffer;
  config.sharedPassthruGpuTypes lists the profiles the host offers.
- This call's own nodes count on the host planned for them whether powered on
  or not, and their own bindings are not counted twice.

The hosts are read in one PropertyCollector call from the cluster down (plus
one of the vGPU VMs' devices when some GPU holds VMs of others): the cost is
that of the cluster's hosts, not of the VMs vCenter holds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _gpu, _vsphere

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

HOST_PATHS = ["name", "runtime.connectionState", "runtime.inMaintenanceMode", "hardware.pciDevice",
              "config.pciPassthruInfo", "config.assignableHardwareBinding", "config.graphicsInfo",
              "config.sharedPassthruGpuTypes"]
# What power-on answers when no device is left on the VM's host for it (another caller's VM powered on after this
# call read the hosts): InsufficientResourcesFault for Dynamic DirectPath, its subclass
# InsufficientGraphicsResourcesFault for vGPU ("Graphics resources admission control"). The next host is tried.
DEVICE_TAKEN_FAULTS = ("InsufficientResourcesFault", "InsufficientGraphicsResourcesFault")
SHARED_DIRECT = "sharedDirect"
MIXED_SIZE = "mixedSize"
KB_PER_GB = 1024 * 1024


def _unsigned(value):
    return (value or 0) & 0xFFFF  # pyVmomi reads PCI ids as signed 16-bit


class HostGpus(object):
    """What one host offers a GPU node: its passthrough devices and vGPU GPUs, and what others hold of them."""

    def __init__(self, host, props, ours, profiles_of):
        self.host = host
        self.name = props.get("name") or host._moId
        self.usable = (props.get("runtime.connectionState") == "connected"
                       and not props.get("runtime.inMaintenanceMode"))
        enabled = dict((info.id, info) for info in props.get("config.pciPassthruInfo") or []
                       if info.passthruEnabled and info.passthruActive is not False)
        bound = dict((binding.instanceId, binding.vm) for binding in props.get("config.assignableHardwareBinding") or [])
        # (pci id, vendor id, device id, hardware label) of each device in passthrough mode no other VM holds
        self.free_devices = []
        self.devices = []
        for device in props.get("hardware.pciDevice") or []:
            if device.id not in enabled:
                continue
            entry = (device.id, _unsigned(device.vendorId), _unsigned(device.deviceId), enabled[device.id].hardwareLabel)
            self.devices.append(entry)
            holder = bound.get(device.id)
            if holder is None or holder._moId in ours:
                self.free_devices.append(entry)
        self.profiles = set(props.get("config.sharedPassthruGpuTypes") or [])
        # [memory GB, mixed sizes allowed, [profile of each VM of others on it (None: unknown)]] per vGPU GPU
        self.vgpu_gpus = [[(info.memorySizeInKB or 0) // KB_PER_GB, info.vgpuMode == MIXED_SIZE,
                           [profiles_of.get(vm._moId) for vm in info.vm or [] if vm._moId not in ours]]
                          for info in props.get("config.graphicsInfo") or [] if info.graphicsType == SHARED_DIRECT]

    def fits(self, gpu, own_nodes):
        """Whether own_nodes + 1 nodes asking for gpu each find their devices here."""
        if not self.usable:
            return False
        if gpu.vgpu_profile:
            return self._fits_vgpu(gpu.vgpu_profile, own_nodes + 1)
        return self._fits_passthrough(gpu, own_nodes, self.free_devices)

    def has(self, gpu):
        """Whether one node asking for gpu would fit here were every device free: capacity, not a wrong request."""
        if gpu.vgpu_profile:
            framebuffer = _gpu.vgpu_framebuffer_gb(gpu.vgpu_profile)
            return gpu.vgpu_profile in self.profiles and any(
                framebuffer is None or memory >= framebuffer for memory, mixed, held in self.vgpu_gpus)
        return self._fits_passthrough(gpu, 0, self.devices)

    @staticmethod
    def _fits_passthrough(gpu, own_nodes, devices):
        free = list(devices)
        for node in range(own_nodes + 1):
            for entry in gpu.passthrough:
                matching = [device for device in free if entry.matches(device[1], device[2], device[3])]
                if len(matching) < entry.count:
                    return False
                for device in matching[:entry.count]:
                    free.remove(device)
        return True

    def _fits_vgpu(self, profile, nodes):
        if profile not in self.profiles:
            return False
        framebuffer = _gpu.vgpu_framebuffer_gb(profile)
        gpus = [(memory, mixed, list(held)) for memory, mixed, held in self.vgpu_gpus]
        for node in range(nodes):
            # Like ESXi, fill a GPU that already holds the profile before starting an empty one.
            order = sorted(gpus, key=lambda item: not item[2])
            taken = next((held for memory, mixed, held in order if _takes(memory, mixed, held, profile, framebuffer)), None)
            if taken is None:
                return False
            taken.append(profile)
        return True

    def summary(self, gpu):
        """How the host stands for gpu, for a message: "DC0_C0_H0 (1 matching device, 0 free)"."""
        if gpu.vgpu_profile:
            offered = "yes" if gpu.vgpu_profile in self.profiles else "no"
            return "%s (%d vGPU GPUs, offers %s: %s)" % (self.name, len(self.vgpu_gpus), gpu.vgpu_profile, offered)
        matching = [device for device in self.devices if any(entry.matches(*device[1:]) for entry in gpu.passthrough)]
        free = [device for device in self.free_devices if device in matching]
        return "%s (%d matching devices, %d free)" % (self.name, len(matching), len(free))


def _takes(memory, mixed, held, profile, framebuffer):
    """Whether a vGPU GPU of memory GB holding the profiles held takes one more profile."""
    if None in held or (held and not mixed and set(held) != set([profile])):
        return False  # a VM whose profile is not known, or another size on a same-size GPU
    if framebuffer is None:
        return not held  # an unknown size: alone on the GPU
    sizes = [_gpu.vgpu_framebuffer_gb(each) for each in held]
    if None in sizes:
        return False
    return sum(sizes) + framebuffer <= memory


class GpuPlan(object):
    """The hosts of one deploy's new GPU nodes, kept as the nodes are made, and moved when a device was taken.

    ours(): the moids of the VMs this call made so far (their bindings are theirs, not others').
    """

    def __init__(self, service_instance, placement, gpu, ours, where):
        self.service_instance = service_instance
        self.placement = placement
        self.gpu = gpu
        self.ours = ours
        self.where = where  # "cluster DC0_C0", for messages
        self.hosts = {}  # node name: HostSystem (None: DRS picks)
        self.host_names = {}
        self._tried = {}
        self._lock = threading.Lock()
        self.drs = placement.host is None and _drs_enabled(service_instance, placement.compute)

    def assign(self, names):
        """A host for each new node, before anything is made; RayVsphereError (failure gpu_capacity) if one has none."""
        with self._lock:
            if self.drs:
                self.hosts.update((name, None) for name in names)
                return
            hosts = self._read_hosts()
            for name in names:
                self._place(name, hosts)

    def move(self, name):
        """Another host for node `name`, whose power-on found its device taken; RayVsphereError if none is left."""
        with self._lock:
            self._tried.setdefault(name, set()).add(self.hosts.pop(name)._moId)
            self.host_names.pop(name, None)
            self._place(name, self._read_hosts())
            return self.hosts[name]

    def report(self):
        """{node: host name, or None where vCenter (DRS) picks}."""
        return dict((name, self.host_names.get(name)) for name in self.hosts)

    def _place(self, name, hosts):
        own = {}
        for host in self.hosts.values():
            own[host._moId] = own.get(host._moId, 0) + 1
        tried = self._tried.get(name, set())
        for host in sorted(hosts, key=lambda each: each.name):
            if host.host._moId not in tried and host.fits(self.gpu, own.get(host.host._moId, 0)):
                self.hosts[name] = host.host
                self.host_names[name] = host.name
                return
        summaries = "; ".join(host.summary(self.gpu) for host in sorted(hosts, key=lambda each: each.name)) or "no hosts"
        if not any(host.has(self.gpu) for host in hosts):
            # No free device now is capacity (Ray tries later); no such device at all is a request to correct.
            raise RayVsphereError(
                "no host of %s has %s at all, free or not: %s. Check the GPU settings against the hosts' passthrough "
                "devices (config.pciPassthruInfo, hardware labels) and vGPU profiles (config.sharedPassthruGpuTypes)"
                % (self.where, self.gpu.describe(), summaries))
        raise RayVsphereError(
            "no host of %s has a free %s for node %s (it asks for %s): %s. Free one (power off or delete a node "
            "holding one) or add hosts with %s GPUs"
            % (self.where, self.gpu.model, name, self.gpu.describe(), summaries, self.gpu.model),
            failure=FAILURE_GPU_CAPACITY, gpu_model=self.gpu.model)

    def _read_hosts(self):
        if self.placement.host is not None:
            found = {self.placement.host: _vsphere.read(self.service_instance, self.placement.host, HOST_PATHS)}
        else:
            found = _vsphere.objects_below(self.service_instance, self.placement.compute, vim.HostSystem, HOST_PATHS)
        ours = set(self.ours())
        profiles = _vgpu_profiles(self.service_instance, [
            vm for props in found.values() for info in props.get("config.graphicsInfo") or []
            if info.graphicsType == SHARED_DIRECT for vm in info.vm or [] if vm._moId not in ours])
        return [HostGpus(host, props, ours, profiles) for host, props in found.items()]


def _drs_enabled(service_instance, compute):
    if not isinstance(compute, vim.ClusterComputeResource):
        return False
    config = _vsphere.read(service_instance, compute, ["configurationEx"]).get("configurationEx")
    return bool(config is not None and config.drsConfig is not None and config.drsConfig.enabled)


def _vgpu_profiles(service_instance, vms):
    """{vm moid: its vGPU profile} of the VMs on vGPU GPUs, in one read; a VM this account cannot read is left out."""
    if not vms:
        return {}
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm, skip=False) for vm in vms],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=["config.hardware.device"])])
    profiles = {}
    for vm, props in _vsphere.retrieve(service_instance, [spec]).items():
        for device in props.get("config.hardware.device") or []:
            if isinstance(getattr(device, "backing", None), vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo):
                profiles[vm._moId] = device.backing.vgpu
    return profiles
