"""Tests of the schema model: lookups, inheritance, matching rules, syntaxes, file parsing and interop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyldapd.model.matching import approx_filter_keys, approx_keys, approx_match, metaphone
from pyldapd.model.schema import SCHEMA_DIR, Schema, SchemaError, canonical_options, options_test

DEBIAN = Path("/etc/ldap/schema")
FILES = ("core", "cosine", "nis", "inetorgperson")


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.default()


def rule(schema: Schema, name: str):
    found = schema.matching_rule(name)
    assert found is not None, name
    return found


# --- lookups and inheritance --------------------------------------------------------------------------------


def test_lookup_by_any_name_or_oid(schema: Schema) -> None:
    cn = schema.attribute_type("cn")
    assert cn is not None
    assert schema.attribute_type("CN") is cn
    assert schema.attribute_type("commonName") is cn
    assert schema.attribute_type("2.5.4.3") is cn
    assert (cn.name, cn.key, cn.names) == ("cn", "cn", ("cn", "commonName"))
    assert schema.attribute_type("noSuchThing") is None
    person = schema.object_class("PERSON")
    assert person is not None and person is schema.object_class("2.5.6.6")
    assert schema.matching_rule("2.5.13.2") is schema.matching_rule("CASEIGNOREMATCH")
    syntax = schema.syntax("1.3.6.1.4.1.1466.115.121.1.15")
    assert syntax is not None and syntax.desc == "Directory String"


def test_inheritance_of_rules_and_syntax(schema: Schema) -> None:
    cn = schema.attribute_type("cn")
    name = schema.attribute_type("name")
    assert cn is not None and name is not None
    assert cn.sup is name
    assert cn.equality is rule(schema, "caseIgnoreMatch")
    assert cn.substr is rule(schema, "caseIgnoreSubstringsMatch")
    assert cn.syntax is name.syntax and cn.syntax_len == 32768
    assert cn.definition == "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )"
    country = schema.attribute_type("c")
    assert country is not None and country.syntax is not None
    assert country.syntax.oid == "1.3.6.1.4.1.1466.115.121.1.11" and country.single_value
    assert country.equality is rule(schema, "caseIgnoreMatch")


def test_object_class_inheritance(schema: Schema) -> None:
    inet = schema.object_class("inetOrgPerson")
    assert inet is not None and inet.kind == "STRUCTURAL"
    must = {a.name for a in inet.all_must()}
    assert must == {"objectClass", "sn", "cn"}
    may = {a.name for a in inet.all_may()}
    assert {"mail", "uid", "telephoneNumber", "userPassword", "ou"} <= may
    assert {a.name for a in inet.must} == set()
    top = schema.object_class("top")
    assert top is not None and top.kind == "ABSTRACT"
    assert inet.is_subclass_of(top)
    posix = schema.object_class("posixAccount")
    assert posix is not None and posix.kind == "AUXILIARY"


def test_operational_attributes(schema: Schema) -> None:
    expected = {
        "entryUUID": ("1.3.6.1.1.16.4", "directoryOperation", True),
        "entryCSN": ("1.3.6.1.4.1.4203.666.1.7", "directoryOperation", True),
        "contextCSN": ("1.3.6.1.4.1.4203.666.1.25", "dSAOperation", False),
        "createTimestamp": ("2.5.18.1", "directoryOperation", True),
        "modifiersName": ("2.5.18.4", "directoryOperation", True),
        "structuralObjectClass": ("2.5.21.9", "directoryOperation", True),
        "hasSubordinates": ("2.5.18.9", "directoryOperation", True),
        "subschemaSubentry": ("2.5.18.10", "directoryOperation", True),
        "entryDN": ("1.3.6.1.1.20", "directoryOperation", True),
        "namingContexts": ("1.3.6.1.4.1.1466.101.120.5", "dSAOperation", False),
        "ref": ("2.16.840.1.113730.3.1.34", "distributedOperation", False),
        "syncreplCookie": ("1.3.6.1.4.1.4203.666.1.23", "dSAOperation", True),
    }
    for name, (oid, usage, single) in expected.items():
        at = schema.attribute_type(name)
        assert at is not None, name
        assert (at.oid, at.usage, at.single_value, at.operational) == (oid, usage, single, True), name
    entry_csn = schema.attribute_type("entryCSN")
    assert entry_csn is not None and entry_csn.equality is not None and entry_csn.ordering is not None
    assert entry_csn.equality.oid == "1.3.6.1.4.1.4203.666.11.2.2"
    assert entry_csn.ordering.oid == "1.3.6.1.4.1.4203.666.11.2.3"
    assert entry_csn.syntax_len == 64
    cn = schema.attribute_type("cn")
    assert cn is not None and not cn.operational
    for oc, oid in (("glue", "1.3.6.1.4.1.4203.666.3.4"), ("subentry", "2.5.17.0"), ("alias", "2.5.6.1")):
        found = schema.object_class(oc)
        assert found is not None and found.oid == oid


def test_subtypes(schema: Schema) -> None:
    name = schema.attribute_type("name")
    assert name is not None
    names = [a.name for a in schema.subtypes(name)]
    assert names[0] == "name"
    assert {"cn", "sn", "givenName", "o", "ou", "title", "c"} <= set(names)
    assert "mail" not in names
    assert schema.subtypes(name) is schema.subtypes(name)  # cached
    dn_at = schema.attribute_type("distinguishedName")
    assert dn_at is not None
    assert {"seeAlso", "member", "owner"} <= {a.name for a in schema.subtypes(dn_at)}


def test_split_description_and_attribute_key(schema: Schema) -> None:
    at, options = schema.split_description("CN;Lang-EN;binary")
    assert at is schema.attribute_type("cn") and options == ("lang-en", "binary")
    assert schema.attribute_key("commonName") == "cn"
    assert schema.attribute_key("CN;lang-EN;Binary") == "cn;binary;lang-en"
    assert schema.attribute_key("cn;binary;lang-en") == "cn;binary;lang-en"
    assert schema.attribute_key("unKnown;X") == "unknown;x"
    assert schema.split_description("unknown") == (None, ())
    # a tag given twice is one tag, as slapd's slap_bv2ad drops the duplicate
    assert schema.attribute_key("cn;lang-en;LANG-EN") == "cn;lang-en"


def test_canonical_options_as_slapd_keeps_them() -> None:
    """slapd's ad_cname: tags lowercased, once each, sorted (`binary` sorts before every `lang-` tag)."""
    assert canonical_options(["lang-zz", "lang-y", "lang-yy", "lang-xx", "lang-x", "lang-z"]) == (
        "lang-x", "lang-xx", "lang-y", "lang-yy", "lang-z", "lang-zz")  # fmt: skip
    assert canonical_options(["lang-en-US", "lang-en-GB", "LANG-EN-us"]) == ("lang-en-gb", "lang-en-us")
    assert canonical_options(["lang-de", "Binary"]) == ("binary", "lang-de")


