"""TLS and security strength: slapd's TLS* directives as an SSL context, ldaps:// and StartTLS (RFC 4513),
`security` requirements (confidentialityRequired with slapd's texts), and the identity a verified client
certificate gives SASL EXTERNAL (its subject DN in LDAP string form).

Strength factors as slapd counts them: a TLS connection has the cipher's key bits (e.g. 256), an ldapi://
connection `localSSF` (71 by default) as transport strength, a clear TCP connection 0; the overall factor is the
largest of these.
"""

from __future__ import annotations

import asyncio
import codecs
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyldapd.config.model import SecurityFactors, TLSConfig
from pyldapd.model.dn import DNError, normalize_dn
from pyldapd.model.x509 import oid_text
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ber import BERError, read_children, read_tlv, tlv
from pyldapd.protocol.ldap import ResultCode
from pyldapd.server.errors import LDAPError
from pyldapd.server.log import STATS

if TYPE_CHECKING:
    from pyldapd.server.connection import LDAPConnection
    from pyldapd.server.directory import Session

EXTENDED_RESULT_NAME_TAG = 0x8A

# TLSProtocolMin <major>.<minor>: SSL/TLS record versions (3.1 = TLS 1.0 ... 3.4 = TLS 1.3)
PROTOCOL_VERSIONS = {
    (3, 0): ssl.TLSVersion.SSLv3,
    (3, 1): ssl.TLSVersion.TLSv1,
    (3, 2): ssl.TLSVersion.TLSv1_1,
    (3, 3): ssl.TLSVersion.TLSv1_2,
    (3, 4): ssl.TLSVersion.TLSv1_3,
}
VERIFY_MODES = {
    "never": ssl.CERT_NONE,
    "allow": ssl.CERT_OPTIONAL,
    "try": ssl.CERT_OPTIONAL,
    "demand": ssl.CERT_REQUIRED,
}


class TLSSetupError(Exception):
    pass


def parse_protocol_min(text: str) -> ssl.TLSVersion:
    major, _, minor = text.partition(".")
    key = (int(major), int(minor or 0))
    if key < (3, 0):
        return ssl.TLSVersion.MINIMUM_SUPPORTED
    return PROTOCOL_VERSIONS.get(key, ssl.TLSVersion.TLSv1_3)


def build_context(tls: TLSConfig, warn: Callable[[str], None]) -> ssl.SSLContext | None:
    """The server side SSL context for the TLS* directives; None when no certificate and key are configured
    (then StartTLS answers unavailable and ldaps:// cannot listen). TLSSetupError when a file is unusable."""
    if not tls.configured:
        if tls.certificate_file or tls.certificate_key_file:
            warn("TLS: both TLSCertificateFile and TLSCertificateKeyFile are needed; TLS is not available")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.certificate_file, tls.certificate_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(
            f"TLS: could not use certificate {tls.certificate_file!r} with key {tls.certificate_key_file!r}: "
            f"{exc}"
        ) from None
    if tls.ca_certificate_file or tls.ca_certificate_path:
        try:
            context.load_verify_locations(
                cafile=tls.ca_certificate_file or None, capath=tls.ca_certificate_path or None
            )
        except (OSError, ssl.SSLError) as exc:
            raise TLSSetupError(f"TLS: could not load CA certificates: {exc}") from None
    context.verify_mode = VERIFY_MODES.get(tls.verify_client, ssl.CERT_NONE)
    if tls.protocol_min:
        try:
            context.minimum_version = parse_protocol_min(tls.protocol_min)
        except (ValueError, ssl.SSLError) as exc:
            warn(f"TLS: TLSProtocolMin {tls.protocol_min}: {exc}; using the library default")
    if tls.cipher_suite:
        try:
            context.set_ciphers(tls.cipher_suite)
        except ssl.SSLError:
            # GnuTLS priority strings (Debian's slapd, e.g. NORMAL or SECURE256:-VERS-TLS-ALL) mean nothing to
            # OpenSSL: keep its defaults rather than refuse to start.
            warn(
                f"TLS: TLSCipherSuite {tls.cipher_suite!r} is not an OpenSSL cipher list; using the defaults"
            )
    if tls.dh_param_file:
        try:
            context.load_dh_params(tls.dh_param_file)
        except (OSError, ssl.SSLError) as exc:
            warn(f"TLS: TLSDHParamFile {tls.dh_param_file!r} not used: {exc}")
    if tls.crl_check in ("peer", "all"):
        if tls.crl_file:
            try:
                context.load_verify_locations(cafile=tls.crl_file)
            except (OSError, ssl.SSLError) as exc:
                raise TLSSetupError(f"TLS: could not load CRL file {tls.crl_file!r}: {exc}") from None
            context.verify_flags |= (
                ssl.VERIFY_CRL_CHECK_LEAF if tls.crl_check == "peer" else ssl.VERIFY_CRL_CHECK_CHAIN
            )
        else:
            warn(f"TLS: TLSCRLCheck {tls.crl_check} without TLSCRLFile: no CRLs are checked")
    return context


