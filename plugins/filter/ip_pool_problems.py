# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: ip_pool_problems
short_description: What is wrong with the static IP pools of node kinds that share one network
version_added: 0.5.0
description:
  - Checks each pool (M(ray_vsphere.cluster.node_deploy)'s O(ray_vsphere.cluster.node_deploy#module:ip_pool)) with
    node_deploy's own checks, and refuses two different pools that share an address, so that C(ray_up.yml) stops
    before it makes anything rather than after the head is made.
  - One pool given to several kinds (the same mapping) is one pool, whose addresses the nodes share.
  - The Ray provider runs the same checks on a cluster YAML's node types.
  - An empty list when all is well; an unset pool (an empty mapping) has no problem.
options:
  _input:
    description:
      - Pools by the name each is reported under (the variable it came from), all on one network, in the order
        they are reported.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Stop on a head pool that overlaps the workers'
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: >-
      {{ {'ray_head_ip_pool': {'cidr': '198.18.5.0/24', 'range': '198.18.5.200-198.18.5.210'},
          'ray_worker_ip_pool': {'cidr': '198.18.5.0/24', 'range': '198.18.5.205-198.18.5.250'}}
         | ray_vsphere.cluster.ip_pool_problems }}
"""

RETURN = r"""
_value:
  description: One message per problem, each naming its pool.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ip_pool import pool_problems
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ip_pool_overlap import overlap_problems


def ip_pool_problems(pools):
    if not isinstance(pools, dict):
        raise AnsibleFilterError("ip_pool_problems expects pools by name (a dict), not %s" % type(pools).__name__)
    problems = []
    for name, pool in pools.items():
        if pool and not isinstance(pool, dict):
            problems.append("%s: must be a mapping (cidr, range or addresses, gateway, dns_servers, "
                            "search_domains), not %r" % (name, pool))
        elif pool:
            try:
                found = pool_problems({"ip_pool": pool})
            except (AttributeError, TypeError, ValueError):
                found = [("ip_pool", "must be a mapping of cidr (text), range (text) or addresses, gateway (text), "
                                     "dns_servers and search_domains (lists of text), not %r" % (pool,))]
            # node_deploy's own checks, each named by the variable's key rather than ip_pool's.
            problems.extend("%s: %s" % (option.replace("ip_pool", name, 1), problem) for option, problem in found)
    if problems:
        return problems
    return ["%s: %s" % (name, problem) for name, problem in overlap_problems(list(pools.items()))]


class FilterModule:
    def filters(self):
        return {"ip_pool_problems": ip_pool_problems}
