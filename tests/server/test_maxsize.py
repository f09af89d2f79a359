"""`maxsize` is a hard limit, as in slapd: a write past it fails with back-mdb's result and nothing acknowledged is
lost; without `maxsize` the map grows."""

from __future__ import annotations

import os
import re

from tests.servers import ROOTDN, ROOTPW, SCHEMA_DIR, SUFFIX, ldap_tool, start_pyldapd, start_slapd

ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]
MAXSIZE = 262144


def conf(db, maxsize: int | None) -> str:
    db.mkdir(parents=True, exist_ok=True)
    lines = [f"include {SCHEMA_DIR}/core.schema", "modulepath /usr/lib/ldap", "moduleload back_mdb",
             "database mdb", f'suffix "{SUFFIX}"', f'rootdn "{ROOTDN}"', f"rootpw {ROOTPW}", f"directory {db}"]  # fmt: skip
    if maxsize:
        lines.append(f"maxsize {maxsize}")
    return "\n".join(lines) + "\n"


def ldif(count: int) -> str:
    blocks = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: x\ndc: example\n"]
    blocks += [f"dn: cn=e{i},{SUFFIX}\nobjectClass: person\ncn: e{i}\nsn: s\ndescription: {'x' * 4000}\n"
               for i in range(count)]  # fmt: skip
    return "\n".join(blocks)


def add_all(server, count: int) -> tuple[list[str], list[tuple[str, str]]]:
    """(DNs acknowledged, [(result line, additional info)] of the refused ones)"""
    result = ldap_tool("ldapadd", "-c", "-H", server.url, *ADMIN, input=ldif(count), timeout=120)
    text = result.stdout + result.stderr
    added = re.findall(r'adding new entry "([^"]+)"', result.stdout)
    failures = re.findall(r"ldap_add: (.+)\n\s+additional info: (.+)", result.stderr)
    assert len(failures) == result.stderr.count("ldap_add:"), text
    return added, failures


def stored(server) -> set[str]:
    out = ldap_tool("ldapsearch", "-LLL", "-H", server.url, *ADMIN, "-b", SUFFIX, "1.1").stdout
    return {line[4:] for line in out.splitlines() if line.startswith("dn: ")}


def test_maxsize_is_a_hard_limit_like_slapd(tmp_path):
    answers = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        db = tmp_path / name / "db"
        server = start(tmp_path / name, conf(db, MAXSIZE), name=name)
        try:
            added, failures = add_all(server, 120)
            present = stored(server)
            assert failures, f"{name}: every add fitted in {MAXSIZE} bytes"
            answers[name] = set(failures)
            # what was acknowledged is there, what was refused is not
            assert len(present) == 121 - len(failures), (name, len(present), len(failures))
            # a rename that needs room past the limit fails too, the entry stays where it was
            rename = ldap_tool("ldapmodrdn", "-H", server.url, *ADMIN, f"cn=e1,{SUFFIX}", "cn=" + "q" * 3000)
            assert rename.returncode == 80, (name, rename.stderr)
            answers[name + " rename"] = (rename.stdout + rename.stderr).strip().splitlines()[-1]
            assert f"cn=e1,{SUFFIX}" in stored(server)
        finally:
            server.stop()
        assert os.path.getsize(db / "data.mdb") <= MAXSIZE
    assert answers["pyldapd"] == answers["slapd"] == {("Other (e.g., implementation specific) error (80)",
                                                       "entry store failed")}  # fmt: skip
    assert answers["pyldapd rename"] == answers["slapd rename"]
    # without maxsize, pyldapd's map grows as needed
    server = start_pyldapd(tmp_path / "p", conf(tmp_path / "p" / "db", None))
    try:
        added, failures = add_all(server, 120)
        assert failures == []
        assert len(stored(server)) == 121
    finally:
        server.stop()


def test_a_dn_past_lmdb_key_size_fails_like_slapd(tmp_path):
    """A modrdn to an RDN longer than LMDB's key size (511 bytes) fails with back-mdb's answer, map full or not
    (MDB_BAD_VALSIZE), and the entry stays where it was."""
    answers = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        server = start(tmp_path / name, conf(tmp_path / name / "db", None), name=name)
        try:
            added, failures = add_all(server, 3)
            assert failures == [] and len(added) == 4
            rename = ldap_tool("ldapmodrdn", "-H", server.url, *ADMIN, f"cn=e1,{SUFFIX}", "cn=" + "q" * 3000)
            answers[name] = (rename.returncode, (rename.stdout + rename.stderr).strip().splitlines()[-1])
            assert f"cn=e1,{SUFFIX}" in stored(server)
        finally:
            server.stop()
    assert answers["pyldapd"] == answers["slapd"] == (80, "Additional info: DN index add failed")


INITIAL_MAP = 256 * 1024


