"""The directory schema: attribute types, object classes, matching rules and syntaxes (RFC 4512).

`Schema()` holds the system schema that slapd builds into its code (top, alias, subschema, glue, the operational
attributes of RFC 4512/4530 and OpenLDAP's replication attributes) and nothing else; `.schema` files in
OpenLDAP's format add the rest. `Schema.default()` is the system schema plus the four files shipped in
`schema_files/` (core, cosine, nis, inetorgperson, as Debian's slapd loads them); it is parsed once per process
and each call returns an independent deep copy that the caller may extend freely.

Lookups are case-insensitive, by any name or by OID. Attribute types know their inherited matching rules and
syntax; `Schema.attribute_key` gives the key under which an entry stores an attribute description.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyldapd.model.matching import MatchingRule, builtin_matching_rules
from pyldapd.model.syntaxes import Syntax, builtin_syntaxes

__all__ = [
    "AttributeType",
    "ContentRule",
    "MatchingRule",
    "ObjectClass",
    "Schema",
    "SchemaError",
    "Syntax",
    "canonical_options",
    "options_test",
]

SCHEMA_DIR = Path(__file__).parent / "schema_files"
DEFAULT_FILES = ("core.schema", "cosine.schema", "nis.schema", "inetorgperson.schema")

USAGES = ("userApplications", "directoryOperation", "distributedOperation", "dSAOperation")
_USAGE_BY_KEY = {u.lower(): u for u in USAGES}
KINDS = ("ABSTRACT", "STRUCTURAL", "AUXILIARY")


class SchemaError(ValueError):
    """A schema definition that cannot be parsed or does not fit the schema it is added to.

    slapd_text: slapd's words for it where pyldapd knows them (scherr2str and the element, as slapd's config
    errors show them: `Content Rule not for STRUCTURAL object class: "2.5.6.0"`)."""

    def __init__(self, message: str, slapd_text: str = "") -> None:
        super().__init__(message)
        self.slapd_text = slapd_text


@dataclass(eq=False, slots=True)
class AttributeType:
    oid: str
    names: tuple[str, ...] = ()
    desc: str = ""
    obsolete: bool = False
    sup: AttributeType | None = None
    # Matching rules and syntax as in effect: inherited from `sup` when the definition has none.
    equality: MatchingRule | None = None
    ordering: MatchingRule | None = None
    substr: MatchingRule | None = None
    syntax: Syntax | None = None
    syntax_len: int | None = None
    single_value: bool = False
    collective: bool = False
    no_user_modification: bool = False
    usage: str = "userApplications"
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The RFC 4512 description as written (own elements only, not the inherited ones).
    definition: str = ""
    # Where it was defined: a file path, "<system>", "<string>"...
    source: str = ""
    name: str = field(init=False, default="")
    key: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.name = self.names[0] if self.names else self.oid
        self.key = self.name.lower()

    @property
    def operational(self) -> bool:
        return self.usage != "userApplications"

    def is_subtype_of(self, other: AttributeType) -> bool:
        at: AttributeType | None = self
        while at is not None:
            if at is other:
                return True
            at = at.sup
        return False

    def __repr__(self) -> str:
        return f"AttributeType({self.name!r}, {self.oid!r})"


@dataclass(eq=False, slots=True)
class ObjectClass:
    oid: str
    names: tuple[str, ...] = ()
    desc: str = ""
    obsolete: bool = False
    sup: tuple[ObjectClass, ...] = ()
    kind: str = "STRUCTURAL"
    must: tuple[AttributeType, ...] = ()
    may: tuple[AttributeType, ...] = ()
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    definition: str = ""
    source: str = ""
    name: str = field(init=False, default="")
    key: str = field(init=False, default="")
    _all_must: tuple[AttributeType, ...] | None = field(init=False, default=None, repr=False)
    _all_may: tuple[AttributeType, ...] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = self.names[0] if self.names else self.oid
        self.key = self.name.lower()

    def superclasses(self) -> list[ObjectClass]:
        """This class and every class above it, nearest first, each once."""
        seen: list[ObjectClass] = []
        stack = [self]
        while stack:
            oc = stack.pop(0)
            if oc not in seen:
                seen.append(oc)
                stack.extend(oc.sup)
        return seen

    def all_must(self) -> tuple[AttributeType, ...]:
        if self._all_must is None:
            self._all_must = tuple(dict.fromkeys(at for oc in self.superclasses() for at in oc.must))
        return self._all_must

    def all_may(self) -> tuple[AttributeType, ...]:
        if self._all_may is None:
            self._all_may = tuple(dict.fromkeys(at for oc in self.superclasses() for at in oc.may))
        return self._all_may

    def is_subclass_of(self, other: ObjectClass) -> bool:
        return other in self.superclasses()

    def __repr__(self) -> str:
        return f"ObjectClass({self.name!r}, {self.oid!r})"


@dataclass(eq=False, slots=True)
class ContentRule:
    """A DIT content rule (RFC 4512 4.1.6): for entries of one structural class, the auxiliary classes they may
    have and the attribute types they must, may and may not have beyond their classes'."""

    structural: ObjectClass  # the rule's OID is this class's
    names: tuple[str, ...] = ()
    desc: str = ""
    obsolete: bool = False
    aux: tuple[ObjectClass, ...] = ()
    must: tuple[AttributeType, ...] = ()
    may: tuple[AttributeType, ...] = ()
    not_: tuple[AttributeType, ...] = ()
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    definition: str = ""
    source: str = ""

    @property
    def oid(self) -> str:
        return self.structural.oid

    @property
    def name(self) -> str:
        """How slapd names the rule in its messages (ldap_contentrule2name: first NAME, else the OID)."""
        return self.names[0] if self.names else self.oid

    def __repr__(self) -> str:
        return f"ContentRule({self.name!r}, {self.oid!r})"


# Classes slapd flags operational (schema_prep.c): a user content rule may not name them (but extensibleObject)
OPERATIONAL_CLASS_OIDS = frozenset((
    "1.3.6.1.4.1.1466.101.120.111", "2.5.6.1", "2.16.840.1.113730.3.2.6", "1.3.6.1.4.1.4203.1.4.1", "2.5.17.0",
    "2.5.20.1", "2.5.17.2", "1.3.6.1.4.1.4203.666.3.4", "1.3.6.1.4.1.4203.666.3.5", "1.3.6.1.4.1.4203.666.3.6",
))  # fmt: skip
EXTENSIBLE_OBJECT_OID = "1.3.6.1.4.1.1466.101.120.111"


