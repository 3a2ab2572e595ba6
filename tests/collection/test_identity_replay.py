"""A deleted head's identity replayed: every lookup ignores it. A garbled identity: nothing crashes.

Once a node is deleted its instance UUID is free again, and whoever could read
its configuration holds its name, instance UUID and identity. Here a head is
made with node_deploy and deleted, then two VMs carry all it recorded (its
ray-vsphere.* extraConfig, the deploy settings pointed at another image) under
its name and instance UUID, tagged as an up-to-date head: one made in another
folder, one cloned into the cluster's own folder. Neither is taken for the
head by node_info, node_tags, node_delete, the playbooks' head lookup (through
ray_workers.yml) or the provider's refresh, in the folder or in the sweep of
all of vCenter.

A VM tagged with the cluster's name whose identity is not 64 lower-case hex
digits (non-ASCII text) is never a node, and every lookup goes on.
"""

import json

import pytest
from conftest import deploy_task, task
from pyVmomi import vim
from ray.autoscaler.tags import TAG_RAY_NODE_KIND

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _records
from ray_provider import node_provider
from ray_provider.node_provider import VsphereNodeProvider
from testbed import ray_cluster, simulator, vsphere
from testbed.ova_import import import_ova

CLUSTER = "replay"
HEAD, WORKER = f"{CLUSTER}-head", f"{CLUSTER}-w0"
GARBLED = f"{CLUSTER}-garbled"
ELSEWHERE = "replayers"
SETTINGS = {"datacenter": simulator.DATACENTER, "vm_folder": simulator.VM_FOLDER, "ovf": "real"}
# A whole placement, so a run that took the record would deploy the replayer's image with the operator's account.
FORGED_SETTINGS = json.dumps({"datacenter": simulator.DATACENTER, "vsphere_cluster": simulator.CLUSTERS[0],
                              "datastore": simulator.DATASTORES[0], "vm_folder": simulator.VM_FOLDER,
                              "ovf": "https://attacker.example.com/evil.ova"}, sort_keys=True)
HEAD_TAGS = {_records.CLUSTER_NAME: CLUSTER, _records.NODE_KIND: "head", _records.USER_NODE_TYPE: "head",
             "ray-node-status": "up-to-date"}


def vms_named(service_instance, name):
    """{vm: props} of the VMs called name, as vcsim has them: the oracle."""
    return {vm: props for vm, props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name", "parent", "config.instanceUuid", "customValue"]).items()
            if props["name"] == name}


