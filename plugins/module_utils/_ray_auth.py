# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets of a cluster derived from the cluster's SSH private key: Ray's token and the VMs' identity.

Ray's token authentication (RAY_AUTH_MODE=token, since Ray 2.52) needs one
secret that every node and every client of a cluster shares. Deriving it from
the cluster's private key, rather than keeping a second secret, means every
holder of the key (the operator's machine, an AWX credential, the head) gets
the same token with nothing more to store, copy or lose. The HMAC keeps the key
out of reach of the workers, which hold only the token.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import uuid

# Where `ray start` and drivers look for the token when RAY_AUTH_MODE is
# unset or "token" (ray/_private/authentication/authentication_token_setup.py,
# _get_default_token_path): each node gets its copy there.
TOKEN_PATH_ON_NODES = "~/.ray/auth_token"
# Ray reads its mode only from the environment; the system config may not set it.
AUTH_MODE_ENVIRONMENT = {"RAY_AUTH_MODE": "token"}

# Each derived value has its own purpose string, so no value can stand in for another.
PURPOSE_RAY_AUTH_TOKEN = "ray auth token"
PURPOSE_NODE_IDENTITY = "node identity"
PURPOSE_TEMPLATE_IDENTITY = "template identity"
PURPOSE_RAY_TLS_CA = "ray tls ca"


def derive(private_key_text, purpose, *parts):
    """HMAC-SHA256 in hex of `parts` for `purpose`, keyed by the private key: only a key holder can make it.

    Whitespace is dropped first, so the same key pasted with other line
    endings (an AWX credential field, say) gives the same value. Parts are
    joined with NUL, which no name contains, so ("a-b", "c") and ("a", "b-c")
    differ.
    """
    if "PRIVATE KEY" not in private_key_text:
        raise ValueError("the text is not a PEM or OpenSSH private key")
    key_material = "".join(private_key_text.split()).encode()
    message = b"\0".join([b"ray-vsphere " + purpose.encode()] + [part.encode() for part in parts])
    return hmac.new(key_material, message, hashlib.sha256).hexdigest()


def ray_auth_token(private_key_text, cluster_name):
    """64 hex digits, like Ray's own generated tokens (secrets.token_hex(32))."""
    return derive(private_key_text, PURPOSE_RAY_AUTH_TOKEN, cluster_name)


def matches(expected, recorded):
    """Whether a recorded identity is the expected one, in constant time."""
    return bool(recorded) and hmac.compare_digest(expected, str(recorded))


# The module option that names the key, defined once for every module that
# lists, tags, deletes or deploys a cluster's nodes (doc fragment cluster_key).
CLUSTER_KEY_OPTIONS = dict(cluster_key_file=dict(type="path", required=True))


class ClusterKeyError(ValueError):
    """The cluster's key cannot be used; the message names the option and the file, never the key."""


class ClusterKey(object):
    """A cluster's private SSH key, as the identities of the cluster's nodes are made and checked with it.

    A node's identity is derive(key, PURPOSE_NODE_IDENTITY, cluster name, VM
    name, instance UUID), written into the VM's extraConfig by the call that
    creates it, which also sets the instance UUID. vCenter keeps instance UUIDs
    unique (it assigns a new one on a conflict: VmInstanceUuidConflictEvent),
    so the value copied onto any other VM, in any folder, does not verify.
    """

    def __init__(self, private_key_text, cluster_name, source="cluster_key_file"):
        if "PRIVATE KEY" not in private_key_text:
            hint = " (that is a public key: give the private one beside it)" if private_key_text.lstrip().startswith(
                ("ssh-", "ecdsa-", "sk-")) else ""
            raise ClusterKeyError("%s is not a PEM or OpenSSH private key%s" % (source, hint))
        self._text = private_key_text
        self.cluster_name = cluster_name

    @classmethod
    def from_file(cls, path, cluster_name, option="cluster_key_file"):
        try:
            with open(path) as stream:
                text = stream.read(65536)
        except (IOError, OSError) as error:
            raise ClusterKeyError("%s: cannot read the cluster's private SSH key %s: %s"
                                  % (option, path, error.strerror or error))
        except UnicodeDecodeError:
            text = ""
        return cls(text, cluster_name, "%s: %s" % (option, path))

    @property
    def private_key_text(self):
        """For the other identities made with the same key (_template_identity)."""
        return self._text

    def node_identity(self, vm_name, instance_uuid):
        return derive(self._text, PURPOSE_NODE_IDENTITY, self.cluster_name, vm_name, _canonical_uuid(instance_uuid))

    def verifies(self, vm_name, instance_uuid, recorded):
        """Whether `recorded` (a VM's CLUSTER_IDENTITY extraConfig value) is the identity of this VM."""
        if not vm_name or not _canonical_uuid(instance_uuid):
            return False
        return matches(self.node_identity(vm_name, instance_uuid), recorded)


def _canonical_uuid(text):
    """The UUID as lower-case 8-4-4-4-12 hex, however vCenter spells it; "" when it is none."""
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        return ""


def cluster_key_or_fail(module):
    """The ClusterKey of a module's cluster_key_file and cluster_name; fail_json, before any vCenter call, if unusable."""
    try:
        return ClusterKey.from_file(module.params["cluster_key_file"], module.params["cluster_name"])
    except ClusterKeyError as error:
        module.fail_json(msg=str(error))
