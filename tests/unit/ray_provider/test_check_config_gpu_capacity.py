"""A config check's failures: no free GPU at the moment is not a problem of the config.

`ray down`, `ray exec` and `ray up` again run the read-only check (check_config.yml, node_deploy in check mode) too;
on a cluster whose GPU workers hold every device they must still work (tests/provider/test_gpu_end_to_end.py
runs `ray down` of such a cluster).
"""

from types import SimpleNamespace

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY
from ray_provider.runs import check_failures

NO_FREE_A100 = "no host of cluster DC0_C0 has a free A100 for node gpu-a100-check-0"
NO_DATASTORE = "datastore 'LocalDS_9' not found in datacenter DC0"


def check_run(*items):
    """A failed check_config.yml run whose deploy task failed for these (node type, result) items."""
    return SimpleNamespace(status="failed", events=[{"event": "runner_on_failed", "event_data": {
        "task": "Check the deploy of every node type", "res": {"results": [
            {"failed": True, "item": {"node_type": node_type}, **result} for node_type, result in items]}}}])


def test_gpus_all_taken_is_no_problem_of_the_config():
    assert check_failures(check_run(("a100", {"msg": NO_FREE_A100, "failure": FAILURE_GPU_CAPACITY}))) == []


def test_the_other_failures_are_still_named_by_key_beside_a_full_gpu_type():
    assert check_failures(check_run(("a100", {"msg": NO_FREE_A100, "failure": FAILURE_GPU_CAPACITY}),
                                    ("cpu", {"msg": NO_DATASTORE}))) == [
        f"available_node_types.cpu.node_config: {NO_DATASTORE}"]
    assert check_failures(check_run(("cpu", {"msg": NO_DATASTORE}))) == [
        f"available_node_types.cpu.node_config: {NO_DATASTORE}"]


def test_a_gpu_no_host_has_at_all_is_a_problem_of_the_config():
    # _gpu_placement sets no `failure` when no host has the device even were all free: the request is wrong.
    no_h100 = "no host of cluster DC0_C0 has 1 H100 (label h100) at all, free or not: DC0_C0_H0 (0 matching devices, 0 free)"
    assert check_failures(check_run(("h100", {"msg": no_h100}))) == [f"available_node_types.h100.node_config: {no_h100}"]
