"""python-ldap and ldap3 against a running pyldapd: controls, paging, extended operations."""

from __future__ import annotations

import ldap
import ldap3
import pytest
from ldap.controls import SimplePagedResultsControl
from ldap.controls.readentry import PostReadControl, PreReadControl
from ldap.modlist import addModlist

from tests.data import BASE_LDIF
from tests.servers import ROOTDN, ROOTPW, ldap_tool

PEOPLE = "ou=People,dc=example,dc=com"


@pytest.fixture
def loaded(pyldapd):
    result = ldap_tool("ldapadd", "-H", pyldapd.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF)
    assert result.returncode == 0, result.stderr
    return pyldapd


@pytest.fixture
def conn(loaded):
    connection = ldap.initialize(loaded.url)
    connection.protocol_version = 3
    connection.simple_bind_s(ROOTDN, ROOTPW)
    yield connection
    connection.unbind_s()


def test_python_ldap_search_and_add(conn):
    results = conn.search_s(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=asmith)", ["cn", "employeeNumber"])
    assert results == [(f"uid=asmith,{PEOPLE}", {"cn": [b"Alice Smith"], "employeeNumber": [b"42"]})]
    entry = {"objectClass": [b"inetOrgPerson"], "cn": [b"Dan Brown"], "sn": [b"Brown"], "uid": [b"dbrown"]}
    conn.add_s(f"uid=dbrown,{PEOPLE}", addModlist(entry))
    results = conn.search_s(f"uid=dbrown,{PEOPLE}", ldap.SCOPE_BASE, attrlist=["*", "+"])
    attrs = results[0][1]
    assert attrs["structuralObjectClass"] == [b"inetOrgPerson"]
    assert attrs["creatorsName"] == [ROOTDN.encode()]
    assert len(attrs["entryUUID"][0]) == 36
    assert attrs["hasSubordinates"] == [b"FALSE"]
    assert attrs["entryDN"] == [f"uid=dbrown,{PEOPLE}".encode()]
    with pytest.raises(ldap.ALREADY_EXISTS):
        conn.add_s(f"uid=dbrown,{PEOPLE}", addModlist(entry))


def test_python_ldap_errors(conn):
    with pytest.raises(ldap.NO_SUCH_OBJECT) as info:
        conn.search_s(f"uid=nobody,{PEOPLE}", ldap.SCOPE_BASE)
    assert info.value.args[0]["matched"] == PEOPLE
    with pytest.raises(ldap.INVALID_DN_SYNTAX):
        conn.search_s("this is not a DN", ldap.SCOPE_BASE)
    with pytest.raises(ldap.NOT_ALLOWED_ON_NONLEAF):
        conn.delete_s(PEOPLE)
    with pytest.raises(ldap.OBJECT_CLASS_VIOLATION):
        conn.add_s(f"uid=x,{PEOPLE}", [("objectClass", [b"inetOrgPerson"]), ("uid", [b"x"])])


def test_paged_results(conn):
    control = SimplePagedResultsControl(True, size=2, cookie=b"")
    pages = 0
    seen = []
    while pages < 20:
        msgid = conn.search_ext(PEOPLE, ldap.SCOPE_SUBTREE, "(objectClass=*)", ["1.1"], serverctrls=[control])
        _, data, _, response_controls = conn.result3(msgid)
        seen += [dn for dn, _ in data]
        pages += 1
        paged = [c for c in response_controls if c.controlType == SimplePagedResultsControl.controlType]
        assert paged
        if not paged[0].cookie:
            break
        control.cookie = paged[0].cookie
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5


def test_assertion_and_read_controls(conn):
    from ldap.controls import RequestControl

    from pyldapd.model.filter import parse_filter
    from pyldapd.protocol.controls import ASSERTION, encode_assertion

    dn = f"uid=bwong,{PEOPLE}"
    failing = RequestControl(ASSERTION, True, encode_assertion(parse_filter("(title=Janitor)")))
    with pytest.raises(ldap.ASSERTION_FAILED):
        conn.modify_ext_s(dn, [(ldap.MOD_REPLACE, "title", [b"CEO"])], serverctrls=[failing])
    passing = RequestControl(ASSERTION, True, encode_assertion(parse_filter("(title=Manager)")))
    pre = PreReadControl(criticality=True, attrList=["title"])
    post = PostReadControl(criticality=True, attrList=["title", "modifiersName"])
    _, _, _, controls = conn.modify_ext_s(dn, [(ldap.MOD_REPLACE, "title", [b"CEO"])],
                                          serverctrls=[passing, pre, post])  # fmt: skip
    by_type = {c.controlType: c for c in controls}
    assert by_type[PreReadControl.controlType].entry == {"title": [b"Manager"]}
    assert by_type[PostReadControl.controlType].entry["title"] == [b"CEO"]
    assert by_type[PostReadControl.controlType].dn == dn


def test_python_ldap_passwd_and_whoami(conn, loaded):
    dn = f"uid=jdoe,{PEOPLE}"
    conn.passwd_s(dn, None, "changed")
    user = ldap.initialize(loaded.url)
    user.simple_bind_s(dn, "changed")
    assert user.whoami_s() == f"dn:{dn}"
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        ldap.initialize(loaded.url).simple_bind_s(dn, "secret1")
    user.unbind_s()


def test_ldap3_operations(loaded):
    server = ldap3.Server("127.0.0.1", port=loaded.port, get_info=ldap3.ALL)
    connection = ldap3.Connection(server, ROOTDN, ROOTPW, auto_bind=True)
    assert "dc=example,dc=com" in server.info.naming_contexts
    assert server.schema is not None and "inetOrgPerson" in server.schema.object_classes
    connection.search(
        PEOPLE, "(&(objectClass=posixAccount)(uidNumber>=1002))", attributes=["uid", "uidNumber"]
    )
    assert sorted(str(e.uid) for e in connection.entries) == ["asmith", "cjones"]
    assert connection.modify(f"uid=cjones,{PEOPLE}", {"loginShell": [(ldap3.MODIFY_REPLACE, ["/bin/zsh"])]})
    assert connection.modify_dn(f"uid=cjones,{PEOPLE}", "uid=carol", delete_old_dn=False)
    connection.search(f"uid=carol,{PEOPLE}", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["uid"])
    assert sorted(connection.entries[0].uid.values) == ["carol", "cjones"]
    assert connection.compare(f"uid=carol,{PEOPLE}", "loginShell", "/bin/zsh")
    assert connection.delete(f"uid=carol,{PEOPLE}")
    assert not connection.delete(f"uid=carol,{PEOPLE}")
    assert connection.result["result"] == 32
    assert connection.extend.standard.who_am_i() == f"dn:{ROOTDN}"
    connection.unbind()
