"""The playbooks end to end on the testbed: a real Ray cluster up, used, scaled and removed.

Its nodes boot as real VMs do: VMware Tools reports the node's address 46 s
after power-on (nothing else changes on the VM meanwhile), over 50 ms of network to vCenter
(issue 19), and the modules run with a request timeout of 30 s, the setting
that lost every quiet IP poll before the long poll was derived from it.
"""

import base64
import hashlib
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from ray_provider.runner import published_stats, run_playbook
from testbed import job_probe, ray_cluster, simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.capture import BridgeCapture, what_crossed_in_clear

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _records  # noqa: E402
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey, ray_auth_token
from testbed.guests import GuestSimulator, ssh
from testbed.guests.tools import ToolsTiming

pytestmark = pytest.mark.slow

IP_DELAY_S = 46


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    """This module's vcsim: 50 ms between the modules and every WaitForUpdatesEx, and a 30 s request timeout."""
    with pytest.MonkeyPatch.context() as patch, simulator.Vcsim(latency_ms={"WaitForUpdatesEx": 50}) as sim:
        patch.setenv("VMWARE_REQUEST_TIMEOUT", "30")  # the runs' modules read it (_client's env fallback)
        yield sim


@pytest.fixture(scope="module")
def guest_simulator(vcsim):
    with GuestSimulator(vcsim.endpoint, tools=ToolsTiming(ip_delay=IP_DELAY_S)) as guests:
        yield guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


@pytest.fixture
def bridge_capture(guest_simulator):
    """Everything that crosses the guests' bridge, from the test's start until it calls stop()."""
    with BridgeCapture(guest_simulator.network.bridge) as capture:
        yield capture


def changed_hosts(runner):
    return {host: count for host, count in (runner.stats or {}).get("changed", {}).items() if count}


def guest_ip(guest_simulator, hostname):
    [address] = [guest.address for guest in guest_simulator.guests().values() if guest.hostname == hostname]
    return address


def wait_for_alive_nodes(head_ip, key, expected, timeout=90):
    deadline = time.monotonic() + timeout
    while (alive := ray_cluster.alive_nodes(head_ip, key)) != sorted(expected):
        assert time.monotonic() < deadline, f"Ray sees {alive}, not {sorted(expected)}"
        time.sleep(2)


