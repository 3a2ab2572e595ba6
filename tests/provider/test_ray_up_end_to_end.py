"""`ray up`, autoscaling and `ray down` through VsphereNodeProvider, on the testbed with real Ray.

vcsim listens on the guests' gateway, so the head's autoscaler (in a guest)
runs the same provider against the same vCenter as the `ray up` machine: as
the head's own account (vcsim's second one), which `ray up` got through
RAY_VSPHERE_HEAD_USER/_PASSWORD. vcsim's method trace, of this module's
vcsim only, shows which account called what.
"""

import re
import secrets
import shlex
import shutil
import time
from types import SimpleNamespace

import pytest
import yaml
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _ray_auth
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token
from ray_provider.config import decrypt_secret
from testbed import image, job_probe, leftovers, method_trace, privileges, prometheus, ray_cluster, simulator, vsphere
from testbed.capture import BridgeCapture, what_crossed_in_clear
from testbed.guests import make_key_pair, ssh, vcsim_with_guests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites, tmp_path_factory):
    # A trace of its own, so that the accounts' calls seen are this module's; checked against the table here.
    # vcsim checks the head account's privileges as vCenter does: the autoscaler role on the placement must do.
    with vcsim_with_guests(trace_methods=tmp_path_factory.mktemp("trace") / "methods.jsonl",
                           enforce_permissions=True) as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


@pytest.fixture(autouse=True)
def a_failure_stays_one(request, testbed):
    """After a failed test, its powered-on VMs go: the tests after it share the testbed and would fail on them too."""
    yield
    call = getattr(request.node, "rep_call", None)
    if call is None or not call.failed:
        return
    sim, guests = testbed
    service_instance = sim.endpoint.connect()
    try:
        # A head's autoscaler may have a worker's power-on under way: done once none has come up for 20 s.
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 20:
            for vm_moid in list(guests.guests()):
                vm = vim.VirtualMachine(vm_moid, service_instance._stub)
                vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
                vsphere.wait_for_task(service_instance, vm.Destroy_Task())
                guests.wait_for_no_guest(vm_moid)
                quiet_since = time.monotonic()
            time.sleep(2)
    finally:
        service_instance.content.sessionManager.Logout()


@pytest.fixture
def bridge_capture(testbed):
    """Everything that crosses the guests' bridge, from the test's start until it calls stop()."""
    with BridgeCapture(testbed[1].network.bridge) as capture:
        yield capture


@pytest.fixture
def cluster_key(tmp_path):
    return make_key_pair(tmp_path / "ray-key")


@pytest.fixture
def ray_ssh_of():
    """Call with a cluster name: Ray's SSH master connections for it are closed and removed after the test."""
    names = []
    yield names.append
    for name in names:
        ray_cluster.close_ray_ssh_connections(name)


def cluster_nodes(sim, cluster_name, key):
    """The cluster's nodes: the VMs carrying the identity its key makes."""
    service_instance = sim.endpoint.connect()
    try:
        return _nodes.list_nodes(service_instance, _ray_auth.ClusterKey(key.read_text(), cluster_name))[0]
    finally:
        service_instance.content.sessionManager.Logout()


def of_kind(nodes, kind):
    return [node for node in nodes if node["tags"].get("ray-node-type") == kind]


def wait_for(what, condition, timeout, interval=3.0):
    deadline = time.monotonic() + timeout
    while (value := condition()) is False or value is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value



def head_monitor_log(head_ip, key):
    """A reader of the head autoscaler's monitor.log: pattern (an extended regex) -> the matching lines, as text."""
    return lambda pattern: ssh(head_ip, key, f"sudo grep -h -E {pattern!r} ~ray-autoscaler/logs/monitor.log").stdout


def wait_for_launch_failures(monitor_log, what, node_type_marker, category, timeout, interval):
    """The monitor log's "Failed to launch" lines naming node_type_marker and Ray's launch category, once any are
    there; a timeout shows the log's launch lines."""
    try:
        return wait_for(what, lambda: [line for line in monitor_log("Failed to launch").splitlines()
                                       if node_type_marker in line and f"({category})" in line] or None,
                        timeout=timeout, interval=interval)
    except AssertionError as error:
        raise AssertionError(f"{error}: {monitor_log('ray_vsphere|aunch')[-4000:]}") from error

