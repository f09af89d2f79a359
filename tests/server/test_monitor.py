"""cn=Monitor side by side with Debian's slapd and its back-monitor: the same slapd.conf (`database monitor` with a
rootdn), the same operations, then the same ldapsearch an operator runs: the same DNs, object classes and
attribute names (user or operational as slapd has them), counters that move by the same amounts, the same
answers under the monitor database's access rules. Plus what slapd 2.5 cannot show: OpenLDAP 2.6's olmSR*
consumer entries, and pyldapd's defaults when no monitor database is configured."""

from __future__ import annotations

import re

import ldap
import pytest

from tests.data import BASE_LDIF
from tests.replication.helpers import consumer_conf, provider_conf
from tests.servers import ROOTDN, ROOTPW, ldap_tool, slapd_conf, start_pyldapd, start_slapd, wait_for

SUFFIX = "dc=example,dc=com"
JDOE = f"uid=jdoe,ou=People,{SUFFIX}"
MONITOR_ROOT = ["-x", "-D", "cn=monitor", "-w", "monitorpw"]
MONITOR_DB = "database monitor\nrootdn cn=monitor\nrootpw monitorpw\n"

# Every DN of slapd's tree that pyldapd must have too (slapd 2.5.13 with back_mdb and back_monitor loaded; it
# also lists `cn=Backend 3` for back-ldif, which pyldapd does not have, and one entry per open connection).
REQUIRED_DNS = [
    "cn=Monitor",
    "cn=Backends,cn=Monitor",
    "cn=Backend 0,cn=Backends,cn=Monitor",
    "cn=Backend 1,cn=Backends,cn=Monitor",
    "cn=Backend 2,cn=Backends,cn=Monitor",
    "cn=Connections,cn=Monitor",
    "cn=Max File Descriptors,cn=Connections,cn=Monitor",
    "cn=Total,cn=Connections,cn=Monitor",
    "cn=Current,cn=Connections,cn=Monitor",
    "cn=Databases,cn=Monitor",
    "cn=Frontend,cn=Databases,cn=Monitor",
    "cn=Database 0,cn=Databases,cn=Monitor",
    "cn=Database 1,cn=Databases,cn=Monitor",
    "cn=Database 2,cn=Databases,cn=Monitor",
    "cn=Listeners,cn=Monitor",
    "cn=Listener 0,cn=Listeners,cn=Monitor",
    "cn=Listener 1,cn=Listeners,cn=Monitor",
    "cn=Log,cn=Monitor",
    "cn=Operations,cn=Monitor",
    *(f"cn={op},cn=Operations,cn=Monitor"
      for op in ("Bind", "Unbind", "Search", "Compare", "Modify", "Modrdn", "Add", "Delete", "Abandon", "Extended")),
    "cn=Overlays,cn=Monitor",
    "cn=Overlay 0,cn=Overlays,cn=Monitor",
    "cn=SASL,cn=Monitor",
    "cn=Statistics,cn=Monitor",
    "cn=Bytes,cn=Statistics,cn=Monitor",
    "cn=PDU,cn=Statistics,cn=Monitor",
    "cn=Entries,cn=Statistics,cn=Monitor",
    "cn=Referrals,cn=Statistics,cn=Monitor",
    "cn=Threads,cn=Monitor",
    *(f"cn={name},cn=Threads,cn=Monitor"
      for name in ("Max", "Max Pending", "Open", "Starting", "Active", "Pending", "Backload", "State", "Runqueue",
                   "Tasklist")),
    "cn=Time,cn=Monitor",
    "cn=Start,cn=Time,cn=Monitor",
    "cn=Current,cn=Time,cn=Monitor",
    "cn=Uptime,cn=Time,cn=Monitor",
    "cn=TLS,cn=Monitor",
    "cn=Waiters,cn=Monitor",
    "cn=Read,cn=Waiters,cn=Monitor",
    "cn=Write,cn=Waiters,cn=Monitor",
]  # fmt: skip
# What slapd shows that pyldapd leaves out: LMDB's free-page count (py-lmdb cannot read LMDB's free list).
NOT_SHOWN = {"olmMDBPagesFree"}
# pyldapd's own additions (kept for `pyldapd status`) and OpenLDAP 2.6's olmMDBPageSize
EXTRA = {"pyldapdServerID", "labeledURI", "contextCSN", "description", "monitorCounter", "olmMDBPageSize"}


