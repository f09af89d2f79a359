"""Differential tests: the same slapd.conf and LDIF in Debian's slapd and in pyldapd give the same answers."""

from __future__ import annotations

import base64

import pytest

from tests.data import BASE_LDIF
from tests.servers import ROOTDN, ROOTPW, ldap_tool, slapd_conf, start_pyldapd, start_slapd

ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]
# Operational attributes whose values are the same on two servers given the same requests.
STABLE_OPERATIONAL = ["structuralObjectClass", "hasSubordinates", "entryDN", "subschemaSubentry", "creatorsName",
                      "modifiersName"]  # fmt: skip


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Debian's slapd and pyldapd, started from one slapd.conf, loaded with one LDIF."""
    root = tmp_path_factory.mktemp("differential")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf = slapd_conf(root / name / "db", modules=True)
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            server = start(root / name, conf, name=name)
            servers.append(server)
            result = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=BASE_LDIF)
            assert result.returncode == 0, f"{name}: {result.stderr}\n{server.log()}"
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def canonical(output: str) -> list[tuple[str, tuple[str, ...]]]:
    """ldapsearch -LLL output as a sorted list of (dn, sorted attribute lines), values decoded."""
    entries = []
    for block in output.strip().split("\n\n"):
        lines = [line for line in block.replace("\n ", "").splitlines() if line and not line.startswith("#")]
        if not lines:
            continue
        decoded = []
        for line in lines:
            if ":: " in line:
                name, value = line.split(":: ", 1)
                line = f"{name}: {base64.b64decode(value).decode('utf-8', 'replace')}"
            name, _, value = line.partition(": ")
            decoded.append(f"{name.lower()}: {value}")
        entries.append((decoded[0], tuple(sorted(decoded[1:]))))
    return sorted(entries)


def run_both(pair, tool: str, *args: str, input: str | None = None):
    return [ldap_tool(tool, "-H", server.url, *args, input=input) for server in pair]


SEARCHES = [
    ("dc=example,dc=com", "sub", "(objectClass=*)", []),
    ("dc=example,dc=com", "sub", "(objectClass=*)", ["*", *STABLE_OPERATIONAL]),
    ("dc=example,dc=com", "one", "(objectClass=*)", ["1.1"]),
    ("dc=example,dc=com", "base", "(objectClass=*)", ["hasSubordinates"]),
    ("ou=People,dc=example,dc=com", "children", "(objectClass=*)", ["cn"]),
    ("dc=example,dc=com", "sub", "(cn=JOHN*)", ["cn"]),
    ("dc=example,dc=com", "sub", "(cn=*SMITH)", ["cn"]),
    ("dc=example,dc=com", "sub", "(cn=*o*n*)", ["cn"]),
    ("dc=example,dc=com", "sub", "(cn=j*n*y)", ["cn"]),
    ("dc=example,dc=com", "sub", "(telephoneNumber=+15550102)", ["telephoneNumber"]),
    ("dc=example,dc=com", "sub", "(telephoneNumber=*555 01*)", ["telephoneNumber"]),
    ("dc=example,dc=com", "sub", "(mail=bob@EXAMPLE.com)", ["mail"]),
    ("dc=example,dc=com", "sub", "(mail=*@example.com)", ["mail"]),
    ("dc=example,dc=com", "sub", "(uidNumber>=1002)", ["uidNumber"]),
    ("dc=example,dc=com", "sub", "(uidNumber<=1002)", ["uidNumber"]),
    ("dc=example,dc=com", "sub", "(gidNumber=0100)", ["gidNumber"]),
    ("dc=example,dc=com", "sub", "(employeeNumber=*)", ["employeeNumber"]),
    ("dc=example,dc=com", "sub", "(&(sn=smith)(!(givenName=alice)))", ["uid"]),
    ("dc=example,dc=com", "sub", "(|(uid=bwong)(gidNumber=200))", ["uid"]),
    ("dc=example,dc=com", "sub", "(name=jones)", ["sn"]),
    ("dc=example,dc=com", "sub", "(ou:dn:=people)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(cn:caseExactMatch:=Bob Wong)", ["cn"]),
    ("dc=example,dc=com", "sub", "(cn:2.5.13.5:=bob wong)", ["cn"]),
    ("dc=example,dc=com", "sub", "(:caseIgnoreMatch:=staff)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(member=uid=bwong,ou=people,dc=example,dc=com)", ["member"]),
    ("dc=example,dc=com", "sub", "(memberUid=JDOE)", ["memberUid"]),
    ("dc=example,dc=com", "sub", "(description=*\\2a star)", ["description"]),
    ("dc=example,dc=com", "sub", "(description=*\\28first\\29*)", ["description"]),
    ("dc=example,dc=com", "sub", "(!(objectClass=posixAccount))", ["1.1"]),
    ("dc=example,dc=com", "sub", "(nosuchattr=x)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(!(nosuchattr=x))", ["1.1"]),
    ("dc=example,dc=com", "sub", "(uidNumber>=abc)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(objectClass=person)", ["@posixAccount"]),
    ("dc=example,dc=com", "sub", "(objectClass=2.5.6.6)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(&)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(|)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(title=manager)", ["title;x-foo", "title"]),
    ("uid=jdoe,ou=People,dc=example,dc=com", "base", "(objectClass=*)", ["name"]),
    ("uid=nobody,ou=People,dc=example,dc=com", "base", "(objectClass=*)", []),
    ("ou=Nowhere,dc=example,dc=com", "sub", "(objectClass=*)", []),
    ("dc=org", "sub", "(objectClass=*)", []),
]


