# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Waiting until new nodes report an address the IP policy accepts (preferred_cidr, ignored_cidrs)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import FAILURE_NO_IP_ADDRESS, RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _waiter

try:
    from pyVmomi import vim
except ImportError:
    pass  # reported by _client.run_module

GUEST_PATHS = ("guest.net", "guest.ipAddress")


def wait_for_ips(service_instance, vms, request, timeout):
    """Wait until every VM of {vm: name} reports a usable IP, as VMware Tools tells vCenter."""
    def usable(props):
        return _nodes.choose_ip(_nodes.guest_addresses(props), request.preferred, request.ignored)

    def waiting(seen):
        return [vm for vm in vms if not usable(seen[vm])]

    def on_timeout(seen, still):
        reported = "; ".join("%s: %s" % (vms[vm], _nodes.guest_addresses(seen[vm]) or "no address") for vm in still)
        return "no usable IP after %s s (ignored: %s) for %s" % (
            timeout, ", ".join(str(network) for network in request.ignored), reported)

    try:
        _waiter.wait_for_updates(service_instance, list(vms), vim.VirtualMachine, GUEST_PATHS, waiting, timeout,
                                 on_timeout)
    except RayVsphereError as error:
        if error.details.get("fault") == "Timeout":
            # What the Ray provider reports to Ray's availability tracking (NoIpAddress), not a vSphere fault.
            error.details["failure"] = FAILURE_NO_IP_ADDRESS
        raise