def head_password_canary(password):
    """Shell commands that plant the password in a file of a fresh folder and in a process's environment, and
    remove both; the file's path. A search that finds nothing must find these, or it searched nothing."""
    folder = f"/tmp/password-canary-{secrets.token_hex(4)}"
    return SimpleNamespace(folder=folder, file=f"{folder}/known",
                           plant=f"mkdir {folder} && printf '%s' {shlex.quote(password)} > {folder}/known && "
                                 f"{{ RAY_VSPHERE_CANARY={shlex.quote(password)} sleep 120 & }} && canary=$!",
                           remove=f"rm -r {folder}; kill $canary")


def password_on_head(head_ip, key, password):
    """Files under the head's homes (every user's, as root) and /tmp/ray, and processes (/proc/PID/environ, as root), holding password in
    clear: a canary file's path and 'environ of the canary' expected, and nothing else."""
    canary = head_password_canary(password)
    quoted = shlex.quote(password)
    found = ssh(head_ip, key, f"{canary.plant}; sudo grep -rl -F -e {quoted} /home /tmp/ray {canary.folder} 2>/dev/null; "
                              f"for environ in $(sudo grep -l -F -e {quoted} /proc/[0-9]*/environ 2>/dev/null); do "
                              "pid=${environ#/proc/}; pid=${pid%/environ}; "
                              "if [ $pid = $canary ]; then echo 'environ of the canary'; else echo $environ; fi; done; "
                              f"{canary.remove}")
    return sorted(found.stdout.splitlines()), canary


def scheduled_metrics_run(sim, cluster_name, key, run_dir):
    """ray_metrics.yml as the documented cron line runs it; the targets file's {node_type: targets}."""
    targets_file = run_dir / "ray-metrics.json"
    run = ray_cluster.run("ray_metrics", run_dir / "metrics-run", sim.endpoint.environment(), {
        "ray_cluster_name": cluster_name, "ray_ssh_private_key": str(key), "ray_datacenter": simulator.DATACENTER,
        "ray_vm_folder": simulator.VM_FOLDER, "ray_metrics_targets_file": str(targets_file),
        "ray_metrics_dashboards_dir": str(run_dir / "dashboards")})
    assert run.status == "successful", run.stdout.read()[-5000:]
    return prometheus.targets_by_type(targets_file, cluster_name)


