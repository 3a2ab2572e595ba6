"""Test guests set their own address from cloud-init's network config, as a VM of the image does.

Each guest's NIC is a veth named ens192 with the VM's vcsim MAC, down at boot.
Real cloud-init renders the VM's network config (guestinfo.metadata's
`network`, or the OVF `network-config` property) with the ENI renderer,
renaming the NIC matched by MAC; ifupdown raises it. Without a config the
guest takes cloud-init's fallback, DHCP on ens192, and the testbed's DHCP
lease. The simulator reports to vcsim what the guest ended up with.
The network config here is written by hand, not by node_deploy.
"""

import base64
import ipaddress
import json
import subprocess
import uuid

import pytest
from pyVmomi import vim

from testbed import simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import GuestError, ssh
from testbed.guests.guest import NIC_NAME
from testbed.ova_import import import_ova

ENI_FILE = "/etc/network/interfaces.d/50-cloud-init"
DNS_SERVERS = ["198.51.100.53", "198.51.100.54"]
SEARCH_DOMAINS = ["ray.example", "nodes.ray.example"]


@pytest.fixture
def make_vm(service_instance, test_ova):
    """Import the test OVA, powered off: (vm, its NIC's MAC as vcsim assigned it)."""

    def make(name, style="ubuntu", properties=None, extra_config=None):
        ova = test_ova if style == "ubuntu" else build_test_ova(style=style)
        vm = import_ova(service_instance, ova, name, **simulator.default_placement(service_instance),
                        properties=properties or {}, extra_config=extra_config or {})
        [nic] = [device for device in vsphere.read_properties(service_instance, vm, ["config.hardware.device"])[
            "config.hardware.device"] if isinstance(device, vim.vm.device.VirtualEthernetCard)]
        return vm, nic.macAddress.lower()

    return make


def static_config(mac, address, network):
    """cloud-init network config v2 for one NIC matched by MAC, as the contract delivers it."""
    return {"version": 2, "ethernets": {"id0": {
        "match": {"macaddress": mac}, "set-name": "eth0",
        "addresses": [f"{address}/24"], "gateway4": network.gateway,
        "nameservers": {"addresses": DNS_SERVERS, "search": SEARCH_DOMAINS}}}}


def metadata_extra_config(name, public_key, network_config=None):
    """guestinfo.metadata for cloud-init's VMware datasource, written by hand."""
    metadata = {"instance-id": str(uuid.uuid4()), "local-hostname": name, "public-keys-data": public_key}
    if network_config is not None:
        metadata["network"] = network_config
    return {"guestinfo.metadata": base64.b64encode(json.dumps(metadata).encode()).decode(),
            "guestinfo.metadata.encoding": "base64"}


def reconfigure(service_instance, vm, **spec):
    vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(vim.vm.ConfigSpec(**spec)))


def power_on(service_instance, vm):
    vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())


def reported(service_instance, vm):
    props = vsphere.read_properties(service_instance, vm, ["guest.ipAddress", "guest.net"])
    return props.get("guest.ipAddress"), [list(net.ipAddress or []) for net in props.get("guest.net") or []]


