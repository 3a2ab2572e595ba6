"""VsphereNodeProvider's cache, batching, locking, config and errors, with the playbook runs and vCenter reads faked.

The fakes are in conftest.py. Races are staged with events (a read held at
its start, a run held until released), never with sleeps as barriers.
"""

import hashlib
import io
import tarfile
import threading
from pathlib import Path

import pytest
from ray.autoscaler.node_launch_exception import NodeLaunchException

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import AT_LEAST_ONE, DEPLOY_OPTIONS
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token
from ray_provider import config, head_config, node_provider
from ray_provider.node_provider import VsphereNodeProvider
from ray_provider.runs import PlaybookFailed
from testbed.guests import make_key_pair
from conftest import HEAD_ACCOUNT, PROVIDER, FakeRuns, record


def test_reads_come_from_memory_and_vcenter_is_read_at_most_once_per_refresh_interval(provider):
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    for _ in range(100):
        assert provider.node_tags("a")["ray-node-type"] == "worker"
        assert provider.internal_ip("a") == "10.0.0.1"
        assert provider.external_ip("b") is None
        assert provider.is_running("a") and not provider.is_terminated("a")
        provider.non_terminated_nodes({"ray-node-type": "worker"})
    assert provider.vcenter.reads == 1
    assert provider.playbooks.calls == []


def test_refresh_drops_nodes_gone_from_vcenter_and_filters_by_tags(provider, monkeypatch):
    provider.non_terminated_nodes({})
    provider.vcenter.records = [record("a", "unit-worker-a", **{"ray-user-node-type": "gpu"})]
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


def hold_a_read(provider):
    """A refresh on a thread of its own, held after vCenter answered and before the cache takes the answer."""
    provider._last_refresh = float("-inf")
    provider.vcenter.hold = True
    listing = threading.Thread(target=provider.non_terminated_nodes, args=({},))
    listing.start()
    assert provider.vcenter.entered.wait(10)
    return listing


def test_a_refresh_that_began_before_a_create_finished_keeps_the_new_nodes(provider):
    listing = hold_a_read(provider)  # vCenter's answer predates the create below
    created = provider.create_node({}, {"ray-node-type": "worker"}, 1)
    provider.vcenter.release.set()
    listing.join()
    assert provider.vcenter.reads == 1
    assert set(created) <= set(provider.non_terminated_nodes({}))


def test_a_refresh_that_began_before_a_terminate_finished_does_not_revive_the_nodes(provider):
    provider.non_terminated_nodes({})
    listing = hold_a_read(provider)  # vCenter's answer predates the delete below
    provider.terminate_nodes(["a"])
    provider.vcenter.release.set()
    listing.join()
    assert provider.vcenter.reads == 2
    assert provider.is_terminated("a") and provider.non_terminated_nodes({}) == ["b"]


def test_before_the_first_view_a_concurrent_caller_waits_for_it_and_never_gets_an_empty_cluster(provider):
    first = hold_a_read(provider)
    answers = []
    second = threading.Thread(target=lambda: answers.append(sorted(provider.non_terminated_nodes({}))))
    second.start()
    second.join(0.5)
    assert second.is_alive() and answers == [], "the second caller answered before any view existed"
    provider.vcenter.release.set()
    first.join()
    second.join(10)
    assert answers == [["a", "b"]]
    assert provider.vcenter.reads == 1, "the second caller took the first read's answer"


def test_before_the_first_view_a_caller_whose_concurrent_first_read_failed_reads_itself(provider):
    from ray_provider.vcenter_session import VcenterUnresponsive
    provider.vcenter.fail_with = VcenterUnresponsive("vCenter did not answer within 5 s")
    provider.vcenter.failures_left = 1
    provider.vcenter.hold = True
    outcomes = []

    def list_nodes():
        try:
            outcomes.append(sorted(provider.non_terminated_nodes({})))
        except VcenterUnresponsive as error:
            outcomes.append(error)
    first = threading.Thread(target=list_nodes)
    first.start()
    assert provider.vcenter.entered.wait(10)
    provider.vcenter.hold = False
    second = threading.Thread(target=list_nodes)
    second.start()
    second.join(0.5)
    assert second.is_alive() and outcomes == [], "the second caller answered before any view existed"
    provider.vcenter.release.set()
    first.join()
    second.join(10)
    assert isinstance(outcomes[0], VcenterUnresponsive), "without a view, the failed read is the first caller's error"
    assert outcomes[1:] == [["a", "b"]] and provider.vcenter.reads == 2, "the second read its own answer, not []"


