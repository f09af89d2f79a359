"""LDAP syntaxes (RFC 4517 section 3 and the extra ones slapd knows) and their value validators.

A `Syntax` is immutable and shared between schemas. Its `validate(value)` says whether a value (raw bytes as
they travel in LDAP) is well formed for the syntax. Syntaxes we know nothing about accept any value.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Validator = Callable[[bytes], bool]
Prettifier = Callable[[bytes], "bytes | None"]

# The common arc of the RFC 4517 syntaxes.
LDAP_SYNTAX = "1.3.6.1.4.1.1466.115.121.1."

DIRECTORY_STRING = LDAP_SYNTAX + "15"
IA5_STRING = LDAP_SYNTAX + "26"
DN_SYNTAX = LDAP_SYNTAX + "12"
OID_SYNTAX = LDAP_SYNTAX + "38"
OCTET_STRING = LDAP_SYNTAX + "40"
INTEGER_SYNTAX = LDAP_SYNTAX + "27"
BOOLEAN_SYNTAX = LDAP_SYNTAX + "7"
GENERALIZED_TIME = LDAP_SYNTAX + "24"
UUID_SYNTAX = "1.3.6.1.1.16.1"
CSN_SYNTAX = "1.3.6.1.4.1.4203.666.11.2.1"
CSN_SID_SYNTAX = "1.3.6.1.4.1.4203.666.11.2.4"
AUTHZ_SYNTAX = "1.3.6.1.4.1.4203.666.2.7"


class Syntax:
    """One LDAP syntax: its OID, a description, and a validator."""

    __slots__ = ("oid", "desc", "_validator", "pretty", "binary", "not_human_readable")

    def __init__(
        self,
        oid: str,
        desc: str = "",
        validator: Validator | None = None,
        *,
        pretty: Prettifier | None = None,
        binary: bool = False,
        not_human_readable: bool = False,
    ) -> None:
        self.oid = oid
        self.desc = desc
        self._validator = validator
        # slapd's ssyn_pretty where it changes a valid value (UUIDs lowercased): values are stored, and DN values
        # of the syntax written, in that form; None for a value the syntax refuses
        self.pretty = pretty
        # X-BINARY-TRANSFER-REQUIRED (certificates and friends) and X-NOT-HUMAN-READABLE, as slapd publishes.
        self.binary = binary
        self.not_human_readable = not_human_readable or binary

    def validate(self, value: bytes) -> bool:
        validator = self._validator
        if validator is None:
            return True
        try:
            return validator(value)
        except (ValueError, UnicodeError):
            return False

    @property
    def definition(self) -> str:
        parts = ["(", self.oid]
        if self.desc:
            parts.append(f"DESC '{self.desc}'")
        if self.binary:
            parts.append("X-BINARY-TRANSFER-REQUIRED 'TRUE'")
        if self.not_human_readable:
            parts.append("X-NOT-HUMAN-READABLE 'TRUE'")
        parts.append(")")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"Syntax({self.oid!r}, {self.desc!r})"


# --- validators -------------------------------------------------------------------------------------------


def _anything(value: bytes) -> bool:
    return True


def _non_empty(value: bytes) -> bool:
    return len(value) > 0


def _utf8(value: bytes) -> bool:
    if not value:
        return False
    if value.isascii():
        return True
    value.decode("utf-8")
    return True


def _ia5(value: bytes) -> bool:
    return value.isascii()


_PRINTABLE_RE = re.compile(rb"[A-Za-z0-9'()+,\-./:?= ]+\Z")
_NUMERIC_RE = re.compile(rb"[0-9 ]+\Z")
_INTEGER_RE = re.compile(rb"-?(0|[1-9][0-9]*)\Z")
_NUMERICOID_RE = re.compile(rb"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+\Z")
_DESCR_RE = re.compile(rb"[A-Za-z][A-Za-z0-9-]*\Z")
_BITSTRING_RE = re.compile(rb"'[01]*'B\Z")
_UUID_RE = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z")
_GENTIME_RE = re.compile(
    rb"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})"
    rb"(?:([0-9]{2})([0-9]{2})?)?"
    rb"(?:[.,]([0-9]+))?"
    rb"(Z|[+-][0-9]{2}(?:[0-9]{2})?)\Z"
)
_UTCTIME_RE = re.compile(rb"([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})?(Z|[+-][0-9]{4})\Z")
_CSN_RE = re.compile(rb"[0-9]{14}(?:\.[0-9]{6})?Z#[0-9A-Fa-f]{6}#[0-9A-Fa-f]{2,3}#[0-9A-Fa-f]{6}\Z")
_NETGROUP_RE = re.compile(rb"\(\s*[^,()\s]*\s*,\s*[^,()\s]*\s*,\s*[^,()\s]*\s*\)\Z")
_BOOTPARAM_RE = re.compile(rb"[^=\s]+=[^:\s]*:\S*\Z")
_DELIVERY_METHODS = frozenset(
    (b"any", b"mhs", b"physical", b"telex", b"teletex", b"g3fax", b"g4fax", b"ia5", b"videotex", b"telephone")
)


def is_printable(value: bytes) -> bool:
    return _PRINTABLE_RE.match(value) is not None


def _numeric(value: bytes) -> bool:
    return _NUMERIC_RE.match(value) is not None


def _integer(value: bytes) -> bool:
    return _INTEGER_RE.match(value) is not None and value != b"-0"


def _boolean(value: bytes) -> bool:
    return value in (b"TRUE", b"FALSE")


def is_oid(value: bytes) -> bool:
    """A numeric OID or a descriptor (keystring)."""
    return _NUMERICOID_RE.match(value) is not None or _DESCR_RE.match(value) is not None


def _dn(value: bytes) -> bool:
    from pyldapd.model.dn import parse_dn  # the dn module imports the schema; import late

    parse_dn(value.decode("utf-8"))
    return True


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def generalized_time_fields(value: bytes) -> tuple[int, int, int, int, int, int, bytes, bytes, bool] | None:
    """Split a GeneralizedTime into (year, month, day, hour, minute, second, fraction, zone, has_seconds).

    Returns None when the value is not a valid GeneralizedTime. Minutes and seconds absent are 0; `fraction`
    is the digits after the decimal mark (they are a fraction of the last unit present).
    """
    m = _GENTIME_RE.match(value)
    if m is None:
        return None
    year, month, day, hour = int(m[1]), int(m[2]), int(m[3]), int(m[4])
    minute = int(m[5]) if m[5] is not None else 0
    second = int(m[6]) if m[6] is not None else 0
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    zone = m[8]
    if zone != b"Z" and (int(zone[1:3]) > 23 or (len(zone) == 5 and int(zone[3:5]) > 59)):
        return None
    return year, month, day, hour, minute, second, m[7] or b"", zone, m[6] is not None


def _generalized_time(value: bytes) -> bool:
    return generalized_time_fields(value) is not None


def _utc_time(value: bytes) -> bool:
    m = _UTCTIME_RE.match(value)
    if m is None:
        return False
    month, day, hour, minute = int(m[2]), int(m[3]), int(m[4]), int(m[5])
    second = int(m[6]) if m[6] else 0
    return 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second <= 60


def _telephone(value: bytes) -> bool:
    return is_printable(value)


def _country(value: bytes) -> bool:
    return len(value) == 2 and is_printable(value)


def _bit_string(value: bytes) -> bool:
    return _BITSTRING_RE.match(value) is not None


def split_optional_uid(value: bytes) -> tuple[bytes, bytes | None]:
    """`dn#'0101'B` -> (dn, b"'0101'B"); a value without a trailing bit string -> (value, None)."""
    hash_pos = value.rfind(b"#")
    if hash_pos >= 0 and _BITSTRING_RE.match(value, hash_pos + 1):
        return value[:hash_pos], value[hash_pos + 1 :]
    return value, None


def _name_and_optional_uid(value: bytes) -> bool:
    dn, _uid = split_optional_uid(value)
    return _dn(dn)


def _uuid(value: bytes) -> bool:
    return _UUID_RE.match(value) is not None


def _uuid_pretty(value: bytes) -> bytes | None:
    """slapd's UUIDPretty: the hex digits lowercased."""
    return value.lower() if _UUID_RE.match(value) else None


