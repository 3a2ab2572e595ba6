"""A clone whose wait timed out is cancelled, waited for and removed, though vCenter finished it after the timeout.

This module's vcsim runs every clone task for CLONE_SECONDS (its -method-delay
for the task, CloneVm), longer than the deploy's timeout, and finishes the
clone even when it is cancelled, as vCenter does when the cancel comes too
late (testbed/vcsim/cancel.go). The VMs are counted at vcsim afterwards, once
no clone task can still be running.
"""

import time

import pytest
from conftest import deploy_task, task
from pyVmomi import vim

from testbed import simulator, vsphere

CLONE_SECONDS = 3


@pytest.fixture(scope="module")
def vcsim(testbed_prerequisites):
    with simulator.Vcsim(method_delay={"CloneVm": CLONE_SECONDS * 1000}) as sim:
        yield sim


def vms_at_vcsim(service_instance):
    return sorted(props["name"] for props in vsphere.objects_of_type(
        service_instance, vim.VirtualMachine, ["name"]).values())


def test_a_clone_finished_after_its_wait_timed_out_is_removed(play, test_ova, service_instance):
    # The template first, with time enough for its clone.
    made = play([deploy_task("slow", test_ova, names=["slow-0"], power_on=False)]).result
    assert not made["failed"], made["msg"]
    play([task("node_delete", cluster_name="slow", all_nodes=True)])
    started = time.monotonic()
    result = play([deploy_task("late", test_ova, names=["late-0", "late-1"], power_on=False, timeout=1)]).result
    assert result["failed"]
    assert f"CloneVM_Task of {made['image']['template']} to late-0 still running" in result["msg"]
    assert "after 1 s" in result["msg"]
    assert "removed the VMs this call created: late-0, late-1" in result["msg"]
    # Every clone task the deploy started has ended by now, so a clone left behind would show.
    time.sleep(max(0.0, started + 2 * CLONE_SECONDS + 1 - time.monotonic()))
    assert not [name for name in vms_at_vcsim(service_instance) if name.startswith("late-")]
