"""GPU node types on the provider's side: the resources Ray is told, the checks on what the user sets, and a
launch that finds no free GPU.

The oracle for the names is Ray's own: its GPU accelerator manager's resource
name and the accelerator_type prefix Ray's AWS provider fills and Ray's
scheduler matches a task's accelerator_type against.
"""

import pytest
from ray._common.utils import RESOURCE_CONSTRAINT_PREFIX
from ray.autoscaler._private.autoscaler import AutoscalerSummary
from ray.autoscaler._private.event_summarizer import EventSummarizer
from ray.autoscaler._private.load_metrics import LoadMetricsSummary
from ray.autoscaler._private.node_launcher import BaseNodeLauncher
from ray.autoscaler._private.node_provider_availability_tracker import NodeProviderAvailabilityTracker
from ray.autoscaler._private.util import ConcurrentCounter, format_info_string
from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray._private.accelerators import NvidiaGPUAcceleratorManager
from ray.util.accelerators import NVIDIA_A100

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_resources
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_GPU_CAPACITY
from ray_provider import config
from ray_provider.node_provider import VsphereNodeProvider
from conftest import PROVIDER

A100_GPU = {"model": NVIDIA_A100, "label": "a100"}
GPU = NvidiaGPUAcceleratorManager.get_resource_name()
A100 = f"{RESOURCE_CONSTRAINT_PREFIX}{NVIDIA_A100}"


def filled(provider, node_types):
    return VsphereNodeProvider.fillout_available_node_types_resources(
        {"provider": provider, "available_node_types": node_types})["available_node_types"]


def test_gpus_and_a_vgpu_profile_fill_gpu_and_accelerator_type_as_cpus_fill_cpu():
    assert filled({}, {
        "cpu": {"node_config": {"cpus": 4}},
        "passthrough": {"node_config": {"cpus": 8, "gpus": [dict(A100_GPU, count=2)]}},
        "one_device": {"node_config": {"gpus": [{"model": NVIDIA_A100, "vendor_id": 0x10DE, "device_id": 0x20B5}]}},
        "vgpu": {"node_config": {"vgpu_profile": "grid_a100-20c"}},
        "vgpu_named": {"node_config": {"vgpu_profile": "grid_a100-20c", "vgpu_model": "A100-40G"}},
    }) == {
        "cpu": {"node_config": {"cpus": 4}, "resources": {"CPU": 4}},
        "passthrough": {"node_config": {"cpus": 8, "gpus": [dict(A100_GPU, count=2)]},
                        "resources": {"CPU": 8, GPU: 2, A100: 1}},
        "one_device": {"node_config": {"gpus": [{"model": NVIDIA_A100, "vendor_id": 0x10DE, "device_id": 0x20B5}]},
                       "resources": {GPU: 1, A100: 1}},
        "vgpu": {"node_config": {"vgpu_profile": "grid_a100-20c"}, "resources": {GPU: 1, A100: 1}},
        "vgpu_named": {"node_config": {"vgpu_profile": "grid_a100-20c", "vgpu_model": "A100-40G"},
                       "resources": {GPU: 1, f"{RESOURCE_CONSTRAINT_PREFIX}A100-40G": 1}},
    }


def test_the_provider_sections_settings_fill_every_type_that_does_not_override_them():
    types = filled({"cpus": 2, "gpus": [A100_GPU]}, {
        "head": {"node_config": {}, "resources": {"CPU": 0}},
        "gpu_worker": {"node_config": {"cpus": 8}},
        "cpu_worker": {"node_config": {"gpus": []}},
    })
    # A head with a GPU is allowed; the user's CPU: 0 on it stays.
    assert types["head"]["resources"] == {"CPU": 0, GPU: 1, A100: 1}
    assert types["gpu_worker"]["resources"] == {"CPU": 8, GPU: 1, A100: 1}
    assert types["cpu_worker"]["resources"] == {"CPU": 2}


def test_what_the_user_set_is_kept_and_malformed_settings_fill_nothing():
    types = filled({}, {
        "reserved": {"node_config": {"gpus": [dict(A100_GPU, count=2)]}, "resources": {GPU: 1}},
        "odd": {"node_config": {"gpus": "A100", "cpus": True}},
        "broken": "not a mapping",
    })
    assert types["reserved"]["resources"] == {GPU: 1, A100: 1}
    assert types["odd"]["resources"] == {}
    assert types["broken"] == "not a mapping"


