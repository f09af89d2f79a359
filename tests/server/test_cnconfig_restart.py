"""What cn=config accepts at run time loads again at restart, and what slapd refuses pyldapd refuses (schema
without the definitions it builds on); -d's debug level stays when olcLogLevel changes (slapd's two levels).

Differential: Debian's slapd and pyldapd each run from a slapd.d that slaptest made from one slapd.conf, get the
same changes through ldap-utils, are restarted, and are compared.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.servers import SLAPD, free_port, ldap_tool, start_process, wait_for

CONFIGPW = "configpw"
CONFIG_ADMIN = ["-x", "-D", "cn=config", "-w", CONFIGPW]
SCHEMA = Path("/etc/ldap/schema")


class Node:
    """slapd or pyldapd run with -F from a slapd.d that slaptest made from `conf` (+ `database config`)."""

    def __init__(self, root: Path, name: str, program: str, conf: str, debug: str = "stats") -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.name, self.program, self.debug = name, program, debug
        self.slapd_d = self.dir / "slapd.d"
        self.slapd_d.mkdir()
        (self.dir / "slapd.conf").write_text(conf + f"database config\nrootpw {CONFIGPW}\n")
        made = subprocess.run(["/usr/sbin/slaptest", "-f", "slapd.conf", "-F", "slapd.d"], cwd=self.dir,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert (self.slapd_d / "cn=config.ldif").exists(), made.stderr
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}/"
        self.server = None

    def start(self, env: dict | None = None) -> Node:
        if self.program == "slapd":
            argv = [SLAPD, "-F", "slapd.d", "-h", self.url, "-d", self.debug]
        else:
            argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", "slapd.d", "-h", self.url, "-d",
                    self.debug]  # fmt: skip
        self.server = start_process(self.name, argv, self.port, "", self.dir, self.slapd_d, env=env)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def tool(self, tool: str, *args: str, input: str | None = None, auth=CONFIG_ADMIN):
        return ldap_tool(tool, *auth, "-H", self.url, *args, input=input)

    def outcome(self, tool: str, ldif: str) -> tuple[int, str]:
        result = self.tool(tool, input=ldif)
        return result.returncode, result.stderr.replace(str(self.dir), "DIR").strip()

    def layout(self) -> str:
        """The names in cn=config (databases, overlays, schema) and the databases' suffixes."""
        found = self.tool("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", "cn=config",
                          "(|(olcDatabase=*)(olcOverlay=*)(objectClass=olcSchemaConfig))", "olcSuffix",
                          "olcDbIndex")  # fmt: skip
        assert found.returncode == 0, found.stderr
        return "\n\n".join(sorted(found.stdout.strip().split("\n\n")))

    def contexts(self) -> str:
        return self.tool("ldapsearch", "-LLL", "-b", "", "-s", "base", "namingContexts", auth=["-x"]).stdout


def pair(tmp_path: Path, conf: str, debug: str = "stats") -> list[Node]:
    return [Node(tmp_path, name, name, conf, debug) for name in ("slapd", "pyldapd")]


def test_schema_without_what_it_builds_on_refused_alike_with_slapd(tmp_path):
    """cosine.ldif over cn=config without core: slapd refuses it (80, its text); so does pyldapd, which used to
    accept it (its running schema had core) and then could not start again. With core first both take it, and
    both start again from what they wrote."""
    nodes = pair(tmp_path, "modulepath /usr/lib/ldap\nmoduleload back_mdb\n")
    try:
        for node in nodes:
            node.start()
        cosine = (SCHEMA / "cosine.ldif").read_text()
        refused = [node.outcome("ldapadd", cosine) for node in nodes]
        assert refused[0] == refused[1]
        assert refused[0][0] == 80 and refused[0][1].endswith('additional info: olcObjectClasses: ObjectClass '
                                                               'not found: "person"')  # fmt: skip
        for name in ("core", "cosine", "inetorgperson"):
            assert [node.outcome("ldapadd", (SCHEMA / f"{name}.ldif").read_text())[0] for node in nodes] == [
                0,
                0,
            ]
        before = [node.layout() for node in nodes]
        assert before[0] == before[1] and "cn={2}inetorgperson" in before[0]
        for node in nodes:
            node.stop()
            node.start()
        assert [node.layout() for node in nodes] == before
        for node in nodes:  # the tree pyldapd wrote loads in slapd too
            tested = subprocess.run([SLAPD, "-T", "test", "-u", "-F", "slapd.d"], cwd=node.dir,
                                    capture_output=True, text=True, timeout=60)  # fmt: skip
            assert tested.returncode == 0, tested.stderr
    finally:
        for node in nodes:
            node.stop()


