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
    ("dc=example,dc=com", "sub", "(hasSubordinates=TRUE)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(hasSubordinates=false)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(hasSubordinates=*)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(!(hasSubordinates=TRUE))", ["1.1"]),
    ("dc=example,dc=com", "sub", "(&(objectClass=organizationalUnit)(hasSubordinates=TRUE))", ["1.1"]),
    ("dc=example,dc=com", "sub", "(hasSubordinates>=TRUE)", ["1.1"]),
    # entryDN (computed) and slapd's DN relation rules, by name and by OID
    ("dc=example,dc=com", "sub", "(entryDN=UID=JDOE, ou=People,dc=example,dc=com)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(entryDN:dnSubtreeMatch:=ou=People,dc=example,dc=com)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(entryDN:1.3.6.1.4.1.4203.666.4.8:=dc=example,dc=com)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(entryDN:dnSubordinateMatch:=ou=People,dc=example,dc=com)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(entryDN:dnSuperiorMatch:=uid=jdoe,ou=People,dc=example,dc=com)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(:dnSubtreeMatch:=ou=People,dc=example,dc=com)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(!(entryDN:dnSubtreeMatch:=not a DN))", ["1.1"]),
    ("dc=example,dc=com", "sub", "(uidNumber:integerOrderingMatch:=1002)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(cn:caseExactMatch:=Bob Wong)", ["cn"]),
    ("dc=example,dc=com", "sub", "(cn:2.5.13.5:=bob wong)", ["cn"]),
    ("dc=example,dc=com", "sub", "(:caseIgnoreMatch:=staff)", ["1.1"]),
    # substrings rules: their Substring Assertion syntax is one slapd cannot check (Undefined)
    ("dc=example,dc=com", "sub", "(:dn:caseIgnoreSubstringsMatch:=people)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(cn:caseExactSubstringsMatch:=Bob Wong)", ["1.1"]),
    ("dc=example,dc=com", "sub", "(!(cn:2.5.13.4:=bob wong))", ["1.1"]),
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


P = "ou=People,dc=example,dc=com"
# Schema checks on add, modify and modify DN: result code, diagnostic text and matched DN as slapd gives them.
SCHEMA_CHECKS = [
    # structural class rules and chains
    f"dn: uid=s1,{P}\nchangetype: add\nobjectClass: account\nobjectClass: organizationalUnit\nuid: s1\nou: s1\n",
    f"dn: uid=s2,{P}\nchangetype: add\nobjectClass: posixAccount\nuid: s2\ncn: s2\nuidNumber: 1\ngidNumber: 1\n"
    "homeDirectory: /h\n",
    f"dn: cn=s3,{P}\nchangetype: add\nobjectClass: top\nobjectClass: simpleSecurityObject\ncn: s3\n"
    "userPassword: x\n",
    f"dn: cn=s4,{P}\nchangetype: add\ncn: s4\nsn: s4\n",
    f"dn: cn=s5,{P}\nchangetype: add\nobjectClass: person\nobjectClass: nosuchclass\ncn: s5\nsn: s5\n",
    # MUST and MAY
    f"dn: cn=m1,{P}\nchangetype: add\nobjectClass: person\nobjectClass: posixAccount\ncn: m1\nsn: m1\nuid: m1\n",
    f"dn: cn=m2,{P}\nchangetype: add\nobjectClass: person\ncn: m2\nsn: m2\nmail: m2@example.com\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: objectClass\nobjectClass: posixAccount\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: homeDirectory\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nadd: loginShell\nloginShell: /bin/sh\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nreplace: objectClass\nobjectClass: person\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\ndelete: objectClass\nobjectClass: inetOrgPerson\n",
    # single value
    f"dn: cn=v1,{P}\nchangetype: add\nobjectClass: account\nobjectClass: posixAccount\nuid: v1\ncn: v1\n"
    "uidNumber: 1\nuidNumber: 2\ngidNumber: 1\nhomeDirectory: /h\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nadd: uidNumber\nuidNumber: 7\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nadd: preferredLanguage\npreferredLanguage: en\npreferredLanguage: fr\n",
    # attribute syntaxes
    f"dn: uid=y1,{P}\nchangetype: add\nobjectClass: account\nobjectClass: posixAccount\nuid: y1\ncn: y1\n"
    "uidNumber: one\ngidNumber: 1\nhomeDirectory: /h\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nadd: seeAlso\nseeAlso: not a dn\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nreplace: telephoneNumber\ntelephoneNumber: \n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nreplace: mail\nmail: caf\xe9@example.com\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nreplace: c\nc: USA\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nreplace: createTimestamp\ncreateTimestamp: yesterday\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nadd: objectClass\nobjectClass: 1.2.3.4.5\n",
    # undefined types, options
    f"dn: uid=bwong,{P}\nchangetype: modify\nadd: nosuchattr;lang-en\nnosuchattr;lang-en: x\n",
    f"dn: uid=u1,{P}\nchangetype: add\nobjectClass: account\nuid: u1\nx-undefined: 1\n",
    # NO-USER-MODIFICATION
    f"dn: uid=n1,{P}\nchangetype: add\nobjectClass: account\nuid: n1\nentryCSN: 20200101000000.000000Z#000000#000#000000\n",
    f"dn: uid=n2,{P}\nchangetype: add\nobjectClass: account\nuid: n2\nstructuralObjectClass: account\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\nreplace: modifiersName\nmodifiersName: cn=x\n",
    f"dn: uid=bwong,{P}\nchangetype: modify\ndelete: entryUUID\n",
    # naming
    f"dn: uid=r1+cn=r1,{P}\nchangetype: add\nobjectClass: account\nuid: r1\n",
    f"dn: description=r2,{P}\nchangetype: add\nobjectClass: account\nuid: r2\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: uid\nuid: jdoe\n",
    f"dn: uid=jdoe,{P}\nchangetype: modrdn\nnewrdn: mail=x@example.com\ndeleteoldrdn: 1\n",
    f"dn: uid=jdoe,{P}\nchangetype: modrdn\nnewrdn: gecos=x\ndeleteoldrdn: 1\n",
    f"dn: uid=jdoe,{P}\nchangetype: modrdn\nnewrdn: uid=a+uid=b\ndeleteoldrdn: 1\n",
    f"dn: uid=jdoe,{P}\nchangetype: modrdn\nnewrdn: uidNumber=abc\ndeleteoldrdn: 0\n",
    # extensibleObject admits any defined type, never undefined ones
    f"dn: cn=e1,{P}\nchangetype: add\nobjectClass: person\nobjectClass: extensibleObject\ncn: e1\nsn: e1\n"
    "x-undefined: 1\n",
    # DN values: not a DN, or naming a type the schema does not know (slapd's dnPretty refuses it)
    f"dn: uid=d1,{P}\nchangetype: add\nobjectClass: account\nuid: d1\nseeAlso: foo=bar,dc=example,dc=com\n",
    f"dn: uid=d2,{P}\nchangetype: add\nobjectClass: account\nuid: d2\nseeAlso: uid=a,dc=example,dc=com\n"
    "seeAlso: cn=x+nosuch=y,dc=example,dc=com\n",
    f"dn: uid=d3,{P}\nchangetype: add\nobjectClass: account\nuid: d3\nseeAlso: not a DN\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nadd: seeAlso\nseeAlso: cn=ok,dc=example,dc=com\n"
    "seeAlso: nosuch=x,dc=example,dc=com\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nreplace: seeAlso\nseeAlso: nosuch=x\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: seeAlso\nseeAlso: nosuch=x\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: seeAlso\nseeAlso: not a DN\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: seeAlso\nseeAlso: cn=absent,dc=example,dc=com\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: uidNumber\nuidNumber: abc\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: objectClass\nobjectClass: no such class\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: telephoneNumber\ntelephoneNumber: +1 555 9999\n",
    f"dn: uid=jdoe,{P}\nchangetype: modrdn\nnewrdn: uid=x\ndeleteoldrdn: 1\nnewsuperior: nosuch=x,dc=example,dc=com\n",
    f"dn: cn=u1,{P}\nchangetype: add\nobjectClass: groupOfUniqueNames\ncn: u1\nuniqueMember: nosuch=x#'0101'B\n",
    # matching
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: cn\ncn: not a value\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nadd: cn\ncn: Johnny\ncn: JOHN doe\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nreplace: description\ndescription: a\ndescription: b\ndescription: A\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: cn\ncn: nope\ncn: nope2\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nreplace: uid\nuid: other\n",
    f"dn: uid=x1,{P}\nchangetype: add\nobjectClass: account\nuid: x1\ndescription: a\ndescription: b\n"
    "description: A\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nadd: facsimileTelephoneNumber\nfacsimileTelephoneNumber: +1 555\n"
    "facsimileTelephoneNumber: +1 555\n",
    # syntaxes slapd has no validator for: no client write stores a value of them (slap_mods_check)
    f"dn: cn=app,{P}\nchangetype: add\nobjectClass: applicationEntity\ncn: app\n"
    "presentationAddress: TELEX+00726322+RFC-1006+02+130.59.2.1\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\nadd: objectClass\nobjectClass: extensibleObject\n-\n"
    "add: enhancedSearchGuide\nenhancedSearchGuide: x\n",
    f"dn: uid=jdoe,{P}\nchangetype: modify\ndelete: searchGuide\nsearchGuide: x\n",
    # the subschema's own descriptions: refused per syntax before the subschema's unwillingness
    "dn: cn=Subschema\nchangetype: modify\nadd: attributeTypes\nattributeTypes: ( 1.2.3.4 NAME 'x' SYNTAX "
    "1.3.6.1.4.1.1466.115.121.1.15 )\n",
    "dn: cn=Subschema\nchangetype: modify\nadd: objectClasses\nobjectClasses: 1.2.3.4\n",
    "dn: cn=Subschema\nchangetype: modify\nadd: ldapSyntaxes\nldapSyntaxes: ( 1.2.3.4 DESC 'x' )\n",
    "dn: cn=Subschema\nchangetype: modify\nadd: nameForms\nnameForms: ( 1.2.3.4 NAME 'x' OC person MUST cn )\n",
    "dn: cn=Subschema\nchangetype: modify\nadd: description\ndescription: x\n",
]


