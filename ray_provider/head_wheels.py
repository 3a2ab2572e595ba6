"""Pin the wheels the head installs to the exact files the operator put in its folder.

The head's autoscaler runs this provider, so `ray up` file-mounts a folder of
wheels to the head (ray-vsphere and the dependencies its image lacks), and
the head installs from that folder alone:

    pip install --no-index --require-hashes --find-links ~/ray-vsphere-wheels \\
        -r ~/ray-vsphere-wheels/requirements.txt

This module writes that requirements.txt on the operator's machine, from the
wheels in the folder: every distribution pinned to its version, with the
sha256 of each of its files. It is the only source of the hashes, so they
always describe the files that were there when the operator ran it: a wheel
swapped or altered afterwards, or one added that the file does not name,
makes the head's install fail instead of running it. Source distributions
are refused (building one runs its code on the head), as are two versions of
one distribution (which one the head gets would depend on pip).

    python -m ray_provider.head_wheels ~/ray-vsphere-wheels
"""

import argparse
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

REQUIREMENTS_FILE = "requirements.txt"
PRODUCT = "ray-vsphere"
SOURCE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


class HeadWheelsError(ValueError):
    pass


def _name_and_version(path):
    """(normalized name, version) from a wheel's file name: name-version[-build]-python-abi-platform.whl (PEP 427)."""
    parts = path.name[:-len(".whl")].split("-")
    if len(parts) not in (5, 6) or not all(parts):
        raise HeadWheelsError(f"{path} is not named like a wheel (name-version[-build]-python-abi-platform.whl)")
    return re.sub(r"[-_.]+", "-", parts[0]).lower(), parts[1]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pinned_wheels(folder):
    """{distribution: (version, [sha256 of each of its wheels])} of the wheels in folder; HeadWheelsError if unfit."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HeadWheelsError(f"{folder} is not a folder: put the head's wheels in one first")
    found = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name == REQUIREMENTS_FILE:
            continue
        if path.name.endswith(SOURCE_SUFFIXES):
            raise HeadWheelsError(f"{path} is a source distribution: the head installs wheels only, since building "
                                  "one runs its code there (pip download --only-binary :all:)")
        if path.suffix != ".whl" or not path.is_file():
            raise HeadWheelsError(f"{path} is not a wheel: the folder holds only the wheels the head installs")
        name, version = _name_and_version(path)
        known_version, hashes = found.setdefault(name, (version, []))
        if known_version != version:
            raise HeadWheelsError(f"{folder} holds {name} {known_version} and {version}: keep the one the head "
                                  "should install")
        hashes.append(_sha256(path))
    if PRODUCT not in found:
        raise HeadWheelsError(f"{folder} holds no {PRODUCT} wheel: the head's autoscaler needs it "
                              f"(pip wheel --no-deps -w {folder} ...)")
    return found


def requirements_text(wheels):
    """requirements.txt lines for pinned_wheels()'s result, in pip's hash-checking format."""
    lines = ["# Written by `python -m ray_provider.head_wheels` from the wheels of this folder. The head installs",
             "# exactly these files (pip install --require-hashes): rerun it whenever a wheel changes."]
    for name, (version, hashes) in sorted(wheels.items()):
        pins = [f"{name}=={version}", *(f"--hash=sha256:{digest}" for digest in sorted(hashes))]
        lines.append(" \\\n    ".join(pins))
    return "\n".join(lines) + "\n"


def write_requirements(folder):
    """Write <folder>/requirements.txt for the wheels in it (atomically); pinned_wheels()'s result."""
    folder = Path(folder).expanduser()
    wheels = pinned_wheels(folder)
    text = requirements_text(wheels)
    target = folder / REQUIREMENTS_FILE
    handle, partial = tempfile.mkstemp(prefix=f".{REQUIREMENTS_FILE}.", dir=folder)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return wheels


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ray_provider.head_wheels", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the folder ray up file-mounts to the head's ~/ray-vsphere-wheels")
    options = parser.parse_args(argv)
    try:
        wheels = write_requirements(options.folder)
    except HeadWheelsError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"{options.folder.expanduser() / REQUIREMENTS_FILE}: {len(wheels)} distributions pinned by sha256, "
          f"{PRODUCT} {wheels[PRODUCT][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
