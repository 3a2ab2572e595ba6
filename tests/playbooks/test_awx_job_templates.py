"""The three job templates launched as AWX launches them, on one Ray cluster in test guests.

testbed/awx_launch.py replays AWX's launch (survey rules, extra
vars, credentials, a fresh private data dir, an unprivileged job user).
The templates carry the surveys of awx/surveys/ and the credentials
awx/configure.yml attaches, of the two types of awx/credential_types/: the
vCenter with its CA (vcsim's certificate is verified in every job) and the
cluster key. AWX's own VMware vCenter credential, which turns the check off,
is launched only to show that the modules say so. Launches are UI-style (the
survey form, its defaults pre-filled) or API-style (only what is posted).
"""

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from pyVmomi import vim

from testbed import PROJECT_ROOT, awx_launch, pki, ray_cluster, simulator, vsphere
from testbed.guests import ssh
from testbed.image_server import ImageServer

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token


CLUSTER = "awx"
KEY_TYPE = PROJECT_ROOT / "awx" / "credential_types" / "ray_cluster_key.yml"
# What AWX's inventory gives every job: the placement pool and folder, which
# the ray_up survey leaves blank and so must not override.
INVENTORY_VARS = {"ray_resource_pool": "DC0_C0_RP1", "ray_vm_folder": simulator.VM_FOLDER}
# Guests share this machine: one CPU each, small object stores; a custom
# resource whose JSON needs the shell's quoting to stay one argument.
START_OPTIONS = "--num-cpus=1 --object-store-memory=200000000 --resources='{\"awx_slot\": 1}'"
# A blank line between two commands, as a user leaves one in the textarea.
SETUP_COMMANDS = "echo one >> ~/awx-setup\n\necho two >> ~/awx-setup"
# The user's own cloud-init user-data, typed into the survey's textarea: run beside the nodes' own.
USER_DATA = "#cloud-config\nwrite_files:\n  - path: /etc/awx-user-data\n    content: typed in the survey\n"

RESOURCES = """
import json, ray
ray.init(address="auto", logging_level="ERROR")
print("RESULT " + json.dumps(ray.cluster_resources().get("awx_slot", 0)))
"""


def template(name):
    return awx_launch.JobTemplate(f"Ray: {name}", f"playbooks/{name}.yml",
                                  awx_launch.validate_spec(awx_launch.load_survey(name)))


@pytest.fixture(scope="module")
def python():
    """The jobs' Python, one the unprivileged job user can run."""
    folder = Path(tempfile.mkdtemp(prefix="awx_python_"))
    folder.chmod(0o755)
    try:
        yield awx_launch.job_python(folder / "venv")
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def image_url(test_ova, tmp_path_factory):
    """The node image at an http URL, as an execution environment reaches images (it has no local copy).

    Plain http, so the launches give its SHA-256 (ray_ovf_sha256): without it the image is refused.
    """
    served = tmp_path_factory.mktemp("images")
    shutil.copy(test_ova, served / test_ova.name)
    with ImageServer(served) as server:
        yield server.url(test_ova.name)


@pytest.fixture(scope="module")
def credentials(vcsim, tmp_path_factory):
    """The job templates' two credentials, as AWX stores them, and AWX's own VMware vCenter credential."""
    key_dir = tmp_path_factory.mktemp("cluster-key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ray-awx", "-f", str(key_dir / "key")],
                   check=True)
    endpoint = vcsim.endpoint
    host = f"{endpoint.host}:{endpoint.port}"  # neither type has a port field: host:port
    # vcsim's CA, pasted into the credential's form (which keeps no final newline).
    vcenter = awx_launch.verified_vcenter_credential(host, endpoint.username, endpoint.password,
                                                     endpoint.ca_path.read_text().rstrip("\n"))
    vmware = awx_launch.vmware_credential(host, endpoint.username, endpoint.password)
    # Pasted into AWX's credential form, which keeps no final newline: the injector adds it.
    private_key = (key_dir / "key").read_text().rstrip("\n")
    cluster_key = awx_launch.custom_credential(f"Ray cluster key: {CLUSTER}", KEY_TYPE, {"ssh_private_key": private_key})
    public_key = (key_dir / "key.pub").read_text().split()[:2]
    return dict(vcenter=vcenter, vmware=vmware, cluster_key=cluster_key, private_key=private_key + "\n", public_key=public_key,
                key_file=key_dir / "key")


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def placement(service_instance, vm_name):
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, vm_name)
    return vm.resourcePool.name, vm.parent.name


def on_every_node(guest_simulator, key_file, command):
    return {guest.hostname: ssh(guest.address, key_file, command).stdout for guest in guest_simulator.guests().values()}


def failure(job):
    return f"job {job.id} {job.status}:\n{job.stdout[-5000:]}"


def module_results(job):
    """What each task returned, as the job's events carry it (AWX shows them as the job's output)."""
    return [dict(event["event_data"].get("res", {}), task=event["event_data"].get("task"),
                 failed=event["event"] == "runner_on_failed")
            for event in job.events if event.get("event") in ("runner_on_ok", "runner_on_failed")]


