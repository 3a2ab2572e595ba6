"""What a testbed leaves on the machine, to assert that it leaves nothing.

A snapshot lists what a testbed could leak: network namespaces, links
(bridges, veths), processes (vcsim, sshd, the guests' unshare and Ray
daemons), temp folders (vcsim's govcsim-* datastores, Ray's SSH control
sockets and ours) and what Ansible, Ray or the provider write into the
user's home (~/.ansible, where an installed collection would shadow the
checkout, and ~/.ray-vsphere). Comparing a snapshot taken before with one
taken after shows what was left behind.
"""

import subprocess
import tempfile
from pathlib import Path

PROCESS_NAMES = {"vcsim", "sshd", "unshare", "raylet", "gcs_server"}
# awx_: the private data dirs of the AWX-style test jobs (testbed/awx_launch.py).
TEMP_PREFIXES = ("govcsim-", "ray-vsphere-", "ray_ssh_", "awx_")
HOME_FOLDERS = (Path("~/.ansible").expanduser(), Path("~/.ray-vsphere").expanduser())
# What only a testbed makes (root, vcsim, guests): a session that starts none can leave none.
TESTBED_KINDS = ("network namespaces", "links", "processes")
HOME_DEPTH = 4  # deep enough for ~/.ansible/collections/ansible_collections/ray_vsphere


def _lines(*command):
    result = subprocess.run(command, capture_output=True, text=True)
    return result.stdout.splitlines() if result.returncode == 0 else []


def _processes():
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text().strip()
            if name in PROCESS_NAMES:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.add(f"{proc.name} {command.strip()}")
        except OSError:  # the process ended while we looked
            continue
    return found


def files_containing(text, *paths):
    """The files among `paths`, and below those that are folders, whose contents hold `text`."""
    files = [file for path in map(Path, paths) for file in ([path] if path.is_file() else path.rglob("*"))]
    return sorted(str(file) for file in files if file.is_file() and text in file.read_text(errors="replace"))


def snapshot():
    return {
        "network namespaces": {line.split()[0] for line in _lines("ip", "netns", "list") if line.strip()},
        "links": {line.split(":")[1].strip().split("@")[0] for line in _lines("ip", "-o", "link", "show")},
        "processes": _processes(),
        "temp folders": {
            str(path) for path in Path(tempfile.gettempdir()).iterdir() if path.name.startswith(TEMP_PREFIXES)
        },
        "files in the home folder": {str(path) for folder in HOME_FOLDERS for path in _tree(folder, HOME_DEPTH)},
    }


def _tree(folder, depth):
    """folder and what lies below it, `depth` levels down."""
    if not folder.exists():
        return []
    found = [folder]
    if depth and folder.is_dir() and not folder.is_symlink():
        for child in folder.iterdir():
            found += _tree(child, depth - 1)
    return found


def owned_by(paths, uid):
    """The paths among `paths` that still exist and belong to the user `uid`."""
    owned = []
    for path in paths:
        try:
            if Path(path).lstat().st_uid == uid:
                owned.append(path)
        except OSError:  # removed since the snapshot
            continue
    return owned


def left_behind(before, after):
    """{kind: items in `after` that were not in `before`}, only kinds with items."""
    return {kind: sorted(after[kind] - before[kind]) for kind in after if after[kind] - before[kind]}
