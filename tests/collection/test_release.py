"""What a release carries, read from the built artifacts and the release tools themselves.

- The wheel's METADATA says GPL-3.0-or-later (PEP 639) and carries the whole
  LICENSE and the project's links, which galaxy.yml names for Galaxy too.
- The changelog passes antsibull-changelog's lint, CHANGELOG.rst is what
  antsibull-changelog makes of changelogs/changelog.yaml, and a version that
  is released leaves no fragment out of its release. After adding fragments to
  a released version, run from the checkout:
      .venv/bin/antsibull-changelog release --version "$(sed -n 's/^version: //p' galaxy.yml)"
- meta/runtime.yml's requires_ansible claims exactly the ansible-core range
  pyproject.toml installs and the suite tests.
"""

import email
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from collection_tools import PROJECT_ROOT, galaxy_yml
from testbed import image

ANTSIBULL_CHANGELOG = str(Path(sys.executable).parent / "antsibull-changelog")
CHANGELOGS = PROJECT_ROOT / "changelogs"
RELEASE_COMMAND = "antsibull-changelog release --version {version}"


def pyproject():
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def changelog_releases():
    return yaml.safe_load((CHANGELOGS / "changelog.yaml").read_text())["releases"]


def unreleased_fragments():
    notes_dir = yaml.safe_load((CHANGELOGS / "config.yaml").read_text())["notesdir"]
    return sorted(path.name for path in (CHANGELOGS / notes_dir).glob("*.y*ml"))


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory):
    """(METADATA as a message, {name: bytes} of the wheel's files), of the wheel built as users build it."""
    wheel = image.build_product_wheel(tmp_path_factory.mktemp("wheel"))
    with zipfile.ZipFile(wheel) as archive:
        files = {name: archive.read(name) for name in archive.namelist()
                 if ".dist-info/" in name or name.endswith(("/LICENSE", "/MANIFEST.json"))}
    (metadata_name,) = [name for name in files if name.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(files[metadata_name]), files


def test_the_wheel_says_gpl_3_or_later_and_carries_the_whole_license(wheel_metadata):
    metadata, files = wheel_metadata
    assert metadata["Metadata-Version"] in ("2.4", "2.5"), "PEP 639's License-Expression needs metadata 2.4"
    assert metadata["License-Expression"] == "GPL-3.0-or-later"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None  # the free-text field PEP 639 replaces
    license_text = (PROJECT_ROOT / "LICENSE").read_bytes()
    (dist_info_license,) = [name for name in files if name.endswith(".dist-info/licenses/LICENSE")]
    assert files[dist_info_license] == license_text
    # The collection inside the wheel is the one ansible-galaxy builds: it has the text too.
    assert files["ansible_collections/ray_vsphere/cluster/LICENSE"] == license_text
    assert b"GNU GENERAL PUBLIC LICENSE" in license_text and b"END OF TERMS AND CONDITIONS" in license_text


def test_the_wheel_links_the_repository_galaxy_yml_names(wheel_metadata):
    metadata, files = wheel_metadata
    links = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    galaxy = galaxy_yml()
    assert links == {"Homepage": galaxy["homepage"], "Documentation": galaxy["documentation"],
                     "Issues": galaxy["issues"], "Source": galaxy["repository"]}
    assert metadata["Version"] == galaxy["version"] == pyproject()["version"]
    manifest = yaml.safe_load(files["ansible_collections/ray_vsphere/cluster/MANIFEST.json"])["collection_info"]
    assert manifest["version"] == metadata["Version"]
    assert {key: manifest[key] for key in ("homepage", "documentation", "issues", "repository")} == {
        "homepage": links["Homepage"], "documentation": links["Documentation"], "issues": links["Issues"],
        "repository": links["Source"]}


def test_the_changelog_fragments_pass_antsibull_changelogs_lint():
    linted = subprocess.run([ANTSIBULL_CHANGELOG, "lint"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")
    checked = subprocess.run([ANTSIBULL_CHANGELOG, "lint-changelog-yaml", str(CHANGELOGS / "changelog.yaml")],
                             capture_output=True, text=True, timeout=120)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_changelog_rst_is_what_antsibull_changelog_makes_of_changelog_yaml(tmp_path):
    copy = tmp_path / "collection"
    copy.mkdir()
    shutil.copy(PROJECT_ROOT / "galaxy.yml", copy)
    shutil.copytree(CHANGELOGS, copy / "changelogs")
    generated = subprocess.run([ANTSIBULL_CHANGELOG, "generate"], cwd=copy, capture_output=True, text=True,
                               timeout=120)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert (PROJECT_ROOT / "CHANGELOG.rst").read_text() == (copy / "CHANGELOG.rst").read_text(), (
        "CHANGELOG.rst is stale: run `antsibull-changelog generate` (or the release command) in the checkout")


def test_a_released_version_leaves_no_fragment_out_and_a_new_one_is_newer_than_every_release():
    version = galaxy_yml()["version"]
    assert pyproject()["version"] == version, "pyproject.toml and galaxy.yml name different versions"
    releases = changelog_releases()
    if version in releases:
        assert unreleased_fragments() == [], (
            f"{version} is released in changelogs/changelog.yaml, but these fragments are not in it: "
            f"run `{RELEASE_COMMAND.format(version=version)}`")
        assert releases[version].get("changes", {}).get("release_summary"), f"{version} has no release summary"
    else:
        assert all(Version(version) > Version(released) for released in releases), (
            f"galaxy.yml's {version} is not newer than the releases {sorted(releases)}")


def test_the_first_release_keeps_what_it_recorded_and_later_changes_are_in_later_releases():
    # 0.1.0 was released on 2026-11-25 with four modules and no plugins: template_prune, account_privileges and
    # the filters came after it, so they are in the release that added them, as their version_added says.
    releases = changelog_releases()
    first = releases["0.1.0"]
    assert first["release_date"] == "2026-11-25"
    assert sorted(module["name"] for module in first["modules"]) == [
        "node_delete", "node_deploy", "node_info", "node_tags"]
    assert "plugins" not in first
    listed_later = {(kind, entry["name"]): version for version, release in releases.items() if version != "0.1.0"
                    for kind, entries in [("module", release.get("modules", []))]
                    + [(kind, entries) for kind, entries in release.get("plugins", {}).items()]
                    for entry in entries}
    for kind, folder in (("module", "modules"), ("filter", "filter")):
        for plugin in sorted((PROJECT_ROOT / "plugins" / folder).glob("[!_]*.py")):
            documentation = yaml.safe_load(_documentation_of(plugin))
            added = str(documentation["version_added"])
            if added != "0.1.0":
                assert listed_later.get((kind, plugin.stem)) == added, (
                    f"{kind} {plugin.stem} (version_added {added}) is not among {added}'s new plugins")


def _documentation_of(plugin):
    import ast
    for node in ast.parse(plugin.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "DOCUMENTATION"
                                                for target in node.targets):
            return node.value.value
    raise AssertionError(f"{plugin} has no DOCUMENTATION")


def test_requires_ansible_claims_exactly_the_ansible_core_range_that_is_installed_and_tested():
    (core,) = [Requirement(line) for line in pyproject()["dependencies"] if Requirement(line).name == "ansible-core"]
    claimed = SpecifierSet(yaml.safe_load((PROJECT_ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"])

    def normalized(specifiers):
        return {(specifier.operator, Version(specifier.version)) for specifier in specifiers}

    assert normalized(claimed) == normalized(core.specifier), (
        f"meta/runtime.yml claims ansible-core {claimed}, pyproject.toml installs {core.specifier}")
    tested = next(line.split("==")[1].strip() for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
                  if line.startswith("ansible-core=="))
    assert Version(tested) in claimed
