# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""PropertyCollector reads (the waiter for tasks is _waiter).

Properties are read only through the PropertyCollector: an attribute read of
an unset property (vm.snapshot, vm.parentVApp...) round-trips once per
attribute and, against vcsim, returns replies pyVmomi cannot decode; the
PropertyCollector leaves unset properties out and reads many in one call.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, fault_text

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module


def _property_spec(managed_type, paths):
    return vmodl.query.PropertyCollector.PropertySpec(type=managed_type, pathSet=list(paths))


def vm_traversal():
    """Select specs reaching every VM below a folder (the root folder: all of vCenter), templates included.

    Rooted at a VM folder, they walk only that folder's subtree (subfolders
    and vApps): the cost of a read is that of the VMs in it, not vCenter's.
    """
    spec = vmodl.query.PropertyCollector.TraversalSpec
    select = vmodl.query.PropertyCollector.SelectionSpec
    return [
        spec(name="folderChildren", type=vim.Folder, path="childEntity", skip=False,
             selectSet=[select(name="folderChildren"), select(name="datacenterVms"), select(name="vappVms")]),
        spec(name="datacenterVms", type=vim.Datacenter, path="vmFolder", skip=False,
             selectSet=[select(name="folderChildren")]),
        spec(name="vappVms", type=vim.VirtualApp, path="vm", skip=False),
    ]


def container_traversal(managed_type):
    """Select specs reaching every managed_type object below a root through the containers that can hold one only.

    Folders' children, and for hosts a compute resource's hosts, for pools its
    pools; never a datacenter's, a host's or a pool's VMs. A recursive
    ContainerView walks everything below its root (vcsim lists each host's and
    each pool's VMs on the way), so finding a datacenter from the root folder,
    or a cluster in a host folder, would cost what vCenter holds.
    """
    spec = vmodl.query.PropertyCollector.TraversalSpec
    select = vmodl.query.PropertyCollector.SelectionSpec
    specs = [spec(name="folderChildren", type=vim.Folder, path="childEntity", skip=False)]
    if managed_type is vim.HostSystem:
        specs.append(spec(name="computeHosts", type=vim.ComputeResource, path="host", skip=False))
    if managed_type is vim.ResourcePool:
        specs.append(spec(name="computePool", type=vim.ComputeResource, path="resourcePool", skip=False,
                          selectSet=[select(name="poolChildren")]))
        specs.append(spec(name="poolChildren", type=vim.ResourcePool, path="resourcePool", skip=False,
                          selectSet=[select(name="poolChildren")]))
    specs[0].selectSet = [select(name=each.name) for each in specs]
    return specs


def objects_below(service_instance, root, managed_type, paths):
    """{obj: props} of every managed_type object below root (not root itself), by container_traversal."""
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=root, skip=True,
                                                            selectSet=container_traversal(managed_type))],
        propSet=[_property_spec(managed_type, paths)],
    )
    return retrieve(service_instance, [spec])


def retrieve(service_instance, filter_specs, page_size=5000):
    """All objects the filter specs select, as {managed object: {path: value}}.

    One RetrievePropertiesEx call; vCenter pages results larger than
    page_size, followed with ContinueRetrievePropertiesEx.
    """
    collector = service_instance.content.propertyCollector
    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=page_size)
    try:
        result = collector.RetrievePropertiesEx(filter_specs, options)
        objects = {}
        while result is not None:
            for item in result.objects:
                objects[item.obj] = dict((prop.name, prop.val) for prop in item.propSet)
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(result.token)
    except vmodl.MethodFault as error:
        raise RayVsphereError("PropertyCollector.RetrievePropertiesEx failed: %s" % fault_text(error))
    return objects


def read(service_instance, obj, paths):
    """{path: value} of one object; unset properties are absent."""
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[_property_spec(type(obj), paths)],
    )
    return retrieve(service_instance, [spec]).get(obj, {})


def vms_and_fields_spec(service_instance, vm_paths, roots=None):
    """A FilterSpec for vm_paths of the VMs in roots, VM folders (not their subfolders), and the custom field defs.

    Without roots: every VM in vCenter, below the root folder.
    """
    content = service_instance.content
    object_spec = vmodl.query.PropertyCollector.ObjectSpec
    own_vms = [vmodl.query.PropertyCollector.TraversalSpec(
        name="folderVms", type=vim.Folder, path="childEntity", skip=False)]
    return vmodl.query.PropertyCollector.FilterSpec(
        objectSet=([object_spec(obj=root, skip=False, selectSet=own_vms) for root in roots] if roots
                   else [object_spec(obj=content.rootFolder, skip=False, selectSet=vm_traversal())])
        + [object_spec(obj=content.customFieldsManager, skip=False)],
        propSet=[_property_spec(vim.VirtualMachine, vm_paths),
                 _property_spec(vim.CustomFieldsManager, ["field"])],
    )


def vms_and_custom_fields(service_instance, vm_paths, roots=None):
    """({vm: {path: value}}, [CustomFieldDef]) for every VM in roots (default: all of vCenter), in one round trip."""
    objects = retrieve(service_instance, [vms_and_fields_spec(service_instance, vm_paths, roots)])
    fields = objects.pop(service_instance.content.customFieldsManager, {}).get("field", [])
    vms = dict((obj, props) for obj, props in objects.items() if isinstance(obj, vim.VirtualMachine))
    return vms, list(fields)


def retrieve_names(service_instance, objects):
    """{obj: name} of several objects in one call."""
    if not objects:
        return {}
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False) for obj in objects],
        propSet=[_property_spec(managed_type, ["name"]) for managed_type in set(type(obj) for obj in objects)],
    )
    return dict((obj, props.get("name")) for obj, props in retrieve(service_instance, [spec]).items())


def objects_in(service_instance, root, managed_type, paths):
    """{obj: props} of every managed_type object below root (a ContainerView: it walks all below root, VMs included)."""
    view = service_instance.content.viewManager.CreateContainerView(root, [managed_type], True)
    try:
        traverse = vmodl.query.PropertyCollector.TraversalSpec(
            name="view", path="view", skip=False, type=vim.view.ContainerView)
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[_property_spec(managed_type, paths)],
        )
        return retrieve(service_instance, [spec])
    finally:
        view.Destroy()
