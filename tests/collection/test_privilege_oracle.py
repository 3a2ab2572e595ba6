"""The privilege oracle: VMware's "Required privileges" (testbed/vsphere_method_privileges.yml) against our roles.

meta/vcenter_requirements.yml says which privileges each method needs and
makes the roles from that; the oracle is transcribed from VMware's API
reference and checked here against pyVmomi's own type info. vcsim enforces the
oracle, not our table, so a role short of what VMware documents is refused on
the testbed as on vCenter, and the table is compared with the oracle entry by
entry. The mutations below show that a wrong entry fails both.
"""

import copy

import pytest
from pyVmomi import vim, vmodl

from conftest import deploy_task
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _image_hash_cache, _ovf_package
from testbed import privileges, simulator, vsphere
from testbed.ova_import import import_ova

# pyVmomi's single-property read: a method of pyVmomi's stub, not of a vSphere type.
PYVMOMI_ACCESSORS = {("Fetch", "PropertyCollector")}
MANAGED_TYPES = {"PropertyCollector": vmodl.query.PropertyCollector}


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    """The module's vcsim (the `play` fixture's) enforces the oracle for the autoscaler account."""
    with simulator.Vcsim(enforce_permissions=True) as sim:
        yield sim


def method_info(entry):
    managed_type = MANAGED_TYPES.get(entry["type"]) or getattr(vim, entry["type"])
    return {info.wsdlName: info for info in managed_type._GetMethodList()}[entry["method"]]


def without(requirements, method, privilege):
    """A copy of the requirements file whose entry for method does not list privilege."""
    mutated = copy.deepcopy(requirements)
    entry = next(item for item in mutated["methods"] if item["method"] == method)
    entry["privileges"] = [grant for grant in entry["privileges"] if grant["privilege"] != privilege]
    return mutated


def test_the_oracle_agrees_with_pyvmomis_type_info_wherever_it_names_a_privilege():
    typed, parameters = [], []
    for entry in privileges.load_oracle()["methods"]:
        if (entry["method"], entry["type"]) in PYVMOMI_ACCESSORS:
            assert entry["pyvmomi"] is None
            continue
        info = method_info(entry)
        assert info.privId == entry["pyvmomi"], (entry["method"], info.privId)
        if info.privId is not None:
            typed.append(entry["method"])
            assert info.privId in {grant["privilege"] for grant in entry["privileges"]}, entry["method"]
        by_parameter = {(grant["parameter"], grant["privilege"]) for grant in entry["privileges"] if grant.get("parameter")}
        for parameter in info.params:
            if getattr(parameter, "privId", None):
                parameters.append(f"{entry['method']}.{parameter.name}")
                assert (parameter.name, parameter.privId) in by_parameter, (entry["method"], parameter.name)
        assert {name for name, _ in by_parameter} <= {parameter.name for parameter in info.params}, entry["method"]
    # pyVmomi types these; the rest (Clone, Reconfigure, Destroy, CancelTask, SetField...) come from the reference.
    assert len(typed) >= 20 and {"PowerOnVM_Task", "ImportVApp", "CreateSnapshot_Task"} <= set(typed), typed
    assert {"CreateImportSpec.resourcePool", "CreateImportSpec.datastore", "ImportVApp.folder",
            "SetField.entity"} <= set(parameters), parameters


def test_every_oracle_entry_cites_its_page_and_names_where_each_privilege_is_checked():
    vocabulary = set(privileges.ENFORCED_ON) | {"session", "each_object_read", "container_argument",
                                                "import_datastores", "import_networks"}
    for entry in privileges.load_oracle()["methods"]:
        assert entry["page"].startswith(("https://yavijava.github.io/docs/v",  # the 6.0 reference
                                         "https://developer.broadcom.com/xapis/vsphere-web-services-api/")  # newer methods
                                        ) and "#" in entry["page"], entry
        for grant in entry["privileges"]:
            assert grant["object"] in vocabulary, (entry["method"], grant)
            assert grant.get("page", entry["page"]).startswith("https://"), grant


