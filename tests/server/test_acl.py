"""Access control language and limits: parsing, evaluation rules, config errors (no servers needed)."""

from __future__ import annotations

import pytest

from pyldapd.config.slapdconf import ConfigError, load_slapd_conf, tokenize
from pyldapd.model.dn import normalize_dn
from pyldapd.model.entry import Entry
from pyldapd.model.schema import Schema
from pyldapd.server import acl
from pyldapd.server.acl import AccessContext, Accessor, ACLError, Policy, Target, parse_access
from pyldapd.server.searchlimits import SOFT, UNLIMITED, LimitsError, LimitSet, effective, parse_limits

SCHEMA = Schema.default()
JDOE = "uid=jdoe,ou=people,dc=example,dc=com"
ASMITH = "uid=asmith,ou=people,dc=example,dc=com"


def policy(*lines: str) -> Policy:
    rules = [parse_access(tokenize(line)) for line in lines]
    return Policy(rules, SCHEMA, lambda dn: normalize_dn(dn, SCHEMA))


def person(ndn: str, **attrs: list[bytes]) -> Entry:
    entry = Entry(ndn)
    entry.put("objectclass", "objectClass", [b"inetOrgPerson"])
    for key, values in attrs.items():
        entry.put(key.lower(), key, values)
    return entry


def ctx(groups: dict[str, Entry] | None = None) -> AccessContext:
    return AccessContext(SCHEMA, lambda ndn: (groups or {}).get(ndn))


def mask(p: Policy, who: str, ndn: str, attr: str, entry: Entry | None = None, value: bytes | None = None,
         context: AccessContext | None = None) -> int:  # fmt: skip
    return p.mask(Accessor(who), Target(ndn, entry or person(ndn), attr, value), context or ctx())


def test_levels_are_cumulative_and_privileges_explicit():
    assert acl.LEVELS["read"] == acl.DISCLOSE | acl.AUTH | acl.COMPARE | acl.SEARCH | acl.READ
    assert acl.LEVELS["write"] & acl.ADD and acl.LEVELS["write"] & acl.DELETE
    assert not acl.LEVELS["add"] & acl.DELETE
    p = policy("to * by * =cs")
    assert mask(p, "", JDOE, "cn") == acl.COMPARE | acl.SEARCH


def test_no_rules_is_read_for_everyone():
    p = Policy([], SCHEMA, lambda dn: dn)
    assert p.allowed(Accessor(""), Target(JDOE, None, "cn"), acl.READ, ctx())
    assert not p.allowed(Accessor(JDOE), Target(JDOE, None, "cn"), acl.WRITE, ctx())


def test_implicit_none_continue_and_break():
    p = policy(
        "to attrs=sn by * =r break",
        "to attrs=sn by * +c",
        "to attrs=mail by * =c continue by users +r",
        "to attrs=title by * +r break",
        "to attrs=cn by users read",
    )
    assert mask(p, "", JDOE, "sn") == acl.READ | acl.COMPARE  # the mask carries over a break
    assert mask(p, JDOE, JDOE, "mail") == acl.COMPARE | acl.READ
    assert mask(p, "", JDOE, "mail") == 0  # continue with no later match: the implicit `by * none`
    assert mask(p, "", JDOE, "title") == 0  # break with no later rule: nothing
    assert mask(p, "", JDOE, "cn") == 0
    assert mask(p, "", JDOE, "uid") == 0  # no rule: the implicit `access to * by * none`


def test_what_forms():
    p = policy(
        'to dn.base="ou=People,dc=example,dc=com" attrs=children by * write',
        'to dn.one="ou=People,dc=example,dc=com" filter=(title=Manager) by * read',
        'to dn.children="ou=People,dc=example,dc=com" attrs=entry,@posixAccount by * search',
        'to dn.regex="^uid=([^,]+),ou=people," attrs=!inetOrgPerson by * compare',
        "to dn.subtree=dc=example,dc=com by * disclose",
    )
    people = "ou=people,dc=example,dc=com"
    assert mask(p, "", people, "children") == acl.LEVELS["write"]
    assert mask(p, "", people, "entry") == acl.DISCLOSE
    manager = person(JDOE, title=[b"Manager"])
    assert mask(p, "", JDOE, "cn", manager) == acl.LEVELS["read"]
    assert mask(p, "", JDOE, "entry") == acl.LEVELS["search"]
    assert mask(p, "", JDOE, "uidnumber") == acl.LEVELS["search"]  # required by posixAccount
    assert mask(p, "", JDOE, "memberuid") == acl.LEVELS["compare"]  # not allowed by inetOrgPerson
    assert mask(p, "", JDOE, "sn") == acl.DISCLOSE  # allowed by inetOrgPerson, not by posixAccount


