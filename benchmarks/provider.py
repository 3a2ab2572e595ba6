"""What VsphereNodeProvider costs the Ray autoscaler, measured side by side on the testbed.

    .venv/bin/python benchmarks/provider.py [--nodes 50] [--updates 10]

1. node_tags / internal_ip at --nodes nodes: microseconds per call from the
   provider's cache, next to one vCenter read per call (what a provider
   without a cache pays).
2. One autoscaler update at steady state, with the call mix measured on
   Ray 2.60's v1 autoscaler (1 non_terminated_nodes, ~12.4 node_tags and
   ~9.8 internal_ip per node): ansible-runner runs and CPU seconds (this
   process and its children), the cache forced stale before each update so
   every update pays its one refresh. Next to it: the same refresh as a
   node_info playbook run through ansible-runner.
3. Seconds from a scale-up request to the new worker alive in Ray: through
   the provider (request_resources on a `ray up` cluster; the head's
   autoscaler launches it) and through the worker-count playbook
   (ray_workers.yml on a ray_up.yml cluster).
"""

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from ray_provider import node_provider
from ray_provider.node_provider import VsphereNodeProvider
from ray_provider.runner import published_stats
from testbed import ray_cluster
from testbed.guests import make_key_pair, ssh, vcsim_with_guests

NODE_TAGS_PER_NODE = 12.4
INTERNAL_IP_PER_NODE = 9.8


def cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_call_microseconds(call, node_ids, rounds=200):
    started = time.perf_counter()
    for _ in range(rounds):
        for node_id in node_ids:
            call(node_id)
    return (time.perf_counter() - started) / (rounds * len(node_ids)) * 1e6


def cache_and_update_costs(sim, work_dir, nodes, updates):
    key = make_key_pair(work_dir / "ray-key")
    config = ray_cluster.provider_cluster_yaml(work_dir / "bench.yaml", "bench", key)
    os.environ.update(sim.endpoint.environment())
    node_provider.STATE_DIR = work_dir / "state"
    bootstrapped = VsphereNodeProvider.bootstrap_config(yaml.safe_load(config.read_text()))
    provider = VsphereNodeProvider(bootstrapped["provider"], "bench")

    started = time.monotonic()
    created = provider.create_node({}, {"ray-node-type": "worker", "ray-user-node-type": "worker"}, nodes)
    create_seconds = time.monotonic() - started
    node_ids = provider.non_terminated_nodes({})
    assert len(node_ids) == nodes == len(created), (len(node_ids), nodes)

    tags_us = per_call_microseconds(provider.node_tags, node_ids)
    ip_us = per_call_microseconds(provider.internal_ip, node_ids)
    direct_us = per_call_microseconds(lambda node_id: provider._list_cluster_nodes(), node_ids[:5], rounds=4)

    runs = []
    original_run = provider.playbooks.run

    def counted_run(playbook, extravars):
        runs.append(playbook)
        return original_run(playbook, extravars)
    provider.playbooks.run = counted_run

    cpu = []
    for _ in range(updates):
        provider._last_refresh = float("-inf")
        before = cpu_seconds()
        for node_id in provider.non_terminated_nodes({}):
            for _ in range(round(NODE_TAGS_PER_NODE)):
                provider.node_tags(node_id)
            for _ in range(round(INTERNAL_IP_PER_NODE)):
                provider.internal_ip(node_id)
        cpu.append(cpu_seconds() - before)

    playbook_cpu = []
    for index in range(3):
        before = cpu_seconds()
        runner = ray_cluster.run_tasks([{"name": "List the nodes", "ray_vsphere.cluster.node_info": {
            "cluster_name": "bench", "cluster_key_file": str(key)}}],
                                       work_dir / f"list-{index}", sim.endpoint.environment())
        assert runner.status == "successful"
        playbook_cpu.append(cpu_seconds() - before)

    provider.terminate_nodes(node_ids)
    return dict(create_seconds=create_seconds, tags_us=tags_us, ip_us=ip_us, direct_us=direct_us,
                runs_per_update=len(runs) / updates, cpu_per_update=statistics.median(cpu),
                playbook_cpu=statistics.median(playbook_cpu))


