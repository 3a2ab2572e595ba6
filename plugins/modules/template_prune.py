#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: template_prune
short_description: Remove the node templates of a cluster key that no VM uses any more
version_added: 0.2.0
description:
  - M(ray_vsphere.cluster.node_deploy) imports each image once into a template C(ray-template-<content hash>-<key id>)
    and clones every node from it. Templates are never removed by a deploy or by C(ray_down); this module removes
    those no VM uses.
  - Only templates made with the key in O(cluster_key_file) are removed, those whose C(extraConfig) records the
    template identity only that key gives. Any other C(ray-template-*) (of a cluster with another key, made before
    identities were recorded, or planted) is reported in RV(kept) and left alone.
  - A template is in use while any VM, of any cluster, was cloned from it (recorded in the clone's C(extraConfig)),
    since a linked clone reads the template's disks.
  - A half-made template (an import that did not finish) is removed too, unless its maker is still at work.
  - Run it in check mode first to see what would go.
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
options:
  cluster_key_file:
    description:
      - The private SSH key of the cluster (or clusters) whose templates to remove, as given to
        M(ray_vsphere.cluster.node_deploy) when it made them. Read here, never sent anywhere.
    type: path
    required: true
  datacenter:
    description:
      - The datacenter of O(vm_folder). Without it, every C(ray-template-*) of the vCenter is considered.
    type: str
  vm_folder:
    description:
      - Only the templates in this VM folder of O(datacenter) (the datacenter's VM folder when empty).
    type: str
  parallel:
    description: How many templates are removed at once.
    type: int
    default: 4
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: See which templates would be removed
  ray_vsphere.cluster.template_prune:
    cluster_key_file: ~/.ssh/ray-analytics
    datacenter: DC1
    vm_folder: ray
  check_mode: true

- name: Remove them
  ray_vsphere.cluster.template_prune:
    cluster_key_file: ~/.ssh/ray-analytics
    datacenter: DC1
    vm_folder: ray
"""

RETURN = r"""
removed:
  description: The templates removed (that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [ray-template-3f2a9c0e11b4-5d41402a]
kept:
  description: The templates kept, each with why.
  returned: always
  type: list
  elements: dict
  sample: [{name: ray-template-9d00e1a2b3c4-5d41402a, reason: "in use by 2 VM(s): analytics-cpu-3f2a-0, analytics-cpu-3f2a-1"}]
diff:
  description: The templates before and after.
  returned: when diff mode is on
  type: dict
  sample: {before: {templates: [ray-template-3f2a9c0e11b4-5d41402a]}, after: {templates: []}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _templates


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            cluster_key_file=dict(type="path", required=True),
            datacenter=dict(type="str"),
            vm_folder=dict(type="str"),
            parallel=dict(type="int", default=4),
        ),
        required_by={"vm_folder": "datacenter"},
        supports_check_mode=True,
    )

    def action(client):
        removed, kept = _templates.prune(client.service_instance, module.params, module.check_mode)
        result = dict(changed=bool(removed), removed=removed, kept=kept)
        if module._diff:
            result["diff"] = dict(before=dict(templates=sorted(removed + [entry["name"] for entry in kept])),
                                  after=dict(templates=[entry["name"] for entry in kept]))
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
