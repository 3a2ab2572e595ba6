"""The GPUs on a test guest's PCI bus, as its host bound them at power-on, and the image's nvidia-smi that lists them.

On ESXi, a VM's VirtualPCIPassthrough devices are on its virtual PCI bus from
power-on:
- Dynamic DirectPath I/O (VirtualPCIPassthroughDynamicBackingInfo): the
  physical GPU the host bound to the VM at power-on. The host's
  config.assignableHardwareBinding names the VM and the device; the device is
  the host's hardware.pciDevice of that id (matched on .id, never by index).
- NVIDIA vGPU (VirtualPCIPassthroughVmiopBackingInfo): a slice of the GPU
  whose config.graphicsInfo lists the VM, of the vGPU type the profile names
  (grid_a100-20c: "GRID A100-20C", as NVIDIA's vGPU manager names it).
The guest simulator reads the same from vcsim at power-on (presented_devices)
and writes what the guest's kernel would find: a sysfs-like listing of each
device's PCI ids (GUEST_PCI_DIR, in the guest's /run, which every boot
clears; the guest's /sys is the machine's kernel's). The node image has
NVIDIA's driver as a GPU node's image has; its nvidia-smi here is a stand-in
(NVIDIA_SMI) that names the boards it finds by their PCI ids, as the driver
does, from the testbed's GPU layout (testbed/gpu_hosts.yml), and fails as
nvidia-smi does when the driver found no GPU.
"""

import json
import re
import uuid

from pyVmomi import vim

from testbed import gpus, vsphere
from testbed.guests.commands import GuestError

# The guest's PCI devices, one folder each by bus address, with sysfs's files (vendor, device, ...).
GUEST_PCI_DIR = "/run/testbed-sys/bus/pci/devices"
NVIDIA_SMI_PATH = "/usr/bin/nvidia-smi"
NVIDIA_VENDOR_ID = 0x10DE
HOST_PROPERTIES = ("hardware.pciDevice", "config.assignableHardwareBinding", "config.graphicsInfo")
# Where a VM's first passthrough device sits on its virtual PCI bus (ESXi puts them behind its PCIe root ports).
FIRST_GUEST_BUS = 0x13
DYNAMIC = vim.vm.device.VirtualPCIPassthrough.DynamicBackingInfo
VGPU = vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo

# nvidia-smi's message and exit code when the driver is not loaded (nvidia-smi(1), RETURN VALUE: 9); NVIDIA's
# driver does not load without a device it supports. Boards it does not know it calls "NVIDIA Graphics Device".
NVIDIA_SMI = """\
#!/usr/bin/python3
\"\"\"The test image's stand-in for NVIDIA's nvidia-smi: the NVIDIA GPUs on the guest's PCI bus (testbed/guests/pci.py).\"\"\"
import json, sys
from pathlib import Path

BUS = Path({bus!r})
# The driver's names of the boards it supports, by "vendor:device".
BOARDS = json.loads({boards!r})


def read(device, name):
    path = device / name
    return path.read_text().strip() if path.is_file() else ""


gpus = [device for device in sorted(BUS.iterdir()) if read(device, "vendor") == {vendor!r}] if BUS.is_dir() else []
if not gpus:
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
          "Make sure that the latest NVIDIA driver is installed and running.")
    sys.exit(9)
if sys.argv[1:] not in (["-L"], ["--list-gpus"]):
    print("nvidia-smi: the testbed's stand-in answers -L only", file=sys.stderr)
    sys.exit(2)
for index, device in enumerate(gpus):
    board = BOARDS.get(read(device, "vendor")[2:] + ":" + read(device, "device")[2:], "NVIDIA Graphics Device")
    print(f"GPU {{index}}: {{read(device, 'vgpu_type') or board}} (UUID: {{read(device, 'gpu_uuid')}})")
"""