def inside(guest, key, command):
    result = ssh(guest.address, key, command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def netns_addresses(guest):
    """The guest's global addresses, read by the test itself from its namespace."""
    listed = subprocess.run(["ip", "-n", guest.netns, "-o", "-4", "addr", "show", "scope", "global"],
                            capture_output=True, text=True, check=True).stdout
    return [(line.split()[1], line.split()[3]) for line in listed.splitlines()]


def assert_static_config_applied(service_instance, vm, guest, key, mac, address, network):
    assert guest.address == address
    links = [line.split(": ")[1].split("@")[0] for line in inside(guest, key, "ip -o link show").splitlines()]
    assert links == ["lo", "eth0"], "cloud-init renamed the NIC matched by MAC"
    assert mac in inside(guest, key, "cat /sys/class/net/eth0/address")
    assert f"inet {address}/24 " in inside(guest, key, "ip -o -4 addr show dev eth0")
    assert inside(guest, key, "ip route show default").split()[:5] == ["default", "via", network.gateway,
                                                                        "dev", "eth0"]
    eni = inside(guest, key, f"cat {ENI_FILE}")
    assert "iface eth0 inet static" in eni and f"address {address}/24" in eni, eni
    assert f"gateway {network.gateway}" in eni, eni
    assert f"dns-nameservers {' '.join(DNS_SERVERS)}" in eni and f"dns-search {' '.join(SEARCH_DOMAINS)}" in eni, eni
    assert netns_addresses(guest) == [("eth0", f"{address}/24")], "the guest has that address and no other"
    ip_address, guest_net = reported(service_instance, vm)
    assert ip_address == address, "vcsim reports the guest's own address"
    assert guest_net and guest_net[0] == [address]


def test_a_static_config_in_guestinfo_metadata_is_applied_by_the_guest(
        service_instance, guest_simulator, make_vm, ssh_key_pair):
    key, public = ssh_key_pair("static-metadata")
    network = guest_simulator.network
    address = network.static_range()[0]
    vm, mac = make_vm("static-metadata", style="packer")
    reconfigure(service_instance, vm, extraConfig=[
        vim.option.OptionValue(key=k, value=v)
        for k, v in metadata_extra_config("static-metadata", public, static_config(mac, address, network)).items()])
    power_on(service_instance, vm)
    guest = guest_simulator.wait_for_guest(vm._moId)

    assert_static_config_applied(service_instance, vm, guest, key, mac, address, network)
    assert "DataSourceVMware" in inside(guest, key, "cloud-init status --long")

    # A power cycle boots the same disk: the NIC is ens192 again, cloud-init renames it, ifup applies the file.
    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    guest_simulator.wait_for_no_guest(vm._moId)
    power_on(service_instance, vm)
    assert_static_config_applied(service_instance, vm, guest_simulator.wait_for_guest(vm._moId), key, mac, address,
                                 network)


def test_a_static_config_in_the_ovf_network_config_property_is_applied_by_the_guest(
        service_instance, guest_simulator, make_vm, ssh_key_pair):
    key, public = ssh_key_pair("static-ovf")
    network = guest_simulator.network
    address = network.static_range()[1]
    vm, mac = make_vm("static-ovf", properties={
        "public-keys": public, "hostname": "static-ovf", "instance-id": str(uuid.uuid4())})
    encoded = base64.b64encode(json.dumps({"network": static_config(mac, address, network)}).encode()).decode()
    [declared] = [prop for prop in vsphere.read_properties(service_instance, vm, ["config.vAppConfig"])[
        "config.vAppConfig"].property if prop.id == "network-config"]
    reconfigure(service_instance, vm, vAppConfig=vim.vApp.VmConfigSpec(property=[vim.vApp.PropertySpec(
        operation="edit", info=vim.vApp.PropertyInfo(key=declared.key, value=encoded))]))
    power_on(service_instance, vm)
    guest = guest_simulator.wait_for_guest(vm._moId)

    assert_static_config_applied(service_instance, vm, guest, key, mac, address, network)
    assert "DataSourceOVF" in inside(guest, key, "cloud-init status --long")


def test_a_vm_without_network_config_takes_the_testbeds_dhcp_lease(
        service_instance, guest_simulator, make_vm, ssh_key_pair):
    key, public = ssh_key_pair("dhcp")
    network = guest_simulator.network
    vm, mac = make_vm("dhcp-guest", properties={
        "public-keys": public, "hostname": "dhcp-guest", "instance-id": str(uuid.uuid4())})
    power_on(service_instance, vm)
    guest = guest_simulator.wait_for_guest(vm._moId)

    leased = ipaddress.ip_address(guest.address)
    subnet = ipaddress.ip_network(network.cidr)
    assert leased in subnet and 10 <= int(leased) - int(subnet.network_address) <= 199, guest.address
    assert leased < ipaddress.ip_address(network.static_range()[0])
    eni = inside(guest, key, f"cat {ENI_FILE}")
    assert f"iface {NIC_NAME} inet dhcp" in eni, "cloud-init's fallback: DHCP on the first NIC"
    assert mac in inside(guest, key, f"cat /sys/class/net/{NIC_NAME}/address")
    assert f"inet {guest.address}/24 " in inside(guest, key, f"ip -o -4 addr show dev {NIC_NAME}")
    assert netns_addresses(guest) == [(NIC_NAME, f"{guest.address}/24")]
    assert reported(service_instance, vm)[0] == guest.address


def test_a_static_config_for_another_mac_leaves_the_guest_without_an_address_and_others_come_up(
        service_instance, guest_simulator, make_vm, ssh_key_pair):
    _, public = ssh_key_pair("wrong-mac")
    network = guest_simulator.network
    vm, mac = make_vm("wrong-mac", style="packer")
    other_mac = "00:50:56:3f:00:01" if mac != "00:50:56:3f:00:01" else "00:50:56:3f:00:02"
    reconfigure(service_instance, vm, extraConfig=[
        vim.option.OptionValue(key=k, value=v) for k, v in metadata_extra_config(
            "wrong-mac", public, static_config(other_mac, network.static_range()[0], network)).items()])
    power_on(service_instance, vm)

    with pytest.raises(GuestError, match=f"VM {vm._moId} booted but has no address .* MAC {mac}"):
        guest_simulator.wait_for_guest(vm._moId, timeout=20)
    guest = guest_simulator.guests()[vm._moId]
    assert guest.addresses == [] and netns_addresses(guest) == []
    assert reported(service_instance, vm)[0] in (None, ""), "vcsim reports no address"

    # The watch loop goes on: the next VM's guest comes up and is reported.
    key, public = ssh_key_pair("after-wrong-mac")
    after, _ = make_vm("after-wrong-mac", properties={
        "public-keys": public, "hostname": "after-wrong-mac", "instance-id": str(uuid.uuid4())})
    power_on(service_instance, after)
    assert inside(guest_simulator.wait_for_guest(after._moId), key, "hostname").strip() == "after-wrong-mac"
    assert guest_simulator.errors == []