# --- attribute description options ---------------------------------------------------------------------


def canonical_options(options: Iterable[str]) -> tuple[str, ...]:
    """An attribute description's options as slapd keeps them (ad.c, slap_bv2ad): lowercased, each once, sorted;
    `SN;lang-en-US;lang-en-GB` is stored and returned as `sn;lang-en-gb;lang-en-us`."""
    return tuple(sorted({option.lower() for option in options}))


def options_test(wanted: Iterable[str]) -> Callable[[str], bool]:
    """Whether an attribute's options (lowercased, `;`-separated, as in its `Entry.attrs` key) hold those of
    a requested description, as slapd's is_ad_subtype: every wanted option is held, and a wanted language
    range (`lang-en-`, RFC 3866) is held as a tag that starts with it or as the tag it names (`lang-en`)."""
    options = [option.lower() for option in wanted]
    exact = frozenset(option for option in options if not option.endswith("-"))
    ranges = tuple(option for option in options if option.endswith("-"))
    if not ranges:
        return lambda held: exact.issubset(held.split(";")) if held else not exact

    def test(held: str) -> bool:
        if not held:
            return False
        tags = held.split(";")
        if not exact.issubset(tags):
            return False
        return all(any(tag.startswith(r) or tag == r[:-1] for tag in tags) for r in ranges)

    return test


# --- RFC 4512 description parsing -------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(\()|(\))|'([^']*)'|(\$)|([^\s()'$]+))")
_NUMERICOID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*\Z")
_DESCR_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_NOIDLEN_RE = re.compile(r"([^{}\s]+?)(?:\{([0-9]+)\})?\Z")
_ORDER_PREFIX_RE = re.compile(r"\A\s*\{-?[0-9]+\}")
_STATEMENT_RE = re.compile(r"([A-Za-z]+)\s*(.*)\Z", re.S)

_FLAGS = frozenset(("OBSOLETE", "SINGLE-VALUE", "COLLECTIVE", "NO-USER-MODIFICATION", *KINDS))
_SINGLES = frozenset(("EQUALITY", "ORDERING", "SUBSTR", "SYNTAX", "USAGE"))
_LISTS = frozenset(("SUP", "MUST", "MAY", "AUX", "NOT"))
_AT_KEYWORDS = frozenset(
    ("NAME", "DESC", "OBSOLETE", "SUP", "EQUALITY", "ORDERING", "SUBSTR", "SYNTAX", "SINGLE-VALUE")
    + ("COLLECTIVE", "NO-USER-MODIFICATION", "USAGE")
)
_OC_KEYWORDS = frozenset(("NAME", "DESC", "OBSOLETE", "SUP", "MUST", "MAY", *KINDS))
_SYNTAX_KEYWORDS = frozenset(("DESC",))
_CR_KEYWORDS = frozenset(("NAME", "DESC", "OBSOLETE", "AUX", "MUST", "MAY", "NOT"))


class _Where:
    """Where a description came from, to name it in error messages."""

    __slots__ = ("source", "line", "text")

    def __init__(self, source: str, line: int, text: str) -> None:
        self.source, self.line, self.text = source, line, text

    def error(self, message: str, offset: int | None = None, slapd_text: str = "") -> SchemaError:
        line = self.line
        if offset is not None:
            line += self.text.count("\n", 0, offset)
        return SchemaError(f"{self.source}:{line}: {message}", slapd_text)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return text.replace("\\27", "'").replace("\\5C", "\\").replace("\\5c", "\\")


def _escape(text: str) -> str:
    return text.replace("\\", "\\5C").replace("'", "\\27")


def _tokenize(text: str, where: _Where) -> list[tuple[str, str, int]]:
    """(kind, value, offset) tokens; kind is one of ( ) $ q (quoted) w (word)."""
    tokens = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise where.error(f"unbalanced quote or bad character near {text[pos:].strip()[:30]!r}", pos)
        if m[1]:
            tokens.append(("(", "(", m.start(1)))
        elif m[2]:
            tokens.append((")", ")", m.start(2)))
        elif m[3] is not None:
            tokens.append(("q", _unescape(m[3]), m.start(3)))
        elif m[4]:
            tokens.append(("$", "$", m.start(4)))
        else:
            tokens.append(("w", m[5], m.start(5)))
        pos = m.end()
    return tokens


def _parse_description(
    text: str, where: _Where, allowed: frozenset[str], what: str
) -> tuple[str, dict[str, object], list[tuple[str, tuple[str, ...]]]]:
    """Parse `( oid KEYWORD value ... )` into the oid, a dict of keywords and the X- extensions."""
    tokens = _tokenize(text, where)
    n = len(tokens)
    if not tokens or tokens[0][0] != "(":
        raise where.error(f"{what} must start with '('", tokens[0][2] if tokens else None)
    if n < 2 or tokens[1][0] not in "qw":
        raise where.error(f"{what} has no OID", tokens[1][2] if n > 1 else None)
    oid = tokens[1][1]
    fields: dict[str, object] = {}
    extensions: list[tuple[str, tuple[str, ...]]] = []
    i = 2

    def need(kind: str, index: int) -> tuple[str, str, int]:
        if index >= n:
            raise where.error(f"{what} {oid}: unexpected end of definition (missing ')'?)", len(text))
        tok = tokens[index]
        if tok[0] not in kind:
            raise where.error(f"{what} {oid}: unexpected {tok[1]!r}", tok[2])
        return tok

    def group(index: int, allow_words: bool) -> tuple[tuple[str, ...], int]:
        # one value, or a parenthesised list (separated by '$' or by white space)
        tok = need("qw(", index)
        if tok[0] != "(":
            if tok[0] == "w" and not allow_words:
                raise where.error(f"{what} {oid}: expected a quoted string, got {tok[1]!r}", tok[2])
            return (tok[1],), index + 1
        values: list[str] = []
        index += 1
        while True:
            tok = need("qw$)", index)
            index += 1
            if tok[0] == ")":
                return tuple(values), index
            if tok[0] != "$":
                values.append(tok[1])

    while True:
        tok = need("w)", i)
        if tok[0] == ")":
            i += 1
            break
        keyword = tok[1].upper()
        start = tok[2]
        i += 1
        if keyword.startswith("X-"):
            values, i = group(i, False)
            extensions.append((tok[1], values))
            continue
        if keyword == "SUBSTRINGS":
            keyword = "SUBSTR"
        if keyword not in allowed:
            raise where.error(f"{what} {oid}: unknown or misplaced keyword {tok[1]!r}", start)
        if keyword in fields:
            raise where.error(f"{what} {oid}: {keyword} given twice", start)
        if keyword in _FLAGS:
            fields[keyword] = True
        elif keyword == "NAME":
            fields[keyword], i = group(i, True)
        elif keyword == "DESC":
            fields[keyword] = need("q", i)[1]
            i += 1
        elif keyword in _LISTS:
            fields[keyword], i = group(i, True)
        else:  # a single word
            fields[keyword] = need("qw", i)[1]
            i += 1
    if i != n:
        raise where.error(f"{what} {oid}: text after the closing ')'", tokens[i][2])
    return oid, fields, extensions


