# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one waiter: for tasks, NFC leases and property changes, each with a deadline and a reason it names.

Tasks and leases are polled with a back-off (vcsim finishes some tasks before
the call returns and others later, as a busy vCenter does); properties that
change when the guest says so (guest.net) are followed with the
PropertyCollector's WaitForUpdatesEx, which answers as soon as they change.
Every failure is a RayVsphereError that names the call or object waited for;
a vSphere fault or a dropped connection met while waiting is its cause.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import threading
import time

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, fault_text
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _vsphere

try:
    from pyVmomi import vim, vmodl
except ImportError:
    pass  # reported by _client.run_module

FIRST_DELAY = 0.01
MAX_DELAY = 1.0
# The longest one WaitForUpdatesEx may hold the connection, whatever the request timeout.
MAX_UPDATE_WAIT_SECONDS = 30
# What a long poll leaves of the request timeout for the network and vCenter's own work on the answer:
# a third of it, at least this many seconds. A vCenter that answers maxWaitSeconds after the call, as it
# should, then always answers before the client gives up, however far away it is.
MIN_UPDATE_WAIT_MARGIN_SECONDS = 2
# Between two checks when the request timeout is too short for any long poll (maxWaitSeconds 0).
UPDATE_POLL_INTERVAL_SECONDS = 1.0


def update_wait_seconds(request_timeout):
    """maxWaitSeconds of a WaitForUpdatesEx on a connection whose calls time out after request_timeout seconds.

    The one place the long poll is derived from the request timeout: well below
    it (issue 19: maxWaitSeconds 30 against a 30 s timeout lost every quiet
    poll to 50 ms of network), 0 (check once, then poll) when nothing fits.
    None: a connection without a timeout, which waits as long as vCenter holds the call.
    """
    if request_timeout is None:
        return MAX_UPDATE_WAIT_SECONDS
    margin = max(MIN_UPDATE_WAIT_MARGIN_SECONDS, request_timeout / 3.0)
    return int(max(0, min(MAX_UPDATE_WAIT_SECONDS, request_timeout - margin)))


def request_timeout_of(service_instance):
    """The request_timeout of a session made by _client.VcenterClient (None for another stub, which has none)."""
    return getattr(getattr(service_instance, "_stub", None), "request_timeout", None)


def chained(error, cause):
    """error, with cause as its __cause__ (what `raise error from cause` does, written so module_utils stay py2-safe)."""
    error.__cause__ = cause
    return error


def call_failed(action, cause):
    """A RayVsphereError for `action` failing with cause (a vSphere fault, a timeout, a broken connection)."""
    if isinstance(cause, RayVsphereError):
        return cause
    if isinstance(cause, vmodl.MethodFault):
        text, fault = fault_text(cause), type(cause).__name__.split(".")[-1]
    elif isinstance(cause, socket.timeout):
        waited = getattr(cause, "request_timeout", None)  # set by _client's session stub
        text, fault = "vCenter did not answer within %s (request_timeout; %s)" % (
            "%s s" % waited if waited is not None else "its request_timeout", cause or "timed out"), "Timeout"
    else:
        text, fault = "%s: %s" % (type(cause).__name__, cause), type(cause).__name__
    details = dict(fault=fault, timed_out=True) if isinstance(cause, socket.timeout) else dict(fault=fault)
    return chained(RayVsphereError("%s failed: %s" % (action, text), **details), cause)


def until(check, timeout, what, first_delay=FIRST_DELAY):
    """check()'s first value that is not None, polled with a doubling delay; RayVsphereError after timeout s.

    what names what was waited for (a callable: asked when the time is up, to say the state at that moment).
    """
    deadline = time.time() + timeout
    delay = first_delay
    while True:
        value = check()
        if value is not None:
            return value
        if time.time() > deadline:
            raise RayVsphereError("%s after %s s" % (what() if callable(what) else what, timeout), fault="Timeout")
        time.sleep(min(delay, max(deadline - time.time(), 0.001)))
        delay = min(delay * 2, MAX_DELAY)


def task_info(service_instance, task):
    return _vsphere.read(service_instance, task, ["info"])["info"]


def wait_for_task(service_instance, task, action, timeout=3600):
    """The task's result once it succeeds; RayVsphereError naming `action` (and the task's fault) otherwise."""
    def finished():
        info = task_info(service_instance, task)
        if info.state == vim.TaskInfo.State.success:
            return [info.result]
        if info.state == vim.TaskInfo.State.error:
            raise chained(RayVsphereError("%s failed: %s" % (action, fault_text(info.error)),
                                          fault=type(info.error).__name__.split(".")[-1]), info.error)
        return None

    try:
        return until(finished, timeout, "%s still running (task %s)" % (action, task._moId))[0]
    except RayVsphereError:
        raise
    except Exception as error:  # a fault or a timeout of the read itself
        raise call_failed("%s (reading task %s)" % (action, task._moId), error)


