#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_info
short_description: List the VMs of one Ray cluster on vSphere
version_added: 0.1.0
description:
  - Lists the VMs whose custom attribute C(ray-cluster-name) is O(cluster_name) and whose identity
    O(cluster_key_file) verifies, with their name, instance UUID, power state, IP addresses and Ray tags.
  - VMs tagged with O(cluster_name) whose identity the key does not verify (a cluster of the same name made with
    another key, a VM someone tagged by hand) are not nodes; their names are returned as RV(unverified).
  - Reads the VMs in O(vm_folders) of O(datacenter) (not their subfolders) and the custom attribute
    definitions in one PropertyCollector call, traversing from those folders only, so its cost is that of the
    cluster's folders, not of the vCenter. Without O(datacenter) it reads every VM of the vCenter.
  - A node moved out of O(vm_folders) is not listed. M(ray_vsphere.cluster.node_delete) without O(datacenter), as
    C(playbooks/ray_down.yml) runs it, still finds it anywhere.
  - The templates of the clone fast path are not nodes and are not listed.
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
  - ray_vsphere.cluster.cluster_key
  - ray_vsphere.cluster.ip_selection
  - ray_vsphere.cluster.vm_folders
options:
  cluster_name:
    description: The Ray cluster to list.
    type: str
    required: true
  node_kind:
    description: Only nodes of this kind (C(ray-node-type)).
    type: str
    choices: [head, worker]
  node_type:
    description: Only nodes of this user node type (C(ray-user-node-type)).
    type: str
  tag_filters:
    description: Only nodes whose tags have these values.
    type: dict
    default: {}
notes:
  - Read-only; supports check mode.
"""

EXAMPLES = r"""
- name: List the workers of a Ray cluster, reading only its VM folder
  ray_vsphere.cluster.node_info:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    node_kind: worker
    datacenter: DC1
    vm_folders: [ray/analytics]
  register: workers

- name: Show their addresses
  ansible.builtin.debug:
    msg: "{{ workers.nodes | map(attribute='ip') | list }}"
"""

RETURN = r"""
nodes:
  description: The cluster's nodes, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The VM name.
      type: str
      sample: analytics-head
    uuid:
      description: The VM's instance UUID.
      type: str
      sample: 5029d4cb-5ad3-4d1c-b4b4-d3a6e6a8d5a1
    moid:
      description: The VM's managed object id.
      type: str
      sample: vm-1042
    power_state:
      description: poweredOn, poweredOff or suspended.
      type: str
      sample: poweredOn
    ip:
      description: The address to reach the node on; null until the guest reports one.
      type: str
      sample: 10.20.1.17
    ip_addresses:
      description: Every address the guest reports.
      type: list
      elements: str
      sample: [10.20.1.17]
    tags:
      description: The node's Ray tags.
      type: dict
      sample: {ray-cluster-name: analytics, ray-node-type: head}
    deploy_settings:
      description:
        - The settings the node was deployed with, as M(ray_vsphere.cluster.node_deploy)'s
          O(ray_vsphere.cluster.node_deploy#module:deploy_settings) recorded them in its extraConfig
          (C(ray-vsphere.deploy-settings)); empty when none were recorded.
        - The C(ray_up) playbook records them on the head, and C(ray_workers) deploys new workers with them.
      type: dict
      sample: {ovf: "https://images.example.com/ray-node.ova", datacenter: DC1, vsphere_cluster: Compute}
    ssh_host_key:
      description:
        - The public SSH host key the node was given at deploy (see O(ray_vsphere.cluster.node_deploy#module:ssh_host_key)),
          as recorded in its C(ray-vsphere.ssh-host-key) extraConfig; null for a node deployed without one.
      type: str
      sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCI
unverified:
  description:
    - Names of the VMs (in the folders read) tagged with O(cluster_name) that do not carry the identity
      O(cluster_key_file) makes for them, sorted. Not nodes of the cluster; listed so a name clash or a forged
      node shows.
  returned: always
  type: list
  elements: str
  sample: [analytics-head]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _ray_auth, _ray_tags


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            cluster_name=dict(type="str", required=True),
            node_kind=dict(type="str", choices=list(_ray_tags.NODE_KINDS)),
            node_type=dict(type="str"),
            tag_filters=dict(type="dict", default={}),
            **dict(_nodes.IP_OPTIONS, **dict(_nodes.FOLDER_OPTIONS, **_ray_auth.CLUSTER_KEY_OPTIONS))
        ),
        required_by=dict(vm_folders="datacenter"),
        supports_check_mode=True,
    )
    params = module.params
    cluster_key = _ray_auth.cluster_key_or_fail(module)

    def action(client):
        tag_filters = _ray_tags.check_tags(params["tag_filters"], "tag_filters")
        preferred, ignored = _nodes.ip_choice(params)
        nodes, unverified = _nodes.list_nodes(client.service_instance, cluster_key, params["node_kind"],
                                              params["node_type"], tag_filters, preferred, ignored,
                                              roots=_nodes.folder_roots(client.service_instance, params))
        return dict(changed=False, nodes=nodes, unverified=unverified)

    run_module(module, action)


if __name__ == "__main__":
    main()