def test_the_map_grows_across_worker_processes(tmp_path, monkeypatch):
    """Two worker processes write at once into a map that starts small (PYLDAPD_INITIAL_MAPSIZE, test-only):
    whichever grows it, the other adopts the new size at its next transaction (LMDB's MDB_MAP_RESIZED), so the
    map grows several times and no client sees an error; every acknowledged entry is there, seen from both."""
    import threading

    import ldap

    from tests.certs import make_pki, tls_conf
    from tests.servers import connection_on_worker, wait_workers

    db = tmp_path / "db"
    pki = make_pki(tmp_path / "pki")  # StartTLS writers write where they are (a plain one moves to worker 0)
    monkeypatch.setenv("PYLDAPD_INITIAL_MAPSIZE", str(INITIAL_MAP))
    server = start_pyldapd(tmp_path / "run", "threads 2\n" + tls_conf(pki) + conf(db, None))
    monkeypatch.delenv("PYLDAPD_INITIAL_MAPSIZE")
    try:
        wait_workers(server, 2)
        top = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=ldif(0))
        assert top.returncode == 0, top.stderr
        conns = [connection_on_worker(server, index, 2, tls_ca=pki.ca_cert)[0] for index in (0, 1)]
        acknowledged: list[list[str]] = [[], []]
        errors: list[str] = []

        def write(index: int) -> None:
            for i in range(150):  # 4 KB each: about 1.3 MB from both, past 256 KiB doubled three times
                dn = f"cn=w{index}-{i},{SUFFIX}"
                entry = [("objectClass", [b"person"]), ("cn", [f"w{index}-{i}".encode()]), ("sn", [b"s"]),
                         ("description", [b"y" * 4000])]  # fmt: skip
                try:
                    conns[index].add_s(dn, entry)
                except ldap.LDAPError as exc:
                    errors.append(f"{dn}: {exc!r}")
                    return
                acknowledged[index].append(dn)

        writers = [threading.Thread(target=write, args=(index,)) for index in (0, 1)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(120)
        assert not any(thread.is_alive() for thread in writers)
        assert errors == []
        assert len(acknowledged[0]) == len(acknowledged[1]) == 150
        expected = {SUFFIX, *acknowledged[0], *acknowledged[1]}
        for conn in conns:  # each worker reads what both wrote
            found = {dn for dn, _ in conn.search_s(SUFFIX, ldap.SCOPE_SUBTREE, "(objectClass=*)", ["1.1"])}
            assert found == expected
            conn.unbind_s()
        assert "internal error" not in server.log()
    finally:
        server.stop()
    # the data alone is past the initial map 4 times over: the map grew at least twice
    assert os.path.getsize(db / "data.mdb") > 4 * INITIAL_MAP
    restarted = start_pyldapd(tmp_path / "again", "threads 2\n" + conf(db, None))
    try:
        assert len(stored(restarted)) == 301
    finally:
        restarted.stop()


def test_two_workers_keep_writing_large_changes_in_a_bounded_database(tmp_path):
    """With two workers every change is journaled (server/journal.py) with the entry before and after it. A
    journal bounded only by its count (20,000 records) of changes to a large entry would hold gigabytes:
    here, in a database of 12 MB, adding such an entry, modifying it and deleting it again over and over
    (about 1.5 MB of journal per round, 45 MB in all) must go on succeeding, as with one worker, because the
    journal is bounded by its size too. Small changes come first, so that each large record (of a 50,000-value
    entry, 0.7 MB) must push out hundreds of small ones."""
    import ldap

    from tests.servers import wait_workers

    db = tmp_path / "db"
    server = start_pyldapd(tmp_path / "run", "threads 2\n" + conf(db, 12 * 2**20))
    try:
        wait_workers(server, 2)
        top = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=ldif(0))
        assert top.returncode == 0, top.stderr
        conn = ldap.initialize(server.url)
        conn.simple_bind_s(ROOTDN, ROOTPW)
        conn.add_s(f"cn=small,{SUFFIX}", [("objectClass", [b"person"]), ("cn", [b"small"]), ("sn", [b"s"])])
        for i in range(3_000):  # about 0.5 KB of journal each: past the journal's 1.5 MB (an eighth of 12 MB)
            conn.modify_s(f"cn=small,{SUFFIX}", [(ldap.MOD_REPLACE, "description", [f"v{i}".encode()])])
        values = [f"value {i:07d}".encode() for i in range(50_000)]
        for i in range(30):
            dn = f"cn=many{i},{SUFFIX}"
            conn.add_s(dn, [("objectClass", [b"person"]), ("cn", [f"many{i}".encode()]), ("sn", [b"s"])])
            conn.modify_s(dn, [(ldap.MOD_ADD, "description", values)])
            conn.delete_s(dn)  # an error here (80, "entry delete failed": the map is full) fails the test
        assert os.path.getsize(db / "data.mdb") <= 12 * 2**20
        conn.unbind_s()
    finally:
        server.stop()
