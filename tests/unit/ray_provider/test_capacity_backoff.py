"""A GPU type that found no free device, through Ray's own autoscaler pieces: v1's scheduler picks another type
that fits, and the provider answers further launches of it at once, under v1 and v2 alike, without a playbook run.
"""

import time

import pytest
import yaml
from ray._common.utils import RESOURCE_CONSTRAINT_PREFIX
from ray.autoscaler._private.constants import AUTOSCALER_UTILIZATION_SCORER_KEY
from ray.autoscaler._private.event_summarizer import EventSummarizer
from ray.autoscaler._private.node_launcher import BaseNodeLauncher
from ray.autoscaler._private.node_provider_availability_tracker import NodeProviderAvailabilityTracker
from ray.autoscaler._private.resource_demand_scheduler import ResourceDemandScheduler
from ray.autoscaler._private.util import ConcurrentCounter
from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE
from ray.autoscaler.v2.instance_manager.config import FileConfigReader
from ray.autoscaler.v2.instance_manager.node_provider import LaunchNodeError, NodeProviderAdapter
from ray.util.accelerators import NVIDIA_A100

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY
from ray_provider import capacity_backoff, head_start
from ray_provider.node_provider import VsphereNodeProvider
from ray_provider.runs import CAPACITY_CATEGORY
from conftest import PROVIDER

NO_FREE_A100 = ("no host of cluster DC0_C0 has a free A100 for node unit-worker-1 (it asks for Dynamic DirectPath, "
                "label a100): DC0_C0_H0 and DC0_C0_H1 hold theirs", {"failure": FAILURE_GPU_CAPACITY})
# A task's num_gpus=1, accelerator_type="A100" on an 8-CPU actor, as Ray's scheduler asks for it.
GPU_TASK = {"CPU": 8, "GPU": 1, f"{RESOURCE_CONSTRAINT_PREFIX}{NVIDIA_A100}": 0.001}
AUTOSCALER = type("User", (), {"pw_dir": "/home/ray-autoscaler", "pw_name": "ray-autoscaler"})()


def cluster(**node_types):
    """`ray up`'s config after the provider filled each type's resources (GPU, accelerator_type, CPU)."""
    return VsphereNodeProvider.fillout_available_node_types_resources({
        "cluster_name": "unit", "auth": {"ssh_user": "ubuntu"}, "provider": dict(PROVIDER), "max_workers": 4,
        "head_node_type": "head", "available_node_types": {"head": {"node_config": {}, "resources": {"CPU": 0},
                                                                    "max_workers": 0}, **node_types}})


# Passthrough A100 with 8 CPUs fits GPU_TASK best; the vGPU type with 16 CPUs fits it too.
GPU_TYPES = cluster(
    gpu_passthrough={"node_config": {"cpus": 8, "gpus": [{"model": NVIDIA_A100, "label": "a100"}]}, "max_workers": 2},
    gpu_vgpu={"node_config": {"cpus": 16, "vgpu_profile": "grid_a100-20c"}, "max_workers": 2})


def launch_failing_with_no_free_gpu(provider, config, node_type):
    """Ray v1's NodeLauncher launches node_type, whose deploy finds no free GPU: its availability tracker."""
    provider.playbooks.fail_with = NO_FREE_A100
    tracker, pending = NodeProviderAvailabilityTracker(), ConcurrentCounter()
    pending.inc(node_type, 1)
    BaseNodeLauncher(provider, pending, EventSummarizer(), tracker, session_name="unit").launch_node(
        config, 1, node_type)
    return tracker


def types_v1_launches(provider, config, tracker):
    scheduler = ResourceDemandScheduler(provider, config["available_node_types"], config["max_workers"],
                                        config["head_node_type"], upscaling_speed=1)
    # The head counted as on its way: only workers are asked for.
    to_launch, _ = scheduler.get_nodes_to_launch(
        nodes=[], launching_nodes={config["head_node_type"]: 1}, resource_demands=[GPU_TASK], unused_resources_by_ip={},
        pending_placement_groups=[], max_resources_by_ip={}, ensure_min_cluster_size=[],
        node_availability_summary=tracker.summary())
    return dict(to_launch)


def test_v1_with_the_monitors_scorer_launches_another_gpu_type_when_the_best_one_found_no_free_gpu(
        provider, monkeypatch):
    tracker = launch_failing_with_no_free_gpu(provider, GPU_TYPES, "gpu_passthrough")
    assert tracker.summary().node_availabilities["gpu_passthrough"].unavailable_node_information.category == \
        CAPACITY_CATEGORY
    monkeypatch.delenv(AUTOSCALER_UTILIZATION_SCORER_KEY, raising=False)
    # Ray's default scorer ignores the record: the full type again, each update.
    assert types_v1_launches(provider, GPU_TYPES, tracker) == {"gpu_passthrough": 1}
    # What head_start gives the monitor, loaded by Ray's scheduler as the monitor loads it.
    monkeypatch.setenv(AUTOSCALER_UTILIZATION_SCORER_KEY,
                       head_start.monitor_environment(AUTOSCALER)[AUTOSCALER_UTILIZATION_SCORER_KEY])
    assert types_v1_launches(provider, GPU_TYPES, tracker) == {"gpu_vgpu": 1}
    # With capacity again (nothing recorded), the best fit as before.
    assert types_v1_launches(provider, GPU_TYPES, NodeProviderAvailabilityTracker()) == {"gpu_passthrough": 1}


