"""A search without controls goes straight to the database when the same identity made one of the same shape
before (Directory.search_plans): what the configuration decided for it (the database, the limits, the
restrictions, the attribute selection) must be decided afresh after every cn=config change, and for every other
identity. One client repeats one search on one connection while the configuration changes under it over ldapi."""

from __future__ import annotations

import ldap
import pytest

from tests.server.test_cnconfig import ADMIN, Node
from tests.servers import ldap_tool

SUFFIX = "dc=example,dc=com"
DATABASE = "olcDatabase={2}mdb,cn=config"
PEOPLE = 8


@pytest.fixture
def node(tmp_path):
    made = Node(tmp_path, "py", "mdb")
    made.start()
    try:
        people = "".join(
            f"dn: cn=p{i},{SUFFIX}\nobjectClass: organizationalRole\ncn: p{i}\ndescription: d{i}\n\n"
            for i in range(PEOPLE)
        )
        result = ldap_tool("ldapadd", "-H", made.url, *ADMIN, input=people)
        assert result.returncode == 0, result.stderr
        yield made
    finally:
        made.stop()


def change(node: Node, ldif: str) -> None:
    result = node.external("ldapmodify", ldif)
    assert result.returncode == 0, result.stderr


def repeated(client) -> tuple[str, int]:
    """The one search, as the client keeps sending it: its outcome and the entries it returned."""
    msgid = client.search_ext(SUFFIX, ldap.SCOPE_SUBTREE, "(cn=p*)", ["cn"])
    entries = 0
    try:
        while True:
            kind, data, _msgid, _controls = client.result3(msgid, all=0, timeout=30)
            if kind == ldap.RES_SEARCH_RESULT:
                return "success", entries
            entries += len(data)
    except ldap.SIZELIMIT_EXCEEDED:
        return "sizeLimitExceeded", entries
    except ldap.UNWILLING_TO_PERFORM:
        return "unwillingToPerform", entries
    except ldap.CONFIDENTIALITY_REQUIRED:
        return "confidentialityRequired", entries


def test_repeated_search_follows_every_configuration_change(node):
    client = ldap.initialize(node.url)
    client.set_option(ldap.OPT_NETWORK_TIMEOUT, 30)
    client.simple_bind_s("", "")
    try:
        assert repeated(client) == ("success", PEOPLE)
        assert repeated(client) == ("success", PEOPLE)  # the second from the plan the first made

        change(node, f"dn: {DATABASE}\nchangetype: modify\nreplace: olcSizeLimit\nolcSizeLimit: 3\n")
        assert repeated(client) == ("sizeLimitExceeded", 3)

        change(node, f"dn: {DATABASE}\nchangetype: modify\nadd: olcLimits\nolcLimits: anonymous size=5\n")
        assert repeated(client) == ("sizeLimitExceeded", 5)
        assert repeated(client) == ("sizeLimitExceeded", 5)

        change(node, f"dn: {DATABASE}\nchangetype: modify\nadd: olcRequires\nolcRequires: authc\n")
        assert repeated(client) == ("unwillingToPerform", 0)

        change(node, f"dn: {DATABASE}\nchangetype: modify\ndelete: olcRequires\n")
        assert repeated(client) == ("sizeLimitExceeded", 5)

        # another identity on the same connection: the rootdn has no limits
        client.simple_bind_s(ADMIN[2], ADMIN[4])
        assert repeated(client) == ("success", PEOPLE)
        client.simple_bind_s("", "")
        assert repeated(client) == ("sizeLimitExceeded", 5)

        change(node, f"dn: {DATABASE}\nchangetype: modify\ndelete: olcLimits\n-\ndelete: olcSizeLimit\n")
        assert repeated(client) == ("success", PEOPLE)
    finally:
        client.unbind_s()


