"""An execution environment built from execution-environment/ can run the
collection's playbooks: it installs ray_vsphere.cluster from the tarball as
built, the collections that tarball depends on, and the Python and system
packages they declare for execution environments.

Offline, without a container: the collection's tarball is built into a temp
copy of execution-environment/, `ansible-builder create` writes the build
context, and then the context's own steps are replayed outside a container:
its galaxy requirements installed with ansible-galaxy (--offline, the
dependencies met by the `ansible` package where the image gets them from
Galaxy), and its copy of ansible-builder's introspect.py run over the result.
"""

import importlib.metadata
import re
import runpy
import shutil
from datetime import date

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from collection_tools import (EXEMPT, PROJECT_ROOT, ansible_env, ansible_package_collections, build_tarball, canonical,
                              galaxy_yml, in_ansible_package, install_offline, manifest, plugin_import_distributions,
                              run, scan_checkout, self_name, tarball_manifest, tarball_name, used_collections)


EE_DEFINITION = PROJECT_ROOT / "execution-environment" / "execution-environment.yml"
# Base images the EE may use, with the day their vendor's maintenance ends:
# UBI N follows RHEL N (Maintenance Support, access.redhat.com/support/policy/updates/errata).
# Fedora releases live about 13 months, too short for a pinned base: none is listed.
SUPPORTED_BASES = {
    "registry.access.redhat.com/ubi9/ubi": date(2032, 5, 31),
    "registry.access.redhat.com/ubi9/ubi-minimal": date(2032, 5, 31),
    "registry.access.redhat.com/ubi10/ubi": date(2035, 5, 31),
    "registry.access.redhat.com/ubi10/ubi-minimal": date(2035, 5, 31),
}
PINNED_IMAGE = re.compile(r"(?P<repository>[^@]+?):(?P<tag>[\w][\w.-]{0,127})@sha256:(?P<digest>[0-9a-f]{64})")


def base_image_problems(reference, today):
    """Why reference is not a supported base pinned by digest (empty if it is)."""
    pinned = PINNED_IMAGE.fullmatch(reference)
    if not pinned:
        return [f"{reference} is not pinned as <repository>:<tag>@sha256:<64 hex digits>"]
    end = SUPPORTED_BASES.get(pinned["repository"])
    if end is None:
        return [f"{pinned['repository']} is not a supported base ({', '.join(SUPPORTED_BASES)})"]
    return [f"{pinned['repository']} is past its end of maintenance ({end})"] if today > end else []


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The build context `ansible-builder create` writes, next to the built tarball."""
    tmp_path = tmp_path_factory.mktemp("ee")
    ee = tmp_path / "execution-environment"
    shutil.copytree(PROJECT_ROOT / "execution-environment", ee, ignore=shutil.ignore_patterns("context", "*.tar.gz"))
    build_tarball(ee, tmp_path)
    context = tmp_path / "context"
    result = run(["ansible-builder", "create", "--file", ee / "execution-environment.yml", "--context", context,
                  "--output-filename", "Containerfile"], ansible_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No matches" not in result.stdout + result.stderr, result.stdout + result.stderr
    return context


def test_the_base_image_is_a_supported_release_pinned_by_digest(context):
    base = yaml.safe_load(EE_DEFINITION.read_text())["images"]["base_image"]["name"]
    assert base_image_problems(base, date.today()) == []
    # The build uses that exact reference.
    assert f'ARG EE_BASE_IMAGE="{base}"' in (context / "Containerfile").read_text()


@pytest.mark.parametrize("reference, problem", [
    ("quay.io/fedora/fedora:41", "is not pinned"),
    ("quay.io/fedora/fedora:41@sha256:" + "ab" * 32, "quay.io/fedora/fedora is not a supported base"),
    ("registry.access.redhat.com/ubi9/ubi:latest", "is not pinned"),
    ("registry.access.redhat.com/ubi9/ubi@sha256:" + "ab" * 32, "is not pinned"),
    ("registry.access.redhat.com/ubi9/ubi:9.7-1764794285@sha256:" + "ab" * 31, "is not pinned"),
    ("registry.access.redhat.com/ubi9/ubi:9.7-1764794285@sha256:" + "AB" * 32, "is not pinned"),
])
def test_an_unpinned_or_unsupported_base_is_refused(reference, problem):
    (found,) = base_image_problems(reference, date(2026, 1, 1))
    assert problem in found


def test_a_base_past_its_end_of_maintenance_is_refused():
    reference = "registry.access.redhat.com/ubi9/ubi:9.7-1764794285@sha256:" + "ab" * 32
    assert base_image_problems(reference, date(2032, 5, 31)) == []
    assert "past its end of maintenance" in base_image_problems(reference, date(2032, 6, 1))[0]


def test_the_python_interpreter_is_one_ansible_core_supports():
    interpreter = yaml.safe_load(EE_DEFINITION.read_text())["dependencies"]["python_interpreter"]
    version = re.fullmatch(r"/usr/bin/python(3\.\d+)", interpreter["python_path"])[1]
    assert interpreter["package_system"] == f"python{version}", "the package must install python_path"
    # The controller's range: ansible-core's own Requires-Python, and at most 3.13 for 2.19 (its support matrix).
    assert version in SpecifierSet(importlib.metadata.metadata("ansible-core")["Requires-Python"])
    assert importlib.metadata.version("ansible-core").startswith("2.19.") and version in SpecifierSet("<3.14")


def galaxy_requirements(context):
    return yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]


def collections_of_the_image(context):
    """{collection: where it comes from}: the context's galaxy requirements and their dependencies."""
    found = {}
    pending = []
    for entry in galaxy_requirements(context):
        if entry.get("type") == "file":
            info = tarball_manifest(context / "_build" / entry["name"])
            found[f"{info['namespace']}.{info['name']}"] = entry["name"]
            pending.extend(info["dependencies"])
        else:
            found[entry["name"]] = "requirements.yml"
            pending.append(entry["name"])
    while pending:
        # A dependency's own dependencies, as the `ansible` package's copy declares them.
        name = pending.pop()
        found.setdefault(name, "a dependency")
        folder = in_ansible_package(name)
        assert folder, f"the `ansible` package does not carry {name}, so this test cannot follow its dependencies"
        pending.extend(dependency for dependency in manifest(folder)["dependencies"] if dependency not in found)
    return found


