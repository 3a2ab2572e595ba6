# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Static addresses from a pool: node_deploy's ip_pool option, its checks, the choice, and cloud-init's network config.

vCenter is the ledger: every node made with a pool records its address in
its create spec (extraConfig _records.IP_ADDRESS), so the free addresses are
the pool minus what the VMs of the cluster's folder record, and a destroyed VM
frees its address by construction. No IPAM service, no IpPoolManager (its
AllocateIpv4Address is for vCenter extensions only).

Two callers that read the folder at once may pick one address. Each re-reads
the records once its VMs exist (before power-on): where two VMs record one
address, the VM with the LOWER moid number keeps it (vCenter hands out moids
from an increasing sequence, so the VM made first keeps it, and every caller
that sees both reaches the same verdict without talking to the other); the
other is destroyed and made again with another address (duplicates()). A
moved address would be unsound under that rule: a third caller may have
checked before the move.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import ipaddress
import json
import re

from ansible.module_utils.six import text_type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_IP_POOL_EXHAUSTED, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

IP_POOL_OPTIONS = dict(
    ip_pool=dict(type="dict", options=dict(
        cidr=dict(type="str", required=True),
        range=dict(type="str"),
        addresses=dict(type="list", elements="str"),
        gateway=dict(type="str"),
        dns_servers=dict(type="list", elements="str", default=[]),
        search_domains=dict(type="list", elements="str", default=[]),
    )),
)

# The OVF property cloud-init's OVF datasource reads network config from (base64 YAML with a top-level `network`).
OVF_NETWORK_CONFIG = "network-config"
# The interface name the matched NIC gets, whatever the guest's naming scheme would call it.
INTERFACE_NAME = "eth0"
DOMAIN_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _address(text):
    return ipaddress.ip_address(text_type(text).strip())


def _is_host(network, address):
    """Whether address is one a host of network can have: not an IPv4 network's network or broadcast address,
    nor an IPv6 network's subnet-router anycast address."""
    if address not in network:
        return False
    if network.version == 4 and network.prefixlen < 31:
        return address not in (network.network_address, network.broadcast_address)
    if network.version == 6 and network.prefixlen < 127:
        return address != network.network_address
    return True


def _network(cidr):
    """(network, problem) of the cidr text."""
    if "/" not in text_type(cidr or ""):
        return None, "must be a network with its prefix length (198.18.5.0/24, 2001:db8:5::/64), not %r" % cidr
    try:
        return ipaddress.ip_network(text_type(cidr).strip(), strict=True), None
    except ValueError as error:
        hint = ""
        try:
            hint = " (the network of that address is %s)" % ipaddress.ip_network(text_type(cidr).strip(), strict=False)
        except ValueError:
            pass
        return None, "must be a network, not %r: %s%s" % (cidr, error, hint)


def _in_pool_problem(network, text, what):
    """Why text cannot be one of network's host addresses; None when it can."""
    try:
        address = _address(text)
    except ValueError:
        return "%s %r is not an IP address" % (what, text)
    if address.version != network.version:
        return "%s %s is IPv%d, cidr %s is IPv%d" % (what, address, address.version, network, network.version)
    if address not in network:
        return "%s %s is outside cidr %s" % (what, address, network)
    if not _is_host(network, address):
        return "%s %s is not a host address of %s (its network or broadcast address)" % (what, address, network)
    return None


def pool_problems(params):
    """(option, problem) for an ip_pool node_deploy cannot use, each naming ip_pool.<key>; [] without a pool."""
    pool = params.get("ip_pool")
    if not pool:
        return []
    network, problem = _network(pool.get("cidr"))
    if problem:
        return [("ip_pool.cidr", problem)]
    problems = []
    if pool.get("range") and pool.get("addresses"):
        problems.append(("ip_pool.range", "give range or addresses, not both"))
    if pool.get("range"):
        problems.extend(("ip_pool.range", problem) for problem in _range_problems(network, pool["range"]))
    for text in pool.get("addresses") or []:
        problem = _in_pool_problem(network, text, "address")
        if problem:
            problems.append(("ip_pool.addresses", problem))
    if pool.get("gateway"):
        problem = _in_pool_problem(network, pool["gateway"], "gateway")
        if problem:
            problems.append(("ip_pool.gateway", problem))
    for text in pool.get("dns_servers") or []:
        try:
            _address(text)
        except ValueError:
            problems.append(("ip_pool.dns_servers", "%r is not an IP address" % text))
    for domain in pool.get("search_domains") or []:
        if not all(DOMAIN_LABEL.match(label) for label in text_type(domain).rstrip(".").split(".")):
            problems.append(("ip_pool.search_domains", "%r is not a DNS domain name" % domain))
    if not problems:
        checked = IpPool(pool)
        if checked.size == 0:
            problems.append(("ip_pool", "holds no address to hand out (%s)" % checked.describe()))
    problems.extend(pass_through_problems(params))
    return problems


