"""Templates that clean up after themselves: a maker mark, waiting for a live maker, removing a dead one's
half-made template, and image_prune / ray_down for templates no VM uses."""

import functools
import os
import socket
import time

import pytest
from conftest import PLACEMENT, deploy_task, task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import (
    _nfc, _ovf_package, _placement, _records, _templates)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import (
    TEMPLATE_PREFIX, TemplateIdentity)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import VcenterClient
from ray_provider.runner import published_stats, run_playbook
from testbed import vsphere
from testbed.guests import make_key_pair


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
    """make(maker, started, heartbeat): the test OVA imported as its template but not marked one, as a maker cut
    short leaves it; heartbeat None: made before makers beat."""
    def make(maker, started, heartbeat=None):
        endpoint = vcsim.endpoint
        identity = TemplateIdentity.from_file(cluster_key_file)
        with VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                           validate_certs=False) as client, _ovf_package.OvfPackage(str(test_ova)) as package:
            placement = _placement.resolve(client.service_instance, PLACEMENT)
            name = identity.name(package.content_hash)
            spec = _nfc.import_spec(client.service_instance, package, name, placement, {},
                                    functools.partial(_templates.record_image, package, identity.being_made(name),
                                                      maker=maker, started=started, heartbeat=heartbeat))
            vm = _nfc.import_vm(client, package, spec, name, placement, timeout=60)
            return name, vm._moId
    return make


def remove_template(service_instance, name):
    vm, _ = templates(service_instance)[name]
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())


def test_a_template_is_marked_while_it_is_made_and_not_after(play, test_ova, service_instance):
    result = play([deploy_task("iota", test_ova, names=["iota-0"], power_on=False)]).result
    assert not result["failed"], result
    name = result["image"]["template"]
    _, props = templates(service_instance)[name]
    assert props["config.template"]
    assert _records.TEMPLATE_MAKER not in markers(props) and _records.TEMPLATE_STARTED not in markers(props)
    clone = vsphere.find_by_name(service_instance, vim.VirtualMachine, "iota-0")
    assert markers(vsphere.read_properties(service_instance, clone, ["config.extraConfig"]))[_records.CLONED_FROM] == name
    play([task("node_delete", cluster_name="iota", all_nodes=True)])
    remove_template(service_instance, name)


@pytest.mark.parametrize("maker, age, heartbeat_age, timeout", [
    # This host's name and a live pid (this test's own): another machine of that name, or a reused pid,
    # looks so. Its heartbeat is what counts, and it stopped long ago.
    (f"{socket.gethostname()} pid {os.getpid()}", 900, 900, 120),
    ("another-host pid 42", 7200, None, 3600),            # no heartbeat (older makers): older than the deploy's timeout
], ids=["heartbeat-stopped", "maker-too-old"])
def test_a_dead_makers_half_made_template_is_removed_and_made_again(
        play, test_ova, service_instance, half_made_template, maker, age, heartbeat_age, timeout):
    name, half_made = half_made_template(maker, time.time() - age,
                                         None if heartbeat_age is None else time.time() - heartbeat_age)
    started = time.monotonic()
    result = play([deploy_task("kappa", test_ova, names=["kappa-0"], power_on=False, timeout=timeout)]).result
    assert not result["failed"], result
    assert time.monotonic() - started < 60, "the deploy waited for a dead maker"
    assert result["image"]["template"] == name
    vm, props = templates(service_instance)[name]
    assert props["config.template"] and vm._moId != half_made
    play([task("node_delete", cluster_name="kappa", all_nodes=True)])
    remove_template(service_instance, name)


