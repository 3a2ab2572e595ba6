# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Deploy Ray nodes from an OVF: many in one call, in parallel, idempotent.

Fast path: the OVF is imported once into a template per content hash
(snapshotted, so clones can be linked) and every node is a clone of it. The
template is found again without reading the image (see _Image), so a
scale-up from a multi-GiB image at a URL costs a HEAD request, not a download.
Everything is checked before anything is created, and a failed call removes
every VM it made: no half-made nodes, no orphans.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import functools
import json
import os
import re
import socket
import threading
import time
import uuid

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import (
    FAILURE_NO_IP_ADDRESS, RayVsphereError, fault_text)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _nfc, _nodes, _ovf_package, _placement, _ray_auth, _ray_tags, _records, _template_identity, _vsphere)

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    HAS_CRYPTOGRAPHY_ERROR = None
except ImportError as error:  # only ssh_host_key needs it
    HAS_CRYPTOGRAPHY_ERROR = str(error)

LINKED_CLONE_SNAPSHOT = "ray-linked-clone-base"
SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")

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
    parallel=dict(type="int", default=4),
    timeout=dict(type="int", default=1800),
)
DEPLOY_OPTIONS.update(_placement.PLACEMENT_OPTIONS)
DEPLOY_OPTIONS.update(_nodes.IP_OPTIONS)
DEPLOY_OPTIONS.update(_ray_auth.CLUSTER_KEY_OPTIONS)
# The rules AnsibleModule applies across options; the Ray provider checks a
# cluster YAML's node settings with the same lists.
REQUIRED_ONE_OF = [("cluster", "esxi_host")]
MUTUALLY_EXCLUSIVE = [("cluster", "esxi_host"), ("names", "request_id")]
# Counts, sizes and seconds, where 0 is a mistake rather than "none".
AT_LEAST_ONE = ("count", "parallel", "ip_timeout", "timeout", "cpus", "memory_mb")


def value_problems(params):
    """(option, problem) for every set option whose value the type check lets through but deploy cannot use."""
    problems = [(option, "must be at least 1, not %s" % params[option])
                for option in AT_LEAST_ONE if params.get(option) is not None and params[option] < 1]
    if params.get("ovf_sha256") and not SHA256_PATTERN.match(params["ovf_sha256"]):
        problems.append(("ovf_sha256", "must be a SHA-256 in hex (64 digits, as sha256sum prints it), not %r"
                         % params["ovf_sha256"]))
    return problems


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


def host_key_user_data(private_key, public_key):
    """cloud-config that makes `public_key` the node's only SSH host key (cloud-init's ssh module)."""
    return "#cloud-config\n" + json.dumps({
        # The image's own keys (or keys made at first boot) go: only this one is offered.
        "ssh_deletekeys": True, "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": private_key, "ed25519_public": public_key}}, indent=1) + "\n"


