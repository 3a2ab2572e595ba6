"""The provider's SSH runner against a real sshd on loopback: the node's recorded host key, or no connection.

No vCenter here: the records are what a read of vCenter returns (node_info's
form), and the node is an sshd this test starts with a host key of its own.
"""

import socket
import subprocess
import time
import uuid

import pytest
from ray.autoscaler._private.command_runner import DockerCommandRunner

from ray_provider import host_keys
from ray_provider.host_keys import HostKeyRefused, KnownHosts, VerifiedSSHCommandRunner
from testbed.guests import make_key_pair

from conftest import record


class Node:
    """What Ray's runner asks of a provider about one node."""

    def __init__(self, ip):
        self.ip = ip

    def internal_ip(self, node_id):
        return self.ip

    external_ip = internal_ip

    def is_terminated(self, node_id):
        return False


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """An sshd on 127.0.0.1 with a host key of its own, letting in this user's test key: (port, host key line, key)."""
    host_key = make_key_pair(tmp_path / "host_key")
    client_key = make_key_pair(tmp_path / "client_key")
    port = free_port()
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-h", str(host_key), "-p", str(port),
         "-o", "ListenAddress=127.0.0.1", "-o", f"AuthorizedKeysFile={client_key}.pub", "-o", "StrictModes=no",
         "-o", "UsePAM=no", "-o", "PasswordAuthentication=no", "-o", "PidFile=none",
         "-o", "PermitRootLogin=prohibit-password"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sshd did not listen"
                time.sleep(0.1)
        yield port, (tmp_path / "host_key.pub").read_text().strip(), client_key
    finally:
        process.terminate()
        process.wait(10)


def runner_for(tmp_path, known_hosts, node_id, port, client_key, verified=None):
    runner = VerifiedSSHCommandRunner(
        known_hosts, verified.append if verified is not None else None, log_prefix="test: ", node_id=node_id,
        provider=Node("127.0.0.1"), auth_config={"ssh_user": subprocess.run(["id", "-un"], capture_output=True,
                                                                             text=True).stdout.strip(),
                                                 "ssh_private_key": str(client_key)},
        cluster_name=f"hostkeys-{uuid.uuid4().hex[:6]}", process_runner=subprocess, use_internal_ip=True)
    runner.ssh_options.arg_dict["Port"] = port  # Ray's runner knows port 22 only; this sshd is elsewhere
    return runner


def node_record(node_id, host_key):
    return dict(record(node_id, "hostkeys-worker-0", ip="127.0.0.1"), ssh_host_key=host_key)


def test_known_hosts_holds_the_recorded_keys_by_instance_uuid_not_by_address(tmp_path):
    known_hosts = KnownHosts(tmp_path / "state" / "known_hosts")
    read, created = str(uuid.uuid4()), str(uuid.uuid4())
    known_hosts.learn_read([node_record(read, "ssh-ed25519 AAAAread comment"),
                            node_record(str(uuid.uuid4()), None)])  # no recorded key: no entry, so no connection
    assert known_hosts.path.read_text() == f"{read} ssh-ed25519 AAAAread\n"
    assert known_hosts.path.stat().st_mode & 0o777 == 0o600
    assert "127.0.0.1" not in known_hosts.path.read_text()

    known_hosts.learn_created([node_record(created, "ssh-ed25519 AAAAcreated")])
    known_hosts.learn_read([])  # the node is gone from vCenter; the one just created is not listed yet
    assert known_hosts.path.read_text() == f"{created} ssh-ed25519 AAAAcreated\n"


def test_a_node_answering_with_its_recorded_key_runs_the_command(tmp_path, sshd):
    port, host_key, client_key = sshd
    node_id = str(uuid.uuid4())
    known_hosts = KnownHosts(tmp_path / "known_hosts")
    known_hosts.learn_read([node_record(node_id, host_key)])
    verified = []
    runner = runner_for(tmp_path, known_hosts, node_id, port, client_key, verified)
    assert runner.run("echo verified", with_output=True).decode().strip() == "verified"
    assert runner.run("echo again", with_output=True).decode().strip() == "again"
    assert verified == [node_id], "the node proved its key once: on_verified runs once"
    options = runner.ssh_options.to_ssh_options_list()
    assert f"HostKeyAlias={node_id}" in options and "StrictHostKeyChecking=yes" in options
    assert f"UserKnownHostsFile={known_hosts.path}" in options


def test_a_node_answering_with_another_key_is_refused_before_any_command(tmp_path, sshd):
    port, _, client_key = sshd
    node_id = str(uuid.uuid4())
    recorded = make_key_pair(tmp_path / "recorded").with_suffix(".pub").read_text().strip()
    known_hosts = KnownHosts(tmp_path / "known_hosts")
    known_hosts.learn_read([node_record(node_id, recorded)])
    canary = tmp_path / "canary"
    verified = []
    runner = runner_for(tmp_path, known_hosts, node_id, port, client_key, verified)
    with pytest.raises(HostKeyRefused, match=f"node {node_id} at 127.0.0.1 answered SSH with a host key other than "
                                             f"the one vCenter recorded for it"):
        runner.run(f"touch {canary}")
    with pytest.raises(HostKeyRefused):
        runner.run_rsync_up(str(tmp_path / "known_hosts"), str(canary))
    assert not canary.exists() and verified == []


def test_a_node_without_a_recorded_key_is_refused_without_a_connection(tmp_path):
    node_id = str(uuid.uuid4())
    known_hosts = KnownHosts(tmp_path / "known_hosts")
    known_hosts.learn_read([node_record(node_id, None)])
    runner = runner_for(tmp_path, known_hosts, node_id, 9, tmp_path / "no-key")
    runner.provider = Node("192.0.2.1")  # TEST-NET-1: a connection attempt would hang, not fail
    started = time.monotonic()
    with pytest.raises(HostKeyRefused, match=f"node {node_id} has no SSH host key recorded in vCenter"):
        runner.run("true")
    assert time.monotonic() - started < 5


def test_the_provider_gives_ray_the_verified_runner_also_under_docker(provider):
    node_id = str(uuid.uuid4())
    common = dict(log_prefix="test: ", node_id=node_id, auth_config={"ssh_user": "ubuntu"}, cluster_name="unit",
                  process_runner=subprocess, use_internal_ip=True)
    runner = provider.get_command_runner(**common)
    assert isinstance(runner, VerifiedSSHCommandRunner)
    assert runner.known_hosts is provider.known_hosts
    assert runner.ssh_options.arg_dict["HostKeyAlias"] == node_id
    assert provider.known_hosts.path.name == host_keys.KNOWN_HOSTS_FILE
    docker = provider.get_command_runner(**common, docker_config={"container_name": "ray", "image": "ray"})
    assert isinstance(docker, DockerCommandRunner)
    assert isinstance(docker.ssh_command_runner, VerifiedSSHCommandRunner)


def test_a_verified_nodes_removal_rides_with_the_next_tag_write(provider):
    verified = str(uuid.uuid4())
    provider._remove_host_private_key(verified)
    provider.write_tags_now()
    [(_, extravars)] = [call for call in provider.playbooks.calls if call[0] == "set_node_tags"]
    assert (extravars["ray_provider_tag_updates"], extravars["ray_provider_host_key_removals"]) == ([], [verified])
    assert not provider.host_key_removals.pending()
