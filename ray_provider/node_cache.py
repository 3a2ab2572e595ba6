"""What the provider shows Ray: the cluster's nodes in memory, merged from vCenter reads and the provider's own writes.

Pure: no I/O and no thread of its own, only a lock, since Ray calls the
provider from several threads. Time comes from an injected clock, so the
races between a vCenter read and a create, delete or tag write that ended
while it ran are tested step by step, without sleeps.

The rules:
- a read that began before a create ended keeps the created nodes (it could
  not see them); one that began before a delete ended does not revive them;
- tags Ray set win over what a read says until a read that began after
  their write ended shows them: a read under way while the write runs, or
  one the NodeWatch answers before it hears of the change, holds the old
  values, and Ray's v1 autoscaler takes a worker whose status goes back
  from up-to-date for one to set up again (it restarts Ray there);
- a node being terminated is terminated for Ray at once;
- a powered-on node keeps its last good IP when a read finds none (VMware
  Tools restarting reports no address for a moment; Ray would take the node
  for one still booting);
- it remembers which nodes Ray has been shown and which Ray has tagged: a
  node Ray adopted is never taken back (janitor.py asks);
- a node stopped to be started again (provider.cache_stopped_nodes: powered
  off, ray-node-status `stopped`) is not shown to Ray, as Ray's AWS provider
  hides its stopped instances; a launch claims it (one launch at a time per
  node), and a read that began before it was started again does not hide it.
"""

import threading
import time

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._node_power import is_stopped
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._records import NODE_STATUS, STOPPED

POWERED_ON = "poweredOn"


