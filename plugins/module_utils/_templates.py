# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Image to template: finding an image's template, making it once (the maker protocol), and pruning idle ones.

The clone fast path imports each image once into a template per content hash
and cluster key; every node is a clone of it. A template is made by one
deploy, the maker, which records a heartbeat in the template's extraConfig
(vCenter's clock) while it works: other deploys wait for a live maker and
remove the half-made template of a silent one. Only templates made with the
cluster's key count (see _template_identity): another VM is never found,
cloned from or removed, whatever it records.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import os
import socket
import time

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _image_hash_cache, _ledger, _nfc, _nodes, _ovf_package, _placement, _records, _template_identity, _vsphere, _waiter)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import TEMPLATE_PREFIX

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

LINKED_CLONE_SNAPSHOT = "ray-linked-clone-base"
# A maker refreshes its heartbeat this often, and is dead once it is older than
# HEARTBEAT_STALE_SECONDS (room for beats that fail while vCenter is busy).
HEARTBEAT_SECONDS = 20
HEARTBEAT_STALE_SECONDS = 300


class Image(object):
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

    def __init__(self, service_instance, params, inventory, folder, identity, check_mode=False):
        self.service_instance = service_instance
        # In check mode only the descriptor is read (OvfPackage._open_descriptor), never the whole image.
        self.package = _ovf_package.OvfPackage(params["ovf"], params["ovf_validate_certs"], ca_path=params["ovf_ca_path"],
                                               sha256=params["ovf_sha256"], hash_cache=_image_hash_cache.HashCache(),
                                               descriptor_only=check_mode)
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
            content_hash = self.package.content_hash  # None in check mode when not known without the whole image
            found = content_hash and _find_template(self._inventory, self._folder,
                                                    _ovf_package.SHA256_KEY + content_hash, self._identity)
            if content_hash and not found:
                name = self._identity.name(content_hash)
                _refuse_impostor(self._inventory, self._folder, name)
                found = (None, name, content_hash)
        self.template_vm, self.template_name, self.sha256 = found or (None, None, None)

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
    """Who makes a template, for the humans who read it: not what liveness is judged by (see maker_is_dead)."""
    return "%s pid %d" % (socket.gethostname(), os.getpid())


def vcenter_now(service_instance):
    """vCenter's clock in seconds since the epoch: every maker and every judge of one reads the same clock."""
    return service_instance.CurrentTime().timestamp()


def record_image(package, identity, config_spec, maker=None, started=None, heartbeat=None):
    """The image's content hash and key, its identity, its maker and the maker's first heartbeat, in extraConfig.

    Written by the import itself, so no moment exists in which the template
    has no maker, or is not recognizably ours.
    """
    record = {_records.TEMPLATE_IDENTITY: identity, _records.IMAGE_SHA256: package.content_hash,
              _records.IMAGE_KEY: package.template_key(), _records.TEMPLATE_MAKER: maker or this_maker(),
              _records.TEMPLATE_STARTED: str(int(started if started is not None else time.time()))}
    if heartbeat is not None:
        record[_records.TEMPLATE_HEARTBEAT] = str(int(heartbeat))
    config_spec.extraConfig = list(config_spec.extraConfig or []) + [
        vim.option.OptionValue(key=key, value=value) for key, value in sorted(record.items())]


def maker_is_dead(markers, bound, now):
    """Why a half-made template's maker is dead, or None while it may still be at work.

    now is vCenter's clock (vcenter_now). A maker whose heartbeat has moved
    since it started is alive while the heartbeat is younger than
    HEARTBEAT_STALE_SECONDS, whichever machine or process it is. One whose
    heartbeat never moved may be beating into a VM that vCenter keeps locked
    while the import's NFC lease is open (vcsim does not lock it; nothing we
    can cite says vCenter does not), so, like a template without a heartbeat
    (made before makers beat), it has only `bound`, counted from its start
    or creation: a long upload is never taken for a dead maker.
    """
    maker = markers.get(_records.TEMPLATE_MAKER) or "another run"
    heartbeat = _seconds(markers.get(_records.TEMPLATE_HEARTBEAT))
    started = _seconds(markers.get(_records.TEMPLATE_STARTED))
    if heartbeat is not None and (started is None or heartbeat - started >= HEARTBEAT_SECONDS):
        silent = now - heartbeat
        if silent > HEARTBEAT_STALE_SECONDS:
            return "its maker, %s, last beat %d s ago (a live one beats every %d s)" % (maker, silent, HEARTBEAT_SECONDS)
        return None
    if started is not None and now - started > bound:
        return "its maker, %s, started %d s ago, longer than the %d s a deploy may take" % (maker, now - started, bound)
    return None