def test_v1_still_launches_a_full_type_that_alone_fits_and_other_failures_do_not_rank_a_type_lower(
        provider, monkeypatch):
    monkeypatch.setenv(AUTOSCALER_UTILIZATION_SCORER_KEY, capacity_backoff.SCORER)
    alone = cluster(gpu_passthrough=GPU_TYPES["available_node_types"]["gpu_passthrough"])
    tracker = launch_failing_with_no_free_gpu(provider, alone, "gpu_passthrough")
    # A device freed meanwhile is used, not waited for through the tracker's 30 minutes.
    assert types_v1_launches(provider, alone, tracker) == {"gpu_passthrough": 1}
    tracker.update_node_availability("gpu_passthrough", int(time.time()),
                                     NodeLaunchException("NoIpAddress", "no address", None))
    assert types_v1_launches(provider, GPU_TYPES, tracker) == {"gpu_passthrough": 1}


def test_the_operators_own_scorer_is_kept(monkeypatch):
    monkeypatch.setenv(AUTOSCALER_UTILIZATION_SCORER_KEY, "their.scorer")
    assert head_start.monitor_environment(AUTOSCALER)[AUTOSCALER_UTILIZATION_SCORER_KEY] == "their.scorer"


def create_gpu_node(provider, node_type="gpu_passthrough"):
    return provider.create_node({"gpus": [{"model": NVIDIA_A100, "label": "a100"}]},
                                {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: node_type}, 1)


def test_a_type_that_found_no_free_gpu_is_answered_at_once_until_its_wait_ends_or_a_node_is_terminated(
        provider, monkeypatch):
    now = [1000.0]
    provider.capacity = capacity_backoff.CapacityBackoff(clock=lambda: now[0])
    provider.playbooks.fail_with = NO_FREE_A100
    with pytest.raises(NodeLaunchException):
        create_gpu_node(provider)
    assert provider.playbooks.playbooks() == ["create_nodes"]
    now[0] += 20
    with pytest.raises(NodeLaunchException) as again:
        create_gpu_node(provider)
    assert provider.playbooks.playbooks() == ["create_nodes"], "no playbook run, no vCenter call"
    assert again.value.category == CAPACITY_CATEGORY and NO_FREE_A100[0] in again.value.description
    assert "not tried again for 40 s, or until a node is terminated" in again.value.description
    # Another type is tried.
    with pytest.raises(NodeLaunchException):
        create_gpu_node(provider, "gpu_vgpu")
    assert provider.playbooks.playbooks() == ["create_nodes"] * 2
    # Once the wait is over, the type is tried again.
    now[0] += capacity_backoff.RETRY_AFTER_S
    with pytest.raises(NodeLaunchException):
        create_gpu_node(provider)
    assert provider.playbooks.playbooks() == ["create_nodes"] * 3
    # A terminated node may have given a device back: tried at once.
    provider.playbooks.fail_with = None
    provider.non_terminated_nodes({})
    provider.terminate_nodes(["a"])
    assert provider.playbooks.playbooks()[-1] == "terminate_nodes"
    assert len(create_gpu_node(provider)) == 1
    assert provider.playbooks.playbooks().count("create_nodes") == 4


def test_failures_other_than_capacity_are_tried_again_at_the_next_launch(provider):
    provider.playbooks.fail_with = ("no IP address", {"failure": "no_ip_address"})
    for _ in range(2):
        with pytest.raises(NodeLaunchException):
            create_gpu_node(provider)
    assert provider.playbooks.playbooks() == ["create_nodes"] * 2


def test_v2_fails_the_request_of_a_full_type_without_a_playbook_run(provider, tmp_path):
    """v2's NodeProviderAdapter makes the exception a LaunchNodeError (its reconciler: ALLOCATION_FAILED)."""
    config_file = tmp_path / "cluster.yaml"
    # With the sections `ray up` writes into the head's config, empty.
    config_file.write_text(yaml.safe_dump(dict(GPU_TYPES, cluster_synced_files=[], file_mounts={}, **{
        f"{commands}_commands": [] for commands in ("setup", "head_setup", "worker_setup", "initialization",
                                                    "head_start_ray", "worker_start_ray")})))
    adapter = NodeProviderAdapter(provider, FileConfigReader(str(config_file)))
    provider.playbooks.fail_with = NO_FREE_A100
    try:
        for request in ("first", "second"):
            adapter.launch({"gpu_passthrough": 1}, request_id=request)
            errors = poll(adapter)
            assert [(error.node_type, error.request_id) for error in errors] == [("gpu_passthrough", request)]
            assert isinstance(errors[0], LaunchNodeError)
            assert errors[0].__cause__.category == CAPACITY_CATEGORY
    finally:
        adapter._main_executor.shutdown()
        adapter._node_launcher_executors.shutdown()
    assert provider.playbooks.playbooks() == ["create_nodes"], "the second request ran no playbook"


def poll(adapter, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        errors = adapter.poll_errors()
        if errors:
            return errors
        time.sleep(0.05)
    raise AssertionError("v2's adapter reported no launch error")
