# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a vCenter offers to place Ray nodes on, each object by its inventory path.

One PropertyCollector call reads the name and parent of every datacenter,
folder, compute resource, host, resource pool, datastore and network, walking
only the containers that hold them (never a host's or a pool's VMs); the paths
are then joined from names and parents here, without a call per object. The
paths are those placement options take (module_utils/_placement.py) and
SearchIndex.FindByInventoryPath answers: names as vCenter returns them, with
a "/" inside a name escaped as %2f.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

# What each kind of object is read for (every kind also by name and parent).
_READ = (
    ("Folder", ["childType"]),
    ("Datacenter", ["vmFolder"]),
    ("ComputeResource", ["datastore", "network"]),
    ("HostSystem", []),
    ("ResourcePool", []),
    ("Datastore", ["summary.capacity", "summary.freeSpace"]),
    ("Network", []),
    # Its uplink port groups carry no VM's traffic: listed, never offered as a cluster's network.
    ("DistributedVirtualSwitch", ["config.uplinkPortgroup"]),
)


def _traversal():
    """From the root folder down through folders, datacenters, compute resources and pools; no VM's properties."""
    spec = vmodl.query.PropertyCollector.TraversalSpec
    select = vmodl.query.PropertyCollector.SelectionSpec
    every = ["folderChildren", "datacenterHost", "datacenterVm", "datacenterDatastore", "datacenterNetwork",
             "computeHosts", "computePool", "poolChildren"]
    specs = [
        spec(name="folderChildren", type=vim.Folder, path="childEntity"),
        spec(name="datacenterHost", type=vim.Datacenter, path="hostFolder"),
        spec(name="datacenterVm", type=vim.Datacenter, path="vmFolder"),
        spec(name="datacenterDatastore", type=vim.Datacenter, path="datastoreFolder"),
        spec(name="datacenterNetwork", type=vim.Datacenter, path="networkFolder"),
        spec(name="computeHosts", type=vim.ComputeResource, path="host"),
        spec(name="computePool", type=vim.ComputeResource, path="resourcePool"),
        spec(name="poolChildren", type=vim.ResourcePool, path="resourcePool"),
    ]
    for each in specs:
        each.skip = False
        each.selectSet = [select(name=name) for name in every]
    return specs


def read_inventory(service_instance):
    """{managed object: {property: value}} of every placement object of vCenter, in one call."""
    collector = vmodl.query.PropertyCollector
    spec = collector.FilterSpec(
        objectSet=[collector.ObjectSpec(obj=service_instance.content.rootFolder, skip=False, selectSet=_traversal())],
        propSet=[collector.PropertySpec(type=getattr(vim, kind), pathSet=["name", "parent"] + paths)
                 for kind, paths in _READ],
    )
    return _vsphere.retrieve(service_instance, [spec])


class Inventory(object):
    """Inventory paths and relations over one read_inventory() answer."""

    def __init__(self, objects, root):
        self.objects = objects
        self.root = root
        self._paths = {}

    def path(self, obj):
        if obj not in self._paths:
            parent = self.objects.get(obj, {}).get("parent")
            above = "" if parent is None or parent == self.root else self.path(parent)
            self._paths[obj] = above + "/" + self.objects[obj]["name"]
        return self._paths[obj]

    def of_type(self, managed_type, below=None):
        """managed_type objects (not its subtypes' vApps) below `below`, by inventory path."""
        prefix = self.path(below) + "/" if below is not None else "/"
        found = [obj for obj in self.objects if isinstance(obj, managed_type) and not isinstance(obj, vim.VirtualApp)
                 and self.path(obj).startswith(prefix)]
        return sorted(found, key=self.path)

    def entry(self, obj, **more):
        entry = dict(name=self.objects[obj]["name"], path=self.path(obj), moid=obj._moId)
        entry.update(more)
        return entry

    def uplinks(self):
        return set(uplink for obj, props in self.objects.items() if isinstance(obj, vim.DistributedVirtualSwitch)
                   for uplink in props.get("config.uplinkPortgroup", []))

    def datastore_entry(self, datastore):
        props = self.objects.get(datastore, {})
        return self.entry(datastore, capacity_bytes=props.get("summary.capacity"),
                          free_bytes=props.get("summary.freeSpace"))


