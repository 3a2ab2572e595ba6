"""AWX's launch rules as awx_launch.py replays them, and the project's surveys under them.

The rules' sources are cited in awx_launch.py. These tests pin each rule on
small surveys, then check what AWX would inject for the project's own specs:
no empty defaults, and the answers only.
"""

import json

import pytest
import yaml

from testbed import PROJECT_ROOT, awx_launch
from testbed.guests import make_key_pair

RULES = {"name": "", "description": "", "spec": [
    {"variable": "name", "question_name": "Name", "type": "text", "required": True, "min": 1, "max": 8},
    {"variable": "note", "question_name": "Note", "type": "text", "required": False, "min": 0, "max": 20, "default": ""},
    {"variable": "lines", "question_name": "Lines", "type": "textarea", "required": False, "min": 0, "max": 100},
    {"variable": "count", "question_name": "Count", "type": "integer", "required": True, "min": 0, "max": 5, "default": 2},
    {"variable": "ratio", "question_name": "Ratio", "type": "float", "required": False, "min": 0, "max": 1},
    {"variable": "zones", "question_name": "Zones", "type": "multiselect", "required": False,
     "choices": "a\nb\n\nc", "default": "a\nb"},
    {"variable": "size", "question_name": "Size", "type": "multiplechoice", "required": False,
     "choices": ["small", "large"], "default": "small"},
    {"variable": "token", "question_name": "Token", "type": "password", "required": True, "default": "s3cret"},
]}


def rules_template(**changes):
    return awx_launch.JobTemplate("rules", "play.yml", awx_launch.validate_spec(json.loads(json.dumps(RULES))),
                                  **changes)


def test_every_valid_default_is_injected_answered_or_not_and_answers_win():
    job_vars, ignored = awx_launch.launch_extra_vars(rules_template(), {"name": "x", "count": 4, "token": "t"})
    # A multiselect's default is newline-separated text, which fails its own list check: never injected.
    assert job_vars == {"name": "x", "note": "", "count": 4, "size": "small", "token": "t"}
    assert ignored == {}


def test_a_blank_default_of_an_optional_question_overrides_the_template_and_a_missing_one_does_not():
    template = rules_template(extra_vars={"note": "from the template", "lines": "from the template"})
    job_vars, _ = awx_launch.launch_extra_vars(template, {"name": "x", "count": 1, "token": "t"})
    assert job_vars["note"] == "", "the survey's '' default beats the job template's value"
    assert job_vars["lines"] == "from the template", "no default, nothing injected"


def test_the_ui_types_numbers_keeps_a_textarea_as_one_string_and_drops_blank_fields():
    posted = awx_launch.ui_post(RULES, {"name": "x", "count": "3", "ratio": "0.5", "lines": "a\n\nb", "note": ""})
    assert posted["count"] == 3 and type(posted["count"]) is int
    assert posted["ratio"] == 0.5
    assert posted["lines"] == "a\n\nb"
    assert "note" not in posted, "a blank field is not posted"
    assert posted["zones"] == ["a", "b"], "a multiselect's default is pre-filled as a list"
    assert posted["token"] == "$encrypted$", "a password's default shows as $encrypted$"
    job_vars, _ = awx_launch.launch_extra_vars(rules_template(), posted)
    assert job_vars["token"] == "s3cret", "$encrypted$ keeps the default"
    assert job_vars["zones"] == ["a", "b"] and job_vars["count"] == 3


@pytest.mark.parametrize("posted, message", [
    ({"token": "t", "count": 1}, "'name' value missing"),
    ({"name": "x", "token": "t"}, "'count' value missing"),  # a default does not answer a required question
    ({"name": "", "token": "t", "count": 1}, "is too small (length is 0 must be at least 1)"),
    ({"name": "x" * 9, "token": "t", "count": 1}, "is too large (must be no more than 8)"),
    ({"name": "x", "token": "t", "count": "3"}, "expected to be an integer"),
    ({"name": "x", "token": "t", "count": True}, "expected to be an integer"),
    ({"name": "x", "token": "t", "count": 6}, "too large (must be no more than 5)"),
    ({"name": "x", "token": "t", "ratio": 1.5}, "too large (must be no more than 1)"),
    ({"name": "x", "token": "t", "ratio": "0.5"}, "expected to be a numeric type"),
    ({"name": "x", "token": "t", "zones": "a"}, "'zones' value is expected to be a list."),
    ({"name": "x", "token": "t", "zones": ["d"]}, "Value d for 'zones' expected to be one of ['a', 'b', 'c']"),
    ({"name": "x", "token": "t", "size": "huge"}, "Value huge for 'size' expected to be one of ['small', 'large']"),
    ({"name": "x", "token": 7, "count": 1}, "expected to be a string"),
])
def test_a_launch_breaking_a_survey_rule_is_refused(posted, message):
    with pytest.raises(awx_launch.LaunchError) as refused:
        awx_launch.launch_extra_vars(rules_template(), posted)
    assert any(message in error for error in refused.value.args[0]), refused.value.args[0]


