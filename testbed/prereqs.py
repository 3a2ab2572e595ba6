"""What the testbed needs from the machine, checked up front with a message
that says what to install or how to run, never a silent skip."""

import os
import shutil
import subprocess

from testbed import VCSIM_BIN

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])

REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "mount": "mount",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "qemu-img": "qemu-utils",
    "tini": "tini",
    # ray up copies file mounts (the bootstrap config, keys, the node image) to the head with rsync.
    "rsync": "rsync",
}


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
    missing_packages = sorted({package for command, package in REQUIRED_COMMANDS.items() if not which(command)})
    if missing_packages:
        problems.append(
            f"missing commands from Debian packages {', '.join(missing_packages)}: "
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
        problems.append(f"vcsim is not built at {VCSIM_BIN}: run scripts/setup (needs Go >= 1.25)")
    return problems


def check_prerequisites():
    problems = missing_prerequisites()
    if problems:
        raise PrerequisiteError("the testbed cannot start:\n  - " + "\n  - ".join(problems))
