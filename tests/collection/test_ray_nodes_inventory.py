"""The ray_nodes inventory plugin on the testbed: ansible-inventory --graph and --list over two Ray clusters
deployed with node_deploy, a forged head beside them, and a playbook that reaches the workers over SSH.

The oracle is vcsim's own view (names, instance UUIDs, folders and custom attributes read at vcsim) and the test
guests' addresses, never the collection's own listing.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import PLACEMENT, deploy_task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _records
from testbed import PROJECT_ROOT, awx_launch, simulator, vsphere
from testbed.ova_import import import_ova

BIN = Path(sys.executable).parent
CLUSTER, OTHER = "inv", "inv-b"
FORGED = f"{CLUSTER}-head-forged"
OTHER_FOLDER = "ray-b"


@pytest.fixture(scope="module")
def clusters(play, guest_simulator, test_ova, vcsim, cluster_key_file):
    """CLUSTER (a head and two workers, running guests) in folder ray; OTHER (a head, powered off) in OTHER_FOLDER;
    a VM made outside the project in folder ray, tagged as CLUSTER's head, carrying the real head's identity."""
    public_key = Path(f"{cluster_key_file}.pub").read_text()
    admin = vcsim.endpoint.connect()
    datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
    datacenter.vmFolder.CreateFolder(OTHER_FOLDER)
    for cluster, kind, names, options in (
            (CLUSTER, "head", [f"{CLUSTER}-head"], dict(deploy_settings={"ssh_user": "ubuntu"})),
            (CLUSTER, "worker", [f"{CLUSTER}-w0", f"{CLUSTER}-w1"], dict(node_type="cpu.worker")),
            (OTHER, "head", [f"{OTHER}-head"], dict(vm_folder=OTHER_FOLDER, power_on=False, clone_from_template=False))):
        wait = options.get("power_on", True)
        result = play([deploy_task(cluster, test_ova, node_kind=kind, names=names, ssh_public_keys=[public_key],
                                   wait_for_ip=wait, ip_timeout=90, **options)]).result
        assert not result["failed"], result
    real = vsphere.find_by_name(admin, vim.VirtualMachine, f"{CLUSTER}-head")
    copied = {option.key: option.value for option in vsphere.read_properties(admin, real, ["config.extraConfig"])[
        "config.extraConfig"] if option.key.startswith("ray-vsphere.")}
    assert _records.CLUSTER_IDENTITY in copied
    forged = import_ova(admin, test_ova, FORGED, **simulator.default_placement(admin), extra_config=copied)
    _nodes.Inventory(admin).attributes.set(forged, FORGED, {_records.CLUSTER_NAME: CLUSTER,
                                                            _records.NODE_KIND: "head"})
    yield
    vsphere.disconnect(admin)


def vcsim_view(service_instance):
    """{VM name: (instance UUID, folder name, power state, Ray tags)} of every VM, read at vcsim."""
    fields = {field.key: field.name for field in service_instance.content.customFieldsManager.field}
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine,
                                    ["name", "config.instanceUuid", "parent", "runtime.powerState", "customValue"])
    return {props["name"]: (props["config.instanceUuid"], props["parent"].name, str(props["runtime.powerState"]),
                            {fields[value.key]: value.value for value in props.get("customValue", [])
                             if fields.get(value.key, "").startswith("ray-")})
            for props in found.values()}


def write_source(tmp_path, cluster_key_file, **more):
    source = tmp_path / "clusters.ray_nodes.yml"
    source.write_text(yaml.safe_dump(dict({
        "plugin": "ray_vsphere.cluster.ray_nodes",
        "clusters": [
            {"name": CLUSTER, "cluster_key_file": str(cluster_key_file), "datacenter": PLACEMENT["datacenter"],
             "vm_folders": [PLACEMENT["vm_folder"]]},
            {"name": OTHER, "cluster_key_file": str(cluster_key_file), "datacenter": PLACEMENT["datacenter"],
             "vm_folders": [OTHER_FOLDER], "ssh_user": "ray"}],
    }, **more)))
    return source


def ansible_inventory(vcsim, source, *arguments):
    """ansible-inventory as a user runs it, credentials only from VMWARE_* (as AWX injects them)."""
    environment = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT_ROOT / "collections"),
                       ANSIBLE_INVENTORY_UNPARSED_FAILED="true", **vcsim.endpoint.environment())
    result = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(source), *arguments], capture_output=True,
                            text=True, timeout=180, env=environment, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert vcsim.endpoint.password not in result.stdout + result.stderr
    return result.stdout


def plain(value):
    """A value of --list without the markers of strings Ansible never templates (every string read from vCenter)."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def members(listing, group):
    """Every host of group and its children, from ansible-inventory --list."""
    entry = listing.get(group, {})
    hosts = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts |= members(listing, child)
    return hosts


