"""Access control and limits, side by side with Debian's slapd: one slapd.conf with several `access` and `limits`
lines, the same identities and requests, the same result codes and the same visible data."""

from __future__ import annotations

import pytest

from tests.data import BASE_LDIF
from tests.server.test_differential import STABLE_OPERATIONAL, canonical
from tests.servers import (
    ROOTDN,
    ROOTPW,
    on_both,
    slapd_and_pyldapd,
)

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
ADMINS = f"cn=admins,ou=Groups,{SUFFIX}"
JDOE, ASMITH, BWONG, CJONES = (f"uid={u},{PEOPLE}" for u in ("jdoe", "asmith", "bwong", "cjones"))

ACCESS = f"""
access to attrs=userPassword
    by self =wx
    by anonymous auth
    by group.exact="{ADMINS}" write
    by * none
access to attrs=employeeNumber,telephoneNumber
    by self read
    by users search
    by * none
access to dn.subtree="ou=Groups,{SUFFIX}" attrs=member
    by group="{ADMINS}" write
    by users selfwrite
    by * read
access to dn.one="{PEOPLE}" filter=(title=Manager)
    by users read
    by * disclose
access to dn.regex="^uid=([^,]+),ou=People,dc=example,dc=com$" attrs=mail,description,title,seeAlso
    by dn.exact,expand="uid=$1,{PEOPLE}" write
    by users read
    by * none
access to dn.base="{PEOPLE}" attrs=children
    by group="{ADMINS}" write
    by users =az
    by * break
access to dn.subtree="{PEOPLE}" attrs=entry
    by group="{ADMINS}" write
    by self read
    by users read
    by anonymous search
access to dn.subtree="{PEOPLE}"
    by self write
    by group="{ADMINS}" write
    by dnattr=seeAlso read
    by users read
    by * none
access to dn.subtree="{SUFFIX}" attrs=entry,objectClass,ou,o,dc,cn,children
    by * read
access to attrs=gidNumber by * =cs continue by users +r
access to attrs=sn by * =c break
access to attrs=sn,givenName by users +rs
access to *
    by users read
    by * none
limits dn.exact="{JDOE}" size=unlimited
limits group="{ADMINS}" size.soft=2 size.hard=4
limits users size=3
limits anonymous size.soft=1 size.hard=2
"""

# Frontend (global) rules: the root DSE and the subschema entry, and what they append to the database's list.
GLOBAL = 'access to dn.base="" by * read\naccess to dn.base="cn=Subschema" by * read'

SETUP = (
    f"dn: {BWONG}\nchangetype: modify\nadd: userPassword\nuserPassword: secret4\n\n"
    f"dn: {CJONES}\nchangetype: modify\nadd: userPassword\nuserPassword: secret3\n-\nadd: seeAlso\n"
    f"seeAlso: {ASMITH}\n"
)

IDENTITIES = {
    "anonymous": ["-x"],
    "jdoe": ["-x", "-D", JDOE, "-w", "secret1"],  # in cn=admins
    "asmith": ["-x", "-D", ASMITH, "-w", "secret2"],
    "bwong": ["-x", "-D", BWONG, "-w", "secret4"],  # in cn=admins through a member value in another case
    "cjones": ["-x", "-D", CJONES, "-w", "secret3"],  # named in asmith's seeAlso: dnattr
    "rootdn": ["-x", "-D", ROOTDN, "-w", ROOTPW],
}


@pytest.fixture(scope="module")
def acl_pair(tmp_path_factory):
    with slapd_and_pyldapd(tmp_path_factory.mktemp("acl-differential"), extra_global=GLOBAL, extra_db=ACCESS,
                           loads=[(BASE_LDIF, "ldapadd"), (SETUP, "ldapmodify")]) as servers:  # fmt: skip
        yield servers


