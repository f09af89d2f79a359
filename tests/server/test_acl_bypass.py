"""Access-control bypasses (issue 14), side by side with Debian's slapd on one slapd.conf: every path that
returns or tests attribute values (Pre/Post-Read, the Assertion control, compare, paged and sync searches,
error texts and matched DNs) answers with what the requester may read, and every limit holds on every kind of
search. Same request -> same result code, text and entries/values."""

from __future__ import annotations

import re
import subprocess
import time

import ldap
import pytest
from ldap.controls import SimplePagedResultsControl

from tests.data import BASE_LDIF
from tests.server.test_differential import canonical
from tests.servers import (
    ROOTDN,
    ROOTPW,
    ldap_tool,
    on_both,
    slapd_and_pyldapd,
    slapd_conf,
    start_pyldapd,
    start_slapd,
)

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
HIDDEN = f"ou=Hidden,{SUFFIX}"
MANY = f"ou=Many,{SUFFIX}"
JDOE, ASMITH, BWONG, CJONES = (f"uid={u},{PEOPLE}" for u in ("jdoe", "asmith", "bwong", "cjones"))
H1, H2 = f"uid=h1,{HIDDEN}", f"uid=h2,{HIDDEN}"

# The rules: userPassword for self and auth only, description writable by users, a subtree users may
# write but nobody may read.
ACCESS = f"""
access to attrs=userPassword by self write by anonymous auth by * none
access to attrs=description by users write by * read
access to dn.subtree="{HIDDEN}" by users =w by * none
access to attrs=title by users read by * none
access to * by * read
limits dn.this.subtree="{MANY}" size.unchecked=10
limits dn.exact="{JDOE}" size=unlimited
limits dn.exact="{ASMITH}" size.pr=3 size.prtotal=8
limits dn.exact="{CJONES}" size.prtotal=disabled
limits dn.exact="{BWONG}" size.unchecked=disabled
overlay syncprov
"""
GLOBAL = "moduleload syncprov\nsizelimit 5"

SETUP = (
    f"dn: {BWONG}\nchangetype: modify\nadd: userPassword\nuserPassword: secret4\n\n"
    f"dn: {CJONES}\nchangetype: modify\nadd: userPassword\nuserPassword: secret3\n\n"
    f"dn: {HIDDEN}\nchangetype: add\nobjectClass: organizationalUnit\nou: Hidden\n\n"
    f"dn: {H1}\nchangetype: add\nobjectClass: inetOrgPerson\ncn: Hidden One\nsn: One\nuid: h1\n"
    "userPassword: hidden1\ndescription: secret plans\n\n"
    f"dn: {MANY}\nchangetype: add\nobjectClass: organizationalUnit\nou: Many\n\n"
    + "".join(
        f"dn: cn=m{i},{MANY}\nchangetype: add\nobjectClass: organizationalRole\ncn: m{i}\n\n"
        for i in range(10)
    )
)

