"""What node_deploy records in vCenter holds no credential.

deploy_settings are written in clear into the head's extraConfig, which every
vCenter user who may read the VM reads; the playbooks record the setup
commands there, so that ray_workers.yml sets up new workers alike. A setup
command that installs from a private index with `https://user:token@...`
would give that token to all of them. The oracle is vcsim's own extraConfig
of every VM, read after each call.
"""

import json

import pytest
from conftest import deploy_task
from pyVmomi import vim

from testbed import vsphere

TOKEN = "s3cr3t-index-t0ken"
REFUSAL = ("deploy_settings setup_commands[1] holds a credential in the URL {masked}: deploy_settings are recorded "
           "in clear in the VM's extraConfig, where every vCenter user who may read the VM sees them (the playbooks "
           "record ray_setup_commands there). Keep it out of the URL: pip, curl and git read it from ~/.netrc (pip "
           "also from pip.conf or a keyring) on the node, put there by the image or a play of your own")
COMMANDS = [
    (f"pip install --index-url https://ray:{TOKEN}@pypi.example.com/simple ray", "https://***@pypi.example.com"),
    (f"pip install 'pkg @ git+https://{TOKEN}@git.example.com/org/pkg'", "git+https://***@git.example.com"),
]


def recorded_values(service_instance):
    """Every extraConfig value of every VM in vcsim, templates included."""
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["config.extraConfig"])
    return [option.value for props in found.values() for option in props.get("config.extraConfig") or []]


def head_deploy(test_ova, settings):
    return deploy_task("recorder", test_ova, node_kind="head", names=["recorder-head"], power_on=False,
                       deploy_settings=settings)


@pytest.mark.parametrize("command, masked", COMMANDS, ids=["user-and-token", "token-as-user"])
def test_a_credential_in_a_recorded_url_is_refused_before_anything_is_made(
        play, test_ova, service_instance, vm_names, command, masked):
    before = vm_names()
    result = play([head_deploy(test_ova, {"setup_commands": ["echo first", command]})]).result
    assert result["failed"]
    assert REFUSAL.format(masked=masked) in result["msg"]
    assert TOKEN not in result["msg"]
    assert vm_names() == before
    assert not [value for value in recorded_values(service_instance) if TOKEN in value]


def test_a_recorded_head_is_not_rewritten_with_a_credential_and_keeps_what_is_safe(play, test_ova, service_instance):
    """The rewrite of an existing node's record (a later ray_up.yml) is refused alike; an ssh user name is no secret."""
    safe = {"setup_commands": ["pip install 'pkg @ git+ssh://git@git.example.com/org/pkg'"], "worker_cpus": 2}
    first = play([head_deploy(test_ova, safe)]).result
    assert not first["failed"], first
    leaking = dict(safe, setup_commands=["echo first", COMMANDS[0][0]])
    again = play([head_deploy(test_ova, leaking)]).result
    assert again["failed"] and REFUSAL.format(masked=COMMANDS[0][1]) in again["msg"]
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, "recorder-head")
    recorded = {option.key: option.value for option in vm.config.extraConfig}["ray-vsphere.deploy-settings"]
    assert json.loads(recorded) == safe
    assert not [value for value in recorded_values(service_instance) if TOKEN in value]
    listed = play([{"name": "List", "ray_vsphere.cluster.node_info": {"cluster_name": "recorder"}}]).result
    assert [node["deploy_settings"] for node in listed["nodes"]] == [safe], "what ray_workers.yml reads back"
    removed = play([{"name": "Remove",
                     "ray_vsphere.cluster.node_delete": {"cluster_name": "recorder", "all_nodes": True}}]).result
    assert not removed["failed"], removed
