"""Rotating a running `ray up` cluster's token and its head's vCenter password (docs/security.md, "Keys and rotation").

Both are `ray up` again with a changed input: provider.ray_token_epoch raised,
or RAY_VSPHERE_HEAD_PASSWORD set to the password an administrator just gave
the head's account. Ray restarts on the head; the VMs stay. vcsim refuses the
old password once it is changed (testbed/vcsim/users.go), as vCenter does.

A worker type's image changes on a running cluster the same way (docs/day-two.md,
"Rolling image upgrade"): `ray up` again with its node_config's ovf changed. The
head stays; the autoscaler (v2 here, Ray 2.60's default, through
ray_provider.outdated_workers) replaces the workers; image_prune.yml keeps the
template a live node uses and removes the old one once no VM does. Workers of
an image other than the head's need head_vcenter_account: operator (the head's
own account clones only the head's image).
"""

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleError

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token
from ray_provider.config import decrypt_secret, encrypt_secret
from ray_provider.runner import published_stats
from testbed import ray_cluster, simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import make_key_pair, ssh, vcsim_with_guests
from test_ray_up_end_to_end import cluster_nodes, of_kind, password_on_head, wait_for

pytestmark = pytest.mark.slow

CLUSTER = "rotate-up"
NEW_HEAD_PASSWORD = "R0tated-head-passw0rd"
CANARY = "/tmp/rotation-canary"


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites):
    with vcsim_with_guests(enforce_permissions=True, log_failed_logins=True) as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


def head_provider_section(head_ip, key):
    # The autoscaler's config is its user's alone (ray_provider.head_start).
    return yaml.safe_load(ssh(head_ip, key, "sudo cat ~ray-autoscaler/ray_bootstrap_config.yaml").stdout)["provider"]


def head_disk(guests, head_ip):
    """Everything the head wrote to its disk, from the machine: its overlay layers (/home with the autoscaler's
    config, its runs' ansible-runner folders and the monitor's log; /etc, /var/log), its own /tmp and root's home."""
    (guest,) = [guest for guest in guests.guests().values() if guest.address == head_ip]
    # The disk outlives a power cycle, apart from the boot's own files (testbed/guests/guest.py): search both.
    return guest.disk, guest.state_dir


def files_holding(folders, text):
    """The files below folders holding text, as bytes (grep; sockets and FIFOs skipped, links not followed)."""
    found = subprocess.run(["grep", "-rlF", "-D", "skip", "-e", text, *map(str, folders)], capture_output=True,
                           text=True)
    assert found.returncode in (0, 1), found.stderr[-2000:]
    return sorted(set(found.stdout.splitlines()))


# A Vault blob as a file holds it: its header, then lines of hex, split by newlines literal (YAML's `!vault |`,
# a quoted YAML string's blank lines) or escaped (JSON).
VAULT_BLOB = re.compile(r"(\$ANSIBLE_VAULT;[0-9.]+;AES256(?:;[\w-]+)?)((?:(?:\\n|\n|[ \t])+[0-9a-f]+(?!\w))+)")


def vault_secrets_on(folders, key):
    """{file: what each Vault blob in it decrypts to with the cluster's key (the head's vault password)}, for
    every file below folders holding one; a blob the key does not open (a run's own, sealed with a password
    typed at its prompt and kept nowhere) is None."""
    opened = {}
    for path in files_holding(folders, "$ANSIBLE_VAULT;"):
        for header, lines in VAULT_BLOB.findall(Path(path).read_text(errors="replace")):
            try:
                secret = decrypt_secret(header + "\n" + re.sub(r"\\n|\s", "", lines), key)
            except AnsibleError:
                secret = None
            opened.setdefault(path, []).append(secret)
    return opened


