"""The vSphere methods vcsim served, as its -trace-methods flag records them (testbed/vcsim/trace.go).

One JSON line per distinct (method, managed object type, session user agent,
session user).
The collection's sessions announce themselves with the user agent
`ray-vsphere ...` (module_utils/_client.py), so the project's own calls can be
told from the testbed's (guest simulator, fixtures, assertions), which log in
with pyVmomi's default agent.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import USER_AGENT_PRODUCT

TRACE_DIR_ENV = "RAY_VSPHERE_VCSIM_TRACE_DIR"
SESSION_TRACE = "vcsim-methods.jsonl"


@dataclass(frozen=True, order=True)
class TracedCall:
    method: str
    type: str
    user_agent: str
    # The account the session logged in as ("" before login).
    user: str = ""

    @property
    def by_project(self):
        return self.user_agent.split(" ", 1)[0] == USER_AGENT_PRODUCT


def session_trace_file():
    """Where every vcsim of this process tree records its methods, if the session asked for it."""
    folder = os.environ.get(TRACE_DIR_ENV)
    return Path(folder) / SESSION_TRACE if folder else None


def read(path):
    """The distinct calls recorded in path (several vcsims may have appended to it)."""
    path = Path(path)
    if not path.exists():
        return set()
    calls = set()
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            calls.add(TracedCall(entry["method"], entry["type"], entry["user_agent"], entry.get("user", "")))
    return calls


def project_calls(calls, user=None):
    """(method, type) pairs the collection and the provider called; with user, only that account's."""
    return {(call.method, call.type) for call in calls if call.by_project and (user is None or call.user == user)}