def _seconds(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def heartbeat(service_instance, folder, name):
    """`with heartbeat(...):` refreshes the heartbeat of the template being made every HEARTBEAT_SECONDS."""
    def beat():
        try:
            vm = service_instance.content.searchIndex.FindChild(folder, name)
            if vm is not None:
                _waiter.run_task(service_instance, "ReconfigVM_Task (maker heartbeat) on template %s" % name,
                                 lambda: vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(
                                     key=_records.TEMPLATE_HEARTBEAT, value=str(int(vcenter_now(service_instance))))])),
                                 HEARTBEAT_SECONDS)
        except Exception:  # pylint: disable=broad-except
            pass  # a missed beat: HEARTBEAT_STALE_SECONDS allows several; the making itself reports real errors

    return _waiter.Every(HEARTBEAT_SECONDS, beat)


class Template(object):
    """The template of the image, in placement's folder: found, or imported once, snapshotted and marked.

    One of ours in either case. builder gives client, placement, request
    (timeout, template identity), attributes and the image.
    """

    def __init__(self, builder, name):
        self.builder = builder
        self.service_instance = builder.service_instance
        self.identity = builder.request.template_identity
        self.name = name
        self._timeout = builder.request.params["timeout"]
        self._waited_for = "another run"
        self.vm = _waiter.until(self._found_or_made, self._timeout, lambda: "template %s is still being made by %s"
                                % (self.name, self._waited_for), first_delay=0.5)
        self.props = _vsphere.read(self.service_instance, self.vm, ["snapshot", "datastore", "config.hardware.device"])

    def _found_or_made(self):
        """The template once made (by this run or another); None while another run's maker is at work."""
        folder = self.builder.placement.folder
        vm = self.service_instance.content.searchIndex.FindChild(folder, self.name)
        if vm is None:
            package = self.builder.image.opened_package()
            content_name = self.identity.name(package.content_hash)
            if content_name != self.name:  # the template found by key is gone, and the image changed since
                self.name = content_name
                return self._found_or_made()
            try:
                return self._import(package)
            except RayVsphereError as error:
                if error.details.get("fault") != "DuplicateName":
                    raise
                return None  # another run is importing it: wait for that one
        props = _vsphere.read(self.service_instance, vm, ["config.template", "config.createDate"]
                              + _records.keyed_paths(_records.TEMPLATE_KEYS))
        markers = _records.extra_config(props)
        if not self.identity.is_ours(self.name, vm._moId, markers, props.get("config.template")):
            raise RayVsphereError(_impostor_text(self.name))  # planted since the image was looked up
        if props.get("config.template"):
            return vm
        if _records.TEMPLATE_STARTED not in markers and props.get("config.createDate"):
            markers[_records.TEMPLATE_STARTED] = str(int(props["config.createDate"].timestamp()))
        if maker_is_dead(markers, self._timeout, vcenter_now(self.service_instance)):
            # A half-made template blocks every deploy of its image until it is gone.
            _nodes.destroy_vm(self.service_instance, vm, self.name)
            return self._found_or_made()
        self._waited_for = markers.get(_records.TEMPLATE_MAKER) or "another run"
        return None

    def _import(self, package):
        builder, si, name = self.builder, self.service_instance, self.name
        # Bare but for the image record: sizing, guestinfo and the marker are per node, set on
        # each clone; on the template they would leak one cluster's keys into another's clones.
        spec = _nfc.import_spec(si, package, name, builder.placement, {}, functools.partial(
            record_image, package, self.identity.being_made(name), started=vcenter_now(si), heartbeat=vcenter_now(si)))
        # Its own ledger: a template that was made stays for later deploys whatever becomes of the nodes.
        with _ledger.Ledger(si, "making template %s" % name) as ledger:
            with heartbeat(si, builder.placement.folder, name):
                vm = _nfc.import_vm(builder.client, package, spec, name, builder.placement, self._timeout, ledger)
                builder.attributes.set(vm, name, {_records.TEMPLATE_HASH: package.content_hash})
                _waiter.run_task(si, "CreateSnapshot_Task on template %s" % name, lambda: vm.CreateSnapshot_Task(
                    name=LINKED_CLONE_SNAPSHOT, memory=False, quiesce=False))
            # Made: no maker any more (an empty value removes an extraConfig key), so clones do not inherit one,
            # and the identity bound to the moid vCenter gave it, which no other VM can carry.
            done = [vim.option.OptionValue(key=key, value="") for key in
                    (_records.TEMPLATE_MAKER, _records.TEMPLATE_STARTED, _records.TEMPLATE_HEARTBEAT)]
            done.append(vim.option.OptionValue(key=_records.TEMPLATE_IDENTITY, value=self.identity.made(name, vm._moId)))
            _waiter.run_task(si, "ReconfigVM_Task (maker removed, identity recorded) on template %s" % name,
                             lambda: vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=done)))
            try:
                vm.MarkAsTemplate()
            except Exception as error:
                raise _waiter.call_failed("VirtualMachine.MarkAsTemplate of %s" % name, error)
        return vm


