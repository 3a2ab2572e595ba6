# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: progress
type: aggregate
short_description: Show the progress of ray_vsphere.cluster modules while they run
version_added: 0.2.0
description:
  - A module's output appears only when its task ends. While M(ray_vsphere.cluster.node_deploy) uploads an image or
    waits for the nodes' IPs, it appends progress events to a file; this callback reads that file and shows one line
    per event under the running task, the percentage and MiB/s of an upload, or how many of the nodes have an IP.
  - It works beside any stdout callback (the default one included); enable it in C(callbacks_enabled).
  - The events are counts and names, never a value of a module's options.
  - The modules run on the controller (C(delegate_to) localhost, as the collection's playbooks do), where the file
    is. Without this callback, or under the Ray provider (which reads the events itself), nothing changes.
requirements:
  - Enabled in ansible.cfg (C(callbacks_enabled = ray_vsphere.cluster.progress)) or through
    E(ANSIBLE_CALLBACKS_ENABLED).
"""

import atexit
import os
import tempfile
import threading

from ansible.plugins.callback import CallbackBase

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._progress import (
    PROGRESS_FILE_VARIABLE, describe, read_events)

# How often the file is looked at while a task runs.
POLL_SECONDS = 0.5


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ray_vsphere.cluster.progress"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._task = ""
        self._path = None
        self._offset = 0
        self._stop = threading.Event()
        self._thread = None
        if os.environ.get(PROGRESS_FILE_VARIABLE):
            return  # someone else (the Ray provider) reads the events
        handle, self._path = tempfile.mkstemp(prefix="ray-vsphere-progress-", suffix=".jsonl")
        os.close(handle)
        # Set before Ansible forks its workers: the modules they start on this machine inherit it.
        os.environ[PROGRESS_FILE_VARIABLE] = self._path
        atexit.register(self._remove)  # also when the run stops before its stats (an interrupt)
        self._thread = threading.Thread(target=self._follow, name="ray-vsphere-progress")
        self._thread.daemon = True
        self._thread.start()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._show()
        self._task = task.get_name()

    def v2_playbook_on_stats(self, stats):
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._show()
        self._thread = None
        self._remove()

    def _remove(self):
        if self._path and os.path.exists(self._path):
            os.unlink(self._path)
        if os.environ.get(PROGRESS_FILE_VARIABLE) == self._path:
            del os.environ[PROGRESS_FILE_VARIABLE]

    def _follow(self):
        while not self._stop.wait(POLL_SECONDS):
            self._show()

    def _show(self):
        if self._path is None:
            return
        events, self._offset = read_events(self._path, self._offset)
        for event in events:
            text = describe(event)
            if text and event.get("warning"):
                self._display.warning("%s: %s" % (self._task, text))
            elif text:
                self._display.display("  %s: %s" % (self._task, text), color="cyan")