def _csn(value: bytes) -> bool:
    if _CSN_RE.match(value) is None:
        return False
    return generalized_time_fields(value[: value.index(b"#")]) is not None


def _csn_sid(value: bytes) -> bool:
    return 0 < len(value) <= 3 and all(c in b"0123456789abcdefABCDEF" for c in value)


def _postal_address(value: bytes) -> bool:
    if not _utf8(value):
        return False
    return all(line for line in value.split(b"$"))


def _facsimile(value: bytes) -> bool:
    number = value.split(b"$", 1)[0]
    return is_printable(number.strip())


def _delivery_method(value: bytes) -> bool:
    methods = [p.strip() for p in value.split(b"$")]
    return bool(methods) and all(p in _DELIVERY_METHODS for p in methods)


def _other_mailbox(value: bytes) -> bool:
    kind, sep, address = value.partition(b"$")
    return bool(sep and kind and address) and value.isascii()


def _netgroup_triple(value: bytes) -> bool:
    return _NETGROUP_RE.match(value) is not None


def _boot_parameter(value: bytes) -> bool:
    return _BOOTPARAM_RE.match(value) is not None


def _description(value: bytes) -> bool:
    # Schema element descriptions: lenient, but they must look like a parenthesised list.
    stripped = value.strip()
    return stripped.startswith(b"(") and stripped.endswith(b")")