@pytest.mark.parametrize("message, fields, category", [
    ("deploying nodes of Ray cluster unit failed: InsufficientResourcesFault: no room",
     {"fault": "vim.fault.InsufficientResourcesFault"}, "InsufficientCapacity"),
    ("ReconfigVM_Task failed", {"fault": "NoDiskSpace"}, "InsufficientCapacity"),
    ("no usable IP after 3 s", {"failure": "no_ip_address"}, "NoIpAddress"),
    ("datastore 'X' not found in datacenter DC0", {"failure": "placement"}, "Placement"),
    # The same words without the fields: no category is read from English.
    ("Insufficient resources; no usable IP; not found in datacenter DC0", {}, "DeployFailed"),
])
def test_a_failed_deploy_raises_node_launch_exception_with_a_category_from_the_modules_fields(
        provider, message, fields, category):
    provider.playbooks.fail_with = (message, fields)
    with pytest.raises(NodeLaunchException) as raised:
        provider.create_node({}, {"ray-node-type": "worker"}, 2)
    assert raised.value.category == category
    assert message in raised.value.description
    assert raised.value.src_exc_info is not None


def test_terminate_deletes_a_list_in_one_run_and_hides_the_nodes_while_it_runs(provider):
    provider.non_terminated_nodes({})
    provider.playbooks.hold = "terminate_nodes"
    thread = threading.Thread(target=provider.terminate_nodes, args=(["a", "b", "unknown"],))
    thread.start()
    assert provider.playbooks.started.wait(10)
    assert provider.is_terminated("a") and provider.non_terminated_nodes({}) == []
    provider.playbooks.release.set()
    thread.join()
    # Only the node types' folders are read: the provider's datacenter, its VM folder (unset: the datacenter's).
    assert provider.playbooks.calls == [("terminate_nodes", {"ray_provider_cluster_name": "unit",
                                                                 "ray_provider_private_key": provider.private_key_path(),
                                                                 "ray_provider_datacenter": "DC0",
                                                                 "ray_provider_vm_folders": [""],
                                                                 "ray_provider_uuids": ["a", "b"]})]


def test_a_failed_terminate_leaves_the_nodes_listed(provider):
    provider.non_terminated_nodes({})
    provider.playbooks.fail_with = ("Destroy_Task on VM unit-worker-a failed", {})
    with pytest.raises(PlaybookFailed):
        provider.terminate_node("a")
    assert not provider.is_terminated("a")


def test_tags_are_visible_at_once_and_written_in_one_batch(provider):
    provider.non_terminated_nodes({})
    provider.playbooks.hold = "set_node_tags"
    provider.set_node_tags("a", {"ray-node-status": "setting-up"})
    provider.set_node_tags("b", {"ray-node-status": "setting-up"})
    provider.set_node_tags("a", {"ray-node-status": "up-to-date"})
    assert provider.node_tags("a")["ray-node-status"] == "up-to-date"
    assert provider.playbooks.started.wait(10)
    provider.playbooks.release.set()
    assert provider.playbooks.playbooks() == ["set_node_tags"]
    assert (provider.playbooks.calls[0][1]["ray_provider_datacenter"],
            provider.playbooks.calls[0][1]["ray_provider_vm_folders"]) == ("DC0", [""])
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
    provider.playbooks.fail_with = ("vCenter unreachable", {})
    with pytest.raises(PlaybookFailed):
        provider.write_tags_now()
    provider.playbooks.fail_with = None
    provider.write_tags_now()
    assert provider.playbooks.calls[-1][1]["ray_provider_tag_updates"] == [
        {"uuid": "a", "tags": {"ray-node-status": "up-to-date"}}]


