"""The cluster's Ray token: derived from its private key, the same in a playbook and in the provider."""

import base64
import hashlib
import hmac
import re
import struct

import pytest
from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

from ray_provider.runner import published_stats
from testbed import ray_cluster
from testbed.guests import make_key_pair

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ray_auth_token


def ed25519_seed(openssh_text):
    """The seed of an unencrypted OpenSSH ed25519 private key, by OpenSSH's PROTOCOL.key."""
    blob = base64.b64decode("".join(openssh_text.strip().splitlines()[1:-1]))
    assert blob.startswith(b"openssh-key-v1\0")
    position = len(b"openssh-key-v1\0")

    def string():
        nonlocal position
        (length,) = struct.unpack(">I", blob[position:position + 4])
        position += 4 + length
        return blob[position - length:position]

    cipher, _kdf, _kdf_options = string(), string(), string()
    assert cipher == b"none"
    position += 4  # the number of keys: 1
    _public, private = string(), string()
    position = 8  # in the private section: two check-ints, then the key type, the public key and the private key
    blob = private
    assert string() == b"ssh-ed25519"
    _public_key, secret = string(), string()
    return secret[:32]


@pytest.fixture
def key_text(tmp_path):
    return make_key_pair(tmp_path / "key").read_text()


def test_the_token_is_per_key_and_per_cluster_and_like_rays_own(key_text, tmp_path):
    token = ray_auth_token(key_text, "analytics")
    # Ray's own tokens (what `ray start` generates when it has none) are 64 lower-case hex digits: ours too.
    token_form = re.compile("[0-9a-f]{64}")
    assert token_form.fullmatch(generate_new_authentication_token()), "Ray changed the form of its tokens"
    assert token_form.fullmatch(token), token
    # The documented derivation, computed here from the standard library: the key's PKCS#8 (for ed25519, RFC 8410's
    # fixed prefix and the 32-byte seed, read from OpenSSH's PROTOCOL.key format): nodes deployed by one release
    # must get the token the next one derives.
    pkcs8 = bytes.fromhex("302e020100300506032b657004220420") + ed25519_seed(key_text)
    assert token == hmac.new(pkcs8, b"ray-vsphere ray auth token\0analytics\0epoch 0", hashlib.sha256).hexdigest()
    assert ray_auth_token(key_text.replace("\n", "\r\n") + "  \n", "analytics") == token, "line endings do not matter"
    assert ray_auth_token(key_text, "analytics-2") != token
    assert ray_auth_token(make_key_pair(tmp_path / "other").read_text(), "analytics") != token
    assert token not in key_text and key_text.split()[4][:16] not in token


def test_the_filter_gives_the_providers_token_and_never_echoes_its_input(key_text, tmp_path):
    key_file = tmp_path / "key"
    tasks = [{"name": "Derive", "ansible.builtin.set_stats": {"per_host": False, "data": {"token": (
        f"{{{{ lookup('ansible.builtin.file', '{key_file}') | ray_vsphere.cluster.ray_auth_token('analytics') }}}}")}}}]
    runner = ray_cluster.run_tasks(tasks, tmp_path / "derive", {})
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    assert published_stats(runner)["token"] == ray_auth_token(key_text, "analytics")

    (tmp_path / "not-a-key").write_text("hunter2-not-a-key")
    not_a_key = [{"name": "Derive", "ansible.builtin.debug": {
        "msg": f"{{{{ lookup('ansible.builtin.file', '{tmp_path / 'not-a-key'}') | ray_vsphere.cluster.ray_auth_token('x') }}}}"}}]
    failed = ray_cluster.run_tasks(not_a_key, tmp_path / "refused", {})
    output = failed.stdout.read()
    assert failed.status == "failed"
    assert "ray_auth_token: the text is not a PEM or OpenSSH private key" in output
    assert "hunter2-not-a-key" not in output
