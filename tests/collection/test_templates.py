"""Templates that clean up after themselves: a maker mark, waiting for a live maker, removing a dead one's
half-made template, and image_prune / ray_down for templates no VM uses."""

import functools
import os
import socket
import time

import pytest
from conftest import PLACEMENT, deploy_task, task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _deploy, _ovf, _placement
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import (
    TEMPLATE_IDENTITY, TEMPLATE_PREFIX, TemplateIdentity)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import VcenterClient
from ray_provider.runner import published_stats, run_playbook
from testbed import vsphere


def run(playbook, run_dir, environment, extravars, cmdline=None):
    return run_playbook(f"ray_vsphere.cluster.{playbook}", run_dir, extravars=extravars, envvars=environment,
                        cmdline=cmdline, timeout=300)


def templates(service_instance):
    return {props["name"]: (vm, props) for vm, props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name", "config.template", "config.extraConfig"]).items()
        if props["name"].startswith(TEMPLATE_PREFIX)}


def markers(props):
    return {option.key: option.value for option in props.get("config.extraConfig") or []}


@pytest.fixture
def half_made_template(vcsim, test_ova, cluster_key_file):
    """make(maker, started): the test OVA imported as its template but not marked one, as a maker cut short leaves it."""
    def make(maker, started):
        endpoint = vcsim.endpoint
        identity = TemplateIdentity(cluster_key_file.read_text())
        with VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                           validate_certs=False) as client, _ovf.OvfPackage(str(test_ova)) as package:
            placement = _placement.resolve(client.service_instance, PLACEMENT)
            name = identity.name(package.content_hash)
            spec = _ovf.import_spec(client.service_instance, package, name, placement, {},
                                    functools.partial(_deploy._record_image, package, identity.being_made(name),
                                                      maker=maker, started=started))
            vm = _ovf.import_vm(client, package, spec, name, placement, timeout=60)
            return name, vm._moId
    return make


def remove_template(service_instance, name):
    vm, _ = templates(service_instance)[name]
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())


def dead_pid():
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid += 1


def test_a_template_is_marked_while_it_is_made_and_not_after(play, test_ova, service_instance):
    result = play([deploy_task("iota", test_ova, names=["iota-0"], power_on=False)]).result
    assert not result["failed"], result
    name = result["image"]["template"]
    _, props = templates(service_instance)[name]
    assert props["config.template"]
    assert _deploy.TEMPLATE_MAKER not in markers(props) and _deploy.TEMPLATE_STARTED not in markers(props)
    clone = vsphere.find_by_name(service_instance, vim.VirtualMachine, "iota-0")
    assert markers(vsphere.read_properties(service_instance, clone, ["config.extraConfig"]))[_deploy.CLONED_FROM] == name
    play([task("node_delete", cluster_name="iota", all_nodes=True)])
    remove_template(service_instance, name)


@pytest.mark.parametrize("maker, age", [
    (f"{socket.gethostname()} pid {{dead_pid}}", 5),      # a process of this host that is gone
    ("another-host pid 42", 7200),                        # older than the deploy's timeout
], ids=["maker-gone", "maker-too-old"])
def test_a_dead_makers_half_made_template_is_removed_and_made_again(
        play, test_ova, service_instance, half_made_template, maker, age):
    name, half_made = half_made_template(maker.format(dead_pid=dead_pid()), time.time() - age)
    started = time.monotonic()
    result = play([deploy_task("kappa", test_ova, names=["kappa-0"], power_on=False, timeout=3600)]).result
    assert not result["failed"], result
    assert time.monotonic() - started < 60, "the deploy waited for a dead maker"
    assert result["image"]["template"] == name
    vm, props = templates(service_instance)[name]
    assert props["config.template"] and vm._moId != half_made
    play([task("node_delete", cluster_name="kappa", all_nodes=True)])
    remove_template(service_instance, name)


def test_a_live_makers_template_is_waited_for_and_left_alone(play, test_ova, service_instance, half_made_template,
                                                             cluster_key_file):
    name, half_made = half_made_template(f"{socket.gethostname()} pid {os.getpid()}", time.time())
    result = play([deploy_task("lambda", test_ova, names=["lambda-0"], power_on=False, timeout=3)]).result
    assert result["failed"], (result["image"], result["existing"], result["created"])
    assert f"template {name} is still being made by {socket.gethostname()} pid {os.getpid()} after 3 s" \
        in result["msg"]
    vm, props = templates(service_instance)[name]
    assert vm._moId == half_made and not props["config.template"]
    # image_prune leaves it too: its maker is at work.
    pruned = play([task("template_prune", datacenter="DC0", vm_folder="ray", cluster_key_file=str(cluster_key_file))],
                  check=True).result
    assert {"name": name, "reason": f"being made by {socket.gethostname()} pid {os.getpid()}"} in pruned["kept"]
    remove_template(service_instance, name)


def test_image_prune_removes_templates_no_vm_uses_check_mode_first_and_ray_down_says_what_it_left(
        play, vcsim, test_ova, service_instance, tmp_path, cluster_key_file):
    result = play([deploy_task("mu", test_ova, names=["mu-0"], power_on=False)]).result
    name = result["image"]["template"]
    environment = vcsim.endpoint.environment()
    key = {"ray_ssh_private_key": str(cluster_key_file)}
    extra = {"image_prune_datacenter": "DC0", "image_prune_vm_folder": "ray", **key}
    # In use by mu-0: kept.
    checked = run("image_prune", tmp_path / "check-1", environment, extra, cmdline="--check")
    assert published_stats(checked)["image_prune_removed"] == []
    assert published_stats(checked)["image_prune_kept"] == [{"name": name, "reason": "in use by 1 VM(s): mu-0"}]
    down = run("ray_down", tmp_path / "down", environment, {"ray_cluster_name": "mu", **key})
    assert published_stats(down)["ray_deleted_nodes"] == ["mu-0"]
    assert published_stats(down)["ray_left_templates"] == [name]
    assert f"Left: {name} (no VM uses {name}: playbooks/image_prune.yml removes them)" in down.stdout.read()
    # Check mode first: says what would go, removes nothing.
    checked = run("image_prune", tmp_path / "check-2", environment, extra, cmdline="--check")
    assert published_stats(checked)["image_prune_removed"] == [name]
    assert name in templates(service_instance)
    pruned = run("image_prune", tmp_path / "prune", environment, extra)
    assert published_stats(pruned)["image_prune_removed"] == [name]
    assert name not in templates(service_instance)
