"""Under autoscaler v2 the head terminates the workers a new config outdates, by autoscaler v1's rule."""

import pytest

from ray.autoscaler._private.util import hash_launch_conf
from ray.autoscaler.tags import TAG_RAY_LAUNCH_CONFIG, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from ray_provider.outdated_workers import terminate_outdated

AUTH = {"ssh_user": "ubuntu"}


OLD = {"ovf": "~/ray_vsphere_images/v1.ova"}
NEW = {"ovf": "~/ray_vsphere_images/v2.ova", "cpus": 2}


class Provider:
    """Records what is terminated; lists workers only, as the sweep asks."""

    def __init__(self, tags):
        self.tags, self.terminated, self.filters = tags, [], None

    def non_terminated_nodes(self, tag_filters):
        self.filters = tag_filters
        return list(self.tags)

    def node_tags(self, node_id):
        return self.tags[node_id]

    def terminate_nodes(self, node_ids):
        self.terminated.extend(node_ids)


@pytest.fixture(autouse=True)
def bootstrap_key(tmp_path):
    """Ray hashes the key file's content into the launch hash: the head's ~/ray_bootstrap_key.pem."""
    key = tmp_path / "ray_bootstrap_key.pem"
    key.write_text("key")
    AUTH["ssh_private_key"] = str(key)


def config(**provider):
    return {"cluster_name": "c", "auth": AUTH, "provider": provider,
            "available_node_types": {"head": {"node_config": {}}, "worker": {"node_config": NEW}}}


def worker(node_config, node_type="worker"):
    return {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: node_type,
            TAG_RAY_LAUNCH_CONFIG: hash_launch_conf(node_config, AUTH)}


def test_workers_of_an_old_node_config_or_a_removed_type_go_and_current_ones_stay():
    provider = Provider({"old": worker(OLD), "current": worker(NEW), "gone-type": worker(NEW, "gpu"),
                         "untagged": {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: "worker"}})
    assert terminate_outdated(config(), provider) == ["old", "gone-type", "untagged"]
    assert provider.terminated == ["old", "gone-type", "untagged"]
    assert provider.filters == {TAG_RAY_NODE_KIND: "worker"}, "the head is never a candidate"


def test_disable_launch_config_check_keeps_every_worker():
    provider = Provider({"old": worker(OLD)})
    assert terminate_outdated(config(disable_launch_config_check=True), provider) == []
    assert provider.terminated == []


def test_the_rule_is_autoscaler_v1s_own():
    """StandardAutoscaler.launch_config_ok, run on the same tags and config, keeps exactly the workers kept here."""
    from types import SimpleNamespace

    from ray.autoscaler._private.autoscaler import StandardAutoscaler

    tags = {"old": worker(OLD), "current": worker(NEW), "gone-type": worker(NEW, "gpu"),
            "untagged": {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: "worker"}}
    cluster = config()
    v1 = SimpleNamespace(disable_launch_config_check=False, provider=Provider(tags), config=cluster,
                         available_node_types=cluster["available_node_types"])
    kept_by_v1 = [node_id for node_id in tags if StandardAutoscaler.launch_config_ok(v1, node_id)]
    provider = Provider(tags)
    terminate_outdated(cluster, provider)
    assert kept_by_v1 == [node_id for node_id in tags if node_id not in provider.terminated] == ["current"]