@pytest.mark.parametrize(
    ("wanted", "held", "expected"),
    [
        (["lang-en"], "lang-en", True),
        (["LANG-EN"], "lang-de;lang-en", True),
        (["lang-en"], "lang-en-us", False),
        (["lang-en-"], "lang-en-us", True),
        (["lang-en-"], "lang-en", True),  # a range holds the tag it names
        (["lang-en-"], "lang-enx", False),
        (["lang-en-"], "", False),
        (["lang-"], "lang-fr", True),
        (["lang-en-", "lang-de"], "lang-de;lang-en-gb", True),
        (["lang-en-", "lang-de"], "lang-en-gb", False),
        (["binary"], "binary;lang-en", True),
        (["binary"], "lang-en", False),
        ([], "lang-en", True),
        ([], "", True),
    ],
)
def test_options_test_as_slapd_is_ad_subtype(wanted: list[str], held: str, expected: bool) -> None:
    assert options_test(wanted)(held) is expected
    assert options_test(iter(wanted))(held) is expected  # a generator is read once


def test_default_returns_independent_copies() -> None:
    a = Schema.default()
    b = Schema.default()
    assert a is not b
    a.add_attribute_type("( 1.3.6.1.4.1.99999.1 NAME 'pyTestAttr' SUP name )")
    assert a.attribute_type("pyTestAttr") is not None
    assert b.attribute_type("pyTestAttr") is None
    name = a.attribute_type("name")
    assert name is not None and "pyTestAttr" in [x.name for x in a.subtypes(name)]
    # rules are bound to their own schema (the OID rule resolves names through it)
    oid_rule = a.matching_rule("objectIdentifierMatch")
    assert oid_rule is not None and oid_rule.schema is a
    assert oid_rule.normalize(b"pyTestAttr") == b"1.3.6.1.4.1.99999.1"


# --- adding definitions -------------------------------------------------------------------------------------


def test_add_definitions() -> None:
    s = Schema.default()
    at = s.add_attribute_type(
        "( 1.3.6.1.4.1.99999.2 NAME ( 'myAttr' 'myAlias' ) DESC 'it\\27s mine' EQUALITY caseExactMatch "
        "SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{64} SINGLE-VALUE X-ORIGIN 'test' )"
    )
    assert at.names == ("myAttr", "myAlias") and at.single_value and at.syntax_len == 64
    assert at.extensions == (("X-ORIGIN", ("test",)),)
    assert at.desc == "it's mine" and "DESC 'it\\27s mine'" in at.definition
    # the same definition again is fine
    assert s.add_attribute_type(at.definition) is at
    with pytest.raises(SchemaError, match="already defined"):
        s.add_attribute_type("( 1.3.6.1.4.1.99999.2 NAME 'myAttr' SUP name )")
    with pytest.raises(SchemaError, match="already used by 2.5.4.3"):
        s.add_attribute_type("( 1.3.6.1.4.1.99999.3 NAME 'cn' SUP name )")
    oc = s.add_object_class(
        "( 1.3.6.1.4.1.99999.4 NAME 'myClass' SUP top AUXILIARY MUST myAttr MAY ( cn $ sn ) )"
    )
    assert oc.kind == "AUXILIARY" and [a.name for a in oc.all_must()] == ["myAttr", "objectClass"]
    assert s.object_class("myclass") is oc
    assert s.add_object_class("{7}" + oc.definition) is oc  # cn=config ordering prefix
    assert oc.definition == (
        "( 1.3.6.1.4.1.99999.4 NAME 'myClass' SUP top AUXILIARY MUST myAttr MAY ( cn $ sn ) )"
    )
    with pytest.raises(SchemaError, match="unknown attribute type 'nope'"):
        s.add_object_class("( 1.3.6.1.4.1.99999.5 NAME 'bad' MAY nope )")
    with pytest.raises(SchemaError, match="unknown EQUALITY matching rule"):
        s.add_attribute_type("( 1.3.6.1.4.1.99999.6 NAME 'bad' EQUALITY fooMatch SYNTAX 1.2.3 )")


