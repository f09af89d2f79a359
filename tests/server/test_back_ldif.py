"""slapd-ldif(5) (`database ldif`, olcDatabase=ldif over cn=config) side by side with Debian's slapd: the same
writes give the same tree of LDIF files (names, folders, content but for the values each server makes up), each
server serves the files the other wrote, and the same configuration errors and write failures."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.data import BASE_LDIF
from tests.server.test_cnconfig import Node, start_slapd_with_cn_config
from tests.servers import ROOTDN, ROOTPW, SCHEMA_DIR, SUFFIX, ldap_tool, start_pyldapd, start_slapd

# values each server makes up, and the CRC of a text that holds them (contextCSN: pyldapd keeps it in the suffix
# entry with or without syncprov, slapd with syncprov only; not a matter of back-ldif)
VOLATILE = re.compile(r"^(# CRC32 |entryUUID: |entryCSN: |createTimestamp: |modifyTimestamp: |contextCSN: )")

WRITES = f"""dn: uid=jdoe,ou=People,{SUFFIX}
changetype: modify
replace: mail
mail: jdoe@example.org

dn: ou=Groups,{SUFFIX}
changetype: modrdn
newrdn: ou=Teams
deleteoldrdn: 1

dn: uid=bwong,ou=People,{SUFFIX}
changetype: modrdn
newrdn: uid=bwong
deleteoldrdn: 0
newsuperior: ou=Teams,{SUFFIX}

dn: cn=Dr. Who: a/b,ou=People,{SUFFIX}
changetype: add
objectClass: person
cn: Dr. Who: a/b
sn: Who