@pytest.fixture(scope="module")
def replayed(play, test_ova, vcsim):
    """(instance UUID of the deleted head, {folder name: replayed VM}): the head's record on two VMs of others."""
    made = play([deploy_task(CLUSTER, test_ova, node_kind="head", names=[HEAD], deploy_settings=SETTINGS),
                 deploy_task(CLUSTER, test_ova, node_kind="worker", names=[WORKER])]).results
    assert not any(result["failed"] for result in made), made
    admin = vcsim.endpoint.connect()
    head = vsphere.find_by_name(admin, vim.VirtualMachine, HEAD)
    props = vsphere.read_properties(admin, head, ["config.extraConfig", "config.instanceUuid"])
    head_uuid = props["config.instanceUuid"]
    copied = {option.key: option.value for option in props["config.extraConfig"] if option.key.startswith("ray-vsphere.")}
    assert {_records.CLUSTER_IDENTITY, _records.DEPLOY_SETTINGS} <= set(copied)  # and all else it records
    copied[_records.DEPLOY_SETTINGS] = FORGED_SETTINGS

    deleted = play([task("node_delete", cluster_name=CLUSTER, names=[HEAD])]).result
    assert deleted["deleted"] == [HEAD], deleted
    assert vms_named(admin, HEAD) == {}, "gone at vcsim: its instance UUID is free"

    attributes = _nodes.Inventory(admin).attributes
    datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
    placement = simulator.default_placement(admin)
    # In a folder of the replayer's own, under the head's name and instance UUID.
    elsewhere = import_ova(admin, test_ova, HEAD, **dict(placement, folder=datacenter.vmFolder.CreateFolder(ELSEWHERE),
                                                         datastore=vsphere.find_by_name(admin, vim.Datastore,
                                                                                        simulator.DATASTORES[1])),
                           extra_config=copied, instance_uuid=head_uuid)
    attributes.set(elsewhere, HEAD, HEAD_TAGS)
    # Cloned from it into the cluster's own folder, with the same name, instance UUID and record.
    clone = vsphere.wait_for_task(admin, elsewhere.CloneVM_Task(folder=placement["folder"], name=HEAD, spec=vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(datastore=placement["datastore"]), config=vim.vm.ConfigSpec(
            instanceUuid=head_uuid, extraConfig=[vim.option.OptionValue(key=key, value=value)
                                                 for key, value in copied.items()]))))
    attributes.set(clone, HEAD, HEAD_TAGS)
    for vm in (elsewhere, clone):
        vsphere.wait_for_task(admin, vm.PowerOnVM_Task())
    copies = {props["parent"].name: vm for vm, props in vms_named(admin, HEAD).items()}
    assert set(copies) == {ELSEWHERE, simulator.VM_FOLDER}
    for vm in copies.values():
        recorded = vsphere.read_properties(admin, vm, ["config.instanceUuid", "config.extraConfig"])
        assert recorded["config.instanceUuid"] == head_uuid, "vcsim kept the replayed instance UUID"
        assert {option.key: option.value for option in recorded["config.extraConfig"]
                if option.key.startswith("ray-vsphere.")} == copied, "and the head's whole record"

    # And a VM tagged as the cluster's worker whose identity is non-ASCII text: hmac.compare_digest raised on it.
    garbled = import_ova(admin, test_ova, GARBLED, **placement,
                         extra_config={_records.CLUSTER_IDENTITY: "é" * 64, _records.CREATION_MARKER: CLUSTER})
    attributes.set(garbled, GARBLED, {_records.CLUSTER_NAME: CLUSTER, _records.NODE_KIND: "worker"})
    yield head_uuid, copies
    vsphere.disconnect(admin)


def listed(play, **scope):
    result = play([task("node_info", cluster_name=CLUSTER, **scope)]).result
    assert not result["failed"], result
    return result


IN_FOLDER = dict(datacenter=simulator.DATACENTER, vm_folders=[simulator.VM_FOLDER])


@pytest.mark.parametrize("scope, unverified", [
    (IN_FOLDER, [GARBLED, HEAD]),
    (dict(datacenter=simulator.DATACENTER, vm_folders=[ELSEWHERE]), [HEAD]),
    ({}, [GARBLED, HEAD, HEAD])], ids=["cluster-folder", "replayers-folder", "all-of-vcenter"])
def test_node_info_lists_the_real_worker_only(play, replayed, scope, unverified):
    found = listed(play, **scope)
    assert [node["name"] for node in found["nodes"]] == ([WORKER] if scope != {"datacenter": simulator.DATACENTER,
                                                                              "vm_folders": [ELSEWHERE]} else [])
    assert sorted(found["unverified"]) == unverified, "named, never taken"
    assert listed(play, node_kind="head", **scope)["nodes"] == []


@pytest.mark.parametrize("scope", [IN_FOLDER, {}], ids=["cluster-folder", "all-of-vcenter"])
def test_node_tags_refuses_the_replayed_head_by_name_and_by_uuid_and_writes_nothing(play, replayed, service_instance,
                                                                                    scope):
    head_uuid, _ = replayed
    for selector in ({"name": HEAD}, {"uuid": head_uuid}):
        refused = play([task("node_tags", cluster_name=CLUSTER, nodes=[{**selector, "tags": {"ray-node-status": "x"}}],
                             **scope)]).result
        assert refused["failed"], refused
        assert f"(tagged ray-cluster-name={CLUSTER}, but without the identity of this cluster's key)" in refused["msg"]
    attributes = _nodes.Inventory(service_instance, paths=["name"]).attributes
    assert {attributes.tags(props["customValue"]).get("ray-node-status")
            for props in vms_named(service_instance, HEAD).values()} == {"up-to-date"}, "no tag written, at vcsim"
    status = "in-" + ("-".join(scope.get("vm_folders", [])) or "vcenter")  # a new value in each scope
    tagged = play([task("node_tags", cluster_name=CLUSTER, nodes=[{"name": WORKER, "tags": {"ray-node-status": status}}],
                        **scope)]).result
    assert (tagged["failed"], tagged["changed_nodes"]) == (False, [WORKER]), "the garbled VM stops nothing"


