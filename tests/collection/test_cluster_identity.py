"""Clusters with an identity: a VM is a node of a cluster only if it carries the identity made with the cluster's key.

Two clusters of one name, with different keys in different VM folders, never
touch each other; a third one in the same folder is refused before anything
is made; a VM made outside the project and tagged as the head, carrying the
real head's identity value, is neither listed nor taken for the head, by the
playbooks' head lookup nor by the provider's refresh.
"""

import uuid
from types import SimpleNamespace

import pytest
from conftest import PLACEMENT, deploy_task, task
from pyVmomi import vim
from ray.autoscaler.tags import TAG_RAY_NODE_KIND

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _ray_auth, _records
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ray_provider import node_provider
from ray_provider.node_provider import VsphereNodeProvider
from testbed import simulator, vsphere
from testbed.guests import make_key_pair
from testbed.ova_import import import_ova

CLUSTER = "twin"
OTHER_FOLDER = "ray-other"
# vcsim names a VM's datastore folder after the VM alone (vCenter adds a suffix): the same names in another
# VM folder need another datastore there.
OTHER_PLACEMENT = dict(vm_folder=OTHER_FOLDER, datastore="LocalDS_1")


# ----- the key and the one verification function, without vCenter -----

@pytest.fixture
def key_text(tmp_path):
    return make_key_pair(tmp_path / "key").read_text()


HEAD_UUID = "5021a0f4-7c1e-4b8e-9d3a-2f6b1c0e9a11"
VCENTER_UUID = "0d7f6e2c-3b1a-4c5d-8e9f-a0b1c2d3e4f5"
FOLDER, HEAD_MOID = "group-v42", "vm-101"
# Every input of a node's identity, in node_identity's order, with a value that differs in each.
INPUTS = dict(vm_name=("analytics-head", "analytics-worker-0"),
              instance_uuid=(HEAD_UUID, "5021a0f4-7c1e-4b8e-9d3a-2f6b1c0e9a12"),
              folder_moid=(FOLDER, "group-v43"),
              vcenter_uuid=(VCENTER_UUID, "0d7f6e2c-3b1a-4c5d-8e9f-a0b1c2d3e4f6"),
              vm_moid=(HEAD_MOID, "vm-102"))


def head_identity(key, **changed):
    arguments = dict((name, values[0]) for name, values in INPUTS.items())
    arguments.update(changed)
    return key.node_identity(**arguments)


def head_verifies(key, recorded, **changed):
    arguments = dict((name, values[0]) for name, values in INPUTS.items())
    arguments.update(changed)
    return key.verifies(recorded=recorded, **arguments)


@pytest.mark.parametrize("changed", sorted(INPUTS))
def test_an_identity_binds_each_of_its_inputs(key_text, changed):
    """A copy that differs in any one input (another VM's name or UUID, another folder, another vCenter, another
    VM's moid: a clone or a VM made anew once the node is gone) does not verify."""
    key = _ray_auth.ClusterKey(key_text, "analytics")
    identity = head_identity(key)
    assert head_verifies(key, identity)
    other = INPUTS[changed][1]
    assert head_identity(key, **{changed: other}) != identity
    assert not head_verifies(key, identity, **{changed: other}), f"copied where {changed} differs, it verifies"


def test_an_identity_verifies_only_for_its_key_cluster_and_moid(key_text, tmp_path):
    key = _ray_auth.ClusterKey(key_text, "analytics")
    identity = head_identity(key)
    assert len(identity) == 64 and identity not in key_text
    assert head_verifies(key, identity, instance_uuid=HEAD_UUID.upper(), vcenter_uuid=VCENTER_UUID.upper()), (
        "however vCenter spells the UUIDs")
    being_made = head_identity(key, vm_moid=None)
    assert being_made != identity and head_verifies(key, being_made, vm_moid=None), "the create call's value"
    assert not head_verifies(key, being_made) and not head_verifies(key, identity, vm_moid=None), (
        "the value without a moid is not the node's, nor the other way round")
    for missing in ("vm_name", "instance_uuid", "folder_moid", "vcenter_uuid"):
        assert not head_verifies(key, identity, **{missing: None}), f"no {missing}, no identity"
    assert not head_verifies(key, identity, instance_uuid="x") and not head_verifies(key, identity, vcenter_uuid="x")
    assert not head_verifies(_ray_auth.ClusterKey(key_text, "analytics-2"), identity)
    other = _ray_auth.ClusterKey(make_key_pair(tmp_path / "other").read_text(), "analytics")
    assert not head_verifies(other, identity), "another key, another cluster"
    assert not head_verifies(key, None) and not head_verifies(key, "")
    assert identity != _ray_auth.ray_auth_token(key_text, "analytics"), "the token is not an identity"


