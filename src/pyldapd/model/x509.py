"""X.509 certificates as slapd's schema code sees them (servers/slapd/schema_init.c).

Two things are needed from a certificate: that it has the shape of one (the Certificate syntax, slapd's
certificateValidate) and the canonical form certificateExactMatch compares (RFC 4523, slapd's
certificateExactNormalize):

    { serialNumber 'HEX'H, issuer rdnSequence:"<issuer DN, normalized>" }

An assertion of that rule (a serialNumberAndIssuer) takes the same form, from the GSER of RFC 4523
(`{ serialNumber 2, issuer "cn=CA" }`, items in any order, `rdnSequence:` optional, `""` for a quote) or the older
`2$cn=CA`. The serial number is written as slapd's slap_bin2hex writes a DER INTEGER's octets: upper-case hex, the
first nibble dropped when it is 0 (`2` is `'2'H`, 128 is `'80'H`); a serial number not minimally encoded has no
canonical form. Only the DER needed here is read: short tags, definite lengths.
"""

from __future__ import annotations

import re
from typing import Any

from pyldapd.model.dn import DNError, escape_value, normalize_dn
from pyldapd.protocol.ber import BERError, read_tlv

_SEQUENCE, _SET, _INTEGER, _BIT_STRING, _OID = 0x30, 0x31, 0x02, 0x03, 0x06
_VERSION, _ISSUER_UID, _SUBJECT_UID, _EXTENSIONS = (
    0xA0,
    0x81,
    0x82,
    0xA3,
)  # [0] EXPLICIT, [1], [2], [3] EXPLICIT

# The string types of a Name's values and how their octets read (slapd's ldap_X509dn2bv: T.61 as ISO 8859-1)
_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


class _DERError(ValueError):
    pass


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at data[pos:end] (the BER codec's reader:
    short tags, definite lengths of at most 4 octets)."""
    try:
        return read_tlv(data, pos, end)
    except BERError as exc:
        raise _DERError(str(exc)) from None


def _certificate_parts(value: bytes) -> tuple[bytes, bytes]:
    """(serial number octets, issuer Name element) of a certificate, its shape checked as slapd's
    certificateValidate checks it."""
    tag, start, end = _element(value, 0, len(value))
    if tag != _SEQUENCE or end != len(value):
        raise _DERError("not a certificate")
    signature_end = end
    tag, pos, tbs_end = _element(value, start, signature_end)  # TBSCertificate
    if tag != _SEQUENCE:
        raise _DERError("no TBSCertificate")
    version = 0
    tag, at, stop = _element(value, pos, tbs_end)
    if tag == _VERSION:
        inner, number_start, number_end = _element(value, at, stop)
        if inner != _INTEGER or number_end == number_start:
            raise _DERError("bad version")
        version = int.from_bytes(value[number_start:number_end], "big", signed=True)
        pos = stop
        tag, at, stop = _element(value, pos, tbs_end)
    if tag != _INTEGER:
        raise _DERError("no serial number")
    serial = value[at:stop]
    pos = stop
    issuer = b""
    # signature algorithm, issuer, validity, subject, subject public key info
    for index in range(5):
        tag, at, stop = _element(value, pos, tbs_end)
        if tag != _SEQUENCE:
            raise _DERError("bad TBSCertificate")
        if index == 1:
            issuer = value[pos:stop]
        pos = stop
    for optional, least_version in ((_ISSUER_UID, 1), (_SUBJECT_UID, 1), (_EXTENSIONS, 2)):
        if pos < tbs_end and value[pos] == optional:
            if version < least_version:
                raise _DERError("field of a later version")
            tag, at, stop = _element(value, pos, tbs_end)
            if optional == _EXTENSIONS and _element(value, at, stop)[0] != _SEQUENCE:
                raise _DERError("bad extensions")
            pos = stop
    if pos != tbs_end:
        raise _DERError("extra data in TBSCertificate")
    tag, at, stop = _element(value, tbs_end, signature_end)  # signatureAlgorithm
    if tag != _SEQUENCE:
        raise _DERError("no signature algorithm")
    tag, at, stop = _element(value, stop, signature_end)
    if tag != _BIT_STRING or stop != signature_end:
        raise _DERError("no signature")
    return serial, issuer


def certificate_valid(value: bytes) -> bool:
    """The Certificate syntax: a DER certificate, as slapd's certificateValidate checks its shape."""
    try:
        _certificate_parts(value)
    except _DERError:
        return False
    return True


