"""Replication of cn=config itself (syncprov over olcDatabase={0}config, olcSyncrepl on it), with real processes.

Laid out as OpenLDAP's test049 does it: each server's slapd.d is made by `slapadd -n0` (pyldapd's `add -n0`) from
the same two entries, the provider gets the syncprov overlay on its config database, the consumer an olcSyncrepl
for searchbase cn=config; then schema, a database (with its own syncrepl and syncprov) and changes made over LDAP
on the provider's cn=config reach the consumer and take effect there: the database is opened and replicates.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import SLAPD, free_port, ldap_tool, start_process, wait_for

CONFIG_PW = "configsecret"
SUFFIX = "dc=example,dc=com"
MANAGER = f"cn=Manager,{SUFFIX}"
MANAGER_PW = "secret"
SCHEMA_DIR = Path("/etc/ldap/schema")
# cn=module for Debian's slapd (a modular build); pyldapd has back-mdb and syncprov built in
DEBIAN_MODULES = """
dn: cn=module,cn=config
objectClass: olcModuleList
cn: module
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: syncprov
"""


class Node:
    """One server (pyldapd or Debian's slapd) run from its own slapd.d, in its own folder (./db relative)."""

    def __init__(self, root: Path, name: str, kind: str) -> None:
        self.dir = root / name
        (self.dir / "db").mkdir(parents=True)
        (self.dir / "slapd.d").mkdir()
        self.kind, self.name = kind, name
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}/"
        self.server = None
        ldif = self.dir / "config.ldif"
        ldif.write_text("dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n"
                        "dn: olcDatabase={0}config,cn=config\nobjectClass: olcDatabaseConfig\n"
                        f"olcDatabase: {{0}}config\nolcRootPW: {CONFIG_PW}\n"
                        + (DEBIAN_MODULES if kind == "slapd" else ""))  # fmt: skip
        if kind == "slapd":
            argv = [SLAPD, "-T", "add", "-n0", "-F", str(self.dir / "slapd.d"), "-l", str(ldif)]
        else:
            argv = [sys.executable, "-m", "pyldapd.cli.main", "add", "-n0", "-F", str(self.dir / "slapd.d"), "-l",
                    str(ldif)]  # fmt: skip
        made = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr

    def start(self) -> None:
        if self.kind == "slapd":
            argv = [SLAPD, "-F", "slapd.d", "-h", self.url, "-d", "0"]
        else:
            argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", "slapd.d", "-h", self.url, "-d",
                    "stats,sync"]  # fmt: skip
        self.server = start_process(self.name, argv, self.port, "", self.dir, self.dir / "slapd.d")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def log(self) -> str:
        return self.server.log() if self.server is not None else ""

    def config(self, tool: str, ldif: str) -> None:
        result = ldap_tool(tool, "-x", "-H", self.url, "-D", "cn=config", "-w", CONFIG_PW, input=ldif)
        assert result.returncode == 0, f"{self.name}: {result.stderr}\n{self.log()}"

    def dump(
        self, base: str = "cn=config", *attrs: str, creds: tuple[str, str] = ("cn=config", CONFIG_PW)
    ) -> str:
        result = ldap_tool("ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.url, "-D", creds[0], "-w",
                           creds[1], "-b", base, "(objectClass=*)", *attrs)  # fmt: skip
        return result.stdout if result.returncode == 0 else f"rc={result.returncode} {result.stderr}"


@pytest.fixture
def made(tmp_path):
    nodes: list[Node] = []

    def make(name: str, kind: str = "pyldapd") -> Node:
        node = Node(tmp_path, name, kind)
        nodes.append(node)
        node.start()
        return node

    yield make
    for node in nodes:
        node.stop()


def syncprov_on(dn: str) -> str:
    return f"dn: olcOverlay=syncprov,{dn}\nobjectClass: olcOverlayConfig\nobjectClass: olcSyncProvConfig\n" \
           "olcOverlay: syncprov\n"  # fmt: skip


def config_syncrepl(rid: str, provider: Node) -> str:
    return (f"dn: olcDatabase={{0}}config,cn=config\nchangetype: modify\nadd: olcSyncRepl\n"
            f'olcSyncRepl: rid={rid} provider={provider.url} binddn="cn=config" bindmethod=simple '
            f'credentials={CONFIG_PW} searchbase="cn=config" type=refreshAndPersist retry="1 30" timeout=3\n'
            f"-\nadd: olcUpdateRef\nolcUpdateRef: {provider.url}\n")  # fmt: skip


