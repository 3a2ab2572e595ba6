"""provider.cache_stopped_nodes: which nodes a terminate stops or deletes, and which stopped ones a launch starts.

The rules (docs/ray-provider.md, "Stop instead of delete"):
- terminating workers stops them (node_power: the guest shuts down, the VM
  and its disks stay), when the cluster YAML sets cache_stopped_nodes;
- terminating the head deletes, with whatever else the call names, every
  stopped node of the cluster: that is `ray down` (it terminates the head and
  the workers Ray still sees), so `ray down` leaves no stopped VM behind.
  `ray down --workers-only` stops the workers and keeps them;
- a launch first starts stopped nodes of its node kind, node type and launch
  config (Ray's tags ray-node-type, ray-user-node-type, ray-launch-config),
  each verified as a node of the cluster by node_power like any other, and
  deploys only the rest. A node of an older launch config is never started
  again: Ray would take it for an outdated node and replace it.
"""

from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_LAUNCH_CONFIG, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

# The tags a stopped node must share with a launch to be started for it.
RESTART_MATCH_TAGS = (TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE, TAG_RAY_LAUNCH_CONFIG)


def enabled(provider_config):
    return bool(provider_config.get("cache_stopped_nodes"))


def claim(cache, provider_config, tags, count):
    """The stopped nodes (up to count) a launch with tags starts again, claimed in cache; a head is always made anew."""
    if not enabled(provider_config) or tags.get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD:
        return []
    return cache.claim_stopped({key: tags.get(key) for key in RESTART_MATCH_TAGS}, count)


def terminate_plan(cache, node_ids, cache_stopped):
    """(uuids to stop, uuids to delete) for a terminate of node_ids, which begin_terminate has taken for it."""
    if not cache_stopped:
        return [], list(node_ids)
    if any(cache.tags(node_id).get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD for node_id in node_ids):
        return [], list(node_ids) + [node_id for node_id in cache.stopped() if node_id not in node_ids]
    return list(node_ids), []