def additional_info(stderr: str) -> list[str]:
    return [
        line.strip() for line in stderr.splitlines() if "additional info:" in line or "matched DN:" in line
    ]


@pytest.mark.parametrize("ldif", SCHEMA_CHECKS)
def test_schema_checks_answer_as_slapd(pair, ldif):
    """Result code, diagnostic text and matched DN; an update slapd accepts must leave both servers alike."""
    slapd, ours = run_both(pair, "ldapmodify", *ADMIN, input=ldif)
    assert ours.returncode == slapd.returncode, (slapd.stderr, ours.stderr)
    assert additional_info(ours.stderr) == additional_info(slapd.stderr), (slapd.stderr, ours.stderr)
    if slapd.returncode == 0:  # accepted by both: undo it on both the same way
        dn = ldif.split("\n", 1)[0][4:]
        if "changetype: add" in ldif:
            slapd, ours = run_both(pair, "ldapdelete", *ADMIN, dn)
            assert ours.returncode == slapd.returncode == 0
        else:
            pytest.fail("the corpus's modifies must fail (nothing undoes them)")


def test_subschema_publishes_included_definitions_as_slapd(pair):
    """Every attribute type and object class the config's schema files define (outside the system schema both
    servers have built in) is published in cn=Subschema exactly as slapd publishes it: DESC, names as written."""
    from pyldapd.model.schema import Schema

    published = []
    for server in pair:
        result = ldap_tool("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-H", server.url, "-b", "cn=Subschema",
                           "-s", "base", "(objectClass=*)", "attributeTypes", "objectClasses", check=True)  # fmt: skip
        published.append({line.split(": ", 1)[1] for line in result.stdout.splitlines()
                          if line.startswith(("attributeTypes: ", "objectClasses: "))})  # fmt: skip
    system = Schema()
    system_oids = {a.oid for a in system.all_attribute_types()} | {o.oid for o in system.all_object_classes()}
    from_files = Schema()
    for name in ("core", "cosine", "inetorgperson", "nis"):
        from_files.load_file(f"/etc/ldap/schema/{name}.schema")
    wanted = {
        e.oid for e in [*from_files.all_attribute_types(), *from_files.all_object_classes()]
    } - system_oids
    assert len(wanted) > 150
    slapd, ours = ({d for d in defs if d.split()[1] in wanted} for defs in published)
    assert len(slapd) == len(wanted)
    assert ours == slapd


