"""The provider's ansible-runner runs of playbooks/provider/*.yml: run folders, pruning, and what failed.

What a failed run means for Ray is read from the structured fields the
modules return beside `msg` (run_module passes a RayVsphereError's details:
`fault`, the vSphere fault's type name; `timed_out`; `failure`, one of
_client's FAILURE_* names), never from the English of a message, which may
change with any rewording.
"""

import dataclasses
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_tags
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import (
    FAILURE_GPU_CAPACITY, FAILURE_IP_POOL_EXHAUSTED, FAILURE_NO_IP_ADDRESS, FAILURE_PLACEMENT)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS

from ray_provider.progress import PROGRESS_FILE_VARIABLE, ProgressTail, say
from ray_provider.runner import run_playbook, task_results

# The collection's playbooks/provider/, by FQCN: found wherever ansible-core finds the collection.
PLAYBOOKS = "ray_vsphere.cluster.provider"
KEPT_RUNS = 30
# A run of terminate_nodes, set_node_tags or check_config that takes longer is stuck.
DEFAULT_RUN_TIMEOUT_S = 900
# Beyond node_deploy's own deploy and IP timeouts: Ansible's start and the play's other tasks.
CREATE_RUN_MARGIN_S = 300

# The category that says the placement lacks room now, as vSphere's Insufficient* faults name it (and EC2's
# InsufficientInstanceCapacity, the category Ray's AWS provider passes on): try later.
CAPACITY_CATEGORY = "InsufficientCapacity"
# NodeLaunchException categories by a failed result's `failure`. Ray 2.60 reads no category: the exception
# itself is what counts. v1 (autoscaler/_private/node_launcher.py, _launch_node's
# `except NodeLaunchException`) marks the node type unavailable in its NodeProviderAvailabilityTracker for
# AUTOSCALER_NODE_AVAILABILITY_MAX_STALENESS_S (30 min) or until one launches, and `ray status` lists it as
# "<type>: <category>" (_private/util.py, format_info_string); any other exception is not tracked at all. v2
# (v2/instance_manager/node_provider.py, _launch_nodes_by_type) turns any exception into a LaunchNodeError:
# the request becomes ALLOCATION_FAILED with the text as its reason (v2/instance_manager/reconciler.py,
# _try_resolve_pending_allocation). Neither's default scheduler skips an unavailable type: both ask again
# at their next update while the demand lasts (v2's CloudResourceMonitor lowers a type's priority after
# ALLOCATION_TIMEOUT only): capacity_backoff.py acts on CAPACITY_CATEGORY.
# A static IP pool with no free address is full as a host without a free GPU is: nodes leaving free some.
LAUNCH_CATEGORIES = {FAILURE_NO_IP_ADDRESS: "NoIpAddress", FAILURE_PLACEMENT: "Placement",
                     FAILURE_GPU_CAPACITY: CAPACITY_CATEGORY, FAILURE_IP_POOL_EXHAUSTED: CAPACITY_CATEGORY}
# What is full now rather than wrong: not a problem of the config (check_failures).
CAPACITY_FAILURES = (FAILURE_GPU_CAPACITY, FAILURE_IP_POOL_EXHAUSTED)
# vSphere faults that mean the placement lacks room (vim.fault.Insufficient*, NoDiskSpace).
CAPACITY_FAULT_PREFIX = "Insufficient"
CAPACITY_FAULTS = ("NoDiskSpace", "OutOfSpace")
LOGIN_REJECTED_FAULT = "InvalidLogin"
# Of a failed task's stderr (a module that crashed) or a run's output without any failed task: the end says why.
OUTPUT_TAIL_CHARS = 1500
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def fault_name(result):
    """A failed result's vSphere fault type without its namespace (vim.fault.NoDiskSpace -> NoDiskSpace), or None."""
    fault = result.get("fault")
    return fault.split(".")[-1] if isinstance(fault, str) else None