def test_a_live_makers_template_is_waited_for_and_left_alone(play, test_ova, service_instance, half_made_template,
                                                             cluster_key_file):
    # Started long before the deploy's timeout, on another machine: alive all the same, for it beats.
    name, half_made = half_made_template("another-host pid 42", time.time() - 7200, time.time())
    result = play([deploy_task("lambda", test_ova, names=["lambda-0"], power_on=False, timeout=3)]).result
    assert result["failed"], (result["image"], result["existing"], result["created"])
    assert f"template {name} is still being made by another-host pid 42 after 3 s" in result["msg"]
    vm, props = templates(service_instance)[name]
    assert vm._moId == half_made and not props["config.template"]
    # image_prune leaves it too: its maker is at work.
    pruned = play([task("template_prune", datacenter="DC0", vm_folder="ray", cluster_key_file=str(cluster_key_file))],
                  check=True).result
    assert {"name": name, "reason": "being made by another-host pid 42"} in pruned["kept"]
    remove_template(service_instance, name)


def test_a_maker_beats_while_it_works_so_it_is_alive_however_long_it_takes(vcsim, service_instance,
                                                                          half_made_template, monkeypatch):
    name, _ = half_made_template("another-host pid 42", time.time() - 7200, time.time() - 3600)
    vm, props = templates(service_instance)[name]
    assert _templates.maker_is_dead(markers(props), 1800, time.time())  # silent for an hour
    monkeypatch.setattr(_templates, "HEARTBEAT_SECONDS", 0.2)
    endpoint = vcsim.endpoint
    with VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                       validate_certs=False) as client:
        folder = _placement.resolve(client.service_instance, PLACEMENT).folder
        with _templates.heartbeat(client.service_instance, folder, name):
            time.sleep(1)
    _, props = templates(service_instance)[name]
    beat = float(markers(props)[_records.TEMPLATE_HEARTBEAT])
    now = service_instance.CurrentTime().timestamp()
    assert now - 5 < beat <= now + 1, "the heartbeat is vCenter's clock, refreshed while the maker works"
    assert _templates.maker_is_dead(markers(props), 1800, now) is None
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


def test_prune_surveys_each_template_again_right_before_removing_it(play, vcsim, test_ova, service_instance,
                                                                    cluster_key_file, monkeypatch):
    made = play([deploy_task("nu", test_ova, names=["nu-0"], power_on=False)]).result
    assert not made["failed"], made["msg"]
    name = made["image"]["template"]
    play([task("node_delete", cluster_name="nu", all_nodes=True)])
    real_survey = _templates.survey
    surveys = []

    def survey_then_a_deploy_clones(service_instance, identity, folder=None):
        found = real_survey(service_instance, identity, folder)
        if not surveys:  # between prune's survey and its removals: a deploy clones the idle template
            cloned = play([deploy_task("nu", test_ova, names=["nu-1"], power_on=False)]).result
            assert not cloned["failed"] and cloned["image"]["template"] == name, cloned["msg"]
        surveys.append([entry["name"] for entry in found if not entry["reason"]])
        return found

    monkeypatch.setattr(_templates, "survey", survey_then_a_deploy_clones)
    endpoint = vcsim.endpoint
    with VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                       validate_certs=False) as client:
        removed, kept = _templates.prune(client.service_instance, dict(
            cluster_key_file=str(cluster_key_file), datacenter="DC0", vm_folder="ray", parallel=4), False)
    assert surveys[0] == [name], "the template was idle when prune first looked"
    assert removed == [] and {"name": name, "reason": "in use by 1 VM(s): nu-1"} in kept
    assert name in templates(service_instance)
    play([task("node_delete", cluster_name="nu", all_nodes=True)])
    remove_template(service_instance, name)


# --- only templates made with the cluster's key ------------------------------

@pytest.fixture
def plant(vcsim, test_ova):
    """plant(name, extra_config, template=True): the test OVA imported as a VM of that name in the folder, as
    someone who may create VMs there could make it; its moid."""
    def make(name, extra_config, template=True):
        endpoint = vcsim.endpoint

        def record(config_spec):
            config_spec.extraConfig = list(config_spec.extraConfig or []) + [
                vim.option.OptionValue(key=key, value=value) for key, value in extra_config.items()]

        with VcenterClient(endpoint.host, endpoint.username, endpoint.password, port=endpoint.port,
                           validate_certs=False) as client, _ovf_package.OvfPackage(str(test_ova)) as package:
            placement = _placement.resolve(client.service_instance, PLACEMENT)
            spec = _nfc.import_spec(client.service_instance, package, name, placement, {}, record)
            vm = _nfc.import_vm(client, package, spec, name, placement, timeout=60)
            if template:
                vm.MarkAsTemplate()
            return vm._moId
    return make


