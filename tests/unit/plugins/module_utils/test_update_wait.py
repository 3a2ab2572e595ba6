"""The IP wait's long poll and the request timeout: a quiet poll never costs a slow boot its node.

A PropertyCollector that answers as vCenter does (after maxWaitSeconds with
nothing, at once with a change) or not at all (socket.timeout, as pyVmomi
raises when request_timeout passes), driven by a script.
"""

import socket
import time
from types import SimpleNamespace

import pytest
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _guest_ip, _node_watch, _nodes, _waiter
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError


class ScriptedCollector:
    """Answers each WaitForUpdatesEx with the next of script: {vm: {path: value}}, None (no change), an exception."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []  # (version, maxWaitSeconds)
        self.cancels = 0
        self.destroyed = False

    def CreatePropertyCollector(self):
        return self

    def CreateFilter(self, spec, partialUpdates):
        self.spec = spec

    def WaitForUpdatesEx(self, version, options):
        self.calls.append((version, options.maxWaitSeconds))
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            time.sleep(0.01)  # the client waited its request timeout (scaled down)
            raise step
        if step is None:
            return None
        kind = "enter" if version == "" else "modify"
        return SimpleNamespace(version=str(len(self.calls)), truncated=False, filterSet=[SimpleNamespace(objectSet=[
            SimpleNamespace(obj=vm, kind=kind, changeSet=[SimpleNamespace(name=path, val=value, op="assign")
                                                          for path, value in props.items()])
            for vm, props in step.items()])])

    def CancelWaitForUpdates(self):
        self.cancels += 1

    def DestroyPropertyCollector(self):
        self.destroyed = True


def session(collector, request_timeout):
    return SimpleNamespace(content=SimpleNamespace(propertyCollector=collector),
                           _stub=SimpleNamespace(request_timeout=request_timeout))


def timed_out():
    return socket.timeout("The read operation timed out")


VM = vim.VirtualMachine("vm-42")
DEFAULT_POLICY = SimpleNamespace(**dict(zip(("preferred", "ignored"), _nodes.ip_choice(
    {"ignored_cidrs": _nodes.DEFAULT_IGNORED_CIDRS}))))


@pytest.mark.parametrize("request_timeout", range(1, 301))
def test_the_long_poll_stays_well_below_every_request_timeout(request_timeout):
    wait = _waiter.update_wait_seconds(request_timeout)
    assert 0 <= wait <= _waiter.MAX_UPDATE_WAIT_SECONDS
    if wait:
        assert request_timeout - wait >= max(_waiter.MIN_UPDATE_WAIT_MARGIN_SECONDS, request_timeout / 3.0)


def test_the_issues_setting_polls_for_20_s_not_for_the_whole_30_s_request_timeout():
    assert _waiter.update_wait_seconds(30) == 20
    assert _waiter.update_wait_seconds(60) == 30
    assert _waiter.update_wait_seconds(2) == 0  # no room for a long poll: vCenter checks once, the client polls


def test_each_poll_asks_vcenter_to_answer_within_the_derived_wait():
    collector = ScriptedCollector([{VM: {}}, None, None, {VM: {"guest.ipAddress": "10.1.2.3"}}])
    _guest_ip.wait_for_ips(session(collector, 30), {VM: "n1"}, DEFAULT_POLICY, timeout=600)
    assert [wait for _, wait in collector.calls] == [20, 20, 20, 20]
    assert collector.destroyed


def test_a_poll_vcenter_did_not_answer_in_time_counts_as_no_change_and_the_next_reads_everything_again():
    collector = ScriptedCollector([{VM: {}}, timed_out(), {VM: {"guest.ipAddress": "10.1.2.3"}}])
    _guest_ip.wait_for_ips(session(collector, 30), {VM: "n1"}, DEFAULT_POLICY, timeout=600)
    assert [version for version, _ in collector.calls] == ["", "1", ""], "after the lost answer: a full read"
    assert collector.cancels == 1, "the poll the client gave up on is cancelled on vCenter"


def test_a_vcenter_silent_until_the_ip_timeout_is_reported_as_silent_not_as_a_node_without_ip(monkeypatch):
    collector = ScriptedCollector([{VM: {}}] + [timed_out()] * 1000)
    with pytest.raises(RayVsphereError) as raised:
        _guest_ip.wait_for_ips(session(collector, 1), {VM: "n1"}, DEFAULT_POLICY, timeout=0.3)
    assert ("PropertyCollector.WaitForUpdatesEx (guest.net, guest.ipAddress, guest.toolsRunningStatus, "
            "guest.toolsStatus) failed: vCenter did not answer within") in str(raised.value), str(raised.value)
    assert raised.value.details.get("timed_out") is True
    assert "failure" not in raised.value.details, "not Ray's NoIpAddress: the node may well have booted"


def test_an_address_only_in_an_ignored_network_is_taken_once_it_stayed_alone(monkeypatch):
    monkeypatch.setattr(_guest_ip, "IGNORED_ONLY_SETTLE_SECONDS", 0.5)
    collector = ScriptedCollector([{VM: {"guest.ipAddress": "10.88.4.7"}}])
    started = time.monotonic()
    _guest_ip.wait_for_ips(session(collector, 5), {VM: "n1"}, DEFAULT_POLICY, timeout=30)
    assert 0.5 <= time.monotonic() - started < 5


def test_a_bridge_address_reported_first_is_not_taken_when_the_lan_one_follows(monkeypatch):
    monkeypatch.setattr(_guest_ip, "IGNORED_ONLY_SETTLE_SECONDS", 5)
    seen = {}
    original = _guest_ip._Settling.usable

    def recording(self, vm, props, now):
        seen.update(props)
        return original(self, vm, props, now)

    monkeypatch.setattr(_guest_ip._Settling, "usable", recording)
    collector = ScriptedCollector([{VM: {"guest.ipAddress": "172.17.0.1"}}, None,
                                   {VM: {"guest.ipAddress": "192.168.40.9"}}])
    _guest_ip.wait_for_ips(session(collector, 5), {VM: "n1"}, DEFAULT_POLICY, timeout=30)
    assert seen["guest.ipAddress"] == "192.168.40.9"
    assert len(collector.calls) == 3, "the wait went on past docker0's address"


def test_a_refresh_poll_lost_to_the_socket_raises_and_the_next_reads_everything_again(monkeypatch):
    """The provider's NodeWatch polls with maxWaitSeconds 0; a lost answer may have carried a VM's removal."""
    monkeypatch.setattr(_node_watch._vsphere, "vms_and_fields_spec", lambda *args: None)
    gone, kept = vim.VirtualMachine("vm-1"), vim.VirtualMachine("vm-2")
    collector = ScriptedCollector([{gone: {"name": "gone"}, kept: {"name": "kept"}}, None, timed_out(),
                                   {kept: {"name": "kept"}}])
    watch = _node_watch.NodeWatch(session(collector, 30), roots=[vim.Folder("group-v1")])
    assert set(watch.vms) == {gone, kept}
    assert watch.poll() is False
    with pytest.raises(socket.timeout):
        watch.poll()
    assert watch.poll() is True
    assert [version for version, _ in collector.calls] == ["", "1", "1", ""]
    assert [wait for _, wait in collector.calls] == [0, 0, 0, 0]
    assert set(watch.vms) == {kept}, "what the full read left out is gone"
