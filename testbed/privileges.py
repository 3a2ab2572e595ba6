"""meta/vcenter_requirements.yml: the vSphere methods the project calls, their privileges, and what follows from it.

The testbed's oracle, testbed/vsphere_method_privileges.yml (VMware's
"Required privileges", transcribed), is what vcsim enforces and what the file
is checked against; no product code reads it.

- `unlisted(calls)`: traced (method, type) pairs the file does not list (the
  test session fails on any, so the privilege list cannot go stale);
- `enforced_privileges()`: the oracle as vcsim's -enforce-permissions JSON;
- `disagreements(requirements)`: where the file gives a caller less than the
  oracle requires;
- `python -m testbed.privileges --write|--check`: the privilege section of
  docs/real-vcenter.md, generated from the file.
"""

import argparse
import sys

import yaml

from testbed import PROJECT_ROOT

REQUIREMENTS_FILE = "meta/vcenter_requirements.yml"
REQUIREMENTS = PROJECT_ROOT / REQUIREMENTS_FILE
ORACLE_FILE = "testbed/vsphere_method_privileges.yml"
ORACLE = PROJECT_ROOT / ORACLE_FILE
PRIVILEGE_DOC_FILE = "docs/real-vcenter.md"
PRIVILEGE_DOC = PROJECT_ROOT / PRIVILEGE_DOC_FILE
# The roles of the file's account_roles: the operator's (playbooks, AWX, `ray up`) and a Ray head's autoscaler's.
OPERATOR = "operator"
AUTOSCALER = "autoscaler"
# vCenter adds these to every role (and vcsim does too): listed in no table.
SYSTEM_PRIVILEGES = ("System.Anonymous", "System.Read", "System.View")
BEGIN = "<!-- BEGIN privileges: generated from meta/vcenter_requirements.yml by python -m testbed.privileges -->"
END = "<!-- END privileges -->"


# The oracle's `object` values that testbed/vcsim/permissions.go (and privilege_conditions.go) resolve to an object.
ENFORCED_ON = ("this", "parent", "folder_argument", "pool_argument", "datastore_argument", "entity_argument",
               "clone_pool", "clone_datastore", "backing_network", "task_entity")


def load():
    return yaml.safe_load(REQUIREMENTS.read_text())


def load_oracle():
    return yaml.safe_load(ORACLE.read_text())


def reference_url(method, requirements=None):
    """The method's page in the vSphere API reference (or the page the entry's `reference` names)."""
    page = method.get("reference") or {"type": method["type"], "method": method["method"]}
    return (requirements or load())["api_reference"].format(**page)


def custom_attributes(requirements=None):
    return list((requirements or load())["custom_attributes"])


def role_name(role=OPERATOR, requirements=None):
    """The vCenter role's name (playbooks/vcenter_prepare.yml's default) of one of the file's account_roles."""
    return (requirements or load())["account_roles"][role]["name"]


def role_methods(role=OPERATOR, requirements=None):
    """(method, type) pairs whose `roles` name this role: what an account of that role may call."""
    return {(method["method"], method["type"]) for method in (requirements or load())["methods"]
            if role in method["roles"]}


def role_privileges(role=OPERATOR, requirements=None):
    """The role's privileges: every privilege of its methods, but those vCenter gives every role."""
    found = {grant["privilege"] for method in (requirements or load())["methods"] if role in method["roles"]
             for grant in method["privileges"]}
    return sorted(found - set(SYSTEM_PRIVILEGES))


def unlisted(calls, requirements=None):
    """The (method, type) pairs among calls that the file lists for no such managed object type."""
    listed = {(method["method"], method["type"]) for method in (requirements or load())["methods"]}
    return sorted(call for call in calls if tuple(call) not in listed)


def enforced_privileges(oracle=None):
    """{method: [{privilege, on[, when]}]}: the oracle, as vcsim's -enforce-permissions checks it (permissions.go)."""
    rules = {}
    for method in (oracle or load_oracle())["methods"]:
        for grant in method["privileges"]:
            if grant["privilege"] not in SYSTEM_PRIVILEGES and grant["object"] in ENFORCED_ON:
                rule = {"privilege": grant["privilege"], "on": grant["object"]}
                rule.update({"when": grant["when"]} if grant.get("when") else {})
                rules.setdefault(method["method"], []).append(rule)
    return rules


