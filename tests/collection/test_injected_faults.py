"""Failures vCenter makes in the middle of a deploy, injected by vcsim (testbed/vcsim/faults.go).

This module's vcsim fails the clone to any name ending in `-2`, and the
completion (HttpNfcLeaseComplete) of the import of a VM named `eta-*` or of
the template of `variant_ova`: after ImportVApp made the VM and its disk was
uploaded. Whatever the call made is removed, and nothing else.
"""

import hashlib
import shutil

import pytest
from conftest import deploy_task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import TemplateIdentity
from testbed import simulator, vsphere


@pytest.fixture(scope="module")
def variant_ova(test_ova, tmp_path_factory):
    """The test OVA with two more zero blocks at its end (still a valid tar): another content hash, another template."""
    variant = tmp_path_factory.mktemp("variant") / "variant.ova"
    shutil.copyfile(test_ova, variant)
    with open(variant, "ab") as archive:
        archive.write(b"\0" * 1024)
    return variant


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites, variant_ova, cluster_key_file):
    variant_template = TemplateIdentity.from_file(cluster_key_file).name(hashlib.sha256(variant_ova.read_bytes()).hexdigest())
    with simulator.Vcsim(fail_clone=r"-2$", fail_import=rf"^(eta-.*|{variant_template})$") as sim:
        sim.variant_template = variant_template
        yield sim


def templates(service_instance):
    return {props["name"]: props["config.template"] for props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name", "config.template"]).values()
        if props["name"].startswith("ray-template-")}


def test_one_clone_out_of_four_failing_undoes_all_four(play, test_ova, service_instance, vm_names):
    before = vm_names()
    result = play([deploy_task("zeta", test_ova, count=4, request_id="fail", node_type="cpu", parallel=4)]).result
    assert result["failed"]
    assert "to zeta-cpu-fail-2 failed: SystemError: fault injected by vcsim -fail-clone for zeta-cpu-fail-2" \
        in result["msg"]
    # The other three clones were made (the fault is for one name only), then removed with it;
    # only the template, which later deploys reuse, stays.
    after = vm_names()
    assert not [name for name in after if name.startswith("zeta-")]
    made = set(after) - set(before)
    assert made and all(name.startswith("ray-template-") for name in made)
    assert all(templates(service_instance)[name] for name in made)


def tasks_since(service_instance, known, kinds=()):
    """{task: {path: value}} of vcsim's recent tasks not in known (moids), read at vcsim; for tasks whose
    descriptionId names one of kinds, their entity and result too."""
    recent = vsphere.read_properties(service_instance, service_instance.content.taskManager, ["recentTask"])
    found = {}
    for task in recent.get("recentTask", []):
        if task._moId in known:
            continue
        props = vsphere.read_properties(service_instance, task, ["info.descriptionId", "info.state"])
        if any(kind in props["info.descriptionId"].lower() for kind in kinds):
            props.update(vsphere.read_properties(service_instance, task, ["info.entity", "info.result"]))
        found[task._moId] = props
    return found


def test_the_other_clones_of_that_deploy_were_really_made_before_the_undo(play, test_ova, service_instance,
                                                                          vm_names):
    # That very deploy again (its template is there now): vcsim's own task list shows three clones
    # made from the template and each of those three VMs destroyed, so the undo removed real clones.
    known = set(tasks_since(service_instance, set()))
    result = play([deploy_task("zeta", test_ova, count=4, request_id="fail", node_type="cpu", parallel=4)]).result
    assert result["failed"]
    assert "to zeta-cpu-fail-2 failed: SystemError" in result["msg"]
    tasks = tasks_since(service_instance, known, kinds=("clone", "destroy")).values()
    succeeded = [props for props in tasks if props["info.state"] == vim.TaskInfo.State.success]
    cloned = [props["info.result"]._moId for props in succeeded if "clone" in props["info.descriptionId"].lower()]
    destroyed = {props["info.entity"]._moId for props in succeeded if "destroy" in props["info.descriptionId"].lower()}
    assert len(cloned) == 3
    assert set(cloned) <= destroyed
    assert not [name for name in vm_names() if name.startswith("zeta-")]


def test_a_failure_after_import_vapp_removes_the_half_made_node(play, test_ova, vm_names):
    before = vm_names()
    result = play([deploy_task("eta", test_ova, names=["eta-0", "eta-1"], clone_from_template=False)]).result
    assert result["failed"]
    assert "HttpNfcLease.HttpNfcLeaseComplete for VM eta-0 failed: SystemError: fault injected by vcsim " \
           "-fail-import for eta-0" in result["msg"]
    assert vm_names() == before


def test_a_failure_after_import_vapp_removes_the_half_made_template(play, variant_ova, vcsim, service_instance,
                                                                    vm_names):
    before = vm_names()
    result = play([deploy_task("theta", variant_ova, names=["theta-0"])]).result
    assert result["failed"]
    assert f"HttpNfcLease.HttpNfcLeaseComplete for VM {vcsim.variant_template} failed" in result["msg"]
    assert vm_names() == before
    assert vcsim.variant_template not in templates(service_instance)
