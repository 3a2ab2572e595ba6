"""node_deploy through real playbook runs against vcsim."""

import uuid

from conftest import deploy_task
from pyVmomi import vim

from testbed import simulator, vsphere
from testbed.appliance import build_test_ova
from testbed.guests import ssh
from testbed.ova_import import import_ova

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey


def nodes_of(result):
    return {node["name"]: node for node in result["nodes"]}


def templates(service_instance):
    found = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name", "config.template"])
    return sorted(props["name"] for props in found.values() if props.get("config.template"))


def test_deploy_one_node_waits_for_its_guest_ip_and_a_rerun_changes_nothing(
        play, guest_simulator, test_ova, ssh_key_pair, vm_names):
    key, public_key = ssh_key_pair("deploy-one")
    deploy = deploy_task("alpha", test_ova, node_kind="head", names=["alpha-head"], wait_for_ip=True, ip_timeout=60,
                         ssh_public_keys=[public_key], cpus=4, memory_mb=4096)
    first = play([deploy]).result
    assert not first["failed"], first
    assert first["changed"] is True
    [node] = first["nodes"]
    guest = guest_simulator.wait_for_guest(node["moid"])
    assert node["ip"] == guest.address
    assert node["power_state"] == "poweredOn"
    assert node["tags"] == {"ray-cluster-name": "alpha", "ray-node-type": "head"}
    assert first["created"] == ["alpha-head"]
    login = ssh(node["ip"], key, "hostname")
    assert (login.returncode, login.stdout.strip()) == (0, "alpha-head"), login.stderr
    names_after_first = vm_names()

    again = play([deploy]).result
    assert not again["failed"], again
    assert again["changed"] is False
    assert again["existing"] == ["alpha-head"] and again["created"] == []
    assert nodes_of(again)["alpha-head"]["uuid"] == node["uuid"]
    assert vm_names() == names_after_first


def test_five_nodes_are_cloned_from_one_template_and_a_retry_with_the_request_id_creates_nothing(
        play, test_ova, service_instance, vm_names):
    deploy = deploy_task("alpha", test_ova, count=5, request_id="r5", node_type="cpu_worker",
                         tags={"ray-launch-config": "hash-1"}, parallel=5)
    first = play([deploy]).result
    assert not first["failed"], first
    expected = [f"alpha-cpu-worker-r5-{index}" for index in range(5)]  # node type cpu_worker, host-name safe
    assert first["created"] == expected
    assert all(node["power_state"] == "poweredOn" for node in first["nodes"])
    assert all(node["tags"] == {"ray-cluster-name": "alpha", "ray-node-type": "worker",
                                "ray-user-node-type": "cpu_worker", "ray-launch-config": "hash-1"}
               for node in first["nodes"])
    assert len({node["uuid"] for node in first["nodes"]}) == 5
    [template] = templates(service_instance)
    assert template.startswith("ray-template-")
    names_after_first = vm_names()

    retry = play([deploy]).result
    assert (retry["changed"], retry["created"], retry["existing"]) == (False, [], expected)
    assert vm_names() == names_after_first


def test_without_the_template_every_node_is_imported_with_its_disk(play, test_ova, service_instance, vm_names):
    before = templates(service_instance)
    result = play([deploy_task("delta", test_ova, count=2, request_id="imp", clone_from_template=False)]).result
    assert not result["failed"], result
    assert result["created"] == ["delta-worker-imp-0", "delta-worker-imp-1"]
    assert templates(service_instance) == before
    for node in result["nodes"]:
        vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, node["name"])
        devices = vsphere.read_properties(service_instance, vm, ["config.hardware.device"])["config.hardware.device"]
        assert any(isinstance(device, vim.vm.device.VirtualDisk) for device in devices)


def test_deploy_from_a_url_served_on_loopback(play, test_ova, ova_server):
    url, ca_file = ova_server
    result = play([deploy_task("alpha", url, names=["alpha-from-url"], ovf_ca_path=ca_file,
                               clone_from_template=False)]).result
    assert not result["failed"], result
    assert result["created"] == ["alpha-from-url"]


def test_check_mode_predicts_the_nodes_and_creates_nothing(play, test_ova, vm_names):
    before = vm_names()
    result = play([deploy_task("alpha", test_ova, count=2, request_id="chk")], check=True, diff=True).result
    assert not result["failed"], result
    assert result["changed"] is True
    assert result["created"] == ["alpha-worker-chk-0", "alpha-worker-chk-1"]
    assert result["diff"] == {"before": {"nodes": []}, "after": {"nodes": result["created"]}}
    assert vm_names() == before


def test_a_vm_whose_tagging_was_cut_short_is_adopted_not_duplicated(play, test_ova, service_instance, vm_names,
                                                                  cluster_key_file):
    # What a run killed between creating a VM and tagging it leaves: the creation marker and the identity only.
    # (The identity as the create call writes it: bound to the folder and vCenter, not yet to the VM's moid.)
    instance_uuid = str(uuid.uuid4())
    placement = simulator.default_placement(service_instance)
    identity = ClusterKey(cluster_key_file.read_text(), "alpha").node_identity(
        "alpha-cut-short", instance_uuid, placement["folder"]._moId, service_instance.content.about.instanceUuid)
    import_ova(service_instance, test_ova, "alpha-cut-short", **placement,
               extra_config={"ray-vsphere.cluster-name": "alpha", "ray-vsphere.cluster-identity": identity},
               instance_uuid=instance_uuid)
    before = vm_names()
    # Check mode predicts what the run does: the leftover is adopted, nothing is created.
    predicted = play([deploy_task("alpha", test_ova, names=["alpha-cut-short", "alpha-new"])], check=True).result
    assert not predicted["failed"], predicted
    assert (predicted["changed"], predicted["adopted"], predicted["created"]) == (True, ["alpha-cut-short"], ["alpha-new"])
    assert vm_names() == before
    result = play([deploy_task("alpha", test_ova, names=["alpha-cut-short"])]).result
    assert not result["failed"], result
    assert (result["changed"], result["adopted"], result["created"]) == (True, ["alpha-cut-short"], [])
    assert result["nodes"][0]["tags"]["ray-cluster-name"] == "alpha"
    assert result["nodes"][0]["power_state"] == "poweredOn"
    assert vm_names() == before


