"""pyldapd under slapd's names, against Debian's slapd: the programs test suites written for slapd call (slapadd -n0
-F building a slapd.d from a cn=config LDIF, `slapd -T<tool>`, `slapd -F DIR -h URLS -d 0`), the root DSE they
read, and the answer to a sync search on an empty database. Same input to both, same outcome expected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ldap
import pytest
from ldap.controls import RequestControl, ResponseControl

from pyldapd.model.ldif import LDIFContent, parse_ldif
from tests.servers import (
    ROOTDN,
    ROOTPW,
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

SLAPADD, SLAPCAT, SLAPTEST = "/usr/sbin/slapadd", "/usr/sbin/slapcat", "/usr/sbin/slaptest"
LIMIT = 120  # seconds, every program run
OPERATIONAL = {"structuralobjectclass", "entryuuid", "creatorsname", "createtimestamp", "entrycsn",
               "modifiersname", "modifytimestamp"}  # fmt: skip
# entries slapd makes by itself with the first cn=config entry, filled with its built-in schema and defaults
GENERATED = {"cn=config/cn=schema.ldif", "cn=config/olcDatabase={-1}frontend.ldif",
             "cn=config/olcDatabase={0}config.ldif"}  # fmt: skip


def config_ldif(db: Path) -> str:
    """python-ldap's slapdtest template (syncrepl test's flavour), on this test's folders."""
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcServerID: 0x2a
olcLogLevel: stats stats2
olcAuthzRegexp: {{0}}"gidnumber={os.getgid()}\\+uidnumber={os.getuid()},cn=peercred,cn=external,cn=auth" "{ROOTDN}"

dn: cn=module,cn=config
objectClass: olcModuleList
cn: module
olcModuleLoad: back_mdb
olcModuleLoad: syncprov

dn: olcDatabase=mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: mdb
olcSuffix: {SUFFIX}
olcRootDN: {ROOTDN}
olcRootPW: {ROOTPW}
olcDbDirectory: {db}
olcDbIndex: objectclass,entryCSN,entryUUID eq

dn: olcOverlay=syncprov,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: syncprov
olcSpCheckpoint: 100 10
olcSpSessionlog: 100
"""


def run(*argv: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=LIMIT)


@pytest.fixture(scope="module")
def links(tmp_path_factory) -> Path:
    """slapd, slapadd, ... linked to pyldapd's slapd-compatible program, as `pyldapd compat-links` makes them."""
    folder = tmp_path_factory.mktemp("links")
    made = run(sys.executable, "-m", "pyldapd.cli.main", "compat-links", str(folder))
    assert made.returncode == 0, made.stderr
    for name in ("slapd", "slapadd", "slapcat", "slapindex", "slaptest", "slappasswd"):
        assert os.path.islink(folder / name)
    return folder


def build_config(tmp_path: Path, name: str, slapd_program: str, slapadd_program: str) -> tuple[Path, Path]:
    """(slapd.d, db folder) made as slapdtest makes them: `slapd -Tadd -n0` with the config from standard input
    (python-ldap's main branch), then `slapadd -n0 -l` of schema LDIF files (3.4.8)."""
    confdir, db = tmp_path / name / "slapd.d", tmp_path / name / "db"
    confdir.mkdir(parents=True)
    db.mkdir()
    made = run(slapd_program, "-Tadd", "-F", str(confdir), "-n0", input=config_ldif(db))
    assert made.returncode == 0, made.stdout + made.stderr
    for schema in ("core", "cosine", "inetorgperson"):
        made = run(slapadd_program, "-F", str(confdir), "-n0", "-l", f"{SCHEMA_DIR}/{schema}.ldif")
        assert made.returncode == 0, made.stdout + made.stderr
    return confdir, db


def slapd_d_contents(confdir: Path, db: Path) -> dict[str, dict[str, list[bytes]]]:
    """file (relative path) -> its entry's user attributes; entries slapd generates: only their presence."""
    out = {}
    for path in sorted(confdir.rglob("*.ldif")):
        relative = str(path.relative_to(confdir))
        records = [r for r in parse_ldif(path.read_text()) if isinstance(r, LDIFContent)]
        assert len(records) == 1, relative
        attributes = {name.lower(): sorted(v.replace(str(db).encode(), b"DB") for v in values)
                      for name, values in records[0].attributes if name.lower() not in OPERATIONAL}  # fmt: skip
        out[relative] = {} if relative in GENERATED else attributes
    return out


def root_dse(url: str) -> dict[str, list[str]]:
    conn = ldap.initialize(url)
    try:
        [(dn, attrs)] = conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["*", "+"])
    finally:
        conn.unbind_s()
    return {name.lower(): sorted(v.decode() for v in values) for name, values in attrs.items()}


# attributes whose values depend on the features of each server (controls, extensions, SASL mechanisms)
FEATURE_LISTS = {"supportedcontrol", "supportedextension", "supportedfeatures", "supportedsaslmechanisms"}


def comparable(dse: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: ([] if name in FEATURE_LISTS else values) for name, values in dse.items()}


