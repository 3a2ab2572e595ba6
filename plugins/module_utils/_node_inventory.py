# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Ray clusters' nodes as Ansible inventory hosts: what the ray_nodes inventory plugin reads and builds.

One PropertyCollector call reads the VMs of every cluster's folders and the
custom field definitions; each cluster's nodes are then told from that one
answer as node_info tells them (_nodes.Inventory, _records.verified), so a VM
is listed as a node only if the cluster's key verifies its identity where it
is. The hosts are plain data (names, groups, variables), built by
inventory_hosts() without any call, which the plugin caches and hands to
Ansible's constructed features.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _ray_auth, _records, _vsphere

# One entry of the plugin's `clusters` option: the cluster, its key and folders as node_info takes them, and how
# its nodes are reached (the same IP options as node_deploy's, by node type as in a Ray cluster YAML).
CLUSTER_OPTIONS = dict(
    name=dict(type="str", required=True),
    ssh_user=dict(type="str"),
    node_types=dict(type="dict", default={}),
)
CLUSTER_OPTIONS.update(copy.deepcopy(_nodes.FOLDER_OPTIONS))
# Required as the modules require it; the plugin fills in its own cluster_key_file (RAY_VSPHERE_CLUSTER_KEY_FILE) first.
CLUSTER_OPTIONS.update(copy.deepcopy(_ray_auth.CLUSTER_KEY_OPTIONS))
# No defaults here: an unset option falls back to the head's record, then to node_deploy's default (ip_rules).
CLUSTER_OPTIONS.update(dict((option, dict(spec, default=None)) for option, spec in _nodes.IP_OPTIONS.items()))

HEAD_GROUP = "ray_head"
WORKER_GROUP = "ray_worker"
NODE_TYPE_GROUP_PREFIX = "ray_type_"
CLUSTER_GROUP_PREFIX = "ray_cluster_"
# The settings of a node_types entry, and the ones the playbooks record on the head that apply to every node.
NODE_TYPE_SETTINGS = tuple(_nodes.IP_OPTIONS)
RECORDED_SETTINGS = ("preferred_cidr", "ssh_user")


def group_name(prefix, value):
    """prefix + value with every character a group name may not hold replaced by "_" (ray_cluster_my_cluster)."""
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", str(value))


def ip_rules(cluster, node_type, recorded):
    """(preferred, ignored) networks of one node type: node_deploy's defaults under the head's record under the
    cluster's options under the node type's own (node_types); an empty value unsets, as in a Ray cluster YAML."""
    defaults = dict((option, spec.get("default")) for option, spec in _nodes.IP_OPTIONS.items())
    settings = dict(defaults)
    recorded_rules = dict((option, recorded.get(option)) for option in NODE_TYPE_SETTINGS if option in RECORDED_SETTINGS)
    for layer in (recorded_rules, cluster):
        settings.update((option, layer[option]) for option in NODE_TYPE_SETTINGS if layer.get(option) not in (None, ""))
    for option, value in ((cluster.get("node_types") or {}).get(node_type) or {}).items():
        settings[option] = defaults[option] if value in (None, "") else value
    return _nodes.ip_choice(settings)


def check_node_types(cluster, where):
    """RayVsphereError naming the entry unless node_types maps names to IP options only."""
    for node_type, settings in (cluster.get("node_types") or {}).items():
        unknown = sorted(set(settings or {}) - set(NODE_TYPE_SETTINGS)) if isinstance(settings, dict) else None
        if unknown is None or unknown:
            raise RayVsphereError("%s.node_types.%s: takes only %s%s" % (
                where, node_type, ", ".join(NODE_TYPE_SETTINGS),
                " (not %s)" % ", ".join(unknown) if unknown else ", as a mapping"))


def _address(record, rules):
    """The address of a record's node that (preferred, ignored) rules choose of what its guest reports."""
    preferred, ignored = rules
    return _nodes.choose_ip(record.get("ip_addresses") or [], preferred, ignored)


def _host(record, cluster_name, verified, address, ssh_user):
    tags = record.get("tags") or {}
    host_vars = dict(
        ray_cluster_name=cluster_name,
        ray_verified=verified,
        ray_node_kind=tags.get(_records.NODE_KIND),
        ray_node_type=tags.get(_records.USER_NODE_TYPE),
        ray_tags=tags,
        ray_uuid=record.get("uuid"),
        ray_moid=record.get("moid"),
        ray_power_state=record.get("power_state"),
        ray_ip_addresses=record.get("ip_addresses") or [],
        ray_ssh_host_key=record.get("ssh_host_key"),
    )
    if address:
        host_vars["ansible_host"] = address
    if ssh_user and verified:
        host_vars["ansible_user"] = ssh_user
    return dict(name=record["name"], groups=[], vars=host_vars)


def inventory_hosts(cluster, records, unverified_records=(), unverified_group=None):
    """[{name, groups, vars}] of one cluster: its nodes (node records), and, given a group, its unverified VMs.

    cluster: a validated `clusters` entry. A node's address is chosen from what
    its guest reports by its node type's IP rules (ip_rules), as node_deploy
    and the Ray provider choose it; ssh_user, unless given, is what the
    playbooks recorded on the head.
    """
    head_settings = [record.get("deploy_settings") or {} for record in records
                     if (record.get("tags") or {}).get(_records.NODE_KIND) == "head"]
    recorded = head_settings[0] if head_settings else {}
    ssh_user = cluster.get("ssh_user") or recorded.get("ssh_user")
    cluster_group = group_name(CLUSTER_GROUP_PREFIX, cluster["name"])
    hosts = []
    for record in records:
        tags = record.get("tags") or {}
        node_type = tags.get(_records.USER_NODE_TYPE)
        host = _host(record, cluster["name"], True, _address(record, ip_rules(cluster, node_type, recorded)), ssh_user)
        kind = tags.get(_records.NODE_KIND)
        host["groups"] = [cluster_group] + [group for group, wanted in ((HEAD_GROUP, "head"), (WORKER_GROUP, "worker"))
                                            if kind == wanted]
        if node_type:
            host["groups"].append(group_name(NODE_TYPE_GROUP_PREFIX, node_type))
        hosts.append(host)
    if unverified_group:
        rules = ip_rules(cluster, None, {})
        for record in unverified_records:
            host = _host(record, cluster["name"], False, _address(record, rules), None)
            host["groups"] = [unverified_group]
            hosts.append(host)
    return hosts


def read_clusters(service_instance, clusters, keys):
    """[(node records, unverified VMs' records)] of each cluster, from ONE read of all their folders.

    clusters: validated `clusters` entries; keys: their ClusterKeys. The folders
    are looked up first (by name, as node_info looks them up); a cluster
    without a datacenter makes the read cover all of vCenter, as node_info's does.
    """
    roots = [_nodes.folder_roots(service_instance, cluster) for cluster in clusters]
    union = None
    if all(each is not None for each in roots):
        union = list(dict((folder._moId, folder) for each in roots for folder in each).values())
    vms_and_fields = _vsphere.vms_and_custom_fields(service_instance, _nodes.LIST_PATHS, union)
    found = []
    for cluster_roots, key in zip(roots, keys):
        inventory = _nodes.Inventory(service_instance, cluster_roots, vms_and_fields=vms_and_fields)
        nodes = inventory.cluster_nodes(key)
        unverified = [vm for vm in inventory.tagged(key.cluster_name) if vm not in nodes]
        found.append((sorted((inventory.record(vm) for vm in nodes), key=lambda record: record["name"]),
                      sorted((inventory.record(vm) for vm in unverified), key=lambda record: record["name"] or "")))
    return found
