# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Everything this project stores on a VM, on one page, and the one reader of it.

Custom attributes (one per Ray tag, on nodes; TEMPLATE_HASH on templates)
are what any process that can read vCenter sees as the cluster: Ray's tags
come back with the VM's other properties in one PropertyCollector call,
where vSphere tags would need REST calls per VM.

extraConfig keys are written by the create, import or clone call itself, so
no VM of ours exists, even for a moment, without them. None of them is a
secret: keys not under guestinfo.* are not readable by the guest, and the
guestinfo.* keys node_deploy writes (cloud-init's metadata and user data)
hold public keys, a host key pair the node owns, and names.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# --- Custom attributes: the Ray tags of a node (any ray-* tag Ray writes is one too).
CLUSTER_NAME = "ray-cluster-name"
NODE_KIND = "ray-node-type"
USER_NODE_TYPE = "ray-user-node-type"
# On the templates of the clone fast path, not on nodes: the OVF content hash.
TEMPLATE_HASH = "ray-vsphere-template"

# --- extraConfig of a node, written by its create call.
# The cluster's name, before any custom attribute can be set: a retry finds a
# VM whose tagging was cut short.
CREATION_MARKER = "ray-vsphere.cluster-name"
# The node's identity, an HMAC of the cluster and VM names and the instance
# UUID, keyed by the cluster's private SSH key (_ray_auth.ClusterKey.node_identity).
# A VM is a node of a cluster only if this verifies against the key in hand, so
# a VM tagged by someone else, or a same-named cluster under another key, is
# never taken for one of ours.
CLUSTER_IDENTITY = "ray-vsphere.cluster-identity"
# The request_id of the node_deploy call that made the VM: what a cleanup of a
# call cut short (node_delete's request_ids) finds its VMs by.
REQUEST_MARKER = "ray-vsphere.request-id"
# When asked to (the playbooks ask it on the head): the settings the cluster
# was deployed with, as JSON, so a later scale-up needs only the cluster's
# name. Never a secret.
DEPLOY_SETTINGS = "ray-vsphere.deploy-settings"
# The public SSH host key the deploy gave the node through cloud-init, which
# playbooks check the node's answer against.
SSH_HOST_KEY = "ray-vsphere.ssh-host-key"
# On every clone: the template it was cloned from, which image_prune then keeps.
CLONED_FROM = "ray-vsphere.cloned-from"

# --- extraConfig of a template of the clone fast path, written by its import.
# derive(key, PURPOSE_TEMPLATE_IDENTITY, name[, moid]) (_template_identity).
TEMPLATE_IDENTITY = "ray-vsphere.template-identity"
# The image's content hash, and the key later deploys find the template by
# without reading the image (OvfPackage.key(); a changed image has another key).
IMAGE_SHA256 = "ray-vsphere.image-sha256"
IMAGE_KEY = "ray-vsphere.image-key"
# While the template is being made, removed before MarkAsTemplate: who makes
# it and since when (seconds since the epoch).
TEMPLATE_MAKER = "ray-vsphere.template-maker"
TEMPLATE_STARTED = "ray-vsphere.template-started"
# The maker's heartbeat, vCenter's clock in seconds since the epoch, refreshed
# while it works: a maker is alive while this is recent, wherever it runs
# (a host name and a pid are neither unique nor lasting).
TEMPLATE_HEARTBEAT = "ray-vsphere.template-heartbeat"


def extra_config(props):
    """{key: value} of the extraConfig in props, read whole or by keyed paths (config.extraConfig["key"])."""
    values = dict((option.key, option.value) for option in props.get("config.extraConfig") or [])
    for path, option in props.items():
        if path.startswith('config.extraConfig["') and option is not None:
            values[option.key] = option.value
    return values


def extra_config_value(props, key):
    """The value of extraConfig's `key` in props read with whole config.extraConfig or with its keyed path."""
    return extra_config(props).get(key)


def creation_marker(props):
    return extra_config_value(props, CREATION_MARKER)


def verified(props, cluster_key):
    """Whether the VM of props carries the identity cluster_key makes for its name: the one test of "ours".

    Modules (list, tag, delete, deploy) and the provider's refresh all decide
    with it. Templates are never nodes.
    """
    return not props.get("config.template") and cluster_key.verifies(
        props.get("name"), props.get("config.instanceUuid"), extra_config_value(props, CLUSTER_IDENTITY))


def deploy_settings(props):
    """The settings a node was deployed with (node_deploy's deploy_settings), {} when none were recorded."""
    recorded = extra_config_value(props, DEPLOY_SETTINGS)
    if not recorded:
        return {}
    try:
        settings = json.loads(recorded)
    except ValueError:
        return {}  # not written by node_deploy: nothing to rely on
    return settings if isinstance(settings, dict) else {}
