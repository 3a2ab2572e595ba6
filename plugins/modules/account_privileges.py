#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: account_privileges
short_description: Which privileges an account holds on vSphere objects
version_added: 0.2.0
description:
  - Asks vCenter which of O(privileges) an account holds on each of O(objects), from every permission that reaches
    them (an object's own, and those propagated down its folder chain and, for a VM, its resource pool chain).
  - Without O(principal), the account the module logs in as (C(AuthorizationManager.HasPrivilegeOnEntities)); with
    it, that account (C(HasUserPrivilegeOnEntities)), as an administrator checks the grants made for another.
  - Reads only; never changes anything.
author:
  - ray-vsphere maintainers (@ray-vsphere)
extends_documentation_fragment:
  - ray_vsphere.cluster.connection
options:
  principal:
    description: The account to check, as C(DOMAIN\\name) or C(name@domain). Default, the module's own.
    type: str
  objects:
    description: The objects to check, each by O(objects[].type) and O(objects[].name) (or its moid).
    type: list
    elements: dict
    required: true
    suboptions:
      type:
        description: The object's vSphere type.
        type: str
        required: true
        choices: [Datacenter, ClusterComputeResource, ResourcePool, Folder, Datastore, Network, DistributedVirtualPortgroup]
      name:
        description: Its name, unique in vCenter for that type, or its managed object id.
        type: str
        required: true
  privileges:
    description: The privilege ids to ask about, e.g. C(VirtualMachine.Interact.PowerOn).
    type: list
    elements: str
    required: true
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: What the Ray head's account holds on its resource pool
  ray_vsphere.cluster.account_privileges:
    principal: VSPHERE.LOCAL\ray-autoscaler
    objects:
      - {type: ResourcePool, name: ray}
    privileges: [VirtualMachine.Interact.PowerOn, Resource.AssignVMToPool]
  register: held
"""

RETURN = r"""
objects:
  description: Each object asked about, with the privileges of O(privileges) the account holds on it.
  returned: always
  type: list
  elements: dict
  sample: [{type: ResourcePool, name: ray, moid: resgroup-46, held: [Resource.AssignVMToPool]}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec, run_module
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _privileges


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            principal=dict(type="str"),
            objects=dict(type="list", elements="dict", required=True, options=dict(
                type=dict(type="str", required=True, choices=list(_privileges.OBJECT_TYPES)),
                name=dict(type="str", required=True),
            )),
            privileges=dict(type="list", elements="str", required=True),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def action(client):
        service_instance = client.service_instance
        entities = [_privileges.named(service_instance, item["type"], item["name"]) for item in params["objects"]]
        held = _privileges.held(service_instance, entities, params["privileges"], params["principal"])
        return dict(changed=False, objects=[dict(item, moid=entity._moId, held=held.get(entity._moId, []))
                                            for item, entity in zip(params["objects"], entities)])

    run_module(module, action)


if __name__ == "__main__":
    main()
