"""Matching rules (RFC 4517 section 4, X.520, and OpenLDAP's own) and their normalisers.

Every rule turns a value into canonical bytes with `normalize(value)`: two values match under an equality rule
exactly when their normalised bytes are equal, and those bytes are also what indexes store. `None` means the value
is not valid for the rule (a filter on it is Undefined). Ordering rules add `ordering_key(value)`, something
comparable with `<`; substring rules add `match_substrings()` and `normalize_substring()`.

`normalize`, `ordering_key`, `normalize_substring` are per-instance callables chosen when the rule is built, so
a call costs one function call; the pure string normalisers are memoised.

String preparation follows RFC 4518 closely enough for directory use: the value is decoded as UTF-8; an ASCII value
is lowercased (caseIgnore rules), any other is NFKC normalised and case folded (the result is stable: normalising
twice gives the same bytes); then insignificant spaces are removed: leading and trailing spaces go, inner runs of
white space become one space.

Rules whose meaning needs the schema (distinguishedNameMatch, uniqueMemberMatch, objectIdentifierMatch) keep a
reference to the schema they belong to (`MatchingRule.schema`); `Schema.copy()` rebinds them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pyldapd.model import syntaxes as syn

if TYPE_CHECKING:
    from pyldapd.model.schema import Schema

Normalizer = Callable[[bytes], "bytes | None"]

_CACHE = 1 << 16

# --- string preparation (RFC 4518) ------------------------------------------------------------------------

# Characters RFC 4518 maps to nothing (soft hyphen, zero-width characters, joiners, BOM, variation selectors)
_MAP_TO_NOTHING = dict.fromkeys(
    [0xAD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]
    + list(range(0xFE00, 0xFE10))
)


def _prep_unicode(text: str, fold: bool) -> str:
    text = unicodedata.normalize("NFKC", text.translate(_MAP_TO_NOTHING))
    if fold:
        # folding after NFKC (which can produce capitals, e.g. U+338A -> "pF"), then NFKC again: stable
        text = unicodedata.normalize("NFKC", text.casefold())
    return text


@lru_cache(maxsize=_CACHE)
def prep_ignore(value: bytes) -> str | None:
    """Case-folded, space-collapsed form of a UTF-8 value (caseIgnoreMatch); None if not UTF-8."""
    if value.isascii():
        text = value.decode("ascii").lower()
    else:
        try:
            text = _prep_unicode(value.decode("utf-8"), True)
        except UnicodeDecodeError:
            return None
    return " ".join(text.split())


@lru_cache(maxsize=_CACHE)
def prep_exact(value: bytes) -> str | None:
    """Space-collapsed form of a UTF-8 value, case kept (caseExactMatch); None if not UTF-8."""
    if value.isascii():
        text = value.decode("ascii")
    else:
        try:
            text = _prep_unicode(value.decode("utf-8"), False)
        except UnicodeDecodeError:
            return None
    return " ".join(text.split())


def prep_ia5_ignore(value: bytes) -> str | None:
    if not value.isascii():
        return None
    return " ".join(value.decode("ascii").lower().split())


def prep_ia5_exact(value: bytes) -> str | None:
    if not value.isascii():
        return None
    return " ".join(value.decode("ascii").split())


def _piece_prep(prep: Callable[[bytes], str | None]) -> Callable[[bytes], str | None]:
    """Preparation of a substring assertion piece: like the value's, but the edges are kept as one space."""

    def piece(value: bytes) -> str | None:
        text = prep(value)
        if text is None:
            return None
        if text and value[:1].isspace():
            text = " " + text
        if text and value[-1:].isspace():
            text = text + " "
        return text

    return piece


def _encode(prep: Callable[[bytes], str | None]) -> Normalizer:
    def normalize(value: bytes) -> bytes | None:
        text = prep(value)
        return None if text is None else text.encode("utf-8")

    return normalize


# --- other normalisers ------------------------------------------------------------------------------------


def _octet(value: bytes) -> bytes | None:
    return value


def _octet_text(value: bytes) -> str:
    return value.decode("latin-1")


# RFC 4517 Integer: no leading zeros, no plus sign, no "-0" (slapd rejects them, so such values and
# assertions are invalid and a filter on them is Undefined).
_INTEGER_RE = re.compile(rb"(-?)(0|[1-9][0-9]*)\Z")


def _integer(value: bytes) -> bytes | None:
    m = _INTEGER_RE.match(value)
    if m is None or value == b"-0":
        return None
    return value