def database(provider: Node) -> str:
    return (f"dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
            f"olcDatabase: {{1}}mdb\nolcSuffix: {SUFFIX}\nolcDbDirectory: ./db\nolcRootDN: {MANAGER}\n"
            f"olcRootPW: {MANAGER_PW}\nolcSyncRepl: rid=002 provider={provider.url} binddn=\"{MANAGER}\" "
            f"bindmethod=simple credentials={MANAGER_PW} searchbase=\"{SUFFIX}\" type=refreshAndPersist "
            f'retry="1 30" timeout=3\nolcUpdateRef: {provider.url}\n\n'
            + syncprov_on("olcDatabase={1}mdb,cn=config"))  # fmt: skip


DATA = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: cn=Barbara Jensen,{SUFFIX}
objectClass: inetOrgPerson
cn: Barbara Jensen
sn: Jensen
"""


def schema_includes(*names: str) -> str:
    return "\n".join(f"include: file://{SCHEMA_DIR / name}.ldif\n" for name in names)


def entry_of(dump: str, dn: str) -> str:
    for block in dump.split("\n\n"):
        if block.startswith(f"dn: {dn}\n"):
            return block
    return ""


def value_of(block: str, attr: str) -> str:
    match = re.search(rf"^{attr}: (.*)$", block, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else ""


def test_pyldapd_consumer_of_a_pyldapd_providers_cn_config(made):
    provider = made("provider")
    # the provider's own stanza names itself: ignored there (as slapd does), taken by the consumer's copy
    provider.config("ldapmodify", config_syncrepl("001", provider))
    provider.config("ldapadd", syncprov_on("olcDatabase={0}config,cn=config"))
    consumer = made("consumer")
    consumer.config("ldapmodify", config_syncrepl("001", provider))

    provider.config("ldapadd", schema_includes("core", "cosine", "inetorgperson"))
    provider.config("ldapadd", database(provider))
    wait_for(
        lambda: "olcDatabase={1}mdb,cn=config" in consumer.dump(), 30, what="the database at the consumer"
    )
    # the database replicated as configuration took effect: opened, and its own syncrepl stanza runs
    result = ldap_tool("ldapadd", "-x", "-H", provider.url, "-D", MANAGER, "-w", MANAGER_PW, input=DATA)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "cn=Barbara Jensen" in consumer.dump(SUFFIX, creds=(MANAGER, MANAGER_PW)), 30,
             what="the data at the consumer")  # fmt: skip
    # a shadow of its provider: writes to the replicated database are referred there (olcUpdateRef)
    refused = ldap_tool("ldapadd", "-x", "-H", consumer.url, "-D", MANAGER, "-w", MANAGER_PW,
                        input=f"dn: cn=Other,{SUFFIX}\nobjectClass: device\ncn: Other\n")  # fmt: skip
    assert refused.returncode == 10, refused.stderr
    # and so is its cn=config, now a shadow of the provider's (slapd's single shadow: even its rootdn is referred)
    refused = ldap_tool("ldapmodify", "-x", "-H", consumer.url, "-D", "cn=config", "-w", CONFIG_PW,
                        input="dn: olcDatabase={-1}frontend,cn=config\nchangetype: modify\nreplace: olcSizeLimit\n"
                              "olcSizeLimit: 7\n")  # fmt: skip
    assert refused.returncode == 10 and provider.url in refused.stderr, refused.stderr

    # a modify and a delete on the provider's cn=config are changes of the consumer's
    provider.config("ldapmodify", "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcDbIndex\n"
                                  "olcDbIndex: cn eq,sub\n")  # fmt: skip
    provider.config("ldapdelete", "olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config\n")
    wait_for(lambda: "olcOverlay={0}syncprov,olcDatabase={1}mdb" not in consumer.dump(), 30,
             what="the overlay's delete at the consumer")  # fmt: skip
    assert consumer.dump() == provider.dump()
    operational = ("entryUUID", "entryCSN", "modifiersName", "modifyTimestamp", "creatorsName")
    theirs, ours = provider.dump("cn=config", *operational), consumer.dump("cn=config", *operational)
    for dn in ("olcDatabase={1}mdb,cn=config", "cn={1}cosine,cn=schema,cn=config"):
        assert entry_of(ours, dn) == entry_of(theirs, dn) != "", dn
    assert value_of(entry_of(ours, "olcDatabase={1}mdb,cn=config"), "modifiersName") == "cn=config"

    # the consumer keeps its state (contextCSN on cn=config, as slapd) and resumes from it after a restart
    state = consumer.dump("cn=config", "contextCSN")
    assert value_of(entry_of(state, "cn=config"), "contextCSN")
    consumer.stop()
    provider.config("ldapmodify", "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcSizeLimit\n"
                                  "olcSizeLimit: 50\n")  # fmt: skip
    consumer.start()
    wait_for(lambda: "olcSizeLimit: 50" in consumer.dump(), 30, what="the change made while it was down")
    assert consumer.dump() == provider.dump()
    # a database deleted on the provider is closed on the consumer (slapd 2.5 deletes databases at run time)
    provider.config("ldapdelete", "olcDatabase={1}mdb,cn=config\n")
    wait_for(
        lambda: "olcDatabase={1}mdb" not in consumer.dump(), 30, what="the database's delete at the consumer"
    )
    gone = ldap_tool("ldapsearch", "-x", "-H", consumer.url, "-b", SUFFIX, "-s", "base")
    assert gone.returncode == 32, gone.stdout + gone.stderr
    assert consumer.dump() == provider.dump()
    for node in (provider, consumer):  # the slapd.d trees written along the way load in Debian's slapd
        node.stop()
        checked = subprocess.run([SLAPD, "-T", "test", "-u", "-F", "slapd.d"], cwd=node.dir, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        assert checked.returncode == 0, checked.stderr


def test_pyldapd_consumer_of_debian_slapds_cn_config(made):
    """slapd's cn=config replicates into pyldapd: its schema, database and overlay entries (with its module
    entry, which pyldapd reads) become pyldapd's configuration, and the database replicates."""
    provider = made("provider", "slapd")
    provider.config("ldapadd", syncprov_on("olcDatabase={0}config,cn=config"))
    consumer = made("consumer")
    consumer.config("ldapmodify", config_syncrepl("001", provider))
    provider.config("ldapadd", schema_includes("core", "cosine", "inetorgperson"))
    provider.config("ldapadd", database(provider))
    wait_for(lambda: "olcOverlay={0}syncprov,olcDatabase={1}mdb" in consumer.dump(), 30,
             what="the database at the consumer")  # fmt: skip
    result = ldap_tool("ldapadd", "-x", "-H", provider.url, "-D", MANAGER, "-w", MANAGER_PW, input=DATA)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "cn=Barbara Jensen" in consumer.dump(SUFFIX, creds=(MANAGER, MANAGER_PW)), 30,
             what="the data at the consumer")  # fmt: skip
    theirs, ours = provider.dump(), consumer.dump()
    for dn in ("cn={2}inetorgperson,cn=schema,cn=config", "olcDatabase={1}mdb,cn=config",
               "olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config", "cn=module{0},cn=config"):  # fmt: skip
        assert entry_of(ours, dn) == entry_of(theirs, dn) != "", dn