def cloned_from(service_instance, node):
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, node)
    return markers(vsphere.read_properties(service_instance, vm, ["config.extraConfig"]))


def image_records(test_ova):
    digest = _ovf_package.OvfPackage(str(test_ova)).key()[len(_ovf_package.SHA256_KEY):]
    return digest, {_records.IMAGE_SHA256: digest, _records.IMAGE_KEY: _ovf_package.SHA256_KEY + digest}


def test_a_planted_template_recording_our_image_is_ignored_and_ours_is_imported_and_used(
        play, test_ova, service_instance, plant, cluster_key_file):
    digest, records = image_records(test_ova)
    ours = TemplateIdentity.from_file(cluster_key_file)
    # What the fast path found before: the old name, and a name like ours; both record our image's hash and key.
    planted = {f"{TEMPLATE_PREFIX}{digest[:12]}": plant(f"{TEMPLATE_PREFIX}{digest[:12]}", records),
               f"{TEMPLATE_PREFIX}{digest[:12]}-whatever": plant(
                   f"{TEMPLATE_PREFIX}{digest[:12]}-whatever", dict(records, **{_records.TEMPLATE_IDENTITY: "f" * 64}))}
    result = play([deploy_task("xi", test_ova, names=["xi-0"], power_on=False)]).result
    assert not result["failed"], result
    assert result["image"]["template"] == ours.name(digest) == f"{TEMPLATE_PREFIX}{digest[:12]}-{ours.key_id}"
    assert cloned_from(service_instance, "xi-0")[_records.CLONED_FROM] == ours.name(digest)
    vm, props = templates(service_instance)[ours.name(digest)]
    assert props["config.template"]
    assert markers(props)[_records.TEMPLATE_IDENTITY] == ours.made(ours.name(digest), vm._moId)
    # The clone does not carry the template's identity: it is no template of ours.
    assert _records.TEMPLATE_IDENTITY not in cloned_from(service_instance, "xi-0")
    # template_prune, with our key, lists the planted ones as not ours and leaves them.
    pruned = play([task("template_prune", datacenter="DC0", vm_folder="ray", cluster_key_file=str(cluster_key_file))],
                  check=True).result
    not_ours = "not made with this cluster key: it records no template identity that cluster_key_file gives"
    assert sorted(pruned["kept"], key=lambda entry: entry["name"]) == sorted(
        [{"name": name, "reason": not_ours} for name in planted] + [
         {"name": ours.name(digest), "reason": "in use by 1 VM(s): xi-0"}], key=lambda entry: entry["name"])
    assert pruned["removed"] == []
    play([task("node_delete", cluster_name="xi", all_nodes=True)])
    for name in list(planted) + [ours.name(digest)]:
        remove_template(service_instance, name)


def test_a_vm_with_our_templates_name_but_not_its_identity_fails_the_deploy_naming_it(
        play, test_ova, service_instance, plant, cluster_key_file, vm_names):
    digest, records = image_records(test_ova)
    ours = TemplateIdentity.from_file(cluster_key_file)
    name = ours.name(digest)
    # Our template of an earlier day, its identity read off it: bound to that template's moid, it proves nothing here.
    earlier = play([deploy_task("omicron", test_ova, names=["omicron-0"], power_on=False)]).result
    assert earlier["image"]["template"] == name
    copied = markers(templates(service_instance)[name][1])[_records.TEMPLATE_IDENTITY]
    play([task("node_delete", cluster_name="omicron", all_nodes=True)])
    remove_template(service_instance, name)
    dead_maker = {_records.TEMPLATE_MAKER: "another-host pid 42", _records.TEMPLATE_STARTED: "0"}
    for impostor, template in (({}, True), ({_records.TEMPLATE_IDENTITY: copied}, True),
                               # What an import of ours writes first: never enough for a template.
                               ({_records.TEMPLATE_IDENTITY: ours.being_made(name)}, True),
                               # "Half-made" by a dead maker: ours would be removed and made again; not this one.
                               (dead_maker, False)):
        planted = plant(name, dict(records, **impostor), template=template)
        before = vm_names()
        for check in (True, False):
            result = play([deploy_task("omicron", test_ova, names=["omicron-1"])], check=check).result
            assert result["failed"], impostor
            assert (f"a VM named {name} is in the VM folder, the name of this image's template, but it does not "
                    "record the identity of a template made with this cluster's key (cluster_key_file): it may have "
                    "been planted, so it is not cloned; remove it (or move it out of the folder) and deploy again"
                    ) in result["msg"]
            assert vm_names() == before
        assert templates(service_instance)[name][0]._moId == planted
        remove_template(service_instance, name)


