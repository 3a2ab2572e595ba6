"""The provider against a vCenter that misbehaves: vcsim SIGSTOPped, a wrong password, runs pruned in flight.

Real playbook runs, real vcsim, test guests for the IPs. vcsim delays every
clone by CLONE_DELAY_MS so a create is in flight long enough to be hit; it
runs clones of one template one after another inside the CloneVM_Task call.
What a test only sets up runs with SETUP_REQUEST_TIMEOUT_S: on a loaded
2-core machine vcsim can stall for seconds, which is not the fault under test.
"""

import threading
import time

import pytest
from ray.autoscaler.node_launch_exception import NodeLaunchException

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes
from ray_provider import node_provider, runs
from ray_provider.node_provider import VsphereNodeProvider
from ray_provider.vcenter_session import LoginBackoff, VcenterSession
from testbed import simulator
from testbed.guests import make_key_pair

pytestmark = pytest.mark.slow

CLONE_DELAY_MS = 1500
REQUEST_TIMEOUT_S = 5          # the refresh's, under test
CREATE_REQUEST_TIMEOUT_S = 15  # the create's modules', under test: above a few serialized clones
SETUP_REQUEST_TIMEOUT_S = 60
WORKER = {"ray-node-type": "worker", "ray-user-node-type": "worker"}


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    with simulator.Vcsim(method_delay={"CloneVm": CLONE_DELAY_MS}, log_failed_logins=True) as sim:
        yield sim


@pytest.fixture
def make_provider(vcsim, guest_simulator, test_ova, tmp_path, monkeypatch):
    key = make_key_pair(tmp_path / "ray-key")
    for name, value in vcsim.endpoint.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
    made = []

    def make(cluster_name, **provider_keys):
        provider = VsphereNodeProvider({
            "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider",
            "ovf": str(test_ova), "datacenter": simulator.DATACENTER, "cluster": simulator.CLUSTERS[0],
            "resource_pool": "DC0_C0_RP1", "vm_folder": simulator.VM_FOLDER, "datastore": simulator.DATASTORES[0],
            "ip_timeout": 60, "vcenter_request_timeout": SETUP_REQUEST_TIMEOUT_S,
            "ssh_private_key_file": str(key), "ssh_public_key_file": f"{key}.pub", **provider_keys,
        }, cluster_name)
        made.append(provider)
        return provider
    yield make
    vcsim.resume()
    for provider in made:  # nothing left for the next test (a provider that never logged in made nothing)
        if not provider._has_view.is_set():
            continue
        provider._last_refresh = float("-inf")
        nodes = provider.non_terminated_nodes({})
        if nodes:
            provider.terminate_nodes(nodes)


def vm_names(vcsim, prefix):
    service_instance = vcsim.endpoint.connect()
    try:
        return sorted(name for name in (props["name"] for props in _nodes.Inventory(service_instance).vms.values())
                      if name.startswith(prefix))
    finally:
        service_instance.content.sessionManager.Logout()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def test_a_silent_vcenter_during_a_refresh_costs_one_timeout_and_the_last_view_is_kept(make_provider, vcsim):
    created = make_provider("silent-read").create_node({}, WORKER, 1)
    [node_id] = created
    provider = make_provider("silent-read", vcenter_request_timeout=REQUEST_TIMEOUT_S)  # a head's, say
    assert provider.non_terminated_nodes({}) == [node_id]
    vcsim.pause()
    try:
        for _ in range(2):  # two ticks, each reading vCenter again
            provider._last_refresh = float("-inf")
            started = time.monotonic()
            assert provider.non_terminated_nodes({}) == [node_id]
            took = time.monotonic() - started
            assert took < REQUEST_TIMEOUT_S + 1.5, f"a refresh against a silent vCenter took {took:.1f} s"
            assert provider.internal_ip(node_id) == created[node_id]["ip"]
    finally:
        vcsim.resume()
    provider._last_refresh = float("-inf")
    assert provider.non_terminated_nodes({}) == [node_id]
    assert provider.vcenter_session.logins == 1  # the session outlived the silence: no new login


