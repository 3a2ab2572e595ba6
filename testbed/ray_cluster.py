"""A Ray cluster on the testbed through the real playbooks, and a job to run on it.

Shared by the end-to-end tests and `testbed demo`: the vars a user would
write for the embedded vCenter, the playbook runs (through ansible-runner, as
the NodeProvider and AWX run them) and a Ray job run on the head over SSH.
"""

import contextlib
import getpass
import hashlib
import json
import os
import shutil
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml
from ray.autoscaler._private.command_runner import HASH_MAX_LENGTH

from ray_provider.runner import run_playbook
from testbed import PROJECT_ROOT, image, simulator
from testbed.appliance import build_test_ova
from testbed.guests import DEFAULT_USER, ssh

COLLECTION = "ray_vsphere.cluster"

# A Ray driver on the head, as `ray exec` and `ray submit` run one: tasks
# spread over every node, each reporting the host it ran on.
SPREAD_JOB = """
import json, socket, time, ray
ray.init(address="auto", logging_level="ERROR")

@ray.remote(num_cpus=1)
def square(x):
    time.sleep(1)
    return x * x, socket.gethostname()

results = ray.get([square.options(scheduling_strategy="SPREAD").remote(i) for i in range({tasks})])
print("RESULT " + json.dumps({{"sum_of_squares": sum(r[0] for r in results), "hosts": sorted({{r[1] for r in results}})}}))
"""

ALIVE_NODES = """
import json, ray
ray.init(address="auto", logging_level="ERROR")
print("RESULT " + json.dumps(sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])))
"""


# A job submitted to the head's job API (the dashboard's REST endpoint, as
# `ray job submit` calls it) from the head itself, where the API listens.
SUBMIT_JOB = """
import json, sys, time, urllib.error, urllib.request
token = sys.argv[1]
def call(path, body=None):
    request = urllib.request.Request("http://127.0.0.1:8265" + path, method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None
status, body = call("/api/jobs/", {"entrypoint": "echo accepted"})
state = None
while status == 200 and state not in ("SUCCEEDED", "FAILED", "STOPPED"):
    time.sleep(0.5)
    state = call("/api/jobs/" + body["submission_id"])[1]["status"]
print("RESULT " + json.dumps({"http_status": status, "job_state": state}))
"""

PORT_OPEN = """
import json, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("RESULT true")
except OSError:
    print("RESULT false")
"""


def submit_job(head_ip, key_path, token, timeout=120):
    """{'http_status': ..., 'job_state': ...} of a job posted to the head's job API with `token` (None: without)."""
    return _python_on_head(head_ip, key_path, SUBMIT_JOB, timeout, arguments=[token or ""])


def port_open(from_ip, key_path, host, port):
    """Whether the guest at from_ip can open a TCP connection to host:port."""
    return _python_on_head(from_ip, key_path, PORT_OPEN, 60, arguments=[host, str(port)])


def cluster_vars(cluster_name, key_path, worker_count):
    """The vars file a user would write for the embedded testbed."""
    return dict(
        ray_cluster_name=cluster_name,
        ray_ovf=str(build_test_ova()),
        ray_datacenter=simulator.DATACENTER,
        ray_vsphere_cluster=simulator.CLUSTERS[0],
        ray_resource_pool="DC0_C0_RP1",
        ray_vm_folder=simulator.VM_FOLDER,
        ray_datastore=simulator.DATASTORES[0],
        ray_network=simulator.NETWORK,
        ray_worker_count=worker_count,
        ray_ssh_private_key=str(key_path),
        ray_ssh_user=DEFAULT_USER,  # the test OVA boots like Ubuntu's cloud image
        # Guests share this machine: one CPU each and small object stores.
        ray_start_options=["--num-cpus=1", "--object-store-memory=200000000"],
        ray_ip_timeout=120,
    )


def run(playbook, run_dir, vmware_environment, extravars, timeout=900):
    """ansible-runner run of the collection's playbook (ray_up, ...) by FQCN with VMWARE_* credentials."""
    return run_playbook(f"{COLLECTION}.{playbook}", run_dir, extravars=extravars, envvars=vmware_environment,
                        timeout=timeout)


def run_tasks(tasks, run_dir, vmware_environment, cmdline=None, timeout=900, module_defaults=None):
    """Run `tasks` as a localhost play in a project of its own under run_dir; the runner object."""
    project = Path(run_dir) / "project"
    project.mkdir(parents=True)
    play = {"name": "Tasks", "hosts": "localhost", "connection": "local", "gather_facts": False}
    if module_defaults:
        play["module_defaults"] = module_defaults
    (project / "play.yml").write_text(yaml.safe_dump([dict(play, tasks=tasks)], sort_keys=False))
    return run_playbook("play.yml", run_dir, extravars={}, envvars=vmware_environment, cmdline=cmdline,
                        timeout=timeout, project_dir=project)


# Drivers run on the head as Ray's user, `ray`, as Ray's job manager runs a job's entrypoint: Ray's sockets
# are that user's, and a driver of the SSH user (who has sudo) would load what the cluster's jobs send it.
RAY_USER = "ray"


