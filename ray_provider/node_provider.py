"""A Ray NodeProvider whose nodes are vSphere VMs made by the collection's playbooks.

Load it from a cluster YAML:

    provider:
      type: external
      module: ray_provider.node_provider.VsphereNodeProvider

Writes (create, terminate, tags) run playbooks/provider/*.yml through
ansible-runner (runs.py), so the autoscaler changes vCenter exactly as
`ansible-playbook` and AWX do; created nodes' IPs come from what those
playbooks publish with set_stats. State lives in vCenter (custom attributes),
so the head's autoscaler, a restarted head and `ray down` elsewhere all see
the same cluster.

Reads are the hot path: the autoscaler asks node_tags and internal_ip about
ten times per node every 5 s. They are answered from memory (node_cache.py),
which a read of vCenter (node_reader.py) refreshes at most once per
REFRESH_INTERVAL_S. What failed creates left is hidden and removed, unless Ray
adopted it (janitor.py). Stopped nodes are stopped_nodes.py's; what `ray up`
writes into the config, head_config.py's.
This class only wires them to Ray's calls.
"""

import atexit
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from ray_provider import head_config, host_keys, progress, stopped_nodes, summary
from ray_provider.capacity_backoff import CapacityBackoff
from ray_provider.config import ClusterConfigError, HeadAccount, VcenterCredentials, node_folder, node_settings
from ray_provider.ip_policy import IpPolicies
from ray_provider.janitor import FailedCreateJanitor
from ray_provider.node_cache import NodeCache
from ray_provider.node_reader import NodeReader
from ray_provider.runner import published_stats
from ray_provider.runs import PlaybookFailed, PlaybookRuns, create_run_timeout
from ray_provider.vcenter_session import LoginDeferred, VcenterSession

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_auth, _records

logger = logging.getLogger(__name__)

# Below the autoscaler's 5 s update interval: one vCenter read per update,
# however many times Ray lists nodes within it.
REFRESH_INTERVAL_S = 2.0
# set_node_tags calls of one updater transition arrive together; one run writes them. Ray answers from the
# cache meanwhile: vCenter's copy is for a restarted head and `ray down`. At 1 s, a scale-up's status changes
# (four per node in its first minute) kept a playbook run going without pause on the head while its GCS
# registered the new workers, and some timed out (measured: docs/measured.md, provider_vs_playbook.py).
TAG_BATCH_DELAY_S = 10.0
# After a failed tag write, before the next: the tags stay in memory meanwhile.
TAG_RETRY_DELAY_S = 5.0
# ansible-runner's private data dirs and the cluster's records; RAY_VSPHERE_STATE_DIR moves them (tests do).
STATE_DIR = Path(os.environ.get("RAY_VSPHERE_STATE_DIR", "~/.ray-vsphere")).expanduser()
# Ray's own tags that node_deploy takes as options of their own.
DEDICATED_TAGS = (_records.CLUSTER_NAME, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE)


