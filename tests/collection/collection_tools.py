"""What the packaging tests share: the collection's declarations, a scanner of
the FQCNs its roles and playbooks use, and ansible-galaxy run offline with a
HOME of its own.

Not a test module: test_dependencies.py, test_collection_tarball.py and
test_execution_environment.py import it (pytest puts this folder on sys.path).
"""

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
from collections import namedtuple
from pathlib import Path

import yaml

from testbed import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent

# Exempt from declaration: ansible-core's own, and the collection itself.
EXEMPT = {"ansible.builtin", "ansible.legacy"}

# What the scan reads: every YAML file below these folders of the checkout.
SCANNED_FOLDERS = ("roles", "playbooks", "molecule")


def galaxy_yml():
    return yaml.safe_load((PROJECT_ROOT / "galaxy.yml").read_text())


def self_name():
    galaxy = galaxy_yml()
    return f"{galaxy['namespace']}.{galaxy['name']}"


def tarball_name():
    galaxy = galaxy_yml()
    return f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"


def galaxy_yml_dependencies():
    """{collection: version spec} from galaxy.yml."""
    return dict(galaxy_yml().get("dependencies") or {})


def requirements_yml_dependencies():
    """{collection: version spec} from collections/requirements.yml."""
    data = yaml.safe_load((PROJECT_ROOT / "collections" / "requirements.yml").read_text())
    found = {}
    for entry in data.get("collections") or []:
        entry = {"name": entry} if isinstance(entry, str) else entry
        found[entry["name"]] = entry.get("version", "*")
    return found


# --- the FQCN scan ---------------------------------------------------------

Use = namedtuple("Use", "file fqcn how")

_NAME = r"[A-Za-z0-9_]+"
FQCN = rf"{_NAME}\.{_NAME}(?:\.{_NAME})+"
# Mapping keys that name a plugin: task modules and actions, module_defaults
# entries and action groups, with_<lookup> loops.
_KEY = re.compile(rf"(?P<prefix>group/|with_)?(?P<fqcn>{FQCN})")
# Plugins named inside Jinja, in {{ }} or in bare conditionals (when, that...).
_FILTER = re.compile(rf"\|\s*(?P<fqcn>{FQCN})\b")
_LOOKUP = re.compile(rf"\b(?:lookup|query|q)\(\s*[\"'](?P<fqcn>{FQCN})[\"']")
_TEST = re.compile(rf"\bis\s+(?:not\s+)?(?P<fqcn>{FQCN})\b")
# map('ns.coll.filter'), select('ns.coll.test'), selectattr('attr', 'ns.coll.test')
_HIGHER_ORDER = re.compile(r"\b(?P<call>map|select|reject|selectattr|rejectattr)\((?P<args>[^()]*)\)")
_QUOTED_FQCN = re.compile(rf"\s*[\"'](?P<fqcn>{FQCN})[\"']\s*")

_ROLE_ACTIONS = {"include_role", "import_role"}
_PLAYBOOK_ACTIONS = {"import_playbook"}


def _short(key):
    """include_role for include_role, ansible.builtin.include_role and ansible.legacy.include_role."""
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's own tags (!unsafe, !vault) as plain values."""


_Loader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None)


def _jinja_uses(text):
    for pattern, how in ((_FILTER, "filter"), (_LOOKUP, "lookup"), (_TEST, "test")):
        for match in pattern.finditer(text):
            yield match["fqcn"], how
    for match in _HIGHER_ORDER.finditer(text):
        positional = [arg for arg in match["args"].split(",") if "=" not in arg]
        if match["call"] in ("selectattr", "rejectattr"):
            positional = positional[1:]  # the first names an attribute
        for arg in positional[:1]:
            if quoted := _QUOTED_FQCN.fullmatch(arg):
                yield quoted["fqcn"], f"{match['call']}()"


def _role_reference(entry):
    name = entry if isinstance(entry, str) else (entry.get("role") or entry.get("name")) if isinstance(entry, dict) else None
    if isinstance(name, str) and re.fullmatch(FQCN, name):
        return name
    return None


