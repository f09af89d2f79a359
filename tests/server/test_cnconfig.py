"""cn=config at run time over ldapi:/// with SASL EXTERNAL, exactly as the seed how-to does it.

Two pyldapd servers made by `pyldapd init --db-type hdb` get the how-to's own LDIF (addresses filled in, the `-`
separator the printed page lost restored, nothing else changed) through the real ldapadd/ldapmodify, and then its
test section: testuser1 added on the first is found on the second, testuser2 the other way round.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyldapd.config import cnconfig
from tests.servers import SLAPD, free_port, ldap_tool, slapd_conf, start_process, wait_for

ADMIN = ["-x", "-D", "cn=admin,dc=example,dc=com", "-w", "admin_password"]
SYNCPROV_LDIF = """dn: olcOverlay=syncprov,olcDatabase={2}hdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: syncprov
olcSyncProvCheckpoint: 100 10
olcSyncProvSessionlog: 100
"""
MMR_LDIF = """dn: cn=config
changetype: modify
add: olcServerID
olcServerID: {own_id} {own_url}

dn: olcDatabase={{2}}hdb,cn=config
changetype: modify
add: olcSyncRepl
olcSyncRepl: rid={rid}
  provider={other_url}
  bindmethod=simple
  binddn="cn=admin,dc=example,dc=com"
  credentials=admin_password
  searchbase="dc=example,dc=com"
  scope=sub
  schemachecking=on
  type=refreshAndPersist
  retry="60 +"
