"""The accesslog entries pyldapd writes read as slapd's (issue 11): for the same add, modify, modrdn and delete,
slapcat of the log database (Debian's slapcat beside `pyldapd cat`) and ldapsearch of `*` and `+` show the same
entries, attributes and object classes, values alike but for times, sessions, UUIDs and CSNs; and Debian's
slapadd loads pyldapd's dump into a slapd log database (schema-checked), which its slapd then serves as pyldapd
served it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.overlays.test_accesslog import MODIFY, PERSON, RENAME, TOP, admin, log_database, modify
from tests.servers import SUFFIX, ldap_tool, slapd_conf, start_pyldapd, start_slapd

MOVE = f"dn: cn=w,{SUFFIX}\nchangetype: modrdn\nnewrdn: cn=v\ndeleteoldrdn: 0\nnewsuperior: ou=b,{SUFFIX}\n\n"
OU = f"dn: ou=b,{SUFFIX}\nchangetype: add\nobjectClass: organizationalUnit\nou: b\n\n"
# what differs between two runs whatever the server
VARYING = {"reqstart", "reqend", "reqsession", "entryuuid", "reqentryuuid", "entrycsn", "createtimestamp",
           "modifytimestamp", "contextcsn", "mincsn", "dn", "entrydn"}  # fmt: skip
VARYING_VALUE = re.compile(
    r"^(entryUUID|entryCSN|createTimestamp|modifyTimestamp):([-+=#]?) .*$|\d{14}\.\d{6}Z(#\w+){3}|\d{14}\.\d{6}Z",
    re.I,
)


def conf(workdir: Path, old_attrs: str = "description") -> str:
    """The example database logged (logold of persons, logoldattr `old_attrs`) into cn=accesslog, which has
    syncprov of its own as delta-syncrepl providers have it."""
    return slapd_conf(workdir / "db", modules=True,
                      extra_global="moduleload syncprov\nmoduleload accesslog\n" + log_database(workdir)
                      + "overlay syncprov\n",
                      extra_db="overlay accesslog\nlogdb cn=accesslog\nlogops writes\nlogsuccess TRUE\n"
                               "logold (objectClass=person)\n" + (f"logoldattr {old_attrs}\n" if old_attrs else ""))  # fmt: skip


def parse_ldif(text: str) -> list[list[tuple[str, str]]]:
    """LDIF (slapcat or ldapsearch -LLL, unwrapped) as entries of (attribute, value) in order."""
    entries = []
    for block in text.replace("\n ", "").strip().split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith("#")]
        if lines:
            entries.append([(n.rstrip(":"), v) for n, _, v in (line.partition(": ") for line in lines)])
    return entries


def comparable(entries: list[list[tuple[str, str]]]) -> list[dict[str, list[str]]]:
    """In reqStart order (the container first): each entry's attributes, values masked where they vary."""

    def mask(name: str, value: str) -> str:
        if name.lower() in VARYING:
            return "*"
        return VARYING_VALUE.sub(lambda m: f"{m.group(1)}:{m.group(2)} *" if m.group(1) else "*", value)

    def started(entry: list[tuple[str, str]]) -> str:
        return next((v for n, v in entry if n.lower() == "reqstart"), "")

    out = []
    for entry in sorted(entries, key=started):
        kept: dict[str, list[str]] = {}
        for name, value in entry:
            kept.setdefault(name.lower(), []).append(mask(name, value))
        out.append({k: sorted(v) for k, v in kept.items()})
    return out


def run(workdir: Path, start, old_attrs: str = "description") -> tuple[str, str]:
    """The scenario on one server; its log database by ldapsearch (`*` `+`) while it runs."""
    server = start(workdir, conf(workdir, old_attrs))
    try:
        assert ldap_tool("ldapadd", *admin(server), input=TOP + PERSON).returncode == 0
        for ldif in (MODIFY, RENAME, OU, MOVE):
            assert modify(server, ldif) == 0
        assert ldap_tool("ldapdelete", *admin(server), f"cn=v,ou=b,{SUFFIX}").returncode == 0
        searched = ldap_tool("ldapsearch", *admin(server), "-LLL", "-o", "ldif-wrap=no", "-b", "cn=accesslog",
                             "(objectClass=*)", "*", "+")  # fmt: skip
        assert searched.returncode == 0, searched.stderr
        return searched.stdout, server.config_path.read_text()
    finally:
        server.stop()