@pytest.mark.parametrize("autoscaler", ["v2", "v1"])
def test_ray_up_scales_up_for_a_job_removes_idle_workers_survives_a_restart_and_ray_down_removes_all(
        testbed, cluster_key, tmp_path, autoscaler, ray_ssh_of, bridge_capture):
    sim, guests = testbed
    name = f"e2e-{autoscaler}"
    ray_ssh_of(name)
    config = ray_cluster.provider_cluster_yaml(tmp_path / "cluster.yaml", name, cluster_key,
                                idle_timeout_minutes=0.25, **{"available_node_types.worker.max_workers": 2})
    state_dir = tmp_path / "state"
    version = {"RAY_UP_enable_autoscaler_v2": "1" if autoscaler == "v2" else "0"}

    up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config), extra_env=version)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    assert sim.endpoint.password not in up.stdout + up.stderr
    # `ray up` says what the provider does (Ray's cli_logger): where, as whom, each playbook run, the wait for IPs.
    for shown in ("vSphere", f"account: {sim.endpoint.username}", "worker: image ", "check_config: successful in ",
                  "create_nodes: waiting for IPs: 0 of 1", "create_nodes: waiting for IPs: 1 of 1",
                  "create_nodes: successful in "):
        assert shown in up.stdout, f"{shown!r} not in: {up.stdout[-4000:]}"
    nodes = cluster_nodes(sim, name, cluster_key)
    heads = of_kind(nodes, "head")
    assert len(heads) == 1 and heads[0]["tags"]["ray-node-status"] == "up-to-date", \
        "the head's last tags reach vCenter before `ray up` exits"
    head_ip, head_uuid = heads[0]["ip"], heads[0]["uuid"]
    on_head = ray_cluster.ray_cli(sim.endpoint, state_dir, "exec", str(config), "hostname", extra_env=version)
    assert on_head.returncode == 0 and heads[0]["name"] in on_head.stdout, "ray exec reaches the head it found"

    # The head's autoscaler launches min_workers (1) through the same provider.
    ray_cluster.wait_for_alive_nodes(head_ip, cluster_key, 2, timeout=240)  # the min worker joined Ray
    # The head's autoscaler writes the same lines to its log.
    launched = ssh(head_ip, cluster_key, "sudo grep -c 'ray_vsphere: create_nodes: successful in' "
                                         "~ray-autoscaler/logs/monitor.log")
    assert int(launched.stdout.strip() or 0) >= 1, launched.stdout + launched.stderr
    first_worker = of_kind(cluster_nodes(sim, name, cluster_key), "worker")
    assert len(first_worker) == 1
    if autoscaler == "v2":
        # Metrics: ray_metrics.yml as the documented schedule runs it (docs/day-two.md) targets every node, each serving
        # its own metrics to a caller without a token; the targets come from the guests the testbed booted.
        targets = scheduled_metrics_run(sim, name, cluster_key, tmp_path)
        assert targets == {"head": [prometheus.target(head_ip)], "worker": [prometheus.target(first_worker[0]["ip"])]}
        assert {first_worker[0]["ip"], head_ip} == {guest.address for guest in guests.guests().values()}
        prometheus.assert_every_target_serves_its_nodes_metrics(targets)
        assert (tmp_path / "dashboards" / "default_grafana_dashboard.json").is_file(), "Ray's dashboards from the head"
    # The SSH user's Ray CLI uses the token it holds, through `ray exec` as through a plain SSH command.
    # Autoscaler v1's `ray status` shows the monitor's last report (every 5 s), which may not yet count the
    # worker that just joined: every attempt must succeed, and the worker must be listed within a minute.
    deadline = time.monotonic() + 60
    while True:
        status = ray_cluster.ray_cli(sim.endpoint, state_dir, "exec", str(config), "ray status", extra_env=version)
        assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-3000:]
        over_ssh = ssh(head_ip, cluster_key, "ray status")
        assert over_ssh.returncode == 0, over_ssh.stdout[-3000:] + over_ssh.stderr[-3000:]
        listed = [re.search(rf"^\s*1 {kind}\s*$", output, re.M)
                  for output in (status.stdout, over_ssh.stdout) for kind in ("head", "worker")]
        if all(listed) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert all(listed), status.stdout[-3000:] + over_ssh.stdout[-3000:]
    # The monitor logs in the autoscaler's home (ray_provider.head_start), which only it and root read.
    monitor = ssh(head_ip, cluster_key, "sudo grep -c 'autoscaler v2' ~ray-autoscaler/logs/monitor.log")
    assert (int(monitor.stdout.strip() or 0) > 0) == (autoscaler == "v2"), f"the head runs autoscaler {autoscaler}"

    # Ray takes only the cluster's token, which every node got: the worker from the head's autoscaler.
    token = ray_auth_token(cluster_key.read_text(), name)
    for node_ip in (head_ip, first_worker[0]["ip"]):
        assert ssh(node_ip, cluster_key, "cat .ray/auth_token").stdout == token
        assert ssh(node_ip, cluster_key, "sudo cat ~ray/.ray/auth_token").stdout == token
        # Ray's daemons, and so every job's processes, run as `ray` on every node: none as the SSH user.
        owners = ssh(node_ip, cluster_key, "ps -o user= -C raylet,gcs_server")
        assert set(owners.stdout.split()) == {"ray"}, owners.stdout
    # Set up once: a status read back stale from vCenter makes autoscaler v1 set a worker up again, restarting its Ray.
    # Ray's record-style cli_logger lines land in monitor.out, its logger's in monitor.log: counted once either way.
    set_up = ssh(head_ip, cluster_key, f"sudo grep -h 'NodeUpdater: {first_worker[0]['uuid']}: Applied config' "
                                       "~ray-autoscaler/logs/monitor.log ~ray-autoscaler/logs/monitor.out | sort -u")
    assert len(set_up.stdout.splitlines()) == 1, set_up.stdout + set_up.stderr
    assert ray_cluster.submit_job(head_ip, cluster_key, None)["http_status"] == 401
    assert ray_cluster.submit_job(head_ip, cluster_key, token) == {"http_status": 200, "job_state": "SUCCEEDED"}
    assert not ray_cluster.port_open(first_worker[0]["ip"], cluster_key, head_ip, 8265), "the dashboard is exposed"
    # Ray's gRPC in TLS: from `ray up` to here (the head, the worker its autoscaler made joining, a job), the
    # token never crossed the bridge in clear; the capture read a marker sent in clear, and Ray's traffic.
    crossed = what_crossed_in_clear(bridge_capture, head_ip, first_worker[0]["ip"], cluster_key, token)
    assert crossed["marker"] == [f"{first_worker[0]['ip']}:22"] and 6379 in crossed["ports"], crossed
    assert crossed["secret"] == [], "the cluster's token crossed the bridge in clear"
    # The head's autoscaler verifies vCenter's certificate too, against its mounted copy of the testbed's CA.
    head_provider = yaml.safe_load(ssh(head_ip, cluster_key, "sudo cat ~ray-autoscaler/ray_bootstrap_config.yaml").stdout)[
        "provider"]
    assert (head_provider["vcenter_validate_certs"], head_provider["vcenter_ca_path"]) == (
        True, "~/ray_vsphere_vcenter_ca.pem")
    head_ca = ssh(head_ip, cluster_key, "sudo cat ~ray-autoscaler/ray_vsphere_vcenter_ca.pem").stdout
    assert head_ca == sim.endpoint.ca_path.read_text()

    # The head logs in as its own account: the operator's password is nowhere on the head, in clear (its files,
    # its processes' environment) or in a blob it can open; the head's own is there only as that blob.
    password = sim.endpoint.password
    assert head_provider["vcenter_username"] == sim.autoscaler_username != sim.endpoint.username
    head_blob = head_provider["vcenter_password_vault"]
    assert decrypt_secret(head_blob, cluster_key) == sim.autoscaler_password != password
    assert ssh(head_ip, cluster_key, "sudo grep -c ANSIBLE_VAULT ~ray-autoscaler/ray_bootstrap_config.yaml").stdout.split() == ["1"]
    # -F -e and quoting: a password that starts with "-" or holds shell or regex specials is still what grep
    # looks for. And the canaries holding it must be found: a grep that fails (its errors go to /dev/null
    # for unreadable files) would otherwise find nothing and pass.
    for secret in (password, sim.autoscaler_password):
        found, canary = password_on_head(head_ip, cluster_key, secret)
        assert found == sorted([canary.file, "environ of the canary"]), found
    assert_a_job_reaches_no_secret_and_no_root(head_ip, cluster_key, token, head_blob)

    config_caches = list((state_dir / "tmp").glob("ray-config-*"))
    assert config_caches, "ray exec cached the bootstrapped config (ray up ran with --no-config-cache)"
    assert leftovers.files_containing(password, state_dir, *config_caches) == []

    # A job that needs two workers at once makes the autoscaler add one; it completes.
    hosts = ray_cluster.run_scale_up_job(head_ip, cluster_key, workers=2, timeout=300)
    workers = of_kind(cluster_nodes(sim, name, cluster_key), "worker")
    assert len(workers) == 2
    assert sorted(hosts) == sorted(guest.hostname for guest in guests.guests().values()
                                   if guest.address in {worker["ip"] for worker in workers})

    # Idle workers beyond min_workers go after the idle timeout (15 s).
    wait_for("the idle worker's VM to be deleted", lambda: len(of_kind(cluster_nodes(sim, name, cluster_key), "worker")) == 1,
             timeout=240)

    # The head's autoscaler made, tagged and deleted those workers as the head's account, calling nothing
    # beyond the autoscaler role's methods; the operator's account made the head (and its template).
    calls = method_trace.read(sim.trace_methods)
    assert privileges.unlisted(method_trace.project_calls(calls)) == []
    by_head = method_trace.project_calls(calls, user=sim.autoscaler_username)
    assert {("CloneVM_Task", "VirtualMachine"), ("SetField", "CustomFieldsManager"), ("Destroy_Task", "VirtualMachine"),
            ("WaitForUpdatesEx", "PropertyCollector")} <= by_head, sorted(by_head)
    assert by_head <= privileges.role_methods(privileges.AUTOSCALER), \
        sorted(by_head - privileges.role_methods(privileges.AUTOSCALER))
    assert ("ImportVApp", "ResourcePool") in method_trace.project_calls(calls, user=sim.endpoint.username)

    # A restarted head (Ray stopped and started by a second `ray up`) finds its cluster in vCenter.
    kept = {node["uuid"] for node in cluster_nodes(sim, name, cluster_key)}
    again = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config), extra_env=version)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    ray_cluster.wait_for_alive_nodes(head_ip, cluster_key, 2, timeout=240)  # the kept worker rejoined
    after_restart = cluster_nodes(sim, name, cluster_key)
    assert {node["uuid"] for node in after_restart} == kept, "no duplicate head, no replacement worker"
    assert of_kind(after_restart, "head")[0]["uuid"] == head_uuid

    down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config), extra_env=version)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_nodes(sim, name, cluster_key) == []
    wait_for("every guest to stop", lambda: guests.guests() == {}, timeout=30, interval=0.5)


