"""The accesslog overlay (issue 11): the log entries pyldapd writes are those Debian's slapd writes for the same
config and the same operations (times, session numbers, UUIDs and CSNs aside), logops / logsuccess / logbase
filter as slapd's, logpurge removes old entries, the cn=config form slaptest writes is read, and a change and its
log entry are committed together (outbox: a record left between the two steps is moved at the next start)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import (
    ROOTDN,
    ROOTPW,
    SLAPD,
    SUFFIX,
    free_port,
    ldap_tool,
    slapd_conf,
    start_process,
    start_pyldapd,
    start_slapd,
    wait_for,
)

# what differs between two runs whatever the server: times, sessions, generated identifiers
VARYING = {"reqstart", "reqend", "reqsession", "entryuuid", "reqentryuuid", "entrycsn", "createtimestamp",
           "modifytimestamp"}  # fmt: skip
VARYING_IN_VALUES = re.compile(r"^(entryUUID|entryCSN|createTimestamp|modifyTimestamp|userPassword):([-+=#]?) .*$",
                               re.I)  # fmt: skip
TOP = f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
PERSON = f"dn: cn=x,{SUFFIX}\nobjectClass: person\ncn: x\nsn: y\ndescription: d1\n\n"
MODIFY = (f"dn: cn=x,{SUFFIX}\nchangetype: modify\nreplace: description\ndescription: d2\n-\nadd: sn\nsn: z\n-\n"
          "delete: sn\nsn: y\n-\nadd: telephoneNumber\ntelephoneNumber: 1 234\n\n")  # fmt: skip
FAILING = f"dn: cn=x,{SUFFIX}\nchangetype: modify\ndelete: telephoneNumber\ntelephoneNumber: 999\n\n"
RENAME = f"dn: cn=x,{SUFFIX}\nchangetype: modrdn\nnewrdn: cn=w\ndeleteoldrdn: 1\n\n"
MOVE = f"dn: cn=w,{SUFFIX}\nchangetype: modrdn\nnewrdn: cn=v\ndeleteoldrdn: 0\nnewsuperior: ou=b,{SUFFIX}\n\n"


def log_database(workdir: Path) -> str:
    """The log database's lines (declared before the logged database, as slapd's examples do)."""
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    (workdir / "log").mkdir(parents=True, exist_ok=True)
    return (f"database mdb\nsuffix cn=accesslog\nrootdn cn=accesslog\ndirectory {workdir / 'log'}\n"
            "index reqStart eq\n")  # fmt: skip


def conf_for(workdir: Path, overlay: str) -> str:
    """The example database with `overlay accesslog` (and `overlay`'s lines) and its log database."""
    return slapd_conf(workdir / "db", modules=True, extra_global="moduleload accesslog\n" + log_database(workdir),
                      extra_db="overlay accesslog\nlogdb cn=accesslog\n" + overlay)  # fmt: skip


def admin(server) -> list[str]:
    return ["-x", "-D", ROOTDN, "-w", ROOTPW, "-H", server.url]


def modify(server, ldif: str) -> int:
    return ldap_tool("ldapmodify", *admin(server), input=ldif).returncode


def read_log(server, *attrs: str) -> list[dict[str, list[str]]]:
    """The log database's entries, in reqStart order, as {attribute (lower case): values}."""
    result = ldap_tool("ldapsearch", *admin(server), "-LLL", "-o", "ldif-wrap=no", "-b", "cn=accesslog",
                       "(objectClass=*)", *(attrs or ("*", "entryCSN")))  # fmt: skip
    assert result.returncode in (0, 32), result.stderr + server.log()[-2000:]
    entries = []
    for block in result.stdout.strip().split("\n\n"):
        entry: dict[str, list[str]] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            entry.setdefault(name.lower(), []).append(value)
        if entry:
            entries.append(entry)
    return sorted(entries, key=lambda e: e.get("reqstart", [""])[0])


def comparable(entries: list[dict[str, list[str]]]) -> list[dict[str, list[str]]]:
    """Entries without what varies from run to run; multi-valued attributes as sorted lists."""
    out = []
    for entry in entries:
        kept = {}
        for name, values in entry.items():
            if name in VARYING or name == "dn":
                continue
            kept[name] = sorted(VARYING_IN_VALUES.sub(r"\1:\2 *", v) for v in values)
        kept["dn"] = [re.sub(r"^reqStart=[0-9.]+Z", "reqStart=*", entry["dn"][0])]
        out.append(kept)
    return out


def run_scenario(workdir: Path, start, overlay: str, steps: list[str]) -> list[dict[str, list[str]]]:
    server = start(workdir, conf_for(workdir, overlay))
    try:
        assert ldap_tool("ldapadd", *admin(server), input=TOP + PERSON).returncode == 0
        for ldif in steps:
            if ldif.startswith("delete "):
                ldap_tool("ldapdelete", *admin(server), ldif.split(" ", 1)[1])
            elif ldif.startswith("passwd "):  # Password Modify: logged as the modify of userPassword it is
                assert (
                    ldap_tool("ldappasswd", *admin(server), "-s", "pw", ldif.split(" ", 1)[1]).returncode == 0
                )
            else:
                modify(server, ldif)
        entries = read_log(server)
        check_consistency(entries)
        return comparable(entries)
    finally:
        server.stop()


def check_consistency(entries: list[dict[str, list[str]]]) -> None:
    """What holds on both servers: each write's log entry carries the change's CSN and the entry's UUID."""
    for entry in entries:
        if "reqtype" not in entry:
            continue
        csns = [v.split(" ", 1)[1] for v in entry.get("reqmod", []) if v.lower().startswith("entrycsn:")]
        if entry["reqresult"] == ["0"] and csns:
            assert entry["entrycsn"] == csns, entry


def both(tmp_path: Path, overlay: str, steps: list[str]) -> list[dict[str, list[str]]]:
    expected = run_scenario(tmp_path / "slapd", start_slapd, overlay, steps)
    got = run_scenario(tmp_path / "pyldapd", start_pyldapd, overlay, steps)
    assert got == expected
    return got


def test_log_entries_as_slapd_writes_them(tmp_path):
    ou = f"dn: ou=b,{SUFFIX}\nchangetype: add\nobjectClass: organizationalUnit\nou: b\n\n"
    steps = [MODIFY, FAILING, RENAME, ou, MOVE, f"passwd cn=v,ou=b,{SUFFIX}", f"delete cn=v,ou=b,{SUFFIX}"]
    entries = both(tmp_path, "logops writes\nlogold (objectClass=person)\nlogoldattr description", steps)
    types = [(e.get("reqtype", ["container"])[0], e.get("reqresult", [""])[0]) for e in entries]
    assert types == [("container", ""), ("add", "0"), ("add", "0"), ("modify", "0"), ("modify", "16"),
                     ("modrdn", "0"), ("add", "0"), ("modrdn", "0"), ("modify", "0"), ("delete", "0")]  # fmt: skip
    renamed = entries[5]
    assert renamed["reqold"] == sorted(["cn: x", "description: d2", "entryCSN: *", "modifiersName: " + ROOTDN,
                                        "modifyTimestamp: *"])  # fmt: skip
    assert entries[7]["reqnewsuperior"] == [f"ou=b,{SUFFIX}"]


def test_logsuccess_and_logops_filter_as_slapd(tmp_path):
    steps = [MODIFY, FAILING, RENAME, f"delete cn=nothere,{SUFFIX}", f"delete cn=w,{SUFFIX}"]
    entries = both(tmp_path, "logops add delete\nlogsuccess TRUE", steps)
    assert [e.get("reqtype", ["container"])[0] for e in entries] == ["container", "add", "add", "delete"]


def test_logbase_as_slapd(tmp_path):
    ou = f"dn: ou=b,{SUFFIX}\nchangetype: add\nobjectClass: organizationalUnit\nou: b\n\n"
    inside = f"dn: cn=in,ou=b,{SUFFIX}\nchangetype: add\nobjectClass: person\ncn: in\nsn: s\n\n"
    steps = [ou, inside, MODIFY, f"delete cn=in,ou=b,{SUFFIX}", f"delete cn=x,{SUFFIX}"]
    entries = both(tmp_path, f"logops add\nlogbase delete ou=b,{SUFFIX}", steps)
    assert [(e.get("reqtype", ["-"])[0], e.get("reqdn", ["-"])[0]) for e in entries][1:] == [
        ("add", SUFFIX), ("add", f"cn=x,{SUFFIX}"), ("add", f"ou=b,{SUFFIX}"), ("add", f"cn=in,ou=b,{SUFFIX}"),
        ("delete", f"cn=in,ou=b,{SUFFIX}")]  # fmt: skip


@pytest.mark.parametrize("start", [start_slapd, start_pyldapd], ids=["slapd", "pyldapd"])
def test_logpurge_removes_old_entries(tmp_path, start):
    server = start(tmp_path, conf_for(tmp_path, "logops writes\nlogpurge 00:00:02 00:00:01"))
    try:
        assert ldap_tool("ldapadd", *admin(server), input=TOP + PERSON).returncode == 0
        assert len(read_log(server)) == 3
        wait_for(lambda: len(read_log(server)) == 1, 20, what="the purge")  # the container stays
        assert modify(server, MODIFY) == 0
        assert [e.get("reqtype") for e in read_log(server)] == [None, ["modify"]]
    finally:
        server.stop()


@pytest.mark.parametrize("text", ["00:00:02 00:00:01", "1+00:00 01:00", "00:90 00:01", "1+02:03:04 00:00:30"])
def test_logpurge_intervals_slapd_accepts(tmp_path, text):
    from pyldapd.overlays.accesslog import parse_age

    conf = tmp_path / "slapd.conf"
    conf.write_text(conf_for(tmp_path, f"logops writes\nlogpurge {text}"))
    slaptest = subprocess.run(["/usr/sbin/slaptest", "-u", "-f", str(conf)], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert slaptest.returncode == 0, slaptest.stderr
    mine = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert mine.returncode == 0, mine.stderr
    assert all(parse_age(part) > 0 for part in text.split())


@pytest.mark.parametrize(
    "overlay",
    ["logops writes\nlogpurge 00:00 00:01", "logops writes\nlogpurge 1+00 00:01", "logops nonsense",
     "logops writes\nlogsuccess maybe"],
)  # fmt: skip
def test_bad_values_refused_as_slaptest_refuses_them(tmp_path, overlay):
    conf = tmp_path / "slapd.conf"
    conf.write_text(conf_for(tmp_path, overlay))
    slaptest = subprocess.run(["/usr/sbin/slaptest", "-u", "-f", str(conf)], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert slaptest.returncode != 0
    mine = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert mine.returncode != 0 and "line" in mine.stderr, mine.stderr


def test_logging_reads_is_refused_not_ignored(tmp_path):
    """slapd logs searches and binds too; pyldapd logs writes only so far, and says so instead of starting."""
    conf = tmp_path / "slapd.conf"
    conf.write_text(conf_for(tmp_path, "logops writes reads"))
    mine = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert mine.returncode != 0 and "not supported by pyldapd" in mine.stderr, mine.stderr


def test_cn_config_form_slaptest_writes(tmp_path):
    """slaptest turns the slapd.conf into olcOverlay={0}accesslog with olcAccessLog* values: pyldapd runs it."""
    conf = tmp_path / "slapd.conf"
    overlay = (
        f"logops writes\nlogsuccess TRUE\nlogold (objectClass=*)\nlogoldattr sn\nlogbase delete ou=b,{SUFFIX}"
    )
    conf.write_text(conf_for(tmp_path, overlay))
    (tmp_path / "slapd.d").mkdir()
    subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "slapd.d")], capture_output=True,
                   timeout=60)  # fmt: skip
    overlay_files = list((tmp_path / "slapd.d").rglob("olcOverlay={0}accesslog.ldif"))
    assert overlay_files and "olcAccessLogOld: (objectClass=*)" in overlay_files[0].read_text()
    port = free_port()
    sock = str(tmp_path / "p.sock")
    argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", str(tmp_path / "slapd.d"), "-h",
            f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/", "-d", "stats"]  # fmt: skip
    server = start_process("pyldapd", argv, port, sock, tmp_path, conf)
    try:
        assert ldap_tool("ldapadd", *admin(server), input=TOP + PERSON).returncode == 0
        assert modify(server, FAILING) != 0  # logsuccess TRUE: not logged
        assert modify(server, MODIFY) == 0
        entries = read_log(server)
        assert [e.get("reqtype", ["-"])[0] for e in entries] == ["-", "add", "add", "modify"]
        assert "sn: y" in entries[3]["reqold"] and "description: d1" in entries[3]["reqold"]
    finally:
        server.stop()


