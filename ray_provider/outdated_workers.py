"""Terminate the workers a new cluster config outdates, where Ray's autoscaler v2 would not.

    python -I -m ray_provider.outdated_workers ~ray-autoscaler/ray_bootstrap_config.yaml

Autoscaler v1 terminates a worker whose `ray-launch-config` tag no longer
matches the hash of its node type's node_config (StandardAutoscaler.
launch_config_ok), then launches new ones for min_workers and demand: that is
how a changed image or node setting reaches the workers after `ray up`.
Autoscaler v2 (Ray 2.60) does not: its provider config's
disable_launch_config_check defaults to true there, and its instance manager
never records an instance's launch hash, so with the check turned on every
running worker would count as outdated on every update. ray_provider.head_start
runs this as the autoscaler's user under v2, after `ray up` restarted Ray on
the head and before the v2 monitor starts, with v1's rule and v1's default:
the v2 monitor then launches the replacements. `disable_launch_config_check:
true` in the provider section keeps every worker, as it does under v1.
"""

import copy
import sys

import yaml

from ray.autoscaler._private.providers import _get_node_provider
from ray.autoscaler._private.util import hash_launch_conf
from ray.autoscaler.tags import NODE_KIND_WORKER, TAG_RAY_LAUNCH_CONFIG, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE


def outdated(config, tags):
    """Whether a worker with these tags is outdated under config: v1's launch_config_ok, negated."""
    node_type = tags.get(TAG_RAY_USER_NODE_TYPE)
    node_types = config.get("available_node_types") or {}
    if node_type not in node_types:
        return True
    launch_config = copy.deepcopy(config.get("worker_nodes") or {})
    launch_config.update(node_types[node_type].get("node_config") or {})
    return hash_launch_conf(launch_config, config.get("auth") or {}) != tags.get(TAG_RAY_LAUNCH_CONFIG)


def terminate_outdated(config, provider=None):
    """Terminate the outdated workers of config's cluster; their node ids."""
    if (config.get("provider") or {}).get("disable_launch_config_check"):
        return []
    provider = provider or _get_node_provider(config["provider"], config["cluster_name"])
    workers = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
    stale = [node_id for node_id in workers if outdated(config, provider.node_tags(node_id))]
    if stale:
        provider.terminate_nodes(stale)
    return stale


def main(argv=None):
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        print("usage: python -m ray_provider.outdated_workers <the autoscaler's cluster config>", file=sys.stderr)
        return 2
    with open(arguments[0]) as handle:
        config = yaml.safe_load(handle)
    stale = terminate_outdated(config)
    print(f"outdated workers terminated: {', '.join(stale) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