def command_lines_holding(head_ip, key, text):
    """The head's processes whose command line holds text; the grep's own does not: its pattern has text's
    first character in brackets, which matches that character and is not text itself."""
    assert re.fullmatch(r"[\w=-]+", text), "letters grep's basic regex takes as themselves"
    found = ssh(head_ip, key, f"sudo grep -l -e '[{text[0]}]{text[1:]}' /proc/[0-9]*/cmdline")
    # (a process that ended between the glob and the read is an error 2 of grep's too)
    assert found.returncode in (0, 1, 2) and "Permission denied" not in found.stderr, found.stderr
    return found.stdout.split()


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
        assert len(of_kind(cluster_nodes(sim, CLUSTER, key), "worker")) == 1, "the head's autoscaler made the min worker"
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
        assert len({node["uuid"] for node in workers} - kept) == 1, "a worker cloned after the rotation"
        assert kept <= {node["uuid"] for node in cluster_nodes(sim, CLUSTER, key)}, "no node replaced"
        assert sim.failed_logins().count(sim.autoscaler_username) == refused_before, (
            "the head tried the old password after `ray up` gave it the new one")
        # From outside the head: no password in clear on its disk, old, new or the operator's (it never goes
        # there); every Vault blob the cluster's key opens holds the new one; no command line holds the old one.
        # A canary in the head's /tmp holds the old password in clear and in a Vault blob: each search finds it.
        disk = head_disk(guests, head_ip)
        canary = ssh(head_ip, key, f"printf '%s\\n%s\\n' {old_password} '{encrypt_secret(old_password, key)}' > {CANARY}")
        assert canary.returncode == 0, canary.stderr
        holding_the_old = files_holding(disk, old_password)
        assert [path for path in holding_the_old if not path.endswith(CANARY)] == [], "the old password in clear"
        assert [path for path in holding_the_old if path.endswith(CANARY)] != [], "the search missed the canary"
        assert files_holding(disk, NEW_HEAD_PASSWORD) == files_holding(disk, sim.endpoint.password) == []
        opened = vault_secrets_on(disk, key)
        secrets = [secret for found in opened.values() for secret in found]
        assert NEW_HEAD_PASSWORD in secrets and secrets.count(old_password) == 1, opened  # the canary's
        assert ssh(head_ip, key, f"rm {CANARY}").returncode == 0
        assert command_lines_holding(head_ip, key, old_password) == []
        assert command_lines_holding(head_ip, key, "--autoscaling-config=") != [], "the monitor's is read"
        # The search reads where the password went before: the autoscaler's config, its runs, the monitor's log.
        assert any(path.endswith("/home/ray-autoscaler/ray_bootstrap_config.yaml")
                   for path in files_holding(disk, "vcenter_password_vault"))
        assert any("/home/ray-autoscaler/.ray-vsphere/" in path and "/artifacts/" in path
                   for path in files_holding(disk, "ray_vsphere.cluster.provider."))
        assert any(path.endswith("/home/ray-autoscaler/logs/monitor.log")
                   for path in files_holding(disk, "ray_vsphere: create_nodes: successful in"))
        # Ray v2's monitor logs its config when it starts: the blob of the password is left out (monitor_logging).
        assert any(path.endswith("/home/ray-autoscaler/logs/monitor.log")
                   for path in files_holding(disk, "<vault blob not logged>"))
    finally:
        down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config_path))
        ray_cluster.close_ray_ssh_connections(CLUSTER)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_nodes(sim, CLUSTER, key) == []


def image_prune(sim, tmp_path, name, key):
    run = ray_cluster.run("image_prune", tmp_path / name, sim.endpoint.environment(),
                          {"ray_cluster_name": UPGRADE, "ray_ssh_private_key": str(key),
                           "image_prune_datacenter": simulator.DATACENTER, "image_prune_vm_folder": simulator.VM_FOLDER})
    assert run.status == "successful", run.stdout.read()[-5000:]
    stats = published_stats(run)
    return stats["image_prune_removed"], {entry["name"]: entry["reason"] for entry in stats["image_prune_kept"]}


def template_of(images, image_path):
    digest = hashlib.sha256(image_path.read_bytes()).hexdigest()
    return [name for name, sha256 in images.items() if sha256 == digest]


# Two images of their own for the workers, neither the head's: once the workers leave the first, no VM uses it.
UPGRADE = "upgrade-up"


