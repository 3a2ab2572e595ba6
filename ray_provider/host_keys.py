"""The host key each node must answer SSH with, from vCenter's records, and the SSH runner that holds it to it.

Ray's SSHCommandRunner connects with StrictHostKeyChecking=no and
UserKnownHostsFile=/dev/null: whoever answers at a new node's address first
gets the cluster key, the config and the token. Every node the provider
launches is deployed with a host key of its own (node_deploy's ssh_host_key,
made where the launch runs), whose public half vCenter records on the VM.
The runner here checks the node's answer against that record, strictly, in a
known_hosts file written from the verified nodes' records only, and keyed by
the node's instance UUID (HostKeyAlias), not by the address the guest reports:
a guest that reports another node's address is still checked against its own
UUID's key, and an address reused by a new node never meets a stale entry.
"""

import logging
import os
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path

from ray.autoscaler._private.command_runner import DockerCommandRunner, SSHCommandRunner

logger = logging.getLogger(__name__)

# Beside the cluster's playbook runs, in the state folder (node_provider.STATE_DIR / cluster name).
KNOWN_HOSTS_FILE = "known_hosts"
# How long the first connection to a node may take to show which host key it has.
PROBE_TIMEOUT_S = 60
# What ssh prints when the key does not match, or no key is known for the alias.
VERIFICATION_FAILED = "Host key verification failed"


class HostKeyRefused(RuntimeError):
    """A node answered SSH with a host key other than vCenter's record of it, or has no recorded key."""


def ssh_options(known_hosts, node_id):
    """The ssh -o options that check node_id's answer against its recorded key in known_hosts, and nothing else."""
    return {"StrictHostKeyChecking": "yes", "UserKnownHostsFile": str(known_hosts), "HostKeyAlias": node_id,
            "GlobalKnownHostsFile": os.devnull, "CheckHostIP": "no", "UpdateHostKeys": "no"}


def ssh_command_options(known_hosts, node_id):
    """The same options as a command line: what printed SSH commands carry."""
    return " ".join(f"-o {key}={shlex.quote(str(value))}" for key, value in ssh_options(known_hosts, node_id).items())


class KnownHosts:
    """The cluster's known_hosts file here, rewritten whenever vCenter's records of the nodes' host keys change.

    Entries come from two sources: each read of the verified nodes (which
    replaces what the last read said), and the nodes this process created
    (known before a read lists them). A node without a recorded key has no
    entry, so strict checking refuses it.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._read = {}
        self._created = {}
        self._written = None
        self._lock = threading.Lock()

    def learn_read(self, records):
        """A read's node records: the verified nodes' recorded keys replace the last read's."""
        with self._lock:
            self._read = recorded_keys(records)
            self._write()

    def learn_created(self, records):
        """Nodes a create run returned, with the keys it recorded for them."""
        with self._lock:
            self._created.update(recorded_keys(records))
            self._write()

    def key(self, node_id):
        with self._lock:
            return self._read.get(node_id) or self._created.get(node_id)

    def _write(self):
        entries = dict(self._created, **self._read)  # vCenter's latest record wins
        text = "".join(f"{node_id} {key}\n" for node_id, key in sorted(entries.items()))
        if text == self._written:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Whole or not at all: an updater's ssh may read it meanwhile.
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".known_hosts.")
        try:
            with os.fdopen(handle, "w") as stream:
                stream.write(text)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._written = text


class PendingRemovals:
    """Nodes that answered with their recorded host key, whose private key vCenter may still show.

    The removal rides along with the provider's next tag write (one
    set_node_tags.yml run, which Ray's updater asks for right after the
    node answered anyway), so it costs no run of its own.
    """

    def __init__(self):
        self._node_ids = set()
        self._lock = threading.Lock()

    def add(self, node_id):
        with self._lock:
            self._node_ids.add(node_id)

    def pending(self):
        with self._lock:
            return bool(self._node_ids)

    def take(self):
        with self._lock:
            taken, self._node_ids = self._node_ids, set()
            return taken


def removal_vars(removals):
    """set_node_tags.yml's extra vars for the removals riding along with a tag write."""
    return {"ray_provider_host_key_removals": sorted(removals)} if removals else {}


def removals_failed(removals):
    """Not retried: a node may be gone (which fails a batch that names it); its next verified runner asks again."""
    if removals:
        logger.warning("ray_vsphere: the host private keys of %s were not removed from vCenter with this tag write",
                       ", ".join(sorted(removals)))


