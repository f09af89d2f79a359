"""`by set=` access clauses (slapd.access(5), SETS), side by side with Debian's slapd: one slapd.conf whose rules
each guard one attribute with one set expression, the same identities and requests, the same results."""

from __future__ import annotations

import subprocess

import pytest

from tests.data import BASE_LDIF
from tests.server.test_acl_differential import IDENTITIES, assert_alike
from tests.server.test_differential import STABLE_OPERATIONAL, canonical
from tests.servers import ROOTDN, ROOTPW, SLAPD, ldap_tool, on_both, slapd_conf, start_pyldapd, start_slapd

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
GROUPS = f"ou=Groups,{SUFFIX}"
ADMINS = f"cn=admins,{GROUPS}"
ALL = f"cn=all,{GROUPS}"
JDOE, ASMITH, BWONG, CJONES = (f"uid={u},{PEOPLE}" for u in ("jdoe", "asmith", "bwong", "cjones"))

ACCESS = f"""
access to attrs=userPassword
    by self =wx
    by anonymous auth
    by * none
access to dn.subtree="{PEOPLE}" attrs=telephoneNumber
    by set="[{ADMINS}]/member & user" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=mail
    by set="this/manager & user" write
    by set="user/uid & this/uid" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=title
    by set="user/-1 & [{PEOPLE}]" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=givenName
    by set="([uid=] + user/uid + [,ou=people,dc=example,dc=com]) & this" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=cn
    by set="[{ALL}]/member* & user" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=sn
    by set="[{ALL}]/member & user" read
    by * none
access to dn.regex="^uid=([^,]+),ou=people,dc=example,dc=com$" attrs=employeeNumber
    by set.expand="[$1] & user/uid" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=homeDirectory
    by set="[ldap:///{GROUPS}??sub?(cn=admins)]/member & user" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=loginShell
    by set="[ldap:///{PEOPLE}??one?(title=Manager)]/entryDN & user" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=gidNumber
    by set="user/-1 & this/-1" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=description
    by set="this/seeAlso->manager & user" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=roomNumber
    by set="this/-* & [dc=example,dc=com]" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=uidNumber
    by set="(user/uid & this/uid" read
    by set="user &/uid" read
    by set="user/noSuchAttribute | this" read
    by set="user | [x] & [y]" read
    by set="[asmith] | this/uid & user/uid" read
    by set="{"(" * 70}this{")" * 70}" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=street
    by set.expand="[$2] | user" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=st
    by set.expand="[$1] & this/-1" read
    by * none
access to dn.subtree="{PEOPLE}" attrs=l
    by set="user | [x]" read
    by * none
access to dn.exact="{ALL}"
    by set="[{ALL}]/member* & user" write
    by * read
access to *
    by * read
"""

SETUP = (
    f"dn: {ASMITH}\nchangetype: modify\nadd: manager\nmanager: {CJONES}\n-\nadd: roomNumber\nroomNumber: 12\n-\nadd: street\nstreet: 1 Main St\n-\nadd: st\nst: CA\n-\nadd: l\nl: Springfield\n\n"
    f"dn: {JDOE}\nchangetype: modify\nadd: manager\nmanager: UID=ASMITH, ou=People,dc=EXAMPLE,dc=com\n-\n"
    "add: roomNumber\nroomNumber: 7\n\n"
    f"dn: {CJONES}\nchangetype: modify\nadd: userPassword\nuserPassword: secret3\n-\nadd: seeAlso\n"
    f"seeAlso: {ASMITH}\n-\nadd: description\ndescription: seen through seeAlso and manager\n\n"
    f"dn: {BWONG}\nchangetype: modify\nadd: userPassword\nuserPassword: secret4\n\n"
    f"dn: {ALL}\nchangetype: add\nobjectClass: groupOfNames\ncn: all\nmember: {ADMINS}\nmember: {ASMITH}\n"
)


