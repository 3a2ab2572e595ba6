"""node_power's stop: ShutdownGuest first, PowerOffVM_Task when Tools refuses or the guest is not off in time.

vcsim's ShutdownGuest always powers the VM off at once (govmomi simulator/virtual_machine.go), so the fallbacks
are driven here by a VM that answers as vCenter does in each case: ToolsUnavailable without Tools running, a
guest still on after the wait.
"""

import pytest
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _node_power, _waiter
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError


class Vm:
    """A VM whose guest shuts down, or not, and whose Tools take the request, or not; its calls in order."""

    def __init__(self, shutdown_fault=None, guest_shuts_down=True):
        self.shutdown_fault, self.guest_shuts_down = shutdown_fault, guest_shuts_down
        self.power_state = "poweredOn"
        self.calls = []

    def ShutdownGuest(self):
        self.calls.append("ShutdownGuest")
        if self.shutdown_fault:
            raise self.shutdown_fault
        if self.guest_shuts_down:
            self.power_state = "poweredOff"

    def PowerOffVM_Task(self):
        self.calls.append("PowerOffVM_Task")
        self.power_state = "poweredOff"


@pytest.fixture
def vcenter(monkeypatch):
    """_waiter's task and update waits over the Vm: the wait's timeout is what the stop asked for."""
    waits = []

    def wait_for_updates(service_instance, objects, managed_type, paths, waiting, timeout, on_timeout):
        (vm,) = objects
        waits.append(timeout)
        seen = {vm: {"runtime.powerState": vm.power_state}}
        if waiting(seen):
            raise RayVsphereError(on_timeout(seen, [vm]), fault="Timeout")
        return seen

    def run_task(service_instance, action, call, timeout=3600):
        waits.append(action)
        return call()

    monkeypatch.setattr(_waiter, "wait_for_updates", wait_for_updates)
    monkeypatch.setattr(_waiter, "run_task", run_task)
    return waits


def test_a_guest_that_shuts_down_is_never_powered_off(vcenter):
    vm = Vm()
    _node_power.shut_down(None, vm, "w0", 60)
    assert vm.calls == ["ShutdownGuest"] and vm.power_state == "poweredOff"
    assert vcenter == [60]


def test_without_tools_the_vm_is_powered_off_at_once_and_the_action_says_why(vcenter):
    vm = Vm(shutdown_fault=vim.fault.ToolsUnavailable())
    _node_power.shut_down(None, vm, "w0", 60)
    assert vm.calls == ["ShutdownGuest", "PowerOffVM_Task"] and vm.power_state == "poweredOff"
    assert vcenter == ["PowerOffVM_Task on VM w0 (ShutdownGuest refused: ToolsUnavailable)"], "no wait first"


def test_a_guest_still_on_after_the_wait_is_powered_off(vcenter):
    vm = Vm(guest_shuts_down=False)
    _node_power.shut_down(None, vm, "w0", 30)
    assert vm.calls == ["ShutdownGuest", "PowerOffVM_Task"] and vm.power_state == "poweredOff"
    assert vcenter == [30, "PowerOffVM_Task on VM w0 (the guest did not shut down in 30 s)"]


def test_a_vm_already_off_is_left_alone(vcenter):
    vm = Vm(shutdown_fault=vim.fault.InvalidPowerState())
    _node_power.shut_down(None, vm, "w0", 60)
    assert vm.calls == ["ShutdownGuest"] and vcenter == []


def test_any_other_fault_names_the_call_and_chains_its_cause(vcenter):
    fault = vim.fault.NoPermission(privilegeId="VirtualMachine.Interact.PowerOff")
    with pytest.raises(RayVsphereError) as raised:
        _node_power.shut_down(None, Vm(shutdown_fault=fault), "w0", 60)
    assert str(raised.value).startswith("ShutdownGuest on VM w0 failed")
    assert raised.value.__cause__ is fault and raised.value.details["fault"] == "NoPermission"


def test_is_stopped_needs_both_the_power_state_and_the_status():
    tags = {"ray-node-status": "stopped"}
    assert _node_power.is_stopped({"power_state": "poweredOff", "tags": tags})
    assert not _node_power.is_stopped({"power_state": "poweredOn", "tags": tags}), "stopped but not off yet"
    assert not _node_power.is_stopped({"power_state": "poweredOff", "tags": {"ray-node-status": "uninitialized"}}), \
        "a node a deploy is still making"
