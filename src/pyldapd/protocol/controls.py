"""Controls and extended operations: OIDs and value codecs.

Each value codec is a pair ``encode_x(...) -> bytes`` / ``decode_x(value: bytes) -> ...``; decoders raise
``ProtocolError`` for malformed values (the server answers protocolError, or unavailableCriticalExtension
where the control's RFC says so).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from pyldapd.model.filter import Filter
from pyldapd.protocol.ber import (
    BERError,
    encode_boolean,
    encode_enumerated,
    encode_integer,
    read_tlv,
    tlv,
)
from pyldapd.protocol.ldap import (
    DEFAULT_MAX_FILTER_DEPTH,
    MAX_INT,
    Control,
    ProtocolError,
    SearchResultEntry,
    decode_filter,
    decode_protocol_op,
    encode_filter,
    encode_partial_attribute_list,
)

P = ParamSpec("P")
T = TypeVar("T")

# Controls
MANAGE_DSA_IT = "2.16.840.1.113730.3.4.2"
PAGED_RESULTS = "1.2.840.113556.1.4.319"
ASSERTION = "1.3.6.1.1.12"
PRE_READ = "1.3.6.1.1.13.1"
POST_READ = "1.3.6.1.1.13.2"
VALUES_RETURN_FILTER = "1.2.826.0.1.3344810.2.3"  # matchedValues (RFC 3876)
SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
SYNC_STATE = "1.3.6.1.4.1.4203.1.9.1.2"
SYNC_DONE = "1.3.6.1.4.1.4203.1.9.1.3"
# Intermediate response name
SYNC_INFO = "1.3.6.1.4.1.4203.1.9.1.4"
# Extended operations
CANCEL = "1.3.6.1.1.8"
PROXIED_AUTHZ = "2.16.840.1.113730.3.4.18"  # RFC 4370
DONT_USE_COPY = "1.3.6.1.1.22"  # RFC 6171
RELAX = "1.3.6.1.4.1.4203.666.5.12"  # draft-zeilenga-ldap-relax (OpenLDAP's experimental OID)
SUBENTRIES = "1.3.6.1.4.1.4203.1.10.1"  # RFC 3672: visibility of subentries in a search
WHO_AM_I = "1.3.6.1.4.1.4203.1.11.3"
PASSWORD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"
START_TLS = "1.3.6.1.4.1.1466.20037"
NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"

# Sync Request mode
SYNC_MODE_REFRESH_ONLY = 1
SYNC_MODE_REFRESH_AND_PERSIST = 3
# Sync State state
SYNC_STATE_PRESENT = 0
SYNC_STATE_ADD = 1
SYNC_STATE_MODIFY = 2
SYNC_STATE_DELETE = 3


def subentries_visibility(controls: Iterable[Control]) -> bool | None:
    """The Subentries control's visibility (RFC 3672): True, False, or None without the control. Its value is
    checked when the request is read (`check_subentries`)."""
    control = find_control(controls, SUBENTRIES)
    if control is None:
        return None
    return bool(control.value and control.value[2])


def find_control(controls: Iterable[Control], oid: str) -> Control | None:
    """The first control of that OID, or None."""
    for c in controls:
        if c.oid == oid:
            return c
    return None


# ---------------------------------------------------------------------------------------------------------------
# Reading helpers: every decoder goes through _value() so that any BER fault becomes a ProtocolError


class _Reader:
    """Sequential reader of the components of one constructed value."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def more(self) -> bool:
        return self.pos < self.end

    def peek(self) -> int | None:
        return self.buf[self.pos] if self.pos < self.end else None

    def read(self, tag: int) -> bytes:
        t, start, stop = read_tlv(self.buf, self.pos, self.end)
        if t != tag:
            raise ProtocolError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
        self.pos = stop
        return self.buf[start:stop]

    def read_constructed(self, tag: int) -> _Reader:
        t, start, stop = read_tlv(self.buf, self.pos, self.end)
        if t != tag:
            raise ProtocolError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
        self.pos = stop
        return _Reader(self.buf, start, stop)

    def read_optional(self, tag: int) -> bytes | None:
        return self.read(tag) if self.peek() == tag else None

    def read_uint(self, tag: int = 0x02) -> int:
        content = self.read(tag)
        if not 0 < len(content) <= 5:
            raise ProtocolError("INTEGER out of range")
        n = int.from_bytes(content, "big", signed=True)
        if not 0 <= n <= MAX_INT:
            raise ProtocolError("INTEGER out of range")
        return n

    def read_bool(self, tag: int = 0x01, default: bool | None = None) -> bool:
        if default is not None and self.peek() != tag:
            return default
        content = self.read(tag)
        if len(content) != 1:
            raise ProtocolError("BOOLEAN must have one content octet")
        return content != b"\x00"

    def read_str(self, tag: int = 0x04) -> str:
        try:
            return self.read(tag).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8") from None

    def done(self) -> None:
        if self.pos != self.end:
            raise ProtocolError("unexpected trailing data")