dn: cn=staff,ou=Teams,{SUFFIX}
changetype: delete
"""


def ldif_conf(directory: Path, extra_db: str = "") -> str:
    includes = "".join(
        f"include {SCHEMA_DIR}/{name}.schema\n" for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return (f'{includes}database ldif\nsuffix "{SUFFIX}"\nrootdn "{ROOTDN}"\nrootpw {ROOTPW}\n'
            f"directory {directory}\n{extra_db}")  # fmt: skip


def files(root: Path) -> dict[str, list[str]]:
    """Every .ldif file under root (slapd reads those only): its lines but the volatile ones, sorted (where a
    replaced value lands among the attributes is not a matter of back-ldif), and how it ends."""
    return {
        str(path.relative_to(root)): sorted(
            line for line in path.read_text().splitlines() if not VOLATILE.match(line)
        )
        + [repr(path.read_text()[-2:])]
        for path in sorted(root.rglob("*.ldif"))
    }


def everything(url: str) -> list[list[str]]:
    found = ldap_tool("ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", url, "-b", SUFFIX, "-D", ROOTDN,
                      "-w", ROOTPW, "*", "+")  # fmt: skip
    assert found.returncode == 0, found.stderr
    blocks = [sorted(line for line in b.splitlines() if not line.startswith("contextCSN:"))
              for b in found.stdout.strip().split("\n\n")]  # fmt: skip
    return sorted(blocks)


def run_pair(tmp_path: Path, folders: dict[str, Path]) -> list:
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            servers.append(start(tmp_path / f"run-{name}-{len(list(tmp_path.iterdir()))}", ldif_conf(folders[name]),
                                 name=name))  # fmt: skip
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def test_same_writes_same_files_and_each_reads_the_others(tmp_path: Path) -> None:
    folders = {"slapd": tmp_path / "slapd-db", "pyldapd": tmp_path / "pyldapd-db"}
    for folder in folders.values():
        folder.mkdir()
    servers = run_pair(tmp_path, folders)
    try:
        for server in servers:
            for ldif, tool in ((BASE_LDIF, "ldapadd"), (WRITES, "ldapmodify")):
                done = ldap_tool(tool, "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=ldif)
                assert done.returncode == 0, (server.name, done.stderr)
        theirs, ours = files(folders["slapd"]), files(folders["pyldapd"])
        assert list(ours) == list(theirs)
        assert "dc=example,dc=com/ou=people/cn=dr\\2E who\\3A a\\2Fb.ldif" in ours
        assert "dc=example,dc=com/ou=teams/uid=bwong.ldif" in ours
        assert ours == theirs
        served = [everything(server.url) for server in servers]
    finally:
        for server in servers:
            server.stop()
    # each server on the other's files: the same entries, operational attributes and all
    swapped = run_pair(tmp_path, {"slapd": folders["pyldapd"], "pyldapd": folders["slapd"]})
    try:
        assert everything(swapped[0].url) == served[1]
        assert everything(swapped[1].url) == served[0]
    finally:
        for server in swapped:
            server.stop()


def test_mdb_directives_refused_and_a_missing_folder_fails_writes_as_slapd(tmp_path: Path) -> None:
    conf = tmp_path / "index.conf"
    conf.write_text(ldif_conf(tmp_path, "index cn eq\n"))
    line = conf.read_text().splitlines().index("index cn eq") + 1
    theirs = subprocess.run(
        ["/usr/sbin/slaptest", "-u", "-f", str(conf)], capture_output=True, text=True, timeout=60
    )
    ours = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    expected = f"{conf}: line {line}: unknown directive <index> inside backend database definition."
    assert theirs.returncode != 0 and expected in theirs.stderr, theirs.stderr
    assert ours.returncode != 0 and expected in ours.stderr + ours.stdout, ours.stderr
    # a folder that is not there: both start, and each write fails with slapd's 80
    missing = {"slapd": tmp_path / "no-such-folder", "pyldapd": tmp_path / "no-such-folder"}
    servers = run_pair(tmp_path, missing)
    try:
        outcomes = []
        for server in servers:
            done = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                             input=BASE_LDIF.split("\n\n")[0] + "\n")  # fmt: skip
            outcomes.append((done.returncode, done.stderr))
        assert outcomes[0][0] == 80 and "cannot stat parent dir" in outcomes[0][1], outcomes[0]
        assert outcomes[1] == outcomes[0]
    finally:
        for server in servers:
            server.stop()
    assert not missing["slapd"].exists()


def test_ldif_database_added_over_cn_config_alike_with_slapd(tmp_path: Path) -> None:
    """test059's step: olcDatabase={n}ldif added over cn=config at run time, then written to at once."""
    node = Node(tmp_path, "py", "mdb")
    node.start()
    slapd, slapd_ldapi, slapd_url = start_slapd_with_cn_config(tmp_path)
    folders = {"slapd": tmp_path / "slapd-ldif", "pyldapd": tmp_path / "pyldapd-ldif"}
    suffix = "cn=config,cn=consumer"
    try:
        for name, tool_url, url in (("slapd", slapd_ldapi, slapd_url), ("pyldapd", node.ldapi, node.url)):
            folders[name].mkdir()
            database = (f"dn: olcDatabase=ldif,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcLdifConfig\n"
                        f"olcDatabase: ldif\nolcDbDirectory: {folders[name]}\nolcSuffix: {suffix}\n"
                        f"olcRootDN: {suffix}\nolcRootPW: repsecret\n")  # fmt: skip
            added = ldap_tool("ldapadd", "-Y", "EXTERNAL", "-Q", "-H", tool_url, input=database)
            assert added.returncode == 0, (name, added.stderr)
            entries = (f"dn: {suffix}\nobjectClass: olcGlobal\ncn: consumerconfig\n\n"
                       f"dn: olcDatabase={{0}}config,{suffix}\nobjectClass: olcDatabaseConfig\n"
                       "olcDatabase: {0}config\nolcRootPW: topsecret\n")  # fmt: skip
            added = ldap_tool("ldapadd", "-x", "-H", url, "-D", suffix, "-w", "repsecret", input=entries)
            assert added.returncode == 0, (name, added.stderr)
        theirs, ours = files(folders["slapd"]), files(folders["pyldapd"])
        assert set(ours) == {"cn=config,cn=consumer.ldif", "cn=config,cn=consumer/olcDatabase={0}config.ldif"}
        assert ours == theirs
        # an olcMdbConfig setting does not belong to an ldif database: refused alike
        bad = "dn: olcDatabase={db},cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: cn eq\n"
        outcomes = []
        for tool_url, number in ((slapd_ldapi, "{2}ldif"), (node.ldapi, "{3}ldif")):
            done = ldap_tool(
                "ldapmodify", "-Y", "EXTERNAL", "-Q", "-H", tool_url, input=bad.replace("{db}", number)
            )
            outcomes.append((done.returncode, done.stderr.replace(number, "N")))
        assert outcomes[0][0] != 0 and outcomes[1] == outcomes[0], outcomes
    finally:
        slapd.stop()
        node.stop()


