"""The README's three quick starts, run as written on the testbed.

Each block under a `<!-- quick-start: NAME -->` marker runs in bash, line by
line as a user pastes it, in a folder that holds this checkout's files and
with HOME a fresh folder. Only what a user replaces is replaced:
- the `export` lines' vCenter address (plus VMWARE_PORT: vcsim is not on 443)
  and passwords, and the accounts, which are the testbed's; the CA is the
  testbed's, put where the block says (~/vmca-root.pem);
- HOME is a fresh folder, but ssh expands `~` to the account's own home:
  the cluster file gives the example's key path written out in full;
- after each `cp` of an example, the user's edit of the copy: their site and
  image (with its sha256), and what the test image and this 2-core machine
  need (the testbed example's start commands, one CPU per guest);
- the `pip wheel`/`pip download` line gives way to a copy of the testbed's
  own folder of the head's wheels, which testbed.image.head_wheels fills
  with the same `pip download` (keeping only what the test image lacks);
  the line as written fetches Ray and every dependency from PyPI, hundreds
  of MiB the suite already holds. The next line, which hashes them, runs.
There is no AWX here: the AWX block runs up to `awx/configure.yml`, whose
command line, as written, is syntax-checked and has every awx.awx task's
arguments checked against the installed module's own spec, as in
tests/playbooks/test_awx_configure.py. The block's launch is what
tests/playbooks/test_awx_job_templates.py replays.

One vcsim with guests serves the module: the two cluster-making quick starts
run back to back on it, each up and down again, checked at vcsim.
"""

import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from testbed import PROJECT_ROOT, image, ray_cluster
from testbed.appliance import build_test_ova
from testbed.guests import vcsim_with_guests

README = PROJECT_ROOT / "README.md"
BIN = Path(sys.executable).parent
MARKER = re.compile(r"<!-- quick-start: ([\w-]+) -->\n```\n(.*?)```", re.S)


def quick_starts():
    """{name: [command line]} of the README's marked blocks, continuation lines joined."""
    blocks = {name: body.replace("\\\n", " ") for name, body in MARKER.findall(README.read_text())}
    return {name: [line for line in body.splitlines() if line.strip()] for name, body in blocks.items()}


def test_the_readme_has_three_short_quick_starts():
    blocks = quick_starts()
    assert sorted(blocks) == ["ansible-playbook", "awx", "ray-up"]
    for name, lines in blocks.items():
        assert len(lines) <= 10, f"the {name} quick start is {len(lines)} lines"
    assert len(README.read_text().splitlines()) < 200


def with_values_of_the_testbed(line, values):
    """An `export A=... B=...` line with the testbed's values for the variables it has them for."""
    command = line.partition("    #")[0]
    words = command.split()  # the README's export lines have no quoted spaces; a word is kept as typed
    if words[:1] != ["export"]:
        return line
    assigned = []
    for word in words[1:]:
        name = word.partition("=")[0]
        assigned.append(f"{name}={shlex.quote(values[name])}" if name in values else word)
        if name == "VMWARE_HOST" and "VMWARE_PORT" in values:
            assigned.append(f"VMWARE_PORT={values['VMWARE_PORT']}")
    return "export " + " ".join(assigned)


def checkout_copy(folder):
    """A folder with this checkout's files (linked), where a quick start's own files land."""
    folder.mkdir()
    for entry in PROJECT_ROOT.iterdir():
        if entry.name not in {".git", ".venv", ".tools"}:
            (folder / entry.name).symlink_to(entry)
    return folder