def recorded_keys(records):
    """{instance UUID: public host key line} of the node records that carry one."""
    return {record["uuid"]: " ".join(record["ssh_host_key"].split()[:2])
            for record in records if record.get("uuid") and record.get("ssh_host_key")}


class VerifiedSSHCommandRunner(SSHCommandRunner):
    """Ray's SSH runner, connecting only to a node that answers with the host key vCenter recorded for it.

    Before its first command (or rsync) it makes one connection that only
    checks the host key: a mismatch raises HostKeyRefused, naming the node,
    before a command, a file or a key is sent; a node not answering yet fails
    as Ray's runner fails, and Ray's updater retries. on_verified(node_id)
    runs once after the node proved its key.
    """

    def __init__(self, known_hosts, on_verified=None, **common_args):
        super().__init__(**common_args)
        self.known_hosts = known_hosts
        self.on_verified = on_verified
        self._verified = False
        self.ssh_options.arg_dict.update(ssh_options(known_hosts.path, self.node_id))
        if self.ssh_options.arg_dict.get("ControlPath"):
            # Ray's connection sharing is keyed by address and user: a shared connection to the node that had this
            # address before would skip the check. Key it by the node too.
            self.ssh_options.arg_dict["ControlPath"] = f"{self.ssh_control_path}/{self.node_id[:8]}-%C"

    def run(self, cmd=None, *args, ssh_options_override_ssh_key="", **kwargs):
        if ssh_options_override_ssh_key:
            # Ray's runner would build options of its own for it, without the host-key check.
            raise HostKeyRefused("ssh_options_override_ssh_key is not supported: its connection would not check "
                                 "the node's host key")
        self.verify_host_key()
        return super().run(cmd, *args, **kwargs)

    def run_rsync_up(self, source, target, options=None):
        self.verify_host_key()
        return super().run_rsync_up(source, target, options)

    def run_rsync_down(self, source, target, options=None):
        self.verify_host_key()
        return super().run_rsync_down(source, target, options)

    def ssh_target(self):
        """The address Ray's runner connects to; Ray 2.52's runner has no _get_ssh_target (its target is the IP)."""
        if hasattr(SSHCommandRunner, "_get_ssh_target"):
            return self._get_ssh_target()
        self._set_ssh_ip_if_required()
        return self.ssh_ip

    def verify_host_key(self):
        """Raise HostKeyRefused unless the node answers with its recorded key; once per runner."""
        if self._verified:
            return
        name = f"node {self.node_id}"
        if self.known_hosts.key(self.node_id) is None:
            raise HostKeyRefused(f"{name} has no SSH host key recorded in vCenter (ray-vsphere.ssh-host-key): nothing "
                                 f"can tell it from an impostor, so no command is sent to it; delete and relaunch it")
        target = self.ssh_target()
        probe = (["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none"]
                 + self.ssh_options.to_ssh_options_list(timeout=PROBE_TIMEOUT_S)
                 + [f"{self.ssh_user}@{target}", "true"])
        try:
            answer = subprocess.run(probe, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S + 10, check=False)
        except subprocess.TimeoutExpired:
            return  # not verified yet: the command's own connection fails or waits, as Ray's runner does
        if VERIFICATION_FAILED in answer.stderr:
            raise HostKeyRefused(
                f"{name} at {target} answered SSH with a host key other than the one vCenter recorded for it at "
                f"deploy ({self.known_hosts.key(self.node_id).split()[0]} in {self.known_hosts.path}, as "
                f"HostKeyAlias {self.node_id}): refused, nothing was sent to it. Either someone else answers at that "
                f"address, or the node's host key was changed; ssh said: {answer.stderr.strip()[-400:]}")
        if answer.returncode != 0:
            return  # not answering yet, or not letting us in: the command's own connection reports it
        self._verified = True
        if self.on_verified:
            self.on_verified(self.node_id)


def verified_command_runner(known_hosts, on_verified, docker_config=None, **common_args):
    """What the provider's get_command_runner returns: the verified runner, or Docker's runner over it."""
    ssh_runner = VerifiedSSHCommandRunner(known_hosts, on_verified, **common_args)
    if docker_config and docker_config.get("container_name"):
        runner = DockerCommandRunner(docker_config, **common_args)
        runner.ssh_command_runner = ssh_runner
        return runner
    return ssh_runner
