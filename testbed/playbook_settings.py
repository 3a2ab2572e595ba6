"""The playbooks' settings (playbooks/vars/ray_defaults.yml) as a play resolves them, without a vCenter.

A play loads the playbooks' vars file as ray_up.yml does and prints the
resolved ray_cfg_* values, with inputs as AWX passes them (extra vars, the
inventory, blank survey answers) and with a head's record. Used by
tests/unit/playbooks/test_playbook_settings.py and tests/playbooks/test_awx_configure.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from testbed import PROJECT_ROOT

SHOWN = ["ray_cfg_ovf", "ray_cfg_ovf_sha256", "ray_cfg_resource_pool", "ray_cfg_vm_folder", "ray_cfg_ssh_user", "ray_cfg_worker_count",
         "ray_cfg_worker_cpus", "ray_cfg_setup_commands_list", "ray_cfg_start_options_list", "ray_cfg_deploy_settings",
         "ray_cfg_token_epoch"]


def resolved(tmp_path, extra_vars, inventory_vars=None, record=None, shown=SHOWN):
    tmp_path.mkdir(exist_ok=True)
    play = [{"name": "Show", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(PROJECT_ROOT / "playbooks" / "vars" / "ray_defaults.yml")],
             "tasks": [{"name": "Record", "ansible.builtin.set_fact": {"nodes_recorded_settings": record},
                        "when": record is not None},
                       {"name": "Show", "ansible.builtin.debug": {"msg": {name: f"{{{{ {name} }}}}" for name in shown}}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"vars": inventory_vars or {}}}))
    (tmp_path / "extra.yml").write_text(yaml.safe_dump(extra_vars))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "play.yml", "-i", "inventory.yml", "-e", "@extra.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
             "ANSIBLE_COLLECTIONS_PATH": str(PROJECT_ROOT / "collections"), "ANSIBLE_STDOUT_CALLBACK": "json"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tasks = json.loads(result.stdout)["plays"][0]["tasks"]
    return tasks[-1]["hosts"]["localhost"]["msg"]
