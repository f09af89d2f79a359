"""The persistent session log (issue 11): `syncprov-sessionlog-source cn=accesslog` makes syncprov answer a
consumer's refresh from the accesslog database, so a consumer whose cookie predates a provider restart gets a
delete phase (each deleted entry's UUID in a syncIdSet, refreshDeletes) instead of a present phase of every
entry; when the log cannot cover the cookie (its minCSN is newer), the provider falls back to the present phase.
Debian's slapd runs the same configurations beside pyldapd (OpenLDAP's test078-persistent-sessionlog is the
model), and pyldapd and slapd consumers offline across the restart converge."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.replication.helpers import ADMIN, BASE, add, consumer_conf, modify, person, wait_converged
from tests.servers import (
    SCHEMA_DIR,
    SLAPD,
    SUFFIX,
    free_port,
    ldap_tool,
    slapd_conf,
    start_process,
    start_pyldapd,
    start_slapd,
)

PEOPLE = f"ou=People,{SUFFIX}"
ENTRIES = BASE + "\n" + "\n".join(person(f"u{i}") for i in range(8))
# between the cookie and the restart: two deletes, a modify, a rename inside the base, an add
CHANGES = [
    ("delete", f"uid=u1,{PEOPLE}"),
    ("modify", f"dn: uid=u2,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: changed\n"),
    ("delete", f"uid=u3,{PEOPLE}"),
    ("modify", f"dn: uid=u4,{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=u4b\ndeleteoldrdn: 0\n"),
    (
        "modify",
        f"dn: uid=u9,{PEOPLE}\nchangetype: add\nobjectClass: inetOrgPerson\ncn: U9\nsn: u9\nuid: u9\n",
    ),
]


def provider_conf(workdir: Path, *, slapd: bool, accesslog: bool = True) -> str:
    """A provider whose syncprov takes its session log from the accesslog database cn=accesslog (declared
    first, with syncprov of its own as delta-syncrepl providers have it); `accesslog=False`: the same
    database with neither the overlay nor the source (the log database stays)."""
    (workdir / "log").mkdir(parents=True, exist_ok=True)
    modules = "moduleload syncprov\nmoduleload accesslog\n"
    log_db = (f"database mdb\nsuffix cn=accesslog\nrootdn cn=accesslog\ndirectory {workdir / 'log'}\n"
              "index reqStart,entryCSN,reqDN,reqResult eq\noverlay syncprov\nsyncprov-nopresent TRUE\n"
              "syncprov-reloadhint TRUE\n")  # fmt: skip
    overlays = "overlay syncprov\n"
    if accesslog:
        overlays += ("syncprov-sessionlog-source cn=accesslog\noverlay accesslog\nlogdb cn=accesslog\n"
                     "logops writes\nlogsuccess TRUE\n")  # fmt: skip
    indexes = "index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq"
    return slapd_conf(workdir / "db", indexes=indexes, modules=True, extra_global=modules + log_db,
                      extra_db=overlays)  # fmt: skip


def start(kind: str, workdir: Path, conf: str, port: int | None = None):
    return (start_slapd if kind == "slapd" else start_pyldapd)(workdir, conf, name=kind, port=port)


def cookie_of(server, base: str = SUFFIX, filter_: str = "(objectClass=*)") -> str:
    result = ldap_tool("ldapsearch", "-H", server.url, *ADMIN, "-b", base, "-E", "sync=ro", filter_, "1.1")
    assert result.returncode == 0, result.stderr
    cookies = re.findall(r"cookie: (\S+)", result.stdout)
    assert cookies, result.stdout
    return cookies[-1]


def refresh(server, cookie: str, base: str = SUFFIX, filter_: str = "(objectClass=*)") -> dict:
    """A refreshOnly sync search from `cookie`, as test078 reads it: syncIdSets with their refreshDeletes
    flag, the entries sent, and the refreshDeletes of the SyncDone control."""
    result = ldap_tool("ldapsearch", "-H", server.url, *ADMIN, "-b", base, "-E", f"sync=ro/{cookie}", filter_,
                       "1.1")  # fmt: skip
    assert result.returncode == 0, result.stderr + server.log()[-3000:]
    text = result.stdout
    id_sets = [block for block in text.split("\n\n") if "SyncInfo Received: ID Set" in block]
    return {
        "deleted_uuids": sum(block.count("\n#\t") for block in id_sets if "no longer match" in block),
        "present_sets": sum(1 for block in id_sets if "no longer match" not in block),
        "entries": sorted(re.findall(r"^dn: (.*)$", text, re.M)),
        "done_deletes": "SyncDone control refreshDeletes=1" in text,
        "text": text,
    }


def uuid_of(server, dn: str) -> str:
    result = ldap_tool("ldapsearch", "-H", server.url, *ADMIN, "-LLL", "-b", dn, "-s", "base", "(objectClass=*)",
                       "entryUUID")  # fmt: skip
    return re.search(r"entryUUID: (\S+)", result.stdout).group(1)  # type: ignore[union-attr]


def apply_changes(server) -> None:
    for kind, what in CHANGES:
        if kind == "delete":
            assert ldap_tool("ldapdelete", "-H", server.url, *ADMIN, what).returncode == 0
        else:
            modify(server, what + "\n")


def restarted(kind: str, server, conf: str):
    server.stop()
    return start(kind, server.workdir, conf, port=server.port)


def scenario(kind: str, workdir: Path) -> tuple[dict, set[str]]:
    """Load, take a cookie, change, restart the provider; the refresh from the old cookie, and the UUIDs of
    the deleted entries."""
    conf = provider_conf(workdir, slapd=kind == "slapd")
    server = start(kind, workdir, conf)
    try:
        add(server, ENTRIES)
        cookie = cookie_of(server)
        deleted = {uuid_of(server, dn) for op, dn in CHANGES if op == "delete"}
        apply_changes(server)
        server = restarted(kind, server, conf)
        return refresh(server, cookie), deleted
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["slapd", "pyldapd"])
def test_refresh_after_restart_is_a_delete_phase_from_the_accesslog(tmp_path, kind):
    answer, deleted = scenario(kind, tmp_path / kind)
    text = answer["text"]
    # the two deleted entries, each in a syncIdSet of the delete phase; no present phase
    assert answer["deleted_uuids"] == 2, text
    assert answer["present_sets"] == 0, text
    assert answer["done_deletes"], text
    assert all(uuid in text for uuid in deleted), text
    # the changed entries themselves (modified, renamed, added) follow as entries
    assert answer["entries"] == sorted([f"uid=u2,{PEOPLE}", f"uid=u4b,{PEOPLE}", f"uid=u9,{PEOPLE}"]), text


def test_pyldapd_answers_as_slapd(tmp_path):
    slapd_answer, _ = scenario("slapd", tmp_path / "slapd")
    pyldapd_answer, _ = scenario("pyldapd", tmp_path / "pyldapd")
    keys = ("deleted_uuids", "present_sets", "entries", "done_deletes")
    assert {k: pyldapd_answer[k] for k in keys} == {k: slapd_answer[k] for k in keys}


@pytest.mark.parametrize("kind", ["slapd", "pyldapd"])
def test_entries_moved_out_of_the_base_or_out_of_the_filter_are_in_the_delete_phase(tmp_path, kind):
    """A sync search of ou=People for the entries without `description: gone`: an entry moved to ou=Groups, one
    modified to match no longer, one deleted, one renamed inside the base and one modified (still matching):
    the first three are in the delete phase, the last two are sent as entries; slapd's answer, pyldapd's."""
    workdir = tmp_path / kind
    conf = provider_conf(workdir, slapd=kind == "slapd")
    server = start(kind, workdir, conf)
    search = (PEOPLE, "(!(description=gone))")
    try:
        add(server, ENTRIES)
        cookie = cookie_of(server, *search)
        gone = {uuid_of(server, f"uid=u{i},{PEOPLE}") for i in (5, 6, 7)}
        modify(server, f"dn: uid=u5,{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=u5\ndeleteoldrdn: 1\n"
                       f"newsuperior: ou=Groups,{SUFFIX}\n\n"
                       f"dn: uid=u6,{PEOPLE}\nchangetype: modify\nadd: description\ndescription: gone\n\n"
                       f"dn: uid=u2,{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=u2b\ndeleteoldrdn: 1\n\n"
                       f"dn: uid=u3,{PEOPLE}\nchangetype: modify\nadd: description\ndescription: kept\n\n")  # fmt: skip
        assert ldap_tool("ldapdelete", "-H", server.url, *ADMIN, f"uid=u7,{PEOPLE}").returncode == 0
        server = restarted(kind, server, conf)
        answer = refresh(server, cookie, *search)
    finally:
        server.stop()
    text = answer["text"]
    assert answer["deleted_uuids"] == 3 and answer["present_sets"] == 0 and answer["done_deletes"], text
    assert all(uuid in text for uuid in gone), text
    assert answer["entries"] == [f"uid=u2b,{PEOPLE}", f"uid=u3,{PEOPLE}"], text


@pytest.mark.parametrize("kind", ["slapd", "pyldapd"])
def test_a_cookie_older_than_the_log_gets_the_present_phase(tmp_path, kind):
    """The cookie was taken before the accesslog was configured: minCSN (the logged database's contextCSN when
    the log database was made) is newer than the cookie, so the log cannot tell what was deleted before it."""
    workdir = tmp_path / kind
    server = start(kind, workdir, provider_conf(workdir, slapd=kind == "slapd", accesslog=False))
    try:
        add(server, ENTRIES)
        cookie = cookie_of(server)
        assert ldap_tool("ldapdelete", "-H", server.url, *ADMIN, f"uid=u1,{PEOPLE}").returncode == 0
        conf = provider_conf(workdir, slapd=kind == "slapd")
        server = restarted(kind, server, conf)
        modify(server, f"dn: uid=u2,{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: x\n\n")
        answer = refresh(server, cookie)
    finally:
        server.stop()
    text = answer["text"]
    assert answer["deleted_uuids"] == 0, text
    assert answer["present_sets"] >= 1, text  # the UUIDs of the entries still there
    assert not answer["done_deletes"], text
    assert answer["entries"] == [f"uid=u2,{PEOPLE}"], text
    if kind == "pyldapd":  # why, in its log (slapd says the same at its sync level)
        assert "accesslog information inadequate for log replay" in server.log()


@pytest.mark.parametrize("consumer_kind", ["pyldapd", "slapd"])
def test_consumer_offline_across_a_provider_restart_converges(tmp_path, consumer_kind):
    """A pyldapd provider; a consumer (pyldapd or Debian's slapd) stopped while the provider changes and
    restarts. Back online it catches up from its cookie: the provider plays the delete phase from its
    accesslog (its log says so), and both hold the same entries."""
    conf = provider_conf(tmp_path / "provider", slapd=False)
    provider = start_pyldapd(tmp_path / "provider", conf, name="provider")
    consumer = None
    try:
        add(provider, ENTRIES)
        consumer_dir = tmp_path / "consumer"
        consumer_text = consumer_conf(consumer_dir / "db", provider.url, slapd=consumer_kind == "slapd",
                                      updateref=False)  # fmt: skip
        port = free_port()
        consumer = start(consumer_kind, consumer_dir, consumer_text, port=port)
        wait_converged([provider, consumer], timeout=30)
        consumer.stop()
        apply_changes(provider)
        provider.stop()
        before = len(provider.log())
        provider = start_pyldapd(tmp_path / "provider", conf, name="provider", port=provider.port)
        consumer = start(consumer_kind, consumer_dir, consumer_text, port=port)
        common = wait_converged([provider, consumer], timeout=60)
        dns = {dn.lower() for dn, _ in common}
        assert f"dn: uid=u1,{PEOPLE}".lower() not in dns and f"dn: uid=u4b,{PEOPLE}".lower() in dns
        log = provider.log()[before:]
        assert "delete phase of 2 entries from the accesslog" in log, log[-3000:]
        assert "present phase" not in log, log[-3000:]
    finally:
        provider.stop()
        if consumer is not None:
            consumer.stop()


CONF_HEAD = f"""include {SCHEMA_DIR}/core.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
database mdb
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
directory {{db}}
overlay syncprov
"""


@pytest.mark.parametrize(
    "line",
    [
        "syncprov-foo 1",
        "syncprov-sessionlog -1",
        "syncprov-checkpoint 0 10",
        "syncprov-checkpoint 5 0",
        "syncprov-nopresent maybe",
        "syncprov-sessionlog-source notadn",
        "syncprov-sessionlog-source cn=accesslog",
    ],  # fmt: skip
)
def test_syncprov_lines_slapd_refuses_are_refused(tmp_path, line):
    """Every syncprov-* line is read as slapd reads it or refused (an unknown one is not kept and ignored);
    syncprov-sessionlog-source needs the accesslog schema, so its module loaded first, as in slapd."""
    (tmp_path / "db").mkdir()
    conf = tmp_path / "slapd.conf"
    conf.write_text(CONF_HEAD.format(db=tmp_path / "db") + line + "\n")
    slapd = subprocess.run(["/usr/sbin/slaptest", "-u", "-f", str(conf)], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert slapd.returncode != 0, slapd.stderr
    ours = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ours.returncode != 0, ours.stdout + ours.stderr
    assert f"{conf}: line 10:" in ours.stdout + ours.stderr
    assert "Traceback" not in ours.stderr
    said = re.search(r"line 10: (.*)", slapd.stdout + slapd.stderr)
    if said is not None:  # slapd's words (it names no line for the missing accesslog schema)
        assert f"line 10: {said.group(1)}" in ours.stdout + ours.stderr


def test_sessionlog_source_accepted_after_the_accesslog_module(tmp_path):
    (tmp_path / "db").mkdir()
    conf = tmp_path / "slapd.conf"
    head = CONF_HEAD.replace("moduleload syncprov\n", "moduleload syncprov\nmoduleload accesslog\n")
    conf.write_text(head.format(db=tmp_path / "db") + 'syncprov-sessionlog-source "cn=accesslog"\n')
    slapd = subprocess.run(["/usr/sbin/slaptest", "-u", "-f", str(conf)], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert slapd.returncode == 0, slapd.stderr
    ours = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-u", "-f", str(conf)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ours.returncode == 0, ours.stdout + ours.stderr


def test_sessionlog_source_over_cn_config_as_slapd(tmp_path):
    """olcSpSessionlogSource on an olcOverlay=syncprov added at run time to slaptest's slapd.d: naming no
    database is refused with slapd's result and text; naming the accesslog, a refresh from a cookie older than
    a restart is answered with the delete phase, on slapd and pyldapd alike."""
    root = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"
    outcomes = {}
    for name, argv in (("slapd", [SLAPD, "-d", "0"]),
                       ("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "serve", "-d", "stats,sync"])):  # fmt: skip
        workdir = tmp_path / name
        (workdir / "log").mkdir(parents=True)
        config_db = f'database config\naccess to * by dn.exact="{root}" manage by * break\n'
        log_db = (f"database mdb\nsuffix cn=accesslog\nrootdn cn=accesslog\ndirectory {workdir / 'log'}\n"
                  "index reqStart,entryCSN eq\n")  # fmt: skip
        conf = workdir / "slapd.conf"
        indexes = "index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq"
        conf.write_text(slapd_conf(workdir / "db", modules=True, indexes=indexes,
                                   extra_global="moduleload syncprov\nmoduleload accesslog\n" + config_db + log_db,
                                   extra_db="overlay accesslog\nlogdb cn=accesslog\nlogops writes\n"))  # fmt: skip
        (workdir / "slapd.d").mkdir()
        # slaptest writes the slapd.d, then cannot open the empty databases read-only: expected
        subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(workdir / "slapd.d")], capture_output=True,
                       timeout=60)  # fmt: skip
        port, sock = free_port(), str(workdir / "s.sock")
        urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/"
        command = [*argv, "-F", str(workdir / "slapd.d"), "-h", urls]
        server = start_process(name, command, port, sock, workdir, conf)
        ldapi = ["-Y", "EXTERNAL", "-H", "ldapi://" + sock.replace("/", "%2F")]
        try:
            overlay = ("dn: olcOverlay=syncprov,olcDatabase={2}mdb,cn=config\nobjectClass: olcOverlayConfig\n"
                       "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\n")  # fmt: skip
            bad = ldap_tool("ldapadd", *ldapi, input=overlay + "olcSpSessionlogSource: cn=nothing\n\n")
            good = ldap_tool("ldapadd", *ldapi, input=overlay + "olcSpSessionlogSource: cn=accesslog\n\n")
            assert good.returncode == 0, good.stderr
            negative = ldap_tool("ldapmodify", *ldapi, input="dn: olcOverlay={1}syncprov,olcDatabase={2}mdb,cn=config\n"
                                 "changetype: modify\nreplace: olcSpSessionlog\nolcSpSessionlog: -1\n\n")  # fmt: skip
            add(server, ENTRIES)
            cookie = cookie_of(server)
            apply_changes(server)
            server.stop()
            server = start_process(name, command, port, sock, workdir, conf)
            answer = refresh(server, cookie)
            stored = ldap_tool("ldapsearch", *ldapi, "-LLL", "-o", "ldif-wrap=no", "-b",
                               "olcOverlay={1}syncprov,olcDatabase={2}mdb,cn=config", "-s", "base").stdout  # fmt: skip
            outcomes[name] = (bad.returncode, bad.stderr.splitlines()[-1], negative.returncode,
                              negative.stderr.splitlines()[-1],
                              {k: answer[k] for k in ("deleted_uuids", "present_sets", "entries", "done_deletes")},
                              sorted(line for line in stored.splitlines() if line.startswith("olc")))  # fmt: skip
        finally:
            server.stop()
    assert outcomes["pyldapd"] == outcomes["slapd"]
    assert outcomes["slapd"][4]["deleted_uuids"] == 2 and outcomes["slapd"][4]["present_sets"] == 0


def test_slapd_conf_converted_to_slapd_d_as_slaptest_writes_it(tmp_path):
    """slaptest -f -F and pyldapd test -f -F write the syncprov overlay entry with the same olcSp* values,
    olcSpSessionlogSource included (no quotes), in slapd's order."""
    for name in ("db", "log", "slapd.d", "pyldapd.d"):
        (tmp_path / name).mkdir()
    conf = tmp_path / "slapd.conf"
    conf.write_text(f"""include {SCHEMA_DIR}/core.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
moduleload accesslog
database mdb
suffix cn=accesslog
rootdn cn=accesslog
directory {tmp_path / "log"}
database mdb
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
directory {tmp_path / "db"}
overlay syncprov
syncprov-sessionlog-source "cn=accesslog"
syncprov-sessionlog 100
overlay accesslog
logdb cn=accesslog
""")
    # both write the slapd.d before failing to open the empty databases read-only
    subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "slapd.d")], capture_output=True,
                   timeout=60)  # fmt: skip
    subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-f", str(conf), "-F", str(tmp_path / "pyldapd.d")],
                   capture_output=True, timeout=60)  # fmt: skip

    def overlay_values(directory: Path) -> list[str]:
        found = list(directory.rglob("olcOverlay={0}syncprov.ldif"))
        assert len(found) == 1, list(directory.rglob("*.ldif"))
        return [
            line for line in found[0].read_text().splitlines() if line.startswith(("olcSp", "objectClass"))
        ]

    assert overlay_values(tmp_path / "pyldapd.d") == overlay_values(tmp_path / "slapd.d")
    assert "olcSpSessionlogSource: cn=accesslog" in overlay_values(tmp_path / "pyldapd.d")