def test_definition_round_trips(schema: Schema) -> None:
    fresh = Schema()
    for at in schema.all_attribute_types():
        fresh.add_attribute_type(at.definition)
    for oc in schema.all_object_classes():
        fresh.add_object_class(oc.definition)
    assert [a.definition for a in fresh.all_attribute_types()] == [
        a.definition for a in schema.all_attribute_types()
    ]


def test_load_text_macros_continuations_and_case() -> None:
    s = Schema()
    s.load_text(
        """
# a comment
ObjectIdentifier myRoot 1.3.6.1.4.1.99999
objectidentifier myAttrs myRoot:1

ATTRIBUTETYPE ( myAttrs:1
\tNAME 'fooBar'
# a comment inside
    DESC 'the foo'
    SUP name )
ldapsyntax ( 1.3.6.1.4.1.99999.9 DESC 'my syntax' X-SUBST '1.3.6.1.4.1.1466.115.121.1.26' )
attributetype ( myAttrs:2 NAME 'fooIA5' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.99999.9 )
objectClass ( myRoot:2.1 NAME 'fooClass' SUP top STRUCTURAL MUST fooBar )
""",
        "test.schema",
    )
    at = s.attribute_type("foobar")
    assert at is not None and at.oid == "1.3.6.1.4.1.99999.1.1" and at.desc == "the foo"
    assert at.source == "test.schema"
    oc = s.object_class("fooClass")
    assert oc is not None and oc.oid == "1.3.6.1.4.1.99999.2.1"
    ia5 = s.attribute_type("fooIA5")
    assert ia5 is not None and ia5.syntax is not None
    assert ia5.syntax.validate(b"abc") and not ia5.syntax.validate("é".encode())
    assert s.resolve_oid("myRoot") == "1.3.6.1.4.1.99999"
    assert s.resolve_oid("fooclass") == "1.3.6.1.4.1.99999.2.1"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("attributetype ( 1.2.3 NAME 'x' SUP name", 1, "missing '\\)'"),
        ("\n\nattributetype ( 1.2.3 NAME 'x'\n  FOO bar SUP name )", 4, "unknown or misplaced keyword 'FOO'"),
        ("attributetype ( 1.2.3 NAME 'x' SUP nosuch )", 1, "unknown superior attribute type 'nosuch'"),
        ("attributetype ( 1.2.3 NAME 'x' )", 1, "needs a SYNTAX or a SUP"),
        ("attributetype ( bad:1 NAME 'x' SUP name )", 1, "not a known objectidentifier macro"),
        ("attributetype ( 1.2.3 NAME 'x' SUP name ) extra", 1, "text after the closing"),
        ("attributetype ( 1.2.3 NAME 'x' USAGE nowhere SUP name )", 1, "unknown USAGE"),
        ("attributetype ( 1.2.3 NAME 'x' DESC 'unterminated SUP name )", 1, "unbalanced quote"),
        ("# c\nobjectclass ( 1.2.4 NAME 'y' SUP nosuch )", 2, "unknown superior object class 'nosuch'"),
        ("objectclass ( 1.2.4 NAME 'y' ABSTRACT AUXILIARY )", 1, "more than one"),
        ("frobnicate ( 1.2.3 )", 1, "unknown schema keyword 'frobnicate'"),
        ("   attributetype ( 1.2.3 NAME 'x' SUP name )", 1, "continuation line without a statement"),
        ("attributetype ( 1.2.3 NAME 'x' SUP name ORDERING caseIgnoreMatch )", 1, "not an ordering"),
        ("attributetype ( 1.2.3 NAME 'x' SUP name SUP cn )", 1, "SUP given twice"),
    ],
)
def test_errors_name_source_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(SchemaError, match=rf"^my\.schema:{line}: .*{message}"):
        Schema().load_text(text, "my.schema")


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read"):
        Schema().load_file(str(tmp_path / "missing.schema"))
    bad = tmp_path / "bad.schema"
    bad.write_text("# header\n\nobjectclass ( 1.2.5 NAME 'z'\n    MUST ( cn $ nothere ) )\n")
    with pytest.raises(SchemaError, match=rf"^{re.escape(str(bad))}:3: .*'nothere'"):
        Schema().load_file(str(bad))


# --- matching rules -----------------------------------------------------------------------------------------


def test_case_ignore(schema: Schema) -> None:
    n = rule(schema, "caseIgnoreMatch").normalize
    assert n(b"  John   SMITH ") == b"john smith"
    assert n(b"John\tSmith") == b"john smith"
    assert n("ÉCOLE".encode()) == "école".encode()
    assert n("Stra\u00dfe".encode()) == n(b"STRASSE")  # full case folding
    assert n("e\u0301".encode()) == n("\u00e9".encode())  # NFKC
    assert n(b"\xff\xfe") is None
    ordering = rule(schema, "caseIgnoreOrderingMatch").ordering_key
    assert ordering(b"abc") < ordering(b"ABD")
    exact = rule(schema, "caseExactMatch").normalize
    assert exact(b"  John  Smith ") == b"John Smith" and exact(b"John") != exact(b"john")