def _integer_key(value: bytes) -> int | None:
    m = _INTEGER_RE.match(value)
    if m is None or value == b"-0":
        return None
    return int(value)


def _boolean(value: bytes) -> bytes | None:
    # as slapd's booleanValidate: exactly TRUE or FALSE ("false" in a filter is Undefined, matching nothing)
    return value if value in (b"TRUE", b"FALSE") else None


def prep_numeric(value: bytes) -> str | None:
    text = value.replace(b" ", b"")
    if not text.isdigit() or not text.isascii():
        return None if text else ""
    return text.decode("ascii")


def prep_telephone(value: bytes) -> str | None:
    """Telephone numbers compare without spaces and hyphens, and without case."""
    if value.isascii():
        return value.decode("ascii").lower().replace(" ", "").replace("-", "")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Dropping characters can let NFKC compose what is left: repeat until stable.
    for _ in range(4):
        prepared = _prep_unicode(text, True).replace(" ", "").replace("-", "")
        if prepared == text:
            break
        text = prepared
    return text


_BITSTRING_RE = re.compile(rb"\s*'([01]*)'B\s*\Z")


def _bit_string(value: bytes) -> bytes | None:
    m = _BITSTRING_RE.match(value)
    return None if m is None else b"'" + m[1] + b"'B"


@lru_cache(maxsize=_CACHE)
def _generalized_time_parts(value: bytes) -> tuple[str, Decimal] | None:
    """(YYYYmmddHHMMSS in UTC, fraction of a second) or None."""
    fields = syn.generalized_time_fields(value.strip())
    if fields is None:
        return None
    year, month, day, hour, minute, second, fraction, zone, has_seconds = fields
    frac = Decimal("0." + fraction.decode()) if fraction else Decimal(0)
    if frac:
        # A fraction applies to the last unit given: seconds, minutes or hours.
        if has_seconds:
            extra = frac
        elif value.find(b".") == 12 or value.find(b",") == 12:
            extra = frac * 60
        else:
            extra = frac * 3600
        whole = int(extra)
        frac = extra - whole
    else:
        whole = 0
    if year == 0:
        return None
    stamp = datetime(year, month, day, hour, minute) + timedelta(seconds=second + whole)
    if zone != b"Z":
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5] or b"0"))
        stamp = stamp - offset if zone[:1] == b"+" else stamp + offset
    if not 1 <= stamp.year <= 9999:
        return None
    return stamp.strftime("%Y%m%d%H%M%S").rjust(14, "0"), frac


def _generalized_time(value: bytes) -> bytes | None:
    parts = _generalized_time_parts(value)
    if parts is None:
        return None
    stamp, frac = parts
    if frac:
        text = format(frac.normalize(), "f")  # "0.25"
        return (stamp + text[1:] + "Z").encode("ascii")
    return (stamp + "Z").encode("ascii")


def _generalized_time_key(value: bytes) -> tuple[str, Decimal] | None:
    return _generalized_time_parts(value)


_UTCTIME_RE = re.compile(rb"\s*([0-9]{10})([0-9]{2})?(Z|[+-][0-9]{4})\s*\Z")


def _utc_time(value: bytes) -> bytes | None:
    m = _UTCTIME_RE.match(value)
    if m is None:
        return None
    year = int(m[1][:2])
    century = b"19" if year >= 50 else b"20"
    return _generalized_time(century + m[1] + (m[2] or b"00") + m[3])


_UUID_RE = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z")


def _uuid(value: bytes) -> bytes | None:
    """UUIDs normalise to their 16 raw bytes, as slapd does (this is the syncUUID of RFC 4533)."""
    if len(value) == 16:
        return value
    if _UUID_RE.match(value) is None:
        return None
    return bytes.fromhex(value.replace(b"-", b"").decode("ascii"))


_CSN40_RE = re.compile(rb"[0-9]{14}\.[0-9]{6}Z#[0-9A-Fa-f]{6}#[0-9A-Fa-f]{3}#[0-9A-Fa-f]{6}\Z")
_CSN32_RE = re.compile(rb"([0-9]{14})Z#([0-9A-Fa-f]{6})#([0-9A-Fa-f]{2})#([0-9A-Fa-f]{6})\Z")
_CSN31_RE = re.compile(
    rb"([0-9]{10}):([0-9]{2}):([0-9]{2})Z#0x([0-9A-Fa-f]{4})#([0-9A-Fa-f])#([0-9A-Fa-f]{4})\Z"
)


