"""The testbed prepares vcsim by running playbooks/vcenter_prepare.yml, as an administrator prepares vCenter.

What a prepared vcsim holds beyond an unprepared one is compared with what the
playbook's recorded run made (testbed/prepare.py) and with the requirements
file; and a vcsim started with a changed copy of the playbook holds what the
copy makes, which no second implementation of the playbook would know of.
"""

import shutil

import pytest

from testbed import PROJECT_ROOT, prepare, privileges, simulator

PROBE = "testbed-probe"


@pytest.fixture(scope="module")
def unprepared_state(testbed_prerequisites):
    with simulator.Vcsim(prepared=False) as sim:
        service_instance = sim.endpoint.connect()
        try:
            yield prepare.vcenter_state(service_instance)
        finally:
            service_instance.content.sessionManager.Logout()


def held_beyond(sim, unprepared):
    service_instance = sim.endpoint.connect()
    try:
        return prepare.made(unprepared, prepare.vcenter_state(service_instance))
    finally:
        service_instance.content.sessionManager.Logout()


def test_a_prepared_vcsim_holds_what_the_prepare_playbooks_run_made_and_nothing_else(vcsim, unprepared_state):
    record = vcsim.prepare_record
    assert record["playbook"] == "playbooks/vcenter_prepare.yml"
    assert record["key"] == prepare.record_key(PROJECT_ROOT / record["playbook"], simulator.PREPARE_VARIABLES)
    assert record["extravars"] == simulator.PREPARE_VARIABLES
    assert held_beyond(vcsim, unprepared_state) == record["made"]
    # The run's own task results: each of its tasks that make something made it there.
    changed = {task["task"]: task["items"] for task in record["tasks"] if task["changed"]}
    assert changed["Define the custom attributes that hold Ray tags"] == privileges.custom_attributes()
    assert {privileges.role_name(privileges.OPERATOR), privileges.role_name(privileges.AUTOSCALER)} <= set(
        changed["Create the roles with the privileges their accounts use"])
    assert "Grant the autoscaler account what it needs where the cluster's nodes go" in changed
    # And what it made is what the requirements file asks for: the attributes, the two roles, the grants.
    made = record["made"]
    assert [name for name, _ in made["custom_fields"]] == privileges.custom_attributes()
    assert {name for _, managed_type in made["custom_fields"] for name in [managed_type]} == {"vim.VirtualMachine"}
    roles = dict(made["roles"])
    for role in (privileges.OPERATOR, privileges.AUTOSCALER):
        assert roles[privileges.role_name(role)] == privileges.role_privileges(role)
    folder = f"/{simulator.DATACENTER}/vm/{simulator.VM_FOLDER}"
    assert [folder, simulator.AUTOSCALER_PRINCIPAL, False, privileges.role_name(privileges.AUTOSCALER), True] \
        in made["permissions"]
    assert all(permission[1] == simulator.AUTOSCALER_PRINCIPAL for permission in made["permissions"])


def test_the_testbed_runs_the_playbook_it_is_pointed_at(testbed_prerequisites, unprepared_state, tmp_path,
                                                        monkeypatch):
    """A copy of the playbook that also defines PROBE: the vcsim the testbed starts has PROBE, from the copy's run."""
    copy = tmp_path / "checkout" / "playbooks" / "vcenter_prepare.yml"
    copy.parent.mkdir(parents=True)
    (tmp_path / "checkout" / "meta").mkdir()
    shutil.copy(prepare.REQUIREMENTS, tmp_path / "checkout" / "meta")
    text = prepare.PLAYBOOK.read_text()
    assert text.count("vcenter_prepare_extra_tag_keys: []") == 1
    copy.write_text(text.replace("vcenter_prepare_extra_tag_keys: []", f"vcenter_prepare_extra_tag_keys: [{PROBE}]"))
    monkeypatch.setattr(prepare, "PLAYBOOK", copy)
    monkeypatch.setattr(prepare, "RECORD_DIR", tmp_path / "records")
    with simulator.Vcsim() as sim:
        held = held_beyond(sim, unprepared_state)
        record = sim.prepare_record
    assert record["playbook"] == str(copy)
    assert [PROBE, "vim.VirtualMachine"] in held["custom_fields"]
    assert [name for name, _ in held["custom_fields"]] == privileges.custom_attributes() + [PROBE]
    assert held == record["made"]
    assert list((tmp_path / "records").glob("*.json")) == [tmp_path / "records" / f"{record['key']}.json"]
