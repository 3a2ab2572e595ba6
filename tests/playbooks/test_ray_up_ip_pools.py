"""ray_up.yml refuses static IP pools it cannot use before it makes anything: no key, no template, no VM.

The head's deploy starts in the background before the workers' (ray_up.yml),
so a worker pool that node_deploy would refuse would otherwise fail only
after the head was made. vcsim's inventory is the oracle: what it holds after
the run, not what the playbook says.
"""

import pytest
from pyVmomi import vim

from testbed import ray_cluster, vsphere

POOL = {"cidr": "198.18.250.0/24", "range": "198.18.250.200-198.18.250.220", "gateway": "198.18.250.1"}


def vms_at_vcsim(service_instance):
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"])
    return sorted(props["name"] for props in found.values())


@pytest.mark.parametrize("pools, expected", [
    ({"ray_ip_pool": POOL, "ray_worker_ip_pool": dict(POOL, range="198.18.250.220-198.18.250.240")},
     "ray_worker_ip_pool: overlaps ray_head_ip_pool on the same network (both hold 198.18.250.220)"),
    ({"ray_head_ip_pool": POOL, "ray_worker_ip_pool": dict(POOL, gateway="198.18.251.1")},
     "ray_worker_ip_pool.gateway: gateway 198.18.251.1 is outside cidr 198.18.250.0/24"),
], ids=["overlap", "worker gateway outside"])
def test_pools_ray_up_cannot_use_stop_it_before_the_key_a_template_or_a_vm_exists(
        vcsim, service_instance, tmp_path, pools, expected):
    before = vms_at_vcsim(service_instance)
    key = tmp_path / "keys" / "ray-pools"
    cluster = dict(ray_cluster.cluster_vars("pools", key, worker_count=2), **pools)
    run = ray_cluster.run("ray_up", tmp_path / "up", vcsim.endpoint.environment(), cluster, timeout=300)
    output = run.stdout.read()
    assert run.status == "failed", output[-5000:]
    assert expected in output, output[-5000:]
    failed = [event["event_data"]["task"] for event in run.events if event.get("event") == "runner_on_failed"]
    assert failed == ["Check the head's and the workers' IP pools"]
    assert vms_at_vcsim(service_instance) == before, "no VM and no template made"
    assert not key.exists(), "not even the cluster's key"