def test_two_pyldapd_providers_of_cn_config(made):
    """test050's layout on two nodes: olcServerID with each node's URL, syncprov and one olcSyncrepl per node on
    the config database (a node's own stanza ignored there), olcMultiProvider; a database added on one node
    replicates its data both ways, and a config change made on either node reaches the other."""
    first, second = made("first"), made("second")
    nodes = (first, second)
    for node in nodes:
        ids = "".join(f"olcServerID: {n} {other.url}\n" for n, other in enumerate(nodes, start=1))
        node.config("ldapmodify", f"dn: cn=config\nchangetype: modify\nreplace: olcServerID\n{ids}")
        node.config("ldapadd", syncprov_on("olcDatabase={0}config,cn=config"))
        stanzas = "".join(
            f'olcSyncRepl: rid=00{n} provider={other.url} binddn="cn=config" bindmethod=simple '
            f'credentials={CONFIG_PW} searchbase="cn=config" type=refreshAndPersist retry="1 30" timeout=3\n'
            for n, other in enumerate(nodes, start=1)
        )
        node.config("ldapmodify", "dn: olcDatabase={0}config,cn=config\nchangetype: modify\nadd: olcSyncRepl\n"
                                  f"{stanzas}-\nadd: olcMultiProvider\nolcMultiProvider: TRUE\n")  # fmt: skip
    first.config("ldapadd", schema_includes("core", "cosine", "inetorgperson"))
    data_stanzas = "".join(
        f'olcSyncRepl: rid=01{n} provider={other.url} binddn="{MANAGER}" bindmethod=simple '
        f'credentials={MANAGER_PW} searchbase="{SUFFIX}" type=refreshAndPersist retry="1 30" timeout=3\n'
        for n, other in enumerate(nodes, start=1)
    )
    first.config("ldapadd", f"dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\n"
                            f"objectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcSuffix: {SUFFIX}\n"
                            f"olcDbDirectory: ./db\nolcRootDN: {MANAGER}\nolcRootPW: {MANAGER_PW}\n{data_stanzas}"
                            "olcMultiProvider: TRUE\n\n" + syncprov_on("olcDatabase={1}mdb,cn=config"))  # fmt: skip
    wait_for(lambda: "olcOverlay={0}syncprov,olcDatabase={1}mdb" in second.dump(), 30,
             what="the database at the second node")  # fmt: skip
    # a config change made on the second node reaches the first
    second.config("ldapmodify", "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcDbIndex\n"
                                "olcDbIndex: cn eq\n")  # fmt: skip
    wait_for(lambda: "olcDbIndex: cn eq" in first.dump(), 30, what="the second node's change at the first")
    # the database replicates both ways
    added = ldap_tool("ldapadd", "-x", "-H", first.url, "-D", MANAGER, "-w", MANAGER_PW, input=DATA)
    assert added.returncode == 0, added.stderr
    wait_for(lambda: "cn=Barbara Jensen" in second.dump(SUFFIX, creds=(MANAGER, MANAGER_PW)), 30,
             what="the first node's data at the second")  # fmt: skip
    added = ldap_tool("ldapadd", "-x", "-H", second.url, "-D", MANAGER, "-w", MANAGER_PW,
                      input=f"dn: cn=Second,{SUFFIX}\nobjectClass: device\ncn: Second\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    wait_for(lambda: "cn=Second" in first.dump(SUFFIX, creds=(MANAGER, MANAGER_PW)), 30,
             what="the second node's data at the first")  # fmt: skip
    wait_for(lambda: first.dump() == second.dump(), 30, what="the same cn=config on both nodes")
    ids = first.dump("cn=config", "entryCSN")
    assert "#001#" in ids and "#002#" in ids  # changes made on each node, each with its server ID