def _csn(value: bytes) -> bytes | None:
    """OpenLDAP CSN normalisation: the 2.4+ form with sid and mod lowercased; older forms converted."""
    if len(value) == 40 and _CSN40_RE.match(value):
        return value[:29] + value[29:].lower()
    if len(value) == 32:
        m = _CSN32_RE.match(value)
        if m:
            return m[1] + b".000000Z#" + m[2].lower() + b"#0" + m[3].lower() + b"#" + m[4].lower()
    if len(value) == 31:
        m = _CSN31_RE.match(value)
        if m:
            return (
                m[1]
                + m[2]
                + m[3]
                + b".000000Z#00"
                + m[4].lower()
                + b"#00"
                + m[5].lower()
                + b"#00"
                + m[6].lower()
            )
    return None


def _csn_sid(value: bytes) -> bytes | None:
    try:
        sid = int(value, 16)
    except ValueError:
        return None
    return b"%03x" % sid if 0 <= sid <= 0xFFF else None


def _first_component(value: bytes) -> bytes:
    """The first component of a `( x ... )` value, or the value itself when it is an assertion."""
    stripped = value.strip()
    if stripped.startswith(b"("):
        parts = stripped[1:].split(None, 1)
        return parts[0] if parts else b""
    return stripped


# --- the rule ---------------------------------------------------------------------------------------------


_BATCH_KEPT = 256  # values in a batch worth keeping (MatchingRule.normalize_all)


class MatchingRule:
    """A matching rule: oid, names, the syntax of its assertion values, its kind, and its functions."""

    __slots__ = (
        "oid",
        "names",
        "name",
        "key",
        "desc",
        "syntax_oid",
        "kind",
        "schema",
        "normalize",
        "normalize_assertion",
        "ordering_key",
        "normalize_substring",
        "_piece",
        "_factory",
        "_word",
        "_last_batch",
        "_kept",
    )

    normalize: Callable[[bytes], bytes | None]
    # an assertion value's form, where it differs from an attribute value's (slapd's normalizers are told which
    # they get: certificateExactMatch compares a certificate with a serialNumberAndIssuer)
    normalize_assertion: Callable[[bytes], bytes | None]
    ordering_key: Callable[[bytes], Any]
    normalize_substring: Callable[[bytes], str | None]

    def __init__(
        self,
        oid: str,
        names: tuple[str, ...],
        syntax_oid: str,
        kind: str,
        factory: Callable[[MatchingRule], None],
        desc: str = "",
        schema: Schema | None = None,
    ) -> None:
        self.oid = oid
        self.names = names
        self.name = names[0] if names else oid
        self.key = self.name.lower()
        self.desc = desc
        self.syntax_oid = syntax_oid
        self.kind = kind
        self.schema: Schema | None = schema
        self._factory = factory
        self._word = False
        self._piece: Callable[[bytes], str | None] | None = None
        self.normalize = _octet
        self.normalize_assertion = _octet
        self.ordering_key = _no_ordering
        self.normalize_substring = _no_substring
        self._last_batch: tuple[tuple[bytes, ...], tuple[bytes | None, ...]] | None = None
        self._kept: dict[bytes, bytes | None] | None = None  # a rule that keeps values normalized: by value
        factory(self)
        if self.normalize_assertion is _octet:  # the factory left it: assertions are values' syntax
            self.normalize_assertion = self.normalize

    def bind(self, schema: Schema | None) -> MatchingRule:
        """A copy of this rule that belongs to `schema`."""
        return MatchingRule(
            self.oid, self.names, self.syntax_oid, self.kind, self._factory, self.desc, schema
        )

    def normalize_all(self, values: Sequence[bytes]) -> tuple[bytes | None, ...]:
        """`normalize` of each value, in order. A large batch's answer is kept until the next one: a search
        normalizes a large OR's assertions twice, to plan its index lookups and to compile its test (10,000 uid=
        terms cost 1.5 ms a time), and the second time compares the values instead."""
        if len(values) < _BATCH_KEPT:
            return tuple(self.normalize_each(values))
        batch = tuple(values)
        last = self._last_batch  # one read: another thread may replace it meanwhile
        if last is not None and last[0] == batch:
            return last[1]
        out = tuple(self.normalize_each(batch))
        self._last_batch = (batch, out)
        return out

    def normalize_assertions(self, assertions: Sequence[bytes]) -> tuple[bytes | None, ...]:
        """`normalize_assertion` of each assertion value, in order (`normalize_all` when they are the same)."""
        if self.normalize_assertion is self.normalize:
            return self.normalize_all(assertions)
        return tuple(map(self.normalize_assertion, assertions))

    def normalize_each(self, values: Sequence[bytes]) -> list[bytes | None]:
        """`normalize` of each value, in order; for a rule that keeps its values normalized (DNs) and knows them
        all, one lookup each without a Python call (a group of 50,000 members: 1.5 ms instead of 7)."""
        kept = self._kept
        if kept is not None:
            try:
                return list(map(kept.__getitem__, values))
            except KeyError:
                pass
        return list(map(self.normalize, values))

    # Substring rules -------------------------------------------------------------------------------------

    def match_substrings(
        self, value: bytes, initial: bytes | None, any: Sequence[bytes], final: bytes | None
    ) -> bool | None:
        """Does `value` match `initial*any*...*final`? None when the value or an assertion piece is invalid."""
        text = self.normalize_substring(value)
        piece = self._piece
        if text is None or piece is None:
            return None
        pos = 0
        if initial is not None:
            p = piece(initial)
            if p is None:
                return None
            p = p.lstrip(" ") if p.strip(" ") else p
            if not text.startswith(p):
                return False
            pos = len(p)
        for chunk in any:
            p = piece(chunk)
            if p is None:
                return None
            if not p:
                continue
            found = text.find(p, pos)
            if found < 0:
                return False
            pos = found + len(p)
        if final is not None:
            p = piece(final)
            if p is None:
                return None
            p = p.rstrip(" ") if p.strip(" ") else p
            if len(text) - len(p) < pos or not text.endswith(p):
                return False
        return True

    # General matching --------------------------------------------------------------------------------------

    def matches(self, value: bytes, assertion: bytes) -> bool | None:
        """Equality (or containment, for wordMatch/keywordMatch) of an attribute value and an assertion value.

        Filter evaluation should call this rather than compare normalised bytes, so that the few rules which
        are not plain equality (word containment) behave right. None means Undefined.
        """
        a = self.normalize_assertion(assertion)
        v = self.normalize(value)
        if a is None or v is None:
            return None
        if self._word:
            return a in v.split(b" ")
        return a == v

    @property
    def definition(self) -> str:
        names = _qdescrs(self.names)
        desc = f" DESC '{self.desc}'" if self.desc else ""
        return f"( {self.oid}{names}{desc} SYNTAX {self.syntax_oid} )"

    def __repr__(self) -> str:
        return f"MatchingRule({self.name!r}, {self.oid!r})"


