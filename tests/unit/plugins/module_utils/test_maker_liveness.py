"""When a half-made template's maker counts as dead: from what it records in vCenter, never from host name or pid."""

import os
import socket

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records, _templates

NOW = 1_800_000_000.0
BOUND = 1800  # the deploy's timeout
STALE = _templates.HEARTBEAT_STALE_SECONDS


def markers(started_ago, heartbeat_ago=None, maker="another-host pid 42"):
    recorded = {_records.TEMPLATE_MAKER: maker, _records.TEMPLATE_STARTED: str(int(NOW - started_ago))}
    if heartbeat_ago is not None:
        recorded[_records.TEMPLATE_HEARTBEAT] = str(int(NOW - heartbeat_ago))
    return recorded


@pytest.mark.parametrize("started_ago, heartbeat_ago, dead", [
    (7200, 10, False),              # beating: alive however long it takes
    (7200, STALE + 60, True),       # it beat, then stopped: dead long before the deploy's timeout would say so
    (STALE + 60, STALE + 60, False),  # never beat since its start (a VM locked by its import's lease): the bound decides
    (BOUND + 60, BOUND + 60, True),
    (BOUND - 60, None, False),      # no heartbeat at all (made before makers beat): the bound
    (BOUND + 60, None, True),
])
def test_a_maker_is_dead_by_its_heartbeat_once_it_beat_and_by_the_deploys_bound_before(started_ago, heartbeat_ago, dead):
    assert bool(_templates.maker_is_dead(markers(started_ago, heartbeat_ago), BOUND, NOW)) is dead


def test_this_hosts_name_and_a_live_pid_keep_no_maker_alive():
    this_process = "%s pid %d" % (socket.gethostname(), os.getpid())
    assert _templates.maker_is_dead(markers(7200, STALE + 60, maker=this_process), BOUND, NOW)