class NodeCache:
    """The cluster's nodes by instance UUID, as Ray sees them; thread-safe."""

    def __init__(self, address=lambda record: record.get("ip"), clock=time.monotonic):
        """address(record): the IP to reach a node on, from a node_info-style record (ip_policy.IpPolicies.address)."""
        self.clock = clock
        self._address = address
        self._nodes = {}            # uuid -> {"name", "ip", "power_state", "tags", "added"}
        self._terminating = set()   # uuids whose delete is under way: already terminated for Ray
        self._unwritten_tags = {}   # uuid -> tags set in memory, not yet sent to vCenter
        self._writing_tags = {}     # uuid -> tags of the write under way (one at a time)
        self._written_tags = {}     # uuid -> {key: (value, when written)} not yet seen in a later read
        self._deleted_at = {}       # uuid -> when its delete finished, so an older read cannot revive it
        self._shown = set()         # uuids non_terminated_nodes has returned to Ray
        self._tagged_by_ray = set() # uuids Ray has called set_node_tags for
        self._stopped = {}          # uuid -> {"name", "tags", "added"}: stopped nodes, not shown to Ray
        self._claimed = set()       # stopped uuids a launch is starting again
        self._lock = threading.Lock()

    # ----- reads Ray makes -----

    def non_terminated(self, tag_filters):
        """The nodes matching tag_filters that are not being terminated; remembered as shown to Ray."""
        with self._lock:
            shown = [node_id for node_id, node in self._nodes.items()
                     if node_id not in self._terminating
                     and all(node["tags"].get(key) == value for key, value in tag_filters.items())]
            self._shown.update(shown)
            return shown

    def is_running(self, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            return node is not None and node_id not in self._terminating and node["power_state"] == POWERED_ON

    def is_terminated(self, node_id):
        with self._lock:
            return node_id not in self._nodes or node_id in self._terminating

    def tags(self, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            return dict(node["tags"]) if node else {}

    def ip(self, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            return node["ip"] if node else None

    def name(self, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            return node["name"] if node else None

    def adopted_by_ray(self, node_id):
        """Whether Ray has been shown this node or has tagged it: from then on it may run Ray's work."""
        with self._lock:
            return node_id in self._shown or node_id in self._tagged_by_ray

    # ----- vCenter reads -----

    def read_started(self):
        """The moment a vCenter read begins, for apply_read."""
        return self.clock()

    def apply_read(self, records, started):
        """Replace the view with a read of every node that began at `started`."""
        with self._lock:
            listed = {record["uuid"]: record for record in records}
            self._confirm_written_tags(listed, started)
            for node_id in list(self._nodes):
                # Created by a run that finished after this read began: keep it.
                if node_id not in listed and self._nodes[node_id]["added"] < started:
                    self._forget(node_id)
            for node_id in list(self._stopped):
                if node_id not in listed and self._stopped[node_id]["added"] < started:
                    del self._stopped[node_id]
            for node_id, record in listed.items():
                if self._deleted_at.get(node_id, float("-inf")) >= started:
                    continue
                if is_stopped(record):
                    self._apply_stopped(node_id, record, started)
                    continue
                self._stopped.pop(node_id, None)
                previous = self._nodes.get(node_id, {})
                self._nodes[node_id] = self._entry(record, previous.get("added", float("-inf")), previous)
            self._terminating &= set(self._nodes)
            self._deleted_at = {node_id: at for node_id, at in self._deleted_at.items() if at >= started}

    def _apply_stopped(self, node_id, record, started):
        node = self._nodes.get(node_id)
        if node is not None:
            if node["added"] >= started:
                return  # started again after this read began
            self._forget(node_id)
        added = self._stopped.get(node_id, {}).get("added", float("-inf"))
        self._stopped[node_id] = {"name": record["name"], "tags": dict(record["tags"]), "added": added}

    def _confirm_written_tags(self, listed, started):
        """Drop the written tags a read that began after their write shows: vCenter holds them now."""
        for node_id, record in listed.items():
            written = self._written_tags.get(node_id)
            if not written:
                continue
            for key, (value, written_at) in list(written.items()):
                if written_at <= started and record["tags"].get(key) == value:
                    del written[key]
            if not written:
                del self._written_tags[node_id]

    def _forget(self, node_id):
        del self._nodes[node_id]
        self._unwritten_tags.pop(node_id, None)
        self._writing_tags.pop(node_id, None)
        self._written_tags.pop(node_id, None)
        self._shown.discard(node_id)
        self._tagged_by_ray.discard(node_id)

    def _entry(self, record, added, previous=None):
        """A cache entry from a node_info-style record; Ray's tags not yet confirmed by a read win over vCenter's."""
        node_id = record["uuid"]
        tags = dict(record["tags"])
        tags.update({key: value for key, (value, _) in self._written_tags.get(node_id, {}).items()})
        tags.update(self._writing_tags.get(node_id, {}))
        tags.update(self._unwritten_tags.get(node_id, {}))
        ip = self._address(record)
        if ip is None and record["power_state"] == POWERED_ON and previous:
            ip = previous.get("ip")  # still on: its address comes back with VMware Tools
        return {"name": record["name"], "ip": ip, "power_state": record["power_state"], "tags": tags, "added": added}

    # ----- the provider's writes -----

    def add_created(self, records):
        """Nodes a create run returned (made, or stopped ones started again): known at once, whatever a read under way says."""
        now = self.clock()
        with self._lock:
            for record in records:
                self._nodes[record["uuid"]] = self._entry(record, now)
                self._stopped.pop(record["uuid"], None)
                self._claimed.discard(record["uuid"])

    def begin_terminate(self, node_ids):
        """The known nodes among node_ids not being terminated yet, now terminated for Ray."""
        with self._lock:
            wanted = [node_id for node_id in node_ids if node_id in self._nodes and node_id not in self._terminating]
            self._terminating.update(wanted)
            return wanted

    def stopped(self):
        """The uuids of the stopped nodes, claimed or not."""
        with self._lock:
            return sorted(self._stopped)

    def claim_stopped(self, tags, count):
        """Up to count stopped nodes, by name, whose tags include all of tags; claimed until added or released."""
        with self._lock:
            matching = sorted((node["name"], node_id) for node_id, node in self._stopped.items()
                              if node_id not in self._claimed
                              and all(node["tags"].get(key) == value for key, value in tags.items()))
            claimed = [node_id for _, node_id in matching[:max(count, 0)]]
            self._claimed.update(claimed)
            return claimed

    def release_claimed(self, node_ids):
        """A launch that did not start its claimed nodes: free for the next."""
        with self._lock:
            self._claimed.difference_update(node_ids)

    def stopped_by_provider(self, node_ids):
        """The stop of node_ids (being terminated) finished: hidden from Ray, kept to be started again."""
        now = self.clock()
        with self._lock:
            for node_id in node_ids:
                node = self._nodes.get(node_id)
                if node is not None:
                    self._stopped[node_id] = {"name": node["name"], "tags": dict(node["tags"], **{NODE_STATUS: STOPPED}),
                                              "added": now}
                    self._forget(node_id)
                self._deleted_at[node_id] = now  # a read that began before the stop cannot show it running
            self._terminating.difference_update(node_ids)

    def terminate_failed(self, node_ids):
        with self._lock:
            self._terminating.difference_update(node_ids)

    def terminated(self, node_ids):
        """The delete of node_ids finished: gone, and no read that began before now revives them."""
        now = self.clock()
        with self._lock:
            for node_id in node_ids:
                if node_id in self._nodes:
                    self._forget(node_id)
                self._stopped.pop(node_id, None)
                self._deleted_at[node_id] = now
            self._terminating.difference_update(node_ids)

    def set_tags(self, node_id, tags):
        """Ray's tags, visible at once and kept for the next write; False for an unknown node."""
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                return False
            node["tags"].update(tags)
            self._unwritten_tags.setdefault(node_id, {}).update(tags)
            self._tagged_by_ray.add(node_id)
            return True

    def has_unwritten_tags(self):
        with self._lock:
            return bool(self._unwritten_tags)

    def take_unwritten_tags(self):
        """{uuid: tags} to write now, of nodes still there; taken out until written or given back."""
        with self._lock:
            batch = {node_id: tags for node_id, tags in self._unwritten_tags.items()
                     if node_id in self._nodes and node_id not in self._terminating}
            self._unwritten_tags = {}
            self._writing_tags = {node_id: dict(tags) for node_id, tags in batch.items()}
            return batch

    def tags_written(self, batch):
        """The write of batch ended well: its tags still win until a read that begins from now shows them."""
        now = self.clock()
        with self._lock:
            for node_id, tags in batch.items():
                if node_id in self._nodes:
                    self._written_tags.setdefault(node_id, {}).update(
                        {key: (value, now) for key, value in tags.items()})
            self._writing_tags = {}

    def give_back_unwritten_tags(self, batch):
        """A write that failed: its tags again, under anything set since."""
        with self._lock:
            self._writing_tags = {}
            for node_id, tags in batch.items():
                self._unwritten_tags[node_id] = {**tags, **self._unwritten_tags.get(node_id, {})}
