"""The workers ray_up.yml and ray_workers.yml keep, replace, deploy and remove (the worker_plan filter)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ray_vsphere.cluster.plugins.filter.worker_plan import worker_plan

OLD = {"ovf": "/images/v1.ova", "cpus": 2}
NEW = {"ovf": "/images/v2.ova", "cpus": 2}


def worker(index, settings, cluster="c"):
    return {"name": f"{cluster}-worker-{index}", "uuid": f"uuid-{index}", "deploy_settings": settings}


def test_a_fresh_cluster_gets_workers_zero_to_count_minus_one():
    assert worker_plan([], "c", 3, NEW) == {"keep": [], "fresh": ["c-worker-0", "c-worker-1", "c-worker-2"],
                                            "replace": [], "leaving": []}


def test_without_replace_an_outdated_worker_stays_and_none_is_made():
    plan = worker_plan([worker(0, OLD), worker(1, {})], "c", 2, NEW)
    assert plan == {"keep": ["c-worker-0", "c-worker-1"], "fresh": [], "replace": [], "leaving": []}


def test_each_outdated_worker_gets_a_new_name_and_current_ones_stay():
    plan = worker_plan([worker(0, OLD), worker(1, NEW), worker(2, {})], "c", 3, NEW, True)
    assert plan["keep"] == ["c-worker-1"] and plan["fresh"] == [] and plan["leaving"] == []
    assert plan["replace"] == [{"name": "c-worker-3", "replaces": {"name": "c-worker-0", "uuid": "uuid-0"}},
                               {"name": "c-worker-4", "replaces": {"name": "c-worker-2", "uuid": "uuid-2"}}]


def test_indices_sort_as_numbers_and_outdated_workers_leave_first():
    workers = [worker(10, NEW), worker(2, NEW), worker(1, OLD)]
    assert worker_plan(workers, "c", 1, NEW, True) == {
        "keep": ["c-worker-2"], "fresh": [], "replace": [],
        "leaving": [{"name": "c-worker-10", "uuid": "uuid-10"}, {"name": "c-worker-1", "uuid": "uuid-1"}]}
    assert worker_plan(workers, "c", 1, NEW)["keep"] == ["c-worker-1"], "without replace, the lowest index stays"


def test_a_missing_worker_beside_a_replaced_one_takes_the_next_free_name():
    plan = worker_plan([worker(0, OLD)], "c", 2, NEW, True)
    assert plan["replace"] == [{"name": "c-worker-1", "replaces": {"name": "c-worker-0", "uuid": "uuid-0"}}]
    assert plan["fresh"] == ["c-worker-2"]


@pytest.mark.parametrize("workers, count, message", [
    ("c-worker-0", 1, "node_info's list of nodes"), ([], -1, "count must be 0 or more")])
def test_bad_input_is_named(workers, count, message):
    with pytest.raises(AnsibleFilterError, match=message):
        worker_plan(workers, "c", count, NEW)