def slapcat(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_preserved(dump: str, loaded: str, *, whole: bool = False) -> None:
    """The entries a tool loaded hold what the dump had, value for value; the loading tool only adds the
    operational attributes an entry lacks (slapadd and pyldapd add alike: the container's entryUUID ...).
    `whole`: `loaded` is a whole dump, so it holds every value of the dump too."""
    dumped = {dict(e)["dn"].lower(): e for e in parse_ldif(dump)}
    shown = {dict(e)["dn"].lower(): e for e in parse_ldif(loaded)}
    assert set(shown) == set(dumped)
    for dn, entry in shown.items():
        names = {n.lower() for n, _ in dumped[dn]}
        kept = {(n.lower(), v) for n, v in entry if n.lower() in names}
        original = {(n.lower(), v) for n, v in dumped[dn]}
        assert kept == original if whole else kept <= original, dn


def test_accesslog_entries_read_alike_by_slapd_tools_and_clients(tmp_path):
    slapd_searched, slapd_text = run(tmp_path / "slapd", start_slapd)
    ours_searched, ours_text = run(tmp_path / "pyldapd", start_pyldapd)
    slapd_conf_path, ours_conf_path = tmp_path / "slapd" / "slapd.conf", tmp_path / "pyldapd" / "pyldapd.conf"
    # ldapsearch: the same entries, attributes (user and operational), object classes and values
    expected, got = comparable(parse_ldif(slapd_searched)), comparable(parse_ldif(ours_searched))
    assert [e.get("reqtype") for e in got] == [None, ["add"], ["add"], ["modify"], ["modrdn"], ["add"], ["modrdn"],
                                               ["delete"]]  # fmt: skip
    assert got == expected
    # slapcat: Debian's of slapd's log database, pyldapd's of pyldapd's
    slapd_dump = slapcat(
        ["/usr/sbin/slapcat", "-f", str(slapd_conf_path), "-b", "cn=accesslog", "-o", "ldif-wrap=no"]
    )
    ours_dump = slapcat([sys.executable, "-m", "pyldapd.cli.main", "cat", "-f", str(ours_conf_path), "-b",
                         "cn=accesslog", "-o", "ldif-wrap=no"])  # fmt: skip
    assert comparable(parse_ldif(ours_dump)) == comparable(parse_ldif(slapd_dump))
    # Debian's slapadd loads pyldapd's dump into a new slapd log database, and slapd serves it as pyldapd did
    fresh = tmp_path / "fresh"
    (fresh / "log").mkdir(parents=True)
    fresh_conf = fresh / "slapd.conf"
    fresh_conf.write_text(conf(fresh))
    loaded = subprocess.run(["/usr/sbin/slapadd", "-f", str(fresh_conf), "-b", "cn=accesslog", "-q"],
                            input=ours_dump, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    server = start_slapd(fresh, fresh_conf.read_text())
    try:
        served = ldap_tool("ldapsearch", *admin(server), "-LLL", "-o", "ldif-wrap=no", "-b", "cn=accesslog",
                           "(objectClass=*)", "*", "entryUUID", "entryCSN", "minCSN")  # fmt: skip
    finally:
        server.stop()
    assert served.returncode == 0, served.stderr
    assert_preserved(ours_dump, served.stdout)
    # the other way: pyldapd add loads slapd's dump into a new pyldapd log database, and its cat gives it back
    back = tmp_path / "back"
    (back / "log").mkdir(parents=True)
    back_conf = back / "pyldapd.conf"
    back_conf.write_text(conf(back))
    pyldapd = [sys.executable, "-m", "pyldapd.cli.main"]
    loaded = subprocess.run([*pyldapd, "add", "-f", str(back_conf), "-b", "cn=accesslog", "-q"], input=slapd_dump,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    again = slapcat([*pyldapd, "cat", "-f", str(back_conf), "-b", "cn=accesslog", "-o", "ldif-wrap=no"])
    assert_preserved(slapd_dump, again, whole=True)


def test_without_logoldattr_a_rename_keeps_no_old_values_as_slapd(tmp_path):
    """logold alone: a delete keeps the whole old entry, a modify the attributes it changes, a modrdn nothing
    (slapd reads the old entry of a modrdn only when logoldattr names attributes)."""
    slapd_searched, _ = run(tmp_path / "slapd", start_slapd, old_attrs="")
    ours_searched, _ = run(tmp_path / "pyldapd", start_pyldapd, old_attrs="")
    expected, got = comparable(parse_ldif(slapd_searched)), comparable(parse_ldif(ours_searched))
    assert got == expected
    assert [bool(e.get("reqold")) for e in got if e.get("reqtype") in (["modrdn"], ["delete"])] == [
        False,
        False,
        True,
    ]
