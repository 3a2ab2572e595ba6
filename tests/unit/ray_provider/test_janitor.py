"""The failed-create janitor on its own: what it hides, what it keeps because Ray uses it, and its back-off.

An injected clock stands in for time; removals run on a thread only in the
last test, which waits for that thread, never for a sleep.
"""

import logging

from ray_provider.janitor import FailedCreateJanitor
from ray_provider.node_cache import NodeCache
from conftest import record

WORKER_TAGS = {"ray-node-type": "worker", "ray-user-node-type": "cpu", "ray-node-status": "uninitialized",
               "ray-launch-config": "h1"}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def janitor_of(*records):
    clock = Clock()
    cache = NodeCache(clock=clock)
    cache.apply_read(list(records), cache.read_started())
    return FailedCreateJanitor(cache, clock=clock), cache, clock


def left(name, uuid, **tags):
    return record(uuid, name, **{**WORKER_TAGS, **tags})


def test_a_failed_creates_vm_ray_never_saw_is_hidden_and_removed_by_request_id():
    janitor, _, _ = janitor_of()
    janitor.add("r1", WORKER_TAGS)
    other = record("a", "unit-worker-a")
    assert janitor.visible([other, left("unit-cpu-r1-0", "v0")]) == [other]
    removal = janitor.due()
    assert (removal.request_ids, removal.uuids, removal.keep_uuids) == (["r1"], ["v0"], [])
    assert janitor.due() is None, "one removal at a time"
    janitor.finished(removal)
    assert janitor.pending() == [] and janitor.due() is None


def test_a_vm_ray_was_shown_is_kept_and_reported_and_only_the_others_of_its_request_are_removed(caplog):
    shown, unseen = left("unit-cpu-r1-0", "v0"), left("unit-cpu-r1-1", "v1")
    janitor, cache, _ = janitor_of(shown)
    assert cache.non_terminated({}) == ["v0"]   # the refresh showed it while the create still ran
    janitor.add("r1", WORKER_TAGS)              # then the create failed
    caplog.set_level(logging.WARNING, logger="ray_provider.janitor")
    assert janitor.visible([shown, unseen]) == [shown]
    assert janitor.visible([shown, unseen]) == [shown]
    assert [r.getMessage() for r in caplog.records] == [
        "ray_vsphere: keeping unit-cpu-r1-0 (v0), a VM of the failed launch r1: Ray was shown it "
        "(non_terminated_nodes) or tagged it, so it is a node now and not removed"], "said once, with why"
    removal = janitor.due()
    assert (removal.request_ids, removal.uuids, removal.keep_uuids) == (["r1"], ["v1"], ["v0"]), \
        "the request whole, tagged or not, but never v0"
    janitor.finished(removal)
    assert janitor.pending() == [] and janitor.kept() == {}
    assert janitor.visible([shown]) == [shown], "a plain node from now on"


def test_a_vm_ray_tagged_in_vcenter_is_kept_even_if_this_process_never_showed_it():
    """A restarted head: the tags Ray's updater wrote say the node is in use."""
    janitor, _, _ = janitor_of()
    janitor.add("r1", WORKER_TAGS)
    running = left("unit-cpu-r1-0", "v0", **{"ray-node-status": "up-to-date"})
    assert janitor.visible([running]) == [running]
    assert janitor.kept() == {"v0": "Ray tagged it (ray-node-status=up-to-date)"}
    removal = janitor.due()
    assert (removal.request_ids, removal.uuids, removal.keep_uuids) == (["r1"], [], ["v0"]), \
        "r1's VMs that no refresh reads (tagging cut short) still go; v0 stays"


def test_the_tags_the_create_wrote_itself_are_not_rays():
    janitor, _, _ = janitor_of()
    janitor.add("r1", WORKER_TAGS)
    assert janitor.visible([left("unit-cpu-r1-0", "v0")]) == []
    assert janitor.kept() == {}


def test_a_vm_ray_tagged_through_this_provider_is_kept():
    vm = left("unit-cpu-r1-0", "v0")
    janitor, cache, _ = janitor_of(vm)
    cache.set_tags("v0", {"ray-node-status": "waiting-for-ssh"})
    janitor.add("r1", WORKER_TAGS)
    assert janitor.visible([vm]) == [vm]


def test_a_failing_removal_backs_off_doubling_up_to_a_cap():
    janitor, _, clock = janitor_of()
    janitor.add("r1", WORKER_TAGS)
    janitor.visible([left("unit-cpu-r1-0", "v0")])
    attempts = []
    for tick in range(0, 3600, 2):  # a refresh every 2 s for an hour, vCenter refusing every removal
        clock.now = 100.0 + tick
        removal = janitor.due()
        if removal is not None:
            attempts.append(tick)
            janitor.finished(removal, error=RuntimeError("vCenter refused"))
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
    assert gaps[:8] == [2, 4, 8, 16, 32, 64, 128, 256]
    assert set(gaps[8:]) == {300}, "capped at LONGEST_WAIT_S"
    assert len(attempts) < 25, "not every 2 s"
    # A removal that succeeds resets the back-off.
    clock.now += 300
    janitor.finished(janitor.due())
    janitor.add("r2", WORKER_TAGS)
    assert janitor.due() is not None


def test_start_if_due_runs_the_removal_on_a_thread_and_backs_off_after_its_error():
    janitor, _, clock = janitor_of()
    janitor.add("r1", WORKER_TAGS)
    calls = []

    def refusing(removal):
        calls.append(removal.request_ids)
        raise RuntimeError("vCenter refused")
    janitor.start_if_due(refusing).join()
    assert janitor.start_if_due(refusing) is None, "in the back-off"
    clock.now += janitor.first_wait_s
    janitor.start_if_due(lambda removal: calls.append(removal.request_ids) or ["unit-cpu-r1-0"]).join()
    assert calls == [["r1"], ["r1"]] and janitor.pending() == []