def test_a_required_password_without_default_refuses_the_placeholder():
    spec = {"name": "", "description": "", "spec": [
        {"variable": "token", "question_name": "Token", "type": "password", "required": True}]}
    template = awx_launch.JobTemplate("p", "play.yml", awx_launch.validate_spec(spec))
    with pytest.raises(awx_launch.LaunchError, match="'token' value missing"):
        awx_launch.launch_extra_vars(template, {"token": "$encrypted$"})


def test_variables_outside_the_survey_are_ignored_unless_the_template_prompts_for_them():
    job_vars, ignored = awx_launch.launch_extra_vars(rules_template(), {"name": "x", "count": 1, "token": "t", "extra": 1})
    assert ignored == {"extra": 1} and "extra" not in job_vars
    job_vars, ignored = awx_launch.launch_extra_vars(rules_template(ask_variables_on_launch=True),
                                                     {"name": "x", "count": 1, "token": "t", "extra": 1})
    assert job_vars["extra"] == 1 and ignored == {}


@pytest.mark.parametrize("change, message", [
    ({"type": "date"}, "not an allowed question type"),
    ({"default": "two"}, "has the wrong type"),
    ({"min": "1"}, "expected to be integer"),
    ({"required": "yes"}, "'required' missing from survey question 0 or not a bool"),
])
def test_awx_refuses_a_bad_survey_spec(change, message):
    spec = {"name": "", "description": "", "spec": [
        dict({"variable": "count", "question_name": "Count", "type": "integer", "required": True}, **change)]}
    with pytest.raises(awx_launch.SurveySpecError, match=message):
        awx_launch.validate_spec(spec)


def test_extra_vars_not_from_the_template_are_written_unsafe():
    text = awx_launch._unsafe_yaml({"a": "{{ lookup('pipe', 'id') }}", "b": "kept", "n": 3}, {"b": "kept"})
    assert text == "!unsafe 'a': !unsafe '{{ lookup(''pipe'', ''id'') }}'\nb: kept\n!unsafe 'n': 3\n"


@pytest.mark.parametrize("name", ["ray_up", "ray_workers", "ray_down"])
def test_the_project_surveys_are_valid_and_optional_questions_have_no_default(name):
    spec = awx_launch.validate_spec(awx_launch.load_survey(name))
    for question in spec["spec"]:
        if not question["required"]:
            assert "default" not in question, f"{name}: {question['variable']} would inject its default on every launch"


def test_an_api_launch_of_the_scaling_templates_needs_the_name_the_count_and_for_workers_the_clusters_folder():
    scale = {"ray_cluster_name": "c", "ray_datacenter": "DC", "ray_vm_folder": "ray", "ray_worker_count": 3}
    for name, posted in (("ray_workers", scale), ("ray_down", {"ray_cluster_name": "c"})):
        template = awx_launch.JobTemplate(name, f"playbooks/{name}.yml", awx_launch.load_survey(name))
        assert awx_launch.launch_extra_vars(template, posted) == (posted, {})
    # The head whose record steers the deploy is looked for in the cluster's folder only: AWX asks for it.
    workers = awx_launch.JobTemplate("ray_workers", "playbooks/ray_workers.yml", awx_launch.load_survey("ray_workers"))
    for missing in ("ray_datacenter", "ray_vm_folder"):
        with pytest.raises(awx_launch.LaunchError, match=missing):
            awx_launch.launch_extra_vars(workers, {key: value for key, value in scale.items() if key != missing})


def test_a_ui_launch_of_ray_up_injects_what_was_typed_and_the_worker_count_only():
    template = awx_launch.JobTemplate("ray_up", "playbooks/ray_up.yml", awx_launch.load_survey("ray_up"))
    typed = dict(ray_cluster_name="c", ray_ovf="https://images/x.ova", ray_datacenter="DC", ray_vsphere_cluster="C",
                 ray_datastore="DS", ray_resource_pool="", ray_setup_commands="a\n\nb")
    job_vars, _ = awx_launch.launch_extra_vars(template, awx_launch.ui_post(template.survey_spec, typed))
    assert job_vars == {**{key: value for key, value in typed.items() if value != ""}, "ray_worker_count": 2}


def test_the_key_credential_type_writes_the_key_to_a_file_and_passes_its_path(tmp_path):
    definition = yaml.safe_load((PROJECT_ROOT / "awx" / "credential_types" / "ray_cluster_key.yml").read_text())
    assert definition["inputs"]["fields"][0]["secret"] and definition["inputs"]["fields"][0]["multiline"]
    private_key = make_key_pair(tmp_path / "cluster-key").read_text()  # made here: no key is kept in the repository
    credential = awx_launch.custom_credential("key", PROJECT_ROOT / "awx" / "credential_types" / "ray_cluster_key.yml",
                                              {"ssh_private_key": private_key.rstrip("\n")})
    (tmp_path / "env").mkdir()
    env, args = {}, []
    awx_launch.inject(credential, env, args, str(tmp_path))
    assert args[0] == "-e" and args[1].startswith(f"@{tmp_path}/env/")
    injected = yaml.safe_load((tmp_path / args[1][1:]).read_text().replace("!unsafe ", ""))
    key_file = tmp_path / "env" / injected["ray_ssh_private_key"].split("/env/")[1]
    assert key_file.read_text() == private_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert env == {}
