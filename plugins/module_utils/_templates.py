# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The templates of the clone fast path: which are in use, and removing those of ours that are not."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _deploy, _nodes, _placement, _records, _template_identity)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import TEMPLATE_PREFIX


def survey(service_instance, identity, folder=None):
    """[{name, vm, in_use_by, being_made, reason}] of every ray-template-* (in folder, if given).

    A template is in use while any VM was cloned from it (CLONED_FROM, or the
    image hash a clone inherits with the template's extraConfig): a linked
    clone reads its disks. One being made by a live maker is not idle either.
    One the cluster key (identity) did not make is never idle: not ours to remove.
    """
    inventory = _nodes.Inventory(service_instance)
    templates, clones = [], {}
    for vm, props in inventory.vms.items():
        name = props.get("name") or ""
        markers = _records.extra_config(props)
        if name.startswith(TEMPLATE_PREFIX) and (folder is None or props.get("parent") == folder):
            templates.append((name, vm, props, markers))  # a list: one name may be in several folders
        elif not props.get("config.template"):
            for key in (markers.get(_records.CLONED_FROM), markers.get(_records.IMAGE_SHA256)):
                if key:
                    clones.setdefault(key, []).append(name)
    found = []
    for name, vm, props, markers in sorted(templates, key=lambda template: (template[0], template[1]._moId)):
        users = sorted(set(clones.get(name, []) + clones.get(markers.get(_records.IMAGE_SHA256) or name, [])))
        entry = dict(name=name, vm=vm, in_use_by=users, being_made=False, reason=None)
        if not identity.is_ours(name, vm._moId, markers, props.get("config.template")):
            entry["reason"] = ("not made with this cluster key: it records no template identity that "
                               "cluster_key_file gives")
        elif users:
            entry["reason"] = "in use by %d VM(s): %s" % (len(users), ", ".join(users[:5]))
        elif not props.get("config.template"):
            # Half-made: removable once its maker is dead (a day's bound here: no deploy option to go by).
            if not _deploy.maker_is_dead(markers, 24 * 3600):
                entry.update(being_made=True, reason="being made by %s" % markers.get(_records.TEMPLATE_MAKER, "another run"))
        found.append(entry)
    return found


def prune(service_instance, params, check_mode):
    """Remove every template of ours no VM uses; (removed names, kept [{name, reason}])."""
    identity = _template_identity.TemplateIdentity.from_file(params["cluster_key_file"])
    folder = None
    if params.get("datacenter"):
        [folder] = _placement.vm_folders(service_instance, params["datacenter"], [params.get("vm_folder") or ""])
    templates = survey(service_instance, identity, folder)
    idle = [entry for entry in templates if not entry["reason"]]
    kept = [dict(name=entry["name"], reason=entry["reason"]) for entry in templates if entry["reason"]]
    if not check_mode:
        errors = _nodes.in_parallel(lambda entry: _nodes.destroy_vm(service_instance, entry["vm"], entry["name"]),
                                    idle, params.get("parallel") or 4)
        if errors:
            raise RayVsphereError("removing templates failed: %s" % "; ".join(errors))
    return sorted(entry["name"] for entry in idle), kept