def python_ldap_outcome(server, call) -> tuple[str, object, bool]:
    """(result, diagnostic text, whether the connection still answers) of one request on a new connection; a
    request that succeeds gives what it returned (a compare's truth, a search's number of entries)."""
    import ldap

    conn = ldap.initialize(server.url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.set_option(ldap.OPT_TIMEOUT, 30)
    conn.simple_bind_s(ROOTDN, ROOTPW)
    try:
        returned = call(conn)
        outcome, text = "success", returned if isinstance(returned, (bool, str)) else len(returned or ())
    except ldap.LDAPError as exc:
        info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        outcome, text = type(exc).__name__, info.get("info") or None
    try:
        conn.whoami_s()
        alive = True
    except ldap.LDAPError:
        alive = False
    conn.unbind_s()
    return outcome, text, alive


def _requests():
    import ldap
    import ldap.extop
    from ldap.controls import RequestControl

    person = "uid=jdoe,ou=People,dc=example,dc=com"

    def with_control(oid: str, value: bytes | None):
        return lambda c: c.search_ext_s("dc=example,dc=com", ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"],
                                        serverctrls=[RequestControl(oid, True, value)])  # fmt: skip

    def modify(*changes):
        return lambda c: c.modify_s(person, list(changes))

    return {
        "unknown critical control": with_control("1.2.3.4.5", None),
        "sort control (not offered)": with_control("1.2.840.113556.1.4.473", b"0\x080\x06\x04\x04name"),
        "paged results value not BER": with_control("1.2.840.113556.1.4.319", b"\x01\x02"),
        "manageDSAit with a value": with_control("2.16.840.1.113730.3.4.2", b"x"),
        "sync request, no syncprov": with_control("1.3.6.1.4.1.4203.1.9.1.1", b"0\x03\n\x01\x01"),
        "proxied authorization of nobody": with_control("2.16.840.1.113730.3.4.18", b"x:nobody"),
        "compare of an undefined type": lambda c: c.compare_s(person, "nosuchAttr", b"x"),
        "increment of a string": modify((ldap.MOD_INCREMENT, "cn", [b"1"])),
        "increment by no number": modify((ldap.MOD_INCREMENT, "uidNumber", [b"x"])),
        "increment by two values": modify((ldap.MOD_INCREMENT, "uidNumber", [b"1", b"2"])),
        "increment by no value": modify((ldap.MOD_INCREMENT, "uidNumber", [])),
        "binary option on a string": modify((ldap.MOD_ADD, "description;binary", [b"x"])),
        "option with a space": modify((ldap.MOD_ADD, "description;x y", [b"x"])),
        "option with an underscore": modify((ldap.MOD_ADD, "description;lang_en", [b"x"])),
        "option that is no language tag": modify((ldap.MOD_ADD, "description;x-foo", [b"x"])),
        "add of no values": modify((ldap.MOD_ADD, "title", [])),
        "one-level search of the subschema subentry": lambda c: c.search_s(
            "cn=Subschema", ldap.SCOPE_ONELEVEL
        ),
        "subtree search of the subschema subentry": lambda c: c.search_s("cn=Subschema", ldap.SCOPE_SUBTREE),
        "attribute given twice in an add": lambda c: c.add_s(
            "uid=twice,ou=People,dc=example,dc=com",
            [
                ("objectClass", [b"account"]),
                ("uid", [b"twice"]),
                ("description", [b"a"]),
                ("description", [b"b"]),
            ],
        ),
        "attribute given twice, by another name": lambda c: c.add_s(
            "cn=twice,dc=example,dc=com",
            [("objectClass", [b"person"]), ("cn", [b"twice"]), ("sn", [b"a"]), ("surname", [b"b"])],
        ),
        "options given twice, in other case": lambda c: c.add_s(
            "uid=twice,ou=People,dc=example,dc=com",
            [
                ("objectClass", [b"account"]),
                ("uid", [b"twice"]),
                ("description;lang-en", [b"a"]),
                ("description;LANG-EN", [b"b"]),
            ],
        ),
        "add of the root DSE": lambda c: c.add_s("", [("objectClass", [b"top"])]),
        "add of the subschema subentry": lambda c: c.add_s("cn=Subschema", [("objectClass", [b"subentry"])]),
        "modify of the root DSE": lambda c: c.modify_s("", [(ldap.MOD_ADD, "description", [b"x"])]),
        "modify of the subschema subentry": lambda c: c.modify_s(
            "cn=Subschema", [(ldap.MOD_ADD, "description", [b"x"])]
        ),
        "delete of the root DSE": lambda c: c.delete_s(""),
        "delete of the subschema subentry": lambda c: c.delete_s("cn=Subschema"),
        "rename of the root DSE": lambda c: c.rename_s("", "cn=x"),
        "rename of the subschema subentry": lambda c: c.rename_s("cn=Subschema", "cn=x"),
        "compare of entryDN": lambda c: c.compare_s(person, "entryDN", person.encode()),
        "compare of subschemaSubentry": lambda c: c.compare_s(person, "subschemaSubentry", b"cn=Subschema"),
        "search of scope 5": lambda c: c.search_s("dc=example,dc=com", 5, "(objectClass=*)", ["1.1"]),
        "search of derefAliases 7": lambda c: (
            c.search_ext_s("dc=example,dc=com", 0, "(objectClass=*)", ["1.1"])
            if c.set_option(ldap.OPT_DEREF, 7) is None
            else None
        ),
        "StartTLS without TLS configured": lambda c: c.start_tls_s(),
        "Who am I? with a value": lambda c: c.extop_s(
            ldap.extop.ExtendedRequest("1.3.6.1.4.1.4203.1.11.3", b"x")
        ),
        "Cancel of no operation": lambda c: c.extop_s(
            ldap.extop.ExtendedRequest("1.3.6.1.1.8", b"\x30\x03\x02\x01\x63")
        ),
        "Password Modify not BER": lambda c: c.extop_s(
            ldap.extop.ExtendedRequest("1.3.6.1.4.1.4203.1.11.1", b"\x01")
        ),
        "Password Modify of nobody": lambda c: c.passwd_s("cn=nobody,dc=example,dc=com", None, "x"),
        # RFC 3062 as slapd's slap_passwd_parse reads it: fields given empty are refused, not taken as absent
        "Password Modify with an empty old password": lambda c: c.passwd_s(person, "", "x"),
        "Password Modify with an empty new password": lambda c: c.passwd_s(person, None, ""),
        "Password Modify with an empty request value": lambda c: c.extop_s(
            ldap.extop.ExtendedRequest("1.3.6.1.4.1.4203.1.11.1", b"")
        ),
        "Password Modify with a field out of order": lambda c: c.extop_s(
            ldap.extop.ExtendedRequest("1.3.6.1.4.1.4203.1.11.1", b"\x30\x06\x82\x01n\x81\x01o")
        ),
        # controls on requests they do not go with (slapd's control table): critical ones are unavailable
        "dontUseCopy on a bind": lambda c: c.simple_bind_s(
            ROOTDN, ROOTPW, serverctrls=[RequestControl("1.3.6.1.1.22", True, None)]
        ),
        "paged results on a modify": lambda c: c.modify_ext_s(
            person,
            [(ldap.MOD_REPLACE, "description", [b"x"])],
            serverctrls=[RequestControl("1.2.840.113556.1.4.319", True, b"0\x05\x02\x01\x05\x04\x00")],
        ),
        "pre-read on an add": lambda c: c.add_ext_s(
            "cn=pre,dc=example,dc=com",
            [("objectClass", [b"device"]), ("cn", [b"pre"])],
            serverctrls=[RequestControl("1.3.6.1.1.13.1", True, b"0\x00")],
        ),
        "relax on a search": with_control("1.3.6.1.4.1.4203.666.5.12", None),
        "relax with a value": lambda c: c.modify_ext_s(
            person,
            [(ldap.MOD_REPLACE, "description", [b"x"])],
            serverctrls=[RequestControl("1.3.6.1.4.1.4203.666.5.12", True, b"x")],
        ),
        "relax given twice": lambda c: c.modify_ext_s(
            person,
            [(ldap.MOD_REPLACE, "description", [b"x"])],
            serverctrls=[RequestControl("1.3.6.1.4.1.4203.666.5.12", True, None)] * 2,
        ),
        "relax on a replace of entryCSN (not manageable)": lambda c: c.modify_ext_s(
            person,
            [(ldap.MOD_REPLACE, "entryCSN", [b"20200101000000.000000Z#000000#000#000000"])],
            serverctrls=[RequestControl("1.3.6.1.4.1.4203.666.5.12", True, None)],
        ),
        "replace of modifyTimestamp without relax": modify(
            (ldap.MOD_REPLACE, "modifyTimestamp", [b"19700101000000Z"])
        ),
        "Who am I? with a critical manageDSAit": lambda c: c.extop_s(
            ldap.extop.ExtendedRequest("1.3.6.1.4.1.4203.1.11.3", None),
            serverctrls=[RequestControl("2.16.840.1.113730.3.4.2", True, None)],
        ),
    }


def _answers():
    import ldap

    person = "uid=jdoe,ou=People,dc=example,dc=com"
    return {
        "compare of hasSubordinates (a leaf)": lambda c: c.compare_s(person, "hasSubordinates", b"FALSE"),
        "compare of hasSubordinates (a parent)": lambda c: c.compare_s(
            "ou=People,dc=example,dc=com", "hasSubordinates", b"TRUE"
        ),  # fmt: skip
        "compare of objectClass with a superclass": lambda c: c.compare_s(person, "objectClass", b"top"),
        "compare of objectClass with another class": lambda c: c.compare_s(person, "objectClass", b"device"),
        "compare of objectClass by OID": lambda c: c.compare_s(person, "objectClass", b"2.5.6.6"),
        "search of (objectClass=top)": lambda c: c.search_s(
            person, ldap.SCOPE_BASE, "(objectClass=top)", ["1.1"]
        ),
        "Who am I? as the rootdn, spelled otherwise": lambda c: (
            c.simple_bind_s("CN=admin , DC=EXAMPLE,dc=com", ROOTPW),
            c.whoami_s(),
        )[1],  # fmt: skip
        "Who am I? as a user, spelled otherwise": lambda c: (
            c.simple_bind_s("UID=JDOE, OU=people,dc=example,dc=com", "secret1"),
            c.whoami_s(),
        )[1],  # fmt: skip
    }


@pytest.mark.parametrize("name", list(_answers()))
def test_compares_answer_as_slapd(pair, name):
    """Compares of computed and object class values: slapd's answer."""
    call = _answers()[name]
    slapd, ours = (python_ldap_outcome(server, call) for server in pair)
    assert ours == slapd, (slapd, ours)


@pytest.mark.parametrize("name", list(_requests()))
def test_refused_requests_answer_as_slapd(pair, name):
    """Controls, compares and modifies slapd refuses: the same result code and text from pyldapd, and the
    connection goes on as on slapd's."""
    call = _requests()[name]
    slapd, ours = (python_ldap_outcome(server, call) for server in pair)
    assert slapd[0] != "success", "the corpus holds only refused requests"
    assert ours == slapd, (slapd, ours)


RENAMES = {  # (new RDN, deleteoldrdn): the entry is added as uid=<name> with cn <name>, then renamed
    "to another spelling of the same value": ("UID={NAME}", 1),
    "to a new value, keeping the old": ("uid={name}x", 0),
    "to another type, keeping the old": ("cn=Z{name}", 0),
    "to another type, deleting the old (refused: uid is a MUST)": ("cn=Z{name}", 1),
    "to a multi-valued RDN": ("uid={name}+sn=S{name}", 1),
    "to a type the entry may not hold": ("gidNumber=5", 1),
}


@pytest.mark.parametrize("case", list(RENAMES))
def test_renames_leave_entries_as_slapd(pair, case):
    """A modify DN's RDN values: added under the type's own name, the old ones taken away or kept as slapd does
    it; the entry read back is the same on both servers."""
    import ldap

    new_rdn, delete_old = RENAMES[case]
    name = f"r{list(RENAMES).index(case)}"
    outcomes = []
    for server in pair:
        conn = ldap.initialize(server.url)
        conn.simple_bind_s(ROOTDN, ROOTPW)
        dn = f"uid={name},ou=People,dc=example,dc=com"
        conn.add_s(dn, [("objectClass", [b"account"]), ("uid", [name.encode()])])
        rdn = new_rdn.format(name=name, NAME=name.upper())
        try:
            conn.rename_s(dn, rdn, delold=delete_old)
            dn = f"{rdn},ou=People,dc=example,dc=com"
            outcome: object = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["*"])
        except ldap.LDAPError as exc:
            outcome = (type(exc).__name__, exc.args[0].get("info"))
        outcomes.append(outcome)
        conn.delete_s(dn)
        conn.unbind_s()
    assert outcomes[1] == outcomes[0], outcomes


