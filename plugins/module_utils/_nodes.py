# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A Ray cluster's VMs read in one PropertyCollector call, the IP policy, and the parallel work and VM removal
every change uses (its deletes and tag writes: _node_changes)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, fault_text
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _placement, _ray_tags, _records, _vsphere, _waiter)

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

# Every read below names the extraConfig keys it needs (_records.keyed_paths), never
# config.extraConfig whole: on a real VM that holds dozens of keys and several KiB, and
# would dominate a read of many VMs.
# What tells a node of the cluster, its tags and its identity (and the folder it binds): all node_tags reads.
IDENTITY_PATHS = ["name", "config.instanceUuid", "config.template", "customValue", "parent"] + _records.keyed_paths(
    (_records.CLUSTER_IDENTITY, _records.CREATION_FOLDER))
# What a node record needs besides, and all a listing reads.
LIST_PATHS = IDENTITY_PATHS + ["runtime.powerState", "guest.ipAddress", "guest.net"] + _records.keyed_paths(
    (_records.DEPLOY_SETTINGS, _records.SSH_HOST_KEY))
# What deploys and deletes need besides: the folder of each VM and the markers its create call wrote.
NODE_PATHS = LIST_PATHS + _records.keyed_paths((_records.CREATION_MARKER, _records.REQUEST_MARKER))

# The VM folders node_info, node_tags and node_delete read (doc fragment vm_folders).
FOLDER_OPTIONS = dict(
    datacenter=dict(type="str"),
    vm_folders=dict(type="list", elements="str", aliases=["vm_folder"]),
)

# Addresses a Ray node is reached on only when it has no other: the default
# bridges of Docker, Podman and libvirt inside the guest (link-local and
# loopback ones, listed too, are never chosen: choose_ip).
DEFAULT_IGNORED_CIDRS = ["169.254.0.0/16", "fe80::/10", "127.0.0.0/8", "::1/128",
                         "172.17.0.0/16", "10.88.0.0/16", "192.168.122.0/24"]

IP_OPTIONS = dict(
    preferred_cidr=dict(type="str"),
    ignored_cidrs=dict(type="list", elements="str", default=DEFAULT_IGNORED_CIDRS),
)


def folder_roots(service_instance, params):
    """The VM folders FOLDER_OPTIONS name (their own VMs, not their subfolders'); None, all of vCenter, without a datacenter."""
    if not params.get("datacenter"):
        return None
    return _placement.vm_folders(service_instance, params["datacenter"], params.get("vm_folders"))


def networks(cidrs, option):
    try:
        return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs or []]
    except ValueError as error:
        raise RayVsphereError("%s: %s" % (option, error))


def ip_choice(params):
    """(preferred, ignored) networks from the preferred_cidr and ignored_cidrs options."""
    preferred = networks([params["preferred_cidr"]] if params.get("preferred_cidr") else [], "preferred_cidr")
    return preferred, networks(params.get("ignored_cidrs"), "ignored_cidrs")


def guest_addresses(props):
    """Every address the guest reports, NIC order first, then guest.ipAddress."""
    addresses = []
    for nic in props.get("guest.net") or []:
        addresses.extend(nic.ipAddress or [])
    if props.get("guest.ipAddress"):
        addresses.append(props["guest.ipAddress"])
    unique = []
    for address in addresses:
        if address not in unique:
            unique.append(address)
    return unique


def within(address, networks_):
    """Whether an ipaddress address lies in any of networks_ of its IP version."""
    return any(address in network for network in networks_ or [] if network.version == address.version)


def choose_ip(addresses, preferred=None, ignored=None):
    """The address to reach a node on, normalized: the preferred network first, then all but ignored ones, IPv4 first.

    The addresses are what the guest reports, so they are parsed, never passed on
    as given; loopback and link-local ones (an APIPA address while DHCP fails, an
    fe80:: one valid only with its zone) cannot reach the node from elsewhere and
    are never chosen. An ignored network (a container bridge by default) only
    ranks last: on a site whose LAN is 10.88.0.0/16, it is the LAN.
    """
    usable = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(str(text).strip())
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            continue
        usable.append((not within(address, preferred), within(address, ignored), address.version != 4, str(address)))
    return sorted(usable)[0][3] if usable else None


