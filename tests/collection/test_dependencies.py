"""Every collection the roles and playbooks use is declared where installs read it.

galaxy.yml `dependencies` is what `ansible-galaxy collection install` of the
tarball (and so an execution environment's build) resolves;
collections/requirements.yml is what AWX project sync installs. Both must name
every collection whose FQCN appears in roles/, playbooks/ or molecule/, the
`ansible` package must carry each at a version that meets the declaration, and
the Python packages the plugins import must be declared for execution
environments.
"""

import tomllib

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements
from packaging.requirements import Requirement

from collection_tools import (EXEMPT, PROJECT_ROOT, canonical, galaxy_yml_dependencies, in_ansible_package, manifest,
                              plugin_import_distributions, requirements_yml_dependencies, scan_checkout, scan_yaml,
                              self_name, undeclared, used_collections)

EVERY_KIND = """
- name: A play
  hosts: localhost
  collections: [example.listed]
  module_defaults:
    group/example.group.vmware: {hostname: vcenter.example.com}
    example.defaults.module: {port: 443}
  roles:
    - example.roles.plain
    - role: example.roles.dict
    - a_local_role
  tasks:
    - name: A module, and a filter
      example.modules.thing:
        msg: "{{ x | example.filters.to_thing }}"
    - name: A lookup, a query, tests
      ansible.builtin.debug:
        msg: "{{ lookup('example.lookups.thing', 'a') }} {{ query('example.queries.q') }}"
      when: x is example.tests.ok and y is not example.tests.bad
    - name: Filters and tests by name, attributes that look like FQCNs
      ansible.builtin.debug:
        msg: "{{ xs | map('example.mapped.f') | selectattr('a.b.c', 'example.selected.t') | map(attribute='d.e.f') }}"
    - name: Include a role
      ansible.builtin.include_role:
        name: example.included.role
    - name: Import a role
      import_role:
        name: example.imported.role
    - name: Loop over a lookup
      ansible.builtin.debug:
      with_example.loops.items: [1]
    - name: An action string
      action: example.action.mod a=b
    - name: A host name is not an FQCN
      ansible.builtin.set_fact:
        vcenter: www.example.com
        secret: !unsafe "{{ not templated }}"
- name: A playbook by FQCN
  ansible.builtin.import_playbook: example.playbooks.site
"""


def test_the_scanner_finds_every_kind_of_fqcn_and_nothing_else():
    uses = scan_yaml(EVERY_KIND, "playbooks/every_kind.yml")
    assert {(use.fqcn, use.how) for use in uses} == {
        ("example.listed", "collections keyword"),
        ("example.group.vmware", "module_defaults group"),
        ("example.defaults.module", "module key"),
        ("example.roles.plain", "roles"),
        ("example.roles.dict", "roles"),
        ("example.modules.thing", "module key"),
        ("example.filters.to_thing", "filter"),
        ("ansible.builtin.debug", "module key"),
        ("example.lookups.thing", "lookup"),
        ("example.queries.q", "lookup"),
        ("example.tests.ok", "test"),
        ("example.tests.bad", "test"),
        ("example.mapped.f", "map()"),
        ("example.selected.t", "selectattr()"),
        ("ansible.builtin.include_role", "module key"),
        ("example.included.role", "include_role"),
        ("example.imported.role", "import_role"),
        ("example.loops.items", "lookup loop"),
        ("example.action.mod", "action"),
        ("ansible.builtin.set_fact", "module key"),
        ("ansible.builtin.import_playbook", "module key"),
        ("example.playbooks.site", "import_playbook"),
    }


def test_an_undeclared_collection_fails_naming_the_file_and_the_collection():
    uses = scan_yaml(EVERY_KIND, "playbooks/every_kind.yml")
    uses += scan_yaml("- {name: Own module, ray_vsphere.cluster.node_info: {}}\n", "roles/own/tasks/main.yml")
    declared = used_collections(uses) - EXEMPT - {"ray_vsphere.cluster"}
    declarations = {"galaxy.yml": declared, "collections/requirements.yml": declared - {"example.filters"}}

    messages = undeclared(uses, declarations, exempt=EXEMPT | {"ray_vsphere.cluster"})

    assert messages == ["playbooks/every_kind.yml uses example.filters, not declared in collections/requirements.yml: "
                        "example.filters.to_thing (filter)"]
    assert undeclared(uses, {"galaxy.yml": set()}, exempt=EXEMPT | {"ray_vsphere.cluster"})[0].startswith(
        "playbooks/every_kind.yml uses example.action, not declared in galaxy.yml: ")


@pytest.fixture(scope="module")
def uses():
    return scan_checkout()