def test_a_cut_short_vm_without_the_keys_identity_is_a_clash_not_adopted(play, test_ova, service_instance, vm_names):
    # The creation marker alone (a leftover of a same-named cluster under another key, or someone's copy).
    import_ova(service_instance, test_ova, "stray-cut-short", **simulator.default_placement(service_instance),
               extra_config={"ray-vsphere.cluster-name": "stray"})
    before = vm_names()
    result = play([deploy_task("stray", test_ova, names=["stray-cut-short", "stray-1"])]).result
    assert result["failed"] and result["unverified"] == ["stray-cut-short"]
    assert "cluster 'stray' already exists in DC0/vm/ray under another key (VMs: stray-cut-short)" in result["msg"]
    assert vm_names() == before


def test_a_name_taken_by_a_vm_of_another_cluster_is_refused(play, test_ova, vm_names):
    assert not play([deploy_task("alpha", test_ova, names=["alpha-taken"])]).result["failed"]
    before = vm_names()
    result = play([deploy_task("other", test_ova, names=["alpha-taken"])]).result
    assert result["failed"]
    assert "a VM named alpha-taken already exists in the VM folder and is not a node of Ray cluster other" in result["msg"]
    assert vm_names() == before


def test_a_packer_style_image_without_ovf_properties_deploys_and_each_clone_boots_as_its_own_instance(
        play, guest_simulator, ssh_key_pair):
    """No ProductSection: the key, hostname and instance-id reach cloud-init through guestinfo.metadata."""
    key, public_key = ssh_key_pair("packer")
    deploy = deploy_task("packer", build_test_ova(style="packer"), count=2, request_id="p2", wait_for_ip=True,
                         ip_timeout=60, ssh_public_keys=[public_key])
    result = play([deploy]).result
    assert not result["failed"], result
    for node in result["nodes"]:
        booted = ssh(node["ip"], key, "id -un; hostname; cat /var/lib/cloud/data/instance-id; "
                                      "cloud-init status --long | grep -o DataSourceVMware")
        assert booted.returncode == 0, booted.stderr
        assert booted.stdout.split() == ["ubuntu", node["name"], node["uuid"], "DataSourceVMware"]
    assert len({node["uuid"] for node in result["nodes"]}) == 2


def test_clones_of_an_ubuntu_style_image_get_the_keys_and_their_own_instance_id_as_ovf_properties(
        play, guest_simulator, test_ova, ssh_key_pair):
    key, public_key = ssh_key_pair("ubuntu-style")
    deploy = deploy_task("ubuntu", test_ova, count=2, request_id="u2", wait_for_ip=True, ip_timeout=60,
                         ssh_public_keys=[public_key])
    result = play([deploy]).result
    assert not result["failed"], result
    for node in result["nodes"]:
        booted = ssh(node["ip"], key, "cat /var/lib/cloud/data/instance-id; cloud-init status --long | grep -o 'DataSourceOVF'")
        assert booted.returncode == 0, booted.stderr
        assert booted.stdout.split() == [node["uuid"], "DataSourceOVF"]


def test_deploy_settings_are_recorded_on_new_nodes_read_back_by_node_info_and_rewritten_when_they_change(
        play, test_ova, service_instance):
    settings = {"datastore": "LocalDS_0", "setup_commands": ["echo a"], "worker_cpus": 2}
    deploy = deploy_task("recorder", test_ova, node_kind="head", names=["recorder-head"], power_on=False,
                         deploy_settings=settings)
    first = play([deploy]).result
    assert not first["failed"], first
    assert nodes_of(first)["recorder-head"]["deploy_settings"] == settings
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, "recorder-head")
    recorded = {option.key: option.value for option in vm.config.extraConfig}["ray-vsphere.deploy-settings"]
    assert recorded == '{"datastore": "LocalDS_0", "setup_commands": ["echo a"], "worker_cpus": 2}'
    assert not any(key.startswith("guestinfo.") and "LocalDS_0" in value
                   for key, value in {o.key: o.value for o in vm.config.extraConfig}.items()), "not for the guest"

    listed = play([{"name": "List", "ray_vsphere.cluster.node_info": {"cluster_name": "recorder"}}]).result
    assert [node["deploy_settings"] for node in listed["nodes"]] == [settings]

    assert play([deploy]).result["changed"] is False, "the same settings: nothing to write"
    changed = dict(settings, worker_cpus=4)
    check = play([deploy_task("recorder", test_ova, node_kind="head", names=["recorder-head"], power_on=False,
                              deploy_settings=changed)], check=True).result
    assert check["changed"] is True
    assert nodes_of(play([{"name": "List", "ray_vsphere.cluster.node_info": {"cluster_name": "recorder"}}]).result
                    )["recorder-head"]["deploy_settings"] == settings, "check mode wrote nothing"
    again = play([deploy_task("recorder", test_ova, node_kind="head", names=["recorder-head"], power_on=False,
                              deploy_settings=changed)]).result
    assert again["changed"] is True and again["created"] == []
    assert nodes_of(again)["recorder-head"]["deploy_settings"] == changed