def test_the_playbooks_start_options_say_what_the_provider_fills():
    settings = {"gpus": [dict(A100_GPU, count=2)]}
    resources = _ray_resources.gpu_resources(settings)
    assert _ray_resources.start_options(resources) == ["--num-gpus=2", '--resources={"accelerator_type:A100": 1}']
    assert _ray_resources.start_options(_ray_resources.gpu_resources({})) == []


def problems_of(node_type, provider=None):
    """check_cluster_config's problems of one worker type, after `ray up`'s fill (as Ray calls them)."""
    cluster = {"cluster_name": "unit", "provider": dict(PROVIDER, **(provider or {})), "auth": {"ssh_user": "ubuntu"},
               "available_node_types": {"worker": node_type}}
    try:
        config.check_cluster_config(VsphereNodeProvider.fillout_available_node_types_resources(cluster))
    except config.ClusterConfigError as error:
        return error.problems
    return []


def test_a_gpu_type_whose_resources_claim_more_gpus_or_another_model_is_refused_before_anything_is_made():
    assert problems_of({"node_config": {"gpus": [A100_GPU]}, "resources": {GPU: 2}}) == [
        f"available_node_types.worker.resources.{GPU}: 2 is more than the 1 GPU(s) the node type's VMs are given "
        "(node_config gpus or vgpu_profile): Ray would send GPU tasks to devices the VM does not have. Leave it out "
        "(it is filled in) or lower it"]
    assert problems_of({"node_config": {"vgpu_profile": "grid_a100-20c"},
                        "resources": {f"{RESOURCE_CONSTRAINT_PREFIX}H100": 1}}) == [
        f"available_node_types.worker.resources.{RESOURCE_CONSTRAINT_PREFIX}H100: the node type's GPUs are {A100} "
        "(node_config gpus or vgpu_profile): Ray would send tasks for accelerator_type:H100 to them. Leave it out (it "
        "is filled in), or name the model in gpus[].model or vgpu_model"]
    # From the provider section, for every type: the same check.
    assert problems_of({"node_config": {}, "resources": {GPU: 4}}, provider={"gpus": [dict(A100_GPU, count=2)]}) == [
        f"available_node_types.worker.resources.{GPU}: 4 is more than the 2 GPU(s) the node type's VMs are given "
        "(node_config gpus or vgpu_profile): Ray would send GPU tasks to devices the VM does not have. Leave it out "
        "(it is filled in) or lower it"]


def test_a_vgpu_profile_that_names_no_model_needs_vgpu_model_and_gets_it_as_accelerator_type():
    assert problems_of({"node_config": {"vgpu_profile": "custom"}}) == [
        "available_node_types.worker.node_config.vgpu_model: required for vgpu_profile 'custom', whose model cannot "
        "be read from its name (NVIDIA's grid_<gpu>-<size><series>)"]
    assert problems_of({"node_config": {"vgpu_profile": "custom", "vgpu_model": "A100"}}) == []
    assert filled({}, {"mig": {"node_config": {"vgpu_profile": "grid_a100-3-20c"}},
                       "custom": {"node_config": {"vgpu_profile": "custom", "vgpu_model": "A100"}}}) == {
        "mig": {"node_config": {"vgpu_profile": "grid_a100-3-20c"}, "resources": {GPU: 1, A100: 1}},
        "custom": {"node_config": {"vgpu_profile": "custom", "vgpu_model": "A100"}, "resources": {GPU: 1, A100: 1}}}


def test_fewer_gpus_than_given_a_gpu_head_and_gpu_resources_on_a_type_without_gpu_settings_are_allowed():
    assert problems_of({"node_config": {"gpus": [dict(A100_GPU, count=2)]}, "resources": {GPU: 0}}) == []
    assert problems_of({"node_config": {"gpus": [A100_GPU]}}) == []
    # Not the provider's GPUs (an image of the user's own may bring a device): Ray is told what the user says.
    assert problems_of({"node_config": {}, "resources": {GPU: 1, A100: 1}}) == []


