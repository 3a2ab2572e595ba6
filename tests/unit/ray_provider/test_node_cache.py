"""The node cache on its own: reads racing writes, step by step on an injected clock, no threads, no sleeps."""

from ray_provider.node_cache import NodeCache
from conftest import record


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def tick(self, seconds=1.0):
        self.now += seconds


def cache_with(*records):
    clock = Clock()
    cache = NodeCache(clock=clock)
    cache.apply_read(list(records), cache.read_started())
    clock.tick()
    return cache, clock


def test_a_read_that_began_before_a_create_ended_keeps_the_created_node():
    cache, clock = cache_with(record("a", "unit-worker-a"))
    started = cache.read_started()       # vCenter is read: the create below is not in the answer
    clock.tick()
    cache.add_created([record("new", "unit-worker-new", ip="10.1.0.1")])
    clock.tick()
    cache.apply_read([record("a", "unit-worker-a")], started)
    assert sorted(cache.non_terminated({})) == ["a", "new"]
    # A read that began after the create and does not list it: the node is gone.
    cache.apply_read([record("a", "unit-worker-a")], cache.read_started())
    assert cache.non_terminated({}) == ["a"]


def test_a_read_that_began_before_a_delete_ended_does_not_revive_the_node():
    cache, clock = cache_with(record("a", "unit-worker-a"), record("b", "unit-worker-b"))
    started = cache.read_started()       # its answer still holds a
    clock.tick()
    assert cache.begin_terminate(["a", "unknown"]) == ["a"]
    assert cache.is_terminated("a") and cache.non_terminated({}) == ["b"], "terminated for Ray while it runs"
    cache.terminated(["a"])
    clock.tick()
    cache.apply_read([record("a", "unit-worker-a"), record("b", "unit-worker-b")], started)
    assert cache.non_terminated({}) == ["b"] and cache.tags("a") == {}


def test_a_failed_terminate_gives_the_node_back():
    cache, _ = cache_with(record("a", "unit-worker-a"))
    cache.begin_terminate(["a"])
    cache.terminate_failed(["a"])
    assert cache.non_terminated({}) == ["a"] and cache.is_running("a")


def test_unwritten_tags_win_over_a_read_until_written_and_a_failed_write_gives_them_back():
    cache, _ = cache_with(record("a", "unit-worker-a", **{"ray-node-status": "setting-up"}))
    assert cache.set_tags("a", {"ray-node-status": "up-to-date"}) and not cache.set_tags("gone", {"x": "y"})
    cache.apply_read([record("a", "unit-worker-a", **{"ray-node-status": "setting-up"})], cache.read_started())
    assert cache.tags("a")["ray-node-status"] == "up-to-date"
    batch = cache.take_unwritten_tags()
    assert batch == {"a": {"ray-node-status": "up-to-date"}} and not cache.has_unwritten_tags()
    cache.set_tags("a", {"ray-runtime-config": "h2"})
    cache.give_back_unwritten_tags(batch)
    assert cache.take_unwritten_tags() == {"a": {"ray-node-status": "up-to-date", "ray-runtime-config": "h2"}}


def test_written_tags_win_over_reads_until_a_read_that_began_after_the_write_shows_them():
    # Ray's v1 autoscaler sets up again a worker whose status falls back from up-to-date, restarting its Ray.
    stale = record("a", "unit-worker-a", **{"ray-node-status": "setting-up"})
    fresh = record("a", "unit-worker-a", **{"ray-node-status": "up-to-date"})
    cache, clock = cache_with(stale)
    cache.set_tags("a", {"ray-node-status": "up-to-date"})
    batch = cache.take_unwritten_tags()
    clock.tick()
    cache.apply_read([stale], cache.read_started())   # read while the write runs: vCenter has the old value
    assert cache.tags("a")["ray-node-status"] == "up-to-date"
    before_write_ended = cache.read_started()
    clock.tick()
    cache.tags_written(batch)
    clock.tick()
    cache.apply_read([fresh], before_write_ended)     # shows the value, but began before the write ended
    cache.apply_read([stale], cache.read_started())   # a read behind vCenter (the NodeWatch not yet told)
    assert cache.tags("a")["ray-node-status"] == "up-to-date"
    cache.apply_read([fresh], cache.read_started())   # confirmed: vCenter's word from now on
    clock.tick()
    cache.apply_read([record("a", "unit-worker-a", **{"ray-node-status": "terminating"})], cache.read_started())
    assert cache.tags("a")["ray-node-status"] == "terminating"


def test_a_powered_on_node_keeps_its_last_good_ip_while_vmware_tools_reports_none():
    cache, _ = cache_with(record("a", "unit-worker-a", ip="10.0.0.7"))
    cache.apply_read([record("a", "unit-worker-a", ip=None)], cache.read_started())  # Tools restarting
    assert cache.ip("a") == "10.0.0.7"
    cache.apply_read([record("a", "unit-worker-a", ip="10.0.0.8")], cache.read_started())  # a new address wins
    assert cache.ip("a") == "10.0.0.8"
    cache.apply_read([record("a", "unit-worker-a", ip=None, power_state="poweredOff")], cache.read_started())
    assert cache.ip("a") is None and not cache.is_running("a"), "off: no address to reach it on"
    cache.apply_read([record("a", "unit-worker-a", ip=None)], cache.read_started())
    assert cache.ip("a") is None, "on again, it has no last good address until Tools reports one"


def test_a_created_node_without_an_address_yet_is_none_not_another_nodes():
    cache, _ = cache_with()
    cache.add_created([record("new", "unit-worker-new", ip=None)])
    assert cache.ip("new") is None


def test_what_ray_was_shown_or_tagged_is_adopted():
    cache, _ = cache_with(record("a", "unit-worker-a"), record("b", "unit-worker-b", **{"ray-node-type": "head"}))
    assert not cache.adopted_by_ray("a") and not cache.adopted_by_ray("b")
    assert cache.non_terminated({"ray-node-type": "head"}) == ["b"]
    assert cache.adopted_by_ray("b") and not cache.adopted_by_ray("a"), "only what the listing returned"
    cache.set_tags("a", {"ray-node-status": "waiting-for-ssh"})
    assert cache.adopted_by_ray("a")
    cache.apply_read([], cache.read_started())
    assert not cache.adopted_by_ray("a"), "a node gone from vCenter is forgotten"
