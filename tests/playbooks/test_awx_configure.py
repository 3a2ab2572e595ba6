"""awx/configure.yml, checked offline without faking AWX.

Syntax-checked and linted; then every awx.awx task's arguments, templated
as the play would template them, are validated against the argument spec
that the installed module itself builds (captured where it hands the spec to
AnsibleModule) with ansible-core's ArgumentSpecValidator, the check
AnsibleModule runs before the module talks to AWX.
"""

import functools
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.playbook import Playbook
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar
from ansible.vars.manager import VariableManager
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import argument_spec
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._gpu import gpu_problems
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ip_pool import pool_problems

from testbed import PROJECT_ROOT, awx_launch, pki
from testbed.playbook_settings import resolved

CONFIGURE = PROJECT_ROOT / "awx" / "configure.yml"
BIN = Path(sys.executable).parent
RULES = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")


class _SpecCaptured(Exception):
    pass


def module_spec(fqcn):
    """(argument_spec, rules) exactly as the installed awx.awx module gives them to AnsibleModule."""
    namespace, collection, name = fqcn.split(".")
    module = importlib.import_module(f"ansible_collections.{namespace}.{collection}.plugins.modules.{name}")
    captured = {}

    def capture(self, argument_spec, **kwargs):
        captured.update(kwargs, argument_spec=argument_spec)
        raise _SpecCaptured

    with mock.patch.object(basic.AnsibleModule, "__init__", capture):
        with pytest.raises(_SpecCaptured):
            module.main()
    return captured["argument_spec"], {rule: captured[rule] for rule in RULES if captured.get(rule)}


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "ray-analytics.key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def vcenter_ca(tmp_path_factory):
    """The PEM file of a CA, as VMWARE_CA_PATH names vCenter's."""
    return pki.make_ca(tmp_path_factory.mktemp("vcenter-ca"), common_name="vCenter's CA").certificate


@functools.lru_cache(maxsize=None)
def load_plugins():
    init_plugin_loader([str(PROJECT_ROOT / "collections")])  # as ansible-playbook does, with ansible.cfg's path


def awx_tasks(extra_vars, environment):
    """[(module FQCN, templated args, no_log)] for every awx.awx task, once per loop item."""
    load_plugins()
    with mock.patch.dict(os.environ, environment):
        for variable in {"VMWARE_HOST", "VMWARE_USER", "VMWARE_PASSWORD", "VMWARE_CA_PATH"} - set(environment):
            os.environ.pop(variable, None)
        loader = DataLoader()
        variable_manager = VariableManager(loader=loader)
        playbook = Playbook.load(str(CONFIGURE), variable_manager=variable_manager, loader=loader)
        loader.set_basedir(str(CONFIGURE.parent))  # lookups find files beside the playbook, as in a run
        found = []
        for play in playbook.get_plays():
            for block in play.compile():
                for task in block.block:
                    if not task.action.startswith("awx.awx."):
                        continue
                    # The task's vars (its search path for lookups among them); -e wins, as on the command line.
                    variables = {**variable_manager.get_vars(play=play, task=task), **extra_vars}
                    items = [None]
                    if task.loop is not None:
                        items = Templar(loader=loader, variables=variables).template(task.loop)
                    for item in items:
                        templar = Templar(loader=loader, variables=dict(variables, item=item))
                        args = templar.template(task.args)
                        found.append((task.action, args, task.no_log))  # an omitted option is left out
    return found


CONFIGURE_VARS = dict(ray_awx_project_url="https://git.example.com/ray-vsphere.git", ray_awx_cluster_name="analytics",
                      ray_awx_inventory_variables={"ray_resource_pool": "ray"})


@pytest.fixture(scope="module")
def configured_tasks(key_file, vcenter_ca):
    environment = dict(VMWARE_HOST="vcenter.example.com", VMWARE_USER="ray@vsphere.local", VMWARE_PASSWORD="pw",
                       VMWARE_CA_PATH=str(vcenter_ca))
    return awx_tasks(dict(CONFIGURE_VARS, ray_awx_cluster_key_file=str(key_file)), environment)


def test_configure_passes_the_syntax_check():
    result = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", str(CONFIGURE)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_configure_and_the_credential_type_pass_ansible_lint(tmp_path):
    result = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "awx/"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600, env=dict(os.environ, HOME=str(tmp_path)))
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_every_awx_task_passes_its_module_argument_spec(configured_tasks):
    assert [action for action, _, _ in configured_tasks] == [
        "awx.awx.credential_type", "awx.awx.credential_type", "awx.awx.credential_type", "awx.awx.credential",
        "awx.awx.credential", "awx.awx.credential", "awx.awx.project",
        "awx.awx.inventory", "awx.awx.job_template", "awx.awx.job_template", "awx.awx.job_template",
        "awx.awx.inventory", "awx.awx.inventory_source"]
    for action, args, _ in configured_tasks:
        spec, rules = module_spec(action)
        result = ArgumentSpecValidator(spec, **rules).validate(args)
        assert result.error_messages == [], f"{action} {args.get('name')}: {result.error_messages}"


