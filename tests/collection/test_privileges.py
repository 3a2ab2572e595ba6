"""Least privilege: the requirements file, playbooks/vcenter_prepare.yml, and modules that need no global privilege.

meta/vcenter_requirements.yml lists every vSphere method the project calls
with its privileges; vcsim's method trace (testbed/vcsim/trace.go) shows what
is actually called. The whole session fails on a traced method the file does
not list (tests/conftest.py); the test here checks one deploy-tag-list-delete
cycle on its own, so a run of this file alone checks it too.
"""

import pytest
import ray.autoscaler.tags as ray_tags
from pyVmomi import vim

from conftest import deploy_task, task
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records
from ray_provider.runner import run_playbook, task_results
from testbed import method_trace, privileges, simulator, vsphere


@pytest.fixture
def unprepared_vcsim(testbed_prerequisites, tmp_path):
    """A vCenter nobody ran vcenter_prepare.yml on, tracing its methods into a file of its own."""
    with simulator.Vcsim(prepared=False, trace_methods=tmp_path / "methods.jsonl") as sim:
        yield sim


def run_prepare(endpoint, run_dir, check=False, extravars=None):
    runner = run_playbook("ray_vsphere.cluster.vcenter_prepare", run_dir, extravars=extravars or {},
                          envvars=endpoint.environment(), cmdline="--check" if check else None, timeout=300)
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    return task_results(runner)


def vcenter_state(endpoint):
    service_instance = endpoint.connect()
    try:
        content = service_instance.content
        fields = sorted(field.name for field in content.customFieldsManager.field or []
                        if field.managedObjectType == vim.VirtualMachine)
        roles = {role.name: sorted(role.privilege) for role in content.authorizationManager.roleList}
        return fields, roles
    finally:
        service_instance.content.sessionManager.Logout()


def test_the_custom_attribute_list_holds_every_ray_tag_and_every_name_the_collection_writes():
    listed = set(privileges.custom_attributes())
    ray_tag_keys = {value for name, value in vars(ray_tags).items() if name.startswith("TAG_RAY_")}
    assert ray_tag_keys and ray_tag_keys <= listed, ray_tag_keys - listed
    assert {_records.CLUSTER_NAME, _records.NODE_KIND, _records.USER_NODE_TYPE, _records.TEMPLATE_HASH} <= listed


def test_every_method_cites_the_api_reference_and_names_where_each_privilege_is_checked():
    requirements = privileges.load()
    for method in requirements["methods"]:
        url = privileges.reference_url(method, requirements)
        assert url.startswith("https://developer.broadcom.com/xapis/") and url.endswith("/post"), url
        assert method["privileges"] and all(grant["privilege"] and grant["checked_on"] for grant in method["privileges"])
    assert "Global.ManageCustomFields" not in privileges.role_privileges()
    assert all(set(method["roles"]) <= set(requirements["account_roles"]) and method["roles"]
               for method in requirements["methods"])


def test_the_autoscaler_role_is_the_operators_without_what_only_an_import_needs():
    operator = set(privileges.role_privileges(privileges.OPERATOR))
    autoscaler = set(privileges.role_privileges(privileges.AUTOSCALER))
    assert autoscaler < operator
    assert operator - autoscaler == {"VApp.Import", "VirtualMachine.Inventory.Create",
                                     "VirtualMachine.Provisioning.MarkAsTemplate", "VirtualMachine.State.CreateSnapshot"}
    # What the head's autoscaler does: clone, reconfigure, power, tag, delete and watch its nodes.
    assert {("CloneVM_Task", "VirtualMachine"), ("ReconfigVM_Task", "VirtualMachine"), ("PowerOnVM_Task", "VirtualMachine"),
            ("SetField", "CustomFieldsManager"), ("Destroy_Task", "VirtualMachine"),
            ("WaitForUpdatesEx", "PropertyCollector")} <= privileges.role_methods(privileges.AUTOSCALER)
    assert ("ImportVApp", "ResourcePool") not in privileges.role_methods(privileges.AUTOSCALER)


def test_the_documented_privilege_section_is_generated_from_the_requirements_file():
    doc = privileges.PRIVILEGE_DOC.read_text()
    assert privileges.doc_with_table(doc) == doc, \
        f"{privileges.PRIVILEGE_DOC_FILE} is out of date: run .venv/bin/python -m testbed.privileges --write"