@pytest.mark.parametrize("recorded", [
    "é" * 64, "\u00e9", "ａ" * 64, "٠" * 64, b"0" * 64, 7, ["0" * 64], "0" * 63, "0" * 65, "0" * 64 + "\n",
    "G" * 64, "upper"], ids=lambda value: repr(value)[:20])
def test_a_recorded_value_that_is_not_64_lower_case_hex_digits_never_verifies_nor_raises(key_text, recorded):
    """Whatever someone who can edit a VM writes into its identity: hmac.compare_digest raised TypeError on
    non-ASCII text, which stopped every listing of the folder that VM was in."""
    key = _ray_auth.ClusterKey(key_text, "analytics")
    assert not head_verifies(key, recorded)
    assert not _ray_auth.matches(head_identity(key), recorded)
    identity = head_identity(key)
    assert not head_verifies(key, identity.upper()), "derive() writes lower case: upper case is someone else's"


def test_a_server_without_an_instance_uuid_is_refused_as_no_vcenter():
    """ESXi answers about.instanceUuid unset: no node could ever verify there, so nothing is read or made."""
    esxi = SimpleNamespace(content=SimpleNamespace(about=SimpleNamespace(instanceUuid=None, fullName="VMware ESXi 8.0.3")))
    with pytest.raises(RayVsphereError, match=r"VMware ESXi 8.0.3 at the other end reports no instance UUID "
                                              r"\(about.instanceUuid\).*connect to a vCenter, not to an ESXi host"):
        _records.vcenter_uuid(esxi)
    vcenter = SimpleNamespace(content=SimpleNamespace(about=SimpleNamespace(instanceUuid=VCENTER_UUID)))
    assert _records.vcenter_uuid(vcenter) == VCENTER_UUID


def test_the_verification_reads_the_identity_from_either_read_and_never_takes_a_template(key_text):
    key = _ray_auth.ClusterKey(key_text, "analytics")
    vm, folder = vim.VirtualMachine(HEAD_MOID), vim.Folder(FOLDER)
    option = vim.option.OptionValue(key=_records.CLUSTER_IDENTITY, value=head_identity(key))
    keyed = {"name": "analytics-head", "config.instanceUuid": HEAD_UUID, "parent": folder,
             f'config.extraConfig["{_records.CLUSTER_IDENTITY}"]': option}
    whole = {"name": "analytics-head", "config.instanceUuid": HEAD_UUID, "parent": folder,
             "config.extraConfig": [option]}
    assert _records.verified(vm, keyed, key, VCENTER_UUID) and _records.verified(vm, whole, key, VCENTER_UUID)
    assert not _records.verified(vm, dict(whole, **{"config.template": True}), key, VCENTER_UUID)
    assert not _records.verified(vm, dict(whole, name="analytics-head-copy"), key, VCENTER_UUID)
    assert not _records.verified(vm, dict(whole, **{"config.instanceUuid": str(uuid.uuid4())}), key, VCENTER_UUID)
    assert not _records.verified(vim.VirtualMachine("vm-102"), whole, key, VCENTER_UUID), "a copy: another moid"
    assert not _records.verified(vm, dict(whole, parent=vim.Folder("group-v43")), key, VCENTER_UUID), "moved"
    assert not _records.verified(vm, whole, key, INPUTS["vcenter_uuid"][1]), "another vCenter"
    assert not _records.verified(vm, {"name": "analytics-head", "config.instanceUuid": HEAD_UUID, "parent": folder},
                                 key, VCENTER_UUID), "no identity"
    # The sweep of all of vCenter: a node moved out of its folder is one by the folder it records it was made in.
    moved = dict(whole, parent=vim.Folder("group-v43"), **{"config.extraConfig": [
        option, vim.option.OptionValue(key=_records.CREATION_FOLDER, value=FOLDER)]})
    assert _records.verified(vm, moved, key, VCENTER_UUID, anywhere=True)
    assert not _records.verified(vim.VirtualMachine("vm-102"), moved, key, VCENTER_UUID, anywhere=True), (
        "a copy is no node in the sweep either")
    assert not _records.verified(vm, whole, key, VCENTER_UUID, anywhere=True), "no recorded folder, no node there"