DATABASE = """dn: olcDatabase={{{n}}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{{n}}}mdb
olcSuffix: dc={name},dc=com
olcDbDirectory: ./{name}
olcRootDN: cn=admin,dc={name},dc=com
olcRootPW: secret
olcDbIndex: objectClass eq
"""


def test_schema_database_and_overlay_changes_load_again_alike_with_slapd(tmp_path):
    """Schema, databases (added, inserted at {1}, deleted in the middle), an overlay and index changes made over
    cn=config: after a restart both servers serve the same layout they served before it."""
    conf = "".join(f"include {SCHEMA}/{n}.schema\n" for n in ("core", "cosine", "inetorgperson"))
    conf += "modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload syncprov\n"
    nodes = pair(tmp_path, conf)
    try:
        for node in nodes:
            for name in ("one", "two", "three"):
                (node.dir / name).mkdir()
            node.start()
        local = ("dn: cn=local,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: local\n"
                 "olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.1 NAME 'badgeNumber' EQUALITY caseIgnoreMatch "
                 "SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )\n"
                 "olcObjectClasses: ( 1.3.6.1.4.1.99999.2.1 NAME 'badgeHolder' AUXILIARY MAY badgeNumber )\n")  # fmt: skip
        steps = [
            ("ldapadd", local),
            ("ldapadd", DATABASE.format(n=1, name="one")),
            ("ldapadd", DATABASE.format(n=2, name="two")),
            ("ldapadd", DATABASE.format(n=1, name="three")),  # inserted: one and two move up
            (
                "ldapadd",
                "dn: olcOverlay=syncprov,olcDatabase={3}mdb,cn=config\nobjectClass: olcOverlayConfig\n"
                "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\n",
            ),  # fmt: skip
            (
                "ldapmodify",
                "dn: olcDatabase={3}mdb,cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: cn eq\n",
            ),  # fmt: skip
            ("ldapdelete", "olcDatabase={2}mdb,cn=config\n"),  # one goes; two (with its overlay) moves down
        ]
        for tool, ldif in steps:
            assert [node.outcome(tool, ldif) for node in nodes] == [(0, "")] * 2, ldif
        before = [(node.layout(), node.contexts()) for node in nodes]
        assert before[0] == before[1]
        assert "dn: olcOverlay={0}syncprov,olcDatabase={2}mdb,cn=config" in before[0][0]
        assert "dc=one" not in before[0][1] and "dc=three" in before[0][1]
        for node in nodes:
            node.stop()
            node.start()
        assert [(node.layout(), node.contexts()) for node in nodes] == before
        badge = ("dn: dc=two,dc=com\nobjectClass: dcObject\nobjectClass: organization\nobjectClass: badgeHolder\n"
                 "dc: two\no: two\nbadgeNumber: 7\n")  # fmt: skip
        for node in nodes:
            added = node.tool(
                "ldapadd", input=badge, auth=["-x", "-D", "cn=admin,dc=two,dc=com", "-w", "secret"]
            )
            assert added.returncode == 0, added.stderr
    finally:
        for node in nodes:
            node.stop()


