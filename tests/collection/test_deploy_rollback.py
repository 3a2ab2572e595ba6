"""Every step of a deploy fails once, and vCenter is left with none of the call's VMs.

One vcsim serves every case: each step's fault (testbed/vcsim/faults.go) is
aimed at the names of its own case, so cases do not touch each other. The
VMs are counted at vcsim, with a fresh PropertyCollector read of every VM by
name, never from what the deploy says it made. Steps of the template (import,
snapshot, reconfigure, mark as template) each get an image of their own, so
a template of their own.
"""

import hashlib
import shutil
import socket

import pytest
from conftest import deploy_task, in_process_client, module_params, task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _build, _clone
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import TemplateIdentity
from testbed import simulator, vsphere

TEMPLATE_STEPS = ("snapshot", "template-reconfigure", "mark-as-template")
# Images of their own for cases that are no failing step.
OTHER_IMAGES = ("snapshot-reply-lost",)
STALL_SECONDS = 6


@pytest.fixture(scope="module")
def images(test_ova, tmp_path_factory, cluster_key_file):
    """{step: (OVA path, its template's name)} for the template steps: the test OVA plus zero blocks, one more each."""
    identity = TemplateIdentity.from_file(cluster_key_file)
    folder = tmp_path_factory.mktemp("variants")
    made = {}
    for blocks, step in enumerate(TEMPLATE_STEPS + OTHER_IMAGES, start=2):
        variant = folder / f"{step}.ova"
        shutil.copyfile(test_ova, variant)
        with open(variant, "ab") as archive:
            archive.write(b"\0" * 512 * blocks)
        made[step] = (variant, identity.name(hashlib.sha256(variant.read_bytes()).hexdigest()))
    return made


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites, images):
    faults = [
        ("fail", "ImportVApp", r"^rb-import-1$"),
        ("fail", "HttpNfcLeaseComplete", r"^rb-upload-complete-1$"),
        ("fail", "CreateSnapshot_Task", f"^{images['snapshot'][1]}$"),
        ("fail", "ReconfigVM_Task+extraConfig", f"^{images['template-reconfigure'][1]}$"),
        ("fail", "MarkAsTemplate", f"^{images['mark-as-template'][1]}$"),
        ("fail", "CloneVM_Task", r"^rb-clone-1$"),
        ("fail", "ReconfigVM_Task+vAppConfig", r"^rb-properties-1$"),
        ("fail", "PowerOnVM_Task", r"^rb-power-1$"),
        ("fail", "WaitForUpdatesEx", r"^rb-ip-fault-1$"),
        ("stall", "PowerOnVM_Task", r"^rb-timeout-1$"),
        ("fail", "PowerOnVM_Task", r"^rb-undo-1$"),
        ("fail", "Destroy_Task", r"^rb-undo-1$"),
        ("drop-reply", "CloneVM_Task", r"^rb-dropped-0$"),
        ("drop-reply", "CreateSnapshot_Task", f"^{images['snapshot-reply-lost'][1]}$"),
    ]
    with simulator.Vcsim(faults=faults, stall_seconds=STALL_SECONDS) as sim:
        yield sim


