"""Rotating a running cluster's token (playbooks/ray_rotate_token.yml) on the testbed: the same VMs, a new token.

The token is derived from the cluster's key, its name and the epoch the head
records; rotation moves the record to the next epoch and restarts Ray on every
node. What a user removed from the cluster kept (the old token) is refused
afterwards, and a worker added later gets the new one from the record.
"""

import pytest

from ray_provider.runner import published_stats
from testbed import ray_cluster
from testbed.guests import ssh

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes  # noqa: E402 - after testbed
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey, ray_auth_token

pytestmark = pytest.mark.slow

CLUSTER = "rotate"


def guests_by_vm(guest_simulator):
    """{VM moid: (hostname, address)} of the running guests: what the testbed booted, not what we recorded."""
    return {moid: (guest.hostname, guest.address) for moid, guest in guest_simulator.guests().items()}


def nodes_at_vcenter(vcsim, key):
    nodes, _unverified = _nodes.list_nodes(vcsim.endpoint.connect(), ClusterKey(key.read_text(), CLUSTER))
    return nodes


@pytest.mark.timeout(1500)
def test_rotation_keeps_every_node_refuses_the_old_token_and_later_workers_get_the_new_one(
        vcsim, guest_simulator, tmp_path):
    key = tmp_path / "keys" / "ray-rotate"
    cluster = ray_cluster.cluster_vars(CLUSTER, key, worker_count=1)
    environment = vcsim.endpoint.environment()
    up = ray_cluster.run("ray_up", tmp_path / "up", environment, cluster)
    assert up.status == "successful", up.stdout.read()[-5000:]
    head_ip = published_stats(up)["ray_head_ip"]
    old_token = ray_auth_token(key.read_text(), CLUSTER, 0)
    assert ray_cluster.submit_job(head_ip, key, old_token) == {"http_status": 200, "job_state": "SUCCEEDED"}
    guests_before = guests_by_vm(guest_simulator)
    vms_before = {(node["name"], node["uuid"], node["moid"]) for node in nodes_at_vcenter(vcsim, key)}
    assert len(guests_before) == len(vms_before) == 2

    # The command the docs give: the cluster's name, key and folder, everything else from the head's record.
    where = {name: cluster[name] for name in ("ray_datacenter", "ray_vm_folder")}
    rotated = ray_cluster.run("ray_rotate_token", tmp_path / "rotate", environment,
                              {"ray_cluster_name": CLUSTER, "ray_ssh_private_key": str(key), **where})
    assert rotated.status == "successful", rotated.stdout.read()[-5000:]

    new_token = ray_auth_token(key.read_text(), CLUSTER, 1)
    assert new_token != old_token
    assert guests_by_vm(guest_simulator) == guests_before, "the same VMs, booted once, at the same addresses"
    nodes = nodes_at_vcenter(vcsim, key)
    assert {(node["name"], node["uuid"], node["moid"]) for node in nodes} == vms_before
    head_record = next(node for node in nodes if node["name"] == f"{CLUSTER}-head")
    assert head_record["deploy_settings"]["token_epoch"] == 1
    addresses = sorted(address for _hostname, address in guests_before.values())
    for address in addresses:
        held = ssh(address, key, "cat .ray/auth_token").stdout
        assert held == new_token, f"{address} does not hold the new token"
    assert sorted(ray_cluster.wait_for_alive_nodes(head_ip, key, 2)) == addresses, "every node rejoined"
    assert ray_cluster.submit_job(head_ip, key, old_token) == {"http_status": 403, "job_state": None}, (
        "the old token still opens the job API")
    assert ray_cluster.submit_job(head_ip, key, new_token) == {"http_status": 200, "job_state": "SUCCEEDED"}
    assert ray_cluster.run_spread_job(head_ip, key)["hosts"] == [f"{CLUSTER}-head", f"{CLUSTER}-worker-0"]

    # A worker added afterwards, by the AWX survey's answers, gets the recorded epoch's token and joins.
    two = ray_cluster.run("ray_workers", tmp_path / "two", environment,
                          {"ray_cluster_name": CLUSTER, "ray_ssh_private_key": str(key), "ray_worker_count": 2,
                           **where})
    assert two.status == "successful", two.stdout.read()[-5000:]
    added = [address for moid, (_hostname, address) in guests_by_vm(guest_simulator).items()
             if moid not in guests_before]
    assert len(added) == 1
    assert ssh(added[0], key, "cat .ray/auth_token").stdout == new_token
    assert len(ray_cluster.wait_for_alive_nodes(head_ip, key, 3)) == 3

    down = ray_cluster.run("ray_down", tmp_path / "down", environment,
                           {"ray_cluster_name": CLUSTER, "ray_ssh_private_key": str(key)})
    assert down.status == "successful", down.stdout.read()[-5000:]
    assert nodes_at_vcenter(vcsim, key) == []
