"""The head installs ray-vsphere only as the operator hashed it.

Both examples' head_setup_commands run here as written, on this machine: the
"head" is a fresh virtualenv that sees the packages of this project's .venv
except ray-vsphere itself (as a node image has Ray and what it needs, not
this project), its home holds the folder `ray up` file-mounts, and pip
reaches no index. A wheel altered after `python -m ray_provider.head_wheels`
hashed the folder makes the install fail, with nothing installed; the wheel
as hashed installs. tests/provider/test_ray_up_end_to_end.py runs the same
commands on a test guest through `ray up`.

What the head installs is the wheel's base dependencies: pip resolves them
here from the package index, as `pip install ray-vsphere` does, and the
`ansible` community package (about 400 MiB installed) is not among them.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ray_provider import head_wheels
from testbed import PROJECT_ROOT, image

EXAMPLES = PROJECT_ROOT / "examples"
MOUNT = "~/ray-vsphere-wheels"
# The testbed image's Python environment is root's (examples/ray-cluster.testbed.yaml says why).
SUDO = 'sudo env "PATH=$PATH" '
THIS_PROJECT = ("ray_vsphere", "ray_provider", "_ray_vsphere.pth", "__editable__")
# The product's version, as the wheel is built with it.
VERSION = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
PIP_ITSELF = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth", "pkg_resources")


def head_install_command(example):
    """The example's one head_setup_command, after checking it installs from the mounted folder."""
    config = yaml.safe_load((EXAMPLES / example).read_text())
    assert MOUNT in config["file_mounts"], f"{example} mounts no wheel folder at {MOUNT}"
    (command,) = config["head_setup_commands"]
    return command


@pytest.fixture(scope="module")
def product_wheel(tmp_path_factory):
    return image.build_product_wheel(tmp_path_factory.mktemp("product"))


@pytest.fixture
def head(tmp_path):
    """A fresh virtualenv seeing .venv's packages but this project's, and a home with the wheel folder."""
    environment = tmp_path / "head-python"
    venv.create(environment, with_pip=True)
    node_image = tmp_path / "node-image-site-packages"
    node_image.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(THIS_PROJECT + PIP_ITSELF):
            (node_image / entry.name).symlink_to(entry)
    (site_packages,) = environment.glob("lib/python3*/site-packages")
    (site_packages / "node-image.pth").write_text(f"{node_image}\n")
    home = tmp_path / "home"
    (home / "ray-vsphere-wheels").mkdir(parents=True)
    return environment, site_packages, home


def run_on_head(head, command):
    environment, _site_packages, home = head
    return subprocess.run(["/bin/bash", "-c", command], capture_output=True, text=True, timeout=300, cwd="/",
                          env={"HOME": str(home), "PATH": f"{environment / 'bin'}:/usr/bin:/bin"})


