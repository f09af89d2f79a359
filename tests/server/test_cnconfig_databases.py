"""cn=config's own rootdn (`database config` + `rootpw`, olcRootPW on olcDatabase={0}config) and databases added
and deleted over cn=config at run time, as OpenLDAP's test scripts do them (issue 10).

Differential: Debian's slapd and pyldapd each run from a slapd.d that slaptest made from the same slapd.conf
(only the database folders differ), and get the same requests through the real ldap-utils.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import (
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

CONFIGPW = "configpw"
CONFIG_ADMIN = ["-x", "-D", "cn=config", "-w", CONFIGPW]
ADMIN = ["-x", "-D", "cn=admin,dc=example,dc=com", "-w", "secret"]
ROOT = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"


class Node:
    """A server (slapd or pyldapd) run with -F from a slapd.d that slaptest made."""

    def __init__(self, root: Path, name: str, program: str) -> None:
        self.dir = root / name
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        self.name, self.program = name, program
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}/"
        self.socket = str(self.dir / "ldapi")
        self.ldapi = "ldapi://" + self.socket.replace("/", "%2F")
        self.slapd_d = self.dir / "slapd.d"
        self.slapd_d.mkdir()
        extra = (f"moduleload syncprov\ndatabase config\nrootpw {CONFIGPW}\n"
                 f'access to * by dn.exact="{ROOT}" manage by * break')  # fmt: skip
        conf = self.dir / "slapd.conf"
        conf.write_text(slapd_conf(self.dir / "db", modules=True, extra_global=extra))
        # slaptest writes the slapd.d, then fails to open the (empty) database read-only: expected
        subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(self.slapd_d)], capture_output=True,
                       timeout=60)  # fmt: skip
        assert (self.slapd_d / "cn=config.ldif").exists()
        self.server = None

    def start(self):
        urls = f"{self.url} {self.ldapi}/"
        if self.program == "slapd":
            argv = [SLAPD, "-F", str(self.slapd_d), "-h", urls, "-d", "0"]
        else:
            argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", str(self.slapd_d), "-h", urls,
                    "-d", "stats,sync"]  # fmt: skip
        self.server = start_process(self.name, argv, self.port, self.socket, self.dir, self.slapd_d)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def tool(self, tool: str, *args: str, input: str | None = None, auth=CONFIG_ADMIN, ldapi: bool = False):
        url = self.ldapi if ldapi else self.url
        return ldap_tool(tool, *auth, "-H", url, *args, input=input)

    def external(self, tool: str, *args: str, input: str | None = None):
        return self.tool(tool, *args, input=input, auth=["-Y", "EXTERNAL", "-Q"], ldapi=True)


@pytest.fixture
def nodes(tmp_path):
    made: list[Node] = []

    def make(name: str, program: str = "pyldapd") -> Node:
        node = Node(tmp_path, name, program)
        made.append(node)
        return node.start()

    yield make
    for node in made:
        node.stop()


def outcome(result: subprocess.CompletedProcess, node: Node) -> tuple[int, str]:
    return result.returncode, result.stderr.replace(str(node.dir), "DIR").strip()


def database_ldif(node: Node, suffix: str, folder: str, rdn: str = "olcDatabase=mdb", extra: str = "") -> str:
    path = node.dir / folder
    return (f"dn: {rdn},cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
            f"olcDatabase: {rdn.split('=', 1)[1]}\nolcSuffix: {suffix}\nolcDbDirectory: {path}\n"
            f"olcRootDN: cn=admin,{suffix}\nolcRootPW: secret\nolcDbIndex: objectClass eq\n"
            f"olcDbIndex: cn,uid eq\n{extra}")  # fmt: skip


def test_conversion_writes_config_rootdn_and_rootpw(tmp_path):
    """slapd.conf's `database config` takes rootpw (rootdn defaults to cn=config, as slaptest writes it; the
    password base64-encoded, as slapd always writes olcRootPW)."""
    conf = tmp_path / "slapd.conf"
    (tmp_path / "db").mkdir(exist_ok=True)
    conf.write_text(slapd_conf(tmp_path / "db", extra_global="database config\nrootpw configpw\n"))
    result = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-f", str(conf), "-F",
                             str(tmp_path / "slapd.d")], capture_output=True, text=True, timeout=60)  # fmt: skip
    text = (tmp_path / "slapd.d/cn=config/olcDatabase={0}config.ldif").read_text()
    assert "olcRootDN: cn=config\n" in text and "olcRootPW:: Y29uZmlncHc=\n" in text, result.stderr
    assert not text.endswith("\n\n"), text  # slaptest's files end after their last line
    conf.write_text(slapd_conf(tmp_path / "db", extra_global="database config\nrootdn cn=boss,cn=config\n"
                               "rootpw configpw\nsuffix cn=x\n"))  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "test", "-f", str(conf)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0 and "suffix" in result.stderr


def test_config_rootdn_bind_search_modify_alike_with_slapd(nodes):
    """A simple bind as cn=config with olcRootPW, over ldap://, manages cn=config on both servers."""
    theirs, ours = nodes("slapd", "slapd"), nodes("py")

    def both(tool: str, *args: str, input: str | None = None, auth=CONFIG_ADMIN):
        return [outcome(n.tool(tool, *args, input=input, auth=auth), n) for n in (theirs, ours)]

    def read(base: str, *args: str) -> list[str]:
        return [
            n.tool("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", base, *args).stdout
            for n in (theirs, ours)
        ]

    wrong = ["-x", "-D", "cn=config", "-w", "wrong"]
    assert both("ldapwhoami", auth=wrong) == [(49, "ldap_bind: Invalid credentials (49)")] * 2
    assert both("ldapwhoami") == [(0, "")] * 2
    a, b = read("cn=config", "-s", "base", "dn")
    assert a == b == "dn: cn=config\n\n"
    a, b = read("cn=config", "-s", "one", "(olcDatabase=*)", "dn")
    assert a == b and "dn: olcDatabase={1}mdb,cn=config" in a
    a, b = read("olcDatabase={0}config,cn=config", "-s", "base", "olcRootDN")
    assert a == b and "olcRootDN: cn=config" in a
    # anonymous and other identities see nothing of cn=config
    assert both("ldapsearch", "-b", "cn=config", "-s", "base", auth=["-x"])[0][0] == 32
    assert both("ldapsearch", "-b", "cn=config", "-s", "base", auth=ADMIN) == [(32, "")] * 2
    modify = "dn: cn=config\nchangetype: modify\nreplace: olcLogLevel\nolcLogLevel: stats\n"
    assert both("ldapmodify", input=modify) == [(0, "")] * 2
    new_password = ("dn: olcDatabase={0}config,cn=config\nchangetype: modify\nreplace: olcRootPW\n"
                    "olcRootPW: newpw\n")  # fmt: skip
    assert both("ldapmodify", input=new_password) == [(0, "")] * 2
    assert both("ldapwhoami") == [(49, "ldap_bind: Invalid credentials (49)")] * 2
    assert both("ldapwhoami", auth=["-x", "-D", "cn=config", "-w", "newpw"]) == [(0, "")] * 2
    # the new password is in the slapd.d of both (slapd writes it in base64)
    for node in (theirs, ours):
        text = (node.slapd_d / "cn=config/olcDatabase={0}config.ldif").read_text()
        assert "olcRootPW: newpw\n" in text or "olcRootPW:: bmV3cHc=\n" in text
    # a hashed olcRootPW (slappasswd's {SSHA}) works the same
    hashed = subprocess.run(
        ["/usr/sbin/slappasswd", "-s", "hashedpw"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    assert hashed.startswith("{SSHA}")
    new_password = new_password.replace("olcRootPW: newpw", f"olcRootPW: {hashed}")
    assert (
        both("ldapmodify", input=new_password, auth=["-x", "-D", "cn=config", "-w", "newpw"]) == [(0, "")] * 2
    )
    assert both("ldapwhoami", auth=["-x", "-D", "cn=config", "-w", "hashedpw"]) == [(0, "")] * 2
    assert both("ldapwhoami", auth=["-x", "-D", "cn=config", "-w", "newpw"])[1][0] == 49


def test_add_database_serve_restart_and_replicate(nodes):
    """A database added over ldapi EXTERNAL and one over the cn=config rootdn: entries added and found, the
    slapd.d keeps them over a restart; syncprov added on one, a consumer of it on another server."""
    node = nodes("py")
    (node.dir / "db2").mkdir()
    (node.dir / "db3").mkdir()
    result = node.external("ldapadd", input=database_ldif(node, "dc=two,dc=com", "db2"))
    assert result.returncode == 0, result.stderr
    result = node.tool("ldapadd", input=database_ldif(node, "dc=three,dc=com", "db3"))
    assert result.returncode == 0, result.stderr
    for number, name in ((2, "two"), (3, "three")):
        path = node.slapd_d / f"cn=config/olcDatabase={{{number}}}mdb.ldif"
        assert f"olcSuffix: dc={name},dc=com" in path.read_text()
        top = (
            f"dn: dc={name},dc=com\nobjectClass: dcObject\nobjectClass: organization\no: {name}\ndc: {name}\n"
        )
        person = f"dn: cn=p,dc={name},dc=com\nobjectClass: person\ncn: p\nsn: s\n"
        result = node.tool("ldapadd", input=top + "\n" + person, auth=["-x", "-D", f"cn=admin,dc={name},dc=com",
                                                                       "-w", "secret"])  # fmt: skip
        assert result.returncode == 0, result.stderr
    search = node.tool("ldapsearch", "-LLL", "-b", "", "-s", "base", "namingContexts", auth=["-x"])
    assert search.stdout.split("namingContexts: ")[1:] == [
        f"{SUFFIX}\n",
        "dc=two,dc=com\n",
        "dc=three,dc=com\n\n",
    ]
    node.stop()
    node.start()
    found = node.tool("ldapsearch", "-LLL", "-b", "dc=three,dc=com", "(cn=p)", "dn", auth=["-x"])
    assert found.stdout == "dn: cn=p,dc=three,dc=com\n\n", found.stderr
    # syncprov on the added database, then a consumer database added on a second server
    overlay = ("dn: olcOverlay=syncprov,olcDatabase={3}mdb,cn=config\nobjectClass: olcOverlayConfig\n"
               "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\n")  # fmt: skip
    assert node.tool("ldapadd", input=overlay).returncode == 0
    consumer = nodes("consumer")
    (consumer.dir / "db3").mkdir()
    syncrepl = (f"olcSyncrepl: rid=003 provider={node.url} bindmethod=simple binddn=\"cn=admin,dc=three,dc=com\" "
                "credentials=secret searchbase=\"dc=three,dc=com\" type=refreshAndPersist retry=\"1 +\"\n")  # fmt: skip
    result = consumer.tool("ldapadd", input=database_ldif(consumer, "dc=three,dc=com", "db3", extra=syncrepl))
    assert result.returncode == 0, result.stderr

    def replicated(dn: str) -> bool:
        out = consumer.tool("ldapsearch", "-LLL", "-b", dn, "-s", "base", "dn", auth=["-x"])
        return out.returncode == 0 and f"dn: {dn}" in out.stdout

    wait_for(lambda: replicated("cn=p,dc=three,dc=com"), 30, what="the refresh of the added consumer")
    more = "dn: cn=q,dc=three,dc=com\nobjectClass: person\ncn: q\nsn: s\n"
    assert (
        node.tool(
            "ldapadd", input=more, auth=["-x", "-D", "cn=admin,dc=three,dc=com", "-w", "secret"]
        ).returncode
        == 0
    )
    wait_for(lambda: replicated("cn=q,dc=three,dc=com"), 30, what="a change through the persistent search")


def test_database_changes_alike_with_slapd(nodes):
    """Refusals (missing folder, suffix already served, no suffix, no olcDbDirectory, unknown type, {0}) get
    slapd's result and text; an insertion at {1} and a deletion renumber the databases as slapd does."""
    theirs, ours = nodes("slapd", "slapd"), nodes("py")
    for node in (theirs, ours):
        for folder in ("db2", "db3"):
            (node.dir / folder).mkdir()

    def both(tool: str, make, *args: str) -> list[tuple[int, str]]:
        return [outcome(n.tool(tool, *args, input=make(n)), n) for n in (theirs, ours)]

    def layout() -> list[str]:
        return [n.tool("ldapsearch", "-LLL", "-b", "cn=config", "-s", "one", "(olcDatabase=*)", "olcSuffix").stdout
                for n in (theirs, ours)]  # fmt: skip

    refused = [
        lambda n: database_ldif(n, "dc=two,dc=com", "nodir"),
        lambda n: database_ldif(n, SUFFIX, "db2"),
        lambda n: database_ldif(n, f"ou=sub,{SUFFIX}", "db2"),
        lambda n: database_ldif(n, "dc=two,dc=com", "db2").replace("olcSuffix: dc=two,dc=com\n", ""),
        lambda n: (
            database_ldif(n, "dc=two,dc=com", "db2")
            .replace("olcSuffix: dc=two,dc=com\n", "")
            .replace("olcRootDN: cn=admin,dc=two,dc=com\nolcRootPW: secret\n", "")
        ),
        lambda n: database_ldif(n, "dc=two,dc=com", "db2").replace(
            "olcRootDN: cn=admin,dc=two", "olcRootDN: cn=x,dc=y"
        ),
        lambda n: database_ldif(n, "dc=two,dc=com", "db2").replace(f"olcDbDirectory: {n.dir}/db2\n", ""),
        lambda n: database_ldif(n, "dc=two,dc=com", "db2", rdn="olcDatabase={0}mdb"),
        lambda n: (
            "dn: olcDatabase=ldap,cn=config\nobjectClass: olcDatabaseConfig\nolcDatabase: ldap\n"
            "olcSuffix: dc=five,dc=com\n"
        ),
    ]
    for make in refused:
        a, b = both("ldapadd", make)
        assert a[0] != 0 and a == b, make(ours)
    # one difference: slapd 2.5.13 opens a second database on a folder in use; pyldapd refuses (LMDB must not
    # open one environment twice in a process), naming the last setting as slapd's failed startups do
    for rdn in ("olcDatabase=mdb", "olcDatabase={1}mdb"):
        refused_here = outcome(
            ours.tool("ldapadd", input=database_ldif(ours, "dc=two,dc=com", "db", rdn=rdn)), ours
        )
        assert refused_here[0] == 80 and refused_here[1].endswith(
            "additional info: <olcDbIndex> failed startup"
        )
    a, b = both("ldapdelete", lambda n: "", "olcDatabase={0}config,cn=config")
    assert a[0] == 53 and a == b
    assert both("ldapadd", lambda n: database_ldif(n, "dc=two,dc=com", "db2")) == [(0, "")] * 2
    before = layout()
    assert before[0] == before[1]
    # an insertion at {1}: the others move up one
    a, b = both("ldapadd", lambda n: database_ldif(n, "dc=three,dc=com", "db3", rdn="olcDatabase={1}mdb"))
    assert a[0] == 0 and b[0] == 0
    after = layout()
    assert after[0] == after[1] and "dn: olcDatabase={1}mdb,cn=config\nolcSuffix: dc=three,dc=com" in after[1]
    # a deletion: the ones after it move down one; the database is no longer served
    a, b = both("ldapdelete", lambda n: "", "olcDatabase={1}mdb,cn=config")
    assert a == b == (0, "")
    final = layout()
    assert final[0] == final[1] and "dc=three" not in final[1]
    assert not (ours.slapd_d / "cn=config/olcDatabase={3}mdb.ldif").exists()
    for node in (theirs, ours):
        contexts = node.tool(
            "ldapsearch", "-LLL", "-b", "", "-s", "base", "namingContexts", auth=["-x"]
        ).stdout
        assert "dc=three,dc=com" not in contexts and "dc=two,dc=com" in contexts


def test_slapd_conf_serves_cn_config_in_memory_alike_with_slapd(tmp_path):
    """slapd -f with `database config` + `rootpw`, as OpenLDAP's test scripts start it: cn=config is served
    from the file, the rootdn binds, a database is added at run time (numbered after the file's), in memory."""
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("py", start_pyldapd)):
            folder = tmp_path / name
            (folder / "db").mkdir(parents=True, exist_ok=True)
            (folder / "db2").mkdir()
            extra = f"database config\nrootpw {CONFIGPW}\n"
            servers.append((start(folder, slapd_conf(folder / "db", modules=True, extra_global=extra), name=name),
                            folder))  # fmt: skip
        results = []
        for server, folder in servers:
            steps = [ldap_tool("ldapwhoami", *CONFIG_ADMIN, "-H", server.url)]
            ldif = (f"dn: olcDatabase=mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
                    f"olcDatabase: mdb\nolcSuffix: dc=two,dc=com\nolcDbDirectory: {folder / 'db2'}\n"
                    "olcRootDN: cn=admin,dc=two,dc=com\nolcRootPW: secret\n")  # fmt: skip
            steps.append(ldap_tool("ldapadd", *CONFIG_ADMIN, "-H", server.url, input=ldif))
            top = "dn: dc=two,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: two\ndc: two\n"
            steps.append(ldap_tool("ldapadd", "-x", "-D", "cn=admin,dc=two,dc=com", "-w", "secret", "-H",
                                   server.url, input=top))  # fmt: skip
            steps.append(ldap_tool("ldapsearch", *CONFIG_ADMIN, "-H", server.url, "-LLL", "-b", "cn=config", "-s",
                                   "one", "(olcDatabase=*)", "olcSuffix"))  # fmt: skip
            steps.append(ldap_tool("ldapsearch", "-x", "-H", server.url, "-LLL", "-b", "dc=two,dc=com", "dn"))
            results.append([(r.returncode, r.stdout, r.stderr) for r in steps])
        assert results[0] == results[1]
        assert [r[0] for r in results[1]] == [0] * 5
        assert "dn: olcDatabase={2}mdb,cn=config\nolcSuffix: dc=two,dc=com" in results[1][3][1]
        assert not list(tmp_path.glob("py/**/*.ldif"))
    finally:
        for server, _ in servers:
            server.stop()


def test_config_rootdn_defaults_to_cn_config(tmp_path):
    """A slapd.d made by `slapadd -n0` whose olcDatabase={0}config has olcRootPW and no olcRootDN: the rootdn is
    cn=config (slapd's default), on slapd and pyldapd alike."""
    outcomes = []
    for name, program in (("slapd", "/usr/sbin/slapadd"), ("py", None)):
        folder = tmp_path / name
        (folder / "db").mkdir(parents=True, exist_ok=True)
        (folder / "slapd.d").mkdir()
        ldif = (f"dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n"
                "dn: cn=module,cn=config\nobjectClass: olcModuleList\ncn: module\nolcModuleLoad: back_mdb\n\n"
                f"dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\nolcDatabase: {{0}}config\n"
                f"olcRootPW: {CONFIGPW}\n\n"
                "dn: olcDatabase=mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
                f"olcDatabase: mdb\nolcSuffix: {SUFFIX}\nolcDbDirectory: {folder / 'db'}\n")  # fmt: skip
        (folder / "config.ldif").write_text(ldif)
        tool = [program] if program else [sys.executable, "-m", "pyldapd.cli.main", "add"]
        made = subprocess.run([*tool, "-n0", "-F", str(folder / "slapd.d"), "-l", str(folder / "config.ldif")],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert made.returncode == 0, made.stderr
        port = free_port()
        sock = str(folder / "ldapi")
        urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/"
        argv = ([SLAPD, "-F", str(folder / "slapd.d"), "-h", urls, "-d", "0"] if program else
                [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", str(folder / "slapd.d"), "-h", urls, "-d", "0"])  # fmt: skip
        server = start_process(name, argv, port, sock, folder, folder / "slapd.d")
        try:
            url = f"ldap://127.0.0.1:{port}"
            found = [ldap_tool("ldapwhoami", *CONFIG_ADMIN, "-H", url),
                     ldap_tool("ldapsearch", *CONFIG_ADMIN, "-H", url, "-LLL", "-b", "cn=config", "-s", "base", "dn")]  # fmt: skip
            outcomes.append([(r.returncode, r.stdout) for r in found])
        finally:
            server.stop()
    assert outcomes[0] == outcomes[1] == [(0, "dn:cn=config\n"), (0, "dn: cn=config\n\n")]