class VsphereNodeProvider(NodeProvider):
    """Ray nodes as vSphere VMs; thread-safe (Ray calls it from its loop, launcher and updater threads)."""

    def __init__(self, provider_config, cluster_name):
        super().__init__(provider_config, cluster_name)
        self.credentials = VcenterCredentials(provider_config)
        self.playbooks = PlaybookRuns(STATE_DIR, cluster_name, self.credentials)
        # Each node's address is picked by its node type's preferred_cidr and ignored_cidrs, as node_deploy did.
        self.ip_policies = IpPolicies(provider_config)
        self.cache = NodeCache(address=self.ip_policies.address)
        self.janitor = FailedCreateJanitor(self.cache)
        self.capacity = CapacityBackoff()  # types whose last launch found no room: answered at once for a while
        # The nodes' recorded host keys, which every SSH connection to a node is checked against.
        self.known_hosts = host_keys.KnownHosts(STATE_DIR / cluster_name / host_keys.KNOWN_HOSTS_FILE)
        self.host_key_removals = host_keys.PendingRemovals()  # ride along with the next tag write
        vcenter_session = VcenterSession(self.credentials, self.credentials.request_timeout)
        self._cluster_key = None    # the _ray_auth.ClusterKey the reads verify nodes with, read on first use
        # (datacenter, VM folder) of every node type: what bootstrap_config found, else the provider's own.
        folders = set(tuple(pair) for pair in provider_config.get("node_folders") or [])
        folders.add(node_folder(node_settings(provider_config, {})))
        self.reader = NodeReader(vcenter_session, self.cluster_key, folders)
        self._refresh_state = threading.Condition()  # guards the three below; never held over I/O
        self._refreshing = False               # one vCenter read at a time; others answer from the cache
        self._last_refresh = float("-inf")     # when the last read, successful or not, ended
        self._has_view = threading.Event()     # set once a read succeeded: the cache is vCenter's view
        self._tags_due = threading.Condition()
        self._tag_write_lock = threading.Lock()
        self._tag_writer = threading.Thread(target=self._write_tags_forever, name="ray-vsphere-tags", daemon=True)
        self._tag_writer.start()
        # `ray up` exits right after its updater marks the head up-to-date.
        atexit.register(self._write_tags_at_exit)

    @property
    def vcenter_session(self):
        """The provider's one vCenter session: its reads', and the login back-off its playbook runs respect."""
        return self.reader.vcenter_session

    @vcenter_session.setter
    def vcenter_session(self, session):
        self.reader.vcenter_session = session

    @property
    def full_reads(self):
        return self.reader.full_reads

    @property
    def _watch(self):
        return self.reader.watch

    # ----- read path: memory only, except the rate-limited refresh -----

    def non_terminated_nodes(self, tag_filters):
        self._refresh_if_stale()
        return self.cache.non_terminated(tag_filters)

    def is_running(self, node_id):
        return self.cache.is_running(node_id)

    def is_terminated(self, node_id):
        return self.cache.is_terminated(node_id)

    def node_tags(self, node_id):
        return self.cache.tags(node_id)

    def internal_ip(self, node_id):
        return self.cache.ip(node_id)

    def external_ip(self, node_id):
        return self.internal_ip(node_id)

    def _refresh_if_stale(self):
        """Read vCenter if the cache is older than REFRESH_INTERVAL_S, holding no lock over the read.

        A read already under way is not waited for (its result lands in the
        cache), unless no read has succeeded yet: then there is nothing to
        answer from, and an empty answer would tell Ray the cluster has no
        nodes, so the caller waits for that read, and reads itself if it
        failed. A failed read after that keeps the last view and logs one
        line; the next tick tries again. The read is bounded by the request
        timeout, so a silent vCenter holds up Ray's loop for that long at most.
        """
        with self._refresh_state:
            while True:
                if not self._refreshing:
                    if self._has_view.is_set() and time.monotonic() - self._last_refresh < REFRESH_INTERVAL_S:
                        return
                    self._refreshing = True
                    break
                if self._has_view.is_set():
                    return
                self._refresh_state.wait()
        try:
            self._refresh()
        except Exception as error:  # noqa: BLE001 - the last view is kept, the failure logged, next tick retries
            if not self._has_view.is_set():
                raise
            if not isinstance(error, LoginDeferred):  # a deferred login was logged when it was rejected
                logger.warning("ray_vsphere: reading vCenter failed, keeping the nodes read before: %s", error)
        finally:
            with self._refresh_state:
                self._refreshing = False
                self._last_refresh = time.monotonic()
                self._refresh_state.notify_all()

    def _refresh(self):
        started = self.cache.read_started()
        records = self._list_cluster_nodes()
        self.known_hosts.learn_read(records)
        self.cache.apply_read(self.janitor.visible(records), started)
        self._has_view.set()
        self.janitor.start_if_due(self._remove_leftovers)

    def _list_cluster_nodes(self):
        """The cluster's node records, from the NodeWatch: changes only, or everything on start and after a loss."""
        return self.reader.read()

    def private_key_path(self):
        """The cluster's private SSH key here: the operator's file, or on the head ~/ray_bootstrap_key.pem.

        Ray gives the provider a config bootstrap_config never saw for some
        commands (`ray get-head-ip`, `ray get-worker-ips`): then the key is the
        one the last bootstrap of this cluster here recorded.
        """
        if self.provider_config.get("ssh_private_key_file"):
            return str(Path(self.provider_config["ssh_private_key_file"]).expanduser())
        recorded = head_config.recorded_key_path(STATE_DIR, self.cluster_name)
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

    def _run(self, playbook, extravars, **options):
        """A playbook run, unless vCenter is refusing the password: its modules would log in with it too."""
        self.vcenter_session.backoff.check(self.vcenter_session.who)
        try:
            return self.playbooks.run(playbook, extravars, **options)
        except PlaybookFailed as error:
            if error.login_rejected:
                self.vcenter_session.note_rejected_login(f"{playbook}: {'; '.join(error.messages)}")
            raise

    def _cluster_vars(self):
        return {"ray_provider_cluster_name": self.cluster_name, "ray_provider_private_key": self.private_key_path()}

    def _folder_vars(self):
        """Where node_tags and node_delete look: the node types' VM folders, when they are in one datacenter.

        Else (folders of several datacenters) they sweep all of vCenter, by the keys that tell a node only.
        """
        folders = self.reader.folders()
        datacenters = set(datacenter for datacenter, _ in folders)
        if len(datacenters) != 1 or not next(iter(datacenters)):
            return {}
        return {"ray_provider_datacenter": next(iter(datacenters)),
                "ray_provider_vm_folders": sorted(folder for _, folder in folders)}

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
        self.reader.add_folder(node_folder(settings))
        node_type = tags.get(TAG_RAY_USER_NODE_TYPE, "")
        self.capacity.check(node_type)
        self.ip_policies.learn(node_type, node_config)
        request_id = uuid.uuid4().hex[:8]
        restart = stopped_nodes.claim(self.cache, self.provider_config, tags, count)
        try:
            return self._launch(tags, count, settings, node_type, request_id, restart)
        finally:
            self.cache.release_claimed(restart)

    def _launch(self, tags, count, settings, node_type, request_id, restart):
        """One create_nodes.yml run: the stopped nodes in restart started again, the rest of count deployed."""
        extravars = {
            **self._cluster_vars(), **(self._folder_vars() if restart else {}),
            "ray_provider_node_kind": tags.get(TAG_RAY_NODE_KIND, "worker"),
            "ray_provider_node_type": node_type,
            "ray_provider_count": count - len(restart),
            "ray_provider_restart_uuids": restart,
            "ray_provider_request_id": request_id,
            "ray_provider_tags": {key: value for key, value in tags.items() if key not in DEDICATED_TAGS},
            "ray_provider_node": settings,
            "ray_provider_public_key": self._public_key(),
        }
        try:
            runner = self._run("create_nodes", extravars, timeout=create_run_timeout(settings))
        except LoginDeferred as error:
            raise NodeLaunchException("LoginRejected", str(error), sys.exc_info()) from error
        except PlaybookFailed as error:
            # node_deploy removes what a failed call made, unless it was stopped or lost vCenter on the way:
            # then what it left goes once vCenter answers again (unless Ray adopted it meanwhile).
            logger.warning("ray_vsphere: launching %d %s node(s), request %s, failed: %s", count, node_type or "worker",
                           request_id, error)
            if not error.login_rejected:
                self.janitor.add(request_id, tags)
            failure = NodeLaunchException(error.launch_category(), str(error), sys.exc_info())
            self.capacity.record(node_type, failure)
            raise failure from error
        created = published_stats(runner).get("ray_provider_nodes", [])
        self.known_hosts.learn_created(created)
        self.cache.add_created(created)
        progress.say(", ".join(f"{'started again' if r['uuid'] in restart else 'created'} {r['name']} ({r['ip']})"
                               for r in created))
        return {record["uuid"]: record for record in created}

    def _remove_leftovers(self, removal):
        """The janitor's removal: one terminate_nodes.yml run; the names it deleted."""
        runner = self._run("terminate_nodes", {**self._cluster_vars(), **self._folder_vars(),
                                               "ray_provider_request_ids": removal.request_ids,
                                               "ray_provider_keep_uuids": removal.keep_uuids})
        removed = published_stats(runner).get("ray_provider_deleted", [])
        self.reader.forget(uuids=removal.uuids, names=removed)
        return removed

    def terminate_node(self, node_id):
        return self.terminate_nodes([node_id])

    def terminate_nodes(self, node_ids):
        wanted = self.cache.begin_terminate(node_ids)
        if not wanted:
            return None
        stop, delete = stopped_nodes.terminate_plan(self.cache, wanted, stopped_nodes.enabled(self.provider_config))
        try:
            self._run("terminate_nodes", {**self._cluster_vars(), **self._folder_vars(), "ray_provider_uuids": delete,
                                          **({"ray_provider_stop_uuids": stop} if stop else {})})
        except (PlaybookFailed, LoginDeferred):
            self.cache.terminate_failed(wanted)
            raise
        self.cache.stopped_by_provider(stop)
        self.cache.terminated(delete)
        self.reader.forget(uuids=delete)
        self.capacity.node_terminated()
        return None

    def set_node_tags(self, node_id, tags):
        if self.cache.set_tags(node_id, tags):
            with self._tags_due:
                self._tags_due.notify()

    def post_process(self):
        with self._tags_due:
            self._tags_due.notify()

    def write_tags_now(self):
        """Write every tag change made so far to vCenter, in one run."""
        with self._tag_write_lock:
            batch = self.cache.take_unwritten_tags()
            removals = self.host_key_removals.take()
            if not batch and not removals:
                return
            try:
                self._run("set_node_tags", {
                    **self._cluster_vars(),
                    **self._folder_vars(),
                    "ray_provider_tag_updates": [{"uuid": node_id, "tags": tags} for node_id, tags in batch.items()],
                    **host_keys.removal_vars(removals),
                })
            except (PlaybookFailed, LoginDeferred):
                self.cache.give_back_unwritten_tags(batch)  # again next time, under anything newer
                host_keys.removals_failed(removals)
                raise
            self.cache.tags_written(batch)

    def _write_tags_at_exit(self):
        try:
            self.write_tags_now()
        except (PlaybookFailed, LoginDeferred):
            logger.exception("ray_vsphere: the last node tags did not reach vCenter")

    def _write_tags_forever(self):
        while True:
            with self._tags_due:
                while not self.cache.has_unwritten_tags() and not self.host_key_removals.pending():
                    self._tags_due.wait()
            time.sleep(TAG_BATCH_DELAY_S)
            try:
                self.write_tags_now()
            except Exception:  # noqa: BLE001 - kept for the next batch; the thread must live on
                logger.exception("ray_vsphere: writing node tags failed; retrying with the next batch")
                time.sleep(TAG_RETRY_DELAY_S)

    def get_command_runner(self, log_prefix, node_id, auth_config, cluster_name, process_runner, use_internal_ip,
                           docker_config=None):
        """Ray's SSH runner, held to the host key vCenter recorded for the node (host_keys.py)."""
        return host_keys.verified_command_runner(
            self.known_hosts, self._remove_host_private_key, docker_config, log_prefix=log_prefix, node_id=node_id,
            provider=self, auth_config=auth_config, cluster_name=cluster_name, process_runner=process_runner,
            use_internal_ip=use_internal_ip)

    def _remove_host_private_key(self, node_id):
        """The node answered with its recorded host key, so cloud-init has read it: vCenter need not show it on."""
        self.host_key_removals.add(node_id)
        with self._tags_due:
            self._tags_due.notify()

    def _public_key(self):
        return Path(self.provider_config["ssh_public_key_file"]).expanduser().read_text().strip()

    # ----- cluster config (head_config.py) -----

    @staticmethod
    def bootstrap_config(cluster_config):
        """Check the config (keys, then vCenter read-only), and give it the cluster's SSH key."""
        summary.vsphere_block(cluster_config)
        return head_config.bootstrap_config(cluster_config, STATE_DIR)

    def prepare_for_head_node(self, cluster_config):
        """The config the head's autoscaler runs with: the head's own account, its password as an Ansible Vault blob."""
        return head_config.prepare_for_head_node(cluster_config, self.provider_config, self.credentials)

    @staticmethod
    def fillout_available_node_types_resources(cluster_config):
        """Fill a node type's missing CPU resource from its node_config.cpus."""
        return head_config.fillout_available_node_types_resources(cluster_config)


__all__ = ["VsphereNodeProvider", "ClusterConfigError", "PlaybookFailed"]
