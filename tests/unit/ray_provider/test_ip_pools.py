"""Static IP pools in a cluster YAML: checked by key before anything is made, and a full pool is a capacity error.

node_deploy's own pool checks run on each section's ip_pool (the provider's
for every type, a type's own); across node types the provider refuses two
different pools that share an address on one network. A launch whose pool
has no free address fails as a launch without a free GPU does: Ray's
launcher records InsufficientCapacity and the provider's back-off answers
further launches of the type at once.
"""

import pytest
from ray.autoscaler._private.event_summarizer import EventSummarizer
from ray.autoscaler._private.node_launcher import BaseNodeLauncher
from ray.autoscaler._private.node_provider_availability_tracker import NodeProviderAvailabilityTracker
from ray.autoscaler._private.util import ConcurrentCounter
from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_IP_POOL_EXHAUSTED
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS
from ray_provider import capacity_backoff, config
from ray_provider.runs import CAPACITY_CATEGORY, check_failures
from conftest import PROVIDER
from test_check_config_gpu_capacity import check_run

POOL = {"cidr": "198.18.5.0/24", "range": "198.18.5.200-198.18.5.220", "gateway": "198.18.5.1"}
OVERLAPPING = {"cidr": "198.18.5.0/24", "range": "198.18.5.210-198.18.5.254", "gateway": "198.18.5.1"}
APART = {"cidr": "198.18.5.0/24", "range": "198.18.5.221-198.18.5.254", "gateway": "198.18.5.1"}
# As node_deploy fails (_ip_pool.IpPool.choose): its structured fields, not its words, make it a capacity error.
POOL_EXHAUSTED = ("ip_pool 198.18.5.0/24 (198.18.5.200-198.18.5.220) has 0 free addresses, 1 asked: no node was made. "
                  "Delete nodes of this folder's clusters or widen the pool",
                  {"failure": FAILURE_IP_POOL_EXHAUSTED, "asked": 1, "free": 0})


def problems_of(node_types, provider=None):
    try:
        config.check_cluster_config({"cluster_name": "unit", "provider": dict(PROVIDER, **(provider or {})),
                                     "auth": {"ssh_user": "ubuntu"},
                                     "available_node_types": {name: {"node_config": node_config}
                                                              for name, node_config in node_types.items()}})
    except config.ClusterConfigError as error:
        return error.problems
    return []


def test_ip_pool_is_a_node_setting_of_the_provider_and_of_every_node_type_from_node_deploys_spec():
    assert config.NODE_SETTINGS["ip_pool"] is DEPLOY_OPTIONS["ip_pool"]
    assert config.PROVIDER_KEYS["ip_pool"] is DEPLOY_OPTIONS["ip_pool"]
    assert config.node_settings({"ip_pool": POOL}, {})["ip_pool"] == POOL
    assert config.node_settings({"ip_pool": POOL}, {"ip_pool": APART})["ip_pool"] == APART
    assert "ip_pool" not in config.node_settings({"ip_pool": POOL}, {"ip_pool": None}), "null: DHCP for this type"
    assert problems_of({"head": {}, "worker": {}}, provider={"ip_pool": POOL}) == []


def test_two_types_with_different_pools_that_overlap_on_one_network_are_refused_by_key():
    assert problems_of({"head": {"ip_pool": POOL}, "worker": {"ip_pool": OVERLAPPING}}) == [
        "available_node_types.worker.node_config.ip_pool: overlaps available_node_types.head.node_config.ip_pool on "
        "the same network (both hold 198.18.5.210): give the two one pool (the same ip_pool, whose addresses the "
        "nodes share), or pools without a common address"]
    # The provider's pool inherited by one type, overlapped by another's own: named where each was set.
    problems = problems_of({"head": {}, "worker": {"ip_pool": OVERLAPPING}}, provider={"ip_pool": POOL})
    assert len(problems) == 1 and problems[0].startswith(
        "available_node_types.worker.node_config.ip_pool: overlaps provider.ip_pool on the same network")
    # A pool of the whole subnet holds every range in it.
    whole = {"cidr": "198.18.5.0/24"}
    assert len(problems_of({"head": {"ip_pool": whole}, "worker": {"ip_pool": APART}})) == 1


def test_one_shared_pool_pools_apart_and_pools_on_other_networks_are_allowed():
    assert problems_of({"head": {"ip_pool": POOL}, "worker": {"ip_pool": dict(POOL)}}) == [], "one pool, shared"
    assert problems_of({"head": {"ip_pool": POOL}, "worker": {"ip_pool": APART}}) == []
    assert problems_of({"head": {"ip_pool": POOL, "network": "vlan-a"},
                        "worker": {"ip_pool": OVERLAPPING, "network": "vlan-b"}}) == []
    assert problems_of({"head": {"ip_pool": POOL}, "worker": {"ip_pool": {"cidr": "2001:db8:5::/64"}}}) == []
    # One list of addresses against a range that holds one of them.
    assert len(problems_of({"head": {"ip_pool": POOL},
                            "worker": {"ip_pool": {"cidr": "198.18.5.0/24", "addresses": ["198.18.5.220"]}}})) == 1