def test_normalize_all_keeps_a_large_batch_and_never_mixes_two(schema: Schema) -> None:
    r = rule(schema, "caseIgnoreMatch")
    small = [b" A ", b"\xff"]
    assert r.normalize_all(small) == (b"a", None)
    big = [f"User{i}".encode() for i in range(300)] + [b"\xff\xfe"]
    first = r.normalize_all(big)
    assert first == tuple(r.normalize(v) for v in big) and first[-1] is None
    assert r.normalize_all(list(big)) is first  # the same values again (a search's second pass): kept
    other = [*big[:-1], b"USER1"]  # as many values, one different: normalized afresh
    assert r.normalize_all(other) == (*first[:-1], b"user1")
    assert rule(schema, "caseExactMatch").normalize_all(other)[-1] == b"USER1"  # kept per rule


def test_ia5_rules(schema: Schema) -> None:
    ignore = rule(schema, "caseIgnoreIA5Match").normalize
    assert ignore(b" Foo@Example.COM ") == b"foo@example.com"
    assert ignore("é".encode()) is None
    exact = rule(schema, "caseExactIA5Match").normalize
    assert exact(b"/Home/X") == b"/Home/X"


def test_integer(schema: Schema) -> None:
    n = rule(schema, "integerMatch").normalize
    assert n(b"7") == b"7" and n(b"-7") == b"-7" and n(b"0") == b"0"
    # RFC 4517 Integer, as slapd checks it: no leading zeros, no plus sign, no negative zero.
    assert n(b"007") is None and n(b"+7") is None and n(b"-0") is None
    assert n(b"1.5") is None and n(b"abc") is None and n(b"") is None
    key = rule(schema, "integerOrderingMatch").ordering_key
    assert key(b"-10") < key(b"9") < key(b"10")
    assert key(b"010") is None
    assert key(b"x") is None


def test_numeric_and_telephone(schema: Schema) -> None:
    num = rule(schema, "numericStringMatch").normalize
    assert num(b"1 234 5") == b"12345" and num(b"12a") is None
    tel = rule(schema, "telephoneNumberMatch").normalize
    assert tel(b"+1 555-123 4567") == tel(b"+15551234567")
    assert tel(b"ext-A12") == tel(b"EXT a12")
    sub = rule(schema, "telephoneNumberSubstringsMatch")
    assert sub.match_substrings(b"+1 555 123-4567", b"+1555", [], b"4567") is True
    assert sub.match_substrings(b"+1 555 123-4567", None, [b"12 3"], None) is True
    assert sub.match_substrings(b"+1 555 123-4567", b"+44", [], None) is False
    assert sub.match_substrings(b"+1 555 123-4567", None, [b" 123 "], b" 4567") is True


def test_generalized_time(schema: Schema) -> None:
    n = rule(schema, "generalizedTimeMatch").normalize
    assert n(b"20240101120000Z") == b"20240101120000Z"
    assert n(b"20240101140000+0200") == n(b"20240101120000Z")
    assert n(b"20240101070000-05") == n(b"20240101120000Z")
    assert n(b"202401011200Z") == n(b"2024010112Z") == b"20240101120000Z"
    assert n(b"20240101120000.250Z") == b"20240101120000.25Z"
    assert n(b"20240101120000,5Z") == b"20240101120000.5Z"
    assert n(b"202401011200.5Z") == b"20240101120030Z"
    assert n(b"20240101000000+0100") == b"20231231230000Z"
    assert n(b"20240230120000Z") is None and n(b"2024") is None and n(b"20240101120000") is None
    key = rule(schema, "generalizedTimeOrderingMatch").ordering_key
    assert key(b"20240101120000Z") < key(b"20240101120000.1Z") < key(b"20240101130001+0100")
    assert key(b"20240101120000+0100") < key(b"20240101120000Z")


def test_boolean_octet_bitstring(schema: Schema) -> None:
    b = rule(schema, "booleanMatch").normalize
    assert b(b"TRUE") == b"TRUE" and b(b"FALSE") == b"FALSE"
    assert b(b"true") is None and b(b" TRUE") is None and b(b"yes") is None  # as slapd: Undefined in a filter
    assert rule(schema, "octetStringMatch").normalize(b"\x00A") == b"\x00A"
    assert rule(schema, "octetStringOrderingMatch").ordering_key(b"a") < rule(
        schema, "octetStringOrderingMatch"
    ).ordering_key(b"b")
    bits = rule(schema, "bitStringMatch").normalize
    assert bits(b"'0101'B") == b"'0101'B" and bits(b"0101") is None