def test_many_threads_at_once_see_consistent_answers(provider, monkeypatch):
    """Readers race launchers that create, tag and terminate: every answer agrees with what the launchers did."""
    monkeypatch.setattr(node_provider, "TAG_BATCH_DELAY_S", 3600)  # the tags stay unwritten: in memory only
    provider.non_terminated_nodes({})
    created_ips, errors = {}, []
    # IPs readers saw of nodes whose create_node had not yet returned to its launcher (the cache has them
    # first): checked against what create_node returned once every thread is done.
    seen_before_returned = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            for node_id in provider.non_terminated_nodes({}):
                tags, ip = provider.node_tags(node_id), provider.internal_ip(node_id)
                if (tags == {} or ip is None) and provider.is_terminated(node_id):
                    continue  # terminated since the listing (or between the two reads)
                if tags.get("ray-cluster-name") != "unit":
                    errors.append(f"{node_id}: tags {tags}")
                if node_id not in ("a", "b") and node_id not in created_ips:
                    seen_before_returned.append((node_id, ip))
                    continue
                expected_ip = {"a": "10.0.0.1", "b": None}.get(node_id, created_ips.get(node_id))
                if ip != expected_ip:
                    errors.append(f"{node_id}: tags {tags}, ip {ip}, expected ip {expected_ip}")

    def launcher():
        for _ in range(5):
            created = provider.create_node({}, {"ray-node-type": "worker"}, 2)
            created_ips.update((node_id, node["ip"]) for node_id, node in created.items())
            for node_id in created:
                if node_id not in provider.non_terminated_nodes({}):
                    errors.append(f"{node_id}: not listed right after its create returned")
                provider.set_node_tags(node_id, {"ray-node-status": "up-to-date"})
                if provider.node_tags(node_id).get("ray-node-status") != "up-to-date":
                    errors.append(f"{node_id}: its tag is not visible right after set_node_tags")
            provider.terminate_nodes(list(created))
            for node_id in created:
                if not provider.is_terminated(node_id) or node_id in provider.non_terminated_nodes({}):
                    errors.append(f"{node_id}: still there after terminate_nodes returned")

    readers = [threading.Thread(target=reader) for _ in range(4)]
    launchers = [threading.Thread(target=launcher) for _ in range(2)]
    for thread in readers + launchers:
        thread.start()
    for thread in launchers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    errors += [f"{node_id}: ip {ip} before its create returned, {created_ips.get(node_id)} after"
               for node_id, ip in seen_before_returned if ip != created_ips.get(node_id)]
    assert errors == []
    assert sorted(provider.non_terminated_nodes({})) == ["a", "b"]
    assert provider.playbooks.playbooks().count("create_nodes") == 10
    assert len(created_ips) == 20


OPERATOR_PASSWORD = "s3cret-Passw0rd"


def operator_env(monkeypatch, head_account=HEAD_ACCOUNT):
    """The operator's machine: the operator's password, and the head's account unless head_account is None."""
    monkeypatch.setenv("VMWARE_PASSWORD", OPERATOR_PASSWORD)
    for name in HEAD_ACCOUNT:
        monkeypatch.delenv(name, raising=False)
    for name, value in (head_account or {}).items():
        monkeypatch.setenv(name, value)


DESCRIPTOR = b'<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References/></Envelope>'


# What ovftool writes beside a descriptor: without a manifest an image needs its ovf_sha256.
MANIFEST = f"SHA256(node.ovf)= {hashlib.sha256(DESCRIPTOR).hexdigest()}\n".encode()


def write_ova(path):
    """An OVA that holds only a descriptor and its manifest: enough for node_deploy's package to open and hash it."""
    with tarfile.open(path, "w") as archive:
        for name, content in (("node.ovf", DESCRIPTOR), ("node.mf", MANIFEST)):
            member = tarfile.TarInfo(name)
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
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
    (tmp_path / "gpu-image" / "gpu.mf").write_bytes(MANIFEST.replace(b"node.ovf", b"gpu.ovf"))
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
    assert head_provider["vcenter_ca_path"] == head_config.HEAD_CA == "~/ray_vsphere_vcenter_ca.pem"
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
                   "dict": ({"key": "value"}, "key=value"), "list": (["value"], "value"), "path": ("/etc/ssl/certs/ca.pem", 5),
                   "raw": ({"runcmd": ["true"]}, ["runcmd"])}
# Options whose values have a form of their own, beyond their type.
RIGHT_BY_OPTION = {"ovf_sha256": "0" * 64, "gpus": [{"model": "A100", "label": "a100"}],
                   "ip_pool": {"cidr": "198.18.5.0/24", "range": "198.18.5.200-198.18.5.220"}}
