"""What failed create runs left: removed once vCenter answers again, except the nodes Ray already uses.

A create run that timed out, or whose vCenter stopped answering, may leave
VMs that node_deploy could not remove. Their request ids are kept here. A VM
of such a request is one of two things:

- a node Ray has adopted. The refresh saw it while the create still ran and
  the provider showed it to Ray (non_terminated_nodes), or Ray has tagged it
  (set_node_tags here, or its tags in vCenter carry what only Ray writes after
  a launch: ray-node-status and the like). Autoscaler v2 adopts any unassigned
  instance of a requested node type, and may already run tasks on it. Such a
  VM is kept, and the log says which and why: it is a node like any other.
- a leftover Ray never saw. It is hidden from Ray (Ray retries the launch
  under a new request id, so it would be a duplicate) and removed by one
  background run of terminate_nodes.yml: by request id (node_delete finds
  every VM of the request, tagged or not, so also one whose tagging was cut
  short and which no refresh reads), sparing the UUIDs of the VMs kept.

A removal that fails is tried again after a back-off that doubles from
FIRST_WAIT_S up to LONGEST_WAIT_S: a vCenter that keeps refusing is not asked
every refresh. The decisions are pure (the clock is injected, tests need no
sleeps); only start_if_due runs the removal, on a thread of its own.
"""

import logging
import threading
import time

from ray.autoscaler.tags import TAG_RAY_FILE_MOUNTS_CONTENTS, TAG_RAY_NODE_STATUS, TAG_RAY_RUNTIME_CONFIG

logger = logging.getLogger(__name__)

# Tags Ray's updaters write after a launch (set_node_tags), never node_deploy on its own.
TAGS_RAY_WRITES = (TAG_RAY_NODE_STATUS, TAG_RAY_RUNTIME_CONFIG, TAG_RAY_FILE_MOUNTS_CONTENTS)


class Removal:
    """One removal run: every VM of request_ids but the kept ones; uuids, those of them Ray was never shown."""

    def __init__(self, request_ids, uuids, keep_uuids):
        self.request_ids = sorted(request_ids)
        self.uuids = sorted(uuids)
        self.keep_uuids = sorted(keep_uuids)


class FailedCreateJanitor:
    """The failed creates' leftovers: which to hide from Ray, which to keep, when to remove the rest."""

    FIRST_WAIT_S = 2.0
    LONGEST_WAIT_S = 300.0

    def __init__(self, cache, clock=time.monotonic, first_wait_s=FIRST_WAIT_S, longest_wait_s=LONGEST_WAIT_S):
        self._cache = cache
        self.clock = clock
        self.first_wait_s = first_wait_s
        self.longest_wait_s = longest_wait_s
        self._requests = {}         # request id -> the tags its create asked for
        self._hidden = {}           # request id -> UUIDs of its VMs hidden from Ray, as the last read found them
        self._kept = {}             # UUID -> (request id, why it was kept), said once
        self._running = False
        self.failures = 0           # failed removals in a row
        self.next_attempt_at = float("-inf")
        self._lock = threading.Lock()

    def add(self, request_id, tags):
        """A create that failed: what it may have left is this janitor's until removed or adopted."""
        with self._lock:
            self._requests[request_id] = dict(tags)

    def pending(self):
        with self._lock:
            return sorted(self._requests)

    def kept(self):
        """{UUID: why} of the failed creates' VMs kept because Ray uses them."""
        with self._lock:
            return {node_id: why for node_id, (_, why) in self._kept.items()}

    def _request_of(self, name):
        return next((request_id for request_id in self._requests if f"-{request_id}-" in name), None)

    def visible(self, records):
        """The records of a vCenter read Ray may see: a failed create's VMs only if Ray adopted them."""
        shown = []
        with self._lock:
            hidden = {}
            for record in records:
                request_id = self._request_of(record["name"])
                if request_id is None:
                    shown.append(record)
                    continue
                why = self._why_adopted(record, request_id)
                if why is None:
                    hidden.setdefault(request_id, set()).add(record["uuid"])
                    continue
                shown.append(record)
                if record["uuid"] not in self._kept:
                    self._kept[record["uuid"]] = (request_id, why)
                    logger.warning("ray_vsphere: keeping %s (%s), a VM of the failed launch %s: %s, so it is a "
                                   "node now and not removed", record["name"], record["uuid"], request_id, why)
            self._hidden = hidden
        return shown

    def _why_adopted(self, record, request_id):
        if record["uuid"] in self._kept:
            return self._kept[record["uuid"]][1]
        create_tags = self._requests[request_id]
        if self._cache.adopted_by_ray(record["uuid"]):
            return "Ray was shown it (non_terminated_nodes) or tagged it"
        written = [f"{key}={record['tags'][key]}" for key in TAGS_RAY_WRITES
                   if key in record["tags"] and record["tags"][key] != create_tags.get(key)]
        if written:
            return f"Ray tagged it ({', '.join(written)})"
        return None

    def due(self):
        """The removal to run now, marked as running; None while one runs, in a back-off, or with nothing to do."""
        with self._lock:
            if self._running or not self._requests or self.clock() < self.next_attempt_at:
                return None
            hidden = set(uuid for request_id in self._requests for uuid in self._hidden.get(request_id, ()))
            kept = set(uuid for uuid, (request_id, _) in self._kept.items() if request_id in self._requests)
            self._running = True
            return Removal(self._requests, hidden, kept)

    def finished(self, removal, error=None):
        """The removal ended: its requests are settled, or, after an error, tried again after the back-off."""
        with self._lock:
            self._running = False
            if error is None:
                for request_id in removal.request_ids:
                    self._requests.pop(request_id, None)
                    self._hidden.pop(request_id, None)
                # Kept VMs of settled requests are plain nodes from now on.
                self._kept = {node_id: kept for node_id, kept in self._kept.items() if kept[0] not in removal.request_ids}
                self.failures = 0
                self.next_attempt_at = float("-inf")
                return None
            self.failures += 1
            wait = min(self.first_wait_s * 2 ** (self.failures - 1), self.longest_wait_s)
            self.next_attempt_at = self.clock() + wait
            return wait

    def start_if_due(self, remove):
        """Run remove(removal) -> names removed on a thread of its own, if a removal is due."""
        removal = self.due()
        if removal is None:
            return None
        thread = threading.Thread(target=self._remove, args=(remove, removal), name="ray-vsphere-janitor", daemon=True)
        thread.start()
        return thread

    def _remove(self, remove, removal):
        what = ", ".join(removal.request_ids)
        try:
            removed = remove(removal)
        except Exception as error:  # noqa: BLE001 - tried again after the back-off
            wait = self.finished(removal, error)
            logger.warning("ray_vsphere: removing what failed launches left (%s) failed, trying again in %.0f s: %s",
                           what, wait, error)
            return
        self.finished(removal)
        logger.info("ray_vsphere: removed what failed launches left (%s): %s", what, ", ".join(removed) or "nothing")
