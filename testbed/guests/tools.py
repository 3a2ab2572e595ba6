"""The hypervisor and VMware Tools of the test guests: a real SSH host behind every powered-on simulated VM.

vcsim models VMs but runs nothing. The GuestSimulator watches vcsim through
the PropertyCollector (WaitForUpdatesEx) and, when a VM is powered on, brings
up a Guest for it (testbed.guests.guest) on the GuestNetwork
(testbed.guests.net), reading what vCenter presents through VMware Tools:
extraConfig's guestinfo.*, among them the guestinfo.ovfEnv vcsim writes from
the vApp properties at power-on (cloud-init's OVF datasource) and
guestinfo.metadata (its VMware datasource). The guest's NIC carries the MAC
vcsim gave the VM's; the guest sets its own address from its network
configuration, static or DHCP (the GuestNetwork offers each NIC's MAC a
lease). Then the simulator reports the address the guest ended up with (read
from its namespace, as Tools reads the guest's NICs; none if it has none) and
its hostname back to vcsim as VMware Tools would (ReconfigVM with
`SET.guest.ipAddress`). The address is read once, when the guest has
booted: a later change inside the guest is not reported. Power-off or
destroy removes the guest; each VM's disk (testbed.guests.guest) stays
through power-off and goes with the VM's destroy (it leaves the
PropertyCollector's view) or the simulator's stop.

When Tools reports is a ToolsTiming: at once by default (the suite stays
short), or as on a real VM, where the address comes 20-90 s after power-on.
open-vm-tools' guestinfo plugin reports network info on a poll, "it may take
another 30 seconds to report guest IP address" after the daemon starts
(open-vm-tools issue #718, a VMware maintainer), and ~30 s passed between
Tools' reset and its first IP broadcast (govmomi PR #778); an address change
took 1-2 minutes to show (open-vm-tools issue #577). A ToolsTiming can also
report a docker0 or IPv6 address before the guest's own (Tools lists Docker
bridges among a VM's addresses, and picks one as guest.ipAddress: VMware
Tools 10.2.0's exclude-nics exists for that, virtuallyghetto.com 2017/12),
and lose the address for a while, as a Tools restart (an upgrade) does.
"""

import ipaddress
import logging
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyVmomi import vim, vmodl

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from testbed import image, vsphere
from testbed.guests import boot, pci
from testbed.guests.commands import GuestError
from testbed.guests.guest import Guest
from testbed.guests.net import GuestNetwork
from testbed.simulator import Vcsim

log = logging.getLogger(__name__)

NETNS_PREFIX = "rvsphere-"
TEMP_PREFIX = "ray-vsphere-guests-"
# A VM's disk in the simulator's run folder: DISK_PREFIX + the VM's moid.
DISK_PREFIX = "disk-"
WATCHED_PROPERTIES = ("name", "runtime.powerState", "config.extraConfig", "config.uuid")
# Read at power-on only: the VM's devices and the host that bound its passthrough ones (testbed.guests.pci).
HARDWARE_PROPERTIES = ("config.hardware.device", "runtime.host")
# In a ToolsTiming's reports: the guest's own address (it is known only once the guest is up).
OWN_ADDRESS = object()


@dataclass(frozen=True)
class ToolsTiming:
    """What the VMware Tools stand-in reports as guest.ipAddress, and when, counted from power-on.

    ip_delay: seconds until the guest's own address (0: as soon as it answers SSH).
    first_address: reported at half ip_delay, before the guest's own: docker0's
    172.17.0.1, an IPv6 link-local or global address.
    restart_after, restart_seconds: that long after its own address, Tools
    restarts: guest.ipAddress is empty for restart_seconds, then back.
    """

    ip_delay: float = 0.0
    first_address: str = None
    restart_after: float = None
    restart_seconds: float = 5.0

    def reports(self):
        """[(seconds after power-on, address: a string, "" for none, or OWN_ADDRESS)], in time order."""
        reports = []
        if self.first_address:
            reports.append((self.ip_delay / 2, self.first_address))
        reports.append((self.ip_delay, OWN_ADDRESS))
        if self.restart_after is not None:
            reports += [(self.ip_delay + self.restart_after, ""),
                        (self.ip_delay + self.restart_after + self.restart_seconds, OWN_ADDRESS)]
        return reports