def run_task(service_instance, action, call, timeout=3600):
    """call() (a method that returns a task), then its result: RayVsphereError naming action if either fails."""
    try:
        task = call()
    except Exception as error:
        raise call_failed(action, error)
    return wait_for_task(service_instance, task, action, timeout)


def wait_for_lease(service_instance, lease, name, timeout):
    """The NFC lease's info once it is ready to take the upload of VM `name`."""
    def ready():
        props = _vsphere.read(service_instance, lease, ["state", "info", "error"])
        if props.get("state") == vim.HttpNfcLease.State.ready:
            return props["info"]
        if props.get("state") == vim.HttpNfcLease.State.error:
            raise chained(RayVsphereError("HttpNfcLease for VM %s failed: %s" % (name, fault_text(props.get("error"))),
                                          fault="HttpNfcLeaseError"), props.get("error"))
        return None

    return until(ready, timeout, "HttpNfcLease for VM %s not ready" % name, first_delay=0.05)


def wait_for_updates(service_instance, objects, managed_type, paths, waiting, timeout, on_timeout, wake_at=None):
    """Follow paths of objects with WaitForUpdatesEx until waiting(seen) is empty.

    seen is {object: {path: value}}, updated as vCenter reports changes;
    waiting(seen) lists the objects still waited for. After timeout seconds,
    RayVsphereError(on_timeout(seen, still waiting)). wake_at(seen): a time
    (time.time()) at which waiting(seen) may change without any update, or None.

    Each poll holds the connection for update_wait_seconds(request_timeout).
    A poll vCenter does not answer within the request timeout counts as no
    change (WaitForUpdatesEx changes nothing, so asking again is safe; the
    session stays: pyVmomi drops only the connection, _client keeps the
    cookie): it is cancelled, and the next poll reads everything again
    (version ""), since the lost answer may have carried changes. Only when
    the time is up after such polls is the timeout the error.
    """
    collector_type = vmodl.query.PropertyCollector
    collector = service_instance.content.propertyCollector.CreatePropertyCollector()
    spec = collector_type.FilterSpec(
        objectSet=[collector_type.ObjectSpec(obj=obj, skip=False) for obj in objects],
        propSet=[collector_type.PropertySpec(type=managed_type, pathSet=list(paths))])
    seen = dict((obj, {}) for obj in objects)
    deadline = time.time() + timeout
    longest = update_wait_seconds(request_timeout_of(service_instance))
    action = "PropertyCollector.WaitForUpdatesEx (%s)" % ", ".join(paths)
    unanswered = None
    try:
        collector.CreateFilter(spec, partialUpdates=False)
        version = ""
        while True:
            still = waiting(seen)
            if not still:
                return seen
            left = deadline - time.time()
            if left <= 0:
                if unanswered is not None:
                    raise call_failed(action, unanswered)
                raise RayVsphereError(on_timeout(seen, still), fault="Timeout")
            wake = wake_at(seen) if wake_at else None
            if wake is not None:
                left = min(left, max(wake - time.time(), 0))
            wait = int(min(left, longest))
            try:
                update = collector.WaitForUpdatesEx(version, collector_type.WaitOptions(maxWaitSeconds=wait))
                unanswered = None
            except socket.timeout as error:
                unanswered, version = error, ""
                _cancel_wait(collector)
                continue
            if update is None:
                if wait == 0 and version:  # nothing yet, and vCenter was asked not to wait: pause here
                    time.sleep(max(min(UPDATE_POLL_INTERVAL_SECONDS, left), 0.05))
                continue
            version = update.version
            for filter_update in update.filterSet:
                for object_update in filter_update.objectSet:
                    if object_update.kind == "enter":  # a full read (version ""): nothing earlier still holds
                        seen[object_update.obj] = {}
                    for change in object_update.changeSet:
                        seen[object_update.obj][change.name] = change.val
    except RayVsphereError:
        raise
    except Exception as error:
        raise call_failed(action, error)
    finally:
        try:
            collector.DestroyPropertyCollector()
        except Exception:  # pylint: disable=broad-except
            pass  # vCenter drops a session's collectors with the session; the wait's own error is the one to report


def _cancel_wait(collector):
    """End a WaitForUpdatesEx the client gave up on, so that vCenter does not answer it into a closed connection."""
    try:
        collector.CancelWaitForUpdates()
    except Exception:  # pylint: disable=broad-except
        pass  # a vCenter that did not answer the poll may not answer this either; the next poll asks again


class Every(object):
    """`with Every(seconds, tick):` calls tick() every `seconds` on a thread of its own until the block ends.

    For what must go on beside a long call: an NFC lease's progress, a
    template maker's heartbeat. tick returns False to stop early.
    """

    def __init__(self, seconds, tick):
        self._seconds = seconds
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def _run(self):
        while not self._stop.wait(self._seconds):
            if self._tick() is False:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