def vmware_metadata(instance_id, hostname, ssh_public_keys):
    """extraConfig for cloud-init's VMware datasource: guestinfo.metadata (base64 JSON, which is YAML).

    It says what the OVF properties say, so cloud-init picks the same
    identity whichever source it reads first (22.4 tries OVF first; 25.1 and
    later, VMware).
    """
    metadata = {"instance-id": instance_id, "local-hostname": hostname}
    if ssh_public_keys:
        metadata["public-keys-data"] = "\n".join(ssh_public_keys)
    return {"guestinfo.metadata": base64.b64encode(json.dumps(metadata).encode()).decode(),
            "guestinfo.metadata.encoding": "base64"}


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
        self.template_identity = (_template_identity.TemplateIdentity(cluster_key.private_key_text)
                                  if params["clone_from_template"] else None)
        self.tags = _ray_tags.check_tags(params.get("tags"), "tags")
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
        self.host_keys = {}
        if params.get("ssh_host_key"):
            if HAS_CRYPTOGRAPHY_ERROR:
                raise RayVsphereError("ssh_host_key needs the Python package cryptography: %s" % HAS_CRYPTOGRAPHY_ERROR)
            own = [where for where, present in (("ovf_properties.user-data", "user-data" in (params.get("ovf_properties") or {})),
                                                ("guestinfo.userdata", "guestinfo.userdata" in self.guestinfo)) if present]
            if own:
                raise RayVsphereError("ssh_host_key: the node's host key goes in its cloud-init user-data, which %s "
                                      "sets already; drop ssh_host_key or that user-data" % " and ".join(own))
            self.host_keys = dict((name, new_host_key()) for name in self.names)

    def cloud_init_identity(self, name):
        """What cloud-init's datasources read for a node: instance-id, hostname, keys (OVF property names)."""
        identity = {"instance-id": self.instance_uuids[name], "hostname": name}
        if self.ssh_public_keys:
            identity["public-keys"] = "\n".join(self.ssh_public_keys)
        if name in self.host_keys:
            identity["user-data"] = base64.b64encode(host_key_user_data(*self.host_keys[name]).encode()).decode()
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

    def vmware_metadata(self, name):
        """guestinfo.metadata for cloud-init's VMware datasource: the same identity as the OVF properties."""
        identity = self.cloud_init_identity(name)
        return vmware_metadata(identity["instance-id"], identity["hostname"], self.ssh_public_keys)

    def configure(self, config_spec, name):
        """Sizing, instance UUID and extraConfig for the new VM `name`; the creation marker makes a cut-short VM adoptable."""
        if self.params.get("cpus"):
            config_spec.numCPUs = self.params["cpus"]
        if self.params.get("memory_mb"):
            config_spec.memoryMB = self.params["memory_mb"]
        config_spec.instanceUuid = self.instance_uuids[name]
        extra = self.vmware_metadata(name)
        if name in self.host_keys:
            extra.update({"guestinfo.userdata": self.cloud_init_identity(name)["user-data"],
                          "guestinfo.userdata.encoding": "base64",
                          _records.SSH_HOST_KEY: self.host_keys[name][1]})
        extra.update(self.guestinfo)  # the caller's own guestinfo.metadata, if any, wins
        extra[_records.CREATION_MARKER] = self.cluster_name
        # By the create call itself, as the marker: no VM of the cluster ever exists without its identity.
        extra[_records.CLUSTER_IDENTITY] = self.cluster_key.node_identity(name, self.instance_uuids[name])
        if self.deploy_settings:
            extra[_records.DEPLOY_SETTINGS] = json.dumps(self.deploy_settings, sort_keys=True)
        if self.request_id:
            extra[_records.REQUEST_MARKER] = self.request_id
        config_spec.extraConfig = list(config_spec.extraConfig or []) + [
            vim.option.OptionValue(key=key, value=value) for key, value in sorted(extra.items())]


def deploy(client, params, check_mode, cluster_key):
    service_instance = client.service_instance
    request = DeployRequest(params, cluster_key)
    placement = _placement.resolve(service_instance, params)
    inventory = _nodes.Inventory(service_instance)
    refuse_name_clash(inventory, placement.folder, request)
    existing, adoptable, missing = _sort_names(inventory, placement.folder, request)
    with _Image(service_instance, params, inventory, placement.folder, request.template_identity) as image:
        declared = image.declared_properties()
        if image.package.opened:
            # Validates the OVF against the placement (networks, disks) and the
            # property names, which are the same for every node, before anything exists.
            _nfc.import_spec(service_instance, image.package, request.names[0], placement,
                             request.ovf_properties(declared, request.names[0]),
                             functools.partial(request.configure, name=request.names[0]))
        else:
            # A template made from this image in this folder: it passed that
            # check when it was imported, so only the property names are checked.
            request.ovf_properties(declared, request.names[0])
        to_power_on = [name for name, (vm, props) in existing.items()
                       if params["power_on"] and props.get("runtime.powerState") != vim.VirtualMachine.PowerState.poweredOn]
        to_record = [name for name, (vm, props) in existing.items()
                     if request.deploy_settings and _records.deploy_settings(props) != request.deploy_settings]
        changed = bool(missing or adoptable or to_power_on or to_record)
        if missing or adoptable:
            # The custom attributes the nodes (and a new template) get: defined beforehand, or nothing is made.
            inventory.attributes.require(set(request.tags) | (
                {_records.TEMPLATE_HASH} if missing and params["clone_from_template"] else set()))
        if check_mode:
            return dict(_predicted(inventory, request, existing, changed), image=image.result())
        _record_deploy_settings(service_instance, request, dict((name, existing[name][0]) for name in to_record))
        builder = _NodeBuilder(client, image, placement, request, inventory, declared)
        builder.create(missing, adoptable, [existing[name][0] for name in to_power_on])
    vms = dict((vm, name) for name, vm in builder.vms.items())
    vms.update((vm, name) for name, (vm, props) in existing.items())
    if params["wait_for_ip"] and params["power_on"]:
        try:
            wait_for_ips(service_instance, vms, request, params["ip_timeout"])
        except RayVsphereError as error:
            # A node that never gets an address is a failed node: the call is all or nothing.
            made = sorted(builder.vms)
            builder.undo()
            if made:
                raise RayVsphereError("%s; removed the VMs this call created: %s" % (error, ", ".join(made)),
                                      **error.details)
            raise
    final = _nodes.Inventory(service_instance)
    nodes = [final.record(vm, request.preferred, request.ignored) for vm, name in sorted(vms.items(), key=lambda item: item[1])]
    return dict(changed=changed, nodes=nodes, created=sorted(missing), adopted=sorted(adoptable),
                existing=sorted(existing), image=image.result())