def _python_on_head(head_ip, key_path, script, timeout, arguments=(), user=RAY_USER):
    """Run a Python script on the head as `user` (Ray's, through sudo; or the SSH user); its RESULT line, parsed."""
    command = shlex.join(["python", "-c", script, *arguments])
    if user != DEFAULT_USER:
        # Ray's user reads Ray's TLS settings from the copy its node made for it, as Ray's daemons do.
        command = (f'sudo -H -u {shlex.quote(user)} env "PATH=$PATH" RAY_AUTH_MODE=token sh -c '
                   f'{shlex.quote(". /etc/ray-vsphere/tls/environment && exec " + command)}')
    result = ssh(head_ip, key_path, command, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"Ray driver on {head_ip} failed: {result.stderr[-2000:]}")
    # Ray writes its own warnings (lagging heartbeats, ...) to the driver's
    # stdout at any time, so the result is the line the script marked.
    marked = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if not marked:
        raise RuntimeError(f"Ray driver on {head_ip} printed no result: {result.stdout[-2000:]}")
    return json.loads(marked[-1][len("RESULT "):])


def run_driver(head_ip, key_path, script, arguments=(), timeout=300):
    """What a Ray driver script printed on its RESULT line, run with arguments on the head as Ray's user (as a job is)."""
    return _python_on_head(head_ip, key_path, script, timeout, arguments=arguments)


def run_spread_job(head_ip, key_path, tasks=6, timeout=300):
    """{'sum_of_squares': ..., 'hosts': [...]} from a job spread over the cluster."""
    return _python_on_head(head_ip, key_path, SPREAD_JOB.format(tasks=tasks), timeout)


def alive_nodes(head_ip, key_path, timeout=120, user=RAY_USER):
    """The node IPs Ray counts as alive, seen from a driver on the head run as `user` (the one Ray runs as)."""
    return _python_on_head(head_ip, key_path, ALIVE_NODES, timeout, user=user)


def wait_for_alive_nodes(head_ip, key_path, count, timeout=300, interval=1.0):
    """The node IPs once Ray on the head counts exactly `count` alive; TimeoutError otherwise.

    A driver that cannot connect yet (the head still starting or restarting) counts as none alive.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            alive = alive_nodes(head_ip, key_path)
        except RuntimeError:
            alive = []
        if len(alive) == count:
            return alive
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray on {head_ip} counts {len(alive)} alive nodes {alive}, not {count}, after {timeout} s")
        time.sleep(interval)


def ray_status(head_ip, key_path):
    return ssh(head_ip, key_path, "ray status").stdout


# Needs `workers` nodes at once (one CPU bundle on each, STRICT_SPREAD): on a
# smaller cluster it waits until the autoscaler has added the missing workers.
SCALE_UP_JOB = """
import json, socket, ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
ray.init(address="auto", logging_level="ERROR")
group = placement_group([{{"CPU": 1}}] * {workers}, strategy="STRICT_SPREAD")
ray.get(group.ready(), timeout={timeout})

@ray.remote(num_cpus=1)
def hostname():
    return socket.gethostname()

hosts = ray.get([hostname.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group, index)).remote()
                 for index in range({workers})])
print("RESULT " + json.dumps(sorted(hosts)))
"""


def run_scale_up_job(head_ip, key_path, workers, timeout=300):
    """The hostnames of the `workers` nodes the job ran on, once the cluster had them."""
    return _python_on_head(head_ip, key_path, SCALE_UP_JOB.format(workers=workers, timeout=timeout), timeout + 30)


EXAMPLE_PROVIDER_CLUSTER = PROJECT_ROOT / "examples" / "ray-cluster.testbed.yaml"
HEAD_WHEELS_MOUNT = "~/ray-vsphere-wheels"
RAY_CLI = Path(sys.executable).parent / "ray"


def provider_cluster_yaml(path, cluster_name, key_path, example=EXAMPLE_PROVIDER_CLUSTER, **changes):
    """An example (examples/ray-cluster.testbed.yaml) with this name, key and image, plus `changes` (dotted keys;
    None drops)."""
    config = yaml.safe_load(Path(example).read_text())
    config["cluster_name"] = cluster_name
    config["auth"]["ssh_private_key"] = str(key_path)
    config["provider"]["ovf"] = str(build_test_ova())
    config["file_mounts"][HEAD_WHEELS_MOUNT] = str(image.head_wheels())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        if value is None:
            section.pop(last, None)
        else:
            section[last] = value
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
    return Path(path)


def ray_cli(endpoint, state_dir, *arguments, timeout=600, extra_env=None):
    """`ray <arguments>` with the endpoint's VMWARE_* variables, as a user runs it; the CompletedProcess.

    The provider's runs and Ray's temp files (its config cache, ray-config-*)
    go below state_dir, not into the machine's home and /tmp.
    """
    temp_dir = Path(state_dir) / "tmp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, **endpoint.environment(), "RAY_VSPHERE_STATE_DIR": str(state_dir),
                   "TMPDIR": str(temp_dir), "PATH": f"{RAY_CLI.parent}{os.pathsep}{os.environ['PATH']}",
                   **(extra_env or {})}
    return subprocess.run([str(RAY_CLI), *arguments], capture_output=True, text=True, timeout=timeout, env=environment)


def close_ray_ssh_connections(cluster_name):
    """Close the SSH master connections `ray up` keeps for a cluster and remove their folder.

    Ray's launcher puts them in /tmp/ray_ssh_<user hash>/<cluster hash>
    (hard-coded in ray.autoscaler._private.command_runner), and `ray down`
    leaves them behind.
    """
    def short_hash(text):
        return hashlib.sha256(text.encode()).hexdigest()[:HASH_MAX_LENGTH]

    user_dir = Path("/tmp") / f"ray_ssh_{short_hash(getpass.getuser())}"
    control_dir = user_dir / short_hash(cluster_name)
    for control_socket in control_dir.glob("*"):
        subprocess.run(["ssh", "-o", f"ControlPath={control_socket}", "-O", "exit", "ray-node"],
                       capture_output=True, timeout=30)
    shutil.rmtree(control_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        user_dir.rmdir()  # only when no other cluster's connections are in it