@pytest.mark.timeout(1500)
def test_a_worker_image_change_replaces_the_workers_keeps_the_head_and_the_old_template_is_pruned(testbed, tmp_path):
    sim, _ = testbed
    key = make_key_pair(tmp_path / "ray-key")
    config_path = tmp_path / "cluster.yaml"
    first_image, second_image = build_test_ova(payload_mib=1), build_test_ova(payload_mib=2)
    changes = {"provider.head_vcenter_account": "operator", "available_node_types.worker.max_workers": 1}
    operator_account = {"RAY_VSPHERE_HEAD_USER": "", "RAY_VSPHERE_HEAD_PASSWORD": ""}
    state_dir = tmp_path / "state"

    def ray_up(image):
        ray_cluster.provider_cluster_yaml(config_path, UPGRADE, key, **changes,
                                          **{"available_node_types.worker.node_config.ovf": str(image)})
        up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config_path),
                                 extra_env=operator_account)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        return up

    try:
        ray_up(first_image)
        [head] = of_kind(cluster_nodes(sim, UPGRADE, key), "head")
        ray_cluster.wait_for_alive_nodes(head["ip"], key, 2, timeout=300)  # the min worker joined
        cloned_from, images = vsphere.images_at(sim.endpoint)
        [old_template] = template_of(images, first_image)
        old_workers = {node["name"] for node in of_kind(cluster_nodes(sim, UPGRADE, key), "worker")}
        assert old_workers and {cloned_from[name] for name in old_workers} == {old_template}
        removed, kept = image_prune(sim, tmp_path, "prune-in-use", key)
        assert removed == [], "every template of the cluster's key is in use by a live node"
        assert kept[old_template] == f"in use by 1 VM(s): {', '.join(old_workers)}"
        assert kept[cloned_from[head["name"]]] == f"in use by 1 VM(s): {head['name']}"
        assert old_template in vsphere.images_at(sim.endpoint)[1]

        upgraded = ray_up(second_image)

        def replaced():
            nodes = cluster_nodes(sim, UPGRADE, key)
            workers = {node["name"] for node in of_kind(nodes, "worker")}
            return nodes if workers and not workers & old_workers else None
        try:
            nodes = wait_for("the autoscaler to replace every worker", replaced, timeout=450)
        except AssertionError as timed_out:
            monitor = ssh(head["ip"], key, "sudo sh -c 'tail -n 60 ~ray-autoscaler/logs/monitor.*'").stdout
            raise AssertionError(f"{timed_out}; workers now {cluster_nodes(sim, UPGRADE, key)}; ray up said: "
                                 f"{upgraded.stdout[-3000:]}{upgraded.stderr[-2000:]}; monitor: {monitor[-6000:]}")
        assert [node["uuid"] for node in of_kind(nodes, "head")] == [head["uuid"]], "the head stays"
        ray_cluster.wait_for_alive_nodes(head["ip"], key, 2, timeout=300)
        cloned_from, images = vsphere.images_at(sim.endpoint)
        [new_template] = template_of(images, second_image)
        workers = [node["name"] for node in of_kind(cluster_nodes(sim, UPGRADE, key), "worker")]
        assert workers and {cloned_from[name] for name in workers} == {new_template}, "every worker runs the new image"
        assert not old_workers & set(cloned_from), "no VM of the old workers is left, stopped or not"

        removed, kept = image_prune(sim, tmp_path, "prune-old", key)
        assert removed == [old_template]
        assert kept[new_template] == f"in use by 1 VM(s): {', '.join(workers)}"
        assert kept[cloned_from[head["name"]]] == f"in use by 1 VM(s): {head['name']}"
        cloned_from, images = vsphere.images_at(sim.endpoint)
        assert old_template not in images and old_template not in cloned_from.values()
        assert cloned_from[head["name"]] in images and new_template in images, "the templates in use stay"
    finally:
        down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config_path), extra_env=operator_account)
        ray_cluster.close_ray_ssh_connections(UPGRADE)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_nodes(sim, UPGRADE, key) == []