# -- the security of a connection ----------------------------------------------------------------------------


def setup_session(conn: LDAPConnection, transport: asyncio.BaseTransport) -> None:
    """Record the connection's strength in its Session: at accept (ldaps://, ldapi://) and after StartTLS."""
    session = conn.session
    if conn.local:
        session.transport_ssf = conn.server.config.local_ssf
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        cipher = ssl_object.cipher() or ("", "", 0)
        session.tls = True
        session.tls_ssf = int(cipher[2] or 0)
        session.tls_authzid = ""
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            try:
                session.tls_authzid = certificate_subject(der)
            except (BERError, ValueError, IndexError):
                session.tls_authzid = ""
    session.ssf = max(session.transport_ssf, session.tls_ssf)
    if ssl_object is not None and conn.log.level & STATS:
        sock = transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        conn.log.write(
            f"conn={session.conn_id} fd={fd} TLS established tls_ssf={session.tls_ssf} ssf={session.ssf} "
            f"tls_proto={ssl_object.version()} tls_cipher={cipher[0]}"
        )


def confidentiality(have: int, label: str, update: bool) -> LDAPError:
    text = (
        ("stronger " if have else "") + label + "confidentiality required" + (" for update" if update else "")
    )
    return LDAPError(ResultCode.confidentialityRequired, text)


def check_factors(factors: SecurityFactors, session: Session, *, update: bool, bind: str) -> None:
    """slapd's order: transport, TLS, SASL, overall; then the update factors; `simple_bind` for simple binds.
    `bind` is "" for other operations, "anonymous", "sasl" or "simple" for binds: an anonymous or SASL bind
    is held only to the transport and TLS factors."""
    checks = [
        (session.transport_ssf, factors.transport, "transport "),
        (session.tls_ssf, factors.tls, "TLS "),
    ]
    if bind in ("", "simple"):
        checks += [(0, factors.sasl, "SASL "), (session.ssf, factors.ssf, "")]
    for have, need, label in checks:
        if have < need:
            raise confidentiality(have, label, False)
    if update:
        for have, need, label in (
            (session.transport_ssf, factors.update_transport, "transport "),
            (session.tls_ssf, factors.update_tls, "TLS "),
            (0, factors.update_sasl, "SASL "),
            (session.ssf, factors.update_ssf, ""),
        ):
            if have < need:
                raise confidentiality(have, label, True)
    if bind == "simple" and session.ssf < factors.simple_bind:
        raise confidentiality(session.ssf, "", False)


def demands(factors: SecurityFactors) -> bool:
    """Whether `security` asks for anything (every factor 0: no operation can be refused)."""
    return bool(
        factors.ssf or factors.transport or factors.tls or factors.sasl or factors.update_ssf
        or factors.update_transport or factors.update_tls or factors.update_sasl or factors.simple_bind
    )  # fmt: skip


UPDATES = (ldap.AddRequest, ldap.ModifyRequest, ldap.DelRequest, ldap.ModifyDNRequest)


