"""Prometheus and Grafana for a playbook-made Ray cluster (playbooks/ray_metrics.yml) on the testbed.

Every target the written file_sd file names is scraped from the host, as
Prometheus would (testbed/prometheus.py). The nodes expected come from the
guests the testbed booted, not from what the playbooks recorded.
"""

import json

import pytest
import yaml

from testbed import PROJECT_ROOT, ray_cluster
from testbed.guests import ssh
from testbed.prometheus import METRICS_PORT, assert_every_target_serves_its_nodes_metrics, target, targets_by_type

CLUSTER = "metrics"


def expected_targets(guest_simulator):
    """{node_type: sorted targets} of the guests the testbed runs, by their hostnames."""
    expected = {}
    for guest in guest_simulator.guests().values():
        expected.setdefault("head" if guest.hostname.endswith("-head") else "worker", []).append(target(guest.address))
    return {node_type: sorted(targets) for node_type, targets in expected.items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_targets_list_every_node_serving_ray_metrics_and_follow_a_scale_out(vcsim, guest_simulator, tmp_path):
    key = tmp_path / "keys" / "ray-metrics"
    targets_file = tmp_path / "prometheus" / "ray-metrics.json"
    targets_file.parent.mkdir()
    dashboards = tmp_path / "grafana" / "ray"
    environment = vcsim.endpoint.environment()
    cluster = dict(ray_cluster.cluster_vars(CLUSTER, key, worker_count=1),
                   ray_metrics_targets_file=str(targets_file), ray_metrics_dashboards_dir=str(dashboards))

    up = ray_cluster.run("ray_up", tmp_path / "up", environment, cluster)
    assert up.status == "successful", up.stdout.read()[-5000:]
    targets = targets_by_type(targets_file, CLUSTER)
    assert targets == expected_targets(guest_simulator)
    assert sorted(targets) == ["head", "worker"] and len(targets["worker"]) == 1
    assert targets_file.stat().st_mode & 0o777 == 0o644
    assert_every_target_serves_its_nodes_metrics(targets)

    # The dashboards Ray generated on the head, every one, as Grafana's file provisioning reads them.
    head_ip = targets["head"][0].rsplit(":", 1)[0]
    listed = ssh(head_ip, key, "sudo ls /tmp/ray/session_latest/metrics/grafana/dashboards").stdout.split()
    assert "default_grafana_dashboard.json" in listed
    assert sorted(path.name for path in dashboards.iterdir()) == sorted(listed)
    assert json.loads((dashboards / "default_grafana_dashboard.json").read_text())["panels"]

    # Scale-out through ray_workers.yml: the file follows, and the new worker serves its metrics.
    written = targets_file.stat().st_ino
    scaled = ray_cluster.run("ray_workers", tmp_path / "scaled", environment, dict(cluster, ray_worker_count=2))
    assert scaled.status == "successful", scaled.stdout.read()[-5000:]
    scaled_targets = targets_by_type(targets_file, CLUSTER)
    assert scaled_targets == expected_targets(guest_simulator)
    assert len(scaled_targets["worker"]) == 2 and scaled_targets["head"] == targets["head"]
    assert targets_file.stat().st_ino != written, "replaced by a rename, not rewritten in place"
    new_worker = set(scaled_targets["worker"]) - set(targets["worker"])
    assert_every_target_serves_its_nodes_metrics({"worker": sorted(new_worker)})

    # Run alone, as a cron job does for a `ray up` cluster: the cluster's name, key and folder, a YAML file; the
    # workers' addresses by an IP policy of their own (listed apart, merged back without loss or duplicate).
    yaml_file = targets_file.with_suffix(".yml")
    alone = ray_cluster.run("ray_metrics", tmp_path / "alone", environment, {
        "ray_cluster_name": CLUSTER, "ray_ssh_private_key": str(key), "ray_datacenter": cluster["ray_datacenter"],
        "ray_vm_folder": cluster["ray_vm_folder"], "ray_metrics_targets_file": str(yaml_file),
        "ray_metrics_ip_policies": {"worker": {"preferred_cidr": guest_simulator.network.cidr}}})
    assert alone.status == "successful", alone.stdout.read()[-5000:]
    assert targets_by_type(yaml_file, CLUSTER) == scaled_targets

    down = ray_cluster.run("ray_down", tmp_path / "down", environment,
                           {"ray_cluster_name": CLUSTER, "ray_ssh_private_key": str(key)})
    assert down.status == "successful", down.stdout.read()[-5000:]


def test_a_targets_file_prometheus_cannot_read_is_refused_before_vcenter_is_asked(tmp_path):
    refused = ray_cluster.run("ray_metrics", tmp_path / "refused", {"VMWARE_HOST": "vcenter.invalid"}, {
        "ray_cluster_name": CLUSTER, "ray_metrics_targets_file": str(tmp_path / "targets.txt")})
    assert refused.status == "failed"
    output = refused.stdout.read()
    assert "ray_metrics_targets_file must name the Prometheus file_sd file to write, ending in .json" in output
    assert "List the cluster's nodes" not in output, "refused before any vCenter call"
    assert not (tmp_path / "targets.txt").exists()


def test_every_example_cluster_exports_metrics_on_the_roles_port():
    """examples/*.yaml repeat the port ray_node starts Ray with: ray_metrics.yml's targets must fit both paths."""
    for example in sorted((PROJECT_ROOT / "examples").glob("*.yaml")):
        config = yaml.safe_load(example.read_text())
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            starts = [command for command in config[key] if "ray start" in command]
            assert starts, f"{example.name} {key} starts no Ray"
            for command in starts:
                assert f"--metrics-export-port={METRICS_PORT}" in command.split(), f"{example.name} {key}: {command}"