def assert_alike(pair, tool: str, *args: str, input: str | None = None) -> int:
    slapd, ours = on_both(pair, tool, *args, input=input)
    assert ours.returncode == slapd.returncode, (tool, args, slapd.stderr, ours.stderr)
    if slapd.returncode == 4:  # size limit: which entries come first is the database's order; count them
        assert len(canonical(ours.stdout)) == len(canonical(slapd.stdout)), (tool, args)
    else:
        assert canonical(ours.stdout) == canonical(slapd.stdout), (tool, args)
    return slapd.returncode


FILTERS = ["(objectClass=*)", "(employeeNumber=42)", "(telephoneNumber=*)", "(title=Manager)", "(!(employeeNumber=7))",
           "(|(mail=*)(uid=cjones))", "(userPassword=*)", "(member=*)", "(sn=smith)", "(gidNumber=100)",
           "(&(objectClass=person)(!(description=*)))"]  # fmt: skip
BASES = [ASMITH, BWONG, CJONES, PEOPLE, ADMINS, f"uid=nobody,{PEOPLE}", "", "cn=Subschema"]
COMPARES = [f"{ASMITH} employeeNumber:42", f"{ASMITH} userPassword:secret2", f"{ASMITH} cn:Alice Smith",
            f"{BWONG} title:Manager", f"{CJONES} mail:x", f"uid=nobody,{PEOPLE} cn:x", f"{CJONES} uidNumber:1010",
            f"{ASMITH} sn:Smith", f"{ASMITH} gidNumber:100", f"{ADMINS} member:{JDOE}"]  # fmt: skip