def test_the_captured_specs_are_the_modules_own():
    spec, rules = module_spec("awx.awx.job_template")
    assert spec["survey_spec"] == {"type": "dict"} and "controller_host" in spec, "module options and AWX's auth options"
    misspelled = ArgumentSpecValidator(spec, **rules).validate({"name": "t", "survey_enabeld": True})
    assert any("survey_enabeld" in message for message in misspelled.error_messages)
    wrong_type = ArgumentSpecValidator(spec, **rules).validate({"name": "t", "survey_spec": "[1]"})
    assert any("survey_spec" in message for message in wrong_type.error_messages)


def test_the_configuration_is_what_the_job_templates_need(configured_tasks, key_file, vcenter_ca):
    by_name = {args["name"]: (action, args, no_log) for action, args, no_log in configured_tasks}
    definition = yaml.safe_load((PROJECT_ROOT / "awx" / "credential_types" / "ray_cluster_key.yml").read_text())
    _, key_type, _ = by_name["Ray cluster SSH key"]
    assert key_type["injectors"] == definition["injectors"], "AWX renders the injectors, not this play"
    assert key_type["injectors"]["extra_vars"] == {"ray_ssh_private_key": "{{ tower.filename }}"}
    _, key, key_no_log = by_name["Ray cluster key: analytics"]
    assert key["credential_type"] == "Ray cluster SSH key"
    assert key["inputs"]["ssh_private_key"] == key_file.read_text().rstrip("\n")
    vcenter_definition = yaml.safe_load((awx_launch.CREDENTIAL_TYPES / "vcenter_verified.yml").read_text())
    _, vcenter_type, _ = by_name["vCenter with verified TLS (ray_vsphere)"]
    assert vcenter_type["injectors"] == vcenter_definition["injectors"], "AWX renders the injectors, not this play"
    _, vcenter, vcenter_no_log = by_name["Ray vCenter"]
    assert vcenter["credential_type"] == "vCenter with verified TLS (ray_vsphere)", "not AWX's VMware vCenter"
    assert vcenter["inputs"] == {"host": "vcenter.example.com", "username": "ray@vsphere.local", "password": "pw",
                                 "ca_pem": vcenter_ca.read_text().rstrip("\n")}
    assert key_no_log and vcenter_no_log, "secrets stay out of the play's output"
    templates = {args["playbook"]: args for action, args, _ in configured_tasks if action == "awx.awx.job_template"}
    assert sorted(templates) == ["playbooks/ray_down.yml", "playbooks/ray_up.yml", "playbooks/ray_workers.yml"]
    for playbook, args in templates.items():
        survey = json.loads((PROJECT_ROOT / "awx" / "surveys" / f"{Path(playbook).stem}.json").read_text())
        assert args["survey_enabled"] is True and args["survey_spec"] == survey
        assert args["credentials"] == ["Ray vCenter", "Ray cluster key: analytics"]
        assert args["inventory"] == "Ray clusters" and args["project"] == "ray-vsphere"
        assert "execution_environment" not in args, "AWX's default execution environment unless one is named"
        assert (PROJECT_ROOT / playbook).is_file()