class SyslogSink:
    """A unix datagram socket playing the syslog daemon (PYLDAPD_SYSLOG_SOCKET, pyldapd's seam for /dev/log)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.received: list[str] = []
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        while not self.closed.is_set():
            try:
                self.received.append(self.sock.recv(1 << 20).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def count(self, needle: str) -> int:
        return sum(needle in m for m in list(self.received))

    def close(self) -> None:
        self.closed.set()
        self.reader.join(5)
        self.sock.close()


def test_debug_level_stays_when_olcloglevel_changes_alike_with_slapd(tmp_path):
    """-d stats: stderr shows each search before and after olcLogLevel is set to none (slapd keeps -d's debug
    level; olcLogLevel is its syslog level). pyldapd's syslog lines follow olcLogLevel: on at stats, off at
    none, back at stats."""
    nodes = pair(tmp_path, "modulepath /usr/lib/ldap\nmoduleload back_mdb\n", debug="stats")
    sink = SyslogSink(str(tmp_path / "syslog.sock"))
    try:
        nodes[0].start()
        nodes[1].start(env=dict(os.environ, PYLDAPD_SYSLOG_SOCKET=sink.sock.getsockname()))

        def search(node: Node, tag: str) -> None:
            node.tool("ldapsearch", "-b", "", "-s", "base", f"(cn={tag})", auth=["-x"])

        def level(words: str) -> None:
            ldif = f"dn: cn=config\nchangetype: modify\nreplace: olcLogLevel\nolcLogLevel: {words}\n"
            assert [node.outcome("ldapmodify", ldif) for node in nodes] == [(0, "")] * 2

        level("stats")  # slaptest wrote olcLogLevel: 0 (no loglevel in the slapd.conf)
        for node in nodes:
            search(node, "first")
        wait_for(lambda: sink.count("(cn=first)") == 1, 20, what="the stats line on syslog")
        level("none")
        for node in nodes:
            search(node, "second")
        for node in nodes:  # -d stats: on stderr still, as slapd's
            wait_for(lambda node=node: "(cn=second)" in node.server.log(), 20, what=f"{node.name}'s stderr")
        level("stats")
        search(nodes[1], "third")
        wait_for(lambda: sink.count("(cn=third)") == 1, 20, what="the stats line on syslog again")
        time.sleep(0.5)  # the datagram of a line sent before "third" would be there by now
        assert sink.count("(cn=second)") == 0
        assert nodes[1].server.log().count("(cn=third)") == 1  # each line once on stderr, not twice
    finally:
        for node in nodes:
            node.stop()
        sink.close()


def test_f_and_f_convert_into_an_empty_slapd_d_alike_with_slapd(tmp_path):
    """slapd -f FILE -F DIR (OpenLDAP's test051 starts slapd so): FILE's configuration is converted into DIR and
    served from it (a change over cn=config lands in DIR); a DIR that is not empty, or not there, is refused."""
    conf = f"include {SCHEMA}/core.schema\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
    conf += f"database config\nrootpw {CONFIGPW}\n"
    for name in ("slapd", "pyldapd"):
        folder = tmp_path / name
        (folder / "slapd.d").mkdir(parents=True)
        (folder / "slapd.conf").write_text(conf)
        port = free_port()
        url = f"ldap://127.0.0.1:{port}/"
        program = [SLAPD] if name == "slapd" else [sys.executable, "-m", "pyldapd.cli.main", "serve"]
        argv = [*program, "-f", "slapd.conf", "-F", "slapd.d", "-h", url, "-d", "stats"]
        server = start_process(name, argv, port, "", folder, folder / "slapd.d")
        try:
            assert (folder / "slapd.d" / "cn=config.ldif").exists()
            changed = ldap_tool("ldapmodify", *CONFIG_ADMIN, "-H", url,
                                input="dn: cn=config\nchangetype: modify\nreplace: olcSizeLimit\nolcSizeLimit: 42\n")  # fmt: skip
            assert changed.returncode == 0, changed.stderr
        finally:
            server.stop()
        assert "olcSizeLimit: 42" in (folder / "slapd.d" / "cn=config.ldif").read_text()
        for directory in ("slapd.d", "nowhere"):  # not empty now; not there
            again = [*program, "-f", "slapd.conf", "-F", directory, "-h", url, "-d", "stats"]
            refused = subprocess.run(again, cwd=folder, capture_output=True, text=True, timeout=60)
            assert refused.returncode != 0, (name, directory, refused.stdout + refused.stderr)
        assert not (folder / "nowhere").exists()
