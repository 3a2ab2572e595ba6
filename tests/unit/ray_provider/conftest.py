"""The provider with its playbook runs and vCenter reads faked, for the provider's fast unit tests.

Mocks are for these unit tests only: the tests under tests/provider/ run the
same provider against vcsim with real playbooks and real Ray.
"""

import threading
from types import SimpleNamespace

import pytest

from ray_provider import node_provider
from ray_provider.node_provider import VsphereNodeProvider
from ray_provider.runs import PlaybookFailed

PROVIDER = {"type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider",
            "ovf": "https://images.example.com/ray.ova", "datacenter": "DC0", "cluster": "C0", "datastore": "DS0",
            "vcenter_hostname": "vcenter.example.com", "vcenter_username": "ray"}
HEAD_ACCOUNT = {"RAY_VSPHERE_HEAD_USER": "ray-autoscaler@vsphere.local", "RAY_VSPHERE_HEAD_PASSWORD": "h3ad-Passw0rd"}


def record(uuid, name, ip="10.0.0.1", power_state="poweredOn", **tags):
    return {"uuid": uuid, "name": name, "ip": ip, "power_state": power_state,
            "tags": {"ray-cluster-name": "unit", "ray-node-type": "worker", **tags}}


def failed_run(message, **fields):
    """An ansible-runner run whose deploy task failed with `message` and the module's structured `fields`."""
    return SimpleNamespace(status="failed", events=[{"event": "runner_on_failed", "event_data": {
        "task": "Deploy the nodes", "res": {"msg": message, **fields}}}])


class FakeRuns:
    """Records every playbook run; create_nodes.yml publishes `count` new nodes.

    fail_with: (message, {structured fields}) every run fails with. hold: a
    playbook name whose runs signal `started` and wait for `release`.
    """

    def __init__(self):
        self.calls = []
        self.timeouts = []
        self.fail_with = None
        self.hold = None
        self.started, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def run(self, playbook, extravars, timeout=None):
        with self._lock:
            self.calls.append((playbook, extravars))
            self.timeouts.append(timeout)
            index = len(self.calls)
        if playbook == self.hold:
            self.started.set()
            assert self.release.wait(30), "the test never released the run"
        if self.fail_with:
            message, fields = self.fail_with
            raise PlaybookFailed(playbook, failed_run(message, **fields))
        stats = {}
        if playbook == "create_nodes":
            # node_power's records of the stopped nodes started again (restart_uuids), then node_deploy's.
            stats["ray_provider_nodes"] = [record(uuid, f"unit-worker-{uuid}", ip=f"10.2.{index}.{i}",
                                                  **extravars["ray_provider_tags"])
                                           for i, uuid in enumerate(extravars.get("ray_provider_restart_uuids", []))]
            stats["ray_provider_nodes"] += [record(f"new-{index}-{i}", f"unit-worker-{index}-{i}", ip=f"10.1.{index}.{i}")
                                            for i in range(extravars["ray_provider_count"])]
        if playbook == "terminate_nodes":
            stats["ray_provider_deleted"] = []
        return SimpleNamespace(status="successful", events=[
            {"event": "playbook_on_stats", "event_data": {"artifact_data": stats}}])

    def playbooks(self):
        return [playbook for playbook, _ in self.calls]


class FakeVcenter:
    """The node records a read returns; a read can be held at its start (entered / release) to race it."""

    def __init__(self, records):
        self.records = records
        self.reads = 0
        self.hold = False
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail_with = None
        self.failures_left = None  # how many reads fail_with fails; None: every one

    def read(self):
        self.reads += 1
        answer = [dict(r, tags=dict(r["tags"])) for r in self.records]  # what vCenter holds as the read begins
        if self.hold:
            self.entered.set()
            assert self.release.wait(30), "the test never released the read"
        if self.fail_with and self.failures_left != 0:
            if self.failures_left is not None:
                self.failures_left -= 1
            raise self.fail_with
        return answer


@pytest.fixture
def provider(monkeypatch, tmp_path):
    monkeypatch.setenv("VMWARE_PASSWORD", "not-a-real-password")
    for name, value in HEAD_ACCOUNT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(node_provider, "TAG_BATCH_DELAY_S", 0.05)
    monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
    public_key = tmp_path / "key.pub"
    public_key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUnitTestKey unit\n")
    provider = VsphereNodeProvider(dict(PROVIDER, ssh_public_key_file=str(public_key),
                                        ssh_private_key_file=str(tmp_path / "key")), "unit")
    provider.playbooks = FakeRuns()
    provider.vcenter = FakeVcenter([record("a", "unit-worker-a"), record("b", "unit-worker-b", ip=None)])
    monkeypatch.setattr(provider, "_list_cluster_nodes", provider.vcenter.read)
    return provider
