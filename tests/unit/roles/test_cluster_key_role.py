"""The cluster_key role: it uses a key as it is and changes no folder it finds (issue 13's smaller findings)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from ray_provider.runner import published_stats, run_playbook
from testbed import PROJECT_ROOT, ray_cluster
from testbed.guests import make_key_pair


def run_role(key_path, run_dir):
    tasks = [{"name": "Key", "ansible.builtin.include_role": {"name": "ray_vsphere.cluster.cluster_key"},
              "vars": {"cluster_key_path": str(key_path)}},
             {"name": "Publish", "ansible.builtin.set_stats": {"per_host": False,
                                                               "data": {"public": "{{ cluster_key_public }}"}}}]
    runner = ray_cluster.run_tasks(tasks, run_dir, {})
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    return published_stats(runner)["public"]


def test_a_key_in_a_shared_folder_is_used_as_it_is_and_the_folder_keeps_its_sticky_bit(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: chmod 0700 here would drop the sticky bit and lock others out
    key = make_key_pair(shared / "cluster-key")
    before = sorted(path.name for path in shared.iterdir())

    public = run_role(key, tmp_path / "run")

    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert sorted(path.name for path in shared.iterdir()) == before, "nothing is written beside a given key"
    assert public.split()[:2] == (shared / "cluster-key.pub").read_text().split()[:2]


def test_a_missing_key_is_generated_in_a_new_private_folder_and_an_existing_folder_is_left_alone(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    existing.chmod(0o755)
    run_role(existing / "key", tmp_path / "run-1")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755
    assert stat.S_IMODE((existing / "key").stat().st_mode) == 0o600

    new_folder = tmp_path / "new" / "keys"
    run_role(new_folder / "key", tmp_path / "run-2")
    assert stat.S_IMODE(new_folder.stat().st_mode) == 0o700


VENV_BIN = Path(sys.executable).parent


def only_this_collection(tmp_path):
    """An ANSIBLE_COLLECTIONS_PATH holding ray_vsphere.cluster alone, and no site-packages scan: what ansible-core
    resolves there is what `ray up` needs from a machine without the `ansible` package (.venv has it)."""
    collections = tmp_path / "only-ray-vsphere" / "ansible_collections" / "ray_vsphere"
    collections.mkdir(parents=True)
    (collections / "cluster").symlink_to(PROJECT_ROOT)
    environment = {"ANSIBLE_COLLECTIONS_PATH": str(collections.parent.parent), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False"}
    # The restriction is real: community.crypto, which .venv's `ansible` package carries, is not found there.
    found = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "module", "community.crypto.openssh_keypair"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, **environment})
    assert "community.crypto.openssh_keypair was not found" in found.stderr, found.stdout[:500] + found.stderr
    return environment


def changed_tasks(runner):
    return sorted(event["event_data"]["task"] for event in runner.events
                  if event["event"] == "runner_on_ok" and event["event_data"]["res"].get("changed"))


def every_artifact_text(run_dir):
    return "".join(path.read_text(errors="replace") for path in Path(run_dir).rglob("*") if path.is_file())


def test_ray_ups_check_config_makes_the_key_with_ansible_core_alone_and_never_logs_it(tmp_path):
    # check_config.yml is the playbook bootstrap_config runs on the operator's machine (it loads this role);
    # with no node types it checks nothing against vCenter, so only the key's tasks run.
    key = tmp_path / "keys" / "ray-vsphere-lean"
    extravars = {"ray_provider_cluster_name": "lean", "ray_provider_private_key": str(key),
                 "ray_provider_node_types": [], "ray_provider_vcenter_password": ""}
    runner = run_playbook("ray_vsphere.cluster.provider.check_config", tmp_path / "run", extravars=extravars,
                          envvars=only_this_collection(tmp_path))
    assert runner.status == "successful", runner.stdout.read()[-3000:]

    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(key.with_suffix(".pub").stat().st_mode) == 0o644
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    public = key.with_suffix(".pub").read_text().split()
    assert public[0] == "ssh-ed25519" and public[2:] == ["ray-vsphere", "lean"]
    private = key.read_text()
    # An unencrypted private key of that public key: ssh-keygen derives it without a passphrase.
    derived = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", key], capture_output=True, text=True)
    assert derived.returncode == 0 and derived.stdout.split()[:2] == public[:2], derived.stderr
    armour, *lines, _ = private.splitlines()
    body = "".join(lines)
    logged = every_artifact_text(tmp_path / "run")
    assert public[1] in logged, "the artifacts are read (the public key is in the derive task's output)"
    private_key_marker = " ".join(armour.strip("-").split()[-2:])  # the words every PEM/OpenSSH armour has
    assert body[:40] not in logged and private_key_marker not in logged, private_key_marker


def test_check_mode_makes_nothing_and_a_second_run_changes_nothing(tmp_path):
    key = tmp_path / "keys" / "key"
    tasks = [{"name": "Key", "ansible.builtin.include_role": {"name": "ray_vsphere.cluster.cluster_key"},
              "vars": {"cluster_key_path": str(key)}},
             {"name": "Publish", "ansible.builtin.set_stats": {"per_host": False,
                                                               "data": {"public": "{{ cluster_key_public }}"}}}]
    ansible_core_alone = only_this_collection(tmp_path)
    checked = ray_cluster.run_tasks(tasks, tmp_path / "check", ansible_core_alone, cmdline="--check")
    assert checked.status == "successful", checked.stdout.read()[-3000:]
    assert not key.parent.exists(), "check mode wrote the key's folder"
    assert changed_tasks(checked) == ["Generate the key pair", "Make the key's folder, private to its owner"]
    assert published_stats(checked)["public"] == ""

    first = ray_cluster.run_tasks(tasks, tmp_path / "first", ansible_core_alone)
    assert first.status == "successful"
    made = key.read_bytes()
    assert published_stats(first)["public"].split()[:2] == key.with_suffix(".pub").read_text().split()[:2]

    again = ray_cluster.run_tasks(tasks, tmp_path / "again", ansible_core_alone)
    assert again.status == "successful" and changed_tasks(again) == []
    assert key.read_bytes() == made
    assert published_stats(again)["public"] == published_stats(first)["public"]