# Three waits for a late IP (the head and the workers together, the third worker, the upgraded one) on top of the
# suite's 600 s, and the upgrade's template import and Ray start.
@pytest.mark.timeout(600 + 3 * IP_DELAY_S + 240)
def test_ray_up_runs_a_job_on_every_node_scales_to_three_then_one_and_ray_down_removes_it(
        vcsim, guest_simulator, bridge_capture, tmp_path):
    key = tmp_path / "keys" / "ray-e2e"
    cluster = ray_cluster.cluster_vars("e2e", key, worker_count=2)
    started = time.monotonic()
    up = ray_cluster.run("ray_up", tmp_path / "up", vcsim.endpoint.environment(), cluster)
    print(f"first ray_up: {time.monotonic() - started:.0f} s")
    assert up.status == "successful", up.stdout.read()[-5000:]
    assert key.stat().st_mode & 0o777 == 0o600
    # The head and the workers booted together, as vcsim's power-on events show: one wait for a late IP, not two.
    assert_powered_on_together(vcsim, ["e2e-head", "e2e-worker-0", "e2e-worker-1"], within_s=IP_DELAY_S / 2)
    # The head's deploy ran in the background: its result file is gone, and what it held had no private key.
    assert_background_deploy_left_no_result_file(up)

    stats = published_stats(up)
    head_ip = stats["ray_head_ip"]
    assert stats["ray_dashboard_url"] == "http://localhost:8265"
    uuids = uuids_at_vcsim(vcsim, key, "e2e")
    # The printed tunnel checks the head's recorded host key, by its UUID, and works as printed.
    assert stats["ray_dashboard_tunnel"] == (
        f"ssh -N -L 8265:127.0.0.1:8265 -o StrictHostKeyChecking=yes -o UserKnownHostsFile={key}.known_hosts "
        f"-o HostKeyAlias={uuids['e2e-head']} -o CheckHostIP=no -o GlobalKnownHostsFile=/dev/null "
        f"-i {key} ubuntu@{head_ip}")
    printed_ssh = stats["ray_dashboard_tunnel"].replace(" -N -L 8265:127.0.0.1:8265", "").split()
    assert subprocess.run(printed_ssh + ["-o", "BatchMode=yes", "hostname"], capture_output=True, text=True,
                          timeout=60).stdout.strip() == "e2e-head"
    # Every node answered with its recorded key: vCenter no longer shows its host private key.
    for name in ["e2e-head", "e2e-worker-0", "e2e-worker-1"]:
        assert host_private_key_at_vcsim(vcsim, uuids[name]) == [], f"vCenter still shows {name}'s host private key"
    assert len(stats["ray_worker_ips"]) == 2
    guests = {guest.hostname: guest.address for guest in guest_simulator.guests().values()}
    assert sorted(guests) == ["e2e-head", "e2e-worker-0", "e2e-worker-1"]
    assert guests["e2e-head"] == head_ip
    assert sorted(stats["ray_worker_ips"]) == sorted([guests["e2e-worker-0"], guests["e2e-worker-1"]])

    job = ray_cluster.run_spread_job(head_ip, key)
    assert job == {"sum_of_squares": 55, "hosts": ["e2e-head", "e2e-worker-0", "e2e-worker-1"]}

    again = ray_cluster.run("ray_up", tmp_path / "up-again", vcsim.endpoint.environment(), cluster)
    assert again.status == "successful"
    assert changed_hosts(again) == {}, "a second ray_up changes nothing: no new VM, Ray not restarted"
    assert published_stats(again)["ray_head_ip"] == head_ip

    # The checks of the first nodes read them only, and the scale-out changes none of them (a second ray_up
    # just changed nothing): they run while it waits for its new worker's late IP, not after it.
    with ThreadPoolExecutor(max_workers=1) as scale_out:
        scaling = scale_out.submit(ray_cluster.run, "ray_workers", tmp_path / "three", vcsim.endpoint.environment(),
                                   dict(cluster, ray_worker_count=3))
        assert_ray_takes_only_the_clusters_token(head_ip, stats["ray_worker_ips"], key, "e2e")
        assert_no_token_crossed_the_bridge(bridge_capture, head_ip, stats["ray_worker_ips"], key, "e2e")
    three = scaling.result()
    assert three.status == "successful", three.stdout.read()[-5000:]
    assert len(guest_simulator.guests()) == 4
    wait_for_alive_nodes(head_ip, key, [g.address for g in guest_simulator.guests().values()])

    one = ray_cluster.run("ray_workers", tmp_path / "one", vcsim.endpoint.environment(), dict(cluster, ray_worker_count=1))
    assert one.status == "successful", one.stdout.read()[-5000:]
    remaining = {guest.hostname: guest.address for guest in guest_simulator.guests().values()}
    assert sorted(remaining) == ["e2e-head", "e2e-worker-0"]
    wait_for_alive_nodes(head_ip, key, list(remaining.values()))

    # Rolling image upgrade (docs/day-two.md): ray_up.yml with another image replaces the outdated worker, the head stays.
    upgraded = assert_outdated_workers_are_replaced_keeping_capacity(vcsim, guest_simulator, tmp_path, cluster, key,
                                                                     head_ip, uuids["e2e-head"])
    [worker] = upgraded
    assert_a_node_with_another_host_key_is_refused(vcsim, tmp_path, key, guest_ip(guest_simulator, worker),
                                                   uuids_at_vcsim(vcsim, key, "e2e")[worker])

    # The cluster's key tells its nodes and templates from others' (only the key's holder takes the cluster down).
    down = ray_cluster.run("ray_down", tmp_path / "down", vcsim.endpoint.environment(),
                           {"ray_cluster_name": "e2e", "ray_ssh_private_key": str(key)})
    assert down.status == "successful", down.stdout.read()[-5000:]
    assert sorted(published_stats(down)["ray_deleted_nodes"]) == ["e2e-head", *upgraded]
    assert _nodes.list_nodes(vcsim.endpoint.connect(), ClusterKey(key.read_text(), "e2e")) == ([], [])
    guest_simulator_settled = time.monotonic() + 30
    while guest_simulator.guests() and time.monotonic() < guest_simulator_settled:
        time.sleep(0.2)
    assert guest_simulator.guests() == {}