def test_an_unusable_key_file_is_named_and_its_content_never_echoed(tmp_path):
    with pytest.raises(_ray_auth.ClusterKeyError, match=r"cluster_key_file: cannot read the cluster's private SSH "
                                                         r"key .*/missing: No such file or directory"):
        _ray_auth.ClusterKey.from_file(str(tmp_path / "missing"), "analytics")
    with pytest.raises(_ray_auth.ClusterKeyError, match="cannot read.*Is a directory"):
        _ray_auth.ClusterKey.from_file(str(tmp_path), "analytics")
    public = make_key_pair(tmp_path / "pair").with_suffix(".pub")
    with pytest.raises(_ray_auth.ClusterKeyError, match=r"pair.pub is not a PEM or OpenSSH private key \(that is a "
                                                        r"public key: give the private one beside it\)"):
        _ray_auth.ClusterKey.from_file(str(public), "analytics")
    (tmp_path / "secret").write_text("hunter2-not-a-key")
    with pytest.raises(_ray_auth.ClusterKeyError) as refused:
        _ray_auth.ClusterKey.from_file(str(tmp_path / "secret"), "analytics")
    assert "is not a PEM or OpenSSH private key" in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.mark.parametrize("module", ["node_info", "node_tags", "node_delete", "node_deploy"])
def test_every_module_refuses_a_missing_key_before_any_vcenter_call(play, module, tmp_path, test_ova):
    arguments = dict(cluster_name=CLUSTER, cluster_key_file=str(tmp_path / "nope"))
    arguments.update({"node_tags": dict(nodes=[{"name": "x", "tags": {"a": "b"}}]), "node_delete": dict(all_nodes=True),
                      "node_deploy": dict(PLACEMENT, ovf=str(test_ova))}.get(module, {}))
    # A vCenter nobody answers at: the key is checked first, so the error is the key's.
    result = play([task(module, **arguments)], env={"VMWARE_HOST": "127.0.0.1", "VMWARE_PORT": "9",
                                                   "VMWARE_USER": "nobody", "VMWARE_PASSWORD": "unused-password-4711"}).result
    assert result["failed"]
    assert f"cluster_key_file: cannot read the cluster's private SSH key {tmp_path / 'nope'}" in result["msg"]


# ----- two clusters of one name, and a forged head, in vcsim -----

@pytest.fixture(scope="module")
def other_key(tmp_path_factory):
    return make_key_pair(tmp_path_factory.mktemp("other-key") / "ray-other", "ray-other")


@pytest.fixture(scope="module")
def twins(play, test_ova, vcsim, other_key):
    """CLUSTER with the module's key in folder ray, and CLUSTER with other_key in OTHER_FOLDER, same VM names."""
    admin = vcsim.endpoint.connect()
    datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
    datacenter.vmFolder.CreateFolder(OTHER_FOLDER)
    vsphere.disconnect(admin)
    for keyed in ({}, dict(OTHER_PLACEMENT, cluster_key_file=str(other_key))):
        for kind, names in (("head", [f"{CLUSTER}-head"]), ("worker", [f"{CLUSTER}-w0", f"{CLUSTER}-w1"])):
            result = play([deploy_task(CLUSTER, test_ova, node_kind=kind, names=names, **keyed)]).result
            assert not result["failed"], result
    return str(other_key)


def listed(play, key=None, **arguments):
    keyed = {"cluster_key_file": key} if key else {}
    result = play([task("node_info", cluster_name=CLUSTER, **keyed, **arguments)]).result
    assert not result["failed"], result
    return result


def names(records):
    return [record["name"] for record in records]


def uuids_by_folder(service_instance):
    found = {}
    for vm, props in vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name", "parent",
                                                                                   "config.instanceUuid"]).items():
        if props["name"].startswith(CLUSTER):
            found.setdefault(props["parent"].name, {})[props["name"]] = props["config.instanceUuid"]
    return found


def test_each_key_lists_its_own_cluster_and_names_the_other_as_unverified(play, twins, other_key, service_instance):
    by_folder = uuids_by_folder(service_instance)
    mine, theirs = listed(play), listed(play, str(other_key))
    assert names(mine["nodes"]) == names(theirs["nodes"]) == [f"{CLUSTER}-head", f"{CLUSTER}-w0", f"{CLUSTER}-w1"]
    assert {n["uuid"] for n in mine["nodes"]} == set(by_folder["ray"].values())
    assert {n["uuid"] for n in theirs["nodes"]} == set(by_folder[OTHER_FOLDER].values())
    assert mine["unverified"] == theirs["unverified"] == [f"{CLUSTER}-head", f"{CLUSTER}-w0", f"{CLUSTER}-w1"]
    scoped = listed(play, datacenter="DC0", vm_folders=["ray"])
    assert (len(scoped["nodes"]), scoped["unverified"]) == (3, []), "the other cluster is not in this folder"


