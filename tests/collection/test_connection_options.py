"""The connection options vmware.vmware's users bring: its aliases, and its proxy options.

The proxy is proxy.py (PyPI `proxy.py`), a real HTTP CONNECT proxy, on
loopback between the modules and vcsim; its own access log is the oracle of
what went through it. vcsim and its ESXi host are on loopback too, so a module
that ignored the proxy would still work: each test therefore checks the log,
and one shows a dead proxy stops the module. TLS stays end to end: the
testbed's CA still decides, through the tunnel.
"""

import re
import socket
import subprocess
import tarfile
import sys
import time

import pytest

from conftest import PLACEMENT, deploy_task, task
from testbed import pki

# proxy.py's access log line for a tunnel: "<client> - CONNECT host:port - N bytes", N what the server sent back.
TUNNEL = re.compile(r" - CONNECT (?P<target>\S+) - (?P<bytes>\d+) bytes")
LIST_NOBODY = {"name": "List", "ray_vsphere.cluster.node_info": {"cluster_name": "nobody"}}


class ConnectProxy:
    """proxy.py on a free loopback port, in a session of its own; tunnels() reads its access log."""

    def __init__(self, folder):
        self.log = folder / "proxy.log"
        port_file = folder / "proxy.port"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
             "--num-acceptors", "1", "--num-workers", "1", "--log-level", "INFO", "--log-file", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self.process.poll() is None, f"proxy.py exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "proxy.py did not say its port in 30 s"
            time.sleep(0.1)
        self.port = int(port_file.read_text())

    def tunnels(self, settle_s=5.0):
        """[(host:port, bytes)] of every CONNECT so far; a tunnel is logged when it closes, so wait for quiet."""
        found, deadline = None, time.monotonic() + settle_s
        while time.monotonic() < deadline:
            now = [(match["target"], int(match["bytes"])) for match in TUNNEL.finditer(self.log.read_text())]
            if now == found and now:
                return now
            found = now
            time.sleep(0.5)
        return found

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    connect_proxy = ConnectProxy(tmp_path_factory.mktemp("proxy"))
    yield connect_proxy
    connect_proxy.close()


def through(proxy, vcsim, **overrides):
    return {**vcsim.endpoint.environment(), "VMWARE_PROXY_HOST": "127.0.0.1", "VMWARE_PROXY_PORT": str(proxy.port),
            **overrides}


def new_tunnels(proxy, before):
    return proxy.tunnels()[len(before):]


def test_every_call_to_vcenter_goes_through_the_proxy_and_vcenters_certificate_is_still_verified(
        play, vcsim, proxy, tmp_path):
    vcenter = f"{vcsim.endpoint.host}:{vcsim.endpoint.port}"
    before = proxy.tunnels(settle_s=0.5)
    listed = play([LIST_NOBODY], env=through(proxy, vcsim)).result
    assert not listed.get("failed"), listed
    assert listed["nodes"] == []
    tunnels = new_tunnels(proxy, before)
    # The API version discovery and the SOAP session, each a tunnel to vCenter, and nothing else.
    assert {target for target, _ in tunnels} == {vcenter}, tunnels
    assert len(tunnels) >= 2 and all(sent > 0 for _, sent in tunnels), tunnels

    # Through the same tunnel, a CA that did not sign vCenter's certificate still fails the login.
    other_ca = pki.make_ca(tmp_path, common_name="some other CA").certificate
    before = proxy.tunnels(settle_s=0.5)
    refused = play([LIST_NOBODY], env=through(proxy, vcsim, VMWARE_CA_PATH=str(other_ca))).result
    assert refused["failed"]
    assert (f"TLS with vCenter {vcenter} through proxy 127.0.0.1:{proxy.port} failed: its certificate is not "
            f"signed by a CA in ca_path {other_ca}") in refused["msg"], refused["msg"]
    assert [target for target, _ in new_tunnels(proxy, before)] == [vcenter]


def test_a_proxy_that_is_not_there_stops_the_module_and_says_which(play, vcsim, proxy):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    failed = play([LIST_NOBODY], env=through(proxy, vcsim, VMWARE_PROXY_PORT=str(closed_port))).result
    assert failed["failed"]
    assert (f"cannot reach vCenter {vcsim.endpoint.host}:{vcsim.endpoint.port} through proxy "
            f"127.0.0.1:{closed_port}") in failed["msg"], failed["msg"]
    no_port = play([LIST_NOBODY], env={k: v for k, v in through(proxy, vcsim).items() if k != "VMWARE_PROXY_PORT"})
    assert no_port.result["failed"]
    assert "proxy_host 127.0.0.1 is given without proxy_port (VMWARE_PROXY_PORT)" in no_port.result["msg"]