def run_block(lines, cwd, home, environment, timeout=1500):
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMWARE_", "RAY_VSPHERE_HEAD_"))},
           **environment, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    (home / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(home / "tmp")  # Ray's config cache and ray-config-* files, not the machine's /tmp
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def edited_after_copy(lines, edit_command):
    """The block with `edit_command` right after its `cp` line: the user's edit of the copied example."""
    at = next(index for index, line in enumerate(lines) if line.startswith("cp "))
    return lines[:at + 1] + [edit_command] + lines[at + 1:]


def substitute(lines, values):
    return [with_values_of_the_testbed(line, values) for line in lines]


@pytest.fixture(scope="module")
def testbed(testbed_prerequisites):
    with vcsim_with_guests() as (sim, guests):
        yield sim, guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


@pytest.fixture
def user_home(tmp_path, testbed):
    """A user's home: the testbed's CA where the quick starts say, nothing else."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(testbed[0].endpoint.ca_path, home / "vmca-root.pem")
    return home


def values_of_the_testbed(sim):
    environment = sim.endpoint.environment()
    return {name: value for name, value in environment.items() if name != "VMWARE_CA_PATH"}


def nodes_at_vcsim(sim, key_path, cluster_name):
    service_instance = sim.endpoint.connect()
    try:
        return _nodes.list_nodes(service_instance, ClusterKey(Path(key_path).read_text(), cluster_name))[0]
    finally:
        service_instance.content.sessionManager.Logout()


def vm_names_at_vcsim(sim):
    """The names of the VMs vcsim holds, templates left out."""
    service_instance = sim.endpoint.connect()
    try:
        view = service_instance.content.viewManager.CreateContainerView(
            service_instance.content.rootFolder, [vim.VirtualMachine], True)
        return sorted(vm.name for vm in view.view if not (vm.config and vm.config.template))
    finally:
        service_instance.content.sessionManager.Logout()


def write_edit_script(path, changes, drop=()):
    """A script that removes `drop` from the YAML file it is given, then applies `changes`, as the user edits their copy."""
    path.write_text(
        "import sys, yaml\n"
        "path = sys.argv[1]\n"
        "config = yaml.safe_load(open(path))\n"
        f"changes = yaml.safe_load({yaml.safe_dump(changes)!r})\n"
        "def merge(into, new):\n"
        "    for key, value in new.items():\n"
        "        if isinstance(value, dict) and isinstance(into.get(key), dict):\n"
        "            merge(into[key], value)\n"
        "        else:\n"
        "            into[key] = value\n"
        f"for key in {list(drop)!r}:\n"
        "    config.pop(key, None)\n"
        "merge(config, changes)\n"
        "open(path, 'w').write(yaml.safe_dump(config, sort_keys=False))\n")
    return f"python {shlex.quote(str(path))} "


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_ansible_playbook_quick_start_makes_a_cluster_and_removes_it(testbed, user_home, tmp_path):
    sim, guests = testbed
    vms_before = vm_names_at_vcsim(sim)
    ova = build_test_ova()
    testbed_site = ray_cluster.cluster_vars("analytics", "unused", worker_count=1)
    site = {key: testbed_site[key] for key in ("ray_datacenter", "ray_vsphere_cluster", "ray_resource_pool",
                                               "ray_vm_folder", "ray_datastore", "ray_network", "ray_worker_count",
                                               "ray_start_options", "ray_ip_timeout")}
    edit = write_edit_script(tmp_path / "edit.py", dict(site, ray_ovf=str(ova), ray_ovf_sha256=sha256_of(ova),
                                                         ray_setup_commands=[],  # the guests have no internet
                                                         ray_head_cpus=0, ray_head_memory_mb=0,  # the OVF's sizes
                                                         ray_worker_cpus=0, ray_worker_memory_mb=0,
                                                         # The example's ~/.ssh/ray-vsphere-analytics, written out:
                                                         # ssh expands ~ to the account's home, not this test's HOME.
                                                         ray_ssh_private_key=str(user_home / ".ssh" / "ray-vsphere-analytics")),
                             drop=["ray_preferred_cidr"])
    lines = substitute(quick_starts()["ansible-playbook"], values_of_the_testbed(sim))
    lines = edited_after_copy(lines, edit + "my-cluster.yml")
    up_lines = [line for line in lines if "ray_down" not in line]
    work = checkout_copy(tmp_path / "checkout")

    up = run_block(up_lines, work, user_home, {})
    assert up.returncode == 0, (up.stdout + up.stderr)[-6000:]
    key = user_home / ".ssh" / "ray-vsphere-analytics"  # the example's ray_ssh_private_key, generated by ray_up
    nodes = nodes_at_vcsim(sim, key, "analytics")
    assert sorted(node["name"] for node in nodes) == ["analytics-head", "analytics-worker-0"]
    head_ip = {guest.hostname: guest.address for guest in guests.guests().values()}["analytics-head"]
    assert f"Ray cluster analytics: head {head_ip}" in up.stdout, "ray_up prints the head's address"
    assert len(ray_cluster.alive_nodes(head_ip, key)) == 2, "Ray runs on the head and the worker"

    down = run_block([line for line in lines if line.startswith("export ") or "ray_down" in line], work, user_home, {})
    assert down.returncode == 0, (down.stdout + down.stderr)[-6000:]
    assert nodes_at_vcsim(sim, key, "analytics") == []
    assert vm_names_at_vcsim(sim) == vms_before, "ray_down left a VM (templates stay, for the next ray_up)"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_ray_up_quick_start_makes_a_cluster_and_removes_it(testbed, user_home, tmp_path):
    sim, guests = testbed
    testbed_example = yaml.safe_load(ray_cluster.EXAMPLE_PROVIDER_CLUSTER.read_text())
    ova = build_test_ova()
    provider = {key: testbed_example["provider"][key]
                for key in ("datacenter", "cluster", "resource_pool", "vm_folder", "datastore", "network", "ip_timeout")}
    image_part = {key: testbed_example[key] for key in ("available_node_types", "head_setup_commands",
                                                       "head_start_ray_commands", "worker_start_ray_commands")}
    image_part["available_node_types"]["worker"]["min_workers"] = 1
    edit = write_edit_script(tmp_path / "edit.py", {
        "provider": dict(provider, ovf=str(ova), ovf_sha256=sha256_of(ova)), **image_part,
        "head_node_type": testbed_example["head_node_type"], "max_workers": 1},
        drop=["available_node_types"])  # the node types of the test image, in place of the example's
    lines = substitute(quick_starts()["ray-up"], values_of_the_testbed(sim))
    lines = edited_after_copy(lines, edit + "my-ray-cluster.yaml")
    # Copied at once: the testbed's folder is a cache that other checkouts on this machine may refill.
    wheels = shutil.copytree(image.head_wheels(), tmp_path / "testbed-wheels", ignore=shutil.ignore_patterns("requirements.txt"))
    lines = [f"mkdir -p ~/ray-vsphere-wheels && cp {shlex.quote(str(wheels))}/*.whl ~/ray-vsphere-wheels/"
             if line.startswith("pip wheel ") else line for line in lines]
    up_lines = [line for line in lines if not line.startswith("ray down")]
    work = checkout_copy(tmp_path / "checkout")
    environment = {"RAY_VSPHERE_STATE_DIR": str(tmp_path / "state")}
    vms_before = vm_names_at_vcsim(sim)
    try:
        up = run_block(up_lines, work, user_home, environment)
        assert up.returncode == 0, (up.stdout + up.stderr)[-6000:]
        made = set(vm_names_at_vcsim(sim)) - set(vms_before)
        heads = {guest.hostname: guest.address for guest in guests.guests().values()
                 if guest.hostname.startswith("analytics-head")}
        assert len(heads) == 1 and set(heads) <= made, f"ray up made {made}, booted {heads}"
        assert "vSphere" in up.stdout and "create_nodes" in up.stdout, "ray up says what it is doing"
        head_type = testbed_example["head_node_type"]
        assert re.search(rf"^\s*1 {head_type}\s*$", up.stdout, re.M), "ray exec ... 'ray status' lists the head"
        # The cluster key ray up made at the provider's default path, whichever name that gives it.
        key, = [path for path in (user_home / ".ssh").glob("ray-*analytics") if path.is_file()]
        head_ip, = heads.values()
        assert head_ip in ray_cluster.alive_nodes(head_ip, key), "Ray runs on the head"
        down = run_block([line for line in lines if line.startswith(("export", "ray down"))], work, user_home,
                         environment)
        assert down.returncode == 0, (down.stdout + down.stderr)[-6000:]
    finally:
        ray_cluster.close_ray_ssh_connections("analytics")
    assert vm_names_at_vcsim(sim) == vms_before, "ray down left a VM"


def test_the_awx_quick_start_configures_what_the_job_templates_need(tmp_path):
    configure_test = _load_test_module(PROJECT_ROOT / "tests" / "playbooks" / "test_awx_configure.py")
    lines = quick_starts()["awx"]
    (tmp_path / "ca").mkdir()
    ca = configure_test.pki.make_ca(tmp_path / "ca", common_name="vCenter's CA").certificate
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ca, home / "vmca-root.pem")
    work = checkout_copy(tmp_path / "checkout")
    *setup, configure = lines
    assert configure.startswith("ansible-playbook awx/configure.yml ")
    values = {"VMWARE_PASSWORD": "pw", "CONTROLLER_PASSWORD": "pw"}
    syntax = run_block(substitute(setup, values) + [configure + " --syntax-check"], work, home, {})
    assert syntax.returncode == 0, (syntax.stdout + syntax.stderr)[-4000:]
    # The block made an unencrypted ed25519 private key: ssh-keygen derives its public half without a passphrase.
    derived = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", work / "ray-analytics.key"],
                             capture_output=True, text=True)
    assert derived.returncode == 0 and derived.stdout.startswith("ssh-ed25519 "), derived.stderr

    words = shlex.split(configure)
    extra_vars = dict(words[index + 1].split("=", 1) for index, word in enumerate(words) if word == "-e")
    extra_vars["ray_awx_cluster_key_file"] = str(work / extra_vars["ray_awx_cluster_key_file"])
    environment = {name: value for line in substitute(setup, values) if line.startswith("export ")
                   for name, value in (word.split("=", 1) for word in shlex.split(line)[1:])}
    environment["VMWARE_CA_PATH"] = str(home / "vmca-root.pem")
    tasks = configure_test.awx_tasks(extra_vars, environment)
    assert len(tasks) == 13  # 9, and the nodes inventory: its credential type, credential, inventory and source
    for action, args, _ in tasks:
        spec, rules = configure_test.module_spec(action)
        result = configure_test.ArgumentSpecValidator(spec, **rules).validate(args)
        assert result.error_messages == [], f"{action} {args.get('name')}: {result.error_messages}"


def _load_test_module(path):
    spec = importlib.util.spec_from_file_location(f"quick_start_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