class Inventory(object):
    """The VMs in roots (VM folders, not their subfolders; None: all of vCenter) with `paths` (default NODE_PATHS).

    Read in one round trip, or given: vms_and_fields, ({vm: props},
    [CustomFieldDef]) already read (a NodeWatch's). Only a VM whose parent is
    one of roots is kept, so a node is one only where its identity binds it:
    in its cluster's folder. Without roots (the sweep of all of vCenter for
    nodes moved out of their folder), a node is one for the folder it records
    it was made in, and by its own moid (_records.verified's anywhere).
    """

    def __init__(self, service_instance, roots=None, paths=None, vms_and_fields=None):
        self.service_instance = service_instance
        vms, fields = vms_and_fields or _vsphere.vms_and_custom_fields(service_instance, paths or NODE_PATHS, roots)
        self.attributes = _ray_tags.CustomAttributes(service_instance, fields)
        self.anywhere = roots is None
        if roots is not None:
            folders = set(root._moId for root in roots)
            vms = dict((vm, props) for vm, props in vms.items() if getattr(props.get("parent"), "_moId", None) in folders)
        self.vms = vms
        self._vcenter = None

    @property
    def vcenter(self):
        """vCenter's instance UUID, which identities bind; asked for only by a check of one."""
        if self._vcenter is None:
            self._vcenter = _records.vcenter_uuid(self.service_instance)
        return self._vcenter

    def is_node(self, vm, cluster_key):
        """Whether cluster_key verifies vm as a node of its cluster (_records.verified) in this inventory's scope."""
        return _records.verified(vm, self.vms[vm], cluster_key, self.vcenter, self.anywhere)

    def made_with_key(self, vm, cluster_key):
        """A node, or a VM being made with cluster_key in its folder (_records.made_with_key)."""
        return self.is_node(vm, cluster_key) or _records.being_made(self.vms[vm], cluster_key, self.vcenter)

    def tags(self, vm):
        return self.attributes.tags(self.vms[vm].get("customValue"))

    def tagged(self, cluster_name):
        """{vm: props} of the VMs tagged with cluster_name (templates are not nodes), verified or not."""
        return dict((vm, props) for vm, props in self.vms.items()
                    if not props.get("config.template") and self.tags(vm).get(_records.CLUSTER_NAME) == cluster_name)

    def cluster_nodes(self, cluster_key):
        """{vm: props} of the cluster's nodes: tagged with its name and carrying the identity its key verifies."""
        return dict((vm, props) for vm, props in self.tagged(cluster_key.cluster_name).items()
                    if self.is_node(vm, cluster_key))

    def unverified(self, cluster_key):
        """Sorted names of the VMs tagged with the cluster's name whose identity the key does not verify.

        Another cluster of the same name (made with another key), or a VM someone tagged by hand: never
        acted on, only reported, so a clash or a forgery shows.
        """
        return sorted(props.get("name") or vm._moId for vm, props in self.tagged(cluster_key.cluster_name).items()
                      if not self.is_node(vm, cluster_key))

    def record(self, vm, preferred=None, ignored=None):
        """The node record of vm (_records.node_record), its address chosen by the IP policy."""
        props = self.vms[vm]
        addresses = guest_addresses(props)
        return _records.node_record(vm._moId, props, self.tags(vm), addresses, choose_ip(addresses, preferred, ignored))