def test_failed_commit_logs_nothing_and_an_interrupted_move_completes_at_start(tmp_path, monkeypatch):
    """A change whose commit fails leaves no log entry. The log entry of a committed change whose move into the
    log database failed (then kill -9) is there after the restart; one whose outbox record could not be removed
    is not stored twice. PYLDAPD_FAULT_COMMIT=N fails the Nth write commit of the process: a start makes none
    (empty outbox), so a write's commit is 1, its log entry's 2; the next write's commit (3) also removes the
    moved record from the outbox."""
    fault = tmp_path / "fail-commits"
    # one worker process: the fault counts the commits of one process, and each write must be that process's
    conf = "threads 1\n" + conf_for(tmp_path, "logops writes")
    monkeypatch.setenv("PYLDAPD_FAULT_COMMIT", str(fault))
    server = start_pyldapd(tmp_path, conf)
    monkeypatch.delenv("PYLDAPD_FAULT_COMMIT")
    try:
        assert ldap_tool("ldapadd", *admin(server), input=TOP + PERSON).returncode == 0
        fault.touch()
        result = ldap_tool("ldapmodify", *admin(server), input=MODIFY)
        assert result.returncode == 80, result.stderr
        fault.unlink()
        assert [e.get("reqtype", ["-"])[0] for e in read_log(server)] == ["-", "add", "add"]
        entry = ldap_tool(
            "ldapsearch", *admin(server), "-LLL", "-b", f"cn=x,{SUFFIX}", "-s", "base", "sn"
        ).stdout
        assert "sn: y" in entry and "sn: z" not in entry  # the failed modify changed nothing
    finally:
        server.stop()
    for failing, name in (("2", "move"), ("3", "removal")):
        monkeypatch.setenv("PYLDAPD_FAULT_COMMIT", failing)
        server = start_pyldapd(tmp_path, conf, name=f"fail-{name}")
        monkeypatch.delenv("PYLDAPD_FAULT_COMMIT")
        try:
            description = (
                f"dn: cn=x,{SUFFIX}\nchangetype: modify\nreplace: description\ndescription: {name}\n\n"
            )
            # acknowledged: the change and its outbox record committed
            assert modify(server, description) == 0
            if name == "move":
                assert len(read_log(server)) == 3 and "left in the outbox" in server.log()
            else:  # the next write fails: its removal of the moved record with it
                assert modify(server, description.replace("removal", "lost")) == 80
        finally:
            server.kill()
        server = start_pyldapd(tmp_path, conf, name=f"after-{name}")
        try:
            entries = read_log(server)
            assert [e["reqresult"] for e in entries if f"description:= {name}" in e.get("reqmod", [])] == [
                ["0"]
            ]
            # the failed write is logged as failed (logsuccess FALSE), as slapd logs a write its database refused
            assert [e["reqresult"] for e in entries if "description:= lost" in e.get("reqmod", [])] == (
                [["80"]] if name == "removal" else []
            )
        finally:
            server.stop()
    assert [e.get("reqtype", ["-"])[0] for e in entries] == ["-", "add", "add", "modify", "modify", "modify"]


