"""The ray_nodes inventory on given node records: groups, host variables, the IP rule and Ansible's constructed
features, through Ansible's own InventoryManager (no vCenter: the one read is replaced by the records)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _client, _node_inventory
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._records import node_record

from ray_provider.ip_policy import NODE_TYPE_IP_POLICIES, IpPolicies, node_type_ip_policies
from testbed import PROJECT_ROOT


def record(name, kind, node_type, addresses, ssh_user=None, preferred=None):
    tags = {"ray-cluster-name": "alpha", "ray-node-type": kind, "ray-user-node-type": node_type}
    settings = dict((key, value) for key, value in (("ssh_user", ssh_user), ("preferred_cidr", preferred)) if value)
    props = {"name": name, "config.instanceUuid": f"uuid-{name}", "runtime.powerState": "poweredOn",
             "config.extraConfig": [type("O", (), {"key": "ray-vsphere.deploy-settings",
                                                    "value": json.dumps(settings)})()] if settings else []}
    return node_record(f"vm-{name}", props, tags, addresses, addresses[0] if addresses else None)


# A head on two networks, a CPU worker with a docker bridge listed first, a GPU worker of its own rule.
RECORDS = [
    record("alpha-head", "head", "head", ["192.168.5.10", "10.20.0.10"], ssh_user="ubuntu", preferred="10.20.0.0/16"),
    record("alpha-cpu-0", "worker", "cpu.worker", ["172.17.0.1", "192.168.5.11", "10.20.0.11"]),
    record("alpha-gpu-0", "worker", "gpu", ["10.20.0.12", "10.30.0.12"]),
]
UNVERIFIED = [record("alpha-forged", "head", "head", ["10.20.0.66"])]


def cluster(**options):
    entry = dict({"name": "alpha", "cluster_key_file": "/k"}, **options)
    result = ArgumentSpecValidator(_node_inventory.CLUSTER_OPTIONS).validate(entry)
    assert result.error_messages == []
    return result.validated_parameters


def by_name(hosts):
    return {host["name"]: host for host in hosts}


def test_nodes_are_grouped_by_kind_node_type_and_sanitized_cluster_name_with_their_vars():
    hosts = by_name(_node_inventory.inventory_hosts(cluster(name="alpha-1.prod"), RECORDS))
    assert sorted(hosts) == ["alpha-cpu-0", "alpha-gpu-0", "alpha-head"]
    assert hosts["alpha-head"]["groups"] == ["ray_cluster_alpha_1_prod", "ray_head", "ray_type_head"]
    assert hosts["alpha-cpu-0"]["groups"] == ["ray_cluster_alpha_1_prod", "ray_worker", "ray_type_cpu_worker"]
    head = hosts["alpha-head"]["vars"]
    assert head["ray_uuid"] == "uuid-alpha-head" and head["ray_moid"] == "vm-alpha-head"
    assert (head["ray_power_state"], head["ray_node_kind"], head["ray_node_type"]) == ("poweredOn", "head", "head")
    assert head["ray_tags"]["ray-user-node-type"] == "head" and head["ray_verified"] is True
    # The SSH user and preferred network the playbooks recorded on the head hold for every node of the cluster.
    assert {name: host["vars"].get("ansible_user") for name, host in hosts.items()} == dict.fromkeys(hosts, "ubuntu")
    assert head["ansible_host"] == "10.20.0.10"
    assert hosts["alpha-cpu-0"]["vars"]["ansible_host"] == "10.20.0.11"


def test_the_address_is_the_one_the_ray_provider_chooses_for_each_node_type():
    """The other side's rule as the oracle: ray_provider's IpPolicies over the same node types."""
    node_types = {"gpu": {"preferred_cidr": "10.30.0.0/16"}, "cpu.worker": {"preferred_cidr": "192.168.0.0/16"}}
    hosts = by_name(_node_inventory.inventory_hosts(cluster(preferred_cidr="10.20.0.0/16", node_types=node_types),
                                                    RECORDS))
    provider = {"preferred_cidr": "10.20.0.0/16"}
    config = {"provider": provider, "available_node_types": {
        name: {"node_config": node_types.get(name, {})} for name in ("head", "cpu.worker", "gpu")}}
    policies = IpPolicies(dict(provider, **{NODE_TYPE_IP_POLICIES: node_type_ip_policies(config)}))
    chosen = {name: host["vars"]["ansible_host"] for name, host in hosts.items()}
    assert chosen == {node["name"]: policies.address(node) for node in RECORDS}
    assert chosen == {"alpha-head": "10.20.0.10", "alpha-cpu-0": "192.168.5.11", "alpha-gpu-0": "10.30.0.12"}
    # An empty value in a node type unsets the cluster's, as in a Ray cluster YAML.
    unset = by_name(_node_inventory.inventory_hosts(cluster(preferred_cidr="10.30.0.0/16",
                                                            node_types={"gpu": {"preferred_cidr": ""}}), RECORDS))
    assert unset["alpha-gpu-0"]["vars"]["ansible_host"] == "10.20.0.12"


def test_unverified_vms_are_left_out_or_only_in_the_group_asked_for():
    assert "alpha-forged" not in by_name(_node_inventory.inventory_hosts(cluster(), RECORDS, UNVERIFIED))
    hosts = by_name(_node_inventory.inventory_hosts(cluster(ssh_user="ray"), RECORDS, UNVERIFIED, "suspect"))
    forged = hosts["alpha-forged"]
    assert forged["groups"] == ["suspect"]
    assert forged["vars"]["ray_verified"] is False and "ansible_user" not in forged["vars"]
    assert hosts["alpha-head"]["vars"]["ansible_user"] == "ray", "the inventory's ssh_user wins over the record"


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


# The plugin runs in a process of its own, as under ansible-inventory: Ansible's collection loader must be in place
# before anything imports the collection, which this test process has long done. vCenter's one read is replaced there
# by the given records, and the clusters it was asked for are recorded.
DRIVER = r"""
import json, sys
from ansible.plugins.loader import init_plugin_loader, inventory_loader
init_plugin_loader([sys.argv[1]])
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _client, _node_inventory