def test_modules_fail_naming_the_missing_definitions_and_the_prepare_playbook_before_creating_anything(
        play, unprepared_vcsim, test_ova):
    env = unprepared_vcsim.endpoint.environment()
    for check in (True, False):
        result = play([deploy_task("lp", test_ova, names=["lp-0"])], env=env, check=check).result
        assert result["failed"]
        assert ("vCenter has no custom attribute definition ray-cluster-name, ray-node-type, ray-vsphere-template "
                "(VirtualMachine), where Ray tags are kept. An administrator creates them once with the playbook "
                "ray_vsphere.cluster.vcenter_prepare (playbooks/vcenter_prepare.yml") in result["msg"], result["msg"]
        assert "Global.ManageCustomFields" in result["msg"]
    unprepared = unprepared_vcsim.endpoint.connect()
    try:
        names = [props["name"] for props in vsphere.objects_of_type(unprepared, vim.VirtualMachine, ["name"]).values()]
    finally:
        vsphere.disconnect(unprepared)
    assert not [name for name in names if name.startswith(("lp-", "ray-template-"))], names
    calls = method_trace.project_calls(method_trace.read(unprepared_vcsim.trace_methods))
    assert ("AddCustomFieldDef", "CustomFieldsManager") not in calls
    assert ("ImportVApp", "ResourcePool") not in calls


def test_vcenter_prepare_defines_the_attributes_and_the_role_once_and_check_mode_changes_nothing(
        unprepared_vcsim, tmp_path):
    endpoint = unprepared_vcsim.endpoint
    before = vcenter_state(endpoint)
    operator, autoscaler = privileges.role_name(privileges.OPERATOR), privileges.role_name(privileges.AUTOSCALER)
    assert before[0] == [] and operator not in before[1] and autoscaler not in before[1]
    checked = run_prepare(endpoint, tmp_path / "check", check=True)
    assert any(result.get("changed") for result in checked)
    assert vcenter_state(endpoint) == before

    made = run_prepare(endpoint, tmp_path / "run", extravars={"vcenter_prepare_extra_tag_keys": ["team"]})
    assert any(result.get("changed") for result in made)
    fields, roles = vcenter_state(endpoint)
    assert fields == sorted(privileges.custom_attributes() + ["team"])
    # Exactly the table's privileges; vcsim, as vCenter, adds the System ones and refuses unknown privilege ids.
    assert roles[operator] == sorted(privileges.role_privileges(privileges.OPERATOR) + list(privileges.SYSTEM_PRIVILEGES))
    assert roles[autoscaler] == sorted(privileges.role_privileges(privileges.AUTOSCALER)
                                       + list(privileges.SYSTEM_PRIVILEGES))

    again = run_prepare(endpoint, tmp_path / "again", extravars={"vcenter_prepare_extra_tag_keys": ["team"]})
    assert not any(result.get("changed") for result in again), again
    assert vcenter_state(endpoint) == (fields, roles)


PLACEMENT = {"vcenter_prepare_datacenter": simulator.DATACENTER, "vcenter_prepare_vm_folder": simulator.VM_FOLDER,
             "vcenter_prepare_cluster": simulator.CLUSTERS[0],
             "vcenter_prepare_resource_pool": "DC0_C0_RP1", "vcenter_prepare_datastore": simulator.DATASTORES[0],
             "vcenter_prepare_network": simulator.NETWORK}