def start_from_slapd_d(program: str, workdir: Path, confdir: Path, name: str):
    port = free_port()
    ldapi = str(workdir / f"{name}.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi.replace('/', '%2F')}/"
    return start_process(name, [program, "-F", str(confdir), "-h", urls, "-d", "0"], port, ldapi, workdir,
                         confdir)  # fmt: skip


def test_slapadd_n0_builds_the_slapd_d_that_slapd_builds(tmp_path, links):
    theirs, theirs_db = build_config(tmp_path, "slapd", SLAPD, SLAPADD)
    ours, ours_db = build_config(tmp_path, "pyldapd", str(links / "slapd"), str(links / "slapadd"))
    expected = slapd_d_contents(theirs, theirs_db)
    got = slapd_d_contents(ours, ours_db)
    assert sorted(got) == sorted(
        expected
    )  # same files: numbered RDNs ({1}mdb, module{0}, {0}core, {0}syncprov)
    for relative in expected:
        assert got[relative] == expected[relative], relative
    # each loads in the other's config check, and in slapdtest's own (`slapd -Ttest -F DIR -u -v -d config`)
    for program, confdir in ((SLAPTEST, ours), (str(links / "slaptest"), theirs)):
        checked = run(program, "-F", str(confdir), "-u")
        assert checked.returncode == 0, checked.stderr
    for program, confdir in ((SLAPD, ours), (str(links / "slapd"), theirs), (str(links / "slapd"), ours)):
        checked = run(program, "-Ttest", "-F", str(confdir), "-u", "-v", "-d", "config")
        assert checked.returncode == 0, checked.stderr
        assert "config file testing succeeded" in checked.stdout + checked.stderr


@pytest.mark.parametrize("case", ["schema before cn=config", "schema loaded twice", "undefined attribute"])
def test_slapadd_n0_refuses_what_slapd_refuses(tmp_path, links, case):
    outcomes = []
    for name, slapadd in (("slapd", SLAPADD), ("pyldapd", str(links / "slapadd"))):
        confdir = tmp_path / name / "slapd.d"
        confdir.mkdir(parents=True)
        if case == "schema loaded twice":
            assert run(slapadd, "-F", str(confdir), "-n0", input=config_ldif(tmp_path / name)).returncode == 0
            assert run(slapadd, "-F", str(confdir), "-n0", "-l", f"{SCHEMA_DIR}/core.ldif").returncode == 0
        before = sorted(str(p.relative_to(confdir)) for p in confdir.rglob("*.ldif"))
        if case == "undefined attribute":
            result = run(slapadd, "-F", str(confdir), "-n0", input="dn: cn=config\nobjectClass: olcGlobal\n"
                         "cn: config\nolcFooBar: 1\n")  # fmt: skip
        else:
            result = run(slapadd, "-F", str(confdir), "-n0", "-l", f"{SCHEMA_DIR}/core.ldif")
        after = sorted(str(p.relative_to(confdir)) for p in confdir.rglob("*.ldif"))
        outcomes.append((result.returncode, after == before))
        if case == "schema loaded twice":
            assert "Duplicate attributeType" in result.stderr, result.stderr
    assert outcomes[0] == outcomes[1] == (1, True)


def test_slapd_program_names_and_tool_flag(tmp_path, links):
    """`slapd -Tadd` is slapadd, `slapd -T cat` is slapcat (data database by -b), an unknown tool is refused
    with slapd's words; the data both load reads back the same."""
    dumps = []
    for name, slapd, slapcat in (
        ("slapd", SLAPD, SLAPCAT),
        ("pyldapd", str(links / "slapd"), str(links / "slapcat")),
    ):
        confdir, _db = build_config(tmp_path, name, slapd, os.path.join(os.path.dirname(slapd), "slapadd"))
        data = f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
        added = run(slapd, "-T", "add", "-F", str(confdir), "-b", SUFFIX, input=data)
        assert added.returncode == 0, added.stderr
        by_flag = run(slapd, "-Tcat", "-F", str(confdir), "-b", SUFFIX)
        by_name = run(slapcat, "-F", str(confdir), "-b", SUFFIX)
        assert by_flag.returncode == by_name.returncode == 0, by_flag.stderr + by_name.stderr
        assert by_flag.stdout == by_name.stdout
        records = [r for r in parse_ldif(by_name.stdout) if isinstance(r, LDIFContent)]
        dumps.append({r.dn.lower(): {n.lower(): sorted(v) for n, v in r.attributes if n.lower() not in OPERATIONAL}
                      for r in records})  # fmt: skip
        bogus = run(slapd, "-Tbogus")
        assert bogus.returncode == 1
        assert 'program name "slapbogus" unrecognized; aborting...' in bogus.stderr
    assert dumps[0] == dumps[1]


def test_root_dse_with_cn_config_is_slapds(tmp_path, links):
    theirs, _ = build_config(tmp_path, "slapd", SLAPD, SLAPADD)
    ours, _ = build_config(tmp_path, "pyldapd", str(links / "slapd"), str(links / "slapadd"))
    slapd = start_from_slapd_d(SLAPD, tmp_path / "slapd", theirs, "slapd")
    pyldapd = start_from_slapd_d(str(links / "slapd"), tmp_path / "pyldapd", ours, "pyldapd")
    try:
        expected, got = root_dse(slapd.url), root_dse(pyldapd.url)
    finally:
        slapd.stop()
        pyldapd.stop()
    assert expected["configcontext"] == got["configcontext"] == ["cn=config"]
    assert comparable(got) == comparable(expected)


@pytest.mark.parametrize("monitor", [False, True])
def test_root_dse_with_slapd_conf_is_slapds(tmp_path, monitor):
    extra = "database monitor\n" if monitor else ""
    theirs = tmp_path / "slapd-db"
    ours = tmp_path / "pyldapd-db"
    theirs.mkdir()
    ours.mkdir()
    slapd = start_slapd(tmp_path / "slapd", slapd_conf(theirs, modules=True,
                        extra_global="moduleload back_monitor" if monitor else "") + extra)  # fmt: skip
    pyldapd = start_pyldapd(tmp_path / "pyldapd", slapd_conf(ours) + extra)
    try:
        expected, got = root_dse(slapd.url), root_dse(pyldapd.url)
    finally:
        slapd.stop()
        pyldapd.stop()
    assert ("monitorcontext" in got) == ("monitorcontext" in expected) == monitor
    assert got["configcontext"] == ["cn=config"] and "vendorname" not in got  # slapd always has cn=config
    assert comparable(got) == comparable(expected)


SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
SYNC_DONE = "1.3.6.1.4.1.4203.1.9.1.3"


class RawResponse(ResponseControl):
    """A response control kept as it came (its encoded value)."""

    def decodeControlValue(self, encodedControlValue: bytes) -> None:  # noqa: N802, N803 (python-ldap's names)
        self.encodedControlValue = encodedControlValue


def sync_search(url: str, mode: int, wait: float = 10) -> tuple[str, list[tuple[str, bytes]]]:
    """A sync search as the rootdn; (outcome, response controls). mode 1 refreshOnly, 3 refreshAndPersist."""
    conn = ldap.initialize(url)
    conn.simple_bind_s(ROOTDN, ROOTPW)
    request = RequestControl(SYNC_REQUEST, True, bytes([0x30, 0x03, 0x0A, 0x01, mode]))  # SEQUENCE { mode }
    try:
        msgid = conn.search_ext(SUFFIX, ldap.SCOPE_SUBTREE, "(objectClass=*)", serverctrls=[request])
        try:
            # raw controls whatever python-ldap knows: importing ldap.syncrepl elsewhere in the same pytest run
            # registers a decoder for syncDone, which then has no encodedControlValue
            _type, _data, _msgid, controls = conn.result3(msgid, all=1, timeout=wait,
                                                          resp_ctrl_classes={SYNC_DONE: RawResponse})  # fmt: skip
        except ldap.NO_SUCH_OBJECT:
            return "noSuchObject", []
        except ldap.TIMEOUT:
            return "still open", []
        return "success", [(c.controlType, c.encodedControlValue) for c in controls]
    finally:
        conn.unbind_s()


def test_sync_search_on_an_empty_database_is_answered_as_slapd_does(tmp_path):
    theirs = tmp_path / "slapd-db"
    ours = tmp_path / "pyldapd-db"
    theirs.mkdir()
    ours.mkdir()
    provider = "index entryCSN,entryUUID eq\noverlay syncprov"
    slapd = start_slapd(tmp_path / "slapd", slapd_conf(theirs, modules=True, extra_global="moduleload syncprov",
                                                       extra_db=provider))  # fmt: skip
    pyldapd = start_pyldapd(tmp_path / "pyldapd", slapd_conf(ours, extra_db=provider))
    try:
        for mode in (3, 1):
            expected, got = sync_search(slapd.url, mode), sync_search(pyldapd.url, mode)
            assert got == expected, mode
        assert sync_search(pyldapd.url, 3) == ("noSuchObject", [])
        # once the suffix exists, refreshAndPersist stays open on both
        ldif = f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
        for server in (slapd, pyldapd):
            added = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=ldif)
            assert added.returncode == 0, added.stderr
            assert sync_search(server.url, 3, wait=2) == ("still open", [])
    finally:
        slapd.stop()
        pyldapd.stop()


def test_slapcat_n0_dumps_the_config_as_slapcat_does(tmp_path, links):
    confdir, _db = build_config(tmp_path, "slapd", SLAPD, SLAPADD)
    # (slapcat -n0 -s crashes in 2.5.13: not compared)
    for extra in (["-n0"], ["-b", "cn=config"], ["-n0", "-a", "(objectClass=olcDatabaseConfig)"]):
        expected = run(SLAPCAT, "-F", str(confdir), *extra)
        got = run(str(links / "slapcat"), "-F", str(confdir), *extra)
        assert expected.returncode == got.returncode == 0, got.stderr

        def records(text: str) -> list[tuple[str, list[tuple[str, list[bytes]]]]]:
            return [(r.dn, r.attributes) for r in parse_ldif(text) if isinstance(r, LDIFContent)]

        assert records(got.stdout) == records(expected.stdout), extra
        assert len(records(got.stdout)) >= 3
