"""Distinguished names (RFC 4514), read the way OpenLDAP's libldap reads them (`LDAP_DN_FORMAT_LDAP`).

Accepted besides RFC 4514: RFC 2253/1779 legacy forms that slapd accepts too: quoted values, ';' as RDN
separator, spaces around '=', ',' and '+', and attribute options on types (dropped, like libldap).

Three string forms are used in the server (checked against Debian's slapd 2.5 with slapdn -P / -N):
- as written by the client;
- *pretty* (`pretty_dn`, with a schema): types by their canonical schema names ('commonName' -> 'cn'), values
  as given, multi-valued RDNs sorted by type name, no spaces around separators;
- *normalized* (`normalize_dn`): like pretty, with values normalized by their type's equality rule
  ('CN=Foo  Bar' -> 'cn=foo bar'). This is the database key (and entryDN).
Both escape like slapd: '\\' ',' '+' ';' '"' '<' '>' '=' anywhere, a leading '#' or space, a trailing space and
NUL as '\\XX' ('cn=Smith\\2C John'). So every literal ',' or '+' in such a DN is a separator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DNError",
    "parse_dn",
    "escape_value",
    "format_dn",
    "normalize_dn",
    "pretty_dn",
    "split_rdn",
    "parent_dn",
    "is_descendant",
    "rdn_attributes",
]


class DNError(ValueError):
    """A DN that cannot be parsed or normalized (slapd: invalidDNSyntax)."""


RDN = list[tuple[str, str]]

_SPACES = " \t\n\r"
_HEX = "0123456789abcdefABCDEF"
# Characters that may follow '\' to stand for themselves (libldap LDAP_DN_MAYESCAPE, plus ASCII spaces).
_MAYESCAPE = frozenset('\\,;+"<>=# \t\n\r')
# Characters that end an unquoted value.
_VALUE_END = frozenset(",;+")
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_DESC_CHARS = _ALPHA | _DIGITS | {"-"}
# A DN with none of these characters can take the fast path (split on ',' and '=').
_SLOW_CHARS = frozenset('\\"#;+<>\t\n\r\x00')


def _parse_type(s: str, i: int, n: int) -> tuple[str, int]:
    """Read an attribute type at s[i]; return it (without options) and the index after it."""
    start = i
    c = s[i] if i < n else ""
    if c in _ALPHA:
        i += 1
        while i < n and s[i] in _DESC_CHARS:
            i += 1
        name = s[start:i]
        # Attribute options (cn;lang-en=...): libldap accepts and drops them.
        while i < n and (s[i] in _DESC_CHARS or s[i] == ";"):
            i += 1
        return name, i
    if c in _DIGITS:
        while True:
            if i >= n or s[i] not in _DIGITS:
                raise DNError(f"invalid DN: bad numeric OID at offset {start}")
            while i < n and s[i] in _DIGITS:
                i += 1
            if i < n and s[i] == ".":
                i += 1
                continue
            break
        return s[start:i], i
    raise DNError(f"invalid DN: attribute type expected at offset {i}")


def _parse(s: str) -> list[list[tuple[str, str, bool]]]:
    """Parse into RDNs of (type, value, is_binary) triples."""
    n = len(s)
    i = 0
    while i < n and s[i] in _SPACES:
        i += 1
    if i == n:
        if n == 0:
            return []
        raise DNError("invalid DN: only spaces")
    rdns: list[list[tuple[str, str, bool]]] = []
    rdn: list[tuple[str, str, bool]] = []
    while True:
        # attribute type
        while i < n and s[i] in _SPACES:
            i += 1
        atype, i = _parse_type(s, i, n)
        while i < n and s[i] in _SPACES:
            i += 1
        if i >= n or s[i] != "=":
            raise DNError(f"invalid DN: '=' expected at offset {i}")
        i += 1
        while i < n and s[i] in _SPACES:
            i += 1
        binary = False
        if i < n and s[i] == "#":
            # BER-encoded value in hex
            start = i
            i += 1
            while i < n and s[i] in _HEX:
                i += 1
            digits = i - start - 1
            if digits == 0 or digits % 2:
                raise DNError(f"invalid DN: bad hex string at offset {start}")
            value = s[start:i]
            binary = True
            while i < n and s[i] in _SPACES:
                i += 1
        elif i < n and s[i] == '"':
            # quoted value (RFC 2253 legacy): '\' escapes any character
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise DNError("invalid DN: unterminated quoted value")
                c = s[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    i += 1
                    if i >= n:
                        raise DNError("invalid DN: unterminated quoted value")
                    c = s[i]
                elif c == "\x00":
                    raise DNError("invalid DN: NUL in value")
                buf.append(c)
                i += 1
            value = "".join(buf)
            while i < n and s[i] in _SPACES:
                i += 1
        else:
            value, i = _parse_string_value(s, i, n)
        rdn.append((atype, value, binary))
        if i >= n:
            rdns.append(rdn)
            return rdns
        c = s[i]
        i += 1
        if c == "+":
            continue
        if c == "," or c == ";":
            rdns.append(rdn)
            rdn = []
            # a separator must be followed by another RDN
            j = i
            while j < n and s[j] in _SPACES:
                j += 1
            if j >= n:
                raise DNError("invalid DN: trailing separator")
            continue
        raise DNError(f"invalid DN: unexpected {c!r} at offset {i - 1}")


def _parse_string_value(s: str, i: int, n: int) -> tuple[str, int]:
    """Read an unquoted value at s[i] up to ',', ';', '+' or the end; trailing unescaped spaces dropped."""
    start = i
    while i < n and s[i] not in '\\,;+"<>\x00':
        i += 1
    if i >= n or s[i] in _VALUE_END:
        # no escapes: the common case
        return s[start:i].rstrip(_SPACES), i
    out = bytearray(s[start:i].encode())
    keep = len(out.rstrip(b" \t\n\r"))  # length up to the last character that is not a trailing space
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 >= n:
                raise DNError("invalid DN: value ends with '\\'")
            c2 = s[i + 1]
            if c2 in _HEX and i + 2 < n and s[i + 2] in _HEX:
                out.append(int(s[i + 1 : i + 3], 16))
                i += 3
            elif c2 in _MAYESCAPE:
                out += c2.encode()
                i += 2
            else:
                raise DNError(f"invalid DN: bad escape at offset {i}")
            keep = len(out)
            continue
        if c in _VALUE_END:
            break
        if c in '"<>\x00':
            raise DNError(f"invalid DN: unescaped {c!r} in value at offset {i}")
        out += c.encode()
        if c not in _SPACES:
            keep = len(out)
        i += 1
    try:
        return out[:keep].decode("utf-8"), i
    except UnicodeDecodeError:
        raise DNError("invalid DN: value is not UTF-8") from None


def parse_dn(s: str) -> list[RDN]:
    """Parse a DN into RDNs (left to right), each a list of (type as written, unescaped value).

    '#hex' BER values are kept as the string '#hex'. The empty string (root DSE) gives [].
    """
    if not _SLOW_CHARS.intersection(s):
        fast = _parse_fast(s)
        if fast is not None:
            return fast
    return [[(t, v) for t, v, _ in rdn] for rdn in _parse(s)]


def _parse_fast(s: str) -> list[RDN] | None:
    """Parse a DN without escapes, quotes, '#', ';' or '+'; None when it needs the full parser."""
    if not s:
        return []
    out: list[RDN] = []
    for part in s.split(","):
        atype, eq, value = part.partition("=")
        atype = atype.strip(" ")
        if (
            not eq
            or not atype
            or not atype.isascii()
            or not (atype.isalnum() or "-" in atype or "." in atype)
        ):
            return None
        if atype[0] in _DIGITS:
            if not all(p.isdigit() for p in atype.split(".")):
                return None
        elif atype[0] not in _ALPHA or not all(ch in _DESC_CHARS for ch in atype):
            return None
        out.append([(atype, value.strip(" "))])
    return out


_SPECIALS = '\\,+;"<>='


def _escape(v: str, minimal: bool = False) -> str:
    """Escape a value the way slapd 2.5 writes DNs (pretty and normalized alike).

    '\\' ',' '+' ';' '"' '<' '>' '=' anywhere, a leading '#' or space, a trailing space and NUL become '\\XX'
    (upper-case hex); with `minimal`, a backslash and the character itself are used instead (RFC 4514 style).
    Other characters, UTF-8 included, are kept. Non-UTF-8 bytes carried as surrogate escapes become '\\XX'.
    """
    if not v:
        return v
    if v.isascii() and v.isalnum():
        return v
    if (
        v.isprintable()
        and not any(ch in _SPECIALS for ch in v)
        and v[0] not in " #"
        and v[-1] != " "
        and "\udc80" > max(v)  # no lone surrogates (non-UTF-8 bytes carried by surrogateescape)
    ):
        return v
    out: list[str] = []
    last = len(v) - 1
    for k, ch in enumerate(v):
        if ch in _SPECIALS or (k == 0 and ch in " \t\n\r#") or (k == last and ch in " \t\n\r"):
            out.append("\\" + ch if minimal and ch not in "\t\n\r" else f"\\{ord(ch):02X}")
        elif ch == "\x00":
            out.append("\\00")
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\{ord(ch) - 0xDC00:02X}")
        else:
            out.append(ch)
    return "".join(out)


def escape_value(v: str, *, minimal: bool = False) -> str:
    """Escape an attribute value for use in a DN string (RFC 4514 section 2.4), as slapd writes DNs.

    '\\' ',' '+' ';' '"' '<' '>' '=' anywhere, a leading ' ' or '#', a trailing ' ' and NUL become '\\XX', e.g.
    'Smith, John' -> 'Smith\\2C John'. With minimal=True: 'Smith\\, John' (backslash + character).
    A leading '#' is always escaped: a '#hex' BER value must be written as is (see format_dn).
    """
    return _escape(v, minimal)


def _is_hexstring(v: str) -> bool:
    return len(v) >= 3 and v[0] == "#" and len(v) % 2 == 1 and all(ch in _HEX for ch in v[1:])


def format_dn(rdns: Sequence[Sequence[tuple[str, str]]]) -> str:
    """Join RDNs (as returned by parse_dn) into a DN string, escaping values minimally.

    Values of the form '#hex' are written unescaped (they stand for BER values, as parse_dn keeps them).
    """
    return ",".join("+".join(f"{t}={v if _is_hexstring(v) else _escape(v)}" for t, v in rdn) for rdn in rdns)


# --- normalization -------------------------------------------------------------------------------------------

_CACHE_LIMIT = 200_000
# id(schema) -> (schema, {dn: normalized}); the schema is kept so that its id is not reused.
_caches: dict[int, tuple[Any, dict[str, str]]] = {}


def _cache_for(schema: Any) -> dict[str, str]:
    entry = _caches.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_caches) > 8:  # schemas are replaced rarely (cn=config changes); drop old ones
            _caches.clear()
        entry = (schema, {})
        _caches[id(schema)] = entry
    return entry[1]


MAX_DN_LENGTH = 8192  # slapd's SLAP_LDAPDN_MAXLEN: a longer DN (in octets) is invalidDNSyntax


def normalize_dn(dn: str, schema: Any) -> str:
    """Return the normalized DN used as database key (see the module docstring); raise DNError if invalid.

    Results are cached per schema object (errors are not: a schema may gain attribute types later).
    """
    cache = _cache_for(schema)
    hit = cache.get(dn)
    if hit is not None:
        return hit
    if len(dn) > MAX_DN_LENGTH // 4 and len(dn.encode("utf-8", "surrogatepass")) > MAX_DN_LENGTH:
        raise DNError("invalid DN: longer than 8192 octets")
    result = _normalize(dn, schema, cache)
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[dn] = result
    return result


def _check_ava(atype: str, value: str, binary: bool, schema: Any) -> tuple[Any, bytes]:
    """Resolve the type of an AVA and validate its value, as slapd's LDAPDN_rewrite does."""
    at = schema.attribute_type(atype)
    if at is None:
        raise DNError(f"invalid DN: undefined attribute type {atype}")
    if binary:
        raise DNError(f"invalid DN: BER-encoded value for {atype} not supported")
    if not value:
        raise DNError(f"invalid DN: empty value for attribute {atype}")
    encoded = value.encode("utf-8")
    syntax = getattr(at, "syntax", None)
    validate = getattr(syntax, "validate", None)
    if validate is not None and not validate(encoded):
        raise DNError(f"invalid DN: invalid value for attribute {atype}")
    return at, encoded


