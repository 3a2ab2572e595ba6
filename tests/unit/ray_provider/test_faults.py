"""Faults the provider must ride out, with vCenter and ansible-runner faked or replaced by a silent socket.

The same faults against vcsim (SIGSTOPped, a wrong password counted at
vcsim, a create in flight while runs are pruned) are in
tests/provider/test_faults_vcsim.py.
"""

import json
import logging
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from pyVmomi import vim
from ray.autoscaler.node_launch_exception import NodeLaunchException

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, VcenterClient
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import MAX_NAME_LENGTH, request_names
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import CONNECTION_ARGUMENT_SPEC
from ray_provider import node_provider, runs
from ray_provider.config import ClusterConfigError, VcenterCredentials
from ray_provider.ip_policy import NODE_TYPE_IP_POLICIES, node_type_ip_policies
from ray_provider.runner import published_stats
from ray_provider.runs import PlaybookRuns
from ray_provider.vcenter_session import LoginBackoff, LoginDeferred, VcenterSession, VcenterUnresponsive
from conftest import PROVIDER, record

CREDENTIALS = VcenterCredentials({"vcenter_hostname": "vcenter.example.com", "vcenter_username": "ray"},
                                 environ={"VMWARE_PASSWORD": "wrong"})


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class RejectingClient:
    """A VcenterClient whose vCenter rejects every password; counts the logins it sees."""

    logins = 0

    def __init__(self, hostname, username, password, **options):
        self.hostname = hostname

    def connect(self):
        type(self).logins += 1
        raise RayVsphereError("vCenter %s:443 rejected the login of 'ray': wrong username or password" % self.hostname,
                              fault="InvalidLogin")


# ----- login back-off -----

def test_a_wrong_password_costs_at_most_three_logins_in_five_minutes_and_the_waits_grow(caplog):
    clock = FakeClock()
    RejectingClient.logins = 0
    session = VcenterSession(CREDENTIALS, 5, backoff=LoginBackoff(clock=clock), client_factory=RejectingClient)
    attempts_at = []
    caplog.set_level(logging.WARNING, logger="ray_provider.vcenter_session")
    for tick in range(0, 3600, 2):  # a provider refresh every 2 s for an hour
        clock.now = 1000.0 + tick
        before = RejectingClient.logins
        with pytest.raises((LoginDeferred, RayVsphereError)):
            session.call(lambda service_instance: None)
        if RejectingClient.logins > before:
            attempts_at.append(tick)
    assert attempts_at[:3] == [0, 60, 180]
    assert len([at for at in attempts_at if at < 300]) == 3
    # Waits double up to ten minutes: 60, 120, 240, 480, 600, 600...
    gaps = [later - earlier for earlier, later in zip(attempts_at, attempts_at[1:])]
    assert gaps == [min(60 * 2 ** i, 600) for i in range(len(gaps))]
    assert all(gap >= 60 for gap in gaps)
    # One line per attempt, saying what was rejected and when the next attempt comes.
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(attempts_at)
    assert "rejected the login" in lines[0] and "login attempt 1 failed, next attempt in 60 s" in lines[0]


class RotatedPasswordClient:
    """A client whose first login worked; vCenter then ended the session and refuses the re-login."""

    logins = 0

    def __init__(self, hostname, username, password, **options):
        self.service_instance = object()

    def connect(self):
        type(self).logins += 1
        return self


def test_a_relogin_refused_mid_call_starts_the_back_off_and_no_login_follows_at_once():
    clock = FakeClock()
    RotatedPasswordClient.logins = 0
    session = VcenterSession(CREDENTIALS, 5, backoff=LoginBackoff(clock=clock), client_factory=RotatedPasswordClient)

    def refused(service_instance):
        raise vim.fault.InvalidLogin(msg="Cannot complete login due to an incorrect user name or password.")
    with pytest.raises(vim.fault.InvalidLogin):
        session.call(refused)
    assert session.backoff.rejections == 1
    for tick in (2, 4, 58):  # the provider's next refreshes, within the first wait
        clock.now = 1000.0 + tick
        with pytest.raises(LoginDeferred):
            session.call(lambda service_instance: None)
    assert RotatedPasswordClient.logins == 1, "no login while the back-off lasts"
    clock.now = 1060.0
    session.call(lambda service_instance: None)
    assert RotatedPasswordClient.logins == 2