def test_the_list_holds_exactly_the_verified_nodes_vcsim_shows_with_their_uuids_and_addresses(
        clusters, vcsim, service_instance, guest_simulator, cluster_key_file, tmp_path):
    view = vcsim_view(service_instance)
    tagged = {name: entry for name, entry in view.items() if entry[3].get(_records.CLUSTER_NAME) in (CLUSTER, OTHER)}
    assert FORGED in tagged and tagged[FORGED][3][_records.NODE_KIND] == "head", "the forgery is tagged as a head"
    listing = json.loads(ansible_inventory(vcsim, write_source(tmp_path, cluster_key_file), "--list"))
    # What vCenter holds is data, never a template: a tag a VM editor wrote runs no lookup on the controller.
    assert listing["_meta"]["hostvars"][f"{CLUSTER}-head"]["ray_uuid"].keys() == {"__ansible_unsafe"}
    hostvars = plain(listing["_meta"]["hostvars"])
    assert set(hostvars) == set(tagged) - {FORGED}
    for name, (uuid, folder, power_state, tags) in tagged.items():
        if name == FORGED:
            continue
        assert (hostvars[name]["ray_uuid"], hostvars[name]["ray_power_state"], hostvars[name]["ray_tags"]) == (
            uuid, power_state, tags)
    heads = {name for name, entry in tagged.items() if entry[3][_records.NODE_KIND] == "head"} - {FORGED}
    workers = {name for name, entry in tagged.items() if entry[3][_records.NODE_KIND] == "worker"}
    assert members(listing, "ray_head") == heads == {f"{CLUSTER}-head", f"{OTHER}-head"}
    assert members(listing, "ray_worker") == workers == {f"{CLUSTER}-w0", f"{CLUSTER}-w1"}
    assert members(listing, "ray_type_cpu_worker") == workers
    assert members(listing, "ray_cluster_inv") == {name for name in tagged if view[name][1] == "ray"} - {FORGED}
    assert members(listing, "ray_cluster_inv_b") == {f"{OTHER}-head"}
    for name in (f"{CLUSTER}-head", f"{CLUSTER}-w0", f"{CLUSTER}-w1"):
        moid = vsphere.find_by_name(service_instance, vim.VirtualMachine, name)._moId
        assert hostvars[name]["ansible_host"] == guest_simulator.wait_for_guest(moid).address
        assert hostvars[name]["ansible_user"] == "ubuntu", "recorded on the head by its deploy"
    assert "ansible_host" not in hostvars[f"{OTHER}-head"], "powered off: no address reported"
    assert hostvars[f"{OTHER}-head"]["ansible_user"] == "ray"


def test_the_graph_shows_the_groups_and_the_forgery_only_in_the_unverified_group_when_asked(
        clusters, vcsim, cluster_key_file, tmp_path):
    graph = ansible_inventory(vcsim, write_source(tmp_path, cluster_key_file), "--graph")
    assert "@ray_head:" in graph and "@ray_worker:" in graph and "@ray_cluster_inv:" in graph
    assert f"--{CLUSTER}-w0" in graph and FORGED not in graph
    asked = ansible_inventory(vcsim, write_source(tmp_path, cluster_key_file, unverified_group="ray_unverified"),
                              "--graph", "ray_unverified")
    assert [line.strip(" |-") for line in asked.splitlines()] == ["@ray_unverified:", FORGED]
    listing = json.loads(ansible_inventory(vcsim, write_source(tmp_path, cluster_key_file,
                                                               unverified_group="ray_unverified"), "--list"))
    assert FORGED not in members(listing, "ray_head") | members(listing, "ray_cluster_inv")
    assert plain(listing["_meta"]["hostvars"][FORGED])["ray_verified"] is False


# Runs the plugin as ansible-inventory does, counting the PropertyCollector calls that went over the wire.
COUNTING = textwrap.dedent(r"""
    import json, sys
    from pyVmomi import SoapAdapter, vim
    calls = []
    real = SoapAdapter.SoapStubAdapter.InvokeMethod
    def counting(stub, mo, info, args, outerStub=None):
        result = real(stub, mo, info, args, outerStub)
        answer = result[1] if isinstance(result, tuple) else result
        if info.wsdlName in ("RetrievePropertiesEx", "ContinueRetrievePropertiesEx"):
            types = sorted(set(prop.type.__name__ for spec in (args[0] if info.wsdlName == "RetrievePropertiesEx"
                                                                else []) for prop in spec.propSet))
            vms = [item.obj._moId for item in (getattr(answer, "objects", None) or [])
                   if isinstance(item.obj, vim.VirtualMachine)]
            calls.append({"method": info.wsdlName, "types": types, "vms": vms})
        return result
    SoapAdapter.SoapStubAdapter.InvokeMethod = counting
    from ansible.cli.inventory import InventoryCLI
    try:
        InventoryCLI(["ansible-inventory", "-i", sys.argv[1], "--list", "--output", sys.argv[2]]).run()
    finally:
        sys.stderr.write("CALLS " + json.dumps(calls) + "\n")
""")


