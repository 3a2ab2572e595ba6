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
import dataclasses
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

from pyVmomi import vim, vmodl
from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from ray_provider.config import (HEAD_ACCOUNT_VARIABLES, OWN_ACCOUNT, ClusterConfigError, HeadAccount,
                                 VcenterCredentials, check_cluster_config, encrypt_secret, is_url, local_path,
                                 node_settings)
from ray_provider.ip_policy import NODE_TYPE_IP_POLICIES, IpPolicies, node_type_ip_policies
from ray_provider.runner import published_stats, run_playbook, task_results
from ray_provider.vcenter_session import LoginDeferred, VcenterSession

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _node_watch, _ovf_package, _placement, _ray_auth, _ray_tags, _records)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, VcenterClient
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS

logger = logging.getLogger(__name__)

# The collection's playbooks/provider/, by FQCN: found wherever ansible-core finds the collection.
PLAYBOOKS = "ray_vsphere.cluster.provider"
# Below the autoscaler's 5 s update interval: one vCenter read per update,
# however many times Ray lists nodes within it.
REFRESH_INTERVAL_S = 2.0
# set_node_tags calls of one updater transition arrive together; one run writes them.
TAG_BATCH_DELAY_S = 1.0
KEPT_RUNS = 30
# A run of terminate_nodes, set_node_tags or check_config that takes longer is stuck.
DEFAULT_RUN_TIMEOUT_S = 900
# Beyond node_deploy's own deploy and IP timeouts: Ansible's start and the play's other tasks.
CREATE_RUN_MARGIN_S = 300
# ansible-runner's private data dirs; RAY_VSPHERE_STATE_DIR moves them (tests do).
STATE_DIR = Path(os.environ.get("RAY_VSPHERE_STATE_DIR", "~/.ray-vsphere")).expanduser()
HEAD_PRIVATE_KEY = "~/ray_bootstrap_key.pem"
HEAD_PUBLIC_KEY = "~/ray_bootstrap_key.pub"
HEAD_IMAGES = "~/ray_vsphere_images"
# The CA that signed vCenter's certificate, for the head's autoscaler to verify it too.
HEAD_CA = "~/ray_vsphere_vcenter_ca.pem"
# Ray's own tags that node_deploy takes as options of their own.
DEDICATED_TAGS = (_records.CLUSTER_NAME, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE)


class PlaybookFailed(RuntimeError):
    def __init__(self, playbook, runner, timeout=None):
        self.timed_out = runner.status == "timeout"
        failures = [failure.get("msg", "") for failure in _failures(runner)]
        self.messages = [message for message in failures if message] or [
            f"ansible-runner stopped it after {timeout} s (its run timeout)" if self.timed_out
            else f"ansible-runner status {runner.status}"]
        super().__init__(f"{playbook} failed: {'; '.join(self.messages)}")

    @property
    def login_rejected(self):
        return any("rejected the login" in message for message in self.messages)


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """What the provider reads of an ansible-runner run, in memory: its dir may be pruned once it ended."""

    status: str
    events: list
    run_dir: Path


