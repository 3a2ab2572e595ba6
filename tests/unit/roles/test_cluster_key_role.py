"""The cluster_key role: it uses a key as it is and changes no folder it finds (issue 13's smaller findings)."""

import stat

from ray_provider.runner import published_stats
from testbed import ray_cluster
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