def check_security(conn: LDAPConnection, op) -> None:
    """Raise confidentialityRequired when the connection is weaker than `security` (global, then the target
    database's) demands for this operation. StartTLS is never refused here: it is how a client gets stronger."""
    decided = conn.directory.decided
    demanded = decided.get("security")
    if demanded is None:  # once per configuration
        demanded = decided["security"] = demands(conn.server.config.security) or any(
            demands(backend.config.security) for backend in conn.directory.backends
        )
    if not demanded:
        return  # no `security` anywhere (the common case): nothing to check, no DN to normalize
    session = conn.session
    config = conn.server.config
    target = None
    bind = ""
    update = isinstance(op, UPDATES)
    if isinstance(op, ldap.BindRequest):
        if op.sasl_mechanism is not None:
            bind = "sasl"
        elif not op.name:
            bind = "anonymous"
        else:
            bind, target = "simple", op.name
    elif isinstance(op, ldap.ExtendedRequest):
        if op.name == ctl.START_TLS:
            return
        update = op.name == ctl.PASSWORD_MODIFY
    elif isinstance(op, ldap.SearchRequest):
        target = op.base
    elif isinstance(op, UPDATES + (ldap.CompareRequest,)):
        target = op.dn
    try:
        check_factors(config.security, session, update=update, bind=bind)
        if target:
            directory = conn.directory
            try:
                backend = directory.backend_for(normalize_dn(target, directory.schema))
            except (DNError, ValueError):
                backend = None
            if backend is not None:
                check_factors(backend.config.security, session, update=update, bind=bind)
    except LDAPError:
        if bind:  # a refused bind leaves the connection anonymous, as any bind attempt does
            session.bind_dn, session.bind_ndn = "", ""
        raise


# -- StartTLS ------------------------------------------------------------------------------------------------


def has_outstanding_operations(conn: LDAPConnection) -> bool:
    for backend in conn.directory.backends:
        provider = backend.provider
        if provider is not None and any(ps.conn is conn for ps in getattr(provider, "psearches", ())):
            return True
    return False


def start_tls(conn: LDAPConnection, message_id: int, op: ldap.ExtendedRequest, tag: int) -> None:
    """The StartTLS extended operation (RFC 4513 3): answer, then handshake on the same connection."""
    name = tlv(EXTENDED_RESULT_NAME_TAG, op.name.encode())
    context = conn.server.tls_context
    if context is None:  # as slapd without TLS configured: StartTLS is not among its extended operations
        conn.result(message_id, tag, ResultCode.protocolError, "unsupported extended operation")
        return
    if op.value is not None:
        conn.result(message_id, tag, ResultCode.protocolError, "no request data expected", extra=name)
        return
    if conn.session.tls:
        conn.result(message_id, tag, ResultCode.operationsError, "TLS already started", extra=name)
        return
    if has_outstanding_operations(conn):
        conn.result(message_id, tag, ResultCode.operationsError,
                    "cannot start TLS when operations are outstanding", extra=name)  # fmt: skip
        return
    disallows = conn.server.config.disallows
    if "tls_2_anon" not in disallows and conn.session.bind_ndn:  # slapd: StartTLS makes the session anonymous
        conn.session.bind_dn, conn.session.bind_ndn, conn.session.auth_method = "", "", ""
    if "tls_authc" in disallows and conn.session.bind_ndn:
        conn.result(message_id, tag, ResultCode.operationsError, "cannot start TLS after authentication",
                    extra=name)  # fmt: skip
        return
    transport = conn.transport
    if transport is None or transport.is_closing():
        return
    conn.result(message_id, tag, ResultCode.success, extra=name)
    if conn.out:  # the response goes out in the clear now, before the handshake (connection.py gathers them)
        conn.flush([])
    # Nothing more is read in the clear: the client's next bytes are its TLS ClientHello. Whatever else is
    # in this batch or half-framed is dropped (a client must wait for this response, RFC 4513 3.1.1).
    conn.starting_tls = True
    conn.framer = ldap.MessageFramer(conn.framer.max_pdu_size)
    transport.pause_reading()
    task = asyncio.get_running_loop().create_task(upgrade(conn, transport, context))
    conn.server.tls_tasks.add(task)
    task.add_done_callback(conn.server.tls_tasks.discard)


