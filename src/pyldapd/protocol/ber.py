"""A small, fast BER codec for the subset of X.690 that LDAP uses (RFC 4511 section 5.1).

Only definite lengths and single-octet tags (every LDAP tag number is below 31). Lengths of at most four
length octets. Decoding works on offsets into one ``bytes`` object: ``read_tlv(buf, pos, end)`` returns the tag
and the content's ``[start, stop)`` range, so that nothing is copied until a value is really needed.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BERError",
    "INTEGER",
    "BOOLEAN",
    "OCTET_STRING",
    "NULL",
    "ENUMERATED",
    "SEQUENCE",
    "SET",
    "encode_length",
    "tlv",
    "encode_integer",
    "encode_enumerated",
    "encode_boolean",
    "encode_octet_string",
    "encode_string",
    "encode_null",
    "encode_sequence",
    "encode_set",
    "read_tlv",
    "read_children",
    "decode_integer",
    "decode_boolean",
    "decode_octet_string",
    "decode_string",
]

BOOLEAN = 0x01
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
ENUMERATED = 0x0A
SEQUENCE = 0x30
SET = 0x31

_MAX_LENGTH = 0xFFFFFFFF


class BERError(Exception):
    """Malformed or unsupported BER."""


# ---------------------------------------------------------------------------------------------------------------
# Encoding


_SHORT_LENGTHS = tuple(bytes((n,)) for n in range(0x80))


def encode_length(n: int) -> bytes:
    """The definite-length octets for a content of ``n`` octets (short form below 128)."""
    if n < 0x80:
        if n < 0:
            raise BERError("negative length")
        return _SHORT_LENGTHS[n]
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    if n < 0x1000000:
        return bytes((0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    if n <= _MAX_LENGTH:
        return b"\x84" + n.to_bytes(4, "big")
    raise BERError(f"length {n} needs more than 4 length octets")


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV: the tag octet, the length, the content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    return bytes((tag,)) + encode_length(n) + content


def _integer_content(n: int) -> bytes:
    # Minimal two's complement: one more bit than the magnitude needs, for the sign.
    bits = n.bit_length() if n >= 0 else (~n).bit_length()
    return n.to_bytes(bits // 8 + 1, "big", signed=True)


_SMALL_INTEGERS = {n: bytes((INTEGER, 1, n)) for n in range(0x80)}
_SMALL_ENUMERATED = {n: bytes((ENUMERATED, 1, n)) for n in range(0x80)}


def encode_integer(n: int, tag: int = INTEGER) -> bytes:
    """INTEGER (or an implicitly tagged one), in the minimal two's complement form."""
    if tag == INTEGER and 0 <= n < 0x8000:  # message IDs: one or two content octets, made here
        return _SMALL_INTEGERS[n] if n < 0x80 else bytes((INTEGER, 2, n >> 8, n & 0xFF))
    return tlv(tag, _integer_content(n))


def encode_enumerated(n: int, tag: int = ENUMERATED) -> bytes:
    """ENUMERATED (same content rules as INTEGER)."""
    if tag == ENUMERATED and 0 <= n < 0x80:
        return _SMALL_ENUMERATED[n]
    return tlv(tag, _integer_content(n))


_TRUE = bytes((BOOLEAN, 1, 0xFF))
_FALSE = bytes((BOOLEAN, 1, 0x00))


def encode_boolean(value: bool, tag: int = BOOLEAN) -> bytes:
    """BOOLEAN; TRUE is 0xFF as DER and RFC 4511 (section 5.1) want."""
    if tag == BOOLEAN:
        return _TRUE if value else _FALSE
    return bytes((tag, 1, 0xFF if value else 0x00))


def encode_octet_string(value: bytes, tag: int = OCTET_STRING) -> bytes:
    return tlv(tag, value)


def encode_string(value: str, tag: int = OCTET_STRING) -> bytes:
    """An LDAPString / LDAPDN / LDAPOID: UTF-8 in an OCTET STRING."""
    return tlv(tag, value.encode("utf-8"))


def encode_null(tag: int = NULL) -> bytes:
    return bytes((tag, 0))


def encode_sequence(parts: Iterable[bytes], tag: int = SEQUENCE) -> bytes:
    """A SEQUENCE (or SEQUENCE OF, or any constructed type) of already encoded parts."""
    return tlv(tag, b"".join(parts))


def encode_set(parts: Iterable[bytes], tag: int = SET) -> bytes:
    """A SET OF already encoded parts (kept in the given order: LDAP does not need DER's sorting)."""
    return tlv(tag, b"".join(parts))


# ---------------------------------------------------------------------------------------------------------------
# Decoding


def read_tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read the TLV at ``buf[pos:end]``; return ``(tag, start, stop)`` with the content at ``buf[start:stop]``.

    ``end`` must not exceed ``len(buf)``. The next TLV, if any, starts at ``stop``.
    """
    if pos + 2 > end:
        raise BERError("truncated TLV header")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise BERError("multi-octet tags are not used by LDAP")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise BERError("indefinite length is not allowed")
        if k > 4:
            raise BERError("more than 4 length octets")
        if pos + k > end:
            raise BERError("truncated length")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    stop = pos + n
    if stop > end:
        raise BERError("truncated content")
    return tag, pos, stop


def read_children(buf: bytes, start: int, stop: int) -> list[tuple[int, int, int]]:
    """All TLVs of a constructed value's content ``buf[start:stop]``, as ``(tag, start, stop)`` triples."""
    out = []
    pos = start
    while pos < stop:
        child = read_tlv(buf, pos, stop)
        out.append(child)
        pos = child[2]
    return out


def decode_integer(buf: bytes, start: int, stop: int) -> int:
    if start >= stop:
        raise BERError("empty INTEGER")
    return int.from_bytes(buf[start:stop], "big", signed=True)


def decode_boolean(buf: bytes, start: int, stop: int) -> bool:
    if stop - start != 1:
        raise BERError("BOOLEAN must have exactly one content octet")
    return buf[start] != 0


def decode_octet_string(buf: bytes, start: int, stop: int) -> bytes:
    return bytes(buf[start:stop])


def decode_string(buf: bytes, start: int, stop: int) -> str:
    try:
        return str(buf[start:stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise BERError(f"invalid UTF-8: {exc.reason}") from None
