# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: worker_plan
short_description: Which workers of a Ray cluster the playbooks keep, replace, deploy and remove
version_added: 0.3.0
description:
  - The one place C(ray_up.yml) and C(ray_workers.yml) decide, from the cluster's workers as
    M(ray_vsphere.cluster.node_info) lists them, what happens to each.
  - A worker is outdated when the settings it records (node_deploy's C(deploy_settings), which C(ray_up.yml) writes
    on every worker it deploys) differ from O(record), what its node type asks for now. A worker that records
    nothing (deployed before workers recorded their settings) counts as outdated.
  - Up to O(count) workers are kept, lowest index first, workers that are not outdated before outdated ones
    (unless O(replace) is false, when no worker is outdated). Outdated workers within the count are each paired
    with a new name to be deployed next to them (C(replace)); the rest of the count is new workers (C(fresh)).
    Workers beyond the count leave (C(leaving)).
  - New names are C(<cluster>-worker-<index>) with the lowest indices no listed worker uses, so a fresh cluster's
    workers are C(<cluster>-worker-0) to C(<cluster>-worker-<count - 1>).
author:
  - ray-vsphere maintainers (@ray-vsphere)
options:
  _input:
    description: The cluster's workers, as M(ray_vsphere.cluster.node_info) returns them (C(nodes)).
    type: list
    elements: dict
    required: true
  cluster_name:
    description: The Ray cluster's name, which worker names start with.
    type: str
    required: true
  count:
    description: How many workers the cluster should have.
    type: int
    required: true
  record:
    description: The settings a worker deployed now records (C(ray_cfg_worker_record) of the playbooks).
    type: dict
    required: true
  replace:
    description: Whether outdated workers are replaced; when false every listed worker counts as current.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Plan the workers
  ansible.builtin.set_fact:
    plan: "{{ listed.nodes | ray_vsphere.cluster.worker_plan('analytics', 2, {'ovf': 'https://images/v2.ova'}, true) }}"
  # {'keep': [], 'fresh': [], 'leaving': [],
  #  'replace': [{'name': 'analytics-worker-2', 'replaces': {'name': 'analytics-worker-0', 'uuid': '...'}}, ...]}
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    keep:
      description: Names of the workers that stay as they are.
      type: list
      elements: str
    fresh:
      description: Names of the new workers that make up the count.
      type: list
      elements: str
    replace:
      description: New workers, each with the outdated worker (its C(name) and C(uuid)) it replaces.
      type: list
      elements: dict
    leaving:
      description: The workers beyond the count (C(name) and C(uuid)).
      type: list
      elements: dict
"""

import re

from ansible.errors import AnsibleFilterError


def _index(cluster_name, name):
    """The worker's index in <cluster>-worker-<index>; None for another name (sorted after every indexed one)."""
    match = re.match(r"^%s-worker-(\d+)$" % re.escape(cluster_name), name or "")
    return int(match.group(1)) if match else None


def _ordered(cluster_name, workers):
    def key(worker):
        index = _index(cluster_name, worker.get("name"))
        return (index is None, index or 0, worker.get("name") or "")
    return sorted(workers, key=key)


def _brief(worker):
    return {"name": worker.get("name"), "uuid": worker.get("uuid")}


def worker_plan(workers, cluster_name, count, record, replace=False):
    if not isinstance(workers, list) or not all(isinstance(worker, dict) for worker in workers):
        raise AnsibleFilterError("worker_plan expects node_info's list of nodes, not %r" % (workers,))
    count = int(count)
    if count < 0:
        raise AnsibleFilterError("worker_plan: count must be 0 or more, not %d" % count)
    ordered = _ordered(cluster_name, workers)
    outdated = [worker for worker in ordered if replace and (worker.get("deploy_settings") or {}) != record]
    current = [worker for worker in ordered if worker not in outdated]
    keep = current[:count]
    replaced = outdated[:count - len(keep)]
    leaving = current[count:] + outdated[count - len(keep):]
    used = set(worker.get("name") for worker in workers)
    wanted = count - len(keep)
    free = [name for name in ("%s-worker-%d" % (cluster_name, index) for index in range(len(workers) + wanted))
            if name not in used][:wanted]
    fresh = free[len(replaced):]
    return {
        "keep": [worker["name"] for worker in keep],
        "fresh": fresh,
        "replace": [{"name": name, "replaces": _brief(worker)} for name, worker in zip(free, replaced)],
        "leaving": [_brief(worker) for worker in leaving],
    }


class FilterModule(object):
    def filters(self):
        return {"worker_plan": worker_plan}
