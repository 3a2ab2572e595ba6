"""VsphereNodeProvider's cache, batching, locking and errors, with the playbook runs and vCenter reads faked.

Mocks are for these unit tests only: the end-to-end tests run the same
provider against vcsim with real Ray.
"""

import hashlib
import io
import tarfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.autoscaler.node_launch_exception import NodeLaunchException

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import AT_LEAST_ONE, DEPLOY_OPTIONS
from ray_provider import config, node_provider
from ray_provider.node_provider import PlaybookFailed, VsphereNodeProvider
from testbed.guests import make_key_pair

PROVIDER = {"type": "external", "module": "ray_provider.node_provider.VsphereNodeProvider",
            "ovf": "https://images.example.com/ray.ova", "datacenter": "DC0", "cluster": "C0", "datastore": "DS0",
            "vcenter_hostname": "vcenter.example.com", "vcenter_username": "ray"}


def record(uuid, name, ip="10.0.0.1", power_state="poweredOn", **tags):
    return {"uuid": uuid, "name": name, "ip": ip, "power_state": power_state,
            "tags": {"ray-cluster-name": "unit", "ray-node-type": "worker", **tags}}


class FakeRuns:
    """Records every playbook run; create_nodes.yml publishes `count` new nodes."""

    def __init__(self):
        self.calls = []
        self.timeouts = []
        self.fail_with = None
        self.delay = 0.0
        self._lock = threading.Lock()

    def run(self, playbook, extravars, timeout=None):
        with self._lock:
            self.calls.append((playbook, extravars))
            self.timeouts.append(timeout)
            index = len(self.calls)
        time.sleep(self.delay)
        if self.fail_with:
            failed = SimpleNamespace(status="failed", events=[{"event": "runner_on_failed", "event_data": {
                "task": "Deploy the nodes", "res": {"msg": self.fail_with}}}])
            raise PlaybookFailed(playbook, failed)
        stats = {}
        if playbook == "create_nodes":
            stats["ray_provider_nodes"] = [record(f"new-{index}-{i}", f"unit-worker-{index}-{i}", ip=f"10.1.{index}.{i}")
                                           for i in range(extravars["ray_provider_count"])]
        return SimpleNamespace(status="successful", events=[
            {"event": "playbook_on_stats", "event_data": {"artifact_data": stats}}])

    def playbooks(self):
        return [playbook for playbook, _ in self.calls]


@pytest.fixture
def provider(monkeypatch, tmp_path):
    monkeypatch.setenv("VMWARE_PASSWORD", "not-a-real-password")
    for name, value in HEAD_ACCOUNT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(node_provider, "TAG_BATCH_DELAY_S", 0.05)
    public_key = tmp_path / "key.pub"
    public_key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUnitTestKey unit\n")
    provider = VsphereNodeProvider(dict(PROVIDER, ssh_public_key_file=str(public_key),
                                        ssh_private_key_file=str(tmp_path / "key")), "unit")
    provider.playbooks = FakeRuns()
    provider.vcenter = [record("a", "unit-worker-a"), record("b", "unit-worker-b", ip=None)]
    provider.reads = 0
    provider.list_delay = 0.0

    def list_cluster_nodes():
        provider.reads += 1
        time.sleep(provider.list_delay)
        return [dict(r, tags=dict(r["tags"])) for r in provider.vcenter]
    monkeypatch.setattr(provider, "_list_cluster_nodes", list_cluster_nodes)
    return provider


def test_reads_come_from_memory_and_vcenter_is_read_at_most_once_per_refresh_interval(provider):
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    for _ in range(100):
        assert provider.node_tags("a")["ray-node-type"] == "worker"
        assert provider.internal_ip("a") == "10.0.0.1"
        assert provider.external_ip("b") is None
        assert provider.is_running("a") and not provider.is_terminated("a")
        provider.non_terminated_nodes({"ray-node-type": "worker"})
    assert provider.reads == 1
    assert provider.playbooks.calls == []


def test_refresh_drops_nodes_gone_from_vcenter_and_filters_by_tags(provider, monkeypatch):
    provider.non_terminated_nodes({})
    provider.vcenter = [record("a", "unit-worker-a", **{"ray-user-node-type": "gpu"})]
    monkeypatch.setattr(provider, "_last_refresh", float("-inf"))
    assert provider.non_terminated_nodes({"ray-user-node-type": "gpu"}) == ["a"]
    assert provider.is_terminated("b") and provider.node_tags("b") == {}