def test_the_nodes_inventory_is_sourced_from_the_project_with_one_credential_of_vcenter_and_the_key(
        configured_tasks, key_file, vcenter_ca, tmp_path):
    by_name = {args["name"]: (action, args, no_log) for action, args, no_log in configured_tasks}
    definition = yaml.safe_load((awx_launch.CREDENTIAL_TYPES / "ray_inventory.yml").read_text())
    _, nodes_type, _ = by_name["Ray nodes inventory (ray_vsphere)"]
    assert nodes_type["injectors"] == definition["injectors"], "AWX renders the injectors, not this play"
    _, credential, no_log = by_name["Ray nodes inventory: analytics"]
    assert no_log and credential["credential_type"] == "Ray nodes inventory (ray_vsphere)"
    assert credential["inputs"] == {"host": "vcenter.example.com", "username": "ray@vsphere.local", "password": "pw",
                                    "ca_pem": vcenter_ca.read_text().rstrip("\n"),
                                    "ssh_private_key": key_file.read_text().rstrip("\n")}
    _, inventory, _ = by_name["Ray nodes: analytics"]
    assert inventory["organization"] == "Default"
    _, source, _ = by_name["Ray nodes of analytics from vCenter"]
    assert (source["inventory"], source["source"], source["source_project"]) == ("Ray nodes: analytics", "scm",
                                                                                 "ray-vsphere")
    assert source["credential"] == "Ray nodes inventory: analytics" and source["update_on_launch"] is True
    assert source["source_vars"]["RAY_CLUSTER_NAME"] == "analytics"
    config = yaml.safe_load((PROJECT_ROOT / source["source_path"]).read_text())
    assert config["plugin"] == "ray_vsphere.cluster.ray_nodes"
    # Every variable the project's file reads is one the source sets (or the credential injects).
    read = set(re.findall(r"lookup\('ansible.builtin.env', '([A-Z_]+)'\)", (PROJECT_ROOT / source["source_path"]).read_text()))
    assert read == set(source["source_vars"])
    credential_env = {}
    (tmp_path / "env").mkdir()
    awx_launch.inject(awx_launch.custom_credential("Ray nodes inventory: analytics",
                                                   awx_launch.CREDENTIAL_TYPES / "ray_inventory.yml",
                                                   credential["inputs"]), credential_env, [], str(tmp_path))
    assert sorted(credential_env) == ["RAY_VSPHERE_CLUSTER_KEY_FILE", "VMWARE_CA_PATH", "VMWARE_HOST", "VMWARE_PASSWORD",
                                      "VMWARE_USER", "VMWARE_VALIDATE_CERTS"]
    assert Path(credential_env["RAY_VSPHERE_CLUSTER_KEY_FILE"]).read_text().strip() == key_file.read_text().strip()


def test_configure_refuses_to_store_a_vcenter_credential_without_its_ca(key_file):
    environment = dict(VMWARE_HOST="vcenter.example.com", VMWARE_USER="ray@vsphere.local", VMWARE_PASSWORD="pw")
    with pytest.raises(Exception, match="ray_awx_vcenter_ca_file \\(or VMWARE_CA_PATH\\): the PEM file of the CA"):
        awx_tasks(dict(CONFIGURE_VARS, ray_awx_cluster_key_file=str(key_file)), environment)


def test_the_vcenter_credential_type_gives_the_modules_a_verified_connection(tmp_path, vcenter_ca):
    """Injected as AWX injects it, then read through the collection's own connection options."""
    credential = awx_launch.verified_vcenter_credential("vcenter.example.com", "ray@vsphere.local", "pw",
                                                        vcenter_ca.read_text().rstrip("\n"))
    assert credential.secret_fields == ("password",)
    (tmp_path / "env").mkdir()
    env, args = {}, []
    awx_launch.inject(credential, env, args, str(tmp_path))
    assert args == [], "environment only, no extra vars"
    ca_file = Path(env.pop("VMWARE_CA_PATH"))
    assert ca_file.parent == tmp_path / "env" and ca_file.stat().st_mode & 0o777 == 0o600
    assert ca_file.read_text() == vcenter_ca.read_text().rstrip("\n")
    assert env == {"VMWARE_HOST": "vcenter.example.com", "VMWARE_USER": "ray@vsphere.local",
                   "VMWARE_PASSWORD": "pw", "VMWARE_VALIDATE_CERTS": "true"}
    with mock.patch.dict(os.environ, dict(env, VMWARE_CA_PATH=str(ca_file))):
        connection = ArgumentSpecValidator(argument_spec()).validate({})
    assert connection.error_messages == []
    assert connection.validated_parameters["validate_certs"] is True
    assert connection.validated_parameters["ca_path"] == str(ca_file)
    assert connection.validated_parameters["hostname"] == "vcenter.example.com"
    # AWX's own credential, by contrast, turns the check off.
    awx_env = {}
    awx_launch.inject(awx_launch.vmware_credential("vcenter.example.com", "ray@vsphere.local", "pw"), awx_env, [],
                      str(tmp_path))
    with mock.patch.dict(os.environ, awx_env):
        assert ArgumentSpecValidator(argument_spec()).validate({}).validated_parameters["validate_certs"] is False


SURVEYS = sorted((PROJECT_ROOT / "awx" / "surveys").glob("*.json"))


@pytest.mark.parametrize("survey_file", SURVEYS, ids=lambda path: path.stem)
def test_every_survey_question_is_a_setting_the_playbooks_read(survey_file):
    read = "\n".join(path.read_text() for path in sorted((PROJECT_ROOT / "playbooks").glob("**/*.yml")))
    unread = [question["variable"] for question in json.loads(survey_file.read_text())["spec"]
              if not re.search(rf"\b{re.escape(question['variable'])}\b", read)]
    assert unread == [], f"{survey_file.name} asks for what no playbook reads"


