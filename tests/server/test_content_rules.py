"""DIT content rules (RFC 4512 4.1.6) as slapd has them, side by side with Debian's slapd: the same rules (from
slapd.conf's `ditcontentrule`, and from olcDitContentRules over cn=config), the same adds, modifies and renames,
the same result codes and texts (slapd's entry_schema_check), the same dITContentRules in cn=Subschema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.data import BASE_LDIF
from tests.server.test_cnconfig import Node, start_slapd_with_cn_config
from tests.servers import ROOTDN, ROOTPW, SUFFIX, ldap_tool, on_both, slapd_and_pyldapd, slapd_conf

PEOPLE = f"ou=People,{SUFFIX}"
RULES = """\
ditcontentrule ( 2.5.6.5 NAME 'organizationalUnit' DESC 'units' MAY mail NOT telephoneNumber )
ditcontentrule ( 2.5.6.7 NAME ( 'organizationalPerson' 'orgPersonRule' ) AUX ( posixAccount $ shadowAccount )
  MUST description NOT title )
ditcontentrule ( 2.5.6.9 NAME 'groupOfNames' )
"""

PERSON = f"""dn: cn=op1,{PEOPLE}
objectClass: organizationalPerson
objectClass: posixAccount
cn: op1
sn: One
uid: op1
uidNumber: 2001
gidNumber: 100
homeDirectory: /home/op1
"""

# (tool, LDIF): each outcome (exit status and the server's text) must be slapd's
REQUESTS = [
    ("ldapadd", PERSON + "description: has the rule's MUST\n"),
    ("ldapadd", PERSON.replace("op1", "op2")),  # no description: the rule's MUST
    (
        "ldapadd",
        PERSON.replace("op1", "op3") + "description: x\nobjectClass: extensibleObject\n",
    ),  # AUX not listed
    ("ldapadd", PERSON.replace("op1", "op4") + "description: x\ntitle: Boss\n"),  # NOT
    (
        "ldapadd",
        f"dn: ou=Sales,{SUFFIX}\nobjectClass: organizationalUnit\nou: Sales\nmail: sales@example.com\n",
    ),
    ("ldapadd", f"dn: ou=Desk,{SUFFIX}\nobjectClass: organizationalUnit\nou: Desk\ntelephoneNumber: 1\n"),
    (
        "ldapadd",
        f"dn: ou=Dc,{SUFFIX}\nobjectClass: organizationalUnit\nobjectClass: dcObject\nou: Dc\ndc: x\n",
    ),
    (
        "ldapadd",
        f"dn: cn=g,{SUFFIX}\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: g\n"
        f"member: {ROOTDN}\n",
    ),
    ("ldapmodify", f"dn: cn=op1,{PEOPLE}\nchangetype: modify\ndelete: description\n"),
    ("ldapmodify", f"dn: cn=op1,{PEOPLE}\nchangetype: modify\nadd: title\ntitle: Boss\n"),
    (
        "ldapmodify",
        f"dn: cn=op1,{PEOPLE}\nchangetype: modify\nadd: objectClass\nobjectClass: shadowAccount\n",
    ),
    (
        "ldapmodify",
        f"dn: cn=op1,{PEOPLE}\nchangetype: modify\nadd: objectClass\nobjectClass: dcObject\n"
        "-\nadd: dc\ndc: y\n",
    ),
    ("ldapmodify", f"dn: ou=Sales,{SUFFIX}\nchangetype: modify\nreplace: mail\nmail: s@example.com\n"),
    ("ldapmodify", f"dn: ou=People,{SUFFIX}\nchangetype: modify\nadd: telephoneNumber\ntelephoneNumber: 2\n"),
    ("ldapmodify", f"dn: cn=op1,{PEOPLE}\nchangetype: modrdn\nnewrdn: title=Boss\ndeleteoldrdn: 0\n"),
    ("ldapmodify", f"dn: cn=op1,{PEOPLE}\nchangetype: modrdn\nnewrdn: description=Pilot\ndeleteoldrdn: 1\n"),
    (
        "ldapmodify",
        f"dn: ou=Sales,{SUFFIX}\nchangetype: modrdn\nnewrdn: mail=ou@example.com\ndeleteoldrdn: 0\n",
    ),
]


def entries(ldif: str) -> list[list[str]]:
    """Each entry's lines, sorted (where a replaced or renamed value lands among the attributes is not what
    these tests are about)."""
    return [sorted(block.splitlines()) for block in ldif.strip().split("\n\n")]


def test_content_rules_from_slapd_conf_alike_with_slapd(tmp_path: Path) -> None:
    with slapd_and_pyldapd(tmp_path, extra_global=RULES, extra_db="", loads=[(BASE_LDIF, "ldapadd")]) as pair:
        for tool, ldif in REQUESTS:
            theirs, ours = on_both(pair, tool, "-x", "-D", ROOTDN, "-w", ROOTPW, input=ldif)
            assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr), ldif
        # the entries as they ended, and the rules as cn=Subschema publishes them
        for args in (["-b", SUFFIX, "-S", "", "(|(ou=*)(cn=op*))", "*", "structuralObjectClass"],
                     ["-b", "cn=Subschema", "-s", "base", "(objectClass=*)", "dITContentRules"]):  # fmt: skip
            theirs, ours = on_both(pair, "ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", *args)
            assert theirs.returncode == 0 and entries(ours.stdout) == entries(theirs.stdout), (theirs.stdout,
                                                                                             ours.stdout)  # fmt: skip
        subschema = ours.stdout
        assert "dITContentRules: ( 2.5.6.5 NAME 'organizationalUnit' DESC 'units' MAY mail NOT telephoneNumber )" \
            in subschema  # fmt: skip


def test_content_rule_texts_name_the_rule_as_slapd_does(tmp_path: Path) -> None:
    """Texts name the rule by its first NAME (slapd's ldap_contentrule2name), the class by its own name."""
    with slapd_and_pyldapd(tmp_path, extra_global=RULES, extra_db="", loads=[(BASE_LDIF, "ldapadd")]) as pair:
        for server in pair:
            done = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                             input=PERSON.replace("op1", "op5") + "description: x\nobjectClass: extensibleObject\n")  # fmt: skip
            assert done.returncode == 65, done.stderr
            assert (
                "class 'extensibleObject' not allowed by content rule 'organizationalPerson'" in done.stderr
            )