def test_vcsim_enforces_the_oracle_not_the_requirements_file():
    rules = privileges.enforced_privileges()
    assert rules == privileges.enforced_privileges(privileges.load_oracle())
    assert {"privilege": "VirtualMachine.Interact.PowerOn", "on": "this"} in rules["PowerOnVM_Task"]
    assert {"privilege": "VirtualMachine.Config.AdvancedConfig", "on": "this", "when": "spec.extraConfig"} \
        in rules["ReconfigVM_Task"]
    assert {"privilege": "VirtualMachine.Inventory.Delete", "on": "parent"} in rules["Destroy_Task"]
    assert not [rule for method in rules.values() for rule in method if rule["privilege"].startswith("System.")]
    # A privilege dropped from the oracle is no longer enforced; one dropped from the table still is.
    oracle = privileges.load_oracle()
    next(entry for entry in oracle["methods"] if entry["method"] == "PowerOnVM_Task")["privileges"] = []
    assert "PowerOnVM_Task" not in privileges.enforced_privileges(oracle)


def test_the_requirements_file_gives_every_caller_what_vmware_documents():
    found = privileges.disagreements()
    assert not found, "\n".join([f"{privileges.REQUIREMENTS_FILE} disagrees with {privileges.ORACLE_FILE}:"] + found)
    listed = {(entry["method"], entry["type"]) for entry in privileges.load()["methods"]}
    assert listed <= {(entry["method"], entry["type"]) for entry in privileges.load_oracle()["methods"]}


def test_a_wrong_entry_in_the_requirements_file_is_reported_naming_the_method_and_the_privilege():
    requirements = privileges.load()
    page = "https://yavijava.github.io/docs/vim.VirtualMachine.html#powerOn"
    assert privileges.disagreements(without(requirements, "PowerOnVM_Task", "VirtualMachine.Interact.PowerOn")) == [
        f"VirtualMachine.PowerOnVM_Task: meta/vcenter_requirements.yml does not list VirtualMachine.Interact.PowerOn "
        f"(on this, which {page} requires)",
        f"VirtualMachine.PowerOnVM_Task: the operator role lacks VirtualMachine.Interact.PowerOn (on this, which "
        f"{page} requires)",
        f"VirtualMachine.PowerOnVM_Task: the autoscaler role lacks VirtualMachine.Interact.PowerOn (on this, which "
        f"{page} requires)"]
    # Still in the roles through another method, missing from this entry: reported all the same.
    assert privileges.disagreements(without(requirements, "ReconfigVM_Task", "VirtualMachine.Config.AdvancedConfig")) == [
        "VirtualMachine.ReconfigVM_Task: meta/vcenter_requirements.yml does not list "
        "VirtualMachine.Config.AdvancedConfig (on this when spec.extraConfig is set, which "
        "https://yavijava.github.io/docs/vim.VirtualMachine.html#reconfigure requires)"]
    # A condition of the spec: what a clone's NIC edit needs.
    dropped = privileges.disagreements(without(requirements, "CloneVM_Task", "VirtualMachine.Interact.DeviceConnection"))
    assert [line.split(" (")[0] for line in dropped] == [
        "VirtualMachine.CloneVM_Task: meta/vcenter_requirements.yml does not list VirtualMachine.Interact.DeviceConnection",
        "VirtualMachine.CloneVM_Task: the operator role lacks VirtualMachine.Interact.DeviceConnection",
        "VirtualMachine.CloneVM_Task: the autoscaler role lacks VirtualMachine.Interact.DeviceConnection"]
    # A privilege the reference does not ask for, and a method nobody transcribed.
    extra = copy.deepcopy(requirements)
    power_off = next(item for item in extra["methods"] if item["method"] == "PowerOffVM_Task")
    power_off["privileges"].append({"privilege": "VirtualMachine.Interact.Reset", "checked_on": "the node"})
    extra["methods"].append({"method": "RelocateVM_Task", "type": "VirtualMachine", "privileges": [],
                             "called_by": "nobody", "roles": ["operator"]})
    assert privileges.disagreements(extra) == [
        "VirtualMachine.PowerOffVM_Task: meta/vcenter_requirements.yml lists VirtualMachine.Interact.Reset, which "
        "https://yavijava.github.io/docs/vim.VirtualMachine.html#powerOff does not require",
        "VirtualMachine.RelocateVM_Task: not in testbed/vsphere_method_privileges.yml; transcribe its Required "
        "privileges there"]