def test_a_create_cut_short_by_a_silent_vcenter_leaves_no_orphan_and_its_retry_no_duplicate(make_provider, vcsim):
    provider = make_provider("silent-create", vcenter_request_timeout=CREATE_REQUEST_TIMEOUT_S)
    outcome = []

    def create():
        try:
            outcome.append(provider.create_node({}, WORKER, 2))
        except NodeLaunchException as error:
            outcome.append(error)
    creating = threading.Thread(target=create)
    creating.start()
    # Silent once the first clone exists: both clones are under way (parallel), the second may be too.
    wait_until(lambda: vm_names(vcsim, "silent-create-"), 60, "a clone of the create")
    vcsim.pause()
    try:
        creating.join(120)
        assert not creating.is_alive()
    finally:
        vcsim.resume()
    [failure] = outcome
    assert isinstance(failure, NodeLaunchException), failure
    assert f"did not answer within {CREATE_REQUEST_TIMEOUT_S} s" in failure.description
    [request_id] = provider.janitor.pending()
    # vCenter answers again: the refresh leaves the request's VMs out, and removes them in the background.
    provider._last_refresh = float("-inf")
    assert provider.non_terminated_nodes({}) == []
    wait_until(lambda: not provider.janitor.pending(), 120, "the cleanup of the failed create")
    assert vm_names(vcsim, "silent-create-") == []
    # Ray retries the launch: exactly its two nodes exist, none of the first try's.
    retried = provider.create_node({}, WORKER, 2)
    names = vm_names(vcsim, "silent-create-")
    assert names == sorted(node["name"] for node in retried.values()) and len(names) == 2
    assert not [name for name in names if request_id in name]
    provider._last_refresh = float("-inf")
    assert sorted(provider.non_terminated_nodes({})) == sorted(retried)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_wrong_password_costs_at_most_three_failed_logins_in_five_minutes(make_provider, vcsim, monkeypatch):
    """Five minutes of refreshes every 2 s on an injected clock: the real back-off policy, logins counted at vcsim."""
    clock = FakeClock()
    monkeypatch.setenv("VMWARE_PASSWORD", "a-rotated-password")
    provider = make_provider("wrong-password")
    provider.vcenter_session = VcenterSession(provider.credentials, SETUP_REQUEST_TIMEOUT_S,
                                              backoff=LoginBackoff(clock=clock))
    before = len(vcsim.failed_logins())
    launches = 0
    for tick in range(0, 300, 2):
        clock.now = 1000.0 + tick
        with pytest.raises(Exception, match="rejected the login|not trying again"):
            provider.non_terminated_nodes({})
        if provider.vcenter_session.backoff.seconds_left() > 0 and launches < 3:
            with pytest.raises(NodeLaunchException, match="not trying again"):  # no run, so no login either
                provider.create_node({}, WORKER, 1)
            launches += 1
    # vcsim logs a rejected login before it answers; the file may lag a little behind.
    wait_until(lambda: len(vcsim.failed_logins()) - before >= 3, 10, f"vcsim logged {vcsim.failed_logins()[before:]}")
    failed = vcsim.failed_logins()[before:]
    assert failed == [vcsim.username] * 3, failed  # at 0, 60 and 180 s; the next is due at 420 s
    assert provider.playbooks.count == 0


def test_a_create_in_flight_returns_its_nodes_while_more_runs_finish_than_are_kept(make_provider, vcsim, monkeypatch):
    # KEPT_RUNS (30) scaled down to 1, and 40 tag runs to as many as end while the create runs (at least 2):
    # runs cost CPU-seconds each on this machine.
    monkeypatch.setattr(runs, "KEPT_RUNS", 1)
    provider = make_provider("pruning")
    [head] = provider.create_node({}, {"ray-node-type": "head", "ray-user-node-type": "head"}, 1)
    outcome = []
    creating = threading.Thread(target=lambda: outcome.append(provider.create_node({}, WORKER, 4)))
    creating.start()
    finished_meanwhile = 0
    while creating.is_alive():
        provider.set_node_tags(head, {"ray-node-status": f"update-{finished_meanwhile}"})
        provider.write_tags_now()
        finished_meanwhile += creating.is_alive()
    creating.join()
    assert finished_meanwhile >= 2, "fewer runs ended during the create than are pruned: nothing was tested"
    [created] = outcome
    assert len(created) == 4 and all(record["ip"] for record in created.values())
    run_dirs = sorted(path.name for path in provider.playbooks.root.iterdir())
    assert len(run_dirs) == 1  # the newest finished run: the create's was pruned once it had ended