IDENTITIES = {
    "anonymous": ["-x"],
    "jdoe": ["-x", "-D", JDOE, "-w", "secret1"],
    "asmith": ["-x", "-D", ASMITH, "-w", "secret2"],
    "bwong": ["-x", "-D", BWONG, "-w", "secret4"],
    "cjones": ["-x", "-D", CJONES, "-w", "secret3"],
    "rootdn": ["-x", "-D", ROOTDN, "-w", ROOTPW],
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with slapd_and_pyldapd(tmp_path_factory.mktemp("acl-bypass"), extra_global=GLOBAL, extra_db=ACCESS,
                           loads=[(BASE_LDIF, "ldapadd"), (SETUP, "ldapmodify")]) as servers:  # fmt: skip
        yield servers


def messages(stderr: str) -> list[str]:
    """The tool's result lines (code, text, matched DN), without the tool's own chatter."""
    return [line.strip() for line in stderr.splitlines() if line.strip()]


SYNC_NOISE = re.compile(r"^(control: |# (refresh|sync|search result|numResponses|numEntries|result|"
                        r"extended LDIF|LDAPv3|base|filter|requesting|with )).*$", re.MULTILINE)  # fmt: skip


def alike(pair, tool: str, *args: str, input: str | None = None, count_only: bool = False):
    slapd, ours = on_both(pair, tool, *args, input=input)
    where = (tool, args, input)
    assert ours.returncode == slapd.returncode, (where, slapd.stderr, ours.stderr)
    assert messages(ours.stderr) == messages(slapd.stderr), where
    if count_only or slapd.returncode == 4:  # size limit: which entries come first is the database's order
        assert len(canonical(ours.stdout)) == len(canonical(slapd.stdout)), where
    elif tool == "ldapsearch":  # entries in the database's order: compare them as sets
        assert canonical(ours.stdout) == canonical(slapd.stdout), (where, slapd.stdout, ours.stdout)
    else:
        assert ours.stdout == slapd.stdout, (where, slapd.stdout, ours.stdout)
    return slapd


def modify(dn: str, attr: str, value: str) -> str:
    return f"dn: {dn}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n"


# -- Pre-Read and Post-Read: only what the requester may read ------------------------------------------------


VOLATILE = re.compile(r"^(entryUUID|entryCSN|createTimestamp|modifyTimestamp): .*$", re.MULTILINE)


def read_view(output: str) -> str:
    """ldapmodify's output with the raw control lines dropped (its decoded block stays) and the values two
    servers cannot share (entryUUID, entryCSN, timestamps) masked."""
    lines = []
    raw = False
    for line in output.splitlines():
        if line.startswith("control: "):
            raw = True
            continue
        if raw and line.startswith(" "):
            continue
        raw = False
        lines.append(line)
    # attribute order inside an entry is not significant (slapd adds hasSubordinates last)
    blocks = [sorted(block.splitlines()) for block in "\n".join(lines).split("\n\n")]
    return VOLATILE.sub(lambda m: m.group(1) + ": *", "\n\n".join("\n".join(b) for b in blocks))


def alike_read(pair, tool: str, *args: str, input: str | None = None) -> int:
    slapd, ours = on_both(pair, tool, *args, input=input)
    where = (tool, args, input)
    assert ours.returncode == slapd.returncode, (where, slapd.stderr, ours.stderr)
    assert messages(ours.stderr) == messages(slapd.stderr), where
    assert read_view(ours.stdout) == read_view(slapd.stdout), (where, slapd.stdout, ours.stdout)
    return slapd.returncode


def current(pair, dn: str) -> list:
    """The entry as the rootdn sees it on each server."""
    return [canonical(r.stdout) for r in on_both(pair, "ldapsearch", *IDENTITIES["rootdn"], "-LLL", "-b", dn, "-s",
                                               "base", "(objectClass=*)", "*")]  # fmt: skip


@pytest.mark.parametrize("who", ["anonymous", "jdoe", "asmith", "rootdn"])
@pytest.mark.parametrize("target", [JDOE, ASMITH, H1])
@pytest.mark.parametrize("control", ["preread=userPassword,description,cn", "postread=*", "!preread=*",
                                     "!postread=userPassword", "preread", "postread=+"])  # fmt: skip
def test_read_controls_on_modify(pair, who, target, control):
    change = modify(target, "description", f"{who} {control}")
    if target == H1 and who in ("jdoe", "asmith"):
        # Users may write h1's description but not read h1. Both servers send no control. slapd 2.5.13 then
        # drops the change and still answers success (back-mdb aborts its transaction when the read control
        # fails); pyldapd keeps the change when the control is not critical, and refuses a critical one (50)
        # so that nothing acknowledged is lost.
        before = current(pair, target)
        slapd, ours = on_both(pair, "ldapmodify", *IDENTITIES[who], "-e", control, input=change)
        assert slapd.returncode == 0 and "control:" not in slapd.stdout + ours.stdout, (
            slapd.stdout,
            ours.stdout,
        )
        after = current(pair, target)
        assert after[0] == before[0]
        if control.startswith("!"):
            assert ours.returncode == 50 and after[1] == before[1]
        else:
            assert ours.returncode == 0 and ("description", f"{who} {control}") in [
                tuple(line.split(": ", 1)) for line in after[1][0][1]
            ]
        for server in pair:  # the same data on both again
            ldap_tool("ldapmodify", "-H", server.url, *IDENTITIES["rootdn"], input=modify(target, "description",
                                                                                          "secret plans"))  # fmt: skip
        return
    alike_read(pair, "ldapmodify", *IDENTITIES[who], "-e", control, input=change)


def test_read_controls_on_add_rename_delete_in_hidden_subtree(pair):
    """Users may add, rename and delete under ou=Hidden but not read there: no entry comes back, the change is
    made, and a critical read control refuses it. (pyldapd alone: slapd 2.5.13 drops such writes while
    answering success, and its modrdn with a Pre-Read control on an unreadable entry crashes it.)"""
    ours = pair[1]
    ident = ["-H", ours.url, *IDENTITIES["asmith"]]
    new, renamed = f"uid=n1,{HIDDEN}", f"uid=r1,{HIDDEN}"
    add = f"dn: {new}\nchangetype: add\nobjectClass: inetOrgPerson\ncn: N\nsn: N\nuserPassword: pw\n"
    steps = [
        ("ldapmodify", ["-e", "!postread=*"], add, 50),
        ("ldapmodify", ["-e", "postread=*"], add, 0),
        ("ldapmodrdn", ["-e", "!preread=*", new, "uid=r1"], None, 50),
        ("ldapmodrdn", ["-e", "preread=*", "-e", "postread=cn,sn,uid", new, "uid=r1"], None, 0),
        ("ldapdelete", ["-e", "!preread=*", renamed], None, 50),
    ]
    for tool, args, ldif, code in steps:
        result = ldap_tool(tool, *ident, *args, input=ldif)
        assert result.returncode == code and "control:" not in result.stdout, (tool, args, result)
    listing = ldap_tool("ldapsearch", "-H", ours.url, *IDENTITIES["rootdn"], "-LLL", "-b", HIDDEN, "1.1")
    assert f"dn: {renamed}" in listing.stdout and f"dn: {new}" not in listing.stdout
    result = ldap_tool("ldapdelete", *ident, "-e", "preread=*", renamed)
    assert result.returncode == 0 and "control:" not in result.stdout
    # the rootdn gets the whole entry back
    ident = ["-H", ours.url, *IDENTITIES["rootdn"]]
    result = ldap_tool("ldapmodify", *ident, "-e", "!postread=userPassword", input=add)
    assert result.returncode == 0 and "userPassword:: cHc=" in result.stdout, result
    result = ldap_tool("ldapdelete", *ident, "-e", "!preread=cn", new)
    assert result.returncode == 0 and "cn: N" in result.stdout


@pytest.mark.parametrize("who", ["jdoe", "asmith", "rootdn"])
def test_read_controls_on_add_rename_delete(pair, who):
    """Readable entries: the same entry comes back from both servers, attributes filtered by access."""
    ident = IDENTITIES[who]
    new, renamed = f"cn=x{who},{MANY}", f"cn=y{who},{MANY}"
    add = f"dn: {new}\nchangetype: add\nobjectClass: person\ncn: x{who}\nsn: S\nuserPassword: pw\n"
    alike_read(pair, "ldapmodify", *IDENTITIES["rootdn"], "-e", "postread=*", input=add)
    alike_read(pair, "ldapmodrdn", *ident, "-e", "preread=*", "-e", "!postread=cn,userPassword", new,
               f"cn=y{who}")  # fmt: skip
    alike_read(pair, "ldapdelete", *ident, "-e", "!preread=*", renamed)
    alike_read(pair, "ldapdelete", *IDENTITIES["rootdn"], "-e", "preread=*", renamed)


# -- the Assertion control: evaluated with `search` access on each attribute ----------------------------------

ASSERTIONS = ["(userPassword=secret1)", "(userPassword=wrong)", "(description=*)", "(cn=John Smith)",
              "(!(userPassword=wrong))", "(|(userPassword=secret1)(cn=nobody))", "(&(cn=John Smith)(userPassword=*))"]  # fmt: skip


@pytest.mark.parametrize("who", ["anonymous", "asmith", "jdoe", "rootdn"])
@pytest.mark.parametrize("assertion", ASSERTIONS)
def test_assertion_on_compare(pair, who, assertion):
    alike(pair, "ldapcompare", *IDENTITIES[who], "-e", f"!assert={assertion}", JDOE, "uid:jdoe")


@pytest.mark.parametrize("who", ["anonymous", "asmith", "jdoe", "rootdn"])
@pytest.mark.parametrize("assertion", ASSERTIONS)
def test_assertion_on_search(pair, who, assertion):
    alike(pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-e", f"!assert={assertion}", "-b", JDOE, "-s", "base",
          "(objectClass=*)", "cn")  # fmt: skip


@pytest.mark.parametrize("who", ["asmith", "jdoe"])
@pytest.mark.parametrize("assertion", ASSERTIONS)
def test_assertion_on_modify(pair, who, assertion):
    alike(pair, "ldapmodify", *IDENTITIES[who], "-e", f"!assert={assertion}",
          input=modify(JDOE, "description", f"{who} {assertion}"))  # fmt: skip


@pytest.mark.parametrize("who", ["asmith", "rootdn"])
@pytest.mark.parametrize("parent", [PEOPLE, HIDDEN, f"ou=nowhere,{SUFFIX}"])
@pytest.mark.parametrize("assertion", ["(cn=N)", "(cn=x)", "(userPassword=pw)", "(creatorsName=*)", "(sn=*)"])
def test_assertion_on_add(pair, who, parent, assertion):
    """The assertion is tested on the entry being added (operational attributes included), before its parent or
    the access rules are looked at, as back-mdb does."""
    dn = f"cn=N,{parent}"
    add = f"dn: {dn}\nchangetype: add\nobjectClass: person\ncn: N\nsn: N\nuserPassword: pw\n"
    if alike(pair, "ldapmodify", *IDENTITIES[who], "-e", f"!assert={assertion}", input=add).returncode == 0:
        alike(pair, "ldapdelete", *IDENTITIES["rootdn"], dn)


@pytest.mark.parametrize("assertion", ["(userPassword=hidden1)", "(userPassword=wrong)", "(description=*)"])
def test_assertion_on_hidden_entry(pair, assertion):
    alike(pair, "ldapmodify", *IDENTITIES["asmith"], "-e", f"!assert={assertion}",
          input=modify(H1, "description", f"asmith {assertion}"))  # fmt: skip


# -- limits hold for paged searches ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("paging", ["pr=1000/noprompt", "pr=2/noprompt", "pr=3/noprompt", "pr=4/noprompt"])
@pytest.mark.parametrize("size", ["0", "3", "7"])
def test_paged_search_limits(pair, who, paging, size):
    alike(pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-z", size, "-E", paging, "-b", SUFFIX,
          "(objectClass=*)", "1.1", count_only=True)  # fmt: skip


@pytest.mark.parametrize("who", ["anonymous", "jdoe", "rootdn"])
@pytest.mark.parametrize("scope", ["sub", "one"])
@pytest.mark.parametrize("filter_", ["(description=*)", "(cn=m1)", "(objectClass=*)"])
@pytest.mark.parametrize("paging", ["", "pr=2/noprompt"])
def test_unchecked_limit(pair, who, scope, filter_, paging):
    """size.unchecked=10 under ou=Many (11 entries in the subtree, 10 one level down): more candidates than
    that and the search is refused before any entry is sent."""
    extra = ["-E", paging] if paging else []
    alike(pair, "ldapsearch", *IDENTITIES[who], "-LLL", *extra, "-b", MANY, "-s", scope, filter_, "1.1",
          count_only=True)  # fmt: skip


# -- sync searches: what the consumer's identity may read, within its limits ----------------------------------


def sync_view(output: str) -> list:
    return canonical(SYNC_NOISE.sub("", output))


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("base", [SUFFIX, HIDDEN, MANY])
def test_sync_refresh(pair, who, base):
    slapd, ours = on_both(pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-E", "sync=ro", "-b", base,
                       "(objectClass=*)", "cn", "description", "userPassword")  # fmt: skip
    assert ours.returncode == slapd.returncode, (who, base, slapd.stderr, ours.stderr)
    if slapd.returncode == 4:
        assert len(sync_view(ours.stdout)) == len(sync_view(slapd.stdout))
    else:
        assert sync_view(ours.stdout) == sync_view(slapd.stdout), (who, base)


# -- error texts and matched DNs name only what may be disclosed ----------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "asmith", "rootdn"])
@pytest.mark.parametrize("missing", [f"uid=nobody,{HIDDEN}", f"uid=x,ou=y,{HIDDEN}", f"uid=x,ou=y,{PEOPLE}",
                                     f"uid=nobody,{PEOPLE}", f"cn=x,cn=m1,{MANY}"])  # fmt: skip
def test_matched_dn_of_missing_entries(pair, who, missing):
    ident = IDENTITIES[who]
    alike(pair, "ldapsearch", *ident, "-LLL", "-b", missing, "(objectClass=*)")
    alike(pair, "ldapcompare", *ident, missing, "cn:x")
    alike(pair, "ldapmodify", *ident, input=modify(missing, "description", "x"))
    alike(pair, "ldapdelete", *ident, missing)
    alike(pair, "ldapmodrdn", *ident, missing, "uid=y")
    alike(pair, "ldapmodify", *ident, input=f"dn: {missing}\nchangetype: add\nobjectClass: account\n")


@pytest.mark.parametrize("who", ["anonymous", "asmith"])
@pytest.mark.parametrize("request_", ["(userPassword=hidden1)", "(description=secret plans)", "(uid=h1)",
                                      "(name=Manager)"])  # fmt: skip
def test_filters_on_protected_attributes(pair, who, request_):
    alike(pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", SUFFIX, request_, "1.1")
    alike(pair, "ldapcompare", *IDENTITIES[who], H1, request_.strip("()").replace("=", ":", 1))


# title is a subtype of name: access to name says nothing of title's values
SUPERTYPE_FILTERS = ["(name=Manager)", "(name=*)", "(name=Man*)", "(|(name=Manager)(cn=nobody))", "(!(name=Manager))",
                     "(name=Bob Wong)", "(!(name=Bob Wong))", "(name>=M)", "(name:caseIgnoreMatch:=Manager)"]  # fmt: skip


# extensible matches with no attribute test every attribute the matching rule applies to: userPassword too
@pytest.mark.parametrize("who", ["anonymous", "asmith", "jdoe", "rootdn"])
@pytest.mark.parametrize("filter_", ["(:octetStringMatch:=secret1)", "(:octetStringMatch:=secret2)",
                                     "(!(:octetStringMatch:=secret1))", "(:caseIgnoreMatch:=Manager)",
                                     "(:caseIgnoreMatch:=secret plans)", "(:dn:caseIgnoreMatch:=Hidden)",
                                     "(userPassword:octetStringMatch:=secret1)", "(:caseIgnoreMatch:=Bob Wong)"])  # fmt: skip
def test_extensible_filters_on_every_attribute(pair, who, filter_):
    alike(pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", SUFFIX, filter_, "1.1")
    alike(pair, "ldapcompare", *IDENTITIES[who], "-e", f"!assert={filter_}", JDOE, "uid:jdoe")


@pytest.mark.parametrize("who", ["anonymous", "asmith", "rootdn"])
@pytest.mark.parametrize("filter_", SUPERTYPE_FILTERS)
def test_filters_on_supertypes(pair, who, filter_):
    alike(pair, "ldapsearch", *IDENTITIES[who], "-LLL", "-b", PEOPLE, filter_, "1.1")


@pytest.mark.parametrize("who", ["anonymous", "asmith", "rootdn"])
@pytest.mark.parametrize(
    "assertion", ["name:Manager", "name:Bob Wong", "name:Wong", "name:nothing", "title:Manager"]
)
def test_compare_on_supertypes(pair, who, assertion):
    alike(pair, "ldapcompare", *IDENTITIES[who], BWONG, assertion)
    alike(pair, "ldapcompare", *IDENTITIES[who], "-e", f"!assert=({assertion.replace(':', '=', 1)})", BWONG,
          "uid:bwong")  # fmt: skip


@pytest.mark.parametrize("who", ["anonymous", "asmith", "rootdn"])
def test_sync_persist_sends_only_readable_changes(pair, who, tmp_path):
    """A refreshAndPersist search as a user: changes to entries it may not read never reach it, and the ones it
    gets carry only readable attributes."""
    ident = IDENTITIES[who]
    filter_ = "(|(uid=h1)(uid=jdoe)(cn=m1)(name=Manager))"  # title (under name) is for users only
    outputs = []
    processes = []
    try:
        for server in pair:
            out = open(tmp_path / f"{server.name}.out", "w+")
            outputs.append(out)
            processes.append(subprocess.Popen(
                ["ldapsearch", "-H", server.url, *ident, "-LLL", "-E", "sync=rp", "-b", SUFFIX, filter_, "cn",
                 "description", "userPassword"], stdout=out, stderr=subprocess.STDOUT, text=True))  # fmt: skip
        time.sleep(1.5)  # the refresh stage ends (two entries at most)
        for target in (H1, JDOE, f"cn=m1,{MANY}", BWONG):
            for server in pair:
                result = ldap_tool("ldapmodify", "-H", server.url, *IDENTITIES["rootdn"],
                                   input=modify(target, "description", f"persist {who}"))  # fmt: skip
                assert result.returncode == 0, result.stderr
        time.sleep(1.5)  # the persist stage pushes the changes
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    slapd, ours = (sync_view(out.seek(0) or out.read()) for out in outputs)
    for out in outputs:
        out.close()
    assert ours == slapd
    assert any("description: persist" in line for _dn, lines in ours for line in lines)


# -- the sizelimit directive's specifiers (slapd.conf(5) `limits` syntax) --------------------------------------

DIRECTIVE_GLOBAL = "sizelimit size.soft=3 size.hard=6\ntimelimit time.soft=600 time.hard=unlimited"
DIRECTIVE_DB = "sizelimit size.prtotal=unlimited size.pr=4\naccess to * by * read"


@pytest.fixture(scope="module")
def directive_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizelimit-directive")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            conf = slapd_conf(
                root / name / "db", modules=True, extra_global=DIRECTIVE_GLOBAL, extra_db=DIRECTIVE_DB
            )
            server = start(root / name, conf, name=name)
            servers.append(server)
            result = ldap_tool("ldapadd", "-H", server.url, *IDENTITIES["rootdn"], input=BASE_LDIF)
            assert result.returncode == 0, f"{name}: {result.stderr}\n{server.log()}"
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("size", ["0", "5", "8"])
@pytest.mark.parametrize("paging", ["", "pr=2/noprompt", "pr=4/noprompt", "pr=5/noprompt"])
def test_sizelimit_directive_specifiers(directive_pair, size, paging):
    """size.hard caps what a client may ask for, size.pr the page size, size.prtotal=unlimited lets a paged
    search go past the size limits."""
    extra = ["-E", paging] if paging else []
    alike(directive_pair, "ldapsearch", "-x", "-LLL", "-z", size, *extra, "-b", SUFFIX, "(objectClass=*)", "1.1",
          count_only=True)  # fmt: skip


def test_paged_search_continued_after_a_rebind(pair):
    """The filter of a paged search is tested as the session is when each page is asked for: a search begun as
    the rootdn on userPassword and continued anonymously shows nothing more (as slapd)."""
    answers = []
    for server in pair:
        conn = ldap.initialize(server.url)
        try:
            conn.simple_bind_s(ROOTDN, ROOTPW)
            control = SimplePagedResultsControl(True, size=1, cookie=b"")
            filter_ = "(|(userPassword=secret1)(userPassword=secret2)(userPassword=secret3))"
            msgid = conn.search_ext(SUFFIX, ldap.SCOPE_SUBTREE, filter_, ["1.1"], serverctrls=[control])
            _t, first, _m, controls = conn.result3(msgid)
            cookie = next(c.cookie for c in controls if c.controlType == control.controlType)
            conn.simple_bind_s("", "")
            control.cookie = cookie
            msgid = conn.search_ext(SUFFIX, ldap.SCOPE_SUBTREE, filter_, ["1.1"], serverctrls=[control])
            _t, rest, _m, _controls = conn.result3(msgid)
            answers.append((len(first), sorted(dn for dn, _a in rest)))
        finally:
            conn.unbind_s()
    assert answers[1] == answers[0] == (1, [])