@pytest.mark.parametrize("who", list(IDENTITIES))
def test_search_whole_tree(acl_pair, who):
    assert_alike(acl_pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", SUFFIX, "(objectClass=*)", "*",
                 *STABLE_OPERATIONAL)  # fmt: skip


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("filter_", FILTERS)
def test_search_filters_on_protected_attributes(acl_pair, who, filter_):
    assert_alike(acl_pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", SUFFIX, filter_, "1.1")


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("base", BASES)
def test_read_one_entry(acl_pair, who, base):
    """Which attributes show, and noSuchObject (no disclose) against insufficientAccessRights (disclose)."""
    assert_alike(acl_pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", base, "-s", "base", "(objectClass=*)",
                 "*", *STABLE_OPERATIONAL)  # fmt: skip


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("compare", COMPARES)
def test_compare(acl_pair, who, compare):
    dn, assertion = compare.split(" ", 1)
    assert_alike(acl_pair, "ldapcompare", *IDENTITIES[who], dn, assertion)


@pytest.mark.parametrize(
    "args",
    [
        ["-D", JDOE, "-w", "secret1"],
        ["-D", JDOE, "-w", "wrong"],
        ["-D", ASMITH, "-w", "secret2"],
        ["-D", CJONES, "-w", "secret3"],
        ["-D", f"uid=nobody,{PEOPLE}", "-w", "x"],
    ],
)
def test_bind_needs_auth_access(acl_pair, args):
    slapd, ours = on_both(acl_pair, "ldapwhoami", "-x", *args)
    assert (ours.returncode, ours.stdout) == (slapd.returncode, slapd.stdout), args


@pytest.mark.parametrize("who", ["anonymous", "jdoe", "asmith", "cjones"])
@pytest.mark.parametrize("size", ["0", "1", "2", "3", "5"])
def test_limits_per_identity(acl_pair, who, size):
    """Soft limits when the client asks for none, hard caps, unlimited for one identity, group selectors."""
    code = assert_alike(acl_pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-z", size, "-b", SUFFIX,
                        "(objectClass=*)", "1.1")  # fmt: skip
    assert code in (0, 4)


def write_steps() -> list[tuple[str, list[str], str | None]]:
    steps: list[tuple[str, list[str], str | None]] = []
    for name, ident in IDENTITIES.items():
        for dn in (ASMITH, JDOE, CJONES):
            steps.append(("ldapmodify", ident, f"dn: {dn}\nchangetype: modify\nreplace: description\n"
                                               f"description: by {name}\n"))  # fmt: skip
            steps.append(("ldapmodify", ident, f"dn: {dn}\nchangetype: modify\nreplace: telephoneNumber\n"
                                               f"telephoneNumber: 555 {name}\n"))  # fmt: skip
            steps.append(
                ("ldapmodify", ident, f"dn: {dn}\nchangetype: modify\nadd: mail\nmail: {name}@x.org\n")
            )
        for member in (ASMITH, CJONES, BWONG):
            for op in ("add", "delete"):
                steps.append(("ldapmodify", ident, f"dn: {ADMINS}\nchangetype: modify\n{op}: member\n"
                                                   f"member: {member}\n"))  # fmt: skip
        steps += [
            ("ldapadd", ident, f"dn: uid=new{name},{PEOPLE}\nobjectClass: account\nuid: new{name}\n"),
            (
                "ldapadd",
                ident,
                f"dn: cn=g{name},ou=Groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: g{name}\n"
                f"member: {ASMITH}\n",
            ),  # fmt: skip
            ("ldapmodrdn", [*ident, f"uid=new{name},{PEOPLE}", f"uid=ren{name}"], None),
            ("ldapmodrdn", [*ident, "-r", f"uid=ren{name},{PEOPLE}", f"uid=ren2{name}"], None),
            (
                "ldapmodrdn",
                [*ident, "-s", f"ou=Groups,{SUFFIX}", f"uid=ren2{name},{PEOPLE}", f"uid=ren2{name}"],
                None,
            ),
            ("ldapdelete", [*ident, f"uid=ren2{name},{PEOPLE}"], None),
            ("ldapdelete", [*ident, f"uid=ren{name},{PEOPLE}"], None),
            ("ldapdelete", [*ident, f"uid=new{name},{PEOPLE}"], None),
            ("ldapdelete", [*ident, f"cn=g{name},ou=Groups,{SUFFIX}"], None),
            ("ldapsearch", [*IDENTITIES["rootdn"], "-LLL", "-b", SUFFIX, "(objectClass=*)", "*"], None),
        ]
    return steps


def test_updates_matrix(acl_pair):
    """Every identity tries modify, add, modrdn and delete on entries it may and may not change; the two servers
    answer alike at every step and end with the same data."""
    mismatches = []
    codes = set()
    for tool, args, ldif in write_steps():
        slapd, ours = on_both(acl_pair, tool, *args, input=ldif)
        codes.add(slapd.returncode)
        if ours.returncode != slapd.returncode or canonical(ours.stdout) != canonical(slapd.stdout):
            mismatches.append(
                (tool, args, ldif, slapd.returncode, ours.returncode, slapd.stderr, ours.stderr)
            )
    assert not mismatches, "\n".join(map(repr, mismatches[:5]))
    assert {0, 8, 32, 50} <= codes  # success, anonymous refused, hidden entries, access denied all occur


def test_password_modify_follows_acls(acl_pair):
    steps = [
        ["-D", ASMITH, "-w", "secret2", "-s", "newpw2"],  # self, =wx on userPassword
        ["-D", CJONES, "-w", "secret3", "-s", "newpw3", ASMITH],  # someone else's: none
        ["-D", JDOE, "-w", "secret1", "-s", "newpw3", CJONES],  # admins group: write
        ["-x", "-s", "x", ASMITH],  # anonymous with a target
    ]
    for args in steps:
        slapd, ours = on_both(acl_pair, "ldappasswd", "-x", *args)
        assert ours.returncode == slapd.returncode, (args, slapd.stderr, ours.stderr)
    for dn, password in ((ASMITH, "newpw2"), (CJONES, "newpw3")):
        slapd, ours = on_both(acl_pair, "ldapwhoami", "-x", "-D", dn, "-w", password)
        assert (ours.returncode, ours.stdout) == (slapd.returncode, slapd.stdout) == (0, f"dn:{dn}\n")


PEERCRED_ROOT = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"


@pytest.mark.parametrize(
    "access",
    [
        # Debian's default rule for root over ldapi, then a rule that reads userPassword for anyone else
        f"access to * by dn.exact={PEERCRED_ROOT} manage by * break\n"
        "access to attrs=userPassword by * none\naccess to * by * read",
        # a rule that keeps root over ldapi from userPassword: matching it is what keeps the values hidden
        f"access to attrs=userPassword by dn.exact={PEERCRED_ROOT} none by * read\naccess to * by * read",
        f'access to * by dn.exact="{PEERCRED_ROOT.lower()}" write by * read',
    ],
)
def test_ldapi_external_identity_in_acls_as_slapd(tmp_path, access):
    """The ldapi EXTERNAL identity (gidNumber=0+uidNumber=0,cn=peercred,...) is a normalized DN like any other:
    `by dn.exact=` with the nis schema's spelling (Debian's default cn=config rule) or in lowercase matches it,
    as in slapd; before, pyldapd kept it lowercased and the schema-cased rule never matched."""
    from tests.servers import ldap_tool, slapd_conf, start_pyldapd, start_slapd

    outcomes = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        conf = slapd_conf(tmp_path / f"{name}-db", extra_db=access, modules=True)
        server = start(tmp_path / name, conf, name=name)
        try:
            loaded = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF)
            assert loaded.returncode == 0, loaded.stderr
            ldapi = ["-H", server.ldapi_url, "-Y", "EXTERNAL", "-Q"]
            read = ldap_tool("ldapsearch", "-LLL", *ldapi, "-b", SUFFIX, "(uid=jdoe)", "userPassword", "cn")
            write = ldap_tool("ldapmodify", *ldapi, input=f"dn: {JDOE}\nchangetype: modify\nreplace: "
                              "description\ndescription: by root over ldapi\n")  # fmt: skip
            outcomes[name] = (read.returncode, "userPassword:" in read.stdout, "cn:" in read.stdout,
                              write.returncode)  # fmt: skip
        finally:
            server.stop()
    assert outcomes["pyldapd"] == outcomes["slapd"], outcomes


