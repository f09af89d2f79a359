"""Replication of cn=config: databases renumbered at the provider (one deleted in the middle, one inserted at
{1}) leave its consumer in the provider's state, as two Debian slapd do; conflicts met by cn=config's own
consumers are journaled (cn=Monitor's cn=Conflicts, `pyldapd status --conflicts`) as the data consumers' are.

Each server runs from a slapd.d that slaptest made from one slapd.conf; changes go through ldap-utils.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.servers import SLAPD, free_port, ldap_tool, start_process, wait_for

CONFIG_PW = "configsecret"
BASE_CONF = ("include /etc/ldap/schema/core.schema\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
             "moduleload syncprov\nmoduleload back_monitor\n")  # fmt: skip


class Node:
    def __init__(self, root: Path, name: str, program: str) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.name, self.program = name, program
        for n in range(1, 5):
            (self.dir / f"db{n}").mkdir()
        (self.dir / "slapd.d").mkdir()
        (self.dir / "slapd.conf").write_text(BASE_CONF + f"database config\nrootpw {CONFIG_PW}\n"
                                             "database monitor\naccess to * by * read\n")  # fmt: skip
        made = subprocess.run(["/usr/sbin/slaptest", "-f", "slapd.conf", "-F", "slapd.d"], cwd=self.dir,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert made.returncode == 0, made.stderr
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}/"
        self.server = None

    def start(self) -> None:
        if self.program == "slapd":
            argv = [SLAPD, "-F", "slapd.d", "-h", self.url, "-d", "0"]
        else:
            argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", "slapd.d", "-h", self.url, "-d",
                    "stats,sync"]  # fmt: skip
        self.server = start_process(self.name, argv, self.port, "", self.dir, self.dir / "slapd.d")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def config(self, tool: str, ldif: str) -> None:
        result = ldap_tool(tool, "-x", "-H", self.url, "-D", "cn=config", "-w", CONFIG_PW, input=ldif)
        assert result.returncode == 0, (
            f"{self.name}: {result.stderr}\n{self.server.log() if self.server else ''}"
        )

    def databases(self) -> str:
        """Each olcDatabase={n} entry after the config database: its name, suffix and entryUUID."""
        found = ldap_tool("ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.url, "-D", "cn=config",
                          "-w", CONFIG_PW, "-b", "cn=config", "-s", "one", "(olcSuffix=*)", "olcSuffix",
                          "entryUUID")  # fmt: skip
        return found.stdout if found.returncode == 0 else f"rc={found.returncode}"

    def contexts(self) -> list[str]:
        found = ldap_tool(
            "ldapsearch", "-x", "-LLL", "-H", self.url, "-b", "", "-s", "base", "namingContexts"
        )
        return sorted(
            line.split(": ", 1)[1] for line in found.stdout.splitlines() if line.startswith("naming")
        )


def database(n: int) -> str:
    return (f"dn: olcDatabase=mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
            f"olcDatabase: mdb\nolcSuffix: dc=d{n},dc=com\nolcDbDirectory: ./db{n}\n"
            f"olcRootDN: cn=m,dc=d{n},dc=com\nolcRootPW: x\n")  # fmt: skip


SYNCPROV = ("dn: olcOverlay=syncprov,olcDatabase={0}config,cn=config\nobjectClass: olcOverlayConfig\n"
            "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\n")  # fmt: skip


def stanza(rid: int, provider: Node) -> str:
    return (
        f'olcSyncRepl: rid={rid:03d} provider={provider.url} binddn="cn=config" bindmethod=simple '
        f'credentials={CONFIG_PW} searchbase="cn=config" type=refreshAndPersist retry="1 +" timeout=3\n'
    )


def provider_and_consumer(root: Path, program: str) -> tuple[Node, Node]:
    provider, consumer = Node(root / program, "provider", program), Node(root / program, "consumer", program)
    provider.start()
    provider.config("ldapadd", SYNCPROV)
    for n in (1, 2, 3):
        provider.config("ldapadd", database(n))
    consumer.start()
    consumer.config("ldapmodify", "dn: olcDatabase={0}config,cn=config\nchangetype: modify\nadd: olcSyncRepl\n"
                    + stanza(1, provider))  # fmt: skip
    wait_for(lambda: consumer.databases() == provider.databases(), 30, what=f"{program}'s consumer in step")
    return provider, consumer


def test_database_deleted_in_the_middle_leaves_the_consumer_as_slapds(tmp_path):
    """olcDatabase={3}mdb deleted at the provider while {4} exists ({1} is the monitor database): the provider
    renumbers {4} to {3}; slapd's
    consumer gets the delete alone and renumbers its own tree the same way (same entryUUIDs under the same
    names, dc=d2 no longer served). pyldapd's consumer ends the same, also when it was down at the time (slapd
    2.5.13's consumer never learns of that delete), and an insertion at {2} moves the others up there too."""
    nodes: list[Node] = []
    try:
        ends = {}
        for program in ("slapd", "pyldapd"):
            provider, consumer = provider_and_consumer(tmp_path, program)
            nodes += [provider, consumer]
            provider.config("ldapdelete", "olcDatabase={3}mdb,cn=config\n")
            wait_for(lambda c=consumer: "dc=d2" not in c.databases(), 30, what=f"{program}: the delete")
            assert consumer.databases() == provider.databases()
            ends[program] = (consumer.databases().count("dn: "), consumer.contexts())
        assert ends["slapd"] == ends["pyldapd"] == (2, ["dc=d1,dc=com", "dc=d3,dc=com"])
        provider, consumer = nodes[2], nodes[3]
        # pyldapd's consumer down while {2} (dc=d1) is deleted: it catches up at its refresh
        consumer.stop()
        provider.config("ldapdelete", "olcDatabase={2}mdb,cn=config\n")
        consumer.start()
        wait_for(
            lambda: consumer.databases() == provider.databases(), 30, what="the refresh after the delete"
        )
        assert consumer.contexts() == ["dc=d3,dc=com"]
        # an insertion at {2}: the database there moves up to {3} on both
        provider.config("ldapadd", database(4).replace("olcDatabase=mdb", "olcDatabase={2}mdb"))
        wait_for(
            lambda: consumer.databases() == provider.databases(), 30, what="the insertion at the consumer"
        )
        assert "dn: olcDatabase={3}mdb,cn=config\nolcSuffix: dc=d3,dc=com" in consumer.databases()
        assert consumer.contexts() == ["dc=d3,dc=com", "dc=d4,dc=com"]
        # what the consumer wrote loads again
        consumer.stop()
        consumer.start()
        assert consumer.databases() == provider.databases()
    finally:
        for node in nodes:
            node.stop()


