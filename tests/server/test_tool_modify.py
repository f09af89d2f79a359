"""`pyldapd modify` against Debian's slapmodify: LDIF change records applied offline to a real database, then read
back by `pyldapd cat` and by a started server (indexes included)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.data import BASE_LDIF
from tests.server.test_tools import SLAPADD, SLAPCAT, entries, make_conf, pyldapd, run
from tests.servers import ROOTDN, SUFFIX, ldap_tool, start_pyldapd

SLAPMODIFY = "/usr/sbin/slapmodify"
PEOPLE = f"ou=People,{SUFFIX}"
JDOE, ASMITH, BWONG = f"uid=jdoe,{PEOPLE}", f"uid=asmith,{PEOPLE}", f"uid=bwong,{PEOPLE}"
OPERATIONAL = {"structuralobjectclass", "entryuuid", "creatorsname", "createtimestamp", "entrycsn",
               "modifiersname", "modifytimestamp", "contextcsn"}  # fmt: skip

# every change slapmodify 2.5.13 applies: an add, a modify of each kind, a delete
CHANGES = f"""\
version: 1

# a comment between records
dn: {JDOE}
changetype: modify
add: title
title: Engineer
-
delete: mail
-
replace: description
description: replaced
-
increment: uidNumber
uidNumber: 10
-
delete: cn
cn: Johnny

dn: cn=Gern Jensen,{PEOPLE}
changetype: add
objectClass: inetOrgPerson
cn: Gern Jensen
sn: Jensen
uid: gjensen
mail: gern@example.com

dn: {BWONG}
changetype: delete

