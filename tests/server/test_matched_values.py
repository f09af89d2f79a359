"""The matchedValues control (RFC 3876), side by side with Debian's slapd on one slapd.conf: only the values the
ValuesReturnFilter selects come back, and only those the requester may read (slapd checks `read` on each value
before the filter: the filter's items reveal nothing hidden). Same request -> same result code, text, entries and
values."""

from __future__ import annotations

import ldap
import pytest
from ldap.controls import RequestControl

from tests.data import BASE_LDIF
from tests.server.test_differential import canonical
from tests.servers import ROOTDN, ROOTPW, ldap_tool, slapd_and_pyldapd

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
HIDDEN = f"ou=Hidden,{SUFFIX}"
JDOE, ASMITH, BWONG = (f"uid={u},{PEOPLE}" for u in ("jdoe", "asmith", "bwong"))
H1 = f"uid=h1,{HIDDEN}"
MV_OID = "1.2.826.0.1.3344810.2.3"

# userPassword for self and auth only, a subtree nobody may read, one value of jdoe's cn for users only
ACCESS = f"""
access to attrs=userPassword by self write by anonymous auth by * none
access to dn.subtree="{HIDDEN}" by users =w by * none
access to dn.exact="{JDOE}" attrs=cn val="Johnny" by users read by * none
access to * by * read
overlay syncprov
"""
GLOBAL = "moduleload syncprov"

SETUP = (
    f"dn: {BWONG}\nchangetype: modify\nadd: userPassword\nuserPassword: secret4\n"
    "-\nadd: cn;lang-en\ncn;lang-en: Robert Wong\n\n"
    f"dn: {HIDDEN}\nchangetype: add\nobjectClass: organizationalUnit\nou: Hidden\n\n"
    f"dn: {H1}\nchangetype: add\nobjectClass: inetOrgPerson\ncn: Hidden One\nsn: One\nuid: h1\n"
    "mail: h1@example.com\nuserPassword: hidden1\ndescription: secret plans\n\n"
)

IDENTITIES = {
    "anonymous": ["-x"],
    "jdoe": ["-x", "-D", JDOE, "-w", "secret1"],
    "bwong": ["-x", "-D", BWONG, "-w", "secret4"],
    "rootdn": ["-x", "-D", ROOTDN, "-w", ROOTPW],
}
BINDS = {"jdoe": (JDOE, "secret1"), "bwong": (BWONG, "secret4"), "rootdn": (ROOTDN, ROOTPW)}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with slapd_and_pyldapd(tmp_path_factory.mktemp("matched-values"), extra_global=GLOBAL, extra_db=ACCESS,
                           loads=[(BASE_LDIF, "ldapadd"), (SETUP, "ldapmodify")]) as servers:  # fmt: skip
        yield servers


def search_alike(pair, *args: str) -> list:
    slapd, ours = [ldap_tool("ldapsearch", "-LLL", "-H", server.url, *args) for server in pair]
    assert ours.returncode == slapd.returncode, (args, slapd.stderr, ours.stderr)
    assert ours.stderr.strip() == slapd.stderr.strip(), args
    assert canonical(ours.stdout) == canonical(slapd.stdout), (args, slapd.stdout, ours.stdout)
    return canonical(slapd.stdout)


# (who, matchedValues filter, search filter, attributes): each shows slapd's answer
CASES = [
    ("anonymous", "(mail=*)", "(objectClass=*)", []),
    ("anonymous", "(cn=J*)", "(objectClass=person)", []),
    ("jdoe", "(cn=J*)", "(objectClass=person)", []),  # users may read jdoe's "Johnny"
    ("anonymous", "(name=Johnny)", "(uid=jdoe)", []),  # a subtype of the asserted type
    ("jdoe", "(name=Johnny)", "(uid=jdoe)", []),
    ("bwong", "(cn;lang-en=*)", "(uid=bwong)", []),  # options: only cn;lang-en
    ("bwong", "(cn=Robert Wong)", "(uid=bwong)", []),  # cn's values include cn;lang-en's
    ("anonymous", "(objectClass=person)", "(uid=*)", []),  # objectSubClassMatch: inetOrgPerson is a person
    ("anonymous", "(userPassword=*)", "(objectClass=*)", []),  # auth only: no value for anyone
    ("bwong", "(userPassword=*)", "(objectClass=*)", []),  # bwong reads his own
    ("bwong", "(userPassword=secret4)", "(uid=bwong)", []),
    ("anonymous", "(userPassword=secret1)", "(uid=jdoe)", []),  # no oracle: jdoe's password stays hidden
    ("jdoe", "(description=*)", "(objectClass=*)", []),  # the hidden subtree stays hidden
    ("rootdn", "(description=*)", "(objectClass=*)", []),
    ("rootdn", "(userPassword=*)", "(uid=*)", []),
    ("anonymous", "(uidNumber>=1005)", "(objectClass=posixAccount)", []),
    ("anonymous", "(uidNumber<=1001)", "(objectClass=posixAccount)", []),
    ("anonymous", "(cn~=Johny)", "(uid=jdoe)", []),  # approxMatch selects nothing in slapd
    ("anonymous", "(cn:caseExactMatch:=Johnny)", "(uid=jdoe)", []),
    ("jdoe", "(cn:caseExactMatch:=Johnny)", "(uid=jdoe)", []),
    ("anonymous", "(:caseIgnoreMatch:=smith)", "(uid=*)", []),  # every attribute the rule applies to
    ("anonymous", "(foo=*)", "(uid=jdoe)", []),  # an unknown type selects nothing; slapd's text stays
    ("anonymous", "(foo=x)(cn=Johnny)", "(uid=jdoe)", []),
    ("anonymous", "(cn:1.2.3:=x)", "(uid=jdoe)", []),
    ("anonymous", "(foo=*)(mail=*)", "(uid=*)", ["-E", "pr=2/noprompt"]),
    ("anonymous", "(mail=*)", "(uid=jdoe)", ["cn", "mail"]),
    ("anonymous", "(entryDN=*)", "(uid=jdoe)", ["+"]),  # operational attributes, computed ones too
    ("anonymous", "(mail=*)", "(uid=jdoe)", ["+"]),
    ("anonymous", "(mail=*)", "(uid=jdoe)", ["*", "+"]),
    ("anonymous", "(mail=*)", "(uid=jdoe)", ["-A"]),  # types only: the filter does not apply
]


