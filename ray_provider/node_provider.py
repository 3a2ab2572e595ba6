"""A Ray NodeProvider whose nodes are vSphere VMs made by the collection's playbooks.

Load it from a cluster YAML:

    provider:
      type: external
      module: ray_provider.node_provider.VsphereNodeProvider

Writes (create, terminate, tags) run playbooks/provider/*.yml through
ansible-runner, so the autoscaler changes vCenter exactly as
`ansible-playbook` and AWX do; created nodes' IPs come from what those
playbooks publish with set_stats. State lives in vCenter (custom attributes),
so the head's autoscaler, a restarted head and `ray down` elsewhere all see
the same cluster.

Reads are the hot path: the autoscaler asks node_tags and internal_ip about
ten times per node every 5 s. They are answered from a node cache under one
narrow lock. The cache is refreshed by non_terminated_nodes at most once per
REFRESH_INTERVAL_S, in process, with the same module_utils code the node_info
module runs: an ansible-runner run costs about a CPU-second, which the
autoscaler would pay every update (benchmarks/provider.py prints both). A
refresh reads only the VMs under the cluster's VM folders, and only once: after
that it asks vCenter what changed (a NodeWatch), which with nothing changed is
one small round trip.
"""

import atexit
import copy
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from ray_provider.config import (ClusterConfigError, VcenterCredentials, check_cluster_config, encrypt_secret, is_url,
                                 local_path, node_settings)
from ray_provider.runner import published_stats, run_playbook, task_results

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _node_watch, _nodes, _placement, _ray_auth, _ray_tags
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import VcenterClient

logger = logging.getLogger(__name__)

# The collection's playbooks/provider/, by FQCN: found wherever ansible-core finds the collection.
PLAYBOOKS = "ray_vsphere.cluster.provider"
# Below the autoscaler's 5 s update interval: one vCenter read per update,
# however many times Ray lists nodes within it.
REFRESH_INTERVAL_S = 2.0
# set_node_tags calls of one updater transition arrive together; one run writes them.
TAG_BATCH_DELAY_S = 1.0
KEPT_RUNS = 30
# ansible-runner's private data dirs; RAY_VSPHERE_STATE_DIR moves them (tests do).
STATE_DIR = Path(os.environ.get("RAY_VSPHERE_STATE_DIR", "~/.ray-vsphere")).expanduser()
HEAD_PRIVATE_KEY = "~/ray_bootstrap_key.pem"
HEAD_PUBLIC_KEY = "~/ray_bootstrap_key.pub"
HEAD_IMAGES = "~/ray_vsphere_images"
# The CA that signed vCenter's certificate, for the head's autoscaler to verify it too.
HEAD_CA = "~/ray_vsphere_vcenter_ca.pem"
# Ray's own tags that node_deploy takes as options of their own.
DEDICATED_TAGS = (_ray_tags.CLUSTER_NAME, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE)


class PlaybookFailed(RuntimeError):
    def __init__(self, playbook, runner):
        failures = [failure.get("msg", "") for failure in _failures(runner)]
        self.messages = [message for message in failures if message] or [f"ansible-runner status {runner.status}"]
        super().__init__(f"{playbook} failed: {'; '.join(self.messages)}")


class PlaybookRuns:
    """ansible-runner runs of playbooks/provider/*.yml, each in a private data dir of its own.

    Runs happen on several Ray threads at once; separate dirs keep their
    artifacts apart. The newest KEPT_RUNS stay for debugging.
    """

    def __init__(self, cluster_name, credentials):
        # The name is part of a folder that runs are pruned from: never a path of its own.
        self.root = STATE_DIR / _ray_tags.check_name(cluster_name, "cluster_name") / "runs"
        self.credentials = credentials
        self.count = 0
        self._lock = threading.Lock()

    def run(self, playbook, extravars, raise_on_failure=True):
        with self._lock:
            self.count += 1
            ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{self.count:05d}-{playbook}-{uuid.uuid4().hex[:6]}"
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        started = time.monotonic()
        runner = run_playbook(f"{PLAYBOOKS}.{playbook}", self.root / ident, extravars=extravars,
                              envvars=self.credentials.environment(), secret_vars=self.credentials.secret_vars())
        logger.info("ray_vsphere: %s %s in %.1f s (%s)", playbook, runner.status, time.monotonic() - started,
                    self.root / ident)
        self._prune()
        if raise_on_failure and runner.status != "successful":
            raise PlaybookFailed(playbook, runner)
        return runner

    def _prune(self):
        runs = sorted(self.root.iterdir()) if self.root.is_dir() else []
        for old in runs[:-KEPT_RUNS]:
            shutil.rmtree(old, ignore_errors=True)