dn: {SUFFIX}
changetype: modify
"""


def loaded(tmp_path: Path, name: str, *, slapd: bool = False) -> Path:
    """A config whose database holds BASE_LDIF, loaded by slapadd or pyldapd add."""
    conf = make_conf(tmp_path, name, slapd=slapd)
    added = (
        run(SLAPADD, "-f", str(conf), input=BASE_LDIF)
        if slapd
        else pyldapd("add", "-f", str(conf), input=BASE_LDIF)
    )
    assert added.returncode == 0, added.stderr
    return conf


Dump = dict[str, dict[str, list[bytes]]]  # dn (lowercased) -> attribute (lowercased) -> values


def dump(conf: Path, *, slapd: bool = False) -> Dump:
    result = run(SLAPCAT, "-f", str(conf)) if slapd else pyldapd("cat", "-f", str(conf))
    assert result.returncode == 0, result.stderr
    return entries(result.stdout)


def user_attributes(dumped: Dump) -> Dump:
    return {dn: {k: v for k, v in attrs.items() if k not in OPERATIONAL} for dn, attrs in dumped.items()}


def changed(before: Dump, after: Dump) -> dict[str, dict[str, list[bytes]] | None]:
    """The entries whose user attributes a run changed (None: deleted). Each side is compared with its own
    starting point: pyldapd add and slapadd store some values differently (DN values in pretty form or not)."""
    old, new = user_attributes(before), user_attributes(after)
    out: dict[str, dict[str, list[bytes]] | None] = {dn: None for dn in old if dn not in new}
    out.update({dn: attrs for dn, attrs in new.items() if old.get(dn) != attrs})
    return out


def test_each_changetype_leaves_what_slapmodify_leaves_and_the_server_reads_it(tmp_path):
    ours, theirs = loaded(tmp_path, "ours"), loaded(tmp_path, "theirs", slapd=True)
    before, slapd_before = dump(ours), dump(theirs, slapd=True)
    (tmp_path / "changes.ldif").write_text(CHANGES)
    mine = pyldapd("modify", "-f", str(ours), "-l", str(tmp_path / "changes.ldif"))
    slapd = run(SLAPMODIFY, "-f", str(theirs), "-l", str(tmp_path / "changes.ldif"))
    assert mine.returncode == slapd.returncode == 0, (mine.stderr, slapd.stderr)
    after = dump(ours)
    assert changed(before, after) == changed(slapd_before, dump(theirs, slapd=True))
    # jdoe, Gern Jensen, bwong (the suffix's empty modify changes no user attribute)
    assert len(changed(before, after)) == 3
    jdoe, gern = after[JDOE.lower()], after[f"cn=gern jensen,{PEOPLE}".lower()]
    assert jdoe["uidnumber"] == [b"1011"] and jdoe["cn"] == [b"John Smith"] and "mail" not in jdoe
    assert BWONG.lower() not in after
    # the operational attributes the server would leave: a modify moves entryCSN, modifiersName and
    # modifyTimestamp and keeps the entry's identity (slapmodify 2.5.13 gives it a new entryUUID)
    for name in ("entryuuid", "creatorsname", "createtimestamp"):
        assert jdoe[name] == before[JDOE.lower()][name], name
    assert jdoe["entrycsn"] > before[JDOE.lower()]["entrycsn"]
    assert jdoe["modifytimestamp"] == [jdoe["entrycsn"][0][:14] + b"Z"]
    assert jdoe["modifiersname"] == gern["creatorsname"] == gern["modifiersname"] == [ROOTDN.encode()]
    assert gern["structuralobjectclass"] == [b"inetOrgPerson"] and len(gern["entryuuid"]) == 1
    # a modify without changes still records that it happened, as slapmodify's does
    assert after[SUFFIX]["entrycsn"] > before[SUFFIX]["entrycsn"]
    # a server on the database finds the changes through its indexes (uid, cn, mail: eq; uidNumber: eq)
    server = start_pyldapd(tmp_path / "serve", ours.read_text())
    try:
        for filter_, found in (("(uid=gjensen)", True), ("(mail=gern@example.com)", True), ("(uid=bwong)", False),
                               ("(cn=Johnny)", False), ("(uidNumber=1011)", True), ("(uidNumber=1001)", False),
                               ("(mail=john.smith@example.com)", False), ("(cn=gern*)", True)):  # fmt: skip
            searched = ldap_tool("ldapsearch", "-x", "-LLL", "-H", server.url, "-b", SUFFIX, filter_, "1.1")
            assert searched.returncode == 0, searched.stderr
            assert ("dn: " in searched.stdout) == found, filter_
    finally:
        server.stop()


def test_a_schema_violation_is_refused_with_slapmodifys_status_and_words(tmp_path):
    ours, theirs = loaded(tmp_path, "ours"), loaded(tmp_path, "theirs", slapd=True)
    ldif = (
        f"dn: {ASMITH}\nchangetype: modify\nreplace: title\ntitle: first\n\n"
        f"dn: cn=nosn,{SUFFIX}\nchangetype: add\nobjectClass: person\ncn: nosn\n\n"
        f"dn: {JDOE}\nchangetype: modify\nreplace: title\ntitle: never\n"
    )
    before, slapd_before = dump(ours), dump(theirs, slapd=True)
    mine = pyldapd("modify", "-f", str(ours), input=ldif)
    slapd = run(SLAPMODIFY, "-f", str(theirs), input=ldif)
    assert mine.returncode == slapd.returncode == 1
    words = f"dn=\"cn=nosn,{SUFFIX}\" (line=6): (65) object class 'person' requires attribute 'sn'"
    assert f"pyldapd modify: {words}" in mine.stderr and f"slapmodify: {words}" in slapd.stderr
    # the record before it is applied, nothing of it nor after it
    after = dump(ours)
    assert changed(before, after) == changed(slapd_before, dump(theirs, slapd=True))
    assert after[ASMITH.lower()]["title"] == [b"first"] and "title" not in after[JDOE.lower()]
    assert f"cn=nosn,{SUFFIX}" not in after
    # a modify that breaks the schema is refused as well, and the entry stays as it was
    removal = f"dn: {JDOE}\nchangetype: modify\ndelete: sn\n"
    refused = pyldapd("modify", "-f", str(ours), input=removal)
    assert refused.returncode == 1
    assert (
        f"dn=\"{JDOE}\" (line=1): (65) object class 'inetOrgPerson' requires attribute 'sn'" in refused.stderr
    )
    assert dump(ours)[JDOE.lower()] == after[JDOE.lower()]
    # -s: no schema check (as slapmodify -s)
    unchecked = pyldapd("modify", "-s", "-f", str(ours), input=removal)
    assert unchecked.returncode == 0, unchecked.stderr
    assert "sn" not in dump(ours)[JDOE.lower()]


def test_c_goes_on_after_failing_records(tmp_path):
    ours, theirs = loaded(tmp_path, "ours"), loaded(tmp_path, "theirs", slapd=True)
    ldif = (
        f"dn: {ASMITH}\nchangetype: modify\nreplace: title\ntitle: one\n\n"
        f"dn: {ASMITH}\nchangetype: modify\nadd: uidNumber\nuidNumber: not-a-number\n\n"  # invalid syntax
        f"dn: {JDOE}\nchangetype: modify\nreplace: title\ntitle: two\n\n"
        f"dn: uid=nobody,{PEOPLE}\nchangetype: delete\n\n"  # no such entry
        f"dn: {BWONG}\nchangetype: modify\nadd: nosuchattr\nnosuchattr: x\n\n"  # undefined type
        f"dn: {BWONG}\nchangetype: modify\nreplace: title\ntitle: three\n"
    )
    stopped = pyldapd("modify", "-f", str(loaded(tmp_path, "stopped")), input=ldif)
    assert stopped.returncode == 1 and stopped.stderr.count("pyldapd modify:") == 1
    before, slapd_before = dump(ours), dump(theirs, slapd=True)
    mine = pyldapd("modify", "-c", "-f", str(ours), input=ldif)
    slapd = run(SLAPMODIFY, "-c", "-f", str(theirs), input=ldif)
    # the same records applied; pyldapd's status says some failed (slapmodify's says how the last one went)
    assert (mine.returncode, slapd.returncode) == (1, 0)
    after = dump(ours)
    assert changed(before, after) == changed(slapd_before, dump(theirs, slapd=True))
    assert [after[dn.lower()]["title"] for dn in (ASMITH, JDOE, BWONG)] == [[b"one"], [b"two"], [b"three"]]
    errors = [line for line in mine.stderr.splitlines() if line.startswith("pyldapd modify:")]
    assert errors == [
        f'pyldapd modify: DN="{ASMITH}": unable to validate attr=uidNumber (line=6): (21) uidNumber: value #0 '
        "invalid per syntax",
        f'pyldapd modify: no such entry "uid=nobody,{PEOPLE.lower()}" in database (lineno={line_of(ldif, "nobody")})',
        f'pyldapd modify: slap_str2ad("nosuchattr") failed for entry "{BWONG}" (17: nosuchattr: attribute type '
        f"undefined, lineno={line_of(ldif, 'add: nosuchattr') - 2})",
    ]


def line_of(ldif: str, text: str) -> int:
    """The number of the line where `text` first appears."""
    return ldif[: ldif.index(text)].count("\n") + 1


def test_modrdn_records_without_changetype_and_stdin(tmp_path):
    """Beyond slapmodify 2.5.13 (which refuses modrdn and reads every record without a changetype as a modify):
    renames with the server's checks, a record starting with a modify operation is a modify, any other an add."""
    ours = loaded(tmp_path, "ours")
    ldif = (
        "# comments first, then the version line\n\nversion: 1\n\n"
        f"dn: {ASMITH}\nreplace: title\ntitle: implicit\n-\nadd: description\ndescription: d\n\n"
        f"dn: cn=plain,{PEOPLE}\nobjectClass: person\ncn: plain\nsn: Plain\n\n"
        f"dn: cn=plain,{PEOPLE}\nchangetype: modrdn\nnewrdn: cn=renamed\ndeleteoldrdn: 1\n\n"
        f"dn: {PEOPLE}\nchangetype: moddn\nnewrdn: ou=Staff\ndeleteoldrdn: 0\n\n"
        f"dn: uid=jdoe,ou=Staff,{SUFFIX}\nchangetype: moddn\nnewrdn: uid=john\ndeleteoldrdn: 1\n"
        f"newsuperior: ou=Groups,{SUFFIX}\n"
    )
    before = dump(ours)
    result = pyldapd("modify", "-v", "-f", str(ours), input=ldif)
    assert result.returncode == 0, result.stderr
    assert f'modrdn: "{PEOPLE.lower()}"' in result.stderr
    after = dump(ours)
    staff = f"ou=staff,{SUFFIX}"
    assert after[f"uid=asmith,{staff}"]["title"] == [b"implicit"]
    assert after[f"uid=asmith,{staff}"]["description"] == [b"d"]
    assert after[f"cn=renamed,{staff}"]["cn"] == [b"renamed"]  # deleteoldrdn: the old value is gone
    assert after[staff]["ou"] == [b"People", b"Staff"]  # deleteoldrdn: 0 keeps it
    john = after[f"uid=john,ou=groups,{SUFFIX}"]
    assert john["uid"] == [b"john"] and john["entryuuid"] == before[JDOE.lower()]["entryuuid"]
    assert PEOPLE.lower() not in after and f"uid=jdoe,{staff}" not in after
    # what the server refuses, refused here with its words: the suffix, below itself, an existing name
    for record, words in (
        (f"dn: {SUFFIX}\nchangetype: modrdn\nnewrdn: dc=Example\ndeleteoldrdn: 1\n", "(53) cannot rename the suffix"),
        (f"dn: {ASMITH.replace('People', 'Staff')}\nchangetype: modrdn\nnewrdn: dc=other\ndeleteoldrdn: 1\n"
         f"newsuperior: dc=org\n", "(71) cannot rename between DSAs"),
        (f"dn: {staff}\nchangetype: moddn\nnewrdn: ou=x\ndeleteoldrdn: 0\nnewsuperior: cn=renamed,{staff}\n",
         "(53) cannot place an entry below itself"),
        (f"dn: cn=renamed,{staff}\nchangetype: modrdn\nnewrdn: uid=asmith\ndeleteoldrdn: 0\n",
         "(68)"),
    ):  # fmt: skip
        refused = pyldapd("modify", "-f", str(ours), input=record)
        assert refused.returncode == 1 and words in refused.stderr, refused.stderr
    assert dump(ours) == after
    # slapmodify itself refuses the rename
    theirs = loaded(tmp_path, "theirs", slapd=True)
    slapd = run(
        SLAPMODIFY,
        "-f",
        str(theirs),
        input=f"dn: {ASMITH}\nchangetype: modrdn\nnewrdn: uid=a\ndeleteoldrdn: 1\n",
    )
    assert slapd.returncode == 1 and "request 0x6c not supported" in slapd.stderr