class PlaybookRuns:
    """ansible-runner runs of playbooks/provider/*.yml, each in a private data dir of its own.

    Runs happen on several Ray threads at once; separate dirs keep their
    artifacts apart. The newest KEPT_RUNS finished ones stay for debugging;
    a run still in flight is never pruned (its dir holds an IN_FLIGHT file
    with the pid of the process waiting for it, removed when it ends), since
    the caller reads its results from that dir when it ends. Every run has a
    timeout: a run past it is stopped by ansible-runner and fails.
    """

    IN_FLIGHT = "in-flight.pid"

    def __init__(self, cluster_name, credentials):
        # The name is part of a folder that runs are pruned from: never a path of its own.
        self.root = STATE_DIR / _ray_tags.check_name(cluster_name, "cluster_name") / "runs"
        self.credentials = credentials
        self.count = 0
        self._lock = threading.Lock()

    def run(self, playbook, extravars, raise_on_failure=True, timeout=DEFAULT_RUN_TIMEOUT_S):
        with self._lock:
            self.count += 1
            ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{self.count:05d}-{playbook}-{uuid.uuid4().hex[:6]}"
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        run_dir = self.root / ident
        run_dir.mkdir(mode=0o700, parents=True)
        in_flight = run_dir / self.IN_FLIGHT
        in_flight.write_text(str(os.getpid()))
        started = time.monotonic()
        try:
            runner = run_playbook(f"{PLAYBOOKS}.{playbook}", run_dir, extravars=extravars, timeout=timeout,
                                  envvars=self.credentials.environment(), secret_vars=self.credentials.secret_vars())
            # ansible-runner reads its events from the artifacts when asked: read them while the dir is kept.
            finished = FinishedRun(runner.status, list(runner.events), run_dir)
        finally:
            in_flight.unlink(missing_ok=True)
        logger.info("ray_vsphere: %s %s in %.1f s (%s)", playbook, finished.status, time.monotonic() - started,
                    run_dir)
        self._prune()
        if raise_on_failure and finished.status != "successful":
            raise PlaybookFailed(playbook, finished, timeout)
        return finished

    def _prune(self):
        runs = sorted(self.root.iterdir()) if self.root.is_dir() else []
        finished = [run for run in runs if not _in_flight(run / self.IN_FLIGHT)]
        for old in finished[:-KEPT_RUNS]:
            shutil.rmtree(old, ignore_errors=True)


