"""How the provider's ansible-runner runs treat what they are given: data stays data, secrets stay out."""

import json

import yaml

from ray_provider.runner import published_stats, run_playbook
from testbed.leftovers import files_containing

PUBLISH = [{"name": "Publish what the play saw", "hosts": "localhost", "connection": "local", "gather_facts": False,
            "tasks": [{"name": "Publish", "ansible.builtin.set_stats": {"per_host": False, "data": {
                "value": "{{ value }}", "nested": "{{ nested }}",
                "vmware_host": "{{ lookup('ansible.builtin.env', 'VMWARE_HOST') }}",
                "other_secret": "{{ lookup('ansible.builtin.env', 'FOO_API_TOKEN') }}"}}}]}]


def run_publishing_play(tmp_path, extravars, envvars=None):
    project = tmp_path / "project"
    project.mkdir()
    (project / "play.yml").write_text(yaml.safe_dump(PUBLISH, sort_keys=False))
    runner = run_playbook("play.yml", tmp_path / "run", project_dir=project, extravars=extravars, envvars=envvars)
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    return runner


def test_extra_vars_are_data_never_templates(tmp_path):
    marker = tmp_path / "templated"
    lookup = f"{{{{ lookup('ansible.builtin.pipe', 'touch {marker}; id') }}}}"
    runner = run_publishing_play(tmp_path, {"value": lookup, "nested": {"list": ["{{ 6 * 7 }}", 3]}})
    stats = published_stats(runner)
    assert stats["value"] == lookup
    assert stats["nested"] == {"list": ["{{ 6 * 7 }}", 3]}
    assert not marker.exists(), "the lookup in an extra var ran"


def test_a_run_keeps_no_secret_of_the_callers_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FOO_API_TOKEN", "tok-5ecret-4a7b")
    runner = run_publishing_play(tmp_path, {"value": "v", "nested": {}}, envvars={"VMWARE_HOST": "vc.example.com"})
    stats = published_stats(runner)
    assert stats["vmware_host"] == "vc.example.com", "the VMWARE_* settings reach the play"
    assert stats["other_secret"] == "", "a variable a playbook does not need reached the play"
    command = json.loads((tmp_path / "run" / "artifacts" / runner.config.ident / "command").read_text())
    assert "FOO_API_TOKEN" not in command["env"] and "PATH" in command["env"]
    assert files_containing("tok-5ecret-4a7b", tmp_path / "run") == []
