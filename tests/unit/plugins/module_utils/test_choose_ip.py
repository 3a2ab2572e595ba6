"""The address a node is reached on, from what its guest reports."""

import ipaddress

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes
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


def test_ipv4_first_then_preferred_networks_first_and_ignored_ones_last():
    reported = ["2001:db8::7", "192.168.1.4", "10.1.2.3"]
    assert choose_ip(reported) == "10.1.2.3"
    assert choose_ip(reported, preferred=networks("192.168.0.0/16")) == "192.168.1.4"
    assert choose_ip(reported, preferred=networks("2001:db8::/32")) == "2001:db8::7"
    assert choose_ip(reported, ignored=networks("10.0.0.0/8", "192.168.0.0/16")) == "2001:db8::7"
    assert choose_ip(reported, ignored=networks("10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32")) == "10.1.2.3"


DEFAULTS = networks(*_nodes.DEFAULT_IGNORED_CIDRS)


def test_a_node_whose_only_address_is_in_a_default_ignored_network_gets_it():
    """A site whose LAN is Podman's default 10.88.0.0/16 (issue 19: 600 s of "no usable IP", then every VM removed)."""
    assert choose_ip(["10.88.4.7"], ignored=DEFAULTS) == "10.88.4.7"
    assert choose_ip(["fe80::250:56ff:fe01:2", "10.88.4.7", "127.0.0.1"], ignored=DEFAULTS) == "10.88.4.7"


def test_docker0_and_a_lan_address_give_the_lan_address_whatever_the_order():
    assert choose_ip(["172.17.0.1", "192.168.40.9"], ignored=DEFAULTS) == "192.168.40.9"
    assert choose_ip(["192.168.40.9", "172.17.0.1"], ignored=DEFAULTS) == "192.168.40.9"
    assert choose_ip(["172.17.0.1", "2001:db8::9"], ignored=DEFAULTS) == "2001:db8::9", "an ignored IPv4 ranks after IPv6"


def test_loopback_and_link_local_stay_excluded_even_when_alone_and_not_listed():
    assert choose_ip(["127.0.0.1", "169.254.7.7", "fe80::1"], ignored=[]) is None
    assert choose_ip(["169.254.7.7"], ignored=DEFAULTS) is None


def test_a_preferred_network_wins_over_the_ignored_list():
    assert choose_ip(["192.168.40.9", "10.88.4.7"], preferred=networks("10.88.0.0/16"), ignored=DEFAULTS) == "10.88.4.7"
