"""Start and stop vcsim, shaped like a small real site.

The site: one datacenter DC0 with two clusters of three hosts (DC0_C0,
DC0_C1), a child resource pool in each, two datastores (LocalDS_0/1), the
standard "VM Network" plus a distributed port group (DC0_DVPG0), a VM folder
for Ray nodes and a few powered-off VMs that belong to nobody's Ray cluster.

vcsim serves a certificate of a CA of its own (testbed/pki.py), made for the
address it listens on, and every client verifies it against that CA, as
clients of a real vCenter trust its internal CA. NFC uploads go, as on a
vCenter, to an ESXi host: a name of its own on loopback, with a certificate of
a second, VMCA-like CA (testbed/vcsim/nfc_host.go); the CA file handed to
clients is a bundle of both (Endpoint.ca_path). With
RAY_VSPHERE_VCSIM_TRACE_DIR set (the test session sets it), every vcsim
records the vSphere methods it serves into that folder (method_trace.py).
"""

import dataclasses
import functools
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pyVmomi import vim

from testbed import VCSIM_BIN
from testbed import gpus, method_trace, pki, prepare, privileges, vsphere

SITE_FLAGS = {
    "-dc": 1,
    "-cluster": 2,
    "-host": 3,
    "-standalone-host": 0,
    "-ds": 2,
    "-pool": 1,
    "-pg": 1,
    "-vm": 1,  # per resource pool: VMs that are nobody's Ray nodes
    "-autostart": "false",
}
DATACENTER = "DC0"
CLUSTERS = ("DC0_C0", "DC0_C1")
DATASTORES = ("LocalDS_0", "LocalDS_1")
NETWORK = "VM Network"
PORT_GROUP = "DC0_DVPG0"
VM_FOLDER = "ray"
DEFAULT_USERNAME = "administrator@vsphere.local"
# The second account every vcsim accepts (testbed/vcsim/users.go): the one an
# operator makes for a Ray head's autoscaler (docs/security.md).
AUTOSCALER_USERNAME = "ray-autoscaler@vsphere.local"
# As an administrator grants it (playbooks/vcenter_prepare.yml's vcenter_prepare_autoscaler_principal).
AUTOSCALER_PRINCIPAL = "VSPHERE.LOCAL\\ray-autoscaler"
# Where the testbed's clusters go, and so where the autoscaler account gets its role.
RESOURCE_POOL = "DC0_C0_RP1"
TEMP_PREFIX = "ray-vsphere-vcsim-"
# What the testbed gives playbooks/vcenter_prepare.yml, as an administrator gives it for the testbed's clusters.
PREPARE_VARIABLES = {
    "vcenter_prepare_autoscaler_principal": AUTOSCALER_PRINCIPAL,
    "vcenter_prepare_datacenter": DATACENTER,
    "vcenter_prepare_vm_folder": VM_FOLDER,
    "vcenter_prepare_cluster": CLUSTERS[0],
    "vcenter_prepare_resource_pool": RESOURCE_POOL,
    "vcenter_prepare_datastore": DATASTORES[0],
    "vcenter_prepare_network": NETWORK,
}
# The ESXi host name NFC lease URLs carry. RFC 6761 keeps *.localhost on
# loopback; resolvers with systemd-resolved or nss-myhostname answer it. Where
# the resolver does not (glibc with `hosts: files dns`), the machine's own
# name, which /etc/hosts maps to loopback on Debian-like systems (127.0.1.1)
# and in containers, serves. Either way nothing is written to /etc/hosts, so
# a killed test run leaves nothing there, and no second process races on it.
ESXI_HOST_NAME = "esxi-nfc.localhost"


def loopback_addresses(name):
    """The addresses name resolves to, IPv4 first, if all are loopback; [] if it does not resolve or leaves loopback."""
    try:
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    addresses = sorted(set(info[4][0] for info in found), key=lambda address: (":" in address, address))
    return addresses if all(ipaddress.ip_address(address).is_loopback for address in addresses) else []