def _in_flight(marker):
    """Whether the run whose IN_FLIGHT file this is still goes on: its waiting process is alive."""
    try:
        pid = int(marker.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # its process died: the run is over, whatever it left
    except PermissionError:
        return True
    return True


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
        self._refresh_lock = threading.Lock()  # guards the refresh's state below, never held over I/O
        self._refreshing = False               # one vCenter read at a time; others answer from the cache
        self._last_refresh = float("-inf")     # when the last read, successful or not, ended
        self._has_view = threading.Event()     # set once a read succeeded: the cache is vCenter's view
        self.vcenter_session = VcenterSession(self.credentials, self.credentials.request_timeout)
        self._watch = None          # the NodeWatch over self._watched's folders; only used by the one read under way
        self._watched = None
        # (datacenter, VM folder) of every node type: what bootstrap_config found, else the provider's own.
        self._folders = set(tuple(pair) for pair in provider_config.get("node_folders") or [])
        self._folders.add(_node_folder(node_settings(provider_config, {})))
        self.full_reads = 0
        self._cluster_key = None    # the _ray_auth.ClusterKey the refresh verifies nodes with, read on first use
        # VMs this provider deleted (uuids, names), for the reader to drop from the NodeWatch: vcsim v0.56.0
        # does not report a VM's `leave` when the same update set changes the folder that held it
        # (simulator/property_collector.go: PropertyFilter.update re-collects refs first). Under _lock.
        self._deleted_uuids, self._deleted_names = set(), set()
        # Each node's address is picked by its node type's preferred_cidr and ignored_cidrs, as node_deploy did.
        self.ip_policies = IpPolicies(provider_config)
        self._cleanup = FailedCreateCleanup(self)
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
        """Read vCenter if the cache is older than REFRESH_INTERVAL_S, holding no lock over the read.

        A read already under way is not waited for (its result lands in the
        cache), except before the first view exists. A failed read keeps the
        last view and logs one line; the next tick tries again. The read is
        bounded by the request timeout, so a silent vCenter holds up Ray's
        loop for that long at most.
        """
        with self._refresh_lock:
            other_read = self._refreshing
            due = not other_read and time.monotonic() - self._last_refresh >= REFRESH_INTERVAL_S
            self._refreshing = self._refreshing or due
        if not due:
            if other_read and not self._has_view.is_set():  # nothing to answer from yet: wait for that read
                self._has_view.wait(self.credentials.request_timeout * 2)
            return
        try:
            self._refresh()
        except Exception as error:  # noqa: BLE001 - the last view is kept, the failure logged, next tick retries
            if not self._has_view.is_set():
                raise
            if not isinstance(error, LoginDeferred):  # a deferred login was logged when it was rejected
                logger.warning("ray_vsphere: reading vCenter failed, keeping the nodes read before: %s", error)
        finally:
            with self._refresh_lock:
                self._refreshing = False
                self._last_refresh = time.monotonic()

    def _refresh(self):
        started = time.monotonic()
        records = [record for record in self._list_cluster_nodes() if not self._cleanup.owns(record["name"])]
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
        self._has_view.set()
        self._cleanup.start_if_due()

    def _cache_entry(self, record, added):
        """A cache entry from a node_info-style record; tags not yet written win over vCenter's."""
        tags = dict(record["tags"])
        tags.update(self._unwritten_tags.get(record["uuid"], {}))
        return {"name": record["name"], "ip": self.ip_policies.address(record), "power_state": record["power_state"],
                "tags": tags, "added": added}

    def _list_cluster_nodes(self):
        """The cluster's node records, from the NodeWatch: changes only, or everything on start and after a loss."""
        return self.vcenter_session.call(self._watched_records)

    def _watched_records(self, service_instance):
        with self._lock:
            folders = frozenset(self._folders)
        reason = None
        if self._watch is None:
            reason = "start" if self.full_reads == 0 else "reconnect"
        elif self._watch.service_instance is not service_instance:
            reason = "reconnect"  # a new session: the old one's PropertyCollector went with it
        elif self._watched != folders:
            reason = "new VM folder"
        else:
            try:
                self._watch.poll()
            except (vmodl.fault.ManagedObjectNotFound, vmodl.query.InvalidCollectorVersion,
                    vim.fault.NotAuthenticated) as error:
                # The filter is gone (vCenter ended the session, and the client logged in again): read it all.
                reason = f"reconnect: the filter is gone ({type(error).__name__.split('.')[-1]})"
        if reason:
            self._watch_folders(service_instance, folders, reason)
        with self._lock:
            deleted_uuids, deleted_names = self._deleted_uuids, self._deleted_names
            self._deleted_uuids, self._deleted_names = set(), set()
        if deleted_uuids or deleted_names:  # a walk over the watched VMs only after a delete, not every tick
            for vm, props in list(self._watch.vms.items()):
                if props.get("config.instanceUuid") in deleted_uuids or props.get("name") in deleted_names:
                    del self._watch.vms[vm]
        return self._watch.records(self.cluster_key())

    def private_key_path(self):
        """The cluster's private SSH key here: the operator's file, or on the head ~/ray_bootstrap_key.pem.

        Ray gives the provider a config bootstrap_config never saw for some
        commands (`ray get-head-ip`, `ray get-worker-ips`): then the key is the
        one the last bootstrap of this cluster here recorded.
        """
        if self.provider_config.get("ssh_private_key_file"):
            return str(Path(self.provider_config["ssh_private_key_file"]).expanduser())
        recorded = _recorded_key_path(self.cluster_name)
        if recorded is None:
            raise ClusterConfigError([f"the cluster's private SSH key is not known here: run `ray up` (or any "
                                      f"command that reads the whole cluster YAML) for {self.cluster_name} first"])
        return recorded

    def cluster_key(self):
        """The ClusterKey that decides which VMs are this cluster's nodes, for the refresh as for the playbooks.

        Only VMs carrying the identity this key makes are nodes: `ray up` never
        takes a VM someone else tagged for the head, nor counts, tags or
        deletes the nodes of another cluster of the same name.
        """
        if self._cluster_key is None:
            self._cluster_key = _ray_auth.ClusterKey.from_file(self.private_key_path(), self.cluster_name,
                                                                "provider.ssh_private_key_file")
        return self._cluster_key

    def _watch_folders(self, service_instance, folders, reason):
        """A NodeWatch over the VM folders: the one full read of the cluster until the filter is lost."""
        if self._watch is not None and self._watch.service_instance is service_instance:
            self._watch.close()
        self._watch = None
        roots = []
        for datacenter in sorted(set(datacenter for datacenter, _ in folders)):
            roots += _placement.vm_folders(service_instance, datacenter,
                                           sorted(folder for dc, folder in folders if dc == datacenter))
        self._watch = _node_watch.NodeWatch(service_instance, roots)
        self._watched = folders
        self.full_reads += 1
        logger.info("ray_vsphere: read the %d VMs under %s (%s); from now on only their changes", len(self._watch.vms),
                    ", ".join(f"{dc}/vm/{folder}".rstrip("/") for dc, folder in sorted(folders)), reason)

    def _run(self, playbook, extravars, **options):
        """A playbook run, unless vCenter is refusing the password: its modules would log in with it too."""
        self.vcenter_session.backoff.check(self.vcenter_session.who)
        try:
            return self.playbooks.run(playbook, extravars, **options)
        except PlaybookFailed as error:
            if error.login_rejected:
                self.vcenter_session.note_rejected_login(f"{playbook}: {'; '.join(error.messages)}")
            raise

    # ----- write path: playbooks through ansible-runner -----

    def create_node(self, node_config, tags, count):
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    def create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        if count <= 0:
            return {}
        if tags.get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD:
            # Only `ray up` makes a head, on the operator's machine; with a cached config it skipped
            # bootstrap_config, so the head's account is checked here too, before the head exists.
            head_account_problems = HeadAccount(self.provider_config, self.credentials).problems()
            if head_account_problems:
                raise ClusterConfigError(head_account_problems)
        settings = node_settings(self.provider_config, node_config)
        with self._lock:  # a node type's folder that bootstrap_config did not name: watched from the next refresh
            self._folders.add(_node_folder(settings))
        node_type = tags.get(TAG_RAY_USER_NODE_TYPE, "")
        self.ip_policies.learn(node_type, node_config)
        request_id = uuid.uuid4().hex[:8]
        extravars = {
            "ray_provider_cluster_name": self.cluster_name,
            "ray_provider_node_kind": tags.get(TAG_RAY_NODE_KIND, "worker"),
            "ray_provider_node_type": node_type,
            "ray_provider_count": count,
            "ray_provider_request_id": request_id,
            "ray_provider_tags": {key: value for key, value in tags.items() if key not in DEDICATED_TAGS},
            "ray_provider_node": settings,
            "ray_provider_public_key": self._public_key(),
            "ray_provider_private_key": self.private_key_path(),
        }
        try:
            runner = self._run("create_nodes", extravars, timeout=_create_run_timeout(settings))
        except LoginDeferred as error:
            raise NodeLaunchException("LoginRejected", str(error), sys.exc_info()) from error
        except PlaybookFailed as error:
            # node_deploy removes what a failed call made, unless it was stopped or lost vCenter on the way:
            # then what it left goes once vCenter answers again, and is not counted as nodes meanwhile.
            if not error.login_rejected:
                self._cleanup.add(request_id)
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
            self._run("terminate_nodes", {"ray_provider_cluster_name": self.cluster_name,
                                          "ray_provider_private_key": self.private_key_path(),
                                          "ray_provider_uuids": wanted})
        except (PlaybookFailed, LoginDeferred):
            with self._lock:
                self._terminating.difference_update(wanted)
            raise
        with self._lock:
            for node_id in wanted:
                self._nodes.pop(node_id, None)
                self._unwritten_tags.pop(node_id, None)
                self._deleted_at[node_id] = time.monotonic()
                self._deleted_uuids.add(node_id)
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
                self._run("set_node_tags", {
                    "ray_provider_cluster_name": self.cluster_name,
                    "ray_provider_private_key": self.private_key_path(),
                    "ray_provider_tag_updates": [{"uuid": node_id, "tags": tags} for node_id, tags in batch.items()],
                })
            except (PlaybookFailed, LoginDeferred):
                with self._lock:  # again next time, under anything newer
                    for node_id, tags in batch.items():
                        self._unwritten_tags[node_id] = {**tags, **self._unwritten_tags.get(node_id, {})}
                raise

    def _write_tags_at_exit(self):
        try:
            self.write_tags_now()
        except (PlaybookFailed, LoginDeferred):
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
        head_account = HeadAccount(provider, credentials)
        # bootstrap_config runs for `ray down`, `ray exec` ... too, which need no head account: one not given
        # at all fails the head's launch (create_node) and prepare_for_head_node instead, before either acts.
        missing = credentials.problems() + (head_account.problems() if head_account.given_any else [])
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
                                 "ray_provider_node_types": node_types}, raise_on_failure=False,
            timeout=max(_create_run_timeout(node_type) for node_type in node_types))
        problems = _check_failures(runner)
        if not problems and head_account.mode == OWN_ACCOUNT and head_account.given_any:
            # (a vCenter the check could not use would fail this login too)
            problems = _head_login_problems(credentials, head_account)
        if problems:
            raise ClusterConfigError(problems)
        provider[NODE_TYPE_IP_POLICIES] = node_type_ip_policies(config)
        auth["ssh_private_key"] = str(private_key)
        auth["ssh_public_key"] = f"{private_key}.pub"
        provider["ssh_private_key_file"] = str(private_key)
        provider["ssh_public_key_file"] = f"{private_key}.pub"
        _record_key_path(config["cluster_name"], private_key)
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
        """The config the head's autoscaler runs with: the head's own account, its password as an Ansible Vault blob.

        The blob is keyed by the cluster's private key, which the head holds
        too: it keeps the password out of logs and casual reads, not from
        code on the head. What limits a job on the head is the account: its
        own, with the autoscaler role, unless head_vcenter_account: operator.
        """
        head_account = HeadAccount(self.provider_config, self.credentials)
        problems = head_account.problems()
        if problems:
            raise ClusterConfigError(problems)
        config = copy.deepcopy(cluster_config)
        provider = config["provider"]
        provider.update(vcenter_hostname=self.credentials.hostname, vcenter_username=head_account.username,
                        vcenter_port=self.credentials.port, vcenter_validate_certs=self.credentials.validate_certs,
                        vcenter_request_timeout=self.credentials.request_timeout)
        provider["vcenter_password_vault"] = encrypt_secret(
            head_account.password, self.provider_config["ssh_private_key_file"])
        if self.credentials.ca_path:
            provider["vcenter_ca_path"] = HEAD_CA
        if head_account.mode == OWN_ACCOUNT:
            _pin_local_images(config)
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