class _Image(object):
    """The image and its template in the VM folder; the image is read only when no template has it.

    The template is found by the package's key() (ovf_sha256, the cached
    hash of a local file, or a URL's validators from one HEAD request)
    against the key each template records: then a URL is neither downloaded
    nor hashed, in check mode too. Otherwise the package is opened (a URL
    downloaded and hashed, once) and the template is the one of its content
    hash, imported when there is none. A template imported through another
    key (another URL, a local copy) is reused by content hash, but only its
    own key spares the download.

    Only templates made with the cluster's key count (see _template_identity):
    another VM is never found, whatever it records.
    """

    def __init__(self, service_instance, params, inventory, folder, identity):
        self.service_instance = service_instance
        self.package = _ovf_package.OvfPackage(params["ovf"], params["ovf_validate_certs"], ca_path=params["ovf_ca_path"],
                                       sha256=params["ovf_sha256"], hash_cache=_ovf_package.HashCache())
        self._use_template = params["clone_from_template"]
        self._inventory = inventory
        self._folder = folder
        self._identity = identity
        self.key = None
        self.template_vm = self.template_name = self.sha256 = None

    def __enter__(self):
        try:
            self._find()
        except BaseException:
            self.package.close()
            raise
        return self

    def _find(self):
        if not self._use_template:
            self.package.open()
            return
        self.key = self.package.key()
        found = self.key and _find_template(self._inventory, self._folder, self.key, self._identity)
        if not found:
            self.package.open()
            content_hash = self.package.content_hash
            found = _find_template(self._inventory, self._folder, _ovf_package.SHA256_KEY + content_hash, self._identity)
            if not found:
                name = self._identity.name(content_hash)
                _refuse_impostor(self._inventory, self._folder, name)
                found = (None, name, content_hash)
        self.template_vm, self.template_name, self.sha256 = found

    def __exit__(self, *exc_info):
        self.package.close()

    def opened_package(self):
        self.package.open()
        return self.package

    def declared_properties(self):
        """The OVF's property keys: from the descriptor, or from the template when the image was not read."""
        if self.package.opened:
            return _ovf_package.declared_properties(self.package.descriptor)
        properties = _vsphere.read(self.service_instance, self.template_vm,
                                   ["config.vAppConfig.property"]).get("config.vAppConfig.property")
        return [prop.id for prop in properties or []]

    def result(self):
        return dict(template=self.template_name, sha256=self.sha256, key=self.key, downloaded=self.package.downloaded)


def _find_template(inventory, folder, key, identity):
    """(vm, name, content hash) of the template of ours in folder recorded with key, or None.

    A 'sha256:' key also finds a template by the content hash it records. A
    template still being imported by another run counts: _Template waits for it.
    """
    digest = key[len(_ovf_package.SHA256_KEY):] if key.startswith(_ovf_package.SHA256_KEY) else None
    for vm, props in inventory.vms.items():
        name = props.get("name") or ""
        if props.get("parent") != folder or not name.startswith(_template_identity.TEMPLATE_PREFIX):
            continue
        record = _records.extra_config(props)
        if not identity.is_ours(name, vm._moId, record, props.get("config.template")):
            continue  # made with another key, or by someone else: never cloned from
        if record.get(_records.IMAGE_KEY) == key or (digest and record.get(_records.IMAGE_SHA256) == digest):
            return vm, name, record.get(_records.IMAGE_SHA256)
    return None


def _refuse_impostor(inventory, folder, name):
    """Fail if a VM holds the name of the template to make without being one of ours: nothing is made then."""
    for vm, props in inventory.vms.items():
        if props.get("parent") == folder and props.get("name") == name:
            raise RayVsphereError(_impostor_text(name))


