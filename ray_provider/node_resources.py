"""The checks only the provider can make of a GPU node type: what its Ray resources claim against what it is given.

node_deploy checks the gpus and vgpu_profile settings themselves (their
types, ids or label, one model, one of the two, a vgpu_model where the
profile's name tells none: _gpu.gpu_problems, which check_cluster_config
runs too); here, what Ray would be told of them. Ray
schedules by the resources of a node type's YAML (the autoscaler launches
for them; RAY_OVERRIDE_RESOURCES makes the node's raylet advertise them), not
by what the VM has, so a node type that claims more GPUs than it is given
gets tasks that find no device. Fewer is allowed: GPU: 0 keeps GPU tasks off
a head that has one, as CPU: 0 keeps tasks off it.
"""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._gpu import gpu_problems
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_resources import (
    ACCELERATOR_TYPE_PREFIX, GPU_RESOURCE, gpu_resources)


def gpu_setting_problems(settings, provider, node_config, where):
    """node_deploy's GPU rules (_gpu.gpu_problems) on one node type's merged settings, each named where it was set.

    They span options (vgpu_model goes with vgpu_profile), which may come from
    either section: provider.vgpu_profile with a node type's vgpu_model is one
    setting, not two halves of a mistake.
    """
    try:
        found = gpu_problems(settings)
    except (AttributeError, TypeError):
        return []  # a malformed value: named by its type check
    def origin(option):
        option = option.split("[")[0]
        return "provider" if option in provider and option not in node_config else where
    return [f"{origin(option)}.{option}: {problem}" for option, problem in found]


def resource_problems(settings, resources, where):
    """Problems, by key, of one node type's Ray resources against its merged node settings' GPUs.

    where is the node type's key (available_node_types.<name>).
    """
    try:
        given = gpu_resources(settings)
    except (AttributeError, TypeError, ValueError):
        return []  # malformed gpus: named by the settings' own checks
    if not given:
        return []
    problems = []
    resources = resources if isinstance(resources, dict) else {}
    claimed = resources.get(GPU_RESOURCE)
    if isinstance(claimed, (int, float)) and claimed > given[GPU_RESOURCE]:
        problems.append(f"{where}.resources.{GPU_RESOURCE}: {claimed} is more than the {given[GPU_RESOURCE]} GPU(s) "
                        "the node type's VMs are given (node_config gpus or vgpu_profile): Ray would send GPU "
                        "tasks to devices the VM does not have. Leave it out (it is filled in) or lower it")
    models = sorted(name for name in given if name.startswith(ACCELERATOR_TYPE_PREFIX))
    for name in sorted(resources):
        if name.startswith(ACCELERATOR_TYPE_PREFIX) and name not in given:
            problems.append(f"{where}.resources.{name}: the node type's GPUs are {', '.join(models) or 'of no model'}"
                            f" (node_config gpus or vgpu_profile): Ray would send tasks for {name} to them. Leave "
                            "it out (it is filled in), or name the model in gpus[].model or vgpu_model")
    return problems