def test_object_identifier_match(schema: Schema) -> None:
    n = rule(schema, "objectIdentifierMatch").normalize
    assert n(b"person") == n(b"PERSON") == n(b"2.5.6.6") == b"2.5.6.6"
    assert n(b"cn") == b"2.5.4.3"
    assert n(b"unknownClass") == n(b"UNKNOWNCLASS") == b"unknownclass"
    assert n(b"not an oid") is None
    first = rule(schema, "objectIdentifierFirstComponentMatch").normalize
    assert first(b"( 2.5.4.3 NAME 'cn' SUP name )") == first(b"2.5.4.3") == first(b"cn")


def test_first_component_rules(schema: Schema) -> None:
    i = rule(schema, "integerFirstComponentMatch").normalize
    assert i(b"( 7 NAME 'x' )") == i(b"7")
    d = rule(schema, "directoryStringFirstComponentMatch").normalize
    assert d(b"( Foo bar )") == d(b"FOO")


def test_uuid_and_csn(schema: Schema) -> None:
    u = rule(schema, "UUIDMatch").normalize
    raw = u(b"01B0F4C8-7ADE-1041-84B5-0123456789ab")
    assert raw == bytes.fromhex("01b0f4c87ade104184b50123456789ab")
    assert u(raw) == raw  # raw 16 bytes (syncUUID) are accepted as they are
    assert u(b"not-a-uuid") is None
    uk = rule(schema, "UUIDOrderingMatch").ordering_key
    assert uk(b"00000000-0000-0000-0000-000000000001") < uk(b"10000000-0000-0000-0000-000000000000")
    c = rule(schema, "CSNMatch").normalize
    assert c(b"20240101120000.123456Z#000000#00A#000000") == b"20240101120000.123456Z#000000#00a#000000"
    assert c(b"20240101120000Z#000001#0A#000000") == b"20240101120000.000000Z#000001#00a#000000"
    assert c(b"garbage") is None
    ck = rule(schema, "CSNOrderingMatch").ordering_key
    assert ck(b"20240101120000.123456Z#000000#001#000000") < ck(b"20240101120000.123456Z#000000#002#000000")
    assert ck(b"20240101120000.123456Z#000001#001#000000") < ck(b"20240101120000.123457Z#000000#000#000000")


def test_dn_rules(schema: Schema) -> None:
    pytest.importorskip("pyldapd.model.dn")
    n = rule(schema, "distinguishedNameMatch").normalize
    assert n(b"CN=John  Smith, DC=Example,DC=COM") == n(b"cn=john smith,dc=example,dc=com")
    assert n(b"commonName=x,dc=y") == n(b"cn=X,dc=Y")
    assert n(b"not a dn") is None
    um = rule(schema, "uniqueMemberMatch").normalize
    assert um(b"CN=X,DC=Y#'0101'B") == (n(b"cn=x,dc=y") or b"") + b"#'0101'B"
    assert um(b"CN=X,DC=Y") == n(b"cn=x,dc=y")


def test_case_ignore_list(schema: Schema) -> None:
    n = rule(schema, "caseIgnoreListMatch").normalize
    assert n(b"1 Main  St$Springfield") == n(b"1 main st$ SPRINGFIELD ")
    sub = rule(schema, "caseIgnoreListSubstringsMatch")
    assert sub.match_substrings(b"1 Main St$Springfield", None, [b"SPRING"], None) is True


def test_word_and_keyword_match(schema: Schema) -> None:
    w = rule(schema, "wordMatch")
    assert w.matches(b"The Quick  Fox", b"QUICK") is True
    assert w.matches(b"The Quick Fox", b"qui") is False
    assert rule(schema, "caseIgnoreMatch").matches(b" A  b", b"a B") is True
    assert rule(schema, "integerMatch").matches(b"1", b"x") is None


def test_substrings(schema: Schema) -> None:
    sub = rule(schema, "caseIgnoreSubstringsMatch")
    m = sub.match_substrings
    assert m(b"John  Smith", b"JOHN ", [b"sm"], b"TH") is True
    assert m(b"John Smith", b"john", [], None) is True
    assert m(b"John Smith", None, [], b"smith") is True
    assert m(b"John Smith", b"smith", [], None) is False
    assert m(b"abcabc", b"abc", [], b"abc") is True
    assert m(b"abc", b"abc", [], b"abc") is False  # initial and final must not overlap
    assert m(b"abcdef", None, [b"cd", b"b"], None) is False  # pieces in order
    assert m(b"abcdef", None, [b"b", b"d"], b"f") is True
    assert m(b"\xff", b"a", [], None) is None
    assert sub.normalize_substring(b"  Foo   Bar ") == "foo bar"
    exact = rule(schema, "caseExactSubstringsMatch").match_substrings
    assert exact(b"John", b"Jo", [], None) is True and exact(b"John", b"jo", [], None) is False
    ia5 = rule(schema, "caseIgnoreIA5SubstringsMatch").match_substrings
    assert ia5(b"Foo@Example.com", None, [b"@EXAMPLE."], b"COM") is True
    num = rule(schema, "numericStringSubstringsMatch").match_substrings
    assert num(b"12 34 56", b"1234", [], None) is True


def test_every_referenced_rule_resolves_and_has_functions(schema: Schema) -> None:
    for at in schema.all_attribute_types():
        assert at.syntax is not None, at.name
        for r, kind in ((at.equality, "equality"), (at.ordering, "ordering"), (at.substr, "substr")):
            if r is not None:
                assert r.kind == kind
    for r in schema.all_matching_rules():
        if r.kind == "ordering":
            assert r.ordering_key(b"1") is not None or r.normalize(b"1") is None, r.name
        if r.kind == "substr":
            assert r.normalize_substring(b"1") is not None, r.name


