#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: placement_info
short_description: What a vCenter offers to place Ray nodes on, by inventory path
version_added: 0.2.0
description:
  - Lists the datacenters, clusters and standalone hosts, their ESXi hosts, resource pools, mounted datastores and
    networks, and the VM folders of a vCenter, each by the inventory path the placement options of
    M(ray_vsphere.cluster.node_deploy) and of C(ray up)'s cluster YAML take (C(/DC1/host/Compute/Resources/ray)).
  - For each cluster and standalone host, a ready C(placement) suggestion, made of its root resource pool, the datacenter's
    VM folder, the mounted datastore with the most free space and its first network; every other choice is listed
    beside it.
  - Also returns the vCenter's product and version.
  - Reads with one PropertyCollector call that walks only folders, datacenters, compute resources and pools, never
    a VM's properties; verifies TLS against O(ca_path), as every module of the collection does.
  - Reads only; never changes anything.
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
options:
  datacenter:
    description:
      - Only this datacenter, by name, managed object id (C(datacenter-2)) or inventory path (C(/DC1)).
      - Every datacenter if not set.
    type: str
notes:
  - Supports check mode.
  - A name with a C(/) in it is shown as vCenter escapes it in a path, C(%2f).
seealso:
  - module: ray_vsphere.cluster.node_deploy
"""

EXAMPLES = r"""
- name: Read what a cluster YAML can name
  ray_vsphere.cluster.placement_info:
    ca_path: /etc/ssl/vmca-root.pem
  register: choices

- name: Show the suggested placement of each cluster
  ansible.builtin.debug:
    msg: "{{ choices.datacenters | map(attribute='compute_resources') | flatten | map(attribute='placement') }}"
"""

RETURN = r"""
vcenter:
  description: The vCenter's product and version, from its ServiceContent.about.
  returned: always
  type: dict
  sample:
    name: VMware vCenter Server
    full_name: VMware vCenter Server 8.0.3 build-24022515
    version: 8.0.3
    build: "24022515"
    api_version: 8.0.3.0
    product_line: vpx
    instance_uuid: 1b6b5c6e-3ad4-4a5b-9ee4-0bdbb0b3c8f4
datacenters:
  description: Each datacenter with what can be placed on in it, sorted by path.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The datacenter's name.
      type: str
    path:
      description: Its inventory path, for O(ray_vsphere.cluster.node_deploy#module:datacenter).
      type: str
      sample: /DC1
    moid:
      description: Its managed object id.
      type: str
    compute_resources:
      description: Its clusters and standalone hosts.
      type: list
      elements: dict
      contains:
        type:
          description: C(cluster), or C(esxi_host) for a standalone host.
          type: str
        name:
          description: The cluster's (or standalone host's compute resource's) name.
          type: str
        path:
          description: Its inventory path.
          type: str
          sample: /DC1/host/Compute
        moid:
          description: Its managed object id.
          type: str
        hosts:
          description: Inventory paths of its ESXi hosts, for O(ray_vsphere.cluster.node_deploy#module:esxi_host).
          type: list
          elements: str
        resource_pools:
          description: Inventory paths of its resource pools, the root pool first.
          type: list
          elements: str
          sample: [/DC1/host/Compute/Resources, /DC1/host/Compute/Resources/ray]
        datastores:
          description: The datastores mounted on it, each with C(name), C(path), C(moid), C(capacity_bytes) and
            C(free_bytes).
          type: list
          elements: dict
        networks:
          description: Inventory paths of the networks (port groups) it reaches, but distributed switches' uplink port
            groups.
          type: list
          elements: str
          sample: [/DC1/network/VM Network]
        placement:
          description:
            - A placement to paste into a cluster YAML or node_deploy's options, every value an inventory path.
            - Its C(cluster) (or C(esxi_host)), root C(resource_pool), the datacenter's C(vm_folder), the mounted
              datastore with the most free space and the first network; C(null) where it has none.
          type: dict
          sample:
            datacenter: /DC1
            cluster: /DC1/host/Compute
            resource_pool: /DC1/host/Compute/Resources
            vm_folder: /DC1/vm
            datastore: /DC1/datastore/vsanDatastore
            network: /DC1/network/VM Network
    vm_folders:
      description: The datacenter's VM folder and every folder below it; C(value) is what
        O(ray_vsphere.cluster.node_deploy#module:vm_folder) takes (the inventory path, but for a datacenter inside a
        folder the path below its VM folder).
      type: list
      elements: dict
      sample: [{name: vm, path: /DC1/vm, moid: group-v4, value: /DC1/vm}]
    datastores:
      description: Every datastore of the datacenter, as in C(compute_resources[].datastores).
      type: list
      elements: dict
    networks:
      description: Every network of the datacenter, each with C(name), C(path), C(moid) and C(type)
        (C(Network), C(DistributedVirtualPortgroup), C(OpaqueNetwork)), and C(uplink), true for a distributed
        switch's uplink port group, which no VM can use.
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _inventory


def main():
    module = AnsibleModule(argument_spec=argument_spec(datacenter=dict(type="str")), supports_check_mode=True)
    wanted = module.params["datacenter"]

    def action(client):
        datacenters = _inventory.placement_choices(client.service_instance, wanted)
        if wanted and not datacenters:
            raise RayVsphereError("datacenter %r not found in vCenter (there: %s)" % (wanted, ", ".join(
                entry["path"] for entry in _inventory.placement_choices(client.service_instance)) or "none"))
        return dict(changed=False, vcenter=_inventory.about(client.service_instance), datacenters=datacenters)

    run_module(module, action)


if __name__ == "__main__":
    main()
