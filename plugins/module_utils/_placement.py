# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where new VMs go: every placement name looked up before anything is created."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_PLACEMENT, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere

try:
    from pyVmomi import vim
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
    def __init__(self, datacenter, resource_pool, host, folder, datastore, network):
        self.datacenter = datacenter
        self.resource_pool = resource_pool
        self.host = host
        self.folder = folder
        self.datastore = datastore
        self.network = network


def _one(service_instance, root, managed_type, name, what, where):
    found = _vsphere.objects_in(service_instance, root, managed_type, ["name"])
    matches = [obj for obj, props in found.items() if props.get("name") == name]
    if not matches:
        choices = sorted(props["name"] for props in found.values())
        raise RayVsphereError("%s %r not found in %s (there: %s)" % (what, name, where, ", ".join(choices) or "none"))
    return matches[0]


def _folder(service_instance, datacenter, datacenter_name, path):
    folder = datacenter.vmFolder
    if not path:
        return folder
    parts = [part for part in path.strip("/").split("/") if part]
    if parts[:2] == [datacenter_name, "vm"]:  # also accept /DC/vm/ray, as govc and vmware.vmware do
        parts = parts[2:]
    for part in parts:
        children = _vsphere.read(service_instance, folder, ["childEntity"]).get("childEntity", [])
        names = _vsphere.retrieve_names(service_instance, [c for c in children if isinstance(c, vim.Folder)])
        matches = [child for child, name in names.items() if name == part]
        if not matches:
            raise RayVsphereError("VM folder %r not found in datacenter %s (no %r below it)" % (path, datacenter_name, part))
        folder = matches[0]
    return folder


def resolve(service_instance, params):
    """A Placement for the module params, or RayVsphereError naming what is missing (its failure: placement)."""
    try:
        return _resolve(service_instance, params)
    except RayVsphereError as error:
        error.details.setdefault("failure", FAILURE_PLACEMENT)
        raise


def _resolve(service_instance, params):
    content = service_instance.content
    datacenter = _one(service_instance, content.rootFolder, vim.Datacenter, params["datacenter"], "datacenter", "vCenter")
    where = "datacenter %s" % params["datacenter"]
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
                    "resource pool", compute_what)
    else:
        pool = compute_props["resourcePool"]
    datastore = _one(service_instance, datacenter.datastoreFolder, vim.Datastore, params["datastore"], "datastore", where)
    if datastore not in compute_props.get("datastore", []):
        raise RayVsphereError("datastore %s is not mounted on %s" % (params["datastore"], compute_what))
    network = None
    if params.get("network"):
        network = _one(service_instance, datacenter.networkFolder, vim.Network, params["network"], "network", where)
    folder = _folder(service_instance, datacenter, params["datacenter"], params.get("vm_folder"))
    return Placement(datacenter, pool, host, folder, datastore, network)


def vm_folders(service_instance, datacenter_name, folder_paths):
    """The VM folders by path in one datacenter (its VM folder for an empty path); RayVsphereError naming a missing one."""
    datacenter = _one(service_instance, service_instance.content.rootFolder, vim.Datacenter, datacenter_name,
                      "datacenter", "vCenter")
    return [_folder(service_instance, datacenter, datacenter_name, path) for path in folder_paths or [""]]