def test_a_login_that_succeeds_resets_the_back_off():
    clock = FakeClock()
    backoff = LoginBackoff(clock=clock)
    backoff.rejected()
    backoff.rejected()
    assert backoff.seconds_left() == 120
    backoff.accepted()
    backoff.check("ray")  # no LoginDeferred
    assert backoff.wait_after(1) == 60


def test_while_the_password_is_refused_the_provider_keeps_its_view_and_runs_no_playbook(provider, monkeypatch, caplog):
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    clock = FakeClock()
    RejectingClient.logins = 0
    provider.vcenter_session = VcenterSession(provider.credentials, 5, backoff=LoginBackoff(clock=clock),
                                              client_factory=RejectingClient)
    monkeypatch.setattr(provider, "_list_cluster_nodes", lambda: provider.vcenter_session.call(lambda si: []))
    monkeypatch.setattr(node_provider, "REFRESH_INTERVAL_S", 0.0)
    for _ in range(20):
        assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]  # the last view, not an empty cluster
    assert RejectingClient.logins == 1
    with pytest.raises(NodeLaunchException) as launch:
        provider.create_node({}, {"ray-node-type": "worker"}, 1)
    assert launch.value.category == "LoginRejected"
    assert provider.playbooks.calls == []  # its modules would have logged in with the same password


def test_a_playbook_run_whose_login_was_rejected_starts_the_back_off(provider):
    provider.playbooks.fail_with = ("vCenter vcenter.example.com:443 rejected the login of 'ray': wrong username "
                                    "or password (VMWARE_USER / VMWARE_PASSWORD)", {"fault": "InvalidLogin"})
    with pytest.raises(NodeLaunchException):
        provider.create_node({}, {"ray-node-type": "worker"}, 1)
    assert provider.vcenter_session.backoff.seconds_left() > 59
    with pytest.raises(NodeLaunchException):
        provider.create_node({}, {"ray-node-type": "worker"}, 1)
    assert provider.playbooks.playbooks() == ["create_nodes"]


def test_a_message_that_only_reads_like_a_rejected_login_starts_no_back_off(provider):
    """What a failure is comes from the module's fields: here a deploy failed whose message quotes a login error."""
    provider.playbooks.fail_with = ("ReconfigVM_Task failed: guest said 'rejected the login'", {"fault": "SystemError"})
    with pytest.raises(NodeLaunchException):
        provider.create_node({}, {"ray-node-type": "worker"}, 1)
    assert provider.vcenter_session.backoff.seconds_left() == 0
    assert provider.janitor.pending() == [provider.playbooks.calls[0][1]["ray_provider_request_id"]]


# ----- bounded waits -----

@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers, as a SIGSTOPped vCenter does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_login_to_a_silent_vcenter_fails_within_its_request_timeout(silent_server):
    client = VcenterClient("127.0.0.1", "ray", "pw", port=silent_server, validate_certs=False, request_timeout=1)
    started = time.monotonic()
    with pytest.raises(RayVsphereError, match=r"did not answer within 1 s \(request_timeout\)") as error:
        client.connect()
    assert time.monotonic() - started < 3
    assert error.value.details["timed_out"]


def test_a_session_reports_a_silent_vcenter_as_unresponsive(silent_server):
    credentials = VcenterCredentials({"vcenter_hostname": "127.0.0.1", "vcenter_username": "ray",
                                      "vcenter_port": silent_server, "vcenter_validate_certs": False},
                                     environ={"VMWARE_PASSWORD": "pw"})
    session = VcenterSession(credentials, 1)
    started = time.monotonic()
    with pytest.raises(VcenterUnresponsive):
        session.call(lambda service_instance: None)
    assert time.monotonic() - started < 3
    assert session.backoff.seconds_left() == 0  # silence is not a rejected password


def test_a_failed_refresh_keeps_the_view_logs_one_line_and_the_next_tick_retries(provider, monkeypatch, caplog):
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    monkeypatch.setattr(node_provider, "REFRESH_INTERVAL_S", 0.0)
    calls = []

    def silent():
        calls.append(time.monotonic())
        raise VcenterUnresponsive("vCenter vcenter.example.com:443 did not answer within 5 s")
    monkeypatch.setattr(provider, "_list_cluster_nodes", silent)
    caplog.set_level(logging.WARNING, logger="ray_provider.node_provider")
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    assert [r.getMessage() for r in caplog.records] == [
        "ray_vsphere: reading vCenter failed, keeping the nodes read before: "
        "vCenter vcenter.example.com:443 did not answer within 5 s"]
    assert provider.internal_ip("a") == "10.0.0.1"
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    assert len(calls) == 2