def test_dry_run_jump_and_w_with_a_server_id(tmp_path):
    ours, theirs = loaded(tmp_path, "ours"), loaded(tmp_path, "theirs", slapd=True)
    (tmp_path / "changes.ldif").write_text(CHANGES)
    before = dump(ours)
    dry = pyldapd("modify", "-u", "-v", "-f", str(ours), "-l", str(tmp_path / "changes.ldif"))
    assert dry.returncode == 0, dry.stderr
    assert f'delete: "{BWONG.lower()}"\n' in dry.stderr  # no entry id: nothing was written
    assert dump(ours) == before
    # -u checks everything: a change that cannot be applied fails the dry run too
    failing = pyldapd("modify", "-u", "-f", str(ours), input=f"dn: {PEOPLE}\nchangetype: delete\n")
    assert failing.returncode == 1 and "subordinate objects must be deleted first" in failing.stderr
    # -j: the records before that line are skipped (the jdoe modify); -w -S 5: contextCSN as slapmodify -w writes it
    # (no delete: slapmodify -w crashes on one)
    (tmp_path / "no-delete.ldif").write_text(CHANGES.replace(f"dn: {BWONG}\nchangetype: delete\n\n", ""))
    jump = CHANGES[: CHANGES.index("dn: cn=Gern")].count("\n") + 1
    slapd_before = dump(theirs, slapd=True)
    mine = pyldapd(
        "modify", "-w", "-S", "5", "-j", str(jump), "-f", str(ours), "-l", str(tmp_path / "no-delete.ldif")
    )
    slapd = run(
        SLAPMODIFY,
        "-w",
        "-S",
        "5",
        "-j",
        str(jump),
        "-f",
        str(theirs),
        "-l",
        str(tmp_path / "no-delete.ldif"),
    )
    assert mine.returncode == slapd.returncode == 0, (mine.stderr, slapd.stderr)
    after, slapd_after = dump(ours), dump(theirs, slapd=True)
    assert changed(before, after) == changed(slapd_before, slapd_after)
    assert after[JDOE.lower()] == before[JDOE.lower()]
    sids = lambda values: {v.split(b"#")[2] for v in values}  # noqa: E731
    assert sids(after[SUFFIX]["contextcsn"]) == sids(slapd_after[SUFFIX]["contextcsn"]) == {b"005"}
    # the greatest CSN of the run: the last change (the suffix's own modify)
    assert after[SUFFIX]["contextcsn"] == after[SUFFIX]["entrycsn"]
    assert sids(after[f"cn=gern jensen,{PEOPLE}".lower()]["entrycsn"]) == {b"005"}
    # a delete is a change too: with -w its CSN joins the contextCSN, as the server's delete moves it
    deleted = pyldapd("modify", "-w", "-S", "6", "-f", str(ours), input=f"dn: {BWONG}\nchangetype: delete\n")
    assert deleted.returncode == 0, deleted.stderr
    context = dump(ours)[SUFFIX]["contextcsn"]
    assert sids(context) == {b"005", b"006"} and max(context) > after[SUFFIX]["entrycsn"][0]