# Options that go with another (node_deploy refuses them alone), given beside them.
COMPANIONS = {"vgpu_model": {"vgpu_profile": "grid_a100-20c"}}
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
        return [problem for problem in problems_of(**{section: {option: value, **COMPANIONS.get(option, {})}})
                if problem.startswith(f"{key}:")]

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
    example = yaml.safe_load((Path(__file__).parents[3] / "examples" / "ray-cluster.vsphere.yaml").read_text())
    assert config.head_account_mode(example["provider"]) == config.OWN_ACCOUNT
    config.check_cluster_config(example)


def test_the_token_file_ray_up_mounts_is_the_epochs_token_and_a_bad_epoch_is_refused_by_key(tmp_path):
    key = make_key_pair(tmp_path / "ray-key")
    token_file = head_config._write_ray_auth_token(tmp_path / "state", head_config._cluster_key(key, "unit"), 2)
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text() == ray_auth_token(key.read_text(), "unit", 2) != ray_auth_token(key.read_text(), "unit")
    with pytest.raises(config.ClusterConfigError) as refused:
        head_config._token_epoch({"ray_token_epoch": -1})
    assert refused.value.problems == ["provider.ray_token_epoch: the token epoch must be a whole number from 0, not -1"]
    assert head_config._token_epoch({}) == 0
    with pytest.raises(config.ClusterConfigError) as refused:
        config.check_cluster_config({"cluster_name": "unit", "provider": dict(PROVIDER, ray_token_epoch="2"),
                                     "auth": {"ssh_user": "ubuntu"}, "available_node_types": {}})
    assert "provider.ray_token_epoch: must be an integer, not '2'" in refused.value.problems
    # A real key's armour, made now, around a body that is no key.
    armour = make_key_pair(tmp_path / "armour-key").read_text().splitlines()
    (tmp_path / "not-a-key").write_text(f"{armour[0]}\nAAAA\n{armour[-1]}\n")
    with pytest.raises(config.ClusterConfigError, match=r"auth.ssh_private_key: .*not-a-key is not a PEM or OpenSSH"):
        head_config._cluster_key(tmp_path / "not-a-key", "unit")


def test_a_new_head_password_changes_what_ray_hashes_for_the_head_and_the_fingerprint_is_no_password_oracle(
        monkeypatch, tmp_path):
    key = make_key_pair(tmp_path / "ray-key")
    operator_env(monkeypatch)
    cluster_key = head_config._cluster_key(key, "unit")
    operator = config.VcenterCredentials(PROVIDER)

    def fingerprint(password, key_of=cluster_key):
        monkeypatch.setenv(config.HEAD_PASSWORD_VARIABLE, password)
        return head_config._head_account_fingerprint(key_of, config.HeadAccount(PROVIDER, operator))

    before = fingerprint("h3ad-Passw0rd")
    assert before == fingerprint("h3ad-Passw0rd") and len(before) == 64, "the same account: the same config"
    assert fingerprint("R0tated-Passw0rd") != before, "a new password: another runtime hash, so `ray up` resends"
    # Keyed by the cluster's key: without it, the value tells nothing of the password.
    other_key = head_config._cluster_key(make_key_pair(tmp_path / "other-key"), "unit")
    assert fingerprint("h3ad-Passw0rd", other_key) != before
    assert "h3ad-Passw0rd" not in before


def test_user_data_is_a_node_setting_and_user_data_a_datasource_would_miss_is_refused_by_key():
    assert problems_of(provider={"user_data": {"runcmd": ["true"]}}, node_config={"user_data": "#!/bin/sh\ntrue\n"}) == []
    where = "available_node_types.worker.node_config"
    assert problems_of(node_config={"user_data": "touch /x"}) == [
        f"{where}.user_data: would be ignored by cloud-init: text must start with one of ## template: jinja, "
        "#cloud-config-archive, #cloud-config-jsonp, #cloud-boothook, #include-once, #part-handler, #cloud-config, "
        "#include, #!, or be a MIME multipart message (with a MIME-Version header); it starts with 'touch /x'"]
    (passed_through,) = problems_of(node_config={"guestinfo": {"userdata": "I2Nsb3VkLWNvbmZpZw=="}})
    assert passed_through.startswith(f"{where}.guestinfo: userdata: cloud-init before 25.1")
    assert passed_through.endswith("Give your user-data as user_data instead: node_deploy merges it with the node's "
                                   "own and writes it to both datasources")
