"""vcsim prepared as an administrator prepares a vCenter: by running playbooks/vcenter_prepare.yml.

The testbed has no implementation of its own of what the playbook makes. It
runs the playbook (ansible-runner, the VMWARE_* environment of AWX's
credential, verified TLS) against a fresh unprepared vcsim, and records what
that run made there: the difference, read back from vcsim, between before
and after in custom attribute definitions, roles and permissions.

A playbook run costs about 15 s (ansible-playbook and some twenty module
runs) where vcsim starts in 0.3 s, and a suite starts vcsim dozens of times;
so the record is kept, keyed by everything the result depends on (the
playbook, meta/vcenter_requirements.yml, the variables, the vcsim binary,
the community.vmware modules it runs), and every later vcsim gets that record
replayed, object by object. Change any of them and the next vcsim runs the
playbook again. A record says which playbook made it and holds the run's own
task results, so a test can hold the vcsim it is given against the run
(tests/testbed/test_vcsim_prepare.py).
"""

import fcntl
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from pyVmomi import vim

from testbed import PROJECT_ROOT, VCSIM_BIN
from testbed.appliance import DEFAULT_CACHE_DIR

PLAYBOOK = PROJECT_ROOT / "playbooks" / "vcenter_prepare.yml"
REQUIREMENTS = PROJECT_ROOT / "meta" / "vcenter_requirements.yml"
RECORD_DIR = DEFAULT_CACHE_DIR / "vcsim-prepared"
# The community.vmware modules vcenter_prepare.yml runs: what they do to vCenter is part of the record.
COMMUNITY_MODULES = ("vmware_custom_attribute", "vmware_local_role_manager", "vmware_object_role_permission")
# vCenter (and vcsim) adds these to every role; AddAuthorizationRole is given the others.
SYSTEM_PRIVILEGES = ("System.Anonymous", "System.Read", "System.View")

_records = {}


def _community_vmware_files():
    try:
        import ansible_collections.community.vmware as community_vmware  # a namespace package
    except ImportError as error:
        raise RuntimeError("the testbed prepares vcsim with playbooks/vcenter_prepare.yml, which needs "
                           "community.vmware: install the operator extra (scripts/setup does)") from error
    root = Path(list(community_vmware.__path__)[0])
    return [root / "MANIFEST.json", root / "plugins" / "module_utils" / "vmware.py"] + [
        root / "plugins" / "modules" / f"{name}.py" for name in COMMUNITY_MODULES]


def record_key(playbook, extravars):
    """What the record of a run of playbook with extravars depends on, as one hash."""
    digest = hashlib.sha256(json.dumps(extravars, sort_keys=True).encode())
    requirements = Path(playbook).parent.parent / "meta" / REQUIREMENTS.name
    for path in [Path(playbook), requirements, VCSIM_BIN, *_community_vmware_files()]:
        digest.update(path.name.encode() + b"\0" + _file_digest(path))
    return digest.hexdigest()[:32]


def _file_digest(path, _known={}):
    """sha256 of a file, read again only when its size or modification time changed (vcsim's binary is large)."""
    stat = path.stat()
    seen = (str(path), stat.st_size, stat.st_mtime_ns)
    if seen not in _known:
        _known[seen] = hashlib.sha256(path.read_bytes()).digest()
    return _known[seen]


def inventory_path(service_instance, entity):
    from ansible_collections.ray_vsphere.cluster.plugins.module_utils._placement import inventory_path as path
    return path(service_instance, entity)


def vcenter_state(service_instance):
    """What vcenter_prepare.yml can make, as read from vCenter: comparable, serialisable lists."""
    content = service_instance.content
    manager = content.authorizationManager
    roles = sorted(manager.roleList, key=lambda role: role.roleId)
    role_names = {role.roleId: role.name for role in roles}
    fields = [[field.name, field.managedObjectType.__name__ if field.managedObjectType else None]
              for field in content.customFieldsManager.field or []]
    permissions = sorted([inventory_path(service_instance, permission.entity), permission.principal,
                          permission.group, role_names[permission.roleId], permission.propagate]
                         for permission in manager.RetrieveAllPermissions())
    return {"custom_fields": fields,
            "roles": [[role.name, sorted(set(role.privilege) - set(SYSTEM_PRIVILEGES))] for role in roles],
            "permissions": permissions}