def test_flags_slapmodify_refuses_or_pyldapd_does_not_implement_are_refused(tmp_path):
    ours = loaded(tmp_path, "ours")
    before = dump(ours)
    change = f"dn: {JDOE}\nchangetype: modify\nreplace: title\ntitle: x\n"
    for args, words in (
        (["-o", "syslog=stats"], "never to syslog"),
        (["-o", "frob=1"], "unknown option"),
        (["-o", "schema-check=maybe"], 'unable to parse schema-check="maybe"'),
        (["-s", "-o", "schema-check=yes"], "contradict"),
        (["-S", "4096"], "a server ID is 0 to 4095"),
        (["-d", "bogus"], "-d: unknown level"),
        (["-n", "0"], "does not change the config database"),
        (["-n", "2"], "out of range"),
        (["-b", "dc=nowhere"], "no backend"),
        (["-F", str(tmp_path / "slapd.d")], "-f and -F together"),
    ):
        result = pyldapd("modify", *args, "-f", str(ours), input=change)
        assert result.returncode == 1 and words in result.stderr, (args, result.stderr)
    outside = pyldapd("modify", "-f", str(ours), input="dn: cn=x,dc=other\nchangetype: delete\n")
    assert outside.returncode == 1
    assert (
        'database #1 (dc=example,dc=com) not configured to hold "cn=x,dc=other"; no database'
        in outside.stderr
    )
    control = pyldapd("modify", "-f", str(ours), input=f"dn: {JDOE}\ncontrol: 1.2.3\nchangetype: delete\n")
    assert control.returncode == 1 and "control lines are not supported" in control.stderr
    assert dump(ours) == before
    # -o value-check=yes checks every value of the changed entry, not only the new ones (off by default): an
    # invalid value stored by a quick load (`add -q` checks no syntax) stops the change only then
    bad = f"dn: cn=bad,{SUFFIX}\nobjectClass: person\nobjectClass: uidObject\ncn: bad\nsn: B\nuid: bad\n"
    assert pyldapd("add", "-q", "-f", str(ours), input=bad + "seeAlso: not a DN\n").returncode == 0
    retitle = f"dn: cn=bad,{SUFFIX}\nchangetype: modify\nreplace: description\ndescription: d\n"
    checked = pyldapd("modify", "-o", "value-check=yes", "-d", "trace", "-f", str(ours), input=retitle)
    assert checked.returncode == 1
    assert "(21) seeAlso: value #0 invalid per syntax" in checked.stderr
    assert (
        f'=> modify( "cn=bad,{SUFFIX}" ) (line=1)' in checked.stderr
    )  # -d: a line as each record is taken up
    unchecked = pyldapd("modify", "-f", str(ours), input=retitle)
    assert unchecked.returncode == 0 and unchecked.stderr == "", unchecked.stderr


