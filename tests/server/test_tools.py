"""The offline tools against their OpenLDAP counterparts: `pyldapd add/cat/index/test` vs slapadd, slapcat,
slapindex and slaptest, on databases made from one slapd.conf."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pyldapd.model.ldif import LDIFContent, parse_ldif
from tests.data import BASE_LDIF
from tests.servers import ROOTDN, SUFFIX, ldap_tool, slapd_conf, start_pyldapd

SLAPADD, SLAPCAT, SLAPTEST = "/usr/sbin/slapadd", "/usr/sbin/slapcat", "/usr/sbin/slaptest"
LIMIT = 120  # seconds, every tool run


def run(*argv: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=LIMIT)


def pyldapd(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "pyldapd.cli.main", *args, input=input)


def make_conf(tmp_path: Path, name: str, *, slapd: bool = False, **kw) -> Path:
    db = tmp_path / f"{name}-db"
    db.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / f"{name}.conf"
    conf.write_text(slapd_conf(db, modules=slapd, **kw))
    return conf


def entries(ldif: str) -> dict[str, dict[str, list[bytes]]]:
    """dn (lowercased) -> {attribute (lowercased): values}."""
    out = {}
    for record in parse_ldif(ldif):
        assert isinstance(record, LDIFContent)
        out[record.dn.lower()] = {name.lower(): sorted(values) for name, values in record.attributes}
    return out


def dns_in_order(ldif: str) -> list[str]:
    return [record.dn.lower() for record in parse_ldif(ldif)]


def test_cat_and_add_round_trip_with_slapcat_and_slapadd(tmp_path):
    ours = make_conf(tmp_path, "ours")
    theirs = make_conf(tmp_path, "theirs", slapd=True)
    again = make_conf(tmp_path, "again")
    added = pyldapd("add", "-f", str(ours), input=BASE_LDIF)
    assert added.returncode == 0, added.stderr
    dumped = pyldapd("cat", "-f", str(ours))
    assert dumped.returncode == 0, dumped.stderr
    ours_entries = entries(dumped.stdout)
    assert len(ours_entries) == len(entries(BASE_LDIF))
    order = dns_in_order(dumped.stdout)
    for index, dn in enumerate(order):  # parents before children
        parent = dn.split(",", 1)[1] if "," in dn and dn != SUFFIX else ""
        assert dn == SUFFIX or order.index(parent) < index
    # Debian's slapadd loads pyldapd's dump, and slapcat gives back exactly the same entries
    (tmp_path / "dump.ldif").write_text(dumped.stdout)
    loaded = run(SLAPADD, "-q", "-f", str(theirs), "-l", str(tmp_path / "dump.ldif"))
    assert loaded.returncode == 0, loaded.stderr
    slapcat = run(SLAPCAT, "-f", str(theirs))
    assert slapcat.returncode == 0, slapcat.stderr
    assert entries(slapcat.stdout) == ours_entries
    # and pyldapd add loads slapcat's dump into the same entries again (entryUUID, entryCSN, timestamps kept)
    (tmp_path / "slapcat.ldif").write_text(slapcat.stdout)
    reloaded = pyldapd("add", "-q", "-f", str(again), "-l", str(tmp_path / "slapcat.ldif"))
    assert reloaded.returncode == 0, reloaded.stderr
    assert entries(pyldapd("cat", "-f", str(again)).stdout) == ours_entries
    # a server started on the restored database answers with the data
    server = start_pyldapd(tmp_path / "serve", again.read_text())
    try:
        found = ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", SUFFIX, "(uid=jdoe)", "entryUUID")
        assert found.returncode == 0, found.stderr
        uuid = ours_entries[f"uid=jdoe,ou=people,{SUFFIX}"]["entryuuid"][0].decode()
        assert f"entryUUID: {uuid}" in found.stdout
    finally:
        server.stop()


def test_add_generates_what_slapadd_generates(tmp_path):
    ours = make_conf(tmp_path, "ours")
    theirs = make_conf(tmp_path, "theirs", slapd=True)
    (tmp_path / "in.ldif").write_text(BASE_LDIF)
    assert pyldapd("add", "-f", str(ours), "-l", str(tmp_path / "in.ldif")).returncode == 0
    assert run(SLAPADD, "-f", str(theirs), "-l", str(tmp_path / "in.ldif")).returncode == 0
    mine = entries(pyldapd("cat", "-f", str(ours)).stdout)
    slapd = entries(run(SLAPCAT, "-f", str(theirs)).stdout)
    assert mine.keys() == slapd.keys()
    for dn, attrs in slapd.items():
        assert set(mine[dn]) == set(attrs), dn
        for name in ("structuralobjectclass", "creatorsname", "modifiersname", "objectclass", "cn"):
            assert mine[dn].get(name) == attrs.get(name), (dn, name)
        assert mine[dn]["creatorsname"] == [ROOTDN.encode()]
        csn = mine[dn]["entrycsn"][0].decode()
        assert csn.endswith("#000#000000") and mine[dn]["createtimestamp"][0].decode() == csn[:14] + "Z"


def test_add_takes_a_value_given_twice_like_slapadd(tmp_path):
    """slapadd stores an entry whose LDIF gives one value twice (OpenLDAP's test-whoami.ldif has one); pyldapd
    add keeps the value once, checked (-q too), where an LDAP add refuses it (20)."""
    ldif = BASE_LDIF + (
        f"\ndn: cn=twice,{SUFFIX}\nobjectClass: person\ncn: twice\nuserPassword: jaj\nsn: Twice\nsn: twice\n"
        "description: d\nuserPassword: jaj\n\n"
    )
    for quick in ((), ("-q",)):
        conf = make_conf(tmp_path, f"twice{len(quick)}")
        added = pyldapd("add", *quick, "-f", str(conf), input=ldif)
        assert added.returncode == 0, added.stderr
        stored = entries(pyldapd("cat", "-f", str(conf)).stdout)[f"cn=twice,{SUFFIX}"]
        assert stored["userpassword"] == [b"jaj"]
        # with -q nothing normalizes: the two spellings differ as bytes
        assert stored["sn"] == ([b"Twice"] if not quick else [b"Twice", b"twice"])
    theirs = make_conf(tmp_path, "theirs", slapd=True)
    assert run(SLAPADD, "-f", str(theirs), input=ldif).returncode == 0


def test_add_w_writes_the_greatest_csn_per_server_id_like_slapadd(tmp_path):
    records = BASE_LDIF.strip().split("\n\n")
    csns = ["20240101000000.000001Z#000000#001#000000", "20240101000000.000009Z#000000#002#000000",
            "20240101000000.000005Z#000000#001#000000", "20240101000000.000003Z#000000#002#000000"]  # fmt: skip
    text = ""
    for index, record in enumerate(records):
        if index < len(csns):
            record += f"\nentryCSN: {csns[index]}"
        text += record + "\n\n"
    ldif = tmp_path / "csn.ldif"
    ldif.write_text(text)
    ours = make_conf(tmp_path, "ours")
    theirs = make_conf(tmp_path, "theirs", slapd=True)
    assert pyldapd("add", "-w", "-S", "3", "-f", str(ours), "-l", str(ldif)).returncode == 0
    assert run(SLAPADD, "-w", "-S", "3", "-f", str(theirs), "-l", str(ldif)).returncode == 0
    mine = entries(pyldapd("cat", "-f", str(ours)).stdout)[SUFFIX]["contextcsn"]
    slapd = entries(run(SLAPCAT, "-f", str(theirs)).stdout)[SUFFIX]["contextcsn"]
    by_sid = lambda values: {v.decode().split("#")[2]: v for v in values}  # noqa: E731
    assert set(by_sid(mine)) == set(by_sid(slapd)) == {"001", "002", "003"}
    assert by_sid(mine)["001"] == by_sid(slapd)["001"] == csns[2].encode()
    assert by_sid(mine)["002"] == by_sid(slapd)["002"] == csns[1].encode()
    # sid 3: the newest CSN generated for the entries that had none
    generated = [a["entrycsn"][0] for a in entries(pyldapd("cat", "-f", str(ours)).stdout).values()]
    assert by_sid(mine)["003"] == max(c for c in generated if b"#003#" in c)


BAD_LDIF = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: uid=nosn,{SUFFIX}
objectClass: person
uid: nosn
cn: No Surname

dn: cn=after,{SUFFIX}
objectClass: person
cn: after
sn: After

dn: cn=elsewhere,dc=other,dc=org
objectClass: person
cn: elsewhere
sn: Elsewhere
"""


def test_add_errors_stop_or_continue_like_slapadd(tmp_path):
    (tmp_path / "bad.ldif").write_text(BAD_LDIF)
    results = {}
    for flags in ([], ["-c"]):
        ours = make_conf(tmp_path, "ours" + "".join(flags))
        theirs = make_conf(tmp_path, "theirs" + "".join(flags), slapd=True)
        mine = pyldapd("add", *flags, "-f", str(ours), "-l", str(tmp_path / "bad.ldif"))
        slapd = run(SLAPADD, *flags, "-f", str(theirs), "-l", str(tmp_path / "bad.ldif"))
        assert mine.returncode == slapd.returncode == (0 if flags else 1)  # -c: bad entries skipped, exit 0
        assert (
            f"dn=\"uid=nosn,{SUFFIX}\" (line=7): (65) object class 'person' requires attribute 'sn'"
            in mine.stderr
        )
        assert "(line=7): (65)" in slapd.stderr
        mine_dns = set(entries(pyldapd("cat", "-f", str(ours)).stdout))
        assert mine_dns == set(entries(run(SLAPCAT, "-f", str(theirs)).stdout))
        results[bool(flags)] = (mine_dns, mine.stderr)
    assert results[False][0] == {SUFFIX}  # stopped at the first error
    assert results[True][0] == {SUFFIX, f"cn=after,{SUFFIX}"}  # went on
    assert 'not configured to hold "cn=elsewhere,dc=other,dc=org"' in results[True][1]


def test_add_waits_for_parents_and_reports_missing_ones(tmp_path):
    ours = make_conf(tmp_path, "ours")
    records = BASE_LDIF.strip().split("\n\n")
    shuffled = "\n\n".join(reversed(records)) + "\n\n"
    assert pyldapd("add", "-q", "-f", str(ours), input=shuffled).returncode == 0
    assert entries(pyldapd("cat", "-f", str(ours)).stdout).keys() == entries(BASE_LDIF).keys()
    orphan = f"dn: cn=orphan,ou=Nowhere,{SUFFIX}\nobjectClass: person\ncn: orphan\nsn: O\n"
    after = f"dn: cn=after,{SUFFIX}\nobjectClass: person\ncn: after\nsn: A\n"
    fresh, theirs = make_conf(tmp_path, "fresh"), make_conf(tmp_path, "theirs", slapd=True)
    ldif = records[0] + "\n\n" + orphan + "\n" + after
    result = pyldapd("add", "-f", str(fresh), input=ldif)
    slapd = run(SLAPADD, "-f", str(theirs), input=ldif)
    assert result.returncode == slapd.returncode == 1
    report = ["Error, entries missing!", f"  entry 2: ou=nowhere,{SUFFIX}"]
    assert result.stderr.splitlines()[:2] == slapd.stderr.splitlines()[-2:] == report
    line = ldif[: ldif.index("dn: cn=orphan")].count("\n") + 1
    assert f'  not added: dn="cn=orphan,ou=Nowhere,{SUFFIX}" (line={line})' in result.stderr
    # slapd stores the orphan where no search reaches it; pyldapd leaves it out
    assert set(entries(pyldapd("cat", "-f", str(fresh)).stdout)) == {SUFFIX, f"cn=after,{SUFFIX}"}


def test_add_gives_late_parents_the_ids_slapadd_gives_them(tmp_path):
    """slapadd (back-mdb) gives the missing ancestors of an entry the ids just below its own ("holes", topmost
    first), and an ancestor that comes later takes its hole: so a parent listed after its children comes before
    them in slapcat and in a search of the whole database, which list entries by id (slapd's test001 with
    test-unordered.ldif). The same LDIF loaded by each lists in the same order."""

    def unit(dn: str) -> str:
        return f"dn: {dn}\nobjectClass: organizationalUnit\nou: {dn.split(',')[0][3:]}\n"

    def role(dn: str) -> str:
        return f"dn: {dn}\nobjectClass: organizationalRole\ncn: {dn.split(',')[0][3:]}\n"

    records = [
        BASE_LDIF.split("\n\n")[0] + "\n",
        role(f"cn=a,ou=People,{SUFFIX}"),  # its parent missing: a hole
        unit(f"ou=Groups,{SUFFIX}"),
        role(f"cn=deep,ou=Inner,ou=Outer,{SUFFIX}"),  # two missing: two holes
        role(f"cn=b,ou=People,{SUFFIX}"),  # its parent has a hole already
        unit(f"ou=People,{SUFFIX}"),
        unit(f"ou=Inner,ou=Outer,{SUFFIX}"),  # in its hole, still waiting for its parent
        unit(f"ou=Outer,{SUFFIX}"),
        role(f"cn=last,{SUFFIX}"),
    ]
    (tmp_path / "unordered.ldif").write_text("\n".join(records))
    ours, theirs = make_conf(tmp_path, "ours"), make_conf(tmp_path, "theirs", slapd=True)
    for argv in ((sys.executable, "-m", "pyldapd.cli.main", "add"), (SLAPADD,)):
        conf = ours if argv[0] != SLAPADD else theirs
        loaded = run(*argv, "-f", str(conf), "-l", str(tmp_path / "unordered.ldif"))
        assert loaded.returncode == 0, loaded.stderr
    listed = dns_in_order(pyldapd("cat", "-f", str(ours)).stdout)
    assert listed == dns_in_order(run(SLAPCAT, "-f", str(theirs)).stdout)
    assert listed == [dn.lower() for dn in (
        SUFFIX, f"ou=People,{SUFFIX}", f"cn=a,ou=People,{SUFFIX}", f"ou=Groups,{SUFFIX}", f"ou=Outer,{SUFFIX}",
        f"ou=Inner,ou=Outer,{SUFFIX}", f"cn=deep,ou=Inner,ou=Outer,{SUFFIX}", f"cn=b,ou=People,{SUFFIX}",
        f"cn=last,{SUFFIX}",
    )]  # fmt: skip


def test_database_selection_b_and_n(tmp_path):
    other_db = tmp_path / "other-db"
    other_db.mkdir()
    extra = (
        f'database mdb\nsuffix "dc=other,dc=org"\nrootdn "cn=admin,dc=other,dc=org"\ndirectory {other_db}\n'
    )
    conf = make_conf(tmp_path, "two", extra_db="\n" + extra)
    other = "dn: dc=other,dc=org\nobjectClass: dcObject\nobjectClass: organization\no: Other\ndc: other\n"
    assert pyldapd("add", "-b", "dc=other,dc=org", "-f", str(conf), input=other).returncode == 0
    assert pyldapd("add", "-n", "1", "-f", str(conf), input=BASE_LDIF).returncode == 0
    second = entries(pyldapd("cat", "-n", "2", "-f", str(conf)).stdout)
    assert list(second) == ["dc=other,dc=org"]
    assert second["dc=other,dc=org"]["creatorsname"] == [b"cn=admin,dc=other,dc=org"]
    assert len(entries(pyldapd("cat", "-b", f"ou=People,{SUFFIX}", "-f", str(conf)).stdout)) == len(
        entries(BASE_LDIF)
    )  # -b selects the database, not a subtree
    wrong_db = pyldapd("add", "-n", "1", "-f", str(conf), input=other)
    assert (
        wrong_db.returncode == 1
        and "database #1 (dc=example,dc=com) not configured to hold" in wrong_db.stderr
    )
    for args, text in ((["-n", "0"], "config database"), (["-n", "3"], "out of range"),
                       (["-b", "dc=nowhere"], "no backend"), (["-b", SUFFIX, "-n", "1"], "mutually exclusive")):  # fmt: skip
        result = pyldapd("cat", *args, "-f", str(conf))
        assert result.returncode == 1 and text in result.stderr, (args, result.stderr)
    missing = pyldapd("cat", "-F", str(tmp_path / "slapd.d"))
    assert missing.returncode == 1 and missing.stderr.strip()


def test_cat_filter_url_subtree_and_wrap(tmp_path):
    conf = make_conf(tmp_path, "ours")
    long_value = "x" * 200
    data = (
        BASE_LDIF
        + f"\ndn: cn=long,{SUFFIX}\nobjectClass: person\ncn: long\nsn: S\ndescription: {long_value}\n"
    )
    assert pyldapd("add", "-f", str(conf), input=data).returncode == 0
    jdoe = pyldapd("cat", "-f", str(conf), "-a", "(uid=jdoe)").stdout
    assert list(entries(jdoe)) == [f"uid=jdoe,ou=people,{SUFFIX}"]
    one = pyldapd(
        "cat", "-f", str(conf), "-H", f"ldap:///ou=People,{SUFFIX}??one?(objectClass=inetOrgPerson)"
    )
    people = {dn for dn in entries(BASE_LDIF) if dn.endswith(f",ou=people,{SUFFIX}")}
    assert one.returncode == 0 and set(entries(one.stdout)) == people
    subtree = pyldapd("cat", "-f", str(conf), "-s", f"ou=People,{SUFFIX}").stdout
    assert set(entries(subtree)) == people | {f"ou=people,{SUFFIX}"}
    wrapped = pyldapd("cat", "-f", str(conf), "-a", "(cn=long)").stdout
    assert max(len(line) for line in wrapped.splitlines()) == 78
    assert max(len(line) for line in pyldapd("cat", "-f", str(conf), "-a", "(cn=long)", "-o", "ldif_wrap=40")
               .stdout.splitlines()) == 40  # fmt: skip
    unwrapped = pyldapd("cat", "-f", str(conf), "-a", "(cn=long)", "-o", "ldif_wrap=no").stdout
    assert f"description: {long_value}" in unwrapped.splitlines()
    out = tmp_path / "out.ldif"
    assert pyldapd("cat", "-f", str(conf), "-l", str(out)).returncode == 0
    assert len(entries(out.read_text())) == len(entries(data))
    assert pyldapd("cat", "-f", str(conf), "-a", "(uid=").returncode == 1


def test_index_builds_a_newly_configured_index(tmp_path):
    from pyldapd.config.slapdconf import load_slapd_conf
    from pyldapd.server.app import build_schema
    from pyldapd.server.directory import Backend

    db = tmp_path / "db"
    db.mkdir()
    plain = tmp_path / "plain.conf"
    plain.write_text(slapd_conf(db, indexes="index objectClass eq"))
    assert pyldapd("add", "-f", str(plain), input=BASE_LDIF).returncode == 0
    indexed = tmp_path / "indexed.conf"
    indexed.write_text(slapd_conf(db, indexes="index objectClass eq\nindex uid,mail eq,sub"))

    def built() -> set[tuple[str, str]]:
        config = load_slapd_conf(str(indexed))
        backend = Backend(config.databases[0], build_schema(config))
        try:
            return backend.db.indexes_built
        finally:
            backend.db.close()

    assert ("uid", "eq") not in built()  # configured after the data was loaded
    assert pyldapd("index", "-f", str(indexed), "-q").returncode == 0
    assert {("uid", "eq"), ("uid", "sub"), ("mail", "eq")} <= built()
    bad = pyldapd("index", "-f", str(indexed), "noSuchAttribute")
    assert bad.returncode == 1 and "undefined" in bad.stderr
    assert pyldapd("index", "-f", str(indexed), "uid").returncode == 0
    # the server finds entries through the new index
    server = start_pyldapd(tmp_path / "serve", indexed.read_text())
    try:
        found = ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", SUFFIX, "(uid=*smi*)", "1.1")
        assert found.returncode == 0 and f"uid=asmith,ou=People,{SUFFIX}" in found.stdout
    finally:
        server.stop()


def test_test_exit_codes_match_slaptest(tmp_path):
    good = make_conf(tmp_path, "good", slapd=True)
    empty = tmp_path / "empty.conf"  # the directory exists, no database in it yet: only -u succeeds
    empty.write_text(good.read_text().replace(str(tmp_path / "good-db"), str(tmp_path / "empty-db")))
    (tmp_path / "empty-db").mkdir()
    loaded = run(SLAPADD, "-f", str(good), input=BASE_LDIF.split("\n\n")[0] + "\n")
    assert loaded.returncode == 0, loaded.stderr
    nodir = tmp_path / "nodir.conf"
    nodir.write_text(good.read_text().replace(str(tmp_path / "good-db"), str(tmp_path / "missing")))
    bogus = tmp_path / "bogus.conf"
    bogus.write_text(good.read_text() + "bogusdirective x\n")
    for conf, code in ((good, 0), (nodir, 1), (bogus, 1)):
        for flags in ([], ["-u"], ["-Q"], ["-v"]):
            mine = pyldapd("test", *flags, "-f", str(conf))
            slapd = run(SLAPTEST, *flags, "-f", str(conf))
            assert mine.returncode == slapd.returncode == code, (conf.name, flags, mine.stderr, slapd.stderr)
            if code == 0:
                said = "config file testing succeeded" in mine.stderr
                assert said == ("config file testing succeeded" in slapd.stderr) == (flags != ["-Q"])
            else:
                assert "bad configuration file!" in mine.stderr
    for flags, code in (([], 1), (["-u"], 0)):
        mine = pyldapd("test", *flags, "-f", str(empty))
        assert mine.returncode == run(SLAPTEST, *flags, "-f", str(empty)).returncode == code, mine.stderr
    quiet = pyldapd("test", "-Q", "-f", str(bogus))
    assert (
        "bogusdirective" not in quiet.stderr and "bogusdirective" in pyldapd("test", "-f", str(bogus)).stderr
    )


def people_ldif(count: int, *, bad_at: int, duplicate_at: int) -> str:
    """ou=People with `count` people, big enough for several chunks of a parallel load; the person at
    `bad_at` lacks sn (objectClassViolation) and the one at `duplicate_at` repeats uid=user10."""
    parts = [
        BASE_LDIF.split("\n\n")[0] + "\n",
        f"dn: ou=People,{SUFFIX}\nobjectClass: organizationalUnit\nou: People\n",
    ]
    for i in range(count):
        uid = "user10" if i == duplicate_at else f"user{i}"
        sn = "" if i == bad_at else f"sn: Number{i}\n"
        parts.append(
            f"dn: uid={uid},ou=People,{SUFFIX}\nobjectClass: inetOrgPerson\ncn: User Number {i}\n{sn}"
            f"uid: {uid}\nmail: {uid}@example.com\ndescription: {'entry padding ' * 16}{i}\n"
        )
    return "\n".join(parts)


def search_dns(port: int, filter_: str) -> set[str]:
    result = ldap_tool("ldapsearch", "-LLL", "-x", "-H", f"ldap://127.0.0.1:{port}", "-D", ROOTDN, "-w", "secret",
                       "-b", SUFFIX, "-z", "0", filter_, "1.1", check=True)  # fmt: skip
    return {line[4:].lower() for line in result.stdout.splitlines() if line.startswith("dn: ")}


def test_parallel_add_matches_slapadd_and_its_indexes_answer(tmp_path):
    """tool-threads 2 on an LDIF of several chunks, with a schema error and a duplicate in later chunks (-c):
    the same entries as slapadd, errors reported with their lines; a server on the database then finds
    entries through every index kind; every entry has its own entryUUID and entryCSN."""
    count = 2500
    text = people_ldif(count, bad_at=1700, duplicate_at=2000)
    assert len(text) > 3 * 256 * 1024  # several chunks for the workers
    (tmp_path / "people.ldif").write_text(text)
    ours = make_conf(tmp_path, "ours", extra_global="tool-threads 2")
    theirs = make_conf(tmp_path, "theirs", slapd=True, extra_global="tool-threads 2")
    mine = pyldapd("add", "-c", "-q", "-f", str(ours), "-l", str(tmp_path / "people.ldif"))
    slapd = run(SLAPADD, "-c", "-q", "-f", str(theirs), "-l", str(tmp_path / "people.ldif"))
    assert mine.returncode == slapd.returncode == 1, (mine.stderr, slapd.stderr)  # -c, but a DN existed
    bad_line = text[: text.index("dn: uid=user1700,")].count("\n") + 1
    dup_line = text[: text.index("dn: uid=user10,", text.index("dn: uid=user1999,"))].count("\n") + 1
    reported = [f'dn="uid=user1700,ou=People,{SUFFIX}" (line={bad_line}): (65) object class \'inetOrgPerson\' '
                "requires attribute 'sn'",
                f'could not add entry dn="uid=user10,ou=People,{SUFFIX}" (line={dup_line}): txn_aborted! '
                "MDB_KEYEXIST: Key/data pair already exists (-30799)"]  # fmt: skip
    assert [line for line in mine.stderr.splitlines() if line.startswith("pyldapd add: ")] == [
        f"pyldapd add: {line}" for line in reported
    ]
    assert [line for line in slapd.stderr.splitlines() if line.startswith("slapadd: ")] == [
        f"slapadd: {line}" for line in reported
    ]
    mine_entries = entries(pyldapd("cat", "-f", str(ours)).stdout)
    slapd_entries = entries(run(SLAPCAT, "-f", str(theirs)).stdout)
    # slapadd -q loses the entry before the refused one too (its aborted transaction held it); we keep it
    assert slapd_entries.keys() <= mine_entries.keys()
    assert mine_entries.keys() - slapd_entries.keys() <= {f"uid=user1999,ou=people,{SUFFIX}"}
    assert len(mine_entries) == count + 2 - 2
    for dn, attrs in slapd_entries.items():
        for name in ("objectclass", "cn", "sn", "uid", "mail", "description", "structuralobjectclass"):
            assert mine_entries[dn].get(name) == attrs.get(name), (dn, name)
    for name in ("entryuuid", "entrycsn"):
        values = [attrs[name][0] for attrs in mine_entries.values()]
        assert len(set(values)) == len(values), name
    server = start_pyldapd(tmp_path / "serve", ours.read_text())
    try:
        people = {f"uid=user{i},ou=people,{SUFFIX}".lower() for i in range(count) if i not in (1700, 2000)}
        assert search_dns(server.port, "(objectClass=person)") == people
        assert search_dns(server.port, "(uid=user123*)") == {d for d in people if d.startswith("uid=user123")}
        assert search_dns(server.port, "(cn=*mber 24*)") == {d for d in people if d.startswith("uid=user24")}
        assert search_dns(server.port, "(sn=*99)") == {d for d in people if d.split(",")[0].endswith("99")}
        assert search_dns(server.port, "(mail=user2222@example.com)") == {
            f"uid=user2222,ou=people,{SUFFIX}".lower()
        }
        assert search_dns(server.port, "(&(sn=*)(uid=user17*))") == {
            d for d in people if d.startswith("uid=user17")
        }
    finally:
        server.stop()


def test_parallel_add_waits_for_parents_across_chunks_like_the_serial_one(tmp_path):
    """Children first and their parent last, several chunks apart, and one child whose parent never comes: the
    parallel load stores and reports exactly what the serial one does."""
    records = people_ldif(1500, bad_at=-1, duplicate_at=-1).split("\n\n")
    suffix, people, persons = records[0], records[1], records[2:]
    orphan = f"dn: cn=orphan,ou=Nowhere,{SUFFIX}\nobjectClass: person\ncn: orphan\nsn: O\n"
    text = "\n\n".join([suffix, *persons[:700], orphan.strip(), *persons[700:], people]) + "\n"
    (tmp_path / "late.ldif").write_text(text)
    results = {}
    for threads in (1, 2):
        conf = make_conf(tmp_path, f"t{threads}", extra_global=f"tool-threads {threads}")
        loaded = pyldapd("add", "-q", "-f", str(conf), "-l", str(tmp_path / "late.ldif"))
        assert loaded.returncode == 1 and "Error, entries missing!" in loaded.stderr
        stored = entries(pyldapd("cat", "-f", str(conf)).stdout)
        results[threads] = (loaded.stderr, {dn: {k: v for k, v in a.items() if k in ("cn", "uid", "mail")}
                                            for dn, a in stored.items()})  # fmt: skip
        assert len(stored) == 1502
    assert results[1] == results[2]


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_add_stops_with_an_error_when_a_worker_dies(tmp_path):
    """kill -9 of a worker process: `pyldapd add` ends with a message and exit 1 instead of waiting forever, and
    leaves no process behind; the database still opens and holds whole entries only."""
    import os
    import signal
    import time

    (tmp_path / "many.ldif").write_text(people_ldif(30000, bad_at=-1, duplicate_at=-1))
    conf = make_conf(tmp_path, "w", extra_global="tool-threads 2")
    loading = subprocess.Popen([sys.executable, "-m", "pyldapd.cli.main", "add", "-q", "-f", str(conf), "-l",
                                str(tmp_path / "many.ldif")], stderr=subprocess.PIPE, text=True)  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline and loading.poll() is None:
            workers = children_of(loading.pid)
            time.sleep(0.02)
        assert len(workers) >= 2, "the load started no worker processes"
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = loading.communicate(timeout=LIMIT)
        assert loading.returncode == 1
        assert "worker process ended abruptly" in stderr
    finally:
        if loading.poll() is None:
            loading.kill()
            loading.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    stored = entries(pyldapd("cat", "-f", str(conf)).stdout)
    assert all(len(attrs.get("uid", [])) == 1 for dn, attrs in stored.items() if dn.startswith("uid="))


def test_add_dry_run_and_jump_like_slapadd(tmp_path):
    """-u checks everything and writes nothing; -j N starts at line N (records before it are skipped) and
    loads what slapadd -j N loads; both through the parallel load."""
    text = people_ldif(1500, bad_at=900, duplicate_at=-1)
    (tmp_path / "p.ldif").write_text(text)
    dry = make_conf(tmp_path, "dry", extra_global="tool-threads 2")
    checked = pyldapd("add", "-u", "-c", "-f", str(dry), "-l", str(tmp_path / "p.ldif"))
    assert checked.returncode == 0 and "uid=user900" in checked.stderr
    assert entries(pyldapd("cat", "-f", str(dry)).stdout) == {}
    jump = text[: text.index("dn: uid=user700,")].count("\n") + 1
    ours = make_conf(tmp_path, "ours", extra_global="tool-threads 2")
    theirs = make_conf(tmp_path, "theirs", slapd=True)
    base = "\n\n".join(text.split("\n\n")[:2]) + "\n"  # the suffix and ou=People, for the jumped load
    assert pyldapd("add", "-f", str(ours), input=base).returncode == 0
    assert run(SLAPADD, "-f", str(theirs), input=base).returncode == 0
    mine = pyldapd("add", "-q", "-c", "-j", str(jump), "-f", str(ours), "-l", str(tmp_path / "p.ldif"))
    slapd = run(SLAPADD, "-q", "-c", "-j", str(jump), "-f", str(theirs), "-l", str(tmp_path / "p.ldif"))
    assert mine.returncode == slapd.returncode == 0, (mine.stderr, slapd.stderr)
    mine_dns = set(entries(pyldapd("cat", "-f", str(ours)).stdout))
    assert mine_dns == set(entries(run(SLAPCAT, "-f", str(theirs)).stdout))
    assert f"uid=user699,ou=people,{SUFFIX}" not in mine_dns and f"uid=user700,ou=people,{SUFFIX}" in mine_dns
    assert len(mine_dns) == 2 + 800 - 1  # user700..user1499 but user900


def test_add_n0_reads_ldif_include_lines_like_slapadd(tmp_path):
    """slapadd -n0 takes `include: file://...` where a record may start (OpenLDAP's test scripts load the schema
    LDIFs into cn=config so): the same slapd.d entries from Debian's slapadd and pyldapd add."""
    schema = "/etc/ldap/schema"
    ldif = (f"dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\ndn: cn=schema,cn=config\nobjectClass: "
            f"olcSchemaConfig\ncn: schema\n\ninclude: file://{schema}/core.ldif\n\ninclude: file://{schema}/cosine.ldif\n\n"
            "dn: olcDatabase={0}config,cn=config\nobjectClass: olcDatabaseConfig\nolcDatabase: {0}config\n")  # fmt: skip
    made = {}
    for name, command in (("slapadd", ["/usr/sbin/slapadd"]), ("pyldapd", [sys.executable, "-m", "pyldapd.cli.main",
                                                                          "add"])):  # fmt: skip
        directory = tmp_path / name
        directory.mkdir()
        added = run(*command, "-n", "0", "-F", str(directory), input=ldif)
        assert added.returncode == 0, added.stderr
        made[name] = sorted(str(p.relative_to(directory)) for p in directory.rglob("*.ldif"))
    assert made["pyldapd"] == made["slapadd"]
    assert "cn=config/cn=schema/cn={1}cosine.ldif" in made["pyldapd"]
    for wrong in (
        "nothing.ldif",
        "core.ldif",
    ):  # a missing file; a path that is not a URL (refused by slapadd)
        text = ldif.replace("core.ldif", wrong) if wrong != "core.ldif" else ldif.replace("file://", "", 1)
        for name, command in (("slapadd", ["/usr/sbin/slapadd"]),
                              ("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "add"])):  # fmt: skip
            (tmp_path / f"{name}-{wrong}").mkdir()
            refused = run(*command, "-n", "0", "-F", str(tmp_path / f"{name}-{wrong}"), input=text)
            assert refused.returncode != 0 and "include" in refused.stderr, (name, refused.stderr)


def test_o_and_d_flags_are_used_or_refused_like_slapds_tools(tmp_path):
    """-o and -d as slapd's tools read them: an unknown -o name or -d level is refused by both (exit 1); a -o
    name another tool uses is warned about; -o values are used (schema-check=no, value-check, ldif_wrap); -d
    and -v trace what is done. Nothing is accepted and dropped."""
    ours, theirs = make_conf(tmp_path, "ours"), make_conf(tmp_path, "theirs", slapd=True)
    for tool, slapd_tool in (("add", SLAPADD), ("cat", SLAPCAT), ("index", "/usr/sbin/slapindex"),
                             ("test", SLAPTEST), ("modify", "/usr/sbin/slapmodify")):  # fmt: skip
        for flags in (
            ["-o", "frob=1"],
            ["-d", "frob"],
            ["-o", "ldif_wrap=x"] if tool == "cat" else ["-d", "x"],
        ):
            mine = pyldapd(tool, *flags, "-f", str(ours), input="")
            slapd = run(slapd_tool, *flags, "-f", str(theirs), input="")
            assert mine.returncode == slapd.returncode == 1, (tool, flags, mine.stderr, slapd.stderr)
            assert mine.stderr.strip(), (tool, flags)
        # a name slapd's tools know, meaningless for this one: both say so and go on
        meaningless = ["-o", "ldif_wrap=10"] if tool != "cat" else ["-o", "value-check=yes"]
        mine = pyldapd(tool, *meaningless, "-u" if tool in ("add", "modify", "test") else "-v", "-f", str(ours),
                       input="")  # fmt: skip
        slapd = run(slapd_tool, *meaningless, "-u" if tool in ("add", "modify", "test") else "-v", "-f",
                    str(theirs), input="")  # fmt: skip
        name = meaningless[1].split("=")[0].replace("ldif_wrap", "ldif")
        assert name in slapd.stderr and "meaningless" in slapd.stderr, slapd.stderr
        assert "meaningless" in mine.stderr and mine.returncode == 0, (tool, mine.stderr)
        # syslog and slapacl's options: slapd's tools take them; pyldapd has no such thing, and says so
        for option in ("syslog=stats", "sockurl=ldap://x/", "ssf=128"):
            refused = pyldapd(tool, "-o", option, "-f", str(ours), input="")
            assert refused.returncode == 1 and option.split("=")[0] in refused.stderr, refused.stderr
    # the values are used: schema-check=no lets an entry without its required attribute in, as slapadd
    sloppy = BASE_LDIF.split("\n\n")[0] + f"\n\ndn: cn=nosn,{SUFFIX}\nobjectClass: person\ncn: nosn\n"
    assert pyldapd("add", "-f", str(ours), input=sloppy).returncode == 1
    assert run(SLAPADD, "-f", str(theirs), input=sloppy).returncode == 1
    for conf in (ours, theirs):  # (the failed loads left the suffix entry: start again)
        for stale in (tmp_path / f"{conf.stem}-db").iterdir():
            stale.unlink()
    added = pyldapd("add", "-o", "schema-check=no", "-v", "-d", "1", "-f", str(ours), input=sloppy)
    assert added.returncode == 0, added.stderr
    assert run(SLAPADD, "-o", "schema-check=no", "-f", str(theirs), input=sloppy).returncode == 0
    # -v: slapadd's line per entry; -d: a trace line per entry stored
    assert f'added: "cn=nosn,{SUFFIX}"' in added.stderr and f'"cn=nosn,{SUFFIX}" )' in added.stderr
    # value-check=yes in quick mode is dropped, with slapadd's words
    quick = pyldapd("add", "-q", "-u", "-o", "value-check=yes", "-f", str(ours), input="")
    assert quick.returncode == 0 and "value-check incompatible with quick mode; disabled." in quick.stderr
    traced = pyldapd("cat", "-d", "stats", "-f", str(ours))
    assert traced.returncode == 0 and f'"cn=nosn,{SUFFIX}" )' in traced.stderr
    assert "=> index(" in pyldapd("index", "-d", "any", "-q", "-f", str(ours)).stderr
    assert "=> test(" in pyldapd("test", "-d", "1", "-f", str(ours)).stderr
