"""Ray's monitor, run with Ansible Vault blobs kept out of its logs.

    python -I -u -m ray_provider.monitor_logging .../ray/autoscaler/v2/monitor.py [the monitor's arguments]

Ray's autoscaler v2 logs its whole config when it starts (ray/autoscaler/v2/
autoscaler.py, "Using Autoscaling Config"), and with it the provider section's
Vault blob of the head's vCenter password. The blob opens with the cluster's
key, which the head holds, so in the monitor's log the old password would
outlive its rotation (docs/day-two.md, "Rotating credentials"). Here every
log record has its blobs replaced as it is made, by a record factory set
before Ray's monitor runs: whichever logger or handler Ray sets up later.
"""

import logging
import re
import runpy
import sys

# A blob as a message holds it: its header, then lines of hex split by newlines, literal (a YAML dump) or
# escaped (a dict's repr, JSON).
VAULT_BLOB = re.compile(r"\$ANSIBLE_VAULT;[^\s\\'\"]*(?:(?:\\n|\s)+[0-9a-f]+(?!\w))*")
NOT_LOGGED = "<vault blob not logged>"


def without_vault_blobs(make_record):
    """A log record factory over make_record whose records' messages hold no Vault blob."""
    def make(*args, **kwargs):
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # (logging reports a message that does not format when it is emitted)
            return record
        if "$ANSIBLE_VAULT" in message:
            record.msg, record.args = VAULT_BLOB.sub(NOT_LOGGED, message), None
        return record
    return make


def main(argv=None):
    """Run the monitor script argv[0] as `python argv[0] argv[1:]` would, its log records without Vault blobs."""
    argv = sys.argv[1:] if argv is None else argv
    logging.setLogRecordFactory(without_vault_blobs(logging.getLogRecordFactory()))
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