def test_the_context_installs_the_collection_from_the_tarball_as_built(context):
    files = [entry["name"] for entry in galaxy_requirements(context) if entry.get("type") == "file"]
    assert files == [tarball_name()], (
        f"execution-environment.yml must install {tarball_name()} (galaxy.yml's version), not {files}")
    # additional_build_files put it into _build, which the galaxy stage copies to /build and installs from.
    tarball = context / "_build" / tarball_name()
    assert tarball.is_file()
    assert tarball_manifest(tarball)["version"] == galaxy_yml()["version"]
    containerfile = (context / "Containerfile").read_text()
    for step in ("COPY _build /build", "WORKDIR /build", "-r requirements.yml",
                 "/output/scripts/introspect.py introspect", "/output/scripts/assemble"):
        assert step in containerfile, step


def test_the_image_gets_every_collection_the_roles_and_playbooks_use(context):
    wanted = used_collections(scan_checkout()) - EXEMPT
    assert self_name() in wanted
    missing = wanted - set(collections_of_the_image(context))
    assert not missing, f"used by the roles or playbooks, not in the image: {sorted(missing)}"


def test_introspection_finds_the_python_and_system_packages_the_collections_need(context, tmp_path):
    # The galaxy stage: install the requirements from /build (here _build).
    build = context / "_build"
    collections = tmp_path / "usr-share-ansible-collections"
    result = install_offline(build / "requirements.yml", collections, tmp_path, ansible_package_collections(),
                             cwd=build)
    assert result.returncode == 0, result.stdout + result.stderr

    # The builder stage introspects everything the galaxy stage installed:
    # this collection, and its dependencies (here from the `ansible` package).
    data_dir = tmp_path / "introspected"
    for name in collections_of_the_image(context):
        namespace, short = name.split(".")
        source = (collections / "ansible_collections" / namespace / short if name == self_name()
                  else in_ansible_package(name))
        assert (source / "MANIFEST.json").is_file(), name
        (data_dir / "ansible_collections" / namespace).mkdir(parents=True, exist_ok=True)
        (data_dir / "ansible_collections" / namespace / short).symlink_to(source)
    user_files = [f"--user-{kind}={build / filename}" for kind, filename in (("pip", "requirements.txt"),
                                                                              ("bindep", "bindep.txt"))
                  if (build / filename).is_file()]
    result = run(["python", build / "scripts" / "introspect.py", "introspect", data_dir, *user_files],
                 ansible_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = yaml.safe_load(result.stdout.split("---", 1)[1])

    def sources(kind, package):
        """The collections (or "user") that ask for the package, from lines like 'pyvmomi>=9.1  # from collection x.y'."""
        asking = set()
        for line in found[kind]:
            requirement, _, source = line.partition("  # from collection ")
            name = Requirement(requirement).name if kind == "python" else requirement.split()[0]
            if canonical(name) == canonical(package):
                asking.add(source)
        return asking

    # ansible-builder leaves some packages to the base image ("already present in image": PyYAML, which
    # ansible-core needs): its own list, read from the script it put in the context.
    left_to_the_image = runpy.run_path(str(build / "scripts" / "introspect.py"))["EXCLUDE_REQUIREMENTS"]
    for distribution in plugin_import_distributions():
        if canonical(distribution) in left_to_the_image:
            continue
        assert self_name() in sources("python", distribution), (distribution, found["python"])
    # The dependencies' own requirements come along (community.vmware needs pyVmomi too).
    assert "community.vmware" in sources("python", "pyvmomi"), found["python"]
    assert self_name() in sources("system", "openssh-clients"), found["system"]