def assert_a_job_reaches_no_secret_and_no_root(head_ip, key, token, head_blob):
    """A job submitted with the token runs as `ray`: no cluster key, no vCenter password, no sudo, no planted code."""
    job = job_probe.as_job(head_ip, key, token, head_blob)
    assert job["user"] == "ray", job
    assert not any(job["read"].values()), job["read"]
    assert job["decrypted"] is False
    assert job["sudo"] != 0, "a job used sudo on the head"
    assert not any(job["written"].values()), job["written"]
    # The same probe as the autoscaler reaches the key and the password (it is not blind); its Python
    # environment is root's for it too, and the SSH user keeps its sudo for setup.
    autoscaler = job_probe.as_user(head_ip, key, "ray-autoscaler", head_blob)
    assert autoscaler["user"] == "ray-autoscaler" and autoscaler["decrypted"] is True, autoscaler
    assert [path for path, read in autoscaler["read"].items() if read] == [
        "/home/ray-autoscaler/ray_bootstrap_key.pem", "/home/ray-autoscaler/ray_bootstrap_config.yaml"], autoscaler
    assert [folder for folder, written in autoscaler["written"].items() if written] == [
        "/home/ray-autoscaler/.ansible", "/home/ray-autoscaler/", "/home/ray-autoscaler/.ray-vsphere"], autoscaler
    assert autoscaler["sudo"] != 0
    assert ssh(head_ip, key, "sudo -n true").returncode == 0


