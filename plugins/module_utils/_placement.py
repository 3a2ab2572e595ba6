# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where new VMs go: every placement option looked up before anything is created.

Each option takes, as vmware.vmware's modules do, a name, a managed object id
(domain-c7, resgroup-12) or an inventory path (/DC/host/Cluster/Resources/pool,
as govc prints it). Names are not unique in vSphere (two clusters in two host
folders, a pool nested in a pool of its name): a name that matches more than
one object is refused with each candidate's path and moid, never resolved to
whichever vCenter happens to list first.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_PLACEMENT, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere, _waiter

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

PLACEMENT_OPTIONS = dict(
    datacenter=dict(type="str", required=True),
    cluster=dict(type="str"),
    esxi_host=dict(type="str"),
    resource_pool=dict(type="str"),
    vm_folder=dict(type="str"),
    datastore=dict(type="str", required=True),
    network=dict(type="str"),
)


class Placement(object):
    def __init__(self, datacenter, resource_pool, host, folder, datastore, network, compute=None):
        self.datacenter = datacenter
        self.compute = compute  # the cluster or standalone host whose pool it is
        self.resource_pool = resource_pool
        self.host = host
        self.folder = folder
        self.datastore = datastore
        self.network = network


def inventory_path(service_instance, obj):
    """/DC/host/Cluster/Resources/pool: the names from below the root folder down to obj."""
    names = []
    while obj is not None:
        props = _vsphere.read(service_instance, obj, ["name", "parent"])
        if props.get("parent") is None:
            break  # the root folder, which no inventory path names
        names.append(props.get("name"))
        obj = props["parent"]
    return "/" + "/".join(reversed(names))


def _by_path(service_instance, path):
    try:
        return service_instance.content.searchIndex.FindByInventoryPath(path.strip("/"))
    except vmodl.MethodFault as error:
        raise _waiter.call_failed("SearchIndex.FindByInventoryPath(%s)" % path, error)


def _one(service_instance, root, managed_type, value, what, where, include_root=False):
    """The managed_type object below root (root too, with include_root) that value names, by path, moid or name."""
    found = _vsphere.objects_below(service_instance, root, managed_type, ["name"])
    if include_root:
        found[root] = _vsphere.read(service_instance, root, ["name"])
    if "/" in value:
        target = _by_path(service_instance, value)
        matches = [obj for obj in found if target is not None and obj._moId == target._moId]
    else:
        matches = [obj for obj in found if obj._moId == value] or [
            obj for obj, props in found.items() if props.get("name") == value]
    if len(matches) > 1:
        candidates = sorted("%s (%s)" % (inventory_path(service_instance, obj), obj._moId) for obj in matches)
        raise RayVsphereError("%s %r is ambiguous in %s: %d objects have that name, give the inventory path or moid "
                              "of one: %s" % (what, value, where, len(matches), ", ".join(candidates)))
    if not matches:
        choices = sorted(props["name"] for props in found.values())
        raise RayVsphereError("%s %r not found in %s (there: %s)" % (what, value, where, ", ".join(choices) or "none"))
    return matches[0]


def _datacenter(service_instance, value):
    """(datacenter, its name) for a datacenter name, moid or path."""
    datacenter = _one(service_instance, service_instance.content.rootFolder, vim.Datacenter, value, "datacenter",
                      "vCenter")
    return datacenter, _vsphere.read(service_instance, datacenter, ["name"])["name"]


def _folder(service_instance, datacenter, datacenter_name, path):
    """The VM folder at path below the datacenter's VM folder (or /DC/vm/path), or the folder of that moid."""
    folder = datacenter.vmFolder
    if not path:
        return folder
    parts = [part for part in path.strip("/").split("/") if part]
    if parts[:2] == [datacenter_name, "vm"]:  # also accept /DC/vm/ray, as govc and vmware.vmware do
        parts = parts[2:]
    for part in parts:
        matches = _child_folders(service_instance, folder, part)
        if not matches:
            folders = [] if "/" in path else [datacenter.vmFolder] + list(
                _vsphere.objects_below(service_instance, datacenter.vmFolder, vim.Folder, ["name"]))
            by_moid = [candidate for candidate in folders if candidate._moId == path]
            if by_moid:
                return by_moid[0]
            raise RayVsphereError("VM folder %r not found in datacenter %s (no %r below it)" % (path, datacenter_name, part))
        folder = matches[0]  # siblings' names are unique: vCenter refuses a second folder of one name
    return folder


def _child_folders(service_instance, folder, name):
    """The child folders of folder named name, found by vCenter (SearchIndex.FindChild).

    Not by reading folder.childEntity: a datacenter's VM folder often holds
    thousands of VMs, and that read would cost them all. Only when FindChild
    answers with another entity of that name are the children read.
    """
    try:
        child = service_instance.content.searchIndex.FindChild(folder, name)
    except vmodl.MethodFault as error:
        raise _waiter.call_failed("SearchIndex.FindChild(%s)" % name, error)
    if child is None or isinstance(child, vim.Folder):
        return [child] if child is not None else []
    children = _vsphere.read(service_instance, folder, ["childEntity"]).get("childEntity", [])
    names = _vsphere.retrieve_names(service_instance, [c for c in children if isinstance(c, vim.Folder)])
    return [child for child, child_name in names.items() if child_name == name]


def resolve(service_instance, params):
    """A Placement for the module params, or RayVsphereError naming what is missing or ambiguous (its failure: placement)."""
    try:
        return _resolve(service_instance, params)
    except RayVsphereError as error:
        error.details.setdefault("failure", FAILURE_PLACEMENT)
        raise


def _resolve(service_instance, params):
    datacenter, datacenter_name = _datacenter(service_instance, params["datacenter"])
    where = "datacenter %s" % datacenter_name
    host = None
    if params.get("cluster"):
        compute = _one(service_instance, datacenter.hostFolder, vim.ClusterComputeResource, params["cluster"], "cluster", where)
        compute_what = "cluster %s" % params["cluster"]
    elif params.get("esxi_host"):
        host = _one(service_instance, datacenter.hostFolder, vim.HostSystem, params["esxi_host"], "ESXi host", where)
        compute = _vsphere.read(service_instance, host, ["parent"])["parent"]
        compute_what = "ESXi host %s" % params["esxi_host"]
    else:
        raise RayVsphereError("one of cluster or esxi_host is needed to place VMs")
    compute_props = _vsphere.read(service_instance, compute, ["resourcePool", "datastore", "network"])
    if params.get("resource_pool"):
        pool = _one(service_instance, compute_props["resourcePool"], vim.ResourcePool, params["resource_pool"],
                    "resource pool", compute_what, include_root=True)
    else:
        pool = compute_props["resourcePool"]
    datastore = _one(service_instance, datacenter.datastoreFolder, vim.Datastore, params["datastore"], "datastore", where)
    if datastore not in compute_props.get("datastore", []):
        raise RayVsphereError("datastore %s is not mounted on %s" % (params["datastore"], compute_what))
    network = None
    if params.get("network"):
        network = _one(service_instance, datacenter.networkFolder, vim.Network, params["network"], "network", where)
    folder = _folder(service_instance, datacenter, datacenter_name, params.get("vm_folder"))
    return Placement(datacenter, pool, host, folder, datastore, network, compute)


def vm_folders(service_instance, datacenter, folder_paths):
    """The VM folders by path or moid in one datacenter (name, moid or path; its VM folder for an empty path)."""
    datacenter, datacenter_name = _datacenter(service_instance, datacenter)
    return [_folder(service_instance, datacenter, datacenter_name, path) for path in folder_paths or [""]]