def assert_powered_on_together(vcsim, names, within_s):
    service_instance = vcsim.endpoint.connect()
    try:
        powered_on = vsphere.powered_on_times(service_instance)
    finally:
        service_instance.content.sessionManager.Logout()
    times = [powered_on[name] for name in names]
    assert (max(times) - min(times)).total_seconds() < within_s, {name: str(powered_on[name]) for name in names}


def assert_background_deploy_left_no_result_file(runner):
    """The head's deploy job: its async result file removed, and its result (the file's content) free of private keys."""
    started = [event["event_data"]["res"] for event in runner.events
               if event.get("event") == "runner_on_ok" and event["event_data"].get("task") == "Deploy the nodes"]
    jobs = [result for res in started for result in res.get("results", []) if "results_file" in result]
    assert len(jobs) == 1
    assert not Path(jobs[0]["results_file"]).exists()
    waited = [event["event_data"]["res"] for event in runner.events if event.get("event") == "runner_item_on_ok"
              and event["event_data"].get("res", {}).get("ansible_job_id") == jobs[0]["ansible_job_id"]
              and "nodes" in event["event_data"]["res"]]
    assert [node["name"] for result in waited for node in result["nodes"]] == ["e2e-head"]
    assert "PRIVATE KEY" not in json.dumps(waited)


def uuids_at_vcsim(vcsim, key, cluster_name):
    """{node name: instance UUID} of the cluster's nodes, as vcsim lists them."""
    service_instance = vcsim.endpoint.connect()
    try:
        nodes, _ = _nodes.list_nodes(service_instance, ClusterKey(key.read_text(), cluster_name))
    finally:
        service_instance.content.sessionManager.Logout()
    return {node["name"]: node["uuid"] for node in nodes}


def host_private_key_at_vcsim(vcsim, uuid):
    """Where vcsim still holds the VM's host private key: guestinfo.userdata, the vApp property user-data."""
    _, guestinfo, vapp = vsphere.host_key_records(vcsim.endpoint, uuid)
    held = [(_records.GUESTINFO_USERDATA, guestinfo or "")] + [("vApp user-data", value) for value in vapp]
    return sorted(where for where, value in held if b"PRIVATE KEY" in base64.b64decode(value))


