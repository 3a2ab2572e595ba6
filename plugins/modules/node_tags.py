#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_tags
short_description: Set Ray tags on existing Ray nodes on vSphere, in one batch
version_added: 0.1.0
description:
  - Sets Ray tags (vCenter custom attributes) on nodes of O(cluster_name), many nodes in one call, in parallel.
  - Only tags whose value changes are written. An empty value removes a tag.
  - C(ray-cluster-name) cannot be changed. A VM that is not a verified node of O(cluster_name) (see
    O(cluster_key_file)) is refused, by name, before anything is written.
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
  - ray_vsphere.cluster.cluster_key
  - ray_vsphere.cluster.vm_folders
options:
  cluster_name:
    description: The Ray cluster the nodes belong to.
    type: str
    required: true
  nodes:
    description: The nodes to tag, each by O(nodes[].uuid) or O(nodes[].name), with its O(nodes[].tags).
    type: list
    elements: dict
    required: true
    suboptions:
      uuid:
        description: The node's instance UUID.
        type: str
      name:
        description: The node's VM name.
        type: str
      tags:
        description: The tags to set.
        type: dict
        required: true
  remove_host_private_keys:
    description:
      - Instance UUIDs of nodes whose SSH host private key to remove from their guestinfo (C(guestinfo.userdata))
        and their vApp property C(user-data), where O(ray_vsphere.cluster.node_deploy#module:ssh_host_key) put it
        for cloud-init. The public half stays recorded. A UUID that is not a node of O(cluster_name) is refused.
      - Ask it only once a node has answered SSH with its recorded host key. cloud-init has read the key then;
        a node that never read it would come up with other keys.
    type: list
    elements: str
    default: []
  parallel:
    description: How many nodes are written at once.
    type: int
    default: 8
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Mark two nodes up to date, reading only the cluster's VM folder
  ray_vsphere.cluster.node_tags:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    datacenter: DC1
    vm_folders: [ray/analytics]
    nodes:
      - uuid: 5029d4cb-5ad3-4d1c-b4b4-d3a6e6a8d5a1
        tags: {ray-node-status: up-to-date}
      - name: analytics-worker-3f2a-1
        tags: {ray-node-status: up-to-date, ray-runtime-config: 9a1c}

- name: Remove the host private key of a node that answered SSH with its recorded host key
  ray_vsphere.cluster.node_tags:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    datacenter: DC1
    vm_folders: [ray/analytics]
    nodes: []
    remove_host_private_keys: [5029d4cb-5ad3-4d1c-b4b4-d3a6e6a8d5a1]
"""

RETURN = r"""
changed_nodes:
  description: Names of the nodes whose tags changed (would change, in check mode).
  returned: always
  type: list
  elements: str
  sample: [analytics-worker-3f2a-1]
host_private_keys_removed:
  description: Names of the nodes whose host private key was removed (would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [analytics-worker-3f2a-1]
diff:
  description: The changed nodes' tags before and after.
  returned: when diff mode is on
  type: dict
  sample: {before: {analytics-head: {ray-node-status: setting-up}}, after: {analytics-head: {ray-node-status: up-to-date}}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _host_key_removal, _node_changes, _nodes, _ray_auth


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            cluster_name=dict(type="str", required=True),
            nodes=dict(type="list", elements="dict", required=True, options=dict(
                uuid=dict(type="str"),
                name=dict(type="str"),
                tags=dict(type="dict", required=True),
            ), required_one_of=[("uuid", "name")], mutually_exclusive=[("uuid", "name")]),
            # Instance UUIDs, not keys: the name says what is removed, the values are never secret.
            remove_host_private_keys=dict(type="list", elements="str", default=[], no_log=False),
            parallel=dict(type="int", default=8),
            **dict(_nodes.FOLDER_OPTIONS, **_ray_auth.CLUSTER_KEY_OPTIONS)
        ),
        required_by=dict(vm_folders="datacenter"),
        supports_check_mode=True,
    )
    params = module.params
    cluster_key = _ray_auth.cluster_key_or_fail(module)

    def action(client):
        roots = _nodes.folder_roots(client.service_instance, params)
        before, after = _node_changes.set_node_tags(client.service_instance, cluster_key, params["nodes"],
                                                    params["parallel"], module.check_mode, roots=roots)
        removed = _host_key_removal.remove_host_private_keys(
            client.service_instance, cluster_key, params["remove_host_private_keys"], params["parallel"],
            module.check_mode, roots=roots) if params["remove_host_private_keys"] else []
        result = dict(changed=bool(after or removed), changed_nodes=sorted(after), host_private_keys_removed=removed)
        if module._diff:
            result["diff"] = dict(before=before, after=after)
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
