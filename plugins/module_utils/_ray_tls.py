# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ray's TLS inside a cluster: the cluster's CA, derived from the cluster's key, and each node's certificate.

Ray's token travels as a gRPC `authorization` header, so without TLS anyone
on the port group reads it off the wire. RAY_USE_TLS=1 makes every gRPC
listener of Ray (GCS, raylets, object managers, the dashboard's agents, the
Ray client server) mutual TLS against RAY_TLS_CA_CERT.

Why each node mints its own certificate: Ray 2.60's gRPC, the C++ side too,
checks the server certificate's subject alternative names against the
address it dials (the node's IP): a certificate without that IP fails with
"No match found for server name" (tried with Ray 2.60: docs/security.md,
"Ray TLS inside the cluster"). A worker's address is known only once it has
booted, and `ray up` mounts the same files on every node, so every node gets
the CA, through the same channel as the token, and makes its certificate for
its own addresses when Ray starts (main(), below).
The CA key on a node gives no more than the token it sits beside: a token
holder can already join the cluster as a node.

Why derived: like the token, every holder of the cluster's key (the
operator's machine, AWX, the head) makes the same CA with nothing more to
store, and the deterministic signature makes it byte for byte the same, so a
second `ray up` changes no file on any node.

The file runs on the nodes with the Python that runs Ray (ray[default]
brings `cryptography`), so it imports nothing of this collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import datetime
import grp
import ipaddress
import json
import os
import sys

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    HAS_CRYPTOGRAPHY = True
except ImportError:  # the sanity tests import module_utils without it
    HAS_CRYPTOGRAPHY = False

# Where every node keeps its TLS files, on both paths, beside the token (~/.ray/auth_token).
TLS_DIR_ON_NODES = "~/.ray/tls"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
NODE_CERT = "node.pem"
NODE_KEY = "node.key"
# Ray's variables as shell exports, which `ray start` and the user's shells source.
ENVIRONMENT = "environment"
# This file's name on the nodes.
MINT_SCRIPT = "ray_tls.py"
# Where Ray's own users (Ray's, and on a provider head the autoscaler's) read the node's certificate: a folder of
# root's, so neither can plant a link there, the key readable by Ray's group only. The CA's key never goes there:
# it stays with the SSH user, who makes the node's certificate.
SERVICE_TLS_DIR = "/etc/ray-vsphere/tls"

# P-256's group order: the derived secret is reduced into [1, order - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# Fixed, so the CA is the same at every derivation; it lives as long as the cluster's key.
_CA_NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
_CA_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)
# A node's certificate is re-checked at every start and re-made when its address or the CA changes.
_NODE_LIFETIME = datetime.timedelta(days=3650)
# Drivers and CLIs on a node may dial it through loopback.
_LOOPBACK_ADDRESS = "127.0.0.1"


def environment(tls_dir):
    """The variables every Ray process of a node (daemons, drivers, CLI) needs for TLS, with the files in tls_dir."""
    return {"RAY_USE_TLS": "1",
            "RAY_TLS_SERVER_CERT": "%s/%s" % (tls_dir, NODE_CERT),
            "RAY_TLS_SERVER_KEY": "%s/%s" % (tls_dir, NODE_KEY),
            "RAY_TLS_CA_CERT": "%s/%s" % (tls_dir, CA_CERT)}