@functools.lru_cache(maxsize=None)  # one resolver round per process, not one per vcsim
def esxi_host():
    """(name, loopback addresses) for the NFC host: a name of its own that resolves to loopback only here."""
    for name in (ESXI_HOST_NAME, socket.gethostname()):
        addresses = loopback_addresses(name)
        if addresses:
            return name, tuple(addresses)
    raise VcsimError(f"neither {ESXI_HOST_NAME} nor this machine's name {socket.gethostname()!r} resolves to a "
                     f"loopback address only, so the testbed has no name for its ESXi host: add "
                     f"'127.0.1.1 {socket.gethostname()}' to /etc/hosts, as Debian's installer does")


def default_placement(service_instance):
    """Where the testbed puts VMs: the import_ova keyword arguments."""
    return {
        "resource_pool": vsphere.find_by_name(service_instance, vim.ResourcePool, RESOURCE_POOL),
        "datastore": vsphere.find_by_name(service_instance, vim.Datastore, DATASTORES[0]),
        "folder": vsphere.find_by_name(service_instance, vim.Folder, VM_FOLDER),
        "network": vsphere.find_by_name(service_instance, vim.Network, NETWORK),
    }


class VcsimError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    """How to reach one vCenter, in the form of AWX's VMware credential."""

    host: str
    port: int
    username: str
    password: str
    # The CA that signed vcsim's certificate: trusted as a user trusts an internal CA.
    ca_path: Path
    # The Ray head's own account, given to `ray up` as the operator gives it (ray_provider.config.HEAD_ACCOUNT_VARIABLES).
    head_username: str = None
    head_password: str = None
    # The CA of vCenter's certificate alone: ca_path is a bundle of it and the ESXi hosts' CA.
    vcenter_ca_path: Path = None
    # The ESXi host name NFC lease URLs carry.
    esxi_host: str = None

    @property
    def url(self):
        return f"https://{self.host}:{self.port}/sdk"

    def environment(self):
        environment = {
            "VMWARE_HOST": self.host,
            "VMWARE_PORT": str(self.port),
            "VMWARE_USER": self.username,
            "VMWARE_PASSWORD": self.password,
            "VMWARE_VALIDATE_CERTS": "true",
            "VMWARE_CA_PATH": str(self.ca_path),
        }
        if self.head_username:
            environment.update(RAY_VSPHERE_HEAD_USER=self.head_username, RAY_VSPHERE_HEAD_PASSWORD=self.head_password)
        return environment

    def ssl_context(self):
        return vsphere.ssl_context(self.ca_path)

    def connect(self):
        return vsphere.connect(self.host, self.port, self.username, self.password, self.ca_path)


