"""A read-only `cn=Monitor` tree as slapd's back-monitor shows it (slapd-monitor(5)), built afresh on every search.

slapd's subsystems, with the same DNs, object classes and attribute names:

    cn=Monitor                                  monitorServer: version (monitoredInfo)
    cn=Backends / cn=Backend N                  the backend types (config, monitor, mdb)
    cn=Connections                              cn=Total, cn=Current, cn=Max File Descriptors (monitorCounter),
      cn=Connection NNNN                        one per client: peer, listener, bind DN, operations, times
    cn=Databases                                cn=Frontend, cn=Database N (N as slapd numbers them: 0 is
      cn=Database N                             cn=config), with olmMDB* (pages, map size, readers, entries)
        cn=Consumer RID                         syncrepl state as OpenLDAP 2.6 publishes it (olmSR*)
    cn=Listeners / cn=Listener N                the -h URLs
    cn=Log, cn=SASL, cn=TLS                     containers (nothing to report)
    cn=Operations / cn=Bind ... cn=Extended     monitorOpInitiated / monitorOpCompleted per operation type
    cn=Overlays / cn=Overlay N                  the overlays pyldapd has (syncprov)
    cn=Statistics / cn=Bytes, PDU, Entries, Referrals   what was sent to clients (server/stats.py)
    cn=Threads / cn=Max ...                     the event loop as slapd's thread pool would describe it: one
    cn=Time / cn=Start, cn=Current, cn=Uptime
    cn=Waiters / cn=Read, cn=Write

and pyldapd's own, kept for `pyldapd status`: `pyldapdServerID` on cn=Monitor, contextCSN / entry count /
role on each data database, and cn=Syncrepl / cn=Consumer RID (rid, provider, state, last error, conflicts).

Schema. The object classes and attribute types are OpenLDAP's, with its OIDs (back-monitor's init.c, back-mdb's
monitor.c, 2.6's syncrepl.c), added when the schema lacks them; like slapd's they are operational (dSAOperation):
ask for `+`. pyldapd's own types sit under an OID arc made from a UUID (2.25.<uuid>, ITU-T X.667).

Access (`may_read` and `reader`, the one place it is decided). With a `database monitor` section: as slapd, its
rootdn reads everything, else its `access` lines followed by the global ones decide per entry and attribute, and
with no access line at all everyone reads (slapd's default `access to * by * read`). Without one, pyldapd's
defaults: any database's rootdn, root (or the server's own user) over ldapi://, and anyone when the
configuration has no `access` line anywhere. Who may not read gets noSuchObject, as slapd answers.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import Scope
from pyldapd.model.dn import DNError, is_descendant, normalize_dn
from pyldapd.model.entry import Entry
from pyldapd.protocol import ldap
from pyldapd.replication.conflicts import conflict_monitor_entries, install_conflict_schema
from pyldapd.server.errors import LDAPError
from pyldapd.server.stats import OPERATIONS, Stats, Totals
from pyldapd.server.workers import MAX_MESSAGE

if TYPE_CHECKING:
    from pyldapd.server.directory import Directory, Session

MONITOR_DN = "cn=Monitor"
PEERCRED_SUFFIX = "cn=peercred,cn=external,cn=auth"
# pyldapd's own OID arc: 2.25 followed by a UUID as a decimal integer (X.667), minted once for this project.
ARC = "2.25.23394782990751888070443023800080686380"
PEER_ASK = "monitor.ask"  # a cn=Monitor search asks the other workers for what they hold (gather_peers)
# the subsystems showing what other workers hold: their connections, waiters, consumers and conflict journals
PEER_SUBSYSTEMS = ("connections", "waiters", "syncrepl", "databases")
PEER_REPLY = "monitor.reply"
PEER_TIMEOUT = 2.0  # seconds a search waits for the other workers' answers
ZERO_TIME = b"00000101000000Z"  # slapd's value of an olmSR* time that has not happened

_OLM = "1.3.6.1.4.1.4203.666.1.55"  # olmAttributes
_OLM_OC = "1.3.6.1.4.1.4203.666.3.16"  # olmObjectClasses
_MDB = f"{_OLM}.0.1.1"  # olmMDBAttributes = olmDatabaseAttributes:1
_SR = f"{_OLM}.0.2.1"  # olmSyncReplAttributes = olmOverlayAttributes:1
_INT = "EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27"
_TEXT = "EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15"
_DN = "EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12"
_BOOL = "EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE"
_OP = "NO-USER-MODIFICATION USAGE dSAOperation"
_COUNTER = f"SUP monitorCounter {_OP}"
_INFO = f"SUP monitoredInfo {_OP}"
_STAMP = f"SUP monitorTimestamp SINGLE-VALUE {_OP}"
# (OID, name, the rest of the definition), in dependency order
MONITOR_SCHEMA = [
    (f"{_OLM}.1", "monitoredInfo", f"DESC 'monitored info' {_TEXT}{{32768}} {_OP}"),
    (f"{_OLM}.2", "managedInfo", "DESC 'monitor managed info' SUP name"),
    (f"{_OLM}.3", "monitorCounter", f"DESC 'monitor counter' {_INT} {_OP}"),
    (f"{_OLM}.4", "monitorOpCompleted", f"DESC 'monitor completed operations' {_COUNTER}"),
    (f"{_OLM}.5", "monitorOpInitiated", f"DESC 'monitor initiated operations' {_COUNTER}"),
    (f"{_OLM}.6", "monitorConnectionNumber", f"DESC 'monitor connection number' {_COUNTER}"),
    (f"{_OLM}.7", "monitorConnectionAuthzDN", f"DESC 'monitor connection authorization DN' {_DN} {_OP}"),
    (f"{_OLM}.8", "monitorConnectionLocalAddress", f"DESC 'monitor connection local address' {_INFO}"),
    (f"{_OLM}.9", "monitorConnectionPeerAddress", f"DESC 'monitor connection peer address' {_INFO}"),
    (
        f"{_OLM}.10",
        "monitorTimestamp",
        "DESC 'monitor timestamp' EQUALITY generalizedTimeMatch ORDERING "
        f"generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE {_OP}",
    ),  # fmt: skip
    (f"{_OLM}.11", "monitorOverlay", f"DESC 'name of overlays defined for a given database' {_INFO}"),
    (f"{_OLM}.12", "readOnly", f"DESC 'read/write status of a given database' {_BOOL} USAGE dSAOperation"),
    (f"{_OLM}.14", "monitorConnectionProtocol", f"DESC 'monitor connection protocol' {_INFO}"),
    (
        f"{_OLM}.15",
        "monitorConnectionOpsReceived",
        f"DESC 'monitor number of operations received' {_COUNTER}",
    ),
    (f"{_OLM}.16", "monitorConnectionOpsExecuting", f"DESC 'monitor operations in execution' {_COUNTER}"),
    (f"{_OLM}.17", "monitorConnectionOpsPending", f"DESC 'monitor pending operations' {_COUNTER}"),
    (f"{_OLM}.18", "monitorConnectionOpsCompleted", f"DESC 'monitor operations completed' {_COUNTER}"),
    (
        f"{_OLM}.19",
        "monitorConnectionGet",
        f"DESC 'number of times connection_get() was called so far' {_COUNTER}",
    ),
    (
        f"{_OLM}.20",
        "monitorConnectionRead",
        f"DESC 'number of times connection_read() was called so far' {_COUNTER}",
    ),
    (
        f"{_OLM}.21",
        "monitorConnectionWrite",
        f"DESC 'number of times connection_write() was called so far' {_COUNTER}",
    ),
    (f"{_OLM}.22", "monitorConnectionMask", f"DESC 'monitor connection mask' {_INFO}"),
    (f"{_OLM}.23", "monitorConnectionListener", f"DESC 'monitor connection listener' {_INFO}"),
    (f"{_OLM}.30", "monitorSuperiorDN", f"DESC 'monitor superior DN' {_DN} {_OP}"),
    (f"{_OLM}.24", "monitorConnectionPeerDomain", f"DESC 'monitor connection peer domain' {_INFO}"),
    (f"{_OLM}.25", "monitorConnectionStartTime", f"DESC 'monitor connection start time' {_STAMP}"),
    (f"{_OLM}.26", "monitorConnectionActivityTime", f"DESC 'monitor connection activity time' {_STAMP}"),
    (f"{_OLM}.27", "monitorIsShadow", f"DESC 'TRUE if the database is shadow' {_BOOL} USAGE dSAOperation"),
    (
        f"{_OLM}.28",
        "monitorUpdateRef",
        "DESC 'update referral for shadow databases' SUP monitoredInfo SINGLE-VALUE USAGE dSAOperation",
    ),  # fmt: skip
    (
        f"{_OLM}.29",
        "monitorRuntimeConfig",
        f"DESC 'TRUE if component allows runtime configuration' {_BOOL} USAGE dSAOperation",
    ),  # fmt: skip
    (f"{_OLM}.31", "monitorConnectionOpsAsync", f"DESC 'monitor asynchronous operations' {_COUNTER}"),
    (
        f"{_OLM}.0.1.1",
        "olmDbDirectory",
        f"DESC 'Path name of the directory where the database environment resides' {_INFO}",
    ),  # fmt: skip
    (f"{_MDB}.1", "olmMDBPagesMax", f"DESC 'Maximum number of pages' {_COUNTER}"),
    (f"{_MDB}.2", "olmMDBPagesUsed", f"DESC 'Number of pages in use' {_COUNTER}"),
    (f"{_MDB}.4", "olmMDBReadersMax", f"DESC 'Maximum number of readers' {_COUNTER}"),
    (f"{_MDB}.5", "olmMDBReadersUsed", f"DESC 'Number of readers in use' {_COUNTER}"),
    (f"{_MDB}.6", "olmMDBEntries", f"DESC 'Number of entries in DB' {_COUNTER}"),
    (f"{_MDB}.7", "olmMDBPageSize", f"DESC 'DB page size' {_COUNTER}"),
    (f"{_SR}.1", "olmSRProviderURIList", f"DESC 'List of provider URIs for this consumer instance' {_INFO}"),
    (
        f"{_SR}.2",
        "olmSRConnection",
        f"DESC 'Local address:port of connection to provider' SUP monitoredInfo SINGLE-VALUE {_OP}",
    ),  # fmt: skip
    (f"{_SR}.3", "olmSRSyncPhase", f"DESC 'Current syncrepl mode' SUP monitoredInfo SINGLE-VALUE {_OP}"),
    (f"{_SR}.4", "olmSRNextConnect", f"DESC 'Scheduled time of next connection attempt' {_STAMP}"),
    (f"{_SR}.5", "olmSRLastConnect", f"DESC 'Time last connected to provider' {_STAMP}"),
    (f"{_SR}.6", "olmSRLastContact", f"DESC 'Time last message received from provider' {_STAMP}"),
    (f"{_SR}.7", "olmSRLastCookieRcvd", f"DESC 'Last sync cookie received from provider' {_INFO}"),
    (f"{_SR}.8", "olmSRLastCookieSent", f"DESC 'Last sync cookie sent to provider' {_INFO}"),
    (f"{ARC}.1.1", "pyldapdServerID", f"DESC 'server ID of this server CSNs' {_INT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.2", "pyldapdSyncRid", f"DESC 'syncrepl replica ID' {_INT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.3", "pyldapdSyncState", f"DESC 'syncrepl consumer state' {_TEXT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.4", "pyldapdLastError", f"DESC 'last error of a consumer' {_TEXT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.5", "pyldapdConflicts", f"DESC 'conflicts resolved' {_INT} SINGLE-VALUE {_OP}"),
    (f"{ARC}.1.6", "pyldapdProviderServerID", f"DESC 'server ID of a provider' {_INT} SINGLE-VALUE {_OP}"),
]
_MONITOR_MAY = "description $ seeAlso $ labeledURI $ monitoredInfo $ managedInfo $ monitorOverlay"
MONITOR_CLASSES = [
    (
        f"{_OLM_OC}.1",
        "monitor",
        f"DESC 'OpenLDAP system monitoring' SUP top STRUCTURAL MUST cn MAY ( {_MONITOR_MAY} )",
    ),
    (f"{_OLM_OC}.2", "monitorServer", "DESC 'Server monitoring root entry' SUP monitor STRUCTURAL"),
    (f"{_OLM_OC}.3", "monitorContainer", "DESC 'monitor container class' SUP monitor STRUCTURAL"),
    (f"{_OLM_OC}.4", "monitorCounterObject", "DESC 'monitor counter class' SUP monitor STRUCTURAL"),
    (f"{_OLM_OC}.5", "monitorOperation", "DESC 'monitor operation class' SUP monitor STRUCTURAL"),
    (f"{_OLM_OC}.6", "monitorConnection", "DESC 'monitor connection class' SUP monitor STRUCTURAL"),
    (f"{_OLM_OC}.7", "managedObject", "DESC 'monitor managed entity class' SUP monitor STRUCTURAL"),
    (f"{_OLM_OC}.8", "monitoredObject", "DESC 'monitor monitored entity class' SUP monitor STRUCTURAL"),
    (
        f"{_OLM_OC}.0.1.1.2",
        "olmMDBDatabase",
        "SUP top AUXILIARY MAY ( olmDbDirectory $ olmMDBPagesMax $ "
        "olmMDBPagesUsed $ olmMDBReadersMax $ olmMDBReadersUsed $ olmMDBEntries $ olmMDBPageSize )",
    ),  # fmt: skip
    (
        f"{_OLM_OC}.0.2.1.1",
        "olmSyncReplInstance",
        "SUP monitoredObject STRUCTURAL MAY ( olmSRProviderURIList $ "
        "olmSRConnection $ olmSRSyncPhase $ olmSRNextConnect $ olmSRLastConnect $ olmSRLastContact $ "
        "olmSRLastCookieRcvd $ olmSRLastCookieSent )",
    ),  # fmt: skip
]

# slapd's descriptions of its subsystems' containers
CONTAINERS = {
    "Backends": "This subsystem contains information about available backends.",
    "Connections": "This subsystem contains information about connections.",
    "Databases": "This subsystem contains information about configured databases.",
    "Listeners": "This subsystem contains information about active listeners.",
    "Log": "This subsystem contains information about logging.",
    "Operations": "This subsystem contains information about performed operations.",
    "Overlays": "This subsystem contains information about available overlays.",
    "SASL": "This subsystem contains information about SASL.",
    "Statistics": "This subsystem contains statistics.",
    "Threads": "This subsystem contains information about threads.",
    "Time": "This subsystem contains information about time.",
    "TLS": "This subsystem contains information about TLS.",
    "Waiters": "This subsystem contains information about read/write waiters.",
}
BACKEND_TYPES = ("config", "monitor", "mdb")
OVERLAY_TYPES = ("syncprov",)


def install_schema(schema) -> None:
    """Add the monitor attribute types and object classes the schema does not have yet (by OID or by name)."""
    for oid, name, rest in MONITOR_SCHEMA:
        if schema.attribute_type(oid) is None and schema.attribute_type(name) is None:
            schema.load_text(f"attributetype ( {oid} NAME '{name}' {rest} )", "<monitor>")
    for oid, name, rest in MONITOR_CLASSES:
        if schema.object_class(oid) is None and schema.object_class(name) is None:
            schema.load_text(f"objectclass ( {oid} NAME '{name}' {rest} )", "<monitor>")
    install_conflict_schema(schema, ARC)


def gentime(seconds: float) -> bytes:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(seconds)).encode()


def value(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, bool):
        return b"TRUE" if v else b"FALSE"
    return str(v).encode()


def address(name: Any) -> str:
    """A socket address as slapd's monitor writes it: IP=host:port, or PATH=/socket for ldapi://."""
    if isinstance(name, tuple) and len(name) >= 2:
        host = f"[{name[0]}]" if ":" in str(name[0]) else name[0]
        return f"IP={host}:{name[1]}"
    return f"PATH={name}" if name else ""