READER = f"uid=reader,{SUFFIX}"
READER_LDIF = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: {READER}
objectClass: account
objectClass: simpleSecurityObject
uid: reader
userPassword: readerpw

dn: ou=People,{SUFFIX}
objectClass: organizationalUnit
ou: People
"""
# (tool, LDIF) run in turn as uid=reader, who may only read: back-ldif checks no access on add, delete and
# modrdn (test059 adds the suffix entry of its ldif database as cn=config, not that database's rootdn), only the
# values a modify or a modrdn's new RDN changes (acl_check_modlist)
AS_READER = [
    ("ldapadd", f"dn: ou=Groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: Groups\n"),
    ("ldapadd", f"dn: ou=Staff,ou=Groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: Staff\n"),
    ("ldapmodify", f"dn: ou=People,{SUFFIX}\nchangetype: modify\nadd: description\ndescription: x\n"),
    (
        "ldapmodify",
        f"dn: ou=Staff,ou=Groups,{SUFFIX}\nchangetype: modrdn\nnewrdn: ou=Team\ndeleteoldrdn: 1\n",
    ),
    ("ldapdelete", f"ou=Staff,ou=Groups,{SUFFIX}\n"),
    ("ldapdelete", f"{SUFFIX}\n"),
    ("ldapadd", f"dn: ou=Orphan,ou=Nowhere,{SUFFIX}\nobjectClass: organizationalUnit\nou: Orphan\n"),
]


def test_entry_writes_check_no_access_as_in_slapd(tmp_path: Path) -> None:
    """slapd's back-ldif checks no access rights on add, delete and modrdn (back-mdb checks the parent's
    `children` and the entry's `entry`): a reader adds and deletes there, and still may not modify values."""
    access = "access to attrs=userPassword by anonymous auth by * none\naccess to * by * read\n"
    outcomes: dict[str, list] = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        folder = tmp_path / f"{name}-db"
        folder.mkdir()
        server = start(tmp_path / f"run-{name}", ldif_conf(folder, access), name=name)
        try:
            loaded = ldap_tool(
                "ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=READER_LDIF
            )
            assert loaded.returncode == 0, loaded.stderr
            steps = []
            for tool, ldif in AS_READER:
                done = ldap_tool(tool, "-x", "-H", server.url, "-D", READER, "-w", "readerpw", input=ldif)
                steps.append((tool, done.returncode, done.stderr.strip()))
            served = [
                [line for line in block if not VOLATILE.match(line)] for block in everything(server.url)
            ]
            outcomes[name] = [steps, served, sorted(files(folder))]
        finally:
            server.stop()
    assert [code for _, code, _ in outcomes["slapd"][0]] == [0, 0, 50, 50, 0, 66, 32], outcomes["slapd"][0]
    for got, expected in zip(outcomes["pyldapd"], outcomes["slapd"], strict=True):
        assert got == expected


