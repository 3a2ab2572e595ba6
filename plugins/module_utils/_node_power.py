# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What node_power changes: a cluster's nodes stopped with their disks kept, or started again, in parallel.

A stop asks the guest to shut down (ShutdownGuest, through VMware Tools), so
its disk is left as a clean shutdown leaves it, and powers the VM off
(PowerOffVM_Task) when Tools cannot take the request or the guest is not off
within the wait. Then the node's ray-node-status becomes STOPPED: what tells a
node stopped to be started again from one a launch is still making (tagged,
not yet powered on), and what the Ray provider hides from Ray.

A start writes the launch's tags first, then powers the VM on: the identity,
host key and disk the node was made with stay as they are, so cloud-init, for
the same instance-id, does not run its per-instance modules again.

Every VM is checked to be a verified node of the cluster (_nodes.find_nodes)
before anything is changed: a refused VM leaves all others untouched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _guest_ip, _nodes, _ray_tags, _records, _waiter

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

NODE_STATUS, STOPPED = _records.NODE_STATUS, _records.STOPPED
POWERED_OFF = "poweredOff"
POWERED_ON = "poweredOn"
# A shutdown the guest was asked for and did not finish within this many seconds ends in a power-off.
DEFAULT_SHUTDOWN_TIMEOUT = 60


def is_stopped(record):
    """Whether a node record (_records.node_record) is a node stopped to be started again."""
    return record.get("power_state") == POWERED_OFF and (record.get("tags") or {}).get(NODE_STATUS) == STOPPED


def start_tags(tags):
    """The tags a start writes, checked before vCenter is asked anything."""
    checked = _ray_tags.check_tags(tags, "tags")
    if _records.CLUSTER_NAME in checked:
        raise RayVsphereError("tags: %s cannot be changed: it is what makes a VM a node of its cluster"
                              % _records.CLUSTER_NAME)
    return checked


class _IpChoice(object):
    """What _guest_ip.wait_for_ips asks of a request: the IP policy."""

    def __init__(self, preferred, ignored):
        self.preferred, self.ignored = preferred, ignored


def stop_nodes(service_instance, cluster_key, uuids, parallel, check_mode, shutdown_timeout, roots=None):
    """Shut the nodes of uuids down (powered off at last) and mark them STOPPED; (stopped names, absent uuids)."""
    inventory = _nodes.Inventory(service_instance, roots, _nodes.LIST_PATHS)
    found, absent = _nodes.find_nodes(inventory, cluster_key, uuids)
    changing = dict((vm, props) for vm, props in found.items()
                    if props.get("runtime.powerState") != POWERED_OFF or inventory.tags(vm).get(NODE_STATUS) != STOPPED)
    if changing:
        inventory.attributes.require([NODE_STATUS])
    if not check_mode:
        def stop(vm):
            name = changing[vm]["name"]
            if changing[vm].get("runtime.powerState") != POWERED_OFF:
                shut_down(service_instance, vm, name, shutdown_timeout)
            inventory.attributes.set(vm, name, {NODE_STATUS: STOPPED})

        errors = _nodes.in_parallel(stop, list(changing), parallel)
        if errors:
            raise RayVsphereError("stopping nodes of Ray cluster %s failed: %s"
                                  % (cluster_key.cluster_name, "; ".join(errors)))
    return sorted(props["name"] for props in changing.values()), absent


def shut_down(service_instance, vm, name, timeout):
    """ShutdownGuest, then wait up to timeout s for poweredOff; PowerOffVM_Task if Tools refused or time ran out."""
    try:
        vm.ShutdownGuest()
    except vim.fault.InvalidPowerState:
        return  # off already (or suspended: powered off below)
    except (vim.fault.ToolsUnavailable, vim.fault.TaskInProgress) as error:
        timeout = 0  # nothing in the guest can take the request: straight to the power-off
        refused = error
    except vmodl.MethodFault as error:
        raise _waiter.call_failed("ShutdownGuest on VM %s" % name, error)
    else:
        refused = None
    if timeout > 0:
        try:
            _waiter.wait_for_updates(
                service_instance, [vm], vim.VirtualMachine, ["runtime.powerState"],
                lambda seen: [] if seen[vm].get("runtime.powerState") == POWERED_OFF else [vm], timeout,
                lambda seen, still: "VM %s still %s %s s after ShutdownGuest" % (
                    name, seen[vm].get("runtime.powerState"), timeout))
            return
        except RayVsphereError as error:
            if error.details.get("fault") != "Timeout":
                raise
    try:
        _waiter.run_task(service_instance, "PowerOffVM_Task on VM %s (%s)" % (
            name, "ShutdownGuest refused: %s" % type(refused).__name__.split(".")[-1] if refused
            else "the guest did not shut down in %s s" % timeout), vm.PowerOffVM_Task)
    except RayVsphereError as error:
        if error.details.get("fault") != "InvalidPowerState":  # the guest got there meanwhile
            raise


def start_nodes(service_instance, cluster_key, uuids, tags, parallel, check_mode, ip_timeout=None,
                preferred=None, ignored=None, roots=None):
    """Write tags on the nodes of uuids, power them on and, with ip_timeout, wait for their addresses.

    (node records after, started names, absent uuids); in check mode the records are as read.
    """
    inventory = _nodes.Inventory(service_instance, roots, _nodes.LIST_PATHS)
    found, absent = _nodes.find_nodes(inventory, cluster_key, uuids)
    starting = dict((vm, props) for vm, props in found.items() if props.get("runtime.powerState") != POWERED_ON
                    or any(inventory.tags(vm).get(key, "") != value for key, value in tags.items()))
    if starting:
        inventory.attributes.require(set(tags) | {NODE_STATUS})
    if check_mode:
        return [inventory.record(vm, preferred, ignored) for vm in _by_name(found)], _names(starting), absent

    def start(vm):
        name = starting[vm]["name"]
        # A started node is stopped no more, whatever tags the caller gives.
        unmark = {NODE_STATUS: ""} if inventory.tags(vm).get(NODE_STATUS) == STOPPED else {}
        inventory.attributes.set(vm, name, dict(unmark, **tags))
        try:
            _waiter.run_task(service_instance, "PowerOnVM_Task on VM %s" % name, vm.PowerOnVM_Task)
        except RayVsphereError as error:
            if error.details.get("fault") != "InvalidPowerState":  # on already
                raise

    errors = _nodes.in_parallel(start, list(starting), parallel)
    if errors:
        raise RayVsphereError("starting nodes of Ray cluster %s failed: %s"
                              % (cluster_key.cluster_name, "; ".join(errors)))
    if ip_timeout and found:
        # A restarted guest gets its address anew (DHCP): the one it had before it stopped may be another's now.
        _guest_ip.wait_for_ips(service_instance, dict((vm, props["name"]) for vm, props in found.items()),
                               _IpChoice(preferred, ignored), ip_timeout)
    final = _nodes.Inventory(service_instance, roots, _nodes.LIST_PATHS)
    return [final.record(vm, preferred, ignored) for vm in _by_name(found) if vm in final.vms], _names(starting), absent


def _by_name(vms):
    return sorted(vms, key=lambda vm: vms[vm].get("name") or "")


def _names(vms):
    return sorted(props.get("name") for props in vms.values())
