"""One test guest: what a VM of the node image would be, in namespaces of the host.

- a network namespace on the guests' bridge (testbed.guests.net) whose one
  NIC is the VM's: a veth named ens192 (vmxnet3's name on Ubuntu) with the
  VM's MAC from vcsim, down until the guest's own network configuration
  brings it up; the guest sets its address itself (testbed.guests.boot), and
  `address` is what it ended up with, read from its namespace;
- its own PID, mount and UTS namespaces, so `ray stop` in one guest cannot
  see another guest's processes;
- its own disk: a root that is the machine's, copy-on-write (overlayfs
  over /, pivot_root into it), so whatever its root writes, in /usr, /var,
  /srv or anywhere, stays in the guest, as on a VM; a /tmp and root home of
  its own; its own /dev, /dev/shm, /proc and a read-only /sys; the
  node image's /opt with Ray in /opt/ray (testbed.image); the checkout, the
  project's virtualenv and the testbed's caches are hidden, so a guest has
  what a user's VM has and nothing more;
- a boot through Debian's real cloud-init with Ubuntu's cloud image settings
  (testbed.guests.boot): cloud-init creates the default user `ubuntu`,
  installs the deployed keys, sets the hostname and refuses root, as on
  Ubuntu's cloud OVA; then sshd, under tini as init (guest_init.sh).

The disk (disk_dir: the overlays' upper layers, root's home) is the VM's, not
the boot's: a power-off keeps it, the next power-on boots from it, as a VM
boots from its VMDK, and only the VM's destroy removes it (GuestSimulator).
What a reboot clears on a VM is cleared at each boot: /tmp (tmpfs or
systemd-tmpfiles) and what the guest wrote to /run (a tmpfs). So cloud-init
finds its instance state in /var/lib/cloud and, for the same instance-id,
does not run its per-instance modules (users, SSH keys, host keys) again.
Everything else of a boot (the Tools channel, logs) is state_dir's, removed
at power-off.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed import PROJECT_ROOT, image
from testbed.appliance import DEFAULT_CACHE_DIR
from testbed.guests import boot, pci
from testbed.guests.commands import GuestError, run
from testbed.prereqs import which

GUEST_INIT = Path(__file__).with_name("guest_init.sh")
# The hostname a guest boots with, until cloud-init sets the VM's.
IMAGE_HOSTNAME = "ubuntu"
# Folders every guest has an empty copy of, as separate VMs would; the rest
# of its root is the machine's, copy-on-write.
PRIVATE_FOLDERS = ("/tmp", pwd.getpwuid(0).pw_dir)
# Where a guest sees its own files of the testbed (guestinfo, the Tools
# stand-ins, boot and sshd logs): its one window onto the machine, as a VM's
# is VMware Tools' channel to its host.
TOOLS_CHANNEL = "/run/ray-vsphere-testbed"
# What a VM could not see: this project's checkout, its virtualenv, the testbed's caches.
HIDDEN_FROM_GUESTS = (PROJECT_ROOT, Path(sys.prefix), DEFAULT_CACHE_DIR)
GUEST_PATH = f"{image.IMAGE_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The VM's NIC as the guest's kernel names it: vmxnet3 in PCI slot 192, as on Ubuntu's vSphere VMs.
NIC_NAME = "ens192"


@dataclass
class Guest:
    """One test guest; `start` and `stop` are called by the GuestSimulator."""

    vm_moid: str
    vm_name: str
    guestinfo: dict
    system_uuid: str
    slot: int
    mac: str                  # the VM's NIC's, from vcsim; None: the VM has no NIC
    lease: str                # "ADDRESS/PREFIX": what the testbed's DHCP server offers that MAC
    netns: str
    veth: str
    state_dir: Path
    image_root: Path
    disk_dir: Path = None     # default: state_dir / "disk", a disk that goes with the boot

    hostname: str = IMAGE_HOSTNAME
    # {name: address} the site's DNS answers: the ESXi host an OVF import uploads to, say.
    site_hosts: dict = field(default_factory=dict)
    # The passthrough devices vCenter gave the VM, as its host bound them at power-on (testbed.guests.pci).
    pci_devices: list = field(default_factory=list)
    bring_up_seconds: float = 0.0
    # What the guest's network configuration gave it, read from its namespace after boot: the global
    # addresses of its NICs, IPv4 first; address is the first (None: the guest has none).
    addresses: list = field(default_factory=list)
    _process: subprocess.Popen = field(default=None, repr=False)

    @property
    def etc_dir(self):
        """The guest's files of the testbed on the machine; the guest sees them at TOOLS_CHANNEL."""
        return self.state_dir / "etc"

    def in_guest(self, path):
        """Where the guest sees a path of etc_dir."""
        return f"{TOOLS_CHANNEL}/{Path(path).relative_to(self.etc_dir)}"

    @property
    def disk(self):
        return self.disk_dir or self.state_dir / "disk"

    def private_copy(self, folder):
        """The guest's own copy of a folder it must not share (/tmp, root's home)."""
        return self.disk / "private" / folder.strip("/").replace("/", "_")

    @property
    def address(self):
        return self.addresses[0] if self.addresses else None

    def start(self, bridge, ssh_timeout=15.0):
        """Boot the guest; then, if its network configuration gave it an address, wait for its sshd there.

        A guest left without an address (its configuration matched no NIC) is up all the same, as such a VM is.
        """
        started = time.monotonic()
        deadline = started + ssh_timeout
        self._write_files()
        run("ip", "netns", "add", self.netns)
        run("ip", "-n", self.netns, "link", "set", "lo", "up")  # as systemd does at boot, before any network config
        if self.mac:
            run("ip", "link", "add", self.veth, "type", "veth",
                "peer", "name", NIC_NAME, "address", self.mac, "netns", self.netns)
            run("ip", "link", "set", self.veth, "master", bridge, "up")
        init_log = open(self.etc_dir / "init.log", "wb")
        self._process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns,
             "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc", "--mount", "--uts",
             "--propagation", "private",
             "/bin/sh", str(GUEST_INIT), self._boot_hostname(), str(self.etc_dir / "hosts"),
             *self._mount_arguments(),
             "--boot", self.in_guest(self.etc_dir / "bin"), self.in_guest(self.etc_dir / "cloud-init.out"),
             self.in_guest(self.etc_dir / "booted"),
             "--", which("sshd"), "-D", "-E", self.in_guest(self.etc_dir / "sshd.log")],
            stdin=subprocess.DEVNULL, stdout=init_log, stderr=init_log,
            # A session of its own: signals for the testbed's process group
            # (Ctrl-C, a runner stopping its children) must not reach guests.
            start_new_session=True,
        )
        init_log.close()
        self._wait_for_boot(deadline, ssh_timeout)
        self.addresses = self.own_addresses()
        self._write_hosts()
        if self.address:
            self._wait_for_ssh(deadline, ssh_timeout)
        self.hostname = self._booted_hostname()
        self.bring_up_seconds = time.monotonic() - started

    def own_addresses(self):
        """The global addresses the guest's NICs have, as VMware Tools reads them in a VM: IPv4 first."""
        listed = run("ip", "-n", self.netns, "-o", "addr", "show", "scope", "global")
        addresses = [line.split()[3].split("/")[0] for line in listed.splitlines()
                     if line.split()[2] in ("inet", "inet6")]
        return sorted(addresses, key=lambda address: ":" in address)

    def _boot_hostname(self):
        """What the guest's init sets before cloud-init runs: its own /etc/hostname, as systemd does at boot.

        The file is the guest's once cloud-init wrote it at an earlier boot (set_hostname); cloud-init skips a
        hostname it already set, so without this a restarted node would keep the image's.
        """
        written = self.overlay_state("/") / "upper" / "etc" / "hostname"
        return (written.read_text().strip() if written.is_file() else "") or IMAGE_HOSTNAME

    def _booted_hostname(self):
        """The hostname cloud-init gave the guest, as VMware Tools reports it."""
        init_pid = _first_child(self._process.pid)
        return run("nsenter", "--target", str(init_pid), "--uts", "hostname").strip()

    def overlay_state(self, folder):
        return self.disk / "overlay" / (folder.strip("/").replace("/", "_") or "root")

    def _prepare_disk(self):
        """A new disk at the first boot; at a later one, the disk as the last left it, less what a reboot clears."""
        self.disk.mkdir(parents=True, mode=0o700, exist_ok=True)
        for folder in PRIVATE_FOLDERS:
            copy = self.private_copy(folder)
            if folder == "/tmp":
                shutil.rmtree(copy, ignore_errors=True)
            copy.mkdir(parents=True, exist_ok=True)
            copy.chmod(Path(folder).stat().st_mode & 0o7777)
        shutil.rmtree(self.overlay_state("/") / "upper" / "run", ignore_errors=True)
        for folder in ("/", image.GUEST_OPT):
            for layer in ("upper", "work"):
                (self.overlay_state(folder) / layer).mkdir(parents=True, exist_ok=True)
        (self.overlay_state("/") / "merged").mkdir(exist_ok=True)
        (self.overlay_state("/") / "upper").chmod(Path("/").stat().st_mode & 0o7777)  # the root's mode, not umask's

    def _write_files(self):
        self.etc_dir.mkdir(parents=True, mode=0o700)
        self._prepare_disk()
        # What the image brings, written into the guest's own layer (again at every boot).
        leases = self.etc_dir / boot.LEASES_FOLDER
        image_files = {
            "/etc/cloud/cloud.cfg.d/90_ray_vsphere_image.cfg": boot.CLOUD_CONFIG,
            "/etc/network/interfaces": boot.NETWORK_INTERFACES,
            "/etc/resolv.conf": boot.RESOLV_CONF,
            # Ray's command runner starts `bash --login`, whose /etc/profile resets PATH.
            "/etc/profile.d/ray-image.sh": f'export PATH="{image.IMAGE_BIN}:$PATH"\n',
            # No ListenAddress: the guest's address is its network configuration's, known after boot. In
            # its own network namespace sshd's wildcard reaches the guest's NIC and loopback only.
            "/etc/ssh/sshd_config.d/50-ray-image.conf": (
                "PasswordAuthentication no\n"
                # Commands over SSH (Ansible's, ray exec's) find the image's Ray.
                f"SetEnv PATH={GUEST_PATH}\n"),
        }
        for path, text in image_files.items():
            _write_into_layer(self.overlay_state("/") / "upper", path, text)
        # /sbin is a link to /usr/sbin on Debian 12: written where it points, the layer keeps the link.
        _write_into_layer(self.overlay_state("/") / "upper", str(Path(boot.DHCLIENT_PATH).resolve()),
                          boot.DHCLIENT.format(leases=self.in_guest(leases)), mode=0o755)
        leases.mkdir()
        if self.mac:
            (leases / self.mac.lower()).write_text(f"{self.lease}\n")
        # A GPU node's image has NVIDIA's driver; what it finds on the PCI bus is this boot's, in /run.
        _write_into_layer(self.overlay_state("/") / "upper", pci.NVIDIA_SMI_PATH, pci.nvidia_smi(), mode=0o755)
        for path, text in pci.guest_files(self.pci_devices).items():
            _write_into_layer(self.overlay_state("/") / "upper", path, text)
        self._write_hosts()
        store = self.etc_dir / "guestinfo"
        store.mkdir()
        for key, value in self.guestinfo.items():
            (store / key).write_text(value)
        stand_ins = self.etc_dir / "bin"
        stand_ins.mkdir()
        for name, script in boot.STAND_INS.items():
            (stand_ins / name).write_text(script.format(store=self.in_guest(store), system_uuid=self.system_uuid))
            (stand_ins / name).chmod(0o755)

    def _mount_arguments(self):
        """guest_init.sh's --root, --overlay, --private, --channel and --hide arguments."""
        arguments = ["--root", str(self.overlay_state("/"))]
        arguments += ["--overlay", image.GUEST_OPT, str(self.image_root), str(self.overlay_state(image.GUEST_OPT))]
        for folder in PRIVATE_FOLDERS:
            arguments += ["--private", folder, str(self.private_copy(folder))]
        arguments += ["--channel", str(self.etc_dir), TOOLS_CHANNEL]
        for path in HIDDEN_FROM_GUESTS:
            arguments += ["--hide", str(Path(path).resolve())]
        return arguments

    def _write_hosts(self):
        """The guest's /etc/hosts (bind-mounted: rewritten in place once its address is known)."""
        own = f"{self.address}\t{self.vm_name}\n" if self.address else ""
        (self.etc_dir / "hosts").write_text(f"127.0.0.1\tlocalhost\n{own}" + "".join(
            f"{address}\t{name}\n" for name, address in self.site_hosts.items()))

    def _wait_for_boot(self, deadline, timeout):
        """Until the guest's init has run cloud-init and ifupdown (it marks the end of its boot)."""
        while not (self.etc_dir / "booted").exists():
            if self._process.poll() is not None:
                raise GuestError(f"guest {self.vm_name}: init exited while booting: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise GuestError(f"guest {self.vm_name}: still booting after {timeout} s: {self.log_tail()}")
            time.sleep(0.02)

    def _wait_for_ssh(self, deadline, timeout):
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
        """End every process of the guest, then its namespace and the boot's files (its disk_dir stays).

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


def _write_into_layer(upper, path, text, mode=0o644):
    """Write a file of the image into an overlay's upper layer, its new folders as the machine's."""
    target = upper / path.lstrip("/")
    missing = [parent for parent in target.parents if parent != upper and parent.is_relative_to(upper)
               and not parent.exists()]
    for folder in reversed(missing):
        machine = Path("/", folder.relative_to(upper))
        folder.mkdir()
        folder.chmod(machine.stat().st_mode & 0o7777 if machine.is_dir() else 0o755)
    target.write_text(text)
    target.chmod(mode)


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