def mask(conn: Any, executing: int) -> str:
    """slapd's monitorConnectionMask: r reading, w waiting to write (the client does not read), x operations
    executing, p operations pending, C closing."""
    paused = getattr(conn, "write_paused", False)
    return "".join(
        flag
        for flag, on in (
            ("r", not paused and not getattr(conn, "closing", False)),
            ("w", paused),
            ("x", executing > 0),
            ("p", bool(getattr(conn, "held_pdus", ()))),
            ("C", getattr(conn, "closing", False)),
        )
        if on
    )


class Tree:
    """The entries of one search, in slapd's order, with helpers to add them."""

    def __init__(self, stamp: bytes, creator: str) -> None:
        self.entries: list[Entry] = []
        self.stamp = stamp
        self.creator = creator.encode()

    def add(self, dn: str, object_class: str, **attrs: Any) -> Entry:
        """An entry; keyword arguments are attribute names (values: one value, or a list)."""
        entry = Entry(dn)
        cn = dn.split(",", 1)[0].split("=", 1)[1]
        entry.put("objectclass", "objectClass", [object_class.encode()])
        entry.put("structuralobjectclass", "structuralObjectClass", [object_class.encode()])
        entry.put("cn", "cn", [cn.encode()])
        if self.creator:
            entry.put("creatorsname", "creatorsName", [self.creator])
            entry.put("modifiersname", "modifiersName", [self.creator])
        entry.put("createtimestamp", "createTimestamp", [self.stamp])
        entry.put("modifytimestamp", "modifyTimestamp", [self.stamp])
        for name, values in attrs.items():
            put(entry, name, values)
        self.entries.append(entry)  # entryDN and hasSubordinates are computed when sent
        return entry

    def container(self, name: str, **attrs: Any) -> Entry:
        return self.add(f"cn={name},{MONITOR_DN}", "monitorContainer", description=CONTAINERS[name], **attrs)


