"""The testbed's vcsim gives NICs MACs as vCenter assigns them (testbed/vcsim/mac.go).

vCenter's VMware OUI allocation: 00:50:56:XX:YY:ZZ with XX = 0x80 + the
vCenter instance ID, unique per vCenter, addressType "assigned"; a clone gets
new MACs; a manual MAC is the user's. Upstream vcsim v0.56.0 derives MACs from
three characters of the VM's UUID and copies a clone's from its source.
"""

import pytest
from pyVmomi import vim

from testbed import simulator, vsphere
from testbed.ova_import import import_ova

VCENTER_MAC_FIRST = "00:50:56:80:00:00"
VCENTER_MAC_LAST = "00:50:56:bf:ff:ff"
CLONES = 24
IMPORTS = 4
MANUAL_MAC = "00:50:56:3F:12:34"  # XX <= 3F: the range vSphere leaves to static MACs


def mac_number(mac):
    return int(mac.replace(":", ""), 16)


def nics_of(service_instance, vm):
    """[(device key, MAC, addressType)] of the VM's NICs, and {device key: MAC} of its guest.net."""
    props = vsphere.read_properties(service_instance, vm, ["config.hardware.device", "guest.net"])
    nics = [(device.key, device.macAddress, device.addressType) for device in props["config.hardware.device"]
            if isinstance(device, vim.vm.device.VirtualEthernetCard)]
    return nics, {net.deviceConfigId: net.macAddress for net in props.get("guest.net") or []}


def assert_vcenter_assigned(service_instance, vm):
    nics, guest_net = nics_of(service_instance, vm)
    assert nics, f"{vm._moId} has a NIC"
    for key, mac, address_type in nics:
        assert address_type == "assigned", (vm._moId, key, address_type)
        assert mac_number(VCENTER_MAC_FIRST) <= mac_number(mac) <= mac_number(VCENTER_MAC_LAST), mac
        assert guest_net.get(key) == mac.lower(), f"guest.net shows the device's MAC: {guest_net} vs {mac}"
    return [mac.lower() for _, mac, _ in nics]


@pytest.fixture
def placement(service_instance):
    return simulator.default_placement(service_instance)


def test_imports_and_clones_of_one_template_all_get_distinct_vcenter_macs(service_instance, test_ova, placement):
    imported = [import_ova(service_instance, test_ova, f"mac-import-{i}", **placement) for i in range(IMPORTS)]
    template = imported[0]
    template.MarkAsTemplate()
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=placement["resource_pool"]))
    clones = [vsphere.wait_for_task(service_instance, template.CloneVM_Task(placement["folder"], f"mac-clone-{i}",
                                                                             spec))
              for i in range(CLONES)]

    macs = {}
    for vm in imported + clones:
        for mac in assert_vcenter_assigned(service_instance, vm):
            assert mac not in macs, f"{vm._moId} has {mac}, as {macs.get(mac)} has"
            macs[mac] = vm._moId
    # One vCenter: one instance ID, so one fourth octet.
    assert len({mac.split(":")[3] for mac in macs}) == 1, sorted(macs)


def test_a_vm_made_with_a_manual_mac_keeps_it_and_its_clone_keeps_it_too(service_instance, placement):
    nic = vim.vm.device.VirtualVmxnet3(
        key=-1, addressType="manual", macAddress=MANUAL_MAC,
        backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=simulator.NETWORK))
    config = vim.vm.ConfigSpec(
        name="mac-manual", guestId="ubuntu64Guest", numCPUs=1, memoryMB=256,
        files=vim.vm.FileInfo(vmPathName=f"[{simulator.DATASTORES[0]}]"),
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)])
    vm = vsphere.wait_for_task(service_instance, placement["folder"].CreateVM_Task(config, placement["resource_pool"]))
    clone = vsphere.wait_for_task(service_instance, vm.CloneVM_Task(
        placement["folder"], "mac-manual-clone",
        vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=placement["resource_pool"]))))

    for each in (vm, clone):
        nics, guest_net = nics_of(service_instance, each)
        assert [(mac, address_type) for _, mac, address_type in nics] == [(MANUAL_MAC, "manual")]
        assert list(guest_net.values()) == [MANUAL_MAC.lower()]


def test_a_nic_added_by_reconfigure_gets_a_new_mac_and_an_edit_keeps_a_nics_mac(
        service_instance, test_ova, placement):
    vm = import_ova(service_instance, test_ova, "mac-reconfigure", **placement)
    [first] = assert_vcenter_assigned(service_instance, vm)
    added = vim.vm.device.VirtualVmxnet3(
        key=-2, backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=simulator.NETWORK))
    vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=added)])))
    macs = assert_vcenter_assigned(service_instance, vm)
    assert macs[0] == first and len(set(macs)) == 2, macs

    nics, _ = nics_of(service_instance, vm)
    device = next(device for device in vsphere.read_properties(service_instance, vm, ["config.hardware.device"])[
        "config.hardware.device"] if device.key == nics[0][0])
    device.macAddress = ""  # a client that sends the NIC back without its MAC: vCenter keeps the assigned one
    vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="edit", device=device)])))
    assert sorted(assert_vcenter_assigned(service_instance, vm)) == sorted(macs)