def _qdescrs(names: tuple[str, ...]) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return f" NAME '{names[0]}'"
    return " NAME ( " + " ".join(f"'{n}'" for n in names) + " )"


def _no_ordering(value: bytes) -> Any:
    return None


def _no_substring(value: bytes) -> str | None:
    return None


# Factories: each sets the functions of a rule. They take the rule so that schema-aware ones can close over it.


def _f_equality(normalize: Normalizer) -> Callable[[MatchingRule], None]:
    def factory(rule: MatchingRule) -> None:
        rule.normalize = normalize

    return factory


def _f_ordering(normalize: Normalizer, key: Callable[[bytes], Any]) -> Callable[[MatchingRule], None]:
    def factory(rule: MatchingRule) -> None:
        rule.normalize = normalize
        rule.ordering_key = key

    return factory


def _f_string_ordering(prep: Callable[[bytes], str | None]) -> Callable[[MatchingRule], None]:
    return _f_ordering(_encode(prep), prep)


def _f_substrings(prep: Callable[[bytes], str | None], spaces: bool = True) -> Callable[[MatchingRule], None]:
    """A substrings rule; `spaces` False when the preparation drops every space (numbers, telephones)."""

    def factory(rule: MatchingRule) -> None:
        rule.normalize = _encode(prep)
        rule.normalize_substring = prep
        rule._piece = _piece_prep(prep) if spaces else prep

    return factory


def _f_word(rule: MatchingRule) -> None:
    rule.normalize = _encode(prep_ignore)
    rule._word = True


def _f_first_component(normalize: Normalizer) -> Callable[[MatchingRule], None]:
    def factory(rule: MatchingRule) -> None:
        rule.normalize = lambda value: normalize(_first_component(value))

    return factory