def _join_rdn(avas: list[tuple[str, str]]) -> str:
    """'type=value' AVAs (values escaped) joined by '+', sorted by type name; a repeated type is an error."""
    if len(avas) == 1:
        return f"{avas[0][0]}={avas[0][1]}"
    avas.sort()
    for k in range(1, len(avas)):
        if avas[k][0] == avas[k - 1][0]:
            raise DNError(f"invalid DN: attribute type {avas[k][0]} repeated in an RDN")
    return "+".join(f"{t}={v}" for t, v in avas)


def _normalize(dn: str, schema: Any, cache: dict[str, str] | None = None) -> str:
    if cache is None:
        cache = _cache_for(schema)
    if _SLOW_CHARS.intersection(dn):
        return _normalize_rdns(_parse(dn), schema)
    # The common case: RDNs taken off the left one at a time until a parent is in the cache (siblings share
    # it), then each parent normalized and cached from the right. A loop, not recursion: a DN may hold
    # thousands of RDNs.
    heads: list[tuple[str, str]] = []  # (the DN from this RDN on, its first RDN normalized)
    rest = dn
    tail = ""
    while True:
        rdn, comma, after = rest.partition(",")
        first = _parse_fast(rdn)
        if first is None or len(first) != 1 or (comma and not after.strip(" ")):
            if not heads:
                return _normalize_rdns(_parse(dn), schema)
            tail = _normalize_rdns(_parse(rest), schema)
            break
        heads.append((rest, _normalize_rdns([[(t, v, False) for t, v in first[0]]], schema)))
        if not comma:
            break
        rest = after
        hit = cache.get(rest)
        if hit is not None:
            tail = hit
            break
    result = tail
    for index in range(len(heads) - 1, -1, -1):
        text, head = heads[index]
        result = head + "," + result if result else head
        if index and len(cache) < _CACHE_LIMIT:
            cache[text] = result
    return result