def test_a_consumer_logs_the_changes_it_applies_as_slapd(tmp_path):
    """A consumer database with accesslog (slapd's and pyldapd's, same slapd provider) logs each replicated add
    and modify as slapd's consumer does: the provider's entryCSN, entryUUID and the changed attributes. slapd
    also logs its own write of the refresh's contextCSN onto the suffix entry; pyldapd keeps that vector in its
    metadata (docs/architecture.md), so that entry is left out of the comparison."""
    from tests.replication.helpers import BASE, add, consumer_conf, person, provider_conf

    (tmp_path / "provider").mkdir()
    provider = start_slapd(tmp_path / "provider", provider_conf(tmp_path / "provider", slapd=True))
    consumers = {}
    try:
        add(provider, BASE)
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            workdir = tmp_path / name
            conf = consumer_conf(workdir / "db", provider.url, slapd=True,
                                 extra_db="overlay accesslog\nlogdb cn=accesslog\nlogops writes\n")  # fmt: skip
            conf = conf.replace(
                "database mdb", "moduleload accesslog\n" + log_database(workdir) + "database mdb", 1
            )
            consumers[name] = start(workdir, conf)
        for consumer in consumers.values():
            wait_for(lambda c=consumer: len(read_log(c)) >= 4, 30, what="the refresh logged")
        add(provider, person("u1"))
        uid = f"uid=u1,ou=People,{SUFFIX}"
        assert (
            modify(provider, f"dn: {uid}\nchangetype: modify\nreplace: description\ndescription: new\n\n")
            == 0
        )
        logs = {}
        for name, consumer in consumers.items():
            wait_for(lambda c=consumer: any("description:= new" in e.get("reqmod", []) for e in read_log(c)), 30,
                     what=f"{name} to log the modify")  # fmt: skip
            entries = [
                e for e in read_log(consumer) if not e.get("reqmod", [""])[0].startswith("contextCSN:")
            ]
            logs[name] = [{k: v for k, v in e.items() if k not in ("dn", "reqstart", "reqend", "reqsession",
                                                                     "entryuuid")} for e in entries]  # fmt: skip
        assert logs["pyldapd"] == logs["slapd"]
        assert [e.get("reqtype") for e in logs["pyldapd"]][-2:] == [["add"], ["modify"]]
    finally:
        for consumer in consumers.values():
            consumer.stop()
        provider.stop()