def unverified_warnings(job):
    return [warning for result in module_results(job) for warning in result.get("warnings", [])
            if "certificate is not verified" in warning]


def test_jobs_verify_vcenters_certificate_against_the_ca_of_the_vcenter_credential(
        vcsim, credentials, python, tmp_path):
    endpoint, ray_down = vcsim.endpoint, template("ray_down")
    posted = {"ray_cluster_name": "awx-tls"}
    other_ca = pki.make_ca(tmp_path, common_name="not vCenter's CA").certificate
    wrong_ca = awx_launch.verified_vcenter_credential(f"{endpoint.host}:{endpoint.port}", endpoint.username,
                                                      endpoint.password, other_ca.read_text())

    # Another CA in the credential: the first vCenter call fails on vcsim's certificate, naming the job's CA file.
    refused = awx_launch.launch(ray_down, posted, credentials=[wrong_ca, credentials["cluster_key"]], python=python)
    assert refused.status == "failed"
    failed = [result for result in module_results(refused) if result.get("failed")]
    assert [result["task"] for result in failed] == ["Delete every node of the cluster"]
    assert failed[0]["msg"].startswith(
        f"TLS with vCenter {endpoint.host}:{endpoint.port} failed: its certificate is not signed by a CA in ca_path "
        f"{refused.private_data_dir}/env/tmp"), failed[0]["msg"]
    assert "(unable to get local issuer certificate)" in failed[0]["msg"]

    # vcsim's own CA: the same job verifies the certificate and runs, and nothing warns.
    verified = awx_launch.launch(ray_down, posted, credentials=[credentials["vcenter"], credentials["cluster_key"]],
                                 python=python)
    assert verified.status == "successful", failure(verified)
    assert verified.stats()["ray_deleted_nodes"] == []
    assert [result["task"] for result in module_results(verified) if "deleted" in result or "removed" in result] == [
        "Delete every node of the cluster", "Find the node templates left"], "both modules reached vCenter"
    assert unverified_warnings(verified) == []
    # The CA file lived in the job's own folder (besides the key and its extra vars file) and went with it.
    assert len(verified.injected_files) == 3 and all(name.startswith("tmp") for name in verified.injected_files)
    assert not verified.private_data_dir.exists()

    # AWX's own VMware vCenter credential: VMWARE_VALIDATE_CERTS=False and no CA, so no certificate is checked;
    # every module that talked to vCenter says so in its result.
    unchecked = awx_launch.launch(ray_down, posted, credentials=[credentials["vmware"], credentials["cluster_key"]],
                                  python=python)
    assert unchecked.status == "successful", failure(unchecked)
    assert len(unverified_warnings(unchecked)) == 2, module_results(unchecked)
    assert unverified_warnings(unchecked)[0].startswith(
        f"validate_certs is false (VMWARE_VALIDATE_CERTS): vCenter {endpoint.host}:{endpoint.port}'s certificate "
        "is not verified")


