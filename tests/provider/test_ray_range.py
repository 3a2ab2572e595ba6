"""The provider works with both ends of the Ray range the wheel declares.

pyproject.toml gives Ray as a range (`ray[default]>=LOW,<HIGH`), so a head
image with any Ray in it installs the wheel. Each end gets the same checks of
what the provider takes from Ray, run by that Ray's Python:

- the upper end is constraints.txt's pin, the Ray of .venv, which the rest of
  the suite drives end to end;
- the lower end is a fresh virtualenv (no .venv packages, so no `ansible`
  either) where pip installs the wheel built from this checkout with Ray at
  the range's lower bound and constraints.txt's versions for everything else:
  pip itself checks the wheel admits that Ray. It downloads that Ray's wheel
  (212 MiB once installed) and the rest from the package index unless pip's
  cache holds them, and took 60 s on a loaded two-core machine: marked slow.
  The pinned end costs a few seconds and runs in every suite.

The checks are the contract Ray holds the provider to and the Ray internals it
leans on: the NodeProvider methods the autoscaler calls, with Ray's
signatures; every `ray start` option the examples, the ray_node role and
head_start pass (hidden ones such as --no-monitor included, read from the
click command rather than --help); the monitor scripts head_start runs and
the options it gives them and the utilization scorer hook it names; token authentication switched on by
RAY_AUTH_MODE=token with the token where the provider mounts it; the TLS
variables the nodes set; the SSH runner the host-key check builds on.
"""

import json
import os
import re
import subprocess
import sys
import tomllib
import venv

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from testbed import PROJECT_ROOT, image

EXAMPLES = ("ray-cluster.testbed.yaml", "ray-cluster.vsphere.yaml", "ray-cluster.gpu.yaml", "ray-cluster.static-ip.yaml")
START_COMMAND_KEYS = ("head_start_ray_commands", "worker_start_ray_commands")
RAY_NODE_START = PROJECT_ROOT / "roles" / "ray_node" / "tasks" / "start.yml"
# What Ray's autoscaler (v1 and v2's cloud provider adapter) calls on a NodeProvider.
AUTOSCALER_CALLS = ("non_terminated_nodes", "is_running", "is_terminated", "node_tags", "external_ip",
                    "internal_ip", "create_node", "create_node_with_resources_and_labels", "set_node_tags",
                    "terminate_node", "terminate_nodes", "post_process", "get_command_runner", "bootstrap_config",
                    "prepare_for_head_node", "fillout_available_node_types_resources")

