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
"""

import json
import os
import secrets as random_secrets
import sys
from pathlib import Path

import ansible_runner
from ansible.parsing.vault import VaultLib, VaultSecret

SECRET_VARIABLES = ("VMWARE_PASSWORD",)
MASK = "********"


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
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir),
        project_dir=str(project_dir) if project_dir else None,
        playbook=str(playbook),
        extravars=extravars or {},
        envvars=environment,
        cmdline=cmdline,
        passwords=passwords,
        timeout=timeout,
        suppress_env_files=True,
        quiet=True,
    )
    mask_secrets(Path(runner.config.artifact_dir), secrets)
    return runner


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