# ----- no free GPU: the launch fails in a way Ray's autoscaler records -----

GPU_CAPACITY_MESSAGE = ("no host of cluster DC0_C0 has a free A100 (Dynamic DirectPath, label a100): DC0_C0_H0 "
                        "and DC0_C0_H1 hold theirs; nothing was left behind")


def test_a_launch_without_a_free_gpu_raises_node_launch_exception_and_rays_launcher_marks_the_type_unavailable(
        provider):
    provider.playbooks.fail_with = (GPU_CAPACITY_MESSAGE, {"failure": FAILURE_GPU_CAPACITY})
    cluster = VsphereNodeProvider.fillout_available_node_types_resources({
        "cluster_name": "unit", "auth": {"ssh_user": "ubuntu"}, "provider": dict(PROVIDER),
        "available_node_types": {"gpu_a100": {"node_config": {"gpus": [A100_GPU]}, "max_workers": 2},
                                 "cpu": {"node_config": {"cpus": 2}, "max_workers": 2}}})
    tracker = NodeProviderAvailabilityTracker()
    pending = ConcurrentCounter()
    pending.inc("gpu_a100", 1)
    launcher = BaseNodeLauncher(provider, pending, EventSummarizer(), tracker, session_name="unit")
    # Ray's own launcher: it catches what create_node raises and records it (v1's path; v2's adapter makes any
    # exception a LaunchNodeError).
    assert launcher.launch_node(cluster, 1, "gpu_a100") == {}, "no node made"
    assert pending.value == 0
    record_ = tracker.summary().node_availabilities["gpu_a100"]
    assert record_.is_available is False
    assert record_.unavailable_node_information.category == "InsufficientCapacity"
    assert GPU_CAPACITY_MESSAGE in record_.unavailable_node_information.description
    assert "cpu" not in tracker.summary().node_availabilities, "another type is not marked"
    # The launch asked for the type's GPU resources, and the failed deploy's leftovers are the janitor's.
    assert provider.playbooks.calls[0][1]["ray_provider_node"]["gpus"] == [A100_GPU]
    assert provider.janitor.pending() == [provider.playbooks.calls[0][1]["ray_provider_request_id"]]
    # What `ray status` shows for it.
    assert "gpu_a100: InsufficientCapacity" in format_info_string(
        LoadMetricsSummary(usage={}, resource_demand=[], pg_demand=[], request_demand=[], node_types=[]),
        AutoscalerSummary(active_nodes={}, idle_nodes={}, pending_nodes=[], pending_launches={}, failed_nodes=[],
                          node_availability_summary=tracker.summary()), time=None)


def test_the_provider_raises_the_capacity_category_for_no_free_gpu(provider):
    provider.playbooks.fail_with = (GPU_CAPACITY_MESSAGE, {"failure": FAILURE_GPU_CAPACITY})
    with pytest.raises(NodeLaunchException) as raised:
        provider.create_node({"gpus": [A100_GPU]}, {"ray-node-type": "worker", "ray-user-node-type": "gpu_a100"}, 1)
    assert raised.value.category == "InsufficientCapacity"
    assert GPU_CAPACITY_MESSAGE in raised.value.description and raised.value.src_exc_info is not None


def test_gpu_rules_span_the_two_sections_and_name_where_the_setting_was_made():
    # One setting made in two places, not a vgpu_model without its profile.
    assert problems_of({"node_config": {"vgpu_model": "A100"}}, provider={"vgpu_profile": "grid_a100-20c"}) == []
    assert problems_of({"node_config": {"vgpu_profile": "grid_a100-20c"}}, provider={"gpus": [A100_GPU]}) == [
        "available_node_types.worker.node_config.gpus: only one of gpus and vgpu_profile may be set (here or in "
        "provider)"]
    assert problems_of({"node_config": {}}, provider={"gpus": [{"model": "A100"}]}) == [
        "provider.gpus[0]: give vendor_id and device_id, or label (the device's hardware label on its host), or both"]
    # A type drops the provider's GPUs with an empty list.
    assert problems_of({"node_config": {"gpus": []}}, provider={"gpus": [{"model": "A100"}]}) == []