def test_create_makes_count_nodes_in_one_run_and_they_are_known_at_once(provider):
    created = provider.create_node_with_resources_and_labels(
        {"cpus": 2}, {"ray-node-type": "worker", "ray-user-node-type": "cpu", "ray-launch-config": "h1"}, 5, {}, {})
    assert provider.playbooks.playbooks() == ["create_nodes"]
    extravars = provider.playbooks.calls[0][1]
    assert extravars["ray_provider_count"] == 5
    assert extravars["ray_provider_node_type"] == "cpu"
    assert extravars["ray_provider_tags"] == {"ray-launch-config": "h1"}
    assert extravars["ray_provider_node"]["cpus"] == 2 and extravars["ray_provider_node"]["datastore"] == "DS0"
    assert extravars["ray_provider_public_key"].startswith("ssh-ed25519 ")
    assert "not-a-real-password" not in repr(extravars)
    assert len(created) == 5
    for node_id in created:
        assert provider.internal_ip(node_id).startswith("10.1.1.")
        assert not provider.is_terminated(node_id)


def test_a_refresh_that_began_before_a_create_finished_keeps_the_new_nodes(provider):
    provider.list_delay = 0.5  # vCenter's answer predates the create below
    listing = threading.Thread(target=provider.non_terminated_nodes, args=({},))
    listing.start()
    time.sleep(0.1)
    created = provider.create_node({}, {"ray-node-type": "worker"}, 1)
    listing.join()
    assert provider.reads == 1
    assert set(created) <= set(provider.non_terminated_nodes({}))


def test_a_refresh_that_began_before_a_terminate_finished_does_not_revive_the_nodes(provider):
    provider.non_terminated_nodes({})
    provider._last_refresh = float("-inf")
    provider.list_delay = 0.5  # vCenter's answer predates the delete below
    listing = threading.Thread(target=provider.non_terminated_nodes, args=({},))
    listing.start()
    time.sleep(0.1)
    provider.terminate_nodes(["a"])
    listing.join()
    assert provider.reads == 2
    assert provider.is_terminated("a") and provider.non_terminated_nodes({}) == ["b"]


def test_a_failed_deploy_raises_node_launch_exception_with_a_category(provider):
    provider.playbooks.fail_with = "deploying nodes of Ray cluster unit failed: InsufficientResourcesFault"
    with pytest.raises(NodeLaunchException) as raised:
        provider.create_node({}, {"ray-node-type": "worker"}, 2)
    assert raised.value.category == "InsufficientCapacity"
    assert "InsufficientResourcesFault" in raised.value.description
    assert raised.value.src_exc_info is not None


def test_terminate_deletes_a_list_in_one_run_and_hides_the_nodes_while_it_runs(provider):
    provider.non_terminated_nodes({})
    provider.playbooks.delay = 0.3
    thread = threading.Thread(target=provider.terminate_nodes, args=(["a", "b", "unknown"],))
    thread.start()
    time.sleep(0.1)
    assert provider.is_terminated("a") and provider.non_terminated_nodes({}) == []
    thread.join()
    assert provider.playbooks.calls == [("terminate_nodes", {"ray_provider_cluster_name": "unit",
                                                                 "ray_provider_private_key": provider.private_key_path(),
                                                                 "ray_provider_uuids": ["a", "b"]})]


def test_a_failed_terminate_leaves_the_nodes_listed(provider):
    provider.non_terminated_nodes({})
    provider.playbooks.fail_with = "Destroy_Task on VM unit-worker-a failed"
    with pytest.raises(PlaybookFailed):
        provider.terminate_node("a")
    assert not provider.is_terminated("a")