def test_who_forms_self_dn_group_dnattr_peer():
    admins = "cn=admins,ou=groups,dc=example,dc=com"
    group = Entry(admins)
    group.put("objectclass", "objectClass", [b"groupOfNames"])
    group.put("member", "member", [b"UID=JDOE, ou=People,dc=example,dc=com"])
    p = policy(
        f'to attrs=userPassword by self write by group.exact="{admins}" read by anonymous auth',
        'to dn.regex="^uid=([^,]+),ou=people,dc=example,dc=com$" attrs=mail '
        'by dn.exact,expand="uid=$1,ou=People,dc=example,dc=com" write by dnattr=seeAlso read',
        "to attrs=description by peername.ip=127.0.0.0%255.0.0.0 read by peername.regex=^PATH= compare",
        "to attrs=title by users selfwrite",
    )
    context = ctx({admins: group})
    assert mask(p, ASMITH, ASMITH, "userpassword", context=context) == acl.LEVELS["write"]
    assert mask(p, JDOE, ASMITH, "userpassword", context=context) == acl.LEVELS["read"]
    assert mask(p, "", ASMITH, "userpassword", context=context) == acl.LEVELS["auth"]
    assert mask(p, ASMITH, ASMITH, "mail") == acl.LEVELS["write"]
    seen = person(ASMITH, seeAlso=[JDOE.encode()])
    assert mask(p, JDOE, ASMITH, "mail", seen) == acl.LEVELS["read"]
    assert mask(p, "uid=x,dc=example,dc=com", ASMITH, "mail", seen) == 0
    local = p.mask(Accessor("", peer="IP=127.0.0.1:4000"), Target(JDOE, None, "description"), ctx())
    remote = p.mask(Accessor("", peer="IP=10.0.0.1:4000"), Target(JDOE, None, "description"), ctx())
    path = p.mask(Accessor("", peer="PATH=/tmp/s"), Target(JDOE, None, "description"), ctx())
    assert (local, remote, path) == (acl.LEVELS["read"], 0, acl.LEVELS["compare"])
    assert mask(p, JDOE, JDOE, "title", value=JDOE.encode()) == acl.LEVELS["write"]
    assert mask(p, JDOE, JDOE, "title", value=ASMITH.encode()) == 0


def test_value_rules():
    p = policy(
        'to attrs=member val.regex="^uid=j" by * read',
        "to attrs=member by * compare",
    )
    entry = Entry("cn=g,dc=example,dc=com")
    assert mask(p, "", "cn=g,dc=example,dc=com", "member", entry, b"uid=jdoe,dc=x") == acl.LEVELS["read"]
    assert mask(p, "", "cn=g,dc=example,dc=com", "member", entry, b"uid=asmith,dc=x") == acl.LEVELS["compare"]
    assert (
        mask(p, "", "cn=g,dc=example,dc=com", "member", entry) == acl.LEVELS["compare"]
    )  # no value: skipped


@pytest.mark.parametrize(
    "line",
    ["by * read", "to", "to * read", "to dn.nosuch=x by * read", "to * by * read stopp extra",
     'to dn.regex="(" by * read', "to filter=(cn=x by * read", "to * by set.one=x read"],
)  # fmt: skip
def test_parse_errors(line):
    with pytest.raises(ACLError):
        parse_access(tokenize(line))


def test_config_error_names_file_and_line(tmp_path):
    conf = tmp_path / "slapd.conf"
    conf.write_text(f"database mdb\nsuffix dc=example,dc=com\ndirectory {tmp_path}\n"
                    "access to * by * read\naccess to dn.bogus=x\n    by * read\n")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_slapd_conf(str(conf))
    assert info.value.line == 5 and str(conf) in str(info.value)


def test_access_lines_keep_quoting_and_sources(tmp_path):
    conf = tmp_path / "slapd.conf"
    conf.write_text(f'access to dn.base="" by * read\ndatabase mdb\nsuffix dc=example,dc=com\ndirectory {tmp_path}\n'
                    'access to dn="cn=Some One,dc=example,dc=com" by * read\n'
                    "limits dn.exact=\"cn=Some One,dc=example,dc=com\" size=unlimited\n")  # fmt: skip
    config = load_slapd_conf(str(conf))
    db = config.databases[0]
    assert config.access_sources == [f"{conf}:1"] and db.access_sources == [f"{conf}:5"]
    assert parse_access(tokenize(db.access[0])).dn_pattern == "cn=Some One,dc=example,dc=com"
    assert parse_limits(tokenize(db.limits[0])).pattern == "cn=Some One,dc=example,dc=com"


def test_limits_parse_and_effective():
    rule = parse_limits(["users", "size.soft=10", "size.hard=20", "time=5"])
    limits = rule.limits(LimitSet())
    assert (limits.size_soft, limits.size_hard, limits.time_soft, limits.time_hard) == (10, 20, 5, SOFT)
    assert effective(0, 10, 20) == 10  # nothing asked: soft
    assert effective(15, 10, 20) == 15  # may raise up to hard
    assert effective(50, 10, 20) == 20
    assert effective(50, 10, SOFT) == 10  # hard follows soft
    assert effective(50, 10, UNLIMITED) == 50
    assert effective(0, UNLIMITED, SOFT) == UNLIMITED
    assert parse_limits(["dn.exact=cn=x", "size=unlimited"]).limits(LimitSet()).size_soft == UNLIMITED
    group = parse_limits(["group/groupOfNames/member=cn=g,dc=x", "size=1"])
    assert (group.kind, group.group_oc, group.group_at) == ("group", "groupOfNames", "member")
    for bad in (["users"], ["users", "size.bogus=1"], ["users", "size=abc"], ["group", "size=1"]):
        with pytest.raises(LimitsError):
            parse_limits(bad)
