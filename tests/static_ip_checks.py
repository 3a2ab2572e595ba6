"""What the static-IP end-to-end tests (tests/provider, tests/playbooks) read, each from where it is true.

- a guest's own view: the addresses and MAC of its interfaces, read in its
  network namespace (`ip -o addr show`, as the guest's own `ip addr` shows
  them), and the file cloud-init's ENI renderer wrote there;
- vCenter's view (vcsim): each VM's reported guest IP, the address it records
  in its extraConfig, its NIC's MAC, and the events of what was made, destroyed
  and powered on;
- Ray's view: a job with one task pinned to every alive node, each reporting
  the address Ray knows its node by and what `ip` shows there.

Nothing here reads the deploy's or the provider's own bookkeeping: the oracle
for "no duplicate" is the guests, and vcsim's records and events.
"""

import ipaddress
import re
import subprocess
import time
from dataclasses import dataclass

from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _records
from testbed import ray_cluster, vsphere
from testbed.guests import ssh

# What cloud-init's ENI renderer writes (cloudinit/net/eni.py, its default eni_path and the 50-cloud-init name).
ENI_FILE = "/etc/network/interfaces.d/50-cloud-init"

# TEST-NET-2 (RFC 5737): outside every testbed bridge's network, so a gateway no pool of theirs may have.
WRONG_GATEWAY = "198.51.100.1"


def static_pool(network, size, **settings):
    """An ip_pool (node_deploy's option) of the first `size` addresses of the bridge's static range.

    The bridge's gateway is the pool's; the DHCP stand-in never leases these addresses.
    """
    first, last = (ipaddress.ip_address(address) for address in network.static_range())
    assert int(last) - int(first) + 1 >= size, f"the static range {first}-{last} has fewer than {size} addresses"
    return {"cidr": network.cidr, "range": f"{first}-{first + size - 1}", "gateway": network.gateway, **settings}


def pool_addresses(pool):
    """Every address of a range-style pool, in order."""
    first, last = (ipaddress.ip_address(address) for address in pool["range"].split("-"))
    return [str(ipaddress.ip_address(value)) for value in range(int(first), int(last) + 1)]


@dataclass(frozen=True)
class VmView:
    """A VM as vcsim reports it."""

    name: str
    moid: str
    reported_ip: str      # guest.ipAddress: what the Tools stand-in read in the guest
    recorded_ip: str      # extraConfig ray-vsphere.ip-address: what the VM carries from its create spec
    macs: tuple
    powered_on: bool

    @property
    def moid_number(self):
        return int(self.moid.rsplit("-", 1)[-1])


def vms_at_vcsim(sim):
    """{VM name: VmView} of every VM at vcsim but templates."""
    service_instance = sim.endpoint.connect()
    try:
        vms = vsphere.objects_of_type(service_instance, vim.VirtualMachine, [
            "name", "config.template", "guest.ipAddress", "config.extraConfig", "config.hardware.device",
            "runtime.powerState"])
    finally:
        service_instance.content.sessionManager.Logout()
    views = {}
    for vm, props in vms.items():
        if props.get("config.template"):
            continue
        extra_config = {option.key: option.value for option in props.get("config.extraConfig") or []}
        macs = tuple(device.macAddress.lower() for device in props.get("config.hardware.device") or []
                     if isinstance(device, vim.vm.device.VirtualEthernetCard) and device.macAddress)
        views[props["name"]] = VmView(
            name=props["name"], moid=vm._moId, reported_ip=props.get("guest.ipAddress") or None,
            recorded_ip=extra_config.get(_records.IP_ADDRESS), macs=macs,
            powered_on=props.get("runtime.powerState") == vim.VirtualMachine.PowerState.poweredOn)
    return views


