"""What Prometheus does with a Ray cluster's targets file, done from the host: read the file, scrape each target.

The metrics tests check Ray's exporters through these, without a Prometheus:
a target counts when an HTTP GET of /metrics, without any credential, returns
NODE_METRIC, a gauge the reporter agent of every Ray node records
(ray/dashboard/modules/reporter/reporter_agent.py, labelled ip="<node IP>").
"""

import time
import urllib.request

import yaml

from testbed import PROJECT_ROOT

NODE_METRIC = "ray_node_cpu_utilization"
# The one setting of the nodes' metrics port (roles/ray_node), which ray_metrics.yml writes targets for.
METRICS_PORT = yaml.safe_load((PROJECT_ROOT / "roles" / "ray_node" / "defaults" / "main.yml").read_text())[
    "ray_node_metrics_export_port"]


def scrape(target, timeout=90):
    """The metrics text at http://target/metrics once it holds NODE_METRIC (Ray's agent reports every few s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as response:
                text = response.read().decode()
            if f"\n{NODE_METRIC}{{" in text:
                return text
        except OSError as error:
            text = repr(error)
        if time.monotonic() > deadline:
            raise AssertionError(f"{target} serves no {NODE_METRIC} after {timeout} s: {text[-2000:]}")
        time.sleep(2)


def node_metric_ips(text):
    """The ip labels of NODE_METRIC's samples in a scrape."""
    samples = [line for line in text.splitlines() if line.startswith(NODE_METRIC + "{")]
    labels = [label for line in samples for label in line.split("{", 1)[1].split("}", 1)[0].split(",")]
    return {label.split('="', 1)[1].rstrip('"') for label in labels if label.startswith("ip=")}


def assert_every_target_serves_its_nodes_metrics(targets):
    """Each target of {node type: [ip:port]} serves NODE_METRIC of its own node, to a caller without a token."""
    for target in (target for group in targets.values() for target in group):
        assert node_metric_ips(scrape(target)) == {target.rsplit(":", 1)[0]}, f"{target} exports another node's metrics"


def targets_by_type(path, cluster_name):
    """{node_type: sorted targets} of a file_sd file (JSON or YAML); every group labelled with the cluster."""
    groups = yaml.safe_load(path.read_text())
    assert all(group["labels"]["cluster"] == cluster_name for group in groups), groups
    assert len({group["labels"]["node_type"] for group in groups}) == len(groups), "one group per node type"
    return {group["labels"]["node_type"]: sorted(group["targets"]) for group in groups}


def target(address):
    return f"{address}:{METRICS_PORT}"