def plant_code(wheel):
    """Rewrite the wheel with one line added to ray_provider/__init__.py: still a valid wheel, other bytes."""
    altered = wheel.with_suffix(".altered")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(altered, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            data = source.read(entry.filename)
            if entry.filename == "ray_provider/__init__.py":
                data += b"\nimport os; os.system('id')  # planted after hashing\n"
            target.writestr(entry, data)
    altered.replace(wheel)


def test_both_examples_install_the_head_from_the_hashed_folder_alone():
    vsphere = head_install_command("ray-cluster.vsphere.yaml")
    testbed = head_install_command("ray-cluster.testbed.yaml")
    assert testbed == SUDO + vsphere, "the testbed's head must install the way users' heads do"
    for option in ("--no-index", "--require-hashes", f"--find-links {MOUNT}",
                   f"-r {MOUNT}/{head_wheels.REQUIREMENTS_FILE}"):
        assert option in vsphere, option
    assert "git+" not in vsphere and "@main" not in vsphere


def test_the_head_installs_the_wheel_as_hashed_and_refuses_it_altered_after(head, product_wheel):
    environment, site_packages, home = head
    folder = home / "ray-vsphere-wheels"
    wheel = Path(shutil.copy(product_wheel, folder))
    hashed = subprocess.run([sys.executable, "-m", "ray_provider.head_wheels", str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert hashed.returncode == 0, hashed.stderr
    assert f"1 distributions pinned by sha256, ray-vsphere {VERSION}" in hashed.stdout
    command = head_install_command("ray-cluster.vsphere.yaml")

    plant_code(wheel)
    refused = run_on_head(head, command)
    assert refused.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE" in refused.stderr, refused.stderr
    assert not list(site_packages.glob("ray_provider*")) and not list(site_packages.glob("ray_vsphere*"))

    shutil.copy(product_wheel, wheel)
    installed = run_on_head(head, command + " && python -c 'import ray_provider.node_provider as p; print(p.__file__)'")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.strip() == str(site_packages / "ray_provider" / "node_provider.py")
    assert "planted" not in (site_packages / "ray_provider" / "__init__.py").read_text()


def test_a_wheel_of_another_version_put_in_after_hashing_is_not_installed(head, product_wheel):
    environment, site_packages, home = head
    folder = home / "ray-vsphere-wheels"
    shutil.copy(product_wheel, folder)
    head_wheels.write_requirements(folder)
    (folder / product_wheel.name).rename(folder / product_wheel.name.replace(f"-{VERSION}-", f"-{VERSION}.post1-"))
    refused = run_on_head(head, head_install_command("ray-cluster.vsphere.yaml"))
    assert refused.returncode != 0 and f"ray-vsphere=={VERSION}" in refused.stderr, refused.stderr
    assert not list(site_packages.glob("ray_provider*"))


def test_the_requirements_pin_every_wheel_with_each_of_its_hashes(tmp_path, product_wheel):
    shutil.copy(product_wheel, tmp_path)
    # One distribution in two builds (say two platforms' wheels): one line, both hashes.
    for platform in ("manylinux2014_x86_64", "manylinux2014_aarch64"):
        (tmp_path / f"markupsafe-3.0.4-cp311-cp311-{platform}.whl").write_bytes(platform.encode())
    (tmp_path / ".stamp").write_text("dotfiles are not the head's")
    wheels = head_wheels.write_requirements(tmp_path)
    assert sorted(wheels) == ["markupsafe", "ray-vsphere"]
    text = (tmp_path / head_wheels.REQUIREMENTS_FILE).read_text()
    assert head_wheels._sha256(product_wheel) in text
    markupsafe = text.split("markupsafe==3.0.4", 1)[1].split("ray-vsphere", 1)[0]
    assert markupsafe.count("--hash=sha256:") == 2
    # Rerunning reads the folder again, its own requirements.txt aside.
    assert head_wheels.write_requirements(tmp_path) == wheels


@pytest.mark.parametrize("files, message", [
    ({"ray_vsphere-0.1.0.tar.gz": b"sdist"}, "is a source distribution"),
    ({"notes.txt": b"x"}, "is not a wheel"),
    ({"pyvmomi-9.1.1.0-py3-none-any.whl": b"x"}, "holds no ray-vsphere wheel"),
    ({"pyvmomi-9.1.1.0-py3-none-any.whl": b"x", "pyvmomi-9.1.0.0-py3-none-any.whl": b"y"},
     "holds pyvmomi 9.1.0.0 and 9.1.1.0"),
    ({"not_a-wheel.whl": b"x"}, "not_a-wheel.whl"),
])
def test_an_unfit_folder_is_refused_and_no_requirements_written(tmp_path, product_wheel, files, message):
    shutil.copy(product_wheel, tmp_path)
    if "holds no ray-vsphere" in message:
        (tmp_path / product_wheel.name).unlink()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = subprocess.run([sys.executable, "-m", "ray_provider.head_wheels", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / head_wheels.REQUIREMENTS_FILE).exists()


def test_pip_install_ray_vsphere_pulls_no_ansible_package_and_the_operator_extra_does(tmp_path, product_wheel):
    # What pip would install into an empty environment (--ignore-installed: .venv, which has `ansible` for the
    # operator's playbooks, does not shorten the list), at constraints.txt's versions; --dry-run installs nothing.
    report = tmp_path / "report.json"
    resolved = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                               "--report", str(report), "-c", str(image.CONSTRAINTS), str(product_wheel)],
                              capture_output=True, text=True, timeout=900)
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    install = {canonicalize_name(item["metadata"]["name"]): item["metadata"] for item in
               json.loads(report.read_text())["install"]}
    assert {"ray-vsphere", "ansible-core", "ansible-runner", "ray", "pyvmomi"} <= set(install), sorted(install)
    assert "ansible" not in install, "pip install ray-vsphere pulls the ansible package"
    requires = [Requirement(line) for line in install["ray-vsphere"].get("requires_dist", [])]
    ansible = [requirement for requirement in requires if canonicalize_name(requirement.name) == "ansible"]
    assert ansible and all(requirement.marker and requirement.marker.evaluate({"extra": "operator"})
                           and not requirement.marker.evaluate({"extra": ""}) for requirement in ansible), ansible
