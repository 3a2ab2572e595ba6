"""Test guests: a real SSH host behind every powered-on simulated VM.

vcsim models VMs but runs nothing. The GuestSimulator plays the part of the
hypervisor and of VMware Tools: it watches vcsim through the PropertyCollector
(WaitForUpdatesEx) and, when a VM is powered on, brings up a guest for it:

- a network namespace on the testbed's bridge, with its own IPv4 address in
  198.18.0.0/15 (RFC 2544's benchmarking range: never anybody's LAN);
- its own PID, mount and UTS namespaces, so `ray stop` in one guest cannot
  see another guest's processes;
- its own copy-on-write /etc, /home, /var/lib, /var/log and /run
  (overlayfs over the host's), a /tmp and root home of its own, and the node
  image's /opt with Ray in /opt/ray (testbed.image); the checkout, the
  project's virtualenv and the testbed's caches are hidden, so a guest has
  what a user's VM has and nothing more;
- a boot through Debian's real cloud-init with Ubuntu's cloud image settings
  (testbed.guest_boot), reading what vCenter presents through VMware Tools:
  extraConfig's guestinfo.*, among them the guestinfo.ovfEnv vcsim writes
  from the vApp properties at power-on (cloud-init's OVF datasource) and
  guestinfo.metadata (its VMware datasource). cloud-init creates the
  default user `ubuntu`, installs the deployed keys, sets the hostname and
  refuses root, as on Ubuntu's cloud OVA;
- then sshd, under tini as init;

and reports the guest's address and hostname back to vcsim as VMware Tools
would (ReconfigVM with `SET.guest.ipAddress`). Power-off or destroy removes it.
"""

import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyVmomi import vim, vmodl

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from testbed import PROJECT_ROOT, guest_boot, image, vsphere
from testbed.appliance import DEFAULT_CACHE_DIR
from testbed.prereqs import which
from testbed.simulator import Vcsim

log = logging.getLogger(__name__)

GUEST_INIT = Path(__file__).with_name("guest_init.sh")
NETNS_PREFIX = "rvsphere-"
TEMP_PREFIX = "ray-vsphere-guests-"
ADDRESS_PREFIX = "198.18"
FIRST_HOST_OCTET = 10
MAX_GUESTS = 240
# The image's default user, as on Ubuntu's cloud images; root logins are refused.
DEFAULT_USER = "ubuntu"
# The hostname a guest boots with, until cloud-init sets the VM's.
IMAGE_HOSTNAME = "ubuntu"
# Folders every guest has an empty copy of, as separate VMs would.
PRIVATE_FOLDERS = ("/tmp", pwd.getpwuid(0).pw_dir)
# System folders a guest sees copy-on-write over the host's: what cloud-init
# and sshd write (users, keys, sudoers, host keys, instance state, logs).
COPY_ON_WRITE_FOLDERS = ("/etc", "/home", "/var/lib", "/var/log", "/run")
# What a VM could not see: this project's checkout, its virtualenv, the testbed's caches.
HIDDEN_FROM_GUESTS = (PROJECT_ROOT, Path(sys.prefix), DEFAULT_CACHE_DIR)
GUEST_PATH = f"{image.IMAGE_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WATCHED_PROPERTIES = ("name", "runtime.powerState", "config.extraConfig", "config.uuid")


SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR")


class GuestError(RuntimeError):
    pass


def ssh(address, key_path, command, timeout=120, user=DEFAULT_USER):
    """Run `command` in a guest as `user` (the image's default user); the CompletedProcess, output as text."""
    return subprocess.run(["ssh", "-i", str(key_path), *SSH_OPTIONS, f"{user}@{address}", command],
                          capture_output=True, text=True, timeout=timeout)


def make_key_pair(path, comment="ray-vsphere"):
    """A fresh ed25519 key pair without passphrase at path (private, 0600) and path.pub; the private key's path."""
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return Path(path)


