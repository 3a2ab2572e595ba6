"""node_power: a node stopped keeps its VM and disk and is marked stopped; started again, it is the same VM, with
the launch's tags and a new address; a VM that is not a verified node of the cluster is refused before any change."""

from conftest import PLACEMENT, deploy_task, task
from pyVmomi import vim

from testbed import vsphere
from testbed.guests import ssh


def vcenter_view(service_instance, name):
    """(power state, instance UUID, ray-node-status) of VM `name`, as vcsim has it."""
    vms = vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name", "runtime.powerState",
                                                                         "config.instanceUuid", "customValue"])
    fields = {field.key: field.name for field in service_instance.content.customFieldsManager.field}
    [props] = [props for props in vms.values() if props["name"] == name]
    status = {fields[value.key]: value.value for value in props["customValue"]}.get("ray-node-status") or None
    return str(props["runtime.powerState"]), props["config.instanceUuid"], status


def power(cluster_key_file, uuids, state, **options):
    return task("node_power", cluster_name="delta", cluster_key_file=str(cluster_key_file), uuids=uuids, state=state,
                datacenter=PLACEMENT["datacenter"], vm_folders=[PLACEMENT["vm_folder"]], **options)


def test_stop_keeps_the_vm_start_brings_the_same_vm_back_with_new_tags_and_foreign_vms_are_refused(
        play, guest_simulator, test_ova, ssh_key_pair, service_instance, vm_names, cluster_key_file):
    key, public_key = ssh_key_pair("power")
    deployed = play([deploy_task("delta", test_ova, count=2, request_id="pw", node_type="cpu", wait_for_ip=True,
                                 ip_timeout=60, ssh_public_keys=[public_key], tags={"ray-launch-config": "h1"})]).result
    assert not deployed["failed"], deployed
    first, second = deployed["nodes"]
    assert ssh(first["ip"], key, "echo warm > ~/marker").returncode == 0
    names = vm_names()

    foreign = vcenter_view(service_instance, "DC0_C0_RP1_VM0")[1]
    refused = play([task("node_power", cluster_name="delta", cluster_key_file=str(cluster_key_file), state="stopped",
                         uuids=[first["uuid"], foreign])]).result  # all of vCenter read: the foreign VM is found
    assert refused["failed"] and "not nodes of Ray cluster delta" in refused["msg"], refused
    assert vcenter_view(service_instance, first["name"])[0] == "poweredOn", "refused before anything changed"

    checked = play([power(cluster_key_file, [first["uuid"]], "stopped")], check=True).result
    assert (checked["failed"], checked["changed"], checked["changed_nodes"]) == (False, True, [first["name"]])
    assert vcenter_view(service_instance, first["name"])[0] == "poweredOn"

    stopped = play([power(cluster_key_file, [first["uuid"], "no-such-uuid"], "stopped")]).result
    assert not stopped["failed"], stopped
    assert (stopped["changed_nodes"], stopped["absent"]) == ([first["name"]], ["no-such-uuid"])
    assert vcenter_view(service_instance, first["name"]) == ("poweredOff", first["uuid"], "stopped")
    assert vcenter_view(service_instance, second["name"])[0] == "poweredOn"
    assert vm_names() == names, "stopped, not deleted"
    guest_simulator.wait_for_no_guest(first["moid"])
    assert play([power(cluster_key_file, [first["uuid"]], "stopped")]).result["changed"] is False

    started = play([power(cluster_key_file, [first["uuid"]], "started", ip_timeout=60,
                          tags={"ray-node-status": "uninitialized", "ray-launch-config": "h1"})]).result
    assert not started["failed"], started
    [node] = started["nodes"]
    assert (node["uuid"], node["moid"], node["power_state"]) == (first["uuid"], first["moid"], "poweredOn")
    assert node["tags"]["ray-node-status"] == "uninitialized" and node["tags"]["ray-user-node-type"] == "cpu"
    guest = guest_simulator.wait_for_guest(first["moid"])
    assert node["ip"] == guest.address
    assert node["ssh_host_key"] == first["ssh_host_key"]
    login = ssh(node["ip"], key, "cat ~/marker; hostname")
    assert login.stdout.split() == ["warm", first["name"]], login.stderr
    assert vm_names() == names

    cluster_tag = play([power(cluster_key_file, [first["uuid"]], "started", tags={"ray-cluster-name": "x"})]).result
    assert cluster_tag["failed"] and "ray-cluster-name cannot be changed" in cluster_tag["msg"]

    # Started with no status tag given, a node is still unmarked: stopped is for powered-off nodes only.
    assert not play([power(cluster_key_file, [second["uuid"]], "stopped")]).result["failed"]
    plain = play([power(cluster_key_file, [second["uuid"]], "started", wait_for_ip=False)]).result
    assert not plain["failed"], plain
    assert vcenter_view(service_instance, second["name"]) == ("poweredOn", second["uuid"], None)

    # ray_down.yml's delete (node_delete all_nodes) takes stopped nodes too.
    assert not play([power(cluster_key_file, [second["uuid"]], "stopped")]).result["failed"]
    down = play([task("node_delete", cluster_name="delta", cluster_key_file=str(cluster_key_file),
                      all_nodes=True)]).result
    assert not down["failed"], down
    assert down["deleted"] == sorted([first["name"], second["name"]])
    assert not {first["name"], second["name"]} & set(vm_names())