def test_approx(schema: Schema) -> None:
    # slapd's metaphone keys (phonetic.c), as Debian's slapd selects (tests/server/test_approx.py compares)
    assert metaphone("Smith") == metaphone("SMYTH") == "SM0"
    assert metaphone("Test7") == metaphone("Test0") == "TST"  # letters up to the first digit
    assert (metaphone("Robert"), metaphone("Rupert"), metaphone("Box")) == (
        "RRT",
        "RPRT",
        "KS",
    )  # B only last
    assert (metaphone("Knight"), metaphone("Xavier"), metaphone("Wheeler")) == ("NKT", "SFR", "WLR")
    assert metaphone("7") == metaphone("") == ""
    assert approx_match(b"john smith", b"jon smyth")
    assert approx_match(b"john smith", b"smyth")
    assert not approx_match(b"john smith", b"smith john")  # words in order
    assert approx_match("müller".encode(), b"muller")
    assert approx_match(b"42 street", b"7")  # a word without letters matches one
    assert not approx_match(b"smith", b"")
    assert approx_keys(b"42 john smith") == [b"JN", b"SM0"]
    assert approx_filter_keys(b"agent 7") == [b"AGNT", b""]
    assert approx_filter_keys(b" ") is None


# --- syntaxes -----------------------------------------------------------------------------------------------

_SYNTAX_CASES = {
    "1.3.6.1.4.1.1466.115.121.1.15": ([b"x", "ü".encode()], [b"", b"\xff"]),
    "1.3.6.1.4.1.1466.115.121.1.26": ([b"abc", b""], ["é".encode()]),
    "1.3.6.1.4.1.1466.115.121.1.44": ([b"Abc 1'()+,-./:?="], [b"a@b", b"", b"a_b"]),
    "1.3.6.1.4.1.1466.115.121.1.36": ([b"12 34"], [b"12a", b""]),
    "1.3.6.1.4.1.1466.115.121.1.27": (
        [b"0", b"-12", b"7"],
        [b"1.0", b"", b"--1", b"x", b"007", b"-0", b"+1"],
    ),
    "1.3.6.1.4.1.1466.115.121.1.7": ([b"TRUE", b"FALSE"], [b"yes", b"True "]),
    "1.3.6.1.4.1.1466.115.121.1.24": (
        [b"20240101120000Z", b"2024010112Z", b"20240101120000.5+0130", b"20240229000000Z"],
        [b"20230229000000Z", b"20240101250000Z", b"20240101120000", b"2024"],
    ),
    "1.3.6.1.4.1.1466.115.121.1.53": ([b"2401011200Z", b"240101120000+0100"], [b"20240101120000Z"]),
    "1.3.6.1.4.1.1466.115.121.1.50": ([b"+1 555 123-4567"], [b"", b"555#1"]),
    "1.3.6.1.4.1.1466.115.121.1.38": ([b"2.5.4.3", b"cn", b"a-b"], [b"2.", b"1a", b"", b".1"]),
    "1.3.6.1.4.1.1466.115.121.1.40": ([b"", b"\x00\xff"], []),
    "1.3.6.1.4.1.1466.115.121.1.41": ([b"1 Main St$Town"], [b"a$$b", b"", b"\xff"]),
    "1.3.6.1.4.1.1466.115.121.1.11": ([b"US", b"fr"], [b"USA", b"U", b"U@"]),
    "1.3.6.1.4.1.1466.115.121.1.6": ([b"'0101'B", b"''B"], [b"0101", b"'012'B"]),
    "1.3.6.1.4.1.1466.115.121.1.14": ([b"telephone $ mhs", b"any"], [b"pigeon", b""]),
    "1.3.6.1.4.1.1466.115.121.1.39": ([b"internet $ a@b.c"], [b"nodollar"]),
    "1.3.6.1.4.1.1466.115.121.1.28": ([b"\xff\xd8"], []),
    "1.3.6.1.1.16.1": ([b"01b0f4c8-7ade-1041-84b5-0123456789AB"], [b"01b0f4c87ade104184b50123456789ab", b""]),
    "1.3.6.1.4.1.4203.666.11.2.1": (
        [b"20240101120000.123456Z#000000#001#000000", b"20240101120000Z#000000#01#000000"],
        [b"20240101120000.123456Z#000000#001", b"x", b"20241301120000.123456Z#000000#001#000000"],
    ),
    "1.3.6.1.1.1.0.0": (
        [b"(host,user,domain)", b"(,user,)", b"( h , u , d )"],
        [b"host,user,domain", b"(a,b)"],
    ),
    "1.3.6.1.1.1.0.1": ([b"root=server:/export/root"], [b"nokey", b""]),
    "1.3.6.1.4.1.1466.115.121.1.3": ([b"( 1.2.3 NAME 'x' )"], [b"", b"1.2.3"]),
    "1.3.6.1.4.1.1466.115.121.1.22": ([b"+1 555 1234 $ twoDimensional"], [b"\xff"]),
}