@pytest.mark.parametrize("scope", [IN_FOLDER, {}], ids=["cluster-folder", "all-of-vcenter"])
def test_node_delete_refuses_the_replayed_head_and_a_check_mode_sweep_leaves_it(play, replayed, service_instance,
                                                                               scope):
    head_uuid, _ = replayed
    for selection in (dict(names=[HEAD]), dict(uuids=[head_uuid])):
        refused = play([task("node_delete", cluster_name=CLUSTER, **selection, **scope)]).result
        assert refused["failed"] and "refusing VMs that are not nodes of Ray cluster" in refused["msg"], refused
    swept = play([task("node_delete", cluster_name=CLUSTER, all_nodes=True, **scope)], check=True).result
    assert not swept["failed"], swept
    assert swept["deleted"] == [WORKER]
    assert len(vms_named(service_instance, HEAD)) == 2


def test_the_head_lookup_through_ray_workers_finds_no_head_and_deploys_nothing(replayed, cluster_key_file, vcsim,
                                                                             service_instance, tmp_path):
    before = sorted(props["name"] for props in vsphere.objects_of_type(service_instance, vim.VirtualMachine,
                                                                        ["name"]).values())
    for folder in (simulator.VM_FOLDER, ELSEWHERE):
        run = ray_cluster.run("ray_workers", tmp_path / folder, vcsim.endpoint.environment(), dict(
            ray_cluster_name=CLUSTER, ray_worker_count=3, ray_ssh_private_key=str(cluster_key_file),
            ray_datacenter=simulator.DATACENTER, ray_vm_folder=folder))
        output = run.stdout.read()
        assert run.status == "failed"
        assert f"Ray cluster {CLUSTER} has no head in vCenter made with the key" in output, output[-3000:]
        assert "attacker.example.com" not in output
    after = sorted(props["name"] for props in vsphere.objects_of_type(service_instance, vim.VirtualMachine,
                                                                       ["name"]).values())
    assert after == before, "nothing deployed, counted at vcsim"


@pytest.mark.parametrize("vm_folder", [simulator.VM_FOLDER, ELSEWHERE, None])
def test_the_providers_refresh_never_counts_the_replayed_head(replayed, cluster_key_file, test_ova, vcsim, tmp_path,
                                                            monkeypatch, vm_folder):
    for name, value in vcsim.endpoint.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
    folder = {"vm_folder": vm_folder} if vm_folder else {}  # none: the datacenter's own VM folder, only it
    provider = VsphereNodeProvider({
        "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider", "ovf": str(test_ova),
        "datacenter": simulator.DATACENTER, "cluster": simulator.CLUSTERS[0], **folder,
        "datastore": simulator.DATASTORES[0], "ssh_private_key_file": str(cluster_key_file),
        "ssh_public_key_file": f"{cluster_key_file}.pub"}, CLUSTER)
    assert provider.non_terminated_nodes({TAG_RAY_NODE_KIND: "head"}) == []
    workers = [provider.cache.name(node_id) for node_id in provider.non_terminated_nodes({})]
    assert workers == ([WORKER] if vm_folder == simulator.VM_FOLDER else [])
    seen = {props.get("name") for props in provider._watch.vms.values()}
    if vm_folder:
        assert HEAD in seen, "the refresh read the replayed head, and left it out"
    else:
        assert seen & {HEAD, WORKER, GARBLED} == set(), "without vm_folder, not the whole datacenter"


def test_ray_down_removes_the_real_nodes_and_neither_replayed_head(replayed, cluster_key_file, vcsim,
                                                                  service_instance, tmp_path):
    """The one sweep of all of vCenter, for nodes moved out of their folder: a copy is none there either."""
    down = ray_cluster.run("ray_down", tmp_path / "down", vcsim.endpoint.environment(), dict(
        ray_cluster_name=CLUSTER, ray_ssh_private_key=str(cluster_key_file)))
    assert down.status == "successful", down.stdout.read()[-3000:]
    assert vms_named(service_instance, WORKER) == {}
    assert {props["parent"].name for props in vms_named(service_instance, HEAD).values()} == {
        simulator.VM_FOLDER, ELSEWHERE}
    assert len(vms_named(service_instance, GARBLED)) == 1
