"""Rotating a running `ray up` cluster's token and its head's vCenter password (docs/security.md, "Keys and rotation").

Both are `ray up` again with a changed input: provider.ray_token_epoch raised,
or RAY_VSPHERE_HEAD_PASSWORD set to the password an administrator just gave
the head's account. Ray restarts on the head; the VMs stay. vcsim refuses the
old password once it is changed (testbed/vcsim/users.go), as vCenter does.
"""

import pytest
import yaml

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token
from ray_provider.config import decrypt_secret
from testbed import ray_cluster
from testbed.guests import make_key_pair, ssh, vcsim_with_guests
from test_ray_up_end_to_end import cluster_nodes, of_kind, password_on_head, wait_for

pytestmark = pytest.mark.slow

CLUSTER = "rotate-up"
NEW_HEAD_PASSWORD = "R0tated-head-passw0rd"


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites):
    with vcsim_with_guests(enforce_permissions=True, log_failed_logins=True) as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


def head_provider_section(head_ip, key):
    # The autoscaler's config is its user's alone (ray_provider.head_start).
    return yaml.safe_load(ssh(head_ip, key, "sudo cat ~ray-autoscaler/ray_bootstrap_config.yaml").stdout)["provider"]


@pytest.mark.timeout(2400)
def test_token_and_head_password_rotate_on_a_running_cluster_and_every_node_stays(testbed, tmp_path):
    sim, guests = testbed
    key = make_key_pair(tmp_path / "ray-key")
    config_path = tmp_path / "cluster.yaml"
    changes = {"idle_timeout_minutes": 0.25, "available_node_types.worker.max_workers": 2}
    ray_cluster.provider_cluster_yaml(config_path, CLUSTER, key, **changes)
    state_dir = tmp_path / "state"
    try:
        up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config_path))
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        head = of_kind(cluster_nodes(sim, CLUSTER, key), "head")[0]
        head_ip = head["ip"]
        ray_cluster.wait_for_alive_nodes(head_ip, key, 2, timeout=300)  # the min worker joined
        kept = {node["uuid"] for node in cluster_nodes(sim, CLUSTER, key)}
        addresses = sorted(guest.address for guest in guests.guests().values())
        assert len(kept) == len(addresses) == 2
        old_token = ray_auth_token(key.read_text(), CLUSTER)
        assert ray_cluster.submit_job(head_ip, key, old_token)["http_status"] == 200

        # Token rotation: the next epoch in the cluster YAML, and `ray up` again.
        ray_cluster.provider_cluster_yaml(config_path, CLUSTER, key, **changes, **{"provider.ray_token_epoch": 1})
        rotated = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config_path))
        assert rotated.returncode == 0, rotated.stdout[-4000:] + rotated.stderr[-4000:]
        new_token = ray_auth_token(key.read_text(), CLUSTER, 1)
        # The head's autoscaler updates the worker in place (its file mounts changed): it gets the new token, rejoins.
        wait_for("every node to hold the new token", lambda: all(
            ssh(address, key, "cat .ray/auth_token").stdout == new_token for address in addresses), timeout=300)
        assert sorted(ray_cluster.wait_for_alive_nodes(head_ip, key, 2, timeout=300)) == addresses
        assert {node["uuid"] for node in cluster_nodes(sim, CLUSTER, key)} == kept, "the same VMs, none replaced"
        assert ray_cluster.submit_job(head_ip, key, old_token) == {"http_status": 403, "job_state": None}
        assert ray_cluster.submit_job(head_ip, key, new_token) == {"http_status": 200, "job_state": "SUCCEEDED"}

        # Head password rotation: the administrator changes it in vCenter, the operator runs `ray up` with it.
        old_password = sim.autoscaler_password
        assert decrypt_secret(head_provider_section(head_ip, key)["vcenter_password_vault"], key) == old_password
        sim.change_autoscaler_password(NEW_HEAD_PASSWORD)
        again = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config_path))
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
        # Until `ray up` restarted it, the old autoscaler may have tried the old password: from now on it must not.
        refused_before = sim.failed_logins().count(sim.autoscaler_username)
        assert decrypt_secret(head_provider_section(head_ip, key)["vcenter_password_vault"], key) == NEW_HEAD_PASSWORD
        found, canary = password_on_head(head_ip, key, old_password)
        assert found == sorted([canary.file, "environ of the canary"]), f"the old password is still on the head: {found}"
        ray_cluster.wait_for_alive_nodes(head_ip, key, 2, timeout=300)
        # The restarted autoscaler logs in with the new password: it adds a worker for a job that needs two.
        hosts = ray_cluster.run_scale_up_job(head_ip, key, workers=2, timeout=300)
        workers = of_kind(cluster_nodes(sim, CLUSTER, key), "worker")
        assert len(workers) == 2 and len(hosts) == 2
        assert kept <= {node["uuid"] for node in cluster_nodes(sim, CLUSTER, key)}
        assert sim.failed_logins().count(sim.autoscaler_username) == refused_before, (
            "the head tried the old password after `ray up` gave it the new one")
    finally:
        down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config_path))
        ray_cluster.close_ray_ssh_connections(CLUSTER)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_nodes(sim, CLUSTER, key) == []