def _normalize_rdns(rdns: list[list[tuple[str, str, bool]]], schema: Any) -> str:
    parts: list[str] = []
    for rdn in rdns:
        avas: list[tuple[str, str]] = []
        for atype, value, binary in rdn:
            at, encoded = _check_ava(atype, value, binary, schema)
            mr = at.equality
            if mr is not None:
                norm = mr.normalize(encoded)
                if norm is None:
                    raise DNError(f"invalid DN: invalid value for attribute {atype}")
                value = norm.decode("utf-8", "surrogateescape")
            avas.append((at.name, _escape(value)))
        parts.append(_join_rdn(avas))
    return ",".join(parts)


def pretty_dn(dn: str, schema: Any = None) -> str:
    """slapd's "pretty" DN: values re-escaped as slapd writes them, no spaces around separators.

    Without a schema, types are kept as written. With a schema (slapd's dnPretty), types become their
    canonical names, multi-valued RDNs are sorted, and unknown types, repeated types in an RDN, BER values and
    values invalid for their syntax raise DNError.
    """
    if schema is not None and not _SLOW_CHARS.intersection(dn):
        fast = _parse_fast(dn)  # one AVA per RDN, nothing escaped: a group's members, mostly
        if fast is not None:
            parts = []
            for ((t, v),) in fast:
                at, encoded = _check_ava(t, v, False, schema)
                if at.syntax is not None and at.syntax.pretty is not None:
                    v = _pretty_value(at, v, encoded)
                parts.append(f"{at.name}={_escape(v)}")
            return ",".join(parts)
    out: list[str] = []
    for rdn in _parse(dn):
        if schema is None:
            out.append("+".join(f"{t}={v if binary else _escape(v)}" for t, v, binary in rdn))
            continue
        avas: list[tuple[str, str]] = []
        for atype, value, binary in rdn:
            at, encoded = _check_ava(atype, value, binary, schema)
            avas.append((at.name, _escape(_pretty_value(at, value, encoded))))
        out.append(_join_rdn(avas))
    return ",".join(out)