CONTRACT = r'''
import inspect, json, os, subprocess, sys, tempfile
from pathlib import Path
from types import SimpleNamespace

given = json.loads(sys.stdin.read())
import ray
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler._private.command_runner import DockerCommandRunner, HASH_MAX_LENGTH
from ray.scripts import scripts
from ray_provider import head_start, host_keys, janitor
from ray_provider.node_provider import VsphereNodeProvider
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_auth, _ray_tls

found = {"version": ray.__version__, "provider_file": sys.modules["ray_provider"].__file__, "problems": []}
problems = found["problems"]

def parameters(function):
    return [name for name in inspect.signature(function).parameters if name != "self"]

for name in given["calls"]:
    ours, theirs = getattr(VsphereNodeProvider, name, None), getattr(NodeProvider, name, None)
    if theirs is None:
        problems.append(f"NodeProvider.{name} does not exist")
    elif name not in VsphereNodeProvider.__dict__:
        problems.append(f"VsphereNodeProvider does not define {name}")
    elif parameters(ours)[:len(parameters(theirs))] != parameters(theirs):
        problems.append(f"{name}{parameters(ours)} does not take Ray's {parameters(theirs)}")

options = {option for parameter in scripts.start.params for option in parameter.opts}
for option in given["start_options"] + head_start.ray_start_options([]):
    if option not in options:
        problems.append(f"ray start has no {option}")
if "--force" not in {option for parameter in scripts.stop.params for option in parameter.opts}:
    problems.append("ray stop has no --force")

autoscaler = SimpleNamespace(pw_dir="/home/ray-autoscaler")
for v2 in ("0", "1"):
    os.environ[head_start.ENABLE_V2] = v2
    command = head_start.monitor_command(["--node-ip-address=127.0.0.1", "--port=6379"], autoscaler)
    if not Path(command[5]).is_file():
        problems.append(f"no monitor at {command[5]}")
        continue
    helped = subprocess.run([sys.executable, *command[3:6], "--help"], capture_output=True, text=True, timeout=120)
    for argument in command[6:]:
        if argument.split("=")[0] not in helped.stdout:
            problems.append(f"{command[5]} takes no {argument.split('=')[0]}")

for mode, expected in (("token", "TOKEN"), ("disabled", "DISABLED")):
    probe = subprocess.run([sys.executable, "-c", "from ray._raylet import AuthenticationMode as A, get_authentication_mode as m; "
                            "print(*[n for n in ('TOKEN', 'DISABLED') if m() == getattr(A, n)])"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_AUTH_MODE": mode})
    if probe.stdout.strip() != expected:
        problems.append(f"RAY_AUTH_MODE={mode} gives {probe.stdout.strip()!r} {probe.stderr[-300:]}")
from ray._private.authentication import authentication_token_setup
if str(authentication_token_setup._get_default_token_path()) != os.path.expanduser(_ray_auth.TOKEN_PATH_ON_NODES):
    problems.append(f"Ray reads its token at {authentication_token_setup._get_default_token_path()}")

try:  # it moved in 2.5x
    from ray._common import tls_utils
except ImportError:
    from ray._private import tls_utils
for variable in _ray_tls.environment("/tls"):
    if variable not in inspect.getsource(tls_utils):
        problems.append(f"Ray's tls_utils reads no {variable}")

with tempfile.TemporaryDirectory() as folder:
    known_hosts = host_keys.KnownHosts(Path(folder) / host_keys.KNOWN_HOSTS_FILE)
    node = SimpleNamespace(internal_ip=lambda node_id: "192.0.2.7", external_ip=lambda node_id: "192.0.2.8")
    common = dict(log_prefix="contract: ", node_id="node-1", provider=node, auth_config={
        "ssh_user": "ubuntu", "ssh_private_key": "/key"}, cluster_name="contract", process_runner=subprocess,
        use_internal_ip=True)
    runner = host_keys.verified_command_runner(known_hosts, None, None, **common)
    if "HostKeyAlias=node-1" not in runner.ssh_options.to_ssh_options_list(timeout=5):
        problems.append("the verified SSH runner's options do not reach ssh")
    try:
        if runner.ssh_target() != "192.0.2.7":
            problems.append(f"the verified SSH runner would probe {runner.ssh_target()}, not the node's internal IP")
    except Exception as error:
        problems.append(f"the verified SSH runner finds no address to probe: {error!r}")
    finally:
        import shutil
        shutil.rmtree(runner.ssh_control_path, ignore_errors=True)
    docker = host_keys.verified_command_runner(known_hosts, None, {"container_name": "ray", "image": "ray"}, **common)
    if not isinstance(docker, DockerCommandRunner) or docker.ssh_command_runner.__class__.__name__ != "VerifiedSSHCommandRunner":
        problems.append("DockerCommandRunner does not run over the verified SSH runner")

# The v1 scorer hook head_start names for the monitor (capacity_backoff.py), and the records it reads.
from ray.autoscaler._private import node_provider_availability_tracker as availability, resource_demand_scheduler
from ray.autoscaler._private.constants import AUTOSCALER_UTILIZATION_SCORER_KEY
from ray_provider import capacity_backoff
os.environ[AUTOSCALER_UTILIZATION_SCORER_KEY] = capacity_backoff.SCORER
if resource_demand_scheduler.ResourceDemandScheduler(None, {}, 0, "head", 1).utilization_scorer is not \
        capacity_backoff.utilization_scorer:
    problems.append(f"v1's scheduler does not load the scorer {AUTOSCALER_UTILIZATION_SCORER_KEY} names")
if parameters(capacity_backoff.utilization_scorer) != parameters(resource_demand_scheduler._default_utilization_scorer):
    problems.append(f"v1's scorer takes {parameters(resource_demand_scheduler._default_utilization_scorer)}")
if not ({"is_available", "unavailable_node_information"} <= set(availability.NodeAvailabilityRecord.__dataclass_fields__)
        and "category" in availability.UnavailableNodeInformation.__dataclass_fields__):
    problems.append("v1's NodeAvailabilityRecord has other fields")
print("CONTRACT " + json.dumps(found))
'''