BROKEN_CONFIGS = [
    ("provider.datastore", None,
     "available_node_types.head.node_config.datastore: required (set it here or in provider.datastore)"),
    ("provider.ip_timeout", "soon", "provider.ip_timeout: must be an integer, not 'soon'"),
    ("provider.datastroe", "LocalDS_0", "provider.datastroe: unknown key; did you mean datastore?"),
    ("available_node_types.worker.node_config.cpus", 0,
     "available_node_types.worker.node_config.cpus: must be at least 1, not 0"),
    ("provider.vcenter_password", "hunter2", "provider.vcenter_password: do not write the password"),
    ("auth.ssh_user", None, "auth.ssh_user: required"),
    ("worker_start_ray_commands", ["ray start --address=$RAY_HEAD_IP:6379"],
     "worker_start_ray_commands[0]: runs `ray start` without token authentication: prefix it with RAY_AUTH_MODE=token"),
    ("docker", {"image": "rayproject/ray:2.60.0", "container_name": "ray_container"},
     "docker.image, docker.container_name: a container is not supported by ray_vsphere: Ray runs on the VM itself"),
    ("provider.datastore", "LocalDS_9",
     "available_node_types.worker.node_config: datastore 'LocalDS_9' not found in datacenter DC0"),
    ("provider.network", "Prod Network",
     "available_node_types.head.node_config: network 'Prod Network' not found in datacenter DC0"),
]


