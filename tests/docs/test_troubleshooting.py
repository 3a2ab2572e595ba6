"""docs/troubleshooting.md quotes only messages the code still prints.

Each **Message** of the page must occur, as quoted, in a source that prints
it: the collection and the provider (plugins/, ray_provider/, playbooks/,
roles/), vCenter's faults as the testbed's vcsim returns them
(testbed/vcsim/), or the installed Ray.
"""

import re
from pathlib import Path

import ray

from testbed import PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "troubleshooting.md"
OURS = ["plugins", "ray_provider", "playbooks", "roles"]
SOURCES = {"ours": [(PROJECT_ROOT / folder, ("*.py", "*.yml")) for folder in OURS],
           "vCenter": [(PROJECT_ROOT / "testbed" / "vcsim", ("*.go",))],
           "Ray": [(Path(ray.__file__).parent, ("*.py",))]}


def quoted_messages():
    return re.findall(r"^\*\*Message\*\*: `([^`]+)`", PAGE.read_text(), re.M)


def texts_of(kind):
    for folder, patterns in SOURCES[kind]:
        for pattern in patterns:
            for path in folder.rglob(pattern):
                yield path.read_text(errors="replace")


def where_printed(message):
    return [kind for kind in SOURCES if any(message in text for text in texts_of(kind))]


def test_every_quoted_message_occurs_in_the_code():
    messages = quoted_messages()
    assert len(messages) >= 12, messages
    missing = [message for message in messages if not where_printed(message)]
    assert missing == [], f"docs/troubleshooting.md quotes messages no code prints any more: {missing}"


def test_the_page_covers_the_errors_users_hit():
    """Refused input, TLS, the NFC host, no IP, privileges, the image hash, Ray's missing token: each one quoted."""
    by_source = {message: where_printed(message) for message in quoted_messages()}
    for expected in ["The ray_vsphere cluster config is not valid", "its certificate is not signed by a CA in",
                     "does not resolve on this machine", "no usable IP after", "its SHA-256 is",
                     "vCenter has no custom attribute definition"]:
        assert any(expected in message and "ours" in kinds for message, kinds in by_source.items()), expected
    assert "vCenter" in by_source["NoPermission"]
    assert "Ray" in by_source["RAY_AUTH_MODE is currently"]


def test_a_message_the_code_no_longer_prints_is_caught(tmp_path):
    assert where_printed("a message no code prints: 8c1f0e") == []
