"""A worker Ray adopted while its create was failing stays, and its task completes: issue 18's race, end to end.

vcsim stops answering the session that powers on the cluster's first worker
(-stall-session-after, testbed/vcsim/stall.go): the power-on is served, so
the VM exists, carries its tags and boots, while node_deploy on the head
waits for an answer that never comes and fails after the request timeout.
Meanwhile the head's autoscaler (v2, `ray up`'s default) lists the VM, adopts
it for its worker request and installs Ray on it. The provider's janitor
then decides about the failed create's VM: it must keep it, since Ray was
shown it, and a task running on it must complete. Everything is counted at
vcsim, or read from Ray and the head's monitor log, not from the provider.
"""

import shlex
import threading
import time

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _ray_auth
from testbed import ray_cluster
from testbed.guests import make_key_pair, ssh, vcsim_with_guests

pytestmark = pytest.mark.slow

CLUSTER = "adopted"
# The head's vCenter request timeout (its provider's and its runs' modules'); vcsim holds the stalled
# session's calls longer, then faults them unserved.
REQUEST_TIMEOUT_S = 15
STALL_MS = (REQUEST_TIMEOUT_S + 10) * 1000
RELEASE = "/tmp/release-the-task"

# A task that needs the worker's CPU (the head has none) and lasts until the test releases it, after the
# janitor has decided about the failed create's VM.
LONG_TASK = f"""
import json, os, socket, time, ray
ray.init(address="auto", logging_level="ERROR")

@ray.remote(num_cpus=1)
def hold():
    deadline = time.time() + 240
    while not os.path.exists({RELEASE!r}) and time.time() < deadline:
        time.sleep(1)
    return socket.gethostname(), os.path.exists({RELEASE!r})

print("RESULT " + json.dumps(ray.get(hold.remote())))
"""


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites):
    with vcsim_with_guests(stall_session_after=("PowerOnVM_Task", f"^{CLUSTER}-worker-", STALL_MS)) as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


def cluster_nodes(sim, key):
    service_instance = sim.endpoint.connect()
    try:
        return _nodes.list_nodes(service_instance, _ray_auth.ClusterKey(key.read_text(), CLUSTER))[0]
    finally:
        service_instance.content.sessionManager.Logout()


def monitor_log(head_ip, key):
    """The head's monitor log: Ray's monitor runs as the autoscaler's user, logging in its home (head_start)."""
    return ssh(head_ip, key, "sudo sh -c 'cat ~ray-autoscaler/logs/monitor*'").stdout


def wait_for(what, condition, timeout, interval=2.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)
    return value


def test_a_worker_ray_adopted_during_a_failed_create_is_kept_and_its_task_completes(testbed, tmp_path):
    sim, guests = testbed
    key = make_key_pair(tmp_path / "ray-key")
    state_dir = tmp_path / "state"
    config = ray_cluster.provider_cluster_yaml(
        tmp_path / "cluster.yaml", CLUSTER, key, max_workers=1,
        **{"provider.vcenter_request_timeout": REQUEST_TIMEOUT_S, "available_node_types.worker.max_workers": 1})
    try:
        up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config))
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        [head] = [node for node in cluster_nodes(sim, key) if node["tags"].get("ray-node-type") == "head"]
        head_ip = head["ip"]

        # The head's autoscaler launches min_workers (1): vcsim stops answering that create after its power-on.
        ray_cluster.wait_for_alive_nodes(head_ip, key, 2, timeout=240)
        [worker] = [node for node in cluster_nodes(sim, key) if node["tags"].get("ray-node-type") == "worker"]
        outcome = []

        def run_task():
            try:
                outcome.append(ray_cluster._python_on_head(head_ip, key, LONG_TASK, timeout=300))
            except RuntimeError as error:  # the worker went away under it
                outcome.append(error)
        task = threading.Thread(target=run_task)
        task.start()

        # The create failed (a vCenter call of its run timed out), and the janitor kept the VM Ray had adopted;
        # a janitor that removed it instead is caught as soon as the VM is gone from vcsim.
        def decided():
            if worker["uuid"] not in {node["uuid"] for node in cluster_nodes(sim, key)}:
                return "removed"
            text = monitor_log(head_ip, key)
            return "a VM of the failed launch" in text and text
        log = wait_for("the janitor's decision about the failed create's VM", decided, timeout=180)
        assert log != "removed", "the janitor removed the worker Ray had adopted, with a task running on it"
        assert "failed: create_nodes failed" in log and f"did not answer within {REQUEST_TIMEOUT_S} s" in log, log[-3000:]
        assert f"keeping {worker['name']} ({worker['uuid']}), a VM of the failed launch" in log, log[-3000:]
        assert "Ray was shown it" in log
        # Some refreshes later (the janitor acts right after one), with the task still running on the worker:
        time.sleep(10)
        assert worker["uuid"] in {node["uuid"] for node in cluster_nodes(sim, key)}, "the janitor removed Ray's node"
        assert ssh(worker["ip"], key, f"touch {shlex.quote(RELEASE)}").returncode == 0
        task.join(120)
        assert not task.is_alive()
        [(hostname, released)] = outcome  # (a RuntimeError here: the task failed)
        assert released, "the task ended before it was released"
        assert [hostname] == [guest.hostname for guest in guests.guests().values() if guest.address == worker["ip"]], \
            "the task ran on the adopted worker"
        assert worker["uuid"] in {node["uuid"] for node in cluster_nodes(sim, key)}
    finally:
        down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config))
        ray_cluster.close_ray_ssh_connections(CLUSTER)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_nodes(sim, key) == []
    # (on this loaded 2-core machine a guest's Ray can take a while to stop)
    wait_for("every guest to stop", lambda: guests.guests() == {}, timeout=60, interval=0.5)