def _impostor_text(name):
    return ("a VM named %s is in the VM folder, the name of this image's template, but it does not record the "
            "identity of a template made with this cluster's key (cluster_key_file): it may have been planted, so it "
            "is not cloned; remove it (or move it out of the folder) and deploy again" % name)


def this_maker():
    return "%s pid %d" % (socket.gethostname(), os.getpid())


def _record_image(package, identity, config_spec, maker=None, started=None):
    """The image's content hash and key, its identity, and who makes it since when, in the new template's extraConfig.

    Written by the import itself, so no moment exists in which the template
    has no maker, or is not recognizably ours.
    """
    config_spec.extraConfig = list(config_spec.extraConfig or []) + [
        vim.option.OptionValue(key=_records.TEMPLATE_IDENTITY, value=identity),
        vim.option.OptionValue(key=_records.IMAGE_SHA256, value=package.content_hash),
        vim.option.OptionValue(key=_records.IMAGE_KEY, value=package.template_key()),
        vim.option.OptionValue(key=_records.TEMPLATE_MAKER, value=maker or this_maker()),
        vim.option.OptionValue(key=_records.TEMPLATE_STARTED, value=str(int(started if started is not None else time.time())))]


def maker_is_dead(markers, bound, now=None):
    """Why a half-made template's maker is dead, or None while it may still be at work.

    A maker on this host is alive while its process is. Of a maker elsewhere
    only its start is known: it is dead once that is older than `bound`
    seconds (the maker's own deploy timeout would have ended it by then). A
    half-made template without a maker (one made before makers were recorded)
    has only the bound, counted from its creation.
    """
    now = time.time() if now is None else now
    maker, started = markers.get(_records.TEMPLATE_MAKER), markers.get(_records.TEMPLATE_STARTED)
    host, pid = (maker or "").partition(" pid ")[::2]
    if host == socket.gethostname() and pid.isdigit():
        return None if _process_alive(int(pid)) else "its maker, %s, is gone" % maker
    try:
        age = now - float(started)
    except (TypeError, ValueError):
        return None
    if age > bound:
        return "its maker, %s, started %d s ago, longer than the %d s a deploy may take" % (maker, age, bound)
    return None


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno != 3  # ESRCH: no such process; EPERM: alive, not ours
    return True


def _record_deploy_settings(service_instance, request, vms):
    """Rewrite the deploy_settings record of existing nodes {name: vm} that record other settings."""
    value = json.dumps(request.deploy_settings, sort_keys=True)

    def record(name):
        spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=_records.DEPLOY_SETTINGS, value=value)])
        _vsphere.wait_for_task(service_instance, vms[name].ReconfigVM_Task(spec),
                               "ReconfigVM_Task (deploy settings) on VM %s" % name)

    errors = _nodes.in_parallel(record, sorted(vms), request.params["parallel"])
    if errors:
        raise RayVsphereError("recording the deploy settings of Ray cluster %s failed: %s"
                              % (request.cluster_name, "; ".join(errors)))


def refuse_name_clash(inventory, folder, request):
    """Fail, before anything is made, if the VM folder holds VMs of a cluster of this name made with another key.

    Such VMs carry the cluster's name (tag or creation marker) without an
    identity this key verifies. Joining them would make one "cluster" of two
    teams' VMs, each able to delete the other's. The same name in another
    folder, under another key, is another cluster, and never touched.
    """
    key = request.cluster_key
    clashing = sorted(props.get("name") or vm._moId for vm, props in inventory.vms.items()
                      if props.get("parent") == folder and not props.get("config.template")
                      and (inventory.tags(vm).get(_records.CLUSTER_NAME) == key.cluster_name
                           or _records.creation_marker(props) == key.cluster_name)
                      and not _records.verified(props, key))
    if clashing:
        datacenter = request.params["datacenter"]
        path = (request.params.get("vm_folder") or "").strip("/")
        if path == datacenter + "/vm" or path.startswith(datacenter + "/vm/"):  # given as /DC/vm/ray
            path = path[len(datacenter) + 3:].strip("/")
        raise RayVsphereError("cluster %r already exists in %s under another key (VMs: %s): pick another cluster "
                              "name, or use that cluster's key (cluster_key_file)"
                              % (key.cluster_name, "/".join(part for part in (datacenter, "vm", path) if part),
                                 ", ".join(clashing)), unverified=clashing)