def list_nodes(service_instance, cluster_key, node_kind=None, node_type=None, tag_filters=None,
               preferred=None, ignored=None, roots=None):
    """(node records of the cluster's verified VMs, names of the unverified ones) below roots (VM folders; default:
    all of vCenter), sorted by name."""
    inventory = Inventory(service_instance, roots, LIST_PATHS)
    return (node_records(inventory, cluster_key, node_kind, node_type, tag_filters, preferred, ignored),
            inventory.unverified(cluster_key))


def node_records(inventory, cluster_key, node_kind=None, node_type=None, tag_filters=None, preferred=None,
                 ignored=None):
    wanted = dict(tag_filters or {})
    if node_kind:
        wanted[_records.NODE_KIND] = node_kind
    if node_type:
        wanted[_records.USER_NODE_TYPE] = node_type
    records = []
    for vm in inventory.cluster_nodes(cluster_key):
        tags = inventory.tags(vm)
        if all(tags.get(key) == value for key, value in wanted.items()):
            records.append(inventory.record(vm, preferred, ignored))
    return sorted(records, key=lambda record: record["name"])


def find_nodes(inventory, cluster_key, uuids=(), names=()):
    """(found {vm: props}, absent [ids]); RayVsphereError if any match is not the cluster's verified node.

    Checked for every id before anything is changed: a refused VM leaves all others untouched.
    """
    found, absent, foreign = {}, [], []
    cluster_name = cluster_key.cluster_name
    nodes = inventory.cluster_nodes(cluster_key)
    tagged = inventory.tagged(cluster_name)
    for attribute, wanted_values in (("config.instanceUuid", uuids), ("name", names)):
        for wanted in wanted_values or []:
            matches = [vm for vm, props in inventory.vms.items()
                       if props.get(attribute) == wanted and not props.get("config.template")]
            ours = [vm for vm in matches if vm in nodes]
            if ours:
                found.update((vm, nodes[vm]) for vm in ours)
            elif matches:
                foreign.append("%s (tagged %s=%s, but without the identity of this cluster's key)"
                               % (wanted, _records.CLUSTER_NAME, cluster_name)
                               if any(vm in tagged for vm in matches) else wanted)
            else:
                absent.append(wanted)
    if foreign:
        raise RayVsphereError("refusing VMs that are not nodes of Ray cluster %s (a node carries the custom attribute "
                              "%s=%s and, in its extraConfig, the %s its creator wrote with the cluster's key): %s"
                              % (cluster_name, _records.CLUSTER_NAME, cluster_name, _records.CLUSTER_IDENTITY,
                                 ", ".join(foreign)))
    return found, absent


def in_parallel(work, items, parallel):
    """Run work(item) for every item with at most `parallel` at once; errors by item."""
    errors = []
    if not items:
        return errors
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        futures = [(item, pool.submit(work, item)) for item in items]
        for item, future in futures:
            try:
                future.result()
            except RayVsphereError as error:
                errors.append(str(error))
            except vmodl.MethodFault as error:
                errors.append("%s: %s" % (item, fault_text(error)))
    return errors


def destroy_vm(service_instance, vm, name, power_state=None, timeout=600):
    """Power off if needed, then destroy. An already absent VM is success.

    power_state: as the caller's inventory read found it; read here when not given.
    """
    try:
        if power_state is None:
            power_state = _vsphere.read(service_instance, vm, ["runtime.powerState"]).get("runtime.powerState")
        if power_state != vim.VirtualMachine.PowerState.poweredOff:
            try:
                _waiter.wait_for_task(service_instance, vm.PowerOffVM_Task(), "PowerOffVM_Task on VM %s" % name, timeout)
            except RayVsphereError as error:
                if error.details.get("fault") != "InvalidPowerState":  # powered off meanwhile
                    raise
        _waiter.wait_for_task(service_instance, vm.Destroy_Task(), "Destroy_Task on VM %s" % name, timeout)
    except vmodl.fault.ManagedObjectNotFound:
        pass
    except RayVsphereError as error:
        if error.details.get("fault") != "ManagedObjectNotFound":
            raise
