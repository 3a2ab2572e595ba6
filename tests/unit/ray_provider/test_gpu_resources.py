"""What Ray is told of a node type's GPUs: the resources the provider fills, and the checks on what the user sets.

The oracle for the names is Ray's own: its GPU accelerator manager's resource
name and the accelerator_type prefix Ray's AWS provider fills and Ray's
scheduler matches a task's accelerator_type against.
"""

from ray._common.utils import RESOURCE_CONSTRAINT_PREFIX
from ray._private.accelerators import NvidiaGPUAcceleratorManager
from ray.util.accelerators import NVIDIA_A100

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_resources
from ray_provider.node_provider import VsphereNodeProvider

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
    assert _ray_resources.vgpu_model("grid_a100-4c") == _ray_resources.vgpu_model("nvidia_a100-40c") == "A100"
    assert _ray_resources.vgpu_model("a100") is None