class VsphereNodeProvider(NodeProvider):
    """Ray nodes as vSphere VMs; thread-safe (Ray calls it from its loop, launcher and updater threads)."""

    def __init__(self, provider_config, cluster_name):
        super().__init__(provider_config, cluster_name)
        self.credentials = VcenterCredentials(provider_config)
        self.playbooks = PlaybookRuns(cluster_name, self.credentials)
        self._nodes = {}            # uuid -> {"name", "ip", "power_state", "tags", "added"}
        self._terminating = set()   # uuids whose delete is under way: already terminated for Ray
        self._unwritten_tags = {}   # uuid -> tags set in memory, not yet in vCenter
        self._deleted_at = {}       # uuid -> when its delete finished, so an older read cannot revive it
        self._lock = threading.Lock()          # guards the four above; never held over I/O
        self._refresh_lock = threading.Lock()  # one vCenter read at a time
        self._last_refresh = float("-inf")
        self._client = None
        self._watch = None          # the NodeWatch over the folders of self._watched; only under _refresh_lock
        self._watched = None
        # (datacenter, VM folder) of every node type: what bootstrap_config found, else the provider's own.
        self._folders = set(tuple(pair) for pair in provider_config.get("node_folders") or [])
        self._folders.add(_node_folder(node_settings(provider_config, {})))
        self.full_reads = 0
        # The node cache picks addresses by the provider-wide preferred_cidr and ignored_cidrs, as node_deploy would.
        self._ip_choice = _nodes.ip_choice({"ignored_cidrs": _nodes.DEFAULT_IGNORED_CIDRS,
                                            **node_settings(provider_config, {})})
        self._tags_due = threading.Condition(self._lock)
        self._tag_write_lock = threading.Lock()
        self._tag_writer = threading.Thread(target=self._write_tags_forever, name="ray-vsphere-tags", daemon=True)
        self._tag_writer.start()
        # `ray up` exits right after its updater marks the head up-to-date.
        atexit.register(self._write_tags_at_exit)

    # ----- read path: memory only, except the rate-limited refresh -----

    def non_terminated_nodes(self, tag_filters):
        self._refresh_if_stale()
        with self._lock:
            return [node_id for node_id, node in self._nodes.items()
                    if node_id not in self._terminating
                    and all(node["tags"].get(key) == value for key, value in tag_filters.items())]

    def is_running(self, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            return node is not None and node_id not in self._terminating and node["power_state"] == "poweredOn"

    def is_terminated(self, node_id):
        with self._lock:
            return node_id not in self._nodes or node_id in self._terminating

    def node_tags(self, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            return dict(node["tags"]) if node else {}

    def internal_ip(self, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            return node["ip"] if node else None

    def external_ip(self, node_id):
        return self.internal_ip(node_id)

    def _refresh_if_stale(self):
        with self._refresh_lock:
            if time.monotonic() - self._last_refresh < REFRESH_INTERVAL_S:
                return
            started = time.monotonic()
            records = self._list_cluster_nodes()
            with self._lock:
                listed = {record["uuid"]: record for record in records}
                for node_id in list(self._nodes):
                    # Created by a run that finished after this read began: keep it.
                    if node_id not in listed and self._nodes[node_id]["added"] < started:
                        del self._nodes[node_id]
                        self._unwritten_tags.pop(node_id, None)
                for node_id, record in listed.items():
                    if self._deleted_at.get(node_id, float("-inf")) >= started:
                        continue
                    self._nodes[node_id] = self._cache_entry(record, self._nodes.get(node_id, {}).get("added", 0.0))
                self._terminating &= set(self._nodes)
                self._deleted_at = {node_id: at for node_id, at in self._deleted_at.items() if at >= started}
            self._last_refresh = time.monotonic()

    def _cache_entry(self, record, added):
        """A cache entry from a node_info-style record; tags not yet written win over vCenter's."""
        tags = dict(record["tags"])
        tags.update(self._unwritten_tags.get(record["uuid"], {}))
        return {"name": record["name"], "ip": record["ip"], "power_state": record["power_state"], "tags": tags,
                "added": added}

    def _list_cluster_nodes(self):
        """The cluster's node records, from the NodeWatch: changes only, or everything on start and after a loss."""
        preferred, ignored = self._ip_choice
        for attempt in (1, 2):
            try:
                if self._client is None:
                    self._client = VcenterClient(self.credentials.hostname, self.credentials.username,
                                                 self.credentials.password, port=self.credentials.port,
                                                 validate_certs=self.credentials.validate_certs,
                                                 ca_path=self.credentials.ca_path).connect()
                with self._lock:
                    folders = frozenset(self._folders)
                if self._watch is not None and self._watched == folders:
                    self._watch.poll()
                else:
                    self._watch_folders(folders, "start" if self.full_reads == 0 and attempt == 1 else
                                        "new VM folder" if self._watch is not None else "reconnect")
                return self._watch.records(self.cluster_name, preferred, ignored)
            except Exception:  # noqa: BLE001 - an ended session, a lost filter or a dropped connection: log in again once
                # The session's end takes its PropertyCollector and filter along: no call to a vCenter that failed.
                self._watch = None
                if self._client is not None:
                    self._client.disconnect()
                    self._client = None
                if attempt == 2:
                    raise

    def _watch_folders(self, folders, reason):
        """A NodeWatch over the VM folders: the one full read of the cluster until the filter is lost."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        service_instance = self._client.service_instance
        roots = []
        for datacenter in sorted(set(datacenter for datacenter, _ in folders)):
            roots += _placement.vm_folders(service_instance, datacenter,
                                           sorted(folder for dc, folder in folders if dc == datacenter))
        self._watch = _node_watch.NodeWatch(service_instance, roots)
        self._watched = folders
        self.full_reads += 1
        logger.info("ray_vsphere: read the %d VMs under %s (%s); from now on only their changes", len(self._watch.vms),
                    ", ".join(f"{dc}/vm/{folder}".rstrip("/") for dc, folder in sorted(folders)), reason)

    # ----- write path: playbooks through ansible-runner -----

    def create_node(self, node_config, tags, count):
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    def create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        if count <= 0:
            return {}
        settings = node_settings(self.provider_config, node_config)
        with self._lock:  # a node type's folder that bootstrap_config did not name: watched from the next refresh
            self._folders.add(_node_folder(settings))
        extravars = {
            "ray_provider_cluster_name": self.cluster_name,
            "ray_provider_node_kind": tags.get(TAG_RAY_NODE_KIND, "worker"),
            "ray_provider_node_type": tags.get(TAG_RAY_USER_NODE_TYPE, ""),
            "ray_provider_count": count,
            "ray_provider_request_id": uuid.uuid4().hex[:8],
            "ray_provider_tags": {key: value for key, value in tags.items() if key not in DEDICATED_TAGS},
            "ray_provider_node": settings,
            "ray_provider_public_key": self._public_key(),
        }
        try:
            runner = self.playbooks.run("create_nodes", extravars)
        except PlaybookFailed as error:
            raise NodeLaunchException(_launch_failure_category(error.messages), str(error), sys.exc_info()) from error
        created = published_stats(runner).get("ray_provider_nodes", [])
        now = time.monotonic()
        with self._lock:
            for record in created:
                self._nodes[record["uuid"]] = self._cache_entry(record, now)
        logger.info("ray_vsphere: created %s", ", ".join(f"{r['name']} ({r['ip']})" for r in created))
        return {record["uuid"]: record for record in created}

    def terminate_node(self, node_id):
        return self.terminate_nodes([node_id])

    def terminate_nodes(self, node_ids):
        with self._lock:
            wanted = [node_id for node_id in node_ids if node_id in self._nodes and node_id not in self._terminating]
            self._terminating.update(wanted)
        if not wanted:
            return None
        try:
            self.playbooks.run("terminate_nodes", {"ray_provider_cluster_name": self.cluster_name,
                                                       "ray_provider_uuids": wanted})
        except PlaybookFailed:
            with self._lock:
                self._terminating.difference_update(wanted)
            raise
        with self._lock:
            for node_id in wanted:
                self._nodes.pop(node_id, None)
                self._unwritten_tags.pop(node_id, None)
                self._deleted_at[node_id] = time.monotonic()
            self._terminating.difference_update(wanted)
        return None

    def set_node_tags(self, node_id, tags):
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                return
            node["tags"].update(tags)
            self._unwritten_tags.setdefault(node_id, {}).update(tags)
            self._tags_due.notify()

    def post_process(self):
        with self._lock:
            self._tags_due.notify()

    def write_tags_now(self):
        """Write every tag change made so far to vCenter, in one run."""
        with self._tag_write_lock:
            with self._lock:
                batch = {node_id: tags for node_id, tags in self._unwritten_tags.items()
                         if node_id in self._nodes and node_id not in self._terminating}
                self._unwritten_tags = {}
            if not batch:
                return
            try:
                self.playbooks.run("set_node_tags", {
                    "ray_provider_cluster_name": self.cluster_name,
                    "ray_provider_tag_updates": [{"uuid": node_id, "tags": tags} for node_id, tags in batch.items()],
                })
            except PlaybookFailed:
                with self._lock:  # again next time, under anything newer
                    for node_id, tags in batch.items():
                        self._unwritten_tags[node_id] = {**tags, **self._unwritten_tags.get(node_id, {})}
                raise

    def _write_tags_at_exit(self):
        try:
            self.write_tags_now()
        except PlaybookFailed:
            logger.exception("ray_vsphere: the last node tags did not reach vCenter")

    def _write_tags_forever(self):
        while True:
            with self._lock:
                while not self._unwritten_tags:
                    self._tags_due.wait()
            time.sleep(TAG_BATCH_DELAY_S)
            try:
                self.write_tags_now()
            except Exception:  # noqa: BLE001 - kept for the next batch; the thread must live on
                logger.exception("ray_vsphere: writing node tags failed; retrying with the next batch")
                time.sleep(5)

    def _public_key(self):
        return Path(self.provider_config["ssh_public_key_file"]).expanduser().read_text().strip()

    # ----- cluster config -----

    @staticmethod
    def bootstrap_config(cluster_config):
        """Check the config (keys, then vCenter read-only), and give it the cluster's SSH key."""
        config = copy.deepcopy(cluster_config)
        check_cluster_config(config)
        provider = config["provider"]
        credentials = VcenterCredentials(provider)
        missing = credentials.problems()
        if missing:
            raise ClusterConfigError(missing)
        auth = config["auth"]
        private_key = Path(auth.get("ssh_private_key")
                           or f"~/.ssh/ray-vsphere-{config['cluster_name']}").expanduser()
        if auth.get("ssh_private_key") and not private_key.is_file():
            raise ClusterConfigError([f"auth.ssh_private_key: no such file: {private_key}"])
        node_types = [{**node_settings(provider, node_type["node_config"]), "node_type": name}
                      for name, node_type in config["available_node_types"].items()]
        # The refresh reads the VMs under these folders only (`ray down` too): every node type's.
        provider["node_folders"] = [list(pair) for pair in sorted(set(_node_folder(settings) for settings in node_types))]
        runner = PlaybookRuns(config["cluster_name"], credentials).run(
            "check_config", {"ray_provider_cluster_name": config["cluster_name"],
                                 "ray_provider_private_key": str(private_key),
                                 "ray_provider_node_types": node_types}, raise_on_failure=False)
        problems = _check_failures(runner)
        if problems:
            raise ClusterConfigError(problems)
        auth["ssh_private_key"] = str(private_key)
        auth["ssh_public_key"] = f"{private_key}.pub"
        provider["ssh_private_key_file"] = str(private_key)
        provider["ssh_public_key_file"] = f"{private_key}.pub"
        file_mounts = config.setdefault("file_mounts", {})
        file_mounts[HEAD_PUBLIC_KEY] = f"{private_key}.pub"
        # Every node, the workers included (the head's autoscaler mounts the same files on them).
        file_mounts[_ray_auth.TOKEN_PATH_ON_NODES] = str(_write_ray_auth_token(config["cluster_name"], private_key))
        if credentials.ca_path:
            file_mounts[HEAD_CA] = credentials.ca_path
        # The head's autoscaler deploys workers from the same image: an .ova, or an .ovf with its folder.
        for section in _sections_with_local_image(config):
            image = Path(local_path(section["ovf"]))
            file_mounts[_head_image(image)] = str(image.parent if image.suffix == ".ovf" else image)
        return config

    def prepare_for_head_node(self, cluster_config):
        """The config the head's autoscaler runs with: the password only as an Ansible Vault blob."""
        config = copy.deepcopy(cluster_config)
        provider = config["provider"]
        provider.update(vcenter_hostname=self.credentials.hostname, vcenter_username=self.credentials.username,
                        vcenter_port=self.credentials.port, vcenter_validate_certs=self.credentials.validate_certs)
        provider["vcenter_password_vault"] = encrypt_secret(
            self.credentials.password, self.provider_config["ssh_private_key_file"])
        if self.credentials.ca_path:
            provider["vcenter_ca_path"] = HEAD_CA
        provider["ssh_private_key_file"] = HEAD_PRIVATE_KEY
        provider["ssh_public_key_file"] = HEAD_PUBLIC_KEY
        config["auth"]["ssh_public_key"] = HEAD_PUBLIC_KEY  # Ray hashes it into the launch config
        for section in _sections_with_local_image(config):
            image = Path(local_path(section["ovf"]))
            section["ovf"] = f"{_head_image(image)}/{image.name}" if image.suffix == ".ovf" else _head_image(image)
        return config

    @staticmethod
    def fillout_available_node_types_resources(cluster_config):
        """Fill a node type's missing CPU resource from its node_config.cpus."""
        config = copy.deepcopy(cluster_config)
        # Runs before Ray validates the config: a malformed node type is left for the checks to name.
        for node_type in (config.get("available_node_types") or {}).values():
            if not isinstance(node_type, dict):
                continue
            node_config, resources = node_type.get("node_config"), node_type.setdefault("resources", {})
            if isinstance(node_config, dict) and isinstance(resources, dict) and isinstance(node_config.get("cpus"), int):
                resources.setdefault("CPU", node_config["cpus"])
        return config


def _node_folder(settings):
    """(datacenter, VM folder path) of one node type's settings; "" is the datacenter's VM folder."""
    return (settings.get("datacenter") or "", (settings.get("vm_folder") or "").strip("/"))
def _write_ray_auth_token(cluster_name, private_key):
    """The cluster's Ray token in a file of the provider's state (0600), for `ray up` to mount on every node."""
    token_file = STATE_DIR / cluster_name / "ray-auth-token"
    token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(_ray_auth.ray_auth_token(private_key.read_text(), cluster_name))
    return token_file


def _sections_with_local_image(config):
    """The provider section and node_configs whose `ovf` is a local path, not a URL."""
    sections = [config["provider"]] + [t["node_config"] for t in config["available_node_types"].values()]
    return [section for section in sections if section.get("ovf") and not is_url(section["ovf"])]


def _head_image(image):
    """Where a local image is mounted on the head: the .ova, or the .ovf's folder."""
    return f"{HEAD_IMAGES}/{image.parent.name if image.suffix == '.ovf' else image.name}"


def _check_failures(runner):
    """Problems by key from a failed check_config.yml run."""
    if runner.status == "successful":
        return []
    problems = []
    for failure in _failures(runner):
        node_type = (failure.get("item") or {}).get("node_type")
        where = f"available_node_types.{node_type}.node_config" if node_type else "vCenter check"
        problems.append(f"{where}: {failure.get('msg')}")
    return problems or [f"the read-only vCenter check did not finish: ansible-runner status {runner.status}"]


def _failures(runner):
    """The results of failed tasks, or of their failed items where they loop (as the nodes role's deploy does)."""
    return [item for result in task_results(runner) if result["failed"]
            for item in result.get("results") or [result] if item.get("failed")]


def _launch_failure_category(messages):
    """NodeLaunchException's short category, for Ray's availability tracking."""
    text = " ".join(messages)
    for needle, category in (("Insufficient", "InsufficientCapacity"), ("NoDiskSpace", "InsufficientCapacity"),
                             ("no usable IP", "NoIpAddress"), ("not mounted", "Placement"), ("not found in", "Placement")):
        if needle in text:
            return category
    return "DeployFailed"


__all__ = ["VsphereNodeProvider", "ClusterConfigError"]
