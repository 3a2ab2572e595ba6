# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A node's SSH host private key, removed from what vCenter shows once the node has answered SSH with that key.

node_deploy's ssh_host_key hands the key to cloud-init as user-data, in
guestinfo.userdata (VMware datasource) and in the vApp property user-data
(OVF datasource). Both stay readable to every vCenter user who may read the
VM's configuration, and to any process in the guest (vmware-rpctool), for as
long as they are set. cloud-init reads them once, at the first boot of an
instance-id; a node that answered SSH with its recorded host key has read
them. Then this removes them: one ReconfigVM per node that still holds one.
The guest cannot do it for the vApp property (its OVF environment is written
by vCenter), and cloud-init's `redact` (which node_deploy asks for in the
metadata) only clears the guest's own view of guestinfo.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _records, _waiter

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

# The vApp property that carries the user-data (cloud-init's OVF datasource).
USER_DATA_PROPERTY = "user-data"
# What the vApp property holds after: cloud-config that does nothing (cloud-init's OVF datasource decodes it as
# base64 at every boot). Not an empty value: an edit to "" cannot be told from an edit that leaves the value alone
# in some implementations of the API (the testbed's vcsim keeps the old value).
REMOVED_USER_DATA = base64.b64encode(
    b"#cloud-config\n# ray-vsphere removed the SSH host key once the node had answered with it\n").decode()
HOLDER_PATHS = _nodes.IDENTITY_PATHS + ["config.vAppConfig.property"] + _records.keyed_paths(
    (_records.GUESTINFO_USERDATA, _records.GUESTINFO_USERDATA_ENCODING))


def removal_spec(props):
    """The ConfigSpec that removes the user-data copies props still hold, or None when there is none left.

    extraConfig keys go by setting them to "" (vSphere removes a key set
    empty); the vApp property is kept, its value replaced by REMOVED_USER_DATA.
    """
    extra = _records.extra_config(props)
    keys = [key for key in (_records.GUESTINFO_USERDATA, _records.GUESTINFO_USERDATA_ENCODING) if extra.get(key)]
    properties = [prop for prop in props.get("config.vAppConfig.property") or []
                  if prop.id == USER_DATA_PROPERTY and prop.value and prop.value != REMOVED_USER_DATA]
    if not keys and not properties:
        return None
    spec = vim.vm.ConfigSpec()
    if keys:
        spec.extraConfig = [vim.option.OptionValue(key=key, value="") for key in keys]
    if properties:
        spec.vAppConfig = vim.vApp.VmConfigSpec(property=[
            vim.vApp.PropertySpec(operation="edit", info=vim.vApp.PropertyInfo(key=prop.key, value=REMOVED_USER_DATA))
            for prop in properties])
    return spec


def remove_host_private_keys(service_instance, cluster_key, uuids, parallel, check_mode, roots=None):
    """Remove the host private key's user-data from the verified nodes `uuids` below roots.

    Returns the names of the nodes changed (would change, in check mode).

    An id that is not a verified node of the cluster is refused, as node_tags
    refuses one, before anything is written.
    """
    inventory = _nodes.Inventory(service_instance, roots, HOLDER_PATHS)
    found, absent = _nodes.find_nodes(inventory, cluster_key, uuids)
    if absent:
        raise RayVsphereError("no node %s in Ray cluster %s" % (", ".join(sorted(absent)), cluster_key.cluster_name))
    targets = []
    for vm, props in found.items():
        spec = removal_spec(props)
        if spec is not None:
            targets.append((vm, props.get("name"), spec))
    if not check_mode:
        errors = _nodes.in_parallel(lambda target: _waiter.run_task(
            service_instance, "ReconfigVM_Task (removing the host private key) on VM %s" % target[1],
            lambda: target[0].ReconfigVM_Task(target[2])), targets, parallel)
        if errors:
            raise RayVsphereError("removing host private keys in Ray cluster %s failed: %s"
                                  % (cluster_key.cluster_name, "; ".join(errors)))
    return sorted(target[1] for target in targets)
