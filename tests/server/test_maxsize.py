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
