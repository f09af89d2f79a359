"""TLS and `security` directives in slapd.conf, and certificate subjects as LDAP DNs (server/tls.py)."""

from __future__ import annotations

import pytest

from pyldapd.config.model import SecurityFactors
from pyldapd.config.slapdconf import ConfigError, load_slapd_conf
from pyldapd.server.tls import build_context, certificate_subject

BASE = "database mdb\nsuffix dc=example,dc=com\ndirectory {dir}\n"


def load(tmp_path, text: str):
    path = tmp_path / "slapd.conf"
    path.write_text(text.format(dir=tmp_path))
    return load_slapd_conf(str(path))


def test_tls_and_security_directives(tmp_path) -> None:
    config = load(tmp_path, "TLSCertificateFile /c.pem\nTLSCertificateKeyFile /k.pem\nTLSCACertificateFile /ca.pem\n"
                            "TLSVerifyClient hard\nTLSProtocolMin 3.3\nTLSCipherSuite HIGH:!aNULL\nTLSCRLCheck none\n"
                            "security ssf=128 simple_bind=64\nlocalSSF 100\npassword-crypt-salt-format $6$%.16s\n"
                            + BASE + "security update_ssf=256\n")  # fmt: skip
    assert config.tls.certificate_file == "/c.pem" and config.tls.configured
    assert config.tls.verify_client == "demand" and config.tls.protocol_min == "3.3"
    assert config.tls.cipher_suite == "HIGH:!aNULL"
    assert config.security == SecurityFactors(ssf=128, simple_bind=64)
    assert config.local_ssf == 100
    assert config.password_crypt_salt_format == "$6$%.16s"
    assert config.databases[0].security.update_ssf == 256
    assert config.security.words() == ["ssf=128", "simple_bind=64"]


@pytest.mark.parametrize("line", ["TLSVerifyClient sometimes", "security bogus=1", "security ssf=lots",
                                  "TLSProtocolMin x.y", "TLSCRLCheck maybe"])  # fmt: skip
def test_bad_directives(tmp_path, line: str) -> None:
    with pytest.raises(ConfigError, match="line 1"):
        load(tmp_path, line + "\n" + BASE)


def test_context_needs_certificate_and_key(tmp_path) -> None:
    config = load(tmp_path, BASE)
    assert build_context(config.tls, print) is None
    warnings: list[str] = []
    config = load(tmp_path, "TLSCertificateFile /nonexistent.pem\n" + BASE)
    assert build_context(config.tls, warnings.append) is None and warnings


def test_context_and_cipher_fallback(tmp_path) -> None:
    pytest.importorskip("cryptography")
    from tests.certs import make_pki, tls_conf

    pki = make_pki(tmp_path / "pki")
    config = load(tmp_path, tls_conf(pki, "try") + "TLSCipherSuite NORMAL:-VERS-TLS-ALL:+VERS-TLS1.2\n"
                            "TLSProtocolMin 3.3\n" + BASE)  # fmt: skip
    warnings: list[str] = []
    context = build_context(config.tls, warnings.append)
    assert context is not None
    assert any("TLSCipherSuite" in w for w in warnings)  # a GnuTLS priority string: OpenSSL's defaults
    import ssl

    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_certificate_subject_in_ldap_order(tmp_path) -> None:
    pytest.importorskip("cryptography")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID, ObjectIdentifier

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "com")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc.")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Jane"),
                                        x509.NameAttribute(NameOID.USER_ID, "jd")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(ObjectIdentifier("1.2.3.4"), "x")]),
    ])  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))  # fmt: skip
    subject = certificate_subject(cert.public_bytes(serialization.Encoding.DER))
    first, rest = subject.split(",", 1)
    assert first == "1.2.3.4=#0c0178"
    assert rest in ("cn=Jane+uid=jd,o=Acme\\, Inc.,dc=com", "uid=jd+cn=Jane,o=Acme\\, Inc.,dc=com")