def _keep_by_value(rule: MatchingRule, compute: Callable[[bytes], bytes | None], most: int) -> None:
    """`rule.normalize` as `compute`, each value's answer kept (at most `most` values; cleared when the schema
    changes, as the answers depend on it), and the kept answers known to `normalize_each`."""
    cache: dict[bytes, bytes | None] = {}

    def normalize(value: bytes) -> bytes | None:
        try:
            return cache[value]
        except KeyError:
            pass
        result = compute(value)
        if len(cache) >= most:
            cache.clear()
        cache[value] = result
        return result

    rule.normalize = normalize
    rule._kept = cache
    if rule.schema is not None:
        rule.schema._oid_caches.append(cache)


def _f_oid(rule: MatchingRule) -> None:
    def by_oid(value: bytes) -> bytes | None:
        schema = rule.schema
        text = value.strip()
        if not syn.is_oid(text):
            return None
        if text[:1].isdigit():
            return text
        oid = schema.resolve_oid(text.decode("ascii")) if schema is not None else None
        return oid.encode("ascii") if oid is not None else text.lower()

    _keep_by_value(rule, by_oid, _CACHE)


def _f_oid_first_component(rule: MatchingRule) -> None:
    _f_oid(rule)
    by_oid = rule.normalize
    rule.normalize = lambda value: by_oid(_first_component(value))


def _normalize_dn(rule: MatchingRule, value: bytes) -> bytes | None:
    from pyldapd.model.dn import DNError, normalize_dn  # the dn module imports the schema; import late

    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return normalize_dn(text, rule.schema).encode("utf-8")  # type: ignore[arg-type]
    except DNError:
        return None


_DN_CACHE = 1 << 18  # DN values kept normalized per rule: a group of 100,000 members fits


def _f_dn(rule: MatchingRule) -> None:
    # A group's members are normalized on every test of its member attribute and every change to it (duplicate
    # checks, index keys): kept by value, a lookup instead of decode, parse and encode (about 1.5 us each).
    _keep_by_value(rule, lambda value: _normalize_dn(rule, value), _DN_CACHE)


def _f_unique_member(rule: MatchingRule) -> None:
    def normalize(value: bytes) -> bytes | None:
        dn, uid = syn.split_optional_uid(value)
        ndn = _normalize_dn(rule, dn)
        if ndn is None:
            return None
        return ndn if uid is None else ndn + b"#" + uid

    rule.normalize = normalize


def _f_certificate_exact(rule: MatchingRule) -> None:
    """certificateExactMatch (RFC 4523): a certificate and a serialNumberAndIssuer assertion compare by serial
    number and issuer, each in slapd's canonical form (pyldapd.model.x509)."""
    from pyldapd.model import x509  # it imports the dn module, which needs a schema: import late

    _keep_by_value(rule, lambda value: x509.certificate_exact_form(value, rule.schema), _CERTIFICATES_KEPT)
    rule.normalize_assertion = lambda assertion: x509.serial_and_issuer_form(assertion, rule.schema)


_CERTIFICATES_KEPT = 4096  # certificates kept with their canonical form, per rule (about 1 KB each)


UNIQUE_MEMBER_MATCH = "2.5.13.23"


def unique_member_approx(value: bytes, assertion: bytes) -> bool:
    """slapd's uniqueMemberMatch for `~=`, on normalized forms: the optional UIDs count only when both sides
    carry one, else the names alone decide (`(uniqueMember~=)` finds `#'1'B`, the empty name with a UID)."""
    value_name, value_uid = syn.split_optional_uid(value)
    asserted_name, asserted_uid = syn.split_optional_uid(assertion)
    if value_uid is not None and asserted_uid is not None and value_uid != asserted_uid:
        return False
    return value_name == asserted_name


def _prep_list(value: bytes) -> str | None:
    lines = [prep_ignore(line) for line in value.split(b"$")]
    if any(line is None for line in lines):
        return None
    return "$".join(lines)  # type: ignore[arg-type]


def _lenient_ignore(value: bytes) -> bytes | None:
    text = prep_ignore(value)
    return value if text is None else text.encode("utf-8")


# --- the table --------------------------------------------------------------------------------------------

_S = syn.LDAP_SYNTAX
_EQ, _ORD, _SUB = "equality", "ordering", "substr"

