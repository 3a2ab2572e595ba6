"""node_deploy's ip_pool (_ip_pool): each problem refused before anything is made, naming ip_pool.<key>; the lowest
free addresses; the exhaustion failure; the duplicate rule; the network config and where the create spec records it."""

import base64
import json

import pytest
from deploy_request_tools import request
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ip_pool, _records
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_IP_POOL_EXHAUSTED, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS, value_problems

V4 = dict(cidr="198.18.5.0/24", range="198.18.5.200-198.18.5.254", gateway="198.18.5.1")
V6 = dict(cidr="2001:db8:5::/64", range="2001:db8:5::200-2001:db8:5::2ff", gateway="2001:db8:5::1")


def problems(**pool):
    return value_problems(dict(ip_pool=pool))


@pytest.mark.parametrize("pool, key, words", [
    (dict(cidr="198.18.5.0"), "ip_pool.cidr", "prefix length"),
    (dict(cidr="198.18.5.7/24"), "ip_pool.cidr", "198.18.5.0/24"),
    (dict(cidr="not-a-network/24"), "ip_pool.cidr", "must be a network"),
    (dict(cidr="2001:db8:5::1/64"), "ip_pool.cidr", "2001:db8:5::/64"),
    (dict(V4, range="198.18.6.200-198.18.6.210"), "ip_pool.range", "outside cidr 198.18.5.0/24"),
    (dict(V4, range="198.18.5.210-198.18.5.200"), "ip_pool.range", "reversed"),
    (dict(V4, range="198.18.5.200"), "ip_pool.range", "FIRST-LAST"),
    (dict(V4, range="198.18.5.200-198.18.5.255"), "ip_pool.range", "broadcast"),
    (dict(V4, range="2001:db8:5::1-2001:db8:5::9"), "ip_pool.range", "is IPv6, cidr 198.18.5.0/24 is IPv4"),
    (dict(V4, range=None, addresses=["198.18.5.9", "198.18.9.9"]), "ip_pool.addresses", "198.18.9.9 is outside"),
    (dict(V4, range=None, addresses=["nine"]), "ip_pool.addresses", "not an IP address"),
    (dict(V4, addresses=["198.18.5.9"]), "ip_pool.range", "not both"),
    (dict(V4, gateway="198.18.6.1"), "ip_pool.gateway", "outside cidr"),
    (dict(V6, gateway="198.18.5.1"), "ip_pool.gateway", "is IPv4, cidr 2001:db8:5::/64 is IPv6"),
    (dict(V4, dns_servers=["198.18.5.53", "dns.example.com"]), "ip_pool.dns_servers", "'dns.example.com' is not an IP"),
    (dict(V4, search_domains=["lab example"]), "ip_pool.search_domains", "not a DNS domain name"),
    (dict(cidr="198.18.5.0/24", addresses=["198.18.5.1"], gateway="198.18.5.1"), "ip_pool", "no address to hand out"),
])
def test_a_pool_deploy_cannot_use_is_refused_naming_its_key(pool, key, words):
    found = problems(**pool)
    assert {option for option, problem in found} == {key}, found
    assert words in found[0][1]


@pytest.mark.parametrize("pool", [V4, V6, dict(cidr="198.18.5.0/24"), dict(cidr="10.0.0.0/31"),
                                  dict(V4, range=None, addresses=["198.18.5.9"], dns_servers=["2001:db8::53"],
                                       search_domains=["lab.example.com", "example.com."])])
def test_a_good_pool_has_no_problem(pool):
    assert problems(**pool) == []


def test_the_callers_own_network_config_beside_a_pool_is_refused():
    found = value_problems(dict(ip_pool=V4, ovf_properties={"network-config": "x"}, guestinfo={"metadata": "e30="}))
    assert sorted(option for option, problem in found) == ["guestinfo", "ovf_properties"]


def test_the_deploy_request_fails_on_a_bad_pool_before_anything(tmp_path):
    with pytest.raises(RayVsphereError, match=r"ip_pool.gateway gateway 198.18.6.1 is outside cidr 198.18.5.0/24"):
        request(tmp_path, ip_pool=dict(V4, gateway="198.18.6.1", dns_servers=[], search_domains=[]))