def test_broken_cluster_yaml_is_refused_with_the_key_named_and_nothing_created(testbed, cluster_key, tmp_path):
    sim, guests = testbed
    for index, (key, value, expected) in enumerate(BROKEN_CONFIGS):
        config = ray_cluster.provider_cluster_yaml(tmp_path / f"broken-{index}.yaml", "broken", cluster_key, **{key: value})
        result = ray_cluster.ray_cli(sim.endpoint, tmp_path / "state", "up", "-y", "--no-config-cache", str(config), timeout=180)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"{key}={value!r} was accepted"
        assert expected in output, f"{key}={value!r}: {output[-3000:]}"
        assert sim.endpoint.password not in output
    # The head's own account: missing, or refused by vCenter, before anything is made.
    config = ray_cluster.provider_cluster_yaml(tmp_path / "head-account.yaml", "broken", cluster_key)
    for head_account, expected in (
            ({"RAY_VSPHERE_HEAD_USER": "", "RAY_VSPHERE_HEAD_PASSWORD": ""},
             "RAY_VSPHERE_HEAD_USER and RAY_VSPHERE_HEAD_PASSWORD: not set. The Ray head's autoscaler logs in to vCenter "
             "with an account of its own"),
            ({"RAY_VSPHERE_HEAD_PASSWORD": "Wr0ng-head-passw0rd"},
             f"rejected the login of the head's account '{sim.autoscaler_username}': wrong username or password")):
        result = ray_cluster.ray_cli(sim.endpoint, tmp_path / "state", "up", "-y", "--no-config-cache", str(config),
                                     timeout=180, extra_env=head_account)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and expected in output, output[-3000:]
        assert "Wr0ng-head-passw0rd" not in output and sim.endpoint.password not in output
    config = ray_cluster.provider_cluster_yaml(tmp_path / "wrong-password.yaml", "broken", cluster_key)
    result = ray_cluster.ray_cli(sim.endpoint, tmp_path / "state", "up", "-y", "--no-config-cache", str(config),
                                 timeout=180, extra_env={"VMWARE_PASSWORD": "Wr0ng-passw0rd"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "rejected the login of 'administrator@vsphere.local': wrong username or password" in output
    assert "Wr0ng-passw0rd" not in output
    assert cluster_nodes(sim, "broken", cluster_key) == []
    assert guests.guests() == {}


def test_ray_up_stops_at_a_head_wheel_altered_after_hashing(testbed, cluster_key, tmp_path, ray_ssh_of):
    sim, guests = testbed
    name = "e2e-altered-wheel"
    ray_ssh_of(name)
    wheels = shutil.copytree(image.head_wheels(), tmp_path / "head-wheels")
    (product,) = wheels.glob(image.PRODUCT_WHEEL_GLOB)
    with product.open("ab") as stream:
        stream.write(b"changed after `python -m ray_provider.head_wheels` hashed the folder")
    config = ray_cluster.provider_cluster_yaml(tmp_path / "cluster.yaml", name, cluster_key,
                                               **{f"file_mounts.{ray_cluster.HEAD_WHEELS_MOUNT}": str(wheels)})
    state_dir = tmp_path / "state"

    up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config))
    output = up.stdout + up.stderr
    assert up.returncode != 0, output[-4000:]
    assert "THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE" in output, output[-4000:]
    (head,) = of_kind(cluster_nodes(sim, name, cluster_key), "head")
    on_head = ssh(head["ip"], cluster_key, "/opt/ray/bin/python -c 'import ray_provider' 2>&1; ray status 2>&1")
    assert "No module named 'ray_provider'" in on_head.stdout, "the altered wheel was installed"
    assert "Could not find any running Ray instance" in on_head.stdout, "Ray started on a head that failed its setup"

    down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config))
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_nodes(sim, name, cluster_key) == []
    wait_for("every guest to stop", lambda: guests.guests() == {}, timeout=30, interval=0.5)