def assert_ray_takes_only_the_clusters_token(head_ip, worker_ips, key, cluster_name):
    token = ray_auth_token(key.read_text(), cluster_name)
    for node_ip in [head_ip, *worker_ips]:
        for home in ("~", "~ray"):
            held = ssh(node_ip, key, f"sudo stat -c '%U %a' {home}/.ray/auth_token && sudo cat {home}/.ray/auth_token")
            assert held.stdout.split() == [home.strip("~") or "ubuntu", "600", token], \
                f"{node_ip}: {home} does not hold the cluster's token, private"
        # Each guest has its own PID namespace: these are this node's Ray processes only. They run as `ray`,
        # which has no sudo, never as the default user, which has.
        owners = ssh(node_ip, key, "ps -o user= -C raylet,gcs_server").stdout.split()
        assert owners and set(owners) == {"ray"}, f"Ray on {node_ip} runs as {owners}, not as ray"
    assert ray_cluster.submit_job(head_ip, key, None) == {"http_status": 401, "job_state": None}
    assert ray_cluster.submit_job(head_ip, key, "0" * 64) == {"http_status": 403, "job_state": None}
    assert ray_cluster.submit_job(head_ip, key, token) == {"http_status": 200, "job_state": "SUCCEEDED"}
    # A job submitted with the token runs as `ray`: no sudo, no cluster key (a playbook head holds none, nor a
    # vCenter credential), no write into the Python environment Ray loads. The SSH user keeps its sudo.
    job = job_probe.as_job(head_ip, key, token)
    assert (job["user"], job["sudo"] != 0, any(job["read"].values())) == ("ray", True, False), job
    assert not any(written for folder, written in job["written"].items() if "site-packages" in folder), job
    assert ssh(head_ip, key, "sudo -n true").returncode == 0
    key_line = key.read_text().splitlines()[1]
    assert ssh(head_ip, key, f"sudo grep -rlF -e {key_line} /home /root /etc").stdout == "", "the cluster key is on the head"
    # The dashboard and its job API listen on the head's loopback only.
    assert ray_cluster.port_open(head_ip, key, "127.0.0.1", 8265)
    assert not ray_cluster.port_open(worker_ips[0], key, head_ip, 8265), "the dashboard is reachable from a worker"
    assert not ray_cluster.port_open(head_ip, key, head_ip, 8265)


def assert_no_token_crossed_the_bridge(capture, head_ip, worker_ips, key, cluster_name):
    """From `ray_up` to here (workers joining, jobs, a second ray_up, the job API, a scale-out under way), the token
    never crossed the port group in clear.

    Ray's gRPC sends it as a plain `authorization` header, byte for byte: without
    TLS this capture finds it in the nodes' connections to the GCS and between raylets.
    """
    crossed = what_crossed_in_clear(capture, head_ip, worker_ips[0], key, ray_auth_token(key.read_text(), cluster_name))
    assert crossed["marker"] == [f"{worker_ips[0]}:22"], "the capture reads what one guest sends another"
    assert 6379 in crossed["ports"], "Ray's traffic crossed while it read: the worker's connections to the GCS"
    assert crossed["secret"] == [], "the cluster's token crossed the bridge in clear"


def assert_a_node_with_another_host_key_is_refused(vcsim, tmp_path, key, node_ip, node_uuid):
    """Connections check the host key recorded in vCenter at deploy: an impostor gets no login, no key, no token."""
    known_hosts = tmp_path / "known_hosts"
    plays = [{"name": "Trust the cluster's nodes", "hosts": "localhost", "connection": "local", "gather_facts": False,
              "tasks": [{"name": "List", "register": "listed",
                         "ray_vsphere.cluster.node_info": {"cluster_name": "e2e", "cluster_key_file": str(key)}},
                        {"name": "Trust", "ansible.builtin.include_role": {"name": "ray_vsphere.cluster.nodes",
                                                                           "tasks_from": "trust"},
                         "vars": {"nodes_trusted": "{{ listed.nodes }}", "nodes_private_key": str(key),
                                  "nodes_known_hosts": str(known_hosts), "nodes_group": "checked"}}]},
             {"name": "Log in", "hosts": "checked", "gather_facts": False,
              "tasks": [{"name": "Ping", "ansible.builtin.ping": {}}]}]

    def log_in(attempt):
        project = tmp_path / attempt / "project"
        project.mkdir(parents=True)
        (project / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
        control_dir = tmp_path / attempt / "cp"  # no SSH connection shared with an earlier run
        control_dir.mkdir()
        environment = dict(vcsim.endpoint.environment(), ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir))
        return run_playbook("play.yml", tmp_path / attempt, project_dir=project, envvars=environment)

    trusted = log_in("trusted")
    assert trusted.status == "successful", trusted.stdout.read()[-3000:]
    recorded = {line.split()[0]: line.split(None, 1)[1].strip() for line in known_hosts.read_text().splitlines()}
    # Keyed by the instance UUID (HostKeyAlias), never by the address the guest reports.
    assert recorded[node_uuid].startswith("ssh-ed25519 ")
    assert node_ip not in known_hosts.read_text()

    # The node now answers with a host key it was not given at deploy.
    swapped = ssh(node_ip, key, "sudo rm -f /etc/ssh/ssh_host_*key* && "
                                "sudo ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
                                "sudo pkill -HUP -f '\\[listener\\]'")  # the listener: not this session's shell, whose command line holds the pattern
    assert swapped.returncode == 0, swapped.stderr
    time.sleep(1)
    refused = log_in("impostor")
    output = refused.stdout.read()
    assert refused.status == "failed"
    assert "Host key verification failed" in output or "REMOTE HOST IDENTIFICATION HAS CHANGED" in output, output[-3000:]


