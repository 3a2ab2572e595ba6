"""The checks only the provider can make of a GPU node type: what its Ray resources claim against what it is given.

node_deploy checks the gpus and vgpu_profile settings themselves (their
types, ids or label, one of the two); here, what Ray would be told. Ray
schedules by the resources of a node type's YAML (the autoscaler launches
for them; RAY_OVERRIDE_RESOURCES makes the node's raylet advertise them), not
by what the VM has, so a node type that claims more GPUs than it is given
gets tasks that find no device. Fewer is allowed: GPU: 0 keeps GPU tasks off
a head that has one, as CPU: 0 keeps tasks off it.
"""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_resources import (
    ACCELERATOR_TYPE_PREFIX, GPU_RESOURCE, gpu_resources, vgpu_model)


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
    if settings.get("vgpu_profile") and not settings.get("vgpu_model") and not vgpu_model(settings["vgpu_profile"]):
        problems.append(f"{where}.node_config.vgpu_model: required with the vGPU profile "
                        f"{settings['vgpu_profile']!r}, whose name does not tell the GPU's model (as grid_a100-20c "
                        "tells A100): Ray's accelerator_type resource is named after it")
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
