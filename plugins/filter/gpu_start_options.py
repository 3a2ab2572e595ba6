# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: gpu_start_options
short_description: The ray start options that advertise a node's GPUs, from its node settings
version_added: 0.4.0
description:
  - Gives C(--num-gpus=N), and C(--resources) with the resource C(accelerator_type:<model>) at 1, for the GPUs a
    node is deployed with (M(ray_vsphere.cluster.node_deploy)'s O(ray_vsphere.cluster.node_deploy#module:gpus),
    O(ray_vsphere.cluster.node_deploy#module:vgpu_profile) and O(ray_vsphere.cluster.node_deploy#module:vgpu_model)),
    so that Ray schedules GPU tasks on it whether or not the guest's driver shows the device.
  - N is the sum of the O(ray_vsphere.cluster.node_deploy#module:gpus) counts (each 1 unless given), or 1 for a vGPU
    profile; the model is each GPU's C(model), or O(ray_vsphere.cluster.node_deploy#module:vgpu_model), else the
    board the profile names (C(grid_a100-20c) gives C(A100)).
  - The Ray provider fills a node type's C(resources) with the same derivation, so both paths advertise the same.
  - An empty list when the settings have no GPU.
options:
  _input:
    description: Node settings by node_deploy's option names; only C(gpus), C(vgpu_profile) and C(vgpu_model) are read.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Start Ray on a worker with two A100s
  ansible.builtin.debug:
    msg: "{{ {'gpus': [{'model': 'A100', 'label': 'a100', 'count': 2}]} | ray_vsphere.cluster.gpu_start_options }}"
  # ['--num-gpus=2', '--resources={"accelerator_type:A100": 1}']
"""

RETURN = r"""
_value:
  description: The C(ray start) options, none when the settings have no GPU.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_resources import gpu_resources, start_options


def gpu_start_options(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("gpu_start_options expects node settings (a dict), not %s" % type(settings).__name__)
    gpus = settings.get("gpus") or []
    if not isinstance(gpus, list) or not all(isinstance(gpu, dict) for gpu in gpus):
        raise AnsibleFilterError("gpu_start_options: gpus must be a list of mappings (model, label or vendor_id and "
                                 "device_id, count), not %r" % (gpus,))
    try:
        return start_options(gpu_resources(settings))
    except (TypeError, ValueError) as error:
        raise AnsibleFilterError("gpu_start_options: %s" % error)


class FilterModule:
    def filters(self):
        return {"gpu_start_options": gpu_start_options}