def _walk(node):
    """(fqcn, how) for every plugin, role, playbook or collection a YAML document names."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                if match := _KEY.fullmatch(key):
                    how = {"group/": "module_defaults group", "with_": "lookup loop"}.get(match["prefix"], "module key")
                    yield match["fqcn"], how
                short = _short(key)
                if short in _ROLE_ACTIONS and isinstance(value, dict) and (role := _role_reference(value)):
                    yield role, short
                if key in ("roles", "dependencies") and isinstance(value, list):
                    for entry in value:
                        if role := _role_reference(entry):
                            yield role, key
                if short in _PLAYBOOK_ACTIONS and isinstance(value, str) and re.fullmatch(FQCN, value.strip()):
                    yield value.strip(), short
                if key in ("action", "local_action"):
                    module = value.split()[0] if isinstance(value, str) and value.split() else (
                        value.get("module") if isinstance(value, dict) else None)
                    if isinstance(module, str) and re.fullmatch(FQCN, module):
                        yield module, key
                if key == "collections" and isinstance(value, list):
                    for name in value:
                        if isinstance(name, str) and re.fullmatch(rf"{_NAME}\.{_NAME}", name):
                            yield name, "collections keyword"
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, str):
        yield from _jinja_uses(node)


def collection_of(fqcn):
    return ".".join(fqcn.split(".")[:2])


def scan_yaml(text, file):
    """Every FQCN one YAML file names, as Use(file, fqcn, how), in order of appearance."""
    uses = []
    for document in yaml.load_all(text, Loader=_Loader):
        uses.extend(Use(file, fqcn, how) for fqcn, how in _walk(document))
    return uses


def scan_checkout(root=PROJECT_ROOT, folders=SCANNED_FOLDERS):
    """Use(file, fqcn, how) for every FQCN in the YAML files of the scanned folders."""
    uses = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in (".yml", ".yaml") and path.is_file():
                uses.extend(scan_yaml(path.read_text(), str(path.relative_to(root))))
    return uses


def used_collections(uses):
    return {collection_of(use.fqcn) for use in uses}


def undeclared(uses, declarations, exempt=frozenset(EXEMPT)):
    """One message per file and collection used there but missing from a declaration.

    declarations: {where it is declared (e.g. "galaxy.yml"): collection names}.
    """
    messages = []
    by_file = {}
    for use in uses:
        collection = collection_of(use.fqcn)
        if collection not in exempt:
            by_file.setdefault((use.file, collection), []).append(use)
    for (file, collection), file_uses in sorted(by_file.items()):
        missing = [where for where, declared in declarations.items() if collection not in declared]
        if missing:
            named = ", ".join(sorted({f"{use.fqcn} ({use.how})" for use in file_uses}))
            messages.append(f"{file} uses {collection}, not declared in {' nor '.join(missing)}: {named}")
    return messages


# --- the `ansible` package and the plugins' Python imports ------------------

def ansible_package_collections():
    """The folder that holds the `ansible` package's ansible_collections (site-packages)."""
    return Path(importlib.metadata.distribution("ansible").locate_file("ansible_collections")).parent


def manifest(collection_dir):
    return json.loads((Path(collection_dir) / "MANIFEST.json").read_text())["collection_info"]


def in_ansible_package(collection):
    """The collection's folder in the `ansible` package, or None."""
    namespace, name = collection.split(".")
    folder = ansible_package_collections() / "ansible_collections" / namespace / name
    return folder if (folder / "MANIFEST.json").is_file() else None


def plugin_import_distributions(plugins=PROJECT_ROOT / "plugins"):
    """{distribution name: {imported top-level module}} for the third-party imports of the plugins."""
    distributions = {}
    owners = importlib.metadata.packages_distributions()
    for path in sorted(plugins.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("__future__", "ansible", "ansible_collections"):
                    continue
                for distribution in owners.get(top, [f"<no installed distribution provides {top}>"]):
                    distributions.setdefault(canonical(distribution), set()).add(top)
    return distributions


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


# --- ansible-galaxy, offline, with a HOME of its own ------------------------

def ansible_env(tmp_path, *collection_paths):
    """An environment for ansible-* commands: no ANSIBLE_* from outside, HOME in tmp_path.

    The sys.path scan for collections is off and the `ansible` package's folder
    is named instead: the editable dev install puts the checkout's collections/
    (ray_vsphere.cluster by a link) on sys.path, where ansible-galaxy would find
    the collection "already installed" and ansible-doc would read the checkout.
    A user's virtualenv has no such entry; there the scan finds the `ansible`
    package by itself. Any attempt to reach a Galaxy server goes to a closed
    port on loopback, so it fails at once instead of waiting.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        HOME=str(home),
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9/",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
    )
    if collection_paths:
        env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(str(path) for path in collection_paths)
    return env


def run(command, env, cwd, timeout=300):
    """Run an ansible-* command from the virtualenv; cwd keeps the checkout's ansible.cfg out."""
    return subprocess.run([str(VENV_BIN / command[0]), *map(str, command[1:])], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def build_tarball(output_path, tmp_path):
    """`ansible-galaxy collection build` of the checkout into output_path; the tarball's path."""
    env = ansible_env(tmp_path)
    result = run(["ansible-galaxy", "collection", "build", PROJECT_ROOT, "--output-path", output_path], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tarball = Path(output_path) / tarball_name()
    assert tarball.is_file(), result.stdout
    return tarball


def tarball_manifest(tarball):
    with tarfile.open(tarball) as archive:
        return json.load(archive.extractfile("MANIFEST.json"))["collection_info"]


def install_offline(requirement, target, tmp_path, *dependency_paths, cwd=None):
    """`ansible-galaxy collection install --offline` of a tarball (or -r file) into target.

    How ansible-galaxy 2.19 resolves dependencies offline: --offline takes
    every Galaxy server out of the resolver, and a dependency then counts as
    met only by a collection already installed in a path it reads: the target
    plus every configured collections path (and, unless switched off, every
    sys.path entry holding ansible_collections, where pip puts the `ansible`
    package's). So the dependencies of the tarball are "already installed,
    skipping" when those paths hold them, and the install fails, naming the
    dependency, when they do not. --no-deps is not needed and would hide a
    missing dependency.
    """
    env = ansible_env(tmp_path, target, *dependency_paths)
    source = ["-r", requirement] if str(requirement).endswith((".yml", ".yaml")) else [requirement]
    return run(["ansible-galaxy", "collection", "install", "--offline", "-p", target, *source], env, cwd or tmp_path)
