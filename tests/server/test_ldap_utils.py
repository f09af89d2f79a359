"""The real OpenLDAP command-line clients against a running pyldapd."""

from __future__ import annotations

import re

import pytest

from tests.data import BASE_LDIF
from tests.servers import ROOTDN, ROOTPW, ldap_tool

ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]


@pytest.fixture
def loaded(pyldapd):
    result = ldap_tool("ldapadd", "-H", pyldapd.url, *ADMIN, input=BASE_LDIF)
    assert result.returncode == 0, result.stderr + pyldapd.log()
    return pyldapd


def search(server, *args: str) -> tuple[int, str]:
    result = ldap_tool("ldapsearch", "-H", server.url, "-x", "-LLL", *args)
    return result.returncode, result.stdout + result.stderr


def dns(output: str) -> list[str]:
    return [line[4:] for line in output.splitlines() if line.startswith("dn: ")]


def test_root_dse(pyldapd):
    code, out = search(pyldapd, "-b", "", "-s", "base", "+")
    assert code == 0, out
    assert "namingContexts: dc=example,dc=com" in out
    assert "supportedLDAPVersion: 3" in out
    assert "supportedExtension: 1.3.6.1.4.1.4203.1.11.3" in out
    assert "supportedControl: 1.2.840.113556.1.4.319" in out
    code, out = search(pyldapd, "-b", "", "-s", "base")
    assert "objectClass: top" in out and "namingContexts" not in out


def test_subschema(pyldapd):
    code, out = search(pyldapd, "-b", "cn=Subschema", "-s", "base", "(objectClass=subschema)", "attributeTypes",
                       "objectClasses")  # fmt: skip
    assert code == 0, out
    assert "NAME 'inetOrgPerson'" in out
    assert "NAME ( 'cn' 'commonName' )" in out


def test_add_search_and_scopes(loaded):
    code, out = search(loaded, "-b", "dc=example,dc=com", "(uid=jdoe)", "cn", "mail")
    assert code == 0, out
    assert dns(out) == ["uid=jdoe,ou=People,dc=example,dc=com"]
    assert "cn: John Smith" in out and "mail: john.smith@example.com" in out
    assert "uidNumber" not in out
    code, out = search(loaded, "-b", "ou=People,dc=example,dc=com", "-s", "one", "(objectClass=*)", "1.1")
    assert sorted(dns(out)) == sorted(
        f"uid={u},ou=People,dc=example,dc=com" for u in ("jdoe", "asmith", "bwong", "cjones")
    )
    code, out = search(loaded, "-b", "dc=example,dc=com", "-s", "base", "(objectClass=*)", "1.1")
    assert dns(out) == ["dc=example,dc=com"]
    code, out = search(
        loaded, "-b", "dc=example,dc=com", "-s", "children", "(objectClass=organizationalUnit)"
    )
    assert sorted(dns(out)) == ["ou=Groups,dc=example,dc=com", "ou=People,dc=example,dc=com"]


@pytest.mark.parametrize(
    "filter_, expected",
    [
        ("(cn=JOHN*)", ["jdoe"]),
        ("(cn=*smith)", ["jdoe", "asmith"]),
        ("(cn=*o*n*)", ["jdoe", "bwong", "cjones"]),
        ("(telephoneNumber=+15550102)", ["asmith"]),
        ("(telephoneNumber=+1 555-0101)", ["jdoe"]),
        ("(mail=bob@example.com)", ["bwong"]),
        ("(uidNumber>=1002)", ["asmith", "cjones"]),
        ("(uidNumber<=1002)", ["jdoe", "asmith"]),
        ("(employeeNumber=*)", ["asmith", "bwong"]),
        ("(&(sn=Smith)(!(givenName=Alice)))", ["jdoe"]),
        ("(|(uid=bwong)(uid=cjones))", ["bwong", "cjones"]),
        ("(name=jones)", ["cjones"]),
        ("(cn~=jon smith)", ["jdoe"]),
        ("(description=*\\2a star)", ["jdoe"]),
        ("(description=*\\28first\\29*)", ["jdoe"]),
        ("(&(uid=*)(ou:dn:=People))", ["jdoe", "asmith", "bwong", "cjones"]),
        ("(cn:caseExactMatch:=Bob Wong)", ["bwong"]),
        ("(cn:caseExactMatch:=bob wong)", []),
        ("(&(uid=*)(!(objectClass=posixAccount)))", ["bwong"]),
        ("(nosuchattribute=x)", []),
        ("(!(nosuchattribute=x))", []),
    ],
)
def test_filters(loaded, filter_, expected):
    code, out = search(loaded, "-b", "ou=People,dc=example,dc=com", filter_, "1.1")
    assert code == 0, out
    assert sorted(dns(out)) == sorted(f"uid={u},ou=People,dc=example,dc=com" for u in expected)