def test_two_keys_in_one_folder_get_two_templates_and_prune_removes_only_its_own(
        play, test_ova, service_instance, cluster_key_file, tmp_path):
    other_key = make_key_pair(tmp_path / "other-key")
    digest, _ = image_records(test_ova)
    mine, theirs = TemplateIdentity.from_file(cluster_key_file), TemplateIdentity.from_file(other_key)
    first = play([deploy_task("pi", test_ova, names=["pi-0"], power_on=False)]).result
    second = play([deploy_task("rho", test_ova, names=["rho-0"], power_on=False, cluster_key_file=str(other_key))]).result
    assert not first["failed"] and not second["failed"], (first, second)
    assert (first["image"]["template"], second["image"]["template"]) == (mine.name(digest), theirs.name(digest))
    assert mine.name(digest) != theirs.name(digest)
    assert cloned_from(service_instance, "pi-0")[_records.CLONED_FROM] == mine.name(digest)
    assert cloned_from(service_instance, "rho-0")[_records.CLONED_FROM] == theirs.name(digest)
    play([task("node_delete", cluster_name="pi", all_nodes=True)])
    play([task("node_delete", cluster_name="rho", all_nodes=True, cluster_key_file=str(other_key))])
    pruned = play([task("template_prune", datacenter="DC0", vm_folder="ray", cluster_key_file=str(cluster_key_file))]).result
    assert not pruned["failed"], pruned
    assert pruned["removed"] == [mine.name(digest)]
    assert {"name": theirs.name(digest),
            "reason": "not made with this cluster key: it records no template identity that cluster_key_file gives"
            } in pruned["kept"]
    assert set(templates(service_instance)) == {theirs.name(digest)}
    again = play([task("template_prune", datacenter="DC0", vm_folder="ray", cluster_key_file=str(other_key))]).result
    assert again["removed"] == [theirs.name(digest)]
    assert templates(service_instance) == {}


def test_a_made_template_takes_only_its_moid_bound_identity(tmp_path):
    identity = TemplateIdentity.from_file(make_key_pair(tmp_path / "key"))
    name = identity.name("ab" * 32)
    made, being_made = identity.made(name, "vm-42"), identity.being_made(name)
    assert identity.is_ours(name, "vm-42", {_records.TEMPLATE_IDENTITY: made}, is_template=True)
    assert not identity.is_ours(name, "vm-43", {_records.TEMPLATE_IDENTITY: made}, is_template=True)
    assert not identity.is_ours(name, "vm-42", {_records.TEMPLATE_IDENTITY: being_made}, is_template=True)
    assert identity.is_ours(name, "vm-42", {_records.TEMPLATE_IDENTITY: being_made}, is_template=False)
    assert not identity.is_ours(name + "x", "vm-42", {_records.TEMPLATE_IDENTITY: being_made}, is_template=False)
    assert not identity.is_ours(name, "vm-42", {}, is_template=False)
    other = TemplateIdentity.from_file(make_key_pair(tmp_path / "other"))
    assert other.key_id != identity.key_id and len(name) == len(other.name("ab" * 32)) == 34