def test_the_scan_sees_the_uses_it_is_there_to_check(uses):
    seen = {(use.file, use.fqcn) for use in uses}
    for expected in [
        ("roles/cluster_key/tasks/main.yml", "ansible.builtin.command"),
        ("playbooks/vcenter_prepare.yml", "community.vmware.vmware_custom_attribute"),
        ("playbooks/vcenter_info.yml", "ray_vsphere.cluster.placement_info"),
        ("playbooks/ray_up.yml", "ray_vsphere.cluster.cluster_key"),
        ("playbooks/ray_up.yml", "ray_vsphere.cluster.ray_node"),
        ("playbooks/provider/create_nodes.yml", "ray_vsphere.cluster.vmware"),
        ("molecule/default/verify.yml", "ray_vsphere.cluster.node_info"),
    ]:
        assert expected in seen


def test_every_collection_the_roles_and_playbooks_use_is_declared_in_galaxy_yml_and_requirements_yml(uses):
    declarations = {
        "galaxy.yml dependencies": set(galaxy_yml_dependencies()),
        "collections/requirements.yml": set(requirements_yml_dependencies()),
    }
    messages = undeclared(uses, declarations, exempt=EXEMPT | {self_name()})
    assert messages == [], "\n".join(messages)


def test_galaxy_yml_and_requirements_yml_declare_the_same_collections_and_none_unused(uses):
    # Two lists of one thing (ansible-galaxy reads galaxy.yml when it installs
    # the tarball, AWX project sync reads requirements.yml): they must agree.
    assert requirements_yml_dependencies() == galaxy_yml_dependencies()
    unused = set(galaxy_yml_dependencies()) - used_collections(uses)
    assert not unused, f"declared but used by no role or playbook: {sorted(unused)}"


def test_the_ansible_package_carries_every_declared_dependency_at_a_version_that_meets_it():
    for collection, spec in sorted(galaxy_yml_dependencies().items()):
        folder = in_ansible_package(collection)
        assert folder, f"the `ansible` package does not carry {collection}"
        version = manifest(folder)["version"]
        assert meets_requirements(version, spec), f"{collection} {version} in the `ansible` package does not meet {spec}"


def collection_python_requirements():
    """The Requirements in the file that meta/execution-environment.yml names for Python."""
    ee_meta = yaml.safe_load((PROJECT_ROOT / "meta" / "execution-environment.yml").read_text())
    lines = (PROJECT_ROOT / ee_meta["dependencies"]["python"]).read_text().splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def test_the_python_packages_the_plugins_import_are_declared_for_execution_environments():
    imported = plugin_import_distributions()
    assert "pyvmomi" in imported, imported  # the scan of the imports works
    declared = {canonical(requirement.name) for requirement in collection_python_requirements()}
    missing = set(imported) - declared
    assert not missing, f"imported by the plugins, missing from the collection's EE requirements: " \
                        f"{ {name: sorted(imported[name]) for name in missing} }"


def test_the_python_package_declares_the_collections_python_requirements_alike():
    # pyproject.toml is the second list (the wheel carries the collection):
    # the same requirement, so the two cannot drift apart.
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wheel = {canonical(Requirement(line).name): Requirement(line).specifier for line in project["dependencies"]}
    for requirement in collection_python_requirements():
        assert wheel.get(canonical(requirement.name)) == requirement.specifier, (requirement, wheel)



# The playbooks `ray up` and the head's autoscaler run (bootstrap_config's
# check_config.yml, the provider's create/terminate/tag playbooks) and every
# role they load: on a machine with ansible-core and ray-vsphere alone, as the
# wheel's base dependencies install them.
RAY_UP_PATH = ("playbooks/provider/", "roles/")


def test_the_ray_up_path_uses_no_collection_but_ansible_core_and_this_one(uses):
    scanned = [use for use in uses if use.file.startswith(RAY_UP_PATH)]
    assert {use.file for use in scanned} >= {"playbooks/provider/check_config.yml", "roles/cluster_key/tasks/main.yml"}
    foreign = sorted({f"{use.file}: {use.fqcn} ({use.how})" for use in scanned
                      if ".".join(use.fqcn.split(".")[:2]) not in EXEMPT | {self_name()}})
    assert not foreign, "the ray up path needs a collection beyond ansible-core:\n" + "\n".join(foreign)


def test_the_operator_extra_carries_the_declared_collections_and_the_base_does_not():
    # galaxy.yml's dependencies come from the `ansible` package on PyPI: in the
    # wheel's `operator` extra, never in what `pip install ray-vsphere` (the
    # head) installs.
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    base = {canonical(Requirement(line).name) for line in project["dependencies"]}
    operator = {canonical(Requirement(line).name) for line in project["optional-dependencies"]["operator"]}
    assert "ansible" in operator and "ansible" not in base
    assert galaxy_yml_dependencies(), "the operator's playbooks declare collections"