@pytest.mark.parametrize("oid", sorted(_SYNTAX_CASES))
def test_syntax_validators(schema: Schema, oid: str) -> None:
    syntax = schema.syntax(oid)
    assert syntax is not None
    good, bad = _SYNTAX_CASES[oid]
    for value in good:
        assert syntax.validate(value), (syntax.desc, value)
    for value in bad:
        assert not syntax.validate(value), (syntax.desc, value)


def test_dn_syntaxes(schema: Schema) -> None:
    pytest.importorskip("pyldapd.model.dn")
    dn = schema.syntax("1.3.6.1.4.1.1466.115.121.1.12")
    assert dn is not None
    assert dn.validate(b"cn=x,dc=example,dc=com") and dn.validate(b"")
    assert not dn.validate(b"no equals sign")
    uid = schema.syntax("1.3.6.1.4.1.1466.115.121.1.34")
    assert uid is not None and uid.validate(b"cn=x,dc=y#'0101'B") and uid.validate(b"cn=x")


def test_unknown_syntax_accepts_anything() -> None:
    s = Schema()
    at = s.add_attribute_type("( 1.2.3.4 NAME 'odd' SYNTAX 1.2.3.4.5.6 )")
    assert at.syntax is not None and at.syntax.validate(b"\xff anything")


# --- subschema ----------------------------------------------------------------------------------------------


def test_subschema_values(schema: Schema) -> None:
    values = schema.subschema_values()
    assert set(values) == {
        "attributeTypes",
        "objectClasses",
        "ldapSyntaxes",
        "matchingRules",
        "matchingRuleUse",
    }
    ats = values["attributeTypes"]
    assert b"( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )" in ats
    assert any(v.startswith(b"( 1.3.6.1.1.16.4 NAME 'entryUUID' EQUALITY UUIDMatch") for v in ats)
    assert b"( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )" in values["objectClasses"]
    assert b"( 1.3.6.1.4.1.1466.115.121.1.15 DESC 'Directory String' )" in values["ldapSyntaxes"]
    assert (
        b"( 1.3.6.1.4.1.1466.115.121.1.8 DESC 'Certificate' X-BINARY-TRANSFER-REQUIRED 'TRUE' "
        b"X-NOT-HUMAN-READABLE 'TRUE' )" in values["ldapSyntaxes"]
    )
    assert (
        b"( 2.5.13.2 NAME 'caseIgnoreMatch' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )" in values["matchingRules"]
    )
    use = [v for v in values["matchingRuleUse"] if v.startswith(b"( 2.5.13.14 ")]
    assert len(use) == 1 and b"uidNumber" in use[0] and b"APPLIES" in use[0]
    # every published value parses back
    fresh = Schema()
    for v in ats:
        fresh.add_attribute_type(v.decode())


# --- the shipped files and Debian's ------------------------------------------------------------------------


def _elements(
    s: Schema, path: str
) -> tuple[set[tuple[str, tuple[str, ...]]], set[tuple[str, tuple[str, ...]]]]:
    ats = {(a.oid, a.names) for a in s.all_attribute_types() if a.source == path}
    ocs = {(o.oid, o.names) for o in s.all_object_classes() if o.source == path}
    return ats, ocs


debian = pytest.mark.skipif(
    not (DEBIAN / "core.schema").exists(), reason="Debian's schema files not installed"
)


@debian
def test_debian_files_load_into_fresh_schema() -> None:
    s = Schema()
    for name in FILES:
        s.load_file(str(DEBIAN / f"{name}.schema"))
    assert s.object_class("inetOrgPerson") is not None
    assert s.attribute_type("nisNetgroupTriple") is not None


@debian
def test_shipped_files_define_what_debian_files_define() -> None:
    ours = Schema.default()
    theirs = Schema()
    for name in FILES:
        theirs.load_file(str(DEBIAN / f"{name}.schema"))
    for name in FILES:
        assert _elements(ours, str(SCHEMA_DIR / f"{name}.schema")) == _elements(
            theirs, str(DEBIAN / f"{name}.schema")
        ), name

    # and with the same meaning (DESC and the spelling of references aside): syntaxes, rules, SUP, MUST/MAY, flags
    def type_meaning(at):  # noqa: ANN001, ANN202
        rules = tuple(r.oid if r else None for r in (at.equality, at.ordering, at.substr))
        return (at.oid, at.names, at.sup.oid if at.sup else None, rules, at.syntax.oid, at.syntax_len,
                at.single_value, at.no_user_modification, at.usage, at.obsolete)  # fmt: skip

    def class_meaning(oc):  # noqa: ANN001, ANN202
        return (oc.oid, oc.names, oc.kind, tuple(s.oid for s in oc.sup), tuple(a.oid for a in oc.must),
                tuple(a.oid for a in oc.may))  # fmt: skip

    assert {type_meaning(a) for a in ours.all_attribute_types()} == {
        type_meaning(a) for a in theirs.all_attribute_types()
    }
    assert {class_meaning(o) for o in ours.all_object_classes()} == {
        class_meaning(o) for o in theirs.all_object_classes()
    }