def scale_up_through_provider(sim, work_dir):
    key = make_key_pair(work_dir / "ray-key")
    config = ray_cluster.provider_cluster_yaml(work_dir / "scale.yaml", "bench-scale", key,
                                               **{"available_node_types.worker.min_workers": 0})
    state = work_dir / "state"
    up = ray_cluster.ray_cli(sim.endpoint, state, "up", "-y", "--no-config-cache", str(config))
    if up.returncode != 0:
        raise SystemExit(f"benchmark: ray up failed: {up.stdout[-3000:]}{up.stderr[-3000:]}")
    try:
        head_ip = ray_cluster.ray_cli(sim.endpoint, state, "get-head-ip", str(config)).stdout.strip().splitlines()[-1]
        ray_cluster.wait_for_alive_nodes(head_ip, key, 1, interval=0.5)
        started = time.monotonic()
        request = ssh(head_ip, key, "python -c 'import ray; ray.init(address=\"auto\", logging_level=\"ERROR\"); "
                                    "from ray.autoscaler.sdk import request_resources; request_resources(num_cpus=1)'")
        assert request.returncode == 0, request.stderr
        ray_cluster.wait_for_alive_nodes(head_ip, key, 2, interval=0.5)
        return time.monotonic() - started
    finally:
        ray_cluster.ray_cli(sim.endpoint, state, "down", "-y", str(config))
        ray_cluster.close_ray_ssh_connections("bench-scale")


def scale_up_through_playbook(sim, work_dir):
    key = work_dir / "keys" / "ray-key"
    cluster = ray_cluster.cluster_vars("bench-playbook", key, worker_count=0)
    environment = sim.endpoint.environment()
    up = ray_cluster.run("ray_up", work_dir / "up", environment, cluster)
    assert up.status == "successful", up.stdout.read()[-3000:]
    head_ip = published_stats(up)["ray_head_ip"]
    try:
        ray_cluster.wait_for_alive_nodes(head_ip, key, 1, interval=0.5)
        started = time.monotonic()
        more = ray_cluster.run("ray_workers", work_dir / "more", environment, dict(cluster, ray_worker_count=1))
        assert more.status == "successful", more.stdout.read()[-3000:]
        ray_cluster.wait_for_alive_nodes(head_ip, key, 2, interval=0.5)
        return time.monotonic() - started
    finally:
        ray_cluster.run("ray_down", work_dir / "down", environment, cluster)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--updates", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray-vsphere-bench-") as folder, vcsim_with_guests() as (sim, _guests):
        work_dir = Path(folder)
        for part in ("cache", "provider", "playbook"):
            (work_dir / part).mkdir()
        costs = cache_and_update_costs(sim, work_dir / "cache", args.nodes, args.updates)
        print(f"{args.nodes} nodes created by one create_node call (one ansible-runner run): "
              f"{costs['create_seconds']:.1f} s")
        print(f"node_tags from the cache:    {costs['tags_us']:8.2f} us per call")
        print(f"internal_ip from the cache:  {costs['ip_us']:8.2f} us per call")
        print(f"a vCenter listing per call:  {costs['direct_us']:8.0f} us per call "
              f"({costs['direct_us'] / costs['tags_us']:,.0f}x the cache)")
        print(f"autoscaler update at {args.nodes} nodes (n={args.updates}): "
              f"{costs['runs_per_update']:.0f} ansible-runner runs, {costs['cpu_per_update']:.3f} CPU s "
              f"(refresh in process); the refresh as a node_info playbook run: {costs['playbook_cpu']:.2f} CPU s "
              f"({costs['playbook_cpu'] / costs['cpu_per_update']:.1f}x)")
        through_provider = scale_up_through_provider(sim, work_dir / "provider")
        through_playbook = scale_up_through_playbook(sim, work_dir / "playbook")
        print(f"scale-up request to worker alive in Ray: provider (autoscaler) {through_provider:.1f} s, "
              f"ray_workers.yml {through_playbook:.1f} s (the playbook takes {through_playbook / through_provider:.2f}x as long)")


if __name__ == "__main__":
    main()
