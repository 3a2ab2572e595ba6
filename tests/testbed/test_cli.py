"""`testbed up` and `testbed demo` (the README's main job) as a user runs them."""

import os
import re
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from testbed import PROJECT_ROOT, leftovers

TESTBED = [sys.executable, "-m", "testbed"]


def test_testbed_up_demo_prints_how_to_reach_vcsim_and_logs_in_to_a_guest(testbed_prerequisites):
    before = leftovers.snapshot()
    result = subprocess.run([*TESTBED, "up", "--demo", "--exit"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # On the guests' gateway, so that a Ray head in a guest reaches it too.
    host, port = re.search(r"URL:\s+https://(198\.18\.\d+\.1):(\d+)/sdk", out).groups()
    assert f"export VMWARE_HOST={host} VMWARE_PORT={port} VMWARE_USER=administrator@vsphere.local" in out
    assert "clusters:        DC0_C0 (3 hosts), DC0_C1 (3 hosts)" in out
    address = re.search(r"guest address (\S+); guest.ipAddress in vcsim: (\S+)", out)
    assert address.group(1) == address.group(2)
    assert re.search(r"^  ray-demo-0$", out, re.MULTILINE), "hostname, run over SSH in the guest"
    assert "ray, version 2.60.0" in out
    assert leftovers.left_behind(before, leftovers.snapshot()) == {}


def test_testbed_up_stays_up_until_interrupted_then_cleans_up(testbed_prerequisites, tmp_path):
    before = leftovers.snapshot()
    process = subprocess.Popen([*TESTBED, "up", "--ca-file", str(tmp_path / "ca.pem")], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    assert process.poll() is None, "".join(lines)
    assert leftovers.left_behind(before, leftovers.snapshot()), "vcsim and the bridge are up"
    # It says how to trust its CA, and that CA (also copied to --ca-file) verifies vcsim, host name included.
    out = "".join(lines)
    host, port, ca_path = re.search(r"export VMWARE_HOST=(\S+) VMWARE_PORT=(\d+) .*VMWARE_VALIDATE_CERTS=true "
                                    r"VMWARE_CA_PATH=(\S+)", out).groups()
    assert f"TLS:       a certificate for {host} from the testbed's own CA {ca_path}" in out
    assert f"SSL_CERT_FILE={ca_path}" in out and f"GOVC_TLS_CA_CERTS={ca_path}" in out
    assert (tmp_path / "ca.pem").read_bytes() == open(ca_path, "rb").read()
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        assert tls.getpeercert()["subjectAltName"] == (("IP Address", host),)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "Testbed stopped" in rest
    assert leftovers.left_behind(before, leftovers.snapshot()) == {}


@pytest.mark.slow
def test_testbed_demo_brings_up_ray_through_the_playbooks_then_ray_up_runs_jobs_and_removes_both(testbed_prerequisites):
    before = leftovers.snapshot()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VMWARE_")}
    result = subprocess.run([*TESTBED, "demo"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
                            env=environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "No VMWARE_HOST given: embedded vCenter simulator" in out
    assert "$ ansible-playbook ray_vsphere.cluster.ray_up: successful" in out
    # The tunnel checks the head's host key: recorded in vCenter, keyed by the VM's instance UUID.
    assert re.search(r"^  head     198\.18\.\d+\.\d+   dashboard http://localhost:8265 through: "
                     r"ssh -N -L 8265:127\.0\.0\.1:8265 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=\S+ "
                     r"-o HostKeyAlias=[0-9a-f-]{36} (-o \S+ )*-i \S+ ubuntu@198\.18\.\d+\.\d+$", out, re.MULTILINE)
    assert "Ray's job API: without the cluster's token HTTP 401; with it HTTP 200, job SUCCEEDED" in out
    assert len(re.findall(r"^  worker   198\.18\.", out, re.MULTILINE)) == 2
    assert "sum of squares = 55 (expected 55), ran on demo-head, demo-worker-0, demo-worker-1" in out
    assert "Node status" in out and "Active:" in out
    assert "Removed: demo-head, demo-worker-0, demo-worker-1" in out
    # Then the same testbed through Ray's own launcher and the NodeProvider.
    assert "$ ray up -y --no-config-cache examples/ray-cluster.testbed.yaml: done in" in out
    assert re.search(r"the head's autoscaler launched min_workers=1: Ray nodes 198\.18\.\S+, 198\.18\.", out)
    assert re.search(r"Ray job needing 2 workers at once: the autoscaler added one; "
                     r"ran on demo-ray-up-worker-\S+, demo-ray-up-worker-", out)
    assert "$ ray down -y examples/ray-cluster.testbed.yaml: done in" in out
    assert leftovers.left_behind(before, leftovers.snapshot()) == {}
