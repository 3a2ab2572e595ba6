# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A node cloned from its image's template: CloneVM_Task (linked where it can be), then its OVF property values."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records, _vsphere, _waiter

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module


def clone(template, request, placement, ledger, name, properties):
    """The VM `name` cloned from template (a _templates.Template), recorded in ledger from the moment it is asked for."""
    service_instance = template.service_instance
    location = vim.vm.RelocateSpec(pool=placement.resource_pool, datastore=placement.datastore, host=placement.host)
    snapshot = template.props.get("snapshot")
    linked = (request.params["linked_clone"] and snapshot is not None
              and placement.datastore in (template.props.get("datastore") or []))
    if linked:  # a linked clone shares the template's disks, so only on the template's datastore
        location.diskMoveType = "createNewChildDiskBacking"
    # A clone keeps its template's extraConfig: not the template's identity, which is no clone's.
    config = vim.vm.ConfigSpec(deviceChange=_nic_changes(service_instance, placement, template.props),
                               extraConfig=[vim.option.OptionValue(key=_records.CLONED_FROM, value=template.name),
                                            vim.option.OptionValue(key=_records.TEMPLATE_IDENTITY, value="")])
    request.configure(config, name)
    spec = vim.vm.CloneSpec(location=location, powerOn=False, template=False, config=config,
                            snapshot=snapshot.currentSnapshot if linked else None)
    action = "CloneVM_Task of %s to %s" % (template.name, name)
    task = ledger.issue(placement.folder, name, lambda: template.vm.CloneVM_Task(
        folder=placement.folder, name=name, spec=spec), action)
    vm = _waiter.wait_for_task(service_instance, task, action, request.params["timeout"])
    ledger.made(name, vm)
    if properties:
        _set_properties(service_instance, template.name, vm, name, properties)
    return vm


def _set_properties(service_instance, template_name, vm, name, values):
    """Give the clone its OVF property values in one ReconfigVM, by the keys of the properties it kept.

    A clone keeps its template's vApp properties (vCenter copies the
    configuration), so values are edits; an OVF's property that is not
    there is an error, not something to add.
    """
    kept = dict((prop.id, prop) for prop in
                _vsphere.read(service_instance, vm, ["config.vAppConfig.property"]).get("config.vAppConfig.property", []))
    missing = sorted(set(values) - set(kept))
    if missing:
        raise RayVsphereError("clone %s of template %s lacks the vApp properties %s its OVF declares"
                              % (name, template_name, ", ".join(missing)))
    specs = [vim.vApp.PropertySpec(operation="edit", info=vim.vApp.PropertyInfo(key=kept[key].key, value=value))
             for key, value in sorted(values.items())]
    _waiter.run_task(service_instance, "ReconfigVM_Task (OVF properties) on VM %s" % name, lambda: vm.ReconfigVM_Task(
        vim.vm.ConfigSpec(vAppConfig=vim.vApp.VmConfigSpec(property=specs))))


def _nic_changes(service_instance, placement, template_props):
    if placement.network is None:
        return []
    backing = _nic_backing(service_instance, placement)
    changes = []
    for device in template_props.get("config.hardware.device") or []:
        if isinstance(device, vim.vm.device.VirtualEthernetCard):
            device.backing = backing
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=device))
    return changes


def _nic_backing(service_instance, placement):
    network = placement.network
    if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
        return _port_group_backing(service_instance, placement)
    name = _vsphere.read(service_instance, network, ["name"])["name"]
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=name, network=network)


def _port_group_backing(service_instance, placement):
    """A distributed port group's backing, from what the placement's cluster (or host) offers its VMs.

    The backing names the port group's switch by UUID. Reading it from the
    switch needs read access on the switch, which vCenter grants only through a
    propagating permission on its network folder or datacenter (vSphere
    Security, "Hierarchical Inheritance of Permissions"): a grant the
    autoscaler account does not have. The compute resource's
    EnvironmentBrowser.QueryConfigTarget (System.View) lists every port group
    a VM there can use, with its key and its switch's UUID.
    """
    network, compute = placement.network, placement.compute
    browser = _vsphere.read(service_instance, compute, ["environmentBrowser"]).get("environmentBrowser")
    if browser is None:
        raise RayVsphereError("the environment browser of %s cannot be read: no port group list for %s"
                              % (compute._moId, network._moId))
    try:
        target = browser.QueryConfigTarget(host=placement.host)
    except vmodl.MethodFault as error:
        raise _waiter.call_failed("EnvironmentBrowser.QueryConfigTarget of %s" % compute._moId, error)
    for offered in target.distributedVirtualPortgroup or []:
        if offered.portgroup is not None and offered.portgroup._moId == network._moId:
            return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(portgroupKey=offered.portgroupKey, switchUuid=offered.switchUuid))
    raise RayVsphereError("distributed port group %s is not offered to the VMs of %s (EnvironmentBrowser.QueryConfigTarget)"
                          % (network._moId, compute._moId))