_RULE_TABLE: tuple[tuple[str, str, str, str, Callable[[MatchingRule], None]], ...] = (
    ("2.5.13.0", "objectIdentifierMatch", _S + "38", _EQ, _f_oid),
    ("2.5.13.1", "distinguishedNameMatch", _S + "12", _EQ, _f_dn),
    ("2.5.13.2", "caseIgnoreMatch", _S + "15", _EQ, _f_equality(_encode(prep_ignore))),
    ("2.5.13.3", "caseIgnoreOrderingMatch", _S + "15", _ORD, _f_string_ordering(prep_ignore)),
    ("2.5.13.4", "caseIgnoreSubstringsMatch", _S + "58", _SUB, _f_substrings(prep_ignore)),
    ("2.5.13.5", "caseExactMatch", _S + "15", _EQ, _f_equality(_encode(prep_exact))),
    ("2.5.13.6", "caseExactOrderingMatch", _S + "15", _ORD, _f_string_ordering(prep_exact)),
    ("2.5.13.7", "caseExactSubstringsMatch", _S + "58", _SUB, _f_substrings(prep_exact)),
    ("2.5.13.8", "numericStringMatch", _S + "36", _EQ, _f_equality(_encode(prep_numeric))),
    ("2.5.13.9", "numericStringOrderingMatch", _S + "36", _ORD, _f_string_ordering(prep_numeric)),
    ("2.5.13.10", "numericStringSubstringsMatch", _S + "58", _SUB, _f_substrings(prep_numeric, False)),
    ("2.5.13.11", "caseIgnoreListMatch", _S + "41", _EQ, _f_equality(_encode(_prep_list))),
    ("2.5.13.12", "caseIgnoreListSubstringsMatch", _S + "58", _SUB, _f_substrings(_prep_list)),
    ("2.5.13.13", "booleanMatch", _S + "7", _EQ, _f_equality(_boolean)),
    ("2.5.13.14", "integerMatch", _S + "27", _EQ, _f_equality(_integer)),
    ("2.5.13.15", "integerOrderingMatch", _S + "27", _ORD, _f_ordering(_integer, _integer_key)),
    ("2.5.13.16", "bitStringMatch", _S + "6", _EQ, _f_equality(_bit_string)),
    ("2.5.13.17", "octetStringMatch", _S + "40", _EQ, _f_equality(_octet)),
    ("2.5.13.18", "octetStringOrderingMatch", _S + "40", _ORD, _f_ordering(_octet, _octet)),
    # bytes as they are (latin-1: one character per byte), no case folding, no space handling
    ("2.5.13.19", "octetStringSubstringsMatch", _S + "58", _SUB, _f_substrings(_octet_text, False)),
    ("2.5.13.20", "telephoneNumberMatch", _S + "50", _EQ, _f_equality(_encode(prep_telephone))),
    ("2.5.13.21", "telephoneNumberSubstringsMatch", _S + "58", _SUB, _f_substrings(prep_telephone, False)),
    ("2.5.13.22", "presentationAddressMatch", _S + "43", _EQ, _f_equality(_lenient_ignore)),
    (UNIQUE_MEMBER_MATCH, "uniqueMemberMatch", _S + "34", _EQ, _f_unique_member),
    ("2.5.13.24", "protocolInformationMatch", _S + "42", _EQ, _f_equality(_lenient_ignore)),
    ("2.5.13.25", "uTCTimeMatch", _S + "53", _EQ, _f_equality(_utc_time)),
    ("2.5.13.27", "generalizedTimeMatch", _S + "24", _EQ, _f_equality(_generalized_time)),
    (
        "2.5.13.28",
        "generalizedTimeOrderingMatch",
        _S + "24",
        _ORD,
        _f_ordering(_generalized_time, _generalized_time_key),
    ),
    ("2.5.13.29", "integerFirstComponentMatch", _S + "27", _EQ, _f_first_component(_integer)),
    ("2.5.13.30", "objectIdentifierFirstComponentMatch", _S + "38", _EQ, _f_oid_first_component),
    (
        "2.5.13.31",
        "directoryStringFirstComponentMatch",
        _S + "15",
        _EQ,
        _f_first_component(_encode(prep_ignore)),
    ),
    ("2.5.13.32", "wordMatch", _S + "15", _EQ, _f_word),
    ("2.5.13.33", "keywordMatch", _S + "15", _EQ, _f_word),
    ("2.5.13.34", "certificateExactMatch", "1.3.6.1.1.15.1", _EQ, _f_certificate_exact),
    ("2.5.13.35", "certificateMatch", "1.3.6.1.1.15.2", _EQ, _f_equality(_octet)),
    ("2.5.13.36", "certificatePairExactMatch", "1.3.6.1.1.15.3", _EQ, _f_equality(_octet)),
    ("2.5.13.38", "certificateListExactMatch", "1.3.6.1.1.15.5", _EQ, _f_equality(_octet)),
    ("1.3.6.1.4.1.1466.109.114.1", "caseExactIA5Match", _S + "26", _EQ, _f_equality(_encode(prep_ia5_exact))),
    (
        "1.3.6.1.4.1.1466.109.114.2",
        "caseIgnoreIA5Match",
        _S + "26",
        _EQ,
        _f_equality(_encode(prep_ia5_ignore)),
    ),
    (
        "1.3.6.1.4.1.1466.109.114.3",
        "caseIgnoreIA5SubstringsMatch",
        _S + "58",
        _SUB,
        _f_substrings(prep_ia5_ignore),
    ),
    ("1.3.6.1.4.1.4203.1.2.1", "caseExactIA5SubstringsMatch", _S + "58", _SUB, _f_substrings(prep_ia5_exact)),
    ("1.2.840.113556.1.4.803", "integerBitAndMatch", _S + "27", _EQ, _f_equality(_integer)),
    ("1.2.840.113556.1.4.804", "integerBitOrMatch", _S + "27", _EQ, _f_equality(_integer)),
    (syn.UUID_SYNTAX[:-1] + "2", "UUIDMatch", syn.UUID_SYNTAX, _EQ, _f_equality(_uuid)),
    (syn.UUID_SYNTAX[:-1] + "3", "UUIDOrderingMatch", syn.UUID_SYNTAX, _ORD, _f_ordering(_uuid, _uuid)),
    ("1.3.6.1.4.1.4203.666.11.2.2", "CSNMatch", syn.CSN_SYNTAX, _EQ, _f_equality(_csn)),
    ("1.3.6.1.4.1.4203.666.11.2.3", "CSNOrderingMatch", syn.CSN_SYNTAX, _ORD, _f_ordering(_csn, _csn)),
    ("1.3.6.1.4.1.4203.666.11.2.5", "CSNSIDMatch", syn.CSN_SID_SYNTAX, _EQ, _f_equality(_csn_sid)),
    ("1.3.6.1.4.1.4203.666.4.1", "authzMatch", syn.AUTHZ_SYNTAX, _EQ, _f_equality(_octet)),
)


