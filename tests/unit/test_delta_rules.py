"""The delta-syncrepl consumer's rules on their own (replication/delta.py): reqMod parsed as slapd's
syncrepl_accesslog_mods, and slapd's table resolving an older modification against a newer one of the same
attribute (syncrepl_op_modify). The processes that use them: tests/replication/test_delta_*.py."""

from __future__ import annotations

import pytest

from pyldapd.model.entry import Entry
from pyldapd.model.schema import Schema
from pyldapd.replication.delta import SOFT_DELETE, Mod, apply_mods, supersede
from tests.unit.test_replication_logic import SUFFIX, make_directory


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.default()


def consumer(tmp_path):
    from pyldapd.replication.delta import DeltaConsumer
    from pyldapd.replication.spec import parse_syncrepl

    spec = parse_syncrepl(f'rid=001 provider=ldap://127.0.0.1:9/ searchbase="{SUFFIX}" syncdata=accesslog '
                          'logbase=cn=accesslog exattrs=mail')  # fmt: skip
    directory = make_directory(tmp_path, "c", 2, syncprov=False, syncrepl=[spec.text])
    return DeltaConsumer(directory, directory.backends[0], spec)


def test_reqmod_parsed_as_slapd(tmp_path):
    mods = consumer(tmp_path).parse_mods([
        b"description:= a", b"description:= b", b":", b"description:=",  # ITS#6545: two replaces
        b"telephoneNumber:+ 1", b"telephoneNumber:+ 2", b"telephoneNumber:- 1",
        b"displayName:+ x",  # single-valued: add becomes replace (ITS#9295)
        b"displayName:-",  # and delete a soft delete
        b"entryDN:= dynamic", b"mail:+ excluded@x", b"broken", b"sn:# 1",
    ])  # fmt: skip
    got = [(m.op, m.name, m.values) for m in mods]
    assert got == [("replace", "description", [b"a", b"b"]), ("replace", "description", []),
                   ("add", "telephoneNumber", [b"1", b"2"]), ("delete", "telephoneNumber", [b"1"]),
                   ("replace", "displayName", [b"x"]), (SOFT_DELETE, "displayName", []),
                   ("increment", "sn", [b"1"])]  # fmt: skip


ENTRY = Entry(f"cn=x,{SUFFIX}")
ENTRY.put("description", "description", [b"here1", b"here2"])


@pytest.mark.parametrize(
    "old, new, left",
    [
        (Mod("delete", "description", "description"), Mod("delete", "description", "description"), None),
        (
            Mod("delete", "description", "description"),
            Mod("delete", "description", "description", [b"v"]),
            "soft",
        ),
        (
            Mod("delete", "description", "description", [b"v"]),
            Mod("delete", "description", "description"),
            None,
        ),
        (
            Mod("delete", "description", "description", [b"v"]),
            Mod("delete", "description", "description", [b"v"]),
            None,
        ),
        (
            Mod("delete", "description", "description", [b"v"]),
            Mod("delete", "description", "description", [b"w"]),
            [b"v"],
        ),
        (
            Mod("delete", "description", "description"),
            Mod("add", "description", "description", [b"here1"]),
            [b"here2"],
        ),  # ITS#9751: the delete-all still removes what the newer add did not bring
        (
            Mod("delete", "description", "description", [b"v"]),
            Mod("add", "description", "description", [b"v"]),
            None,
        ),
        (
            Mod("delete", "description", "description", [b"v"]),
            Mod("add", "description", "description", [b"w"]),
            [b"v"],
        ),
        (Mod("add", "description", "description", [b"v"]), Mod("delete", "description", "description"), None),
        (
            Mod("add", "description", "description", [b"v"]),
            Mod("delete", "description", "description", [b"v"]),
            None,
        ),
        (
            Mod("add", "description", "description", [b"v"]),
            Mod("add", "description", "description", [b"v"]),
            None,
        ),
        (
            Mod("add", "description", "description", [b"v"]),
            Mod("add", "description", "description", [b"w"]),
            [b"v"],
        ),
        (
            Mod("add", "displayName", "displayname", [b"v"]),
            Mod("add", "displayName", "displayname", [b"w"]),
            None,
        ),
        (
            Mod("add", "description", "description", [b"v"]),
            Mod("replace", "description", "description", [b"w"]),
            None,
        ),
    ],
)
def test_older_change_against_a_newer_one_as_slapds_table(schema, old, new, left):
    kept = supersede(schema, old, new, ENTRY)
    if left is None:
        assert not kept
    elif left == "soft":
        assert kept and old.soft_all
    else:
        assert kept and old.values == left


def test_soft_delete_removes_only_what_is_there(schema):
    entry = ENTRY.copy()
    apply_mods(schema, entry, [Mod(SOFT_DELETE, "description", "description", [b"here1", b"absent"]),
                               Mod(SOFT_DELETE, "telephoneNumber", "telephonenumber")])  # fmt: skip
    assert entry.get("description") == [b"here2"]
