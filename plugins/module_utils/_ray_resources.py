# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What Ray is told of a node's GPUs, from its node settings (node_deploy's gpus, vgpu_profile, vgpu_model).

One derivation for both paths: the provider fills a node type's `resources`
with it (ray_provider/head_config.py fillout_available_node_types_resources),
and the playbooks turn it into `ray start` options (filter gpu_start_options),
so a node deployed with GPUs advertises the same resources whichever path made it.

Ray's own names: the resource GPU (ray/_private/accelerators/nvidia_gpu.py
get_resource_name) and "accelerator_type:<model>": 1, as Ray's AWS provider
fills it for an instance type's GPUs (ray/autoscaler/_private/aws/node_provider.py
fillout_available_node_types_resources) and Ray's constants spell the prefix
(ray/_common/utils.py RESOURCE_CONSTRAINT_PREFIX). A task asks for the model with
@ray.remote(accelerator_type="A100"), ray.util.accelerators.NVIDIA_A100.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._gpu import vgpu_model_of

GPU_RESOURCE = "GPU"
ACCELERATOR_TYPE_PREFIX = "accelerator_type:"


def gpu_resources(settings):
    """Ray resources of a node with these settings' GPUs: GPU and accelerator_type:<model>; {} without GPUs.

    gpus: every device counts (count, default 1), and its model (node_deploy
    allows one) is the accelerator_type. vgpu_profile: one vGPU, of vgpu_model,
    else the GPU the profile names (_gpu.vgpu_model_of, as node_deploy reads it).
    """
    resources = {}
    models = []
    for gpu in settings.get("gpus") or []:
        resources[GPU_RESOURCE] = resources.get(GPU_RESOURCE, 0) + int(gpu.get("count") or 1)
        models.append((gpu.get("model") or "").strip())
    if settings.get("vgpu_profile"):
        resources[GPU_RESOURCE] = resources.get(GPU_RESOURCE, 0) + 1
        models.append(settings.get("vgpu_model") or vgpu_model_of(settings["vgpu_profile"]))
    for model in models:
        if model:
            resources[ACCELERATOR_TYPE_PREFIX + model] = 1
    return resources


def start_options(resources):
    """`ray start` options that advertise these resources: --num-gpus, and --resources for the rest."""
    options = []
    custom = dict((name, value) for name, value in resources.items() if name != GPU_RESOURCE)
    if GPU_RESOURCE in resources:
        options.append("--num-gpus=%d" % resources[GPU_RESOURCE])
    if custom:
        options.append("--resources=" + json.dumps(custom, sort_keys=True))
    return options