def parse_ldif(text: str) -> dict[str, dict[str, list[str]]]:
    """ldapsearch -LLL output (unwrapped) -> {dn: {attribute name: values}}."""
    entries: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("dn: "):
            current = entries.setdefault(line[4:], {})
        elif current is not None and ":" in line:
            name, _, rest = line.partition(":")
            current.setdefault(name, []).append(rest.lstrip(": ").strip())
    return entries


def monitor(server, *args: str, who: list[str] = MONITOR_ROOT, base: str = "cn=Monitor") -> tuple[int, dict]:
    result = ldap_tool("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-H", server.url, *who, "-b", base, *args)
    return result.returncode, parse_ldif(result.stdout)


def load(server) -> None:
    ldap_tool("ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=BASE_LDIF, check=True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Debian's slapd and pyldapd from one slapd.conf with `database monitor`, the test data loaded in both."""
    root = tmp_path_factory.mktemp("monitor")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf = slapd_conf(root / name / "db", modules=True, extra_global="moduleload back_monitor",
                              extra_db=MONITOR_DB)  # fmt: skip
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            servers.append(start(root / name, conf, name=name))
        for server in servers:
            load(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_same_tree_as_slapd(pair):
    slapd, pyldapd = pair
    trees = {}
    for server in pair:
        code, trees[server.name] = monitor(server, "*", "+")
        assert code == 0, server.name
    for dn in REQUIRED_DNS:
        assert dn in trees["slapd"], f"slapd has no {dn}: the list is wrong"
        assert dn in trees["pyldapd"], f"pyldapd lacks {dn}"
    connections = {name: [dn for dn in tree if re.fullmatch(r"cn=Connection \d+,cn=Connections,cn=Monitor", dn)]
                   for name, tree in trees.items()}  # fmt: skip
    assert len(connections["slapd"]) == len(connections["pyldapd"]) == 1  # the ldapsearch's own
    # the same object classes and attribute names on every entry both have (entryDN etc. included)
    for dn, theirs in trees["slapd"].items():
        ours = trees["pyldapd"].get(dn)
        if ours is None:
            continue
        assert ours["objectClass"] == theirs["objectClass"], dn
        assert ours["structuralObjectClass"] == theirs["structuralObjectClass"], dn
        missing = set(theirs) - set(ours) - NOT_SHOWN
        assert not missing, f"{dn}: pyldapd lacks {missing}"
        # slapd's Backend N are its loaded backends (back-ldif among them), pyldapd's are config, monitor, mdb
        assert set(ours) - set(theirs) <= EXTRA | ({"seeAlso"} if dn.startswith("cn=Backend ") else set()), dn
    for dn in (connections["slapd"][0], connections["pyldapd"][0]):
        assert {"monitorConnectionNumber", "monitorConnectionAuthzDN", "monitorConnectionPeerAddress",
                "monitorConnectionListener", "monitorConnectionOpsReceived", "monitorConnectionStartTime"} <= set(
            trees["slapd" if dn in connections["slapd"] else "pyldapd"][dn])  # fmt: skip
    # values that do not depend on the implementation
    for name, tree in trees.items():
        database = tree["cn=Database 1,cn=Databases,cn=Monitor"]
        assert database["namingContexts"] == [SUFFIX], name
        assert database["monitoredInfo"] == ["mdb"], name
        assert database["monitorIsShadow"] == ["FALSE"] and database["readOnly"] == ["FALSE"], name
        assert database["olmMDBPagesMax"] == [str(104857600 // 4096)], name
        assert int(database["olmMDBEntries"][0]) == BASE_LDIF.count("dn: "), name
        assert tree["cn=Database 2,cn=Databases,cn=Monitor"]["monitoredInfo"] == ["monitor"], name
        assert tree["cn=Database 0,cn=Databases,cn=Monitor"]["namingContexts"] == ["cn=config"], name
        server = slapd if name == "slapd" else pyldapd
        listeners = {tree[f"cn=Listener {i},cn=Listeners,cn=Monitor"]["labeledURI"][0] for i in (0, 1)}
        assert f"{server.url}/" in listeners, name
        assert tree["cn=Current,cn=Connections,cn=Monitor"]["monitorCounter"] == ["1"], name
        assert re.fullmatch(r"\d{14}Z", tree["cn=Start,cn=Time,cn=Monitor"]["monitorTimestamp"][0]), name


def test_user_and_operational_attributes_as_slapd(pair):
    """Without `+`, slapd shows only the user attributes (cn, objectClass, description, seeAlso...)."""
    names = {}
    for server in pair:
        code, tree = monitor(server, "*")
        assert code == 0
        names[server.name] = {dn: set(attrs) for dn, attrs in tree.items()}
    for dn, theirs in names["slapd"].items():
        if dn in names["pyldapd"]:
            assert names["pyldapd"][dn] - theirs <= {"labeledURI", "description", "seeAlso"}, dn
            assert theirs <= names["pyldapd"][dn], dn
    assert "monitorCounter" not in names["pyldapd"]["cn=Total,cn=Connections,cn=Monitor"]


COUNTERS = "(|(objectClass=monitorOperation)(objectClass=monitorCounterObject))"


def counters(server) -> dict[str, int]:
    code, tree = monitor(server, COUNTERS, "monitorOpInitiated", "monitorOpCompleted", "monitorCounter")
    assert code == 0
    figures = {}
    for dn, attrs in tree.items():
        name = dn.split(",", 1)[0][3:]
        parent = dn.split(",")[1][3:]
        for attr in ("monitorOpInitiated", "monitorOpCompleted", "monitorCounter"):
            if attr in attrs:
                figures[f"{parent}/{name}/{attr}"] = int(attrs[attr][0])
    return figures


def workload(server) -> None:
    """The same requests to both servers: searches, compares, modifies, an add and a delete, a failed bind."""
    user = ["-x", "-H", server.url, "-D", JDOE, "-w", "secret1"]
    admin = ["-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW]
    ldap_tool("ldapsearch", *user, "-b", SUFFIX, "(objectClass=*)", "cn", check=True)
    ldap_tool(
        "ldapsearch", "-x", "-H", server.url, "-b", f"ou=People,{SUFFIX}", "-s", "one", "uid", check=True
    )
    ldap_tool("ldapcompare", *user, JDOE, "sn:Smith")
    ldap_tool("ldapmodify", *admin, input=f"dn: {JDOE}\nchangetype: modify\nreplace: description\n"
              f"description: one\n-\n\ndn: {JDOE}\nchangetype: modify\nreplace: description\ndescription: two\n",
              check=True)  # fmt: skip
    ldap_tool(
        "ldapadd",
        *admin,
        input=f"dn: cn=tmp,{SUFFIX}\nobjectClass: organizationalRole\ncn: tmp\n",
        check=True,
    )
    ldap_tool("ldapdelete", *admin, f"cn=tmp,{SUFFIX}", check=True)
    ldap_tool("ldapwhoami", *user, check=True)
    bad = ldap_tool("ldapwhoami", "-x", "-H", server.url, "-D", JDOE, "-w", "wrong")
    assert bad.returncode == 49


def test_counters_move_as_slapd(pair):
    deltas = {}
    for server in pair:
        before = counters(server)
        workload(server)
        after = counters(server)
        deltas[server.name] = {key: after[key] - before[key] for key in before if key in after}
    slapd, ours = deltas["slapd"], deltas["pyldapd"]
    compared = [key for key in slapd if key.startswith(("Operations/", "Statistics/Entries", "Statistics/PDU",
                                                         "Statistics/Referrals", "Connections/Total"))]  # fmt: skip
    assert len(compared) == 10 * 2 + 4
    for key in compared:
        assert ours[key] == slapd[key], f"{key}: pyldapd moved by {ours[key]}, slapd by {slapd[key]}"
    # and by the right amounts: 8 connections and binds of the workload and 1 of the second read, 2 modifies
    assert ours["Connections/Total/monitorCounter"] == 9
    assert ours["Operations/Modify/monitorOpCompleted"] == 2
    assert ours["Operations/Bind/monitorOpInitiated"] == 9
    assert ours["Operations/Extended/monitorOpCompleted"] == 1  # the WhoAmI after a good bind
    assert ours["Statistics/Bytes/monitorCounter"] > 0


def test_connection_entry(pair):
    """An open connection's entry: its bind DN, peer address, listener and operations, on both servers."""
    seen = {}
    for server in pair:
        conn = ldap.initialize(server.url)
        try:
            conn.simple_bind_s(JDOE, "secret1")
            conn.search_s(SUFFIX, ldap.SCOPE_BASE, "(objectClass=*)", ["dc"])
            conn.search_s(SUFFIX, ldap.SCOPE_BASE, "(objectClass=*)", ["o"])
            code, tree = monitor(server, "(monitorConnectionAuthzDN=*)", "*", "+",
                                 base="cn=Connections,cn=Monitor")  # fmt: skip
            assert code == 0
        finally:
            conn.unbind_s()
        mine = [attrs for attrs in tree.values() if attrs.get("monitorConnectionAuthzDN") == [JDOE]]
        assert len(mine) == 1, server.name
        seen[server.name] = mine[0]
    for name, attrs in seen.items():
        assert attrs["monitorConnectionOpsReceived"] == ["3"], name
        assert attrs["monitorConnectionOpsCompleted"] == ["3"], name
        assert attrs["monitorConnectionPeerAddress"][0].startswith("IP=127.0.0.1:"), name
        assert attrs["monitorConnectionListener"][0].startswith("ldap://127.0.0.1:"), name
        assert attrs["monitorConnectionProtocol"] == ["3"], name


ACCESS_CONF = f"""
access to dn.subtree="cn=Monitor" attrs=monitorCounter
    by dn.exact="{JDOE}" none
    by users read
access to dn.subtree="cn=Monitor"
    by users read
    by * none
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """Both servers with access rules in the monitor database: users read (jdoe no counters), anonymous none."""
    root = tmp_path_factory.mktemp("monitor-acl")
    servers = []
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf = slapd_conf(root / name / "db", modules=True, extra_global="moduleload back_monitor",
                              extra_db=MONITOR_DB + ACCESS_CONF)  # fmt: skip
            (root / name / "db").mkdir(parents=True, exist_ok=True)
            servers.append(start(root / name, conf, name=name))
        for server in servers:
            load(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("who", ["anonymous", "jdoe", "asmith", "rootdn", "monitor"])
def test_monitor_access_as_slapd(guarded, who):
    identities = {"anonymous": ["-x"], "jdoe": ["-x", "-D", JDOE, "-w", "secret1"],
                  "asmith": ["-x", "-D", f"uid=asmith,ou=People,{SUFFIX}", "-w", "secret2"],
                  "rootdn": ["-x", "-D", ROOTDN, "-w", ROOTPW], "monitor": MONITOR_ROOT}  # fmt: skip
    answers = {}
    for server in guarded:
        code, tree = monitor(server, "(|(cn=Total)(cn=Monitor)(cn=Bind))", "*", "+", who=identities[who])
        answers[server.name] = (code, {dn: "monitorCounter" in attrs for dn, attrs in tree.items()})
    assert answers["pyldapd"] == answers["slapd"]
    if who == "anonymous":
        assert answers["pyldapd"][0] == 32  # noSuchObject: not even the base may be seen
    elif who == "jdoe":
        assert answers["pyldapd"][1]["cn=Total,cn=Connections,cn=Monitor"] is False
    else:
        assert answers["pyldapd"][1]["cn=Total,cn=Connections,cn=Monitor"] is True


@pytest.mark.parametrize("who", ["anonymous", "jdoe", "asmith", "monitor"])
def test_compare_as_slapd(guarded, who):
    """ldapcompare on cn=Monitor entries: the same answers under the same rules (jdoe may not see counters)."""
    identities = {"anonymous": ["-x"], "jdoe": ["-x", "-D", JDOE, "-w", "secret1"],
                  "asmith": ["-x", "-D", f"uid=asmith,ou=People,{SUFFIX}", "-w", "secret2"], "monitor": MONITOR_ROOT}  # fmt: skip
    checks = [("cn=Current,cn=Connections,cn=Monitor", "monitorCounter:1"),
              ("cn=Current,cn=Connections,cn=Monitor", "monitorCounter:7"),
              ("cn=Current,cn=Connections,cn=Monitor", "cn:Current"),
              ("cn=Database 1,cn=Databases,cn=Monitor", "monitoredInfo:mdb"),
              ("cn=Nothing,cn=Connections,cn=Monitor", "cn:Nothing"),
              ("cn=Monitor", "monitorCounter:1")]  # fmt: skip
    answers = {}
    for server in guarded:
        answers[server.name] = [ldap_tool("ldapcompare", "-H", server.url, *identities[who], dn, assertion).returncode
                                for dn, assertion in checks]  # fmt: skip
    assert answers["pyldapd"] == answers["slapd"]
    if who == "monitor":
        assert answers["pyldapd"] == [
            6,
            5,
            6,
            6,
            32,
            16,
        ]  # TRUE, FALSE, TRUE, TRUE, noSuchObject, noSuchAttribute


def test_without_monitor_database_pyldapd_defaults(tmp_path):
    """No `database monitor`: the rootdn of a database and root over ldapi read cn=Monitor; with access rules
    configured, anonymous gets noSuchObject (README)."""
    conf = slapd_conf(tmp_path / "db", extra_db=f'access to * by dn.exact="{JDOE}" read by * none')
    (tmp_path / "db").mkdir(exist_ok=True)
    server = start_pyldapd(tmp_path, conf)
    try:
        code, tree = monitor(server, "(objectClass=*)", "pyldapdServerID", who=["-x", "-D", ROOTDN, "-w", ROOTPW],
                             base="cn=Monitor")  # fmt: skip
        assert code == 0 and tree["cn=Monitor"]["pyldapdServerID"] == ["0"]
        assert "cn=Bind,cn=Operations,cn=Monitor" in tree
        code, tree = monitor(server, "(objectClass=*)", who=["-x"])
        assert code == 32 and not tree
    finally:
        server.stop()


def test_consumer_entries(tmp_path):
    """A consumer's database carries OpenLDAP 2.6's syncrepl status entry, and pyldapd's cn=Syncrepl stays."""
    provider = start_pyldapd(
        tmp_path / "provider", provider_conf(tmp_path / "provider" / "db"), name="provider"
    )
    consumer = None
    try:
        load(provider)
        consumer = start_pyldapd(tmp_path / "consumer",
                                 consumer_conf(tmp_path / "consumer" / "db", provider.url), name="consumer")  # fmt: skip
        admin = ["-x", "-D", ROOTDN, "-w", ROOTPW]
        dn = "cn=Consumer 001,cn=Database 1,cn=Databases,cn=Monitor"

        def persisting() -> bool:
            code, tree = monitor(consumer, "(objectClass=*)", "*", "+", who=admin, base=dn)
            return code == 0 and tree.get(dn, {}).get("olmSRSyncPhase") == ["Persist"]

        wait_for(persisting, 30, what="the consumer to persist")
        code, tree = monitor(consumer, "(objectClass=*)", "*", "+", who=admin, base=dn)
        entry = tree[dn]
        assert entry["objectClass"] == ["olmSyncReplInstance"]
        assert entry["olmSRProviderURIList"] == [provider.url]
        assert entry["olmSRConnection"][0].startswith("IP=127.0.0.1:")
        assert entry["olmSRLastCookieRcvd"][0].startswith("rid=001")
        assert entry["olmSRLastCookieSent"][0].startswith("rid=001")
        assert entry["olmSRNextConnect"] == ["00000101000000Z"]  # connected: no retry scheduled
        assert re.fullmatch(r"\d{14}Z", entry["olmSRLastConnect"][0]) and entry["olmSRLastConnect"][0] != (
            "00000101000000Z")  # fmt: skip
        assert entry["hasSubordinates"] == ["FALSE"]
        _, database = monitor(consumer, "(objectClass=*)", "hasSubordinates", "monitorIsShadow", who=admin,
                              base="cn=Database 1,cn=Databases,cn=Monitor")  # fmt: skip
        assert database["cn=Database 1,cn=Databases,cn=Monitor"] == {"hasSubordinates": ["TRUE"],
                                                                      "monitorIsShadow": ["TRUE"]}  # fmt: skip
        _, old = monitor(
            consumer, "(objectClass=*)", "+", who=admin, base="cn=Consumer 001,cn=Syncrepl,cn=Monitor"
        )
        assert old["cn=Consumer 001,cn=Syncrepl,cn=Monitor"]["pyldapdSyncState"] == ["persisting"]
        # the provider going away: the consumer shows its next attempt
        provider.stop()

        def retrying() -> bool:
            _, tree = monitor(consumer, "(objectClass=*)", "+", who=admin, base=dn)
            entry = tree.get(dn, {})
            return entry.get("olmSRConnection") == [""] and entry.get("olmSRNextConnect") != [
                "00000101000000Z"
            ]

        wait_for(retrying, 30, what="the consumer to schedule a retry")
    finally:
        if consumer is not None:
            consumer.stop()
        provider.stop()


def test_cn_config_monitor_database_rules_apply_at_once(tmp_path):
    """`pyldapd init`'s olcDatabase={1}monitor: no rule, so everyone reads (slapd's default); an olcAccess added
    over ldapi takes effect on the next search."""
    from tests.server.test_cnconfig import Node

    node = Node(tmp_path, "node")
    node.start()
    try:
        server = node.server
        code, tree = monitor(server, "(objectClass=*)", who=["-x"], base="cn=Monitor")
        assert code == 0 and "cn=Bind,cn=Operations,cn=Monitor" in tree
        # a rule that does not parse is refused as on the data database (whose answer is slapd's, test_cnconfig)
        bad = "changetype: modify\nadd: olcAccess\nolcAccess: to * by * frobnicate\n"
        refused = node.external("ldapmodify", f"dn: olcDatabase={{1}}monitor,cn=config\n{bad}")
        on_data = node.external("ldapmodify", f"dn: olcDatabase={{2}}hdb,cn=config\n{bad}")
        assert refused.returncode == on_data.returncode != 0
        assert refused.stderr.splitlines()[-2:] == on_data.stderr.splitlines()[-2:]
        change = node.external("ldapmodify", "dn: olcDatabase={1}monitor,cn=config\nchangetype: modify\n"
                               "add: olcAccess\nolcAccess: to * by users read by * none\n")  # fmt: skip
        assert change.returncode == 0, change.stderr
        code, tree = monitor(server, "(objectClass=*)", who=["-x"], base="cn=Monitor")
        assert code == 32 and not tree
        code, tree = monitor(server, "(objectClass=*)", who=["-x", "-D", ROOTDN, "-w", "admin_password"])
        assert code == 0 and "cn=Bind,cn=Operations,cn=Monitor" in tree
    finally:
        node.stop()


def test_a_read_of_any_entry_finds_what_the_whole_tree_shows(pair):
    """A base read builds only the subsystem it names (and asks the other workers only for connections, waiters,
    consumers and conflicts): every entry of the whole tree, read alone, is there with the same attribute types,
    the other worker's connections included, and cn=Monitor has subordinates."""
    _, pyldapd = pair
    holders = [ldap.initialize(pyldapd.url) for _ in range(4)]  # (the listener shares them over the workers)
    try:
        for conn in holders:
            conn.simple_bind_s(ROOTDN, ROOTPW)
        code, tree = monitor(pyldapd, "-s", "sub", "(objectClass=*)", "*", "+")
        assert code == 0 and len([dn for dn in tree if dn.startswith("cn=Connection ")]) >= 4
        numbers = [int(dn.split(",")[0].split()[-1]) for dn in tree if dn.startswith("cn=Connection ")]
        reader = f"cn=Connection {max(numbers)},cn=Connections,cn=Monitor"  # the dump's own: closed since
        for dn, attrs in tree.items():
            if dn == reader:
                continue
            code, alone = monitor(pyldapd, "-s", "base", "(objectClass=*)", "*", "+", base=dn)
            assert code == 0 and list(alone) == [dn], (dn, code, list(alone))
            assert set(alone[dn]) == set(attrs), dn
        assert tree["cn=Monitor"]["hasSubordinates"] == ["TRUE"]
        assert monitor(pyldapd, "-s", "base", "(objectClass=*)", "hasSubordinates")[1]["cn=Monitor"] == {
            "hasSubordinates": ["TRUE"]
        }
    finally:
        for conn in holders:
            conn.unbind_s()
