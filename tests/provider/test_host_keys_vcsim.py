"""The provider's SSH runner checks each node's host key against vCenter's record of it, on the testbed.

A node launched by the provider gets a host key of its own; the runner Ray's
updaters and `ray exec`/`ray attach` use (get_command_runner) connects only if
the node answers with it. The oracles are vcsim's own records of the VM (read
here, not from the provider) and the guest behind it.
"""

import base64
import subprocess
import time

import pytest

from ray_provider.host_keys import HostKeyRefused
from testbed import vsphere
from testbed.guests.ssh import ssh

import provider_tools

pytestmark = pytest.mark.slow

WORKER = {"ray-node-type": "worker", "ray-user-node-type": "worker"}


def held_at_vcsim(vcsim, uuid):
    """(recorded public host key, guestinfo.userdata, vApp property user-data) of the VM, as vcsim holds them."""
    return vsphere.host_key_records(vcsim.endpoint, uuid)


def runner_of(provider, node_id):
    auth = {"ssh_user": "ubuntu", "ssh_private_key": provider.private_key_path()}
    return provider.get_command_runner("host-key test: ", node_id, auth, provider.cluster_name, subprocess, True)


def run_when_up(runner, command, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return runner.run(command, with_output=True).decode()
        except HostKeyRefused:
            raise
        except Exception:  # noqa: BLE001 - sshd not answering yet
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_a_node_that_swaps_its_host_key_is_refused_and_its_private_key_leaves_vcenter_once_it_answered(
        vcsim, guest_simulator, test_ova, tmp_path, monkeypatch):
    provider = provider_tools.make_provider(vcsim, test_ova, tmp_path, monkeypatch, "hostkeys")
    [node_id] = provider.create_node({}, WORKER, 1)
    ip = provider.internal_ip(node_id)
    recorded, guestinfo_user_data, vapp_user_data = held_at_vcsim(vcsim, node_id)
    assert recorded and recorded.startswith("ssh-ed25519 "), "the launch gave the node no host key of its own"
    assert "ed25519_private" in base64.b64decode(guestinfo_user_data).decode()
    assert vapp_user_data == [guestinfo_user_data], "the OVF datasource's copy: the image declares user-data"

    # known_hosts holds vCenter's record, keyed by the instance UUID, never by the address the guest reports.
    entries = provider.known_hosts.path.read_text().splitlines()
    assert entries == [f"{node_id} {recorded}"]
    assert ip not in provider.known_hosts.path.read_text()

    assert run_when_up(runner_of(provider, node_id), "hostname").strip().startswith("hostkeys-")
    provider.write_tags_now()  # the removal rides with the provider's tag writes; this flushes them, as at exit
    # It answered with its recorded key: the private half is gone from vCenter, the public half stays.
    recorded_after, guestinfo_after, vapp_after = held_at_vcsim(vcsim, node_id)
    assert recorded_after == recorded
    assert not guestinfo_after, "guestinfo.userdata still holds the host private key"
    assert "PRIVATE KEY" not in base64.b64decode(vapp_after[0]).decode(), "the vApp property user-data still holds it"

    # The node now answers with a host key it was not given at deploy.
    key = provider.private_key_path()
    swapped = ssh(ip, key, "sudo rm -f /etc/ssh/ssh_host_*key* && "
                           "sudo ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
                           "sudo pkill -HUP -f '\\[listener\\]'")
    assert swapped.returncode == 0, swapped.stderr
    time.sleep(1)
    with pytest.raises(HostKeyRefused, match=f"node {node_id} at {ip} answered SSH with a host key other than"):
        runner_of(provider, node_id).run("touch /tmp/host-key-canary", with_output=True)
    assert ssh(ip, key, "test -e /tmp/host-key-canary").returncode == 1, "a command reached the impostor"

    provider.terminate_nodes([node_id])