def test_tags_reach_only_the_keys_cluster_and_a_foreign_uuid_is_refused_by_name(play, twins, other_key,
                                                                               service_instance):
    by_folder = uuids_by_folder(service_instance)
    applied = play([task("node_tags", cluster_name=CLUSTER,
                         nodes=[{"name": f"{CLUSTER}-w0", "tags": {"ray-node-status": "mine"}}])]).result
    assert (applied["failed"], applied["changed_nodes"]) == (False, [f"{CLUSTER}-w0"]), applied
    statuses = {n["uuid"]: n["tags"].get("ray-node-status") for n in listed(play, str(other_key))["nodes"]}
    assert by_folder[OTHER_FOLDER][f"{CLUSTER}-w0"] in statuses and set(statuses.values()) == {None}, \
        "the other cluster's same-named node was not tagged"

    foreign = by_folder[OTHER_FOLDER][f"{CLUSTER}-w1"]
    refused = play([task("node_tags", cluster_name=CLUSTER, nodes=[
        {"name": f"{CLUSTER}-w1", "tags": {"ray-node-status": "x"}},
        {"uuid": foreign, "tags": {"ray-node-status": "x"}}])]).result
    assert refused["failed"]
    assert f"{foreign} (tagged ray-cluster-name={CLUSTER}, but without the identity of this cluster's key)" in \
        refused["msg"]
    assert all("ray-node-status" not in n["tags"] for n in listed(play)["nodes"] if n["name"] == f"{CLUSTER}-w1"), \
        "nothing written when one target is refused"


def test_a_deploy_into_the_folder_of_a_same_named_cluster_under_another_key_fails_and_makes_nothing(
        play, twins, other_key, test_ova, vm_names):
    before = vm_names()
    for check in (True, False):
        refused = play([deploy_task(CLUSTER, test_ova, count=2, request_id="clash", **OTHER_PLACEMENT)],
                       check=check).result
        assert refused["failed"]
        assert refused["msg"].startswith(
            f"cluster '{CLUSTER}' already exists in DC0/vm/{OTHER_FOLDER} under another key (VMs: {CLUSTER}-head, "
            f"{CLUSTER}-w0, {CLUSTER}-w1): pick another cluster name, or use that cluster's key"), refused["msg"]
    assert vm_names() == before, "nothing created, no template either"

    # Scaling each cluster in its own folder is fine, and alike names do not mix.
    for keyed in ({}, dict(OTHER_PLACEMENT, cluster_key_file=str(other_key))):
        scaled = play([deploy_task(CLUSTER, test_ova, count=1, request_id="more", **keyed)]).result
        assert (scaled["failed"], scaled["created"]) == (False, [f"{CLUSTER}-worker-more-0"]), scaled
    assert len(listed(play)["nodes"]) == len(listed(play, str(other_key))["nodes"]) == 4


def test_delete_by_request_id_spares_the_kept_uuids_and_takes_a_vm_whose_tagging_was_cut_short(
        play, twins, service_instance, test_ova, vcsim):
    """What the provider's janitor asks after a failed create of which Ray adopted one VM."""
    made = play([deploy_task(CLUSTER, test_ova, request_id="keep", count=2, power_on=False)]).result
    assert not made["failed"], made
    adopted, untagged = (f"{CLUSTER}-worker-keep-0", f"{CLUSTER}-worker-keep-1")
    admin = vcsim.endpoint.connect()
    fields = {field.name: field.key for field in admin.content.customFieldsManager.field}
    admin.content.customFieldsManager.SetField(entity=vsphere.find_by_name(admin, vim.VirtualMachine, untagged),
                                               key=fields[_records.CLUSTER_NAME], value="")
    vsphere.disconnect(admin)
    assert untagged not in names(listed(play)["nodes"]), "no longer listed as a node: what a cut-short tagging leaves"
    kept_uuid = uuids_by_folder(service_instance)["ray"][adopted]
    result = play([task("node_delete", cluster_name=CLUSTER, request_ids=["keep"], keep_uuids=[kept_uuid])]).result
    assert not result["failed"], result
    assert result["deleted"] == [untagged]
    in_folder = uuids_by_folder(service_instance)["ray"]
    assert adopted in in_folder and untagged not in in_folder, "counted at vcsim"
    assert play([task("node_delete", cluster_name=CLUSTER, names=[adopted])]).result["deleted"] == [adopted]


