# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A node cloned from its image's template: CloneVM_Task (linked where it can be), then its OVF property values."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records, _vsphere, _waiter

try:
    from pyVmomi import vim
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
    config = vim.vm.ConfigSpec(deviceChange=_nic_changes(service_instance, placement.network, template.props),
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


def _nic_changes(service_instance, network, template_props):
    if network is None:
        return []
    backing = _nic_backing(service_instance, network)
    changes = []
    for device in template_props.get("config.hardware.device") or []:
        if isinstance(device, vim.vm.device.VirtualEthernetCard):
            device.backing = backing
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=device))
    return changes


def _nic_backing(service_instance, network):
    if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
        props = _vsphere.read(service_instance, network, ["key", "config.distributedVirtualSwitch"])
        switch_uuid = _vsphere.read(service_instance, props["config.distributedVirtualSwitch"], ["uuid"])["uuid"]
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(portgroupKey=props["key"], switchUuid=switch_uuid))
    name = _vsphere.read(service_instance, network, ["name"])["name"]
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=name, network=network)