def test_both_clusters_are_read_in_one_property_collector_call_of_their_folders_only(
        clusters, vcsim, service_instance, cluster_key_file, tmp_path):
    environment = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT_ROOT / "collections"),
                       ANSIBLE_INVENTORY_UNPARSED_FAILED="true", **vcsim.endpoint.environment())
    output = tmp_path / "listing.json"
    result = subprocess.run([sys.executable, "-c", COUNTING, str(write_source(tmp_path, cluster_key_file)),
                             str(output)], capture_output=True, text=True, timeout=180, env=environment,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(json.loads(output.read_text())["_meta"]["hostvars"]) == 4
    calls = json.loads(next(line for line in result.stderr.splitlines() if line.startswith("CALLS "))[6:])
    vm_reads = [call for call in calls if "VirtualMachine" in call["types"] or call["vms"]]
    assert len(vm_reads) == 1, f"VMs read in more than one call: {vm_reads}"
    folders = {props["name"]: props["parent"].name for props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name", "parent"]).values()}
    moids = {vm._moId: props["name"] for vm, props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name"]).items()}
    answered = {moids[moid] for moid in vm_reads[0]["vms"]}
    assert {folders[name] for name in answered} == {PLACEMENT["vm_folder"], OTHER_FOLDER}
    assert answered == {name for name, folder in folders.items() if folder in (PLACEMENT["vm_folder"], OTHER_FOLDER)}


def test_a_playbook_runs_a_command_on_the_workers_over_ssh_through_the_inventory(
        clusters, vcsim, cluster_key_file, tmp_path):
    playbook = tmp_path / "workers.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Ask every worker its host name", "hosts": "ray_worker", "gather_facts": False,
        "tasks": [{"name": "Host name", "ansible.builtin.command": "hostname", "register": "named",
                   "changed_when": False},
                  {"name": "Show it", "ansible.builtin.debug": {"msg": "NAMED {{ inventory_hostname }}={{ named.stdout }}"}}],
    }]))
    environment = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT_ROOT / "collections"),
                       ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_PRIVATE_KEY_FILE=str(cluster_key_file),
                       ANSIBLE_INVENTORY_UNPARSED_FAILED="true", **vcsim.endpoint.environment())
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(write_source(tmp_path, cluster_key_file)),
                             str(playbook)], capture_output=True, text=True, timeout=300, env=environment,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    named = sorted(line.split("NAMED ", 1)[1].strip('",') for line in result.stdout.splitlines() if "NAMED " in line)
    assert named == [f"{CLUSTER}-w0={CLUSTER}-w0", f"{CLUSTER}-w1={CLUSTER}-w1"]


def test_the_awx_inventory_source_lists_the_cluster_from_the_projects_file_with_its_one_credential(
        clusters, vcsim, cluster_key_file, tmp_path):
    """As an AWX inventory update runs it: the credential of awx/credential_types/ray_inventory.yml injected as AWX
    injects it, the source's variables (awx/configure.yml) as environment variables, the project's own file."""
    endpoint = vcsim.endpoint
    credential = awx_launch.custom_credential("Ray nodes inventory: inv", awx_launch.CREDENTIAL_TYPES / "ray_inventory.yml", {
        "host": f"{endpoint.host}:{endpoint.port}", "username": endpoint.username, "password": endpoint.password,
        "ca_pem": Path(endpoint.ca_path).read_text(), "ssh_private_key": Path(cluster_key_file).read_text()})
    (tmp_path / "env").mkdir()
    injected = {}
    awx_launch.inject(credential, injected, [], str(tmp_path))
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("VMWARE_", "RAY_"))}
    environment.update(injected, ANSIBLE_COLLECTIONS_PATH=str(PROJECT_ROOT / "collections"),
                       ANSIBLE_INVENTORY_UNPARSED_FAILED="true", RAY_CLUSTER_NAME=CLUSTER,
                       RAY_DATACENTER=PLACEMENT["datacenter"], RAY_VM_FOLDER=PLACEMENT["vm_folder"], RAY_SSH_USER="")
    result = subprocess.run([str(BIN / "ansible-inventory"), "-i", "awx/inventory/ray.ray_nodes.yml", "--list"],
                            capture_output=True, text=True, timeout=180, env=environment, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    listing = json.loads(result.stdout)
    assert members(listing, "ray_cluster_inv") == {f"{CLUSTER}-head", f"{CLUSTER}-w0", f"{CLUSTER}-w1"}
    assert members(listing, "ray_unverified") == {FORGED}
    assert plain(listing["_meta"]["hostvars"][f"{CLUSTER}-w0"])["ansible_user"] == "ubuntu"