def test_delete_by_request_id_and_by_cluster_removes_only_the_keys_vms(play, twins, other_key, service_instance):
    by_request = play([task("node_delete", cluster_name=CLUSTER, request_ids=["more"])]).result
    assert by_request["deleted"] == [f"{CLUSTER}-worker-more-0"], by_request
    assert f"{CLUSTER}-worker-more-0" in names(listed(play, str(other_key))["nodes"])

    everything = play([task("node_delete", cluster_name=CLUSTER, all_nodes=True)]).result
    assert not everything["failed"], everything
    assert everything["deleted"] == [f"{CLUSTER}-head", f"{CLUSTER}-w0", f"{CLUSTER}-w1"]
    assert everything["unverified"] == [f"{CLUSTER}-head", f"{CLUSTER}-w0", f"{CLUSTER}-w1", f"{CLUSTER}-worker-more-0"]
    assert listed(play)["nodes"] == []
    survivors = listed(play, str(other_key))["nodes"]
    assert names(survivors) == [f"{CLUSTER}-head", f"{CLUSTER}-w0", f"{CLUSTER}-w1", f"{CLUSTER}-worker-more-0"]
    assert {n["uuid"] for n in survivors} == set(uuids_by_folder(service_instance)[OTHER_FOLDER].values())

    theirs = play([task("node_delete", cluster_name=CLUSTER, cluster_key_file=str(other_key), all_nodes=True)]).result
    assert len(theirs["deleted"]) == 4 and uuids_by_folder(service_instance) == {}


# ----- a forged head -----

FORGED = f"{CLUSTER}-head-forged"
FORGERS_FOLDER = "forgers-own"


@pytest.fixture(scope="module")
def forged_head(play, test_ova, vcsim):
    """The module key's cluster again (head only), plus a VM made outside the project in its folder, tagged as an
    up-to-date head and carrying the real head's identity value, creation marker and deploy settings."""
    settings = {"datacenter": "DC0", "vm_folder": "ray", "ovf": "real"}
    made = play([deploy_task(CLUSTER, test_ova, node_kind="head", names=[f"{CLUSTER}-head"],
                             deploy_settings=settings)]).result
    assert not made["failed"], made
    admin = vcsim.endpoint.connect()
    real = vsphere.find_by_name(admin, vim.VirtualMachine, f"{CLUSTER}-head")
    copied = {option.key: option.value for option in vsphere.read_properties(admin, real, ["config.extraConfig"])[
        "config.extraConfig"] if option.key.startswith("ray-vsphere.")}
    assert _records.CLUSTER_IDENTITY in copied
    copied[_records.DEPLOY_SETTINGS] = '{"ovf": "https://attacker.example.com/evil.ova"}'
    vm = import_ova(admin, test_ova, FORGED, **simulator.default_placement(admin), extra_config=copied)
    vsphere.wait_for_task(admin, vm.PowerOnVM_Task())
    inventory = _nodes.Inventory(admin)
    head_tags = {_records.CLUSTER_NAME: CLUSTER, _records.NODE_KIND: "head", _records.USER_NODE_TYPE: "head",
                 "ray-node-status": "up-to-date"}
    inventory.attributes.set(vm, FORGED, head_tags)
    # And a copy under the real head's very name in a folder of the forger's own, which a lookup without a
    # folder reads too: vCenter gives it its own instance UUID, so the copied identity does not verify.
    # (Imported under another name and renamed: vcsim names the datastore folder after the VM alone.)
    datacenter = vsphere.find_by_name(admin, vim.Datacenter, simulator.DATACENTER)
    own_folder = datacenter.vmFolder.CreateFolder(FORGERS_FOLDER)
    copy = import_ova(admin, test_ova, f"{FORGED}-copy", **dict(simulator.default_placement(admin), folder=own_folder),
                      extra_config=copied)
    vsphere.wait_for_task(admin, copy.Rename_Task(f"{CLUSTER}-head"))
    inventory.attributes.set(copy, f"{CLUSTER}-head", head_tags)
    yield settings
    vsphere.disconnect(admin)


