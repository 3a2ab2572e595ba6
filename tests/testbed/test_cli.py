"""`testbed up`, the README's main command for now, as a user runs it."""

import re
import signal
import subprocess
import sys

from testbed import PROJECT_ROOT, leftovers

TESTBED = [sys.executable, "-m", "testbed.cli"]


def test_testbed_up_demo_prints_how_to_reach_vcsim_and_logs_in_to_a_guest(testbed_prerequisites):
    before = leftovers.snapshot()
    result = subprocess.run([*TESTBED, "up", "--demo", "--exit"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    port = re.search(r"URL:\s+https://127\.0\.0\.1:(\d+)/sdk", out).group(1)
    assert f"export VMWARE_HOST=127.0.0.1 VMWARE_PORT={port} VMWARE_USER=administrator@vsphere.local" in out
    assert "clusters:        DC0_C0 (3 hosts), DC0_C1 (3 hosts)" in out
    address = re.search(r"guest address (\S+); guest.ipAddress in vcsim: (\S+)", out)
    assert address.group(1) == address.group(2)
    assert re.search(r"^  ray-demo-0$", out, re.MULTILINE), "hostname, run over SSH in the guest"
    assert "ray, version 2.60.0" in out
    assert leftovers.left_behind(before, leftovers.snapshot()) == {}


def test_testbed_up_stays_up_until_interrupted_then_cleans_up(testbed_prerequisites):
    before = leftovers.snapshot()
    process = subprocess.Popen([*TESTBED, "up"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    assert process.poll() is None, "".join(lines)
    assert leftovers.left_behind(before, leftovers.snapshot()), "vcsim and the bridge are up"
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "Testbed stopped" in rest
    assert leftovers.left_behind(before, leftovers.snapshot()) == {}
