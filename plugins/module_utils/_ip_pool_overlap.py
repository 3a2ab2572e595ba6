# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether the static IP pools of a cluster's node kinds or types collide on one network.

One pool shared by several node types (the same mapping, as when each
inherits the Ray provider's ip_pool, or ray_ip_pool for head and workers)
is fine: the ledger (each VM's recorded address in the cluster's folder)
hands each address out once. Two different pools that share an address on
one network are refused before anything is made: a pool is read as "these
addresses are ours to give", and two owners of one address, each with its
own gateway, DNS or range, is a mistake in the config, not a race to win.
The Ray provider (ray_provider/ip_pools.py) and the playbooks (the
ip_pool_problems filter) both ask this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ip_pool import IP_POOL_OPTIONS, IpPool, pool_problems

# node_deploy's defaults of the suboptions: two spellings of one pool compare equal.
POOL_DEFAULTS = dict((key, spec.get("default")) for key, spec in IP_POOL_OPTIONS["ip_pool"]["options"].items())


def normalized(pool):
    """The pool with node_deploy's defaults filled in."""
    merged = dict(POOL_DEFAULTS)
    merged.update(dict((key, value) for key, value in (pool or {}).items() if value not in (None, "")))
    return merged


def spans(pool):
    """(IP version, the pool's addresses as (first, last) integer spans); None for a pool node_deploy refuses
    (its problems are named by pool_problems where the pool is set).

    The gateway a pool never hands out still counts: another pool's range over it is a mistake too.
    """
    try:
        if pool_problems({"ip_pool": pool}):
            return None
    except (AttributeError, TypeError, ValueError):
        return None  # not of ip_pool's types: refused by the type check
    checked = IpPool(pool)
    return checked.network.version, checked.spans


def _shared(first_spans, second_spans):
    """The lowest address both span lists hold, or None."""
    found = [max(a_first, b_first) for a_first, a_last in first_spans for b_first, b_last in second_spans
             if max(a_first, b_first) <= min(a_last, b_last)]
    return str(ipaddress.ip_address(min(found))) if found else None


def overlap_problems(pools):
    """(name, problem) for each pool that shares an address with a different one listed before it.

    pools: [(name, pool)] of one network, in the order their names are
    reported (the Ray provider's node types, the playbooks' head then
    workers). Unset pools (None, {}) take part in nothing.
    """
    seen, problems = [], []
    for name, pool in pools:
        if not pool:
            continue
        pool = normalized(pool)
        found = spans(pool)
        if found is None:
            continue
        version, mine = found
        for other_name, other_pool, other_spans, other_version in seen:
            if other_pool == pool or other_version != version:
                continue
            address = _shared(mine, other_spans)
            if address:
                problems.append((name, "overlaps %s on the same network (both hold %s): give the two one pool "
                                       "(the same ip_pool, whose addresses the nodes share), or pools without a "
                                       "common address" % (other_name, address)))
                break
        seen.append((name, pool, mine, version))
    return problems