def cluster_ca(secret_hex, cluster_name):
    """(key PEM, certificate PEM) of the cluster's CA, made from a 64-hex-digit secret derived from the cluster's key."""
    key = ec.derive_private_key(int(secret_hex, 16) % (_P256_ORDER - 1) + 1, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ray-vsphere"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Ray cluster %s CA" % cluster_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(int(secret_hex[:30], 16) | 1)
               .not_valid_before(_CA_NOT_BEFORE).not_valid_after(_CA_NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_key_usage(cert_sign=True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return _key_pem(key), _sign(builder, key).public_bytes(serialization.Encoding.PEM)


def node_certificate(ca_key_pem, ca_cert_pem, addresses, now=None):
    """(key PEM, certificate PEM) of a node with a fresh key, for its `addresses` and loopback, signed by the CA."""
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.datetime.now(datetime.timezone.utc)
    names = [x509.IPAddress(address) for address in _named_addresses(addresses)]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ray node %s" % addresses[0])]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + _NODE_LIFETIME)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(cert_sign=False), critical=True)
               # Ray uses the one certificate as server and as client (mutual TLS).
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.SubjectAlternativeName(names + [x509.DNSName("localhost")]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    return _key_pem(key), builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def covers(cert_pem, ca_cert_pem, addresses, now=None):
    """Whether a node's certificate is signed by the CA, valid now and names every one of `addresses`."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert_pem))
        named = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (cert.not_valid_before_utc <= now < cert.not_valid_after_utc - datetime.timedelta(days=1)
            and set(_named_addresses(addresses)) <= set(named.get_values_for_type(x509.IPAddress)))


def ensure_node_certificate(tls_dir, addresses):
    """Make tls_dir's node certificate for `addresses` unless the one there covers them; whether it made one."""
    with open(os.path.join(tls_dir, CA_CERT), "rb") as stream:
        ca_cert_pem = stream.read()
    try:
        with open(os.path.join(tls_dir, NODE_CERT), "rb") as stream:
            if covers(stream.read(), ca_cert_pem, addresses):
                return False
    except (IOError, OSError):
        pass
    with open(os.path.join(tls_dir, CA_KEY), "rb") as stream:
        key_pem, cert_pem = node_certificate(stream.read(), ca_cert_pem, addresses)
    write_private(os.path.join(tls_dir, NODE_KEY), key_pem)
    write_private(os.path.join(tls_dir, NODE_CERT), cert_pem)
    return True


def _named_addresses(addresses):
    """The node's addresses and loopback's, in order, each once."""
    named = []
    for address in list(addresses) + [_LOOPBACK_ADDRESS]:
        address = ipaddress.ip_address(u"%s" % address)
        if address not in named:
            named.append(address)
    return named


def _key_usage(cert_sign):
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def _sign(builder, key):
    """Signed with RFC 6979's deterministic ECDSA where `cryptography` has it (45 and later): the same bytes each time."""
    try:
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    except TypeError:
        return builder.sign(key, hashes.SHA256())


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path, data):
    """Written whole (a new file renamed over the old), readable by the user only."""
    partial = path + ".partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    os.replace(partial, path)


def write_environment(tls_dir):
    """TLS_DIR/environment: Ray's variables as shell exports, for `ray start` and the user's shells to source."""
    lines = "".join("export %s=%s\n" % (name, value) for name, value in sorted(environment(tls_dir).items()))
    path = os.path.join(tls_dir, ENVIRONMENT)
    try:
        with open(path) as stream:
            if stream.read() == lines:
                return False
    except (IOError, OSError):
        pass
    write_private(path, lines.encode())
    return True


def install_for_service(tls_dir, group, service_dir=SERVICE_TLS_DIR):
    """As root: copy tls_dir's node certificate, its key and the CA's certificate to service_dir, the key readable
    by `group` only, and write service_dir/environment; whether anything changed."""
    gid = grp.getgrnam(group).gr_gid
    for folder in (os.path.dirname(service_dir), service_dir):
        if not os.path.isdir(folder):
            os.mkdir(folder, 0o755)
        os.chown(folder, 0, 0)
        os.chmod(folder, 0o755)
    changed = False
    for name, mode, owner_gid in ((CA_CERT, 0o644, 0), (NODE_CERT, 0o644, 0), (NODE_KEY, 0o640, gid)):
        with open(os.path.join(tls_dir, name), "rb") as stream:
            data = stream.read()
        changed = _write_owned(os.path.join(service_dir, name), data, mode, owner_gid) or changed
    lines = "".join("export %s=%s\n" % item for item in sorted(environment(service_dir).items()))
    return _write_owned(os.path.join(service_dir, ENVIRONMENT), lines.encode(), 0o644, 0) or changed


def _write_owned(path, data, mode, gid):
    """Replace `path` with `data` (root's, `gid`'s, `mode`) unless it holds it already; whether it wrote."""
    try:
        with open(path, "rb") as stream:
            if stream.read() == data and (os.stat(path).st_mode & 0o777, os.stat(path).st_gid) == (mode, gid):
                return False
    except (IOError, OSError):
        pass
    temporary = path + ".new"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        os.fchown(stream.fileno(), 0, gid)
        os.fchmod(stream.fileno(), mode)
        stream.write(data)
    os.rename(temporary, path)
    return True


def source_first(shell_startup, tls_dir):
    """Make `shell_startup` (~/.bashrc) source the environment file first, before Ubuntu's early return for
    non-interactive shells, so `ssh node python job.py` and `ray status` reach a TLS cluster too."""
    line = '[ -f "%s" ] && . "%s"\n' % ((os.path.join(tls_dir, ENVIRONMENT),) * 2)
    try:
        with open(shell_startup) as stream:
            text = stream.read()
    except (IOError, OSError):
        text = ""
    if line in text.splitlines(True):
        return False
    with open(shell_startup, "w") as stream:
        stream.write(line + text)
    return True


def main(argv):
    """`python3 ray_tls.py [--shell-startup ~/.bashrc] TLS_DIR ADDRESS...` on a node: makes the node's certificate
    unless it has one, writes TLS_DIR/environment, and prints what changed and Ray's variables as JSON.
    `sudo python3 ray_tls.py --install-for ray TLS_DIR` then gives Ray's users their copy (install_for_service).

    The variables name the files by absolute path: Ray opens them as given.
    """
    parser = argparse.ArgumentParser(prog=os.path.basename(argv[0]), description=main.__doc__)
    parser.add_argument("--shell-startup", help="a shell's startup file to source TLS_DIR/environment first")
    parser.add_argument("--install-for", metavar="GROUP",
                        help="as root, after a run as the SSH user: copy the node's certificate to %s for Ray's "
                             "users, its key readable by GROUP" % SERVICE_TLS_DIR)
    parser.add_argument("tls_dir")
    parser.add_argument("addresses", nargs="*", metavar="ADDRESS", help="the node's addresses, for its certificate")
    arguments = parser.parse_args(argv[1:])
    if arguments.install_for:
        changed = install_for_service(os.path.abspath(os.path.expanduser(arguments.tls_dir)), arguments.install_for)
        sys.stdout.write(json.dumps({"changed": changed, "environment": environment(SERVICE_TLS_DIR)},
                                    sort_keys=True) + "\n")
        return 0
    if not arguments.addresses:
        parser.error("give the node's addresses")
    if not HAS_CRYPTOGRAPHY:
        sys.stderr.write("Ray's TLS needs the Python package cryptography in the Python that runs Ray\n")
        return 1
    tls_dir = os.path.abspath(os.path.expanduser(arguments.tls_dir))
    changed = ensure_node_certificate(tls_dir, arguments.addresses)
    changed = write_environment(tls_dir) or changed
    if arguments.shell_startup:
        changed = source_first(os.path.expanduser(arguments.shell_startup), tls_dir) or changed
    sys.stdout.write(json.dumps({"changed": changed, "environment": environment(tls_dir)}, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