given = json.loads(sys.argv[3])
asked = []

class Session(object):
    service_instance = None
    def __enter__(self):
        return self
    def __exit__(self, *exc_info):
        return False

def read_clusters(service_instance, clusters, keys):
    asked.append([[entry["name"], key.cluster_name] for entry, key in zip(clusters, keys)])
    return [(given["records"], given["unverified"]) for _ in clusters]

_client.client_from_params = lambda params: Session()
_node_inventory.read_clusters = read_clusters
inventory = InventoryManager(loader=DataLoader(), sources=[])._inventory
plugin = inventory_loader.get("ray_vsphere.cluster.ray_nodes")
try:
    # As InventoryManager.parse_source runs a plugin for ansible-inventory (cache=True unless --flush-cache).
    plugin.parse(inventory, DataLoader(), sys.argv[2], cache=True)
    if getattr(plugin, "_cache", None):
        plugin.update_cache_if_changed()
except Exception as error:
    print(json.dumps({"error": str(error), "asked": asked}))
    sys.exit(0)
print(json.dumps({
    "asked": asked,
    "groups": dict((name, sorted(host.name for host in group.get_hosts())) for name, group in inventory.groups.items()),
    "hostvars": dict((name, host.get_vars()) for name, host in inventory.hosts.items()),
}, default=str))
"""


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def parse(tmp_path, config):
    """What the plugin makes of a config over RECORDS and UNVERIFIED: {asked, groups, hostvars} or {asked, error}."""
    source = tmp_path / "given.ray_nodes.yml"
    source.write_text(yaml.safe_dump(dict({"plugin": "ray_vsphere.cluster.ray_nodes"}, **config)))
    environment = dict(os.environ, VMWARE_HOST="vcenter.example.com", VMWARE_USER="u", VMWARE_PASSWORD="p")
    result = subprocess.run([sys.executable, "-c", DRIVER, str(PROJECT_ROOT / "collections"), str(source),
                             json.dumps({"records": RECORDS, "unverified": UNVERIFIED})],
                            capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_compose_keyed_groups_and_groups_apply_to_the_hosts(tmp_path, key_file):
    made = parse(tmp_path, {
        "clusters": [{"name": "alpha", "cluster_key_file": str(key_file)}],
        "compose": {"ray_gpus": "1 if ray_node_type == 'gpu' else 0", "ansible_port": "2222"},
        "keyed_groups": [{"key": "ray_node_type", "prefix": "kind"}],
        "groups": {"accelerated": "ray_gpus > 0"},
        "unverified_group": "ray_unverified",
        "strict": True,
    })
    assert made["asked"] == [[["alpha", "alpha"]]], made
    groups = made["groups"]
    assert groups["ray_head"] == ["alpha-head"] and groups["ray_worker"] == ["alpha-cpu-0", "alpha-gpu-0"]
    assert groups["ray_cluster_alpha"] == ["alpha-cpu-0", "alpha-gpu-0", "alpha-head"]
    assert groups["ray_type_gpu"] == ["alpha-gpu-0"]
    assert groups["accelerated"] == ["alpha-gpu-0"]
    assert groups["kind_cpu_worker"] == ["alpha-cpu-0"]
    assert groups["ray_unverified"] == ["alpha-forged"]
    gpu = made["hostvars"]["alpha-gpu-0"]
    assert (gpu["ray_gpus"], gpu["ansible_port"], gpu["ansible_host"], gpu["ansible_user"]) == (1, 2222, "10.20.0.12",
                                                                                                 "ubuntu")
    assert made["hostvars"]["alpha-head"]["ray_gpus"] == 0


def test_strict_compose_fails_on_an_undefined_variable_and_is_skipped_otherwise(tmp_path, key_file):
    config = {"clusters": [{"name": "alpha", "cluster_key_file": str(key_file)}],
              "compose": {"x": "ray_no_such_var + 1"}}
    assert "x" not in parse(tmp_path, config)["hostvars"]["alpha-head"]
    assert "Could not set x for host" in parse(tmp_path, dict(config, strict=True))["error"]


def test_bad_clusters_entries_fail_naming_the_entry_before_any_vcenter_call(tmp_path, key_file):
    for config, message in (
            ({"clusters": []}, "name at least one Ray cluster"),
            ({"clusters": [{"name": "a"}]}, r"clusters\[0\]: missing required arguments: cluster_key_file \(give it in "
                                            r"the entry, or cluster_key_file or RAY_VSPHERE_CLUSTER_KEY_FILE for all\)"),
            ({"clusters": [{"name": " ", "cluster_key_file": str(key_file)}]}, r"clusters\[0\].name is empty"),
            ({"clusters": [{"name": "a", "cluster_key_file": str(tmp_path / "none")}]},
             r"clusters\[0\].cluster_key_file: .*cannot read"),
            ({"clusters": [{"name": "a", "cluster_key_file": str(key_file), "vm_folders": ["x"]}]}, "datacenter"),
            ({"clusters": [{"name": "a", "cluster_key_file": str(key_file), "cpus": 2}]}, "cpus"),
            ({"clusters": [{"name": "a", "cluster_key_file": str(key_file), "node_types": {"g": {"cpus": 1}}}]},
             r"clusters\[0\].node_types.g: takes only")):
        made = parse(tmp_path, config)
        assert re.search(message, made.get("error", "")), (message, made)
        assert made["asked"] == [], "nothing was read"


def test_a_key_for_every_cluster_comes_from_the_plugins_own_option_or_its_variable(tmp_path, key_file, monkeypatch):
    made = parse(tmp_path, {"clusters": [{"name": "alpha"}, {"name": "beta", "cluster_key_file": str(key_file)}],
                            "cluster_key_file": str(key_file)})
    assert made["asked"] == [[["alpha", "alpha"], ["beta", "beta"]]], made
    monkeypatch.setenv("RAY_VSPHERE_CLUSTER_KEY_FILE", str(key_file))
    monkeypatch.setenv("RAY_CLUSTER_NAME", "from-env")
    made = parse(tmp_path, {"clusters": [{"name": "{{ lookup('ansible.builtin.env', 'RAY_CLUSTER_NAME') }}"}]})
    assert made["asked"] == [[["from-env", "from-env"]]], made


def test_with_the_inventory_cache_a_second_run_reads_nothing_and_builds_the_same_inventory(tmp_path, key_file):
    config = {"clusters": [{"name": "alpha", "cluster_key_file": str(key_file)}], "cache": True,
              "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache"),
              "compose": {"ray_first": "ray_ip_addresses | first"}}
    first, second = parse(tmp_path, config), parse(tmp_path, config)
    assert first["asked"] == [[["alpha", "alpha"]]] and second["asked"] == [], "the second run read vCenter again"
    assert second["groups"] == first["groups"] and second["hostvars"] == first["hostvars"]
    assert second["hostvars"]["alpha-cpu-0"]["ray_first"] == "172.17.0.1", "constructed features apply to cached hosts"
    assert parse(tmp_path, dict(config, cache=False))["asked"] == [[["alpha", "alpha"]]]


def test_the_connection_options_and_variables_are_the_modules_own():
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "inventory", "--json",
                             "ray_vsphere.cluster.ray_nodes"], capture_output=True, text=True, timeout=120, check=True,
                            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT_ROOT / "collections")))
    options = json.loads(result.stdout)["ray_vsphere.cluster.ray_nodes"]["doc"]["options"]
    for option, spec in _client.CONNECTION_ARGUMENT_SPEC.items():
        assert [env["name"] for env in options[option].get("env", [])] == spec["fallback"][1], option
        assert options[option].get("default") == spec.get("default"), option
        assert options[option].get("aliases", []) == spec.get("aliases", []), option