class FailedCreateCleanup:
    """Removes what failed create runs left, once vCenter answers again.

    A create run that timed out, or whose vCenter stopped answering, may
    leave VMs that node_deploy could not remove. Their request ids are kept
    here; the refresh leaves their VMs out of the nodes it reports (Ray
    retries the launch under a new request id, so they would be duplicates),
    and after a refresh that reached vCenter one background run of
    terminate_nodes.yml removes every VM of those requests (node_delete's
    request_ids). A request is forgotten once that run succeeds.
    """

    def __init__(self, provider):
        self._provider = provider
        self._requests = set()
        self._lock = threading.Lock()
        self._running = False

    def add(self, request_id):
        with self._lock:
            self._requests.add(request_id)

    def owns(self, name):
        with self._lock:
            return any(f"-{request_id}-" in name for request_id in self._requests)

    def pending(self):
        with self._lock:
            return sorted(self._requests)

    def start_if_due(self):
        with self._lock:
            if self._running or not self._requests:
                return
            self._running = True
            requests = sorted(self._requests)
        threading.Thread(target=self._remove, args=(requests,), name="ray-vsphere-cleanup", daemon=True).start()

    def _remove(self, requests):
        try:
            runner = self._provider._run("terminate_nodes", {
                "ray_provider_cluster_name": self._provider.cluster_name,
                "ray_provider_private_key": self._provider.private_key_path(), "ray_provider_request_ids": requests})
            removed = published_stats(runner).get("ray_provider_deleted", [])
            with self._provider._lock:
                self._provider._deleted_names.update(removed)
            logger.info("ray_vsphere: removed what failed launches %s left: %s", ", ".join(requests),
                        ", ".join(removed) or "nothing")
            with self._lock:
                self._requests.difference_update(requests)
        except Exception as error:  # noqa: BLE001 - tried again after the next refresh
            logger.warning("ray_vsphere: removing what failed launches %s left failed, trying again: %s",
                           ", ".join(requests), error)
        finally:
            with self._lock:
                self._running = False


