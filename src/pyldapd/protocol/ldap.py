"""RFC 4511 messages: small dataclasses, and their BER encoding in both directions.

The server decodes requests and encodes responses; the replication consumer encodes requests and decodes
responses; ``decode_message`` and ``encode_message`` handle every protocolOp. ``decode_message`` raises only
``ProtocolError`` (a ``BERError``) for malformed input, carrying the messageID when it was decoded.

Hot-path helpers (``encode_partial_attribute_list``, ``encode_search_result_entry``, ``encode_result``) build
PDUs from pre-encoded parts without going through the dataclasses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from pyldapd.model.filter import (
    And,
    Approx,
    Equality,
    Extensible,
    Filter,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
)
from pyldapd.protocol.ber import (
    BERError,
    encode_boolean,
    encode_enumerated,
    encode_integer,
    encode_length,
    read_tlv,
    tlv,
)

MAX_INT = 2**31 - 1  # maxInt of RFC 4511
DEFAULT_MAX_FILTER_DEPTH = 64
# slapd's sockbuf_max_incoming (anonymous) and sockbuf_max_incoming_auth limit the content of a PDU; the
# framer limits the whole PDU, so add the largest header such a content needs (tag + 0x83 + 3 octets).
MAX_PDU_SIZE_ANONYMOUS = 262143 + 5
MAX_PDU_SIZE_AUTHENTICATED = 4194303 + 5

# protocolOp tags ([APPLICATION n])
BIND_REQUEST = 0x60
BIND_RESPONSE = 0x61
UNBIND_REQUEST = 0x42
SEARCH_REQUEST = 0x63
SEARCH_RESULT_ENTRY = 0x64
SEARCH_RESULT_DONE = 0x65
MODIFY_REQUEST = 0x66
MODIFY_RESPONSE = 0x67
ADD_REQUEST = 0x68
ADD_RESPONSE = 0x69
DEL_REQUEST = 0x4A
DEL_RESPONSE = 0x6B
MODIFY_DN_REQUEST = 0x6C
MODIFY_DN_RESPONSE = 0x6D
COMPARE_REQUEST = 0x6E
COMPARE_RESPONSE = 0x6F
ABANDON_REQUEST = 0x50
SEARCH_RESULT_REFERENCE = 0x73
EXTENDED_REQUEST = 0x77
EXTENDED_RESPONSE = 0x78
INTERMEDIATE_RESPONSE = 0x79

# Context tags inside operations
_CONTROLS = 0xA0
_new = object.__new__
_set_equality_attr = Equality.attr.__set__  # type: ignore[attr-defined]
_set_equality_value = Equality.value.__set__  # type: ignore[attr-defined]
_AUTH_SIMPLE = 0x80
_AUTH_SASL = 0xA3
_REFERRAL = 0xA3
_SERVER_SASL_CREDS = 0x87
_NEW_SUPERIOR = 0x80
_EXT_REQ_NAME = 0x80
_EXT_REQ_VALUE = 0x81
_EXT_RESP_NAME = 0x8A
_EXT_RESP_VALUE = 0x8B
_INTERMEDIATE_NAME = 0x80
_INTERMEDIATE_VALUE = 0x81

# Filter CHOICE tags
FILTER_AND = 0xA0
FILTER_OR = 0xA1
FILTER_NOT = 0xA2
FILTER_EQUALITY = 0xA3
FILTER_SUBSTRINGS = 0xA4
FILTER_GREATER_OR_EQUAL = 0xA5
FILTER_LESS_OR_EQUAL = 0xA6
FILTER_PRESENT = 0x87
FILTER_APPROX = 0xA8
FILTER_EXTENSIBLE = 0xA9
_SUB_INITIAL = 0x80
_SUB_ANY = 0x81
_SUB_FINAL = 0x82
_MRA_RULE = 0x81
_MRA_TYPE = 0x82
_MRA_VALUE = 0x83
_MRA_DN_ATTRIBUTES = 0x84

# SearchRequest scope and derefAliases
SCOPE_BASE_OBJECT = 0
SCOPE_SINGLE_LEVEL = 1
SCOPE_WHOLE_SUBTREE = 2
SCOPE_SUBORDINATE_SUBTREE = 3  # draft-sermersheim-ldap-subordinate-scope, as slapd
DEREF_NEVER = 0
DEREF_IN_SEARCHING = 1
DEREF_FINDING_BASE_OBJ = 2
DEREF_ALWAYS = 3

# ModifyRequest operations
MOD_ADD = 0
MOD_DELETE = 1
MOD_REPLACE = 2
MOD_INCREMENT = 3  # RFC 4525


class ProtocolError(BERError):
    """A PDU that is not a valid LDAPMessage. ``message_id`` is set when the messageID could be decoded."""

    def __init__(self, message: str, message_id: int | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class ResultCode(IntEnum):
    success = 0
    operationsError = 1
    protocolError = 2
    timeLimitExceeded = 3
    sizeLimitExceeded = 4
    compareFalse = 5
    compareTrue = 6
    authMethodNotSupported = 7
    strongerAuthRequired = 8
    referral = 10
    adminLimitExceeded = 11
    unavailableCriticalExtension = 12
    confidentialityRequired = 13
    saslBindInProgress = 14
    noSuchAttribute = 16
    undefinedAttributeType = 17
    inappropriateMatching = 18
    constraintViolation = 19
    attributeOrValueExists = 20
    invalidAttributeSyntax = 21
    noSuchObject = 32
    aliasProblem = 33
    invalidDNSyntax = 34
    aliasDereferencingProblem = 36
    inappropriateAuthentication = 48
    invalidCredentials = 49
    insufficientAccessRights = 50
    busy = 51
    unavailable = 52
    unwillingToPerform = 53
    loopDetect = 54
    namingViolation = 64
    objectClassViolation = 65
    notAllowedOnNonLeaf = 66
    notAllowedOnRDN = 67
    entryAlreadyExists = 68
    objectClassModsProhibited = 69
    affectsMultipleDSAs = 71
    other = 80
    cancelled = 118
    noSuchOperation = 119
    tooLate = 120
    cannotCancel = 121
    assertionFailed = 122
    syncRefreshRequired = 4096


# ---------------------------------------------------------------------------------------------------------------
# Message dataclasses


@dataclass(slots=True)
class Control:
    oid: str
    critical: bool = False
    value: bytes | None = None


@dataclass(slots=True)
class BindRequest:
    TAG: ClassVar[int] = BIND_REQUEST
    version: int
    name: str
    password: bytes | None = None  # simple authentication ([0]); None for SASL
    sasl_mechanism: str | None = None  # SASL ([3]) when not None
    sasl_credentials: bytes | None = None


@dataclass(slots=True)
class UnbindRequest:
    TAG: ClassVar[int] = UNBIND_REQUEST


@dataclass(slots=True)
class SearchRequest:
    TAG: ClassVar[int] = SEARCH_REQUEST
    base: str
    scope: int
    deref: int
    size_limit: int
    time_limit: int
    types_only: bool
    filter: Filter
    attributes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Change:
    operation: int  # MOD_ADD, MOD_DELETE, MOD_REPLACE, MOD_INCREMENT
    attr: str
    values: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class ModifyRequest:
    TAG: ClassVar[int] = MODIFY_REQUEST
    dn: str
    changes: list[Change] = field(default_factory=list)


@dataclass(slots=True)
class AddRequest:
    TAG: ClassVar[int] = ADD_REQUEST
    dn: str
    attributes: list[tuple[str, list[bytes]]] = field(default_factory=list)


@dataclass(slots=True)
class DelRequest:
    TAG: ClassVar[int] = DEL_REQUEST
    dn: str


@dataclass(slots=True)
class ModifyDNRequest:
    TAG: ClassVar[int] = MODIFY_DN_REQUEST
    dn: str
    new_rdn: str
    delete_old_rdn: bool
    new_superior: str | None = None


@dataclass(slots=True)
class CompareRequest:
    TAG: ClassVar[int] = COMPARE_REQUEST
    dn: str
    attr: str
    value: bytes


@dataclass(slots=True)
class AbandonRequest:
    TAG: ClassVar[int] = ABANDON_REQUEST
    message_id: int


@dataclass(slots=True)
class ExtendedRequest:
    TAG: ClassVar[int] = EXTENDED_REQUEST
    name: str
    value: bytes | None = None


@dataclass(slots=True)
class LDAPResult:
    """The components of RFC 4511's LDAPResult; each response type below adds its tag (and extra fields)."""

    TAG: ClassVar[int] = 0
    result_code: int
    matched_dn: str = ""
    message: str = ""
    referrals: list[str] | None = None