def _certificate(value: bytes) -> bool:
    from pyldapd.model.x509 import certificate_valid  # (x509 reads DNs: the dn module, imported late)

    return certificate_valid(value)


def _substring_assertion(value: bytes) -> bool:
    return len(value) > 0 and _utf8(value)


# Syntaxes slapd has neither a validator nor a pretty function for (schema_init.c syntax_defs): an assertion of
# such a syntax is "inappropriate matching" to slapd (value.c, asserted_value_validate_normalize), so a matching
# rule assertion under a rule of that syntax (caseIgnoreSubstringsMatch's Substring Assertion,
# presentationAddressMatch...) is Undefined.
UNCHECKED_ASSERTION_SYNTAXES = frozenset(
    [LDAP_SYNTAX + n for n in ("1", "2", "3", "13", "16", "17", "19", "20", "21", "23", "25", "29", "30")]
    + [
        LDAP_SYNTAX + n
        for n in ("31", "32", "33", "35", "37", "42", "43", "51", "54", "55", "56", "57", "58")
    ]
    + ["1.3.6.1.1.15.2", "1.3.6.1.1.15.3", "1.3.6.1.1.15.4", "1.3.6.1.1.15.6", "1.3.6.1.1.15.7"]
)

# Of those, the syntaxes whose values slapd stores from no client write at all (slap_mods_check: "no validator
# for syntax"; presentationAddress, searchGuide, ldapSyntaxes...), and the subschema descriptions it checks
# against an OID alone, which then fails to normalize: no value of attributeTypes & co. is ever written.
NO_VALIDATOR_SYNTAXES = UNCHECKED_ASSERTION_SYNTAXES - {
    LDAP_SYNTAX + n for n in ("3", "16", "30", "31", "37", "58")
}
FIRST_COMPONENT_ONLY_SYNTAXES = frozenset(LDAP_SYNTAX + n for n in ("3", "16", "30", "31", "37"))

# --- the table --------------------------------------------------------------------------------------------

