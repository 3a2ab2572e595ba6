"""What the testbed needs from the machine, checked up front with a message
that says what to install or how to run, never a silent skip."""

import os
import shutil
import subprocess
from pathlib import Path

from testbed import VCSIM_BIN

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
# The one list of Debian prerequisites; scripts/setup installs from it too.
DEBIAN_PREREQUISITES = Path(__file__).with_name("debian-prerequisites")


def debian_prerequisites():
    """[(package, shell probe that succeeds when it is installed)], as scripts/setup reads them."""
    entries = []
    for line in DEBIAN_PREREQUISITES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, probe = line.split(None, 1)
            entries.append((package, probe.strip()))
    return entries


class PrerequisiteError(RuntimeError):
    pass


def which(command):
    return shutil.which(command, path=SEARCH_PATH)


def missing_prerequisites():
    """One sentence per missing prerequisite, each saying how to get it."""
    problems = []
    if os.geteuid() != 0:
        problems.append(
            "test guests need root (network namespaces, a bridge, mounts): run the tests as root, "
            "e.g. `sudo scripts/test`"
        )
    missing_packages = missing_debian_packages()
    if missing_packages:
        problems.append(
            f"missing Debian packages {', '.join(missing_packages)}: "
            f"run scripts/setup as root, or `apt-get install {' '.join(missing_packages)}`"
        )
    if not problems:
        probe = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--mount", "--uts", "true"], capture_output=True, text=True
        )
        if probe.returncode != 0:
            problems.append(
                "this machine does not allow new network, PID, mount and UTS namespaces "
                f"(`unshare --net --pid --mount --uts` said: {probe.stderr.strip()}); run on a host or a "
                "privileged container"
            )
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        if netns.returncode != 0:
            problems.append(f"`ip netns` does not work here ({netns.stderr.strip()}); install a current iproute2")
    if not VCSIM_BIN.exists():
        problems.append(f"vcsim is not built at {VCSIM_BIN}: run scripts/setup (it needs Go, at least the version "
                        "in testbed/vcsim/go.mod)")
    return problems


def missing_debian_packages():
    environment = dict(os.environ, PATH=SEARCH_PATH)
    return [package for package, probe in debian_prerequisites()
            if subprocess.run(["/bin/sh", "-c", probe], env=environment, capture_output=True).returncode != 0]


def check_prerequisites():
    problems = missing_prerequisites()
    if problems:
        raise PrerequisiteError("the testbed cannot start:\n  - " + "\n  - ".join(problems))