def test_config_consumers_journal_their_conflicts(tmp_path):
    """Two pyldapd nodes, each a provider and a consumer of the other's cn=config (olcMultiProvider). The same
    setting changed on each while the other is down: when they meet, the older change loses, and the node whose
    change was overridden records it in its journal, as the data consumers do (cn=Conflicts under cn=Database
    0, listed by `pyldapd status --conflicts --base cn=config`)."""
    first, second = Node(tmp_path, "first", "pyldapd"), Node(tmp_path, "second", "pyldapd")
    nodes = (first, second)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            ids = "".join(f"olcServerID: {n} {other.url}\n" for n, other in enumerate(nodes, start=1))
            node.config("ldapmodify", f"dn: cn=config\nchangetype: modify\nreplace: olcServerID\n{ids}")
            node.config("ldapadd", SYNCPROV)
            stanzas = "".join(stanza(n, other) for n, other in enumerate(nodes, start=1))
            node.config("ldapmodify", "dn: olcDatabase={0}config,cn=config\nchangetype: modify\nadd: olcSyncRepl\n"
                                      f"{stanzas}-\nadd: olcMultiProvider\nolcMultiProvider: TRUE\n")  # fmt: skip

        def setting(node: Node) -> str:
            found = ldap_tool("ldapsearch", "-x", "-LLL", "-H", node.url, "-D", "cn=config", "-w", CONFIG_PW,
                              "-b", "cn=config", "-s", "base", "olcSizeLimit", "entryUUID")  # fmt: skip
            return found.stdout

        wait_for(lambda: setting(first) == setting(second), 30, what="one cn=config entry on both nodes")
        second.stop()
        first.config(
            "ldapmodify", "dn: cn=config\nchangetype: modify\nreplace: olcSizeLimit\nolcSizeLimit: 10\n"
        )
        first.stop()
        second.start()
        second.config(
            "ldapmodify", "dn: cn=config\nchangetype: modify\nreplace: olcSizeLimit\nolcSizeLimit: 20\n"
        )
        first.start()
        wait_for(lambda: "olcSizeLimit: 20" in setting(first) and setting(first) == setting(second), 30,
                 what="the newer setting on both nodes")  # fmt: skip

        def journal() -> str:
            found = ldap_tool("ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", first.url, "-b",
                              "cn=Conflicts,cn=Database 0,cn=Databases,cn=Monitor", "(pyldapdConflictKind=modify)",
                              "pyldapdConflictDN", "pyldapdWinnerServerID", "pyldapdLoserServerID")  # fmt: skip
            return found.stdout

        # the first node's change, overridden there by the newer one of the second
        wait_for(lambda: "pyldapdConflictDN: cn=config\npyldapdWinnerServerID: 2\npyldapdLoserServerID: 1"
                 in journal(), 30, what="the conflict in the journal")  # fmt: skip
        listed = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "status", "--conflicts", "--base",
                                 "cn=config", "-D", "cn=config", "-w", CONFIG_PW, first.url],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert re.search(r"conflicts: [1-9]\d* recorded since start", listed.stdout), listed.stdout
        assert re.search(r"modify cn=config: winner \S+ \(sid 002\), loser \S+ \(sid 001\)", listed.stdout)
    finally:
        for node in nodes:
            node.stop()