def disagreements(requirements=None, oracle=None):
    """What the requirements file gets wrong by the oracle, one sentence each: an empty list when nothing.

    For every listed method: the oracle knows it; the entry lists each privilege the oracle requires and
    no other (but the System ones every role has); each role calling it holds that privilege (the roles
    are granted where the project's objects are: the folder, pool, datastore and network).
    """
    requirements, oracle = requirements or load(), oracle or load_oracle()
    required = {(method["method"], method["type"]): method for method in oracle["methods"]}
    found = []
    for method in requirements["methods"]:
        name = "%s.%s" % (method["type"], method["method"])
        reference = required.get((method["method"], method["type"]))
        if reference is None:
            found.append(f"{name}: not in {ORACLE_FILE}; transcribe its Required privileges there")
            continue
        listed = {grant["privilege"] for grant in method["privileges"]}
        for grant in reference["privileges"]:
            why = (f"on {grant['object']}" + (f" when {grant['when']} is set" if grant.get("when") else "")
                   + f", which {grant.get('page', reference['page'])} requires")
            if grant["privilege"] not in listed:
                found.append(f"{name}: {REQUIREMENTS_FILE} does not list {grant['privilege']} ({why})")
            if grant["privilege"] in SYSTEM_PRIVILEGES:
                continue
            found += [f"{name}: the {role} role lacks {grant['privilege']} ({why})" for role in method["roles"]
                      if grant["privilege"] not in role_privileges(role, requirements)]
        documented = {grant["privilege"] for grant in reference["privileges"]}
        found += [f"{name}: {REQUIREMENTS_FILE} lists {privilege}, which {reference['page']} does not require"
                  for privilege in sorted(listed - documented - set(SYSTEM_PRIVILEGES))]
    return list(dict.fromkeys(found))


def markdown(requirements=None):
    requirements = requirements or load()
    lines = [BEGIN, "",
             "| method (on) | privilege: checked on | called by | roles | reference |",
             "|---|---|---|---|---|"]
    for method in sorted(requirements["methods"], key=lambda item: (item["type"], item["method"])):
        grants = "<br>".join(f"`{grant['privilege']}`: {grant['checked_on']}" for grant in method["privileges"])
        lines.append(f"| `{method['type']}.{method['method']}` | {grants} | {method['called_by']} | "
                     f"{', '.join(method['roles'])} | [API reference]({reference_url(method, requirements)}) |")
    operator = role_privileges(OPERATOR, requirements)
    lines += ["", f"The roles (vCenter adds {', '.join(SYSTEM_PRIVILEGES)} to every role), by privilege:", "",
              f"| privilege | `{role_name(OPERATOR, requirements)}` | `{role_name(AUTOSCALER, requirements)}` |",
              "|---|---|---|"]
    autoscaler = set(role_privileges(AUTOSCALER, requirements))
    lines += [f"| `{privilege}` | yes | {'yes' if privilege in autoscaler else 'no'} |" for privilege in operator]
    lines += ["", f"{len(operator)} privileges for the operator, {len(autoscaler)} for the autoscaler.", "",
              f"Custom attributes (VirtualMachine): {', '.join(f'`{name}`' for name in custom_attributes(requirements))}.",
              "", END]
    return "\n".join(lines)


def doc_with_table(doc_text, requirements=None):
    start, end = doc_text.find(BEGIN), doc_text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{PRIVILEGE_DOC_FILE} has no {BEGIN!r} ... {END!r} section")
    return doc_text[:start] + markdown(requirements) + doc_text[end + len(END):]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m testbed.privileges", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the privilege section of " + PRIVILEGE_DOC_FILE)
    action.add_argument("--check", action="store_true", help="fail if the privilege section of " + PRIVILEGE_DOC_FILE + " is not current")
    args = parser.parse_args(argv)
    current = PRIVILEGE_DOC.read_text()
    wanted = doc_with_table(current)
    if args.write:
        PRIVILEGE_DOC.write_text(wanted)
    elif wanted != current:
        sys.exit(f"{PRIVILEGE_DOC_FILE}'s privilege section is not what {REQUIREMENTS_FILE} says: "
                 "run .venv/bin/python -m testbed.privileges --write")


if __name__ == "__main__":
    main()