def test_with_cache_stopped_nodes_an_idle_worker_is_stopped_started_again_without_setup_and_ray_down_deletes_it(
        testbed, cluster_key, tmp_path, ray_ssh_of):
    """provider.cache_stopped_nodes: the idle worker's VM is powered off, not deleted; the next scale-up powers
    the same VM on, whose disk still holds what its setup wrote, and Ray skips the setup (its config is
    unchanged); `ray down` deletes the stopped VM with the rest."""
    sim, guests = testbed
    name = "e2e-stopped"
    ray_ssh_of(name)
    config = ray_cluster.provider_cluster_yaml(
        tmp_path / "cluster.yaml", name, cluster_key, idle_timeout_minutes=0.25, **{
            "provider.cache_stopped_nodes": True, "available_node_types.worker.min_workers": 0,
            "available_node_types.worker.max_workers": 1, "max_workers": 1,
            "worker_setup_commands": ["echo set-up >> ~/setup-marker"]})
    state_dir = tmp_path / "state"
    version = {"RAY_UP_enable_autoscaler_v2": "0"}
    up = ray_cluster.ray_cli(sim.endpoint, state_dir, "up", "-y", "--no-config-cache", str(config), extra_env=version)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    (head,) = of_kind(cluster_nodes(sim, name, cluster_key), "head")

    def worker(power_state):
        workers = of_kind(cluster_nodes(sim, name, cluster_key), "worker")
        return workers[0] if len(workers) == 1 and workers[0]["power_state"] == power_state else None

    ray_cluster.run_scale_up_job(head["ip"], cluster_key, workers=1, timeout=240)
    first = worker("poweredOn")
    assert first, cluster_nodes(sim, name, cluster_key)
    assert ssh(first["ip"], cluster_key, "cat ~/setup-marker").stdout == "set-up\n"

    def monitor_log():
        """The head autoscaler's lines about its provider and its launches and terminations: what a failure shows."""
        return ssh(head["ip"], cluster_key, "sudo grep -E 'ray_vsphere|Terminat|terminat|Launch|launch' "
                                            "~ray-autoscaler/logs/monitor.log | tail -40; "
                                            "sudo find ~ray-autoscaler/.ray-vsphere -name extravars | xargs sudo grep -h uuids").stdout

    try:
        stopped = wait_for("the idle worker's VM to be powered off", lambda: worker("poweredOff"), timeout=180,
                           interval=2)
    except AssertionError as error:
        raise AssertionError(f"{error}: {cluster_nodes(sim, name, cluster_key)}\n{monitor_log()}") from error
    assert (stopped["uuid"], stopped["moid"], stopped["tags"]["ray-node-status"]) == (
        first["uuid"], first["moid"], "stopped"), "stopped, not deleted and made anew"
    wait_for("the stopped worker's guest to go", lambda: first["moid"] not in guests.guests(), timeout=30, interval=0.5)

    ray_cluster.run_scale_up_job(head["ip"], cluster_key, workers=1, timeout=240)
    again = worker("poweredOn")
    assert again and (again["uuid"], again["moid"]) == (first["uuid"], first["moid"]), "the same VM, powered on"
    assert ssh(again["ip"], cluster_key, "cat ~/setup-marker").stdout == "set-up\n", \
        "the disk kept the setup's file and Ray did not run the setup again"
    restarted = ssh(head["ip"], cluster_key,
                    f"sudo grep -c 'started again {first['name']}' ~ray-autoscaler/logs/monitor.log")
    assert int(restarted.stdout.strip() or 0) >= 1, restarted.stdout + restarted.stderr

    wait_for("the worker to be stopped again", lambda: worker("poweredOff"), timeout=180, interval=2)
    down = ray_cluster.ray_cli(sim.endpoint, state_dir, "down", "-y", str(config), extra_env=version)
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    assert cluster_nodes(sim, name, cluster_key) == [], "ray down deletes the stopped worker too"
    wait_for("every guest to stop", lambda: guests.guests() == {}, timeout=30, interval=0.5)