def vms_at_vcsim(service_instance):
    """The name of every VM (templates included) vcsim holds now, read afresh."""
    return sorted(props["name"] for props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name"]).values())


def finished_templates(service_instance):
    return {props["name"] for props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name", "config.template"]).values() if props.get("config.template")}


# step: (options of a two-node deploy of cluster rb-<step>, the text its error must hold)
STEPS = {
    "import": (dict(clone_from_template=False),
               "ResourcePool.ImportVApp of VM rb-import-1 failed: SystemError: fault injected by vcsim -fail ImportVApp"),
    "upload-complete": (dict(clone_from_template=False),
                        "HttpNfcLease.HttpNfcLeaseComplete for VM rb-upload-complete-1 failed: SystemError"),
    "snapshot": ({}, "CreateSnapshot_Task on template {template} failed: SystemError"),
    "template-reconfigure": ({}, "ReconfigVM_Task (maker removed, identity recorded) on template {template} failed: "
                                 "SystemError"),
    "mark-as-template": ({}, "VirtualMachine.MarkAsTemplate of {template} failed: SystemError"),
    "clone": ({}, "CloneVM_Task of {template} to rb-clone-1 failed: SystemError: fault injected by vcsim -fail "
                  "CloneVM_Task for rb-clone-1"),
    "properties": ({}, "ReconfigVM_Task (OVF properties) on VM rb-properties-1 failed: SystemError"),
    "power": ({}, "PowerOnVM_Task on VM rb-power-1 failed: SystemError"),
    "ip-fault": (dict(wait_for_ip=True, ip_timeout=60),
                 "PropertyCollector.WaitForUpdatesEx (guest.net, guest.ipAddress, guest.toolsRunningStatus, guest.toolsStatus) "
                 "failed: SystemError"),
    "ip-never": (dict(wait_for_ip=True, ip_timeout=3, ignored_cidrs=["0.0.0.0/0", "::/0"]),
                 "no usable IP after 3 s"),
    "timeout": (dict(request_timeout=2),
                "PowerOnVM_Task on VM rb-timeout-1 failed: vCenter did not answer within 2 s (request_timeout"),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_each_step_failing_leaves_none_of_the_calls_vms(step, play, test_ova, images, service_instance):
    options, expected = STEPS[step]
    ova, template = images.get(step, (test_ova, None))
    before = vms_at_vcsim(service_instance)
    result = play([deploy_task(f"rb-{step}", ova, names=[f"rb-{step}-0", f"rb-{step}-1"], **options)]).result
    assert result["failed"], result
    if template is None and "{template}" in expected:
        template = next(
            name for name in vms_at_vcsim(service_instance) if name.startswith("ray-template-"))
    assert expected.format(template=template) in result["msg"]
    after = vms_at_vcsim(service_instance)
    assert not [name for name in after if name.startswith(f"rb-{step}-")], after
    # Only a finished template may stay: later deploys of the image reuse it.
    assert set(after) - set(before) <= finished_templates(service_instance)
    if step in TEMPLATE_STEPS:
        assert template not in after
    assert "could NOT remove" not in result["msg"]
    assert result["undo_failures"] == []


def test_the_made_nodes_were_removed_and_the_message_says_so(play, test_ova, service_instance):
    # The other node of a failing deploy was really made, then removed: the error says which.
    result = play([deploy_task("rb-power", test_ova, names=["rb-power-0", "rb-power-1"])]).result
    assert result["failed"]
    assert "removed the VMs this call created: rb-power-0, rb-power-1" in result["msg"]
    assert result["removed"] == ["rb-power-0", "rb-power-1"]
    assert not [name for name in vms_at_vcsim(service_instance) if name.startswith("rb-power-")]


def test_an_undo_that_fails_is_reported_beside_the_error_and_never_claimed(play, test_ova, service_instance):
    result = play([deploy_task("rb-undo", test_ova, names=["rb-undo-0", "rb-undo-1"])]).result
    assert result["failed"]
    message = result["msg"]
    # The error is still the power-on's; the undo's failure comes beside it, and only rb-undo-0 is said removed.
    assert message.startswith("powering on nodes of Ray cluster rb-undo failed: PowerOnVM_Task on VM rb-undo-1 failed")
    assert "removed the VMs this call created: rb-undo-0;" in message
    assert "could NOT remove, remove by hand: rb-undo-1: " in message
    assert "removing VM rb-undo-1 failed: SystemError: fault injected by vcsim -fail Destroy_Task for rb-undo-1" \
        in message
    assert result["removed"] == ["rb-undo-0"]
    assert [failure.split(":")[0] for failure in result["undo_failures"]] == ["rb-undo-1"]
    left = [name for name in vms_at_vcsim(service_instance) if name.startswith("rb-undo-")]
    assert left == ["rb-undo-1"]
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, "rb-undo-1")
    vsphere.wait_for_task(service_instance, vm.Rename_Task("rb-undone-1"))  # out of the fault's reach
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())


def test_a_clone_whose_reply_was_lost_is_not_sent_again(play, test_ova, service_instance):
    """vcsim makes the clone, then closes the connection unanswered: the deploy finds the clone's task."""
    result = play([deploy_task("rb-dropped", test_ova, names=["rb-dropped-0"], power_on=False)]).result
    assert not result["failed"], result["msg"]
    assert result["created"] == ["rb-dropped-0"]
    assert [name for name in vms_at_vcsim(service_instance) if name.startswith("rb-dropped-")] == ["rb-dropped-0"]
    play([task("node_delete", cluster_name="rb-dropped", all_nodes=True)])


def snapshots(tree):
    return [snapshot for node in tree or [] for snapshot in [node.name] + snapshots(node.childSnapshotList)]


def test_a_snapshot_whose_reply_was_lost_is_not_taken_twice(play, images, service_instance):
    ova, template = images["snapshot-reply-lost"]
    result = play([deploy_task("rb-snapshot", ova, names=["rb-snapshot-0"], power_on=False)]).result
    assert not result["failed"], result["msg"]
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, template)
    tree = vsphere.read_properties(service_instance, vm, ["snapshot"])["snapshot"].rootSnapshotList
    assert snapshots(tree) == ["ray-linked-clone-base"]
    play([task("node_delete", cluster_name="rb-snapshot", all_nodes=True)])



@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, socket.timeout],
                         ids=["KeyboardInterrupt", "SystemExit", "socket.timeout"])
def test_any_exception_type_undoes_the_call(stop, vcsim, test_ova, cluster_key_file, service_instance, monkeypatch,
                                           tmp_path):
    cluster = f"rb-stop-{stop.__name__.lower().replace('.', '-')}"
    names = [f"{cluster}-{index}" for index in range(3)]
    real = _clone._set_properties

    def stopping(service_instance, template_name, vm, name, values):
        real(service_instance, template_name, vm, name, values)
        if name == names[1]:
            raise stop("stopped while setting the properties of %s" % name)

    monkeypatch.setattr(_clone, "_set_properties", stopping)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    params = module_params(vcsim, cluster_key_file, cluster_name=cluster, ovf=str(test_ova), names=names)
    with in_process_client(vcsim) as client:
        with pytest.raises(BaseException) as raised:
            _build.deploy(client, params, False, ClusterKey.from_file(str(cluster_key_file), cluster))
    if stop is socket.timeout:
        # Named, with the timeout as its cause, and the report of what was removed.
        assert "deploying nodes of Ray cluster %s failed" % cluster in str(raised.value)
        assert isinstance(raised.value.__cause__, socket.timeout)
        assert "removed the VMs this call created: %s" % ", ".join(names) in str(raised.value)
    else:
        assert raised.type is stop  # never replaced
    assert not [name for name in vms_at_vcsim(service_instance) if name.startswith(cluster)]
