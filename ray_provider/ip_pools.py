"""The checks only the provider can make of static IP pools: across node types.

Each node type's ip_pool (node_deploy's option, set in `provider` for every
type or in a type's node_config) is checked by node_deploy's own rules with
the other node settings (config._section_problems). What no single deploy
sees is two node types whose different pools share an address on one
network: refused here, by key, with the collection's own check
(module_utils/_ip_pool_overlap.py, which the playbooks use too). Node types
that inherit one pool share it: the ledger keeps their addresses apart.
"""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ip_pool import pass_through_problems
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ip_pool_overlap import overlap_problems

IP_POOL = "ip_pool"


def across_section_problems(typed_settings):
    """node_deploy's pool rules that span options (its own network config beside a pool), on each node type's
    merged settings: provider.ovf_properties' network-config with a type's pool is one mistake, not two halves.
    Each is named where the other option was set."""
    problems = []
    for name, node_config, settings in typed_settings:
        if not isinstance(settings.get(IP_POOL), dict):
            continue
        try:
            found = pass_through_problems(settings)
        except TypeError:
            continue  # a malformed value: named by its type check
        for option, problem in found:
            where = f"available_node_types.{name}.node_config" if option in node_config else "provider"
            problems.append(f"{where}.{option}: {problem}")
    return problems


def pool_overlap_problems(typed_settings):
    """Problems by key of node types whose pools overlap another's on the same network.

    typed_settings: [(node type name, its node_config, its merged node settings)], in the YAML's order.
    A pool set in `provider` and inherited is named there, not by the node type.
    """
    by_network = {}
    for name, node_config, settings in typed_settings:
        pool = settings.get(IP_POOL)
        if isinstance(pool, dict):
            where = (f"available_node_types.{name}.node_config.{IP_POOL}" if IP_POOL in node_config
                     else f"provider.{IP_POOL}")
            network = (settings.get("datacenter") or "", settings.get("network") or "")
            by_network.setdefault(network, []).append((where, pool))
    problems = []
    for pools in by_network.values():
        problems += [f"{where}: {problem}" for where, problem in overlap_problems(pools)]
    return problems


def cluster_pool_problems(typed_settings, found):
    """The pool problems of a whole cluster config that the checks so far (`found`) have not named.

    A provider-level setting's problem is one line for every node type: named once.
    """
    across = [problem for problem in across_section_problems(typed_settings) if problem not in found]
    return list(dict.fromkeys(across)) + pool_overlap_problems(typed_settings)