@pytest.mark.parametrize("base, scope, filter_, attrs", SEARCHES)
def test_search_corpus(pair, base, scope, filter_, attrs):
    results = run_both(pair, "ldapsearch", *ADMIN, "-LLL", "-b", base, "-s", scope, filter_, *attrs)
    slapd, ours = results
    assert ours.returncode == slapd.returncode, (slapd.stderr, ours.stderr)
    assert canonical(ours.stdout) == canonical(slapd.stdout)


def test_typesonly_and_anonymous(pair):
    slapd, ours = run_both(pair, "ldapsearch", "-x", "-LLL", "-A", "-b", "dc=example,dc=com", "(uid=jdoe)")
    assert canonical(ours.stdout) == canonical(slapd.stdout)


FAILING_UPDATES = [
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nadd: title\ntitle: manager\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\ndelete: title\ntitle: Boss\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\ndelete: sn\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nadd: foo\nfoo: bar\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nreplace: uidNumber\nuidNumber: 5\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\ndelete: uid\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nreplace: createTimestamp\n"
    "createTimestamp: 20200101000000Z\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nadd: objectClass\nobjectClass: account\n",
    "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nincrement: title\ntitle: 1\n",
    "dn: uid=nobody,ou=People,dc=example,dc=com\nchangetype: modify\nreplace: sn\nsn: x\n",
    "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: person\ncn: x\n",
    "dn: uid=x,ou=Nowhere,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: x\n",
    "dn: uid=jdoe,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: jdoe\n",
    "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: x\nuidNumber: abc\n",
    "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: nosuchclass\nuid: x\n",
    "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: top\nuid: x\n",
    "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: x\nuid: X\n",
    "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: x\n"
    "entryUUID: 00000000-0000-0000-0000-000000000000\n",
    "dn: cn=x,dc=other\nchangetype: add\nobjectClass: person\ncn: x\nsn: x\n",
    "dn: ou=People,dc=example,dc=com\nchangetype: delete\n",
    "dn: uid=nobody,ou=People,dc=example,dc=com\nchangetype: delete\n",
    "dn: uid=jdoe,ou=People,dc=example,dc=com\nchangetype: modrdn\nnewrdn: uid=asmith\ndeleteoldrdn: 1\n",
    "dn: uid=jdoe,ou=People,dc=example,dc=com\nchangetype: modrdn\nnewrdn: uid=x\ndeleteoldrdn: 1\n"
    "newsuperior: ou=Nowhere,dc=example,dc=com\n",
    "dn: uid=jdoe,ou=People,dc=example,dc=com\nchangetype: modrdn\nnewrdn: foo=x\ndeleteoldrdn: 0\n",
]