def test_a_security_setting_made_at_run_time_holds_at_once(node):
    """Whether any `security` factor is set is decided once per configuration (server/tls.py): olcSecurity set
    over ldapi (whose local SSF, 71, passes ssf=64), globally or on the database, refuses the next search of a
    plain connection (SSF 0) with confidentialityRequired; removed, the search is answered again."""
    client = ldap.initialize(node.url)
    client.set_option(ldap.OPT_NETWORK_TIMEOUT, 30)
    client.simple_bind_s("", "")
    try:
        assert repeated(client) == ("success", PEOPLE)
        for dn in ("cn=config", DATABASE):
            change(node, f"dn: {dn}\nchangetype: modify\nreplace: olcSecurity\nolcSecurity: ssf=64\n")
            assert repeated(client) == ("confidentialityRequired", 0), dn
            change(node, f"dn: {dn}\nchangetype: modify\ndelete: olcSecurity\n")
            assert repeated(client) == ("success", PEOPLE), dn
    finally:
        client.unbind_s()


def test_an_alias_made_after_a_search_of_its_base_is_followed(node):
    """Whether a search's base is an alias is data: a search that dereferences in finding its base is planned
    afresh each time, so the alias that replaced an entry is followed by the next search alike."""
    client = ldap.initialize(node.url)
    client.set_option(ldap.OPT_NETWORK_TIMEOUT, 30)
    client.set_option(ldap.OPT_DEREF, ldap.DEREF_ALWAYS)
    client.simple_bind_s(ADMIN[2], ADMIN[4])
    base, target = f"cn=p1,{SUFFIX}", f"cn=p2,{SUFFIX}"
    try:
        for _ in range(2):
            assert [dn for dn, _ in client.search_s(base, ldap.SCOPE_BASE, "(objectClass=*)", ["cn"])] == [
                base
            ]
        client.delete_s(base)
        client.add_s(base, [("objectClass", [b"alias", b"extensibleObject"]), ("cn", [b"p1"]),
                            ("aliasedObjectName", [target.encode()])])  # fmt: skip
        assert [dn for dn, _ in client.search_s(base, ldap.SCOPE_BASE, "(objectClass=*)", ["cn"])] == [target]
    finally:
        client.unbind_s()


def test_plans_follow_the_schema_and_the_database_list(node):
    """An attribute type added over cn=config is returned by name at once; a database deleted is no longer
    searched, though a search of the same shape was planned in it."""
    client = ldap.initialize(node.url)
    client.set_option(ldap.OPT_NETWORK_TIMEOUT, 30)
    client.simple_bind_s(ADMIN[2], ADMIN[4])
    try:
        assert len(client.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(cn=p1)", ["cn"])) == 1
        planned = f"cn=p1,{SUFFIX}"
        assert client.search_s(planned, ldap.SCOPE_BASE, "(objectClass=*)", ["pyldapdPlanned"]) == [
            (planned, {})
        ]
        change(node, "dn: cn=planned,cn=schema,cn=config\nchangetype: add\nobjectClass: olcSchemaConfig\n"
                     "cn: planned\nolcAttributeTypes: ( 1.3.6.1.4.1.99999.7.1 NAME 'pyldapdPlanned' "
                     "SUP description )\n")  # fmt: skip
        client.modify_s(planned, [(ldap.MOD_ADD, "objectClass", [b"extensibleObject"]),
                                  (ldap.MOD_ADD, "pyldapdPlanned", [b"yes"])])  # fmt: skip
        found = client.search_s(planned, ldap.SCOPE_BASE, "(objectClass=*)", ["pyldapdPlanned"])
        assert found == [(planned, {"pyldapdPlanned": [b"yes"]})]

        result = ldap_tool("ldapdelete", "-Y", "EXTERNAL", "-Q", "-H", node.ldapi, DATABASE)
        if result.returncode != 0:  # a database that cannot be deleted here leaves nothing to check
            pytest.fail(f"olcDatabase delete refused: {result.stderr}")
        with pytest.raises(ldap.NO_SUCH_OBJECT):
            client.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(cn=p1)", ["cn"])
    finally:
        client.unbind_s()