def test_without_any_view_yet_a_failed_refresh_is_an_error(provider, monkeypatch):
    def silent():
        raise VcenterUnresponsive("vCenter did not answer within 5 s")
    monkeypatch.setattr(provider, "_list_cluster_nodes", silent)
    with pytest.raises(VcenterUnresponsive):
        provider.non_terminated_nodes({})


def test_a_slow_refresh_holds_up_no_other_caller(provider):
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    provider._last_refresh = float("-inf")
    provider.vcenter.hold = True
    slow = threading.Thread(target=provider.non_terminated_nodes, args=({},))
    slow.start()
    assert provider.vcenter.entered.wait(10)
    started = time.monotonic()
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]  # the cached view, at once
    assert provider.node_tags("a")["ray-cluster-name"] == "unit"
    assert time.monotonic() - started < 0.1
    provider.vcenter.release.set()
    slow.join()
    assert provider.vcenter.reads == 2


def test_every_run_has_a_timeout_and_a_create_gets_the_deploy_and_ip_timeouts_and_a_margin(provider, monkeypatch,
                                                                                            tmp_path):
    provider.create_node({"timeout": 100, "ip_timeout": 50}, {"ray-node-type": "worker"}, 1)
    provider.create_node({}, {"ray-node-type": "worker"}, 1)  # node_deploy's defaults: 1800 s and 600 s
    assert provider.playbooks.timeouts == [100 + 50 + 300, 1800 + 600 + 300]
    # The runs the provider makes without a timeout of their own (terminate, tags) reach ansible-runner with one.
    given = []

    def run_playbook(playbook, private_data_dir, timeout=None, **options):
        given.append(timeout)
        return SimpleNamespace(status="successful", events=[])
    monkeypatch.setattr(runs, "run_playbook", run_playbook)
    provider.playbooks = PlaybookRuns(tmp_path, "unit", provider.credentials)
    provider.non_terminated_nodes({})
    provider.terminate_node("a")
    provider.write_tags_now()  # nothing to write: no run
    provider.set_node_tags("b", {"ray-node-status": "up-to-date"})
    provider.write_tags_now()
    assert given == [900, 900]


# ----- a failed create leaves nothing -----

def test_a_failed_create_is_hidden_and_cleaned_up_by_request_id_once_vcenter_answers(provider, monkeypatch):
    monkeypatch.setattr(node_provider, "REFRESH_INTERVAL_S", 0.0)
    provider.playbooks.fail_with = ("vCenter vcenter.example.com:443 did not answer within 30 s (request_timeout)",
                                    {"timed_out": True})
    with pytest.raises(NodeLaunchException):
        provider.create_node({}, {"ray-node-type": "worker", "ray-user-node-type": "cpu"}, 2)
    request_id = provider.playbooks.calls[0][1]["ray_provider_request_id"]
    # What the cut-short run left, tagged already: not a node for Ray, or its retry would be a duplicate.
    provider.vcenter.records.append(record("left", f"unit-cpu-{request_id}-0"))
    provider.playbooks.fail_with = None
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    for _ in range(100):
        if len(provider.playbooks.calls) > 1 and not provider.janitor.pending():
            break
        time.sleep(0.05)
    playbook, extravars = provider.playbooks.calls[1]
    assert playbook == "terminate_nodes" and extravars["ray_provider_request_ids"] == [request_id]
    assert extravars["ray_provider_keep_uuids"] == [] and "ray_provider_uuids" not in extravars
    assert provider.janitor.pending() == []


# ----- runs survive pruning -----