OPTION_LISTS = [["cn;lang-en"], ["cn;LANG-EN"], ["name;lang-en"], ["cn"], ["description;lang-en;lang-fr"],
                ["description;lang-fr"], ["*", "cn;lang-en"], ["1.1", "sn;lang-de"], ["+", "cn;lang-en"]]  # fmt: skip


def test_attribute_lists_with_options_select_as_slapd(pair):
    """A requested description with options returns only the attributes holding those options (RFC 4512
    2.5.2), under the type and its subtypes; the plain type returns them all."""
    import ldap

    dn = "uid=tagged,ou=People,dc=example,dc=com"
    answers = []
    for server in pair:
        conn = ldap.initialize(server.url)
        conn.simple_bind_s(ROOTDN, ROOTPW)
        conn.add_s(dn, [("objectClass", [b"inetOrgPerson"]), ("uid", [b"tagged"]), ("cn", [b"Tagged"]),
                        ("cn;lang-en", [b"Tagged EN"]), ("sn", [b"T"]), ("sn;lang-de", [b"T DE"]),
                        ("description", [b"plain"]), ("description;lang-en;lang-fr", [b"both"])])  # fmt: skip
        try:
            got = []
            for attrs in OPTION_LISTS:
                found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs)[0][1]
                got.append(sorted((k, sorted(v)) for k, v in found.items()
                                  if k.split(";")[0].lower() in ("cn", "sn", "description", "uid")))  # fmt: skip
            answers.append(got)
        finally:
            conn.delete_s(dn)
            conn.unbind_s()
    assert answers[1] == answers[0]
    assert answers[1][0] == [("cn;lang-en", [b"Tagged EN"])]