def _range_problems(network, text):
    parts = text_type(text).split("-")
    if len(parts) != 2:
        return ["must be FIRST-LAST (198.18.5.200-198.18.5.254), not %r" % text]
    problems = [problem for problem in (_in_pool_problem(network, part, end) for part, end in zip(parts, ("first", "last")))
                if problem]
    if not problems and _address(parts[0]) > _address(parts[1]):
        problems.append("%s is reversed: its first address is after its last" % text)
    return problems


def pass_through_problems(params):
    """The caller's own network config beside a pool: the node would get two, and the pool's must win everywhere."""
    problems = []
    if OVF_NETWORK_CONFIG in (params.get("ovf_properties") or {}):
        problems.append(("ovf_properties", "%s: ip_pool writes it (with the node's MAC): give one of the two"
                         % OVF_NETWORK_CONFIG))
    if set(params.get("guestinfo") or {}) & set(("metadata", "guestinfo.metadata")):
        problems.append(("guestinfo", "metadata: ip_pool writes guestinfo.metadata's network (with the node's MAC, "
                                      "beside the node's identity): give one of the two"))
    return problems


class IpPool(object):
    """A checked ip_pool (pool_problems found nothing): its addresses as integer spans, lowest first."""

    def __init__(self, pool):
        self.network = ipaddress.ip_network(text_type(pool["cidr"]).strip())
        self.gateway = _address(pool["gateway"]) if pool.get("gateway") else None
        self.dns_servers = [text_type(_address(text)) for text in pool.get("dns_servers") or []]
        self.search_domains = list(pool.get("search_domains") or [])
        self.text = pool.get("range") or ", ".join(pool.get("addresses") or [])
        if pool.get("range"):
            first, last = (_address(part) for part in pool["range"].split("-"))
            self.spans = [(int(first), int(last))]
        elif pool.get("addresses"):
            self.spans = [(int(address), int(address)) for address in sorted(set(_address(a) for a in pool["addresses"]))]
        else:
            network = self.network
            first = int(network.network_address) + (0 if _is_host(network, network.network_address) else 1)
            last = int(network.broadcast_address) - (0 if _is_host(network, network.broadcast_address) else 1)
            self.spans = [(first, last)]
        self.excluded = set([int(self.gateway)]) if self.gateway is not None else set()

    @property
    def _address_class(self):
        return ipaddress.IPv4Address if self.network.version == 4 else ipaddress.IPv6Address

    def describe(self):
        return "%s%s" % (self.network, " (%s)" % self.text if self.text else "")

    def __contains__(self, address):
        number = int(address)
        return number not in self.excluded and any(first <= number <= last for first, last in self.spans)

    @property
    def size(self):
        return sum(last - first + 1 for first, last in self.spans) - len(
            [number for number in self.excluded if any(first <= number <= last for first, last in self.spans)])

    def taken(self, recorded):
        """The pool's addresses among recorded (texts read from the VMs' records; others are ignored)."""
        found = set()
        for text in recorded:
            try:
                address = _address(text)
            except ValueError:
                continue  # not ours to judge: a record someone else wrote
            if address.version == self.network.version and address in self:
                found.add(address)
        return found

    def choose(self, count, recorded):
        """The `count` lowest free addresses (texts), free meaning not in recorded; fails naming the pool when too few."""
        taken = set(int(address) for address in self.taken(recorded))
        chosen = []
        for first, last in self.spans:
            number = first
            while number <= last and len(chosen) < count:
                if number not in taken and number not in self.excluded:
                    chosen.append(text_type(self._address_class(number)))
                number += 1
        if len(chosen) < count:
            free = self.size - len(taken)
            raise RayVsphereError("ip_pool %s has %d free address%s, %d asked: no node was made. Delete nodes "
                                  "of this folder's clusters or widen the pool"
                                  % (self.describe(), free, "" if free == 1 else "es", count),
                                  failure=FAILURE_IP_POOL_EXHAUSTED, asked=count, free=free)
        return chosen

    def network_config(self, address, mac):
        """cloud-init's network config version 2 for the NIC of MAC `mac` holding `address`, named eth0.

        gateway4/6 rather than routes: Debian's ENI renderer writes routes as
        `route add`, which needs net-tools; a gateway becomes ifupdown's own
        `gateway` line.
        """
        ethernet = {"match": {"macaddress": mac.lower()}, "set-name": INTERFACE_NAME,
                    "addresses": ["%s/%d" % (address, self.network.prefixlen)]}
        if self.gateway is not None:
            ethernet["gateway%d" % self.network.version] = text_type(self.gateway)
        nameservers = {}
        if self.dns_servers:
            nameservers["addresses"] = list(self.dns_servers)
        if self.search_domains:
            nameservers["search"] = list(self.search_domains)
        if nameservers:
            ethernet["nameservers"] = nameservers
        return {"version": 2, "ethernets": {"id0": ethernet}}


