"""What `ray up` and the head's autoscaler show while the provider works: Ray's cli_logger, and the log.

Ray's CLI shows cli_logger's lines, not the provider's own logger; the head's
monitor writes the log (monitor.log) and cli_logger to its stdout
(monitor.out). So every line goes to both.

While a playbook runs, its modules append progress events (JSON lines, see
plugins/module_utils/_progress.py) to a file named in the run's environment;
ProgressTail reads that file as it grows and prints one line per event. The
same events, in the same words (_progress.describe), serve `ansible-playbook`
through the ray_vsphere.cluster.progress callback.
"""

import copy
import logging
import threading

from ray.autoscaler._private.cli_logger import cli_logger

from ray_provider.config import ClusterConfigError, VcenterCredentials, check_cluster_config, node_settings

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._progress import (
    PROGRESS_FILE_VARIABLE, describe, read_events, shown_location)

logger = logging.getLogger(__name__)
# How often the tail looks for new lines while a run goes on.
TAIL_INTERVAL_S = 0.5

__all__ = ["PROGRESS_FILE_VARIABLE", "ProgressTail", "say", "vsphere_block"]


def say(message, warning=False):
    """One line for the operator (cli_logger) and the log, never formatted: a message may hold braces."""
    if warning:
        cli_logger.warning(message, no_format=True)
        logger.warning("ray_vsphere: %s", message)
    else:
        cli_logger.print(message, no_format=True)
        logger.info("ray_vsphere: %s", message)


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


class ProgressTail:
    """Prints the events a run's modules append to `path` while the run lasts; a `with` block."""

    def __init__(self, path, label):
        self.path = path
        self.label = label
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"ray-vsphere-progress-{label}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self._read()  # what came after the last look

    def _follow(self):
        while not self._stop.wait(TAIL_INTERVAL_S):
            self._read()

    def _read(self):
        events, self._offset = read_events(self.path, self._offset)
        for event in events:
            text = describe(event)
            if text:
                say(f"{self.label}: {text}", warning=bool(event.get("warning")))
