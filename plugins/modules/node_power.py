#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_power
short_description: Stop Ray nodes on vSphere keeping their disks, or start stopped ones again
version_added: 0.3.0
description:
  - With O(state=stopped), asks the guest of each node in O(uuids) to shut down (C(ShutdownGuest), through VMware
    Tools) and powers the VM off (C(PowerOffVM_Task)) when Tools cannot take the request or the guest is still on
    after O(shutdown_timeout) seconds. The VM and its disks stay. Then sets the node's C(ray-node-status) custom
    attribute to C(stopped), which tells a stopped node from one a deploy is still making.
  - With O(state=started), sets O(tags) on each node, then powers it on and, with O(wait_for_ip), waits for its
    address. The node keeps the identity, SSH host key and disks it was deployed with, so cloud-init sees the same
    instance-id and does not run its per-instance modules (users, SSH keys, host keys) again.
  - This is how the Ray provider's C(cache_stopped_nodes) stops idle workers and starts them again.
  - Refuses, before changing anything, any VM in O(uuids) that is not a verified node of O(cluster_name), that is,
    without the custom attribute C(ray-cluster-name) and the identity O(cluster_key_file) verifies.
  - A UUID that matches no VM is returned in RV(absent), not an error. A node already in the requested state is
    left alone.
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
  - ray_vsphere.cluster.cluster_key
  - ray_vsphere.cluster.vm_folders
  - ray_vsphere.cluster.ip_selection
options:
  cluster_name:
    description: The Ray cluster the VMs must belong to.
    type: str
    required: true
  uuids:
    description: Instance UUIDs of the nodes to stop or start.
    type: list
    elements: str
    required: true
  state:
    description: C(stopped) shuts the nodes down and keeps them; C(started) powers stopped nodes on again.
    type: str
    choices: [stopped, started]
    required: true
  tags:
    description:
      - Ray tags to set on each node before it is powered on (O(state=started)); an empty value unsets a tag.
      - The Ray provider gives the launch's tags, so a restarted node is the launch's new node for Ray.
    type: dict
    default: {}
  shutdown_timeout:
    description:
      - Seconds to wait for a guest to shut down after C(ShutdownGuest) before powering the VM off (O(state=stopped)).
    type: int
    default: 60
  wait_for_ip:
    description: Wait until every started node reports a usable IP address (O(state=started)).
    type: bool
    default: true
  ip_timeout:
    description: Seconds to wait for the addresses.
    type: int
    default: 600
  parallel:
    description: How many nodes are changed at once.
    type: int
    default: 8
notes:
  - Supports check mode.
  - C(ShutdownGuest) needs C(VirtualMachine.Interact.PowerOff) on the VM, as C(PowerOffVM_Task) does;
    C(PowerOnVM_Task) needs C(VirtualMachine.Interact.PowerOn) (meta/vcenter_requirements.yml).
"""

EXAMPLES = r"""
- name: Stop two idle workers, keeping their disks
  ray_vsphere.cluster.node_power:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    datacenter: DC1
    vm_folders: [ray/analytics]
    uuids: "{{ idle_workers | map(attribute='uuid') | list }}"
    state: stopped

- name: Start them again, as new workers of the current launch config
  ray_vsphere.cluster.node_power:
    cluster_name: analytics
    cluster_key_file: ~/.ssh/ray-analytics
    uuids: "{{ idle_workers | map(attribute='uuid') | list }}"
    state: started
    tags:
      ray-node-status: uninitialized
  register: restarted
"""

RETURN = r"""
changed_nodes:
  description: Names of the nodes stopped or started (that would be, in check mode), sorted.
  returned: always
  type: list
  elements: str
  sample: [analytics-worker-3f2a-0]
nodes:
  description:
    - The records of the nodes in O(uuids) after the start, sorted by name, in the form of
      M(ray_vsphere.cluster.node_info)'s RV(ray_vsphere.cluster.node_info#module:nodes); as read in check mode.
  returned: when O(state=started)
  type: list
  elements: dict
  sample: [{name: analytics-worker-3f2a-0, uuid: 5029d4cb-5ad3-4d1c-b4b4-d3a6e6a8d5a1, moid: vm-1042,
            power_state: poweredOn, ip: 10.20.1.17, ip_addresses: [10.20.1.17], tags: {ray-node-status: uninitialized},
            deploy_settings: {}, ssh_host_key: null}]
absent:
  description: The requested UUIDs that matched no VM.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _node_power, _nodes, _ray_auth


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            cluster_name=dict(type="str", required=True),
            uuids=dict(type="list", elements="str", required=True),
            state=dict(type="str", choices=["stopped", "started"], required=True),
            tags=dict(type="dict", default={}),
            shutdown_timeout=dict(type="int", default=_node_power.DEFAULT_SHUTDOWN_TIMEOUT),
            wait_for_ip=dict(type="bool", default=True),
            ip_timeout=dict(type="int", default=600),
            parallel=dict(type="int", default=8),
            **dict(_nodes.IP_OPTIONS, **dict(_nodes.FOLDER_OPTIONS, **_ray_auth.CLUSTER_KEY_OPTIONS))
        ),
        required_by=dict(vm_folders="datacenter"),
        supports_check_mode=True,
    )
    params = module.params
    cluster_key = _ray_auth.cluster_key_or_fail(module)
    try:
        tags = _node_power.start_tags(params["tags"])
        preferred, ignored = _nodes.ip_choice(params)
    except RayVsphereError as error:
        module.fail_json(msg=str(error))

    def action(client):
        roots = _nodes.folder_roots(client.service_instance, params)
        if params["state"] == "stopped":
            changed_nodes, absent = _node_power.stop_nodes(
                client.service_instance, cluster_key, params["uuids"], params["parallel"], module.check_mode,
                params["shutdown_timeout"], roots)
            return dict(changed=bool(changed_nodes), changed_nodes=changed_nodes, absent=absent)
        nodes, changed_nodes, absent = _node_power.start_nodes(
            client.service_instance, cluster_key, params["uuids"], tags, params["parallel"], module.check_mode,
            params["ip_timeout"] if params["wait_for_ip"] else None, preferred, ignored, roots)
        return dict(changed=bool(changed_nodes), changed_nodes=changed_nodes, nodes=nodes, absent=absent)

    run_module(module, action)


if __name__ == "__main__":
    main()