def made(before, after):
    """What is in after and not in before, kind by kind, in after's order."""
    return {kind: [entry for entry in after[kind] if entry not in before[kind]] for kind in after}


def replay(service_instance, made_there):
    """Make in this vCenter what the recorded run made in its own: the same definitions, roles and grants."""
    content = service_instance.content
    manager = content.authorizationManager
    for name, managed_type in made_there["custom_fields"]:
        content.customFieldsManager.AddCustomFieldDef(
            name=name, moType=getattr(vim, managed_type.rsplit(".", 1)[-1]) if managed_type else None)
    for name, privilege_ids in made_there["roles"]:
        manager.AddAuthorizationRole(name=name, privIds=privilege_ids)
    role_ids = {role.name: role.roleId for role in manager.roleList}
    for path, principal, group, role, propagate in made_there["permissions"]:
        entity = content.searchIndex.FindByInventoryPath(path.lstrip("/"))
        if entity is None:
            raise LookupError(f"the prepare record grants on {path}, which this vcsim does not have")
        manager.SetEntityPermissions(entity, [vim.AuthorizationManager.Permission(
            entity=entity, principal=principal, group=group, roleId=role_ids[role], propagate=propagate)])


def run_playbook(endpoint, run_dir, playbook=PLAYBOOK, extravars=None):
    """One run of the playbook as an administrator runs it, credentials from the environment.

    [{task, changed, items: [the loop item's label]}] of each task that ran.
    """
    from ray_provider.runner import run_playbook as run
    runner = run(Path(playbook).name, run_dir, project_dir=Path(playbook).parent, extravars=extravars or {},
                 envvars=endpoint.environment(), timeout=600)
    if runner.status != "successful":
        raise RuntimeError(f"{playbook} failed on vcsim ({runner.status}): {runner.stdout.read()[-3000:]}")
    tasks = []
    for event in runner.events:
        if event.get("event") == "runner_on_ok":
            data = event["event_data"]
            result = data.get("res", {})
            tasks.append({"task": data.get("task"), "changed": bool(result.get("changed")),
                          "items": [item.get("_ansible_item_label", item.get("item")) for item in result.get("results", [])
                                    if item.get("changed")]})
    return tasks


def _shown(playbook):
    playbook = Path(playbook).resolve()
    return str(playbook.relative_to(PROJECT_ROOT)) if playbook.is_relative_to(PROJECT_ROOT) else str(playbook)


def record(unprepared_vcsim, playbook=PLAYBOOK, extravars=None):
    """Run the playbook on a fresh vcsim (unprepared_vcsim() starts one) and record what it made there."""
    started = time.monotonic()
    with unprepared_vcsim() as sim, tempfile.TemporaryDirectory(prefix="ray-vsphere-prepare-") as run_dir:
        service_instance = sim.endpoint.connect()
        try:
            before = vcenter_state(service_instance)
            tasks = run_playbook(sim.endpoint, Path(run_dir) / "run", playbook, extravars)
            after = vcenter_state(service_instance)
        finally:
            service_instance.content.sessionManager.Logout()
    return {"playbook": _shown(playbook), "extravars": extravars or {}, "made": made(before, after),
            "seconds": round(time.monotonic() - started, 2), "tasks": tasks}


def prepared_record(unprepared_vcsim, playbook=None, extravars=None, record_dir=None):
    """The record of the playbook's run with extravars: kept from an earlier run of the same inputs, or made now.

    playbook: default PLAYBOOK; record_dir: default RECORD_DIR (both read at each call).
    """
    playbook = playbook or PLAYBOOK
    key = record_key(playbook, extravars or {})
    if key in _records:
        return _records[key]
    folder = Path(record_dir or RECORD_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    # Processes starting vcsims at once (a test and its `ray up` or molecule child) wait for one run of the playbook.
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            partial = folder / f".{key}.{os.getpid()}"
            partial.write_text(json.dumps(dict(record(unprepared_vcsim, playbook, extravars), key=key), indent=1))
            os.replace(partial, path)
    _records[key] = json.loads(path.read_text())
    return _records[key]


def forget_records():
    """Drop the records this process holds in memory (the files stay): the next vcsim reads or makes its own."""
    _records.clear()