def _outer(value: bytes | None, tag: int = 0x30) -> _Reader:
    """A reader over the content of the single TLV that makes up ``value``."""
    if value is None:
        raise ProtocolError("control value missing")
    buf = bytes(value)
    t, start, stop = read_tlv(buf, 0, len(buf))
    if t != tag or stop != len(buf):
        raise ProtocolError("malformed control value")
    return _Reader(buf, start, stop)


def _guard(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn BER faults inside a decoder into ProtocolError."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ProtocolError:
            raise
        except (BERError, ValueError, IndexError, TypeError) as exc:
            raise ProtocolError(f"malformed value: {exc}") from None

    return wrapper


# ---------------------------------------------------------------------------------------------------------------
# Paged Results (RFC 2696)


@dataclass(slots=True)
class PagedResults:
    size: int
    cookie: bytes = b""


def encode_paged_results(v: PagedResults) -> bytes:
    return tlv(0x30, encode_integer(v.size) + tlv(0x04, v.cookie))


@_guard
def decode_paged_results(value: bytes | None) -> PagedResults:
    r = _outer(value)
    size = r.read_uint()
    cookie = r.read(0x04)
    r.done()
    return PagedResults(size, cookie)


# ---------------------------------------------------------------------------------------------------------------
# Assertion (RFC 4528): the value is a Filter


def encode_assertion(f: Filter) -> bytes:
    return encode_filter(f)


def decode_assertion(value: bytes | None, max_depth: int = DEFAULT_MAX_FILTER_DEPTH) -> Filter:
    if value is None:
        raise ProtocolError("assertion control without a value")
    return decode_filter(value, max_depth)


# ---------------------------------------------------------------------------------------------------------------
# Matched Values (RFC 3876): ValuesReturnFilter ::= SEQUENCE OF SimpleFilterItem

# The SimpleFilterItem choices: equalityMatch, substrings, greaterOrEqual, lessOrEqual, present, approxMatch,
# extensibleMatch (the Filter tags of the same items)
_SIMPLE_FILTER_TAGS = frozenset({0xA3, 0xA4, 0xA5, 0xA6, 0x87, 0xA8, 0xA9})


class ControlValueError(ProtocolError):
    """A control value absent or empty where one is required: answered with protocolError, the connection
    stays (other malformed values end it, as slapd's get_vrFilter does)."""


def encode_values_return_filter(items: Sequence[Filter]) -> bytes:
    return tlv(0x30, b"".join([encode_filter(f) for f in items]))


@_guard
def decode_values_return_filter(value: bytes | None) -> list[Filter | None]:
    """The items of a ValuesReturnFilter; None for an item of another choice (and, or, not...), which slapd
    skips as Undefined (it matches no value)."""
    if value is None:
        raise ControlValueError("valuesReturnFilter control value is absent")
    if not value:
        raise ControlValueError("valuesReturnFilter control value is empty")
    r = _outer(value)
    items: list[Filter | None] = []
    while r.more():
        start = r.pos
        try:
            tag, _, stop = read_tlv(r.buf, start, r.end)
        except BERError:
            break  # an element that does not fit ends the list (slapd's ber_next_element), not the connection
        r.pos = stop
        items.append(decode_filter(r.buf[start:stop]) if tag in _SIMPLE_FILTER_TAGS else None)
    return items


# ---------------------------------------------------------------------------------------------------------------
# Pre-Read / Post-Read (RFC 4527)


def encode_read_request(attributes: Sequence[str]) -> bytes:
    """Request value: SEQUENCE OF AttributeDescription."""
    return tlv(0x30, b"".join([tlv(0x04, a.encode("utf-8")) for a in attributes]))


@_guard
def decode_read_request(value: bytes | None) -> list[str]:
    r = _outer(value)
    out = []
    while r.more():
        out.append(r.read_str())
    return out


def encode_read_entry(dn: str, attribute_blob: bytes) -> bytes:
    """Response value: a SearchResultEntry protocolOp (tag 0x64) around a PartialAttribute blob."""
    return tlv(0x64, tlv(0x04, dn.encode("utf-8")) + tlv(0x30, attribute_blob))


def encode_read_entry_attributes(dn: str, attributes: Iterable[tuple[str, Sequence[bytes]]]) -> bytes:
    return encode_read_entry(dn, encode_partial_attribute_list(attributes))


def decode_read_entry(value: bytes | None) -> SearchResultEntry:
    if value is None:
        raise ProtocolError("read control without a value")
    op = decode_protocol_op(value)
    if not isinstance(op, SearchResultEntry):
        raise ProtocolError("read control value is not a SearchResultEntry")
    return op


# ---------------------------------------------------------------------------------------------------------------
# Content synchronization (RFC 4533)


@dataclass(slots=True)
class SyncRequest:
    mode: int  # SYNC_MODE_REFRESH_ONLY or SYNC_MODE_REFRESH_AND_PERSIST
    cookie: bytes | None = None
    reload_hint: bool = False


@dataclass(slots=True)
class SyncState:
    state: int  # SYNC_STATE_*
    entry_uuid: bytes  # 16 raw octets
    cookie: bytes | None = None


@dataclass(slots=True)
class SyncDone:
    cookie: bytes | None = None
    refresh_deletes: bool = False


@dataclass(slots=True)
class SyncInfoNewCookie:
    cookie: bytes


@dataclass(slots=True)
class SyncInfoRefreshDelete:
    cookie: bytes | None = None
    refresh_done: bool = True


@dataclass(slots=True)
class SyncInfoRefreshPresent:
    cookie: bytes | None = None
    refresh_done: bool = True


@dataclass(slots=True)
class SyncInfoIdSet:
    cookie: bytes | None = None
    refresh_deletes: bool = False
    uuids: list[bytes] = field(default_factory=list)


SyncInfo = SyncInfoNewCookie | SyncInfoRefreshDelete | SyncInfoRefreshPresent | SyncInfoIdSet

_SYNC_INFO_NEW_COOKIE = 0x80
_SYNC_INFO_REFRESH_DELETE = 0xA1
_SYNC_INFO_REFRESH_PRESENT = 0xA2
_SYNC_INFO_ID_SET = 0xA3


def _opt_cookie(cookie: bytes | None) -> bytes:
    return b"" if cookie is None else tlv(0x04, cookie)


def _check_uuid(uuid: bytes) -> bytes:
    if len(uuid) != 16:
        raise ProtocolError("syncUUID must be 16 octets")
    return uuid


def encode_sync_request(v: SyncRequest) -> bytes:
    body = encode_enumerated(v.mode) + _opt_cookie(v.cookie)
    if v.reload_hint:
        body += encode_boolean(True)
    return tlv(0x30, body)


@_guard
def decode_sync_request(value: bytes | None) -> SyncRequest:
    r = _outer(value)
    mode = r.read_uint(0x0A)
    if mode not in (SYNC_MODE_REFRESH_ONLY, SYNC_MODE_REFRESH_AND_PERSIST):
        raise ProtocolError("bad sync mode")
    cookie = r.read_optional(0x04)
    reload_hint = r.read_bool(default=False)
    r.done()
    return SyncRequest(mode, cookie, reload_hint)


def encode_sync_state(v: SyncState) -> bytes:
    return tlv(0x30, encode_enumerated(v.state) + tlv(0x04, v.entry_uuid) + _opt_cookie(v.cookie))


@_guard
def decode_sync_state(value: bytes | None) -> SyncState:
    r = _outer(value)
    state = r.read_uint(0x0A)
    if state > SYNC_STATE_DELETE:
        raise ProtocolError("bad sync state")
    uuid = _check_uuid(r.read(0x04))
    cookie = r.read_optional(0x04)
    r.done()
    return SyncState(state, uuid, cookie)


def encode_sync_done(v: SyncDone) -> bytes:
    body = _opt_cookie(v.cookie)
    if v.refresh_deletes:
        body += encode_boolean(True)
    return tlv(0x30, body)


@_guard
def decode_sync_done(value: bytes | None) -> SyncDone:
    r = _outer(value)
    cookie = r.read_optional(0x04)
    refresh_deletes = r.read_bool(default=False)
    r.done()
    return SyncDone(cookie, refresh_deletes)


def encode_sync_info(v: SyncInfo) -> bytes:
    """The responseValue of a Sync Info IntermediateResponse (responseName SYNC_INFO)."""
    if isinstance(v, SyncInfoNewCookie):
        return tlv(_SYNC_INFO_NEW_COOKIE, v.cookie)
    if isinstance(v, SyncInfoRefreshDelete | SyncInfoRefreshPresent):
        tag = (
            _SYNC_INFO_REFRESH_DELETE if isinstance(v, SyncInfoRefreshDelete) else _SYNC_INFO_REFRESH_PRESENT
        )
        body = _opt_cookie(v.cookie)
        if not v.refresh_done:
            body += encode_boolean(False)
        return tlv(tag, body)
    if isinstance(v, SyncInfoIdSet):
        body = _opt_cookie(v.cookie)
        if v.refresh_deletes:
            body += encode_boolean(True)
        body += tlv(0x31, b"".join([tlv(0x04, u) for u in v.uuids]))
        return tlv(_SYNC_INFO_ID_SET, body)
    raise TypeError(f"not a SyncInfo: {v!r}")


@_guard
def decode_sync_info(value: bytes | None) -> SyncInfo:
    if value is None:
        raise ProtocolError("Sync Info without a value")
    buf = bytes(value)
    tag, start, stop = read_tlv(buf, 0, len(buf))
    if stop != len(buf):
        raise ProtocolError("trailing data after Sync Info")
    if tag == _SYNC_INFO_NEW_COOKIE:
        return SyncInfoNewCookie(buf[start:stop])
    r = _Reader(buf, start, stop)
    if tag in (_SYNC_INFO_REFRESH_DELETE, _SYNC_INFO_REFRESH_PRESENT):
        cookie = r.read_optional(0x04)
        refresh_done = r.read_bool(default=True)
        r.done()
        cls = SyncInfoRefreshDelete if tag == _SYNC_INFO_REFRESH_DELETE else SyncInfoRefreshPresent
        return cls(cookie, refresh_done)
    if tag == _SYNC_INFO_ID_SET:
        cookie = r.read_optional(0x04)
        refresh_deletes = r.read_bool(default=False)
        uuids_reader = r.read_constructed(0x31)
        r.done()
        uuids = []
        while uuids_reader.more():
            uuids.append(_check_uuid(uuids_reader.read(0x04)))
        return SyncInfoIdSet(cookie, refresh_deletes, uuids)
    raise ProtocolError(f"unknown Sync Info choice 0x{tag:02x}")


# ---------------------------------------------------------------------------------------------------------------
# Cancel (RFC 3909)


def encode_cancel_request(message_id: int) -> bytes:
    """cancelRequestValue ::= SEQUENCE { cancelID MessageID }"""
    return tlv(0x30, encode_integer(message_id))


@_guard
def decode_cancel_request(value: bytes | None) -> int:
    r = _outer(value)
    message_id = r.read_uint()
    r.done()
    return message_id


# ---------------------------------------------------------------------------------------------------------------
# Who am I? (RFC 4532): no request value; the response value is the authzId itself, not BER


def encode_who_am_i_response(authz_id: str) -> bytes:
    """``dn:<DN>``, ``u:<user>`` or "" for anonymous."""
    return authz_id.encode("utf-8")


def decode_who_am_i_response(value: bytes | None) -> str:
    try:
        return (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in authzId") from None


# ---------------------------------------------------------------------------------------------------------------
# Password Modify (RFC 3062)


@dataclass(slots=True)
class PasswordModifyRequest:
    user_identity: bytes | None = None
    old_password: bytes | None = None
    new_password: bytes | None = None


def encode_password_modify_request(v: PasswordModifyRequest) -> bytes:
    body = b""
    for tag, part in ((0x80, v.user_identity), (0x81, v.old_password), (0x82, v.new_password)):
        if part is not None:
            body += tlv(tag, part)
    return tlv(0x30, body)


@_guard
def decode_password_modify_request(value: bytes | None) -> PasswordModifyRequest:
    """An absent request value means all three fields absent (RFC 3062); an empty one is malformed."""
    if value is None:
        return PasswordModifyRequest()
    if not value:
        raise ControlValueError("empty request data field")  # slapd's words
    r = _outer(value)
    try:
        user_identity = r.read_optional(0x80)
        old_password = r.read_optional(0x81)
        new_password = r.read_optional(0x82)
        r.done()
    except (ProtocolError, BERError, ValueError, IndexError) as exc:  # inside the SEQUENCE: slapd says this
        raise ControlValueError("data decoding error") from exc
    return PasswordModifyRequest(user_identity, old_password, new_password)


def encode_password_modify_response(gen_password: bytes | None) -> bytes | None:
    """responseValue; None (no value at all) when no password was generated."""
    if gen_password is None:
        return None
    return tlv(0x30, tlv(0x80, gen_password))


@_guard
def decode_password_modify_response(value: bytes | None) -> bytes | None:
    if value is None:
        return None
    r = _outer(value)
    gen = r.read_optional(0x80)
    r.done()
    return gen