def test_a_bad_value_in_a_slapd_d_stops_the_start_as_in_slapd(tmp_path):
    """A slapd.d whose olcSpSessionlog is negative: slapd and pyldapd both refuse to start, pyldapd naming the
    entry and slapd's words (not a traceback)."""
    for name in ("db", "slapd.d"):
        (tmp_path / name).mkdir()
    conf = tmp_path / "slapd.conf"
    conf.write_text(CONF_HEAD.format(db=tmp_path / "db") + "syncprov-sessionlog 100\n")
    subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "slapd.d")], capture_output=True,
                   timeout=60)  # fmt: skip
    (overlay,) = (tmp_path / "slapd.d").rglob("olcOverlay={0}syncprov.ldif")
    overlay.write_text(overlay.read_text().replace("olcSpSessionlog: 100", "olcSpSessionlog: -1"))
    url = f"ldap://127.0.0.1:{free_port()}/"
    for argv in ([SLAPD, "-d", "0"], [sys.executable, "-m", "pyldapd.cli.main", "serve", "-d", "0"]):
        started = subprocess.run([*argv, "-F", str(tmp_path / "slapd.d"), "-h", url], capture_output=True, text=True,
                                 timeout=60)  # fmt: skip
        assert started.returncode != 0, started.stderr
    assert "olcSpSessionlog size -1 is negative" in started.stderr and "Traceback" not in started.stderr