def _vm_folder_value(inventory, datacenter, folder):
    """What node_deploy's vm_folder takes: the inventory path, or below a datacenter in a folder, the path
    below its VM folder (vm_folder strips only a leading /DC/vm of a datacenter at the root)."""
    path = inventory.path(folder)
    if inventory.path(datacenter).count("/") == 1:
        return path
    return path[len(inventory.path(inventory.objects[datacenter]["vmFolder"])) + 1:]


def _compute_entry(inventory, datacenter, compute, vm_folders):
    is_cluster = isinstance(compute, vim.ClusterComputeResource)
    props = inventory.objects[compute]
    hosts = inventory.of_type(vim.HostSystem, below=compute)
    pools = inventory.of_type(vim.ResourcePool, below=compute)
    datastores = sorted((ds for ds in props.get("datastore", []) if ds in inventory.objects), key=inventory.path)
    uplinks = inventory.uplinks()
    networks = sorted((net for net in props.get("network", []) if net in inventory.objects and net not in uplinks),
                      key=inventory.path)
    entry = inventory.entry(compute, type="cluster" if is_cluster else "esxi_host",
                            hosts=[inventory.path(host) for host in hosts],
                            resource_pools=[inventory.path(pool) for pool in pools],
                            datastores=[inventory.datastore_entry(ds) for ds in datastores],
                            networks=[inventory.path(net) for net in networks])
    placement = dict(datacenter=inventory.path(datacenter))
    if is_cluster:
        placement["cluster"] = inventory.path(compute)
    else:  # a standalone host's compute resource: placement names the host
        placement["esxi_host"] = entry["hosts"][0] if hosts else None
    # The suggestion: the root pool and VM folder (what unset means), the datastore with the most free space, the
    # first network; every other choice is listed beside it.
    placement["resource_pool"] = entry["resource_pools"][0] if pools else None
    placement["vm_folder"] = vm_folders[0]["value"]
    most_free = sorted(entry["datastores"], key=lambda ds: -(ds["free_bytes"] or 0))
    placement["datastore"] = most_free[0]["path"] if most_free else None
    placement["network"] = entry["networks"][0] if networks else None
    entry["placement"] = placement
    return entry


def placement_choices(service_instance, datacenter_filter=None):
    """[{datacenter, compute resources with their choices and a placement suggestion, VM folders, ...}]."""
    inventory = Inventory(read_inventory(service_instance), service_instance.content.rootFolder)
    datacenters = []
    for datacenter in inventory.of_type(vim.Datacenter):
        if datacenter_filter and datacenter_filter not in (inventory.path(datacenter), datacenter._moId,
                                                           inventory.objects[datacenter]["name"]):
            continue
        vm_root = inventory.objects[datacenter]["vmFolder"]
        folders = [vm_root] + inventory.of_type(vim.Folder, below=vm_root)
        vm_folders = [inventory.entry(folder, value=_vm_folder_value(inventory, datacenter, folder))
                      for folder in folders]
        computes = inventory.of_type(vim.ComputeResource, below=datacenter)
        datacenters.append(inventory.entry(
            datacenter,
            compute_resources=[_compute_entry(inventory, datacenter, compute, vm_folders) for compute in computes],
            vm_folders=vm_folders,
            datastores=[inventory.datastore_entry(ds) for ds in inventory.of_type(vim.Datastore, below=datacenter)],
            networks=[inventory.entry(net, type=type(net).__name__.rsplit(".", 1)[-1], uplink=net in inventory.uplinks())
                      for net in inventory.of_type(vim.Network, below=datacenter)],
        ))
    return datacenters


def about(service_instance):
    """The vCenter's product and version, from ServiceContent.about (read with the content at login)."""
    info = service_instance.content.about
    return dict(name=info.name, full_name=info.fullName, version=info.version, build=info.build,
                api_version=info.apiVersion, product_line=info.productLineId, instance_uuid=info.instanceUuid)