def set_autoscaler_role(sim, requirements):
    """Remake the autoscaler role, as vcenter_prepare.yml would from this requirements file."""
    admin = sim.endpoint.connect()
    try:
        manager = admin.content.authorizationManager
        name = privileges.role_name(privileges.AUTOSCALER)
        role = next(role for role in manager.roleList if role.name == name)
        manager.UpdateAuthorizationRole(role.roleId, name, privileges.role_privileges(privileges.AUTOSCALER, requirements))
    finally:
        vsphere.disconnect(admin)


def test_vcsim_refuses_a_role_made_from_a_mutated_requirements_file(vcsim, test_ova):
    mutated = without(privileges.load(), "PowerOnVM_Task", "VirtualMachine.Interact.PowerOn")
    admin = vcsim.endpoint.connect()
    head = vsphere.connect(vcsim.endpoint.host, vcsim.endpoint.port, vcsim.autoscaler_username,
                           vcsim.autoscaler_password, vcsim.endpoint.ca_path)
    try:
        vm = import_ova(admin, test_ova, "oracle-power", **simulator.default_placement(admin))
        vm_as_head = vim.VirtualMachine(vm._moId, head._stub)
        set_autoscaler_role(vcsim, mutated)
        with pytest.raises(vim.fault.NoPermission) as refused:
            vm_as_head.PowerOnVM_Task()
        assert (refused.value.privilegeId, refused.value.object._moId) == ("VirtualMachine.Interact.PowerOn", vm._moId)
        set_autoscaler_role(vcsim, privileges.load())
        vsphere.wait_for_task(head, vm_as_head.PowerOnVM_Task())
        vsphere.wait_for_task(head, vm_as_head.PowerOffVM_Task())
        vsphere.wait_for_task(head, vm_as_head.Destroy_Task())
    finally:
        set_autoscaler_role(vcsim, privileges.load())
        vsphere.disconnect(head)
        vsphere.disconnect(admin)


def test_the_autoscaler_role_deploys_a_node_with_what_vmware_documents_and_no_less(play, vcsim, test_ova):
    """node_deploy, as a head's account, clones with NIC, extraConfig, CPU and memory edits under the oracle."""
    as_head = dict(vcsim.endpoint.environment(), VMWARE_USER=vcsim.autoscaler_username,
                   VMWARE_PASSWORD=vcsim.autoscaler_password)
    sized = dict(power_on=False, cpus=2, memory_mb=1024)
    made = play([deploy_task("oracle", test_ova, names=["oracle-0"], **sized)]).result
    assert not made.get("failed"), made
    # As the provider gives the head its image: by hash, so that it finds the template and never imports.
    with _ovf_package.OvfPackage(str(test_ova), hash_cache=_image_hash_cache.HashCache()) as package:
        sized.update(names=["oracle-0", "oracle-1"], ovf_sha256=package.key()[len(_ovf_package.SHA256_KEY):])
    short = privileges.load()
    clone = next(item for item in short["methods"] if item["method"] == "CloneVM_Task")
    clone["privileges"] = [grant for grant in clone["privileges"]
                           if grant["privilege"] != "VirtualMachine.Interact.DeviceConnection"]
    set_autoscaler_role(vcsim, short)
    try:
        refused = play([deploy_task("oracle", test_ova, **sized)], env=as_head).result
    finally:
        set_autoscaler_role(vcsim, privileges.load())
    assert refused["failed"] and "VirtualMachine.Interact.DeviceConnection" in refused["msg"], refused
    deployed = play([deploy_task("oracle", test_ova, **sized)], env=as_head).result
    assert not deployed.get("failed"), deployed["msg"]
    assert deployed["created"] == ["oracle-1"]
    admin = vcsim.endpoint.connect()
    try:
        names = sorted(props["name"] for props in vsphere.objects_of_type(admin, vim.VirtualMachine, ["name"]).values()
                       if props["name"].startswith("oracle-"))
    finally:
        vsphere.disconnect(admin)
    assert names == ["oracle-0", "oracle-1"]
