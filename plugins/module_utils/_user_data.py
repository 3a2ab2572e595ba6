# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A node's cloud-init user-data: the project's own cloud-config, and the user's beside it, never instead of it.

The project's own part makes the node's SSH host key (node_deploy's
ssh_host_key) and its service users. A user's own user-data (node_deploy's
user_data) is kept as it was given, as one or more parts of a MIME multipart
message, which cloud-init reads as it reads any user-data: a #cloud-config
part, a #! script, any other type cloud-init knows by its first line, or a
multipart message of the user's (its parts are kept with their headers).

cloud-init merges the cloud-config parts in order, each by its own merge
rules. The project's part comes last, with OWN_MERGE_TYPE: lists are
appended (the user's users, then the service users: cloud-init makes every
user of both, and for a name given twice takes the last), and mappings are
merged key by key. What would make the node other than the project needs is
refused before anything is made (conflicts()): SSH host key settings of the
user's beside ssh_host_key, and a user of the user's named as a service user.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import email
import hashlib
import json
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart

try:
    import yaml
    HAS_YAML_ERROR = None
except ImportError as error:  # ansible-core depends on PyYAML; only a user's cloud-config text needs it
    HAS_YAML_ERROR = str(error)

CLOUD_CONFIG_TYPE = "text/cloud-config"
CLOUD_CONFIG_PREFIX = "#cloud-config"
# cloud-init's own table (cloudinit/handlers/__init__.py, INCLUSION_TYPES_MAP, 22.4 and later): the type of a
# user-data that is not MIME, by how its first line starts; longest prefix first, as cloud-init looks them up.
TYPES_BY_PREFIX = (
    ("## template: jinja", "text/jinja2"),
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#include-once", "text/x-include-once-url"),
    ("#part-handler", "text/part-handler"),
    (CLOUD_CONFIG_PREFIX, CLOUD_CONFIG_TYPE),
    ("#include", "text/x-include-url"),
    ("#!", "text/x-shellscript"),
)
# A MIME part whose type cloud-init finds from its first line, as for a user-data that is not MIME.
TYPES_FOUND_BY_PREFIX = ("text/plain", "text/x-not-multipart")
# How the project's part merges into what the user's parts made (cloud-init's mergers, 0.7 and later):
# lists append, so the service users come after the user's own users; mappings merge key by key, recursing
# into lists and mappings, a key of the user's kept where both set one (conflicts() refuses those that matter).
OWN_MERGE_TYPE = "list(append)+dict(no_replace,recurse_list)+str()"
# Keys of the host key the project makes (ssh_host_key): the node must offer that key alone.
HOST_KEY_SETTINGS = ("ssh_keys", "ssh_deletekeys", "ssh_genkeytypes")


class UserDataError(ValueError):
    """A user's user-data cloud-init would not read, or one that takes what the project's part needs."""


def own_cloud_config(host_key=None, service_users=()):
    """The project's cloud-config, a mapping: the node's only SSH host key (cloud-init's ssh module), its service users.

    host_key: (private key, public key line) or None. Service users are
    made without sudo, password or SSH keys, next to the image's default
    user (`default`), which keeps its sudo for setup.
    """
    config = {}
    if host_key:
        # The image's own keys (or keys made at first boot) go: only this one is offered.
        config.update({"ssh_deletekeys": True, "ssh_genkeytypes": [],
                       "ssh_keys": {"ed25519_private": host_key[0], "ed25519_public": host_key[1]}})
    if service_users:
        config["users"] = ["default"] + [{"name": user, "lock_passwd": True, "shell": "/bin/bash"}
                                         for user in service_users]
    return config


def cloud_config_text(config):
    """A cloud-config mapping as a #cloud-config document (JSON is YAML)."""
    return CLOUD_CONFIG_PREFIX + "\n" + json.dumps(config, indent=1, sort_keys=True) + "\n"


def is_mime(text):
    """Whether cloud-init reads text as MIME: cloud-init's own test (a MIME-Version header in the first 4 KiB)."""
    return "mime-version:" in text[:4096].lower()


def type_by_prefix(text):
    """The content type cloud-init gives a user-data that is not MIME, or None when it would ignore it."""
    for prefix, content_type in TYPES_BY_PREFIX:
        if text.startswith(prefix):
            return content_type
    return None


def user_parts(user_data):
    """[(content type, text, headers)] of a user's user-data: a cloud-config mapping, or text as cloud-init reads it.

    UserDataError when cloud-init would ignore it, or a cloud-config part is
    not a mapping.
    """
    parts = _parts(user_data)
    for content_type, text, _headers in parts:
        if content_type == CLOUD_CONFIG_TYPE:
            _cloud_config(text)
    return parts


