# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Everything this project stores on a VM, on one page, the one reader of it, and the node record.

What is stored, where, and who can read it:

- Custom attributes (vCenter's CustomFieldsManager; every user who can see
  the VM sees them, the guest never does):
  - on nodes, one per Ray tag: CLUSTER_NAME, NODE_KIND, USER_NODE_TYPE,
    NODE_STATUS (STOPPED on a node node_power stopped) and any other ray-*
    tag Ray writes (launch config hash...);
  - on the templates of the clone fast path: TEMPLATE_HASH, the image's
    content hash.
  They come back with the VM's other properties in one PropertyCollector
  call, where vSphere tags would need REST calls per VM.
- extraConfig keys of our own, the ray-vsphere.* keys below. Readable by
  every vCenter user who can read the VM's configuration (the Read-only
  role can), never by the guest: VMware Tools presents only guestinfo.*.
  Written by the create, import or clone call itself, so no VM of ours
  exists, even for a moment, without them. None of them is a secret: names,
  a request id, a public host key, HMACs that only a holder of the cluster's
  private key can compute, and the settings a caller chose to record
  (DEPLOY_SETTINGS: the playbooks record placement and sizing, setup
  commands, and the image URL only when it carries no user, password or
  query string; node_deploy refuses any URL there with a credential).
- extraConfig keys under guestinfo.*, which node_deploy writes for
  cloud-init's VMware datasource: GUESTINFO_METADATA (instance-id, host name,
  the SSH public keys; with an ip_pool, the node's static network config), GUESTINFO_USERDATA when ssh_host_key, service_users
  or the caller's own user_data is asked for,
  each with its .encoding, and any guestinfo.* the caller passes (its
  `guestinfo` option). Readable by vCenter users as above AND by every
  process in the guest (vmware-rpctool "info-get guestinfo.<key>").
  The one secret we ever store on a VM is here: GUESTINFO_USERDATA holds the
  node's own SSH host private key (node_deploy's ssh_host_key). It is the
  node's, not the cluster's; whoever can read the VM's configuration can
  impersonate that node to SSH clients, which node_deploy's documentation
  of ssh_host_key says.