def declared_ray():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    (ray,) = [Requirement(line) for line in project["dependencies"] if Requirement(line).name == "ray"]
    return ray


def range_ends():
    """(lowest, highest) of the declared range: its lower bound, and the version constraints.txt pins."""
    specifier = declared_ray().specifier
    (lowest,) = [spec.version for spec in specifier if spec.operator == ">="]
    (pinned,) = [line.split("==")[1] for line in image.CONSTRAINTS.read_text().splitlines()
                 if line.lower().startswith("ray==")]
    return lowest, pinned


def start_options():
    """The `ray start` options (names) the examples, the ray_node role and head_start pass."""
    names = set()
    for example in EXAMPLES:
        config = yaml.safe_load((PROJECT_ROOT / "examples" / example).read_text())
        for key in START_COMMAND_KEYS:
            for command in config[key]:
                if "ray start" in command:
                    names.update(re.findall(r"(--[a-z][a-z-]*)", command.split("ray start", 1)[1]))
    role = RAY_NODE_START.read_text()
    names.update(re.findall(r"'(--[a-z][a-z-]*)", role.split("'start']", 1)[1]))  # not setsid's
    assert {"--head", "--port", "--address", "--autoscaling-config", "--node-ip-address"} <= names, names
    return sorted(names)


def contract(python):
    result = subprocess.run([str(python), "-c", CONTRACT], input=json.dumps(
        {"calls": AUTOSCALER_CALLS, "start_options": start_options()}), capture_output=True, text=True, timeout=600,
        cwd="/", env={key: value for key, value in os.environ.items() if not key.startswith("RAY_")})
    marked = [line for line in result.stdout.splitlines() if line.startswith("CONTRACT ")]
    assert result.returncode == 0 and marked, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(marked[-1][len("CONTRACT "):])


def test_the_range_is_a_range_whose_top_is_the_pinned_ray():
    lowest, pinned = range_ends()
    specifier = declared_ray().specifier
    assert "default" in declared_ray().extras
    assert Version(lowest) < Version(pinned) and specifier.contains(lowest) and specifier.contains(pinned)
    # The upper bound admits the pinned minor line and no later one, which nobody has tested.
    (upper,) = [Version(spec.version) for spec in specifier if spec.operator == "<"]
    assert upper.release[:2] == (Version(pinned).major, Version(pinned).minor + 1), (upper, pinned)


def test_the_highest_ray_of_the_range_meets_the_providers_contract():
    found = contract(sys.executable)
    assert Version(found["version"]) == Version(range_ends()[1])
    assert found["problems"] == []


@pytest.mark.slow
def test_the_lowest_ray_of_the_range_meets_the_providers_contract(tmp_path):
    lowest, pinned = range_ends()
    environment = tmp_path / "lowest-ray"
    venv.create(environment, with_pip=True)
    wheel = image.build_product_wheel(tmp_path / "wheel")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(f"{line}\n" for line in image.CONSTRAINTS.read_text().splitlines()
                                   if not line.lower().startswith("ray==")))
    installed = subprocess.run([str(environment / "bin" / "pip"), "install", "--quiet", "-c", str(constraints),
                                f"{wheel}", f"ray[default]=={lowest}"], capture_output=True, text=True, timeout=1800)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    found = contract(environment / "bin" / "python")
    assert Version(found["version"]) == Version(lowest) != Version(pinned)
    assert found["provider_file"].startswith(str(environment)), "the wheel's provider, not the checkout's"
    assert found["problems"] == []
