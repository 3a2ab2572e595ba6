"""The testbed's own certificate authorities and server certificates.

A real vCenter serves a certificate of VMCA or of the company's internal CA,
and its clients trust that CA; they do not switch verification off. The
testbed does the same: each vcsim gets a fresh CA and a server certificate
from it whose subject alternative names are exactly the addresses vcsim
listens on, and every client (modules, provider, the head in a guest) trusts
the CA through `ca_path` / VMWARE_CA_PATH. Keys are EC P-256 (fast to make)
and never leave the vcsim's temp folder.

The ESXi host NFC uploads go to has a certificate of a second CA, as in
VMware's hybrid certificate mode: vCenter's machine SSL certificate comes from
the company's CA, the hosts' from VMCA (vSphere Authentication, "Certificate
Replacement Overview"; vSphere Security, "Certificate Modes for ESXi Hosts").
A client trusts both through one PEM bundle of the two (`bundle`).
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ray-vsphere testbed CA"
# The second CA, the one that signs the ESXi hosts' certificates.
VMCA_NAME = "ray-vsphere testbed VMCA"
# Long enough for any test session or `testbed up`; short enough to be harmless if copied.
VALIDITY = datetime.timedelta(days=7)
# Clocks of the guests and the host are the same clock, but a certificate valid
# from "now" can look not-yet-valid to a client that rounds down.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    certificate: Path
    key: Path


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ray-vsphere testbed"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory, common_name=CA_NAME, stem="ca"):
    """A self-signed CA certificate and key in directory: <stem>.pem, <stem>-key.pem."""
    directory = Path(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(directory / f"{stem}.pem", directory / f"{stem}-key.pem")
    pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


def issue_server_certificate(ca, directory, names, stem="vcenter"):
    """A TLS server certificate signed by ca for names (IP addresses or DNS names): <stem>.pem, <stem>-key.pem.

    The names go into the subject alternative names, which is all that
    clients check (RFC 6125; Python's ssl ignores the common name).
    """
    if not names:
        raise ValueError("a server certificate needs at least one name")
    directory = Path(directory)
    ca_certificate = x509.load_pem_x509_certificate(ca.certificate.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    alternative_names = []
    for name in names:
        try:
            alternative_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative_names.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0])).issuer_name(ca_certificate.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = KeyPair(directory / f"{stem}.pem", directory / f"{stem}-key.pem")
    pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


def bundle(path, *certificates):
    """One PEM file of the given CA certificates, as a user trusts several CAs through one ca_path."""
    path = Path(path)
    path.write_text("".join(Path(certificate).read_text() for certificate in certificates))
    return path
