#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_deploy
short_description: Deploy Ray nodes on vSphere from an OVF or OVA, in parallel
version_added: 0.1.0
description:
  - Deploys O(count) Ray nodes (or the VMs named in O(names)) from a local OVF or OVA file or an http(s) URL,
    in one call and in parallel with at most O(parallel) at once.
  - Each VM carries its Ray tags (cluster name, node kind, user node type and O(tags)) as vCenter custom
    attributes, so any process that reads vCenter sees the same cluster.
  - With O(clone_from_template=true) the OVF is imported once into a template kept per content hash and every
    node is cloned from it; linked clones where the template's datastore is the target datastore.
  - Placement, OVF and property names are all checked before anything is created. If any node fails
    (getting no IP in time included), every VM made by the call is removed.
  - Idempotent. Rerunning with the same O(names) or the same O(request_id) creates nothing new and
    reports C(changed=false); powered-off nodes are powered on when O(power_on=true).
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
  - ray_vsphere.cluster.ip_selection
options:
  cluster_name:
    description: The Ray cluster the nodes belong to (custom attribute C(ray-cluster-name)).
    type: str
    required: true
  node_kind:
    description: The Ray node kind (custom attribute C(ray-node-type)).
    type: str
    choices: [head, worker]
    default: worker
  node_type:
    description: The user node type of the Ray cluster YAML (custom attribute C(ray-user-node-type)).
    type: str
  names:
    description:
      - The VM names to deploy. Overrides O(count) and O(request_id).
    type: list
    elements: str
  count:
    description: How many nodes to deploy when O(names) is not given.
    type: int
    default: 1
  request_id:
    description:
      - Names the nodes C(<cluster_name>-<node_kind>-<request_id>-<index>), so that a retry with the same
        request id finds the nodes of the first try instead of creating more.
      - Without O(names) or O(request_id), every run creates O(count) new nodes.
    type: str
  tags:
    description: Further Ray tags, such as C(ray-launch-config) or C(ray-node-name).
    type: dict
    default: {}
  ovf:
    description: Path of a local C(.ovf) (with its files beside it) or C(.ova), or an http(s) URL to either.
    type: str
    required: true
  datacenter:
    description: The datacenter to deploy into.
    type: str
    required: true
  cluster:
    description: The vSphere cluster to deploy into. One of O(cluster) and O(esxi_host) is required.
    type: str
  esxi_host:
    description: The ESXi host to deploy onto, instead of a cluster.
    type: str
  resource_pool:
    description: A resource pool of O(cluster) or O(esxi_host); their root pool if not set.
    type: str
  vm_folder:
    description: The VM folder, as a path below the datacenter's VM folder (C(ray/prod)) or C(/DC/vm/ray/prod).
    type: str
  datastore:
    description: The datastore for the VMs' disks; it must be mounted on O(cluster) or O(esxi_host).
    type: str
    required: true
  network:
    description: The network every NIC of the OVF is connected to; the OVF's own mapping if not set.
    type: str
  cpus:
    description: Virtual CPUs per node; the OVF's if not set.
    type: int
  memory_mb:
    description: Memory per node in MiB; the OVF's if not set.
    type: int
  ovf_properties:
    description:
      - Values for the OVF's ProductSection properties, such as C(public-keys) or C(user-data) of
        cloud-init images. Names the OVF does not declare are an error.
      - C(hostname), when the OVF declares it, defaults to the VM name.
    type: dict
    default: {}
  guestinfo:
    description: C(guestinfo.*) extraConfig entries, for example C(public-keys) or C(userdata); the prefix is added.
    type: dict
    default: {}
  power_on:
    description: Power the nodes on.
    type: bool
    default: true
  wait_for_ip:
    description:
      - Wait until every node reports a usable IP address (see O(preferred_cidr), O(ignored_cidrs)).
      - If that times out, the VMs this call created are removed (nodes that existed before are kept).
    type: bool
    default: false
  ip_timeout:
    description: Seconds to wait for the IP addresses.
    type: int
    default: 600
  clone_from_template:
    description: Import the OVF once into a template per content hash and clone the nodes from it.
    type: bool
    default: true
  linked_clone:
    description: Make linked clones when the template's datastore is O(datastore).
    type: bool
    default: true
  parallel:
    description: How many nodes are created at once.
    type: int
    default: 4
  timeout:
    description: Seconds any one vCenter task (import, clone) may take.
    type: int
    default: 1800
notes:
  - Supports check mode and diff mode.
  - The templates of the fast path are named C(ray-template-<hash>) and stay in the VM folder for later
    deploys of the same OVF.
"""

EXAMPLES = r"""
- name: Deploy three Ray workers, reusing them on retry
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    node_kind: worker
    node_type: cpu_worker
    count: 3
    request_id: "{{ launch_id }}"
    ovf: https://images.example.com/ray-node.ova
    datacenter: DC1
    cluster: Compute
    resource_pool: ray
    vm_folder: ray/analytics
    datastore: vsanDatastore
    network: VM Network
    ovf_properties:
      public-keys: "{{ lookup('ansible.builtin.file', 'ray_key.pub') }}"
    wait_for_ip: true
    preferred_cidr: 10.20.0.0/16
  register: workers

- name: Deploy the head with its name, credentials from VMWARE_* variables
  ray_vsphere.cluster.node_deploy:
    cluster_name: analytics
    node_kind: head
    names: [analytics-head]
    ovf: /srv/images/ray-node.ova
    datacenter: DC1
    cluster: Compute
    datastore: vsanDatastore
    guestinfo:
      public-keys: "{{ lookup('ansible.builtin.file', 'ray_key.pub') }}"
"""

RETURN = r"""
nodes:
  description: One record per requested node.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The VM name.
      type: str
      sample: analytics-worker-3f2a-0
    uuid:
      description: The VM's instance UUID; null in check mode for a node not yet made.
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
      description: The address to reach the node on, when known.
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
      sample: {ray-cluster-name: analytics, ray-node-type: worker}
created:
  description: Names of the nodes this run created (would create, in check mode).
  returned: always
  type: list
  elements: str
  sample: [analytics-worker-3f2a-0]
adopted:
  description: Names of VMs of an earlier, cut-short run of this cluster that this run tagged and kept.
  returned: always
  type: list
  elements: str
  sample: []
existing:
  description: Names of requested nodes that already existed.
  returned: always
  type: list
  elements: str
  sample: []
diff:
  description: The cluster's requested node names before and after.
  returned: when diff mode is on
  type: dict
  sample: {before: {nodes: []}, after: {nodes: [analytics-worker-3f2a-0]}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy import (
    DEPLOY_OPTIONS, MUTUALLY_EXCLUSIVE, REQUIRED_ONE_OF, deploy)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(**DEPLOY_OPTIONS),
        required_one_of=REQUIRED_ONE_OF,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )

    def action(client):
        result = deploy(client, module.params, module.check_mode)
        if module._diff:
            result["diff"] = dict(before=dict(nodes=result["existing"]),
                                  after=dict(nodes=sorted(node["name"] for node in result["nodes"])))
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