def test_an_ovf_import_uploads_its_disk_to_the_esxi_host_through_the_proxy(play, vcsim, proxy, test_ova, vm_names):
    """The NFC upload goes to the ESXi host the lease names, not vCenter: through the proxy too, verified."""
    before = proxy.tunnels(settle_s=0.5)
    deployed = play([deploy_task("proxied", test_ova, names=["proxied-0"], power_on=False, wait_for_ip=False)],
                    env=through(proxy, vcsim)).result
    assert not deployed.get("failed"), deployed
    assert "proxied-0" in vm_names()
    tunnels = new_tunnels(proxy, before)
    esxi = [(target, sent) for target, sent in tunnels if target.split(":")[0] == vcsim.endpoint.esxi_host]
    # One tunnel per disk, which the ESXi host answered (proxy.py counts the bytes that came back).
    disks = [member for member in tarfile.open(test_ova).getmembers() if member.name.endswith(".vmdk")]
    assert len(esxi) == len(disks) and all(answered > 0 for _, answered in esxi), (esxi, tunnels)
    assert {target for target, _ in tunnels} == {f"{vcsim.endpoint.host}:{vcsim.endpoint.port}", esxi[0][0]}
    deleted = play([task("node_delete", cluster_name="proxied", all_nodes=True, datacenter=PLACEMENT["datacenter"],
                         vm_folders=[PLACEMENT["vm_folder"]])], env=through(proxy, vcsim)).result
    assert not deleted.get("failed"), deleted
    assert "proxied-0" not in vm_names()


@pytest.mark.parametrize("alias", ["admin", "user"])
def test_username_aliases_log_in_as_the_user_they_name(play, vcsim, proxy, alias):
    # The environment names a user vcsim does not know: only the alias can make the login succeed.
    env = dict(vcsim.endpoint.environment(), VMWARE_USER="nobody@vsphere.local")
    listed = play([{"name": "List", "ray_vsphere.cluster.node_info": {
        "cluster_name": "nobody", alias: vcsim.endpoint.username,
        "proxy_host": "127.0.0.1", "proxy_port": proxy.port}}], env=env).result
    assert not listed.get("failed"), listed
    assert listed["nodes"] == []


@pytest.mark.parametrize("alias", ["pass", "pwd"])
def test_password_aliases_are_the_password_the_module_sends(play, vcsim, alias):
    # The environment's password is right, the alias's wrong: the alias wins, so the login is refused (and a
    # module that did not know the alias would fail on an unsupported parameter instead).
    refused = play([{"name": "List", "ray_vsphere.cluster.node_info": {
        "cluster_name": "nobody", alias: "not-the-password"}}]).result
    assert refused["failed"]
    assert f"rejected the login of '{vcsim.endpoint.username}': wrong username or password" in refused["msg"]
    assert "not-the-password" not in str({key: value for key, value in refused.items() if key != "invocation"})


def test_the_ray_providers_session_and_its_playbook_runs_take_the_proxy_from_the_cluster_yaml(vcsim, proxy):
    from ray_provider.config import VcenterCredentials
    from ray_provider.vcenter_session import VcenterSession
    environ = {name: value for name, value in vcsim.endpoint.environment().items() if "PROXY" not in name}
    credentials = VcenterCredentials({"vcenter_proxy_host": "127.0.0.1", "vcenter_proxy_port": proxy.port}, environ)
    # The provider's playbook runs get it as the modules' fallback variables.
    assert {name: value for name, value in credentials.environment().items() if "PROXY" in name} == {
        "VMWARE_PROXY_HOST": "127.0.0.1", "VMWARE_PROXY_PORT": str(proxy.port)}
    before = proxy.tunnels(settle_s=0.5)
    session = VcenterSession(credentials, credentials.request_timeout)
    try:
        assert session.call(lambda service_instance: service_instance.content.about.apiType) == "VirtualCenter"
    finally:
        session.close()
    tunnels = new_tunnels(proxy, before)
    assert {target for target, _ in tunnels} == {f"{vcsim.endpoint.host}:{vcsim.endpoint.port}"}, tunnels
