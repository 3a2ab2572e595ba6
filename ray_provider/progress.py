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

import logging

from ray.autoscaler._private.cli_logger import cli_logger

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._progress import (
    PROGRESS_FILE_VARIABLE, describe, read_events)
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._waiter import Every

logger = logging.getLogger(__name__)
# How often the tail looks for new lines while a run goes on.
TAIL_INTERVAL_S = 0.5

__all__ = ["PROGRESS_FILE_VARIABLE", "ProgressTail", "say"]


def say(message, warning=False):
    """One line for the operator (cli_logger) and the log, never formatted: a message may hold braces."""
    if warning:
        cli_logger.warning(message, no_format=True)
        logger.warning("ray_vsphere: %s", message)
    else:
        cli_logger.print(message, no_format=True)
        logger.info("ray_vsphere: %s", message)


class ProgressTail:
    """Prints the events a run's modules append to `path` while the run lasts; a `with` block."""

    def __init__(self, path, label):
        self.path = path
        self.label = label
        self._offset = 0
        self._every = Every(TAIL_INTERVAL_S, self._read)

    def __enter__(self):
        self._every.__enter__()
        return self

    def __exit__(self, *exc_info):
        self._every.__exit__(*exc_info)
        self._read()  # what came after the last look

    def _read(self):
        events, self._offset = read_events(self.path, self._offset)
        for event in events:
            text = describe(event)
            if text:
                say(f"{self.label}: {text}", warning=bool(event.get("warning")))