def put(entry: Entry, name: str, values: Any) -> None:
    items = values if isinstance(values, list) else [values]
    if items:
        entry.put(name.lower(), name, [value(v) for v in items])


@dataclass
class PeerView:
    """What the other worker processes told for the last cn=Monitor search."""

    connections: list[Entry] = field(default_factory=list)
    consumers: list[Entry] = field(default_factory=list)
    waiting_read: int = 0
    waiting_write: int = 0


@dataclass
class PeerRequest:
    number: int
    waiting: set[int]  # the workers that have not answered in full yet
    parts: dict[int, dict[int, bytes]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def entry_to_json(entry: Entry) -> list:
    return [
        entry.dn,
        [[k, a.name, [base64.b64encode(v).decode() for v in a.values]] for k, a in entry.attrs.items()],
    ]


def entry_from_json(data: list) -> Entry:
    entry = Entry(data[0])
    for key, name, values in data[1]:
        entry.put(key, name, [base64.b64decode(v) for v in values])
    return entry


class Monitor:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.peers = PeerView()  # the other workers' connections and consumers (start_peers)
        install_schema(directory.schema)
        self.ndn = normalize_dn(MONITOR_DN, directory.schema)
        self._policy: tuple[Any, Any] | None = None  # (AccessControl it was built for, Policy)

    def handles(self, ndn: str) -> bool:
        return ndn == self.ndn or is_descendant(ndn, self.ndn)

    def under(self, dn: str) -> bool:
        """A DN as a client wrote it is in cn=Monitor."""
        try:
            return self.handles(normalize_dn(dn, self.directory.schema))
        except DNError:
            return False

    def needs_peers(self, dn: str, scope: int) -> bool:
        """Whether a search of cn=Monitor may show what other workers hold (their connections, consumers,
        conflicts, waiters): not one within another subsystem, as the reads monitoring tools poll are (OpenLDAP's
        test060-mt-hot reads cn=Monitor's entries tens of thousands of times)."""
        try:
            part = self.subsystem(normalize_dn(dn, self.directory.schema), scope)
        except DNError:
            return True
        return part is None or part in PEER_SUBSYSTEMS

    def subsystem(self, base_ndn: str, scope: int) -> str | None:
        """The one subsystem (`connections`, `time`...: the RDN value under cn=Monitor) a search's scope stays
        within; "" for cn=Monitor alone, None for more than one."""
        if base_ndn == self.ndn:
            return "" if scope == Scope.BASE else None
        below = base_ndn[: -len(self.ndn) - 1].rsplit(",", 1)[-1]  # the RDN right under cn=Monitor
        return below.partition("=")[2]

    # -- access ----------------------------------------------------------------------------------------------

    def database(self):
        """The `database monitor` section, when the configuration has one."""
        return next((db for db in self.directory.config.databases if db.type == "monitor"), None)

    def is_monitor_root(self, session: Session, db) -> bool:
        if not (db.rootdn and session.bind_ndn):
            return False
        try:
            return session.bind_ndn == normalize_dn(db.rootdn, self.directory.schema)
        except DNError:
            return False

    def bind_root(self, dn: str, ndn: str, password: bytes) -> tuple[str, str]:
        """A simple bind as the `database monitor` rootdn with its rootpw (slapd allows it); else
        invalidCredentials, as for any DN no database holds."""
        from pyldapd.model.passwords import verify_password

        db = self.database()
        if db is not None and db.rootdn and db.rootpw:
            try:
                root_ndn = normalize_dn(db.rootdn, self.directory.schema)
            except DNError:
                root_ndn = ""
            if ndn == root_ndn and verify_password(password, db.rootpw):
                return dn, ndn
        raise LDAPError(ldap.ResultCode.invalidCredentials)

    def policy(self, db):
        """The monitor database's access rules followed by the global ones (slapd's order), built once per
        access-control generation (cn=config changes build a new AccessControl)."""
        control = self.directory.access
        if self._policy is None or self._policy[0] is not control:
            config = self.directory.config
            built = control.build(db.access, getattr(db, "access_sources", []), config.access,
                                  getattr(config, "access_sources", []))  # fmt: skip
            self._policy = (control, built)
        return self._policy[1]

    def validate(self, config) -> None:
        """Refuse a monitor database's bad access lines (ConfigError naming the line), as slapd does on reading."""
        for db in config.databases:
            if db.type == "monitor":
                self.directory.access.build(db.access, getattr(db, "access_sources", []), config.access,
                                            getattr(config, "access_sources", []))  # fmt: skip

    def reader(self, session: Session, request_filter: Any = None):
        """How `session` reads cn=Monitor: "all", a SearchGuard (per entry and attribute), or None (nothing)."""
        db = self.database()
        if db is None:
            return "all" if self.may_read(session) else None
        if self.is_monitor_root(session, db):
            return "all"
        policy = self.policy(db)
        if policy.default:  # no access line anywhere: slapd's `access to * by * read`
            return "all"
        from pyldapd.server.guard import SearchGuard

        return SearchGuard(self.directory.access, policy, session, None, request_filter, None)

    def may_read(self, session: Session) -> bool:
        """pyldapd's rule when no `database monitor` is configured (see the module's docstring)."""
        config = self.directory.config
        if not config.access and not any(db.access for db in config.databases):
            return True
        ndn = session.bind_ndn
        if not ndn:
            return False
        if any(ndn == b.rootdn_ndn for b in self.directory.backends):
            return True
        local = {f"gidnumber=0+uidnumber=0,{PEERCRED_SUFFIX}",
                 f"gidnumber={os.getgid()}+uidnumber={os.getuid()},{PEERCRED_SUFFIX}"}  # fmt: skip
        return ndn.lower() in local  # the peercred DN in whatever case the schema normalizes it to

    # -- worker processes: what the other workers hold ----------------------------------------------------------

    def start_peers(self, server) -> None:
        """With worker processes (server/supervisor.py) each worker holds its own connections, and worker 0 the
        syncrepl consumers. A search of cn=Monitor first asks the other workers for theirs over the bus
        (`gather_peers`, awaited by the connection before it runs the search), so every worker shows them all."""
        self.peers = PeerView()
        self.peer_requests: dict[int, PeerRequest] = {}
        self.peer_ids = itertools.count(1)
        server.bus.subscribe(PEER_ASK, lambda sender, payload: self.answer_peer(server, sender, payload))
        server.bus.subscribe(PEER_REPLY, self.peer_replied)

    async def gather_peers(self, server) -> None:
        bus = server.bus
        request = PeerRequest(next(self.peer_ids), {i for i in range(bus.count) if i != bus.index})
        self.peer_requests[request.number] = request
        try:
            bus.broadcast(PEER_ASK, request.number.to_bytes(8, "big"))
            if request.waiting:
                await asyncio.wait_for(request.done.wait(), PEER_TIMEOUT)
        except TimeoutError:  # a worker busy or being restarted: shown without its part
            self.directory.log.error(
                f"monitor: no answer from worker(s) {sorted(request.waiting)} in {PEER_TIMEOUT}s"
            )
        finally:
            del self.peer_requests[request.number]
        view = PeerView()
        for sender in sorted(request.parts):
            chunks = request.parts[sender]
            told = json.loads(b"".join(chunks[i] for i in sorted(chunks)))
            view.connections += [entry_from_json(e) for e in told["connections"]]
            view.consumers += [entry_from_json(e) for e in told["consumers"]]
            view.waiting_read += told["waiting"][0]
            view.waiting_write += told["waiting"][1]
        self.peers = view

    def answer_peer(self, server, sender: int, payload: bytes) -> None:
        """Another worker asks: this worker's connection entries (and worker 0's consumers), in parts that fit
        a bus message."""
        tree = Tree(self.directory.started, self.creator())
        self.connection_entries(tree, server)
        consumers = self.consumer_entries() if server.bus.primary else []
        connections = list(getattr(server, "connections", ()))
        data = json.dumps({"connections": [entry_to_json(e) for e in tree.entries],
                           "consumers": [entry_to_json(e) for e in consumers],
                           "waiting": [len(connections), sum(1 for c in connections
                                                             if getattr(c, "write_paused", False))]}).encode()  # fmt: skip
        size = MAX_MESSAGE - 64
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for index, chunk in enumerate(chunks):
            server.bus.send_to(sender, PEER_REPLY, payload[:8] + index.to_bytes(4, "big")
                               + len(chunks).to_bytes(4, "big") + chunk)  # fmt: skip

    def peer_replied(self, sender: int, payload: bytes) -> None:
        request = self.peer_requests.get(int.from_bytes(payload[:8], "big"))
        if request is None:
            return  # answered too late
        part, total = int.from_bytes(payload[8:12], "big"), int.from_bytes(payload[12:16], "big")
        chunks = request.parts.setdefault(sender, {})
        chunks[part] = payload[16:]
        if len(chunks) == total:
            request.waiting.discard(sender)
            if not request.waiting:
                request.done.set()

    def consumer_entries(self) -> list[Entry]:
        """This worker's syncrepl consumers' entries (under their database, and under cn=Syncrepl)."""
        directory = self.directory
        tree = Tree(directory.started, self.creator())
        numbered = [db for db in directory.config.databases if db.type not in ("frontend", "config")]
        backends = {id(b.config): b for b in directory.backends}
        for number, db in enumerate(numbered, 1):
            backend = backends.get(id(db))
            if backend is not None:
                for rid in sorted(backend.consumers):
                    self.consumer_entry(tree, f"cn=Database {number},cn=Databases,{MONITOR_DN}",
                                        backend.consumers[rid])  # fmt: skip
        self.syncrepl(tree)
        # the conflict journals live with the consumers that record them (replication/conflicts.py)
        self.conflict_entries(tree)
        return [
            e for e in tree.entries if e.dn != f"cn=Syncrepl,{MONITOR_DN}"
        ]  # the container: every worker's

    def conflict_entries(self, tree: Tree) -> None:
        """`cn=Conflicts` under each database that replicates from others (cn=config's too): its journal of
        replication conflicts. A database without syncrepl has none to show, and shows none: its monitor
        entries are slapd's only (OpenLDAP's test056-monitor compares them)."""
        directory = self.directory

        def add(dn: str, cn: str, text: str) -> Entry:
            return tree.add(dn, "monitorContainer", description=text)

        def journaled(backend: Any, config: Any) -> bool:  # consumers configured, or conflicts recorded
            journal = getattr(backend, "conflict_journal", None)
            return bool(config is not None and config.syncrepl) or (journal is not None and journal.total > 0)

        configdb = directory.configdb
        own = directory.config.config_database  # cn=config's own consumers (configsync.py)
        if configdb is not None and journaled(configdb.backend, own):
            conflict_monitor_entries(configdb.backend, f"cn=Database 0,cn=Databases,{MONITOR_DN}", add)
        numbered = [db for db in directory.config.databases if db.type not in ("frontend", "config")]
        backends = {id(b.config): b for b in directory.backends}
        for number, db in enumerate(numbered, 1):
            backend = backends.get(id(db))
            if backend is not None and db.type != "monitor" and journaled(backend, db):
                conflict_monitor_entries(backend, f"cn=Database {number},cn=Databases,{MONITOR_DN}", add)

    def creator(self) -> str:
        monitor_db = self.database()
        return monitor_db.rootdn if monitor_db is not None else ""

    # -- the tree ---------------------------------------------------------------------------------------------

    def top_entry(self, tree: Tree) -> Entry:
        """cn=Monitor itself."""
        from pyldapd.backends.mdb import FORMAT_VERSION
        from pyldapd.server.directory import VENDOR_VERSION

        directory = self.directory
        server = getattr(directory, "server", None)
        top = tree.add(MONITOR_DN, "monitorServer", monitoredInfo=[VENDOR_VERSION, f"database format {FORMAT_VERSION}"], description=[
            "This subtree contains monitoring/managing objects.",
            "This object contains information about this server.",
            "Most of the information is held in operational attributes, which must be explicitly requested."])  # fmt: skip
        put(top, "pyldapdServerID", directory.server_id)
        if server is not None and server.urls:
            put(top, "labeledURI", [u.text for u in server.urls if u.scheme != "http"])
        return top

    def entries(self, part: str | None = None) -> list[Entry]:
        """The tree's entries, in slapd's order: cn=Monitor and, for `part`, only that subsystem's (`subsystem`:
        "" for none, None for all). Built for each search (counters move), so a read of one entry builds little."""
        from pyldapd.server.directory import SUPPORTED_CONTROLS

        directory = self.directory
        server = getattr(directory, "server", None)

        def want(name: str) -> bool:
            return part is None or part == name

        stats = (getattr(server, "stats", None) or Stats()).totals()  # every worker's, summed
        now = time.time()
        monitor_db = self.database()
        tree = Tree(directory.started, monitor_db.rootdn if monitor_db is not None else "")

        self.top_entry(tree)
        if part == "":
            return tree.entries

        # databases as slapd numbers them: 0 is cn=config, then the configuration's order
        numbered = [db for db in directory.config.databases if db.type not in ("frontend", "config")]
        db_number = {id(db): index for index, db in enumerate(numbered, 1)}
        backend_number = {name: index for index, name in enumerate(BACKEND_TYPES)}

        if want("backends"):
            controls = list(SUPPORTED_CONTROLS)
            tree.container("Backends", monitoredInfo=list(BACKEND_TYPES))
            for name, index in backend_number.items():
                users = [0] if name == "config" else [db_number[id(d)] for d in numbered if d.type == name]
                tree.add(f"cn=Backend {index},cn=Backends,{MONITOR_DN}", "monitoredObject", monitoredInfo=name,
                         monitorRuntimeConfig=True, supportedControl=controls,
                         seeAlso=[f"cn=Database {n},cn=Databases,{MONITOR_DN}" for n in users])  # fmt: skip
        if want("connections"):
            self.connections(tree, server, stats)
        if want("databases"):
            # with worker processes, the conflicts are worker 0's (its consumers record them): told by gather_peers
            own_conflicts = server is None or server.bus.primary
            self.databases(tree, numbered, db_number, backend_number, own_conflicts)
        if want("listeners"):
            self.listeners(tree, server)
        if want("log"):
            tree.container("Log")
        if want("operations"):
            tree.container("Operations", monitorOpInitiated=sum(stats.initiated.values()),
                           monitorOpCompleted=sum(stats.completed.values()))  # fmt: skip
            for name in OPERATIONS:
                tree.add(f"cn={name},cn=Operations,{MONITOR_DN}", "monitorOperation",
                         monitorOpInitiated=stats.initiated[name], monitorOpCompleted=stats.completed[name])  # fmt: skip
        if want("overlays"):
            tree.container("Overlays", monitoredInfo=list(OVERLAY_TYPES))
            for index, name in enumerate(OVERLAY_TYPES):
                tree.add(f"cn=Overlay {index},cn=Overlays,{MONITOR_DN}", "monitoredObject", monitoredInfo=name,
                         monitorRuntimeConfig=True)  # fmt: skip
        if want("sasl"):
            tree.container("SASL")
        if want("statistics"):
            tree.container("Statistics")
            for name, count in (("Bytes", stats.bytes_sent), ("PDU", stats.pdus_sent),
                                ("Entries", stats.entries_sent), ("Referrals", stats.references_sent)):  # fmt: skip
                tree.add(
                    f"cn={name},cn=Statistics,{MONITOR_DN}", "monitorCounterObject", monitorCounter=count
                )
        if want("threads"):
            self.threads(tree, server.bus.count if server is not None else 1)
        if want("time"):
            tree.container("Time")
            tree.add(
                f"cn=Start,cn=Time,{MONITOR_DN}", "monitoredObject", monitorTimestamp=gentime(stats.started)
            )
            tree.add(f"cn=Current,cn=Time,{MONITOR_DN}", "monitoredObject", monitorTimestamp=gentime(now))
            tree.add(
                f"cn=Uptime,cn=Time,{MONITOR_DN}", "monitoredObject", monitoredInfo=int(now - stats.started)
            )
        if want("tls"):
            tree.container("TLS")
        if want("waiters"):
            tree.container("Waiters")
            connections = list(getattr(server, "connections", ()))
            tree.add(f"cn=Read,cn=Waiters,{MONITOR_DN}", "monitorCounterObject",
                     monitorCounter=len(connections) + self.peers.waiting_read)  # fmt: skip
            tree.add(f"cn=Write,cn=Waiters,{MONITOR_DN}", "monitorCounterObject",
                     monitorCounter=sum(1 for c in connections if getattr(c, "write_paused", False))
                     + self.peers.waiting_write)  # fmt: skip
        if want("syncrepl"):
            self.syncrepl(tree)
        if part is None or part in ("syncrepl", "databases"):
            tree.entries.extend(self.peers.consumers)  # worker 0's, seen from another worker
        return tree.entries

    def connections(self, tree: Tree, server, stats: Totals) -> None:
        tree.container("Connections")
        mine = Tree(tree.stamp, "")
        mine.creator = tree.creator
        self.connection_entries(mine, server)
        # the other workers' too (gather_peers), all in conn=N order
        tree.entries.extend(sorted(mine.entries + self.peers.connections,
                                   key=lambda e: int(e.first("monitorconnectionnumber") or 0)))  # fmt: skip
        connections = list(getattr(server, "connections", ()))
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        tree.add(f"cn=Max File Descriptors,cn=Connections,{MONITOR_DN}", "monitorCounterObject",
                 monitorCounter=limit if limit != resource.RLIM_INFINITY else 0)  # fmt: skip
        tree.add(f"cn=Total,cn=Connections,{MONITOR_DN}", "monitorCounterObject",
                 monitorCounter=stats.connections_total)  # fmt: skip
        tree.add(f"cn=Current,cn=Connections,{MONITOR_DN}", "monitorCounterObject",
                 monitorCounter=max(stats.current_connections, len(connections)))  # fmt: skip  # all workers

    @staticmethod
    def connection_entries(tree: Tree, server) -> None:
        """cn=Connection N of this worker's connections."""
        connections = sorted(getattr(server, "connections", ()), key=lambda c: c.session.conn_id)
        for conn in connections:
            session = conn.session
            transport = getattr(conn, "transport", None)
            local = address(transport.get_extra_info("sockname")) if transport is not None else ""
            executing = max(conn.op_count - getattr(conn, "ops_completed", 0), 0)
            tree.add(f"cn=Connection {session.conn_id},cn=Connections,{MONITOR_DN}", "monitorConnection",
                     monitorConnectionNumber=session.conn_id, monitorConnectionProtocol=3,
                     monitorConnectionOpsReceived=conn.op_count, monitorConnectionOpsExecuting=executing,
                     monitorConnectionOpsPending=len(getattr(conn, "held_pdus", ())),
                     monitorConnectionOpsCompleted=getattr(conn, "ops_completed", 0),
                     monitorConnectionGet=getattr(conn, "reads", 0), monitorConnectionRead=getattr(conn, "reads", 0),
                     monitorConnectionWrite=getattr(conn, "write_waits", 0), monitorConnectionMask=mask(conn, executing),
                     monitorConnectionOpsAsync=0, monitorConnectionAuthzDN=session.bind_dn.encode() or [],
                     monitorConnectionListener=conn.listener_url, monitorConnectionPeerDomain="unknown",
                     monitorConnectionPeerAddress=session.peer, monitorConnectionLocalAddress=local or [],
                     monitorConnectionStartTime=gentime(getattr(conn, "opened_at", 0)),
                     monitorConnectionActivityTime=gentime(getattr(conn, "active_at", 0)))  # fmt: skip

    def databases(self, tree: Tree, numbered: list, db_number: dict, backend_number: dict,
                  own_conflicts: bool = True) -> None:  # fmt: skip
        directory = self.directory
        suffixes = [s for db in numbered if db.type == "mdb" for s in db.suffixes]
        tree.container("Databases", readOnly=False, namingContexts=[b"", b"cn=config", *map(str.encode, suffixes)],
                       monitorContext=MONITOR_DN)  # fmt: skip
        tree.add(f"cn=Frontend,cn=Databases,{MONITOR_DN}", "monitoredObject", monitoredInfo="frontend",
                 monitorIsShadow=False, namingContexts=b"", readOnly=False)  # fmt: skip
        tree.add(f"cn=Database 0,cn=Databases,{MONITOR_DN}", "monitoredObject", monitoredInfo="config",
                 monitorIsShadow=False, namingContexts="cn=config", readOnly=False,
                 seeAlso=f"cn=Backend {backend_number['config']},cn=Backends,{MONITOR_DN}")  # fmt: skip
        backends = {id(b.config): b for b in directory.backends}
        for db in numbered:
            number = db_number[id(db)]
            dn = f"cn=Database {number},cn=Databases,{MONITOR_DN}"
            see_also = f"cn=Backend {backend_number.get(db.type, 0)},cn=Backends,{MONITOR_DN}"
            if db.type == "monitor":
                tree.add(dn, "monitoredObject", monitoredInfo="monitor", monitorIsShadow=False,
                         monitorContext=MONITOR_DN, readOnly=False, seeAlso=see_also)  # fmt: skip
                continue
            backend = backends.get(id(db))
            if backend is None:
                continue
            entry = tree.add(dn, "monitoredObject", monitoredInfo=db.declared_type or db.type,
                             monitorIsShadow=backend.shadow, namingContexts=list(db.suffixes),
                             readOnly=bool(db.readonly), seeAlso=see_also,
                             monitorOverlay=overlay_names(backend))  # fmt: skip
            entry.attrs["objectclass"].values.append(b"olmMDBDatabase")
            if backend.superior is not None:  # a glued subordinate names its superior, as back-monitor does
                put(entry, "monitorSuperiorDN", backend.superior.config.suffix)
            if backend.shadow and db.updateref:
                put(entry, "monitorUpdateRef", db.updateref[0])
            self.mdb_figures(entry, backend)
            # pyldapd's own: the live contextCSN vector, the entry count and the database's role. With several
            # workers, first what the others committed (server/journal.py), as a read of the suffix entry does:
            # a commit that moved only the vector (a consumer's cookie) sends no bus message
            if backend.journal is not None:
                backend.journal.catch_up()
            values = backend.context.values()
            if values:
                entry.put("contextcsn", "contextCSN", values)
            roles = []
            if backend.provider is not None:
                roles.append("provider (syncprov)")
            if backend.consumers or db.syncrepl:
                roles.append("multi-provider consumer" if db.multiprovider else "consumer")
            if db.readonly:
                roles.append("read-only")
            put(entry, "description", ", ".join(roles or ["standalone"]))
            for rid in sorted(backend.consumers):
                self.consumer_entry(tree, dn, backend.consumers[rid])
        if own_conflicts:
            self.conflict_entries(tree)

    @staticmethod
    def mdb_figures(entry: Entry, backend) -> None:
        try:
            env = backend.db.env
            info, stat = env.info(), env.stat()
            with backend.db.read() as txn:
                count = txn.count()
        except Exception:  # figures are not worth failing the search for
            return
        put(entry, "olmMDBPagesMax", info["map_size"] // stat["psize"])
        put(entry, "olmMDBPagesUsed", info["last_pgno"] + 1)
        put(entry, "olmMDBReadersMax", info["max_readers"])
        put(entry, "olmMDBReadersUsed", info["num_readers"])
        put(entry, "olmMDBEntries", count)
        put(entry, "olmMDBPageSize", stat["psize"])
        put(entry, "olmDbDirectory", os.path.join(backend.config.directory, ""))
        put(entry, "monitorCounter", count)

    @staticmethod
    def consumer_entry(tree: Tree, database_dn: str, consumer) -> None:
        """OpenLDAP 2.6's syncrepl status entry (olmSyncReplInstance) under the consumer's database."""
        connected = getattr(consumer, "client", None) is not None

        def stamp(seconds: float) -> bytes:
            return gentime(seconds) if seconds else ZERO_TIME

        tree.add(f"cn=Consumer {consumer.rid:03d},{database_dn}", "olmSyncReplInstance",
                 olmSRProviderURIList=consumer.spec.provider,
                 olmSRConnection=getattr(consumer, "local_address", "") if connected else b"",
                 olmSRSyncPhase="Persist" if consumer.refresh_done else "Refresh",
                 olmSRNextConnect=stamp(0 if connected else getattr(consumer, "next_connect", 0)),
                 olmSRLastConnect=stamp(getattr(consumer, "last_connect", 0)),
                 olmSRLastContact=stamp(getattr(consumer, "last_contact", 0)),
                 olmSRLastCookieRcvd=getattr(consumer, "last_cookie_rcvd", b""),
                 olmSRLastCookieSent=getattr(consumer, "last_cookie_sent", b""))  # fmt: skip

    @staticmethod
    def listeners(tree: Tree, server) -> None:
        tree.container("Listeners")
        urls = [u for u in getattr(server, "urls", ()) if u.scheme != "http"]
        sockets = [listener.sockets for listener in getattr(server, "listeners", ())]
        for index, url in enumerate(urls):
            local = ""
            if index < len(sockets) and sockets[index]:
                local = address(sockets[index][0].getsockname())
            tree.add(f"cn=Listener {index},cn=Listeners,{MONITOR_DN}", "monitoredObject",
                     monitorConnectionLocalAddress=local or [], labeledURI=url.text)  # fmt: skip

    @staticmethod
    def threads(tree: Tree, workers: int = 1) -> None:
        """slapd's thread pool figures for pyldapd's pool: `threads` / olcThreads worker processes, each one
        event loop always running (server/supervisor.py)."""
        tree.container("Threads")
        for name, info, description in (
            ("Max", workers, "Maximum number of threads as configured"),
            ("Max Pending", 0, "Maximum number of pending threads"),
            ("Open", workers, "Number of open threads"),
            ("Starting", 0, "Number of threads being started"),
            ("Active", workers, "Number of active threads"),
            ("Pending", 0, "Number of pending threads"),
            ("Backload", workers, "Number of active plus pending threads"),
            ("State", "running", "Thread pool state"),
            ("Runqueue", None, "Queue of running threads - besides those handling operations"),
            ("Tasklist", None, "List of running plus standby threads - besides those handling operations"),
        ):
            tree.add(f"cn={name},cn=Threads,{MONITOR_DN}", "monitoredObject",
                     monitoredInfo=[] if info is None else info, description=description)  # fmt: skip

    def syncrepl(self, tree: Tree) -> None:
        """pyldapd's own consumer entries (read by `pyldapd status`)."""
        tree.add(f"cn=Syncrepl,{MONITOR_DN}", "monitorContainer", description="the syncrepl consumers")
        for backend in self.directory.replicated():  # cn=config's own consumers too
            for rid in sorted(backend.consumers):
                consumer = backend.consumers[rid]
                status = consumer.status()
                entry = tree.add(f"cn=Consumer {rid:03d},cn=Syncrepl,{MONITOR_DN}", "monitoredObject",
                                 description=f"syncrepl rid={rid:03d}", pyldapdSyncRid=rid,
                                 labeledURI=str(status.get("provider", "")),
                                 namingContexts=consumer.spec.searchbase,
                                 pyldapdSyncState=str(status.get("state", "")),
                                 pyldapdConflicts=status.get("conflicts", 0))  # fmt: skip
                last_error = str(status.get("last_error") or "").strip()
                if last_error:
                    put(entry, "pyldapdLastError", last_error)
                if getattr(consumer, "provider_sid", None) is not None:
                    put(entry, "pyldapdProviderServerID", consumer.provider_sid)

    # -- search -----------------------------------------------------------------------------------------------

    def search(self, session: Session, message_id: int, base_ndn: str, scope: Scope, matches: Callable,
               selection, send: Callable[[bytes], None], request_filter: Any = None) -> int:  # fmt: skip
        """Answer a search whose base is in cn=Monitor; returns the number of entries sent."""
        reader = self.reader(session, request_filter)
        if reader is None:
            raise LDAPError(ldap.ResultCode.noSuchObject, "")
        part = self.subsystem(base_ndn, scope)  # (one subsystem's entries only: reads are polled often)
        entries = self.entries(part)
        schema = self.directory.schema
        by_ndn = {normalize_dn(e.dn, schema): e for e in entries}
        guard = None if reader == "all" else reader
        base = by_ndn.get(base_ndn)
        if base is None or (guard is not None and not guard.discloses(base, base_ndn)):
            matched = self.matched(base_ndn, by_ndn)
            if guard is not None and matched and not guard.discloses(by_ndn[normalize_dn(matched, schema)]):
                matched = ""
            raise LDAPError(ldap.ResultCode.noSuchObject, "", matched_dn=matched)
        if guard is not None:
            denied = guard.base_denied(base, base_ndn)
            if denied is not None:
                raise LDAPError(denied, "")
            matches = guard.matches
        parents = {ndn: ndn.split(",", 1)[1] if "," in ndn else "" for ndn in by_ndn}
        with_children = set(parents.values()) | {self.ndn}
        sent = 0
        live = self.live_statistics()
        for ndn, entry in by_ndn.items():
            if not in_scope(ndn, base_ndn, scope, parents[ndn]):
                continue
            if ndn in live:  # as slapd's, counted as it is sent: what this search sent before it included
                entry.put("monitorcounter", "monitorCounter", [str(live[ndn]()).encode()])
            if not matches(entry):
                continue
            if guard is not None:
                blob = guard.encode(entry, selection, lambda n: n in with_children)
                if blob is None:
                    continue
            else:
                blob = selection.encode(entry, lambda n: n in with_children)
            send(ldap.encode_search_result_entry(message_id, entry.dn, blob))
            sent += 1
        return sent

    def live_statistics(self) -> dict[str, Callable[[], int]]:
        """cn=Statistics' counters by normalized DN, each read from every worker's counters when called."""
        server = getattr(self.directory, "server", None)
        stats = getattr(server, "stats", None)
        if stats is None:
            return {}
        fields = {
            "bytes": "bytes_sent",
            "pdu": "pdus_sent",
            "entries": "entries_sent",
            "referrals": "references_sent",
        }
        suffix = normalize_dn(f"cn=Statistics,{MONITOR_DN}", self.directory.schema)
        return {
            f"cn={name},{suffix}": (lambda field=field: getattr(stats.totals(), field))
            for name, field in fields.items()
        }

    def compare(self, session: Session, ndn: str, at, request, controls) -> int:
        """A compare on a cn=Monitor entry, under the same rules as a search (slapd answers both)."""
        from pyldapd.server.acl import COMPARE

        reader = self.reader(session)
        if reader is None:
            raise LDAPError(ldap.ResultCode.noSuchObject, "")
        by_ndn = {normalize_dn(e.dn, self.directory.schema): e for e in self.entries()}
        entry = by_ndn.get(ndn)
        guard = None if reader == "all" else reader
        if entry is None:
            matched = self.matched(ndn, by_ndn) if guard is None else ""
            raise LDAPError(ldap.ResultCode.noSuchObject, "", matched_dn=matched)
        if guard is not None and not guard.can(entry, ndn, at.key, COMPARE, request.value):
            # slapd hides the entry from who may not even know it is there
            if not guard.discloses(entry, ndn):
                raise LDAPError(ldap.ResultCode.noSuchObject, "")
            raise LDAPError(ldap.ResultCode.insufficientAccessRights, "")
        return self.directory.compare_values(at, request, controls, entry)

    @staticmethod
    def matched(ndn: str, by_ndn: dict[str, Entry]) -> str:
        while "," in ndn:
            ndn = ndn.split(",", 1)[1]
            if ndn in by_ndn:
                return by_ndn[ndn].dn
        return ""


def in_scope(ndn: str, base: str, scope: Scope, parent: str) -> bool:
    if scope == Scope.BASE:
        return ndn == base
    if scope == Scope.ONE:
        return parent == base
    if scope == Scope.SUB:
        return ndn == base or is_descendant(ndn, base)
    return is_descendant(ndn, base)  # children


def overlay_names(backend) -> list[str]:
    """A database's overlays as monitorOverlay lists them; a glue superior without an explicit glue overlay has
    the one slapd adds for it first in its chain."""
    names = [o.name for o in backend.config.overlays]
    if backend.subordinates and "glue" not in names:
        names.insert(0, "glue")
    return names
