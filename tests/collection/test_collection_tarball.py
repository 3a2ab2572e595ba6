"""The collection installed the way users install it: `ansible-galaxy collection
build`, then `ansible-galaxy collection install --offline` of the tarball, its
dependencies met by the `ansible` package from PyPI (no Galaxy server here).

How ansible-galaxy 2.19 resolves dependencies offline is described at
collection_tools.install_offline: --offline, with the dependencies found as
installed collections in a path ansible-galaxy reads. A user's virtualenv with
`ansible` installed has them on sys.path already:
    ansible-galaxy collection build --output-path dist/
    ansible-galaxy collection install --offline dist/ray_vsphere-cluster-<version>.tar.gz
"""

import json
import tarfile
import tomllib

import pytest

from collection_tools import (PROJECT_ROOT, ansible_env, ansible_package_collections, build_tarball,
                              galaxy_yml, galaxy_yml_dependencies, install_offline, run, self_name,
                              tarball_manifest)

MODULES = sorted(f"{self_name()}.{path.stem}" for path in (PROJECT_ROOT / "plugins" / "modules").glob("*.py"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tarball")
    return tmp_path, build_tarball(tmp_path / "dist", tmp_path)


@pytest.fixture(scope="module")
def installed(built):
    """(target collections path, env) after an offline install of the built tarball."""
    tmp_path, tarball = built
    target = tmp_path / "collections"
    result = install_offline(tarball, target, tmp_path, ansible_package_collections())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{self_name()}:{galaxy_yml()['version']} was installed successfully" in output
    for dependency in galaxy_yml_dependencies():
        # Met by the `ansible` package, not fetched.
        assert f"'{dependency}:" in output and "is already installed, skipping" in output, output
    return target, ansible_env(tmp_path, target, ansible_package_collections())


def test_the_tarball_holds_the_collection_and_none_of_the_build_ignored_paths(built):
    _, tarball = built
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    tops = {name.split("/")[0] for name in names}
    for ignored in ("ray_provider", "testbed", "tests", "molecule", "scripts", "benchmarks", "examples",
                    "hatch_build.py", "pyproject.toml", "constraints.txt", "dist", "execution-environment"):
        assert ignored not in tops, f"{ignored} is in the tarball"
    for needed in ("meta/runtime.yml", "meta/execution-environment.yml", "meta/ee-requirements.txt",
                   "meta/ee-bindep.txt", "playbooks/ray_up.yml", "roles/cluster_key/tasks/main.yml",
                   "plugins/module_utils/_client.py",
                   # vcenter_prepare.yml reads the requirements file beside it, installed too.
                   "playbooks/vcenter_prepare.yml", "meta/vcenter_requirements.yml"):
        assert needed in names, f"{needed} is not in the tarball"


def test_the_tarball_carries_the_gpl_and_the_links_pypi_shows(built):
    # Galaxy shows MANIFEST.json's license and links; PyPI shows pyproject's: one project, one set.
    _, tarball = built
    info = tarball_manifest(tarball)
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert info["license"] == [project["license"]] == ["GPL-3.0-or-later"]
    assert info["license_file"] is None  # Galaxy takes one of the two
    links = {key: info[key] for key in ("repository", "homepage", "documentation", "issues")}
    assert links == {"repository": project["urls"]["Source"], "homepage": project["urls"]["Homepage"],
                     "documentation": project["urls"]["Documentation"], "issues": project["urls"]["Issues"]}
    assert all(link.startswith(info["repository"]) for link in links.values()), links
    assert info["version"] == project["version"]
    with tarfile.open(tarball) as archive:
        license_text = archive.extractfile("LICENSE").read().decode()
    assert license_text == (PROJECT_ROOT / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the whole text, not a notice


def test_the_offline_install_fails_naming_a_dependency_it_cannot_find(built):
    # Without the `ansible` package's collections, --offline has nothing to
    # meet the dependencies with: the install fails rather than skip them.
    tmp_path, tarball = built
    result = install_offline(tarball, tmp_path / "no-dependencies", tmp_path)
    assert result.returncode != 0
    assert "Could not satisfy the following requirements" in result.stderr, result.stderr
    named = [f"* {name}:{spec} (dependency of {self_name()}" for name, spec in galaxy_yml_dependencies().items()]
    assert any(line in result.stderr for line in named), result.stderr


def test_ansible_galaxy_lists_the_installed_copy_and_its_dependencies(installed):
    target, env = installed
    result = run(["ansible-galaxy", "collection", "list", "--format", "json"], env, target.parent)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed[str(target / "ansible_collections")] == {self_name(): {"version": galaxy_yml()["version"]}}
    from_ansible = listed[str(ansible_package_collections() / "ansible_collections")]
    for dependency in galaxy_yml_dependencies():
        assert dependency in from_ansible


def test_ansible_doc_reads_every_module_from_the_installed_copy(installed):
    target, env = installed
    result = run(["ansible-doc", "--json", *MODULES], env, target.parent)
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    assert sorted(docs) == MODULES
    for module, doc in docs.items():
        assert doc["doc"]["filename"].startswith(str(target / "ansible_collections" / "ray_vsphere" / "cluster")), module


def test_every_playbook_of_the_installed_copy_passes_a_syntax_check_by_fqcn(installed):
    # Parsing resolves every module, and the roles of `roles:`, from the
    # installed copy and the `ansible` package.
    target, env = installed
    root = target / "ansible_collections" / "ray_vsphere" / "cluster" / "playbooks"
    playbooks = sorted(".".join((self_name(), *path.relative_to(root).with_suffix("").parts))
                       for path in root.rglob("*.yml") if "vars" not in path.relative_to(root).parts)
    assert f"{self_name()}.ray_up" in playbooks and f"{self_name()}.provider.create_nodes" in playbooks
    result = run(["ansible-playbook", "--syntax-check", *playbooks], env, target.parent)
    assert result.returncode == 0, result.stdout + result.stderr
