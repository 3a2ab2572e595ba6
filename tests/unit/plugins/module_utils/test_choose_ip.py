"""The address a node is reached on, from what its guest reports."""

import ipaddress

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._nodes import choose_ip


def networks(*cidrs):
    return [ipaddress.ip_network(cidr) for cidr in cidrs]


def test_the_chosen_address_is_normalized_not_the_guests_text():
    assert choose_ip(["2001:DB8:0:0::0001"]) == "2001:db8::1"
    assert choose_ip([" 10.0.0.5\n"]) == "10.0.0.5"


def test_what_cannot_reach_the_node_from_elsewhere_is_never_chosen():
    assert choose_ip(["127.0.0.1", "::1", "169.254.3.4", "fe80::1%eth0", "0.0.0.0", "not an address", "10.0.0.5; rm"]) \
        is None
    assert choose_ip(["169.254.3.4", "fe80::1%eth0", "2001:db8::7"]) == "2001:db8::7"


def test_ipv4_first_then_preferred_networks_first_and_ignored_ones_never():
    reported = ["2001:db8::7", "192.168.1.4", "10.1.2.3"]
    assert choose_ip(reported) == "10.1.2.3"
    assert choose_ip(reported, preferred=networks("192.168.0.0/16")) == "192.168.1.4"
    assert choose_ip(reported, preferred=networks("2001:db8::/32")) == "2001:db8::7"
    assert choose_ip(reported, ignored=networks("10.0.0.0/8", "192.168.0.0/16")) == "2001:db8::7"