def test_vcenter_prepare_grants_the_autoscaler_role_on_the_clusters_placement_only(unprepared_vcsim, tmp_path):
    endpoint = unprepared_vcsim.endpoint
    principal = "VSPHERE.LOCAL\\ray-autoscaler"
    failed = run_playbook("ray_vsphere.cluster.vcenter_prepare", tmp_path / "half", timeout=300,
                          extravars={"vcenter_prepare_autoscaler_principal": principal,
                                     "vcenter_prepare_datacenter": simulator.DATACENTER},
                          envvars=endpoint.environment())
    assert failed.status == "failed"
    assert "also set vcenter_prepare_datacenter, vcenter_prepare_vm_folder" in failed.stdout.read()

    grant = {"vcenter_prepare_autoscaler_principal": principal, **PLACEMENT}
    made = run_prepare(endpoint, tmp_path / "grant", extravars=grant)
    assert any(result.get("changed") for result in made)
    autoscaler = privileges.role_name(privileges.AUTOSCALER)
    # VM privileges on the folder only; on the pool, datastore and network a narrow role each, not propagating
    # (a VM inherits from its pool too); read-only on the datacenter and cluster.
    narrow = {key: role["name"] for key, role in privileges.load()["placement_roles"].items()}
    expected = {(vim.Datacenter, simulator.DATACENTER): ("ReadOnly", False),
                (vim.ClusterComputeResource, simulator.CLUSTERS[0]): ("ReadOnly", False),
                (vim.Folder, simulator.VM_FOLDER): (autoscaler, True),
                (vim.ResourcePool, "DC0_C0_RP1"): (narrow["pool"], False),
                (vim.Datastore, simulator.DATASTORES[0]): (narrow["datastore"], False),
                (vim.Network, simulator.NETWORK): (narrow["network"], False)}
    service_instance = endpoint.connect()
    try:
        manager = service_instance.content.authorizationManager
        role_names = {role.roleId: role.name for role in manager.roleList}
        for (kind, name), (role, propagate) in expected.items():
            entity = vsphere.find_by_name(service_instance, kind, name)
            granted = [(role_names[permission.roleId], permission.principal, permission.propagate)
                       for permission in manager.RetrieveEntityPermissions(entity, False)]
            assert granted == [(role, principal, propagate)], (kind, name, granted)
        # Nothing on the root folder or the other cluster's pool: the account reaches the cluster's placement only.
        assert not [permission for permission in manager.RetrieveEntityPermissions(service_instance.content.rootFolder, False)
                    if permission.principal == principal]
        roles = {role.name: sorted(role.privilege) for role in manager.roleList}
        for key, name in narrow.items():
            assert [privilege for privilege in roles[name] if not privilege.startswith("System.")] == [
                privilege for privilege in privileges.role_privileges(privileges.AUTOSCALER)
                if privilege.startswith(privileges.load()["placement_roles"][key]["privilege_group"] + ".")]
        # Above the other cluster's pool, only the datacenter's read-only grant, which does not propagate to it.
        other_pool = vsphere.find_by_name(service_instance, vim.ResourcePool, "DC0_C1_RP1")
        assert [(role_names[permission.roleId], permission.propagate)
                for permission in manager.RetrieveEntityPermissions(other_pool, True)
                if permission.principal == principal] == [("ReadOnly", False)]
    finally:
        vsphere.disconnect(service_instance)
    again = run_prepare(endpoint, tmp_path / "again", extravars=grant)
    assert not any(result.get("changed") for result in again), again
    # The check asks vCenter (HasUserPrivilegeOnEntities), not our table: a pool role that gives VM privileges fails it.
    wide = dict(privileges.load()["placement_roles"], pool={"name": "ray-vsphere-pool-too-wide",
                                                             "privilege_group": "VirtualMachine"})
    refused = run_playbook("ray_vsphere.cluster.vcenter_prepare", tmp_path / "wide", timeout=300,
                           extravars={**grant, "placement_roles": wide}, envvars=endpoint.environment())
    assert refused.status == "failed"
    output = refused.stdout.read()
    assert f"{principal} holds VirtualMachine.Config.AddNewDisk" in output and "on ResourcePool DC0_C0_RP1" in output, output


def test_after_prepare_a_deploy_tag_list_delete_cycle_calls_only_listed_methods_and_no_global_one(
        play, unprepared_vcsim, test_ova, tmp_path):
    endpoint = unprepared_vcsim.endpoint
    run_prepare(endpoint, tmp_path / "prepare")
    env = endpoint.environment()
    deployed = play([deploy_task("lp", test_ova, names=["lp-0"], power_on=False)], env=env).result
    assert not deployed.get("failed"), deployed
    tagged = play([task("node_tags", cluster_name="lp", nodes=[{"name": "lp-0", "tags": {"ray-node-status": "up-to-date"}}])],
                  env=env).result
    assert not tagged.get("failed"), tagged
    own_key = play([task("node_tags", cluster_name="lp", nodes=[{"name": "lp-0", "tags": {"team": "a"}}])], env=env).result
    assert own_key["failed"] and "no custom attribute definition team (VirtualMachine)" in own_key["msg"]
    assert "vcenter_prepare_extra_tag_keys" in own_key["msg"]
    listed = play([task("node_info", cluster_name="lp")], env=env).result
    assert [node["tags"]["ray-node-status"] for node in listed["nodes"]] == ["up-to-date"]
    deleted = play([task("node_delete", cluster_name="lp", all_nodes=True)], env=env).result
    assert deleted["deleted"] == ["lp-0"]

    calls = method_trace.project_calls(method_trace.read(unprepared_vcsim.trace_methods))
    for expected in (("ImportVApp", "ResourcePool"), ("CloneVM_Task", "VirtualMachine"), ("SetField", "CustomFieldsManager"),
                     ("Destroy_Task", "VirtualMachine"), ("CreateSnapshot_Task", "VirtualMachine")):
        assert expected in calls, sorted(calls)
    assert privileges.unlisted(calls) == []
    assert not [call for call in calls if call[0] in ("AddCustomFieldDef", "AddAuthorizationRole")]


def test_a_method_missing_from_the_table_is_reported():
    requirements = privileges.load()
    assert privileges.unlisted({("SetField", "CustomFieldsManager"), ("AddCustomFieldDef", "CustomFieldsManager"),
                                ("SetField", "VirtualMachine")}, requirements) == [
        ("AddCustomFieldDef", "CustomFieldsManager"), ("SetField", "VirtualMachine")]

