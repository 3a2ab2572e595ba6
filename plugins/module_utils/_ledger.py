# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What one call has created in vCenter, and the one way it is undone.

A VM is recorded by folder and name *before* the call that makes it (clone,
import, create) is sent, then by the task or lease the call returned, then by
the VM itself. So whatever stops the call (a vSphere fault, a timeout, a
dropped connection, Ctrl-C, SystemExit), the undo knows everything that may
exist: it cancels the tasks still running, waits for them, and removes what
they made, found by the task's result or, failing that, by folder and name
(a clone whose wait timed out may be registered only later).

The undo runs in one place, the ledger's __exit__, for every exception type.
The error that stopped the call stays the error: the undo's report (what was
removed, what could not be) is added to it, never put in its place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _nodes, _waiter

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

# How long the undo waits for a task it cancelled (or that would not cancel) to end.
CANCELLED_TASK_GRACE_SECONDS = 120
UNDO_PARALLEL = 8


class _Entry(object):
    """One VM the call makes or has made: where, by which call, and the VM once known."""

    def __init__(self, folder, name, vm=None):
        self.folder = folder
        self.name = name
        self.issued = None  # the vim.Task (or NFC lease) the creating call returned
        self.vm = vm


class Ledger(object):
    """Used as `with Ledger(service_instance, what) as ledger:`; a failure inside undoes what the ledger holds.

    what names the call for the report ("deploying nodes of Ray cluster x").
    """

    def __init__(self, service_instance, what, grace=CANCELLED_TASK_GRACE_SECONDS):
        self._service_instance = service_instance
        self._what = what
        self._grace = grace
        self._entries = []
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        if error_type is None:
            return False
        removed, failures = self.undo()
        report = undo_report(removed, failures)
        if isinstance(error, RayVsphereError):
            _amend(error, report, removed, failures)
            return False
        if isinstance(error, Exception):
            # Named and chained, with the report: the original is the cause, not lost.
            raise _with_report(_waiter.call_failed(self._what, error), report, removed, failures)
        # KeyboardInterrupt, SystemExit: they stay what they are; the report goes with them.
        if report and hasattr(error, "add_note"):
            error.add_note(report)
        return False

    def issue(self, folder, name, call, action):
        """call() (a creating call: CloneVM_Task, ImportVApp...) recorded first as folder/name; what it returned."""
        entry = _Entry(folder, name)
        with self._lock:
            self._entries.append(entry)
        try:
            entry.issued = call()
        except vmodl.MethodFault as error:
            # Refused: vCenter made nothing. Forgotten, so the undo never takes another's VM of that name
            # (a DuplicateName is one) for this call's.
            with self._lock:
                self._entries.remove(entry)
            raise _waiter.call_failed(action, error)
        except Exception as error:
            raise _waiter.call_failed(action, error)  # no answer: it may have been made, so folder and name stay
        return entry.issued

    def made(self, name, vm):
        """The VM the call recorded as name turned out to be."""
        with self._lock:
            for entry in self._entries:
                if entry.name == name:
                    entry.vm = vm

    def take(self, folder, name, vm):
        """An existing VM this call finishes (an adoptable leftover): undone with the rest, as all or nothing."""
        with self._lock:
            self._entries.append(_Entry(folder, name, vm))

    def remove(self, name):
        """Destroy the VM this call made as name, then forget it: the call makes that node again elsewhere."""
        with self._lock:
            entries = [entry for entry in self._entries if entry.name == name]
        for entry in entries:
            self._undo(entry)
            with self._lock:
                self._entries.remove(entry)

    @property
    def names(self):
        return sorted(entry.name for entry in self._entries)

    def vms(self):
        """{name: vm} of the VMs made so far."""
        return dict((entry.name, entry.vm) for entry in self._entries if entry.vm is not None)

    def undo(self):
        """Remove everything recorded: (names removed, ["name: why it could not be removed"])."""
        with self._lock:
            entries, self._entries = self._entries, []
        removed, failures = [], []

        def undo_one(entry):
            try:
                if self._undo(entry):
                    removed.append(entry.name)
            except Exception as error:  # pylint: disable=broad-except
                failures.append("%s: %s" % (entry.name, _waiter.call_failed("removing VM %s" % entry.name, error)))

        _nodes.in_parallel(undo_one, entries, UNDO_PARALLEL)
        return sorted(removed), sorted(failures)

    def _undo(self, entry):
        """Remove what entry's call made; whether there was a VM to remove."""
        vm = entry.vm or self._settle(entry.issued)
        if vm is None:
            vm = vm_in_folder(self._service_instance, entry.folder, entry.name)
        if vm is None:
            return False
        _nodes.destroy_vm(self._service_instance, vm, entry.name)
        return True

    def _settle(self, issued):
        """The VM a task made, once it is no longer running (cancelled first if it still was); None if none."""
        if not isinstance(issued, vim.Task):
            return None  # a lease: its VM is found by folder and name
        info = _waiter.task_info(self._service_instance, issued)
        if info.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
            try:
                issued.CancelTask()
            except Exception:  # pylint: disable=broad-except
                pass  # not cancellable, ended meanwhile (InvalidState), or no answer: waited for below either way
        try:
            result = _waiter.wait_for_task(self._service_instance, issued, "task %s" % issued._moId, self._grace)
        except RayVsphereError:
            return None  # failed or cancelled; a VM it registered anyway is found by folder and name
        return result if isinstance(result, vim.VirtualMachine) else None


def vm_in_folder(service_instance, folder, name):
    """The VM named name in folder, or None: what a creating call may have left when its task is unknown."""
    try:
        return service_instance.content.searchIndex.FindChild(folder, name)
    except vmodl.MethodFault:
        return None


def undo_report(removed, failures):
    parts = []
    if removed:
        parts.append("removed the VMs this call created: %s" % ", ".join(removed))
    if failures:
        parts.append("could NOT remove, remove by hand: %s" % "; ".join(failures))
    return "; ".join(parts)


def _amend(error, report, removed, failures):
    if report:
        error.args = ("%s; %s" % (error.args[0] if error.args else "", report),) + tuple(error.args[1:])
    # A template's own ledger reports first, the deploy's after it: both are kept.
    error.details["removed"] = sorted(error.details.get("removed", []) + list(removed))
    error.details["undo_failures"] = sorted(error.details.get("undo_failures", []) + list(failures))


def _with_report(error, report, removed, failures):
    _amend(error, report, removed, failures)
    return error
