"""Tests of the LMDB backend (pyldapd.backends.mdb) on real LMDB environments in tmp_path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from pyldapd.backends.base import AlreadyExists, NoSuchEntry, NotAllowedOnNonLeaf, Scope, StorageError
from pyldapd.backends.mdb import MdbDatabase, open_database
from pyldapd.model.dn import normalize_dn
from pyldapd.model.entry import Entry
from pyldapd.model.filter import And, Approx, Equality, Filter, Not, Or, Present, Substrings

SUFFIX = "dc=Example,dc=com"
INDEXES = {
    "cn": {"eq", "sub", "pres", "approx"},
    "uid": {"eq"},
    "mail": {"eq", "sub", "pres"},
    "objectClass": {"eq"},
}


# Used only when the shipped schema files are not available: the few definitions these tests need.
_FALLBACK_SCHEMA = """
attributetype ( 2.5.4.4 NAME ( 'sn' 'surname' ) SUP name )
attributetype ( 2.5.4.11 NAME ( 'ou' 'organizationalUnitName' ) SUP name )
attributetype ( 0.9.2342.19200300.100.1.25 NAME ( 'dc' 'domainComponent' )
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
attributetype ( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'rfc822Mailbox' )
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
objectclass ( 2.5.6.6 NAME 'person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( description ) )
objectclass ( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' SUP person STRUCTURAL MAY ( uid $ mail ) )
objectclass ( 2.5.6.5 NAME 'organizationalUnit' SUP top STRUCTURAL MUST ou )
objectclass ( 0.9.2342.19200300.100.4.13 NAME 'domain' SUP top STRUCTURAL MUST dc )
objectclass ( 2.5.6.14 NAME 'device' SUP top STRUCTURAL MUST cn )
"""


def _schema() -> Any:
    from pyldapd.model.schema import Schema, SchemaError

    try:
        return Schema.default()
    except SchemaError:
        schema = Schema()
        schema.load_text(_FALLBACK_SCHEMA)
        return schema


@pytest.fixture(scope="module")
def schema() -> Any:
    return _schema()


def make_entry(schema: Any, dn: str, **attrs: list[str] | str) -> Entry:
    entry = Entry(dn)
    for name, values in attrs.items():
        if isinstance(values, str):
            values = [values]
        entry.put(schema.attribute_key(name), name, [v.encode() for v in values])
    return entry


def person(schema: Any, dn: str, uid: str, cn: str, **more: Any) -> Entry:
    return make_entry(
        schema,
        dn,
        objectClass=["top", "person", "inetOrgPerson"],
        uid=uid,
        cn=cn,
        sn=cn.split()[-1],
        **more,
        entryUUID=str(uuid.uuid4()),  # operational: last, as a server adds it
    )


def ou(schema: Any, dn: str, name: str) -> Entry:
    return make_entry(
        schema, dn, objectClass=["top", "organizationalUnit"], ou=name, entryUUID=str(uuid.uuid4())
    )


def base_tree(db: MdbDatabase, schema: Any) -> None:
    with db.write() as w:
        w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
        w.add(ou(schema, "ou=People,dc=Example,dc=com", "People"))
        w.add(ou(schema, "ou=Groups,dc=Example,dc=com", "Groups"))
        w.add(ou(schema, "ou=Staff,ou=People,dc=Example,dc=com", "Staff"))
        w.add(
            person(
                schema, "uid=jdoe,ou=People,dc=Example,dc=com", "jdoe", "John Doe", mail="jdoe@example.com"
            )
        )
        w.add(person(schema, "uid=asmith,ou=People,dc=Example,dc=com", "asmith", "Alice Smith"))
        w.add(person(schema, "uid=bob,ou=Staff,ou=People,dc=Example,dc=com", "bob", "Bob Smithers"))


@pytest.fixture
def db(tmp_path: Path, schema: Any) -> Any:
    d = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    yield d
    d.close()


@pytest.fixture
def tree(db: MdbDatabase, schema: Any) -> MdbDatabase:
    base_tree(db, schema)
    return db


def n(schema: Any, dn: str) -> str:
    return normalize_dn(dn, schema)


def dns(entries: Any) -> list[str]:
    return [e.dn for e in entries]


# --- basic operations --------------------------------------------------------------------------------------------


def test_add_get_modify_delete(db: MdbDatabase, schema: Any) -> None:
    base_tree(db, schema)
    ndn = n(schema, "uid=jdoe,ou=people,dc=example,dc=com")
    with db.read() as r:
        e = r.get(ndn)
        assert e is not None
        assert e.dn == "uid=jdoe,ou=People,dc=Example,dc=com"
        assert e.get("cn") == [b"John Doe"]
        assert e.attrs["objectclass"].name == "objectClass"
        assert e.encoded_user and b"John Doe" in e.encoded_user
        # entryUUID is operational: it lives in the operational blob
        assert e.encoded_operational and b"entryUUID" in e.encoded_operational
        assert b"entryUUID" not in e.encoded_user
        assert r.get_by_id(e.id) is not None and r.get_by_id(e.id).dn == e.dn
        assert r.exists(ndn) and not r.exists("uid=nobody," + n(schema, SUFFIX))
        assert r.count() == 7
    new = e.copy()
    new.put("cn", "cn", [b"Johnny Doe", b"J Doe"])
    new.put("description", "description", [b"changed"])
    with db.write() as w:
        w.modify(ndn, new)
    assert new.encoded_user is not None and b"Johnny" in new.encoded_user
    with db.read() as r:
        e2 = r.get(ndn)
        assert e2 is not None and e2.get("cn") == [b"Johnny Doe", b"J Doe"]
        assert e2.get("description") == [b"changed"]
        assert dns(r.search(n(schema, SUFFIX), Scope.SUB, Equality("cn", b"johnny doe"))) == [e2.dn]
        assert list(r.search(n(schema, SUFFIX), Scope.SUB, Equality("cn", b"john doe"))) == []
    with db.write() as w:
        old = w.delete(ndn)
        assert old.get("cn") == [b"Johnny Doe", b"J Doe"]
        with pytest.raises(NoSuchEntry):
            w.delete(ndn)
    with db.read() as r:
        assert r.get(ndn) is None and r.count() == 6
        assert list(r.search(n(schema, SUFFIX), Scope.SUB, Equality("cn", b"johnny doe"))) == []


def test_add_errors(tree: MdbDatabase, schema: Any) -> None:
    with tree.write() as w:
        with pytest.raises(AlreadyExists):
            w.add(ou(schema, "OU=people,dc=example,dc=com", "people"))
        with pytest.raises(NoSuchEntry) as info:
            w.add(person(schema, "uid=x,ou=Missing,ou=Deeper,ou=People,dc=Example,dc=com", "x", "X Y"))
        assert info.value.matched_dn == "ou=People,dc=Example,dc=com"
        assert str(info.value) == n(schema, "ou=Missing,ou=Deeper,ou=People,dc=Example,dc=com")
        with pytest.raises(StorageError):
            w.add(make_entry(schema, "dc=com", objectClass="domain", dc="com"))
        with pytest.raises(StorageError):
            w.add(make_entry(schema, "dc=other,dc=org", objectClass="domain", dc="other"))


def test_missing_suffix_matched_dn_empty(db: MdbDatabase, schema: Any) -> None:
    with db.write() as w:
        with pytest.raises(NoSuchEntry) as info:
            w.add(ou(schema, "ou=People,dc=Example,dc=com", "People"))
        assert info.value.matched_dn == ""


def test_nonleaf_delete_refused(tree: MdbDatabase, schema: Any) -> None:
    with tree.write() as w:
        with pytest.raises(NotAllowedOnNonLeaf):
            w.delete(n(schema, "ou=People,dc=Example,dc=com"))
    with tree.read() as r:
        assert r.has_children(n(schema, "ou=People,dc=Example,dc=com"))
        assert not r.has_children(n(schema, "ou=Groups,dc=Example,dc=com"))


def test_write_aborts_on_exception(tree: MdbDatabase, schema: Any) -> None:
    with pytest.raises(RuntimeError):
        with tree.write() as w:
            w.add(ou(schema, "ou=Temp,dc=Example,dc=com", "Temp"))
            w.put_raw_metadata(b"k", b"v")
            raise RuntimeError("boom")
    with tree.read() as r:
        assert not r.exists(n(schema, "ou=Temp,dc=Example,dc=com"))
        assert r.get_raw_metadata(b"k") is None


def test_raw_metadata_and_nested_write(tree: MdbDatabase) -> None:
    with tree.write() as w:
        w.put_raw_metadata(b"contextCSN", b"x")
        assert w.get_raw_metadata(b"contextCSN") == b"x"
        with pytest.raises(StorageError):
            with tree.write():
                pass
    with tree.read() as r:
        assert r.get_raw_metadata(b"contextCSN") == b"x"


def test_snapshot_isolation_with_cache(tree: MdbDatabase, schema: Any) -> None:
    ndn = n(schema, "uid=jdoe,ou=People,dc=Example,dc=com")
    with tree.read() as old:
        before = old.get(ndn)
        assert before is not None
        with tree.write() as w:
            e = before.copy()
            e.put("cn", "cn", [b"Changed"])
            w.modify(ndn, e)
        assert old.get(ndn).get("cn") == [b"John Doe"]  # the older snapshot still sees the old entry
        with tree.read() as new:
            assert new.get(ndn).get("cn") == [b"Changed"]


def test_nearest_ancestor(tree: MdbDatabase, schema: Any) -> None:
    with tree.read() as r:
        a = r.nearest_ancestor(n(schema, "cn=x,cn=y,ou=Staff,ou=People,dc=Example,dc=com"))
        assert a is not None and a.dn == "ou=Staff,ou=People,dc=Example,dc=com"
        assert r.nearest_ancestor(n(schema, SUFFIX)) is None
        assert r.nearest_ancestor(n(schema, "dc=org")) is None


# --- rename ------------------------------------------------------------------------------------------------------


def test_rename_leaf(tree: MdbDatabase, schema: Any) -> None:
    old = n(schema, "uid=asmith,ou=People,dc=Example,dc=com")
    with tree.read() as r:
        e = r.get(old).copy()
    e.dn = "uid=alice,ou=People,dc=Example,dc=com"
    e.put("uid", "uid", [b"alice"])
    with tree.write() as w:
        w.rename(old, e)
    with tree.read() as r:
        assert r.get(old) is None
        got = r.get(n(schema, e.dn))
        assert got is not None and got.dn == e.dn and got.get("uid") == [b"alice"]
        assert dns(r.search(n(schema, SUFFIX), Scope.SUB, Equality("uid", b"alice"))) == [e.dn]
        assert list(r.search(n(schema, SUFFIX), Scope.SUB, Equality("uid", b"asmith"))) == []


def test_rename_errors(tree: MdbDatabase, schema: Any) -> None:
    src = n(schema, "uid=asmith,ou=People,dc=Example,dc=com")
    with tree.write() as w:
        e = w.get(src).copy()
        e.dn = "uid=jdoe,ou=People,dc=Example,dc=com"
        with pytest.raises(AlreadyExists):
            w.rename(src, e)
        e.dn = "uid=asmith,ou=Nowhere,dc=Example,dc=com"
        with pytest.raises(NoSuchEntry) as info:
            w.rename(src, e)
        assert info.value.matched_dn == SUFFIX
        people = w.get(n(schema, "ou=People,dc=Example,dc=com")).copy()
        people.dn = "ou=People,ou=Staff,ou=People,dc=Example,dc=com"
        with pytest.raises(StorageError):
            w.rename(n(schema, "ou=People,dc=Example,dc=com"), people)


def test_rename_subtree_move(tree: MdbDatabase, schema: Any) -> None:
    src = n(schema, "ou=People,dc=Example,dc=com")
    with tree.write() as w:
        e = w.get(src).copy()
        e.dn = "ou=Persons,ou=Groups,dc=Example,dc=com"
        e.put("ou", "ou", [b"Persons"])
        w.rename(src, e)
    with tree.read() as r:
        assert r.get(src) is None
        assert r.get(n(schema, "uid=jdoe,ou=People,dc=Example,dc=com")) is None
        base = n(schema, "ou=Persons,ou=Groups,dc=Example,dc=com")
        got = sorted(dns(r.search(base, Scope.SUB, None)))
        assert got == sorted(
            [
                "ou=Persons,ou=Groups,dc=Example,dc=com",
                "ou=Staff,ou=Persons,ou=Groups,dc=Example,dc=com",
                "uid=jdoe,ou=Persons,ou=Groups,dc=Example,dc=com",
                "uid=asmith,ou=Persons,ou=Groups,dc=Example,dc=com",
                "uid=bob,ou=Staff,ou=Persons,ou=Groups,dc=Example,dc=com",
            ]
        )
        for dn in got:
            ent = r.get(n(schema, dn))
            assert ent is not None and ent.dn == dn
        bob = r.get(n(schema, "uid=bob,ou=Staff,ou=Persons,ou=Groups,dc=Example,dc=com"))
        assert bob is not None and bob.get("cn") == [b"Bob Smithers"]
        assert dns(r.children(n(schema, "ou=Groups,dc=Example,dc=com"))) == [e.dn]
        assert dns(r.search(n(schema, SUFFIX), Scope.ONE, None)) == [
            "ou=Groups,dc=Example,dc=com",
        ]
        # the index still finds moved entries, at their new DN
        assert dns(r.search(n(schema, SUFFIX), Scope.SUB, Equality("uid", b"bob"))) == [
            "uid=bob,ou=Staff,ou=Persons,ou=Groups,dc=Example,dc=com"
        ]
        assert r.count() == 7
    # and it can be moved back, and renamed to a different spelling of the same DN
    with tree.write() as w:
        e2 = w.get(n(schema, e.dn)).copy()
        e2.dn = "OU=People,dc=Example,dc=com"
        w.rename(n(schema, e.dn), e2)
    with tree.read() as r:
        assert r.get(n(schema, "uid=bob,ou=Staff,ou=People,dc=Example,dc=com")).dn == (
            "uid=bob,ou=Staff,OU=People,dc=Example,dc=com"
        )


# --- scopes ------------------------------------------------------------------------------------------------------


def test_scopes(tree: MdbDatabase, schema: Any) -> None:
    people = n(schema, "ou=People,dc=Example,dc=com")
    with tree.read() as r:
        assert dns(r.search(people, Scope.BASE, None)) == ["ou=People,dc=Example,dc=com"]
        assert dns(r.search(people, Scope.BASE, Equality("uid", b"nomatch"))) == [
            "ou=People,dc=Example,dc=com"
        ]
        assert dns(r.search(people, Scope.ONE, None)) == [
            "ou=Staff,ou=People,dc=Example,dc=com",
            "uid=jdoe,ou=People,dc=Example,dc=com",
            "uid=asmith,ou=People,dc=Example,dc=com",
        ]
        sub = dns(r.search(people, Scope.SUB, None))
        assert sub == [
            "ou=People,dc=Example,dc=com",
            "ou=Staff,ou=People,dc=Example,dc=com",
            "uid=bob,ou=Staff,ou=People,dc=Example,dc=com",
            "uid=jdoe,ou=People,dc=Example,dc=com",
            "uid=asmith,ou=People,dc=Example,dc=com",
        ]
        assert dns(r.search(people, Scope.CHILDREN, None)) == sub[1:]
        everything = dns(r.search(n(schema, SUFFIX), Scope.SUB, None))
        assert len(everything) == 7 and everything[0] == SUFFIX
        assert list(r.search(n(schema, "ou=Nope,dc=Example,dc=com"), Scope.SUB, None)) == []
        # indexed searches respect the scope too
        smith = Substrings("cn", None, (b"smith",), None)
        assert sorted(dns(r.search(people, Scope.ONE, smith))) == ["uid=asmith,ou=People,dc=Example,dc=com"]
        staff = n(schema, "ou=Staff,ou=People,dc=Example,dc=com")
        assert dns(r.search(staff, Scope.SUB, smith)) == ["uid=bob,ou=Staff,ou=People,dc=Example,dc=com"]
        assert dns(r.search(staff, Scope.CHILDREN, smith)) == ["uid=bob,ou=Staff,ou=People,dc=Example,dc=com"]
        groups = n(schema, "ou=Groups,dc=Example,dc=com")
        assert list(r.search(groups, Scope.SUB, smith)) == []
        assert [e.dn for e in r.children(people)] == dns(r.search(people, Scope.ONE, None))


def test_search_is_lazy(tree: MdbDatabase, schema: Any) -> None:
    with tree.read() as r:
        it = r.search(n(schema, SUFFIX), Scope.SUB, None)
        first = next(it)
        assert first.dn == SUFFIX
        it.close()


def test_search_of_the_whole_database_in_id_order(tree: MdbDatabase, schema: Any) -> None:
    """back-mdb answers a search over its whole tree in entry id order (its candidates: every id), not by walking
    the tree: a child of the suffix added after deeper entries comes after them, an entry moved under a newer
    parent before it (slapd's test011, test012). Below the suffix the tree is walked, parents first."""
    people_asmith = n(schema, "uid=asmith,ou=People,dc=Example,dc=com")
    with tree.write() as w:
        w.add(make_entry(schema, "cn=Manager,dc=Example,dc=com", objectClass=["device"], cn="Manager"))
        w.add(ou(schema, "ou=New,dc=Example,dc=com", "New"))
        moved = w.get(people_asmith).copy()
        moved.dn = "uid=asmith,ou=New,dc=Example,dc=com"
        w.rename(people_asmith, moved)
    by_id = [
        SUFFIX,
        "ou=People,dc=Example,dc=com",
        "ou=Groups,dc=Example,dc=com",
        "ou=Staff,ou=People,dc=Example,dc=com",
        "uid=jdoe,ou=People,dc=Example,dc=com",
        "uid=asmith,ou=New,dc=Example,dc=com",
        "uid=bob,ou=Staff,ou=People,dc=Example,dc=com",
        "cn=Manager,dc=Example,dc=com",
        "ou=New,dc=Example,dc=com",
    ]
    suffix = n(schema, SUFFIX)
    with tree.read() as r:
        assert dns(r.search(suffix, Scope.SUB, None)) == by_id
        assert dns(r.search(suffix, Scope.CHILDREN, None)) == by_id[1:]
        assert dns(r.search(suffix, Scope.SUB, Equality("objectclass", b"organizationalunit"))) == [
            dn for dn in by_id if dn.startswith("ou=")
        ]
        assert dns(r.search(n(schema, "ou=People,dc=Example,dc=com"), Scope.SUB, None)) == [
            "ou=People,dc=Example,dc=com",
            "ou=Staff,ou=People,dc=Example,dc=com",
            "uid=bob,ou=Staff,ou=People,dc=Example,dc=com",
            "uid=jdoe,ou=People,dc=Example,dc=com",
        ]


def test_database_with_the_empty_suffix(tmp_path: Path, schema: Any) -> None:
    """A database whose suffix is "" (slapd's test027): its top-level entries hang from the root, which is never
    stored (LMDB has no zero-length key: looking it up was MDB_BAD_VALSIZE) and reads as back-mdb's root entry,
    an entry without attributes: the parent top-level entries are added under, the base of a search."""
    path = str(tmp_path / "db")
    with MdbDatabase(path, schema, "", indexes=INDEXES, maxsize=64 * 2**20) as db:
        with db.write() as w:
            w.add(ou(schema, "ou=A", "A"))
            w.add(ou(schema, "ou=B", "B"))
            w.add(person(schema, "uid=x,ou=A", "x", "X Ray"))
            with pytest.raises(AlreadyExists):  # the root DSE
                w.add(make_entry(schema, "", objectClass=["top"]))
            with pytest.raises(NoSuchEntry) as missing:
                w.add(person(schema, "uid=y,ou=Missing", "y", "Y"))
            assert missing.value.matched_dn == ""
        with db.read() as r:
            root = r.get("")
            assert root is not None and root.dn == "" and not root.attrs
            assert r.exists("") and r.has_children("")
            assert r.get("ou=a").dn == "ou=A"
            assert r.nearest_ancestor("uid=q,ou=a").dn == "ou=A"
            assert r.nearest_ancestor("uid=q,ou=zz") is None
            assert dns(r.search("", Scope.SUB, None)) == ["ou=A", "ou=B", "uid=x,ou=A"]
            assert dns(r.search("", Scope.CHILDREN, None)) == ["ou=A", "ou=B", "uid=x,ou=A"]
            assert dns(r.search("", Scope.ONE, None)) == ["ou=A", "ou=B"]
            assert dns(r.search("", Scope.ONE, Equality("objectclass", b"organizationalunit"))) == [
                "ou=A",
                "ou=B",
            ]
            assert dns(r.search("", Scope.SUB, Equality("uid", b"x"))) == ["uid=x,ou=A"]
            assert dns(r.children("")) == ["ou=A", "ou=B"]
            assert list(r.search("", Scope.BASE, None)) == []  # the root DSE is the frontend's
        with db.write() as w:
            renamed = w.get("ou=b").copy()
            renamed.dn = "ou=C"
            w.rename("ou=b", renamed)
            moved = w.get("uid=x,ou=a").copy()
            moved.dn = "uid=x,ou=C"
            w.rename("uid=x,ou=a", moved)
            w.delete("ou=a")
            with pytest.raises(NoSuchEntry):
                w.delete("")
    with MdbDatabase(path, schema, "", indexes=INDEXES, maxsize=64 * 2**20) as db, db.read() as r:
        assert dns(r.search("", Scope.SUB, None)) == ["ou=C", "uid=x,ou=C"]


def test_empty_dn_outside_a_database(tree: MdbDatabase, schema: Any) -> None:
    """The empty DN names nothing in a database with a suffix (and is looked up without an LMDB error)."""
    with tree.read() as r:
        assert r.get("") is None and not r.exists("") and r.id_of("") is None
        assert list(r.search("", Scope.SUB, None)) == []
        assert list(r.children("")) == []


# --- indexes -----------------------------------------------------------------------------------------------------


def _matches(schema: Any, entry: Entry, f: Filter) -> bool:
    """A small brute-force evaluator for the filters used below (options and subtypes ignored)."""
    if isinstance(f, And):
        return all(_matches(schema, entry, x) for x in f.filters)
    if isinstance(f, Or):
        return any(_matches(schema, entry, x) for x in f.filters)
    if isinstance(f, Not):
        return not _matches(schema, entry, f.filter)
    at = schema.attribute_type(f.attr)
    values = entry.get(at.key)
    if isinstance(f, Present):
        return bool(values)
    if isinstance(f, Equality):
        a = at.equality.normalize(f.value)
        return any(at.equality.normalize(v) == a for v in values)
    if isinstance(f, Substrings):
        return any(at.substr.match_substrings(v, f.initial, f.any, f.final) for v in values)
    raise AssertionError(f)


def _evaluator(schema: Any) -> Any:
    try:
        from pyldapd.model.filter import FilterEvaluator  # type: ignore[attr-defined]
    except ImportError:
        return lambda entry, f: _matches(schema, entry, f)
    ev = FilterEvaluator(schema)

    def check(entry: Entry, f: Filter) -> bool:
        return ev.evaluate(f, entry) is True

    return check


def _populate(db: MdbDatabase, schema: Any, count: int) -> None:
    import random

    rnd = random.Random(42)
    first = ["John", "Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Trent", "Zoë", "Ana María"]
    last = ["Doe", "Smith", "Smithers", "Jones", "Brown", "O'Neil", "Van der Berg", "Ng", "Li"]
    with db.write() as w:
        w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
        for o in ("a", "b", "c"):
            w.add(ou(schema, f"ou={o},{SUFFIX}", o))
        for i in range(count):
            cn = f"{rnd.choice(first)} {rnd.choice(last)}"
            extra: dict[str, Any] = {}
            if i % 3:
                extra["mail"] = f"user{i}@{rnd.choice(['example.com', 'corp.example.org'])}"
            if i % 7 == 0:
                extra["description"] = "x" * (i % 600)
            w.add(person(schema, f"uid=u{i},ou={'abc'[i % 3]},{SUFFIX}", f"u{i}", cn, **extra))


FILTERS: list[Filter] = [
    Equality("cn", b"john doe"),
    Equality("CN", b"  JOHN   DOE "),
    Equality("uid", b"u17"),
    Equality("objectClass", b"organizationalUnit"),
    Present("mail"),
    Present("cn"),
    Present("description"),  # unindexed
    Substrings("cn", b"jo", (), None),
    Substrings("cn", b"j", (), None),
    Substrings("cn", None, (b"mit",), None),
    Substrings("cn", None, (b"smi", b"ers"), None),
    Substrings("cn", None, (), b"th"),
    Substrings("cn", b"Ana", (b"mar",), "ÍA".encode()),
    Substrings("cn", None, (b"o",), None),  # too short: unindexed
    Substrings("mail", None, (b"@corp",), b".org"),
    Substrings("sn", b"smi", (), None),  # unindexed
    And((Equality("objectClass", b"person"), Equality("uid", b"u5"))),
    And((Substrings("cn", None, (b"smith",), None), Present("mail"))),
    Or((Equality("uid", b"u1"), Equality("uid", b"u2"), Substrings("cn", b"eve", (), None))),
    Or((Equality("uid", b"u1"), Present("description"))),  # partly unindexed
    Not(Equality("uid", b"u1")),
    And(()),
    Or(()),
    Equality("uid", b"nobody"),
    Approx("cn", b"Jon Do"),
    Approx("cn", b"alice smyth"),
    Approx("uid", b"u1"),  # unindexed
    Equality("name", b"john doe"),  # subtypes: sn, ou, ... not all indexed
    Equality("cn;lang-en", b"john doe"),
    Substrings("cn;x-foo", None, (b"smith",), None),
    Equality("entryUUID", b"not-a-uuid"),
    # ORs of many equality terms: planned as one key list per index
    Or(tuple(Equality("uid", f"u{i}".encode()) for i in range(0, 400, 7)) + (Equality("UID", b"U14"),)),
    Or(
        (
            Equality("cn", b"john doe"),
            Equality("CN", b"eve li"),
            Equality("uid", b"u3"),
            Equality("uid", b"u4"),
        )
    ),
    Or((Equality("name", b"john doe"), Equality("name", b"alice smith"))),  # subtypes not all indexed
    Or((Equality("entryUUID", b"not-a-uuid"), Equality("entryUUID", b"x"))),
    Or((Equality("unknownAttr", b"x"), Equality("unknownAttr", b"y"), Equality("uid", b"u1"))),
    And((Or(tuple(Equality("uid", f"u{i}".encode()) for i in range(50))), Equality("cn", b"john doe"))),
]


@pytest.mark.parametrize("f", FILTERS, ids=repr)
def test_index_candidates_superset(tmp_path: Path, schema: Any, f: Filter) -> None:
    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, indexes=INDEXES) as db:
        _populate(db, schema, 300)
        check = _evaluator(schema)
        with db.read() as r:
            for base, scope in [
                (SUFFIX, Scope.SUB),
                (f"ou=b,{SUFFIX}", Scope.ONE),
                (f"ou=c,{SUFFIX}", Scope.SUB),
            ]:
                nbase = n(schema, base)
                everything = list(r.search(nbase, scope, None))
                truth = {e.id for e in everything if check(e, f)}
                candidates = [e.id for e in r.search(nbase, scope, f)]
                assert len(candidates) == len(set(candidates))
                assert truth <= set(candidates), (base, scope)
                assert set(candidates) <= {e.id for e in everything}


def test_index_narrows(tmp_path: Path, schema: Any) -> None:
    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, indexes=INDEXES) as db:
        _populate(db, schema, 300)
        base = n(schema, SUFFIX)
        with db.read() as r:
            total = r.count()

            def cands(f: Filter) -> int:
                return len(list(r.search(base, Scope.SUB, f)))

            assert cands(Equality("uid", b"u17")) == 1
            assert cands(And((Equality("objectClass", b"person"), Equality("uid", b"u5")))) == 1
            assert cands(Present("mail")) == 200
            assert cands(Substrings("cn", None, (b"smithers",), None)) < total // 4
            assert cands(Substrings("cn", b"j", (), None)) < total // 4
            assert cands(Or((Equality("uid", b"u1"), Equality("uid", b"u2")))) == 2
            assert cands(Or(())) == 0
            assert cands(Not(Equality("uid", b"u1"))) == total
            assert cands(Present("description")) == total
            many = Or(tuple(Equality("uid", f"u{i}".encode()) for i in range(0, 600, 2)))
            assert cands(many) == 150
            forty = Or(tuple(Equality("uid", f"u{i}".encode()) for i in range(40)))
            assert cands(And((many, forty))) == 20  # intersection, from the smaller set


def test_unchecked_counts_candidates_as_back_mdb(tmp_path: Path, schema: Any) -> None:
    from pyldapd.backends.base import TooManyCandidates

    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, indexes=INDEXES) as db:
        _populate(db, schema, 300)
        base = n(schema, SUFFIX)
        with db.read() as r:
            many = Or(tuple(Equality("uid", f"u{i}".encode()) for i in range(0, 300, 2)))  # 150 candidates
            assert len(list(r.search(base, Scope.SUB, many, unchecked=150))) == 150
            with pytest.raises(TooManyCandidates):
                next(r.search(base, Scope.SUB, many, unchecked=149))
            # unindexed: every entry of the database is a candidate, unless the scope is smaller
            with pytest.raises(TooManyCandidates):
                next(r.search(base, Scope.SUB, Present("description"), unchecked=200))
            assert len(list(r.search(n(schema, f"ou=a,{SUFFIX}"), Scope.ONE, Present("description"),
                                     unchecked=100))) == 100  # fmt: skip
            with pytest.raises(TooManyCandidates):  # the subtree counts its base
                next(r.search(n(schema, f"ou=a,{SUFFIX}"), Scope.SUB, Present("description"), unchecked=100))
            assert next(r.search(base, Scope.BASE, Present("description"), unchecked=1)).dn == SUFFIX


def test_uuid_and_csn(db: MdbDatabase, schema: Any) -> None:
    base_tree(db, schema)
    csns = [
        "20240101000000.000003Z#000000#000#000000",
        "20240101000000.000001Z#000000#001#000000",
        "20240101000000.000002Z#000000#000#000000",
    ]
    ids = {}
    with db.write() as w:
        for i, c in enumerate(csns):
            e = ou(schema, f"ou=c{i},{SUFFIX}", f"c{i}")
            e.put("entrycsn", "entryCSN", [c.encode()])
            ids[c] = w.add(e)
    with db.read() as r:
        u = r.get(n(schema, "uid=jdoe,ou=People,dc=Example,dc=com"))
        raw = uuid.UUID(u.first("entryuuid").decode()).bytes
        found = r.by_uuid(raw)
        assert found is not None and found.dn == u.dn
        assert r.by_uuid(bytes(16)) is None
        assert dns(r.search(n(schema, SUFFIX), Scope.SUB, Equality("entryUUID", u.first("entryuuid")))) == [
            u.dn
        ]
        got = [e.first("entrycsn").decode() for e in r.csn_after("20240101000000.000000Z#000000#000#000000")]
        assert got == sorted(csns)
        got = [e.first("entrycsn").decode() for e in r.csn_after(sorted(csns)[0])]
        assert got == sorted(csns)[1:]
        assert list(r.csn_after(sorted(csns)[-1])) == []
    with db.write() as w:
        w.delete(n(schema, f"ou=c0,{SUFFIX}"))
        w.delete(n(schema, "uid=jdoe,ou=People,dc=Example,dc=com"))
    with db.read() as r:
        assert r.by_uuid(raw) is None
        assert len(list(r.csn_after("2000"))) == 2


def test_reindex_after_set_indexes(tmp_path: Path, schema: Any) -> None:
    path = str(tmp_path / "db")
    with MdbDatabase(path, schema, SUFFIX, indexes={"uid": {"eq"}}) as db:
        _populate(db, schema, 60)
    with MdbDatabase(path, schema, SUFFIX, indexes={"uid": {"eq"}}) as db:
        base = n(schema, SUFFIX)
        with db.read() as r:
            total = r.count()
            assert len(list(r.search(base, Scope.SUB, Equality("mail", b"user1@example.com")))) == total
        db.set_indexes({"uid": {"eq"}, "mail": {"eq"}})
        assert ("mail", "eq") not in db.indexes_built
        with db.read() as r:  # not built yet: not used
            assert len(list(r.search(base, Scope.SUB, Equality("mail", b"user1@example.com")))) == total
        assert db.reindex() == total
        assert ("mail", "eq") in db.indexes_built
        with db.read() as r:
            mails = [e.first("mail") for e in r.search(base, Scope.SUB, None) if e.first("mail")]
            for m in mails[:10]:
                got = list(r.search(base, Scope.SUB, Equality("mail", m)))
                assert [e.first("mail") for e in got] == [m]
        db.set_indexes({"mail": {"eq"}})  # dropping uid eq deletes its data
        with db.read() as r:
            assert len(list(r.search(base, Scope.SUB, Equality("uid", b"u1")))) == total
            assert r._check().stat(db.dbs["eq"])["entries"] == sum(1 for _ in mails)
    with MdbDatabase(path, schema, SUFFIX, indexes={"mail": {"eq"}}) as db:
        assert db.indexes_built == {("mail", "eq")}


def test_long_values_and_approx(db: MdbDatabase, schema: Any) -> None:
    db.set_indexes({"cn": {"eq", "approx", "sub"}})
    long_cn = "Very long " + "x" * 2000
    with db.write() as w:
        w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
        w.add(make_entry(schema, f"cn=a,{SUFFIX}", objectClass=["device"], cn=["a", long_cn]))
        w.add(make_entry(schema, f"cn=Stephen,{SUFFIX}", objectClass=["device"], cn="Stephen"))
    with db.read() as r:
        base = n(schema, SUFFIX)
        assert dns(r.search(base, Scope.SUB, Equality("cn", long_cn.upper().encode()))) == [f"cn=a,{SUFFIX}"]
        assert dns(r.search(base, Scope.SUB, Substrings("cn", b"very", (b"xxxx",), b"x"))) == [
            f"cn=a,{SUFFIX}"
        ]
        assert f"cn=Stephen,{SUFFIX}" in dns(r.search(base, Scope.SUB, Approx("cn", b"Stephen")))


# --- durability and map growth -----------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys, uuid
    from pyldapd.backends.mdb import MdbDatabase
    from pyldapd.model.entry import Entry
    from pyldapd.model.schema import Schema

    schema = Schema()  # the built-in system schema is enough here
    db = MdbDatabase(sys.argv[1], schema, "cn=example")
    def mk(dn, **a):
        e = Entry(dn)
        for k, v in a.items():
            e.put(schema.attribute_key(k), k, [x.encode() for x in v])
        return e
    with db.write() as w:
        w.add(mk("cn=example", objectClass=["extensibleObject"], cn=["example"]))
    for i in range(20):
        with db.write() as w:
            w.add(mk(f"cn=e{i},cn=example", objectClass=["extensibleObject"], cn=[f"e{i}"]))
    sys.stdout.write("committed\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_durability_after_sigkill(tmp_path: Path, schema: Any) -> None:
    path = str(tmp_path / "db")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _CHILD, path], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert proc.stdout == b"committed\n"
    with MdbDatabase(path, schema, "cn=example") as db, db.read() as r:
        assert r.count() == 21
        assert r.get(n(schema, "cn=e19,cn=example")) is not None


def test_map_growth(tmp_path: Path, schema: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyldapd.backends import mdb

    replays = []
    original = mdb.WriteTxn._regrow

    def counting(self: Any) -> None:
        replays.append(1)
        original(self)

    monkeypatch.setattr(mdb.WriteTxn, "_regrow", counting)
    path = str(tmp_path / "db")
    with MdbDatabase(path, schema, SUFFIX, maxsize=2**20, indexes=INDEXES, sync=False) as db:
        with db.write() as w:
            w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
        with db.read() as early:  # a reader open across growths keeps working
            it = early.search(n(schema, SUFFIX), Scope.SUB, None)
            assert next(it).dn == SUFFIX
            for chunk in range(5):
                with db.write() as w:  # big transactions: growth happens inside them (replay)
                    for i in range(chunk * 1000, (chunk + 1) * 1000):
                        w.add(person(schema, f"uid=u{i},{SUFFIX}", f"u{i}", f"Person Number{i}"))
            assert early.get(n(schema, SUFFIX)) is not None
            list(it)
        assert db.stat()["map_size"] > 2**20
        assert replays  # growth happened inside a transaction at least once (abort, grow, replay)
        with db.read() as r:
            assert r.count() == 5001
            assert dns(r.search(n(schema, SUFFIX), Scope.SUB, Equality("uid", b"u4321"))) == [
                f"uid=u4321,{SUFFIX}"
            ]
    with MdbDatabase(path, schema, SUFFIX, maxsize=2**20) as db, db.read() as r:
        assert r.count() == 5001


def test_map_cap(tmp_path: Path, schema: Any) -> None:
    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, maxsize=2**20, max_mapsize=2**20) as db:
        with db.write() as w:
            w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
        with pytest.raises(StorageError):
            for chunk in range(20):
                with db.write() as w:
                    for i in range(chunk * 500, (chunk + 1) * 500):
                        w.add(person(schema, f"uid=u{i},{SUFFIX}", f"u{i}", f"Person {i}"))
        with db.read() as r:
            assert r.count() >= 1  # what was committed before is intact


def test_open_database(tmp_path: Path, schema: Any) -> None:
    db = open_database(str(tmp_path / "x"), schema, SUFFIX)
    try:
        assert db.suffix == SUFFIX and db.suffix_ndn == n(schema, SUFFIX)
        with db.read() as r:
            assert r.count() == 0 and r.get(db.suffix_ndn) is None
    finally:
        db.close()


# --- index values: runs of ids ---------------------------------------------------------------------------------


def _index_state(db: MdbDatabase) -> dict[tuple[str, bytes], set[int]]:
    """(index, key) -> ids, read raw; asserts that every key's values are sorted, disjoint runs of <= 63 ids."""
    from pyldapd.backends import mdb

    out: dict[tuple[str, bytes], set[int]] = {}
    with db.env.begin() as txn:
        for name in ("eq", "pres", "sub", "approx", "uuid", "csn"):
            last: dict[bytes, int] = {}
            for key, run in txn.cursor(db=db.dbs[name]).iternext(keys=True, values=True):
                assert run and len(run) % 8 == 0 and len(run) // 8 <= mdb._RUN_MAX, (name, key)
                ids = mdb._run_ids(run)
                assert list(ids) == sorted(set(ids)), (name, key, ids)
                assert ids[0] > last.get(key, 0), (name, key, "runs overlap")
                last[key] = ids[-1]
                out.setdefault((name, key), set()).update(ids)
    return out


def _expected_index(db: MdbDatabase) -> dict[tuple[str, bytes], set[int]]:
    out: dict[tuple[str, bytes], set[int]] = {}
    with db.env.begin() as txn:
        for k, rec in txn.cursor(db=db.dbs["id2entry"]).iternext(keys=True, values=True):
            eid = int.from_bytes(k, "big")
            keys = db.codec.index_keys(db._decode(eid, rec))
            for name in ("eq", "pres", "sub", "approx", "uuid", "csn"):
                for key in getattr(keys, name):
                    out.setdefault((name, key), set()).add(eid)
    return out


def test_index_runs_stay_exact_through_bulk_and_online_writes(tmp_path: Path, schema: Any) -> None:
    """Bulk batches (with entries left out and stored later inside a batch's id range), then online adds,
    modifies that move ids between keys with far more than 63 ids, deletes and a reindex: the index always
    holds exactly the entries' keys, as disjoint sorted runs."""
    import random

    from pyldapd.backends.mdb import IndexBatch

    rnd = random.Random(4533)
    db = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    try:
        base_ids = {}
        with db.write() as w:
            w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
            base_ids[SUFFIX] = w.add(ou(schema, f"ou=a,{SUFFIX}", "a"))
            first = w.next_id()
        names = ["John Doe", "Alice Smith", "Bob Smithers", "Carol Jones"]
        left_out: list[tuple[int, str, bytes]] = []
        eid = first
        for _chunk in range(3):  # three bulk batches of 150 entries (far more than 63 per cn key)
            batch = IndexBatch(db.codec)
            stored: list[tuple[int, str, bytes]] = []
            for _ in range(150):
                entry = person(schema, f"uid=b{eid},ou=a,{SUFFIX}", f"b{eid}", rnd.choice(names))
                ndn = normalize_dn(entry.dn, schema)
                record = db.codec.encode(entry, ndn, bytes(8))[0]
                if rnd.random() < 0.1:
                    left_out.append((eid, ndn, record))
                else:
                    batch.add(entry, eid.to_bytes(8, "big"))
                    stored.append((eid, ndn, record))
                eid += 1
            with db.write() as w:
                w.reserve_ids(eid)
                for i, ndn, record in stored:
                    w.add_encoded(i, ndn, record, index=False)
                w.add_index_batch(batch.sealed())
        assert _index_state(db) == _expected_index(db)
        with db.write() as w:  # stored late, inside the batches' id ranges, with keys of their own
            for i, ndn, record in left_out:
                w.add_encoded(i, ndn, record, index=True)
        assert _index_state(db) == _expected_index(db)
        with db.write() as w:
            for i in range(40):
                w.add(person(schema, f"uid=o{i},ou=a,{SUFFIX}", f"o{i}", rnd.choice(names)))
        all_ndns = [n(schema, f"uid=b{i},ou=a,{SUFFIX}") for i in range(first, eid)]
        for step in range(200):
            with db.write() as w:
                ndn = rnd.choice(all_ndns)
                entry = w.get(ndn)
                if entry is None:
                    continue
                if step % 10 == 9:
                    w.delete(ndn)
                else:
                    changed = entry.copy()
                    changed.put("cn", "cn", [rnd.choice(names).encode()])
                    w.modify(ndn, changed)
        assert _index_state(db) == _expected_index(db)
        with db.read() as r:  # searches read runs
            f = Equality("cn", b"alice smith")
            expected = {
                e.dn for e in r.search(n(schema, SUFFIX), Scope.SUB) if e.get("cn") == [b"Alice Smith"]
            }
            assert {e.dn for e in r.search(n(schema, SUFFIX), Scope.SUB, f)} >= expected
        before = _index_state(db)
        db.reindex()
        assert _index_state(db) == before == _expected_index(db)
    finally:
        db.close()


def test_newer_database_format_refused(tmp_path: Path, schema: Any) -> None:
    import lmdb

    from pyldapd.backends.mdb import FORMAT_VERSION
    from pyldapd.backends.mdb import MdbDatabase as Mdb

    env = lmdb.open(str(tmp_path / "new"), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"version", str(FORMAT_VERSION + 1).encode(), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StorageError, match=f"format {FORMAT_VERSION + 1}"):
        Mdb(str(tmp_path / "new"), schema, SUFFIX)


def test_attributes_keep_their_order_across_user_and_operational(tmp_path: Path, schema: Any) -> None:
    """An entry's attributes come back in the order written, user and operational ones interleaved as slapd
    keeps them (an attribute added after the operational ones stays after them): such a record is version 2,
    with no operational blob to send as is; the others stay version 1. A format-2 database (version 1 records
    only) opens as format 3 with nothing to convert."""
    import lmdb

    from pyldapd.backends.mdb import FORMAT_VERSION

    path = str(tmp_path / "db")
    db = MdbDatabase(path, schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    base_tree(db, schema)
    plain = person(schema, "uid=plain,ou=People,dc=Example,dc=com", "plain", "Plain Smith")
    mixed = person(schema, "uid=mixed,ou=People,dc=Example,dc=com", "mixed", "Mixed Smith")
    mixed.put("creatorsname", "creatorsName", [b"cn=admin"])
    mixed.put("description", "description", [b"after the operational one"])
    mixed.put("modifiersname", "modifiersName", [b"cn=admin"])
    order = list(mixed.attrs)
    assert order.index("creatorsname") < order.index("description") < order.index("modifiersname")
    with db.write() as w:
        w.add(plain)
        w.add(mixed)
    db.close()
    db = MdbDatabase(path, schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)  # nothing cached
    try:
        with db.read() as r:
            back = r.get(n(schema, "uid=mixed,ou=People,dc=Example,dc=com"))
            assert list(back.attrs) == order
            assert back.get("description") == [b"after the operational one"]
            assert back.encoded_user is not None and back.encoded_operational is None
            # a search for * and + sends them in that order too (then what the server computes)
            from pyldapd.protocol.ldap import decode_partial_attribute_list
            from pyldapd.server.directory import AttributeSelection

            sent = AttributeSelection(schema, ["*", "+"], False).encode(back, None)
            names = [name.lower() for name, _values in decode_partial_attribute_list(sent)]
            assert names[: len(order)] == order and names[len(order) :] == ["entrydn", "subschemasubentry",
                                                                             "hassubordinates"]  # fmt: skip
            assert r.get(n(schema, "uid=plain,ou=People,dc=Example,dc=com")).encoded_operational is not None
            versions = {
                rec[0] for rec in r._check().cursor(db.dbs["id2entry"]).iternext(keys=False, values=True)
            }
        assert versions == {1, 2}
        with db.write() as w:  # its parent renamed: the record keeps its order under the new DN
            people = w.get(n(schema, "ou=People,dc=Example,dc=com")).copy()
            people.dn = "ou=Persons,dc=Example,dc=com"
            w.rename(n(schema, "ou=People,dc=Example,dc=com"), people)
        with db.read() as r:
            assert list(r.get(n(schema, "uid=mixed,ou=Persons,dc=Example,dc=com")).attrs) == order
    finally:
        db.close()

    plain_path = str(tmp_path / "format2")
    old = MdbDatabase(plain_path, schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    base_tree(old, schema)
    old.close()
    env = lmdb.open(plain_path, max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"version", b"2", db=env.open_db(b"meta", txn=txn))
    env.close()
    again = MdbDatabase(plain_path, schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    try:
        assert again.upgraded_from == 2
        with again.read() as r:
            assert r.get(n(schema, SUFFIX)) is not None
    finally:
        again.close()
    env = lmdb.open(plain_path, max_dbs=16)
    with env.begin() as txn:
        assert txn.get(b"version", db=env.open_db(b"meta", txn=txn)) == str(FORMAT_VERSION).encode()
    env.close()


def test_version_1_database_upgraded_in_place(tmp_path: Path, schema: Any) -> None:
    """A format-1 database (one id per index value, DUPFIXED) is rewritten as runs at open, in one transaction,
    and answers indexed searches exactly as before; 150 entries under one key make runs of 63, 63 and 24."""
    import lmdb

    from pyldapd.backends.mdb import FORMAT_VERSION
    from tests.format1 import rewrite_as_format_1

    path = str(tmp_path / "old")
    db = MdbDatabase(path, schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    base_tree(db, schema)
    with db.write() as w:
        for i in range(150):
            w.add(person(schema, f"uid=u{i},ou=People,dc=Example,dc=com", f"u{i}", f"User {i} Smith"))
    filters = [Equality("objectclass", b"inetorgperson"), Equality("uid", b"u42"), Present("mail"),
               Substrings("cn", b"user 1", (), None), Equality("cn", b"alice smith")]  # fmt: skip
    with db.read() as r:
        before = [sorted(dns(r.search(n(schema, SUFFIX), Scope.SUB, f))) for f in filters]
    db.close()
    assert rewrite_as_format_1(path) > 150
    env = lmdb.open(path, max_dbs=16)
    with env.begin() as txn:
        assert env.open_db(b"eq", txn=txn, dupsort=True, dupfixed=True).flags(txn)["dupfixed"]
    env.close()

    upgraded = MdbDatabase(path, schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    try:
        assert upgraded.upgraded_from == 1
        with upgraded.read() as r:
            assert [sorted(dns(r.search(n(schema, SUFFIX), Scope.SUB, f))) for f in filters] == before
        assert len(before[0]) == 153 and before[1] == ["uid=u42,ou=People,dc=Example,dc=com"]
        with upgraded.write() as w:  # and it takes writes in the new format
            w.add(person(schema, "uid=new,ou=People,dc=Example,dc=com", "new", "New Smith"))
        with upgraded.read() as r:
            assert dns(r.search(n(schema, SUFFIX), Scope.SUB, Equality("uid", b"new"))) == [
                "uid=new,ou=People,dc=Example,dc=com"
            ]
    finally:
        upgraded.close()
    env = lmdb.open(path, max_dbs=16)
    with env.begin() as txn:
        assert txn.get(b"version", db=env.open_db(b"meta", txn=txn)) == str(FORMAT_VERSION).encode()
        eq = env.open_db(b"eq", txn=txn, dupsort=True)
        assert not eq.flags(txn)["dupfixed"]
        per_key: dict[bytes, list[int]] = {}
        for key, run in txn.cursor(eq).iternext():
            per_key.setdefault(key, []).append(len(run) // 8)
        runs = max(per_key.values(), key=sum)  # objectClass top: all 158 entries
        assert sum(runs) == 158 and max(runs) == 63 and len(runs) >= 3, runs
    env.close()
    again = MdbDatabase(path, schema, SUFFIX, indexes=INDEXES, maxsize=64 * 2**20)
    assert again.upgraded_from is None  # upgraded once
    again.close()


def test_modify_reindexes_only_changed_types_and_keeps_shared_keys(tree: MdbDatabase, schema: Any) -> None:
    """A modify recomputes the index keys of the attribute types it changed only; a key that an unchanged
    description of the same type also gives (cn and cn;lang-en of one value) stays indexed."""
    ndn = n(schema, "uid=jdoe,ou=People,dc=Example,dc=com")
    check = _evaluator(schema)
    filters = [Equality("cn", b"john doe"), Substrings("cn", b"joh", (), None), Equality("uid", b"jdoe"),
               Present("description"), Equality("cn;lang-en", b"john doe"), Equality("mail", b"jdoe@example.com")]  # fmt: skip

    def change(**attrs: list[str]) -> None:
        with tree.read() as r:
            entry = r.get(ndn).copy()
        for name, values in attrs.items():
            entry.put(schema.attribute_key(name), name, [v.encode() for v in values])
        with tree.write() as w:
            w.modify(ndn, entry)

    def indexed_as_stored() -> None:
        with tree.read() as r:
            stored = r.get(ndn)
            for f in filters:
                found = {e.id for e in r.search(n(schema, SUFFIX), Scope.SUB, f)}
                assert (stored.id in found) >= check(stored, f), f

    change(**{"cn;lang-en": ["John Doe"]})
    indexed_as_stored()
    change(**{"cn;lang-en": []})  # cn keeps "john doe": its keys stay
    indexed_as_stored()
    change(description=["only this changes"])
    indexed_as_stored()
    change(cn=["Johnny Doe"], mail=[])
    indexed_as_stored()
    with tree.read() as r:
        assert ndn not in {
            n(schema, e.dn) for e in r.search(n(schema, SUFFIX), Scope.SUB, Equality("cn", b"john doe"))
        }


def test_large_attribute_modifies_index_encode_and_decode_as_from_scratch(
    tree: MdbDatabase, schema: Any
) -> None:
    """A modify of an attribute of many values keys only the values it took away or added (uid: eq only), reuses
    the stored encoding of the values it kept (EntryCodec.encode), and the next read reuses the cached older
    version's decoded values (MdbDatabase._decode): each gives exactly what the work from scratch gives."""
    ndn = n(schema, "uid=jdoe,ou=People,dc=Example,dc=com")
    base = n(schema, SUFFIX)
    uids = [f"u{i}" for i in range(1500)]  # with the mails, a record past _REUSE_RECORD
    mails = [f"m{i}@example.com" for i in range(1500)]
    gone: set[bytes] = set()

    def change(edit: Any) -> None:
        with tree.read() as r:
            stored = r.get(ndn)
            entry = stored.copy()
        edit(entry)
        parent = bytes(8)
        assert tree.codec.encode(entry, ndn, parent, stored) == tree.codec.encode(entry, ndn, parent)
        with tree.write() as w:
            w.modify(ndn, entry)

    def as_from_scratch() -> None:
        with tree.read() as r:
            reused = r.get(ndn)
        tree._cache.clear()
        with tree.read() as r:
            fresh = r.get(ndn)
            assert reused.attrs == fresh.attrs and reused.dn == fresh.dn
            assert reused.encoded_user == fresh.encoded_user
            for key in ("uid", "mail"):
                for value in [*fresh.get(key), *gone]:
                    found = {e.id for e in r.search(base, Scope.SUB, Equality(key, value))}
                    assert (fresh.id in found) == (value not in gone), (key, value)
            with_option = fresh.get("uid;x-tag")
            for value in with_option:
                assert fresh.id in {e.id for e in r.search(base, Scope.SUB, Equality("uid", value))}

    def put(key: str, name: str, values: list[str]) -> Any:
        return lambda e: e.put(key, name, [v.encode() for v in values])

    change(lambda e: (put("uid", "uid", uids)(e), put("mail", "mail", mails)(e)))
    as_from_scratch()
    change(lambda e: e.attrs["uid"].values.append(b"u1500"))  # added at the end: the stored encoding and more
    as_from_scratch()
    gone.add(b"u50")
    change(lambda e: e.attrs["uid"].values.remove(b"u50"))  # one taken away
    as_from_scratch()
    change(lambda e: e.put("uid", "uid", [b"U10 " if v == b"u10" else v for v in e.get("uid")]))  # same key
    as_from_scratch()
    change(put("uid;x-tag", "uid;x-tag", ["tagged", "u11"]))  # two descriptions of uid: keyed afresh
    as_from_scratch()
    gone.update((b"tagged", b"u12"))
    change(lambda e: (e.attrs.pop("uid;x-tag"), e.attrs["uid"].values.remove(b"u12")))
    as_from_scratch()
    gone.add(b"m7@example.com")
    change(lambda e: e.attrs["mail"].values.remove(b"m7@example.com"))  # mail has sub: keyed afresh
    as_from_scratch()
    with tree.read() as r:
        older = r.get(ndn)
    change(lambda e: e.put("description", "description", [b"only this changes"]))  # uid and mail kept
    with tree.read() as r:
        newer = r.get(ndn)
    assert newer is not older and newer.attrs["uid"] is older.attrs["uid"]  # decoded once, shared
    as_from_scratch()
    with tree.read() as r:
        assert len(r.get(ndn).get("uid")) == 1499


def _decoded_fresh(db: MdbDatabase, ndn: str) -> Entry:
    """The entry as its stored record decodes, the entry cache bypassed."""
    with db.read() as r:
        idb = r._id_of(ndn)
        rec = r._check().get(idb, db=db._id2entry)
        saved, db.cache_size = db.cache_size, 0
        cached = db._cache.pop(int.from_bytes(idb, "big"), None)
        try:
            return db._decode(int.from_bytes(idb, "big"), bytes(rec), keep=False)
        finally:
            db.cache_size = saved
            if cached is not None:
                db._cache[int.from_bytes(idb, "big")] = cached


def _shape(entry: Entry) -> tuple:
    return (entry.dn, entry.id, [(k, a.name, list(a.values)) for k, a in entry.attrs.items()],
            entry.encoded_user, entry.encoded_operational)  # fmt: skip


def test_a_modify_caches_the_stored_version_as_it_decodes(tree: MdbDatabase, schema: Any) -> None:
    """The entry cache takes a modified entry as stored (the next read of it decodes nothing): the same
    attributes in the same order, blobs and id as a fresh decode of its record, for a plain record and for one
    whose user and operational attributes interleave; a copy, so that what the writer does with its own entry
    afterwards changes nothing read; and a transaction that does not commit leaves readers the stored one."""
    ndn = n(schema, "uid=jdoe,ou=People,dc=Example,dc=com")
    with tree.read() as r:
        current = r.get(ndn)
    for extra in (
        "description",
        "modifiersname",
    ):  # the second puts a user attribute after an operational one
        changed = current.copy()
        changed.put("description", "description", [b"first"])
        if extra == "modifiersname":
            changed.put("modifiersname", "modifiersName", [b"cn=admin"])
            changed.put("title", "title", [b"after the operational ones"])
        with tree.write() as w:
            w.modify(ndn, changed)
        eid = changed.id
        rec, cached = tree._cache[eid]
        assert cached is not changed
        assert _shape(cached) == _shape(_decoded_fresh(tree, ndn)) == _shape(changed)
        changed.put("description", "description", [b"changed by the caller afterwards"])
        with tree.read() as r:
            assert r.get(ndn) is cached and r.get(ndn).get("description") == [b"first"]
        current = cached
    kept = current
    with pytest.raises(RuntimeError):
        with tree.write() as w:
            undone = kept.copy()
            undone.put("description", "description", [b"never committed"])
            w.modify(ndn, undone)
            raise RuntimeError("abort")
    with tree.read() as r:
        assert r.get(ndn).get("description") == [b"first"]
    with tree.write() as w:  # a nested transaction undone, its parent committed
        child = w.child()
        undone = kept.copy()
        undone.put("description", "description", [b"undone with its nested transaction"])
        child.modify(ndn, undone)
        child.abort_child()
    with tree.read() as r:
        assert r.get(ndn).get("description") == [b"first"]
        assert _shape(r.get(ndn)) == _shape(_decoded_fresh(tree, ndn))