def test_a_run_in_flight_survives_pruning_by_40_runs_that_finish(monkeypatch, tmp_path):
    first_started, release = threading.Event(), threading.Event()

    class Runner:
        """As ansible-runner's: events are read from the run's artifacts when asked for."""

        status = "successful"

        def __init__(self, private_data_dir):
            self.events_file = private_data_dir / "artifacts" / "events.json"

        @property
        def events(self):
            return json.loads(self.events_file.read_text()) if self.events_file.is_file() else []

    def run_playbook(playbook, private_data_dir, **options):
        if playbook.endswith("create_nodes"):
            first_started.set()
            assert release.wait(30)
        runner = Runner(private_data_dir)
        runner.events_file.parent.mkdir(parents=True)
        runner.events_file.write_text(json.dumps([{"event": "playbook_on_stats", "event_data": {
            "artifact_data": {"ray_provider_nodes": [playbook]}}}]))
        return runner
    monkeypatch.setattr(runs, "run_playbook", run_playbook)
    playbook_runs = PlaybookRuns(tmp_path, "prune", CREDENTIALS)
    created = []
    creating = threading.Thread(target=lambda: created.append(playbook_runs.run("create_nodes", {})))
    creating.start()
    assert first_started.wait(10)
    for _ in range(40):
        playbook_runs.run("set_node_tags", {})
    in_dir = sorted(path.name for path in playbook_runs.root.iterdir())
    assert len(in_dir) == runs.KEPT_RUNS + 1 == 31  # the newest 30 finished ones, and the create
    assert any("create_nodes" in name for name in in_dir)
    release.set()
    creating.join()
    # The oldest run, pruned as it ended: its results were read before.
    assert published_stats(created[0]) == {"ray_provider_nodes": ["ray_vsphere.cluster.provider.create_nodes"]}


def test_a_run_whose_process_died_is_pruned_like_a_finished_one(monkeypatch, tmp_path):
    monkeypatch.setattr(runs, "run_playbook",
                        lambda playbook, private_data_dir, **options: SimpleNamespace(status="successful", events=[]))
    playbook_runs = PlaybookRuns(tmp_path, "prune", CREDENTIALS)
    orphan = playbook_runs.root / "00000000T000000-00000-create_nodes-dead00"
    orphan.mkdir(parents=True)
    (orphan / PlaybookRuns.IN_FLIGHT).write_text("999999999")  # no such process
    for _ in range(runs.KEPT_RUNS):
        playbook_runs.run("set_node_tags", {})
    assert not orphan.exists()


# ----- one IP policy per node type -----

def test_refresh_picks_each_nodes_address_by_its_own_node_types_rules(monkeypatch, tmp_path):
    monkeypatch.setenv("VMWARE_PASSWORD", "not-a-real-password")
    monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
    config = {"provider": dict(PROVIDER, ignored_cidrs=["10.9.0.0/16"]),
              "available_node_types": {"gpu": {"node_config": {"preferred_cidr": "192.168.60.0/24"}},
                                       "cpu": {"node_config": {}},
                                       "edge": {"node_config": {"ignored_cidrs": []}}}}
    provider_config = dict(config["provider"], **{NODE_TYPE_IP_POLICIES: node_type_ip_policies(config)})
    provider = node_provider.VsphereNodeProvider(provider_config, "unit")
    addresses = ["10.9.0.5", "192.168.50.9", "192.168.60.1"]
    nodes = [dict(record(name, f"unit-{name}", **{"ray-user-node-type": name}), ip_addresses=addresses)
             for name in ("gpu", "cpu", "edge")]
    monkeypatch.setattr(provider, "_list_cluster_nodes", lambda: nodes)
    provider.non_terminated_nodes({})
    assert provider.internal_ip("gpu") == "192.168.60.1"  # its preferred_cidr
    assert provider.internal_ip("cpu") == "192.168.50.9"  # the provider's ignored_cidrs
    assert provider.internal_ip("edge") == "10.9.0.5"     # its own ignored_cidrs: none


def test_the_head_config_carries_the_ip_policies_and_the_request_timeout(provider):
    provider.provider_config[NODE_TYPE_IP_POLICIES] = {"gpu": {"preferred_cidr": "192.168.50.0/24",
                                                                "ignored_cidrs": []}}
    provider.provider_config["ssh_private_key_file"] = provider.provider_config["ssh_public_key_file"]
    head = provider.prepare_for_head_node({"provider": provider.provider_config, "auth": {},
                                           "available_node_types": {}})
    assert head["provider"][NODE_TYPE_IP_POLICIES]["gpu"]["preferred_cidr"] == "192.168.50.0/24"
    assert head["provider"]["vcenter_request_timeout"] == provider.credentials.request_timeout


# ----- names -----

