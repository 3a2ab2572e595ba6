"""The playbooks and `ray up` default to one cluster key file, since the key is the cluster's identity.

The playbooks' default is read by resolving playbooks/vars/ray_defaults.yml
in a play (with a HOME of the test's), the provider's from
ray_provider/config.py, the constant bootstrap_config formats.
"""

from pathlib import Path

import pytest

from ray_provider import config, head_config
from test_playbook_settings import resolved

CLUSTER = "analytics"


def playbooks_key(tmp_path, extra_vars=None):
    return resolved(tmp_path, {"ray_cluster_name": CLUSTER, **(extra_vars or {})},
                    shown=["ray_cfg_ssh_private_key"])["ray_cfg_ssh_private_key"]


def providers_key(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    return str(Path(config.DEFAULT_CLUSTER_KEY.format(cluster_name=CLUSTER)).expanduser())


def test_the_playbooks_and_the_provider_default_to_the_same_key_file(tmp_path, monkeypatch):
    assert playbooks_key(tmp_path) == providers_key(tmp_path, monkeypatch) == f"{tmp_path}/.ssh/ray-vsphere-{CLUSTER}"
    # bootstrap_config formats that constant, not a default of its own.
    assert head_config.DEFAULT_CLUSTER_KEY is config.DEFAULT_CLUSTER_KEY


def test_a_key_at_the_former_playbook_default_is_still_the_clusters_until_one_is_at_the_default(tmp_path):
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / f"ray-{CLUSTER}").write_text("made by ray_up.yml before 0.2.0")
    assert playbooks_key(tmp_path) == str(ssh / f"ray-{CLUSTER}")
    (ssh / f"ray-vsphere-{CLUSTER}").write_text("made by ray up")
    assert playbooks_key(tmp_path) == str(ssh / f"ray-vsphere-{CLUSTER}")


@pytest.mark.parametrize("given", ["/keys/cluster", "~/keys/cluster"])
def test_a_given_key_wins_over_both_defaults(tmp_path, given):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / f"ray-{CLUSTER}").write_text("former")
    assert playbooks_key(tmp_path, {"ray_ssh_private_key": given}) == given