def test_tags_are_visible_at_once_and_written_in_one_batch(provider):
    provider.non_terminated_nodes({})
    provider.set_node_tags("a", {"ray-node-status": "setting-up"})
    provider.set_node_tags("b", {"ray-node-status": "setting-up"})
    provider.set_node_tags("a", {"ray-node-status": "up-to-date"})
    assert provider.node_tags("a")["ray-node-status"] == "up-to-date"
    deadline = time.monotonic() + 5
    while not provider.playbooks.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert provider.playbooks.playbooks() == ["set_node_tags"]
    updates = provider.playbooks.calls[0][1]["ray_provider_tag_updates"]
    assert sorted(updates, key=lambda u: u["uuid"]) == [
        {"uuid": "a", "tags": {"ray-node-status": "up-to-date"}},
        {"uuid": "b", "tags": {"ray-node-status": "setting-up"}}]


def test_unwritten_tags_win_over_a_refresh_and_a_failed_write_is_retried(provider, monkeypatch):
    provider.non_terminated_nodes({})
    monkeypatch.setattr(node_provider, "TAG_BATCH_DELAY_S", 3600)  # keep the writer thread out of the way
    provider.set_node_tags("a", {"ray-node-status": "up-to-date"})
    monkeypatch.setattr(provider, "_last_refresh", float("-inf"))
    provider.non_terminated_nodes({})
    assert provider.node_tags("a")["ray-node-status"] == "up-to-date"
    provider.playbooks.fail_with = "vCenter unreachable"
    with pytest.raises(PlaybookFailed):
        provider.write_tags_now()
    provider.playbooks.fail_with = None
    provider.write_tags_now()
    assert provider.playbooks.calls[-1][1]["ray_provider_tag_updates"] == [
        {"uuid": "a", "tags": {"ray-node-status": "up-to-date"}}]


def test_many_threads_at_once_see_consistent_answers(provider):
    provider.non_terminated_nodes({})
    errors = []

    def reader():
        try:
            for _ in range(2000):
                for node_id in provider.non_terminated_nodes({}):
                    provider.node_tags(node_id)
                    provider.internal_ip(node_id)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def launcher():
        for _ in range(5):
            created = provider.create_node({}, {"ray-node-type": "worker"}, 2)
            for node_id in created:
                provider.set_node_tags(node_id, {"ray-node-status": "up-to-date"})
            provider.terminate_nodes(list(created))

    threads = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=launcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    assert provider.playbooks.playbooks().count("create_nodes") == 10


OPERATOR_PASSWORD = "s3cret-Passw0rd"
HEAD_ACCOUNT = {"RAY_VSPHERE_HEAD_USER": "ray-autoscaler@vsphere.local", "RAY_VSPHERE_HEAD_PASSWORD": "h3ad-Passw0rd"}


def operator_env(monkeypatch, head_account=HEAD_ACCOUNT):
    """The operator's machine: the operator's password, and the head's account unless head_account is None."""
    monkeypatch.setenv("VMWARE_PASSWORD", OPERATOR_PASSWORD)
    for name in HEAD_ACCOUNT:
        monkeypatch.delenv(name, raising=False)
    for name, value in (head_account or {}).items():
        monkeypatch.setenv(name, value)


DESCRIPTOR = b'<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References/></Envelope>'