@dataclass(slots=True)
class BindResponse(LDAPResult):
    TAG: ClassVar[int] = BIND_RESPONSE
    server_sasl_creds: bytes | None = None


@dataclass(slots=True)
class SearchResultEntry:
    TAG: ClassVar[int] = SEARCH_RESULT_ENTRY
    dn: str
    attributes: list[tuple[str, list[bytes]]] = field(default_factory=list)


@dataclass(slots=True)
class SearchResultReference:
    TAG: ClassVar[int] = SEARCH_RESULT_REFERENCE
    uris: list[str]


@dataclass(slots=True)
class SearchResultDone(LDAPResult):
    TAG: ClassVar[int] = SEARCH_RESULT_DONE


@dataclass(slots=True)
class ModifyResponse(LDAPResult):
    TAG: ClassVar[int] = MODIFY_RESPONSE


@dataclass(slots=True)
class AddResponse(LDAPResult):
    TAG: ClassVar[int] = ADD_RESPONSE


@dataclass(slots=True)
class DelResponse(LDAPResult):
    TAG: ClassVar[int] = DEL_RESPONSE


@dataclass(slots=True)
class ModifyDNResponse(LDAPResult):
    TAG: ClassVar[int] = MODIFY_DN_RESPONSE


@dataclass(slots=True)
class CompareResponse(LDAPResult):
    TAG: ClassVar[int] = COMPARE_RESPONSE


@dataclass(slots=True)
class ExtendedResponse(LDAPResult):
    TAG: ClassVar[int] = EXTENDED_RESPONSE
    name: str | None = None
    value: bytes | None = None


@dataclass(slots=True)
class IntermediateResponse:
    TAG: ClassVar[int] = INTERMEDIATE_RESPONSE
    name: str | None = None
    value: bytes | None = None


ProtocolOp = (
    BindRequest
    | BindResponse
    | UnbindRequest
    | SearchRequest
    | SearchResultEntry
    | SearchResultReference
    | SearchResultDone
    | ModifyRequest
    | ModifyResponse
    | AddRequest
    | AddResponse
    | DelRequest
    | DelResponse
    | ModifyDNRequest
    | ModifyDNResponse
    | CompareRequest
    | CompareResponse
    | AbandonRequest
    | ExtendedRequest
    | ExtendedResponse
    | IntermediateResponse
)


@dataclass(slots=True)
class LDAPMessage:
    message_id: int
    op: ProtocolOp
    controls: list[Control] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Decoding primitives (offsets into one bytes object; errors are ProtocolError or BERError)


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """The content range of the TLV at ``pos``, which must have tag ``tag``."""
    if pos + 2 <= end and buf[pos] == tag:  # fast path: short-form length
        n = buf[pos + 1]
        if n < 0x80 and pos + 2 + n <= end:
            return pos + 2, pos + 2 + n
    t, start, stop = read_tlv(buf, pos, end)
    if t != tag:
        raise ProtocolError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
    return start, stop


def _str(buf: bytes, start: int, stop: int) -> str:
    try:
        return str(buf[start:stop], "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in an LDAPString") from None


def _uint(buf: bytes, start: int, stop: int) -> int:
    """An INTEGER (0 .. maxInt) or an ENUMERATED (which LDAP never makes negative)."""
    if not 0 < stop - start <= 5:
        raise ProtocolError("INTEGER out of range")
    n = int.from_bytes(buf[start:stop], "big", signed=True)
    if not 0 <= n <= MAX_INT:
        raise ProtocolError("INTEGER out of range")
    return n


def _bool(buf: bytes, start: int, stop: int) -> bool:
    if stop - start != 1:
        raise ProtocolError("BOOLEAN must have one content octet")
    return buf[start] != 0


def _read_string(buf: bytes, pos: int, end: int, tag: int = 0x04) -> tuple[str, int]:
    start, stop = _expect(buf, pos, end, tag)
    try:
        return str(buf[start:stop], "utf-8"), stop
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in an LDAPString") from None


def _read_octets(buf: bytes, pos: int, end: int, tag: int = 0x04) -> tuple[bytes, int]:
    start, stop = _expect(buf, pos, end, tag)
    return buf[start:stop], stop


def _read_uint(buf: bytes, pos: int, end: int, tag: int = 0x02) -> tuple[int, int]:
    if pos + 3 <= end and buf[pos] == tag and buf[pos + 1] == 1 and buf[pos + 2] < 0x80:  # fast path: 0..127
        return buf[pos + 2], pos + 3
    start, stop = _expect(buf, pos, end, tag)
    return _uint(buf, start, stop), stop


def _read_bool(buf: bytes, pos: int, end: int, tag: int = 0x01) -> tuple[bool, int]:
    start, stop = _expect(buf, pos, end, tag)
    return _bool(buf, start, stop), stop


def _at_end(pos: int, end: int) -> None:
    if pos != end:
        raise ProtocolError("unexpected trailing data")


