"""LDAP search filters (RFC 4511 section 4.5.1, string form RFC 4515).

The AST below is shared by the protocol codec (which decodes filters off the wire into it), the storage layer
(which turns it into index lookups) and the evaluator (which tests an entry against it).
Attribute names are kept as the client sent them; the schema resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class And:
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    filter: Filter


@dataclass(frozen=True, slots=True)
class Equality:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Substrings:
    attr: str
    initial: bytes | None
    any: tuple[bytes, ...]
    final: bytes | None


@dataclass(frozen=True, slots=True)
class GreaterOrEqual:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class LessOrEqual:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Present:
    attr: str


@dataclass(frozen=True, slots=True)
class Approx:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Extensible:
    rule: str | None
    attr: str | None
    value: bytes
    dn_attributes: bool = False


Filter = And | Or | Not | Equality | Substrings | GreaterOrEqual | LessOrEqual | Present | Approx | Extensible


# =============================================================================================================
# String form (RFC 4515), attribute lists and evaluation. Everything below works on the AST above.
# =============================================================================================================

import string  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from pyldapd.model.entry import MANY_VALUES  # noqa: E402
from pyldapd.model.matching import (  # noqa: E402
    APPROX_RULES,
    UNIQUE_MEMBER_MATCH,
    approx_match,
    unique_member_approx,
)
from pyldapd.model.ordered import assertion_matches, ordered_kind  # noqa: E402
from pyldapd.model.ordered import body as ordered_body  # noqa: E402
from pyldapd.model.schema import options_test  # noqa: E402
from pyldapd.model.syntaxes import UNCHECKED_ASSERTION_SYNTAXES  # noqa: E402

if TYPE_CHECKING:
    from pyldapd.model.entry import Entry


class FilterError(ValueError):
    """A filter string that cannot be parsed."""


MAX_FILTER_DEPTH = 200
"""Deepest nesting of '&', '|' and '!' accepted by parse_filter (filters written in the config)."""

MAX_MATCH_DEPTH = 4000
"""Deepest nesting compiled (decoders stop at maxfilterdepth, slapd's default 1000, at most this). Walks are
recursive: the server raises the interpreter's recursion limit to match (server/limits.py)."""

_HEXDIGITS = frozenset(string.hexdigits)
_ATTR_CHARS = frozenset(string.ascii_letters + string.digits + "-.;_")
_LEGACY_ESCAPES = frozenset("*()\\")


def _unescape(raw: str, pos: int) -> bytes:
    """Unescape an assertion value: '\\XX' hex pairs, and the legacy '\\*' '\\(' '\\)' '\\\\'."""
    if "\\" not in raw:
        return raw.encode("utf-8")
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        k = raw.find("\\", i)
        if k < 0:
            out += raw[i:].encode("utf-8")
            break
        out += raw[i:k].encode("utf-8")
        if k + 2 < n and raw[k + 1] in _HEXDIGITS and raw[k + 2] in _HEXDIGITS:
            out.append(int(raw[k + 1 : k + 3], 16))
            i = k + 3
        elif k + 1 < n and raw[k + 1] in _LEGACY_ESCAPES:
            out += raw[k + 1].encode("ascii")
            i = k + 2
        else:
            raise FilterError(f"bad filter: invalid escape at offset {pos + k}")
    return bytes(out)


def _split_stars(raw: str) -> list[str]:
    """Split a raw (still escaped) value on its unescaped '*'."""
    if "*" not in raw:
        return [raw]
    if "\\" not in raw:
        return raw.split("*")
    pieces: list[str] = []
    start = 0
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == "\\":
            i += 2
            continue
        if c == "*":
            pieces.append(raw[start:i])
            start = i + 1
        i += 1
    pieces.append(raw[start:])
    return pieces


def _check_attr(attr: str, pos: int) -> str:
    if not attr or not _ATTR_CHARS.issuperset(attr):
        raise FilterError(f"bad filter: invalid attribute description {attr!r} at offset {pos}")
    return attr


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in " \t\r\n":
        i += 1
    return i


def _item_end(s: str, i: int) -> int:
    """Index of the ')' closing a simple item starting at s[i] (balanced parentheses allowed, as libldap does)."""
    depth = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise FilterError("bad filter: missing ')'")


def _parse_item(text: str, pos: int) -> Filter:
    k = text.find("=")
    if k <= 0:
        if k == 0:
            raise FilterError(f"bad filter: missing attribute description at offset {pos}")
        raise FilterError(f"bad filter: missing '=' in item at offset {pos}")
    raw = text[k + 1 :]
    op = text[k - 1]
    if op == "~":
        return Approx(_check_attr(text[: k - 1], pos), _unescape(raw, pos + k + 1))
    if op == ">":
        return GreaterOrEqual(_check_attr(text[: k - 1], pos), _unescape(raw, pos + k + 1))
    if op == "<":
        return LessOrEqual(_check_attr(text[: k - 1], pos), _unescape(raw, pos + k + 1))
    if op == ":":
        parts = text[: k - 1].split(":")
        attr: str | None = parts[0] or None
        if attr is not None:
            _check_attr(attr, pos)
        rest = parts[1:]
        dn_attributes = False
        if rest and rest[0].lower() == "dn":
            dn_attributes = True
            rest = rest[1:]
        rule: str | None = None
        if rest:
            if len(rest) != 1 or not rest[0]:
                raise FilterError(f"bad filter: invalid extensible match at offset {pos}")
            rule = _check_attr(rest[0], pos)
        if attr is None and rule is None:
            raise FilterError(f"bad filter: extensible match needs a type or a rule at offset {pos}")
        return Extensible(rule, attr, _unescape(raw, pos + k + 1), dn_attributes)
    attr_name = _check_attr(text[:k], pos)
    pieces = _split_stars(raw)
    if len(pieces) == 1:
        return Equality(attr_name, _unescape(raw, pos + k + 1))
    if len(pieces) == 2 and not pieces[0] and not pieces[1]:
        return Present(attr_name)
    initial = _unescape(pieces[0], pos) if pieces[0] else None
    final = _unescape(pieces[-1], pos) if pieces[-1] else None
    middle = tuple(_unescape(p, pos) for p in pieces[1:-1] if p)
    return Substrings(attr_name, initial, middle, final)


def _parse_at(s: str, i: int, depth: int) -> tuple[Filter, int]:
    """Parse one parenthesised filter at s[i] (after optional spaces); return it and the index after ')'."""
    i = _skip_ws(s, i)
    if i >= len(s) or s[i] != "(":
        raise FilterError(f"bad filter: '(' expected at offset {i}")
    if depth > MAX_FILTER_DEPTH:
        raise FilterError("bad filter: nested too deeply")
    i = _skip_ws(s, i + 1)
    if i >= len(s):
        raise FilterError("bad filter: unexpected end")
    c = s[i]
    if c in "&|":
        i += 1
        subs: list[Filter] = []
        while True:
            i = _skip_ws(s, i)
            if i >= len(s):
                raise FilterError("bad filter: missing ')'")
            if s[i] == ")":
                break
            sub, i = _parse_at(s, i, depth + 1)
            subs.append(sub)
        return (And(tuple(subs)) if c == "&" else Or(tuple(subs))), i + 1
    if c == "!":
        sub, i = _parse_at(s, i + 1, depth + 1)
        i = _skip_ws(s, i)
        if i >= len(s) or s[i] != ")":
            raise FilterError(f"bad filter: ')' expected at offset {i}")
        return Not(sub), i + 1
    if c == "(":
        raise FilterError(f"bad filter: unexpected '(' at offset {i}")
    end = _item_end(s, i)
    return _parse_item(s[i:end], i), end + 1


def parse_filter(s: str) -> Filter:
    """Parse an RFC 4515 filter string. The outer parentheses may be left out, as ldapsearch allows.

    Also accepted, as OpenLDAP's libldap does: legacy escapes ('\\*', '\\(', '\\)', '\\\\'), spaces between
    the filters of a list, balanced parentheses inside values, and the RFC 4526 absolute true "(&)" and
    false "(|)". Raises FilterError.
    """
    text = s.strip()
    if not text:
        raise FilterError("bad filter: empty")
    if text[0] != "(":
        text = "(" + text + ")"
    f, i = _parse_at(text, 0, 0)
    if _skip_ws(text, i) != len(text):
        raise FilterError(f"bad filter: trailing characters at offset {i}")
    return f


_ESCAPE_TABLE = {c: f"\\{c:02X}" for c in range(256) if c < 0x20 or c == 0x7F or chr(c) in "()*\\"}


def escape_filter_value(value: bytes, *, escape_non_ascii: bool = True) -> str:
    """Escape an assertion value for a filter string.

    Like libldap's ldap_bv2escaped_filter_value (what slapd prints in its logs): '(' ')' '*' '\\', control
    characters, DEL and every byte >= 0x80 become '\\XX'. With escape_non_ascii=False, valid UTF-8 stays
    readable and only bytes of invalid UTF-8 are hex-escaped.
    """
    if value.isascii():
        text = value.decode("ascii")
        if text.isprintable() and not any(c in text for c in "()*\\"):
            return text
        return "".join(_ESCAPE_TABLE.get(ord(c), c) for c in text)
    if not escape_non_ascii:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "".join(_ESCAPE_TABLE.get(ord(c), c) if ord(c) < 0x80 else c for c in text)
    return "".join(f"\\{b:02X}" if b >= 0x80 or b in _ESCAPE_TABLE else chr(b) for b in value)


def filter_to_string(f: Filter, *, escape_non_ascii: bool = True) -> str:
    """The RFC 4515 string of a filter, as slapd prints it in its logs, e.g. '(&(objectClass=person)(cn=J*))'."""
    parts: list[str] = []
    _to_string(f, parts, escape_non_ascii)
    return "".join(parts)


def _to_string(f: Filter, out: list[str], ena: bool) -> None:
    if isinstance(f, Equality):
        out += ("(", f.attr, "=", escape_filter_value(f.value, escape_non_ascii=ena), ")")
    elif isinstance(f, And | Or):
        out.append("(&" if isinstance(f, And) else "(|")
        for sub in f.filters:
            _to_string(sub, out, ena)
        out.append(")")
    elif isinstance(f, Not):
        out.append("(!")
        _to_string(f.filter, out, ena)
        out.append(")")
    elif isinstance(f, Present):
        out += ("(", f.attr, "=*)")
    elif isinstance(f, Substrings):
        out += ("(", f.attr, "=")
        if f.initial is not None:
            out.append(escape_filter_value(f.initial, escape_non_ascii=ena))
        out.append("*")
        for piece in f.any:
            out += (escape_filter_value(piece, escape_non_ascii=ena), "*")
        if f.final is not None:
            out.append(escape_filter_value(f.final, escape_non_ascii=ena))
        out.append(")")
    elif isinstance(f, GreaterOrEqual):
        out += ("(", f.attr, ">=", escape_filter_value(f.value, escape_non_ascii=ena), ")")
    elif isinstance(f, LessOrEqual):
        out += ("(", f.attr, "<=", escape_filter_value(f.value, escape_non_ascii=ena), ")")
    elif isinstance(f, Approx):
        out += ("(", f.attr, "~=", escape_filter_value(f.value, escape_non_ascii=ena), ")")
    elif isinstance(f, Extensible):
        out += ("(", f.attr or "")
        if f.dn_attributes:
            out.append(":dn")
        if f.rule:
            out += (":", f.rule)
        out += (":=", escape_filter_value(f.value, escape_non_ascii=ena), ")")
    else:  # pragma: no cover - the AST is closed
        raise TypeError(f"not a filter: {f!r}")


def filter_attributes(f: Filter) -> set[str]:
    """The attribute descriptions a filter names, as written (extensible matches without a type add none)."""
    out: set[str] = set()
    stack: list[Filter] = [f]
    while stack:
        g = stack.pop()
        if isinstance(g, And | Or):
            stack.extend(g.filters)
        elif isinstance(g, Not):
            stack.append(g.filter)
        elif isinstance(g, Extensible):
            if g.attr:
                out.add(g.attr)
        else:
            out.add(g.attr)
    return out


# --- evaluation ------------------------------------------------------------------------------------------------

Tri = bool | None
"""Three-valued result: True, False, or None for Undefined (RFC 4511 section 4.5.1.7)."""
Matcher = Callable[["Entry"], Tri]

_BIT_AND = "1.2.840.113556.1.4.803"
_BIT_OR = "1.2.840.113556.1.4.804"
_APPROX_RULES = APPROX_RULES  # '~=' is slapd's approxMatch under these, equality under others


_CACHED_NODES = 64
"""Filters with more nodes than this are compiled for each search, not kept (see FilterEvaluator.compile3)."""


def _small(f: Filter) -> bool:
    """Has `f` at most _CACHED_NODES nodes? (Stops counting there.)"""
    stack: list[Filter] = [f]
    nodes = 0
    while stack:
        nodes += 1
        if nodes > _CACHED_NODES:
            return False
        g = stack.pop()
        if isinstance(g, And | Or):
            if len(g.filters) > _CACHED_NODES:
                return False
            stack.extend(g.filters)
        elif isinstance(g, Not):
            stack.append(g.filter)
    return True


def _true(entry: Entry) -> Tri:
    return True


def _false(entry: Entry) -> Tri:
    return False


def _undefined(entry: Entry) -> Tri:
    return None


def _int_or_none(value: bytes) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


_UNRESOLVED = object()


class FilterEvaluator:
    """Test entries against filters with a schema's matching rules.

    `compile(f)` does the per-filter work once (attribute resolution, assertion normalisation) and returns a
    function of an entry; use it for every candidate of a search. `matches(f, entry)` is the one-shot form
    (it keeps a small cache of compiled filters). `compile3`/`evaluate` give the three-valued result.
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._compiled: dict[Filter, Matcher] = {}

    # public API ------------------------------------------------------------------------------------------

    def compile(self, f: Filter) -> Callable[[Entry], bool]:
        """A function entry -> bool (Undefined counts as False)."""
        if type(f) is Equality:
            plain = self._plain_equality_type(f.attr)
            if plain is not None:  # True or False, never Undefined: no wrapper needed
                fn = self._plain_equality(plain, f.value)
                return _false if fn is _undefined else fn
        fn = self.compile3(f)

        def match(entry: Entry) -> bool:
            return fn(entry) is True

        return match

    def compile3(self, f: Filter) -> Matcher:
        """A function entry -> True / False / None (Undefined)."""
        if type(f) is Equality:  # the most common filter: compiled from its attribute's facts, kept per
            # description (hashing the filter and keeping it would cost more: its values vary from search to search)
            return self._equality(f.attr, f.value, approx=False)
        if not _small(f):  # hashing it costs as much as compiling it, and keeping it costs memory
            return self._compile(f, 0)
        fn = self._compiled.get(f)
        if fn is None:
            fn = self._compile(f, 0)
            if len(self._compiled) > 1024:
                self._compiled.clear()
            self._compiled[f] = fn
        return fn

    def matches(self, f: Filter, entry: Entry) -> bool:
        return self.compile3(f)(entry) is True

    def evaluate(self, f: Filter, entry: Entry) -> Tri:
        return self.compile3(f)(entry)

    # compilation -----------------------------------------------------------------------------------------

    def _compile(self, f: Filter, depth: int) -> Matcher:
        if depth > MAX_MATCH_DEPTH:
            return _undefined
        if isinstance(f, Equality):
            return self._equality(f.attr, f.value, approx=False)
        if isinstance(f, And):
            return self._and([self._compile(g, depth + 1) for g in f.filters])
        if isinstance(f, Or):
            return self._or(self._or_parts(f.filters, depth + 1))
        if isinstance(f, Not):
            inner = self._compile(f.filter, depth + 1)
            if inner is _true:
                return _false
            if inner is _false:
                return _true
            if inner is _undefined:
                return _undefined

            def negate(entry: Entry) -> Tri:
                r = inner(entry)
                return None if r is None else not r

            return negate
        if isinstance(f, Present):
            return self._present(f.attr)
        if isinstance(f, Substrings):
            return self._substrings(f)
        if isinstance(f, GreaterOrEqual):
            return self._ordering(f.attr, f.value, greater=True)
        if isinstance(f, LessOrEqual):
            return self._ordering(f.attr, f.value, greater=False)
        if isinstance(f, Approx):
            return self._equality(f.attr, f.value, approx=True)
        if isinstance(f, Extensible):
            return self._extensible(f)
        raise TypeError(f"not a filter: {f!r}")  # pragma: no cover

    @staticmethod
    def _and(subs: list[Matcher]) -> Matcher:
        if any(s is _false for s in subs):
            return _false
        subs = [s for s in subs if s is not _true]
        if not subs:
            return _true
        if len(subs) == 1:
            return subs[0]

        def conj(entry: Entry) -> Tri:
            result: Tri = True
            for s in subs:
                r = s(entry)
                if r is False:
                    return False
                if r is None:
                    result = None
            return result

        return conj

    @staticmethod
    def _or(subs: list[Matcher]) -> Matcher:
        if any(s is _true for s in subs):
            return _true
        subs = [s for s in subs if s is not _false]
        if not subs:
            return _false
        if len(subs) == 1:
            return subs[0]

        def disj(entry: Entry) -> Tri:
            result: Tri = False
            for s in subs:
                r = s(entry)
                if r is True:
                    return True
                if r is None:
                    result = None
            return result

        return disj

    def _or_parts(self, filters: tuple[Filter, ...], depth: int) -> list[Matcher]:
        """The members of an OR compiled; equality terms on one attribute become one set membership test."""
        groups: dict[str, tuple[Equality, list[bytes]]] = {}
        order: list[Filter | str] = []  # members, and in place of each group its first term's key
        for g in filters:
            if type(g) is Equality:
                key = g.attr.lower()
                group = groups.get(key)
                if group is None:
                    groups[key] = (g, [g.value])
                    order.append(key)
                else:
                    group[1].append(g.value)
            else:
                order.append(g)
        out: list[Matcher] = []
        for item in order:
            if type(item) is str:
                first, values = groups[item]
                out.append(
                    self._compile(first, depth)
                    if len(values) == 1
                    else self._equality_set(first.attr, values)
                )
            else:
                out.append(self._compile(item, depth))  # type: ignore[arg-type]
        return out

    def _equality_set(self, description: str, assertions: list[bytes]) -> Matcher:
        """OR of `description=a` for every a in assertions: each entry value normalised once, then looked up.

        Same three-valued result as the terms one by one: True if one matches; else Undefined if a term is
        Undefined (an assertion invalid for a rule met, a subtype without equality rule); else False.
        """
        resolved = self._resolve(description)
        if resolved is None:
            return _undefined
        at, values = resolved
        rule = at.equality
        if rule is None:
            return _undefined
        if at.key == "objectclass" or getattr(rule, "_word", False) or ordered_kind(at) is not None:
            return self._or([self._equality(description, a, approx=False) for a in assertions])
        # the assertions normalised by each rule met (subtypes may have their own): (set, some were invalid)
        by_rule: dict[int, tuple[frozenset[bytes], bool]] = {}

        def assertions_for(r: Any) -> tuple[frozenset[bytes], bool]:
            key = id(r)
            found = by_rule.get(key)
            if found is None:
                normalised = r.normalize_assertions(assertions)
                found = frozenset(n for n in normalised if n is not None), None in normalised
                by_rule[key] = found
            return found

        wanted, invalid = assertions_for(rule)
        if not wanted:
            return _undefined
        if invalid:  # those terms are Undefined for every entry (as _equality compiles them)
            by_rule[id(rule)] = wanted, False

        def equality_set(entry: Entry) -> Tri:
            result: Tri = False
            for sub, vals in values(entry):
                r = sub.equality
                if r is None:
                    result = None
                    continue
                if r is rule:
                    targets = wanted
                else:
                    targets, some_invalid = assertions_for(r)
                    if some_invalid:
                        result = None
                if getattr(r, "_word", False):
                    originals = [a for a in assertions if r.normalize_assertion(a) is not None]
                    if any(r.matches(v, a) for a in originals for v in vals):
                        return True
                    continue
                norm = r.normalize
                for v in vals:
                    if norm(v) in targets:
                        return True
            return result

        if invalid:
            return self._or([equality_set, _undefined])
        return equality_set

    def _resolve(
        self, description: str
    ) -> tuple[Any, Callable[[Entry], list[tuple[Any, list[bytes]]]]] | None:
        """The attribute type of a description and a function giving an entry's matching (type, values).
        Kept per description until the schema changes (every search's filter resolves its attributes)."""
        cache = self.schema.derived.setdefault("filter.resolve", {})
        found = cache.get(description, _UNRESOLVED)
        if found is _UNRESOLVED:
            found = self._resolve_afresh(description)
            if len(cache) > 10_000:
                cache.clear()
            cache[description] = found
        return found

    def _resolve_afresh(
        self, description: str
    ) -> tuple[Any, Callable[[Entry], list[tuple[Any, list[bytes]]]]] | None:
        at, options = self.schema.split_description(description)
        if at is None:
            return None
        if at.key == "entrydn":  # computed: the entry's own DN, as slapd's (an entry may carry its own: the
            # root DSE, the subschema subentry, a matchedValues test's one-value view)
            if options:
                return None

            def entry_dn(entry: Entry) -> list[tuple[Any, list[bytes]]]:
                own = entry.attrs.get("entrydn")
                if own is not None:
                    return [(at, own.values)]
                return [(at, [entry.dn.encode("utf-8")])] if entry.dn else []

            return at, entry_dn
        by_key: dict[str, Any] = {sub.key: sub for sub in self.schema.subtypes(at)}
        if at.key not in by_key:
            by_key[at.key] = at
        wanted = bool(options)
        holds = options_test(options)
        single = [(at.key, at)] if len(by_key) == 1 else list(by_key.items())

        def values(entry: Entry) -> list[tuple[Any, list[bytes]]]:
            attrs = entry.attrs
            out: list[tuple[Any, list[bytes]]] = []
            if not wanted:
                for key, sub in single:
                    a = attrs.get(key)
                    if a is not None and a.values:
                        out.append((sub, a.values))
            for key in attrs:
                if ";" in key:
                    base, _, opts = key.partition(";")
                    sub = by_key.get(base)
                    if sub is not None and holds(opts):
                        a = attrs[key]
                        if a.values:
                            out.append((sub, a.values))
            return out

        return at, values

    def _object_class_equality(self, wanted: bytes) -> Matcher:
        """slapd's objectSubClassMatch: an entry of class inetOrgPerson is also a person and a top."""
        closure = self.schema.object_class_closure

        def object_class(entry: Entry) -> Tri:
            attribute = entry.attrs.get("objectclass")
            return attribute is not None and any(wanted in closure(v) for v in attribute.values)

        return object_class

    def _present(self, description: str) -> Matcher:
        at, options = self.schema.split_description(description)
        if at is None:
            return _false
        if at.key == "objectclass" and not options:
            return _true
        resolved = self._resolve(description)
        assert resolved is not None
        values = resolved[1]

        def present(entry: Entry) -> Tri:
            return bool(values(entry))

        return present

    def _plain_equality_type(self, description: str) -> Any:
        """The attribute type of a description whose equality needs none of _equality's special cases (no
        options, no subtypes, an equality rule that normalizes: neither objectClass, nor X-ORDERED, nor word
        matching), else None. Kept per description until the schema changes."""
        cache = self.schema.derived.setdefault("filter.plain_equality", {})
        found = cache.get(description, _UNRESOLVED)
        if found is _UNRESOLVED:
            found = None
            at, options = self.schema.split_description(description)
            if (
                at is not None
                and not options
                and at.equality is not None
                and at.key not in ("objectclass", "entrydn")  # (entryDN is computed: `_resolve`)
                and ordered_kind(at) is None
                and not getattr(at.equality, "_word", False)
                and all(sub is at for sub in self.schema.subtypes(at))
            ):
                found = at
            if len(cache) > 10_000:
                cache.clear()
            cache[description] = found
        return found

    @staticmethod
    def _plain_equality(plain: Any, assertion: bytes) -> Matcher:
        """_equality for a type of _plain_equality_type: True or False (Undefined when the assertion is not a
        valid value)."""
        key = plain.key
        rule = plain.equality
        norm = rule.normalize
        wanted_value = rule.normalize_assertion(assertion)
        if wanted_value is None:
            return _undefined

        def plain_equality(entry: Entry) -> Tri:
            attrs = entry.attrs
            attribute = attrs.get(key)
            if attribute is not None:
                values = attribute.values
                if len(values) > MANY_VALUES:  # (member=...) on a large group: a set lookup
                    if wanted_value in attribute.normalized(rule)[0]:
                        return True
                else:
                    for v in values:
                        if norm(v) == wanted_value:
                            return True
            for name in attrs:  # the type with options (uid;x-tag) holds values of the type too
                if ";" in name and name.partition(";")[0] == key:
                    for v in attrs[name].values:
                        if norm(v) == wanted_value:
                            return True
            return False

        return plain_equality

    def _equality(self, description: str, assertion: bytes, approx: bool) -> Matcher:
        plain = None if approx else self._plain_equality_type(description)
        if plain is not None:  # the test below without its general cases (this runs for most searches)
            return self._plain_equality(plain, assertion)
        resolved = self._resolve(description)
        if resolved is None:
            return _undefined
        at, values = resolved
        rule = at.equality
        if rule is None:
            return _undefined
        wanted = rule.normalize_assertion(assertion)
        if wanted is None:
            return _undefined
        if at.key == "objectclass":
            return self._object_class_equality(wanted)
        if ordered_kind(at) is not None and not approx:
            return self._ordered_equality(at, values, assertion)
        # the assertion, normalised by each rule met (subtypes may have their own)
        by_rule: dict[int, bytes | None] = {id(rule): wanted}

        def assertion_for(r: Any) -> bytes | None:
            key = id(r)
            if key not in by_rule:
                by_rule[key] = r.normalize_assertion(assertion)
            return by_rule[key]

        word = bool(getattr(rule, "_word", False))

        def equality(entry: Entry) -> Tri:
            result: Tri = False
            for sub, vals in values(entry):
                r = sub.equality
                if r is None:
                    result = None
                    continue
                a = wanted if r is rule else assertion_for(r)
                if a is None:
                    result = None
                    continue
                if word or getattr(r, "_word", False):
                    if any(r.matches(v, assertion) for v in vals):
                        return True
                    continue
                norm = r.normalize
                if approx and r.oid in _APPROX_RULES:
                    # slapd's approxMatch: the assertion's words, phonetically, in order among the value's
                    for v in vals:
                        nv = norm(v)
                        if nv is not None and approx_match(nv, a):
                            return True
                elif approx and r.oid == UNIQUE_MEMBER_MATCH:
                    for v in vals:
                        nv = norm(v)
                        if nv is not None and unique_member_approx(nv, a):
                            return True
                else:
                    for v in vals:
                        if norm(v) == a:
                            return True
            return result

        return equality

    @staticmethod
    def _ordered_equality(at: Any, values: Any, assertion: bytes) -> Matcher:
        """X-ORDERED types as slapd's filters see them: for 'VALUES' the `{n}` counts only when both the value and
        the assertion carry one (a bare `{n}` is no valid assertion: Undefined); 'SIBLINGS' (olcDatabase...)
        compare without it."""
        rule = at.equality
        siblings = ordered_kind(at) == "SIBLINGS"
        if not ordered_body(assertion):
            return _undefined

        def same(a: bytes, b: bytes) -> bool:
            na, nb = rule.normalize(a), rule.normalize(b)
            return na is not None and na == nb

        def equality(entry: Entry) -> Tri:
            for _, vals in values(entry):
                for v in vals:
                    if same(ordered_body(v), ordered_body(assertion)) if siblings else assertion_matches(
                            v, assertion, same):  # fmt: skip
                        return True
            return False

        return equality

    def _ordering(self, description: str, assertion: bytes, greater: bool) -> Matcher:
        resolved = self._resolve(description)
        if resolved is None:
            return _undefined
        at, values = resolved
        rule = at.ordering
        if rule is None:
            return _undefined
        wanted = rule.ordering_key(assertion)
        if wanted is None:
            return _undefined

        def ordering(entry: Entry) -> Tri:
            result: Tri = False
            for sub, vals in values(entry):
                r = sub.ordering
                if r is None:
                    result = None
                    continue
                key_of = r.ordering_key
                for v in vals:
                    k = key_of(v)
                    if k is None:
                        continue
                    try:
                        if (k >= wanted) if greater else (k <= wanted):
                            return True
                    except TypeError:
                        result = None
            return result

        return ordering

    def _substrings(self, f: Substrings) -> Matcher:
        resolved = self._resolve(f.attr)
        if resolved is None:
            return _undefined
        at, values = resolved
        rule = at.substr
        if rule is None:
            return _undefined
        initial, middle, final = f.initial, f.any, f.final
        # an assertion piece that is not valid for the rule makes the filter Undefined
        for piece in (initial, *middle, final):
            if piece is not None and rule.normalize_substring(piece) is None:
                return _undefined

        def substrings(entry: Entry) -> Tri:
            for sub, vals in values(entry):
                r = sub.substr or rule
                for v in vals:
                    if r.match_substrings(v, initial, middle, final):
                        return True
            return False

        return substrings

    # extensible match ----------------------------------------------------------------------------------------

    def _usable(self, rule: Any, at: Any) -> bool:
        """Can `rule` apply to values of `at` (same syntax, or one of the type's own rules)?"""
        if rule is at.equality or rule is at.ordering or rule is at.substr:
            return True
        syntax = getattr(at, "syntax", None)
        syntax_oid = getattr(syntax, "oid", syntax)
        if syntax_oid == rule.syntax_oid:
            return True
        eq = at.equality
        return eq is not None and eq.syntax_oid == rule.syntax_oid

    def _value_test(self, rule: Any, assertion: bytes) -> Callable[[bytes], Tri] | None:
        """A test of one value against the assertion under `rule`; None if the assertion is invalid, or is of a
        syntax slapd cannot check (a substrings rule's Substring Assertion: slapd's matching rule assertion
        is then inappropriate matching, and its filter Undefined)."""
        if rule.syntax_oid in UNCHECKED_ASSERTION_SYNTAXES:
            return None
        if rule.oid in (_BIT_AND, _BIT_OR):
            mask = _int_or_none(assertion)
            if mask is None:
                return None
            bit_and = rule.oid == _BIT_AND

            def bits(value: bytes) -> Tri:
                n = _int_or_none(value)
                if n is None:
                    return None
                return (n & mask) == mask if bit_and else (n & mask) != 0

            return bits
        if getattr(rule, "_word", False):
            return lambda value: rule.matches(value, assertion)
        if rule.kind == "ordering":  # RFC 4517 (and slapd): an ordering rule holds when the value sorts first
            bound = rule.ordering_key(assertion)
            if bound is None:
                return None
            key_of = rule.ordering_key

            def less(value: bytes) -> Tri:
                k = key_of(value)
                if k is None:
                    return None
                try:
                    return k < bound
                except TypeError:
                    return None

            return less
        wanted = rule.normalize_assertion(assertion)
        if wanted is None:
            return None
        norm = rule.normalize
        return lambda value: norm(value) == wanted

    def _dn_relation(self, f: Extensible, relation: str) -> Matcher:
        """slapd's dnSubtreeMatch, dnOneLevelMatch, dnSubordinateMatch and dnSuperiorMatch: how a DN value of
        the attribute (entryDN, member...) stands to the asserted DN; with no attribute, every stored attribute
        of DN syntax. Not published in the subschema, as slapd does not publish them; an attribute of another
        syntax, or an asserted value that is no DN, is Undefined."""
        from pyldapd.model.dn import DNError, normalize_dn

        schema = self.schema
        if f.attr is None:  # every stored attribute of DN syntax (slapd: not entryDN)
            dn_keys: dict[str, bool] = {}

            def is_dn(key: str) -> bool:
                found = dn_keys.get(key)
                if found is None:
                    at = schema.attribute_type(key.partition(";")[0])
                    found = dn_keys[key] = at is not None and at.syntax.oid == _DN_SYNTAX
                return found

            def values(entry: Entry) -> list[tuple[Any, list[bytes]]]:
                return [(None, a.values) for key, a in entry.attrs.items() if is_dn(key)]
        else:
            resolved = self._resolve(f.attr)
            if resolved is None or resolved[0].syntax.oid != _DN_SYNTAX:
                return _undefined
            values = resolved[1]
        try:
            asserted = normalize_dn(f.value.decode("utf-8"), schema)
        except (DNError, UnicodeDecodeError):
            return _undefined
        below = "," + asserted if asserted else ""

        def holds(value: bytes) -> Tri:
            try:
                dn = normalize_dn(value.decode("utf-8"), schema)
            except (DNError, UnicodeDecodeError):
                return None
            if relation == "subtree":
                return dn == asserted or not asserted or dn.endswith(below)
            if relation == "subordinate":
                return dn != asserted and (not asserted or dn.endswith(below))
            if relation == "onelevel":  # (a normalized DN's commas are all separators: values escape theirs)
                return bool(dn) and dn.partition(",")[2] == asserted
            return asserted != dn and (not dn or asserted.endswith("," + dn))  # superior

        def matcher(entry: Entry) -> Tri:
            result: Tri = False
            for _sub, vals in values(entry):
                r = _any_value(holds, vals)
                if r:
                    return True
                if r is None:
                    result = None
            return result

        return matcher

    def _extensible(self, f: Extensible) -> Matcher:
        schema = self.schema
        rule: Any = None
        if f.rule is not None:
            relation = _DN_RELATIONS.get(f.rule.lower())
            if relation is not None:
                return self._dn_relation(f, relation)
            rule = schema.matching_rule(f.rule)
            if rule is None:
                return _undefined
        at: Any = None
        values: Callable[[Entry], list[tuple[Any, list[bytes]]]] | None = None
        if f.attr is not None:
            resolved = self._resolve(f.attr)
            if resolved is None:
                return _undefined
            at, values = resolved
            if rule is None:
                rule = at.equality
                if rule is None:
                    return _undefined
            elif not self._usable(rule, at):
                return _undefined
        test = self._value_test(rule, f.value)
        if test is None:
            return _undefined
        usable_cache: dict[str, bool] = {}

        def usable_key(key: str) -> Any:
            base = key.partition(";")[0]
            ok = usable_cache.get(base)
            if ok is None:
                sub = schema.attribute_type(base)
                ok = sub is not None and self._usable(rule, sub)
                usable_cache[base] = ok
            return ok

        def test_values(vals: Iterable[bytes]) -> Tri:
            return _any_value(test, vals)

        subkeys: frozenset[str] = frozenset()
        if at is not None:
            subkeys = frozenset(sub.key for sub in schema.subtypes(at)) | {at.key}

        dn_attributes = f.dn_attributes

        def dn_values(entry: Entry) -> list[bytes]:
            from pyldapd.model.dn import DNError, parse_dn

            try:
                rdns = parse_dn(entry.dn)
            except DNError:
                return []
            out: list[bytes] = []
            for rdn in rdns:
                for t, v in rdn:
                    sub = schema.attribute_type(t)
                    if sub is None:
                        continue
                    if at is not None:
                        if sub.key in subkeys:
                            out.append(v.encode("utf-8"))
                    elif usable_key(sub.key):
                        out.append(v.encode("utf-8"))
            return out

        def extensible(entry: Entry) -> Tri:
            result: Tri = False
            if values is not None:
                for _sub, vals in values(entry):
                    r = test_values(vals)
                    if r:
                        return True
                    if r is None:
                        result = None
            else:
                for key, a in entry.attrs.items():
                    if usable_key(key):
                        r = test_values(a.values)
                        if r:
                            return True
                        if r is None:
                            result = None
            if dn_attributes:
                r = test_values(dn_values(entry))
                if r:
                    return True
                if r is None:
                    result = None
            return result

        return extensible


def _any_value(test: Callable[[bytes], Tri], values: Iterable[bytes]) -> Tri:
    """True when the test holds for a value, else Undefined when it was for one, else False (RFC 4511 4.5.1.7)."""
    result: Tri = False
    for value in values:
        r = test(value)
        if r:
            return True
        if r is None:
            result = None
    return result


_DN_SYNTAX = "1.3.6.1.4.1.1466.115.121.1.12"
# slapd's DN relation rules (schema_init.c), by name and OID
_DN_RELATIONS = {
    "dnsubtreematch": "subtree", "1.3.6.1.4.1.4203.666.4.9": "subtree",
    "dnonelevelmatch": "onelevel", "1.3.6.1.4.1.4203.666.4.8": "onelevel",
    "dnsubordinatematch": "subordinate", "1.3.6.1.4.1.4203.666.4.10": "subordinate",
    "dnsuperiormatch": "superior", "1.3.6.1.4.1.4203.666.4.11": "superior",
}  # fmt: skip


# values-return filter (matchedValues control, RFC 3876) ------------------------------------------------------------

ValuesFilter = Callable[[str, str, list[bytes]], list[bytes]]
"""(attribute key, attribute name, values) -> the values to return."""


def values_return_filter(evaluator: FilterEvaluator, items: Sequence[Filter | None]) -> ValuesFilter | None:
    """The values a ValuesReturnFilter selects, as slapd's filter_matched_values: a value is kept when one item
    matches it on its own, testing attributes of the item's type or a subtype of it (with its options). Items of
    no simple choice (None) and approxMatch items match nothing (slapd has no branch for them); an empty filter
    selects everything (slapd then has no filter at all). None when no filtering applies."""
    from pyldapd.model.entry import Attribute, Entry

    if not items:
        return None
    tests: list[Callable[[Entry], bool]] = []
    for item in items:
        if item is None or isinstance(item, Approx):
            continue
        if isinstance(item, Present):
            resolved = evaluator._resolve(item.attr)
            if resolved is None:
                continue  # an unknown type: False for every value
            present_values = resolved[1]
            tests.append(lambda view, of=present_values: bool(of(view)))
        else:
            matcher = evaluator.compile3(item)
            tests.append(lambda view, m=matcher: m(view) is True)

    def select(key: str, name: str, values: list[bytes]) -> list[bytes]:
        kept = []
        for value in values:
            view = Entry("", {key: Attribute(name, [value])})
            if any(test(view) for test in tests):
                kept.append(value)
        return kept

    return select


def values_return_diagnostic(evaluator: FilterEvaluator, items: Sequence[Filter | None]) -> str:
    """The text slapd leaves on the search result after parsing a ValuesReturnFilter: the last one its item
    parsers set (they ignore the item's error but keep its text)."""
    schema = evaluator.schema
    text = ""
    for item in items:
        if isinstance(item, Present):
            if schema.split_description(item.attr)[0] is None:
                text = "attribute type undefined"
        elif isinstance(item, Extensible):
            if item.rule is not None and schema.matching_rule(item.rule) is None:
                text = "matching rule not recognized"
    return text