@pytest.mark.parametrize(("who", "mv", "filt", "attrs"), CASES)
def test_matched_values_like_slapd(pair, who: str, mv: str, filt: str, attrs: list[str]) -> None:
    flags = [a for a in attrs if a.startswith("-") or a.startswith("pr=")]
    names = [a for a in attrs if a not in flags]
    entries = search_alike(pair, *IDENTITIES[who], *flags, "-E", f"!mv={mv}", "-b", SUFFIX, filt, *names)
    assert entries, "the case must return entries to compare"


def test_matched_values_filters_values(pair) -> None:
    """What slapd answers, stated: only the matching values, no attribute without one."""
    entries = search_alike(pair, *IDENTITIES["anonymous"], "-E", "!mv=(cn=J*)", "-b", JDOE, "-s", "base")
    assert entries == [(f"dn: {JDOE}", ("cn: John Smith",))]
    entries = search_alike(pair, *IDENTITIES["jdoe"], "-E", "!mv=(cn=J*)", "-b", JDOE, "-s", "base")
    assert entries == [(f"dn: {JDOE}", ("cn: John Smith", "cn: Johnny"))]


def test_matched_values_paged_and_sync(pair) -> None:
    for extra in (["-E", "pr=2/noprompt"], ["-E", "sync=ro"]):
        search_alike(pair, *IDENTITIES["jdoe"], *extra, "-E", "!mv=(cn=J*)", "-b", PEOPLE, "(objectClass=*)")
        search_alike(pair, *IDENTITIES["anonymous"], *extra, "-E", "!mv=(userPassword=*)", "-b", SUFFIX,
                     "(objectClass=*)", "userPassword", "uid")  # fmt: skip


def raw(server, who: str, controls: list[RequestControl], op: str = "search", attrs: tuple = ("cn", "mail")):
    """(result name, info or entries) of one operation with these controls, over python-ldap."""
    conn = ldap.initialize(server.url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.set_option(ldap.OPT_TIMEOUT, 10)
    try:
        if who != "anonymous":
            conn.simple_bind_s(*BINDS[who])
        if op == "search":
            found = conn.search_ext_s(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=jdoe)", list(attrs),
                                      serverctrls=controls)  # fmt: skip
            return "success", sorted((dn, sorted((k, sorted(v)) for k, v in a.items())) for dn, a in found)
        if op == "compare":
            same = conn.compare_ext_s(JDOE, "cn", b"Johnny", serverctrls=controls)
            return ("compareTrue" if same else "compareFalse"), None
        else:
            conn.modify_ext_s(JDOE, [(ldap.MOD_REPLACE, "description", [b"x"])], serverctrls=controls)
        return "success", None
    except ldap.SERVER_DOWN:
        return "disconnected", None
    except ldap.LDAPError as exc:
        return type(exc).__name__, exc.args[0].get("info", "")
    finally:
        conn.unbind_s()


def raw_alike(
    pair, who: str, controls: list[RequestControl], op: str = "search", attrs: tuple = ("cn", "mail")
):
    slapd, ours = (raw(server, who, controls, op, attrs) for server in pair)
    assert ours == slapd, (controls, op)
    return slapd


def mv(value: bytes | None, critical: bool = True) -> RequestControl:
    return RequestControl(MV_OID, critical, value)


# (mail=*) as BER
MAIL_PRESENT = bytes.fromhex("3006") + bytes.fromhex("87046d61696c")


