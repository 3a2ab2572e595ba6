# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The VMs under a cluster's VM folders, kept current by a PropertyCollector filter instead of re-read.

A NodeWatch reads the VMs below its folders once (the filter's first
WaitForUpdatesEx, with version ""), then asks only for what changed since the
version it holds, with maxWaitSeconds 0: vCenter computes the changes and
returns at once, and with nothing changed the answer is an empty reply. The
filter lives in a PropertyCollector of its own (CreatePropertyCollector), so
it never shares versions or filters with the session's default collector,
which other code in the same process may wait on. The pattern is the
vSphere Web Services SDK's (Programming Guide, "Property Collector"), and
govmomi's property.WaitForUpdatesEx.

The filter traverses from each folder through childEntity to the folder's own
VMs only, never from the root folder nor into subfolders: its first read and
its upkeep cost what the cluster's folders hold, not what vCenter holds, and a
VM elsewhere in the datacenter (one carrying a copy of a node's identity, say)
is never even read. A VM moved out of the folders leaves the filter (vCenter
reports `leave`), one moved in enters it.

A lost filter (vim.fault.InvalidCollectorVersion, ManagedObjectNotFound for the
collector, NotAuthenticated after the session ended) raises: the owner makes
a new NodeWatch on a fresh session, which reads everything again.

maxWaitSeconds 0 keeps every poll far below the request timeout (the long
polls of _waiter.wait_for_updates derive theirs from it). A poll vCenter
still does not answer in time raises (the owner keeps its last view), and
the next poll reads everything again: whether vCenter counted the lost
answer as delivered cannot be told, and asking again is safe.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, fault_text
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _vsphere

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module


class NodeWatch(object):
    """{vm: props} of every VM in roots (VM folders, not their subfolders), current as of the last poll()."""

    def __init__(self, service_instance, roots, paths=None):
        if not roots:
            raise RayVsphereError("a NodeWatch watches the cluster's VM folders, never all of vCenter: no folder given")
        self.service_instance = service_instance
        self.roots = list(roots)
        self.vms = {}
        self.fields = []
        self.version = ""
        self.polls = 0            # WaitForUpdatesEx calls after the first read
        self.object_updates = 0   # ObjectUpdates received, the first read's included
        self.generation = 0       # counts polls that changed something (versions are opaque strings)
        self._records = None      # (generation, args, records) of the last records() call
        self._collector = None
        content = service_instance.content
        try:
            self._collector = content.propertyCollector.CreatePropertyCollector()
            self._collector.CreateFilter(
                _vsphere.vms_and_fields_spec(service_instance, paths or _nodes.LIST_PATHS, roots), partialUpdates=False)
        except vmodl.MethodFault as error:
            self.close()
            raise RayVsphereError("PropertyCollector.CreatePropertyCollector/CreateFilter failed: %s" % fault_text(error))
        self._wait()
        self.polls = 0

    def poll(self):
        """Apply what changed since the last poll; True if anything did.

        Raises vmodl.MethodFault (InvalidCollectorVersion, ManagedObjectNotFound,
        NotAuthenticated...) or a connection error when the filter is lost.
        """
        self.polls += 1
        return self._wait()

    def _wait(self):
        options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=0)
        changed = False
        full_read = not self.version
        while True:
            try:
                update = self._collector.WaitForUpdatesEx(self.version, options)
            except socket.timeout:
                self.version = ""
                raise
            if update is None:  # nothing changed since self.version
                break
            if full_read and not changed:  # everything the filter sees: a VM it leaves out is gone
                self.vms = {}
            self.version = update.version
            for filter_update in update.filterSet or []:
                for object_update in filter_update.objectSet or []:
                    self._apply(object_update)
                    changed = True
            if not update.truncated:  # vCenter pages large update sets (100 objects by default)
                break
        if changed:
            self.generation += 1
            self._learn_unknown_fields()
        return changed

    def _apply(self, object_update):
        self.object_updates += 1
        obj, kind = object_update.obj, object_update.kind
        if kind == "leave":
            self.vms.pop(obj, None)
            return
        if isinstance(obj, vim.CustomFieldsManager):
            for change in object_update.changeSet or []:
                if change.name == "field":
                    self.fields = list(change.val or []) if change.op != "remove" else []
            return
        props = {} if kind == "enter" else self.vms.setdefault(obj, {})
        for change in object_update.changeSet or []:
            if change.op in ("remove", "indirectRemove") or change.val is None:
                props.pop(change.name, None)
            else:  # assign; add only comes with partialUpdates
                props[change.name] = change.val
        self.vms[obj] = props

    def _learn_unknown_fields(self):
        """Read the custom field definitions again when a VM carries a value of one not known yet.

        vCenter reports a new definition as a change of CustomFieldsManager.field;
        a simulator that does not still gets it named here.
        """
        known = set(field.key for field in self.fields)
        if any(value.key not in known for props in self.vms.values() for value in props.get("customValue") or []):
            manager = self.service_instance.content.customFieldsManager
            self.fields = list(_vsphere.read(self.service_instance, manager, ["field"]).get("field", []))

    def inventory(self):
        return _nodes.Inventory(self.service_instance, self.roots, vms_and_fields=(self.vms, self.fields))

    def records(self, cluster_key, preferred=None, ignored=None):
        """node_info's records of the cluster's verified nodes (_ray_auth.ClusterKey); computed again only after a change."""
        args = (cluster_key, tuple(preferred or ()), tuple(ignored or ()))
        if self._records is None or self._records[:2] != (self.generation, args):
            records = _nodes.node_records(self.inventory(), cluster_key, preferred=preferred, ignored=ignored)
            self._records = (self.generation, args, records)
        return [dict(record, tags=dict(record["tags"])) for record in self._records[2]]

    def close(self):
        """Destroy the collector and its filter; a session that is gone took them with it."""
        if self._collector is not None:
            try:
                self._collector.DestroyPropertyCollector()
            except Exception:  # pylint: disable=broad-except
                pass
            self._collector = None
