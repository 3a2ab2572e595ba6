# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Progress of a running module (an upload, a wait for IPs), as JSON lines appended to a file.

A module cannot stream output: Ansible shows its result when it ends. So
while it runs it appends events to the file named by PROGRESS_FILE_VARIABLE,
if that is set, and whoever set it reads the file as it grows: the Ray
provider (ray_provider/progress.py) for `ray up` and the head's autoscaler,
the ray_vsphere.cluster.progress callback for `ansible-playbook`. Unset, the
module writes nothing. Events carry counts and names, never an option's
value; an image URL goes in as shown_location shows it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

PROGRESS_FILE_VARIABLE = "RAY_VSPHERE_PROGRESS_FILE"
# An upload's events, at most this often: a line a second is enough to watch.
UPLOAD_EVENT_SECONDS = 1.0
# A transfer's event kind: (going on, done).
TRANSFER_VERBS = {"upload": ("uploading", "uploaded"), "download": ("downloading", "downloaded")}


def report(event, **fields):
    """Append {"event": event, **fields} as one line; a progress file that cannot be written is ignored."""
    path = os.environ.get(PROGRESS_FILE_VARIABLE)
    if not path:
        return
    fields.update(event=event, time=round(time.time(), 3))
    line = (json.dumps(fields, sort_keys=True) + "\n").encode("utf-8")
    try:
        # One write with O_APPEND: lines of parallel uploads never interleave.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)
    except OSError:
        pass  # progress is a courtesy: the module's work goes on


class Transfer(object):
    """Events of one transfer ("upload": a VM's disks to ESXi; "download": an image from its URL), bytes of total.

    At most every UPLOAD_EVENT_SECONDS, and the last; `name` is the VM's, or the image URL as shown_location shows it.
    """

    def __init__(self, event, name, total):
        self.event = event
        self.name = name
        self.total = total
        self.started = time.time()
        self._last = 0.0
        self._reported = None

    def sent(self, count, final=False):
        now = time.time()
        if (not final and now - self._last < UPLOAD_EVENT_SECONDS) or (final and count == self._reported):
            return
        self._last, self._reported = now, count
        report(self.event, name=self.name, sent=count, total=self.total, seconds=round(now - self.started, 3))


def shown_location(location):
    """An image's location as it may be shown: a URL without its user, password and query (a signature)."""
    scheme, separator, rest = location.partition("://")
    if not separator:
        return location
    host, slash, path = rest.partition("/")
    return "%s://%s%s%s" % (scheme, host.rpartition("@")[2], slash, path.split("?")[0].split("#")[0])


def describe(event):
    """The line an event shows as, for the provider and the callback alike; None for an event of another kind."""
    kind = event.get("event")
    if kind in ("upload", "download"):
        total, sent, seconds = event.get("total") or 0, event.get("sent") or 0, event.get("seconds") or 0
        rate = sent / 2.0 ** 20 / seconds if seconds > 0 else 0.0
        done = bool(total) and sent >= total
        what = ("%s's disks" % event.get("name")) if kind == "upload" else "image %s" % event.get("name")
        amount = "%d%% of %.1f MiB" % (100 * sent // total, total / 2.0 ** 20) if total else "%.1f MiB" % (
            sent / 2.0 ** 20)
        return "%s %s: %s, %.1f MiB/s" % (TRANSFER_VERBS[kind][done], what, amount, rate)
    if kind == "ips":
        return "waiting for IPs: %d of %d" % (event.get("have", 0), event.get("of", 0))
    if kind == "image":
        return "image %s: %s" % (shown_location(event.get("location") or ""), event.get("step"))
    return None


def read_events(path, offset):
    """(events, next offset) of the complete lines appended to path from offset on; a line still being written waits."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except (IOError, OSError):
        return [], offset
    complete = data[:data.rfind(b"\n") + 1]
    events = []
    for line in complete.splitlines():
        try:
            events.append(json.loads(line.decode("utf-8")))
        except ValueError:
            continue
    return events, offset + len(complete)
