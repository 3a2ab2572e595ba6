# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A node_deploy request, checked before anything is made: options, names and each node's cloud-init payloads.

No vCenter call here: what is wrong with the request fails before the first
one, and the Ray provider checks a cluster YAML's node settings with the same
spec and rules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import re
import uuid

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _gpu, _ip_pool, _nodes, _ovf_package, _placement, _ray_auth, _ray_tags, _records, _template_identity, _user_data)

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    HAS_CRYPTOGRAPHY_ERROR = None
except ImportError as error:  # only ssh_host_key needs it
    HAS_CRYPTOGRAPHY_ERROR = str(error)

SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
# A URL's user information (scheme://userinfo@host), where a password or token goes.
URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/\s@]+)@([^/\s:'\"]*)")

DEPLOY_OPTIONS = dict(
    cluster_name=dict(type="str", required=True),
    node_kind=dict(type="str", choices=list(_ray_tags.NODE_KINDS), default="worker"),
    node_type=dict(type="str"),
    names=dict(type="list", elements="str"),
    count=dict(type="int", default=1),
    request_id=dict(type="str"),
    tags=dict(type="dict", default={}),
    ovf=dict(type="str", required=True),
    ovf_sha256=dict(type="str"),
    ovf_validate_certs=dict(type="bool", default=True),
    ovf_ca_path=dict(type="path"),
    cpus=dict(type="int"),
    memory_mb=dict(type="int"),
    ovf_properties=dict(type="dict", default={}),
    guestinfo=dict(type="dict", default={}),
    deploy_settings=dict(type="dict", default={}),
    power_on=dict(type="bool", default=True),
    wait_for_ip=dict(type="bool", default=False),
    ip_timeout=dict(type="int", default=600),
    clone_from_template=dict(type="bool", default=True),
    linked_clone=dict(type="bool", default=True),
    ssh_public_keys=dict(type="list", elements="str", default=[], no_log=False),
    ssh_host_key=dict(type="bool", default=False),
    service_users=dict(type="list", elements="str", default=[]),
    # Text (any user-data cloud-init reads) or a cloud-config mapping: checked by _user_data.user_parts.
    user_data=dict(type="raw"),
    parallel=dict(type="int", default=4),
    timeout=dict(type="int", default=1800),
)
DEPLOY_OPTIONS.update(_placement.PLACEMENT_OPTIONS)
DEPLOY_OPTIONS.update(_nodes.IP_OPTIONS)
DEPLOY_OPTIONS.update(_ray_auth.CLUSTER_KEY_OPTIONS)
DEPLOY_OPTIONS.update(_gpu.GPU_OPTIONS)
DEPLOY_OPTIONS.update(_ip_pool.IP_POOL_OPTIONS)
# The rules AnsibleModule applies across options; the Ray provider checks a
# cluster YAML's node settings with the same lists.
REQUIRED_ONE_OF = [("cluster", "esxi_host")]
MUTUALLY_EXCLUSIVE = [("cluster", "esxi_host"), ("names", "request_id"), ("gpus", "vgpu_profile")]
# Counts, sizes and seconds, where 0 is a mistake rather than "none".
AT_LEAST_ONE = ("count", "parallel", "ip_timeout", "timeout", "cpus", "memory_mb")


def value_problems(params):
    """(option, problem) for every set option whose value the type check lets through but deploy cannot use."""
    problems = [(option, "must be at least 1, not %s" % params[option])
                for option in AT_LEAST_ONE if params.get(option) is not None and params[option] < 1]
    problems.extend(("service_users", "%r is not a user name useradd takes (lower case letters, digits, _ and -)"
                     % user) for user in params.get("service_users") or [] if not SERVICE_USER_PATTERN.match(user))
    problems.extend(user_data_problems(params))
    problems.extend(_gpu.gpu_problems(params))
    problems.extend(_ip_pool.pool_problems(params))
    if params.get("ovf_sha256") and not SHA256_PATTERN.match(params["ovf_sha256"]):
        problems.append(("ovf_sha256", "must be a SHA-256 in hex (64 digits, as sha256sum prints it), not %r"
                         % params["ovf_sha256"]))
    credential = url_credential(params.get("deploy_settings") or {}, "")
    if credential:
        problems.append(("deploy_settings", "%s holds a credential in the URL %s: deploy_settings are recorded in "
                         "clear in the VM's extraConfig, where every vCenter user who may read the VM sees them (the "
                         "playbooks record ray_setup_commands there). Keep it out of the URL: pip, curl and git read "
                         "it from ~/.netrc (pip also from pip.conf or a keyring) on the node, put there by the image "
                         "or a play of your own" % credential))
    return problems


# Where the user's own user-data went before user_data: each reaches one datasource only, and node_deploy
# writes the node's identity to both, so cloud-init would silently ignore it on some images.
PASS_THROUGH_PROBLEMS = (
    ("ovf_properties", "user-data", "cloud-init 25.1 and later read guestinfo first (node_deploy writes "
     "guestinfo.metadata for every node) and then never read the OVF property user-data"),
    ("guestinfo", "userdata", "cloud-init before 25.1 (Debian 12, Ubuntu without the backport) reads the OVF "
     "environment first where the OVF declares its transport, and then never reads guestinfo.userdata"),
    ("guestinfo", "userdata.encoding", "it goes with guestinfo.userdata"),
)


def user_data_problems(params):
    """(option, problem) for user-data given where a datasource could miss it, or that cloud-init would ignore."""
    problems = []
    for option, key, why in PASS_THROUGH_PROBLEMS:
        given = set(params.get(option) or {})
        if key in given or _records.GUESTINFO_PREFIX + key in given and option == "guestinfo":
            problems.append((option, "%s: %s. Give your user-data as user_data instead: node_deploy merges it "
                                     "with the node's own and writes it to both datasources" % (key, why)))
    if params.get("user_data") is not None:
        try:
            _user_data.user_parts(params["user_data"])
        except _user_data.UserDataError as error:
            problems.append(("user_data", str(error)))
    return problems


def url_credential(value, where):
    """(where, the URL masked) of the first URL in value (nested lists and dicts) that carries a credential, or None.

    A password (user:secret@) in any scheme, and any user information in
    http(s), where tokens go as the user name (https://<token>@host); an
    ssh user name alone (git+ssh://git@host) is no secret.
    """
    if isinstance(value, dict):
        found = [url_credential(item, "%s.%s" % (where, key) if where else key) for key, item in sorted(value.items())]
    elif isinstance(value, list):
        found = [url_credential(item, "%s[%d]" % (where, index)) for index, item in enumerate(value)]
    else:
        found = [(where, "%s://***@%s" % (scheme, host)) for scheme, userinfo, host in URL_USERINFO.findall(str(value))
                 if ":" in userinfo or scheme.lower().split("+")[-1] in ("http", "https")]
    return next((item for item in found if item), None)


def across_problems(params):
    """(option, problem) for options that are fine one by one but not together."""
    unverified = _ovf_package.plain_http_problem(params.get("ovf") or "", params.get("ovf_sha256"))
    return [("ovf", unverified)] if unverified else []


def new_host_key():
    """(private key in OpenSSH format, public key line) of a fresh ed25519 SSH host key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


# A user name useradd takes on every distribution (no dots, no upper case, 32 at most).
SERVICE_USER_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def vmware_metadata(instance_id, hostname, ssh_public_keys, redact=(), network=None):
    """extraConfig for cloud-init's VMware datasource: guestinfo.metadata (base64 JSON, which is YAML).

    It says what the OVF properties say, so cloud-init picks the same
    identity whichever source it reads first (22.4 tries OVF first; 25.1 and
    later, VMware). redact: the guestinfo keys (without the prefix) the
    datasource clears in the guest's view once it has read them
    (DataSourceVMware's `redact`); vCenter's copy goes by
    _host_key_removal, once the node has answered with its host key.
    """
    metadata = {"instance-id": instance_id, "local-hostname": hostname}
    if ssh_public_keys:
        metadata["public-keys-data"] = "\n".join(ssh_public_keys)
    if redact:
        metadata["redact"] = list(redact)
    if network:
        metadata["network"] = network
    return {_records.GUESTINFO_METADATA: base64.b64encode(json.dumps(metadata).encode()).decode(),
            _records.GUESTINFO_METADATA_ENCODING: "base64"}


# vCenter allows 80 characters in a VM name; a host name label, 63.
MAX_NAME_LENGTH = 63


def request_names(cluster_name, node_type, request_id, count):
    """`<cluster>-<node type>-<request id>-<i>`: the node type shows in vCenter, cut to fit a host name.

    The node type is made host-name safe (see _ray_tags.name_part) and
    shortened so the longest index still fits MAX_NAME_LENGTH; the cluster
    name and request id are kept whole, they are what makes a name unique.
    """
    fixed = "%s--%s-%d" % (cluster_name, request_id, max(count - 1, 0))
    node_type = _ray_tags.name_part(node_type)[:max(MAX_NAME_LENGTH - len(fixed), 1)].strip("-") or "node"
    return ["%s-%s-%s-%d" % (cluster_name, node_type, request_id, index) for index in range(count)]


class DeployRequest(object):
    """The module parameters, checked: names, tags and per-node settings; cluster_key: the _ray_auth.ClusterKey."""

    def __init__(self, params, cluster_key):
        self.params = params
        self.request_id = None
        self.cluster_name = _ray_tags.check_name(params["cluster_name"], "cluster_name")
        self.cluster_key = cluster_key
        problems = value_problems(params) + across_problems(params)
        if problems:
            raise RayVsphereError("; ".join("%s %s" % problem for problem in problems))
        if params.get("names"):
            self.names = [_ray_tags.check_name(name, "VM name") for name in params["names"]]
            if len(set(self.names)) != len(self.names):
                raise RayVsphereError("names: %s appear more than once" % sorted(set(n for n in self.names if self.names.count(n) > 1)))
        else:
            self.request_id = _ray_tags.check_name(params.get("request_id") or uuid.uuid4().hex[:8], "request_id")
            self.names = request_names(self.cluster_name, params.get("node_type") or params["node_kind"],
                                       self.request_id, params["count"])
        self.template_identity = (_template_identity.TemplateIdentity(cluster_key.secret)
                                  if params["clone_from_template"] else None)
        self.tags = _ray_tags.check_tags(params.get("tags"), "tags")
        self.gpu = _gpu.GpuRequest.of(params)
        self.pool = _ip_pool.IpPool(params["ip_pool"]) if params.get("ip_pool") else None
        # {name: address} from the pool, chosen once the folder is read (_build): what each create spec records.
        self.addresses = {}
        self.tags.update({_records.CLUSTER_NAME: self.cluster_name, _records.NODE_KIND: params["node_kind"]})
        if params.get("node_type"):
            self.tags[_records.USER_NODE_TYPE] = params["node_type"]
        self.guestinfo = dict(("guestinfo." + key if not key.startswith("guestinfo.") else key, str(value))
                              for key, value in (params.get("guestinfo") or {}).items())
        self.preferred, self.ignored = _nodes.ip_choice(params)
        self.ssh_public_keys = [key.strip() for key in params.get("ssh_public_keys") or [] if key.strip()]
        # As it reads back from extraConfig, so a record is compared with what reading it gives.
        self.deploy_settings = json.loads(json.dumps(params.get("deploy_settings") or {}, sort_keys=True))
        # A per-clone instance-id: cloud-init runs its per-instance modules
        # (user, keys, hostname) only for an id it has not seen, and every
        # clone of one image would otherwise carry the OVF's default.
        self.instance_uuids = dict((name, str(uuid.uuid4())) for name in self.names)
        # Where the nodes are made, which their identities bind (placed()).
        self.folder_moid = self.vcenter = None
        self.host_keys = {}
        self.service_users = list(params.get("service_users") or [])
        if params.get("ssh_host_key"):
            if HAS_CRYPTOGRAPHY_ERROR:
                raise RayVsphereError("ssh_host_key needs the Python package cryptography: %s" % HAS_CRYPTOGRAPHY_ERROR)
            self.host_keys = dict((name, new_host_key()) for name in self.names)
        self.own_user_data = params.get("user_data")
        if self.own_user_data is not None:
            # Checked once for all nodes: each node's host key differs, what may conflict with it does not.
            parts = _user_data.user_parts(self.own_user_data)
            problems = _user_data.conflicts(parts, bool(self.host_keys), self.service_users)
            if problems:
                raise RayVsphereError("user_data: %s" % "; ".join(problems))

    def user_data(self, name):
        """The node's user-data, base64: its own cloud-config and the caller's user_data; None when there is neither."""
        text = _user_data.node_user_data(self.host_keys.get(name), self.service_users, self.own_user_data)
        return _user_data.encoded(text) if text is not None else None

    def cloud_init_identity(self, name):
        """What cloud-init's datasources read for a node: instance-id, hostname, keys (OVF property names)."""
        identity = {"instance-id": self.instance_uuids[name], "hostname": name}
        if self.ssh_public_keys:
            identity["public-keys"] = "\n".join(self.ssh_public_keys)
        user_data = self.user_data(name)
        if user_data:
            identity["user-data"] = user_data
        return identity

    def ovf_properties(self, declared, name):
        """The node's OVF property values: ovf_properties, plus its identity where the OVF declares those keys.

        cloud-init's OVF datasource reads `instance-id`, `hostname` and
        `public-keys` from the OVF environment; an OVF that does not declare
        them (a Packer-built image) gets them through guestinfo.metadata alone.
        """
        values = dict((key, str(value)) for key, value in (self.params.get("ovf_properties") or {}).items())
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise RayVsphereError("ovf_properties: %s not declared by the OVF (it declares: %s)"
                                  % (", ".join(unknown), ", ".join(declared) or "none"))
        for key, value in self.cloud_init_identity(name).items():
            if key in declared and key not in values:
                values[key] = value
        return values

    def vmware_metadata(self, name, network=None):
        """guestinfo.metadata for cloud-init's VMware datasource: the same identity as the OVF properties.

        network: the node's static network config, given once its MAC is known (_build's identity binding).
        """
        identity = self.cloud_init_identity(name)
        # The user-data holds the host private key (and may hold the caller's secrets): no reader in the guest
        # needs it after cloud-init.
        redact = [_records.GUESTINFO_USERDATA[len(_records.GUESTINFO_PREFIX):]] if name in self.host_keys else []
        return vmware_metadata(identity["instance-id"], identity["hostname"], self.ssh_public_keys, redact, network)

    def placed(self, folder_moid, vcenter):
        """The VM folder the nodes go in and vCenter's instance UUID (_records.vcenter_uuid): what identities bind."""
        self.folder_moid, self.vcenter = folder_moid, vcenter

    def node_identity(self, name, vm_moid=None):
        """The identity node `name` records: as its create call writes it, or bound to its moid once it exists."""
        return self.cluster_key.node_identity(name, self.instance_uuids[name], self.folder_moid, self.vcenter, vm_moid)

    def configure(self, config_spec, name):
        """Sizing, instance UUID and extraConfig for the new VM `name`; the creation marker makes a cut-short VM adoptable."""
        if self.params.get("cpus"):
            config_spec.numCPUs = self.params["cpus"]
        if self.params.get("memory_mb"):
            config_spec.memoryMB = self.params["memory_mb"]
        config_spec.instanceUuid = self.instance_uuids[name]
        extra = self.vmware_metadata(name)
        user_data = self.user_data(name)
        if user_data:
            extra.update({_records.GUESTINFO_USERDATA: user_data, _records.GUESTINFO_USERDATA_ENCODING: "base64"})
        if name in self.host_keys:
            extra[_records.SSH_HOST_KEY] = self.host_keys[name][1]
        extra.update(self.guestinfo)  # the caller's own guestinfo.metadata, if any, wins
        extra[_records.CREATION_MARKER] = self.cluster_name
        # By the create call itself, as the marker: no VM of the cluster ever exists without its identity
        # (bound to the VM's moid once it exists: _build) and the folder that identity binds.
        extra[_records.CLUSTER_IDENTITY] = self.node_identity(name)
        extra[_records.CREATION_FOLDER] = self.folder_moid
        if self.deploy_settings:
            extra[_records.DEPLOY_SETTINGS] = json.dumps(self.deploy_settings, sort_keys=True)
        if self.request_id:
            extra[_records.REQUEST_MARKER] = self.request_id
        if name in self.addresses:
            extra[_records.IP_ADDRESS] = self.addresses[name]
        config_spec.extraConfig = list(config_spec.extraConfig or []) + [
            vim.option.OptionValue(key=key, value=value) for key, value in sorted(extra.items())]