def _pretty_value(at: Any, value: str, encoded: bytes) -> str:
    """The value in its syntax's pretty form, as slapd's LDAPRDN_rewrite (a UUID lowercased)."""
    pretty = getattr(getattr(at, "syntax", None), "pretty", None)
    if pretty is None:
        return value
    prettier = pretty(encoded)
    if prettier is None:
        raise DNError(f"invalid DN: invalid value for attribute {at.name}")
    return prettier.decode("utf-8", "surrogateescape")


# --- string helpers for pretty or normalized DNs ----------------------------------------------------------------


def _find_unescaped(s: str, chars: str, start: int = 0) -> int:
    """Index of the first character of `chars` in s not escaped or quoted, or -1."""
    i = start
    n = len(s)
    quoted = False
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted and c in chars:
            return i
        i += 1
    return -1


def split_rdn(dn: str) -> tuple[str, str]:
    """Split a DN into its first RDN and the rest: 'cn=a\\,b,dc=x' -> ('cn=a\\,b', 'dc=x'); '' -> ('', '')."""
    if "\\" not in dn and '"' not in dn:
        rdn, _, rest = dn.partition(",")
    else:
        k = _find_unescaped(dn, ",")
        if k < 0:
            return dn, ""
        rdn, rest = dn[:k], dn[k + 1 :]
    return rdn, rest.lstrip(" ")


def parent_dn(dn: str) -> str:
    """The DN of the parent ('' for a top-level entry or the root DSE)."""
    return split_rdn(dn)[1]


def is_descendant(ndn: str, base_ndn: str) -> bool:
    """True if ndn is strictly below base_ndn (both normalized). The root DSE "" is above every other DN."""
    if not base_ndn:
        return bool(ndn)
    k = len(ndn) - len(base_ndn) - 1
    if k <= 0 or not ndn.endswith(base_ndn) or ndn[k] != ",":
        return False
    # the ',' must not be escaped (normalized DNs never contain '\,' but pretty ones may)
    j = k - 1
    while j >= 0 and ndn[j] == "\\":
        j -= 1
    return (k - 1 - j) % 2 == 0


def rdn_attributes(rdn: str) -> list[tuple[str, str]]:
    """The (type, unescaped value) pairs of one RDN: 'cn=a+sn=b' -> [('cn', 'a'), ('sn', 'b')]."""
    rdns = parse_dn(rdn)
    if len(rdns) != 1:
        raise DNError(f"invalid RDN: {rdn!r}")
    return rdns[0]