async def upgrade(conn: LDAPConnection, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
    loop = asyncio.get_running_loop()
    try:
        new_transport = await loop.start_tls(transport, conn, context, server_side=True)
    except (TimeoutError, OSError, ssl.SSLError, ConnectionError, RuntimeError) as exc:
        conn.log.log(STATS, f"conn={conn.session.conn_id} TLS negotiation failure: {exc}")
        transport.abort()
        if conn in conn.server.connections:
            conn.connection_lost(exc)
        return
    if new_transport is None:  # the connection went away during the handshake
        return
    conn.transport = new_transport  # type: ignore[assignment]
    setup_session(conn, new_transport)
    conn.starting_tls = False
    backlog, conn.tls_backlog = bytes(conn.tls_backlog), bytearray()
    if backlog:  # requests that arrived with the end of the handshake
        conn.data_received(backlog)


# -- the client certificate as an identity -------------------------------------------------------------------

# OpenLDAP's names for the attribute types of certificate subjects; others are written as dotted OIDs.
SUBJECT_NAMES = {
    "2.5.4.3": "cn",
    "2.5.4.4": "sn",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "c",
    "2.5.4.7": "l",
    "2.5.4.8": "st",
    "2.5.4.9": "street",
    "2.5.4.10": "o",
    "2.5.4.11": "ou",
    "2.5.4.12": "title",
    "2.5.4.42": "givenName",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "0.9.2342.19200300.100.1.1": "uid",
    "0.9.2342.19200300.100.1.25": "dc",
    "1.2.840.113549.1.9.1": "emailAddress",
}
STRING_TAGS = {0x0C: "utf-8", 0x13: "latin-1", 0x16: "latin-1", 0x14: "latin-1", 0x1A: "latin-1",
               0x1E: "utf-16-be", 0x1C: "utf-32-be"}  # fmt: skip


def escape_value(value: str) -> str:
    """RFC 4514 2.4 escaping of an attribute value."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def certificate_subject(der: bytes) -> str:
    """The subject of a DER certificate as an LDAP DN string (RFC 4514: the last X.509 RDN first)."""
    _, start, stop = read_tlv(der, 0, len(der))  # Certificate
    _, tbs_start, tbs_stop = read_children(der, start, stop)[0]  # tbsCertificate
    fields = read_children(der, tbs_start, tbs_stop)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    _, name_start, name_stop = fields[4]  # serialNumber, signature, issuer, validity, subject
    rdns = []
    for _, rdn_start, rdn_stop in read_children(der, name_start, name_stop):
        avas = []
        for _, ava_start, ava_stop in read_children(der, rdn_start, rdn_stop):
            (_, oid_start, oid_stop), (value_tag, value_start, value_stop) = read_children(
                der, ava_start, ava_stop
            )[:2]
            oid = oid_text(der[oid_start:oid_stop])
            raw = der[value_start:value_stop]
            encoding = STRING_TAGS.get(value_tag)
            if oid in SUBJECT_NAMES and encoding is not None:
                avas.append(f"{SUBJECT_NAMES[oid]}={escape_value(codecs.decode(raw, encoding))}")
            else:
                avas.append(f"{oid}=#{der[oid_stop:ava_stop].hex()}")  # the whole value TLV, in hex
        rdns.append("+".join(avas))
    return ",".join(reversed(rdns))


def external_identity(session: Session, schema, requested: str) -> tuple[str, str]:
    """SASL EXTERNAL over TLS: the verified certificate's subject, normalized as slapd reports it (WhoAmI
    gives e.g. dn:cn=client,o=test). An authzid other than that identity is refused."""
    try:
        ndn = normalize_dn(session.tls_authzid, schema)
    except (DNError, ValueError):
        ndn = session.tls_authzid.lower()
    if requested and requested != "u:":
        wanted = requested[3:] if requested.lower().startswith("dn:") else None
        try:
            same = wanted is not None and normalize_dn(wanted, schema) == ndn
        except (DNError, ValueError):
            same = False
        if not same:
            raise LDAPError(
                ResultCode.insufficientAccessRights, "SASL(-14): authorization failure: not authorized"
            )
    return ndn, ndn