# What a survey reads of the templates, and of every VM for the clones that use one.
TEMPLATE_PATHS = ["name", "parent", "config.template", "recentTask"] + _records.keyed_paths(_records.TEMPLATE_KEYS)
CLONE_PATHS = ["name", "config.template"] + _records.keyed_paths((_records.CLONED_FROM, _records.IMAGE_SHA256))


def survey(service_instance, identity, folder=None):
    """[{name, vm, in_use_by, being_made, reason}] of every ray-template-* (in folder, if given).

    A template is in use while any VM was cloned from it (CLONED_FROM, or the
    image hash a clone inherits with the template's extraConfig): a linked
    clone reads its disks. One being made by a live maker is not idle either,
    nor one a task (a clone from it) is running on. One the cluster key
    (identity) did not make is never idle: not ours to remove.

    The templates are read in folder only; the clones in all of vCenter, by
    the two keys that name a template and nothing else: a linked clone moved
    to any other folder still reads the template's disks, so the sweep is the
    point here (docs/collection.md).
    """
    if folder is None:
        template_reads = clone_reads = _nodes.Inventory(service_instance, None, TEMPLATE_PATHS + [
            path for path in CLONE_PATHS if path not in TEMPLATE_PATHS]).vms
    else:
        template_reads = _nodes.Inventory(service_instance, [folder], TEMPLATE_PATHS).vms
        clone_reads = _nodes.Inventory(service_instance, None, CLONE_PATHS).vms
    templates, clones = [], {}
    for vm, props in template_reads.items():
        name = props.get("name") or ""
        if name.startswith(TEMPLATE_PREFIX) and (folder is None or props.get("parent") == folder):
            templates.append((name, vm, props, _records.extra_config(props)))  # a list: one name may be in several folders
    surveyed = set(template[1] for template in templates)
    for vm, props in clone_reads.items():
        if vm not in surveyed and not props.get("config.template"):
            markers = _records.extra_config(props)
            for key in (markers.get(_records.CLONED_FROM), markers.get(_records.IMAGE_SHA256)):
                if key:
                    clones.setdefault(key, []).append(props.get("name") or "")
    now = vcenter_now(service_instance)
    found = []
    for name, vm, props, markers in sorted(templates, key=lambda template: (template[0], template[1]._moId)):
        users = sorted(set(clones.get(name, []) + clones.get(markers.get(_records.IMAGE_SHA256) or name, [])))
        entry = dict(name=name, vm=vm, in_use_by=users, being_made=False, reason=None)
        running = _running_tasks(service_instance, props.get("recentTask") or [])
        if not identity.is_ours(name, vm._moId, markers, props.get("config.template")):
            entry["reason"] = ("not made with this cluster key: it records no template identity that "
                               "cluster_key_file gives")
        elif users:
            entry["reason"] = "in use by %d VM(s): %s" % (len(users), ", ".join(users[:5]))
        elif running:
            entry["reason"] = "in use: %s running on it" % ", ".join(running)
        elif not props.get("config.template"):
            # Half-made: removable once its maker is dead (a day's bound here: no deploy option to go by).
            if not maker_is_dead(markers, 24 * 3600, now):
                entry.update(being_made=True, reason="being made by %s" % markers.get(_records.TEMPLATE_MAKER, "another run"))
        found.append(entry)
    return found


def _running_tasks(service_instance, tasks):
    """The names of the tasks (of a VM's recentTask) still queued or running: a clone from a template is one."""
    if not tasks:
        return []
    running = []
    for task in tasks:
        info = _waiter.task_info(service_instance, task)
        if info.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
            running.append("%s (%s)" % (info.name or info.descriptionId, task._moId))
    return running


def prune(service_instance, params, check_mode):
    """Remove every template of ours no VM uses; (removed names, kept [{name, reason}]).

    Each template is surveyed again right before it is destroyed: a deploy
    may have started cloning it, or making it again, since the first survey.
    """
    identity = _template_identity.TemplateIdentity.from_file(params["cluster_key_file"])
    folder = None
    if params.get("datacenter"):
        [folder] = _placement.vm_folders(service_instance, params["datacenter"], [params.get("vm_folder") or ""])
    templates = survey(service_instance, identity, folder)
    idle = [entry for entry in templates if not entry["reason"]]
    kept = [dict(name=entry["name"], reason=entry["reason"]) for entry in templates if entry["reason"]]
    if check_mode:
        return sorted(entry["name"] for entry in idle), kept
    removed = []

    def remove(entry):
        now = [again for again in survey(service_instance, identity, folder) if again["vm"] == entry["vm"]]
        if not now:
            return  # gone meanwhile
        if now[0]["reason"]:
            kept.append(dict(name=entry["name"], reason=now[0]["reason"]))
            return
        _nodes.destroy_vm(service_instance, entry["vm"], entry["name"])
        removed.append(entry["name"])

    errors = _nodes.in_parallel(remove, idle, params.get("parallel") or 4)
    if errors:
        raise RayVsphereError("removing templates failed: %s" % "; ".join(errors))
    return sorted(removed), sorted(kept, key=lambda entry: entry["name"])