def _sort_names(inventory, folder, request):
    """Split the requested names into existing nodes, adoptable leftovers and names to create."""
    existing, adoptable, missing = {}, {}, []
    in_folder = dict((props.get("name"), (vm, props)) for vm, props in inventory.vms.items() if props.get("parent") == folder)
    for name in request.names:
        if name not in in_folder:
            missing.append(name)
            continue
        vm, props = in_folder[name]
        tags = inventory.tags(vm)
        ours = _records.verified(props, request.cluster_key)
        if ours and tags.get(_records.CLUSTER_NAME) == request.cluster_name:
            existing[name] = (vm, props)
        elif ours and not tags.get(_records.CLUSTER_NAME) and _records.creation_marker(props) == request.cluster_name:
            adoptable[name] = vm  # created by a run that stopped before tagging it
        else:
            raise RayVsphereError("a VM named %s already exists in the VM folder and is not a node of Ray cluster %s"
                                  % (name, request.cluster_name))
    return existing, adoptable, missing


def _predicted(inventory, request, existing, changed):
    nodes = []
    for name in request.names:
        if name in existing:
            nodes.append(inventory.record(existing[name][0], request.preferred, request.ignored))
        else:
            nodes.append(dict(name=name, uuid=None, moid=None, ip=None, ip_addresses=[], tags=request.tags,
                              power_state="poweredOn" if request.params["power_on"] else "poweredOff",
                              deploy_settings=request.deploy_settings))
    created = sorted(name for name in request.names if name not in existing)
    return dict(changed=changed, nodes=nodes, created=created, adopted=[], existing=sorted(existing))


class _NodeBuilder(object):
    """Creates, tags and powers on the nodes of one request; undoes all of it on failure."""

    def __init__(self, client, image, placement, request, inventory, declared):
        self.client = client
        self.service_instance = client.service_instance
        self.image = image
        self.placement = placement
        self.request = request
        self.attributes = inventory.attributes
        self.inventory = inventory
        self.declared = declared
        self.vms = {}
        self._lock = threading.Lock()
        self._template = None

    def create(self, missing, adoptable, to_power_on):
        params = self.request.params
        try:
            if missing and params["clone_from_template"]:
                self._template = _Template(self, self.image.template_name)
            errors = _nodes.in_parallel(self._create_node, missing, params["parallel"])
            if errors:
                raise RayVsphereError("deploying nodes of Ray cluster %s failed: %s"
                                      % (self.request.cluster_name, "; ".join(errors)))
            for name, vm in adoptable.items():
                self.attributes.set(vm, name, self.request.tags)
                self.vms[name] = vm
            if params["power_on"]:
                targets = [(vm, name) for name, vm in self.vms.items()] + [(vm, None) for vm in to_power_on]
                errors = _nodes.in_parallel(self._power_on, targets, params["parallel"])
                if errors:
                    raise RayVsphereError("powering on nodes of Ray cluster %s failed: %s"
                                          % (self.request.cluster_name, "; ".join(errors)))
        except BaseException:
            self.undo()
            raise

    def undo(self):
        """Destroy every VM this builder made."""
        made = dict((vm, name) for name, vm in self.vms.items())
        _nodes.in_parallel(lambda vm: _nodes.destroy_vm(self.service_instance, vm, made[vm]), list(made), 8)
        self.vms.clear()

    def _create_node(self, name):
        properties = self.request.ovf_properties(self.declared, name)
        if self._template is not None:
            vm = self._template.clone(name, properties)
        else:
            package = self.image.package  # opened: clone_from_template is off
            spec = _nfc.import_spec(self.service_instance, package, name, self.placement, properties,
                                    functools.partial(self.request.configure, name=name))
            vm = _nfc.import_vm(self.client, package, spec, name, self.placement, self.request.params["timeout"])
        with self._lock:
            self.vms[name] = vm
        self.attributes.set(vm, name, self.request.tags)

    def _power_on(self, target):
        vm, name = target
        try:
            _vsphere.wait_for_task(self.service_instance, vm.PowerOnVM_Task(), "PowerOnVM_Task on VM %s" % (name or vm._moId))
        except RayVsphereError as error:
            if error.details.get("fault") != "InvalidPowerState":  # already on
                raise