def test_slapd_names_run_it(tmp_path):
    """`slapd -Tm` (as OpenLDAP's test scripts run it) and a `slapmodify` link made by `pyldapd compat-links`."""
    links = tmp_path / "links"
    made = run(sys.executable, "-m", "pyldapd.cli.main", "compat-links", str(links))
    assert made.returncode == 0, made.stderr
    assert os.path.islink(links / "slapmodify")
    ours = loaded(tmp_path, "ours")
    for number, argv in enumerate(([str(links / "slapd"), "-Tm", "-d", "0"], [str(links / "slapmodify")])):
        change = f"dn: {JDOE}\nchangetype: modify\nreplace: title\ntitle: t{number}\n"
        result = run(*argv, "-f", str(ours), input=change)
        assert result.returncode == 0, result.stderr
        assert dump(ours)[JDOE.lower()]["title"] == [f"t{number}".encode()]


def test_glued_subordinates_take_their_records_unless_g(tmp_path):
    """On a glue superior each record goes to the database holding its DN, as slapd's glue sends it; with -g only
    the selected database is open, and a DN of another is refused with slapmodify's hint. (slapmodify's own glue
    crashes now and then on a superior's record, and sends a delete to the superior: only its -g refusal is
    compared.)"""
    from tests.server.test_glue import glue_conf

    ldif = (
        f"dn: {JDOE}\nchangetype: modify\nreplace: title\ntitle: glued\n\n"
        f"dn: cn=crew,ou=Groups,{SUFFIX}\nchangetype: add\nobjectClass: groupOfNames\ncn: crew\nmember: {JDOE}\n\n"
        f"dn: {SUFFIX}\nchangetype: modify\nreplace: o\no: Glued\n\n"
        f"dn: {BWONG}\nchangetype: delete\n"
    )
    for server in ("pyldapd", "slapd"):
        root = tmp_path / server
        conf = root / "glue.conf"
        root.mkdir()
        conf.write_text(glue_conf(root))
        added = (run(SLAPADD, "-f", str(conf), input=BASE_LDIF) if server == "slapd"
                 else pyldapd("add", "-f", str(conf), input=BASE_LDIF))  # fmt: skip
        assert added.returncode == 0, added.stderr
        program = [SLAPMODIFY] if server == "slapd" else [sys.executable, "-m", "pyldapd.cli.main", "modify"]
        alone = run(*program, "-g", "-b", SUFFIX, "-f", str(conf), input=f"dn: {BWONG}\nchangetype: delete\n")
        assert alone.returncode == 1
        assert (f'database #3 ({SUFFIX}) not configured to hold "{BWONG}"; did you mean to use database #2 '
                f"(ou=People,{SUFFIX})?") in alone.stderr  # fmt: skip
    conf = tmp_path / "pyldapd" / "glue.conf"
    before = {number: glued_part(conf, number) for number in (1, 2, 3)}
    modified = pyldapd("modify", "-f", str(conf), input=ldif)
    assert modified.returncode == 0, modified.stderr
    groups, people, top = (glued_part(conf, number) for number in (1, 2, 3))
    assert people[JDOE.lower()]["title"] == [b"glued"] and BWONG.lower() not in people
    assert groups[f"cn=crew,ou=groups,{SUFFIX}"]["member"] == [JDOE.encode()]
    assert top[SUFFIX]["o"] == [b"Glued"]
    assert set(top) == set(before[3]) and set(people) == set(before[2]) - {BWONG.lower()}


def glued_part(conf: Path, number: int) -> Dump:
    """One database's own entries (-g -n), user attributes only."""
    cat = pyldapd("cat", "-g", "-n", str(number), "-f", str(conf))
    assert cat.returncode == 0, cat.stderr
    return user_attributes(entries(cat.stdout))
