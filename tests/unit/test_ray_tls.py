"""The cluster's CA and a node's certificate (module_utils/_ray_tls.py), as both paths make them."""

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ansible.errors import AnsibleFilterError
from ansible_collections.ray_vsphere.cluster.plugins.filter.ray_tls_ca import FilterModule
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_tls
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ray_auth import ClusterKey
from ray_provider import ray_tls



def _new_key():
    return Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                       serialization.NoEncryption()).decode()


KEY, OTHER_KEY = _new_key(), _new_key()
ray_tls_ca = FilterModule().filters()["ray_tls_ca"]


def test_the_ca_is_the_same_at_every_derivation_and_differs_per_key_and_cluster():
    ca = ray_tls_ca(KEY, "analytics")
    assert ray_tls_ca(KEY.replace("\n", "\r\n"), "analytics") == ca  # the key pasted with other line endings
    assert ray_tls_ca(OTHER_KEY, "analytics")["key"] != ca["key"]
    assert ray_tls_ca(KEY, "analytics-2")["key"] != ca["key"]
    cert = x509.load_pem_x509_certificate(ca["cert"].encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(ca["key"].encode(), password=None)
    assert key.public_key() == cert.public_key()
    cert.verify_directly_issued_by(cert)


def test_the_filter_refuses_what_is_not_a_private_key_without_echoing_it():
    with pytest.raises(AnsibleFilterError) as error:
        ray_tls_ca("ssh-ed25519 AAAAsecretish", "analytics")
    assert "secretish" not in str(error.value)


def test_a_node_certificate_names_its_addresses_and_loopback_and_is_signed_by_the_ca():
    ca = ray_tls_ca(KEY, "analytics")
    key_pem, cert_pem = _ray_tls.node_certificate(ca["key"].encode(), ca["cert"].encode(), ["198.18.1.10"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca["cert"].encode()))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["198.18.1.10", "127.0.0.1"]
    assert serialization.load_pem_private_key(key_pem, password=None).public_key() == cert.public_key()
    assert _ray_tls.covers(cert_pem, ca["cert"].encode(), ["198.18.1.10"])
    assert not _ray_tls.covers(cert_pem, ca["cert"].encode(), ["198.18.1.11"]), "another address"
    assert not _ray_tls.covers(cert_pem, ray_tls_ca(OTHER_KEY, "analytics")["cert"].encode(), ["198.18.1.10"])
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3650)
    assert not _ray_tls.covers(cert_pem, ca["cert"].encode(), ["198.18.1.10"], now=later), "expiring"


def test_the_script_on_a_node_makes_the_certificate_once_and_again_for_a_new_address(tmp_path):
    ca = ray_tls_ca(KEY, "analytics")
    (tmp_path / _ray_tls.CA_CERT).write_text(ca["cert"])
    (tmp_path / _ray_tls.CA_KEY).write_text(ca["key"])

    bashrc = tmp_path / ".bashrc"
    bashrc.write_text("[ -z \"$PS1\" ] && return\n")

    def mint(*addresses):
        # Run as the nodes run it: the file alone, by a Python without the collection on its path.
        done = subprocess.run([sys.executable, "-I", _ray_tls.__file__, "--shell-startup", str(bashrc), str(tmp_path),
                               *addresses],
                              capture_output=True, text=True, check=True, cwd=tmp_path)
        return json.loads(done.stdout)

    first = mint("198.18.1.10")
    assert first == {"changed": True, "environment": {
        "RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": f"{tmp_path}/node.pem",
        "RAY_TLS_SERVER_KEY": f"{tmp_path}/node.key", "RAY_TLS_CA_CERT": f"{tmp_path}/ca.pem"}}
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600
    # A shell that sources ~/.bashrc without being interactive gets Ray's variables, as `ray start` does.
    shell = subprocess.run(["bash", "-c", f". {bashrc}; env"], capture_output=True, text=True, check=True,
                           env={"PATH": "/usr/bin:/bin"})
    assert {line.partition("=")[0]: line.partition("=")[2] for line in shell.stdout.splitlines()
            if line.startswith("RAY_")} == first["environment"]
    issued = (tmp_path / "node.pem").read_bytes()
    assert mint("198.18.1.10")["changed"] is False
    assert (tmp_path / "node.pem").read_bytes() == issued
    assert bashrc.read_text().splitlines() == [f'[ -f "{tmp_path}/environment" ] && . "{tmp_path}/environment"',
                                               '[ -z "$PS1" ] && return'], "sourced first, once"
    assert mint("198.18.1.12")["changed"] is True
    assert _ray_tls.covers((tmp_path / "node.pem").read_bytes(), ca["cert"].encode(), ["198.18.1.12"])


def test_ray_up_mounts_the_ca_and_the_script_beside_the_token_and_rewrites_nothing_the_second_time(tmp_path):
    mounts = ray_tls.tls_file_mounts(tmp_path / "state", ClusterKey(KEY, "analytics"))
    assert sorted(mounts) == ["~/.ray/tls/ca.key", "~/.ray/tls/ca.pem", "~/.ray/tls/ray_tls.py"]
    local = {remote.rsplit("/", 1)[1]: Path(path) for remote, path in mounts.items()}
    assert {name: path.stat().st_mode & 0o777 for name, path in local.items()} == dict.fromkeys(local, 0o600)
    # The same CA as the playbook path's, and the same script the role copies.
    assert local["ca.pem"].read_text() == ray_tls_ca(KEY, "analytics")["cert"]
    assert local["ca.key"].read_text() == ray_tls_ca(KEY, "analytics")["key"]
    assert local["ray_tls.py"].read_bytes() == Path(_ray_tls.__file__).read_bytes()
    written = {name: path.stat().st_mtime_ns for name, path in local.items()}
    assert ray_tls.tls_file_mounts(tmp_path / "state", ClusterKey(KEY, "analytics")) == mounts
    assert {name: path.stat().st_mtime_ns for name, path in local.items()} == written, "Ray sees no changed mount"
