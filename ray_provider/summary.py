"""The "vSphere" block `ray up` opens with: which vCenter, as whom, which image, where the nodes go."""

import copy

from ray.autoscaler._private.cli_logger import cli_logger

from ray_provider.config import ClusterConfigError, VcenterCredentials, check_cluster_config, node_settings
from ray_provider.progress import say

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._progress import shown_location


def vsphere_block(cluster_config):
    """The "vSphere" block `ray up` opens with: where the cluster goes, as whom, from which image.

    Names and paths only: no password, and an image URL without its user,
    password and query (a presigned URL's signature is a secret). A config
    the checks will refuse shows nothing here: bootstrap_config says why.
    """
    try:
        check_cluster_config(copy.deepcopy(cluster_config))
        provider = cluster_config["provider"]
        credentials = VcenterCredentials(provider)
        node_types = {name: node_settings(provider, node_type["node_config"])
                      for name, node_type in cluster_config["available_node_types"].items()}
    except ClusterConfigError:
        return
    port = f":{credentials.port}" if credentials.port and int(credentials.port) != 443 else ""
    lines = [f"vCenter: {credentials.hostname}{port} (certificates {_tls(credentials)})",
             f"account: {credentials.username}"]
    for name, settings in sorted(node_types.items()):
        pinned = "pinned by ovf_sha256" if settings.get("ovf_sha256") else "no ovf_sha256"
        place = ", ".join(f"{key} {settings[key]}" for key in (
            "datacenter", "cluster", "resource_pool", "vm_folder", "datastore", "network") if settings.get(key))
        lines.append(f"{name}: image {shown_location(str(settings.get('ovf') or ''))} ({pinned}); {place}")
    cli_logger.newline()
    with cli_logger.group("vSphere"):
        for line in lines:
            say(line)


def _tls(credentials):
    if not credentials.validate_certs:
        return "NOT verified: validate_certs false"
    return f"verified with {credentials.ca_path}" if credentials.ca_path else "verified with the system's CAs"