class AliveNodesPoll:
    """The fewest nodes Ray on the head counted alive while the block ran, polled every couple of seconds."""

    def __init__(self, head_ip, key):
        self.head_ip, self.key, self.counts = head_ip, key, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            self.counts.append(len(ray_cluster.alive_nodes(self.head_ip, self.key, timeout=60)))
            self._stop.wait(2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=90)


def assert_outdated_workers_are_replaced_keeping_capacity(vcsim, guest_simulator, tmp_path, cluster, key, head_ip,
                                                          head_uuid):
    """ray_up.yml with a second image and ray_replace_outdated_workers: every worker ends on it, Ray never below count.

    Returns the workers' names after the upgrade.
    """
    old_cloned_from, _ = vsphere.images_at(vcsim.endpoint)
    before = {guest.hostname: guest.address for guest in guest_simulator.guests().values()}
    second_image = build_test_ova(payload_mib=1)  # other content: another template
    upgrade = dict(cluster, ray_worker_count=1, ray_ovf=str(second_image), ray_replace_outdated_workers=True,
                   ray_replace_serial=1)
    with AliveNodesPoll(head_ip, key) as poll:
        run = ray_cluster.run("ray_up", tmp_path / "upgrade", vcsim.endpoint.environment(), upgrade)
    assert run.status == "successful", run.stdout.read()[-5000:]
    assert len(poll.counts) > 10 and min(poll.counts) >= len(before), (
        f"Ray counted fewer than {len(before)} alive nodes during the upgrade: {poll.counts}")

    uuids = uuids_at_vcsim(vcsim, key, "e2e")
    assert uuids["e2e-head"] == head_uuid, "the head is never replaced"
    workers = sorted(name for name in uuids if name != "e2e-head")
    assert workers == ["e2e-worker-1"], "e2e-worker-0 replaced by the next free name"
    cloned_from, images = vsphere.images_at(vcsim.endpoint)
    assert "e2e-worker-0" not in cloned_from, "the outdated worker's VM is gone"
    new_template = cloned_from["e2e-worker-1"]
    assert new_template != old_cloned_from["e2e-worker-0"] and cloned_from["e2e-head"] == old_cloned_from["e2e-head"]
    assert images[new_template] == hashlib.sha256(second_image.read_bytes()).hexdigest()
    after = {guest.hostname: guest.address for guest in guest_simulator.guests().values()}
    assert sorted(after) == ["e2e-head", "e2e-worker-1"] and after["e2e-head"] == before["e2e-head"]
    wait_for_alive_nodes(head_ip, key, list(after.values()))

    again = ray_cluster.run("ray_up", tmp_path / "upgrade-again", vcsim.endpoint.environment(), upgrade)
    assert again.status == "successful", again.stdout.read()[-5000:]
    assert changed_hosts(again) == {}, "an upgraded cluster is current: nothing replaced again"
    return workers
