"""slapd.d round trips with Debian's slapd: trees pyldapd writes load in slapd, trees slaptest writes load in
pyldapd, and `-n` numbers databases as slapd does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.servers import ROOTDN, ROOTPW, SCHEMA_DIR, SLAPD, SUFFIX, free_port, ldap_tool, start_process

SLAPTEST = "/usr/sbin/slaptest"
SLAPCAT = "/usr/sbin/slapcat"


def conf_text(db: Path, modules: bool, monitor: bool = False) -> str:
    db.mkdir(parents=True, exist_ok=True)
    lines = [f"include {SCHEMA_DIR}/{name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")]
    if modules:
        lines += ["modulepath /usr/lib/ldap", "moduleload back_mdb", "moduleload syncprov"]
    if monitor:
        lines.append("database monitor")
    lines += ["database mdb", f'suffix "{SUFFIX}"', f'rootdn "{ROOTDN}"', f"rootpw {ROOTPW}", f"directory {db}",
              "index objectClass eq", "index cn,givenName approx", "overlay syncprov"]  # fmt: skip
    return "\n".join(lines) + "\n"


def pyldapd(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyldapd.cli.main", *args], capture_output=True, text=True,
                          input=input, timeout=120)  # fmt: skip


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)


def start(name: str, argv: list[str], workdir: Path):
    port = free_port()
    sock = str(workdir / f"{name}.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/"
    return start_process(name, [*argv, "-h", urls], port, sock, workdir, workdir)


def test_converted_tree_loads_in_slapd(tmp_path):
    """`pyldapd test -f -F` on a config with Debian's inetorgperson.schema and no moduleload: slapd reads and
    serves the tree (schema values intact, back_mdb and syncprov loaded by a cn=module entry)."""
    conf = tmp_path / "slapd.conf"
    conf.write_text(conf_text(tmp_path / "db", modules=False))
    tree = tmp_path / "slapd.d"
    tree.mkdir()
    pyldapd("test", "-f", str(conf), "-F", str(tree))
    assert (tree / "cn=config" / "cn=module{0}.ldif").exists()
    result = run(SLAPTEST, "-u", "-F", str(tree))
    assert result.returncode == 0, result.stderr
    server = start("slapd", [SLAPD, "-F", str(tree), "-d", "0"], tmp_path)
    try:
        add = ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW,
                        input=f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: x\ndc: example\n"
                        f"\ndn: cn=p,{SUFFIX}\nobjectClass: inetOrgPerson\ncn: p\nsn: p\n")  # fmt: skip
        assert add.returncode == 0, add.stderr + server.log()
    finally:
        server.stop()


def test_init_tree_loads_in_slapd_and_numbers_like_slapcat(tmp_path):
    tree = tmp_path / "slapd.d"
    result = pyldapd("init", "-F", str(tree), "--suffix", SUFFIX, "--rootdn", ROOTDN, "--rootpw", ROOTPW)
    assert result.returncode == 0, result.stderr
    check = run(SLAPTEST, "-u", "-F", str(tree))
    assert check.returncode == 0, check.stderr
    # the data database is {2}mdb in the tree, so -n 2 for slapcat and pyldapd; {1} is the monitor database
    dbs = sorted(p.name for p in (tree / "cn=config").glob("olcDatabase=*.ldif"))
    assert "olcDatabase={2}mdb.ldif" in dbs
    out = pyldapd("cat", "-F", str(tree), "-n", "2")
    assert out.returncode == 0 and f"dn: {SUFFIX}" in out.stdout, out.stderr
    for number in ("1", "3"):
        theirs = run(SLAPCAT, "-F", str(tree), "-n", number)
        ours = pyldapd("cat", "-F", str(tree), "-n", number)
        assert theirs.returncode != 0 and ours.returncode != 0
        assert theirs.stderr.strip().splitlines()[-1].partition(": ")[2] in ours.stderr, (
            theirs.stderr,
            ours.stderr,
        )


def test_slaptest_tree_loads_in_pyldapd(tmp_path):
    """A slapd.d written by slaptest (from a slapd.conf with moduleload lines and a monitor database) serves in
    pyldapd; -n 2 is its data database, as in the tree ({1}monitor, {2}mdb) and for slapcat."""
    conf = tmp_path / "slapd.conf"
    conf.write_text(conf_text(tmp_path / "db", modules=True, monitor=True))
    tree = tmp_path / "slapd.d"
    tree.mkdir()
    run(
        SLAPTEST, "-f", str(conf), "-F", str(tree)
    )  # converts, then fails to open the empty database read-only
    assert (tree / "cn=config" / "olcDatabase={2}mdb.ldif").exists()
    test = pyldapd("test", "-u", "-F", str(tree))
    assert test.returncode == 0, test.stderr
    add = pyldapd("add", "-F", str(tree), "-n", "2",
                  input=f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: x\ndc: example\n")  # fmt: skip
    assert add.returncode == 0, add.stderr
    server = start("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", str(tree), "-d", "0"],
                   tmp_path)  # fmt: skip
    try:
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", server.url, "-b", SUFFIX, "-s", "base", "1.1")
        assert found.returncode == 0 and f"dn: {SUFFIX}" in found.stdout, found.stderr + server.log()
    finally:
        server.stop()


def test_tree_changed_over_cn_config_still_loads_in_slapd(tmp_path):
    """An overlay added over cn=config to an `init` tree: the tree keeps loading in slapd (syncprov's module is
    added to cn=module{0}), and the overlay serves in pyldapd."""
    tree = tmp_path / "slapd.d"
    result = pyldapd("init", "-F", str(tree), "--suffix", SUFFIX, "--rootdn", ROOTDN, "--rootpw", ROOTPW)
    assert result.returncode == 0, result.stderr
    server = start("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", str(tree), "-d", "0"],
                   tmp_path)  # fmt: skip
    try:
        overlay = ("dn: olcOverlay=syncprov,olcDatabase={2}mdb,cn=config\nobjectClass: olcOverlayConfig\n"
                   "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\n")  # fmt: skip
        added = ldap_tool("ldapadd", "-Y", "EXTERNAL", "-Q", "-H", server.ldapi_url, input=overlay)
        assert added.returncode == 0, added.stderr + server.log()
    finally:
        server.stop()
    module = (tree / "cn=config" / "cn=module{0}.ldif").read_text()
    assert "olcModuleLoad: {0}back_mdb" in module and "olcModuleLoad: {1}syncprov" in module
    check = run(SLAPTEST, "-u", "-F", str(tree))
    assert check.returncode == 0, check.stderr


def test_slapd_d_with_missing_directory_refused_like_slapd(tmp_path):
    conf = tmp_path / "slapd.conf"
    conf.write_text(conf_text(tmp_path / "db", modules=True))
    tree = tmp_path / "slapd.d"
    tree.mkdir()
    run(SLAPTEST, "-f", str(conf), "-F", str(tree))
    (tmp_path / "db").rmdir()
    theirs = run(SLAPTEST, "-u", "-F", str(tree))
    assert theirs.returncode != 0
    words = "config error processing olcDatabase={1}mdb,cn=config: olcDbDirectory: value #0: invalid path: No such"
    assert words in theirs.stderr
    for command in (["test", "-u", "-F", str(tree)], ["cat", "-F", str(tree)],
                    ["serve", "-F", str(tree), "-h", f"ldap://127.0.0.1:{free_port()}/", "-d", "0"]):  # fmt: skip
        ours = pyldapd(*command)
        assert ours.returncode != 0 and words in ours.stderr and "Traceback" not in ours.stderr, ours.stderr
    assert not (tmp_path / "db").exists()