TAGGED_SEARCHES = [
    ("(objectClass=*)", []),
    ("(objectClass=*)", ["name"]),
    ("(objectClass=*)", ["name;lang-en-US"]),
    ("(objectClass=*)", ["name;lang-en-"]),
    ("(objectClass=*)", ["sn;lang-"]),
    ("(objectClass=*)", ["sn;LANG-EN-GB;lang-en-us"]),
    ("(objectClass=*)", ["description;lang-e-"]),
    ("(name;lang-en-=Billy Ray)", ["1.1"]),
    ("(sn;lang-en-gb=*)", ["1.1"]),
    ("(cn;lang-en-=Billy Bob)", ["1.1"]),
    ("(description;lang-=*)", ["description"]),
]


def test_language_tags_stored_and_selected_as_slapd(pair):
    """Tags are kept lowercased, once each and sorted (slapd's ad_cname: `SN;lang-en-US;lang-en-GB` reads back
    as `sn;lang-en-gb;lang-en-us`); a language range (`name;lang-en-`, RFC 3866) in an attribute list or a
    filter selects the tags it covers."""
    dn = "cn=Billy Ray,ou=People,dc=example,dc=com"
    ldif = (
        f"dn: {dn}\nchangetype: add\nobjectClass: inetOrgPerson\nobjectClass: extensibleObject\nCN: Billy Ray\nSN: Ray\n"
        "CN;lang-en-US: Billy Ray\nSN;lang-en-US;lang-en-GB: Billy Ray\nname;lang-en-US: Billy Bob\n"
        "description;lang-EN;lang-en: tagged twice\ndescription;lang-zz;lang-y;lang-x: many tags\n"
    )
    slapd, ours = run_both(pair, "ldapmodify", *ADMIN, input=ldif)
    assert (ours.returncode, slapd.returncode) == (0, 0), (slapd.stderr, ours.stderr)
    try:
        for filter_, attrs in TAGGED_SEARCHES:
            slapd, ours = run_both(
                pair, "ldapsearch", *ADMIN, "-LLL", "-b", dn, "-s", "base", filter_, *attrs
            )
            assert ours.returncode == slapd.returncode, (filter_, attrs, slapd.stderr, ours.stderr)
            # attribute names compared as sent, case included
            assert sorted(ours.stdout.splitlines()) == sorted(slapd.stdout.splitlines()), (filter_, attrs)
        # a compare reaches the values of the type's tagged attributes too, and a tag asks for them only
        for assertion in ("sn:Billy Ray", "sn;lang-en-gb:Billy Ray", "sn;lang-de:Billy Ray", "name:Billy Bob",
                          "cn;lang-en-:Billy Ray", "description;lang-en:tagged twice", "sn;lang-en-us:Ray"):  # fmt: skip
            slapd, ours = run_both(pair, "ldapcompare", *ADMIN, dn, assertion)
            assert ours.returncode == slapd.returncode, (assertion, slapd.stdout, ours.stdout)
    finally:
        run_both(pair, "ldapdelete", *ADMIN, dn)


NAME_AND_UID_SEARCHES = [
    "(uniqueMember~=)",
    "(uniqueMember~=dc=example,dc=com)",
    "(uniqueMember~=DC=Example,DC=Com#'1000'B)",
    "(uniqueMember~=dc=example,dc=com#'1'B)",
    "(uniqueMember~=#'0110'B)",
    "(uniqueMember=dc=example,dc=com)",
    "(uniqueMember=dc=example,dc=com#'001000'B)",
    "(uniqueMember=dc=example,dc=com#'1000'B)",
    "(uniqueMember=#'1'B)",
    "(seeAlso=entryUUID=597ae2f6-16a6-1027-98f4-ABCDEFabcdef,dc=example,dc=com)",
]


def test_name_and_uid_and_uuid_values_as_slapd(pair):
    """uniqueMember's optional UID (`dn#'0101'B`): `~=` compares UIDs only when both sides carry one (slapd's
    uniqueMemberMatch); a UUID-valued RDN in a DN value is written lowercased (slapd's UUIDPretty)."""
    dn = "cn=Name and Optional UID,ou=People,dc=example,dc=com"
    ldif = (
        f"dn: {dn}\nchangetype: add\nobjectClass: groupOfUniqueNames\nobjectClass: extensibleObject\n"
        f"cn: Name and Optional UID\nuniqueMember: {dn}\nuniqueMember: #'1'B\nuniqueMember: #'0010'B\n"
        "uniqueMember: dc=example,dc=com#'1000'B\nuniqueMember: dc=example,dc=com#''B\n"
        "seeAlso: entryUUID=597ae2f6-16a6-1027-98f4-ABCDEFabcdef,DC=example,DC=com\n"
    )
    slapd, ours = run_both(pair, "ldapmodify", *ADMIN, input=ldif)
    assert (ours.returncode, slapd.returncode) == (0, 0), (slapd.stderr, ours.stderr)
    try:
        slapd, ours = run_both(pair, "ldapsearch", *ADMIN, "-LLL", "-b", dn, "-s", "base")
        assert ours.stdout == slapd.stdout
        assert "98f4-abcdefabcdef,dc=example,dc=com" in ours.stdout
        for filter_ in NAME_AND_UID_SEARCHES:
            slapd, ours = run_both(
                pair, "ldapsearch", *ADMIN, "-LLL", "-b", "dc=example,dc=com", filter_, "1.1"
            )
            assert ours.returncode == slapd.returncode, (filter_, slapd.stderr, ours.stderr)
            assert canonical(ours.stdout) == canonical(slapd.stdout), filter_
    finally:
        run_both(pair, "ldapdelete", *ADMIN, dn)