def _read_string_list(buf: bytes, start: int, stop: int) -> list[str]:
    out = []
    pos = start
    while pos < stop:
        s, pos = _read_string(buf, pos, stop)
        out.append(s)
    return out


def _read_values(buf: bytes, start: int, stop: int) -> list[bytes]:
    """The content of a SET OF AttributeValue."""
    out = []
    pos = start
    while pos < stop:
        if buf[pos] != 0x04:
            raise ProtocolError("attribute value is not an OCTET STRING")
        n = buf[pos + 1] if pos + 1 < stop else 0x80
        if n < 0x80:  # fast path: short-form length
            pos += 2
            end = pos + n
            if end > stop:
                raise ProtocolError("truncated attribute value")
            out.append(buf[pos:end])
            pos = end
        else:
            _, s, pos = read_tlv(buf, pos, stop)
            out.append(buf[s:pos])
    return out


def _read_attribute_list(buf: bytes, start: int, stop: int) -> list[tuple[str, list[bytes]]]:
    """(Partial)AttributeList content: SEQUENCE OF SEQUENCE { type AttributeDescription, vals SET OF value }."""
    out = []
    pos = start
    while pos < stop:
        s, pos = _expect(buf, pos, stop, 0x30)
        ts, te = _expect(buf, s, pos, 0x04)
        try:
            name = str(buf[ts:te], "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8 in an attribute description") from None
        vs, ve = _expect(buf, te, pos, 0x31)
        if ve != pos:
            raise ProtocolError("unexpected data after an attribute's values")
        out.append((name, _read_values(buf, vs, ve)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Filters


def _read_ava(buf: bytes, start: int, stop: int) -> tuple[str, bytes]:
    attr, pos = _read_string(buf, start, stop)
    value, pos = _read_octets(buf, pos, stop)
    _at_end(pos, stop)
    return attr, value


def _read_substrings(buf: bytes, start: int, stop: int) -> Substrings:
    attr, pos = _read_string(buf, start, stop)
    ss, se = _expect(buf, pos, stop, 0x30)
    _at_end(se, stop)
    initial: bytes | None = None
    final: bytes | None = None
    anys: list[bytes] = []
    pos = ss
    first = True
    while pos < se:
        if final is not None:
            raise ProtocolError("substring after final")
        tag, s, pos = read_tlv(buf, pos, se)
        if tag == _SUB_ANY:
            anys.append(buf[s:pos])
        elif tag == _SUB_INITIAL and first:
            initial = buf[s:pos]
        elif tag == _SUB_FINAL:
            final = buf[s:pos]
        else:
            raise ProtocolError("misplaced or unknown substring choice")
        first = False
    if first:
        raise ProtocolError("empty substrings")
    return Substrings(attr, initial, tuple(anys), final)


def _read_extensible(buf: bytes, start: int, stop: int) -> Extensible:
    items = {}
    pos = start
    last = 0
    while pos < stop:
        tag, s, pos = read_tlv(buf, pos, stop)
        if not _MRA_RULE <= tag <= _MRA_DN_ATTRIBUTES or tag <= last:
            raise ProtocolError("bad MatchingRuleAssertion")
        last = tag
        items[tag] = (s, pos)
    if _MRA_VALUE not in items:
        raise ProtocolError("MatchingRuleAssertion without matchValue")
    if _MRA_RULE not in items and _MRA_TYPE not in items:
        raise ProtocolError("MatchingRuleAssertion needs a matchingRule or a type")
    rule = _str(buf, *items[_MRA_RULE]) if _MRA_RULE in items else None
    attr = _str(buf, *items[_MRA_TYPE]) if _MRA_TYPE in items else None
    vs, ve = items[_MRA_VALUE]
    dn_attributes = _bool(buf, *items[_MRA_DN_ATTRIBUTES]) if _MRA_DN_ATTRIBUTES in items else False
    return Extensible(rule, attr, buf[vs:ve], dn_attributes)


class FilterDepthError(ProtocolError):
    """A filter nested deeper than allowed (slapd: protocolError, "filter nested too deeply")."""


def _read_filter(buf: bytes, pos: int, end: int, depth: int) -> tuple[Filter, int]:
    """Decode the Filter TLV at ``pos``; ``depth`` is the and/or/not levels still allowed (slapd's count: with
    maxfilterdepth 1000, 1000 nested sets around a simple filter are answered, 1001 are not)."""
    tag, start, stop = read_tlv(buf, pos, end)
    if tag == FILTER_EQUALITY:
        return Equality(*_read_ava(buf, start, stop)), stop
    if tag == FILTER_PRESENT:
        return Present(_str(buf, start, stop)), stop
    if depth <= 0 and tag in (FILTER_AND, FILTER_OR, FILTER_NOT):
        raise FilterDepthError("filter nested too deeply")
    if tag == FILTER_AND or tag == FILTER_OR:
        parts = []
        p = start
        names: dict[bytes, str] = {}  # the attribute names of its equality terms, decoded once
        # the bytes between an equality term's length and its value's length when it names the same attribute as
        # the term before: 04 <name length> <name> 04 (a large OR names one attribute 10,000 times)
        same = b"\xff"
        same_name = ""
        skip = 0
        while p < stop:
            # an equality term with short lengths, the bulk of a large OR (10,000 uid= terms), read inline: the
            # same checks as _read_ava, without its calls (about half the decoding time of such a filter)
            if buf[p] == FILTER_EQUALITY and p + 2 <= stop and buf[p + 1] < 0x80:
                e = p + 2 + buf[p + 1]
                if e <= stop:
                    k = p + skip
                    if k < e and buf[k] == e - k - 1 and buf.startswith(same, p + 2):
                        eq = _new(Equality)  # as Equality(...) without its frozen __init__'s setattr calls
                        _set_equality_attr(eq, same_name)
                        _set_equality_value(eq, buf[k + 1 : e])
                        parts.append(eq)
                        p = e
                        continue
                    s = p + 2
                    if s + 2 <= e and buf[s] == 0x04 and buf[s + 1] < 0x80:
                        a = s + 2 + buf[s + 1]
                        if a + 2 <= e and buf[a] == 0x04 and buf[a + 1] < 0x80 and a + 2 + buf[a + 1] == e:
                            raw = buf[s + 2 : a]
                            name = names.get(raw)
                            if name is None:
                                try:
                                    name = names[raw] = str(raw, "utf-8")
                                except UnicodeDecodeError:
                                    raise ProtocolError("invalid UTF-8 in an LDAPString") from None
                            parts.append(Equality(name, buf[a + 2 : e]))
                            same = buf[s : a + 1]
                            same_name = name
                            skip = a + 1 - p
                            p = e
                            continue
            f, p = _read_filter(buf, p, stop, depth - 1)
            parts.append(f)
        return (And if tag == FILTER_AND else Or)(tuple(parts)), stop
    if tag == FILTER_NOT:
        f, p = _read_filter(buf, start, stop, depth - 1)
        _at_end(p, stop)
        return Not(f), stop
    if tag == FILTER_SUBSTRINGS:
        return _read_substrings(buf, start, stop), stop
    if tag == FILTER_GREATER_OR_EQUAL:
        return GreaterOrEqual(*_read_ava(buf, start, stop)), stop
    if tag == FILTER_LESS_OR_EQUAL:
        return LessOrEqual(*_read_ava(buf, start, stop)), stop
    if tag == FILTER_APPROX:
        return Approx(*_read_ava(buf, start, stop)), stop
    if tag == FILTER_EXTENSIBLE:
        return _read_extensible(buf, start, stop), stop
    raise ProtocolError(f"unknown filter choice 0x{tag:02x}")


def decode_filter(data: bytes, max_depth: int = DEFAULT_MAX_FILTER_DEPTH) -> Filter:
    """Decode one Filter TLV (e.g. the value of an Assertion control)."""
    buf = bytes(data)
    try:
        f, pos = _read_filter(buf, 0, len(buf), max_depth)
        _at_end(pos, len(buf))
        return f
    except ProtocolError:
        raise
    except BERError as exc:
        raise ProtocolError(str(exc)) from None


def _ava(tag: int, attr: str, value: bytes) -> bytes:
    return tlv(tag, tlv(0x04, attr.encode()) + tlv(0x04, value))


def encode_filter(f: Filter) -> bytes:
    """Encode a filter AST as its Filter TLV."""
    t = type(f)
    if t is Equality:
        return _ava(FILTER_EQUALITY, f.attr, f.value)  # type: ignore[union-attr]
    if t is Present:
        return tlv(FILTER_PRESENT, f.attr.encode())  # type: ignore[union-attr]
    if t is And or t is Or:
        tag = FILTER_AND if t is And else FILTER_OR
        return tlv(tag, b"".join([encode_filter(x) for x in f.filters]))  # type: ignore[union-attr]
    if t is Not:
        return tlv(FILTER_NOT, encode_filter(f.filter))  # type: ignore[union-attr]
    if t is Substrings:
        return _encode_substrings(f)  # type: ignore[arg-type]
    if t is GreaterOrEqual:
        return _ava(FILTER_GREATER_OR_EQUAL, f.attr, f.value)  # type: ignore[union-attr]
    if t is LessOrEqual:
        return _ava(FILTER_LESS_OR_EQUAL, f.attr, f.value)  # type: ignore[union-attr]
    if t is Approx:
        return _ava(FILTER_APPROX, f.attr, f.value)  # type: ignore[union-attr]
    if t is Extensible:
        return _encode_extensible(f)  # type: ignore[arg-type]
    raise TypeError(f"not a filter: {f!r}")


def _encode_substrings(f: Substrings) -> bytes:
    parts = []
    if f.initial is not None:
        parts.append(tlv(_SUB_INITIAL, f.initial))
    parts.extend(tlv(_SUB_ANY, a) for a in f.any)
    if f.final is not None:
        parts.append(tlv(_SUB_FINAL, f.final))
    return tlv(FILTER_SUBSTRINGS, tlv(0x04, f.attr.encode()) + tlv(0x30, b"".join(parts)))


def _encode_extensible(f: Extensible) -> bytes:
    parts = []
    if f.rule is not None:
        parts.append(tlv(_MRA_RULE, f.rule.encode()))
    if f.attr is not None:
        parts.append(tlv(_MRA_TYPE, f.attr.encode()))
    parts.append(tlv(_MRA_VALUE, f.value))
    if f.dn_attributes:
        parts.append(encode_boolean(True, _MRA_DN_ATTRIBUTES))
    return tlv(FILTER_EXTENSIBLE, b"".join(parts))


# ---------------------------------------------------------------------------------------------------------------
# protocolOp decoders: (buf, start, stop of the op's content, max filter depth) -> op


def _decode_bind_request(buf: bytes, start: int, stop: int, depth: int) -> BindRequest:
    pos = start
    vs, pos = _expect(buf, pos, stop, 0x02)
    version = _uint(buf, vs, pos)
    if not 1 <= version <= 127:
        raise ProtocolError("bind version out of range")
    name, pos = _read_string(buf, pos, stop)
    tag, s, e = read_tlv(buf, pos, stop)
    _at_end(e, stop)
    if tag == _AUTH_SIMPLE:
        return BindRequest(version, name, buf[s:e])
    if tag == _AUTH_SASL:
        mechanism, p = _read_string(buf, s, e)
        credentials = None
        if p < e:
            credentials, p = _read_octets(buf, p, e)
        _at_end(p, e)
        return BindRequest(version, name, None, mechanism, credentials)
    raise ProtocolError(f"unsupported authentication choice 0x{tag:02x}")


def _decode_unbind_request(buf: bytes, start: int, stop: int, depth: int) -> UnbindRequest:
    _at_end(start, stop)
    return UnbindRequest()


def _decode_search_request(buf: bytes, start: int, stop: int, depth: int) -> SearchRequest:
    common = _read_common_search(buf, start, stop)
    if common is not None:
        return common
    base, pos = _read_string(buf, start, stop)
    scope, pos = _read_uint(buf, pos, stop, 0x0A)
    deref, pos = _read_uint(buf, pos, stop, 0x0A)
    size_limit, pos = _read_uint(buf, pos, stop)
    time_limit, pos = _read_uint(buf, pos, stop)
    types_only, pos = _read_bool(buf, pos, stop)
    flt, pos = _read_filter(buf, pos, stop, depth)
    s, e = _expect(buf, pos, stop, 0x30)
    _at_end(e, stop)
    return SearchRequest(
        base, scope, deref, size_limit, time_limit, types_only, flt, _read_string_list(buf, s, e)
    )


# what follows a common search's base: scope, deref, sizeLimit (0 to 127), timeLimit (0 to 127), typesOnly, each
# in one content octet; an equality filter with a short length, its attribute description's short length
_COMMON_SEARCH_REST = re.compile(
    rb"\x0a\x01[\x00-\x7f]\x0a\x01[\x00-\x7f]\x02\x01[\x00-\x7f]\x02\x01[\x00-\x7f]\x01\x01.\xa3[\x00-\x7f]\x04[\x00-\x7f]",
    re.DOTALL,
)


def _read_common_search(buf: bytes, start: int, stop: int) -> SearchRequest | None:
    """The search most clients send, read inline: a base with a short length; scope, deref, both limits (0 to
    127) and typesOnly in one content octet each; one equality filter with short lengths; no attribute list.
    The same checks as the general reading, without its two dozen calls (half of such a request's decoding);
    None for any other request, which the general reading then decodes (or refuses)."""
    if stop - start < 23 or buf[start] != 0x04 or buf[start + 1] >= 0x80:
        return None
    q = start + 2 + buf[start + 1]  # scope ... typesOnly: 0a 01 s 0a 01 d 02 01 n 02 01 t 01 01 b
    r = q + 15  # the filter: a3 <length> 04 <length> <description> 04 <length> <value>
    if _COMMON_SEARCH_REST.match(buf, q, stop) is None:
        return None
    e = r + 2 + buf[r + 1]  # the filter's end: then an empty attribute list, 30 00, ends the request
    a = r + 4 + buf[r + 3]  # the attribute description's end, the value's start
    if not (e + 2 == stop and buf[e] == 0x30 and buf[e + 1] == 0 and a + 2 <= e and buf[a] == 0x04
            and buf[a + 1] == e - a - 2):  # fmt: skip
        return None
    try:
        base, attr = buf[start + 2 : q].decode("utf-8"), buf[r + 4 : a].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in an LDAPString") from None
    equality = _new(Equality)  # as Equality(...) without its frozen __init__'s setattr calls
    _set_equality_attr(equality, attr)
    _set_equality_value(equality, buf[a + 2 : e])
    return SearchRequest(
        base, buf[q + 2], buf[q + 5], buf[q + 8], buf[q + 11], buf[q + 14] != 0, equality, []
    )


def _decode_modify_request(buf: bytes, start: int, stop: int, depth: int) -> ModifyRequest:
    dn, pos = _read_string(buf, start, stop)
    cs, ce = _expect(buf, pos, stop, 0x30)
    _at_end(ce, stop)
    changes = []
    pos = cs
    while pos < ce:
        s, pos = _expect(buf, pos, ce, 0x30)
        operation, p = _read_uint(buf, s, pos, 0x0A)
        ms, me = _expect(buf, p, pos, 0x30)
        _at_end(me, pos)
        ((attr, values),) = _read_attribute_list_one(buf, ms, me)
        changes.append(Change(operation, attr, values))
    return ModifyRequest(dn, changes)


def _read_attribute_list_one(buf: bytes, start: int, stop: int) -> list[tuple[str, list[bytes]]]:
    """The content of one PartialAttribute SEQUENCE."""
    name, p = _read_string(buf, start, stop)
    vs, ve = _expect(buf, p, stop, 0x31)
    _at_end(ve, stop)
    return [(name, _read_values(buf, vs, ve))]


def _decode_add_request(buf: bytes, start: int, stop: int, depth: int) -> AddRequest:
    dn, pos = _read_string(buf, start, stop)
    s, e = _expect(buf, pos, stop, 0x30)
    _at_end(e, stop)
    return AddRequest(dn, _read_attribute_list(buf, s, e))


def _decode_del_request(buf: bytes, start: int, stop: int, depth: int) -> DelRequest:
    return DelRequest(_str(buf, start, stop))


def _decode_modify_dn_request(buf: bytes, start: int, stop: int, depth: int) -> ModifyDNRequest:
    dn, pos = _read_string(buf, start, stop)
    new_rdn, pos = _read_string(buf, pos, stop)
    delete_old_rdn, pos = _read_bool(buf, pos, stop)
    new_superior = None
    if pos < stop:
        new_superior, pos = _read_string(buf, pos, stop, _NEW_SUPERIOR)
    _at_end(pos, stop)
    return ModifyDNRequest(dn, new_rdn, delete_old_rdn, new_superior)


def _decode_compare_request(buf: bytes, start: int, stop: int, depth: int) -> CompareRequest:
    dn, pos = _read_string(buf, start, stop)
    s, e = _expect(buf, pos, stop, 0x30)
    _at_end(e, stop)
    attr, value = _read_ava(buf, s, e)
    return CompareRequest(dn, attr, value)


def _decode_abandon_request(buf: bytes, start: int, stop: int, depth: int) -> AbandonRequest:
    return AbandonRequest(_uint(buf, start, stop))


def _decode_extended_request(buf: bytes, start: int, stop: int, depth: int) -> ExtendedRequest:
    name, pos = _read_string(buf, start, stop, _EXT_REQ_NAME)
    value = None
    if pos < stop:
        value, pos = _read_octets(buf, pos, stop, _EXT_REQ_VALUE)
    _at_end(pos, stop)
    return ExtendedRequest(name, value)


def _read_ldap_result(buf: bytes, start: int, stop: int) -> tuple[int, str, str, list[str] | None, int]:
    code, pos = _read_uint(buf, start, stop, 0x0A)
    matched_dn, pos = _read_string(buf, pos, stop)
    message, pos = _read_string(buf, pos, stop)
    referrals = None
    if pos < stop and buf[pos] == _REFERRAL:
        s, pos = _expect(buf, pos, stop, _REFERRAL)
        referrals = _read_string_list(buf, s, pos)
    return code, matched_dn, message, referrals, pos


def _result_decoder(cls: type[LDAPResult]) -> Callable[[bytes, int, int, int], LDAPResult]:
    def decode(buf: bytes, start: int, stop: int, depth: int) -> LDAPResult:
        code, matched_dn, message, referrals, pos = _read_ldap_result(buf, start, stop)
        _at_end(pos, stop)
        return cls(code, matched_dn, message, referrals)

    return decode


def _decode_bind_response(buf: bytes, start: int, stop: int, depth: int) -> BindResponse:
    code, matched_dn, message, referrals, pos = _read_ldap_result(buf, start, stop)
    creds = None
    if pos < stop:
        creds, pos = _read_octets(buf, pos, stop, _SERVER_SASL_CREDS)
    _at_end(pos, stop)
    return BindResponse(code, matched_dn, message, referrals, creds)


def _decode_extended_response(buf: bytes, start: int, stop: int, depth: int) -> ExtendedResponse:
    code, matched_dn, message, referrals, pos = _read_ldap_result(buf, start, stop)
    name = value = None
    if pos < stop and buf[pos] == _EXT_RESP_NAME:
        name, pos = _read_string(buf, pos, stop, _EXT_RESP_NAME)
    if pos < stop:
        value, pos = _read_octets(buf, pos, stop, _EXT_RESP_VALUE)
    _at_end(pos, stop)
    return ExtendedResponse(code, matched_dn, message, referrals, name, value)


def _decode_intermediate_response(buf: bytes, start: int, stop: int, depth: int) -> IntermediateResponse:
    name = value = None
    pos = start
    if pos < stop and buf[pos] == _INTERMEDIATE_NAME:
        name, pos = _read_string(buf, pos, stop, _INTERMEDIATE_NAME)
    if pos < stop:
        value, pos = _read_octets(buf, pos, stop, _INTERMEDIATE_VALUE)
    _at_end(pos, stop)
    return IntermediateResponse(name, value)


def _decode_search_result_entry(buf: bytes, start: int, stop: int, depth: int) -> SearchResultEntry:
    dn, pos = _read_string(buf, start, stop)
    s, e = _expect(buf, pos, stop, 0x30)
    _at_end(e, stop)
    return SearchResultEntry(dn, _read_attribute_list(buf, s, e))


def _decode_search_result_reference(buf: bytes, start: int, stop: int, depth: int) -> SearchResultReference:
    uris = _read_string_list(buf, start, stop)
    if not uris:
        raise ProtocolError("empty SearchResultReference")
    return SearchResultReference(uris)


_OP_DECODERS = {
    BIND_REQUEST: _decode_bind_request,
    BIND_RESPONSE: _decode_bind_response,
    UNBIND_REQUEST: _decode_unbind_request,
    SEARCH_REQUEST: _decode_search_request,
    SEARCH_RESULT_ENTRY: _decode_search_result_entry,
    SEARCH_RESULT_DONE: _result_decoder(SearchResultDone),
    MODIFY_REQUEST: _decode_modify_request,
    MODIFY_RESPONSE: _result_decoder(ModifyResponse),
    ADD_REQUEST: _decode_add_request,
    ADD_RESPONSE: _result_decoder(AddResponse),
    DEL_REQUEST: _decode_del_request,
    DEL_RESPONSE: _result_decoder(DelResponse),
    MODIFY_DN_REQUEST: _decode_modify_dn_request,
    MODIFY_DN_RESPONSE: _result_decoder(ModifyDNResponse),
    COMPARE_REQUEST: _decode_compare_request,
    COMPARE_RESPONSE: _result_decoder(CompareResponse),
    ABANDON_REQUEST: _decode_abandon_request,
    SEARCH_RESULT_REFERENCE: _decode_search_result_reference,
    EXTENDED_REQUEST: _decode_extended_request,
    EXTENDED_RESPONSE: _decode_extended_response,
    INTERMEDIATE_RESPONSE: _decode_intermediate_response,
}


def _decode_controls(buf: bytes, start: int, stop: int) -> list[Control]:
    controls = []
    pos = start
    while pos < stop:
        s, pos = _expect(buf, pos, stop, 0x30)
        oid, p = _read_string(buf, s, pos)
        critical = False
        value = None
        if p < pos and buf[p] == 0x01:
            critical, p = _read_bool(buf, p, pos)
        if p < pos:
            value, p = _read_octets(buf, p, pos)
        _at_end(p, pos)
        controls.append(Control(oid, critical, value))
    return controls


def _short_envelope(buf: bytes, end: int) -> int:
    """Where the protocolOp of a message of under 128 octets without controls begins, its envelope read inline
    (30 <length> 02 <1 to 4> <messageID, 0 to maxInt> <protocolOp, a short length to the end>); 0 for any other
    message, which the general reading then decodes (or refuses)."""
    if not (7 <= end < 0x82 and buf[0] == 0x30 and buf[1] == end - 2 and buf[2] == 0x02 and 0 < buf[3] <= 4
            and buf[4] < 0x80):  # fmt: skip
        return 0
    pos = 4 + buf[3]
    return pos if pos + 2 <= end and buf[pos + 1] == end - pos - 2 else 0


def decode_message(pdu: bytes, max_filter_depth: int = DEFAULT_MAX_FILTER_DEPTH) -> LDAPMessage:
    """Decode one complete LDAPMessage PDU (as returned by ``MessageFramer.feed``).

    Raises ProtocolError (and nothing else) for malformed input; its ``message_id`` is set when known.
    """
    buf = pdu if type(pdu) is bytes else bytes(pdu)
    message_id = None
    try:
        end = len(buf)
        pos = _short_envelope(buf, end)  # a short request: its envelope read inline, when it can be
        decoder = _OP_DECODERS.get(buf[pos]) if pos else None
        if decoder is not None:
            message_id = int.from_bytes(buf[4:pos], "big")
            return LDAPMessage(message_id, decoder(buf, pos + 2, end, max_filter_depth), [])
        start, stop = _expect(buf, 0, end, 0x30)
        _at_end(stop, end)
        ms, pos = _expect(buf, start, stop, 0x02)
        message_id = _uint(buf, ms, pos)
        op_tag, os_, oe = read_tlv(buf, pos, stop)
        decoder = _OP_DECODERS.get(op_tag)
        if decoder is None:
            raise ProtocolError(f"unknown protocolOp 0x{op_tag:02x}")
        op = decoder(buf, os_, oe, max_filter_depth)
        controls = []
        if oe < stop:
            cs, ce = _expect(buf, oe, stop, _CONTROLS)
            _at_end(ce, stop)
            controls = _decode_controls(buf, cs, ce)
        return LDAPMessage(message_id, op, controls)
    except ProtocolError as exc:
        if exc.message_id is None:
            exc.message_id = message_id
        raise
    except BERError as exc:
        raise ProtocolError(str(exc), message_id) from None
    except (ValueError, IndexError, TypeError, OverflowError, RecursionError) as exc:  # defence in depth
        raise ProtocolError(f"malformed PDU: {exc!r}", message_id) from None


def decode_protocol_op(data: bytes, max_filter_depth: int = DEFAULT_MAX_FILTER_DEPTH) -> ProtocolOp:
    """Decode a bare protocolOp TLV (e.g. the SearchResultEntry in a Pre-Read/Post-Read response control)."""
    buf = bytes(data)
    try:
        tag, start, stop = read_tlv(buf, 0, len(buf))
        _at_end(stop, len(buf))
        decoder = _OP_DECODERS.get(tag)
        if decoder is None:
            raise ProtocolError(f"unknown protocolOp 0x{tag:02x}")
        return decoder(buf, start, stop, max_filter_depth)
    except ProtocolError:
        raise
    except BERError as exc:
        raise ProtocolError(str(exc)) from None
    except (ValueError, IndexError, TypeError, OverflowError, RecursionError) as exc:
        raise ProtocolError(f"malformed protocolOp: {exc!r}") from None


# ---------------------------------------------------------------------------------------------------------------
# Encoding


def _s(value: str, tag: int = 0x04) -> bytes:
    return tlv(tag, value.encode("utf-8"))


def _encode_string_list(values: Iterable[str]) -> bytes:
    return b"".join([tlv(0x04, v.encode("utf-8")) for v in values])


def encode_partial_attribute_list(attrs: Iterable[tuple[str, Sequence[bytes]]]) -> bytes:
    """The PartialAttribute TLVs of an attribute list, concatenated, without the outer SEQUENCE.

    Two such blobs concatenate into a valid list; ``encode_search_result_entry`` wraps one.
    """
    return b"".join([encode_partial_attribute(name, encode_values(values)) for name, values in attrs])


def encode_values(values: Iterable[bytes]) -> bytes:
    """The content of a SET OF AttributeValue: the values' OCTET STRING TLVs, concatenated (two such contents
    concatenate into the content of both sets' values)."""
    octets = _OCTETS_SHORT
    return b"".join(
        [octets[len(v)] + v if len(v) < 0x80 else b"\x04" + encode_length(len(v)) + v for v in values]
    )


def encode_partial_attribute(name: str, values_content: bytes) -> bytes:
    """One PartialAttribute TLV of a description and the content of its SET of values (``encode_values``)."""
    type_ = name.encode("utf-8")
    n = len(type_)
    head = _OCTETS_SHORT[n] + type_ if n < 0x80 else b"\x04" + encode_length(n) + type_
    n = len(values_content)
    body = head + (
        _SET_SHORT[n] + values_content if n < 0x80 else b"\x31" + encode_length(n) + values_content
    )
    n = len(body)
    return _SEQ_SHORT[n] + body if n < 0x80 else b"\x30" + encode_length(n) + body


# tag + short length headers of OCTET STRING, SET and SEQUENCE TLVs
_OCTETS_SHORT = [bytes((0x04, n)) for n in range(0x80)]
_SET_SHORT = [bytes((0x31, n)) for n in range(0x80)]
_SEQ_SHORT = [bytes((0x30, n)) for n in range(0x80)]


def decode_partial_attribute_list(blob: bytes) -> list[tuple[str, list[bytes]]]:
    """Inverse of ``encode_partial_attribute_list``."""
    buf = bytes(blob)
    try:
        return _read_attribute_list(buf, 0, len(buf))
    except ProtocolError:
        raise
    except BERError as exc:
        raise ProtocolError(str(exc)) from None


def index_partial_attribute_list(blob: bytes) -> list[tuple[str, int, int, int]]:
    """``(attribute description, start, values start, stop)`` of each PartialAttribute TLV in ``blob``, values not
    decoded: ``blob[values start:stop]`` is the content of its SET of values.

    ``blob[start:stop]`` slices concatenate into a new blob, so a search that asks for some attributes of a
    stored entry can answer without re-encoding anything, and a write can keep the encoding of the values it
    did not change.
    """
    buf = bytes(blob)
    try:
        out = []
        pos = 0
        end = len(buf)
        while pos < end:
            s, stop = _expect(buf, pos, end, 0x30)
            name, p = _read_string(buf, s, stop)
            vs, ve = _expect(buf, p, stop, 0x31)
            _at_end(ve, stop)
            out.append((name, pos, vs, stop))
            pos = stop
        return out
    except ProtocolError:
        raise
    except BERError as exc:
        raise ProtocolError(str(exc)) from None


def decode_values(blob: bytes, start: int, stop: int) -> list[bytes]:
    """The values of the SET OF AttributeValue content ``blob[start:stop]`` (see ``index_partial_attribute_list``)."""
    try:
        return _read_values(blob, start, stop)
    except ProtocolError:
        raise
    except BERError as exc:
        raise ProtocolError(str(exc)) from None


def _encode_controls(controls: Sequence[Control]) -> bytes:
    parts = []
    for c in controls:
        body = _s(c.oid)
        if c.critical:
            body += encode_boolean(True)
        if c.value is not None:
            body += tlv(0x04, c.value)
        parts.append(tlv(0x30, body))
    return tlv(_CONTROLS, b"".join(parts))


def _wrap(message_id: int, op: bytes, controls: Sequence[Control] | None) -> bytes:
    body = encode_integer(message_id) + op
    if controls:
        body += _encode_controls(controls)
    return tlv(0x30, body)


def encode_search_result_entry(
    message_id: int, dn: str, attribute_blob: bytes, controls: Sequence[Control] | None = None
) -> bytes:
    """A SearchResultEntry PDU around a pre-encoded PartialAttribute blob, copying the blob once."""
    dn_tlv = tlv(0x04, dn.encode("utf-8"))
    attrs_hdr = b"\x30" + encode_length(len(attribute_blob))
    op_len = len(dn_tlv) + len(attrs_hdr) + len(attribute_blob)
    op_hdr = b"\x64" + encode_length(op_len)
    mid = encode_integer(message_id)
    ctrl = _encode_controls(controls) if controls else b""
    total = len(mid) + len(op_hdr) + op_len + len(ctrl)
    return b"".join((b"\x30", encode_length(total), mid, op_hdr, dn_tlv, attrs_hdr, attribute_blob, ctrl))


def _ldap_result(result_code: int, matched_dn: str, message: str, referrals: Sequence[str] | None) -> bytes:
    body = encode_enumerated(result_code) + _s(matched_dn) + _s(message)
    if referrals:
        body += tlv(_REFERRAL, _encode_string_list(referrals))
    return body


def encode_result(
    message_id: int,
    op_tag: int,
    result_code: int,
    matched_dn: str = "",
    message: str = "",
    referrals: Sequence[str] | None = None,
    extra: bytes = b"",
    controls: Sequence[Control] | None = None,
) -> bytes:
    """A response PDU made of an LDAPResult (plus ``extra``: encoded trailing components, e.g. serverSaslCreds
    or responseName/responseValue) under ``op_tag``, e.g. ``SEARCH_RESULT_DONE``."""
    if referrals or extra:
        op = tlv(op_tag, _ldap_result(result_code, matched_dn, message, referrals) + extra)
    else:  # most results are one of a few (success, empty texts): their protocolOp is encoded once
        key = (op_tag, result_code, matched_dn, message)
        op = _RESULT_OPS.get(key)
        if op is None:
            op = tlv(op_tag, _ldap_result(result_code, matched_dn, message, None))
            if len(_RESULT_OPS) >= 1024:
                _RESULT_OPS.clear()
            if len(matched_dn) + len(message) <= 256:
                _RESULT_OPS[key] = op
    return _wrap(message_id, op, controls)


_RESULT_OPS: dict[tuple[int, int, str, str], bytes] = {}  # (op tag, code, matchedDN, text) -> protocolOp


def _encode_bind_request(op: BindRequest) -> bytes:
    body = encode_integer(op.version) + _s(op.name)
    if op.sasl_mechanism is not None:
        sasl = _s(op.sasl_mechanism)
        if op.sasl_credentials is not None:
            sasl += tlv(0x04, op.sasl_credentials)
        body += tlv(_AUTH_SASL, sasl)
    else:
        body += tlv(_AUTH_SIMPLE, op.password or b"")
    return tlv(BIND_REQUEST, body)


def _encode_unbind_request(op: UnbindRequest) -> bytes:
    return b"\x42\x00"


def _encode_search_request(op: SearchRequest) -> bytes:
    body = b"".join(
        (
            _s(op.base),
            encode_enumerated(op.scope),
            encode_enumerated(op.deref),
            encode_integer(op.size_limit),
            encode_integer(op.time_limit),
            encode_boolean(op.types_only),
            encode_filter(op.filter),
            tlv(0x30, _encode_string_list(op.attributes)),
        )
    )
    return tlv(SEARCH_REQUEST, body)


def _encode_modify_request(op: ModifyRequest) -> bytes:
    changes = b"".join(
        [
            tlv(0x30, encode_enumerated(c.operation) + encode_partial_attribute_list(((c.attr, c.values),)))
            for c in op.changes
        ]
    )
    return tlv(MODIFY_REQUEST, _s(op.dn) + tlv(0x30, changes))


def _encode_add_request(op: AddRequest) -> bytes:
    return tlv(ADD_REQUEST, _s(op.dn) + tlv(0x30, encode_partial_attribute_list(op.attributes)))


def _encode_del_request(op: DelRequest) -> bytes:
    return _s(op.dn, DEL_REQUEST)


def _encode_modify_dn_request(op: ModifyDNRequest) -> bytes:
    body = _s(op.dn) + _s(op.new_rdn) + encode_boolean(op.delete_old_rdn)
    if op.new_superior is not None:
        body += _s(op.new_superior, _NEW_SUPERIOR)
    return tlv(MODIFY_DN_REQUEST, body)


def _encode_compare_request(op: CompareRequest) -> bytes:
    return tlv(COMPARE_REQUEST, _s(op.dn) + tlv(0x30, _s(op.attr) + tlv(0x04, op.value)))


def _encode_abandon_request(op: AbandonRequest) -> bytes:
    return encode_integer(op.message_id, ABANDON_REQUEST)


def _encode_extended_request(op: ExtendedRequest) -> bytes:
    body = _s(op.name, _EXT_REQ_NAME)
    if op.value is not None:
        body += tlv(_EXT_REQ_VALUE, op.value)
    return tlv(EXTENDED_REQUEST, body)


def _encode_result_op(op: LDAPResult) -> bytes:
    return tlv(op.TAG, _ldap_result(op.result_code, op.matched_dn, op.message, op.referrals))


def _encode_bind_response(op: BindResponse) -> bytes:
    body = _ldap_result(op.result_code, op.matched_dn, op.message, op.referrals)
    if op.server_sasl_creds is not None:
        body += tlv(_SERVER_SASL_CREDS, op.server_sasl_creds)
    return tlv(BIND_RESPONSE, body)


def _encode_extended_response(op: ExtendedResponse) -> bytes:
    body = _ldap_result(op.result_code, op.matched_dn, op.message, op.referrals)
    if op.name is not None:
        body += _s(op.name, _EXT_RESP_NAME)
    if op.value is not None:
        body += tlv(_EXT_RESP_VALUE, op.value)
    return tlv(EXTENDED_RESPONSE, body)


def _encode_intermediate_response(op: IntermediateResponse) -> bytes:
    body = b""
    if op.name is not None:
        body += _s(op.name, _INTERMEDIATE_NAME)
    if op.value is not None:
        body += tlv(_INTERMEDIATE_VALUE, op.value)
    return tlv(INTERMEDIATE_RESPONSE, body)


def _encode_search_result_entry_op(op: SearchResultEntry) -> bytes:
    return tlv(SEARCH_RESULT_ENTRY, _s(op.dn) + tlv(0x30, encode_partial_attribute_list(op.attributes)))


def _encode_search_result_reference(op: SearchResultReference) -> bytes:
    return tlv(SEARCH_RESULT_REFERENCE, _encode_string_list(op.uris))


_OP_ENCODERS = {
    BindRequest: _encode_bind_request,
    BindResponse: _encode_bind_response,
    UnbindRequest: _encode_unbind_request,
    SearchRequest: _encode_search_request,
    SearchResultEntry: _encode_search_result_entry_op,
    SearchResultReference: _encode_search_result_reference,
    SearchResultDone: _encode_result_op,
    ModifyRequest: _encode_modify_request,
    ModifyResponse: _encode_result_op,
    AddRequest: _encode_add_request,
    AddResponse: _encode_result_op,
    DelRequest: _encode_del_request,
    DelResponse: _encode_result_op,
    ModifyDNRequest: _encode_modify_dn_request,
    ModifyDNResponse: _encode_result_op,
    CompareRequest: _encode_compare_request,
    CompareResponse: _encode_result_op,
    AbandonRequest: _encode_abandon_request,
    ExtendedRequest: _encode_extended_request,
    ExtendedResponse: _encode_extended_response,
    IntermediateResponse: _encode_intermediate_response,
}


def encode_protocol_op(op: ProtocolOp) -> bytes:
    """The protocolOp TLV of ``op``."""
    encoder = _OP_ENCODERS.get(type(op))
    if encoder is None:
        raise TypeError(f"not a protocolOp: {op!r}")
    return encoder(op)  # type: ignore[operator]


def encode_message(msg: LDAPMessage) -> bytes:
    """The LDAPMessage PDU of ``msg``."""
    return _wrap(msg.message_id, encode_protocol_op(msg.op), msg.controls)


# ---------------------------------------------------------------------------------------------------------------
# Framing


class MessageFramer:
    """Split a byte stream into LDAPMessage PDUs (each the complete outer SEQUENCE TLV).

    ``max_pdu_size`` bounds a whole PDU (header included) and is checked as soon as the header is in; it may be
    raised after a successful bind (slapd: sockbuf_max_incoming / sockbuf_max_incoming_auth).
    """

    __slots__ = ("max_pdu_size", "_buf")

    def __init__(self, max_pdu_size: int = MAX_PDU_SIZE_ANONYMOUS) -> None:
        self.max_pdu_size = max_pdu_size
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a PDU."""
        return len(self._buf)

    def peek(self) -> bytes:
        """The octets of a request not yet complete (a connection handed to another worker takes them along)."""
        return bytes(self._buf)

    def clear(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received octets; return the PDUs now complete (possibly none)."""
        buf = self._buf
        # one whole request of under 130 octets, nothing before it (most reads): itself, not a copy of it
        if (
            not buf
            and 2 <= len(data) < 0x82
            and data[0] == 0x30
            and data[1] == len(data) - 2
            and type(data) is bytes
        ):
            if len(data) > self.max_pdu_size:
                raise ProtocolError(f"PDU of {len(data)} octets exceeds the limit of {self.max_pdu_size}")
            return [data]
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            if buf[pos] != 0x30:
                raise ProtocolError("PDU does not start with a SEQUENCE")
            n = buf[pos + 1]
            header = 2
            if n & 0x80:
                k = n & 0x7F
                if k == 0 or k > 4:
                    raise ProtocolError("bad PDU length")
                header += k
                if end - pos < header:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + header], "big")
            total = header + n
            if total > self.max_pdu_size:
                raise ProtocolError(f"PDU of {total} octets exceeds the limit of {self.max_pdu_size}")
            if end - pos < total:
                break
            out.append(bytes(buf[pos : pos + total]))
            pos += total
        if pos:
            del buf[:pos]
        return out