def test_shipped_files_use_standard_syntax() -> None:
    for name in FILES:
        text = (SCHEMA_DIR / f"{name}.schema").read_text()
        for line in text.splitlines():
            if line and not line[0].isspace() and not line.startswith("#"):
                assert line.split()[0] in ("attributetype", "objectclass", "objectidentifier"), line


@settings(max_examples=500)
@given(st.text(max_size=30))
def test_string_normalization_is_idempotent(text: str) -> None:
    schema = _HYPO_SCHEMA
    for name in ("caseIgnoreMatch", "caseExactMatch", "telephoneNumberMatch"):
        n = rule(schema, name).normalize
        once = n(text.encode("utf-8", "surrogatepass"))
        if once is not None:
            assert n(once) == once, name


_HYPO_SCHEMA = Schema.default()


# --- certificates (RFC 4523, slapd's certificateExactMatch) ---------------------------------------------------


def _issuer() -> list:
    from cryptography.x509.oid import NameOID

    return [(NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "OpenLDAP Example, Ltd."),
            (NameOID.COMMON_NAME, "Example CA"), (NameOID.EMAIL_ADDRESS, "ca@example.com")]  # fmt: skip


@pytest.mark.parametrize(
    ("serial", "assertion", "expected"),
    [
        (2, "2$EMAIL=ca@example.com,CN=Example CA,O=Openldap Example\\, Ltd.,C=US", True),
        (2, "0002$email=CA@EXAMPLE.COM,cn=example ca,o=openldap example\\2c ltd.,c=us", True),
        (
            2,
            '{ serialNumber 2, issuer "EMAIL=ca@example.com,CN=Example CA,O=Openldap Example\\, Ltd.,C=US" }',
            True,
        ),
        (
            2,
            '{issuer rdnSequence:"email=ca@example.com,cn=Example CA,o=OpenLDAP Example\\2C Ltd.,c=US",serialNumber 2}',
            True,
        ),
        (3, "2$EMAIL=ca@example.com,CN=Example CA,O=Openldap Example\\, Ltd.,C=US", False),
        (2, "2$CN=Example CA,O=Openldap Example\\, Ltd.,C=US", False),
        # 128 is the DER INTEGER 00 80: '80'H, however it is written
        (
            128,
            '{ serialNumber 128, issuer "EMAIL=ca@example.com,CN=Example CA,O=OpenLDAP Example\\, Ltd.,C=US" }',
            True,
        ),
        (
            128,
            '{ serialNumber 0x80, issuer "EMAIL=ca@example.com,CN=Example CA,O=OpenLDAP Example\\, Ltd.,C=US" }',
            True,
        ),
        (
            128,
            "{ serialNumber '80'H, issuer \"EMAIL=ca@example.com,CN=Example CA,O=OpenLDAP Example\\, Ltd.,C=US\" }",
            True,
        ),
        (2**70 + 5, f"{2**70 + 5}$EMAIL=ca@example.com,CN=Example CA,O=OpenLDAP Example\\, Ltd.,C=US", True),
    ],
)
def test_certificate_exact_match(schema: Schema, serial: int, assertion: str, expected: bool) -> None:
    from tests.certs import der_certificate

    rule = schema.matching_rule("certificateExactMatch")
    assert rule is not None
    certificate = der_certificate(serial, _issuer())
    form = rule.normalize(certificate)
    assert form is not None
    wanted = rule.normalize_assertion(assertion.encode())
    assert wanted is not None
    assert (form == wanted) is expected
    assert rule.matches(certificate, assertion.encode()) is expected


@pytest.mark.parametrize(
    "assertion",
    [
        "x$cn=a",  # old form: decimal serial numbers only
        "2cn=a",
        "2$nosuchattr=a",  # the issuer must be a DN of known types
        '{ serialNumber 02, issuer "cn=a" }',  # GSER: no leading zeros
        '{ serialNumber 0x0F, issuer "cn=a" }',
        '{ serialNumber  2, issuer "cn=a" }X',
        "{ serialNumber 2 }",
        '{ serialNumber 2, issuer "cn=a", serialNumber 2 }',
        "{ serialNumber 2, issuer cn=a }",
        '{ serialNumber 2,issuer"cn=a" }',
    ],
)
def test_certificate_exact_match_refuses_what_slapd_refuses(schema: Schema, assertion: str) -> None:
    rule = schema.matching_rule("certificateExactMatch")
    assert rule is not None
    assert rule.normalize_assertion(assertion.encode()) is None


def test_certificate_syntax_and_assertions_are_told_apart(schema: Schema) -> None:
    """A certificate is a value, never an assertion (slapd's normalizer is told which it has): the DER of a
    certificate given as an assertion is Undefined, a serialNumberAndIssuer stored as a value is refused."""
    from tests.certs import der_certificate

    certificate = der_certificate(7, _issuer())
    syntax = schema.syntax("1.3.6.1.4.1.1466.115.121.1.8")
    rule = schema.matching_rule("certificateExactMatch")
    assert syntax is not None and rule is not None
    assert syntax.validate(certificate)
    assert not syntax.validate(certificate[:-1])
    assert not syntax.validate(certificate + b"\x00")
    assert not syntax.validate(b"7$cn=Example CA")
    assert rule.normalize_assertion(certificate) is None
    assert rule.normalize(b"7$cn=Example CA") is None
    assert rule.matches(certificate, certificate) is None
