"""The VMware Tools stand-in reports as a real VM's Tools do: late, a bridge's address first, and lost on a restart.

What vcsim shows is read from vcsim (guest.ipAddress), second by second; the
collection's own IP wait (_guest_ip.wait_for_ips) runs against it and must
take the guest's own address, not the docker0 one Tools reported first.
"""

import ipaddress
import time
from types import SimpleNamespace

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _guest_ip, _nodes
from testbed import vsphere
from testbed.guests import GuestSimulator
from testbed.guests.tools import ToolsTiming

IP_DELAY_S = 10  # docker0's address at 5 s: after the guest is up (about 2 s), even on a loaded machine
DOCKER0 = "172.17.0.1"
RESTART_AFTER_S = 3
RESTART_S = 3


@pytest.fixture(scope="module")
def late_tools(vcsim):
    timing = ToolsTiming(ip_delay=IP_DELAY_S, first_address=DOCKER0, restart_after=RESTART_AFTER_S,
                         restart_seconds=RESTART_S)
    with GuestSimulator(vcsim.endpoint, tools=timing) as guests:
        yield guests
        assert guests.errors == [], f"guest simulator errors: {guests.errors}"


def reported_ip(service_instance, vm):
    return vsphere.read_properties(service_instance, vm, ["guest.ipAddress"]).get("guest.ipAddress") or ""


def test_tools_reports_late_a_bridge_first_and_loses_the_address_on_a_restart(late_tools, deploy_test_vm,
                                                                               service_instance):
    vm = deploy_test_vm("tools-timing")
    powered_on = time.monotonic()
    timeline = []  # (seconds after power-on, what vcsim shows), each change
    while time.monotonic() - powered_on < IP_DELAY_S + RESTART_AFTER_S + RESTART_S + 4:
        shown = reported_ip(service_instance, vm)
        if not timeline or timeline[-1][1] != shown:
            timeline.append((time.monotonic() - powered_on, shown))
        time.sleep(0.2)
    own = late_tools.wait_for_guest(vm._moId, timeout=5).address
    assert [shown for _, shown in timeline] == ["", DOCKER0, own, "", own], timeline
    times = dict((shown, at) for at, shown in reversed(timeline))  # the first time each was shown
    # Never earlier than Tools would; later only by the machine's load.
    assert IP_DELAY_S / 2 - 0.5 < times[DOCKER0] < IP_DELAY_S / 2 + 4, timeline
    assert IP_DELAY_S - 0.5 < times[own] < IP_DELAY_S + 4, timeline
    lost, back = timeline[3][0], timeline[4][0]
    assert RESTART_S - 1 < back - lost < RESTART_S + 3, timeline


def test_the_ip_wait_takes_the_guests_own_address_not_the_bridge_reported_before_it(late_tools, deploy_test_vm,
                                                                                    service_instance):
    vm = deploy_test_vm("tools-bridge-first")
    request = SimpleNamespace(**dict(zip(("preferred", "ignored"), _nodes.ip_choice(
        {"ignored_cidrs": _nodes.DEFAULT_IGNORED_CIDRS}))))
    started = time.monotonic()
    _guest_ip.wait_for_ips(service_instance, {vm: "tools-bridge-first"}, request, timeout=IP_DELAY_S + 20)
    took = time.monotonic() - started
    props = vsphere.read_properties(service_instance, vm, list(_guest_ip.GUEST_PATHS))
    own = late_tools.wait_for_guest(vm._moId, timeout=5).address
    assert _nodes.choose_ip(_nodes.guest_addresses(props), *_nodes.ip_choice({})) == own
    assert ipaddress.ip_address(own) not in ipaddress.ip_network("172.17.0.0/16")
    assert took >= IP_DELAY_S - 2.5, f"the wait returned after {took:.1f} s, at docker0's address"