def test_a_forged_head_is_not_listed_tagged_or_deleted(play, forged_head):
    heads = listed(play, node_kind="head")
    # Listed in all of vCenter: the same-named copy in the forger's folder shows too, as unverified.
    assert (names(heads["nodes"]), sorted(heads["unverified"])) == ([f"{CLUSTER}-head"], [f"{CLUSTER}-head", FORGED])
    for module, arguments in (("node_tags", dict(nodes=[{"name": FORGED, "tags": {"ray-node-status": "x"}}])),
                              ("node_delete", dict(names=[FORGED]))):
        refused = play([task(module, cluster_name=CLUSTER, **arguments)]).result
        assert refused["failed"] and f"{FORGED} (tagged ray-cluster-name={CLUSTER}, but without" in refused["msg"]


def test_the_providers_refresh_never_counts_the_forged_head(forged_head, cluster_key_file, test_ova, vcsim, tmp_path,
                                                           monkeypatch):
    for name, value in vcsim.endpoint.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(node_provider, "STATE_DIR", tmp_path / "state")
    provider = VsphereNodeProvider({
        "type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider", "ovf": str(test_ova),
        "datacenter": simulator.DATACENTER, "cluster": simulator.CLUSTERS[0], "vm_folder": simulator.VM_FOLDER,
        "datastore": simulator.DATASTORES[0], "ssh_private_key_file": str(cluster_key_file),
        "ssh_public_key_file": f"{cluster_key_file}.pub"}, CLUSTER)
    heads = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: "head"})
    assert [provider.cache.name(node_id) for node_id in heads] == [f"{CLUSTER}-head"]
    assert FORGED in {props.get("name") for props in provider._watch.vms.values()}, \
        "the refresh saw the forged head, and left it out"


def head_lookup(cluster_key_file, **where):
    """The playbooks' head lookup (the nodes role's recorded entry point), then its fact shown."""
    return [{"name": "Find the head", "ansible.builtin.include_role": {
                 "name": "ray_vsphere.cluster.nodes", "tasks_from": "recorded"},
             "vars": {"nodes_cluster_name": CLUSTER, "nodes_private_key": str(cluster_key_file), **where}},
            {"name": "Show", "ansible.builtin.debug": {"var": "nodes_recorded_settings"}}]


@pytest.mark.parametrize("where, missing", [({}, "datacenter, VM folder"),
                                            ({"nodes_datacenter": "DC0", "nodes_vm_folder": ""}, "VM folder"),
                                            ({"nodes_datacenter": "", "nodes_vm_folder": "ray"}, "datacenter")])
def test_the_head_lookup_refuses_to_run_without_the_clusters_folder(play, cluster_key_file, where, missing):
    """It read the whole datacenter, or all of vCenter, where a VM carrying a copy of the head's identity could be."""
    refused = play(head_lookup(cluster_key_file, **where), env={
        "VMWARE_HOST": "127.0.0.1", "VMWARE_PORT": "9", "VMWARE_USER": "nobody",
        "VMWARE_PASSWORD": "unused-password-4711"}).result  # nobody answers there: no vCenter call is made
    assert refused["failed"]
    assert refused["msg"].startswith(f"The head of Ray cluster {CLUSTER} is looked for in its VM folder only: set its "
                                     "datacenter"), refused["msg"]
    assert refused["msg"].endswith(f"(not set: {missing})"), refused["msg"]


def test_the_playbooks_head_lookup_never_takes_the_forged_head(play, forged_head, cluster_key_file, test_ova):
    lookup = head_lookup(cluster_key_file, nodes_datacenter="DC0", nodes_vm_folder="ray")
    found = play(lookup).result
    assert found["nodes_recorded_settings"] == forged_head, "the real head's record, never the forged one's"

    deleted = play([task("node_delete", cluster_name=CLUSTER, names=[f"{CLUSTER}-head"])]).result
    assert deleted["deleted"] == [f"{CLUSTER}-head"]
    alone = play(lookup).result
    assert alone["nodes_recorded_settings"] == {}, "with the real head gone, the forged one is still no head"

    # Nor can the head be deployed again beside it: a VM carrying the cluster's name without its identity is a
    # clash, which shows, rather than a node.
    blocked = play([deploy_task(CLUSTER, test_ova, node_kind="head", names=[f"{CLUSTER}-head"])]).result
    assert blocked["failed"] and blocked["unverified"] == [FORGED], blocked