VALUE_RULES = f"""
access to attrs=userPassword
    by anonymous auth
    by * none
access to attrs=description val.regex="^(.*)-([a-z]+)$"
    by dn.exact,expand="uid=${{v2}},{PEOPLE}" write
    by * read stop
access to attrs=description
    by users write
access to *
    by * read
"""


@pytest.mark.parametrize("change, expect", [
    ("add: description\ndescription: note-jdoe\n", 0),  # ${v2} names jdoe: jdoe may add it
    ("add: description\ndescription: note-asmith\n", 50),  # names asmith, not jdoe
    ("add: description\ndescription: plain\n", 0),  # no match: the next rule
    ("replace: description\ndescription: memo-jdoe\n", 0),  # the attribute's delete has no value: next rule
    ("replace: description\ndescription: memo-bwong\n", 50),
])  # fmt: skip
def test_value_regex_submatches_expand_in_who(tmp_path, change, expect):
    """`val.regex` submatches expand as ${vn} in a `by ... expand` clause (slapd's acl_string_expand; OpenLDAP's
    test055-valregex): whose DN a value names decides who may write it."""
    with slapd_and_pyldapd(
        tmp_path, extra_global="", extra_db=VALUE_RULES, loads=[(BASE_LDIF, "ldapadd")]
    ) as pair:
        results = on_both(
            pair, "ldapmodify", *IDENTITIES["jdoe"], input=f"dn: {ASMITH}\nchangetype: modify\n{change}"
        )
        assert [r.returncode for r in results] == [expect, expect], [r.stderr for r in results]