def test_overlay_added_over_cn_config_as_slapd(tmp_path):
    """olcOverlay=accesslog added at run time to a database of slaptest's slapd.d: a logdb naming no database is
    refused with slapd's result and text, a good one logs the next writes, on slapd and pyldapd alike."""
    root = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"
    outcomes = {}
    for name, argv in (("slapd", [SLAPD, "-d", "0"]),
                       ("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "serve", "-d", "stats"])):  # fmt: skip
        workdir = tmp_path / name
        config_db = f'database config\naccess to * by dn.exact="{root}" manage by * break\n'
        conf = workdir / "slapd.conf"
        text = slapd_conf(workdir / "db", modules=True,
                          extra_global="moduleload accesslog\n" + config_db + log_database(workdir))  # fmt: skip
        conf.write_text(text)
        (workdir / "slapd.d").mkdir()
        # slaptest writes the slapd.d, then cannot open the empty databases read-only: expected
        subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(workdir / "slapd.d")], capture_output=True,
                       timeout=60)  # fmt: skip
        port, sock = free_port(), str(workdir / "s.sock")
        urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/"
        server = start_process(
            name, [*argv, "-F", str(workdir / "slapd.d"), "-h", urls], port, sock, workdir, conf
        )
        ldapi = ["-Y", "EXTERNAL", "-H", "ldapi://" + sock.replace("/", "%2F")]
        try:
            overlay = ("dn: olcOverlay=accesslog,olcDatabase={2}mdb,cn=config\nobjectClass: olcOverlayConfig\n"
                       "objectClass: olcAccessLogConfig\nolcOverlay: accesslog\n")  # fmt: skip
            bad = ldap_tool("ldapadd", *ldapi, input=overlay + "olcAccessLogDB: cn=nothing\n\n")
            good = ldap_tool(
                "ldapadd", *ldapi, input=overlay + "olcAccessLogDB: cn=accesslog\nolcAccessLogOps: add\n\n"
            )
            assert good.returncode == 0, good.stderr
            assert ldap_tool("ldapadd", *admin(server), input=TOP + PERSON).returncode == 0
            assert modify(server, MODIFY) == 0  # not logged: logops add
            stored = ldap_tool("ldapsearch", *ldapi, "-LLL", "-o", "ldif-wrap=no", "-b",
                               "olcOverlay={0}accesslog,olcDatabase={2}mdb,cn=config", "-s", "base").stdout  # fmt: skip
            outcomes[name] = (bad.returncode, bad.stderr.splitlines()[-1], comparable(read_log(server)),
                              sorted(line for line in stored.splitlines() if line.startswith("olc")))  # fmt: skip
        finally:
            server.stop()
    assert outcomes["pyldapd"] == outcomes["slapd"]
    assert outcomes["slapd"][0] == 80 and len(outcomes["slapd"][2]) == 3


