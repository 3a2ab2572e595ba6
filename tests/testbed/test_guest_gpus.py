"""A test guest sees the GPUs vCenter gave its VM: nvidia-smi in the guest lists what its host bound at power-on.

The VMs are made GPU VMs here as vCenter's API makes them (a VirtualPCIPassthrough
device, memory reservation locked to the maximum, hardware version 17), on
the fake GPU hosts of testbed/gpu_hosts.yml; the names and ids expected come
from that layout.
"""

import re

import pytest
from pyVmomi import vim

from testbed import gpus, simulator, vsphere
from testbed.guests import ssh

DRIVER_NOT_LOADED = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
DYNAMIC_DIRECTPATH_MIN_VERSION = 17
VGPU_PROFILE_GIB = 20


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    """The module's vcsim (and so its guest simulator's), announcing an API that has GPUs."""
    with simulator.Vcsim(api_version=gpus.API_VERSION) as sim:
        yield sim


def first_host_with(mode):
    """(host name, its first GPU of that mode) in the testbed's layout."""
    return next((host, gpu) for host, host_gpus in gpus.gpu_layout()["hosts"].items()
                for gpu in host_gpus if gpu["mode"] == mode)


def make_gpu_vm(service_instance, vm, host_name, backing):
    """Move a powered-off VM to the host and give it one passthrough device with what vCenter requires of it."""
    host = vsphere.find_by_name(service_instance, vim.HostSystem, host_name)
    vsphere.wait_for_task(service_instance, vm.RelocateVM_Task(vim.vm.RelocateSpec(host=host)))
    if int(vm.config.version.split("-")[1]) < DYNAMIC_DIRECTPATH_MIN_VERSION:
        vsphere.wait_for_task(service_instance, vm.UpgradeVM_Task(f"vmx-{DYNAMIC_DIRECTPATH_MIN_VERSION}"))
    device = vim.vm.device.VirtualPCIPassthrough(key=-100, backing=backing)
    vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        memoryReservationLockedToMax=True,
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation=vim.vm.device.VirtualDeviceSpec.Operation.add,
                                                      device=device)])))
    vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())


def listed_gpus(address, key):
    result = ssh(address, key, "nvidia-smi -L")
    return result.returncode, result.stdout.splitlines()


def test_nvidia_smi_in_a_guest_lists_the_passthrough_gpu_or_vgpu_its_host_bound_and_fails_without_one(
        service_instance, guest_simulator, deploy_test_vm, ssh_key_pair):
    key, public = ssh_key_pair("gpu")
    passthrough_host, a100 = first_host_with("passthrough")
    vgpu_host, shared_gpu = first_host_with("vgpu")
    (profile,) = [p["name"] for p in shared_gpu["vgpu_profiles"] if p["framebuffer_gib"] == VGPU_PROFILE_GIB]

    passthrough = deploy_test_vm("gpu-passthrough", public_key=public, power_on=False)
    make_gpu_vm(service_instance, passthrough, passthrough_host, vim.vm.device.VirtualPCIPassthrough.DynamicBackingInfo(
        deviceName="", customLabel=a100["custom_label"],
        allowedDevice=[vim.vm.device.VirtualPCIPassthrough.AllowedDevice(
            vendorId=a100["vendor_id"], deviceId=a100["device_id"])]))
    vgpu = deploy_test_vm("gpu-vgpu", public_key=public, power_on=False)
    make_gpu_vm(service_instance, vgpu, vgpu_host, vim.vm.device.VirtualPCIPassthrough.VmiopBackingInfo(vgpu=profile))
    plain = deploy_test_vm("no-gpu", public_key=public)

    code, lines = listed_gpus(guest_simulator.wait_for_guest(passthrough._moId).address, key)
    assert code == 0 and len(lines) == 1, lines
    assert re.fullmatch(r"GPU 0: NVIDIA (.+) \(UUID: GPU-[0-9a-f-]{36}\)", lines[0]), lines
    assert re.search(rf"\b{a100['model']}\b", lines[0]) and f"{a100['memory_gib']}GB" in lines[0], \
        f"not the layout's {a100['device_name']}: {lines}"

    code, lines = listed_gpus(guest_simulator.wait_for_guest(vgpu._moId).address, key)
    assert code == 0 and len(lines) == 1, lines
    assert re.fullmatch(rf"GPU 0: GRID {shared_gpu['model']}-{VGPU_PROFILE_GIB}C \(UUID: GPU-[0-9a-f-]{{36}}\)",
                        lines[0]), lines

    no_gpu = ssh(guest_simulator.wait_for_guest(plain._moId).address, key, "nvidia-smi -L")
    assert no_gpu.returncode == 9 and no_gpu.stdout.startswith(DRIVER_NOT_LOADED), no_gpu.stdout + no_gpu.stderr

    # The listing is the boot's: once the device is taken out and the VM powered on again, the driver finds none.
    vsphere.wait_for_task(service_instance, passthrough.PowerOffVM_Task())
    guest_simulator.wait_for_no_guest(passthrough._moId)
    (device,) = [d for d in passthrough.config.hardware.device if isinstance(d, vim.vm.device.VirtualPCIPassthrough)]
    vsphere.wait_for_task(service_instance, passthrough.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        vim.vm.device.VirtualDeviceSpec(operation=vim.vm.device.VirtualDeviceSpec.Operation.remove, device=device)])))
    vsphere.wait_for_task(service_instance, passthrough.PowerOnVM_Task())
    code, lines = listed_gpus(guest_simulator.wait_for_guest(passthrough._moId).address, key)
    assert code == 9 and lines[0].startswith(DRIVER_NOT_LOADED), lines
    for vm in (passthrough, vgpu, plain):
        vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
        vsphere.wait_for_task(service_instance, vm.Destroy_Task())