class _Template(object):
    """The template of the image: found, or imported once, snapshotted and marked; one of ours in either case."""

    def __init__(self, builder, name):
        self.builder = builder
        self.service_instance = builder.service_instance
        self.identity = builder.request.template_identity
        self.name = name
        self.vm = self._find_or_import()
        self.props = _vsphere.read(self.service_instance, self.vm, ["snapshot", "datastore", "config.hardware.device"])

    def _find_or_import(self):
        builder = self.builder
        deadline = time.time() + builder.request.params["timeout"]
        while True:
            vm = self.service_instance.content.searchIndex.FindChild(builder.placement.folder, self.name)
            if vm is None:
                package = builder.image.opened_package()
                content_name = self.identity.name(package.content_hash)
                if content_name != self.name:  # the template found by key is gone, and the image changed since
                    self.name = content_name
                    continue
                try:
                    return self._import(package)
                except RayVsphereError as error:
                    if error.details.get("fault") != "DuplicateName":
                        raise
                    continue  # another run is importing it: wait for that one
            props = _vsphere.read(self.service_instance, vm, ["config.template", "config.extraConfig", "config.createDate"])
            markers = _records.extra_config(props)
            if not self.identity.is_ours(self.name, vm._moId, markers, props.get("config.template")):
                raise RayVsphereError(_impostor_text(self.name))  # planted since the image was looked up
            if props.get("config.template"):
                return vm
            if _records.TEMPLATE_STARTED not in markers and props.get("config.createDate"):
                markers[_records.TEMPLATE_STARTED] = _epoch(props["config.createDate"])
            dead = maker_is_dead(markers, builder.request.params["timeout"])
            if dead:
                # A half-made template blocks every deploy of its image until it is gone.
                _nodes.destroy_vm(self.service_instance, vm, self.name)
                continue
            if time.time() > deadline:
                raise RayVsphereError("template %s is still being made by %s after %s s"
                                      % (self.name, markers.get(_records.TEMPLATE_MAKER, "another run"),
                                         builder.request.params["timeout"]))
            time.sleep(1)

    def _import(self, package):
        builder = self.builder
        # Bare but for the image record: sizing, guestinfo and the marker are per node, set on
        # each clone; on the template they would leak one cluster's keys into another's clones.
        spec = _nfc.import_spec(self.service_instance, package, self.name, builder.placement, {},
                                functools.partial(_record_image, package, self.identity.being_made(self.name)))
        vm = _nfc.import_vm(builder.client, package, spec, self.name, builder.placement,
                            builder.request.params["timeout"])
        try:
            builder.attributes.set(vm, self.name, {_records.TEMPLATE_HASH: package.content_hash})
            _vsphere.wait_for_task(self.service_instance,
                                   vm.CreateSnapshot_Task(name=LINKED_CLONE_SNAPSHOT, memory=False, quiesce=False),
                                   "CreateSnapshot_Task on template %s" % self.name)
            # Made: no maker any more (an empty value removes an extraConfig key), so clones do not inherit one,
            # and the identity bound to the moid vCenter gave it, which no other VM can carry.
            _vsphere.wait_for_task(self.service_instance, vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[
                vim.option.OptionValue(key=key, value="") for key in (_records.TEMPLATE_MAKER, _records.TEMPLATE_STARTED)] + [
                vim.option.OptionValue(key=_records.TEMPLATE_IDENTITY,
                                       value=self.identity.made(self.name, vm._moId))])),
                "ReconfigVM_Task (maker removed, identity recorded) on template %s" % self.name)
            vm.MarkAsTemplate()
        except BaseException:
            _nodes.destroy_vm(self.service_instance, vm, self.name)
            raise
        return vm

    def clone(self, name, properties):
        request, placement = self.builder.request, self.builder.placement
        location = vim.vm.RelocateSpec(pool=placement.resource_pool, datastore=placement.datastore, host=placement.host)
        snapshot = self.props.get("snapshot")
        linked = (request.params["linked_clone"] and snapshot is not None
                  and placement.datastore in (self.props.get("datastore") or []))
        if linked:  # a linked clone shares the template's disks, so only on the template's datastore
            location.diskMoveType = "createNewChildDiskBacking"
        # A clone keeps its template's extraConfig: not the template's identity, which is no clone's.
        config = vim.vm.ConfigSpec(deviceChange=self._nic_changes(), extraConfig=[
            vim.option.OptionValue(key=_records.CLONED_FROM, value=self.name),
            vim.option.OptionValue(key=_records.TEMPLATE_IDENTITY, value="")])
        request.configure(config, name)
        spec = vim.vm.CloneSpec(location=location, powerOn=False, template=False, config=config,
                                snapshot=snapshot.currentSnapshot if linked else None)
        try:
            task = self.vm.CloneVM_Task(folder=placement.folder, name=name, spec=spec)
        except vmodl.MethodFault as error:
            raise RayVsphereError("CloneVM_Task of %s to %s failed: %s" % (self.name, name, fault_text(error)))
        try:
            vm = _vsphere.wait_for_task(self.service_instance, task, "CloneVM_Task of %s to %s" % (self.name, name),
                                        request.params["timeout"])
        except BaseException:
            _nfc.remove_half_made_vm(self.service_instance, placement.folder, name)
            raise
        if properties:
            self._set_properties(vm, name, properties)
        return vm

    def _set_properties(self, vm, name, values):
        """Give the clone its OVF property values in one ReconfigVM, by the keys of the properties it kept.

        A clone keeps its template's vApp properties (vCenter copies the
        configuration), so values are edits; an OVF's property that is not
        there is an error, not something to add.
        """
        kept = dict((prop.id, prop) for prop in
                    _vsphere.read(self.service_instance, vm, ["config.vAppConfig.property"]).get("config.vAppConfig.property", []))
        missing = sorted(set(values) - set(kept))
        if missing:
            raise RayVsphereError("clone %s of template %s lacks the vApp properties %s its OVF declares"
                                  % (name, self.name, ", ".join(missing)))
        specs = [vim.vApp.PropertySpec(operation="edit", info=vim.vApp.PropertyInfo(key=kept[key].key, value=value))
                 for key, value in sorted(values.items())]
        _vsphere.wait_for_task(self.service_instance,
                               vm.ReconfigVM_Task(vim.vm.ConfigSpec(vAppConfig=vim.vApp.VmConfigSpec(property=specs))),
                               "ReconfigVM_Task (OVF properties) on VM %s" % name)

    def _nic_changes(self):
        network = self.builder.placement.network
        if network is None:
            return []
        backing = _nic_backing(self.service_instance, network)
        changes = []
        for device in self.props.get("config.hardware.device") or []:
            if isinstance(device, vim.vm.device.VirtualEthernetCard):
                device.backing = backing
                changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=device))
        return changes


