# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets of a cluster derived from the cluster's SSH private key: Ray's token and the VMs' identity.

Ray's token authentication (RAY_AUTH_MODE=token, since Ray 2.52) needs one
secret that every node and every client of a cluster shares. Deriving it from
the cluster's private key, rather than keeping a second secret, means every
holder of the key (the operator's machine, an AWX credential, the head) gets
the same token with nothing more to store, copy or lose. The HMAC keeps the key
out of reach of the workers, which hold only the token.

The HMAC is keyed by the key itself, not by the file's text: the private key
as unencrypted PKCS#8 DER, one encoding per key. `ssh-keygen -p` re-saves a
key with new random check-ints and a PEM or OpenSSH file may hold the same
key, and none of that changes an identity, a template's record or the token.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import re
import uuid

try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    HAS_CRYPTOGRAPHY_ERROR = None
except ImportError as error:
    HAS_CRYPTOGRAPHY_ERROR = str(error)

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
PURPOSE_HEAD_ACCOUNT = "head account"
PURPOSE_RAY_TLS_CA = "ray tls ca"

# OpenSSH's own armour (PROTOCOL.key); every other private key is PEM.
OPENSSH_ARMOUR = "-----BEGIN OPENSSH "
PUBLIC_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")
# A private key file is a few kB at most (RSA 16384 bits: 12 kB); more is not one.
MAX_KEY_FILE_CHARS = 65536


def derive(secret, purpose, *parts):
    """HMAC-SHA256 in hex of `parts` for `purpose`, keyed by a key's secret (private_key_secret): only a key holder
    can make it.

    Parts are joined with NUL, which no name contains, so ("a-b", "c") and
    ("a", "b-c") differ.
    """
    message = b"\0".join([b"ray-vsphere " + purpose.encode()] + [part.encode() for part in parts])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def private_key_secret(private_key_text, source):
    """The private key in `private_key_text` as unencrypted PKCS#8 DER: the same bytes for every file of one key.

    Raises ClusterKeyError, naming `source` (the option and file) and never
    the text, for anything that is not an unencrypted private key.
    """
    if HAS_CRYPTOGRAPHY_ERROR:
        raise ClusterKeyError("%s: reading the cluster's private key needs the Python package cryptography: %s"
                              % (source, HAS_CRYPTOGRAPHY_ERROR))
    # Line endings and indentation as a credential field or a paste leaves them.
    text = "\n".join(line.strip() for line in private_key_text.strip().splitlines()) + "\n"
    if "PRIVATE KEY-----" not in text:
        hint = (" (that is a public key: give the private one beside it)"
                if text.startswith(PUBLIC_KEY_PREFIXES) else "")
        raise ClusterKeyError("%s is not a PEM or OpenSSH private key%s" % (source, hint))
    load = serialization.load_ssh_private_key if OPENSSH_ARMOUR in text else serialization.load_pem_private_key
    # The refusal is raised after the except clause, so that no traceback carries the parser's
    # exception as its context: its message may quote the text.
    refusal = None
    try:
        key = load(text.encode("ascii", "replace"), password=None)
    except TypeError:  # cryptography's signal for a passphrase, and only for that
        refusal = ("%s is encrypted with a passphrase, which Ansible and Ray cannot enter: give a key without one "
                   "(ssh-keygen -p -N '' -f FILE removes it and keeps the key)" % source)
    except UnsupportedAlgorithm as error:
        refusal = ("%s holds a private key of a type this collection cannot use (%s): use an ed25519, ECDSA or "
                   "RSA key" % (source, error))
    except ValueError:
        refusal = "%s is not a PEM or OpenSSH private key: it does not parse as one" % source
    if refusal:
        raise ClusterKeyError(refusal)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ray_auth_token(private_key_text, cluster_name, epoch=0, source="the text"):
    """64 hex digits, like Ray's own generated tokens (secrets.token_hex(32)); a new one for every token epoch."""
    return ClusterKey(private_key_text, cluster_name, source).ray_auth_token(epoch)


# What derive() returns, and so all a recorded identity can be: anything else never verifies.
_DERIVED_VALUE = re.compile(r"\A[0-9a-f]{64}\Z")


def matches(expected, recorded):
    """Whether a recorded identity is the expected one, in constant time.

    A recorded value is whatever a VM's extraConfig holds, written by anyone who
    can edit the VM: one that is not 64 lower-case hex digits is refused before
    the comparison (hmac.compare_digest raises TypeError on a non-ASCII str).
    """
    if not isinstance(recorded, str) or not _DERIVED_VALUE.match(recorded):
        return False
    return hmac.compare_digest(expected.encode("ascii"), recorded.encode("ascii"))


# The module option that names the key, defined once for every module that
# lists, tags, deletes or deploys a cluster's nodes (doc fragment cluster_key).
CLUSTER_KEY_OPTIONS = dict(cluster_key_file=dict(type="path", required=True))


class ClusterKeyError(ValueError):
    """The cluster's key cannot be used; the message names the option and the file, never the key."""


class ClusterKey(object):
    """A cluster's private SSH key, as the identities of the cluster's nodes are made and checked with it.

    A node's identity is derive(key, PURPOSE_NODE_IDENTITY, cluster name, VM
    name, instance UUID, VM folder's moid, vCenter's instance UUID
    (about.instanceUuid)[, the VM's moid]). The create call writes it without
    the VM's moid, which vCenter assigns only then ("being made"); the deploy
    replaces it with the moid-bound value right after, before the VM gets its
    tags (_build). Only the moid-bound value makes a VM a node: vCenter never
    gives a moid to a second VM, so the value copied onto any other VM, in any
    folder and with the same instance UUID (free again once our VM is deleted),
    does not verify; nor on another vCenter, nor (being made) in another folder.
    """

    def __init__(self, private_key_text, cluster_name, source="cluster_key_file"):
        self._secret = private_key_secret(private_key_text, source)
        self.cluster_name = cluster_name

    @classmethod
    def from_file(cls, path, cluster_name, option="cluster_key_file"):
        try:
            with open(path) as stream:
                text = stream.read(MAX_KEY_FILE_CHARS)
        except (IOError, OSError) as error:
            raise ClusterKeyError("%s: cannot read the cluster's private SSH key %s: %s"
                                  % (option, path, error.strerror or error))
        except UnicodeDecodeError:
            text = ""
        return cls(text, cluster_name, "%s: %s" % (option, path))

    @property
    def secret(self):
        """The key's secret, for the other values derived from the same key (_template_identity)."""
        return self._secret

    def ray_auth_token(self, epoch=0):
        """The cluster's Ray token of token epoch `epoch`: rotating the token is moving to the next epoch."""
        return derive(self._secret, PURPOSE_RAY_AUTH_TOKEN, self.cluster_name, "epoch %d" % token_epoch(epoch))

    def ray_tls_ca_secret(self):
        """64 hex digits from which _ray_tls makes the cluster's CA: one CA per key and cluster, nothing to store."""
        return derive(self._secret, PURPOSE_RAY_TLS_CA, self.cluster_name)

    def node_identity(self, vm_name, instance_uuid, folder_moid, vcenter_uuid, vm_moid=None):
        """The value a node records: bound to vm_moid once the VM exists, without it in the create call."""
        parts = [self.cluster_name, vm_name, _canonical_uuid(instance_uuid), folder_moid, _canonical_uuid(vcenter_uuid)]
        return derive(self._secret, PURPOSE_NODE_IDENTITY, *(parts + ([vm_moid] if vm_moid else [])))

    def verifies(self, vm_name, instance_uuid, folder_moid, vcenter_uuid, vm_moid, recorded):
        """Whether `recorded` (a VM's CLUSTER_IDENTITY extraConfig value) is this VM's identity.

        vm_moid None checks the value the create call writes (a VM being made).
        Every input must be there: a VM without a name, an instance UUID or a
        folder, or a vCenter without an instance UUID, has no identity.
        """
        if not (vm_name and folder_moid and _canonical_uuid(instance_uuid) and _canonical_uuid(vcenter_uuid)):
            return False
        return matches(self.node_identity(vm_name, instance_uuid, folder_moid, vcenter_uuid, vm_moid), recorded)


def token_epoch(value):
    """A token epoch: a whole number from 0 (a setting's "3" too); ValueError naming the value otherwise."""
    try:
        epoch = int(str(value).strip())
    except ValueError:
        epoch = -1
    if epoch < 0:
        raise ValueError("the token epoch must be a whole number from 0, not %r" % (value,))
    return epoch


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