@pytest.mark.parametrize("node_type, expected", [
    ("gpu", "c1-gpu-ab12cd34-0"),
    ("GPU_worker.large", "c1-gpu-worker-large-ab12cd34-0"),
    ("ray.worker.default", "c1-ray-worker-default-ab12cd34-0"),
    ("__", "c1-node-ab12cd34-0"),
])
def test_vm_names_carry_the_node_type_made_host_name_safe(node_type, expected):
    assert request_names("c1", node_type, "ab12cd34", 2) == [expected, expected[:-1] + "1"]


def test_a_long_node_type_is_shortened_so_every_name_fits_a_host_name():
    names = request_names("analytics-prod", "x" * 100, "ab12cd34", 12)
    assert all(len(name) <= MAX_NAME_LENGTH for name in names)
    assert names[11].endswith("-ab12cd34-11") and names[0].startswith("analytics-prod-xxx")


def test_the_request_timeout_is_checked_with_the_config_and_reaches_the_runs_modules():
    from ray_provider.config import ClusterConfigError, check_cluster_config
    config = {"provider": dict(PROVIDER, vcenter_request_timeout=0), "auth": {"ssh_user": "ubuntu"},
              "available_node_types": {"worker": {"node_config": {}}}}
    with pytest.raises(ClusterConfigError, match="provider.vcenter_request_timeout: must be at least 1, not 0"):
        check_cluster_config(config)
    credentials = VcenterCredentials(dict(PROVIDER, vcenter_request_timeout=12), environ={"VMWARE_PASSWORD": "x"})
    assert credentials.request_timeout == 12
    assert credentials.environment()["VMWARE_REQUEST_TIMEOUT"] == "12"  # the modules' request_timeout fallback
    # The default is the modules' own (60 s: above the 30 s a module asks vCenter to hold a WaitForUpdatesEx).
    assert VcenterCredentials(PROVIDER, environ={}).request_timeout == 60
    assert CONNECTION_ARGUMENT_SPEC["request_timeout"]["default"] == 60


@pytest.mark.parametrize("environ, provider_keys, problems", [
    ({"VMWARE_PORT": "44x3"}, {}, ["VMWARE_PORT: must be an integer, not '44x3'"]),
    ({"VMWARE_REQUEST_TIMEOUT": "3O", "VMWARE_VALIDATE_CERTS": "maybe"}, {},
     ["VMWARE_VALIDATE_CERTS: must be true or false, not 'maybe'", "VMWARE_REQUEST_TIMEOUT: must be an integer, not '3O'"]),
    ({"VMWARE_PORT": "8443"}, {"vcenter_port": "x"}, ["provider.vcenter_port: must be an integer, not 'x'"]),
])
def test_a_mistyped_connection_setting_is_named_with_its_value_not_a_traceback(environ, provider_keys, problems):
    with pytest.raises(ClusterConfigError) as raised:
        VcenterCredentials({**PROVIDER, **provider_keys}, environ=environ)
    assert raised.value.problems == problems


def test_connection_settings_come_from_the_modules_spec_keys_then_variables_then_defaults():
    credentials = VcenterCredentials({}, environ={"VMWARE_HOST": "vc.example.com", "VMWARE_USER": "ray",
                                                 "VMWARE_PORT": "8443", "VMWARE_VALIDATE_CERTS": "no",
                                                 "VMWARE_CA_PATH": "~/ca.pem", "VMWARE_PASSWORD": "pw"})
    assert (credentials.hostname, credentials.username, credentials.port, credentials.validate_certs,
            credentials.password) == ("vc.example.com", "ray", 8443, False, "pw")
    assert credentials.ca_path.endswith("/ca.pem") and "~" not in credentials.ca_path
    # What the playbook runs' modules read back through the same VMWARE_* fallbacks, the password aside.
    assert credentials.environment() == {"VMWARE_HOST": "vc.example.com", "VMWARE_USER": "ray", "VMWARE_PORT": "8443",
                                         "VMWARE_VALIDATE_CERTS": "false", "VMWARE_REQUEST_TIMEOUT": "60",
                                         "VMWARE_CA_PATH": credentials.ca_path}
    defaults = VcenterCredentials({"vcenter_hostname": "vc"}, environ={})
    assert (defaults.port, defaults.validate_certs, defaults.ca_path) == (443, True, None)
