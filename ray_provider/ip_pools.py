"""The checks only the provider can make of static IP pools: across node types.

Each node type's ip_pool (node_deploy's option, set in `provider` for every
type or in a type's node_config) is checked by node_deploy's own rules with
the other node settings (config._section_problems). What no single deploy
sees is two node types whose different pools share an address on one
network: refused here, by key, with the collection's own check
(module_utils/_ip_pool_overlap.py, which the playbooks use too). Node types
that inherit one pool share it: the ledger keeps their addresses apart.
"""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ip_pool_overlap import overlap_problems

IP_POOL = "ip_pool"


def pool_overlap_problems(provider, typed_settings):
    """Problems by key of node types whose pools overlap another's on the same network.

    typed_settings: [(node type name, its node_config, its merged node settings)], in the YAML's order.
    A pool set in `provider` and inherited is named there once, not once per node type.
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