def test_the_option_is_node_deploys_and_so_the_providers():
    assert set(DEPLOY_OPTIONS["ip_pool"]["options"]) == {"cidr", "range", "addresses", "gateway", "dns_servers",
                                                         "search_domains"}


def test_the_lowest_free_addresses_skip_the_recorded_ones_and_the_gateway():
    pool = _ip_pool.IpPool(dict(cidr="198.18.5.0/29", gateway="198.18.5.2"))
    assert pool.size == 5  # .1-.6 but the gateway
    assert pool.choose(3, ["198.18.5.1", "198.18.5.4", "10.0.0.1", "garbage"]) == ["198.18.5.3", "198.18.5.5",
                                                                                      "198.18.5.6"]
    listed = _ip_pool.IpPool(dict(cidr="198.18.5.0/24", addresses=["198.18.5.30", "198.18.5.10", "198.18.5.10"]))
    assert listed.choose(2, []) == ["198.18.5.10", "198.18.5.30"]


def test_ipv6_addresses_are_compared_as_addresses_not_text():
    pool = _ip_pool.IpPool(V6)
    assert pool.choose(2, ["2001:DB8:5:0::200"]) == ["2001:db8:5::201", "2001:db8:5::202"]


def test_an_exhausted_pool_fails_naming_the_pool_the_asked_and_the_free():
    pool = _ip_pool.IpPool(dict(V4, range="198.18.5.200-198.18.5.202"))
    with pytest.raises(RayVsphereError) as raised:
        pool.choose(3, ["198.18.5.201"])
    assert raised.value.details == dict(failure=FAILURE_IP_POOL_EXHAUSTED, asked=3, free=2)
    assert "198.18.5.0/24 (198.18.5.200-198.18.5.202) has 2 free addresses, 3 asked" in str(raised.value)


def test_the_vm_with_the_lower_moid_number_keeps_a_shared_address():
    records = {"vm-100": "198.18.5.200", "vm-99": "198.18.5.200", "vm-1000": "198.18.5.200", "vm-7": "198.18.5.201"}
    # vm-99 is older than vm-100 though "vm-100" < "vm-99" as text
    assert _ip_pool.duplicates(records) == {"vm-100": "198.18.5.200", "vm-1000": "198.18.5.200"}


def test_the_network_config_matches_the_mac_and_names_the_interface_eth0():
    pool = _ip_pool.IpPool(dict(V4, dns_servers=["198.18.5.53"], search_domains=["lab.example.com"]))
    assert pool.network_config("198.18.5.200", "00:50:56:AB:CD:EF") == {"version": 2, "ethernets": {"id0": {
        "match": {"macaddress": "00:50:56:ab:cd:ef"}, "set-name": "eth0", "addresses": ["198.18.5.200/24"],
        "gateway4": "198.18.5.1", "nameservers": {"addresses": ["198.18.5.53"], "search": ["lab.example.com"]}}}}
    bare = _ip_pool.IpPool(dict(cidr="2001:db8:5::/64")).network_config("2001:db8:5::9", "00:50:56:00:00:01")
    assert bare["ethernets"]["id0"] == {"match": {"macaddress": "00:50:56:00:00:01"}, "set-name": "eth0",
                                        "addresses": ["2001:db8:5::9/64"]}
    assert json.loads(base64.b64decode(_ip_pool.ovf_network_config(bare))) == {"network": bare}


def test_the_create_spec_records_the_address_and_the_metadata_carries_the_network(tmp_path):
    deploy = request(tmp_path, ip_pool=dict(V4, dns_servers=[], search_domains=[]))
    deploy.placed("group-v3", "vcenter-uuid")
    deploy.addresses["c1-head"] = "198.18.5.200"
    spec = vim.vm.ConfigSpec()
    deploy.configure(spec, "c1-head")
    assert {option.key: option.value for option in spec.extraConfig}[_records.IP_ADDRESS] == "198.18.5.200"
    network = deploy.pool.network_config("198.18.5.200", "00:50:56:00:00:01")
    metadata = json.loads(base64.b64decode(deploy.vmware_metadata("c1-head", network)[_records.GUESTINFO_METADATA]))
    assert metadata["network"] == network and metadata["local-hostname"] == "c1-head"
