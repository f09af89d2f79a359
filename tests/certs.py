"""Certificates made at test time (a CA, a server certificate for 127.0.0.1/localhost, client certificates).

Nothing is stored in the repository, so nothing expires: every run makes fresh keys valid from yesterday to
next week.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class TestPKI:
    __test__ = False  # not a test class
    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA nobody trusts
    rogue_cert: Path  # a client certificate signed by that CA
    rogue_key: Path


def _name(*parts: tuple) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_ca(subject: x509.Name) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(subject: x509.Name, ca: x509.Certificate, ca_key, *, server: bool):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> TestPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca(_name((NameOID.ORGANIZATION_NAME, "Test"), (NameOID.COMMON_NAME, "Test CA")))
    server, server_key = _make_leaf(
        _name((NameOID.ORGANIZATION_NAME, "Test"), (NameOID.COMMON_NAME, "localhost")),
        ca,
        ca_key,
        server=True,
    )
    client, client_key = _make_leaf(
        _name((NameOID.ORGANIZATION_NAME, "Test"), (NameOID.COMMON_NAME, "client")), ca, ca_key, server=False
    )
    other, other_key = _make_ca(
        _name((NameOID.ORGANIZATION_NAME, "Other"), (NameOID.COMMON_NAME, "Other CA"))
    )
    rogue, rogue_key = _make_leaf(
        _name((NameOID.ORGANIZATION_NAME, "Other"), (NameOID.COMMON_NAME, "rogue")),
        other,
        other_key,
        server=False,
    )
    pki = TestPKI(
        directory,
        directory / "ca.pem",
        directory / "ca.key",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
        directory / "other-ca.pem",
        directory / "rogue.pem",
        directory / "rogue.key",
    )
    _write_cert(ca, pki.ca_cert)
    _write_key(ca_key, pki.ca_key)
    _write_cert(server, pki.server_cert)
    _write_key(server_key, pki.server_key)
    _write_cert(client, pki.client_cert)
    _write_key(client_key, pki.client_key)
    _write_cert(other, pki.other_ca_cert)
    _write_cert(rogue, pki.rogue_cert)
    _write_key(rogue_key, pki.rogue_key)
    return pki


def tls_conf(pki: TestPKI, verify_client: str = "never") -> str:
    """Global slapd.conf TLS directives for this PKI."""
    return (
        f"TLSCACertificateFile {pki.ca_cert}\n"
        f"TLSCertificateFile {pki.server_cert}\n"
        f"TLSCertificateKeyFile {pki.server_key}\n"
        f"TLSVerifyClient {verify_client}\n"
    )


def der_certificate(serial: int, issuer: list[tuple[x509.ObjectIdentifier, str]]) -> bytes:
    """A DER certificate of this serial number and issuer (signed by a throwaway key: only its fields matter)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name((NameOID.COMMON_NAME, "holder")))
        .issuer_name(_name(*issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)
