"""Metrics of a `ray up` cluster: the example YAML's start commands export them, a scheduled ray_metrics.yml targets them.

Under `ray up` the head's autoscaler adds nodes without Ansible, so the docs
have ray_metrics.yml run on a schedule: the test runs it as that schedule
would, once after `ray up` and once after the autoscaler added the min
worker, and scrapes every target from the host as Prometheus would. Which
nodes exist comes from the guests the testbed booted and from Ray's own
`ray get-head-ip`, not from what the provider recorded.
"""

import pytest

from testbed import ray_cluster, simulator
from testbed.guests import make_key_pair, vcsim_with_guests
from testbed.prometheus import assert_every_target_serves_its_nodes_metrics, target, targets_by_type

pytestmark = pytest.mark.slow

CLUSTER = "metrics-up"


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites):
    with vcsim_with_guests() as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


@pytest.mark.timeout(900)
def test_a_scheduled_ray_metrics_run_targets_every_ray_up_node_as_the_autoscaler_adds_them(testbed, tmp_path):
    sim, guests = testbed
    key = make_key_pair(tmp_path / "ray-key")
    config = ray_cluster.provider_cluster_yaml(tmp_path / "cluster.yaml", CLUSTER, key)
    state_dir = tmp_path / "state"
    targets_file = tmp_path / "ray-metrics-up.json"
    dashboards = tmp_path / "dashboards"

    def scheduled_run(name):
        """ray_metrics.yml as the documented cron line runs it: the cluster's name, key and folder."""
        run = ray_cluster.run("ray_metrics", tmp_path / name, sim.endpoint.environment(), {
            "ray_cluster_name": CLUSTER, "ray_ssh_private_key": str(key), "ray_datacenter": simulator.DATACENTER,
            "ray_vm_folder": simulator.VM_FOLDER, "ray_metrics_targets_file": str(targets_file),
            "ray_metrics_dashboards_dir": str(dashboards)})
        assert run.status == "successful", run.stdout.read()[-5000:]
        return targets_by_type(targets_file, CLUSTER)

    try:
        up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config))
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        head_ip = ray_cluster.ray_cli(sim.endpoint, state_dir, "get-head-ip", str(config)).stdout.split()[-1]
        assert scheduled_run("after-up")["head"] == [target(head_ip)]
        assert (dashboards / "default_grafana_dashboard.json").is_file(), "Ray's dashboards from the head"

        # The autoscaler adds the min worker on its own; the next scheduled run lists it.
        ray_cluster.wait_for_alive_nodes(head_ip, key, 2, timeout=240)
        targets = scheduled_run("after-scale-out")
        assert targets == {"head": [target(head_ip)],
                           "worker": sorted(target(guest.address) for guest in guests.guests().values()
                                            if guest.address != head_ip)}
        assert_every_target_serves_its_nodes_metrics(targets)
    finally:
        down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config))
        ray_cluster.close_ray_ssh_connections(CLUSTER)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