def test_modify_operations(loaded):
    ldif = """dn: uid=bwong,ou=People,dc=example,dc=com
changetype: modify
add: telephoneNumber
telephoneNumber: +1 555 0199
-
replace: title
title: Director
-
delete: mail
"""
    result = ldap_tool("ldapmodify", "-H", loaded.url, *ADMIN, input=ldif)
    assert result.returncode == 0, result.stderr
    code, out = search(loaded, "-b", "uid=bwong,ou=People,dc=example,dc=com", "-s", "base")
    assert "title: Director" in out and "telephoneNumber: +1 555 0199" in out
    assert "mail:" not in out
    # increment: integers only (employeeNumber is a directoryString: slapd refuses it too)
    increment = "dn: {dn}\nchangetype: modify\nincrement: {attr}\n{attr}: {by}\n"
    cjones = "uid=cjones,ou=People,dc=example,dc=com"
    result = ldap_tool("ldapmodify", "-H", loaded.url, *ADMIN,
                       input=increment.format(dn="uid=bwong,ou=People,dc=example,dc=com", attr="employeeNumber", by=5))  # fmt: skip
    assert result.returncode == 19 and "attribute syntax inappropriate for increment" in result.stderr
    for by, expected in ((5, "gidNumber: 205"), (-5, "gidNumber: 200")):
        result = ldap_tool(
            "ldapmodify", "-H", loaded.url, *ADMIN, input=increment.format(dn=cjones, attr="gidNumber", by=by)
        )
        assert result.returncode == 0, result.stderr
        assert expected in search(loaded, "-b", cjones, "-s", "base", "gidNumber")[1]
    code, out = search(loaded, "-b", "uid=bwong,ou=People,dc=example,dc=com", "-s", "base", "+")
    assert "modifiersName: cn=admin,dc=example,dc=com" in out
    assert re.search(r"entryCSN: \d{14}\.\d{6}Z#000000#000#000000", out), out


@pytest.mark.parametrize(
    "ldif, code",
    [
        ("dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nadd: title\ntitle: Manager\n", 20),
        ("dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\ndelete: title\ntitle: Boss\n", 16),
        ("dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\ndelete: sn\n", 65),
        ("dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nadd: foo\nfoo: bar\n", 17),
        (
            "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nreplace: entryUUID\n"
            "entryUUID: 00000000-0000-0000-0000-000000000000\n",
            19,
        ),
        (
            "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nreplace: uidNumber\nuidNumber: 5\n",
            65,
        ),
        ("dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\ndelete: uid\n", 64),
        ("dn: uid=nobody,ou=People,dc=example,dc=com\nchangetype: modify\nreplace: sn\nsn: x\n", 32),
        ("dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: person\ncn: x\n", 65),
        ("dn: uid=x,ou=Nowhere,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: x\n", 32),
        ("dn: uid=jdoe,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: jdoe\n", 68),
        (
            "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: x\n"
            "uidNumber: abc\n",
            21,
        ),
        (
            "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\n"
            "objectClass: organizationalUnit\nuid: x\nou: x\n",
            65,
        ),
    ],
)
def test_update_errors(loaded, ldif, code):
    result = ldap_tool("ldapmodify", "-H", loaded.url, *ADMIN, input=ldif)
    assert result.returncode == code, result.stderr


def test_delete_and_non_leaf(loaded):
    result = ldap_tool("ldapdelete", "-H", loaded.url, *ADMIN, "ou=People,dc=example,dc=com")
    assert result.returncode == 66, result.stderr
    result = ldap_tool("ldapdelete", "-H", loaded.url, *ADMIN, "uid=cjones,ou=People,dc=example,dc=com")
    assert result.returncode == 0, result.stderr
    code, out = search(loaded, "-b", "uid=cjones,ou=People,dc=example,dc=com", "-s", "base")
    assert code == 32
    assert "Matched DN: ou=People,dc=example,dc=com" in out


