"""A node type whose launch found no capacity (no free GPU, vSphere's Insufficient* faults): other types first,
and no vCenter work for it on every autoscaler update.

Ray records such a launch but neither autoscaler acts on it by default
(docs/gpu.md, "When a GPU type is full"):

- v1 keeps the NodeLaunchException in its NodeProviderAvailabilityTracker
  and hands that summary to the utilization scorer named by
  RAY_AUTOSCALER_UTILIZATION_SCORER, whose default ignores it.
  `utilization_scorer` below is that hook (head_start sets it for the monitor).
- v2 turns it into ALLOCATION_FAILED and asks for the same type again at its
  next update: it has no hook for a provider's capacity failure.

So the provider itself (`CapacityBackoff`) answers launches of a type that
just found no capacity at once, for RETRY_AFTER_S, with the same category
and no playbook run; a terminated node ends the wait for all types early,
as it may have freed a device or a pool's address.
"""

import threading
import time

from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer
from ray.autoscaler.node_launch_exception import NodeLaunchException

from ray_provider.runs import CAPACITY_CATEGORY

# For RAY_AUTOSCALER_UTILIZATION_SCORER (ray/autoscaler/_private/constants.py), read by v1's scheduler.
SCORER = f"{__name__}.utilization_scorer"
# A device freed elsewhere (another cluster's node, a playbook's) is tried within this; meanwhile the
# autoscaler's updates (every 5 s) cost no playbook run, no vCenter login and, with DRS, no clone made
# and destroyed again.
RETRY_AFTER_S = 60.0


def out_of_capacity(node_availability_summary, node_type):
    """Whether Ray's availability tracker holds a capacity failure for node_type: its last launch, within Ray's
    AUTOSCALER_NODE_AVAILABILITY_MAX_STALENESS_S (the tracker drops older records), found no room."""
    record = (node_availability_summary.node_availabilities if node_availability_summary else {}).get(node_type)
    return (record is not None and not record.is_available and record.unavailable_node_information is not None
            and record.unavailable_node_information.category == CAPACITY_CATEGORY)


def utilization_scorer(node_resources, resources, node_type, *, node_availability_summary):
    """Ray's default score, ranked below every type with capacity when node_type's last launch found none.

    Not None (Ray's "does not fit"): a type that is the only fit is still
    launched, so a device freed meanwhile is used, instead of the demand
    waiting out the tracker's 30 minutes; CapacityBackoff makes those tries cheap.
    """
    score = _default_utilization_scorer(node_resources, resources, node_type,
                                        node_availability_summary=node_availability_summary)
    if score is None:
        return None
    return (not out_of_capacity(node_availability_summary, node_type),) + tuple(score)


class CapacityBackoff:
    """Node types whose last launch found no capacity; thread-safe (Ray launches from several threads)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._failed = {}  # node type: (when, the NodeLaunchException it raised)
        self._lock = threading.Lock()

    def check(self, node_type):
        """Raise the capacity failure again, without trying, if node_type found no capacity within RETRY_AFTER_S."""
        with self._lock:
            when, failure = self._failed.get(node_type, (None, None))
            waited = None if when is None else self._clock() - when
            if waited is None or waited >= RETRY_AFTER_S:
                self._failed.pop(node_type, None)
                return
        raise NodeLaunchException(failure.category, (
            f"{failure.description} [not tried again for {RETRY_AFTER_S - waited:.0f} s, or until a node is "
            f"terminated: node type {node_type or 'worker'} found no capacity {waited:.0f} s ago]"), None)

    def record(self, node_type, failure):
        if failure.category == CAPACITY_CATEGORY:
            with self._lock:
                self._failed[node_type] = (self._clock(), failure)

    def node_terminated(self):
        """A node powered off or deleted may have given back what the others lacked."""
        with self._lock:
            self._failed.clear()