def _definition_head(oid: str, names: tuple[str, ...], fields: dict) -> str:
    """The start every element's canonical definition shares (RFC 4512 order): `( oid NAME .. DESC .. OBSOLETE`."""
    head = "( " + oid
    if names:
        head += _qdescrs(names)
    if "DESC" in fields:
        head += f" DESC '{_escape(str(fields['DESC']))}'"
    if "OBSOLETE" in fields:
        head += " OBSOLETE"
    return head


def _qdescrs(names: tuple[str, ...]) -> str:
    if len(names) == 1:
        return f" NAME '{names[0]}'"
    return " NAME ( " + " ".join(f"'{n}'" for n in names) + " )"


def _oids(items: tuple[str, ...]) -> str:
    if len(items) == 1:
        return items[0]
    return "( " + " $ ".join(items) + " )"


def _extensions_text(extensions: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    out = []
    for name, values in extensions:
        if len(values) == 1:
            out.append(f" {name} '{_escape(values[0])}'")
        else:
            out.append(f" {name} ( " + " ".join(f"'{_escape(v)}'" for v in values) + " )")
    return "".join(out)


# --- the system schema ------------------------------------------------------------------------------------

# What slapd defines in its own code, so that it exists before any schema file is read. Written in this
# project's words; the OIDs, names, syntaxes and flags are those slapd uses.
_SYSTEM_SCHEMA = """
# Structure of every entry (RFC 4512)
attributetype ( 2.5.4.0 NAME 'objectClass' EQUALITY objectIdentifierMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )
attributetype ( 2.5.4.1 NAME ( 'aliasedObjectName' 'aliasedEntryName' ) EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE )
attributetype ( 2.5.21.9 NAME 'structuralObjectClass' EQUALITY objectIdentifierMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )

# Attributes slapd needs for its own entries and for authentication (cn=Subschema, cn=config, ldapi peer
# credentials): they live
# in the system schema, so the core.schema file does not define them.
attributetype ( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )
attributetype ( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )
attributetype ( 2.5.4.13 NAME 'description' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} )
attributetype ( 2.5.4.49 NAME 'distinguishedName' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
attributetype ( 2.5.4.34 NAME 'seeAlso' SUP distinguishedName )
attributetype ( 2.5.4.35 NAME 'userPassword' EQUALITY octetStringMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.40{128} )
attributetype ( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY caseIgnoreMatch
    SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} )
attributetype ( 1.3.6.1.1.1.1.0 NAME 'uidNumber' EQUALITY integerMatch ORDERING integerOrderingMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.1.1.1.1 NAME 'gidNumber' EQUALITY integerMatch ORDERING integerOrderingMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.250.1.57 NAME 'labeledURI' EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )

# Bookkeeping kept by the server on every entry
attributetype ( 2.5.18.1 NAME 'createTimestamp' EQUALITY generalizedTimeMatch
    ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24
    SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 2.5.18.2 NAME 'modifyTimestamp' EQUALITY generalizedTimeMatch
    ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24
    SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 2.5.18.3 NAME 'creatorsName' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 2.5.18.4 NAME 'modifiersName' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 2.5.18.9 NAME 'hasSubordinates' EQUALITY booleanMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 2.5.18.10 NAME 'subschemaSubentry' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 2.5.18.12 NAME 'collectiveAttributeSubentries' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 2.5.18.7 NAME 'collectiveExclusions' EQUALITY objectIdentifierMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 USAGE directoryOperation )
attributetype ( 1.3.6.1.1.20 NAME 'entryDN' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 1.3.6.1.1.16.4 NAME 'entryUUID' EQUALITY UUIDMatch ORDERING UUIDOrderingMatch
    SYNTAX 1.3.6.1.1.16.1 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 1.3.6.1.4.1.4203.666.1.7 NAME 'entryCSN' EQUALITY CSNMatch ORDERING CSNOrderingMatch
    SYNTAX 1.3.6.1.4.1.4203.666.11.2.1{64} SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )
attributetype ( 1.3.6.1.4.1.4203.666.1.13 NAME 'namingCSN' EQUALITY CSNMatch ORDERING CSNOrderingMatch
    SYNTAX 1.3.6.1.4.1.4203.666.11.2.1{64} SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )

# Replication state (OpenLDAP syncprov / syncrepl)
attributetype ( 1.3.6.1.4.1.4203.666.1.25 NAME 'contextCSN' EQUALITY CSNMatch ORDERING CSNOrderingMatch
    SYNTAX 1.3.6.1.4.1.4203.666.11.2.1{64} NO-USER-MODIFICATION USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.4203.666.1.23 NAME 'syncreplCookie' EQUALITY octetStringMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE NO-USER-MODIFICATION USAGE dSAOperation )

# The root DSE (RFC 4512 section 5.1 and friends)
attributetype ( 1.3.6.1.4.1.1466.101.120.6 NAME 'altServer'
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.1466.101.120.5 NAME 'namingContexts'
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.1466.101.120.13 NAME 'supportedControl'
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.1466.101.120.7 NAME 'supportedExtension'
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.1466.101.120.15 NAME 'supportedLDAPVersion'
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.1466.101.120.14 NAME 'supportedSASLMechanisms'
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.4203.1.3.5 NAME 'supportedFeatures' EQUALITY objectIdentifierMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 USAGE dSAOperation )
attributetype ( 1.3.6.1.1.4 NAME 'vendorName' EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE NO-USER-MODIFICATION USAGE dSAOperation )
attributetype ( 1.3.6.1.1.5 NAME 'vendorVersion' EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE NO-USER-MODIFICATION USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.4203.666.1.10 NAME 'monitorContext' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE dSAOperation )
attributetype ( 1.3.6.1.4.1.4203.1.12.2.1 NAME 'configContext' EQUALITY distinguishedNameMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE dSAOperation )

# Subschema publication (RFC 4512 section 4.2)
attributetype ( 2.5.21.1 NAME 'dITStructureRules' EQUALITY integerFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.17 USAGE directoryOperation )
attributetype ( 2.5.21.2 NAME 'dITContentRules' EQUALITY objectIdentifierFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.16 USAGE directoryOperation )
attributetype ( 2.5.21.4 NAME 'matchingRules' EQUALITY objectIdentifierFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.30 USAGE directoryOperation )
attributetype ( 2.5.21.5 NAME 'attributeTypes' EQUALITY objectIdentifierFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.3 USAGE directoryOperation )
attributetype ( 2.5.21.6 NAME 'objectClasses' EQUALITY objectIdentifierFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.37 USAGE directoryOperation )
attributetype ( 2.5.21.7 NAME 'nameForms' EQUALITY objectIdentifierFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.35 USAGE directoryOperation )
attributetype ( 2.5.21.8 NAME 'matchingRuleUse' EQUALITY objectIdentifierFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.31 USAGE directoryOperation )
attributetype ( 1.3.6.1.4.1.1466.101.120.16 NAME 'ldapSyntaxes' EQUALITY objectIdentifierFirstComponentMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.54 USAGE directoryOperation )

# Subentries (RFC 3672)
attributetype ( 2.5.18.5 NAME 'administrativeRole' EQUALITY objectIdentifierMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 USAGE directoryOperation )
attributetype ( 2.5.18.6 NAME 'subtreeSpecification'
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.45 SINGLE-VALUE USAGE directoryOperation )

# Written on each successful bind by databases with `lastbind on` (slapd 2.5 has it built in)
attributetype ( 1.3.6.1.4.1.42.2.27.8.1.29 NAME 'pwdLastSuccess'
    DESC 'The timestamp of the last successful authentication' EQUALITY generalizedTimeMatch
    ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24
    SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )

# Referrals (RFC 3296) and proxy authorization rules (OpenLDAP)
attributetype ( 2.16.840.1.113730.3.1.34 NAME 'ref' EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 USAGE distributedOperation )
attributetype ( 1.3.6.1.4.1.4203.666.1.8 NAME ( 'authzTo' 'saslAuthzTo' ) EQUALITY authzMatch
    SYNTAX 1.3.6.1.4.1.4203.666.2.7 USAGE distributedOperation )
attributetype ( 1.3.6.1.4.1.4203.666.1.9 NAME ( 'authzFrom' 'saslAuthzFrom' ) EQUALITY authzMatch
    SYNTAX 1.3.6.1.4.1.4203.666.2.7 USAGE distributedOperation )

objectclass ( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )
objectclass ( 2.5.6.1 NAME 'alias' SUP top STRUCTURAL MUST aliasedObjectName )
objectclass ( 2.16.840.1.113730.3.2.6 NAME 'referral' SUP top STRUCTURAL MUST ref )
objectclass ( 1.3.6.1.4.1.1466.101.120.111 NAME 'extensibleObject' SUP top AUXILIARY )
objectclass ( 1.3.6.1.4.1.4203.1.4.1 NAME ( 'OpenLDAProotDSE' 'LDAProotDSE' ) SUP top STRUCTURAL )
objectclass ( 2.5.20.1 NAME 'subschema' AUXILIARY
    MAY ( dITStructureRules $ nameForms $ dITContentRules $ objectClasses $ attributeTypes
        $ matchingRules $ matchingRuleUse ) )
objectclass ( 2.5.17.2 NAME 'collectiveAttributeSubentry' AUXILIARY )
objectclass ( 2.5.17.0 NAME 'subentry' SUP top STRUCTURAL MUST ( cn $ subtreeSpecification ) )
objectclass ( 1.3.6.1.4.1.4203.666.3.4 NAME 'glue' SUP top STRUCTURAL )
objectclass ( 1.3.6.1.4.1.4203.666.3.5 NAME 'syncConsumerSubentry' AUXILIARY MAY syncreplCookie )
objectclass ( 1.3.6.1.4.1.4203.666.3.6 NAME 'syncProviderSubentry' AUXILIARY MAY contextCSN )
"""


# --- the schema -------------------------------------------------------------------------------------------

_default_cache: Schema | None = None


class Schema:
    """A set of syntaxes, matching rules, attribute types and object classes, with the system schema built in."""

    def __init__(self, system: bool = True) -> None:
        self._syntaxes: dict[str, Syntax] = {}
        self._published_syntaxes: list[Syntax] = []
        self._rules: list[MatchingRule] = []
        self._rule_by_key: dict[str, MatchingRule] = {}
        self._ats: list[AttributeType] = []
        self._at_by_key: dict[str, AttributeType] = {}
        self._ocs: list[ObjectClass] = []
        self._oc_by_key: dict[str, ObjectClass] = {}
        self._macros: dict[str, str] = {}
        self._content_rules: dict[str, ContentRule] = {}  # by the structural class's OID
        self._cr_by_name: dict[str, ContentRule] = {}
        self._oid_caches: list[dict[bytes, bytes | None]] = []
        self._subtypes_cache: dict[str, list[AttributeType]] = {}
        self._closure_cache: dict[bytes, tuple[bytes, ...]] = {}
        self._split_cache: dict[str, tuple[AttributeType | None, tuple[str, ...]]] = {}
        self._key_cache: dict[str, str] = {}
        # facts other modules derive from the schema (e.g. per object class set rules), dropped on every change
        self.derived: dict[str, dict] = {}
        if system:
            for syntax in builtin_syntaxes():
                self._syntaxes[syntax.oid] = syntax
                self._published_syntaxes.append(syntax)
            for rule in builtin_matching_rules(self):
                self._add_rule(rule)
            self.load_text(_SYSTEM_SCHEMA, "<system>")

    # Construction ------------------------------------------------------------------------------------------

    @classmethod
    def default(cls) -> Schema:
        """The system schema plus core, cosine, nis and inetorgperson (shipped files).

        Parsed once per process; every call returns a new independent copy, safe to extend.
        """
        global _default_cache
        if _default_cache is None:
            schema = cls()
            for name in DEFAULT_FILES:
                schema.load_file(str(SCHEMA_DIR / name))
            _default_cache = schema
        return _default_cache.copy()

    def copy(self) -> Schema:
        """An independent copy: extending it leaves this schema unchanged (syntaxes, immutable, are shared)."""
        new = Schema(system=False)
        new._syntaxes = dict(self._syntaxes)
        new._published_syntaxes = list(self._published_syntaxes)
        new._macros = dict(self._macros)
        rules: dict[int, MatchingRule] = {}
        for rule in self._rules:
            rules[id(rule)] = copy = rule.bind(new)
            new._add_rule(copy)

        def remap(rule: MatchingRule | None) -> MatchingRule | None:
            return None if rule is None else rules[id(rule)]

        ats: dict[int, AttributeType] = {}
        for at in self._ats:
            ats[id(at)] = copy_at = dataclasses.replace(
                at,
                sup=None if at.sup is None else ats[id(at.sup)],
                equality=remap(at.equality),
                ordering=remap(at.ordering),
                substr=remap(at.substr),
            )
            new._register_at(copy_at)
        ocs: dict[int, ObjectClass] = {}
        for oc in self._ocs:
            ocs[id(oc)] = copy_oc = dataclasses.replace(
                oc,
                sup=tuple(ocs[id(s)] for s in oc.sup),
                must=tuple(ats[id(a)] for a in oc.must),
                may=tuple(ats[id(a)] for a in oc.may),
            )
            new._register_oc(copy_oc)
        for cr in self._content_rules.values():
            new._register_cr(
                dataclasses.replace(
                    cr,
                    structural=ocs[id(cr.structural)],
                    aux=tuple(ocs[id(o)] for o in cr.aux),
                    must=tuple(ats[id(a)] for a in cr.must),
                    may=tuple(ats[id(a)] for a in cr.may),
                    not_=tuple(ats[id(a)] for a in cr.not_),
                )
            )
        return new

    def load_file(self, path: str) -> None:
        """Read an OpenLDAP `.schema` file (attributetype, objectclass, objectidentifier, ldapsyntax)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(f"{path}: not UTF-8 text ({exc})") from None
        except OSError as exc:
            raise SchemaError(f"{path}: cannot read ({exc.strerror})") from None
        self.load_text(text, path)

    def load_text(self, text: str, source: str = "<string>") -> None:
        """Read schema statements in OpenLDAP's `.schema` format.

        Lines starting with '#' are comments; a line starting with white space continues the previous one;
        keywords are case-insensitive. Errors name the source, the line, and the problem.
        """
        for start, statement in _statements(text, source):
            self._statement(statement, _Where(source, start, statement))

    def _statement(self, statement: str, where: _Where) -> None:
        m = _STATEMENT_RE.match(statement)
        if m is None:
            raise where.error(f"cannot parse {statement.split(None, 1)[0]!r}")
        keyword, rest = m[1].lower(), m[2]
        offset = m.start(2)
        inner = _Where(where.source, where.line + statement.count("\n", 0, offset), rest)
        if keyword in ("attributetype", "attributetypes"):
            self._add_attribute_type(rest, inner)
        elif keyword in ("objectclass", "objectclasses"):
            self._add_object_class(rest, inner)
        elif keyword == "objectidentifier":
            args = rest.split()
            if len(args) != 2:
                raise where.error("objectidentifier needs a name and an OID")
            name, value = args
            oid = self._resolve_oid_token(value)
            if oid is None:
                raise where.error(f"objectidentifier {name}: {value!r} is neither an OID nor a known macro")
            old = self._macros.get(name.lower())
            if old is not None and old != oid:
                raise where.error(f"objectidentifier {name} already defined as {old}")
            self._macros[name.lower()] = oid
        elif keyword in ("ldapsyntax", "ldapsyntaxes"):
            self._add_syntax(rest, inner)
        elif keyword in ("ditcontentrule", "ditcontentrules"):
            self._add_content_rule(rest, inner)
        else:
            raise where.error(f"unknown schema keyword {m[1]!r}")

    def add_attribute_type(self, definition: str) -> AttributeType:
        """Add one RFC 4512 AttributeTypeDescription; the same definition again is a no-op.

        A cn=config ordering prefix (`{3}( ... )`) is accepted and ignored.
        """
        definition = _ORDER_PREFIX_RE.sub("", definition, 1)
        return self._add_attribute_type(definition, _Where("<attributeTypes>", 1, definition))

    def add_object_class(self, definition: str) -> ObjectClass:
        """Add one RFC 4512 ObjectClassDescription; the same definition again is a no-op (`{n}` as above)."""
        definition = _ORDER_PREFIX_RE.sub("", definition, 1)
        return self._add_object_class(definition, _Where("<objectClasses>", 1, definition))

    def add_content_rule(self, definition: str) -> ContentRule:
        """Add one RFC 4512 DITContentRuleDescription (`{n}` as above)."""
        definition = _ORDER_PREFIX_RE.sub("", definition, 1)
        return self._add_content_rule(definition, _Where("<dITContentRules>", 1, definition))

    # Lookups -----------------------------------------------------------------------------------------------

    def attribute_type(self, name_or_oid: str) -> AttributeType | None:
        return self._at_by_key.get(name_or_oid.lower())

    def object_class(self, name_or_oid: str) -> ObjectClass | None:
        return self._oc_by_key.get(name_or_oid.lower())

    def content_rule(self, structural: ObjectClass) -> ContentRule | None:
        """The DIT content rule for entries of this structural class, if there is one."""
        return self._content_rules.get(structural.oid)

    def all_content_rules(self) -> list[ContentRule]:
        return list(self._content_rules.values())

    def matching_rule(self, name_or_oid: str) -> MatchingRule | None:
        return self._rule_by_key.get(name_or_oid.lower())

    def syntax(self, oid: str) -> Syntax | None:
        return self._syntaxes.get(oid)

    def all_attribute_types(self) -> list[AttributeType]:
        return list(self._ats)

    def all_object_classes(self) -> list[ObjectClass]:
        return list(self._ocs)

    def all_matching_rules(self) -> list[MatchingRule]:
        return list(self._rules)

    def all_syntaxes(self) -> list[Syntax]:
        return list(self._published_syntaxes)

    def resolve_oid(self, name: str) -> str | None:
        """The OID a descriptor names: an object class, attribute type, matching rule or OID macro."""
        key = name.lower()
        element = self._oc_by_key.get(key) or self._at_by_key.get(key) or self._rule_by_key.get(key)
        if element is not None:
            return element.oid
        if _NUMERICOID_RE.match(name):
            return name
        return self._macros.get(key)

    def split_description(self, description: str) -> tuple[AttributeType | None, tuple[str, ...]]:
        """`cn;lang-en;Binary` -> (the cn type, ("lang-en", "binary"))."""
        cached = self._split_cache.get(description)
        if cached is not None:
            return cached
        parts = description.split(";")
        result = (self._at_by_key.get(parts[0].lower()), tuple(p.lower() for p in parts[1:] if p))
        if len(self._split_cache) > 50_000:
            self._split_cache.clear()
        self._split_cache[description] = result
        return result

    def attribute_key(self, description: str) -> str:
        """The key of an attribute description in `Entry.attrs`: primary name and sorted options, lowercased.

        An unknown type gives the description lowercased.
        """
        key = self._key_cache.get(description)
        if key is not None:
            return key
        at, options = self.split_description(description)
        if at is None:
            key = description.lower()
        elif options:
            key = at.key + ";" + ";".join(canonical_options(options))
        else:
            key = at.key
        if len(self._key_cache) > 50_000:
            self._key_cache.clear()
        self._key_cache[description] = key
        return key

    def object_class_closure(self, value: bytes) -> tuple[bytes, ...]:
        """The OIDs of an objectClass value's class and all its superclasses.

        objectClass equality is slapd's objectSubClassMatch: `(objectClass=person)` matches an inetOrgPerson
        entry. Filters test the assertion's OID against this closure and indexes store every OID in it.
        """
        cached = self._closure_cache.get(value)
        if cached is not None:
            return cached
        oc = self.object_class(value.decode("utf-8", "replace").strip())
        if oc is None:
            closure: tuple[bytes, ...] = (value.strip().lower(),)
        else:
            closure = tuple(
                dict.fromkeys([oc.oid.encode()] + [sup.oid.encode() for sup in oc.superclasses()])
            )
        if len(self._closure_cache) > 10_000:
            self._closure_cache.clear()
        self._closure_cache[value] = closure
        return closure

    def subtypes(self, attr: AttributeType) -> list[AttributeType]:
        """`attr` and every type whose SUP chain leads to it (name -> name, cn, sn, givenName, ...)."""
        cached = self._subtypes_cache.get(attr.oid)
        if cached is None:
            cached = [at for at in self._ats if at.is_subtype_of(attr)]
            self._subtypes_cache[attr.oid] = cached
        return cached

    def subschema_values(self) -> dict[str, list[bytes]]:
        """The values of the subschema subentry (cn=Subschema), in RFC 4512 form."""
        rule_use = []
        for rule in self._rules:
            applies = [
                at.name
                for at in self._ats
                if at.syntax is not None
                and (at.syntax.oid == rule.syntax_oid or rule in (at.equality, at.ordering, at.substr))
            ]
            if applies:
                rule_use.append(f"( {rule.oid}{_qdescrs(rule.names)} APPLIES {_oids(tuple(applies))} )")
        values = {
            "ldapSyntaxes": [s.definition.encode() for s in self._published_syntaxes],
            "matchingRules": [r.definition.encode() for r in self._rules],
            "matchingRuleUse": [u.encode() for u in rule_use],
            "attributeTypes": [at.definition.encode() for at in self._ats],
            "objectClasses": [oc.definition.encode() for oc in self._ocs],
        }
        if self._content_rules:  # slapd shows the attribute only when there are rules
            values["dITContentRules"] = [cr.definition.encode() for cr in self._content_rules.values()]
        return values

    # Internals ---------------------------------------------------------------------------------------------

    def _changed(self) -> None:
        self.derived = {}
        self._closure_cache.clear()
        self._subtypes_cache.clear()
        self._split_cache.clear()
        self._key_cache.clear()
        for cache in self._oid_caches:
            cache.clear()

    def _add_rule(self, rule: MatchingRule) -> None:
        self._rules.append(rule)
        self._rule_by_key[rule.oid] = rule
        for name in rule.names:
            self._rule_by_key[name.lower()] = rule

    def _register_at(self, at: AttributeType) -> None:
        self._ats.append(at)
        self._at_by_key[at.oid] = at
        for name in at.names:
            self._at_by_key[name.lower()] = at
        self._changed()

    def _register_oc(self, oc: ObjectClass) -> None:
        self._ocs.append(oc)
        self._oc_by_key[oc.oid] = oc
        for name in oc.names:
            self._oc_by_key[name.lower()] = oc
        self._changed()

    def _register_cr(self, cr: ContentRule) -> None:
        self._content_rules[cr.oid] = cr
        for name in cr.names:
            self._cr_by_name[name.lower()] = cr
        self._changed()

    def _resolve_oid_token(self, token: str) -> str | None:
        """A numeric OID, an OID macro, or `macro:suffix`, as a numeric OID."""
        if _NUMERICOID_RE.match(token):
            return token
        prefix, colon, suffix = token.partition(":")
        base = self._macros.get(prefix.lower())
        if base is None:
            return None
        if not colon:
            return base
        if not _NUMERICOID_RE.match(suffix):
            return None
        return f"{base}.{suffix}"

    def _element_oid(self, token: str, where: _Where, what: str) -> str:
        oid = self._resolve_oid_token(token)
        if oid is None:
            raise where.error(f"{what} {token!r}: OID is not numeric and not a known objectidentifier macro")
        return oid

    def _check_names(
        self, names: tuple[str, ...], oid: str, table: dict[str, object], where: _Where, what: str
    ) -> None:
        for name in names:
            if not _DESCR_RE.match(name):
                raise where.error(f"{what} {oid}: bad name {name!r}")
            other = table.get(name.lower())
            if other is not None and other.oid != oid:  # type: ignore[attr-defined]
                raise where.error(f"{what} {oid}: name {name!r} is already used by {other.oid}")  # type: ignore[attr-defined]

    def _rule_for(
        self, fields: dict[str, object], keyword: str, kind: str, where: _Where, oid: str
    ) -> MatchingRule | None:
        token = fields.get(keyword)
        if token is None:
            return None
        rule = self._rule_by_key.get(str(token).lower())
        if rule is None:
            raise where.error(f"attributetype {oid}: unknown {keyword} matching rule {token!r}")
        if rule.kind != kind:
            raise where.error(f"attributetype {oid}: {rule.name} is not an {kind} matching rule")
        return rule

    def _add_attribute_type(self, text: str, where: _Where) -> AttributeType:
        token, fields, extensions = _parse_description(text, where, _AT_KEYWORDS, "attributetype")
        oid = self._element_oid(token, where, "attributetype")
        names = tuple(fields.get("NAME", ()))  # type: ignore[arg-type]
        self._check_names(names, oid, self._at_by_key, where, "attributetype")  # type: ignore[arg-type]
        sup: AttributeType | None = None
        sups = fields.get("SUP")
        if sups is not None:
            if len(sups) != 1:  # type: ignore[arg-type]
                raise where.error(f"attributetype {oid}: SUP must name one attribute type")
            sup = self._at_by_key.get(sups[0].lower())  # type: ignore[index]
            if sup is None:
                raise where.error(f"attributetype {oid}: unknown superior attribute type {sups[0]!r}")  # type: ignore[index]
        syntax: Syntax | None = None
        syntax_len: int | None = None
        syntax_token = fields.get("SYNTAX")
        if syntax_token is not None:
            m = _NOIDLEN_RE.match(str(syntax_token))
            syntax_oid = self._resolve_oid_token(m[1]) if m else None
            if m is None or syntax_oid is None:
                raise where.error(f"attributetype {oid}: bad SYNTAX {syntax_token!r}")
            syntax_len = int(m[2]) if m[2] else None
            syntax = self._syntaxes.get(syntax_oid)
            if syntax is None:
                # An unknown syntax accepts any value (and is not published).
                syntax = self._syntaxes[syntax_oid] = Syntax(syntax_oid)
        elif sup is not None:
            syntax, syntax_len = sup.syntax, sup.syntax_len
        else:
            raise where.error(f"attributetype {oid}: needs a SYNTAX or a SUP")
        equality = self._rule_for(fields, "EQUALITY", "equality", where, oid)
        ordering = self._rule_for(fields, "ORDERING", "ordering", where, oid)
        substr = self._rule_for(fields, "SUBSTR", "substr", where, oid)
        usage = "userApplications"
        if "USAGE" in fields:
            found = _USAGE_BY_KEY.get(str(fields["USAGE"]).lower())
            if found is None:
                raise where.error(f"attributetype {oid}: unknown USAGE {fields['USAGE']!r}")
            usage = found
        definition = _definition_head(oid, names, fields)
        # references as written, as slapd publishes them (MUST domainComponent, not dc)
        if sup is not None:
            definition += f" SUP {sups[0]}"  # type: ignore[index]
        for keyword in ("EQUALITY", "ORDERING", "SUBSTR"):
            if keyword in fields:
                definition += f" {keyword} {fields[keyword]}"
        if syntax_token is not None and syntax is not None:
            definition += f" SYNTAX {syntax.oid}" + (f"{{{syntax_len}}}" if syntax_len else "")
        for flag in ("SINGLE-VALUE", "COLLECTIVE", "NO-USER-MODIFICATION"):
            if flag in fields:
                definition += " " + flag
        if usage != "userApplications":
            definition += f" USAGE {usage}"
        definition += _extensions_text(tuple(extensions)) + " )"

        existing = self._at_by_key.get(oid)
        if existing is not None:
            if existing.definition == definition:
                return existing
            raise where.error(f"attributetype {oid} is already defined differently ({existing.name})")
        if sup is not None:
            equality = equality or sup.equality
            ordering = ordering or sup.ordering
            substr = substr or sup.substr
        at = AttributeType(
            oid=oid,
            names=names,
            desc=str(fields.get("DESC", "")),
            obsolete="OBSOLETE" in fields,
            sup=sup,
            equality=equality,
            ordering=ordering,
            substr=substr,
            syntax=syntax,
            syntax_len=syntax_len,
            single_value="SINGLE-VALUE" in fields,
            collective="COLLECTIVE" in fields,
            no_user_modification="NO-USER-MODIFICATION" in fields,
            usage=usage,
            extensions=tuple(extensions),
            definition=definition,
            source=where.source,
        )
        self._register_at(at)
        return at

    def _add_object_class(self, text: str, where: _Where) -> ObjectClass:
        token, fields, extensions = _parse_description(text, where, _OC_KEYWORDS, "objectclass")
        oid = self._element_oid(token, where, "objectclass")
        names = tuple(fields.get("NAME", ()))  # type: ignore[arg-type]
        self._check_names(names, oid, self._oc_by_key, where, "objectclass")  # type: ignore[arg-type]
        kinds = [k for k in KINDS if k in fields]
        if len(kinds) > 1:
            raise where.error(f"objectclass {oid}: more than one of ABSTRACT, STRUCTURAL, AUXILIARY")
        kind = kinds[0] if kinds else "STRUCTURAL"
        sup: list[ObjectClass] = []
        for name in fields.get("SUP", ()):  # type: ignore[attr-defined]
            oc = self._oc_by_key.get(name.lower())
            if oc is None:
                raise where.error(f"objectclass {oid}: unknown superior object class {name!r}")
            sup.append(oc)
        lists: dict[str, list[AttributeType]] = {"MUST": [], "MAY": []}
        for keyword, found in lists.items():
            for name in fields.get(keyword, ()):  # type: ignore[attr-defined]
                at = self._at_by_key.get(name.lower())
                if at is None:
                    raise where.error(f"objectclass {oid}: unknown attribute type {name!r} in {keyword}")
                found.append(at)
        definition = _definition_head(oid, names, fields)
        if sup:
            definition += " SUP " + _oids(tuple(fields["SUP"]))  # type: ignore[arg-type]
        definition += " " + kind
        for keyword, found in lists.items():
            if found:
                definition += f" {keyword} " + _oids(tuple(fields[keyword]))  # type: ignore[arg-type]
        definition += _extensions_text(tuple(extensions)) + " )"

        existing = self._oc_by_key.get(oid)
        if existing is not None:
            if existing.definition == definition:
                return existing
            raise where.error(f"objectclass {oid} is already defined differently ({existing.name})")
        oc = ObjectClass(
            oid=oid,
            names=names,
            desc=str(fields.get("DESC", "")),
            obsolete="OBSOLETE" in fields,
            sup=tuple(sup),
            kind=kind,
            must=tuple(lists["MUST"]),
            may=tuple(lists["MAY"]),
            extensions=tuple(extensions),
            definition=definition,
            source=where.source,
        )
        self._register_oc(oc)
        return oc

    def _add_content_rule(self, text: str, where: _Where) -> ContentRule:
        """slapd's cr_add: the OID names a known STRUCTURAL class, AUX names AUXILIARY classes, MUST/MAY/NOT
        name attribute types, none twice across the three lists, nothing operational (extensibleObject aside)."""
        token, fields, extensions = _parse_description(text, where, _CR_KEYWORDS, "ditcontentrule")

        def fail(message: str, scherr: str, element: str) -> SchemaError:
            return where.error(f"ditcontentrule {token}: {message}", slapd_text=f'{scherr}: "{element}"')

        names = tuple(fields.get("NAME", ()))  # type: ignore[arg-type]
        for name in names:
            if not _DESCR_RE.match(name):
                raise where.error(f"ditcontentrule {token}: bad name {name!r}", slapd_text="Invalid NAME")
        oid = self._resolve_oid_token(token)
        if oid is None:
            raise fail("OID is not numeric and not a known objectidentifier macro", "OID could not be expanded",
                       token)  # fmt: skip
        structural = self._oc_by_key.get(oid)
        if structural is None:
            raise fail("no object class has this OID", "ObjectClass not found", oid)
        if structural.kind != "STRUCTURAL":
            raise fail(
                f"{structural.name} is not STRUCTURAL", "Content Rule not for STRUCTURAL object class", oid
            )
        operational = structural.oid in OPERATIONAL_CLASS_OIDS
        aux: list[ObjectClass] = []
        for name in fields.get("AUX", ()):  # type: ignore[attr-defined]
            oc = self._oc_by_key.get(name.lower())
            if oc is None:
                raise fail(f"unknown object class {name!r} in AUX", "ObjectClass not found", name)
            if oc.oid in OPERATIONAL_CLASS_OIDS and oc.oid != EXTENSIBLE_OBJECT_OID:
                operational = True
            if oc.kind != "AUXILIARY":
                raise fail(f"{oc.name} in AUX is not AUXILIARY", "Content Rule AUX contains inappropriate "
                           "object class", name)  # fmt: skip
            aux.append(oc)
        lists: dict[str, list[AttributeType]] = {"MUST": [], "MAY": [], "NOT": []}
        seen: set[str] = set()
        for keyword, found in lists.items():
            for name in fields.get(keyword, ()):  # type: ignore[attr-defined]
                at = self._at_by_key.get(name.lower())
                if at is None:
                    raise fail(
                        f"unknown attribute type {name!r} in {keyword}", "AttributeType not found", name
                    )
                if at.oid in seen:
                    raise fail(f"attribute type {name!r} listed twice", "Content Rule attribute type list "
                               "contains duplicate", name)  # fmt: skip
                seen.add(at.oid)
                operational = operational or at.operational
                found.append(at)
        if operational:  # slapd's words for any operational element of a user rule
            raise fail("names an operational class or attribute type", "Content Rule AUX contains "
                       "inappropriate object class", oid)  # fmt: skip
        definition = _definition_head(oid, names, fields)
        for keyword in ("AUX", "MUST", "MAY", "NOT"):
            if fields.get(keyword):
                definition += f" {keyword} " + _oids(tuple(fields[keyword]))  # type: ignore[arg-type]
        definition += _extensions_text(tuple(extensions)) + " )"
        existing = self._content_rules.get(oid)
        if existing is not None and existing.definition == definition:
            return existing  # the same definition read again (a config applied anew), as for the other kinds
        other = next((self._cr_by_name[n.lower()] for n in names if n.lower() in self._cr_by_name), None)
        if existing is not None or (other is not None and other.oid != oid):
            raise fail("a content rule for this class exists already", "Duplicate Content Rule", oid)
        cr = ContentRule(
            structural=structural,
            names=names,
            desc=str(fields.get("DESC", "")),
            obsolete="OBSOLETE" in fields,
            aux=tuple(aux),
            must=tuple(lists["MUST"]),
            may=tuple(lists["MAY"]),
            not_=tuple(lists["NOT"]),
            extensions=tuple(extensions),
            definition=definition,
            source=where.source,
        )
        self._register_cr(cr)
        return cr

    def _add_syntax(self, text: str, where: _Where) -> Syntax:
        token, fields, extensions = _parse_description(text, where, _SYNTAX_KEYWORDS, "ldapsyntax")
        oid = self._element_oid(token, where, "ldapsyntax")
        desc = str(fields.get("DESC", ""))
        base: Syntax | None = None
        flags = {name.upper(): values for name, values in extensions}
        if "X-SUBST" in flags and flags["X-SUBST"]:
            base = self._syntaxes.get(flags["X-SUBST"][0])
        existing = self._syntaxes.get(oid)
        if existing is not None and existing in self._published_syntaxes:
            return existing
        syntax = Syntax(
            oid,
            desc,
            base._validator if base is not None else None,
            pretty=base.pretty if base is not None else None,
            binary=flags.get("X-BINARY-TRANSFER-REQUIRED") == ("TRUE",),
            not_human_readable=flags.get("X-NOT-HUMAN-READABLE") == ("TRUE",),
        )
        self._syntaxes[oid] = syntax
        self._published_syntaxes.append(syntax)
        return syntax


def _statements(text: str, source: str) -> list[tuple[int, str]]:
    """Split `.schema` text into (first line number, statement) with continuation lines joined."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            # comment lines inside a statement are dropped; keep the line count right for error messages
            if current:
                current.append("")
            continue
        if line[0] in " \t":
            if not current:
                raise SchemaError(f"{source}:{number}: continuation line without a statement before it")
            current.append(line)
        else:
            if current:
                out.append((start, "\n".join(current).rstrip("\n")))
            current = [line]
            start = number
    if current:
        out.append((start, "\n".join(current).rstrip("\n")))
    return out
