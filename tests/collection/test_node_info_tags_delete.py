"""node_info, node_tags and node_delete when two Ray clusters share one vCenter."""

import pytest
from conftest import deploy_task, task
from pyVmomi import vim

from testbed import vsphere


@pytest.fixture(scope="module")
def two_clusters(play, test_ova):
    for cluster, kind, names in (("beta", "head", ["beta-head"]), ("beta", "worker", ["beta-w0", "beta-w1"]),
                                 ("gamma", "head", ["gamma-head"])):
        result = play([deploy_task(cluster, test_ova, node_kind=kind, names=names, node_type=f"{kind}_type")]).result
        assert not result["failed"], result


def listed(play, **arguments):
    result = play([task("node_info", **arguments)]).result
    assert not result["failed"], result
    return result


def test_info_lists_exactly_one_clusters_nodes_with_uuids_power_states_and_tags(play, two_clusters):
    nodes = listed(play, cluster_name="beta")["nodes"]
    assert [node["name"] for node in nodes] == ["beta-head", "beta-w0", "beta-w1"]
    assert all(node["uuid"] and node["moid"].startswith("vm-") for node in nodes)
    assert all(node["power_state"] == "poweredOn" for node in nodes)
    assert nodes[0]["tags"] == {"ray-cluster-name": "beta", "ray-node-type": "head", "ray-user-node-type": "head_type"}
    assert [node["name"] for node in listed(play, cluster_name="gamma")["nodes"]] == ["gamma-head"]
    assert listed(play, cluster_name="nobody")["nodes"] == []


def test_info_filters_by_node_kind_node_type_and_tags(play, two_clusters):
    assert [n["name"] for n in listed(play, cluster_name="beta", node_kind="worker")["nodes"]] == ["beta-w0", "beta-w1"]
    assert [n["name"] for n in listed(play, cluster_name="beta", node_type="head_type")["nodes"]] == ["beta-head"]
    by_tag = listed(play, cluster_name="beta", tag_filters={"ray-node-type": "head"})["nodes"]
    assert [n["name"] for n in by_tag] == ["beta-head"]


def test_tags_round_trip_in_one_batch_with_diff_and_check_mode(play, two_clusters):
    workers = {n["name"]: n for n in listed(play, cluster_name="beta", node_kind="worker")["nodes"]}
    updates = [{"uuid": workers["beta-w0"]["uuid"], "tags": {"ray-node-status": "up-to-date"}},
               {"name": "beta-w1", "tags": {"ray-node-status": "setting-up", "ray-runtime-config": "rc1"}}]

    checked = play([task("node_tags", cluster_name="beta", nodes=updates)], check=True).result
    assert (checked["failed"], checked["changed"]) == (False, True)
    assert "ray-node-status" not in listed(play, cluster_name="beta", node_kind="worker")["nodes"][0]["tags"]

    applied = play([task("node_tags", cluster_name="beta", nodes=updates)], diff=True).result
    assert not applied["failed"], applied
    assert applied["changed_nodes"] == ["beta-w0", "beta-w1"]
    assert applied["diff"]["after"]["beta-w1"]["ray-runtime-config"] == "rc1"
    assert "ray-node-status" not in applied["diff"]["before"]["beta-w0"]
    tags = {n["name"]: n["tags"] for n in listed(play, cluster_name="beta", node_kind="worker")["nodes"]}
    assert tags["beta-w0"]["ray-node-status"] == "up-to-date"
    assert (tags["beta-w1"]["ray-node-status"], tags["beta-w1"]["ray-runtime-config"]) == ("setting-up", "rc1")

    again = play([task("node_tags", cluster_name="beta", nodes=updates)]).result
    assert (again["failed"], again["changed"]) == (False, False)


def test_tags_refuse_a_node_of_another_cluster_and_the_cluster_tag(play, two_clusters):
    other = play([task("node_tags", cluster_name="beta", nodes=[{"name": "gamma-head", "tags": {"x": "1"}}])]).result
    assert other["failed"] and "not nodes of Ray cluster beta" in other["msg"]
    renamed = play([task("node_tags", cluster_name="beta",
                         nodes=[{"name": "beta-w0", "tags": {"ray-cluster-name": "gamma"}}])]).result
    assert renamed["failed"] and "ray-cluster-name cannot be changed" in renamed["msg"]


def test_delete_refuses_other_clusters_and_foreign_vms_before_deleting_anything_then_is_idempotent(
        play, two_clusters, vm_names):
    before = vm_names()
    refused = play([task("node_delete", cluster_name="beta", names=["beta-w0", "gamma-head", "DC0_C0_RP1_VM0"])]).result
    assert refused["failed"]
    assert "not nodes of Ray cluster beta" in refused["msg"]
    assert "gamma-head" in refused["msg"] and "DC0_C0_RP1_VM0" in refused["msg"]
    assert vm_names() == before

    w0 = listed(play, cluster_name="beta", node_kind="worker")["nodes"][0]
    deleted = play([task("node_delete", cluster_name="beta", uuids=[w0["uuid"]], names=["beta-w1"])], diff=True).result
    assert not deleted["failed"], deleted
    assert (deleted["changed"], deleted["deleted"], deleted["absent"]) == (True, ["beta-w0", "beta-w1"], [])
    assert [n["name"] for n in listed(play, cluster_name="beta")["nodes"]] == ["beta-head"]

    again = play([task("node_delete", cluster_name="beta", uuids=[w0["uuid"]], names=["beta-w1"])]).result
    assert (again["failed"], again["changed"], again["deleted"]) == (False, False, [])
    assert sorted(again["absent"]) == sorted([w0["uuid"], "beta-w1"])

    everything = play([task("node_delete", cluster_name="beta", all_nodes=True)]).result
    assert everything["deleted"] == ["beta-head"]
    assert listed(play, cluster_name="beta")["nodes"] == []
    assert [n["name"] for n in listed(play, cluster_name="gamma")["nodes"]] == ["gamma-head"]