def all_vm_names(sim):
    """Every VM and template at vcsim: what "nothing was made" compares."""
    service_instance = sim.endpoint.connect()
    try:
        return sorted(props["name"] for props in
                      vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"]).values())
    finally:
        service_instance.content.sessionManager.Logout()


# What vcsim logs when a VM is made, deployed, powered on or goes away.
LIFE_EVENTS = {"VmBeingClonedEvent", "VmClonedEvent", "VmBeingCreatedEvent", "VmCreatedEvent", "VmBeingDeployedEvent",
               "VmDeployedEvent", "VmRemovedEvent", "VmPoweredOnEvent"}


@dataclass(frozen=True)
class VmEvent:
    kind: str     # the event's type name: VmClonedEvent, VmRemovedEvent, VmPoweredOnEvent, ...
    name: str
    moid: str
    key: int      # vCenter's event key: increasing in the order vCenter logged them


def vm_events(sim):
    """Every VM event vcsim logged, oldest first."""
    service_instance = sim.endpoint.connect()
    try:
        collector = service_instance.content.eventManager.CreateCollectorForEvents(vim.event.EventFilterSpec())
        try:
            collector.RewindCollector()
            events = []
            while batch := collector.ReadNextEvents(1000):
                events.extend(batch)
        finally:
            collector.DestroyCollector()
    finally:
        service_instance.content.sessionManager.Logout()
    return sorted((VmEvent(type(event).__name__.split(".")[-1], event.vm.name, event.vm.vm._moId, event.key)
                   for event in events if isinstance(event, vim.event.VmEvent) and event.vm and event.vm.vm),
                  key=lambda event: event.key)


def last_event_key(sim):
    return max(event.key for event in vm_events(sim))


def life_events_since(sim, key):
    """The VM life events (LIFE_EVENTS) vcsim logged after the event `key`: none, where a step must make nothing."""
    return [event for event in vm_events(sim) if event.key > key and event.kind in LIFE_EVENTS]


def destroyed_before_power_on(events, name_prefix):
    """[(name, moid)] of the VMs named name_prefix... that were made and destroyed without ever being powered on."""
    by_moid = {}
    for event in events:
        if event.name.startswith(name_prefix):
            by_moid.setdefault((event.name, event.moid), set()).add(event.kind)
    return sorted(vm for vm, kinds in by_moid.items()
                  if "VmRemovedEvent" in kinds and "VmPoweredOnEvent" not in kinds)


@dataclass(frozen=True)
class GuestView:
    """A guest's own network view, read inside it."""

    vm_moid: str
    addresses: dict       # {interface: ("198.18.5.200/24", ...)}: global-scope addresses of every interface but lo
    macs: dict            # {interface: MAC} of every interface but lo
    eni: str              # the ENI file cloud-init rendered, as the guest reads it

    @property
    def interface(self):
        """The one interface holding addresses."""
        (interface,) = self.addresses
        return interface

    @property
    def address(self):
        (address,) = {address.split("/")[0] for address in self.addresses[self.interface]}
        return address


def _in_netns(netns, *command):
    result = subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{command} in {netns}: {result.stderr}"
    return result.stdout


def guest_views(guests, key):
    """{VM moid: GuestView} of every running guest: `ip -o addr show` and `ip -o link show` in the guest's own network
    namespace; the ENI file over SSH, from the guest's own root (at the address the guest itself holds)."""
    views = {}
    for moid, guest in guests.guests().items():
        addresses = {}
        for interface, address in re.findall(r"^\d+:\s+(\S+)\s+inet6?\s+(\S+)\s.*\bscope global\b",
                                             _in_netns(guest.netns, "ip", "-o", "addr", "show"), re.M):
            addresses.setdefault(interface, []).append(address)
        macs = dict(re.findall(r"^\d+:\s+([^:@\s]+)[^\n]*link/ether ([0-9a-f:]{17})",
                               _in_netns(guest.netns, "ip", "-o", "link", "show"), re.M))
        own = sorted({address.split("/")[0] for held in addresses.values() for address in held})
        eni = ssh(own[0], key, f"cat {ENI_FILE}").stdout if len(own) == 1 else ""
        views[moid] = GuestView(vm_moid=moid, addresses={name: tuple(held) for name, held in addresses.items()},
                                macs=macs, eni=eni)
    return views


def assert_static_addresses(sim, guests, key, names, pool):
    """The VMs named `names` hold static addresses of `pool`, each the same in the guest, at vcsim and in its record,
    from cloud-init's ENI rendering, on the NIC with the VM's MAC, and all distinct; {name: address}."""
    vms = vms_at_vcsim(sim)
    views = guest_views(guests, key)
    in_pool = set(pool_addresses(pool))
    prefix = ipaddress.ip_network(pool["cidr"]).prefixlen
    held = {}
    for name in names:
        vm = vms[name]
        assert vm.moid in views, f"{name} ({vm.moid}) has no running guest: {sorted(views)}"
        view = views[vm.moid]
        assert len(view.addresses) == 1 and len(next(iter(view.addresses.values()))) == 1, \
            f"{name}: the guest holds {view.addresses}, not one address on one interface"
        interface = view.interface
        assert view.addresses[interface] == (f"{view.address}/{prefix}",), view
        assert view.address in in_pool, f"{name}: the guest holds {view.address}, outside the pool {pool}"
        assert (vm.reported_ip, vm.recorded_ip) == (view.address, view.address), \
            f"{name}: the guest holds {view.address}; vcsim reports {vm.reported_ip}, the VM records {vm.recorded_ip}"
        assert vm.macs == (view.macs.get(interface),), \
            f"{name}: the guest's {interface} has MAC {view.macs.get(interface)}, the VM {vm.macs}"
        # cloud-init's ENI renderer: the interface it matched by MAC (and named), static, with the pool's gateway.
        assert re.search(rf"^iface {re.escape(interface)} inet static$", view.eni, re.M), \
            f"{name}: {ENI_FILE} has no static {interface}:\n{view.eni}"
        assert re.search(rf"^\s+address {re.escape(view.addresses[interface][0])}$", view.eni, re.M), \
            f"{name}: {ENI_FILE} does not hold {view.addresses[interface][0]}:\n{view.eni}"
        if pool.get("gateway"):
            assert re.search(rf"^\s+gateway {re.escape(pool['gateway'])}$", view.eni, re.M), \
                f"{name}: {ENI_FILE} has no gateway {pool['gateway']}:\n{view.eni}"
        held[name] = view.address
    assert_no_guest_shares_an_address(views)
    return held


def assert_no_guest_shares_an_address(views):
    """No two running guests' own `ip addr` show one address."""
    owners = {}
    for moid, view in views.items():
        for address in (address for held in view.addresses.values() for address in held):
            owners.setdefault(address.split("/")[0], []).append(moid)
    shared = {address: moids for address, moids in owners.items() if len(moids) > 1}
    assert shared == {}, f"guests holding the same address: {shared}"


def assert_records_distinct(vms):
    """No two VMs at vcsim record one address."""
    owners = {}
    for vm in vms.values():
        if vm.recorded_ip:
            owners.setdefault(vm.recorded_ip, []).append(vm.name)
    shared = {address: names for address, names in owners.items() if len(names) > 1}
    assert shared == {}, f"VMs recording the same address: {shared}"


# One task pinned to every alive node (NodeAffinity, not soft, no CPU: a head with CPU 0 runs one too), each
# reporting the address Ray knows its node by and the global addresses `ip` shows where it runs.
EVERY_NODE_JOB = """
import json, shutil, subprocess, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address="auto", logging_level="ERROR")


@ray.remote(num_cpus=0)
def where():
    ip = shutil.which("ip") or "/usr/sbin/ip"
    shown = subprocess.run([ip, "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    return {"node_ip": ray.util.get_node_ip_address(), "ip_addr": [line.split()[3] for line in shown.splitlines()]}


nodes = [node for node in ray.nodes() if node["Alive"]]
on_node = [NodeAffinitySchedulingStrategy(node["NodeID"], soft=False) for node in nodes]
reports = ray.get([where.options(scheduling_strategy=strategy).remote() for strategy in on_node], timeout=120)
print("RESULT " + json.dumps({node["NodeManagerAddress"]: report for node, report in zip(nodes, reports)}))
"""


def assert_a_job_runs_on_every_node_at_its_address(head_ip, key, addresses, prefix):
    """A job with a task on every alive node: Ray's nodes are exactly `addresses`, and each task ran where its
    node's own `ip addr` shows that address."""
    reports = ray_cluster.run_driver(head_ip, key, EVERY_NODE_JOB, timeout=240)
    assert sorted(reports) == sorted(addresses), f"Ray's alive nodes {sorted(reports)}, not {sorted(addresses)}"
    for address, report in reports.items():
        assert report == {"node_ip": address, "ip_addr": [f"{address}/{prefix}"]}, (address, report)


class Steps:
    """Prints how long each step of an end-to-end test took, as it ends (`pytest -s` shows them)."""

    def __init__(self, test):
        self.test = test
        self.started = self.last = time.monotonic()

    def done(self, step, **facts):
        now = time.monotonic()
        shown = "".join(f", {name}: {value}" for name, value in facts.items())
        print(f"{self.test}: {step} in {now - self.last:.0f} s ({now - self.started:.0f} s in all){shown}")
        self.last = now
