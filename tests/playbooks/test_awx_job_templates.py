"""Each playbook run the way AWX runs a job template.

ansible-runner with a fresh private data dir; the project (a checkout of this
repository, as AWX's project sync makes it) copied into it; community.vmware
and vmware.vmware from the execution environment (offline, the `ansible`
package stands in for ansible-galaxy installing collections/requirements.yml);
credentials only as the VMWARE_* variables of AWX's VMware vCenter credential;
survey answers only as extra vars, each a variable of the template's survey.
"""

import json
import subprocess

import pytest

from ray_provider.runner import published_stats, run_playbook
from testbed import PROJECT_ROOT, ray_cluster

pytestmark = pytest.mark.slow


def synced_project(destination):
    """The project as AWX's project sync lays it out: the tracked files of the checkout."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-c", "--null", "-T", "-", "-f", "-"], cwd=PROJECT_ROOT, input=files,
                   stdout=open(destination.parent / "project.tar", "wb"), check=True)
    destination.mkdir()
    subprocess.run(["tar", "-x", "-f", str(destination.parent / "project.tar")], cwd=destination, check=True)
    return destination


def survey_answers(template, answers):
    spec = json.loads((PROJECT_ROOT / "awx" / "surveys" / f"{template}.json").read_text())["spec"]
    variables = {question["variable"]: question for question in spec}
    assert set(answers) <= set(variables), f"not in the {template} survey: {set(answers) - set(variables)}"
    missing = [name for name, question in variables.items() if question["required"] and name not in answers]
    assert not missing, f"required survey answers missing: {missing}"
    return answers


def awx_job(template, tmp_path, vcenter_environment, answers):
    private_data_dir = tmp_path / f"job-{template}"
    private_data_dir.mkdir()
    project = synced_project(private_data_dir / "project")
    return run_playbook(f"playbooks/{template}.yml", private_data_dir, project_dir=project,
                        extravars=survey_answers(template, answers),
                        envvars=dict(vcenter_environment, ANSIBLE_CONFIG=str(project / "ansible.cfg"),
                                     ANSIBLE_COLLECTIONS_PATH=str(project / "collections")))


def test_ray_up_workers_and_down_as_awx_job_templates(vcsim, guest_simulator, tmp_path):
    testbed_vars = ray_cluster.cluster_vars("awx", tmp_path / "key" / "ray-awx", worker_count=1)
    answers = {name: value for name, value in testbed_vars.items() if name != "ray_ip_timeout"}
    answers["ray_start_options"] = " ".join(answers["ray_start_options"])  # a survey answer is text
    environment = vcsim.endpoint.environment()
    environment.pop("VMWARE_PORT")  # AWX's credential does not inject a port...
    environment["VMWARE_HOST"] = f"{vcsim.endpoint.host}:{vcsim.endpoint.port}"  # ...it goes with the host

    up = awx_job("ray_up", tmp_path, environment, answers)
    assert up.status == "successful", up.stdout.read()[-5000:]
    stats = published_stats(up)
    assert len(stats["ray_worker_ips"]) == 1
    assert len(guest_simulator.guests()) == 2

    more = awx_job("ray_workers", tmp_path, environment, dict(answers, ray_worker_count=2))
    assert more.status == "successful", more.stdout.read()[-5000:]
    assert len(guest_simulator.guests()) == 3

    down = awx_job("ray_down", tmp_path, environment, {"ray_cluster_name": "awx"})
    assert down.status == "successful", down.stdout.read()[-5000:]
    assert sorted(published_stats(down)["ray_deleted_nodes"]) == ["awx-head", "awx-worker-0",
                                                                              "awx-worker-1"]