def test_a_tree_without_entryuuids_gets_them_when_it_replicates(tmp_path):
    """`pyldapd init` writes cn=config entries without entryUUID; once the config database replicates (here:
    syncprov added on it), each entry gets one, written to slapd.d, so that consumers can tell entries apart."""
    done = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "init", "-F", str(tmp_path / "slapd.d"),
                           "--suffix", SUFFIX, "--rootdn", MANAGER, "--rootpw", MANAGER_PW, "--db-type", "mdb"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "slapd.d").rglob("*.ldif"))
    assert any("entryUUID" not in f.read_text() for f in files)
    port, socket_path = free_port(), str(tmp_path / "ldapi")
    ldapi = "ldapi://" + socket_path.replace("/", "%2F")
    argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", "slapd.d", "-h",
            f"ldap://127.0.0.1:{port}/ {ldapi}/", "-d", "stats"]  # fmt: skip
    server = start_process("init", argv, port, socket_path, tmp_path, tmp_path / "slapd.d")
    try:
        result = ldap_tool("ldapadd", "-Y", "EXTERNAL", "-Q", "-H", ldapi,
                           input=syncprov_on("olcDatabase={0}config,cn=config"))  # fmt: skip
        assert result.returncode == 0, result.stderr
        found = ldap_tool(
            "ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", ldapi, "-LLL", "-b", "cn=config", "entryUUID"
        )
        uuids = re.findall(r"^entryUUID: (.*)$", found.stdout, re.MULTILINE)
        assert len(uuids) == found.stdout.count("dn: ") == len(set(uuids)) > 5
    finally:
        server.stop()
    assert all("entryUUID" in f.read_text() for f in files)


def test_debian_slapd_consumer_of_a_pyldapd_providers_cn_config(made):
    """The other way round: Debian's slapd replicates pyldapd's cn=config (entries with pyldapd's entryUUIDs and
    entryCSNs, its module entry naming slapd's modules) and opens the database it receives."""
    provider = made("provider")
    provider.config("ldapadd", syncprov_on("olcDatabase={0}config,cn=config"))
    consumer = made("consumer", "slapd")
    consumer.config("ldapmodify", config_syncrepl("001", provider))
    provider.config("ldapadd", schema_includes("core", "cosine", "inetorgperson"))
    provider.config("ldapadd", database(provider))
    wait_for(lambda: "olcOverlay={0}syncprov,olcDatabase={1}mdb" in consumer.dump(), 30,
             what="the database at slapd")  # fmt: skip
    result = ldap_tool("ldapadd", "-x", "-H", provider.url, "-D", MANAGER, "-w", MANAGER_PW, input=DATA)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "cn=Barbara Jensen" in consumer.dump(SUFFIX, creds=(MANAGER, MANAGER_PW)), 30,
             what="the data at slapd")  # fmt: skip
    theirs, ours = provider.dump(), consumer.dump()
    for dn in ("cn={2}inetorgperson,cn=schema,cn=config", "olcDatabase={1}mdb,cn=config",
               "olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config"):  # fmt: skip
        # slapd shows a config entry's attributes in its own order (ldif-filter's `a` sorts them too)
        assert sorted(entry_of(ours, dn).splitlines()) == sorted(entry_of(theirs, dn).splitlines()) != [], dn
    uuids = [value_of(entry_of(node.dump("cn=config", "entryUUID"), "olcDatabase={1}mdb,cn=config"), "entryUUID")
             for node in (provider, consumer)]  # fmt: skip
    assert uuids[0] == uuids[1] != ""
