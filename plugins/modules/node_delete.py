#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_delete
short_description: Delete Ray nodes on vSphere
version_added: 0.1.0
description:
  - Powers off and destroys the VMs named by O(uuids) or O(names), in parallel.
  - A task must name something to delete (a non-empty O(uuids), O(names) or O(request_ids), or O(all_nodes=true));
    one that names nothing fails before connecting to vCenter, as it is most likely a variable that came out empty.
  - A VM that is already gone is success.
  - Refuses, before deleting anything, any VM named in O(uuids) or O(names) that is not a verified node of
    O(cluster_name), that is, without the custom attribute C(ray-cluster-name) and the identity O(cluster_key_file)
    verifies.
  - With O(all_nodes), VMs tagged with O(cluster_name) but not verified (another cluster of the same name, a VM
    tagged by hand) are left alone and returned as RV(unverified).
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
  - ray_vsphere.cluster.cluster_key
  - ray_vsphere.cluster.vm_folders
options:
  cluster_name:
    description: The Ray cluster the VMs must belong to.
    type: str
    required: true
  uuids:
    description: Instance UUIDs of the VMs to delete.
    type: list
    elements: str
    default: []
  names:
    description: Names of the VMs to delete.
    type: list
    elements: str
    default: []
  all_nodes:
    description: Delete every node of O(cluster_name).
    type: bool
    default: false
  request_ids:
    description:
      - Delete every VM that a M(ray_vsphere.cluster.node_deploy) call with one of these O(ray_vsphere.cluster.node_deploy#module:request_id)s
        made for O(cluster_name), tagged or not yet, which is what a call cut short (killed, or vCenter stopped
        answering) left.
      - Found by the request id, cluster name and identity the call records in each VM's C(extraConfig).
    type: list
    elements: str
    default: []
  keep_uuids:
    description:
      - Instance UUIDs of VMs this call never deletes, whatever else selects them.
      - What the Ray provider gives with O(request_ids) when Ray has adopted some VMs of a failed create and the
        rest, tagged or not, must go.
    type: list
    elements: str
    default: []
  parallel:
    description: How many VMs are deleted at once.
    type: int
    default: 8
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Delete two workers, reading only the cluster's VM folder
  ray_vsphere.cluster.node_delete:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    datacenter: DC1
    vm_folders: [ray/analytics]
    uuids: "{{ idle_workers | map(attribute='uuid') | list }}"

- name: Remove what a cut-short deploy with request_id 3f2a made
  ray_vsphere.cluster.node_delete:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    request_ids: [3f2a]

- name: Delete the whole cluster, wherever its nodes were moved in the vCenter
  ray_vsphere.cluster.node_delete:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    all_nodes: true
"""

RETURN = r"""
deleted:
  description: Names of the VMs deleted (that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [analytics-worker-3f2a-0]
absent:
  description: The requested UUIDs and names that matched no VM.
  returned: always
  type: list
  elements: str
  sample: []
unverified:
  description:
    - Names of the VMs tagged with O(cluster_name) that O(cluster_key_file) does not verify, sorted. Never deleted.
  returned: always
  type: list
  elements: str
  sample: []
diff:
  description: The deleted VM names before and after.
  returned: when diff mode is on
  type: dict
  sample: {before: {nodes: [analytics-worker-3f2a-0]}, after: {nodes: []}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _node_changes, _nodes, _ray_auth


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            cluster_name=dict(type="str", required=True),
            uuids=dict(type="list", elements="str", default=[]),
            names=dict(type="list", elements="str", default=[]),
            all_nodes=dict(type="bool", default=False),
            request_ids=dict(type="list", elements="str", default=[]),
            keep_uuids=dict(type="list", elements="str", default=[]),
            parallel=dict(type="int", default=8),
            **dict(_nodes.FOLDER_OPTIONS, **_ray_auth.CLUSTER_KEY_OPTIONS)
        ),
        required_by=dict(vm_folders="datacenter"),
        supports_check_mode=True,
    )
    params = module.params
    # Every selector has a default, so required_one_of could never fire: an empty selection is checked here.
    if not (params["uuids"] or params["names"] or params["request_ids"] or params["all_nodes"]):
        module.fail_json(msg="nothing to delete: give node_delete non-empty uuids, names or request_ids, "
                             "or all_nodes: true")
    cluster_key = _ray_auth.cluster_key_or_fail(module)

    def action(client):
        deleted, absent, unverified = _node_changes.delete_nodes(
            client.service_instance, cluster_key, params["uuids"], params["names"], params["parallel"],
            module.check_mode, all_nodes=params["all_nodes"], request_ids=params["request_ids"],
            keep_uuids=params["keep_uuids"], roots=_nodes.folder_roots(client.service_instance, params))
        result = dict(changed=bool(deleted), deleted=deleted, absent=absent, unverified=unverified)
        if module._diff:
            result["diff"] = dict(before=dict(nodes=deleted), after=dict(nodes=[]))
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