class Vcsim:
    """One vcsim process on a free loopback port, stopped with its temp folders.

    vcsim runs with -stdinexit on a pipe, so it also dies with this process;
    its datastore folders live under a TMPDIR of its own, removed on stop even
    when vcsim had to be killed.
    """

    def __init__(self, *, username=DEFAULT_USERNAME, password=None, autoscaler_password=None, method_delay=None,
                 vms_per_pool=1, start_timeout=60.0, port=0, host="127.0.0.1",
                 lease_timeout=None, session_idle_timeout=None, host_cost_limit=None, trace_methods=None,
                 prepared=True, log_failed_logins=False, fail_clone=None, fail_import=None,
                 faults=None, stall_seconds=None, enforce_permissions=False, stall_session_after=None,
                 esxi_host_name=None, nfc_fault=None, latency_ms=None, vm_extra_config=0, api_version=None):
        """host: where vcsim listens; a guest network's gateway lets guests (a Ray head) reach it too.

        lease_timeout, session_idle_timeout (seconds) and host_cost_limit
        (provisioning cost units per host): vcsim's vCenter-like defaults
        (300 s, 30 min, 16; testbed/vcsim) unless given, e.g. short for a test.
        trace_methods: a file to record the served methods in; default
        RAY_VSPHERE_VCSIM_TRACE_DIR's session trace, if that is set.
        prepared: as after playbooks/vcenter_prepare.yml (custom attribute
        definitions, the roles, the autoscaler account's grants), which the testbed runs
        (testbed/prepare.py); false for a vCenter nobody prepared.
        log_failed_logins: vcsim logs each rejected login (see failed_logins()).
        fail_clone: a regular expression; CloneVM_Task to a matching name fails (testbed/vcsim/faults.go).
        fail_import: a regular expression; HttpNfcLeaseComplete of an import of a matching VM name fails.
        faults: [(kind, "Method[+field]", regex)], kind one of "fail", "stall" (answered after
        stall_seconds) and "drop-reply" (executed, then the connection closed unanswered): for the calls
        whose target's name (the VM made, imported, watched or called) matches (testbed/vcsim/faults.go).
        autoscaler_password: of the second account, AUTOSCALER_USERNAME (default: random), which
        the endpoint's environment gives `ray up` for the head (RAY_VSPHERE_HEAD_USER/_PASSWORD).
        Prepared, it has the autoscaler role on the testbed's placement (VM_FOLDER, RESOURCE_POOL,
        the first datastore, NETWORK) and ReadOnly on the datacenter, as vcenter_prepare.yml grants it.
        enforce_permissions: vcsim checks the privileges of accounts given a role, as vCenter
        does (NoPermission; testbed/vcsim/permissions.go), from testbed/vsphere_method_privileges.yml.
        stall_session_after: (method, VM name regex, milliseconds): the first session calling method on a
        matching VM gets no answer to its later calls, others are served (testbed/vcsim/stall.go).
        esxi_host_name: the host name NFC lease URLs carry (default: esxi_host()'s); one that does not
        resolve makes the ESXi host unreachable by name. nfc_fault: "refuse" (the URL's port refuses
        connections) or "reset" (uploads are reset half-way) (testbed/vcsim/nfc_host.go).
        latency_ms: {method: milliseconds}, e.g. {"WaitForUpdatesEx": 50}: each call of method reaches vcsim
        that late, as across a network between client and vCenter (testbed/vcsim/latency.go).
        vm_extra_config: extraConfig keys of a real VM given to every model VM (-vm of vms_per_pool), 57
        of them about 6 KiB, guestinfo for cloud-init included (testbed/vcsim/extra_config.go); 0: vcsim's one.
        api_version: the vSphere API version vcsim announces (default govmomi's 6.5); about.version
        and fullName follow it (testbed/vcsim/about.go).
        """
        self.esxi_host_name = esxi_host_name
        self.nfc_fault = nfc_fault
        self._esxi = None
        self._esxi_certificate = None
        self.latency_ms = dict(latency_ms or {})
        self.vm_extra_config = vm_extra_config
        self.api_version = api_version
        self.stall_session_after = stall_session_after
        self.log_failed_logins = log_failed_logins
        self.fail_clone = fail_clone
        self.fail_import = fail_import
        self.faults = list(faults or [])
        self.stall_seconds = stall_seconds
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.autoscaler_username = AUTOSCALER_USERNAME
        self.autoscaler_password = autoscaler_password or secrets.token_urlsafe(12)
        self.method_delay = method_delay or {}
        self.vms_per_pool = vms_per_pool
        self.start_timeout = start_timeout
        self.port = port
        self.host = host
        self.strict_flags = {"-lease-timeout": lease_timeout, "-session-idle-timeout": session_idle_timeout,
                             "-host-cost-limit": host_cost_limit}
        self.trace_methods = trace_methods or method_trace.session_trace_file()
        self.prepared = prepared
        self.enforce_permissions = enforce_permissions
        self.ca = None
        self.endpoint = None
        self.startup_seconds = None
        # Prepared: the record of the vcenter_prepare.yml run whose result this vcsim was given (testbed/prepare.py).
        self.prepare_record = None
        self._process = None
        self._temp_dir = None
        self._certificate = None
        self._ca_bundle = None
        self._users_file = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def command(self):
        flags = {**SITE_FLAGS, "-vm": self.vms_per_pool}
        command = [str(VCSIM_BIN), "-l", f"{self.host}:{self.port}", "-stdinexit",
                   *(f"{flag}={value}" for flag, value in flags.items()),
                   "-username", self.username, "-password", self.password,
                   # Every testbed vcsim has the fake GPU hosts of testbed/gpu_hosts.yml (testbed/vcsim/gpu.go).
                   "-gpu-hosts", str(Path(self._temp_dir, "gpu-hosts.json"))]
        if self._users_file is not None:
            command += ["-users", str(self._users_file)]
        if self.enforce_permissions:
            command += ["-enforce-permissions", str(Path(self._temp_dir, "enforced-privileges.json"))]
        for flag, value in self.strict_flags.items():
            if value is not None:
                command.append(f"{flag}={value}s" if flag.endswith("timeout") else f"{flag}={value}")
        if self._certificate is not None:
            command += ["-tlscert", str(self._certificate.certificate), "-tlskey", str(self._certificate.key)]
        if self._esxi is not None:
            name, addresses = self._esxi
            if not ipaddress.ip_address(self.host).is_loopback:  # vCenter on the guests' gateway: guests upload too
                addresses = [*addresses, self.host]
            command += ["-nfc-host", name, "-nfc-listen", ",".join(f"[{address}]:0" if ":" in address else
                                                                   f"{address}:0" for address in addresses),
                        "-nfc-tlscert", str(self._esxi_certificate.certificate),
                        "-nfc-tlskey", str(self._esxi_certificate.key)]
        if self.nfc_fault:
            command += ["-nfc-fault", self.nfc_fault]
        if self.trace_methods:
            command += ["-trace-methods", str(self.trace_methods)]
        if self.method_delay:
            command += ["-method-delay", ",".join(f"{name}:{ms}" for name, ms in self.method_delay.items())]
        if self.log_failed_logins:
            command.append("-log-failed-logins")
        if self.fail_clone:
            command += ["-fail-clone", self.fail_clone]
        if self.fail_import:
            command += ["-fail-import", self.fail_import]
        for kind, method, pattern in self.faults:
            command += [f"-{kind}", f"{method}={pattern}"]
        if self.stall_seconds is not None:
            command.append(f"-stall-seconds={self.stall_seconds}")
        for method, milliseconds in self.latency_ms.items():
            command += ["-latency", f"{method}={milliseconds}ms"]
        if self.vm_extra_config:
            command.append(f"-vm-extra-config={self.vm_extra_config}")
        if self.api_version:
            command.append(f"-api-version={self.api_version}")
        if self.stall_session_after:
            command += ["-stall-session-after", ":".join(str(part) for part in self.stall_session_after)]
        return command

    def start(self):
        if not VCSIM_BIN.exists():
            raise VcsimError(f"{VCSIM_BIN} is missing: run scripts/setup (it builds vcsim from govmomi v0.56.0)")
        started = time.monotonic()
        self._temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX)
        # The names vcsim serves on, and no other: a client using another name must fail as with vCenter.
        self.ca = pki.make_ca(self._temp_dir)
        self._certificate = pki.issue_server_certificate(self.ca, self._temp_dir, [self.host])
        if self.esxi_host_name:  # a name that may not resolve: then served where nobody finds it
            self._esxi = (self.esxi_host_name, loopback_addresses(self.esxi_host_name) or ["127.0.0.1"])
        else:
            self._esxi = esxi_host()
        vmca = pki.make_ca(self._temp_dir, pki.VMCA_NAME, stem="vmca")
        self._esxi_certificate = pki.issue_server_certificate(vmca, self._temp_dir, [self._esxi[0]], stem="esxi")
        self._ca_bundle = pki.bundle(Path(self._temp_dir, "ca-bundle.pem"), self.ca.certificate, vmca.certificate)
        self._users_file = Path(self._temp_dir, "users")
        self._users_file.touch(mode=0o600)
        self._users_file.write_text(f"{self.autoscaler_username}\t{self.autoscaler_password}\n")
        gpus.write_vcsim_layout(Path(self._temp_dir, "gpu-hosts.json"))
        if self.enforce_permissions:
            Path(self._temp_dir, "enforced-privileges.json").write_text(json.dumps(privileges.enforced_privileges()))
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(self._temp_dir, "vcsim.log"), "wb"),
            env={**os.environ, "TMPDIR": self._temp_dir},
        )
        try:
            self.endpoint = self._read_endpoint()
            self._shape_site()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self.endpoint

    def change_autoscaler_password(self, password):
        """Give the head's account a new password, as an administrator does in vCenter's SSO: logins with the old
        one fail from now on (vcsim reads its -users file at every login); open sessions stay. The endpoint (and
        so its environment's RAY_VSPHERE_HEAD_PASSWORD) gets the new one."""
        self._users_file.write_text(f"{self.autoscaler_username}\t{password}\n")
        self.autoscaler_password = password
        self.endpoint = dataclasses.replace(self.endpoint, head_password=password)

    def _read_endpoint(self):
        ready, _, _ = select.select([self._process.stdout], [], [], self.start_timeout)
        first_line = self._process.stdout.readline().decode() if ready else ""
        if not first_line.startswith("export GOVC_URL="):
            raise VcsimError(f"vcsim did not start within {self.start_timeout} s: {self.log_tail()}")
        govc_url = urlsplit(first_line.split()[1].removeprefix("GOVC_URL="))
        return Endpoint(govc_url.hostname, govc_url.port, self.username, self.password, self._ca_bundle,
                        head_username=self.autoscaler_username, head_password=self.autoscaler_password,
                        vcenter_ca_path=self.ca.certificate, esxi_host=self._esxi[0])

    def _shape_site(self):
        """The site as an administrator leaves it for Ray: a VM folder, and what vcenter_prepare.yml made.

        The playbook itself made it, with the testbed's placement for the autoscaler account's grants: on a
        vcsim of its own once per content of the playbook and what it reads, replayed here (testbed/prepare.py).
        """
        if self.prepared:
            self.prepare_record = prepare.prepared_record(lambda: Vcsim(prepared=False), extravars=PREPARE_VARIABLES)
        service_instance = self.endpoint.connect()
        try:
            datacenter = vsphere.find_by_name(service_instance, vim.Datacenter, DATACENTER)
            datacenter.vmFolder.CreateFolder(VM_FOLDER)
            if self.prepared:
                prepare.replay(service_instance, self.prepare_record["made"])
        finally:
            vsphere.disconnect(service_instance)

    def pause(self):
        """SIGSTOP: vcsim stops answering, with its connections open, as a hung vCenter does."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self):
        self._process.send_signal(signal.SIGCONT)

    def failed_logins(self):
        """The logins vcsim rejected so far, by user name (needs log_failed_logins)."""
        text = Path(self._temp_dir, "vcsim.log").read_text(errors="replace")
        return [line.rsplit("vcsim: rejected login of ", 1)[1] for line in text.splitlines()
                if "vcsim: rejected login of " in line]

    def log_tail(self, lines=20):
        try:
            text = Path(self._temp_dir, "vcsim.log").read_text(errors="replace")
        except OSError:
            return "(no vcsim log)"
        return "\n".join(text.splitlines()[-lines:]) or "(vcsim printed nothing)"

    def stop(self):
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # a paused vcsim could not see its stdin close
            self._process.stdin.close()  # -stdinexit: removes its datastores and exits
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