def test_matched_values_raw_values(pair) -> None:
    """Encodings ldapsearch does not send: an empty filter (no filtering in slapd), an item of no simple choice
    (it selects nothing), two items."""
    everything = raw_alike(pair, "rootdn", [])
    assert raw_alike(pair, "rootdn", [mv(bytes.fromhex("3000"))]) == everything
    # an And of (cn=*) (mail=*) as the only item
    and_only = b"\x30\x0c\xa0\x0a\x87\x02cn\x87\x04mail"
    got = raw_alike(pair, "rootdn", [mv(and_only)])
    assert got == ("success", [(JDOE, [])])
    two = b"\x30\x12\x87\x04mail\xa3\x0a\x04\x02cn\x04\x04John"
    raw_alike(pair, "rootdn", [mv(two)])
    # an operational attribute slapd computes comes with no value rather than not at all
    computed = raw_alike(pair, "anonymous", [mv(MAIL_PRESENT)], attrs=("hasSubordinates", "entryDN", "mail"))
    assert computed[1] == [
        (JDOE, [("entryDN", []), ("hasSubordinates", []), ("mail", [b"john.smith@example.com"])])
    ]
    everything_operational = raw_alike(pair, "anonymous", [mv(MAIL_PRESENT)], attrs=("+",))
    assert everything_operational[1] == [(JDOE, [("entryDN", []), ("hasSubordinates", []),
                                                 ("subschemaSubentry", [])])]  # fmt: skip
    assert raw_alike(pair, "anonymous", [mv(MAIL_PRESENT, critical=False)])[1] == [
        (JDOE, [("mail", [b"john.smith@example.com"])])
    ]


def test_matched_values_refused_like_slapd(pair) -> None:
    """Absent or empty value: protocolError with slapd's text; twice: protocolError; a value that does not
    decode: the connection ends; on another operation: 12 when critical, ignored otherwise."""
    assert raw_alike(pair, "rootdn", [mv(None)])[0] == "PROTOCOL_ERROR"
    assert raw_alike(pair, "rootdn", [mv(b"")])[0] == "PROTOCOL_ERROR"
    assert raw_alike(pair, "rootdn", [mv(MAIL_PRESENT), mv(MAIL_PRESENT)])[0] == "PROTOCOL_ERROR"
    assert raw_alike(pair, "rootdn", [mv(b"\x04\x02ab")])[0] in ("disconnected", "PROTOCOL_ERROR")
    assert (
        raw_alike(pair, "rootdn", [mv(b"\x30\x04\xa3\x02\x04\x00")])[0] == "PROTOCOL_ERROR"
    )  # notice of disconnection
    # an item that overruns the list ends it: no item, no filtering
    assert raw_alike(pair, "rootdn", [mv(b"\x30\x03\x87\x05a")]) == raw_alike(pair, "rootdn", [])
    assert raw_alike(pair, "rootdn", [mv(MAIL_PRESENT)], "compare")[0] == "UNAVAILABLE_CRITICAL_EXTENSION"
    assert raw_alike(pair, "rootdn", [mv(MAIL_PRESENT)], "modify")[0] == "UNAVAILABLE_CRITICAL_EXTENSION"
    assert raw_alike(pair, "rootdn", [mv(MAIL_PRESENT, critical=False)], "compare")[0] == "compareTrue"
    assert raw_alike(pair, "rootdn", [mv(MAIL_PRESENT, critical=False)], "modify")[0] == "success"


def test_matched_values_in_root_dse(pair) -> None:
    for server in pair:
        out = ldap_tool(
            "ldapsearch", "-LLL", "-x", "-H", server.url, "-b", "", "-s", "base", "supportedControl"
        )
        assert f"supportedControl: {MV_OID}" in out.stdout.splitlines(), server.name


def test_matched_values_in_cn_config(tmp_path) -> None:
    """cn=config over ldapi, with the config schema's types: the values slapd returns."""
    from tests.server.test_cnconfig import Node, start_slapd_with_cn_config

    node = Node(tmp_path, "py", "mdb")
    node.start()
    (tmp_path / "s").mkdir()
    slapd, slapd_ldapi, _ = start_slapd_with_cn_config(tmp_path / "s")
    try:
        for mv_filter in ("(objectClass=olcGlobal)", "(cn=*)", "(objectClass=olcGlobal)(cn=config)"):
            out = []
            for ldapi in (slapd_ldapi, node.ldapi):
                result = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", ldapi, "-LLL", "-b", "cn=config",
                                   "-s", "base", "-E", f"!mv={mv_filter}")  # fmt: skip
                assert result.returncode == 0, result.stderr
                out.append(canonical(result.stdout))
            assert out[1] == out[0], mv_filter
        assert out[0] == [("dn: cn=config", ("cn: config", "objectclass: olcGlobal"))]
    finally:
        slapd.stop()
        node.stop()
