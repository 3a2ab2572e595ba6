# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What node_delete and node_tags change: a cluster's nodes deleted, their tags written, in parallel.

Every VM is checked to be a verified node of the cluster (_nodes.find_nodes)
before anything is changed: a refused VM leaves all others untouched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _ray_tags, _records


# What a delete reads of each VM: who it belongs to, its power state, and the markers of the call that made it.
DELETE_PATHS = _nodes.IDENTITY_PATHS + ["runtime.powerState"] + _records.keyed_paths(
    (_records.CREATION_MARKER, _records.REQUEST_MARKER))


def request_vms(inventory, cluster_key, request_ids):
    """{vm: props} of every VM a node_deploy call with one of request_ids made for the cluster, tagged or not.

    Candidates by name (the request id is part of every name such a call
    gives), confirmed by the markers and the identity the call wrote into
    extraConfig with the VM: a same-named cluster's leftovers are not ours.
    """
    cluster_name = cluster_key.cluster_name
    wanted = set(request_ids or [])
    found = {}
    for vm, props in inventory.vms.items():
        name = props.get("name") or ""
        if props.get("config.template") or not any("-%s-" % request_id in name for request_id in wanted):
            continue
        if (_records.creation_marker(props) == cluster_name
                and _records.extra_config_value(props, _records.REQUEST_MARKER) in wanted
                and inventory.made_with_key(vm, cluster_key)):
            found[vm] = props
    return found


def delete_nodes(service_instance, cluster_key, uuids, names, parallel, check_mode, all_nodes=False,
                 request_ids=(), keep_uuids=(), roots=None):
    """Delete the named nodes (every node with all_nodes, every VM of request_ids) from one read below roots.

    roots: the cluster's VM folders; None sweeps all of vCenter, which is the
    point only when looking for nodes moved out of them (ray_down.yml): there a
    node is one by the folder it records it was made in and its own moid, so a
    copy of a node's identity, in any folder, is still none (_nodes.Inventory).

    A VM whose instance UUID is in keep_uuids is never deleted, whatever selected it.

    (deleted names, absent ids, unverified names): the VMs tagged with the
    cluster's name that its key does not verify are left alone, and named.
    """
    cluster_name = cluster_key.cluster_name
    inventory = _nodes.Inventory(service_instance, roots, DELETE_PATHS)
    found, absent = _nodes.find_nodes(inventory, cluster_key, uuids, names)
    if all_nodes:
        found.update(inventory.cluster_nodes(cluster_key))
    found.update(request_vms(inventory, cluster_key, request_ids))
    found = dict((vm, props) for vm, props in found.items() if props.get("config.instanceUuid") not in set(keep_uuids))
    deleted = sorted(props["name"] for props in found.values())
    if not check_mode:
        errors = _nodes.in_parallel(lambda vm: _nodes.destroy_vm(service_instance, vm, found[vm]["name"],
                                                                 found[vm].get("runtime.powerState")),
                                    list(found), parallel)
        if errors:
            raise RayVsphereError("deleting nodes of Ray cluster %s failed: %s" % (cluster_name, "; ".join(errors)))
    return deleted, absent, inventory.unverified(cluster_key)


def set_node_tags(service_instance, cluster_key, updates, parallel, check_mode, roots=None):
    """Apply {vm id: tags} updates to verified nodes in roots (VM folders; None: all of vCenter).

    Returns (changed records before, after) by node name.
    """
    cluster_name = cluster_key.cluster_name
    inventory = _nodes.Inventory(service_instance, roots, _nodes.IDENTITY_PATHS)
    targets = []
    for update in updates:
        tags = _ray_tags.check_tags(update.get("tags"), "tags of %s" % (update.get("uuid") or update.get("name")))
        if _records.CLUSTER_NAME in tags:
            raise RayVsphereError("%s cannot be changed: it is what makes a VM a node of its cluster" % _records.CLUSTER_NAME)
        found, absent = _nodes.find_nodes(inventory, cluster_key, [update["uuid"]] if update.get("uuid") else [],
                                          [update["name"]] if update.get("name") else [])
        if absent or not found:
            raise RayVsphereError("no node %s in Ray cluster %s" % (update.get("uuid") or update.get("name"), cluster_name))
        for vm in found:
            current = inventory.tags(vm)
            changes = dict((key, value) for key, value in tags.items() if current.get(key, "") != value)
            if changes:
                targets.append((vm, found[vm]["name"], current, changes))
    before, after = {}, {}
    for vm, name, current, changes in targets:
        before[name] = current
        merged = dict(current)
        merged.update(changes)
        after[name] = dict((key, value) for key, value in merged.items() if value)
    inventory.attributes.require(set(key for target in targets for key in target[3]))
    if not check_mode and targets:
        errors = _nodes.in_parallel(lambda target: inventory.attributes.set(target[0], target[1], target[3]),
                                    targets, parallel)
        if errors:
            raise RayVsphereError("setting tags in Ray cluster %s failed: %s" % (cluster_name, "; ".join(errors)))
    return before, after