def write_ova(path):
    """An OVA that holds only a descriptor: enough for node_deploy's package to open and hash it."""
    with tarfile.open(path, "w") as archive:
        member = tarfile.TarInfo("node.ovf")
        member.size = len(DESCRIPTOR)
        archive.addfile(member, io.BytesIO(DESCRIPTOR))
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_the_head_config_holds_the_heads_own_account_its_password_only_as_vault(monkeypatch, tmp_path):
    key = make_key_pair(tmp_path / "ray-key")
    operator_env(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # node_deploy's hash cache
    provider_section = dict(PROVIDER, ovf=str(tmp_path / "node.ova"), ssh_private_key_file=str(key),
                            ssh_public_key_file=f"{key}.pub")
    node_sha256 = write_ova(tmp_path / "node.ova")
    local = VsphereNodeProvider(provider_section, "unit")
    (tmp_path / "gpu-image").mkdir()
    (tmp_path / "gpu-image" / "gpu.ovf").write_bytes(DESCRIPTOR)
    head_config = local.prepare_for_head_node({
        "provider": dict(provider_section), "auth": {"ssh_user": "ubuntu", "ssh_private_key": "~/ray_bootstrap_key.pem"},
        "available_node_types": {"worker": {"node_config": {}, "resources": {}},
                                 "gpu": {"node_config": {"ovf": str(tmp_path / "gpu-image" / "gpu.ovf")}, "resources": {}},
                                 "web": {"node_config": {"ovf": "https://images.example.com/web.ova"}, "resources": {}}}})
    assert OPERATOR_PASSWORD not in repr(head_config) and "h3ad-Passw0rd" not in repr(head_config)
    head_provider = head_config["provider"]
    assert head_provider["vcenter_username"] == "ray-autoscaler@vsphere.local"
    assert head_provider["vcenter_password_vault"].startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert head_provider["ovf"] == "~/ray_vsphere_images/node.ova"
    node_configs = {name: node_type["node_config"] for name, node_type in head_config["available_node_types"].items()}
    assert node_configs["gpu"]["ovf"] == "~/ray_vsphere_images/gpu-image/gpu.ovf", "an .ovf's folder is mounted"
    assert node_configs["web"]["ovf"] == "https://images.example.com/web.ova"
    # The head finds the template by the image's hash, never reading (or checking) the image with its own account.
    assert head_provider["ovf_sha256"] == node_sha256
    assert node_configs["gpu"]["ovf_sha256"] == hashlib.sha256(DESCRIPTOR).hexdigest()
    assert "ovf_sha256" not in node_configs["web"] and "ovf_sha256" not in node_configs["worker"]
    assert head_provider["ssh_private_key_file"] == "~/ray_bootstrap_key.pem"
    assert head_config["auth"]["ssh_public_key"] == "~/ray_bootstrap_key.pub"

    # On the head: no VMWARE_PASSWORD, no head variables; the head's own account is what it logs in as.
    for name in ("VMWARE_PASSWORD", *HEAD_ACCOUNT):
        monkeypatch.delenv(name)
    head_provider["ssh_private_key_file"] = str(key)  # where the head has the same key
    on_head = config.VcenterCredentials(head_provider)
    assert (on_head.username, on_head.password) == ("ray-autoscaler@vsphere.local", "h3ad-Passw0rd")
    other_key = make_key_pair(tmp_path / "other-key")
    with pytest.raises(Exception, match="Decryption failed"):
        config.VcenterCredentials(dict(head_provider, ssh_private_key_file=str(other_key)))


def test_the_head_gets_the_operators_account_only_when_the_cluster_yaml_says_so(monkeypatch, tmp_path):
    key = make_key_pair(tmp_path / "ray-key")
    operator_env(monkeypatch, head_account=None)
    provider_section = dict(PROVIDER, ssh_private_key_file=str(key), ssh_public_key_file=f"{key}.pub",
                            head_vcenter_account="operator")
    head_provider = VsphereNodeProvider(provider_section, "unit").prepare_for_head_node(
        {"provider": dict(provider_section), "auth": {}, "available_node_types": {}})["provider"]
    assert head_provider["vcenter_username"] == "ray"
    monkeypatch.delenv("VMWARE_PASSWORD")
    head_provider["ssh_private_key_file"] = str(key)  # where the head has the same key
    assert config.VcenterCredentials(head_provider).password == OPERATOR_PASSWORD


def test_without_the_heads_account_no_head_is_made_and_the_error_names_the_variables(monkeypatch, tmp_path):
    key = make_key_pair(tmp_path / "ray-key")
    operator_env(monkeypatch, head_account={"RAY_VSPHERE_HEAD_USER": "ray-autoscaler@vsphere.local"})
    provider = VsphereNodeProvider(dict(PROVIDER, ssh_private_key_file=str(key), ssh_public_key_file=f"{key}.pub"),
                                   "unit")
    provider.playbooks = FakeRuns()
    # With a cached config `ray up` skips bootstrap_config: the head's launch checks the account itself.
    with pytest.raises(config.ClusterConfigError) as raised:
        provider.create_node({}, {"ray-node-type": "head", "ray-user-node-type": "head"}, 1)
    assert raised.value.problems[0].startswith("RAY_VSPHERE_HEAD_PASSWORD: not set. The Ray head's autoscaler logs in "
                                               "to vCenter with an account of its own")
    assert "set provider.head_vcenter_account: operator" in raised.value.problems[0]
    assert provider.playbooks.calls == [], "nothing was run, so nothing made"
    with pytest.raises(config.ClusterConfigError, match="RAY_VSPHERE_HEAD_PASSWORD: not set"):
        provider.prepare_for_head_node({"provider": dict(provider.provider_config), "auth": {},
                                        "available_node_types": {}})
    # The head's autoscaler launches workers with no head variables around.
    provider.create_node({}, {"ray-node-type": "worker", "ray-user-node-type": "worker"}, 1)
    assert provider.playbooks.playbooks() == ["create_nodes"]


@pytest.mark.parametrize("head_account, provider_keys, expected", [
    ({}, {}, "RAY_VSPHERE_HEAD_USER and RAY_VSPHERE_HEAD_PASSWORD: not set."),
    ({"RAY_VSPHERE_HEAD_USER": "RAY@vsphere.local", "RAY_VSPHERE_HEAD_PASSWORD": "x"}, {},
     "RAY_VSPHERE_HEAD_USER: 'RAY@vsphere.local' is the account `ray up` runs as (VMWARE_USER)"),
    (HEAD_ACCOUNT, {"head_vcenter_account": "operator"},
     "provider.head_vcenter_account: operator gives the head your own vCenter account, yet RAY_VSPHERE_HEAD_USER and "
     "RAY_VSPHERE_HEAD_PASSWORD name one of its own"),
])
def test_the_heads_account_is_its_own_or_explicitly_the_operators(monkeypatch, head_account, provider_keys, expected):
    operator_env(monkeypatch, head_account=head_account)
    operator = config.VcenterCredentials(dict(PROVIDER, vcenter_username="ray@vsphere.local"))
    problems = config.HeadAccount(dict(PROVIDER, **provider_keys), operator).problems()
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    assert config.HeadAccount(PROVIDER, operator, environ=HEAD_ACCOUNT).problems() == []
    assert config.HeadAccount(dict(PROVIDER, head_vcenter_account="operator"), operator, environ={}).problems() == []


def head_and_worker(head=None, worker=None, provider=None):
    try:
        config.check_cluster_config({"cluster_name": "unit", "provider": dict(PROVIDER, **(provider or {})),
                                     "auth": {"ssh_user": "ubuntu"}, "head_node_type": "head",
                                     "available_node_types": {"head": {"node_config": head or {}},
                                                              "worker": {"node_config": worker or {}}}})
    except config.ClusterConfigError as error:
        return error.problems
    return []


def test_with_its_own_account_the_head_only_clones_the_template_ray_up_makes_from_the_heads_image():
    sha = {"ovf_sha256": "0" * 64}
    assert head_and_worker(provider=sha) == []
    assert head_and_worker() == [
        "provider.ovf_sha256: required for an image URL with the head's own vCenter account, so that the head finds "
        "the template `ray up` made from https://images.example.com/ray.ova whatever its server says later; or set "
        "provider.head_vcenter_account: operator"]
    problems = head_and_worker(provider=sha, worker={"ovf": "https://images.example.com/gpu.ova", "vm_folder": "gpu",
                                                     "clone_from_template": False})
    assert problems == [
        "available_node_types.worker.node_config.clone_from_template: must not be false: the head's own vCenter "
        "account clones workers only from the template `ray up` makes from the head's image (it may not import an "
        "OVF); or set provider.head_vcenter_account: operator",
        "available_node_types.worker.node_config.ovf: 'https://images.example.com/gpu.ova' is not the head's "
        "'https://images.example.com/ray.ova': the head's own vCenter account clones workers only from the template "
        "`ray up` makes from the head's image (it may not import an OVF); or set provider.head_vcenter_account: operator",
        "available_node_types.worker.node_config.vm_folder: 'gpu' is not the head's None: the head's own vCenter "
        "account clones workers only from the template `ray up` makes from the head's image (it may not import an "
        "OVF); or set provider.head_vcenter_account: operator"]
    # The operator's account may import: anything goes.
    assert head_and_worker(provider={"head_vcenter_account": "operator"},
                           worker={"ovf": "https://images.example.com/gpu.ova", "clone_from_template": False}) == []
    assert head_and_worker(provider={"head_vcenter_account": "admin"}) == [
        "provider.head_vcenter_account: must be one of own, operator, not 'admin'"]


def test_the_head_verifies_vcenter_against_the_same_ca_from_its_own_copy(monkeypatch, tmp_path):
    key = make_key_pair(tmp_path / "ray-key")
    ca = tmp_path / "internal-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    operator_env(monkeypatch)
    monkeypatch.setenv("VMWARE_CA_PATH", str(ca))
    provider_section = dict(PROVIDER, ssh_private_key_file=str(key), ssh_public_key_file=f"{key}.pub")
    local = VsphereNodeProvider(provider_section, "unit")
    assert local.credentials.environment()["VMWARE_CA_PATH"] == str(ca)
    head_provider = local.prepare_for_head_node({"provider": dict(provider_section), "auth": {"ssh_user": "ubuntu"},
                                                 "available_node_types": {}})["provider"]
    assert head_provider["vcenter_ca_path"] == node_provider.HEAD_CA == "~/ray_vsphere_vcenter_ca.pem"
    # On the head, the mounted copy is the CA; the ~ is the head user's home.
    monkeypatch.delenv("VMWARE_CA_PATH")
    assert config.VcenterCredentials(dict(head_provider, ssh_private_key_file=str(key))).ca_path == \
        str(Path("~/ray_vsphere_vcenter_ca.pem").expanduser())
    # A CA path that is not a file is named before anything runs.
    missing = config.VcenterCredentials(dict(provider_section, vcenter_ca_path=str(tmp_path / "nope.pem")))
    assert missing.problems() == [f"provider.vcenter_ca_path (or VMWARE_CA_PATH): no such file: {tmp_path / 'nope.pem'}"]


def test_node_config_cpus_fill_a_missing_cpu_resource_and_nothing_else():
    filled = VsphereNodeProvider.fillout_available_node_types_resources({"available_node_types": {
        "worker": {"node_config": {"cpus": 4}},
        "sized": {"node_config": {"cpus": 4}, "resources": {"CPU": 2}},
        "broken": "not a mapping"}})
    assert filled["available_node_types"] == {
        "worker": {"node_config": {"cpus": 4}, "resources": {"CPU": 4}},
        "sized": {"node_config": {"cpus": 4}, "resources": {"CPU": 2}},
        "broken": "not a mapping"}


def test_config_problems_are_all_reported_by_key_before_vcenter_is_asked():
    with pytest.raises(config.ClusterConfigError) as raised:
        config.check_cluster_config({
            "cluster_name": "../../etc",
            "provider": {"type": "external", "datacenter": 5, "datastor": "DS0", "vcenter_password": "x"},
            "head_start_ray_commands": ["ray stop", "ray start --head --port=6379"],
            "auth": {},
            "available_node_types": {"worker": {"node_config": {"memory_mb": -1, "ovf": "/nonexistent.ova"}}}})
    assert raised.value.problems == [
        "provider.datacenter: must be a string, not 5",
        "provider.datastor: unknown key; did you mean datastore?",
        "provider.vcenter_password: do not write the password into the cluster YAML (Ray caches it in plaintext "
        "and copies it to the head); export VMWARE_PASSWORD instead",
        "cluster_name '../../etc' must be 1-80 letters, digits, '.', '_' or '-'",
        "head_start_ray_commands[1]: runs `ray start` without token authentication: prefix it with RAY_AUTH_MODE=token "
        "(every node gets the cluster's token at ~/.ray/auth_token)",
        "auth.ssh_user: required: the user the cluster's SSH key logs in as (ubuntu on Ubuntu's cloud images and the test OVA)",
        "available_node_types.worker.node_config.memory_mb: must be at least 1, not -1",
        "available_node_types.worker.node_config.datastore: required (set it here or in provider.datastore)",
        "available_node_types.worker.node_config.cluster: one of cluster and esxi_host is required (here or in provider)",
        "available_node_types.worker.node_config.ovf: no such file: /nonexistent.ova",
    ]


# A value of each spec type, and one of another type that the module would only convert.
RIGHT_AND_WRONG = {"str": ("https://images.example.com/ray.ova", 5), "int": (2, "2"), "bool": (False, "no"),
                   "dict": ({"key": "value"}, "key=value"), "list": (["value"], "value"), "path": ("/etc/ssl/certs/ca.pem", 5)}
# Options whose values have a form of their own, beyond their type.
RIGHT_BY_OPTION = {"ovf_sha256": "0" * 64}
SETTABLE = sorted(set(DEPLOY_OPTIONS) - set(config.DECIDED_BY_PROVIDER))
WHERE = {"provider": "provider", "node_config": "available_node_types.worker.node_config"}


def problems_of(provider=None, node_config=None):
    try:
        config.check_cluster_config({"cluster_name": "unit", "provider": dict(PROVIDER, **(provider or {})),
                                     "auth": {"ssh_user": "ubuntu"},
                                     "available_node_types": {"worker": {"node_config": node_config or {}}}})
    except config.ClusterConfigError as error:
        return error.problems
    return []


@pytest.mark.parametrize("section", WHERE)
@pytest.mark.parametrize("option", SETTABLE)
def test_every_node_deploy_option_the_provider_does_not_decide_is_a_setting_checked_by_its_spec(option, section):
    spec = DEPLOY_OPTIONS[option]
    right, wrong = RIGHT_AND_WRONG[spec["type"]]
    right = spec["choices"][0] if spec.get("choices") else RIGHT_BY_OPTION.get(option, right)
    key = f"{WHERE[section]}.{option}"

    def problems_about_option(value):
        return [problem for problem in problems_of(**{section: {option: value}}) if problem.startswith(f"{key}:")]

    assert problems_about_option(right) == []
    refused = problems_about_option(wrong)
    assert len(refused) == 1 and refused[0].startswith(f"{key}: must be ") and refused[0].endswith(f", not {wrong!r}")
    if option in AT_LEAST_ONE:
        assert problems_about_option(0) == [f"{key}: must be at least 1, not 0"]


@pytest.mark.parametrize("option", [option for option in SETTABLE if DEPLOY_OPTIONS[option].get("required")])
def test_the_options_node_deploy_requires_are_required_of_every_node_type(option):
    assert problems_of(provider={option: None}) == [
        f"available_node_types.worker.node_config.{option}: required (set it here or in provider.{option})"]


@pytest.mark.parametrize("option", config.DECIDED_BY_PROVIDER)
def test_the_options_the_provider_decides_are_refused_in_the_cluster_yaml(option):
    assert option in DEPLOY_OPTIONS
    assert problems_of(node_config={option: "x"}) == [
        f"available_node_types.worker.node_config.{option}: set by the provider on every launch, not in the cluster YAML"]


def test_node_deploy_rules_across_options_apply_to_the_merged_settings_where_null_unsets():
    assert problems_of(node_config={"esxi_host": "esx-1"}) == [
        "available_node_types.worker.node_config.cluster: only one of cluster and esxi_host may be set (here or in provider)"]
    assert problems_of(node_config={"esxi_host": "esx-1", "cluster": None}) == []
    assert config.node_settings(dict(PROVIDER, network="ray"), {"esxi_host": "esx-1", "cluster": None, "network": ""}) == {
        "ovf": "https://images.example.com/ray.ova", "datacenter": "DC0", "datastore": "DS0", "esxi_host": "esx-1"}


def test_a_plain_http_image_without_its_sha256_is_refused_in_the_cluster_yaml():
    url = "http://images.example.com/ray.ova"
    assert problems_of(provider={"ovf": url}) == [
        f"provider.ovf: {url} is plain http, so the image could be swapped on its way: give its ovf_sha256 "
        "(the download is then checked against it), or serve it over https"]
    assert problems_of(provider={"ovf": url, "ovf_sha256": "0" * 64}) == []
    # The image in provider, its hash in the node type (the merged settings count), or neither there.
    assert problems_of(provider={"ovf": url}, node_config={"ovf_sha256": "0" * 64}) == []
    assert problems_of(node_config={"ovf": url}) == [
        f"available_node_types.worker.node_config.ovf: {url} is plain http, so the image could be swapped on its "
        "way: give its ovf_sha256 (the download is then checked against it), or serve it over https"]


def test_the_real_vcenter_example_passes_the_checks_with_the_heads_own_account():
    import yaml
    example = yaml.safe_load((Path(__file__).parents[2] / "examples" / "ray-cluster.vsphere.yaml").read_text())
    assert config.head_account_mode(example["provider"]) == config.OWN_ACCOUNT
    config.check_cluster_config(example)