def _pin_local_images(config):
    """Give every local image without one its ovf_sha256, so that the head's autoscaler never reads it.

    node_deploy finds the template by ovf_sha256 without opening the image,
    while a local image it opens (to hash it) it also checks against the
    placement with CreateImportSpec, which needs VApp.Import on the pool: a
    privilege the head's own account lacks. Hashed here, on the operator's
    machine, at every `ray up` (the cache node_deploy keeps spares a second
    hash of an unchanged file, not the manifest check's read), so a changed
    file is never taken for the template of the old one.
    """
    hashes = {}
    for section in _sections_with_local_image(config):
        if section.get("ovf_sha256"):
            continue
        image = local_path(section["ovf"])
        if image not in hashes:
            with _ovf_package.OvfPackage(image, hash_cache=_ovf_package.HashCache()) as package:
                hashes[image] = package.key()[len(_ovf_package.SHA256_KEY):]
        section["ovf_sha256"] = hashes[image]


def _head_login_problems(credentials, head_account):
    """The head's own account logs in, on the operator's machine, before anything is made for it."""
    client = VcenterClient(credentials.hostname, head_account.username, head_account.password, port=credentials.port,
                           validate_certs=credentials.validate_certs, request_timeout=credentials.request_timeout,
                           ca_path=credentials.ca_path)
    try:
        client.connect()
    except RayVsphereError as error:
        if error.details.get("fault") == "InvalidLogin":
            return [f"{' / '.join(HEAD_ACCOUNT_VARIABLES)}: vCenter {credentials.hostname}:{credentials.port} "
                    f"rejected the login of the head's account {head_account.username!r}: wrong username or password"]
        return [f"{' / '.join(HEAD_ACCOUNT_VARIABLES)}: the head's account {head_account.username!r} could not "
                f"log in: {error}"]
    client.disconnect()
    return []


def _create_run_timeout(settings):
    """node_deploy's own deploy and IP timeouts, plus the rest of the play."""
    def setting(option):
        return settings.get(option) or DEPLOY_OPTIONS[option]["default"]
    return setting("timeout") + setting("ip_timeout") + CREATE_RUN_MARGIN_S


def _node_folder(settings):
    """(datacenter, VM folder path) of one node type's settings; "" is the datacenter's VM folder."""
    return (settings.get("datacenter") or "", (settings.get("vm_folder") or "").strip("/"))


def _record_key_path(cluster_name, private_key):
    """Where bootstrap_config found the cluster's key, for the commands Ray runs without it (private_key_path)."""
    record = STATE_DIR / cluster_name / "cluster-key-path"
    record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record.write_text(str(private_key))


def _recorded_key_path(cluster_name):
    try:
        return (STATE_DIR / cluster_name / "cluster-key-path").read_text().strip() or None
    except FileNotFoundError:
        return None


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