def test_certificates_match_as_slapd(pair):
    """userCertificate;binary values (slapd checks their DER shape) and certificateExactMatch assertions, in
    RFC 4523's GSER and the older `serial$issuer` form, by equality, extensible match and compare."""
    import ldap
    from cryptography.x509.oid import NameOID

    from tests.certs import der_certificate

    issuer = [(NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "OpenLDAP Example, Ltd."),
              (NameOID.COMMON_NAME, "Example CA"), (NameOID.EMAIL_ADDRESS, "ca@example.com")]  # fmt: skip
    certificates = [der_certificate(2, issuer), der_certificate(128, issuer)]
    ca = "EMAIL=ca@example.com,CN=Example CA,O=Openldap Example\\5C, Ltd.,C=US"
    dn = "uid=certified,ou=People,dc=example,dc=com"
    filters = [
        "(userCertificate;binary=*)",
        "(userCertificate=*)",
        f"(userCertificate=2${ca})",
        f"(userCertificate=3${ca})",
        f'(userCertificate={{ serialNumber 128, issuer "{ca}" }})',
        f'(userCertificate={{ issuer rdnSequence:"{ca}", serialNumber 0x80 }})',
        f"(userCertificate:certificateExactMatch:=2${ca})",
        f'(userCertificate:2.5.13.34:={{ issuer "{ca}", serialNumber 2 }})',
        "(userCertificate=2$not a DN)",
        '(!(userCertificate={ serialNumber 02, issuer "cn=x" }))',
    ]
    outcomes = []
    for server in pair:
        conn = ldap.initialize(server.url)
        conn.simple_bind_s(ROOTDN, ROOTPW)
        try:
            refused = []
            for junk in (b"2$cn=Example CA", certificates[0][:-1]):
                try:
                    conn.add_s(dn, [("objectClass", [b"inetOrgPerson"]), ("cn", [b"c"]), ("sn", [b"c"]),
                                    ("userCertificate;binary", [junk])])  # fmt: skip
                    conn.delete_s(dn)
                    refused.append("accepted")
                except ldap.LDAPError as exc:
                    refused.append(type(exc).__name__)
            conn.add_s(dn, [("objectClass", [b"inetOrgPerson"]), ("cn", [b"c"]), ("sn", [b"c"]),
                            ("userCertificate;binary", certificates)])  # fmt: skip
            found = [
                sorted(d for d, _ in conn.search_s("dc=example,dc=com", ldap.SCOPE_SUBTREE, f, ["1.1"]))
                for f in filters
            ]
            compared = []
            for value in (f"2${ca}", f"3${ca}"):
                try:
                    compared.append(
                        conn.compare_s(dn, "userCertificate", value.replace("\\5C", "\\").encode())
                    )
                except ldap.LDAPError as exc:
                    compared.append(type(exc).__name__)
            outcomes.append((refused, found, compared))
        finally:
            try:
                conn.delete_s(dn)
            except ldap.NO_SUCH_OBJECT:
                pass
            conn.unbind_s()
    assert outcomes[1] == outcomes[0]
    assert outcomes[1][1][2] == [dn]


RELAX = "1.3.6.1.4.1.4203.666.5.12"
RELAX_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.99999.77.1 NAME 'relaxTestObsolete' OBSOLETE
    EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.77.2 NAME 'relaxTestObsoleteAux' OBSOLETE AUXILIARY MAY relaxTestObsolete )
