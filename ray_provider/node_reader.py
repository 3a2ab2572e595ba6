"""The cluster's node records from vCenter, read in process through a NodeWatch: changes only, after one full read.

The same module_utils code the node_info module runs, without an
ansible-runner run (about a CPU-second, which the autoscaler would pay every
update; benchmarks/provider.py prints both). Only the VMs in the cluster's
VM folders are read (not their subfolders: a provider without vm_folder reads
the datacenter's own VM folder, never the whole datacenter), and only once:
after that vCenter is asked what changed, which with nothing changed is one
small round trip. A new session (the old one
ended), a lost filter or a new folder means one full read again.
"""

import logging
import threading

from pyVmomi import vim, vmodl

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _node_watch, _placement

logger = logging.getLogger(__name__)


class NodeReader:
    """Reads the node records under a set of (datacenter, VM folder) pairs, one read at a time."""

    def __init__(self, vcenter_session, cluster_key, folders):
        """cluster_key(): the _ray_auth.ClusterKey that decides which VMs are the cluster's nodes."""
        self.vcenter_session = vcenter_session
        self._cluster_key = cluster_key
        self._folders = set(folders)
        self.watch = None           # the NodeWatch over self._watched's folders; used by the one read under way
        self._watched = None
        self.full_reads = 0
        # VMs the provider deleted (uuids, names), for the reader to drop from the NodeWatch: vcsim v0.56.0
        # does not report a VM's `leave` when the same update set changes the folder that held it
        # (simulator/property_collector.go: PropertyFilter.update re-collects refs first).
        self._deleted_uuids, self._deleted_names = set(), set()
        self._lock = threading.Lock()  # guards the folders and the deleted sets; never held over I/O

    def add_folder(self, folder):
        """A node type's folder no read watched yet: watched from the next read on."""
        with self._lock:
            self._folders.add(folder)

    def folders(self):
        """The (datacenter, VM folder) pairs read: every node type's."""
        with self._lock:
            return frozenset(self._folders)

    def forget(self, uuids=(), names=()):
        """VMs the provider deleted: gone from the next read, whatever the watch reports."""
        with self._lock:
            self._deleted_uuids.update(uuids)
            self._deleted_names.update(names)

    def read(self):
        """The cluster's node records (node_info's form)."""
        return self.vcenter_session.call(self._records)

    def _records(self, service_instance):
        with self._lock:
            folders = frozenset(self._folders)
        reason = None
        if self.watch is None:
            reason = "start" if self.full_reads == 0 else "reconnect"
        elif self.watch.service_instance is not service_instance:
            reason = "reconnect"  # a new session: the old one's PropertyCollector went with it
        elif self._watched != folders:
            reason = "new VM folder"
        else:
            try:
                self.watch.poll()
            except (vmodl.fault.ManagedObjectNotFound, vmodl.query.InvalidCollectorVersion,
                    vim.fault.NotAuthenticated) as error:
                # The filter is gone (vCenter ended the session, and the client logged in again): read it all.
                reason = f"reconnect: the filter is gone ({type(error).__name__.split('.')[-1]})"
        if reason:
            self._watch_folders(service_instance, folders, reason)
        with self._lock:
            deleted_uuids, deleted_names = self._deleted_uuids, self._deleted_names
            self._deleted_uuids, self._deleted_names = set(), set()
        if deleted_uuids or deleted_names:  # a walk over the watched VMs only after a delete, not every tick
            for vm, props in list(self.watch.vms.items()):
                if props.get("config.instanceUuid") in deleted_uuids or props.get("name") in deleted_names:
                    del self.watch.vms[vm]
        return self.watch.records(self._cluster_key())

    def _watch_folders(self, service_instance, folders, reason):
        """A NodeWatch over the VM folders: the one full read of the cluster until the filter is lost."""
        if self.watch is not None and self.watch.service_instance is service_instance:
            self.watch.close()
        self.watch = None
        roots = []
        for datacenter in sorted(set(datacenter for datacenter, _ in folders)):
            roots += _placement.vm_folders(service_instance, datacenter,
                                           sorted(folder for dc, folder in folders if dc == datacenter))
        self.watch = _node_watch.NodeWatch(service_instance, roots)
        self._watched = folders
        self.full_reads += 1
        logger.info("ray_vsphere: read the %d VMs under %s (%s); from now on only their changes", len(self.watch.vms),
                    ", ".join(f"{dc}/vm/{folder}".rstrip("/") for dc, folder in sorted(folders)), reason)