BAD_RULES = [
    "ditcontentrule ( 2.5.6.0 NAME 'top' )",  # not STRUCTURAL
    "ditcontentrule ( 2.5.6.6 AUX organizationalPerson )",  # AUX names a structural class
    "ditcontentrule ( 2.5.6.6 AUX noSuchClass )",
    "ditcontentrule ( 2.5.6.6 MUST noSuchAttribute )",
    "ditcontentrule ( 2.5.6.6 MUST description MAY description )",  # listed twice
    "ditcontentrule ( 9.9.9.9 NAME 'nothing' )",  # no such class
    "ditcontentrule ( 2.5.6.6 NAME 'person' BOGUS x )",
]


def test_bad_rules_refused_at_their_line_as_slaptest_does(tmp_path: Path) -> None:
    for index, rule in enumerate(BAD_RULES):
        conf = tmp_path / f"bad{index}.conf"
        text = slapd_conf(tmp_path / f"db{index}", modules=True, extra_global=rule)
        conf.write_text(text)
        line = text.splitlines().index(rule) + 1
        theirs = subprocess.run(["/usr/sbin/slaptest", "-u", "-f", str(conf)], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        ours = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert theirs.returncode != 0 and f"line {line}" in theirs.stderr, (rule, theirs.stderr)
        assert ours.returncode != 0, (rule, ours.stdout)
        assert f"{conf}: line {line}" in ours.stderr + ours.stdout or f"{conf}:{line}" in ours.stderr + ours.stdout, (
            rule, ours.stderr)  # fmt: skip
    good = tmp_path / "good.conf"
    good.write_text(slapd_conf(tmp_path / "dbgood", modules=True, extra_global=RULES))
    for argv in (["/usr/sbin/slaptest", "-u", "-f", str(good)],
                 [sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(good)]):  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


CONFIG_RULES = [
    # (LDIF, tool): over cn=config, slapd's result code and text for each
    (
        "dn: cn=rules,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: rules\n"
        "olcDitContentRules: ( 2.5.6.0 NAME 'top' )\n",
        "ldapadd",
    ),
    (
        "dn: cn=rules,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: rules\n"
        "olcDitContentRules: ( 2.5.6.6 AUX organizationalPerson )\n",
        "ldapadd",
    ),
    (
        "dn: cn=rules,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: rules\n"
        "olcDitContentRules: ( 2.5.6.6 MUST description MAY description )\n",
        "ldapadd",
    ),
    (
        "dn: cn=rules,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: rules\n"
        "olcDitContentRules: ( 2.5.6.7 NAME 'organizationalPerson' AUX posixAccount MUST description )\n",
        "ldapadd",
    ),
]


def test_content_rules_over_cn_config_alike_with_slapd(tmp_path: Path) -> None:
    """olcDitContentRules in a cn=schema child: the same refusals, then the rule in force at once."""
    node = Node(tmp_path, "py", "mdb")
    node.start()
    slapd, slapd_ldapi, slapd_url = start_slapd_with_cn_config(tmp_path)
    codes = []
    try:
        for ldif, tool in CONFIG_RULES:
            theirs = ldap_tool(tool, "-Y", "EXTERNAL", "-Q", "-H", slapd_ldapi, input=ldif)
            ours = node.external(tool, ldif)
            assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr), ldif
            codes.append(ours.returncode)
        assert codes == [80, 80, 80, 0], codes
        person = f"dn: cn=op9,{SUFFIX}\nobjectClass: organizationalPerson\ncn: op9\nsn: Nine\n"
        base = f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
        outcomes = []
        for url, password in (
            (slapd_url, ROOTPW.replace("secret", "admin_password")),
            (node.url, "admin_password"),
        ):
            ldap_tool("ldapadd", "-x", "-H", url, "-D", ROOTDN, "-w", password, input=base)
            refused = ldap_tool("ldapadd", "-x", "-H", url, "-D", ROOTDN, "-w", password, input=person)
            added = ldap_tool("ldapadd", "-x", "-H", url, "-D", ROOTDN, "-w", password,
                              input=person + "description: d\nobjectClass: posixAccount\nuid: op9\n"
                              "uidNumber: 9\ngidNumber: 9\nhomeDirectory: /h\n")  # fmt: skip
            outcomes.append((refused.returncode, refused.stderr, added.returncode, added.stderr))
        assert outcomes[1] == outcomes[0]
        assert outcomes[0][0] == 65 and outcomes[0][2] == 0, outcomes[0]
    finally:
        slapd.stop()
        node.stop()


def test_rules_of_a_slaptest_converted_config_alike_with_slapd(tmp_path: Path) -> None:
    """slaptest writes slapd.conf's own ditcontentrule lines as olcDitContentRules of cn=config, which slapd reads
    before the schema entries below it: a rule for a class they define stops slapd and pyldapd alike."""
    conf = tmp_path / "slapd.conf"
    conf.write_text(slapd_conf(tmp_path / "db", modules=True, extra_global=RULES))
    (tmp_path / "slapd.d").mkdir()
    subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "slapd.d")], capture_output=True,
                   timeout=60)  # fmt: skip
    assert "olcDitContentRules" in (tmp_path / "slapd.d" / "cn=config.ldif").read_text()
    theirs = subprocess.run(["/usr/sbin/slaptest", "-u", "-F", str(tmp_path / "slapd.d")], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    ours = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-F", str(tmp_path / "slapd.d")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert theirs.returncode != 0 and 'olcDitContentRules: ObjectClass not found: "2.5.6.5"' in theirs.stderr
    assert ours.returncode != 0 and "2.5.6.5" in ours.stderr + ours.stdout, ours.stderr
