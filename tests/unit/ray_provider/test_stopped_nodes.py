"""provider.cache_stopped_nodes: terminated workers are stopped and hidden, launches start matching ones again,
and terminating the head deletes them (`ray down`). The playbook runs and vCenter reads are faked (conftest.py);
node_power's identity checks and power changes on vcsim are tests/collection/test_node_power.py's."""

import threading

from conftest import PROVIDER, record
from ray_provider.node_cache import NodeCache
from test_node_provider import problems_of

WORKER_TAGS = {"ray-node-type": "worker", "ray-user-node-type": "cpu", "ray-launch-config": "h1",
               "ray-node-status": "uninitialized"}


def stopped_record(uuid, launch_config="h1", node_type="cpu"):
    """What vCenter shows of a node node_power stopped: powered off, ray-node-status `stopped`, its launch's tags."""
    return record(uuid, f"unit-worker-{uuid}", ip=None, power_state="poweredOff", **{
        "ray-user-node-type": node_type, "ray-launch-config": launch_config, "ray-node-status": "stopped"})


def reread(provider):
    provider._last_refresh = float("-inf")
    return sorted(provider.non_terminated_nodes({}))


def caching(provider, records):
    provider.provider_config["cache_stopped_nodes"] = True
    provider.vcenter.records = records
    reread(provider)
    return provider


def test_cache_stopped_nodes_is_accepted_in_the_cluster_yaml():
    assert not [problem for problem in problems_of(provider={"cache_stopped_nodes": True}) if "cache_stopped" in problem]


def test_terminating_a_worker_stops_it_in_one_run_and_hides_it_from_ray_as_stopped(provider):
    caching(provider, [record("a", "unit-worker-a", **{"ray-user-node-type": "cpu"}), record("b", "unit-worker-b")])
    provider.terminate_nodes(["a"])
    (playbook, extravars), = provider.playbooks.calls
    assert playbook == "terminate_nodes"
    assert extravars["ray_provider_stop_uuids"] == ["a"] and extravars["ray_provider_uuids"] == []
    assert provider.is_terminated("a") and provider.cache.non_terminated({}) == ["b"]
    assert provider.cache.stopped() == ["a"], "kept for a launch, though vCenter's read did not show it stopped yet"

    provider.vcenter.records = [stopped_record("a"), record("b", "unit-worker-b")]
    assert reread(provider) == ["b"], "a stopped node is not a node for Ray"
    assert provider.cache.stopped() == ["a"]


def test_a_launch_starts_stopped_nodes_of_its_node_type_and_launch_config_and_deploys_only_the_rest(provider):
    caching(provider, [stopped_record("s1"), stopped_record("s2"), stopped_record("old", launch_config="h0"),
                       stopped_record("gpu", node_type="gpu"), record("b", "unit-worker-b")])
    assert reread(provider) == ["b"]

    created = provider.create_node({}, WORKER_TAGS, 3)
    (playbook, extravars), = provider.playbooks.calls
    assert playbook == "create_nodes"
    assert extravars["ray_provider_restart_uuids"] == ["s1", "s2"], "never an older launch config nor another type"
    assert extravars["ray_provider_count"] == 1
    assert extravars["ray_provider_datacenter"] == "DC0", "node_power reads the node types' folders only"
    assert sorted(created) == ["new-1-0", "s1", "s2"]
    assert sorted(provider.non_terminated_nodes({})) == ["b", "new-1-0", "s1", "s2"]
    assert provider.node_tags("s1")["ray-node-status"] == "uninitialized"
    assert provider.cache.stopped() == ["gpu", "old"]


def test_a_read_that_began_before_the_restart_finished_does_not_hide_the_restarted_node(provider):
    caching(provider, [stopped_record("s1")])
    provider.vcenter.hold = True
    provider._last_refresh = float("-inf")
    listing = threading.Thread(target=provider.non_terminated_nodes, args=({},))
    listing.start()
    assert provider.vcenter.entered.wait(10)  # its answer still shows s1 stopped
    provider.create_node({}, WORKER_TAGS, 1)
    provider.vcenter.release.set()
    listing.join()
    assert provider.non_terminated_nodes({}) == ["s1"] and provider.cache.stopped() == []


def test_concurrent_launches_never_claim_the_same_stopped_node_and_a_failed_one_gives_its_claim_back():
    cache = NodeCache(clock=iter(range(1000)).__next__)
    cache.apply_read([stopped_record("s1"), stopped_record("s2")], cache.read_started())
    match = {"ray-user-node-type": "cpu", "ray-launch-config": "h1"}
    first, second, third = cache.claim_stopped(match, 1), cache.claim_stopped(match, 5), cache.claim_stopped(match, 5)
    assert (first, second, third) == (["s1"], ["s2"], [])
    cache.release_claimed(first)
    assert cache.claim_stopped(match, 5) == ["s1"]


def test_without_cache_stopped_nodes_nothing_is_started_again_and_terminate_deletes(provider):
    provider.vcenter.records = [stopped_record("s1"), record("a", "unit-worker-a")]
    reread(provider)
    provider.create_node({}, WORKER_TAGS, 1)
    provider.terminate_nodes(["a"])
    (_, create), (_, terminate) = provider.playbooks.calls
    assert create["ray_provider_restart_uuids"] == [] and create["ray_provider_count"] == 1
    assert terminate["ray_provider_uuids"] == ["a"] and "ray_provider_stop_uuids" not in terminate


def test_terminating_the_head_deletes_it_the_workers_and_every_stopped_node(provider):
    """`ray down`: the head and the workers Ray sees are terminated together; no stopped VM is left."""
    caching(provider, [record("head", "unit-head", **{"ray-node-type": "head"}), record("a", "unit-worker-a"),
                       stopped_record("s1"), stopped_record("s2", launch_config="h0")])
    provider.terminate_nodes(provider.non_terminated_nodes({}))
    (_, extravars), = provider.playbooks.calls
    assert sorted(extravars["ray_provider_uuids"]) == ["a", "head", "s1", "s2"]
    assert "ray_provider_stop_uuids" not in extravars
    assert provider.cache.stopped() == []


def test_a_head_is_always_deployed_anew(provider):
    caching(provider, [dict(stopped_record("old-head"), tags={"ray-cluster-name": "unit", "ray-node-type": "head",
                                                              "ray-node-status": "stopped"})])
    provider.create_node({}, {"ray-node-type": "head"}, 1)
    assert provider.playbooks.calls[0][1]["ray_provider_restart_uuids"] == []
    assert PROVIDER["ovf"]  # the head's deploy settings are the provider's
