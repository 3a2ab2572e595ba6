# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of module_utils/_gpu.py's GPU_OPTIONS, placed by module_utils/_gpu_placement.py.
    DOCUMENTATION = r"""
options:
  gpus:
    description:
      - GPUs each new node gets by Dynamic DirectPath I/O (a C(VirtualPCIPassthrough) with a dynamic backing, whose
        device vCenter binds at power-on among the free ones of the VM's host that match).
      - Each entry matches devices by O(gpus[].vendor_id) and O(gpus[].device_id), by O(gpus[].label), or by all
        three, and gives each node O(gpus[].count) of them. All entries name one O(gpus[].model), since a Ray node has
        one C(accelerator_type).
      - The names follow the vSphere API (C(allowedDevice) vendorId/deviceId, C(customLabel)) and CAPV's
        C(pciDevices) (vendorId, deviceId, customLabel). vmware.vmware (2.6) has no GPU module;
        community.vmware's C(vmware_guest_vgpu) names a profile C(vgpu), here O(vgpu_profile).
      - "Each new node: its virtual hardware is upgraded to version 17 (C(vmx-17), vSphere 7.0) when lower, as Dynamic
        DirectPath needs; its memory is fully reserved (C(memoryReservationLockedToMax)), as passthrough needs; and it
        gets a 64-bit MMIO window (C(pciPassthru.use64bitMMIO=TRUE), C(pciPassthru.64bitMMIOSizeGB)) of its GPUs'
        total memory rounded up to a power of two, VMware's rule for large-BAR devices (KB 2142307)."
      - "Placement: without DRS on O(cluster), each new node goes to a host with enough free matching devices, counted
        from the hosts' C(config.assignableHardwareBinding) and this call's other nodes, so the nodes of one call never
        count on one device twice. With DRS on, vCenter picks the host at power-on. If a device was taken meanwhile
        (another caller powered a VM on), the node is made again on the next host with a free one."
      - When no host has a free device, the deploy fails with C(failure=gpu_capacity) and a message naming the model,
        and removes every VM it made.
      - The devices are added after the node is made (clone or import), so the template stays without GPUs and every
        node type clones it. Passthrough VMs cannot be snapshotted, suspended or moved while on.
      - Mutually exclusive with O(vgpu_profile).
    type: list
    version_added: 0.4.0
    elements: dict
    suboptions:
      model:
        description:
          - The GPU model, as Ray's C(accelerator_type) names it (C(A100), C(H100), C(L4)); the Ray provider gives
            the node the resource C(accelerator_type:<model>).
        type: str
        required: true
      vendor_id:
        description: The devices' PCI vendor id (C(0x10de) for NVIDIA), 0 to 0xFFFF. Given with O(gpus[].device_id).
        type: int
      device_id:
        description: The devices' PCI device id (C(0x20b5) for an A100 80GB PCIe), 0 to 0xFFFF. Given with O(gpus[].vendor_id).
        type: int
      label:
        description:
          - The hardware label the administrator gave the devices on their hosts (Configure > PCI Devices; the host's
            C(config.pciPassthruInfo[].hardwareLabel)), matched by the dynamic backing's C(customLabel).
        type: str
      count:
        description: How many such devices each node gets.
        type: int
        default: 1
      memory_gb:
        description:
          - Each device's memory in GB, to size the 64-bit MMIO window; 80 when not given (enough for one 80 GB GPU,
            a 128 GB window).
        type: int
  vgpu_profile:
    description:
      - An NVIDIA vGPU profile each new node gets one vGPU of (a C(VirtualPCIPassthrough) with a C(vmiop) backing),
        such as C(grid_a100-20c); the profiles a host offers are its C(config.sharedPassthruGpuTypes).
      - As for O(gpus), the memory is reserved, the hardware upgraded to C(vmx-17) when lower, and the MMIO window is
        the profile's framebuffer rounded up to a power of two (32 GB for C(grid_a100-20c)).
      - "Placement without DRS: a host offering the profile with room on one of its GPUs, counted from its
        C(config.graphicsInfo) and this call's other nodes. A GPU holds one profile size at a time (NVIDIA's default
        same-size mode; C(mixedSize) GPUs share by framebuffer), as many as its memory over the profile's framebuffer:
        two C(grid_a100-20c) on a 40 GB A100."
      - Mutually exclusive with O(gpus).
    type: str
    version_added: 0.4.0
  vgpu_model:
    description:
      - The model of O(vgpu_profile)'s GPU, as Ray's C(accelerator_type) names it.
      - Read from the profile's name when not given (C(grid_a100-20c) is C(A100)); required for a profile named
        otherwise.
    type: str
    version_added: 0.4.0
"""