def _parts(user_data):
    if isinstance(user_data, dict):
        return [(CLOUD_CONFIG_TYPE, cloud_config_text(user_data), {})]  # JSON: every value a task gives fits
    if not isinstance(user_data, str):
        raise UserDataError("must be text (a #cloud-config document, a #! script, a MIME multipart message...) or a "
                            "cloud-config mapping, not %r" % (user_data,))
    if not is_mime(user_data):
        content_type = type_by_prefix(user_data)
        if content_type is None:
            raise UserDataError("would be ignored by cloud-init: text must start with one of %s, or be a MIME multipart "
                                "message (with a MIME-Version header); it starts with %r"
                                % (", ".join(entry[0] for entry in TYPES_BY_PREFIX), user_data[:24]))
        return [(content_type, user_data, {})]
    parts = []
    for part in email.message_from_string(user_data).walk():
        if part.get_content_maintype() == "multipart":
            continue
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else part.get_payload()
        content_type = part.get_content_type()
        if content_type in TYPES_FOUND_BY_PREFIX:
            content_type = type_by_prefix(text) or content_type
        headers = dict((key, value) for key, value in part.items()
                       if key.lower() not in ("content-type", "content-transfer-encoding", "mime-version"))
        parts.append((content_type, text, headers))
    if not parts:
        raise UserDataError("is a MIME message without a part")
    return parts


def _cloud_config(text):
    """The mapping a #cloud-config part holds; UserDataError when it is not one."""
    if HAS_YAML_ERROR:
        raise UserDataError("needs the Python package PyYAML to be checked: %s" % HAS_YAML_ERROR)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserDataError("has a #cloud-config part that is not YAML: %s" % error)
    if not isinstance(config, dict):
        raise UserDataError("has a #cloud-config part that is not a mapping but a %s" % type(config).__name__)
    return config


def _user_names(users):
    for user in users:
        if isinstance(user, dict):
            yield user.get("name")
        elif isinstance(user, str):
            yield user


def conflicts(parts, host_key, service_users):
    """Why the user's parts would undo the project's: [problem], empty when they can live together."""
    problems = []
    for content_type, text, _headers in parts:
        if content_type != CLOUD_CONFIG_TYPE:
            continue
        config = _cloud_config(text)
        taken = [key for key in HOST_KEY_SETTINGS if key in config] if host_key else []
        if taken:
            problems.append("sets %s, which ssh_host_key sets so that the node offers only the host key recorded "
                            "for it: drop %s from it, or ssh_host_key" % (", ".join(taken), ", ".join(taken)))
        if service_users and "users" in config:
            if not isinstance(config["users"], list):
                problems.append("users must be a list, which the service users are added to, not %s"
                                % type(config["users"]).__name__)
            else:
                clashing = sorted(set(_user_names(config["users"])) & set(service_users))
                if clashing:
                    problems.append("users: %s made here already, without sudo (service_users): give your user "
                                    "another name" % ", ".join(clashing))
    return problems


def node_user_data(host_key=None, service_users=(), user_data=None):
    """The node's user-data, text, or None when there is nothing to say.

    Without user_data, the project's own #cloud-config. With it, a MIME
    multipart message: the user's parts, then the project's, which merges
    into theirs by OWN_MERGE_TYPE. UserDataError as user_parts() and
    conflicts() find one.
    """
    own = own_cloud_config(host_key, service_users)
    if user_data is None:
        return cloud_config_text(own) if own else None
    parts = user_parts(user_data)
    problems = conflicts(parts, host_key, service_users)
    if problems:
        raise UserDataError("; ".join(problems))
    if own:
        parts.append((CLOUD_CONFIG_TYPE, cloud_config_text(own),
                      {"Merge-Type": OWN_MERGE_TYPE, "Content-Disposition": 'attachment; filename="ray-vsphere.cfg"'}))
    return multipart(parts)


def multipart(parts):
    """parts [(content type, text, headers)] as one MIME multipart message, the same text for the same parts."""
    # A boundary of its own content, rather than a random one: both datasources' copies, and every
    # rendering of one node's user-data, say the same thing byte for byte.
    boundary = "ray-vsphere-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
    message = MIMEMultipart(boundary=boundary)
    for index, (content_type, text, headers) in enumerate(parts):
        part = MIMENonMultipart(*content_type.split("/", 1))
        part.set_payload(text, "utf-8")
        for key, value in sorted(headers.items()):
            part[key] = value
        if "Content-Disposition" not in part:
            part["Content-Disposition"] = 'attachment; filename="part-%d"' % index
        message.attach(part)
    return message.as_string()


def encoded(text):
    """text in base64, as the datasources take it (guestinfo.userdata.encoding base64; the OVF's user-data)."""
    return base64.b64encode(text.encode("utf-8")).decode()