class PlaybookFailed(RuntimeError):
    """A run that did not succeed: its failed results (with their structured fields), their messages, its folder.

    The text carries what the failed task said (msg, and the end of its stderr
    when a module crashed), or the end of the run's output when no task
    failed (a playbook that did not parse), and the run folder with the
    whole story (ansible-runner's artifacts). Secrets are masked there
    (runner.mask_secrets) before any of it is read.
    """

    def __init__(self, playbook, runner, timeout=None):
        self.run_timed_out = runner.status == "timeout"
        self.failures = failures(runner)
        self.run_dir = getattr(runner, "run_dir", None)
        self.messages = [text for text in (failure_text(failure) for failure in self.failures) if text] or [
            f"ansible-runner stopped it after {timeout} s (its run timeout)" if self.run_timed_out
            else f"ansible-runner status {runner.status}, no task failed; its output ends: "
                 f"{getattr(runner, 'output_tail', '') or '(nothing)'}"]
        folder = f" (run folder: {self.run_dir})" if self.run_dir else ""
        super().__init__(f"{playbook} failed: {'; '.join(self.messages)}{folder}")

    @property
    def login_rejected(self):
        return any(fault_name(failure) == LOGIN_REJECTED_FAULT for failure in self.failures)

    @property
    def timed_out(self):
        """The run, or a vCenter call in it, ran out of time: what it made may be left (janitor.py)."""
        return self.run_timed_out or any(failure.get("timed_out") for failure in self.failures)

    def launch_category(self):
        """NodeLaunchException's short category, for Ray's availability tracking."""
        for failure in self.failures:
            if failure.get("failure") in LAUNCH_CATEGORIES:
                return LAUNCH_CATEGORIES[failure["failure"]]
            fault = fault_name(failure) or ""
            if fault.startswith(CAPACITY_FAULT_PREFIX) or fault in CAPACITY_FAULTS:
                return CAPACITY_CATEGORY
        return "DeployFailed"


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """What the provider reads of an ansible-runner run, in memory: its dir may be pruned once it ended."""

    status: str
    events: list
    run_dir: object
    output_tail: str = ""


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

    def __init__(self, state_dir, cluster_name, credentials):
        # The name is part of a folder that runs are pruned from: never a path of its own.
        self.state_dir = state_dir
        self.root = state_dir / _ray_tags.check_name(cluster_name, "cluster_name") / "runs"
        self.credentials = credentials
        self.count = 0
        self._lock = threading.Lock()

    def run(self, playbook, extravars, raise_on_failure=True, timeout=DEFAULT_RUN_TIMEOUT_S):
        with self._lock:
            self.count += 1
            ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{self.count:05d}-{playbook}-{uuid.uuid4().hex[:6]}"
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        run_dir = self.root / ident
        run_dir.mkdir(mode=0o700, parents=True)
        in_flight = run_dir / self.IN_FLIGHT
        in_flight.write_text(str(os.getpid()))
        started = time.monotonic()
        progress_file = run_dir / "progress.jsonl"  # the modules' events while it runs (progress.py)
        try:
            environment = {**self.credentials.environment(), PROGRESS_FILE_VARIABLE: str(progress_file)}
            with ProgressTail(progress_file, playbook):
                runner = run_playbook(f"{PLAYBOOKS}.{playbook}", run_dir, extravars=extravars, timeout=timeout,
                                      envvars=environment, secret_vars=self.credentials.secret_vars())
            # ansible-runner reads its events from the artifacts when asked: read them while the dir is kept.
            finished = FinishedRun(runner.status, list(runner.events), run_dir,
                                   "" if runner.status == "successful" else _output_tail(runner))
        finally:
            in_flight.unlink(missing_ok=True)
        say(f"{playbook}: {finished.status} in {time.monotonic() - started:.1f} s")
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


def create_run_timeout(settings):
    """node_deploy's own deploy and IP timeouts, plus the rest of the play."""
    def setting(option):
        return settings.get(option) or DEPLOY_OPTIONS[option]["default"]
    return setting("timeout") + setting("ip_timeout") + CREATE_RUN_MARGIN_S


def check_failures(runner):
    """Problems by key from a failed check_config.yml run.

    No free GPU or pool address at the moment is not a problem of the config: `ray down`, `ray exec` or `ray up`
    again check it too, and must work while the cluster's workers hold every device or address (a launch then
    fails with its category).
    """
    if runner.status == "successful":
        return []
    problems = []
    found = failures(runner)
    config_failures = [failure for failure in found if failure.get("failure") not in CAPACITY_FAILURES]
    if found and not config_failures:
        return []
    for failure in config_failures:
        node_type = (failure.get("item") or {}).get("node_type")
        where = f"available_node_types.{node_type}.node_config" if node_type else "vCenter check"
        problems.append(f"{where}: {failure.get('msg')}")
    return problems or [f"the read-only vCenter check did not finish: ansible-runner status {runner.status}; its "
                        f"output ends: {runner.output_tail or '(nothing)'} (run folder: {runner.run_dir})"]


def failures(runner):
    """The results of failed tasks, or of their failed items where they loop (as the nodes role's deploy does)."""
    return [item for result in task_results(runner) if result["failed"]
            for item in result.get("results") or [result] if item.get("failed")]


def failure_text(failure):
    """What a failed task said: its msg, and the end of its stderr where a module crashed or a command failed."""
    stderr = (failure.get("module_stderr") or failure.get("stderr") or "").strip()
    if len(stderr) > OUTPUT_TAIL_CHARS:
        stderr = "..." + stderr[-OUTPUT_TAIL_CHARS:]
    parts = [failure.get("msg") or "", f"stderr: {stderr}" if stderr else ""]
    return "; ".join(part for part in parts if part)


def _output_tail(runner):
    """The end of a run's output (ansible-runner's artifacts/<ident>/stdout, secrets masked), without colours."""
    try:
        text = (Path(runner.config.artifact_dir) / "stdout").read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in ANSI_ESCAPE.sub("", text)[-OUTPUT_TAIL_CHARS:].splitlines()
                      if line.strip())