def presented_devices(service_instance, vm, devices, host):
    """[{vendor, device, subsystem_vendor, subsystem_device, gpu_uuid, vgpu_type?}] of the VM's passthrough devices.

    devices: the VM's config.hardware.device; host: its runtime.host. A
    device the host did not bind cannot be on a powered-on VM's bus: that is
    the simulated hypervisor's error, raised rather than hidden.
    """
    passthrough = [device for device in devices or [] if isinstance(device, vim.vm.device.VirtualPCIPassthrough)]
    if not passthrough:
        return []
    host_view = vsphere.read_properties(service_instance, host, HOST_PROPERTIES)
    pci_devices = {device.id: device for device in host_view.get("hardware.pciDevice") or []}
    bindings = [binding for binding in host_view.get("config.assignableHardwareBinding") or []
                if binding.vm is not None and binding.vm._moId == vm._moId]
    shared_gpus = [info for info in host_view.get("config.graphicsInfo") or []
                   if any(user._moId == vm._moId for user in info.vm or [])]
    presented = []
    for device in passthrough:
        if isinstance(device.backing, VGPU):
            presented.append(_vgpu(vm, device, shared_gpus, pci_devices, host))
        elif isinstance(device.backing, DYNAMIC):
            presented.append(_bound_device(vm, device, bindings, pci_devices, host))
        else:
            raise GuestError(f"VM {vm._moId}: passthrough device {device.key} has a backing the testbed does not "
                             f"simulate: {type(device.backing).__name__}")
    return presented


def _ids(physical):
    """What the device's PCI configuration space says, as sysfs shows it."""
    return {name: f"0x{getattr(physical, attribute) & 0xFFFF:04x}" for name, attribute in (
        ("vendor", "vendorId"), ("device", "deviceId"),
        ("subsystem_vendor", "subVendorId"), ("subsystem_device", "subDeviceId"))}


def _bound_device(vm, device, bindings, pci_devices, host):
    """The host's physical device bound to this VM device: the binding for its key, else the VM's only binding."""
    matching = [binding for binding in bindings if getattr(binding, "deviceKey", None) == device.key] or (
        bindings if len(bindings) == 1 else [])
    for binding in matching:
        for pci_id in (getattr(binding, "pciId", None), binding.instanceId, device.backing.assignedId):
            if pci_id in pci_devices:
                # A passthrough GPU's UUID is the physical GPU's, whichever VM holds it.
                return dict(_ids(pci_devices[pci_id]), gpu_uuid=_gpu_uuid(f"{host._moId}/{pci_id}"))
    raise GuestError(f"VM {vm._moId} is powered on with passthrough device {device.key}, but host {host._moId}'s "
                     f"assignableHardwareBinding binds none of its hardware.pciDevice to it: {bindings}")


def _vgpu(vm, device, shared_gpus, pci_devices, host):
    profile = device.backing.vgpu
    if len(shared_gpus) != 1 or shared_gpus[0].pciId not in pci_devices:
        raise GuestError(f"VM {vm._moId} is powered on with vGPU {profile}, but {len(shared_gpus)} GPUs of host "
                         f"{host._moId} list it in config.graphicsInfo, not one of its hardware.pciDevice")
    family, _, size = profile.partition("_")
    return dict(_ids(pci_devices[shared_gpus[0].pciId]), vgpu_type=f"{family.upper()} {size.upper()}",
                # A vGPU's UUID is its own: the VM's device, not the physical GPU it is a slice of.
                gpu_uuid=_gpu_uuid(f"{vm._moId}/{device.key}"))


def _gpu_uuid(name):
    return f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, f'ray-vsphere-testbed:{name}')}"


def guest_files(devices):
    """{guest path: text}: the guest's PCI listing of these devices."""
    files = {}
    for index, device in enumerate(devices):
        for name, value in device.items():
            files[f"{GUEST_PCI_DIR}/0000:{FIRST_GUEST_BUS + index:02x}:00.0/{name}"] = f"{value}\n"
    return files


def board_names():
    """{"vendor:device": name} of the testbed's GPUs, as NVIDIA's driver names them: "GA100 [A100 PCIe 80GB]" in
    the PCI ID repository is the "NVIDIA A100 PCIe 80GB"."""
    return {f"{gpu['vendor_id']:04x}:{gpu['device_id']:04x}": "NVIDIA " + re.sub(r"^.*\[(.*)\]$", r"\1", gpu["device_name"])
            for host_gpus in gpus.gpu_layout()["hosts"].values() for gpu in host_gpus}


def nvidia_smi():
    return NVIDIA_SMI.format(bus=GUEST_PCI_DIR, boards=json.dumps(board_names()), vendor=f"0x{NVIDIA_VENDOR_ID:04x}")