def test_modrdn_and_subtree_move(loaded):
    result = ldap_tool("ldapmodrdn", "-H", loaded.url, *ADMIN, "-r", "uid=cjones,ou=People,dc=example,dc=com",
                       "uid=carol")  # fmt: skip
    assert result.returncode == 0, result.stderr
    code, out = search(loaded, "-b", "uid=carol,ou=People,dc=example,dc=com", "-s", "base", "uid")
    assert code == 0 and "uid: carol" in out and "uid: cjones" not in out
    ldif = "dn: ou=Staff,dc=example,dc=com\nobjectClass: organizationalUnit\nou: Staff\n"
    assert ldap_tool("ldapadd", "-H", loaded.url, *ADMIN, input=ldif).returncode == 0
    result = ldap_tool("ldapmodrdn", "-H", loaded.url, *ADMIN, "-s", "ou=Staff,dc=example,dc=com",
                       "ou=People,dc=example,dc=com", "ou=People")  # fmt: skip
    assert result.returncode == 0, result.stderr
    code, out = search(loaded, "-b", "ou=Staff,dc=example,dc=com", "(uid=jdoe)", "1.1")
    assert dns(out) == ["uid=jdoe,ou=People,ou=Staff,dc=example,dc=com"]
    code, out = search(loaded, "-b", "dc=example,dc=com", "-s", "one", "(ou=People)", "1.1")
    assert dns(out) == []


def test_compare(loaded):
    dn = "uid=jdoe,ou=People,dc=example,dc=com"
    assert ldap_tool("ldapcompare", "-H", loaded.url, "-x", dn, "cn:john smith").returncode == 6
    assert ldap_tool("ldapcompare", "-H", loaded.url, "-x", dn, "cn:nobody").returncode == 5
    assert ldap_tool("ldapcompare", "-H", loaded.url, "-x", dn, "title:x").returncode == 16
    assert ldap_tool("ldapcompare", "-H", loaded.url, "-x", dn, "nosuch:x").returncode == 17


def test_bind_and_whoami(loaded):
    dn = "uid=jdoe,ou=People,dc=example,dc=com"
    result = ldap_tool("ldapwhoami", "-H", loaded.url, "-x", "-D", dn, "-w", "secret1")
    assert result.returncode == 0 and result.stdout.strip() == f"dn:{dn}"
    assert ldap_tool("ldapwhoami", "-H", loaded.url, "-x", "-D", dn, "-w", "wrong").returncode == 49
    assert (
        ldap_tool("ldapwhoami", "-H", loaded.url, "-x", "-D", "uid=x,dc=example,dc=com", "-w", "x").returncode
        == 49
    )
    assert ldap_tool("ldapwhoami", "-H", loaded.url, "-x", "-D", "not a dn", "-w", "x").returncode == 34
    assert ldap_tool("ldapwhoami", "-H", loaded.url, "-x").stdout.strip() == "anonymous"
    result = ldap_tool("ldapwhoami", "-H", loaded.ldapi_url, "-Y", "EXTERNAL", "-Q")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"dn:gidNumber=\d+\+uidNumber=\d+,cn=peercred,cn=external,cn=auth", result.stdout.strip()
    )


def test_password_modify(loaded):
    dn = "uid=asmith,ou=People,dc=example,dc=com"
    result = ldap_tool("ldappasswd", "-H", loaded.url, *ADMIN, "-s", "newpass", dn)
    assert result.returncode == 0, result.stderr
    assert ldap_tool("ldapwhoami", "-H", loaded.url, "-x", "-D", dn, "-w", "newpass").returncode == 0
    code, out = search(loaded, "-D", ROOTDN, "-w", ROOTPW, "-b", dn, "-s", "base", "userPassword")
    assert "userPassword:: " in out  # stored hashed ({SSHA}), shown base64 by ldapsearch
    result = ldap_tool("ldappasswd", "-H", loaded.url, *ADMIN, dn)
    assert result.returncode == 0 and "New password: " in result.stdout


def test_anonymous_cannot_write(loaded):
    ldif = "dn: uid=x,ou=People,dc=example,dc=com\nobjectClass: account\nuid: x\n"
    assert (
        ldap_tool("ldapadd", "-H", loaded.url, "-x", input=ldif).returncode == 8
    )  # as slapd: strongerAuthRequired
    user = ["-x", "-D", "uid=jdoe,ou=People,dc=example,dc=com", "-w", "secret1"]
    assert ldap_tool("ldapadd", "-H", loaded.url, *user, input=ldif).returncode == 50


def test_size_limit_and_paging(loaded):
    code, out = search(loaded, "-b", "dc=example,dc=com", "-z", "2", "(objectClass=*)", "1.1")
    assert code == 4 and len(dns(out)) == 2
    code, out = search(loaded, "-b", "dc=example,dc=com", "-E", "pr=3/noprompt", "(objectClass=*)", "1.1")
    assert code == 0, out
    assert len(dns(out)) == 9


def test_unknown_critical_control(loaded):
    code, out = search(loaded, "-b", "dc=example,dc=com", "-e", "!1.2.3.4.5.6", "(uid=jdoe)")
    assert code == 12, out
    code, out = search(loaded, "-b", "dc=example,dc=com", "-e", "1.2.3.4.5.6", "(uid=jdoe)", "1.1")
    assert code == 0 and len(dns(out)) == 1