objectclass ( 1.3.6.1.4.1.99999.77.3 NAME 'relaxTestPerson' SUP inetOrgPerson STRUCTURAL )
"""
WRITER = ("uid=jdoe,ou=People,dc=example,dc=com", "secret1")  # write access everywhere
MANAGER = ("uid=asmith,ou=People,dc=example,dc=com", "secret2")  # and manage on modifyTimestamp and ou=Groups
RELAX_ACCESS = f"""\
access to attrs=userPassword by anonymous auth by * none
access to attrs=modifyTimestamp by dn.exact="{MANAGER[0]}" manage by * write
access to dn.subtree="ou=Groups,dc=example,dc=com" attrs=entry by dn.exact="{MANAGER[0]}" manage by * write
access to * by * write
"""


@pytest.fixture(scope="module")
def relax_pair(tmp_path_factory):
    """slapd and pyldapd with OBSOLETE schema elements and access rules that give `manage` to one user."""
    root = tmp_path_factory.mktemp("relax")
    schema = root / "relax.schema"
    schema.write_text(RELAX_SCHEMA)
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf = slapd_conf(root / name / "db", modules=True, extra_global=f"include {schema}",
                              extra_db=RELAX_ACCESS)  # fmt: skip
            server = start(root / name, conf, name=name)
            servers.append(server)
            result = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=BASE_LDIF)
            assert result.returncode == 0, f"{name}: {result.stderr}\n{server.log()}"
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def _relax_steps():
    """(who, what) in order: writes with and without the Relax Rules control; each outcome is compared."""
    import ldap
    from ldap.controls import RequestControl

    person = WRITER[0]
    relax = [RequestControl(RELAX, True, None)]

    def modify(dn, changes, controls=()):
        return lambda c: c.modify_ext_s(dn, changes, serverctrls=list(controls))

    created = "cn=restored,dc=example,dc=com"
    return [
        (
            "writer",
            "obsolete class",
            modify(person, [(ldap.MOD_ADD, "objectClass", [b"relaxTestObsoleteAux"])]),
        ),
        ("writer", "obsolete type", modify(person, [(ldap.MOD_ADD, "relaxTestObsolete", [b"TRUE"])])),
        (
            "writer",
            "structural class change",
            modify(person, [(ldap.MOD_ADD, "objectClass", [b"relaxTestPerson"])]),
        ),
        (
            "writer",
            "obsolete type replaced by nothing",
            modify(person, [(ldap.MOD_REPLACE, "relaxTestObsolete", [])]),
        ),  # fmt: skip
        (
            "writer",
            "obsolete class and type, relaxed",
            modify(
                person,
                [
                    (ldap.MOD_ADD, "objectClass", [b"relaxTestObsoleteAux"]),
                    (ldap.MOD_ADD, "relaxTestObsolete", [b"TRUE"]),
                ],
                relax,
            ),
        ),  # fmt: skip
        (
            "writer",
            "an entry of an obsolete class, unrelaxed",
            modify(person, [(ldap.MOD_ADD, "description", [b"x"])]),
        ),  # fmt: skip
        (
            "writer",
            "structural class change, relaxed",
            modify(person, [(ldap.MOD_ADD, "objectClass", [b"relaxTestPerson"])], relax),
        ),
        (
            "writer",
            "modifyTimestamp, relaxed, without manage",
            modify(person, [(ldap.MOD_REPLACE, "modifyTimestamp", [b"19700101000000Z"])], relax),
        ),
        (
            "manager",
            "modifyTimestamp, relaxed, with manage",
            modify(person, [(ldap.MOD_REPLACE, "modifyTimestamp", [b"19700101000000Z"])], relax),
        ),
        (
            "writer",
            "creatorsName, relaxed, with write only",
            modify(person, [(ldap.MOD_REPLACE, "creatorsName", [b"cn=someone"])], relax),
        ),
        (
            "writer",
            "delete, relaxed, without manage on the entry",
            lambda c: c.delete_ext_s("cn=staff,ou=Groups,dc=example,dc=com", serverctrls=relax),
        ),
        (
            "manager",
            "delete, relaxed, with manage on the entry",
            lambda c: c.delete_ext_s("cn=staff,ou=Groups,dc=example,dc=com", serverctrls=relax),
        ),
        (
            "root",
            "add with the operational attributes of another server, relaxed",
            lambda c: c.add_ext_s(
                created,
                [
                    ("objectClass", [b"device"]),
                    ("cn", [b"restored"]),
                    ("creatorsName", [b"cn=Someone"]),
                    ("createTimestamp", [b"19700101000000Z"]),
                    ("modifiersName", [b"cn=Someone Else"]),
                    ("modifyTimestamp", [b"19700102000000Z"]),
                    ("entryUUID", [b"badbadef-dbad-1029-92f7-badbadbadbad"]),
                ],
                serverctrls=relax,
            ),
        ),  # fmt: skip
        (
            "root",
            "modifiersName kept by the modify that sets it, relaxed",
            modify(
                created,
                [
                    (ldap.MOD_REPLACE, "modifiersName", [b"cn=Third"]),
                    (ldap.MOD_REPLACE, "description", [b"d"]),
                ],
                relax,
            ),
        ),  # fmt: skip
        (
            "root",
            "search with a non-critical relax (not looked at)",
            lambda c: c.search_ext_s(
                created,
                ldap.SCOPE_BASE,
                "(objectClass=*)",
                ["cn"],
                serverctrls=[RequestControl(RELAX, False, None)],
            ),
        ),  # fmt: skip
    ]


def test_relax_rules_as_slapd(relax_pair):
    """The Relax Rules control (slapd's relax): OBSOLETE schema elements, a structural class change and the
    manageable operational types, each gated by `manage` as slapd gates it; the entries written read back the
    same from both servers."""
    import ldap

    identities = {"writer": WRITER, "manager": MANAGER, "root": (ROOTDN, ROOTPW)}
    outcomes: list[list] = []
    for server in relax_pair:
        got = []
        for who, what, call in _relax_steps():
            conn = ldap.initialize(server.url)
            conn.simple_bind_s(*identities[who])
            try:
                result = call(conn)
                got.append((what, "success", len(result) if isinstance(result, list) else None))
            except ldap.LDAPError as exc:
                got.append((what, type(exc).__name__, exc.args[0].get("info")))
            finally:
                conn.unbind_s()
        conn = ldap.initialize(server.url)
        conn.simple_bind_s(ROOTDN, ROOTPW)
        attrs = ["*", "structuralObjectClass", "modifyTimestamp", "creatorsName", "modifiersName"]
        person = conn.search_s(WRITER[0], ldap.SCOPE_BASE, "(objectClass=*)", attrs)[0][1]
        restored = conn.search_s("cn=restored,dc=example,dc=com", ldap.SCOPE_BASE, "(objectClass=*)",
                                 [*attrs, "createTimestamp", "entryUUID"])[0][1]  # fmt: skip
        conn.unbind_s()
        got.append(("person", sorted((k.lower(), sorted(v)) for k, v in person.items())))
        got.append(
            (
                "restored",
                sorted((k.lower(), sorted(v)) for k, v in restored.items() if k != "modifyTimestamp"),
            )
        )
        outcomes.append(got)
    slapd, ours = outcomes
    for slapd_step, our_step in zip(slapd, ours, strict=True):
        assert our_step == slapd_step
    assert ("structuralobjectclass", [b"relaxTestPerson"]) in ours[-2][1]


COPY_ACCESS = """\
updatedn "cn=replicator,dc=example,dc=com"
updateref ldap://provider.example/
"""


@pytest.fixture(scope="module")
def copy_pair(tmp_path_factory):
    """slapd and pyldapd each holding a copy (a shadow: `updatedn`, empty) that refers updates to a provider."""
    root = tmp_path_factory.mktemp("copy")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf = slapd_conf(root / name / "db", modules=True, extra_db=COPY_ACCESS)
            servers.append(start(root / name, conf, name=name))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def test_dont_use_copy_on_a_copy_as_slapd(copy_pair):
    """RFC 6171: on a database holding a copy, a search with dontUseCopy is referred to the original (updateref,
    with the request's DN and scope), a compare is refused; without the control the copy answers."""
    import ldap
    from ldap.controls import RequestControl

    copy = [RequestControl("1.3.6.1.1.22", True, None)]
    calls = {
        "search": lambda c: c.search_ext_s(
            "ou=People,dc=example,dc=com", ldap.SCOPE_ONELEVEL, "(objectClass=*)", ["1.1"], serverctrls=copy
        ),  # fmt: skip
        "compare": lambda c: c.compare_ext_s(
            "ou=People,dc=example,dc=com", "ou", b"People", serverctrls=copy
        ),
        "search without the control": lambda c: c.search_s("dc=example,dc=com", ldap.SCOPE_BASE),
    }
    seen = []
    for name, call in calls.items():
        answers = []
        for server in copy_pair:
            conn = ldap.initialize(server.url)
            conn.set_option(ldap.OPT_REFERRALS, 0)  # the provider named is not there: not chased
            try:
                call(conn)
                answers.append("success")
            except ldap.LDAPError as exc:
                info = exc.args[0]
                answers.append((type(exc).__name__, info.get("info"), info.get("matched")))
            finally:
                conn.unbind_s()
        assert answers[1] == answers[0], (name, answers)
        seen.append(answers[1])
    assert "ldap://provider.example/ou=People,dc=example,dc=com??one" in str(seen[0])
    assert seen[1] == ("UNWILLING_TO_PERFORM", "copy not used", None)


SUBENTRY_SEARCHES = [  # (base, scope, extra ldapsearch flags)
    ("dc=example,dc=com", "sub", []),
    ("dc=example,dc=com", "sub", ["-E", "subentries=true"]),
    ("dc=example,dc=com", "sub", ["-E", "!subentries=false"]),
    ("dc=example,dc=com", "one", []),
    ("dc=example,dc=com", "one", ["-E", "subentries=true"]),
    ("cn=sub,dc=example,dc=com", "base", []),
    ("cn=sub,dc=example,dc=com", "base", ["-E", "subentries=false"]),
    ("cn=sub,dc=example,dc=com", "base", ["-E", "subentries=true"]),
    ("dc=example,dc=com", "base", ["-E", "subentries=true"]),
    ("dc=example,dc=com", "base", ["-E", "subentries=false"]),
    ("dc=example,dc=com", "sub", ["-E", "pr=2/noprompt", "-E", "subentries=true"]),
    ("dc=example,dc=com", "sub", ["-E", "pr=3/noprompt"]),
]


def test_subentries_are_seen_as_slapd_shows_them(pair):
    """RFC 3672 subentries (back-mdb): hidden from one-level and subtree searches unless the Subentries control
    says TRUE, which then shows them alone; a base search sees one unless the control says FALSE. The control's
    checks (search only, once, a BOOLEAN) answer as slapd's."""
    subentry = "dn: cn=sub,dc=example,dc=com\nobjectClass: top\nobjectClass: subentry\ncn: sub\nsubtreeSpecification: {}\n"
    slapd, ours = run_both(pair, "ldapadd", *ADMIN, input=subentry)
    assert slapd.returncode == ours.returncode == 0, (slapd.stderr, ours.stderr)
    try:
        for base, scope, flags in SUBENTRY_SEARCHES:
            slapd, ours = run_both(pair, "ldapsearch", "-x", "-LLL", "-b", base, "-s", scope, *flags,
                                   "(objectClass=*)", "1.1")  # fmt: skip
            assert ours.returncode == slapd.returncode, (base, scope, flags, slapd.stderr, ours.stderr)
            assert canonical(ours.stdout) == canonical(slapd.stdout), (base, scope, flags)
        import ldap
        from ldap.controls import LDAPControl
        from ldap.controls.simple import BooleanControl

        twice = [BooleanControl("1.3.6.1.4.1.4203.1.10.1", True, True)] * 2
        bogus = [LDAPControl("1.3.6.1.4.1.4203.1.10.1", True, b"\x04\x01\xff")]
        answers = []
        for server in pair:
            conn = ldap.initialize(server.url)
            conn.simple_bind_s(ROOTDN, ROOTPW)
            seen = []
            for controls in (twice, bogus):
                try:
                    conn.search_ext_s("dc=example,dc=com", ldap.SCOPE_SUBTREE, "(cn=sub)", ["1.1"],
                                      serverctrls=controls)  # fmt: skip
                    seen.append("found")
                except ldap.LDAPError as exc:
                    seen.append((type(exc).__name__, exc.args[0].get("info")))
            try:  # search only: critical elsewhere, unavailable
                conn.compare_ext_s("cn=sub,dc=example,dc=com", "cn", b"sub", serverctrls=twice[:1])
                seen.append("compared")
            except ldap.LDAPError as exc:
                seen.append((type(exc).__name__, exc.args[0].get("info")))
            conn.unbind_s()
            answers.append(seen)
        assert answers[0] == answers[1], answers
        assert answers[0][0] == ("PROTOCOL_ERROR", "subentries control specified multiple times")
        found = run_both(pair, "ldapsearch", "-x", "-LLL", "-b", "", "-s", "base", "supportedControl")
        assert all("1.3.6.1.4.1.4203.1.10.1" in result.stdout for result in found)
    finally:
        slapd, ours = run_both(pair, "ldapdelete", *ADMIN, "cn=sub,dc=example,dc=com")
        assert slapd.returncode == ours.returncode == 0


def test_attributes_keep_slapds_order_across_writes(pair):
    """slapd keeps an entry's attributes in the order written: one added or replaced goes to the end, after the
    operational ones the add stamped, and each write moves its entryCSN, modifiersName and modifyTimestamp to the
    end again. Read back with * and + (and with * and two of them), pyldapd's come in the same order."""
    dn = f"uid=order,{P}"
    add = f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: order\ncn: Order\nsn: Order\n"
    writes = [
        add,
        f"dn: {dn}\nchangetype: modify\nadd: description\ndescription: added later\n",
        f"dn: {dn}\nchangetype: modify\nreplace: cn\ncn: Order Again\n-\nadd: mail\nmail: o@example.com\n",
        f"dn: {dn}\nchangetype: modify\nreplace: description\ndescription: replaced\n",
    ]

    def names(result) -> list[str]:
        return [
            line.split(":", 1)[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")
        ]

    try:
        for ldif in writes:
            slapd, ours = run_both(pair, "ldapmodify", *ADMIN, "-a", input=ldif)
            assert slapd.returncode == ours.returncode == 0, (ldif, slapd.stderr, ours.stderr)
            for attrs in (["*", "+"], ["*", "creatorsName", "modifiersName"]):
                slapd, ours = run_both(pair, "ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-b", dn, "-s",
                                       "base", "(objectClass=*)", *attrs)  # fmt: skip
                assert names(ours) == names(slapd), (ldif, attrs)
        moved = f"cn=Order Moved,{P}"  # a modrdn adds the new RDN's value to cn, and stamps like a modify
        slapd, ours = run_both(pair, "ldapmodify", *ADMIN,
                               input=f"dn: {dn}\nchangetype: modrdn\nnewrdn: cn=Order Moved\ndeleteoldrdn: 0\n")  # fmt: skip
        assert slapd.returncode == ours.returncode == 0, (slapd.stderr, ours.stderr)
        dn = moved
        for attrs in (["*", "+"], ["*", "creatorsName", "modifiersName"]):
            slapd, ours = run_both(pair, "ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-b", dn, "-s", "base",
                                   "(objectClass=*)", *attrs)  # fmt: skip
            assert names(ours) == names(slapd), ("modrdn", attrs, ours.stdout, slapd.stdout)
        read = names(ours)  # (the last read: * creatorsName modifiersName)
        assert (
            read.index("creatorsName")
            < read.index("mail")
            < read.index("description")
            < read.index("modifiersName")
        )
    finally:
        run_both(pair, "ldapdelete", *ADMIN, dn)


def test_operational_attributes_come_in_slapds_order(pair):
    """The attributes slapd computes come last, in its order (entryDN, subschemaSubentry, hasSubordinates), on
    entries, the root DSE and cn=Subschema alike; a suffix without syncprov shows no contextCSN, in either."""

    def names(result) -> list[str]:
        lines = [line for line in result.stdout.splitlines() if line and not line.startswith(" ")]
        order = [line.split(":", 1)[0] for line in lines]
        return [name for index, name in enumerate(order) if name not in order[:index]]

    for base, attrs in (("", ["+"]), ("", ["*", "+"]), ("dc=example,dc=com", ["+"]),
                        (f"uid=jdoe,{P}", ["+"]), (f"uid=jdoe,{P}", ["hasSubordinates", "subschemaSubentry", "entryDN"]),
                        ("cn=Subschema", ["+"]), ("cn=Subschema", ["entryDN", "subschemaSubentry"])):  # fmt: skip
        slapd, ours = run_both(pair, "ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-b", base, "-s", "base",
                               "(objectClass=*)", *attrs)  # fmt: skip
        assert slapd.returncode == ours.returncode == 0, (base, attrs)
        assert names(ours) == names(slapd), (base, attrs)