- OVF (vApp) properties, where the image declares them: OVF_PROPERTIES,
  the same identity again (cloud-init's OVF datasource), including the
  user-data above; plus the caller's ovf_properties. Same readers as
  guestinfo: vCenter users who can read the VM, and the guest (the OVF
  environment).

Never stored in vCenter: the cluster's private key, the Ray token derived from
it, vCenter credentials.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError

# --- Custom attributes: the Ray tags of a node (any ray-* tag Ray writes is one too).
CLUSTER_NAME = "ray-cluster-name"
NODE_KIND = "ray-node-type"
USER_NODE_TYPE = "ray-user-node-type"
# Ray's node status; node_power sets it to STOPPED on a node it stopped to be started again
# (provider.cache_stopped_nodes), which tells it from a node a deploy is still making.
NODE_STATUS = "ray-node-status"
STOPPED = "stopped"
# On the templates of the clone fast path, not on nodes: the OVF content hash.
TEMPLATE_HASH = "ray-vsphere-template"

# --- extraConfig of a node, written by its create call.
# The cluster's name, before any custom attribute can be set: a retry finds a
# VM whose tagging was cut short.
CREATION_MARKER = "ray-vsphere.cluster-name"
# The node's identity, an HMAC of the cluster and VM names, the instance UUID,
# the VM folder's moid and vCenter's instance UUID, keyed by the cluster's
# private SSH key (_ray_auth.ClusterKey.node_identity): the create call writes
# it, and the deploy rewrites it bound to the VM's moid too, right after the VM
# exists and before it is tagged. A VM is a node of a cluster only if the
# moid-bound value verifies against the key in hand (verified), so a VM tagged
# by someone else, a same-named cluster under another key, or a copy of one of
# our nodes (same name, instance UUID and identity, new moid), in any folder,
# is never taken for one of ours.
CLUSTER_IDENTITY = "ray-vsphere.cluster-identity"
# The moid of the VM folder the node was made in, which its identity binds: a
# node moved out of the cluster's folder still verifies in the one sweep of all
# of vCenter (ray_down.yml), and nowhere else (verified's `anywhere`).
CREATION_FOLDER = "ray-vsphere.folder"
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
# The static address a node deployed with an ip_pool holds (the bare address, 198.18.5.200): the pool's
# ledger, the free addresses being the pool minus what the VMs of the folder record (_ip_pool).
IP_ADDRESS = "ray-vsphere.ip-address"

# --- extraConfig under guestinfo.*, which the guest reads: cloud-init's VMware datasource.
# base64 JSON (which is YAML): instance-id, local-hostname, public-keys-data; network with an ip_pool.
GUESTINFO_METADATA = "guestinfo.metadata"
GUESTINFO_METADATA_ENCODING = "guestinfo.metadata.encoding"
# base64 user-data (_user_data): the node's own cloud-config, with its SSH host key pair, private half included
# (ssh_host_key), and the caller's user_data beside it.
GUESTINFO_USERDATA = "guestinfo.userdata"
GUESTINFO_USERDATA_ENCODING = "guestinfo.userdata.encoding"
# Every guestinfo.* key node_deploy writes; the caller's own `guestinfo` option adds others.
GUESTINFO_PREFIX = "guestinfo."

# --- OVF properties (vApp options) node_deploy sets where the image declares them:
# the identity cloud-init's OVF datasource reads (cloud_init_identity); with an ip_pool, also
# network-config (_ip_pool.OVF_NETWORK_CONFIG), the network guestinfo.metadata's `network` gives.
OVF_PROPERTIES = ("instance-id", "hostname", "public-keys", "user-data")

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


# The template keys a deploy looks a template up by, and the maker protocol's (_templates).
TEMPLATE_KEYS = (TEMPLATE_IDENTITY, IMAGE_SHA256, IMAGE_KEY, TEMPLATE_MAKER, TEMPLATE_STARTED, TEMPLATE_HEARTBEAT)


def keyed_paths(keys):
    """PropertyCollector paths that read only these extraConfig keys, never the whole of it.

    A real VM's config.extraConfig holds dozens of keys and several KiB
    (guestinfo for cloud-init among them); config.extraConfig["key"] returns
    that one OptionValue, and nothing for a VM without the key (vCenter, and
    vcsim since govmomi PR #3451). extra_config() reads them back.
    """
    return ['config.extraConfig["%s"]' % key for key in keys]


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


def vcenter_uuid(service_instance):
    """vCenter's own instance UUID (about.instanceUuid), which every node identity binds: another vCenter's differs.

    An ESXi host answers without one: no VM there could ever verify, so nothing is read or made.
    """
    about = service_instance.content.about
    if not about.instanceUuid:
        raise RayVsphereError("%s at the other end reports no instance UUID (about.instanceUuid), which every node's "
                              "identity binds: connect to a vCenter, not to an ESXi host" % (about.fullName or "the server"))
    return about.instanceUuid


def _moid(managed_object):
    return getattr(managed_object, "_moId", None)


def verified(vm, props, cluster_key, vcenter, anywhere=False):
    """Whether the VM vm of props carries the moid-bound identity cluster_key makes for it: the one test of "ours".

    Modules (list, tag, delete, deploy) and the provider's refresh all decide
    with it, for the VM folder vm is in (props' "parent"). anywhere: for the
    folder the VM records it was made in (CREATION_FOLDER), wherever it is now:
    the sweep for nodes moved out of the cluster's folders; the VM's own moid
    still has to match, so a copy is no node there either. vcenter:
    vcenter_uuid(). Templates are never nodes.
    """
    folder = extra_config_value(props, CREATION_FOLDER) if anywhere else _moid(props.get("parent"))
    return not props.get("config.template") and cluster_key.verifies(
        props.get("name"), props.get("config.instanceUuid"), folder, vcenter, vm._moId,
        extra_config_value(props, CLUSTER_IDENTITY))


def being_made(props, cluster_key, vcenter):
    """Whether the VM carries the identity its create call wrote in its folder (no moid yet): made with this key.

    Such a VM is not a node yet: only the deploy finishing it (adopting it), a
    cleanup of its request (node_delete's request_ids) and the name-clash check
    of a deploy into its folder act on it.
    """
    return not props.get("config.template") and cluster_key.verifies(
        props.get("name"), props.get("config.instanceUuid"), _moid(props.get("parent")), vcenter, None,
        extra_config_value(props, CLUSTER_IDENTITY))


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


# The fields of a node record, as node_info and node_deploy return it (their RETURN's nodes[]).
NODE_RECORD_FIELDS = ("name", "uuid", "moid", "power_state", "ip", "ip_addresses", "tags", "deploy_settings",
                      "ssh_host_key")


def node_record(moid, props, tags, ip_addresses, ip):
    """The record of a node: node_info's and node_deploy's nodes[], the provider's view of a node.

    props: the VM's properties, read with _nodes.LIST_PATHS or NODE_PATHS; tags:
    its Ray tags; ip_addresses and ip: what the guest reports and the one
    address the IP policy chose of them (_nodes.guest_addresses, choose_ip).
    """
    return dict(
        name=props.get("name"),
        uuid=props.get("config.instanceUuid"),
        moid=moid,
        power_state=str(props.get("runtime.powerState")),
        ip=ip,
        ip_addresses=ip_addresses,
        tags=tags,
        deploy_settings=deploy_settings(props),
        ssh_host_key=extra_config_value(props, SSH_HOST_KEY),
    )


def planned_node_record(name, tags, power_state, settings, ssh_host_key=None):
    """The record check mode predicts for a node not made yet: what vCenter would assign is null."""
    return dict(name=name, uuid=None, moid=None, power_state=power_state, ip=None, ip_addresses=[], tags=tags,
                deploy_settings=settings, ssh_host_key=ssh_host_key)
