"""A node_deploy request as the module builds one, for the unit tests of what it sends to cloud-init."""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import DEPLOY_OPTIONS, DeployRequest
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from testbed.guests import make_key_pair


def request(tmp_path, **params):
    """node_deploy's defaults for one head of cluster c1, with `params` over them, and a fresh cluster key."""
    key = make_key_pair(tmp_path / "key")
    defaults = {option: spec.get("default") for option, spec in DEPLOY_OPTIONS.items()}
    defaults.update(cluster_name="c1", ovf="/images/node.ova", names=["c1-head"], clone_from_template=False)
    defaults.update(params)
    return DeployRequest(defaults, ClusterKey(key.read_text(), "c1"))