-
add: olcMirrorMode
olcMirrorMode: TRUE
"""
TESTUSER = """dn: uid=testuser{n},ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
objectClass: top
cn: Test User {n}
sn: User
uid: testuser{n}
uidNumber: 100{n}
gidNumber: 100{n}
homeDirectory: /home/testuser{n}
"""


def pyldapd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyldapd.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)  # fmt: skip


class Node:
    def __init__(self, root: Path, name: str, db_type: str = "hdb") -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}/"
        self.socket = str(self.dir / "ldapi")
        self.ldapi = "ldapi://" + self.socket.replace("/", "%2F")
        self.name = name
        result = pyldapd("init", "-F", str(self.dir / "slapd.d"), "--suffix", "dc=example,dc=com", "--rootdn",
                         "cn=admin,dc=example,dc=com", "--rootpw", "admin_password", "--db-type", db_type)  # fmt: skip
        assert result.returncode == 0, result.stderr
        self.server = None

    def start(self):
        argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", str(self.dir / "slapd.d"), "-h",
                f"{self.url} {self.ldapi}/", "-d", "stats,sync"]  # fmt: skip
        self.server = start_process(self.name, argv, self.port, self.socket, self.dir, self.dir / "slapd.d")
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def external(self, tool: str, ldif: str) -> subprocess.CompletedProcess:
        return ldap_tool(tool, "-Y", "EXTERNAL", "-Q", "-H", self.ldapi, input=ldif)


@pytest.fixture
def nodes(tmp_path):
    made: list[Node] = []

    def make(name: str, db_type: str = "hdb") -> Node:
        node = Node(tmp_path, name, db_type)
        made.append(node)
        node.start()
        return node

    yield make
    for node in made:
        node.stop()


def test_init_serve_and_access(nodes):
    node = nodes("a")
    result = ldap_tool(
        "ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", node.ldapi, "-LLL", "-b", "cn=config", "dn"
    )
    assert result.returncode == 0, result.stderr
    dns = [line[4:] for line in result.stdout.splitlines() if line.startswith("dn: ")]
    for dn in ("cn=config", "cn=schema,cn=config", "cn={0}core,cn=schema,cn=config", "olcDatabase={-1}frontend,cn=config",
               "olcDatabase={0}config,cn=config", "olcDatabase={1}monitor,cn=config", "olcDatabase={2}hdb,cn=config"):  # fmt: skip
        assert dn in dns
    # only root over ldapi may read or change cn=config
    assert ldap_tool("ldapsearch", "-x", "-H", node.url, "-b", "cn=config", "-s", "base").returncode == 32
    assert ldap_tool("ldapsearch", *ADMIN, "-H", node.url, "-b", "cn=config", "-s", "base").returncode == 32
    change = "dn: cn=config\nchangetype: modify\nreplace: olcLogLevel\nolcLogLevel: stats\n"
    assert ldap_tool("ldapmodify", *ADMIN, "-H", node.url, input=change).returncode == 50
    assert (
        ldap_tool(
            "ldapsearch", "-x", "-H", node.url, "-LLL", "-b", "dc=example,dc=com", "-s", "base"
        ).returncode
        == 0
    )


def test_seed_howto_on_two_pyldapd_servers(nodes):
    first, second = nodes("first"), nodes("second")
    for own, other, own_id, rid in ((first, second, 1, "002"), (second, first, 2, "001")):
        # Step 1 / Step 2 of the how-to: the syncprov overlay, then the multi-master settings
        result = own.external("ldapadd", SYNCPROV_LDIF)
        assert result.returncode == 0, result.stderr
        result = own.external("ldapmodify", MMR_LDIF.format(own_id=own_id, own_url=own.url, rid=rid,
                                                            other_url=other.url))  # fmt: skip
        assert result.returncode == 0, result.stderr
    people = "dn: ou=People,dc=example,dc=com\nobjectClass: organizationalUnit\nou: People\n"
    assert ldap_tool("ldapadd", *ADMIN, "-H", first.url, input=people).returncode == 0
    # 5. Testing: an entry added on the first master is found on the second, and the other way round
    assert ldap_tool("ldapadd", *ADMIN, "-H", first.url, input=TESTUSER.format(n=1)).returncode == 0

    def found(node: Node, uid: str) -> bool:
        result = ldap_tool(
            "ldapsearch", "-x", "-H", node.url, "-LLL", "-b", "dc=example,dc=com", f"(uid={uid})"
        )
        return f"dn: uid={uid},ou=People,dc=example,dc=com" in result.stdout

    wait_for(lambda: found(second, "testuser1"), 30, what="testuser1 on the second master")
    assert ldap_tool("ldapadd", *ADMIN, "-H", second.url, input=TESTUSER.format(n=2)).returncode == 0
    # the first master's consumer met the second before it had syncprov: like slapd it waits for its 60 s retry
    wait_for(lambda: found(first, "testuser2"), 90, what="testuser2 on the first master")
    # the configuration survives a restart, stored under the real attribute names
    first.stop()
    first.start()
    result = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", first.ldapi, "-LLL", "-b", "cn=config",
                       "(|(olcServerID=*)(olcSyncrepl=*)(olcSpCheckpoint=*))", "olcServerID", "olcSyncrepl",
                       "olcMultiProvider", "olcSpCheckpoint", "olcSpSessionlog")  # fmt: skip
    text = result.stdout.replace("\n ", "")
    assert f"olcServerID: 1 {first.url}" in text and "olcSyncrepl: {0}rid=002" in text
    assert (
        "olcMultiProvider: TRUE" in text
        and "olcSpCheckpoint: 100 10" in text
        and "olcSpSessionlog: 100" in text
    )
    # its consumer, started from the restored configuration, picks up what the second master gets
    assert ldap_tool("ldapadd", *ADMIN, "-H", second.url, input=TESTUSER.format(n=3)).returncode == 0
    wait_for(lambda: found(first, "testuser3"), 30, what="testuser3 on the restarted first master")


def test_invalid_change_is_refused_and_changes_nothing(nodes):
    node = nodes("a")
    path = node.dir / "slapd.d" / "cn=config" / "olcDatabase={2}hdb.ldif"
    before = path.read_text()
    bad = (
        "dn: olcDatabase={2}hdb,cn=config\nchangetype: modify\nadd: olcSyncrepl\nolcSyncrepl: rid=1 bogus=x\n"
    )
    result = node.external("ldapmodify", bad)
    assert result.returncode == 80, result.stderr
    undefined = "dn: cn=config\nchangetype: modify\nadd: olcNoSuchThing\nolcNoSuchThing: 1\n"
    assert node.external("ldapmodify", undefined).returncode == 17
    assert path.read_text() == before
    good = "dn: olcDatabase={2}hdb,cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: mail eq\n"
    assert node.external("ldapmodify", good).returncode == 0
    assert "olcDbIndex: mail eq" in path.read_text()


def start_slapd_with_cn_config(tmp_path: Path):
    """Debian's slapd running from a slapd.d that slaptest made, root allowed to manage cn=config over ldapi."""
    conf = tmp_path / "slapd.conf"
    (tmp_path / "slapd-db").mkdir()
    root = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"
    config_db = f'moduleload syncprov\ndatabase config\naccess to * by dn.exact="{root}" manage by * break'
    text = slapd_conf(tmp_path / "slapd-db", modules=True, extra_global=config_db)
    conf.write_text(text.replace("rootpw secret", "rootpw admin_password"))  # the how-to's password
    (tmp_path / "slapd.d").mkdir()
    # slaptest writes the slapd.d, then fails to open the (still empty) database read-only: that is expected
    result = subprocess.run(["/usr/sbin/slaptest", "-f", str(conf), "-F", str(tmp_path / "slapd.d")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (tmp_path / "slapd.d" / "cn=config.ldif").exists(), result.stderr
    port = free_port()
    sock = str(tmp_path / "slapd.sock")
    url = f"ldap://127.0.0.1:{port}/"
    slapd = start_process("slapd", [SLAPD, "-F", str(tmp_path / "slapd.d"), "-h",
                                    f"{url} ldapi://{sock.replace('/', '%2F')}/", "-d", "0"],
                          port, sock, tmp_path, conf)  # fmt: skip
    return slapd, "ldapi://" + sock.replace("/", "%2F"), url


def test_seed_howto_with_pyldapd_and_slapd(tmp_path, nodes):
    """The how-to on one pyldapd and one Debian slapd (slapd gets the attribute names it knows)."""
    first = nodes("first", "mdb")
    slapd, slapd_ldapi, slapd_url = start_slapd_with_cn_config(tmp_path)
    try:
        real_names = SYNCPROV_LDIF.replace("olcSyncProvCheckpoint", "olcSpCheckpoint").replace(
            "olcSyncProvSessionlog", "olcSpSessionlog")  # fmt: skip
        slapd_steps = [
            ("ldapadd", real_names.replace("{2}hdb", "{1}mdb")),
            ("ldapmodify", MMR_LDIF.format(own_id=2, own_url=slapd_url, rid="001", other_url=first.url)
             .replace("{2}hdb", "{1}mdb")),
        ]  # fmt: skip
        pyldapd_steps = [
            ("ldapadd", SYNCPROV_LDIF.replace("{2}hdb", "{2}mdb")),
            ("ldapmodify", MMR_LDIF.format(own_id=1, own_url=first.url, rid="002", other_url=slapd_url)
             .replace("{2}hdb", "{2}mdb")),
        ]  # fmt: skip
        for tool, ldif in pyldapd_steps:
            result = first.external(tool, ldif)
            assert result.returncode == 0, result.stderr
        for tool, ldif in slapd_steps:
            result = ldap_tool(tool, "-Y", "EXTERNAL", "-Q", "-H", slapd_ldapi, input=ldif)
            assert result.returncode == 0, result.stderr
        people = "dn: ou=People,dc=example,dc=com\nobjectClass: organizationalUnit\nou: People\n"
        assert ldap_tool("ldapadd", *ADMIN, "-H", first.url, input=people).returncode == 0
        assert ldap_tool("ldapadd", *ADMIN, "-H", first.url, input=TESTUSER.format(n=1)).returncode == 0

        def found(url: str, uid: str) -> bool:
            result = ldap_tool(
                "ldapsearch", "-x", "-H", url, "-LLL", "-b", "dc=example,dc=com", f"(uid={uid})"
            )
            return f"dn: uid={uid},ou=People,dc=example,dc=com" in result.stdout

        wait_for(lambda: found(slapd_url, "testuser1"), 90, what="testuser1 on slapd")
        result = ldap_tool("ldapadd", *ADMIN, "-H", slapd_url, input=TESTUSER.format(n=2))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: found(first.url, "testuser2"), 90, what="testuser2 on pyldapd")
    finally:
        slapd.stop()


def test_howto_ldif_on_slapd_and_pyldapd_alike(tmp_path, nodes):
    """slapd 2.5 refuses the how-to's olcSyncProv* names (undefined attribute type); pyldapd accepts them as
    aliases. With the real names both accept the same LDIF."""
    node = nodes("py", "mdb")
    slapd, slapd_ldapi, _ = start_slapd_with_cn_config(tmp_path)
    try:

        def both(ldif_for) -> tuple[int, int]:
            theirs = ldap_tool(
                "ldapmodify", "-Y", "EXTERNAL", "-Q", "-H", slapd_ldapi, input=ldif_for("{1}mdb")
            )
            ours = node.external("ldapmodify", ldif_for("{2}mdb"))
            return theirs.returncode, ours.returncode

        def overlay(names: tuple[str, str]):
            return lambda db: (f"dn: olcOverlay=syncprov,olcDatabase={db},cn=config\nchangetype: add\n"
                               "objectClass: olcOverlayConfig\nobjectClass: olcSyncProvConfig\nolcOverlay: syncprov\n"
                               f"{names[0]}: 100 10\n{names[1]}: 100\n")  # fmt: skip

        # the one difference: the how-to's names are pyldapd aliases, undefined in slapd 2.5
        assert both(overlay(("olcSyncProvCheckpoint", "olcSyncProvSessionlog"))) == (17, 0)
        theirs = ldap_tool("ldapmodify", "-Y", "EXTERNAL", "-Q", "-H", slapd_ldapi,
                           input=overlay(("olcSpCheckpoint", "olcSpSessionlog"))("{1}mdb"))  # fmt: skip
        assert theirs.returncode == 0, theirs.stderr
        for ldif in (
            "dn: cn=config\nchangetype: modify\nadd: olcServerID\nolcServerID: 5\n",
            "dn: cn=config\nchangetype: modify\nadd: olcNoSuchThing\nolcNoSuchThing: x\n",
            "dn: cn=config\nchangetype: modify\nreplace: olcLogLevel\nolcLogLevel: stats sync\n",
            "dn: olcDatabase={db},cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: description eq,sub\n",
            "dn: olcDatabase={db},cn=config\nchangetype: modify\nadd: olcAccess\nolcAccess: to * by * read\n",
        ):
            theirs, ours = both(lambda db, text=ldif: text.replace("{db}", db))
            assert ours == theirs, ldif
    finally:
        slapd.stop()


def test_atomic_writes_leave_old_or_new(tmp_path, monkeypatch):
    target = tmp_path / "cn=config.ldif"
    cnconfig.write_file_atomically(target, "old\n")

    def crash(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(cnconfig.os, "replace", crash)
    with pytest.raises(OSError):
        cnconfig.write_file_atomically(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cn=config.ldif"]


def test_slaptest_style_conversion_runs(tmp_path):
    conf = tmp_path / "slapd.conf"
    (tmp_path / "db").mkdir(exist_ok=True)
    conf.write_text(slapd_conf(tmp_path / "db", extra_global="serverID 3\n", extra_db="overlay syncprov\n"
                               "syncprov-checkpoint 10 1\n"))  # fmt: skip
    suffix = tmp_path / "suffix.ldif"
    suffix.write_text(
        "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: x\ndc: example\n"
    )
    assert (
        pyldapd("add", "-q", "-f", str(conf), "-l", str(suffix)).returncode == 0
    )  # slaptest opens the database
    result = pyldapd("test", "-f", str(conf), "-F", str(tmp_path / "slapd.d"))
    assert result.returncode == 0, result.stderr
    config = cnconfig.config_from_entries(cnconfig.read_slapd_d(tmp_path / "slapd.d"))
    assert config.server_ids == [(3, "")]
    assert config.data_databases()[0].overlays[0].settings == [("syncprov-checkpoint", ["10", "1"])]


def test_schema_elements_on_cn_schema_itself_are_refused_not_ignored(nodes):
    """pyldapd reads schema from the entries below cn=schema,cn=config; slapd also takes elements added to that
    entry itself. pyldapd refuses such a change (unwillingToPerform) rather than store what it would not load."""
    node = nodes("a")
    change = ("dn: cn=schema,cn=config\nchangetype: modify\nadd: olcAttributeTypes\n"
              "olcAttributeTypes: ( 1.3.6.1.4.1.99999.7.2 NAME 'onSchemaRoot' SUP description )\n")  # fmt: skip
    result = node.external("ldapmodify", change)
    assert result.returncode == 53, result.stderr
    assert "add them in an entry below it" in result.stderr
    shown = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", node.ldapi, "-LLL", "-b", "cn=schema,cn=config",
                      "-s", "base", "olcAttributeTypes")  # fmt: skip
    assert shown.returncode == 0 and "onSchemaRoot" not in shown.stdout
    subschema = ldap_tool("ldapsearch", "-x", "-H", node.url, "-LLL", "-b", "cn=Subschema", "-s", "base",
                          "attributeTypes")  # fmt: skip
    assert subschema.returncode == 0 and "onSchemaRoot" not in subschema.stdout


def test_schema_and_access_changes_apply_at_once(nodes):
    node = nodes("a")
    schema = (
        "dn: cn=local,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: local\n"
        "olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.1 NAME 'badgeNumber' EQUALITY caseIgnoreMatch "
        "SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )\n"
        "olcObjectClasses: ( 1.3.6.1.4.1.99999.2.1 NAME 'badgeHolder' AUXILIARY MAY badgeNumber )\n"
    )
    result = node.external("ldapadd", schema)
    assert result.returncode == 0, result.stderr
    assert (node.dir / "slapd.d" / "cn=config" / "cn=schema" / "cn={4}local.ldif").exists()
    person = ("dn: cn=Bo,dc=example,dc=com\nobjectClass: person\nobjectClass: badgeHolder\ncn: Bo\nsn: B\n"
              "badgeNumber: 42\n")  # fmt: skip
    result = ldap_tool("ldapadd", *ADMIN, "-H", node.url, input=person)
    assert result.returncode == 0, result.stderr
    search = [
        "ldapsearch",
        "-x",
        "-H",
        node.url,
        "-LLL",
        "-b",
        "dc=example,dc=com",
        "(badgeNumber=42)",
        "1.1",
    ]
    assert "dn: cn=Bo,dc=example,dc=com" in ldap_tool(*search).stdout
    # an access rule added over ldapi: anonymous users no longer read the data, the rootdn still does
    acl = ("dn: olcDatabase={2}hdb,cn=config\nchangetype: modify\nadd: olcAccess\n"
           "olcAccess: to * by users read by * none\n")  # fmt: skip
    result = node.external("ldapmodify", acl)
    assert result.returncode == 0, result.stderr
    assert "dn: cn=Bo" not in ldap_tool(*search).stdout
    assert "dn: cn=Bo" in ldap_tool(search[0], *ADMIN, *search[2:]).stdout
    # olcLogLevel is the syslog level: -d's lines on stderr go on, as slapd's (tests/server/test_cnconfig_restart.py)
    result = node.external(
        "ldapmodify", "dn: cn=config\nchangetype: modify\nreplace: olcLogLevel\nolcLogLevel: none\n"
    )
    assert result.returncode == 0, result.stderr
    before = node.server.log().count(" SRCH ")
    ldap_tool(*search)
    wait_for(lambda: node.server.log().count(" SRCH ") > before, 10, what="the search on stderr")


REFUSED_ALIKE = [
    # (LDIF with {db} for the data database's RDN value, tool)
    ("dn: {db},cn=config\nchangetype: modify\nadd: olcMultiProvider\nolcMultiProvider: TRUE\n", "ldapmodify"),
    ("dn: {db},cn=config\nchangetype: modify\nadd: olcMirrorMode\nolcMirrorMode: TRUE\n", "ldapmodify"),
    ("dn: {db},cn=config\nchangetype: modify\nadd: olcUpdateRef\nolcUpdateRef: ldap://x/\n", "ldapmodify"),
    ("dn: {db},cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: nosuchattr eq\n", "ldapmodify"),
    ("dn: {db},cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: mail frob\n", "ldapmodify"),
    ("dn: {db},cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: objectClass eq\n", "ldapmodify"),
    ("dn: {db},cn=config\nchangetype: modify\nadd: olcSyncrepl\nolcSyncrepl: rid=1 bogus=x\n", "ldapmodify"),
    (
        "dn: {db},cn=config\nchangetype: modify\nadd: olcAccess\nolcAccess: to * by * frobnicate\n",
        "ldapmodify",
    ),
    ("dn: {db},cn=config\nchangetype: modify\ndelete: olcAccess\nolcAccess: {9}\n", "ldapmodify"),
    ("dn: {db},cn=config\nchangetype: modify\nreplace: olcDatabase\nolcDatabase: {5}mdb\n", "ldapmodify"),
    ("dn: cn=config\nchangetype: modify\nadd: olcServerID\nolcServerID: 99999\n", "ldapmodify"),
    ("dn: cn=config\nchangetype: modify\nreplace: olcLogLevel\nolcLogLevel: frob\n", "ldapmodify"),
    ("dn: cn=config\nchangetype: modify\nreplace: olcIdleTimeout\nolcIdleTimeout: abc\n", "ldapmodify"),
    ("dn: cn=config\nchangetype: modify\nadd: objectClass\nobjectClass: olcSchemaConfig\n", "ldapmodify"),
    ("dn: cn=config\nchangetype: modify\nadd: olcSuffix\nolcSuffix: dc=x\n", "ldapmodify"),
    (
        "dn: olcOverlay=syncprov,{db},cn=config\nchangetype: add\nobjectClass: olcOverlayConfig\n"
        "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\nolcSpCheckpoint: abc\n",
        "ldapmodify",
    ),
    (
        "dn: olcOverlay=syncprov,{db},cn=config\nchangetype: add\nobjectClass: olcOverlayConfig\n"
        "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\nolcSpSessionlog: abc\n",
        "ldapmodify",
    ),
    (
        "dn: olcOverlay=syncprov,{db},cn=config\nchangetype: add\nobjectClass: olcOverlayConfig\n"
        "objectClass: olcFrobConfig\nolcOverlay: syncprov\n",
        "ldapmodify",
    ),
    (
        "dn: olcOverlay=frobover,{db},cn=config\nchangetype: add\nobjectClass: olcOverlayConfig\n"
        "olcOverlay: frobover\n",
        "ldapmodify",
    ),
    (
        "dn: cn=l3,cn=schema,cn=config\nchangetype: add\nobjectClass: olcSchemaConfig\ncn: l3\n"
        "olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.3 NAME 'x' SYNTAX 9.9.9 )\n",
        "ldapmodify",
    ),
    (
        "dn: cn={1}l4,cn=schema,cn=config\nchangetype: add\nobjectClass: olcSchemaConfig\ncn: {1}l4\n",
        "ldapmodify",
    ),
    (
        "dn: olcOverlay={0}syncprov,{db},cn=config\nchangetype: modify\nreplace: olcSpCheckpoint\n"
        "olcSpCheckpoint: 5 5\n",
        "ldapmodify",
    ),
    ("cn={0}core,cn=schema,cn=config\n", "ldapdelete"),
    ("cn=config\n", "ldapdelete"),
    ("olcDatabase={0}config,cn=config\n", "ldapdelete"),
]


def test_refused_changes_alike_with_slapd(tmp_path, nodes):
    """Refused changes get slapd's result code and message and leave slapd.d as it was; then the overlay's
    life cycle (add without index -> {0}, a second one refused, delete) and X-ORDERED olcAccess edits match."""
    node = nodes("py", "mdb")
    slapd, slapd_ldapi, _ = start_slapd_with_cn_config(tmp_path)
    files = sorted((node.dir / "slapd.d").rglob("*.ldif"))
    before = {path: path.read_text() for path in files}
    try:

        def both(ldif: str, tool: str = "ldapmodify"):
            theirs = ldap_tool(tool, "-Y", "EXTERNAL", "-Q", "-H", slapd_ldapi,
                               input=ldif.replace("{db}", "olcDatabase={1}mdb"))  # fmt: skip
            ours = node.external(tool, ldif.replace("{db}", "olcDatabase={2}mdb"))
            return ((theirs.returncode, theirs.stderr.replace("{1}mdb", "{2}mdb").strip()),
                    (ours.returncode, ours.stderr.strip()))  # fmt: skip

        for ldif, tool in REFUSED_ALIKE:
            theirs, ours = both(ldif, tool)
            assert theirs[0] != 0 and ours == theirs, ldif
        assert {path: path.read_text() for path in sorted((node.dir / "slapd.d").rglob("*.ldif"))} == before

        def read(base: str, *attrs: str) -> tuple[str, str]:
            out = []
            for url, db in ((slapd_ldapi, "{1}mdb"), (node.ldapi, "{2}mdb")):
                result = ldap_tool("ldapsearch", "-Y", "EXTERNAL", "-Q", "-H", url, "-LLL", "-o", "ldif-wrap=no",
                                   "-b", base.replace("{db}", f"olcDatabase={db}"), *attrs)  # fmt: skip
                out.append(result.stdout.replace("{1}mdb", "{2}mdb"))
            return out[0], out[1]

        overlay = ("dn: olcOverlay=syncprov,{db},cn=config\nchangetype: add\nobjectClass: olcOverlayConfig\n"
                   "objectClass: olcSyncProvConfig\nolcOverlay: syncprov\nolcSpCheckpoint: 100 10\n")  # fmt: skip
        assert both(overlay) == ((0, ""), (0, ""))
        assert both(overlay)[1][0] == 80  # already in list
        theirs, ours = read("{db},cn=config", "-s", "one", "dn")
        assert ours == theirs and "olcOverlay={0}syncprov" in ours
        assert (node.dir / "slapd.d/cn=config/olcDatabase={2}mdb/olcOverlay={0}syncprov.ldif").exists()
        assert both("olcOverlay={0}syncprov,{db},cn=config\n", "ldapdelete") == ((0, ""), (0, ""))
        assert not (node.dir / "slapd.d/cn=config/olcDatabase={2}mdb/olcOverlay={0}syncprov.ldif").exists()
        edits = "dn: {db},cn=config\nchangetype: modify\n"
        for change in ("replace: olcAccess\nolcAccess: to attrs=userPassword by self write by * auth\n"
                       "olcAccess: to * by * read\n",
                       'add: olcAccess\nolcAccess: {0}to dn.base="" by * read\n',
                       'add: olcAccess\nolcAccess: {1}to dn.base="cn=x" by * read\nolcAccess: {1}to dn.base="cn=y" by * read\n',
                       'add: olcAccess\nolcAccess: {99}to dn.base="cn=w" by * read\n',
                       "delete: olcAccess\nolcAccess: {1}\n",
                       'delete: olcAccess\nolcAccess: to dn.base="cn=w" by * read\n'):  # fmt: skip
            assert both(edits + change) == ((0, ""), (0, "")), change
            theirs, ours = read("{db},cn=config", "-s", "base", "olcAccess")
            assert ours == theirs, change
        theirs, ours = read("olcDatabase={9}mdb,cn=config", "-s", "base")
        assert ours == theirs
    finally:
        slapd.stop()


def test_config_database_takes_syncprov_and_accesslog_only_and_refuses_mirror_mode(nodes):
    """cn=config replicates itself (tests/replication/test_config_replication.py): the syncprov overlay and
    olcSyncrepl are taken on olcDatabase={0}config, and accesslog (tests/overlays/test_accesslog.py); another
    overlay there is refused, and so is olcMirrorMode (olcMultiProvider) without a consumer, over LDAP and in a
    slapd.d, as by slapd."""
    node = nodes("a")
    overlay = "dn: olcOverlay=glue,olcDatabase={0}config,cn=config\nobjectClass: olcOverlayConfig\n" \
              "olcOverlay: glue\n"  # fmt: skip
    result = node.external("ldapadd", overlay)
    assert result.returncode == 53 and "not supported by pyldapd on the config database" in result.stderr
    mirror = (
        "dn: olcDatabase={0}config,cn=config\nchangetype: modify\nadd: olcMirrorMode\nolcMirrorMode: TRUE\n"
    )
    result = node.external("ldapmodify", mirror)  # slapd's alias of olcMultiProvider, which needs a consumer
    assert result.returncode == 80 and "<olcMultiProvider> database is not a shadow" in result.stderr
    node.stop()
    path = node.dir / "slapd.d" / "cn=config" / "olcDatabase={0}config.ldif"
    text = path.read_text().replace(
        "olcDatabase: {0}config\n", "olcDatabase: {0}config\nolcMirrorMode: TRUE\n"
    )
    path.write_text(text)  # a CRC mismatch is only warned about, as by slapd
    refused = pyldapd("test", "-u", "-F", str(node.dir / "slapd.d"))
    assert refused.returncode != 0 and "<olcMultiProvider> database is not a shadow" in (
        refused.stderr + refused.stdout
    )