@pytest.mark.parametrize("answers, expected", [
    ({"ray_worker_gpu_model": "A100", "ray_worker_gpu_label": "a100", "ray_worker_gpu_count": 2},
     {"gpus": [{"model": "A100", "label": "a100", "count": 2}]}),
    ({"ray_worker_vgpu_profile": "grid_a100-20c"}, {"vgpu_profile": "grid_a100-20c"}),
], ids=["passthrough", "vgpu"])
@pytest.mark.parametrize("survey", ["ray_up", "ray_workers"])
def test_gpu_survey_answers_become_worker_settings_that_node_deploys_spec_accepts(
        tmp_path, survey, answers, expected):
    template = awx_launch.JobTemplate(survey, f"playbooks/{survey}.yml", awx_launch.load_survey(survey))
    typed = dict(ray_cluster_name="c", ray_ovf="https://images/x.ova", ray_datacenter="DC", ray_vsphere_cluster="C",
                 ray_datastore="DS", ray_vm_folder="ray", ray_worker_count=1, **answers)
    typed = {key: value for key, value in typed.items()
             if key in {question["variable"] for question in template.survey_spec["spec"]}}
    job_vars, _ = awx_launch.launch_extra_vars(template, awx_launch.ui_post(template.survey_spec, typed))
    settings = resolved(tmp_path, job_vars, shown=["ray_cfg_worker_gpu_settings"])["ray_cfg_worker_gpu_settings"]
    assert settings == expected
    # What the nodes role hands node_deploy (roles/nodes/tasks/deploy.yml maps them by name): its own spec and rules.
    spec = {option: DEPLOY_OPTIONS[option] for option in settings}
    assert ArgumentSpecValidator(spec).validate(settings).error_messages == []
    assert gpu_problems(settings) == []


@pytest.mark.parametrize("survey", ["ray_up", "ray_workers"])
def test_ip_pool_survey_answers_become_one_pool_for_both_kinds_that_node_deploys_spec_accepts(tmp_path, survey):
    template = awx_launch.JobTemplate(survey, f"playbooks/{survey}.yml", awx_launch.load_survey(survey))
    typed = dict(ray_cluster_name="c", ray_ovf="https://images/x.ova", ray_datacenter="DC", ray_vsphere_cluster="C",
                 ray_datastore="DS", ray_vm_folder="ray", ray_worker_count=1, ray_ip_pool_cidr="2001:db8:5::/64",
                 ray_ip_pool_range="2001:db8:5::200-2001:db8:5::2ff", ray_ip_pool_gateway="2001:db8:5::1",
                 ray_ip_pool_dns_servers="2001:db8:5::53, 2001:db8:6::53", ray_ip_pool_search_domains="ray.example.com")
    typed = {key: value for key, value in typed.items()
             if key in {question["variable"] for question in template.survey_spec["spec"]}}
    job_vars, _ = awx_launch.launch_extra_vars(template, awx_launch.ui_post(template.survey_spec, typed))
    shown = resolved(tmp_path, job_vars, shown=["ray_cfg_head_ip_pool", "ray_cfg_worker_ip_pool"])
    expected = {"cidr": "2001:db8:5::/64", "range": "2001:db8:5::200-2001:db8:5::2ff", "gateway": "2001:db8:5::1",
                "dns_servers": ["2001:db8:5::53", "2001:db8:6::53"], "search_domains": ["ray.example.com"]}
    assert shown["ray_cfg_head_ip_pool"] == shown["ray_cfg_worker_ip_pool"] == expected
    # What the nodes role hands node_deploy as ip_pool: its own spec and checks.
    result = ArgumentSpecValidator({"ip_pool": DEPLOY_OPTIONS["ip_pool"]}).validate({"ip_pool": expected})
    assert result.error_messages == [] and result.validated_parameters["ip_pool"] == dict(expected, addresses=None)
    assert pool_problems({"ip_pool": expected}) == []
    # A subnet alone: no range, gateway or DNS (blank questions are not posted).
    subnet_only = {key: value for key, value in typed.items() if not key.startswith("ray_ip_pool_") or key ==
                   "ray_ip_pool_cidr"}
    job_vars, _ = awx_launch.launch_extra_vars(template, awx_launch.ui_post(template.survey_spec, subnet_only))
    assert resolved(tmp_path / "subnet", job_vars, shown=["ray_cfg_worker_ip_pool"])["ray_cfg_worker_ip_pool"] == {
        "cidr": "2001:db8:5::/64"}