def _epoch(moment):
    """A datetime from vCenter as seconds since the epoch."""
    return str(int(moment.timestamp()))


def _nic_backing(service_instance, network):
    if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
        props = _vsphere.read(service_instance, network, ["key", "config.distributedVirtualSwitch"])
        switch_uuid = _vsphere.read(service_instance, props["config.distributedVirtualSwitch"], ["uuid"])["uuid"]
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(portgroupKey=props["key"], switchUuid=switch_uuid))
    name = _vsphere.read(service_instance, network, ["name"])["name"]
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=name, network=network)


def wait_for_ips(service_instance, vms, request, timeout):
    """Wait until every VM reports a usable IP, following guest.net with WaitForUpdatesEx."""
    collector = service_instance.content.propertyCollector.CreatePropertyCollector()
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm, skip=False) for vm in vms],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine,
                                                            pathSet=["guest.net", "guest.ipAddress"])],
    )
    seen = dict((vm, {}) for vm in vms)
    deadline = time.time() + timeout
    try:
        collector.CreateFilter(spec, partialUpdates=False)
        version = ""
        while True:
            waiting = [vm for vm in vms if not _nodes.choose_ip(_nodes.guest_addresses(seen[vm]), request.preferred,
                                                                request.ignored)]
            if not waiting:
                return
            left = deadline - time.time()
            if left <= 0:
                reported = "; ".join("%s: %s" % (vms[vm], _nodes.guest_addresses(seen[vm]) or "no address") for vm in waiting)
                raise RayVsphereError("no usable IP after %s s (ignored: %s) for %s" % (
                    timeout, ", ".join(str(n) for n in request.ignored), reported), failure=FAILURE_NO_IP_ADDRESS)
            update = collector.WaitForUpdatesEx(version, vmodl.query.PropertyCollector.WaitOptions(
                maxWaitSeconds=int(max(1, min(left, 30)))))
            if update is None:
                continue
            version = update.version
            for filter_update in update.filterSet:
                for object_update in filter_update.objectSet:
                    for change in object_update.changeSet:
                        seen[object_update.obj][change.name] = change.val
    finally:
        collector.DestroyPropertyCollector()