def test_info_scoped_to_vm_folders_reads_only_them_not_their_subfolders(play, test_ova, service_instance, vm_names):
    datacenter = vsphere.find_by_name(service_instance, vim.Datacenter, "DC0")
    subfolder = vsphere.find_by_name(service_instance, vim.Folder, "ray").CreateFolder("sub")
    result = play([deploy_task("delta", test_ova, names=["delta-head", "delta-w-sub", "delta-w-root"])]).result
    assert not result["failed"], result
    for name, folder in (("delta-w-sub", subfolder), ("delta-w-root", datacenter.vmFolder)):
        vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, name)
        vsphere.wait_for_task(service_instance, folder.MoveIntoFolder_Task([vm]))
    assert [n["name"] for n in listed(play, cluster_name="delta")["nodes"]] == ["delta-head", "delta-w-root",
                                                                              "delta-w-sub"]
    scoped = listed(play, cluster_name="delta", datacenter="DC0", vm_folders=["ray"])
    assert ([n["name"] for n in scoped["nodes"]], scoped["unverified"]) == (["delta-head"], []), (
        "ray/sub is another folder: not read")
    # A node's identity binds the folder it was made in: moved into another, it is no node there (nor anywhere
    # but in the sweep of all of vCenter above, by the folder it records and its own moid).
    for folder, moved_there in (("/DC0/vm/ray/sub", "delta-w-sub"), ("", "delta-w-root")):
        elsewhere = listed(play, cluster_name="delta", datacenter="DC0", vm_folder=folder)
        assert (elsewhere["nodes"], elsewhere["unverified"]) == ([], [moved_there])

    # Moved back into the cluster's folder, a node is one there again.
    moved = vsphere.find_by_name(service_instance, vim.VirtualMachine, "delta-w-root")
    vsphere.wait_for_task(service_instance, vsphere.find_by_name(service_instance, vim.Folder, "ray").MoveIntoFolder_Task(
        [moved]))
    assert [n["name"] for n in listed(play, cluster_name="delta", datacenter="DC0", vm_folders=["ray"])["nodes"]] == [
        "delta-head", "delta-w-root"]
    vsphere.wait_for_task(service_instance, datacenter.vmFolder.MoveIntoFolder_Task([moved]))

    missing = play([task("node_info", cluster_name="delta", datacenter="DC0", vm_folders=["ray/nope"])]).result
    assert missing["failed"] and "VM folder 'ray/nope' not found in datacenter DC0 (no 'nope' below it)" in missing["msg"]
    without_datacenter = play([task("node_info", cluster_name="delta", vm_folders=["ray"])]).result
    assert without_datacenter["failed"] and "datacenter" in without_datacenter["msg"]

    # node_tags and node_delete read only the folders given too: the moved node is not found there.
    in_folder = dict(cluster_name="delta", datacenter="DC0", vm_folders=["ray"])
    tagged = play([task("node_tags", nodes=[{"name": "delta-w-sub", "tags": {"ray-node-status": "x"}}],
                        **in_folder)]).result
    assert tagged["failed"] and "no node delta-w-sub in Ray cluster delta" in tagged["msg"]
    assert play([task("node_tags", nodes=[{"name": "delta-head", "tags": {"ray-node-status": "x"}}],
                      **in_folder)]).result["changed_nodes"] == ["delta-head"]
    kept = play([task("node_delete", names=["delta-w-sub"], **in_folder)]).result
    assert (kept["failed"], kept["deleted"], kept["absent"]) == (False, [], ["delta-w-sub"])
    for module, selection in (("node_tags", dict(nodes=[{"name": "delta-head", "tags": {}}])),
                              ("node_delete", dict(names=["delta-head"]))):
        refused = play([task(module, cluster_name="delta", vm_folders=["ray"], **selection)]).result
        assert refused["failed"] and "datacenter" in refused["msg"]
    assert "delta-w-sub" in vm_names()
    deleted = play([task("node_delete", cluster_name="delta", all_nodes=True)]).result
    assert deleted["deleted"] == ["delta-head", "delta-w-root", "delta-w-sub"]


@pytest.mark.parametrize("selection", [{}, dict(uuids=[], names=[], request_ids=[], all_nodes=False)],
                         ids=["nothing-given", "all-empty"])
def test_delete_with_nothing_to_delete_fails_naming_the_options_before_connecting(play, vcsim, vm_names, selection):
    before = vm_names()
    # A vCenter on a port nobody listens on: an error about it would mean the module tried to connect.
    unreachable = dict(vcsim.endpoint.environment(), VMWARE_PORT="9")
    result = play([task("node_delete", cluster_name="beta", **selection)], env=unreachable).result
    assert result["failed"]
    assert result["msg"] == ("nothing to delete: give node_delete non-empty uuids, names or request_ids, "
                             "or all_nodes: true")
    assert vm_names() == before
