"""Reaching a test guest over SSH as its image's default user, and the key pairs tests log in with."""

import subprocess
from pathlib import Path

from testbed.guests.commands import run

# The image's default user, as on Ubuntu's cloud images; root logins are refused.
DEFAULT_USER = "ubuntu"

SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR")


def ssh(address, key_path, command, timeout=120, user=DEFAULT_USER):
    """Run `command` in a guest as `user` (the image's default user); the CompletedProcess, output as text."""
    return subprocess.run(["ssh", "-i", str(key_path), *SSH_OPTIONS, f"{user}@{address}", command],
                          capture_output=True, text=True, timeout=timeout)


def make_key_pair(path, comment="ray-vsphere"):
    """A fresh ed25519 key pair without passphrase at path (private, 0600) and path.pub; the private key's path."""
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return Path(path)
