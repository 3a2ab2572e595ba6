# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Waiting until new nodes report an address the IP policy accepts (preferred_cidr, ignored_cidrs).

An address in an ignored network (docker0's 172.17.0.1 by default) is taken
only once it has stayed a node's best one for IGNORED_ONLY_SETTLE_SECONDS:
Tools may list a bridge before the LAN address DHCP gives a little later (it
reports on a 30 s poll), while on a site whose LAN is such a network it is
the one address there will ever be.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import time

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_NO_IP_ADDRESS, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _progress, _waiter

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

GUEST_PATHS = ("guest.net", "guest.ipAddress")
# What a VM without an address is asked: whether Tools runs at all (toolsRunningStatus), and its
# install/version state (toolsStatus: toolsNotInstalled, toolsNotRunning, toolsOld, toolsOk).
TOOLS_PATHS = ("guest.toolsRunningStatus", "guest.toolsStatus")
# Two of Tools' 30 s guestinfo polls: a LAN address reported after a bridge's comes within them.
IGNORED_ONLY_SETTLE_SECONDS = 60


class _Settling(object):
    """When each VM's best address, if it lies in an ignored network, was first seen as that."""

    def __init__(self, request):
        self.request = request
        self.since = {}

    def usable(self, vm, props, now):
        """Whether vm's best address may be taken now."""
        best = _nodes.choose_ip(_nodes.guest_addresses(props), self.request.preferred, self.request.ignored)
        if best is None or not _nodes.within(ipaddress.ip_address(best), self.request.ignored):
            self.since.pop(vm, None)
            return best is not None
        seen_as = self.since.get(vm)
        if seen_as is None or seen_as[0] != best:
            self.since[vm] = seen_as = (best, now)
        return now - seen_as[1] >= IGNORED_ONLY_SETTLE_SECONDS

    def wake_at(self):
        """When a VM settled on an ignored network's address becomes usable, with no update in between."""
        if not self.since:
            return None
        return min(since for _address, since in self.since.values()) + IGNORED_ONLY_SETTLE_SECONDS


def wait_for_ips(service_instance, vms, request, timeout):
    """Wait until every VM of {vm: name} reports a usable IP, as VMware Tools tells vCenter."""
    settling = _Settling(request)
    reported = []

    def waiting(seen):
        now = time.time()
        still = [vm for vm in vms if not settling.usable(vm, seen[vm], now)]
        if not reported or reported[-1] != len(still):  # a line per change: "waiting for IPs: 2 of 3"
            reported.append(len(still))
            _progress.report("ips", have=len(vms) - len(still), of=len(vms))
        return still

    def on_timeout(seen, still):
        return "no usable IP after %s s (ignored unless alone for %s s: %s) for %s" % (
            timeout, IGNORED_ONLY_SETTLE_SECONDS, ", ".join(str(network) for network in request.ignored),
            "; ".join("%s: %s" % (vms[vm], guest_report(seen[vm])) for vm in still))

    try:
        _waiter.wait_for_updates(service_instance, list(vms), vim.VirtualMachine, GUEST_PATHS + TOOLS_PATHS, waiting,
                                 timeout, on_timeout, wake_at=lambda seen: settling.wake_at())
    except RayVsphereError as error:
        if error.details.get("fault") == "Timeout" and not error.details.get("timed_out"):
            # What the Ray provider reports to Ray's availability tracking (NoIpAddress), not a vSphere fault
            # nor a vCenter that stopped answering (timed_out).
            error.details["failure"] = FAILURE_NO_IP_ADDRESS
        raise


def guest_report(props):
    """What the guest told vCenter, for a VM without a usable address: its addresses and whether Tools runs.

    Without Tools running nothing reports an address at all (the image lacks
    open-vm-tools, or it did not start); with Tools running and no address,
    the guest's network (DHCP, cloud-init's network config) is what to look at.
    """
    addresses = _nodes.guest_addresses(props)
    running = props.get("guest.toolsRunningStatus") or "unknown"
    status = props.get("guest.toolsStatus") or "unknown"
    return "guest reported %s (guest.ipAddress %s); VMware Tools %s (toolsRunningStatus %s, toolsStatus %s)" % (
        ", ".join(addresses) if addresses else "no address", props.get("guest.ipAddress") or "empty",
        "running" if running == "guestToolsRunning" else "not running", running, status)