def oid_text(octets: bytes) -> str:
    """An OBJECT IDENTIFIER's contents as dotted decimal (ValueError if malformed)."""
    if not octets or octets[-1] & 0x80:
        raise _DERError("bad OID")
    arcs: list[int] = []
    current = 0
    for octet in octets:
        current = (current << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(current)
            current = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _name_value(tag: int, octets: bytes) -> str:
    codec = _STRING_CODECS.get(tag)
    if codec is not None:
        return octets.decode(codec)
    if tag == _BIT_STRING and octets:  # as RFC 4517's Bit String, the unused bits left out
        bits = "".join(f"{octet:08b}" for octet in octets[1:])
        return "'" + bits[: len(bits) - octets[0]] + "'B"
    raise _DERError("a Name value of no string type")


def x509_name_to_dn(name: bytes) -> str:
    """An X.509 Name (DER) as an LDAP DN string, types by numeric OID, the most specific RDN first."""
    tag, pos, end = _element(name, 0, len(name))
    if tag != _SEQUENCE:
        raise _DERError("not a Name")
    rdns: list[str] = []
    while pos < end:
        tag, at, rdn_end = _element(name, pos, end)
        if tag != _SET:
            raise _DERError("not an RDN")
        avas: list[str] = []
        while at < rdn_end:
            tag, ava_at, ava_end = _element(name, at, rdn_end)
            if tag != _SEQUENCE:
                raise _DERError("not an AttributeTypeAndValue")
            tag, oid_start, oid_end = _element(name, ava_at, ava_end)
            if tag != _OID:
                raise _DERError("no attribute type")
            value_tag, value_start, value_end = _element(name, oid_end, ava_end)
            text = _name_value(value_tag, name[value_start:value_end])
            avas.append(f"{oid_text(name[oid_start:oid_end])}={escape_value(text)}")
            at = ava_end
        rdns.append("+".join(avas))
        pos = rdn_end
    return ",".join(reversed(rdns))


def _serial_hex(octets: bytes) -> str | None:
    """A DER INTEGER's octets as slapd's slap_bin2hex writes them; None when not minimally encoded."""
    if len(octets) > 1:
        if octets[0] == 0xFF and octets[1] & 0x80:
            return None
        if octets[0] == 0:
            if not octets[1] & 0x80:
                return None
            octets = octets[1:]
    elif not octets:
        octets = b"\x00"
    text = octets.hex().upper()
    return "'" + (text[1:] if text[0] == "0" else text) + "'H"


def _canonical(serial_hex: str, issuer_ndn: str) -> bytes:
    return f'{{ serialNumber {serial_hex}, issuer rdnSequence:"{issuer_ndn}" }}'.encode()


def certificate_exact_form(value: bytes, schema: Any) -> bytes | None:
    """certificateExactMatch's form of a certificate (an attribute value); None when it has none."""
    try:
        serial, issuer = _certificate_parts(value)
        issuer_dn = x509_name_to_dn(issuer)
        issuer_ndn = normalize_dn(issuer_dn, schema) if issuer_dn else ""
    except (_DERError, DNError, UnicodeDecodeError):
        return None
    serial_hex = _serial_hex(serial)
    return None if serial_hex is None else _canonical(serial_hex, issuer_ndn)


# GSER serial numbers, as slapd's checkNum: 0x-prefixed hex, 'hex'H, or decimal (maybe negative)
_GSER_NUMBER_RE = re.compile(r"0[xX]([0-9A-Fa-f]+)|'([0-9A-Fa-f]+)'H|-[0-9]+|([0-9]+)")


def _gser_number(text: str, pos: int) -> tuple[str, int]:
    match = _GSER_NUMBER_RE.match(text, pos)
    if match is None:
        raise ValueError("no serial number")
    digits = match[1] or match[2] or match[3] or ""
    if len(digits) > 1 and digits[0] == "0":  # slapd's checkNum refuses leading zeros (not after a '-')
        raise ValueError("bad serial number")
    return match[0], match.end()


def _gser_parts(text: str) -> tuple[str, str]:
    """(serial number text, issuer DN) of `{ serialNumber N, issuer "DN" }` (either order), as slapd's
    serialNumberAndIssuerCheck reads it: one space after each name, `rdnSequence:` optional, `""` a quote."""
    inner = text[1:-1]
    pos, serial, issuer = 0, None, None
    while True:
        pos = len(inner) - len(inner[pos:].lstrip(" "))
        word = inner[pos : pos + 12].lower()
        if word.startswith("issuer"):
            if issuer is not None or inner[pos + 6 : pos + 7] != " ":
                raise ValueError("bad issuer")
            pos += 7
            pos = len(inner) - len(inner[pos:].lstrip(" "))
            if inner[pos : pos + 12].lower() == "rdnsequence:":
                pos += 12
            if inner[pos : pos + 1] != '"':
                raise ValueError("issuer not quoted")
            pos += 1
            parts: list[str] = []
            while True:
                quote = inner.find('"', pos)
                if quote < 0:
                    raise ValueError("issuer not closed")
                parts.append(inner[pos:quote])
                if inner[quote + 1 : quote + 2] == '"':
                    parts.append('"')
                    pos = quote + 2
                    continue
                pos = quote + 1
                break
            issuer = "".join(parts)
        elif word == "serialnumber":
            if serial is not None or inner[pos + 12 : pos + 13] != " ":
                raise ValueError("bad serialNumber")
            pos += 13
            pos = len(inner) - len(inner[pos:].lstrip(" "))
            serial, pos = _gser_number(inner, pos)
        else:
            raise ValueError("neither issuer nor serialNumber")
        pos = len(inner) - len(inner[pos:].lstrip(" "))
        if serial is not None and issuer is not None:
            break
        if inner[pos : pos + 1] != ",":
            raise ValueError("comma expected")
        pos += 1
    if pos != len(inner):
        raise ValueError("text after the assertion")
    return serial, issuer


def _number_octets(number: str) -> bytes:
    """slapd's lutil_str2bin: hex as written (padded to whole octets), decimal in minimal two's complement."""
    if number[:2] in ("0x", "0X") or number[:1] == "'":
        digits = number[2:] if number[:1] == "0" else number[1:-2]
        return bytes.fromhex(digits.rjust(len(digits) + len(digits) % 2, "0"))
    value = int(number)
    if value == 0:
        return b"\x00"
    size = ((value if value >= 0 else ~value).bit_length() + 8) // 8
    return value.to_bytes(size, "big", signed=True)


def serial_and_issuer_form(assertion: bytes, schema: Any) -> bytes | None:
    """certificateExactMatch's form of a serialNumberAndIssuer assertion; None when it is not one (the filter
    is then Undefined, as slapd's serialNumberAndIssuerNormalize fails it)."""
    try:
        text = assertion.decode("utf-8")
        if len(text) < 3:
            return None
        if text[0] == "{" and text[-1] == "}":
            serial, issuer = _gser_parts(text)
        else:
            serial, dollar, issuer = text.partition("$")
            serial = serial.lstrip("0") or serial[-1:]  # slapd eats leading zeros of the old form
            if not dollar or not serial.isdigit() or not serial.isascii():
                return None
        issuer_ndn = normalize_dn(issuer, schema)
        serial_hex = _serial_hex(_number_octets(serial))
    except (ValueError, DNError, UnicodeDecodeError):
        return None
    return None if serial_hex is None else _canonical(serial_hex, issuer_ndn)
