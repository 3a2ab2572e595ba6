"""The cluster key is the parsed private key, not the file's text: re-saving it changes nothing, non-keys are refused.

`ssh-keygen -p` re-saves a key with new random check-ints (OpenSSH's
PROTOCOL.key); before, every value was an HMAC of the text, so a re-saved key
made another cluster: no identity verified, no template was found, `ray down`
removed nothing and the nodes' token no longer matched.
"""

import base64
import hashlib
import hmac
import subprocess

import pytest

from testbed.guests import make_key_pair

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_auth
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import TemplateIdentity

HEAD_UUID = "5021a0f4-7c1e-4b8e-9d3a-2f6b1c0e9a11"
VCENTER_UUID = "5d6da519-66f5-50ff-8837-0aa553bbdcda"


def keygen(*arguments):
    subprocess.run(["ssh-keygen", "-q", *map(str, arguments)], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)


def everything_derived(path):
    """Every value the key makes: the node identity, the template's name and records, the token of two epochs."""
    key = _ray_auth.ClusterKey.from_file(str(path), "analytics")
    template = TemplateIdentity.from_file(str(path))
    name = template.name("ab" * 32)
    return {"identity": key.node_identity("analytics-head", HEAD_UUID, "group-v22", VCENTER_UUID, "vm-42"),
            "template": name,
            "being made": template.being_made(name), "made": template.made(name, "vm-42"),
            "token": _ray_auth.ray_auth_token(path.read_text(), "analytics"),
            "token epoch 1": _ray_auth.ray_auth_token(path.read_text(), "analytics", 1)}


def test_re_saving_the_key_with_ssh_keygen_changes_nothing(tmp_path):
    key = make_key_pair(tmp_path / "key")
    text, before = key.read_text(), everything_derived(key)
    keygen("-p", "-P", "", "-N", "", "-f", key)
    assert key.read_text() != text, "ssh-keygen wrote new check-ints (the case this test is about)"
    assert everything_derived(key) == before
    keygen("-c", "-P", "", "-C", "renamed by its owner", "-f", key)  # a new comment: a new text, the same key
    assert everything_derived(key) == before
    other = everything_derived(make_key_pair(tmp_path / "other"))
    assert all(other[name] != value for name, value in before.items()), "another key, other values"
    assert before["token"] != before["token epoch 1"], "another epoch, another token"


def test_a_key_is_the_same_in_openssh_and_pem_form_and_the_secret_is_its_pkcs8(tmp_path):
    key = tmp_path / "rsa"
    keygen("-t", "rsa", "-b", "2048", "-N", "", "-f", key)
    before = everything_derived(key)
    keygen("-p", "-P", "", "-N", "", "-m", "PKCS8", "-f", key)
    # PKCS#8's armour names no algorithm (RFC 7468, section 10): BEGIN, then PRIVATE.
    assert key.read_text().split()[:2] == ["-----BEGIN", "PRIVATE"], "ssh-keygen re-saved it as PKCS#8 PEM"
    assert everything_derived(key) == before
    # The documented derivation, from outside our code: openssl's DER of the key and the standard library's HMAC.
    der = subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    message = b"\0".join([b"ray-vsphere ray auth token", b"analytics", b"epoch 0"])
    assert before["token"] == hmac.new(der, message, hashlib.sha256).hexdigest()
    # A CRLF paste (an AWX credential field) and indentation are the same key.
    crlf = "\r\n".join("  " + line for line in key.read_text().splitlines())
    assert _ray_auth.ray_auth_token(crlf, "analytics") == before["token"]


@pytest.fixture
def key(tmp_path):
    return make_key_pair(tmp_path / "key")


def refusal(path):
    with pytest.raises(_ray_auth.ClusterKeyError) as refused:
        _ray_auth.ClusterKey.from_file(str(path), "analytics")
    return str(refused.value)


def test_a_public_key_is_refused_by_name(key):
    public = key.with_name("key.pub")
    assert refusal(public) == (f"cluster_key_file: {public} is not a PEM or OpenSSH private key (that is a public "
                               "key: give the private one beside it)")


def test_text_that_only_says_private_key_is_refused_and_never_echoed(tmp_path, key):
    body = base64.b64encode(b"hunter2-" * 40).decode()
    # The armour of real keys made now (OpenSSH, PKCS#8 and PKCS#1 PEM), around a body that is no key.
    pkcs8, rsa = tmp_path / "pkcs8-key", tmp_path / "rsa-key"
    keygen("-t", "rsa", "-b", "2048", "-N", "", "-m", "PKCS8", "-f", pkcs8)
    keygen("-t", "rsa", "-b", "2048", "-N", "", "-m", "PEM", "-f", rsa)

    firsts = [made.read_text().split("\n", 1)[0] for made in (key, pkcs8, rsa)]
    assert ["OPENSSH" in first for first in firsts] == [True, False, False] and "RSA" in firsts[2], firsts

    def armoured(made):
        lines = made.read_text().splitlines()
        return f"{lines[0]}\n{body}\n{lines[-1]}\n"
    for name, text in {"openssh": armoured(key), "pem": armoured(pkcs8), "rsa": armoured(rsa),
                       "words": "this is my PRIVATE KEY-----, trust me\n",
                       "truncated": "".join(key.read_text().splitlines(keepends=True)[:3])}.items():
        (tmp_path / name).write_text(text)
        message = refusal(tmp_path / name)
        assert message.startswith(f"cluster_key_file: {tmp_path / name} is not a PEM or OpenSSH private key"), message
        assert "hunter2" not in message and body[:12] not in message and key.read_text().split()[4][:12] not in message
    with pytest.raises(_ray_auth.ClusterKeyError, match="^the text is not a PEM or OpenSSH private key"):
        _ray_auth.ray_auth_token(text, "analytics")


def test_an_encrypted_key_is_refused_with_how_to_remove_the_passphrase(key):
    keygen("-p", "-P", "", "-N", "passphrase-4711", "-f", key)
    message = refusal(key)
    assert message == (f"cluster_key_file: {key} is encrypted with a passphrase, which Ansible and Ray cannot enter: "
                       "give a key without one (ssh-keygen -p -N '' -f FILE removes it and keeps the key)")


@pytest.mark.parametrize("epoch", [-1, "x", "1.5", None, ""])
def test_a_token_epoch_is_a_whole_number_from_0(key, epoch):
    with pytest.raises(ValueError, match="the token epoch must be a whole number from 0"):
        _ray_auth.ray_auth_token(key.read_text(), "analytics", epoch)
    assert _ray_auth.ray_auth_token(key.read_text(), "analytics", "3") == _ray_auth.ray_auth_token(
        key.read_text(), "analytics", 3)
