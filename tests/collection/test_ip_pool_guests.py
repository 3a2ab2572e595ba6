"""node_deploy's ip_pool delivery applied by real test guests: cloud-init renders what node_deploy wrote and ifupdown
raises it, on both paths (cloud-init 22.4 reads the OVF environment's network-config first).

Oracles: the address each VM records at vcsim, and what the guest's own network namespace holds (`ip addr`), never
node_deploy's result.
"""

import subprocess

import pytest
from conftest import deploy_task, task
from pyVmomi import vim

from testbed import vsphere


def netns_addresses(guest):
    listed = subprocess.run(["ip", "-n", guest.netns, "-o", "-4", "addr", "show", "scope", "global"],
                            capture_output=True, text=True, check=True).stdout
    return [(line.split()[1], line.split()[3]) for line in listed.splitlines()]


@pytest.mark.parametrize("clone_from_template", [True, False])
def test_the_guests_raise_the_pool_addresses_node_deploy_gave_them(play, test_ova, service_instance, guest_simulator,
                                                                  clone_from_template):
    network = guest_simulator.network
    first, last = network.static_range()
    cluster = "guests-clone" if clone_from_template else "guests-import"
    result = play([deploy_task(cluster, test_ova, count=2, request_id="g", clone_from_template=clone_from_template,
                               wait_for_ip=True, ip_timeout=240,
                               ip_pool=dict(cidr=network.cidr, range=f"{first}-{last}", gateway=network.gateway))]).result
    assert result.get("failed") is not True, result.get("msg")
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name", "config.extraConfig",
                                                                           "guest.ipAddress"])
    nodes = {vm: props for vm, props in found.items() if props["name"].startswith(cluster + "-")}
    assert len(nodes) == 2
    held = []
    for vm, props in nodes.items():
        recorded = {option.key: option.value for option in props["config.extraConfig"]}["ray-vsphere.ip-address"]
        guest = guest_simulator.wait_for_guest(vm._moId)
        assert netns_addresses(guest) == [("eth0", f"{recorded}/24")], "the guest holds its pool address, no other"
        assert props["guest.ipAddress"] == recorded, "and vcsim reports what the guest has"
        held.append(recorded)
    assert len(set(held)) == 2 and all(address.rsplit(".", 1)[0] == first.rsplit(".", 1)[0] for address in held)
    play([task("node_delete", cluster_name=cluster, all_nodes=True)])
