"""Every example cluster YAML (examples/ray-cluster.*.yaml) is one `ray up` takes: Ray's schema, then the provider's checks.

The GPU example is also held to the testbed's GPU layout (testbed/gpu_hosts.yml,
read by testbed.gpus): the devices its GPU types ask for are there.
"""

from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import validate_config

from ray_provider import config
from testbed.gpus import gpu_layout
from ray_provider.node_provider import VsphereNodeProvider

PROJECT_ROOT = Path(__file__).parents[3]
EXAMPLES = sorted((PROJECT_ROOT / "examples").glob("ray-cluster.*.yaml"))


def test_the_examples_are_found():
    assert {path.name for path in EXAMPLES} >= {"ray-cluster.testbed.yaml", "ray-cluster.vsphere.yaml",
                                                "ray-cluster.gpu.yaml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_an_example_passes_rays_schema_and_the_providers_checks_after_the_fill(example, tmp_path):
    cluster = yaml.safe_load(example.read_text())
    # As `ray up` does: the provider's fill, then Ray's schema, then bootstrap_config's checks.
    filled = VsphereNodeProvider.fillout_available_node_types_resources(cluster)
    validate_config(filled)
    ovf = filled["provider"]["ovf"]
    if not config.is_url(ovf):  # the testbed's image is built by `testbed up`: any file stands in for it here
        filled["provider"]["ovf"] = str(tmp_path / Path(ovf).name)
        Path(filled["provider"]["ovf"]).write_bytes(b"")
    config.check_cluster_config(filled)


def test_the_gpu_example_asks_for_what_the_testbeds_gpu_hosts_have_and_ray_is_told_of_it():
    cluster = yaml.safe_load((PROJECT_ROOT / "examples" / "ray-cluster.gpu.yaml").read_text())
    layout = gpu_layout()
    types = VsphereNodeProvider.fillout_available_node_types_resources(cluster)["available_node_types"]
    assert cluster["provider"]["cluster"] == layout["cluster"]
    assert types["cpu"]["resources"] == {"CPU": 1}
    assert types["a100"]["resources"] == {"CPU": 1, "GPU": 1, "accelerator_type:A100": 1}
    # A slice has a model of its own: a task asking for an A100 gets a whole one.
    assert types["a100_vgpu"]["resources"] == {"CPU": 1, "GPU": 1, "accelerator_type:A100-20C": 1}
    devices = [device for host in layout["hosts"].values() for device in host]
    (wanted,) = types["a100"]["node_config"]["gpus"]
    matching = [device for device in devices
                if device["mode"] == "passthrough" and device.get("custom_label") == wanted["label"]]
    assert matching and {device["model"] for device in matching} == {wanted["model"]}
    # As many workers as devices: the type fills the hosts up (a further launch finds none free).
    assert types["a100"]["max_workers"] == len(matching)
    profile = types["a100_vgpu"]["node_config"]["vgpu_profile"]
    offering = [(device, offered) for device in devices if device["mode"] == "vgpu"
                for offered in device["vgpu_profiles"] if offered["name"] == profile]
    assert offering and {device["model"] for device, _ in offering} == {"A100"}
    assert types["a100_vgpu"]["max_workers"] == sum(device["memory_gib"] // offered["framebuffer_gib"]
                                                    for device, offered in offering)


def test_the_static_ip_example_is_the_testbeds_first_bridge_its_static_range_and_gateway():
    """What `testbed up` alone makes (its first bridge, 198.18.1.0/24): the example's pool runs there as written."""
    from testbed.guests.net import GuestNetwork

    cluster = yaml.safe_load((PROJECT_ROOT / "examples" / "ray-cluster.static-ip.yaml").read_text())
    pool = cluster["provider"]["ip_pool"]
    network = GuestNetwork()
    network.subnet_octet = 1
    assert pool["cidr"] == network.cidr and pool["gateway"] == network.gateway
    assert pool["range"] == "-".join(network.static_range()), "only addresses the testbed's DHCP never leases"
    # Every node type shares the provider's one pool: none sets its own.
    assert not [name for name, node_type in cluster["available_node_types"].items() if "ip_pool" in node_type["node_config"]]
    # Room for the head and every worker at once.
    first, last = (int(address.rsplit(".", 1)[1]) for address in network.static_range())
    assert last - first + 1 >= 1 + cluster["max_workers"]