def builtin_matching_rules(schema: Schema | None = None) -> list[MatchingRule]:
    """Fresh MatchingRule objects for every rule known in code, bound to `schema`."""
    return [
        MatchingRule(oid, (name,), syntax_oid, kind, factory, schema=schema)
        for oid, name, syntax_oid, kind, factory in _RULE_TABLE
    ]


# --- approximate matching (slapd's approxMatch with its default metaphone, servers/slapd/phonetic.c) -------------

# Letter classes of slapd's metaphone: 1 vowel AEIOU, 2 FJLMNR kept as they are, 4 CGPST, 8 EIY front vowels, 16 BDH
_MP_CLASS = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        (1, 16, 4, 16, 9, 2, 4, 16, 9, 2, 0, 2, 2, 2, 1, 4, 0, 2, 4, 4, 1, 0, 0, 0, 8, 0),
        strict=True,
    )
)
_MP_MAX = 4  # slapd's MAXPHONEMELEN

# Equality rules slapd gives an approximate form (directoryStringApproxMatch, IA5StringApproxMatch); `~=` under
# any other rule is equality
APPROX_RULES = frozenset(
    {
        "2.5.13.2",  # caseIgnoreMatch
        "2.5.13.5",  # caseExactMatch
        "1.3.6.1.4.1.1466.109.114.1",  # caseExactIA5Match
        "1.3.6.1.4.1.1466.109.114.2",  # caseIgnoreIA5Match
    }
)


def _mp(c: str, bit: int) -> bool:
    return bool(_MP_CLASS.get(c, 0) & bit)


def _word_break(c: str) -> bool:
    # slapd's iswordbreak: not ASCII, space, punctuation or digit
    return not c.isascii() or c.isspace() or c.isdigit() or (c.isprintable() and not c.isalnum())