@pytest.mark.slow
def test_a_job_without_the_key_credential_is_refused_before_anything_is_made(
        vcsim, guest_simulator, credentials, image_url, test_ova, service_instance, python):
    posted = dict(ray_cluster_name="awx-nokey", ray_ovf=image_url, ray_ovf_sha256=sha256_of(test_ova),
                  ray_datacenter=simulator.DATACENTER,
                  ray_vsphere_cluster=simulator.CLUSTERS[0], ray_datastore=simulator.DATASTORES[0], ray_worker_count=0)
    job = awx_launch.launch(template("ray_up"), posted, credentials=[credentials["vcenter"]], python=python)
    assert job.status == "failed"
    assert "comes from a credential of the type awx/credential_types/ray_cluster_key.yml" in job.stdout
    names = [props["name"] for props in vsphere.objects_of_type(service_instance, vim.VirtualMachine, ["name"]).values()]
    assert not [name for name in names if name.startswith("awx-nokey")]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ray_up_then_workers_up_and_down_then_ray_down_as_awx_jobs(
        vcsim, guest_simulator, credentials, image_url, test_ova, service_instance, python):
    both = [credentials["vcenter"], credentials["cluster_key"]]
    key_file = credentials["key_file"]

    # UI-style: the form pre-fills the defaults (2 workers); the user types the rest
    # and leaves pool, folder, user blank, which the inventory or the defaults fill.
    ray_up = template("ray_up")
    posted = awx_launch.ui_post(ray_up.survey_spec, dict(
        ray_cluster_name=CLUSTER, ray_ovf=image_url, ray_ovf_sha256=sha256_of(test_ova), ray_datacenter=simulator.DATACENTER,
        ray_vsphere_cluster=simulator.CLUSTERS[0], ray_datastore=simulator.DATASTORES[0],
        ray_network=simulator.NETWORK, ray_worker_count="1", ray_setup_commands=SETUP_COMMANDS,
        ray_start_options=START_OPTIONS, ray_user_data=USER_DATA))
    up = awx_launch.launch(ray_up, posted, credentials=both, python=python, inventory_vars=INVENTORY_VARS)
    assert up.status == "successful", failure(up)
    assert up.ran_as_uid == awx_launch.job_user().uid != 0
    assert up.extra_vars["ray_worker_count"] == 1
    assert not {"ray_resource_pool", "ray_vm_folder", "ray_ssh_user"} & set(up.extra_vars), "no blank defaults injected"
    assert not {f".ssh/ray-{CLUSTER}", f".ssh/ray-vsphere-{CLUSTER}"} & set(up.files), \
        "the key is the credential's, none generated"
    head_ip = up.stats()["ray_head_ip"]
    assert sorted(guest.hostname for guest in guest_simulator.guests().values()) == ["awx-head", "awx-worker-0"]
    for vm in ("awx-head", "awx-worker-0"):
        assert placement(service_instance, vm) == ("DC0_C0_RP1", simulator.VM_FOLDER), "the inventory's placement"
    assert set(on_every_node(guest_simulator, key_file, "cat ~/awx-setup").values()) == {"one\ntwo\n"}
    assert set(on_every_node(guest_simulator, key_file, "cat /etc/awx-user-data").values()) == {"typed in the survey"}
    assert ray_cluster._python_on_head(head_ip, key_file, RESOURCES, 120) == 2, "one awx_slot per node"
    # The nodes let in the key derived from the credential's, and hold the Ray token derived from it; the head
    # holds no private key (nothing on it uses one on the playbook path).
    authorized = {" ".join(credentials["public_key"]) + " ray-awx\n"}
    token = ray_auth_token(credentials["private_key"], CLUSTER)
    assert set(on_every_node(guest_simulator, key_file, "cat ~/.ssh/authorized_keys").values()) == authorized
    assert set(on_every_node(guest_simulator, key_file, "cat ~/.ray/auth_token").values()) == {token}
    assert ssh(head_ip, key_file, "ls ~/ray_bootstrap_key.pem").returncode != 0

    # API-style: the name, the count and the cluster's folder, where its head is looked for; no inventory
    # placement either: the image, the rest of the placement, setup commands and start options are the head's record.
    where = {"ray_datacenter": simulator.DATACENTER, "ray_vm_folder": simulator.VM_FOLDER}
    more = awx_launch.launch(template("ray_workers"), {"ray_cluster_name": CLUSTER, "ray_worker_count": 2, **where},
                             credentials=both, python=python, inventory_vars={})
    assert more.status == "successful", failure(more)
    assert set(more.extra_vars) == {"ray_cluster_name", "ray_worker_count", *where}
    assert placement(service_instance, "awx-worker-1") == ("DC0_C0_RP1", simulator.VM_FOLDER)
    assert on_every_node(guest_simulator, key_file, "cat ~/awx-setup")["awx-worker-1"] == "one\ntwo\n"
    assert set(on_every_node(guest_simulator, key_file, "cat ~/.ssh/authorized_keys").values()) == authorized
    ray_cluster.wait_for_alive_nodes(head_ip, key_file, 3)
    assert ray_cluster._python_on_head(head_ip, key_file, RESOURCES, 120) == 3

    # UI-style: the ray_workers form has no defaults to pre-fill; the count and the folder are typed.
    ray_workers = template("ray_workers")
    fewer = awx_launch.launch(ray_workers, awx_launch.ui_post(ray_workers.survey_spec, dict(
        ray_cluster_name=CLUSTER, ray_worker_count="1", **where)), credentials=both, python=python, inventory_vars={})
    assert fewer.status == "successful", failure(fewer)
    assert sorted(guest.hostname for guest in guest_simulator.guests().values()) == ["awx-head", "awx-worker-0"]
    ray_cluster.wait_for_alive_nodes(head_ip, key_file, 2)
    assert set(on_every_node(guest_simulator, key_file, "cat ~/.ray/auth_token").values()) == {token}

    # API-style: the name alone.
    down = awx_launch.launch(template("ray_down"), {"ray_cluster_name": CLUSTER}, credentials=both,
                             python=python)
    assert down.status == "successful", failure(down)
    assert sorted(down.stats()["ray_deleted_nodes"]) == ["awx-head", "awx-worker-0"]
    settled = time.monotonic() + 30
    while guest_simulator.guests() and time.monotonic() < settled:
        time.sleep(0.2)
    assert guest_simulator.guests() == {}

    # Four jobs, four folders, each with the credential's key file of its own, all gone.
    jobs = [up, more, fewer, down]
    assert [unverified_warnings(job) for job in jobs] == [[]] * 4, "vcsim's certificate verified in every job"
    assert len({job.private_data_dir for job in jobs}) == 4
    assert all(job.injected_files for job in jobs)
    assert not any(job.private_data_dir.exists() for job in jobs)