_S = LDAP_SYNTAX
# (oid, description, validator, flags) - flags: "b" binary transfer required, "n" not human readable
_SYNTAX_TABLE: tuple[tuple[str, str, Validator | None, str], ...] = (
    (_S + "1", "ACI Item", None, "b"),
    (_S + "2", "Access Point", _non_empty, ""),
    (_S + "3", "Attribute Type Description", _description, ""),
    (_S + "4", "Audio", None, "n"),
    (_S + "5", "Binary", None, "n"),
    (_S + "6", "Bit String", _bit_string, ""),
    (_S + "7", "Boolean", _boolean, ""),
    (_S + "8", "Certificate", _certificate, "b"),
    (_S + "9", "Certificate List", None, "b"),
    (_S + "10", "Certificate Pair", None, "b"),
    (_S + "11", "Country String", _country, ""),
    (_S + "12", "Distinguished Name", _dn, ""),
    (_S + "13", "Data Quality", _non_empty, ""),
    (_S + "14", "Delivery Method", _delivery_method, ""),
    (_S + "15", "Directory String", _utf8, ""),
    (_S + "16", "DIT Content Rule Description", _description, ""),
    (_S + "17", "DIT Structure Rule Description", _description, ""),
    (_S + "19", "DSA Quality", _non_empty, ""),
    (_S + "20", "DSE Type", _non_empty, ""),
    (_S + "21", "Enhanced Guide", _non_empty, ""),
    (_S + "22", "Facsimile Telephone Number", _facsimile, ""),
    (_S + "23", "Fax", None, "n"),
    (_S + "24", "Generalized Time", _generalized_time, ""),
    (_S + "25", "Guide", _non_empty, ""),
    (_S + "26", "IA5 String", _ia5, ""),
    (_S + "27", "Integer", _integer, ""),
    (_S + "28", "JPEG", None, "n"),
    (_S + "30", "Matching Rule Description", _description, ""),
    (_S + "31", "Matching Rule Use Description", _description, ""),
    (_S + "34", "Name And Optional UID", _name_and_optional_uid, ""),
    (_S + "35", "Name Form Description", _description, ""),
    (_S + "36", "Numeric String", _numeric, ""),
    (_S + "37", "Object Class Description", _description, ""),
    (_S + "38", "OID", is_oid, ""),
    (_S + "39", "Other Mailbox", _other_mailbox, ""),
    (_S + "40", "Octet String", None, ""),
    (_S + "41", "Postal Address", _postal_address, ""),
    (_S + "42", "Protocol Information", _non_empty, ""),
    (_S + "43", "Presentation Address", _non_empty, ""),
    (_S + "44", "Printable String", is_printable, ""),
    (_S + "45", "SubtreeSpecification", None, ""),
    (_S + "49", "Supported Algorithm", None, "b"),
    (_S + "50", "Telephone Number", _telephone, ""),
    (_S + "51", "Teletex Terminal Identifier", _non_empty, ""),
    (_S + "52", "Telex Number", _non_empty, ""),
    (_S + "53", "UTC Time", _utc_time, ""),
    (_S + "54", "LDAP Syntax Description", _description, ""),
    (_S + "58", "Substring Assertion", _substring_assertion, ""),
    ("1.3.6.1.1.1.0.0", "RFC2307 NIS Netgroup Triple", _netgroup_triple, ""),
    ("1.3.6.1.1.1.0.1", "RFC2307 Boot Parameter", _boot_parameter, ""),
    ("1.3.6.1.1.15.1", "Certificate Exact Assertion", None, ""),
    ("1.3.6.1.1.15.2", "Certificate Assertion", None, ""),
    ("1.3.6.1.1.15.3", "Certificate Pair Exact Assertion", None, ""),
    ("1.3.6.1.1.15.4", "Certificate Pair Assertion", None, ""),
    ("1.3.6.1.1.15.5", "Certificate List Exact Assertion", None, ""),
    ("1.3.6.1.1.15.6", "Certificate List Assertion", None, ""),
    ("1.3.6.1.1.15.7", "Algorithm Identifier", None, ""),
    (UUID_SYNTAX, "UUID", _uuid, ""),
    (CSN_SYNTAX, "CSN", _csn, ""),
    (CSN_SID_SYNTAX, "CSN SID", _csn_sid, ""),
    ("1.3.6.1.4.1.4203.666.2.1", "OpenLDAP Experimental ACI", _non_empty, ""),
    (AUTHZ_SYNTAX, "OpenLDAP authz", _non_empty, ""),
    ("1.2.36.79672281.1.5.0", "RDN", _non_empty, ""),
)


_PRETTY: dict[str, Prettifier] = {UUID_SYNTAX: _uuid_pretty}


def builtin_syntaxes() -> list[Syntax]:
    """Fresh Syntax objects for every syntax known in code, in publication order."""
    return [
        Syntax(
            oid,
            desc,
            validator,
            pretty=_PRETTY.get(oid),
            binary="b" in flags,
            not_human_readable="n" in flags,
        )
        for oid, desc, validator, flags in _SYNTAX_TABLE
    ]