@pytest.mark.parametrize("ldif", FAILING_UPDATES)
def test_failing_updates_give_same_result_code(pair, ldif):
    slapd, ours = run_both(pair, "ldapmodify", *ADMIN, input=ldif)
    assert slapd.returncode != 0, "the corpus holds only failing requests"
    assert ours.returncode == slapd.returncode, (slapd.stderr, ours.stderr)


def test_successful_updates_alike(pair):
    """Updates slapd accepts with a twist: a naming value added for the client, DN values prettified."""
    ldif = (
        "dn: uid=autonamed,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: other\n"
        "seeAlso: CN=Staff , OU=Groups,DC=example,DC=com\n\n"
        "dn: uid=bwong,ou=People,dc=example,dc=com\nchangetype: modify\nreplace: telephoneNumber\n-\n"
        "add: seeAlso\nseeAlso: UID=JDOE,ou=people,dc=example,dc=com\n-\nreplace: employeeNumber\n"
        "employeeNumber: 8\n"
    )
    slapd, ours = run_both(pair, "ldapmodify", *ADMIN, input=ldif)
    assert (ours.returncode, slapd.returncode) == (0, 0), (slapd.stderr, ours.stderr)
    for base in ("uid=autonamed,ou=People,dc=example,dc=com", "uid=bwong,ou=People,dc=example,dc=com"):
        slapd, ours = run_both(pair, "ldapsearch", *ADMIN, "-LLL", "-b", base, "-s", "base", "*",
                               *STABLE_OPERATIONAL)  # fmt: skip
        assert canonical(ours.stdout) == canonical(slapd.stdout)
    slapd, ours = run_both(pair, "ldapdelete", *ADMIN, "uid=autonamed,ou=People,dc=example,dc=com")
    assert (ours.returncode, slapd.returncode) == (0, 0)


def test_anonymous_write_refused_alike(pair):
    ldif = "dn: uid=x,ou=People,dc=example,dc=com\nchangetype: add\nobjectClass: account\nuid: x\n"
    slapd, ours = run_both(pair, "ldapmodify", "-x", input=ldif)
    assert ours.returncode == slapd.returncode, (slapd.stderr, ours.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["uid=jdoe,ou=People,dc=example,dc=com", "cn:JOHN SMITH"],
        ["uid=jdoe,ou=People,dc=example,dc=com", "cn:nobody"],
        ["uid=jdoe,ou=People,dc=example,dc=com", "title:x"],
        ["uid=jdoe,ou=People,dc=example,dc=com", "uidNumber:01001"],
        ["uid=nobody,ou=People,dc=example,dc=com", "cn:x"],
    ],
)
def test_compare_alike(pair, args):
    slapd, ours = run_both(pair, "ldapcompare", *ADMIN, *args)
    assert ours.returncode == slapd.returncode, (slapd.stderr, ours.stderr)


def test_bind_results_alike(pair):
    cases = [
        ["-D", "uid=jdoe,ou=People,dc=example,dc=com", "-w", "secret1"],
        ["-D", "uid=jdoe,ou=People,dc=example,dc=com", "-w", "wrong"],
        ["-D", "uid=bwong,ou=People,dc=example,dc=com", "-w", "x"],
        ["-D", "uid=nobody,ou=People,dc=example,dc=com", "-w", "x"],
        ["-D", "garbage", "-w", "x"],
    ]
    for args in cases:
        slapd, ours = run_both(pair, "ldapwhoami", "-x", *args)
        assert (ours.returncode, ours.stdout) == (slapd.returncode, slapd.stdout), args