def test_failed_writes_logged_as_slapd(tmp_path):
    """logsuccess FALSE (the default): refused adds carry the attributes they would have stored, as slapd's."""
    duplicate = PERSON.replace("\nobjectClass", "\nchangetype: add\nobjectClass", 1)
    orphan = f"dn: cn=q,ou=nope,{SUFFIX}\nchangetype: add\nobjectClass: person\ncn: q\nsn: q\n\n"
    entries = both(
        tmp_path,
        "logops writes",
        [duplicate, orphan, f"delete cn=zz,{SUFFIX}", RENAME.replace("cn=x", "cn=zz")],
    )
    assert [(e["reqtype"][0], e["reqresult"][0]) for e in entries[3:]] == [("add", "68"), ("add", "32"),
                                                                          ("delete", "32"), ("modrdn", "32")]  # fmt: skip


def test_slapd_d_written_with_slaptest_values(tmp_path):
    """`pyldapd test -f -F` writes the olcAccessLog* values slaptest writes (slapd's canonical forms: `writes`
    for the four write operations, [d+]hh:mm intervals, quoted logbase DN, logoldattr newest first)."""
    overlay = ("logops writes add\nlogsuccess TRUE\nlogold (objectClass=*)\nlogoldattr sn cn description\n"
               f"logbase delete|modify ou=b,{SUFFIX}\nlogpurge 07+00:00 00:00:30")  # fmt: skip
    written = {}
    tools = (
        ("slapd", ["/usr/sbin/slaptest"]),
        ("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "test"]),
    )
    for name, argv in tools:
        workdir = tmp_path / name
        conf = workdir / "slapd.conf"
        conf.parent.mkdir()
        conf.write_text(conf_for(workdir, overlay))
        (workdir / "slapd.d").mkdir()
        # both write the slapd.d, then fail to open the empty databases read-only: expected
        subprocess.run(
            [*argv, "-f", str(conf), "-F", str(workdir / "slapd.d")], capture_output=True, timeout=60
        )
        found = list((workdir / "slapd.d").rglob("olcOverlay={0}accesslog.ldif"))
        assert found, name
        written[name] = [
            line for line in found[0].read_text().splitlines() if line.startswith("olcAccessLog")
        ]
    assert written["pyldapd"] == written["slapd"]
    assert "olcAccessLogPurge: 7+00:00 00:00:30" in written["slapd"]


@pytest.mark.parametrize("start", [start_slapd, start_pyldapd], ids=["slapd", "pyldapd"])
def test_syncprov_on_the_log_database_pushes_new_log_entries(tmp_path, start):
    """What a delta-syncrepl consumer relies on: a persistent sync search on cn=accesslog receives the log
    entry of each new write (the log database's own overlays see the entries accesslog adds)."""
    conf = conf_for(tmp_path, "logops writes").replace(
        "index reqStart eq\n", "index reqStart eq\noverlay syncprov\n"
    )
    if start is start_slapd:
        conf = conf.replace("moduleload accesslog", "moduleload accesslog\nmoduleload syncprov")
    server = start(tmp_path, conf)
    out = tmp_path / "persist.ldif"
    try:
        assert ldap_tool("ldapadd", *admin(server), input=TOP).returncode == 0
        with open(out, "w") as sink:
            search = subprocess.Popen(["ldapsearch", *admin(server), "-LLL", "-b", "cn=accesslog", "-E", "sync=rp",
                                       "(objectClass=auditWriteObject)", "reqDN"], stdout=sink,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_for(lambda: f"reqDN: {SUFFIX}" in out.read_text(), 20, what="the refresh")
            assert ldap_tool("ldapadd", *admin(server), input=PERSON).returncode == 0
            wait_for(lambda: f"reqDN: cn=x,{SUFFIX}" in out.read_text(), 20, what="the persist push")
        finally:
            search.terminate()
            search.wait(10)
    finally:
        server.stop()


def test_accesslog_module_loaded_over_cn_config_brings_its_schema_as_slapd(tmp_path):
    """Debian's slapd knows the accesslog schema once its module is loaded: an olcDbIndex naming reqStart is
    refused (80) before an olcModuleLoad of accesslog added over cn=config, accepted right after it, on slapd
    and pyldapd alike (test086 indexes its log databases so before any accesslog overlay exists)."""
    root = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"
    outcomes = {}
    for name, argv in (("slapd", [SLAPD, "-d", "0"]),
                       ("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "serve", "-d", "stats"])):  # fmt: skip
        workdir = tmp_path / name
        config_db = f'database config\naccess to * by dn.exact="{root}" manage by * break\n'
        conf = workdir / "slapd.conf"
        conf.write_text(slapd_conf(workdir / "db", modules=True, extra_global=config_db))
        (workdir / "slapd.d").mkdir()
        (workdir / "log").mkdir()
        subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(workdir / "slapd.d")], capture_output=True,
                       timeout=60)  # fmt: skip
        port, sock = free_port(), str(workdir / "s.sock")
        urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/"
        server = start_process(
            name, [*argv, "-F", str(workdir / "slapd.d"), "-h", urls], port, sock, workdir, conf
        )
        ldapi = ["-Y", "EXTERNAL", "-H", "ldapi://" + sock.replace("/", "%2F")]
        log_db = ("dn: olcDatabase={2}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
                  f"olcDatabase: {{2}}mdb\nolcSuffix: cn=accesslog\nolcDbDirectory: {workdir / 'log'}\n"
                  "olcDbIndex: default eq\nolcDbIndex: entryCSN,objectClass,reqEnd,reqResult,reqStart,reqDN\n\n")  # fmt: skip
        module = ("dn: cn=module,cn=config\nobjectClass: olcModuleList\ncn: module\n"
                  "olcModulePath: /usr/lib/ldap\nolcModuleLoad: accesslog.la\n\n")  # fmt: skip
        try:
            before = ldap_tool("ldapadd", *ldapi, input=log_db)
            loaded = ldap_tool("ldapadd", *ldapi, input=module)
            after = ldap_tool("ldapadd", *ldapi, input=log_db)
            outcomes[name] = (before.returncode, before.stderr.splitlines()[-1], loaded.returncode,
                              after.returncode)  # fmt: skip
        finally:
            server.stop()
    assert outcomes["pyldapd"] == outcomes["slapd"]
    assert outcomes["slapd"][0] == 80 and outcomes["slapd"][2:] == (0, 0)


def test_accesslog_over_cn_config_logs_config_changes_as_slapd(tmp_path):
    """olcOverlay=accesslog on olcDatabase={0}config (as test086 sets it up): each change to cn=config gets its
    log entry in the log database, the same on slapd and pyldapd; logging failures there is refused by
    pyldapd (a refused cn=config change is not logged by it), slapd accepts it."""
    root = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"
    outcomes = {}
    for name, argv in (("slapd", [SLAPD, "-d", "0"]),
                       ("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "serve", "-d", "stats"])):  # fmt: skip
        workdir = tmp_path / name
        config_db = (f'database config\nrootdn cn=config\nrootpw {ROOTPW}\n'
                     f'access to * by dn.exact="{root}" manage by * break\n')  # fmt: skip
        conf = workdir / "slapd.conf"
        conf.write_text(slapd_conf(workdir / "db", modules=True,
                                   extra_global="moduleload accesslog\n" + config_db + log_database(workdir)))  # fmt: skip
        (workdir / "slapd.d").mkdir()
        subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(workdir / "slapd.d")], capture_output=True,
                       timeout=60)  # fmt: skip
        port, sock = free_port(), str(workdir / "s.sock")
        urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/"
        server = start_process(
            name, [*argv, "-F", str(workdir / "slapd.d"), "-h", urls], port, sock, workdir, conf
        )
        ldapi = ["-Y", "EXTERNAL", "-H", "ldapi://" + sock.replace("/", "%2F")]
        overlay = ("dn: olcOverlay=accesslog,olcDatabase={0}config,cn=config\nobjectClass: olcOverlayConfig\n"
                   "objectClass: olcAccessLogConfig\nolcOverlay: accesslog\nolcAccessLogDB: cn=accesslog\n"
                   "olcAccessLogOps: writes\nolcAccessLogSuccess: TRUE\n\n")  # fmt: skip
        change = ("dn: olcDatabase={2}mdb,cn=config\nchangetype: modify\nreplace: olcSizeLimit\nolcSizeLimit: 77\n"
                  "-\nadd: olcDbIndex\nolcDbIndex: description eq\n\n"
                  "dn: cn=test,cn=schema,cn=config\nchangetype: add\nobjectClass: olcSchemaConfig\ncn: test\n"
                  "olcAttributeTypes: ( 1.3.6.1.4.1.4203.666.11.90 NAME 'pyldapdTestAttr' SUP name )\n\n")  # fmt: skip
        try:
            if name == "pyldapd":  # logsuccess FALSE (the default): slapd would log refused changes too
                refused = ldap_tool(
                    "ldapadd", *ldapi, input=overlay.replace("olcAccessLogSuccess: TRUE\n", "")
                )
                assert refused.returncode == 80 and "olcAccessLogSuccess" in refused.stderr, refused.stderr
            added = ldap_tool("ldapadd", *ldapi, input=overlay)
            assert added.returncode == 0, added.stderr
            changed = ldap_tool("ldapmodify", "-x", "-D", "cn=config", "-w", ROOTPW, "-H", server.url,
                                input=change)  # fmt: skip
            assert changed.returncode == 0, changed.stderr
            entries = [e for e in read_log(server) if "reqtype" in e]
            outcomes[name] = comparable(entries)
        finally:
            server.stop()
    assert outcomes["pyldapd"] == outcomes["slapd"]
    assert [e["reqtype"] for e in outcomes["slapd"]] == [["modify"], ["add"]]