def test_two_workers_share_one_copy_of_the_files(tmp_path: Path) -> None:
    """With two worker processes the ldif database's LMDB copy is one for both (backends/ldif.py SHARED_COPIES_OWNER):
    a write through either is read through the other at once, both write the same files, and a worker killed
    and restarted opens the copy as it is (it does not rebuild it, nor miss a write)."""
    import os
    import signal

    import ldap

    from tests.certs import make_pki, tls_conf
    from tests.servers import connection_on_worker, wait_for, wait_workers, worker_pids

    folder = tmp_path / "db"
    folder.mkdir()
    pki = make_pki(tmp_path / "pki")  # StartTLS writers write where they are (a plain one moves to worker 0)
    server = start_pyldapd(tmp_path / "run", "threads 2\n" + tls_conf(pki) + ldif_conf(folder))
    try:
        wait_workers(server, 2)
        done = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF)
        assert done.returncode == 0, done.stderr
        conns = [connection_on_worker(server, index, 2, tls_ca=pki.ca_cert)[0] for index in (0, 1)]
        for index, conn in enumerate(conns):
            conn.add_s(f"cn=w{index},{SUFFIX}", [("objectClass", [b"person"]), ("cn", [f"w{index}".encode()]),
                                                 ("sn", [b"s"])])  # fmt: skip
            conn.modify_s(f"cn=w{index},{SUFFIX}", [(ldap.MOD_REPLACE, "sn", [f"by {index}".encode()])])
        for index, conn in enumerate(conns):
            other = 1 - index
            found = conn.search_s(f"cn=w{other},{SUFFIX}", ldap.SCOPE_BASE, "(objectClass=*)", ["sn"])
            assert found[0][1]["sn"] == [f"by {other}".encode()]
        assert (folder / "dc=example,dc=com" / "cn=w0.ldif").exists()
        assert "sn: by 1" in (folder / "dc=example,dc=com" / "cn=w1.ldif").read_text()
        conns[0].delete_s(f"cn=w1,{SUFFIX}")
        for conn in conns:
            conn.unbind_s()
        pids = worker_pids(server)
        os.kill(pids[1], signal.SIGKILL)
        wait_for(lambda: len(worker_pids(server)) == 2 and pids[1] not in worker_pids(server), 30,
                 what="the worker restarted")  # fmt: skip
        restarted, _ = connection_on_worker(server, 1, 2)
        names = {dn for dn, _ in restarted.search_s(SUFFIX, ldap.SCOPE_ONELEVEL, "(cn=w*)", ["1.1"])}
        assert names == {f"cn=w0,{SUFFIX}"}
        restarted.unbind_s()
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_copies_left_by_a_killed_server_are_swept(tmp_path: Path, workers: int) -> None:
    """The LMDB copies of a server killed with kill -9 stay in the temporary folder; the next server that makes
    its own removes them, unless some process still holds them (the IN_USE lock, backends/ldif.py): pids say
    nothing across pid namespaces sharing /tmp."""
    import fcntl
    import os
    import signal

    from tests.servers import child_pids, wait_for, wait_workers

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary)}
    folder = tmp_path / "db"
    folder.mkdir()
    conf = f"threads {workers}\n" + ldif_conf(folder)

    def copies() -> set[str]:
        return {p.name for p in temporary.iterdir() if p.name.startswith("pyldapd-ldif-")}

    first = start_pyldapd(tmp_path / "run1", conf, env=env)
    try:
        if workers > 1:
            wait_workers(first, workers)
        done = ldap_tool("ldapadd", "-x", "-H", first.url, "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF)
        assert done.returncode == 0, done.stderr
        left = copies()
        assert len(left) == 1, left
    finally:
        first.process.send_signal(signal.SIGKILL)  # the supervisor, or the one process; workers follow
        first.process.wait(30)
    wait_for(lambda: not child_pids(first.process.pid), 30, what="the workers gone")
    assert copies() == left  # killed: nothing removed them
    # a folder a live process holds (as a server in another pid namespace would) is never taken for abandoned
    held = temporary / "pyldapd-ldif-1-feedc0ffee00"
    held.mkdir(mode=0o700)
    held_fd = os.open(held / "in-use", os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(held_fd, fcntl.LOCK_SH)
    past = time.time() - 3600
    for name in [*left, held.name]:
        os.utime(temporary / name, (past, past))
    second = start_pyldapd(tmp_path / "run2", conf, env=env)
    try:
        if workers > 1:
            wait_workers(second, workers)
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", second.url, "-b", SUFFIX, "-s", "base", "dc")
        assert found.returncode == 0 and "dc: example" in found.stdout, found.stderr  # served from the files
        now = copies()
        assert not (left & now), (left, now)
        assert held.name in now and len(now) == 2, now
    finally:
        os.close(held_fd)
        second.stop()
