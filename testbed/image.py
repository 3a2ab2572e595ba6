"""What a test guest boots from instead of the checkout: an image's Python and the head's wheels.

A user's node image (an OVA with Ray baked in) has Ray in a Python
environment of its own and nothing of this project. The testbed builds that
environment once, as a venv of Debian's /usr/bin/python3 with `ray[default]`
at the pinned version, and caches it like the test OVA. Each guest sees it as
its /opt, copy-on-write (overlayfs), so a `pip install` in one guest changes no
other guest and not the cache. The venv is built at the path guests see it
at, /opt/ray, inside a mount namespace of its own, so its scripts' #! lines
are right in the guests and nothing is written outside the cache.

The head gets ray-vsphere as the README tells users to: the wheel built from
this checkout and the wheels of its dependencies that the image lacks, hashed
by `python -m ray_provider.head_wheels` into the folder's requirements.txt,
file mounted by `ray up` and installed with `pip install --no-index
--require-hashes` (guests reach no package index, like an air-gapped site).
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ray_provider.head_wheels import write_requirements
from testbed import PROJECT_ROOT
from testbed.appliance import DEFAULT_CACHE_DIR

GUEST_OPT = "/opt"
IMAGE_PYTHON_ENV = f"{GUEST_OPT}/ray"
IMAGE_BIN = f"{IMAGE_PYTHON_ENV}/bin"
BASE_PYTHON = "/usr/bin/python3"
IMAGE_REQUIREMENTS = ("ray[default]",)
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
# Where `testbed up` and the tests put the head's wheels; examples/ray-cluster.testbed.yaml mounts it.
HEAD_WHEELS = "head-wheels"
PRODUCT_WHEEL_GLOB = "ray_vsphere-*.whl"


class ImageError(RuntimeError):
    pass


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ImageError(f"`{' '.join(map(str, command))}` failed ({result.returncode}):\n"
                         f"{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


def _recipe_hash(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
    return digest.hexdigest()[:12]


def image_root(cache_dir=DEFAULT_CACHE_DIR):
    """The cached image's /opt (holding ray/), built the first time; a guest mounts it as its /opt."""
    base_version = _run([BASE_PYTHON, "-c", "import sys; print(sys.version)"]).strip()
    recipe = _recipe_hash(base_version, CONSTRAINTS.read_bytes(), *IMAGE_REQUIREMENTS)
    root = Path(cache_dir) / f"image-{recipe}" / "opt"
    if not (root / "ray" / ".complete").exists():
        _build_image(root)
    return root


def _build_image(root):
    """Build the venv at /opt/ray in a mount namespace whose /opt is `root`, then publish it whole."""
    root.parent.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{root.parent.name}.", suffix=".partial", dir=root.parent.parent))
    try:
        (partial / "opt").mkdir()
        # The build runs pip as the image's own: no checkout, no project venv on its path.
        environment = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTHON"))}
        environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        script = (
            f'mount --bind "$1" {GUEST_OPT} && constraints=$2 && shift 2 && cd / '
            f'&& {BASE_PYTHON} -m venv {IMAGE_PYTHON_ENV} '
            f'&& {IMAGE_BIN}/pip install --quiet --disable-pip-version-check -c "$constraints" "$@" '
            f'&& touch {IMAGE_PYTHON_ENV}/.complete'
        )
        _run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
              "image-build", str(partial / "opt"), str(CONSTRAINTS), *IMAGE_REQUIREMENTS],
             env=environment, timeout=1800)
        # One image at a time: an older recipe's (about 1 GiB) goes.
        for old in root.parent.parent.glob("image-*"):
            if old != partial:
                shutil.rmtree(old, ignore_errors=True)
        partial.rename(root.parent)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def image_packages(root):
    """{normalized name: version} of what the image's Python holds."""
    site_packages = [str(path) for path in (root / "ray" / "lib").glob("python3*/site-packages")]
    return {_normalize(dist.metadata["Name"]): dist.version
            for dist in importlib.metadata.distributions(path=site_packages)}


def _normalize(name):
    return name.lower().replace("_", "-").replace(".", "-")


def build_product_wheel(output_dir):
    """ray_vsphere-<version>-py3-none-any.whl built from this checkout, as `pip wheel .` builds it."""
    output_dir = Path(output_dir)
    for old in output_dir.glob(PRODUCT_WHEEL_GLOB):
        old.unlink()
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--wheel-dir", str(output_dir), str(PROJECT_ROOT)], timeout=300)
    (wheel,) = output_dir.glob(PRODUCT_WHEEL_GLOB)
    return wheel


def head_wheels(cache_dir=DEFAULT_CACHE_DIR):
    """<cache>/head-wheels: this checkout's wheel, its dependencies' wheels that the image lacks, their hashes.

    The hashes (requirements.txt) are written as users write theirs, after
    the folder is complete, so the head installs exactly these files. The
    dependency wheels are downloaded once per constraints.txt and
    pyproject.toml (pip's own cache serves repeats); the product wheel is
    built fresh every time, since the checkout changes.
    """
    wheels = Path(cache_dir) / HEAD_WHEELS
    wheels.mkdir(parents=True, exist_ok=True)
    product = build_product_wheel(wheels)
    image = image_packages(image_root(cache_dir))
    recipe = _recipe_hash(CONSTRAINTS.read_bytes(), (PROJECT_ROOT / "pyproject.toml").read_bytes(), json.dumps(image))
    stamp = wheels / ".dependencies"
    if not stamp.exists() or stamp.read_text() != recipe:
        for old in wheels.glob("*.whl"):
            if old != product:
                old.unlink()
        with tempfile.TemporaryDirectory(prefix="ray-vsphere-wheels-") as download:
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                  "--only-binary", ":all:", "-c", str(CONSTRAINTS), "--dest", download, str(product)], timeout=1800)
            for wheel in Path(download).glob("*.whl"):
                name = _normalize(wheel.name.split("-")[0])
                if name not in image and wheel.name != product.name:
                    shutil.move(str(wheel), wheels / wheel.name)
        stamp.write_text(recipe)
    write_requirements(wheels)
    return wheels