@lru_cache(maxsize=_CACHE)
def metaphone(word: str) -> str:
    """slapd's phonetic() key of one word: its letters up to the first digit, punctuation or space, as metaphone.

    A transcription of the rules of OpenLDAP's phonetic.c (Parker's metaphone with the University of Michigan
    changes, quirks included: a B is kept only as the last letter), so `~=` selects what slapd selects.
    """
    letters: list[str] = []
    for c in word:
        if _word_break(c) or len(letters) >= 31:
            break
        if c.isalpha():
            letters.append(c.upper())
    if not letters:
        return ""
    # four NULs before (slapd looks back up to four places) and after (it looks ahead up to three)
    s = ["\0"] * 4 + letters + ["\0"] * 4
    n = 4
    end = 4 + len(letters)
    first, second = s[n], s[n + 1]
    if first in "PKG" and second == "N" or first == "A" and second == "E" or first == "W" and second == "R":
        s[n] = "\0"
        n += 1
    elif first == "W" and second == "H":
        s[n + 1] = s[n]
        s[n] = "\0"
        n += 1
    elif first == "X":
        s[n] = "S"
    start = n
    out: list[str] = []
    ks = False
    while n <= end and len(out) < _MP_MAX:
        c = s[n]
        if ks:
            ks = False
            out.append("S")
            n += 1
            continue
        prev, nxt, nxt2 = s[n - 1], s[n + 1], s[n + 2]
        if prev == c and c != "C":
            n += 1
            continue
        if _mp(c, 2) or (n == start and _mp(c, 1)):
            out.append(c)
        elif c == "B":
            if n == end - 1 and prev != "M":
                out.append("B")
        elif c == "C":
            if prev != "S" or not _mp(nxt, 8):
                if nxt == "I" and nxt2 == "A":
                    out.append("X")
                elif _mp(nxt, 8):
                    out.append("S")
                elif nxt == "H":
                    out.append("K" if (n == start and not _mp(nxt2, 1)) or prev == "S" else "X")
                else:
                    out.append("K")
        elif c == "D":
            out.append("J" if nxt == "G" and _mp(nxt2, 8) else "T")
        elif c == "G":
            if (
                (nxt != "J" or _mp(nxt2, 1))
                and (nxt != "N" or (n + 1 < end and (nxt2 != "E" or s[n + 3] != "D")))
                and (prev != "D" or not _mp(nxt, 8))
            ):
                out.append("G" if _mp(nxt, 8) and nxt2 != "G" else "K")
            elif nxt == "H" and not _mp(s[n - 3], 16) and s[n - 4] != "H":
                out.append("F")
        elif c == "H":
            if not _mp(prev, 4) and (not _mp(prev, 1) or _mp(nxt, 1)):
                out.append("H")
        elif c == "K":
            if prev != "C":
                out.append("K")
        elif c == "P":
            out.append("F" if nxt == "H" else "P")
        elif c == "Q":
            out.append("K")
        elif c == "S":
            out.append("X" if nxt == "H" or (nxt == "I" and nxt2 in "OA" and nxt2 != "\0") else "S")
        elif c == "T":
            if nxt == "I" and nxt2 in "OA" and nxt2 != "\0":
                out.append("X")
            elif nxt == "H":
                out.append("0")
            elif nxt != "C" or nxt2 != "H":
                out.append("T")
        elif c == "V":
            out.append("F")
        elif c in "WY":
            if _mp(nxt, 1):
                out.append(c)
        elif c == "X":
            if n == start:
                out.append("S")
            else:
                out.append("K")
                ks = True
        elif c == "Z":
            out.append("S")
        n += 1
    return "".join(out)


def _approx_text(value: bytes) -> str | None:
    # slapd's UTF8bvnormalize(LDAP_UTF8_APPROX): compatibility decomposition, only the ASCII characters kept
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii())


def approx_keys(value: bytes) -> list[bytes]:
    """The approx index keys of an (equality-normalised) value, as slapd's approxIndexer: the phonetic key of each
    space-separated word, words without letters giving none."""
    text = _approx_text(value)
    if text is None:
        return []
    return [k.encode() for k in (metaphone(w) for w in text.split(" ") if w) if k]


def approx_filter_keys(assertion: bytes) -> list[bytes] | None:
    """The keys an approx filter looks up (slapd's approxFilter): one per word, empty for a word without letters.
    None when the assertion has no word (then the index cannot narrow the search)."""
    text = _approx_text(assertion)
    if text is None:
        return None
    keys = [metaphone(w).encode() for w in text.split(" ") if w]
    return keys or None


def approx_match(value: bytes, assertion: bytes) -> bool:
    """slapd's approxMatch on (equality-normalised) values: every word of the assertion has the phonetic key of a
    word of the value, in the same order; an assertion without words matches nothing."""
    text = _approx_text(value)
    wanted = _approx_text(assertion)
    if text is None or wanted is None:
        return False
    codes = [metaphone(w) for w in text.split(" ")]
    nextavail = 0
    for word in wanted.split(" "):
        if not word:
            continue
        code = metaphone(word)
        for i in range(nextavail, len(codes)):
            if codes[i] == code:
                nextavail = i + 1
                break
        else:
            return False
    return nextavail > 0