def _every_vm_filter(service_instance):
    """Every VM's watched properties, by traversal from the root folder.

    Not through a ContainerView: in vcsim v0.56.0 a filter rooted at a view
    deadlocks when the view changes while WaitForUpdatesEx collects (every new
    VM or task changes a view of the root folder). Fixed upstream after v0.56.0
    (govmomi PR #4109); a root-folder filter only takes that path when a
    datacenter is added.
    """
    return vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
            obj=service_instance.content.rootFolder, skip=True, selectSet=_vsphere.vm_traversal())],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=list(WATCHED_PROPERTIES))],
    )


class GuestSimulator:
    """Keeps one guest per powered-on VM of a vcsim, until stopped."""

    def __init__(self, endpoint, ssh_timeout=30.0, network=None, tools=None):
        """network: a GuestNetwork already up, when vcsim listens on its gateway (see Vcsim(host=...)).

        ssh_timeout: seconds for cloud-init's whole boot (it now also makes Ray's users) and sshd, on a
        machine that several test runs share.

        tools: a ToolsTiming, for every VM; default: the guest's address at once.
        """
        self.endpoint = endpoint
        self.tools = tools or ToolsTiming()
        self.ssh_timeout = ssh_timeout
        self.network = network or GuestNetwork()
        self.errors = []
        self._guests = {}
        self._reported = set()     # VMs whose guest's own address is in vcsim
        self._due_reports = {}     # {VM moid: [(monotonic time, address)]} still to make, in time order
        self._vm_properties = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = None
        self._run_dir = None
        self._image_root = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self, timeout=30.0):
        self._image_root = image.image_root()  # built once and cached, like the test OVA
        self._run_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        if self.network.subnet_octet is None:
            self.network.up()
        self._thread = threading.Thread(target=self._watch, name="guest-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise GuestError(f"guest simulator got no first update from vcsim in {timeout} s: {self.errors}")
        if self.errors and not self._thread.is_alive():
            self.stop()
            raise GuestError(f"guest simulator failed: {self.errors[-1]}")

    def stop(self):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for guest in list(self._guests.values()):
            guest.stop()
        self._guests.clear()
        self.network.down()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    @property
    def image_root(self):
        """The cached image every guest's /opt shows."""
        return self._image_root

    def guests(self):
        with self._changed:
            return dict(self._guests)

    def wait_for_guest(self, vm_moid, timeout=30.0):
        """The guest of a VM, once it answers SSH and its IP is in vcsim.

        A guest that booted without an address (its network configuration matched no NIC) is never
        reported: the wait fails after its timeout, saying so.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: vm_moid in self._reported or self.errors, timeout):
                guest = self._guests.get(vm_moid)
                if guest is not None and not guest.address:
                    raise GuestError(
                        f"the guest of VM {vm_moid} booted but has no address after {timeout} s: its network "
                        f"configuration brought up no NIC of MAC {guest.mac} (boot log: {guest.log_tail()})")
                raise GuestError(f"no guest for VM {vm_moid} after {timeout} s")
            if vm_moid not in self._reported:
                raise GuestError(f"guest simulator failed: {self.errors[-1]}")
            return self._guests[vm_moid]

    def wait_for_no_guest(self, vm_moid, timeout=30.0):
        with self._changed:
            if not self._changed.wait_for(lambda: vm_moid not in self._guests, timeout):
                raise GuestError(f"guest of VM {vm_moid} still up after {timeout} s")

    def _watch(self):
        """Follow vcsim until stopped, logging in again whenever vCenter ends the session.

        vCenter ends idle sessions, and every session on a restart
        (NotAuthenticated); a new session starts from a full update, which
        also tells which VMs went away meanwhile.
        """
        try:
            while not self._stopping.is_set():
                service_instance = self.endpoint.connect()
                try:
                    self._follow(service_instance)
                except vim.fault.NotAuthenticated:
                    log.info("guest simulator: vcsim ended the session; logging in again")
                finally:
                    try:
                        vsphere.disconnect(service_instance)
                    except Exception:  # noqa: BLE001 - the session or vcsim may already be gone
                        pass
        except Exception as error:  # noqa: BLE001 - reported through self.errors and wait_for_guest
            log.exception("guest simulator stopped")
            with self._changed:
                self.errors.append(f"watching vcsim: {error!r}")
                self._changed.notify_all()
            self._ready.set()

    def _follow(self, service_instance):
        collector = service_instance.content.propertyCollector
        collector.CreateFilter(_every_vm_filter(service_instance), partialUpdates=False)
        version = ""
        while not self._stopping.is_set():
            update = collector.WaitForUpdatesEx(version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=1))
            if update is not None:
                if not version:  # the full state: forget guests of VMs that are gone
                    present = {object_update.obj._moId for filter_update in update.filterSet
                               for object_update in filter_update.objectSet}
                    for moid in set(self._guests) - present:
                        self._vm_properties.pop(moid, None)
                        self._remove_guest(service_instance, vim.VirtualMachine(moid), report=False)
                    for moid in self._disks() - present:
                        self._destroy_disk(moid)
                version = update.version
                for filter_update in update.filterSet:
                    for object_update in filter_update.objectSet:
                        self._apply(service_instance, object_update)
            self._make_due_reports(service_instance)
            self._ready.set()

    def _apply(self, service_instance, object_update):
        vm = object_update.obj
        moid = vm._moId
        if object_update.kind == "leave":  # destroyed (or moved out of every folder: gone for the hypervisor too)
            self._vm_properties.pop(moid, None)
            self._remove_guest(service_instance, vm, report=False)
            self._destroy_disk(moid)
            return
        props = self._vm_properties.setdefault(moid, {})
        for change in object_update.changeSet:
            if change.op == "assign":
                props[change.name] = change.val
            else:
                props.pop(change.name, None)
        powered_on = props.get("runtime.powerState") == vim.VirtualMachine.PowerState.poweredOn
        try:
            if powered_on and moid not in self._guests:
                self._add_guest(service_instance, vm, props)
            elif not powered_on and moid in self._guests:
                self._remove_guest(service_instance, vm, report=True)
        except vmodl.fault.ManagedObjectNotFound:
            # Destroyed while its guest came up (a deploy undone, a cleanup): as a VM's
            # tools would, the guest goes with it; its "leave" update follows.
            log.info("VM %s was destroyed while its guest came up", moid)
        except Exception as error:  # noqa: BLE001 - one VM's failure must not stop the others
            log.exception("guest of %s", moid)
            with self._changed:
                self.errors.append(f"guest of VM {moid} ({props.get('name')}): {error}")
                self._changed.notify_all()

    def _site_hosts(self):
        """What a site's DNS tells its VMs: the ESXi host NFC uploads go to, where vCenter is reachable from guests.

        On a real site the ESXi hosts have addresses of their own; here vcsim serves the ESXi host on its own
        address too (Vcsim.start), and on loopback for the machine, under the same name and certificate.
        """
        esxi_host, vcenter = self.endpoint.esxi_host, self.endpoint.host
        if not esxi_host or ipaddress.ip_address(vcenter).is_loopback:
            return {}
        return {esxi_host: vcenter}

    def _add_guest(self, service_instance, vm, props):
        # Read what the guest is shown fresh, as of its power-on: guestinfo.ovfEnv
        # is written at power-on, and an update may still be on its way.
        props = dict(props, **vsphere.read_properties(service_instance, vm, WATCHED_PROPERTIES + HARDWARE_PROPERTIES))
        pci_devices = pci.presented_devices(service_instance, vm, props.get("config.hardware.device"),
                                            props.get("runtime.host"))
        slot = self.network.take_slot()
        extra_config = {option.key: option.value for option in props.get("config.extraConfig") or []}
        nics = [device for device in props.get("config.hardware.device") or []
                if isinstance(device, vim.vm.device.VirtualEthernetCard)]
        guest = Guest(
            vm_moid=vm._moId,
            vm_name=props.get("name", vm._moId),
            guestinfo=boot.presented_guestinfo(extra_config),
            system_uuid=props.get("config.uuid") or "",
            slot=slot,
            mac=nics[0].macAddress.lower() if nics else None,
            lease=f"{self.network.address(slot)}/24",
            netns=f"{NETNS_PREFIX}{self.network.tag}-{slot}",
            veth=f"rv{self.network.tag}h{slot}",
            state_dir=self._run_dir / f"guest-{slot}",
            image_root=self._image_root,
            disk_dir=self.disk_dir(vm._moId),
            site_hosts=self._site_hosts(),
            pci_devices=pci_devices,
        )
        powered_on = time.monotonic()
        try:
            guest.start(self.network.bridge, self.ssh_timeout)
        except BaseException:
            guest.stop()
            self.network.give_back(slot, guest.addresses)
            raise
        log.info("guest %s of VM %s up at %s in %.2f s", guest.hostname, vm._moId, guest.address or "no address",
                 guest.bring_up_seconds)
        with self._changed:
            self._guests[vm._moId] = guest
            self._due_reports[vm._moId] = [(powered_on + after, address) for after, address in self.tools.reports()]
            self._changed.notify_all()
        # Made by the watch loop right after this update's other VMs are applied.

    def disk_dir(self, vm_moid):
        """Where a VM's disk is, powered on or off, until the VM is destroyed."""
        return self._run_dir / f"{DISK_PREFIX}{vm_moid}"

    def _disks(self):
        return {path.name[len(DISK_PREFIX):] for path in self._run_dir.glob(f"{DISK_PREFIX}*")}

    def _destroy_disk(self, vm_moid):
        shutil.rmtree(self.disk_dir(vm_moid), ignore_errors=True)

    def _make_due_reports(self, service_instance):
        """Report what Tools would have by now: between updates, the watch loop comes here at least every second."""
        now = time.monotonic()
        for moid in list(self._due_reports):
            reports = self._due_reports[moid]
            while reports and reports[0][0] <= now:
                _, address = reports.pop(0)
                guest = self._guests[moid]
                own = address is OWN_ADDRESS
                try:
                    self._report_guest(service_instance, vim.VirtualMachine(moid, service_instance._stub),
                                       (guest.address or "") if own else address, guest.hostname,
                                       tools_running=own or bool(address))
                except vim.fault.NotAuthenticated:
                    reports.insert(0, (now, address))  # made again on the next session
                    raise
                except Exception as error:  # noqa: BLE001 - one VM's failure must not stop the others
                    reports.clear()
                    if not _destroyed(error):  # destroyed meanwhile: its "leave" update removes the guest
                        log.exception("Tools report of %s", moid)
                        with self._changed:
                            self.errors.append(f"Tools report of VM {moid}: {error}")
                            self._changed.notify_all()
                    break
                with self._changed:
                    if own and guest.address:
                        self._reported.add(moid)
                    else:
                        self._reported.discard(moid)
                    self._changed.notify_all()
            if not reports:
                self._due_reports.pop(moid, None)

    def _remove_guest(self, service_instance, vm, report):
        """Stop a VM's guest; waiters see it gone only once vcsim knows too."""
        guest = self._guests.get(vm._moId)
        self._due_reports.pop(vm._moId, None)
        if guest is None:
            return
        guest.stop()
        self.network.give_back(guest.slot, guest.addresses)
        if report:
            try:
                self._report_guest(service_instance, vm, None, None)
            except (vmodl.fault.ManagedObjectNotFound, RayVsphereError) as error:
                if not _destroyed(error):
                    raise  # else destroyed right after power-off: nothing left to report to
        with self._changed:
            del self._guests[vm._moId]
            self._reported.discard(vm._moId)
            self._changed.notify_all()

    @staticmethod
    def _report_guest(service_instance, vm, address, hostname, tools_running=None):
        """What VMware Tools reports: the guest's IP and hostname, tools running or not.

        Only string-valued `SET.guest.*` paths: vcsim panics on others.
        An empty value clears the property, as on a real power-off or a Tools restart.
        """
        running = bool(address) if tools_running is None else tools_running
        settings = {"SET.guest.ipAddress": address or "", "SET.guest.hostName": hostname if running else "",
                    "SET.guest.toolsRunningStatus": "guestToolsRunning" if running else "guestToolsNotRunning"}
        spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in settings.items()])
        vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(spec))


def _destroyed(error):
    """Whether a report failed because its VM is gone."""
    return isinstance(error, vmodl.fault.ManagedObjectNotFound) or (
        isinstance(error, RayVsphereError) and error.details.get("fault") == "ManagedObjectNotFound")


@contextmanager
def vcsim_with_guests(loopback=False, tools=None, **vcsim_options):
    """(vcsim, GuestSimulator) with vcsim listening on the guests' gateway.

    The host and every guest reach that address: a Ray head in a guest runs
    the NodeProvider against the same vCenter as `ray up` on the host.
    loopback: listen on 127.0.0.1 instead, a fixed address guests cannot reach.
    tools: a ToolsTiming for every guest (default: its address at once).
    """
    network = GuestNetwork()
    network.up()
    try:
        with Vcsim(host="127.0.0.1" if loopback else network.gateway, **vcsim_options) as sim, \
                GuestSimulator(sim.endpoint, network=network, tools=tools) as guests:
            yield sim, guests
    finally:
        network.down()