@pytest.mark.parametrize("pool, key", [
    ({"cidr": "198.18.5.0/24", "range": "198.18.5.200-198.18.6.10"}, "range"),
    ({"cidr": "198.18.5.0/24", "gateway": "198.18.6.1"}, "gateway"),
    ({"cidr": "198.18.5.0/24", "dns_servers": ["dns.example.com"]}, "dns_servers"),
    ({"cidr": "not-a-network"}, "cidr"),
], ids=["range outside", "gateway outside", "dns server not an address", "cidr"])
@pytest.mark.parametrize("where", ["provider", "node_config"])
def test_node_deploys_own_pool_checks_name_the_key_where_the_pool_was_set(pool, key, where):
    if where == "provider":
        problems, prefix = problems_of({"worker": {}}, provider={"ip_pool": pool}), "provider.ip_pool"
    else:
        problems, prefix = problems_of({"worker": {"ip_pool": pool}}), "available_node_types.worker.node_config.ip_pool"
    assert len(problems) == 1 and problems[0].startswith(prefix) and f"ip_pool.{key}" in problems[0], problems


def test_a_malformed_pool_is_named_by_its_type_check_alone():
    problems = problems_of({"worker": {"ip_pool": {"cidr": "198.18.5.0/24", "dns_servers": 5}}})
    assert len(problems) == 1 and problems[0].startswith(
        "available_node_types.worker.node_config.ip_pool: must be a mapping with the keys cidr"), problems


def test_the_nodes_own_network_config_beside_a_pool_is_refused_across_the_two_sections():
    own = {"network-config": "bmV0d29yazoge30K"}
    problems = problems_of({"head": {"ip_pool": POOL}, "worker": {}}, provider={"ovf_properties": own})
    assert len(problems) == 1 and problems[0].startswith("provider.ovf_properties: network-config: ip_pool writes it")
    # Both in one node type: named once, there.
    problems = problems_of({"worker": {"ip_pool": POOL, "ovf_properties": own}})
    assert len(problems) == 1 and problems[0].startswith(
        "available_node_types.worker.node_config.ovf_properties: network-config: ip_pool writes it")
    assert problems_of({"head": {}, "worker": {}}, provider={"ovf_properties": own}) == [], "no pool, no conflict"


def test_a_pool_without_a_free_address_is_a_capacity_error_rays_launcher_records(provider):
    provider.playbooks.fail_with = POOL_EXHAUSTED
    cluster = {"cluster_name": "unit", "auth": {"ssh_user": "ubuntu"}, "provider": dict(PROVIDER, ip_pool=POOL),
               "available_node_types": {"worker": {"node_config": {}, "resources": {"CPU": 2}, "max_workers": 4}}}
    tracker, pending = NodeProviderAvailabilityTracker(), ConcurrentCounter()
    pending.inc("worker", 1)
    assert BaseNodeLauncher(provider, pending, EventSummarizer(), tracker, session_name="unit").launch_node(
        cluster, 1, "worker") == {}
    record = tracker.summary().node_availabilities["worker"]
    assert record.is_available is False
    assert record.unavailable_node_information.category == CAPACITY_CATEGORY
    assert POOL_EXHAUSTED[0] in record.unavailable_node_information.description


def test_a_full_pool_is_answered_at_once_until_a_node_is_terminated(provider):
    now = [1000.0]
    provider.capacity = capacity_backoff.CapacityBackoff(clock=lambda: now[0])
    provider.playbooks.fail_with = POOL_EXHAUSTED
    tags = {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: "worker"}
    for _ in range(2):
        with pytest.raises(NodeLaunchException) as raised:
            provider.create_node({"ip_pool": POOL}, tags, 1)
        assert raised.value.category == CAPACITY_CATEGORY
    assert provider.playbooks.playbooks() == ["create_nodes"], "the second launch ran no playbook"
    # A terminated node frees its address: tried at once.
    provider.playbooks.fail_with = None
    provider.non_terminated_nodes({})
    provider.terminate_nodes(["a"])
    assert len(provider.create_node({"ip_pool": POOL}, tags, 1)) == 1


def test_a_full_pool_now_is_no_problem_of_the_config_for_ray_ups_read_only_check():
    # `ray down` or `ray up` again on a cluster whose workers hold every address of its pool.
    assert check_failures(check_run(("worker", dict([("msg", POOL_EXHAUSTED[0])], **POOL_EXHAUSTED[1])))) == []
    no_network = "network 'vlan-9' not found in datacenter DC0"
    assert check_failures(check_run(("worker", dict([("msg", POOL_EXHAUSTED[0])], **POOL_EXHAUSTED[1])),
                                    ("head", {"msg": no_network}))) == [
        f"available_node_types.head.node_config: {no_network}"]
