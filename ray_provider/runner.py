"""Run the collection's playbooks through ansible-runner without leaving secrets behind.

ansible-runner writes the whole process environment into
artifacts/<ident>/command while the run lasts, and env/envvars unless
suppress_env_files is set. So secrets given as `secret_vars` never enter that
environment: they go into a vars file as Ansible Vault values under a one-time
secret, which ansible-runner types at ansible-playbook's --ask-vault-pass
prompt (the way AWX hands over vault credentials), and the caller's own
VMWARE_PASSWORD is blanked. Runs that do take VMWARE_* from the environment
(AWX-style, the testbed) get those values masked in the artifacts afterwards.
Module arguments are safe already: the password option is no_log.

ansible-runner seeds a run's environment with the caller's whole one and
writes it to artifacts/<ident>/command, so a run gets only the variables a
playbook can need (RUN_ENVIRONMENT): no other secret of any name lands there.

Extra vars arrive as data, never as templates: a `{{ lookup('pipe', ...) }}`
in a cluster YAML value stays that text, as AWX treats survey answers.
"""

import json
import os
import re
import secrets as random_secrets
import sys
from pathlib import Path

import yaml
from ansible_runner.interface import init_runner
from ansible.parsing.vault import VaultLib, VaultSecret

# The operator's vCenter password, and the one `ray up` hands a Ray head for its own account
# (ray_provider.config.HEAD_PASSWORD_VARIABLE): blanked in a run's environment, masked in its artifacts.
SECRET_VARIABLES = ("VMWARE_PASSWORD", "RAY_VSPHERE_HEAD_PASSWORD")
MASK = "********"
# What a run keeps of the caller's environment, beside what ansible-runner and
# the caller set for it: where things are, the locale,
# the SSH agent, proxies and CA bundles, and the settings of Ansible, of
# vCenter (VMWARE_*) and of this project. Nothing else, since ansible-runner
# writes a run's environment to its artifacts.
RUN_ENVIRONMENT = re.compile(
    r"(PATH|HOME|USER|LOGNAME|SHELL|TERM|TZ|TMPDIR|LANG|LANGUAGE|LC_\w+|SSH_AUTH_SOCK|VIRTUAL_ENV|PYTHONPATH"
    r"|(?i:https?_proxy|no_proxy)|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE"
    r"|ANSIBLE_\w+|VMWARE_\w+|RAY_VSPHERE_\w+)")


def playbook_environment(envvars=None):
    """The environment a playbook run needs: this Python's ansible-playbook.

    That ansible-playbook finds ray_vsphere.cluster where this Python does:
    in site-packages for an installed wheel, through collections/ for an
    editable checkout. No path of ours is configured.
    """
    environment = dict(envvars or {})
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    # Pipelined, a module and its arguments (the vCenter password among them)
    # go to Python's stdin; otherwise Ansible writes them to
    # ~/.ansible/tmp/.../AnsiballZ_*.py for as long as the module runs.
    environment.setdefault("ANSIBLE_PIPELINING", "True")
    return environment


def run_playbook(playbook, private_data_dir, *, extravars=None, envvars=None, cmdline=None, timeout=None,
                 project_dir=None, secret_vars=None):
    """ansible_runner.run in a private (0700) data dir; secrets kept out of its artifacts.

    playbook: a collection playbook's FQCN (ray_vsphere.cluster.provider.create_nodes),
    or a path relative to project_dir.

    secret_vars: {name: value} the play needs as variables (a password), never on disk in clear.
    """
    private_data_dir = Path(private_data_dir)
    private_data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_data_dir.chmod(0o700)
    environment = playbook_environment(envvars)
    passwords = None
    if secret_vars:
        vault_password = random_secrets.token_urlsafe(32)
        vars_file = private_data_dir / "secret_vars.yml"
        vars_file.touch(mode=0o600)
        vars_file.write_text(_vaulted_yaml(secret_vars, vault_password))
        cmdline = " ".join(filter(None, [cmdline, "--ask-vault-pass", f"-e @{vars_file}"]))
        passwords = {r"^Vault password.*:\s*?$": vault_password}
        environment.update({name: "" for name in SECRET_VARIABLES})
    secrets = [value for name, value in {**os.environ, **environment}.items() if name in SECRET_VARIABLES and value]
    secrets += [value for value in (secret_vars or {}).values() if value]  # should a module ever echo one
    if extravars:
        extravars_file = private_data_dir / "extravars.yml"
        extravars_file.touch(mode=0o600)
        extravars_file.write_text(unsafe_yaml(extravars))
        cmdline = " ".join(filter(None, [cmdline, f"-e @{extravars_file}"]))
    # ansible_runner.run() is init_runner() then run(); in between, the environment it seeded is cut down.
    runner = init_runner(
        private_data_dir=str(private_data_dir),
        project_dir=str(project_dir) if project_dir else None,
        playbook=str(playbook),
        envvars=environment,
        cmdline=cmdline,
        passwords=passwords,
        timeout=timeout,
        suppress_env_files=True,
        quiet=True,
    )
    runner.config.env = {name: value for name, value in runner.config.env.items()
                         if name not in os.environ or name in environment or RUN_ENVIRONMENT.fullmatch(name)}
    runner.run()
    mask_secrets(Path(runner.config.artifact_dir), secrets)
    return runner


class _Unsafe(str):
    """A string Ansible must read as data: dumped with YAML's !unsafe tag, which Ansible never templates."""


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(_Unsafe, lambda dumper, text: dumper.represent_scalar("!unsafe", str(text)))


def unsafe_yaml(values):
    """YAML of `values` (dicts, lists, scalars) with every string value tagged !unsafe; keys stay names."""
    def tagged(value):
        if isinstance(value, str):
            return _Unsafe(value)
        if isinstance(value, dict):
            return {key: tagged(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [tagged(item) for item in value]
        return value
    return yaml.dump(tagged(values), Dumper=_UnsafeDumper, sort_keys=False)


def _vaulted_yaml(values, vault_password):
    vault = VaultLib([("default", VaultSecret(vault_password.encode()))])
    lines = []
    for name, value in values.items():
        blob = vault.encrypt(value).decode()
        lines.append(f"{name}: !vault |\n" + "".join(f"  {line}\n" for line in blob.splitlines()))
    return "".join(lines)


def mask_secrets(artifact_dir, secrets):
    """Replace every secret value in the files ansible-runner wrote."""
    if not secrets:
        return
    for path in artifact_dir.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(errors="surrogateescape")
        masked = text
        for secret in secrets:
            masked = masked.replace(secret, MASK).replace(json.dumps(secret)[1:-1], MASK)
        if masked != text:
            path.write_text(masked, errors="surrogateescape")


def task_results(runner, task_name=None):
    """The module results (`res`) of ok and failed task events, optionally of one task."""
    results = []
    for event in runner.events:
        if event.get("event") in ("runner_on_ok", "runner_on_failed"):
            data = event["event_data"]
            if task_name is None or data.get("task") == task_name:
                results.append(dict(data.get("res", {}), failed=event["event"] == "runner_on_failed"))
    return results


def published_stats(runner):
    """What the play published with set_stats (what AWX keeps as workflow artifacts)."""
    for event in runner.events:
        if event.get("event") == "playbook_on_stats":
            return event["event_data"].get("artifact_data") or {}
    return {}