@pytest.fixture(scope="module")
def set_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("acl-sets")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            conf = slapd_conf(root / name / "db", modules=True, extra_db=ACCESS)
            server = start(root / name, conf, name=name)
            servers.append(server)
            for ldif, tool in ((BASE_LDIF, "ldapadd"), (SETUP, "ldapmodify")):
                result = ldap_tool(tool, "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=ldif)
                assert result.returncode == 0, f"{name}: {result.stderr}\n{server.log()}"
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("who", list(IDENTITIES))
def test_each_set_rule_shows_what_slapd_shows(set_pair, who):
    assert_alike(set_pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", PEOPLE, "(objectClass=*)", "*",
                 *STABLE_OPERATIONAL)  # fmt: skip


def visible(pair, who: str, base: str, attr: str) -> list[bool]:
    """Whether each server shows `attr` of `base` to `who`."""
    out = []
    for result in on_both(pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", base, "-s", "base", "(objectClass=*)",
                       attr):  # fmt: skip
        assert result.returncode == 0, result.stderr
        lines = [line for _, attrs in canonical(result.stdout) for line in attrs]
        out.append(any(line.startswith(attr.lower() + ": ") for line in lines))
    return out


# (who, entry, attribute, shown): each set form decides something, in both directions
CASES = [
    ("jdoe", ASMITH, "telephoneNumber", True),  # member of cn=admins
    (
        "bwong",
        ASMITH,
        "telephoneNumber",
        True,
    ),  # member value in another case: sets compare normalized values
    ("asmith", JDOE, "telephoneNumber", False),
    ("cjones", ASMITH, "mail", True),  # this/manager
    ("asmith", JDOE, "mail", True),  # manager value in another case
    ("bwong", ASMITH, "mail", False),
    ("bwong", BWONG, "mail", True),  # user/uid & this/uid
    ("asmith", ASMITH, "title", False),  # a [literal] is not normalized: "ou=People" is not "ou=people"
    ("bwong", BWONG, "title", False),
    ("asmith", ASMITH, "givenName", True),  # string concatenation
    ("jdoe", ASMITH, "givenName", False),
    ("jdoe", ASMITH, "cn", True),  # member* follows cn=all -> cn=admins -> jdoe
    ("jdoe", ASMITH, "sn", False),  # member alone does not
    ("asmith", ASMITH, "sn", True),
    ("asmith", ASMITH, "employeeNumber", True),  # set.expand with $1
    ("jdoe", ASMITH, "employeeNumber", False),
    ("jdoe", CJONES, "homeDirectory", True),  # ldap:/// URL
    ("asmith", CJONES, "homeDirectory", False),
    ("bwong", JDOE, "loginShell", True),  # ldap:/// URL with entryDN
    ("jdoe", JDOE, "loginShell", False),
    ("cjones", JDOE, "gidNumber", True),  # parent of each DN
    ("anonymous", JDOE, "gidNumber", False),  # no user to take the parent of
    ("cjones", CJONES, "description", True),  # -> spelling, two steps
    ("asmith", CJONES, "description", False),
    ("anonymous", ASMITH, "roomNumber", True),  # /-* ancestors; a set without `user` works anonymously
    ("jdoe", ASMITH, "uidNumber", False),  # left to right, no precedence: ([asmith] | this/uid) & user/uid
    ("asmith", JDOE, "uidNumber", True),
    ("cjones", ASMITH, "uidNumber", False),
    ("cjones", CJONES, "uidNumber", True),
    ("anonymous", CJONES, "uidNumber", False),  # and malformed sets never match, nor ones nested too deep
    (
        "asmith",
        ASMITH,
        "street",
        False,
    ),  # $2 names no submatch of a dn.subtree target: no match, not [] | user
    ("anonymous", ASMITH, "st", True),
    ("anonymous", ASMITH, "l", False),  # anonymous: `user` is no DN at all (an error), not the empty one
    ("cjones", ASMITH, "l", True),  # $1 of dn.subtree is the suffix part, the normalized pattern
]


@pytest.mark.parametrize(("who", "entry", "attr", "shown"), CASES)
def test_set_forms(set_pair, who, entry, attr, shown):
    assert visible(set_pair, who, entry, attr) == [shown, shown]


MODIFIES = [("cjones", ASMITH, "mail"), ("asmith", JDOE, "mail"), ("bwong", ASMITH, "mail"),
            ("jdoe", ASMITH, "telephoneNumber"), ("anonymous", ASMITH, "mail")]  # fmt: skip


def test_write_through_a_set(set_pair):
    codes = []
    for who, dn, attr in MODIFIES:
        value = "+1 555 0199" if attr == "telephoneNumber" else f"by-{who}@example.com"
        change = f"dn: {dn}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n"
        slapd, ours = on_both(set_pair, "ldapmodify", *IDENTITIES[who], input=change)
        assert ours.returncode == slapd.returncode, (who, dn, attr, slapd.stderr, ours.stderr)
        codes.append(slapd.returncode)
    assert codes == [0, 0, 50, 50, 8]  # 8: anonymous updates are refused before access control
    assert_alike(
        set_pair, "ldapsearch", "-x", "-D", ROOTDN, "-w", ROOTPW, "-LLL", "-b", PEOPLE, "(mail=*)", "mail"
    )


@pytest.mark.parametrize("who", ["jdoe", "asmith", "bwong", "anonymous"])
def test_compare_through_a_set(set_pair, who):
    assert_alike(set_pair, "ldapcompare", *IDENTITIES[who], CJONES, "homeDirectory:/home/cjones")


# Clauses slapd refuses when it reads the configuration (the expression itself is only checked when evaluated).
REFUSED = {
    "style": 'access to * by set.one="user" read',
    "empty": 'access to * by set="" read',
    "twice": 'access to * by set="user" set="this" read',
    "unknown style": 'access to * by set.bogus="user" read',
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_at_its_line_as_slaptest_refuses_it(tmp_path, case):
    from pyldapd.config.slapdconf import ConfigError, load_slapd_conf

    conf = slapd_conf(tmp_path, modules=True, extra_db=REFUSED[case])
    path = tmp_path / "slapd.conf"
    path.write_text(conf)
    line = conf.splitlines().index(REFUSED[case]) + 1
    slaptest = subprocess.run(
        [SLAPD, "-Tt", "-u", "-f", str(path)], capture_output=True, text=True, timeout=60
    )
    assert slaptest.returncode != 0 and f"line {line}" in slaptest.stderr, slaptest.stderr
    with pytest.raises(ConfigError) as info:
        load_slapd_conf(str(path))
    assert info.value.line == line and str(path) in str(info.value)


def test_malformed_expression_accepted_as_slaptest_accepts_it(tmp_path):
    from pyldapd.config.slapdconf import load_slapd_conf

    conf = slapd_conf(tmp_path, modules=True, extra_db='access to * by set="((user &/" read by * read')
    path = tmp_path / "slapd.conf"
    path.write_text(conf)
    slaptest = subprocess.run(
        [SLAPD, "-Tt", "-u", "-f", str(path)], capture_output=True, text=True, timeout=60
    )
    assert slaptest.returncode == 0, slaptest.stderr
    assert load_slapd_conf(str(path)).databases[0].access


def test_nested_groups_line_of_openldap_test_acl_conf(set_pair):
    """tests/data/slapd-acl.conf: `by set="[cn=Alumni Assoc Staff,...]/member* & user" write` on the group."""
    codes = []
    for who in ("jdoe", "asmith", "cjones", "bwong"):
        change = f"dn: {ALL}\nchangetype: modify\nadd: description\ndescription: by {who}\n"
        slapd, ours = on_both(set_pair, "ldapmodify", *IDENTITIES[who], input=change)
        assert ours.returncode == slapd.returncode, (who, slapd.stderr, ours.stderr)
        codes.append(slapd.returncode)
    assert codes == [0, 0, 50, 0]  # jdoe and bwong through cn=admins, asmith directly
    assert_alike(
        set_pair, "ldapsearch", "-x", "-LLL", "-b", ALL, "-s", "base", "(objectClass=*)", "description"
    )