def ovf_network_config(network):
    """The `network-config` OVF property's value: base64 of {"network": network} (JSON, which is YAML)."""
    return base64.b64encode(json.dumps({"network": network}, sort_keys=True).encode()).decode()


def _moid_number(moid):
    match = re.search(r"(\d+)$", moid or "")
    return (int(match.group(1)), moid) if match else (float("inf"), moid)


def duplicates(records):
    """{moid: address} of every VM that records an address another VM with a lower moid number records too.

    records: {moid: address} of the VMs of a folder. The VM made first (lower
    moid) keeps an address; every one after it loses it.
    """
    holders = {}
    for moid, address in records.items():
        holders.setdefault(address, []).append(moid)
    losers = {}
    for address, moids in holders.items():
        for moid in sorted(moids, key=_moid_number)[1:]:
            losers[moid] = address
    return losers


def recorded(vms, folder):
    """{moid: address} of the VMs of {vm: props} (props read with IP_ADDRESS's keyed path) in folder that record one."""
    found = {}
    for vm, props in vms.items():
        text = _records.extra_config_value(props, _records.IP_ADDRESS)
        if getattr(props.get("parent"), "_moId", None) != folder._moId or not text:
            continue
        try:
            found[vm._moId] = text_type(_address(text))  # one address, one spelling (IPv6 has many)
        except ValueError:
            continue
    return found


def delivery(request, name, props):
    """(extraConfig {key: value}, [vApp PropertySpec]) giving node `name` its address, read with DELIVERY_PATHS.

    The network config matches the MAC of the VM's first network adapter,
    which vCenter has assigned by now; it goes to both of cloud-init's
    datasources (guestinfo.metadata rebuilt with the node's identity, and the
    OVF property where the VM has it), and the address record is written
    again, for a leftover adopted without one.
    """
    address = request.addresses[name]
    nics = sorted((device for device in props.get("config.hardware.device") or []
                   if isinstance(device, vim.vm.device.VirtualEthernetCard)), key=lambda device: device.key)
    if not nics or not nics[0].macAddress:
        raise RayVsphereError("VM %s has no network adapter with a MAC address (config.hardware.device) to give "
                              "ip_pool's address %s to" % (name, address))
    network = request.pool.network_config(address, nics[0].macAddress)
    extra = request.vmware_metadata(name, network)
    extra[_records.IP_ADDRESS] = address
    specs = [vim.vApp.PropertySpec(operation="edit", info=vim.vApp.PropertyInfo(
        key=prop.key, value=ovf_network_config(network)))
        for prop in props.get("config.vAppConfig.property") or [] if prop.id == OVF_NETWORK_CONFIG]
    return extra, specs


DELIVERY_PATHS = ["config.hardware.device", "config.vAppConfig.property"]