def run(*command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise GuestError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result.stdout


class GuestNetwork:
    """A bridge holding the gateway of one /24, and the addresses on it."""

    def __init__(self):
        self.tag = secrets.token_hex(2)
        self.bridge = f"rvb{self.tag}"
        self.subnet_octet = None
        self._free_slots = list(range(MAX_GUESTS))

    @property
    def gateway(self):
        return f"{ADDRESS_PREFIX}.{self.subnet_octet}.1"

    @property
    def cidr(self):
        return f"{ADDRESS_PREFIX}.{self.subnet_octet}.0/24"

    def up(self):
        in_use = set(re.findall(rf"inet {re.escape(ADDRESS_PREFIX)}\.(\d+)\.", run("ip", "-4", "-o", "addr", "show")))
        self.subnet_octet = next(octet for octet in range(1, 255) if str(octet) not in in_use)
        # A bridge without an address of its own takes the lowest MAC among its ports, so removing a
        # guest can change the gateway's MAC under the other guests, whose neighbour entries then
        # black-hole their traffic to vcsim until they go stale. A set address is kept.
        mac = f"02:72:76:00:{self.tag[:2]}:{self.tag[2:]}"
        run("ip", "link", "add", "name", self.bridge, "address", mac, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def down(self):
        if self.subnet_octet is not None:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            self.subnet_octet = None

    def take_slot(self):
        if not self._free_slots:
            raise GuestError(f"all {MAX_GUESTS} guest addresses of {self.cidr} are in use")
        return self._free_slots.pop(0)

    def give_back(self, slot):
        """Forget the slot's MAC and hand its address out last.

        The next guest on that address has a new MAC; a stale neighbour entry
        on the bridge would black-hole its traffic for seconds.
        """
        subprocess.run(["ip", "neigh", "flush", "to", self.address(slot), "dev", self.bridge], capture_output=True)
        self._free_slots.append(slot)

    def address(self, slot):
        return f"{ADDRESS_PREFIX}.{self.subnet_octet}.{FIRST_HOST_OCTET + slot}"


@dataclass
class Guest:
    """One test guest; `start` and `stop` are called by the GuestSimulator."""

    vm_moid: str
    vm_name: str
    guestinfo: dict
    system_uuid: str
    slot: int
    address: str
    netns: str
    veth: str
    state_dir: Path
    image_root: Path
    hostname: str = IMAGE_HOSTNAME
    bring_up_seconds: float = 0.0
    _process: subprocess.Popen = field(default=None, repr=False)

    @property
    def etc_dir(self):
        return self.state_dir / "etc"

    def private_copy(self, folder):
        """The guest's own copy of a folder it must not share (/tmp, root's home)."""
        return self.state_dir / "private" / folder.strip("/").replace("/", "_")

    def start(self, bridge, ssh_timeout=15.0):
        started = time.monotonic()
        self._write_files()
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        run("ip", "link", "set", self.veth, "master", bridge, "up")
        run("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        run("ip", "-n", self.netns, "link", "set", "eth0", "up")
        run("ip", "-n", self.netns, "link", "set", "lo", "up")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        init_log = open(self.etc_dir / "init.log", "wb")
        self._process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns,
             "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc", "--mount", "--uts",
             "--propagation", "private",
             "/bin/sh", str(GUEST_INIT), IMAGE_HOSTNAME, str(self.etc_dir / "hosts"),
             *self._mount_arguments(), "--boot", str(self.etc_dir / "bin"), str(self.etc_dir / "cloud-init.out"),
             "--", which("sshd"), "-D", "-E", str(self.etc_dir / "sshd.log")],
            stdin=subprocess.DEVNULL, stdout=init_log, stderr=init_log,
            # A session of its own: signals for the testbed's process group
            # (Ctrl-C, a runner stopping its children) must not reach guests.
            start_new_session=True,
        )
        init_log.close()
        self._wait_for_ssh(ssh_timeout)
        self.hostname = self._booted_hostname()
        self.bring_up_seconds = time.monotonic() - started

    def _booted_hostname(self):
        """The hostname cloud-init gave the guest, as VMware Tools reports it."""
        init_pid = _first_child(self._process.pid)
        return run("nsenter", "--target", str(init_pid), "--uts", "hostname").strip()

    def overlay_state(self, folder):
        return self.state_dir / "overlay" / folder.strip("/").replace("/", "_")

    def _write_files(self):
        self.etc_dir.mkdir(parents=True, mode=0o700)
        for folder in PRIVATE_FOLDERS:
            copy = self.private_copy(folder)
            copy.mkdir(parents=True)
            copy.chmod(Path(folder).stat().st_mode & 0o7777)
        for folder in (*COPY_ON_WRITE_FOLDERS, image.GUEST_OPT):
            for layer in ("upper", "work"):
                (self.overlay_state(folder) / layer).mkdir(parents=True)
        # What the image brings in /etc, written into the guest's own layer.
        etc = self.overlay_state("/etc") / "upper"
        image_files = {
            "cloud/cloud.cfg.d/90_ray_vsphere_image.cfg": guest_boot.CLOUD_CONFIG,
            # Ray's command runner starts `bash --login`, whose /etc/profile resets PATH.
            "profile.d/ray-image.sh": f'export PATH="{image.IMAGE_BIN}:$PATH"\n',
            "ssh/sshd_config.d/50-ray-image.conf": (
                f"ListenAddress {self.address}\n"
                "PasswordAuthentication no\n"
                # Commands over SSH (Ansible's, ray exec's) find the image's Ray.
                f"SetEnv PATH={GUEST_PATH}\n"),
        }
        for relative, text in image_files.items():
            (etc / relative).parent.mkdir(parents=True, exist_ok=True)
            (etc / relative).write_text(text)
        (self.etc_dir / "hosts").write_text(f"127.0.0.1\tlocalhost\n{self.address}\t{self.vm_name}\n")
        store = self.etc_dir / "guestinfo"
        store.mkdir()
        for key, value in self.guestinfo.items():
            (store / key).write_text(value)
        stand_ins = self.etc_dir / "bin"
        stand_ins.mkdir()
        for name, script in guest_boot.STAND_INS.items():
            (stand_ins / name).write_text(script.format(store=store, system_uuid=self.system_uuid))
            (stand_ins / name).chmod(0o755)

    def _mount_arguments(self):
        """guest_init.sh's --private, --keep, --overlay and --hide arguments.

        Kept: the guest's own files (guestinfo, stand-ins, logs), which live
        in the testbed's temp folder.
        """
        arguments = []
        for folder in COPY_ON_WRITE_FOLDERS:
            arguments += ["--overlay", folder, folder, str(self.overlay_state(folder))]
        # The copies live in state_dir: the folder holding it is covered last.
        for folder in sorted(PRIVATE_FOLDERS, key=lambda folder: self.state_dir.is_relative_to(folder)):
            arguments += ["--private", folder, str(self.private_copy(folder))]
        arguments += ["--keep", str(self.etc_dir.resolve())]
        arguments += ["--overlay", image.GUEST_OPT, str(self.image_root), str(self.overlay_state(image.GUEST_OPT))]
        for path in HIDDEN_FROM_GUESTS:
            arguments += ["--hide", str(Path(path).resolve())]
        return arguments

    def _wait_for_ssh(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise GuestError(f"guest {self.hostname}: sshd exited: {self.log_tail()}")
            try:
                with socket.create_connection((self.address, 22), timeout=0.5) as connection:
                    if connection.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.02)
        raise GuestError(f"guest {self.hostname}: sshd not answering on {self.address}:22 after {timeout} s")

    def log_tail(self, lines=10):
        text = ""
        for name in ("init.log", "cloud-init.out", "sshd.log"):
            path = self.etc_dir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(no log)"

    def stop(self):
        """End every process of the guest, then its namespace and files.

        Killing PID 1 of the guest's PID namespace makes the kernel kill and
        reap every process in it (Ray included) before `unshare` returns.
        """
        if self._process is not None:
            init_pid = _first_child(self._process.pid)
            if init_pid is not None:
                _kill(init_pid)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        # Deleting one end removes the veth pair at once; a namespace's own
        # links go only when the kernel frees it, some time after `netns del`.
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def _first_child(pid):
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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

    def __init__(self, endpoint, ssh_timeout=15.0, network=None):
        """network: a GuestNetwork already up, when vcsim listens on its gateway (see Vcsim(host=...))."""
        self.endpoint = endpoint
        self.ssh_timeout = ssh_timeout
        self.network = network or GuestNetwork()
        self.errors = []
        self._guests = {}
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
        """The guest of a VM, once it answers SSH and its IP is in vcsim."""
        with self._changed:
            if not self._changed.wait_for(lambda: vm_moid in self._guests or self.errors, timeout):
                raise GuestError(f"no guest for VM {vm_moid} after {timeout} s")
            if vm_moid not in self._guests:
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
                version = update.version
                for filter_update in update.filterSet:
                    for object_update in filter_update.objectSet:
                        self._apply(service_instance, object_update)
            self._ready.set()

    def _apply(self, service_instance, object_update):
        vm = object_update.obj
        moid = vm._moId
        if object_update.kind == "leave":
            self._vm_properties.pop(moid, None)
            self._remove_guest(service_instance, vm, report=False)
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

    def _add_guest(self, service_instance, vm, props):
        # Read what the guest is shown fresh, as of its power-on: guestinfo.ovfEnv
        # is written at power-on, and an update may still be on its way.
        props = dict(props, **vsphere.read_properties(service_instance, vm, WATCHED_PROPERTIES))
        slot = self.network.take_slot()
        extra_config = {option.key: option.value for option in props.get("config.extraConfig") or []}
        guest = Guest(
            vm_moid=vm._moId,
            vm_name=props.get("name", vm._moId),
            guestinfo=guest_boot.presented_guestinfo(extra_config),
            system_uuid=props.get("config.uuid") or "",
            slot=slot,
            address=self.network.address(slot),
            netns=f"{NETNS_PREFIX}{self.network.tag}-{slot}",
            veth=f"rv{self.network.tag}h{slot}",
            state_dir=self._run_dir / f"guest-{slot}",
            image_root=self._image_root,
        )
        try:
            guest.start(self.network.bridge, self.ssh_timeout)
            self._report_guest(service_instance, vm, guest.address, guest.hostname)
        except BaseException:
            guest.stop()
            self.network.give_back(slot)
            raise
        log.info("guest %s of VM %s up at %s in %.2f s", guest.hostname, vm._moId, guest.address,
                 guest.bring_up_seconds)
        with self._changed:
            self._guests[vm._moId] = guest
            self._changed.notify_all()

    def _remove_guest(self, service_instance, vm, report):
        """Stop a VM's guest; waiters see it gone only once vcsim knows too."""
        guest = self._guests.get(vm._moId)
        if guest is None:
            return
        guest.stop()
        self.network.give_back(guest.slot)
        if report:
            try:
                self._report_guest(service_instance, vm, None, None)
            except vmodl.fault.ManagedObjectNotFound:
                pass  # destroyed right after power-off: nothing left to report to
            except RayVsphereError as error:
                if error.details.get("fault") != "ManagedObjectNotFound":
                    raise
        with self._changed:
            del self._guests[vm._moId]
            self._changed.notify_all()

    @staticmethod
    def _report_guest(service_instance, vm, address, hostname):
        """What VMware Tools reports: the guest's IP and hostname, tools running or not.

        Only string-valued `SET.guest.*` paths: vcsim panics on others.
        """
        if address is None:  # an empty value clears the property, as on a real power-off
            settings = {"SET.guest.ipAddress": "", "SET.guest.hostName": "",
                        "SET.guest.toolsRunningStatus": "guestToolsNotRunning"}
        else:
            settings = {
                "SET.guest.ipAddress": address,
                "SET.guest.hostName": hostname,
                "SET.guest.toolsRunningStatus": "guestToolsRunning",
            }
        spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in settings.items()])
        vsphere.wait_for_task(service_instance, vm.ReconfigVM_Task(spec))


@contextmanager
def vcsim_with_guests(loopback=False, **vcsim_options):
    """(vcsim, GuestSimulator) with vcsim listening on the guests' gateway.

    The host and every guest reach that address: a Ray head in a guest runs
    the NodeProvider against the same vCenter as `ray up` on the host.
    loopback: listen on 127.0.0.1 instead, a fixed address guests cannot reach.
    """
    network = GuestNetwork()
    network.up()
    try:
        with Vcsim(host="127.0.0.1" if loopback else network.gateway, **vcsim_options) as sim, GuestSimulator(sim.endpoint, network=network) as guests:
            yield sim, guests
    finally:
        network.down()
