"""The cn=config database served over LDAP: read and changed at run time, as slapd's back-config.

Every accepted change is validated by building the whole configuration it leads to (an invalid change is refused
and changes nothing), applied to the running server (overlays, consumers, server ID, access, indexes, schema,
limits, log level), then written to the slapd.d directory, file by file, atomically.
Only root over ldapi (SASL EXTERNAL) and the config database's rootdn may read or change it, as Debian's
default `olcAccess` on `olcDatabase={0}config` says.
"""

from __future__ import annotations

import asyncio
import re
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import Scope
from pyldapd.config.cnconfig import (
    CONFIG_DN,
    DATA_TYPES,
    SCHEMA_DN,
    SCHEMA_ELEMENTS,
    ConfigValueError,
    canonical_name,
    config_from_entries,
    config_schema,
    first,
    is_ordered,
    module_entry_for,
    order_of,
    remove_entry_file,
    split_dn,
    strip_order,
    write_slapd_d,
)
from pyldapd.config.model import ServerConfig
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, parent_dn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.filter import FilterEvaluator
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.replication.state import Change
from pyldapd.server.entries import check_entry, validate_values
from pyldapd.server.errors import LDAPError

if TYPE_CHECKING:
    from pyldapd.server.app import Server
    from pyldapd.server.configshare import ConfigShare

# what the config database takes besides its root: its replication (replication/configsync.py)
CONFIG_REPLICATION = ("olcsyncrepl", "olcmultiprovider", "olcupdateref")
ROOT_PEERCRED = "gidnumber=0+uidnumber=0,cn=peercred,cn=external,cn=auth"
# the overlays pyldapd implements; slapd refuses an olcOverlay it has no module for
OVERLAYS = ("syncprov", "accesslog", "glue")
SYNTAX_OID = re.compile(r"\bSYNTAX\s+'?([0-9.]+)", re.IGNORECASE)
# a definition naming one the schema lacks (model/schema.py's message) -> slapd's attribute and words
SCHEMA_NOT_FOUND = [
    (r"objectclass \S+: unknown superior object class '([^']+)'", "olcObjectClasses", "ObjectClass"),
    (r"objectclass \S+: unknown attribute type '([^']+)'", "olcObjectClasses", "AttributeType"),
    (r"attributetype \S+: unknown superior attribute type '([^']+)'", "olcAttributeTypes", "AttributeType"),
    (r"attributetype \S+: unknown \w+ matching rule '([^']+)'", "olcAttributeTypes", "MatchingRule"),
]


def rdn_type(ndn: str) -> str:
    return ndn.split("=", 1)[0].strip().lower()


def names_config(dn: str) -> bool:
    """Does this DN (as the client wrote it) lie in cn=config? Checked before normalizing: the main schema
    does not know the olc* attribute types that config DNs use."""
    last = split_dn(dn.strip())[-1].replace(" ", "").lower()
    return last == CONFIG_DN


class ConfigDatabase:
    @classmethod
    def in_memory(cls, server: Server, config: ServerConfig) -> ConfigDatabase:
        """slapd -f with a `database config` section: cn=config made from the slapd.conf, changed at run time
        in memory only (slapd writes nothing without -F). Databases are numbered from {1} in file order."""
        from pyldapd.config.cnconfig import entries_from_config

        monitor = any(db.type == "monitor" for db in config.databases)
        entries = [e for e in entries_from_config(config) if monitor or not (
            e.dn.lower().startswith("olcdatabase=") and strip_order(first(e, "olcDatabase")).lower() == "monitor")]  # fmt: skip
        database = cls(server, None, entries)
        existing = database.data_databases(database.entries)
        # file order: the monitor database where slapd.conf declares it (test043 edits {1}accesslog of the
        # database after its log database, with `database monitor` last)
        monitors = [e for _, e in existing if strip_order(first(e, "olcDatabase")).lower() == "monitor"]
        others = [e for _, e in existing if strip_order(first(e, "olcDatabase")).lower() != "monitor"]
        ordered = []
        for db in config.databases:
            if db.type == "monitor" and monitors:
                ordered.append(monitors.pop(0))
            elif db.type not in ("monitor", "config", "frontend") and others:
                ordered.append(others.pop(0))
        ordered += monitors + others
        changed, removed = database.renumbered(ordered, existing)
        for ndn in removed:
            del database.entries[ndn]
        database.entries.update(changed)
        database.entries = tree_order(database.entries)
        return database

    def __init__(self, server: Server, directory: str | None, entries: list[Entry]) -> None:
        self.server = server
        self.path = directory
        self.schema = config_schema()
        self.filters = FilterEvaluator(self.schema)
        self.entries: dict[str, Entry] = {}
        for entry in entries:
            self.entries[self.ndn(entry.dn)] = entry
        from pyldapd.replication.configsync import ConfigBackend

        # cn=config as syncprov and syncrepl see a database (replication of cn=config itself)
        self.backend = ConfigBackend(self)
        # the client write being committed (connection, DN as requested, a modify's changes): what accesslog
        # on cn=config logs of it
        self.request: tuple[int, str, list[ldap.Change]] | None = None
        # with several worker processes: the shared lock and log of cn=config operations (server/configshare.py),
        # the last record this worker has applied (sequence, offset after it), and whether one is being applied
        self.share: ConfigShare | None = None
        self.applied = (0, 0)
        self.replaying = False

    # -- one cn=config in every worker process (server/configshare.py) -------------------------------------

    def attach_share(self, share: ConfigShare) -> None:
        """Serve cn=config from a worker of several: changes serialized by the shared lock, logged, and the
        other workers' logged changes applied here (when told over the bus, and before each write)."""
        self.share = share
        self.server.bus.subscribe("config", lambda _sender, _payload: self.catch_up())
        # the supervisor dropped messages meant for this worker: the log itself says what is left to apply
        self.server.bus.subscribe("resync", lambda _sender, _payload: self.catch_up())

    def mark_applied(self) -> None:
        """This worker read cn=config from slapd.d under the lock: everything logged so far is in it."""
        if self.share is not None:
            for seq, end, _ in self.share.read_after(*self.applied):
                self.applied = (seq, end)

    @contextmanager
    def serialized(self) -> Iterator[None]:
        """Hold the cn=config lock of all workers (nested holds are free): what other workers logged is applied
        first, so that a change is validated against the current configuration."""
        share = self.share
        if share is None or self.replaying:
            yield
            return
        first_hold = not share.held
        share.lock(self.server.log)
        try:
            if first_hold:
                self.catch_up()
            yield
        finally:
            self.release()

    @asynccontextmanager
    async def serialized_async(self) -> AsyncIterator[None]:
        """`serialized` for a client write on the event loop: waiting for another worker's write (they take
        milliseconds) sleeps instead of blocking the loop."""
        share = self.share
        if share is None:
            yield
            return
        from pyldapd.server.configshare import LOCK_PATIENCE

        delay = 0.0005
        deadline = asyncio.get_running_loop().time() + LOCK_PATIENCE
        while not share.try_lock():
            if asyncio.get_running_loop().time() > deadline:  # a live worker stuck under the lock: a bug
                self.server.log.error("pyldapd: cn=config write refused: another worker has held the "
                                      f"configuration lock for {LOCK_PATIENCE:.0f} s")  # fmt: skip
                raise LDAPError(ResultCode.busy, "cn=config is being changed by another worker")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
        try:
            if share.depth == 1:
                self.catch_up()
            yield
        finally:
            self.release()

    def release(self) -> None:
        assert self.share is not None
        if self.share.unlock():  # something logged: the others apply it now
            self.server.bus.broadcast("config", str(self.applied[0]).encode())

    def log_operation(self, record: dict[str, Any]) -> None:
        """Append an operation this worker made (the lock held) to the shared log; it is applied here already."""
        if self.share is None or self.replaying:
            return
        self.applied = self.share.append(record)

    def catch_up(self) -> None:
        """Apply, in order, every logged operation of other workers not applied here yet."""
        if self.share is None or self.replaying:
            return
        for seq, end, record in self.share.read_after(*self.applied):
            self.applied = (seq, end)  # first: a record that fails here is reported once, not retried forever
            self.replay(seq, record)

    def catch_up_at_start(self) -> None:
        """A worker forked after cn=config changed (a restart, one more olcThreads): the logged operations folded
        into the configuration they lead to, made effective once before the first client (the log holds every
        change since the server started: one validation and one Server.apply_config, not one each)."""
        from pyldapd.server.configshare import decode_entry

        if self.share is None:
            return
        records = list(self.share.read_after(*self.applied))
        if not records:
            return
        entries = dict(self.entries)
        for _, _, record in records:
            for ndn in record.get("removed", []):  # as commit does: the removed first, then the changed
                entries.pop(ndn, None)
            for ndn, data in record.get("entries", []):
                entries[ndn] = entry = decode_entry(data)
                if entry.first("entrycsn"):
                    self.server.directory.csn.observe(entry.first("entrycsn") or b"")
        self.applied = records[-1][:2]
        changed = {ndn: e for ndn, e in entries.items() if self.entries.get(ndn) is not e}
        removed = [ndn for ndn in self.entries if ndn not in entries]
        self.replaying = True
        try:
            self.commit(changed, removed, databases_may_change=True, replicated=True, renamed=set(changed),
                        replay=True, publish=False)  # fmt: skip
            self.backend.context.load(None, self.entries.get(CONFIG_DN, Entry(CONFIG_DN)).get("contextcsn"))
        except Exception as exc:  # noqa: BLE001 (each was validated where it was made: failing here is a bug)
            self.server.log.error(f"pyldapd: BUG: cn=config operations 1-{records[-1][0]} of other workers not "
                                  f"applied in worker {self.server.bus.index}: {exc!r}; its cn=config differs")  # fmt: skip
        finally:
            self.replaying = False

    def replay(self, seq: int, record: dict[str, Any]) -> None:
        """One operation another worker made: through the same path as there, without writing slapd.d."""
        from pyldapd.server.configshare import decode_entry

        self.replaying = True
        try:
            entries = [(ndn, decode_entry(data)) for ndn, data in record.get("entries", [])]
            for _, entry in entries:  # this worker's CSNs from now on sort after the other worker's
                csn = entry.first("entrycsn")
                if csn:
                    self.server.directory.csn.observe(csn)
            if record["op"] == "commit":
                self.commit(dict(entries), record["removed"], databases_may_change=record["databases"],
                            replicated=record["replicated"], renamed=set(record["renamed"]),
                            csns=record["csns"], replay=True)  # fmt: skip
            else:  # "put": entries stored as they are (contextCSN, identities), nothing to make effective
                for ndn, entry in entries:
                    self.entries[ndn] = entry
                if CONFIG_DN in dict(entries):  # the other worker's consumer or provider moved the vector
                    self.backend.context.load(None, self.entries[CONFIG_DN].get("contextcsn"))
        except Exception as exc:  # noqa: BLE001 (validated where it was made: failing here is a bug)
            self.server.log.error(f"pyldapd: BUG: cn=config operation {seq} of another worker not applied in "
                                  f"worker {self.server.bus.index}: {exc!r}; this worker's cn=config differs")  # fmt: skip
        finally:
            self.replaying = False

    def log_put(self, entries: list[Entry]) -> None:
        """Entries changed outside a commit (contextCSN, entryUUIDs): stored alike in the other workers."""
        from pyldapd.server.configshare import encode_entry

        if self.share is not None and not self.replaying:
            self.log_operation({"op": "put", "entries": [[self.ndn(e.dn), encode_entry(e)] for e in entries]})

    # -- names and rights -----------------------------------------------------------------------------------

    def ndn(self, dn: str) -> str:
        try:
            return normalize_dn(dn, self.schema)
        except DNError:
            raise LDAPError(ResultCode.invalidDNSyntax, "invalid DN") from None

    def rootdn_ndn(self) -> str:
        entry = self.entries.get(self.ndn("olcDatabase={0}config,cn=config"))
        if entry is None:
            return ""
        return self.ndn(first(entry, "olcRootDN") or CONFIG_DN)  # slapd's default rootdn: cn=config

    def root_password(self, ndn: str) -> bytes:
        """olcRootPW of the config database when `ndn` is its rootdn (b"": no simple bind as the rootdn)."""
        entry = self.entries.get(self.ndn("olcDatabase={0}config,cn=config"))
        if entry is None or not ndn or ndn != self.rootdn_ndn():
            return b""
        return entry.first("olcrootpw") or b""

    def allowed(self, session: Any) -> bool:
        ndn = session.bind_ndn
        return bool(ndn) and (ndn.lower() == ROOT_PEERCRED or ndn == self.rootdn_ndn())

    def require_write(self, session: Any, dn: str = "") -> None:
        if session.anonymous:
            raise LDAPError(ResultCode.strongerAuthRequired, "modifications require authentication")
        if not self.allowed(session):
            raise LDAPError(ResultCode.insufficientAccessRights, "")
        # a plain consumer of another server's cn=config refers writes to it, as slapd's single shadow does
        self.server.directory.check_shadow(self.backend, dn, session)

    # -- search and compare ---------------------------------------------------------------------------------

    def search(self, session: Any, message_id: int, request: ldap.SearchRequest, selection_factory: Callable,
               send: Callable[[bytes], None]) -> int:  # fmt: skip
        base = self.ndn(request.base)
        self.lookup(base)
        if not self.allowed(session):
            raise LDAPError(ResultCode.noSuchObject, "")
        from pyldapd.replication.provider import in_scope

        matches = self.filters.compile(request.filter)
        selection = selection_factory(self.schema, request.attributes, request.types_only)
        sent = 0
        for ndn, entry in self.entries.items():
            if in_scope(ndn, base, Scope(request.scope)) and matches(entry):
                send(
                    ldap.encode_search_result_entry(
                        message_id, entry.dn, selection.encode(entry, self.has_children)
                    )
                )
                sent += 1
        return sent

    def lookup(self, ndn: str) -> Entry:
        """The entry, or noSuchObject with the closest existing superior as matchedDN (as slapd, whoever asks)."""
        entry = self.entries.get(ndn)
        if entry is not None:
            return entry
        parent = ndn
        while parent:
            parent = parent_dn(parent)
            if parent in self.entries:
                raise LDAPError(ResultCode.noSuchObject, "", matched_dn=self.entries[parent].dn)
        raise LDAPError(ResultCode.noSuchObject, "")

    def has_children(self, ndn: str) -> bool:
        return any(is_descendant(other, ndn) for other in self.entries)

    def compare(self, session: Any, request: ldap.CompareRequest) -> int:
        ndn = self.ndn(request.dn)
        self.lookup(ndn)
        if not self.allowed(session):
            raise LDAPError(ResultCode.noSuchObject, "")
        at = self.schema.attribute_type(canonical_name(self.schema, request.attr))
        if at is None:
            raise LDAPError(ResultCode.undefinedAttributeType, f"{request.attr}: attribute type undefined")
        stored = self.entries[ndn].get(at.key)
        if not stored:
            raise LDAPError(ResultCode.noSuchAttribute, "")
        wanted = at.equality.normalize(request.value) if at.equality else request.value
        normalize = at.equality.normalize if at.equality else (lambda v: v)
        return (
            ResultCode.compareTrue if any(normalize(v) == wanted for v in stored) else ResultCode.compareFalse
        )

    # -- updates --------------------------------------------------------------------------------------------

    def modify(self, session: Any, request: ldap.ModifyRequest, controls: list[Control]) -> list[Control]:
        with self.serialized(), self.client_write(session, request.dn, request.changes):
            return self.modify_entry(session, request)

    def modify_entry(self, session: Any, request: ldap.ModifyRequest) -> list[Control]:
        if session.anonymous:
            raise LDAPError(ResultCode.strongerAuthRequired, "modifications require authentication")
        ndn = self.ndn(request.dn)
        current = self.lookup(ndn)
        self.require_write(session, request.dn)
        self.check_fixed_database(ndn, current, request.changes)
        self.check_schema_root(ndn, request.changes)
        entry = current.copy()
        naming = self.schema.attribute_type(rdn_type(ndn))
        for change in request.changes:
            at = self.schema.attribute_type(canonical_name(self.schema, change.attr))
            if at is not None and at.key == "objectclass":
                raise LDAPError(ResultCode.unwillingToPerform, "objectclass modification disallowed")
            if at is not None and naming is not None and at.key == naming.key:
                raise LDAPError(ResultCode.notAllowedOnRDN, "Use modrdn to change the entry name")
            self.apply_change(entry, change)
            if change.values and change.operation in (ldap.MOD_ADD, ldap.MOD_REPLACE):
                self.check_shadow(entry, canonical_name(self.schema, change.attr))
        check_entry(self.schema, entry, check_rdn=False)
        self.check_schema_values(ndn, entry)
        self.commit({ndn: entry}, [], who=session.bind_ndn)
        return []

    def check_schema_root(self, ndn: str, changes: list[ldap.Change]) -> None:
        """Schema elements are read from the entries below cn=schema,cn=config (cn={N}name), not from that entry
        itself, where slapd shows its built-in schema: a change of its elements is refused, not stored unread."""
        if ndn != self.ndn(SCHEMA_DN):
            return
        for change in changes:
            name = canonical_name(self.schema, change.attr)
            if name.lower() in SCHEMA_ELEMENTS:
                raise LDAPError(ResultCode.unwillingToPerform, f"<{name}> of cn=schema,cn=config not supported "
                                "by pyldapd: add them in an entry below it (cn=name,cn=schema,cn=config)")  # fmt: skip

    def check_fixed_database(self, ndn: str, entry: Entry, changes: list[ldap.Change]) -> None:
        """The config database has fixed rules in pyldapd (root over ldapi and the config rootdn): only its
        olcRootDN and olcRootPW, which those rules and the rootdn's bind use, change. The monitor database takes
        its rootdn, rootpw and access rules (server/monitor.py), nothing else."""
        if rdn_type(ndn) != "olcdatabase":
            return
        kind = strip_order(first(entry, "olcDatabase")).lower()
        if kind not in ("config", "monitor"):
            return
        for change in changes:
            name = canonical_name(self.schema, change.attr)
            allowed = (
                {"olcrootdn", "olcrootpw", *CONFIG_REPLICATION} if kind == "config"
                else {"olcrootdn", "olcrootpw", "olcaccess"}
            )  # fmt: skip
            if name.lower() not in allowed:
                raise LDAPError(ResultCode.unwillingToPerform,
                                f"<{name}> not supported by pyldapd on the {kind} database")  # fmt: skip

    def check_values(self, at, description: str, values: list[bytes]) -> None:
        validate_values(at, description, values)
        if at.key == "objectclass":
            for index, value in enumerate(values):
                if self.schema.object_class(value.decode("utf-8", "replace")) is None:
                    raise LDAPError(
                        ResultCode.invalidAttributeSyntax, f"objectClass: value #{index} invalid per syntax"
                    )
        if at.key == "olcspcheckpoint":
            for value in values:
                words = value.split()
                if len(words) != 2 or not all(w.isdigit() for w in words):
                    raise LDAPError(
                        ResultCode.constraintViolation, "<olcSpCheckpoint> missing <ops> <minutes> argument"
                    )

    def check_shadow(self, entry: Entry, name: str) -> None:
        """olcMultiProvider and olcUpdateRef need a consumer (olcSyncrepl or olcUpdateDN) already in place:
        slapd applies a modify's changes in order, an add's attributes in the object class's MAY order."""
        if not entry.dn.lower().startswith("olcdatabase="):
            return
        shadow = bool(entry.get("olcsyncrepl") or entry.get("olcupdatedn"))
        if shadow:
            return
        if name.lower() == "olcmultiprovider":
            raise LDAPError(ResultCode.other, "<olcMultiProvider> database is not a shadow")
        if name.lower() == "olcupdateref":
            raise LDAPError(ResultCode.other, "<olcUpdateRef> must appear after syncrepl or updatedn")

    def apply_change(self, entry: Entry, change: ldap.Change) -> None:
        name = canonical_name(self.schema, change.attr)
        at = self.schema.attribute_type(name)
        if at is None:
            raise LDAPError(ResultCode.undefinedAttributeType, f"{change.attr}: attribute type undefined")
        key = at.key
        ordered = is_ordered(self.schema, name)
        current = [v.decode() for v in entry.get(key)]
        if ordered:
            current = [strip_order(v) for v in sorted(current, key=lambda v: order_of(v) or 0)]
        self.check_values(at, change.attr, change.values)
        incoming = [v.decode("utf-8", "replace") for v in change.values]
        op = change.operation
        if op == ldap.MOD_ADD:
            if not incoming:
                raise LDAPError(ResultCode.protocolError, f"modify/add: {name}: no values given")
            for value in incoming:
                position = order_of(value) if ordered else None
                body = strip_order(value) if ordered else value
                if not ordered and any(self.same(at, body, v) for v in current):
                    raise LDAPError(
                        ResultCode.attributeOrValueExists, f"modify/add: {name}: value #0 already exists"
                    )
                if position is None or position >= len(current):
                    current.append(body)
                else:
                    current.insert(max(position, 0), body)
            if at.single_value and len(current) > 1:
                raise LDAPError(
                    ResultCode.constraintViolation, f"attribute '{name}' cannot have multiple values"
                )
        elif op == ldap.MOD_DELETE:
            if not current:
                raise LDAPError(ResultCode.noSuchAttribute, f"modify/delete: {name}: no such attribute")
            if not incoming:
                current = []
            for value in incoming:
                position = order_of(value) if ordered else None
                body = strip_order(value) if ordered else value
                if position is not None and (not body or (0 <= position < len(current) and self.same(
                        at, body, current[position]))):  # fmt: skip
                    if not 0 <= position < len(current):
                        raise LDAPError(ResultCode.noSuchAttribute, f"modify/delete: {name}: no such value")
                    del current[position]
                    continue
                kept = [v for v in current if not self.same(at, body, v)]
                if len(kept) == len(current):
                    raise LDAPError(ResultCode.noSuchAttribute, f"modify/delete: {name}: no such value")
                current = kept
        elif op == ldap.MOD_REPLACE:
            current = [strip_order(v) for v in incoming] if ordered else incoming
        else:
            raise LDAPError(
                ResultCode.unwillingToPerform, f"modify/increment: {name}: not supported in cn=config"
            )
        stored = [f"{{{i}}}{v}" for i, v in enumerate(current)] if ordered else current
        entry.put(key, at.name, [v.encode() for v in stored])

    @staticmethod
    def same(at, a: str, b: str) -> bool:
        if at.equality is None:
            return a == b
        return at.equality.normalize(a.encode()) == at.equality.normalize(b.encode())

    @contextmanager
    def client_write(self, session: Any, dn: str, changes: list[ldap.Change]) -> Iterator[None]:
        self.request = (session.conn_id, dn, list(changes))
        try:
            yield
        finally:
            self.request = None

    def add(self, session: Any, request: ldap.AddRequest, controls: list[Control]) -> list[Control]:
        with self.serialized(), self.client_write(session, request.dn, []):
            return self.add_entry(session, request)

    def add_entry(self, session: Any, request: ldap.AddRequest) -> list[Control]:
        if session.anonymous:
            raise LDAPError(ResultCode.strongerAuthRequired, "modifications require authentication")
        rdn, _, parent = request.dn.partition(",")
        parent_ndn = self.ndn(parent)
        if parent_ndn not in self.entries:
            self.lookup(parent_ndn)
        self.require_write(session, request.dn)
        for description, values in request.attributes:  # values first, as slapd checks them before the name
            at = self.schema.attribute_type(canonical_name(self.schema, description))
            if at is None:
                raise LDAPError(ResultCode.undefinedAttributeType, f"{description}: attribute type undefined")
            self.check_values(at, description, values)
        attr, _, value = rdn.partition("=")
        value = value.strip()
        attr_name = canonical_name(self.schema, attr.strip())
        siblings = [e for n, e in self.entries.items() if parent_dn(n) == parent_ndn and
                    rdn_type(n) == attr_name.lower()]  # fmt: skip
        position = order_of(value)
        if attr_name.lower() == "olcoverlay":
            parent_kind = strip_order(first(self.entries[parent_ndn], "olcDatabase")).lower()
            name = strip_order(value).lower()
            if parent_kind in ("monitor", "frontend") or (
                parent_kind == "config" and name not in ("syncprov", "accesslog")
            ):
                raise LDAPError(ResultCode.unwillingToPerform,
                                f"<olcOverlay> not supported by pyldapd on the {parent_kind} database")  # fmt: skip
            if name not in OVERLAYS:
                raise LDAPError(ResultCode.other, "<olcOverlay> handler exited with 1")
            if any(strip_order(first(e, "olcOverlay")).lower() == name for e in siblings):
                raise LDAPError(ResultCode.other, f'overlay_config(): overlay "{name}" already in list')
            value = f"{{{len(siblings)}}}{strip_order(value)}"  # one overlay of a kind: always the last
        elif attr_name.lower() == "cn" and parent_ndn == self.ndn(SCHEMA_DN):
            if position is not None and 0 <= position < len(siblings):
                raise LDAPError(ResultCode.unwillingToPerform, "operation requires sibling renumbering")
            value = f"{{{len(siblings)}}}{strip_order(value)}"
        elif attr_name.lower() == "olcdatabase" and parent_ndn == CONFIG_DN:
            return self.add_database(request, strip_order(value), position, session.bind_ndn)
        dn = f"{attr_name}={value},{parent}"
        ndn = self.ndn(dn)
        if ndn in self.entries:
            raise LDAPError(ResultCode.entryAlreadyExists, "")
        entry = self.new_entry(dn, attr_name, value, request)
        for name in ("olcMultiProvider", "olcUpdateRef"):
            if entry.get(name.lower()):
                self.check_shadow(entry, name)
        check_entry(self.schema, entry, check_rdn=False)
        self.check_schema_values(ndn, entry)
        self.commit({ndn: entry}, [], who=session.bind_ndn)
        return []

    def new_entry(self, dn: str, attr_name: str, value: str, request: ldap.AddRequest) -> Entry:
        """The entry an add request makes, X-ORDERED values numbered, the naming value as given."""
        entry = Entry(dn)
        for description, values in request.attributes:
            name = canonical_name(self.schema, description)
            at = self.schema.attribute_type(name)
            if at is None:
                raise LDAPError(ResultCode.undefinedAttributeType, f"{description}: attribute type undefined")
            texts = [v.decode("utf-8", "replace") for v in values]
            if at.key == attr_name.lower():
                texts = [value]
            existing = entry.attrs.get(at.key)
            if existing is not None:
                existing.values.extend(t.encode() for t in texts)
            else:
                entry.attrs[at.key] = Attribute(at.name, [t.encode() for t in texts])
        naming = self.schema.attribute_type(attr_name)
        if naming is not None and naming.key not in entry.attrs:
            entry.attrs[naming.key] = Attribute(naming.name, [value.encode()])
        order_values(self.schema, entry)
        for oc in entry.get("objectclass"):
            if self.schema.object_class(oc.decode()) is None:
                raise LDAPError(ResultCode.invalidAttributeSyntax, "objectClass: value #0 invalid per syntax")
        return entry

    # -- databases added and deleted at run time (slapd 2.5: opened or closed at once, the others renumbered) --

    def data_databases(self, entries: dict[str, Entry]) -> list[tuple[str, Entry]]:
        """The olcDatabase={n} entries after {0}config (data and monitor databases), in their order."""
        found = [(ndn, e) for ndn, e in entries.items() if parent_dn(ndn) == CONFIG_DN and
                 rdn_type(ndn) == "olcdatabase" and (order_of(first(e, "olcDatabase")) or 0) > 0]  # fmt: skip
        return sorted(found, key=lambda item: order_of(first(item[1], "olcDatabase")) or 0)

    def add_database(
        self, request: ldap.AddRequest, kind: str, position: int | None, who: str
    ) -> list[Control]:
        kind = kind.lower()
        if kind in ("frontend", "config", "monitor"):
            raise LDAPError(ResultCode.unwillingToPerform,
                            f"pyldapd: a {kind} database cannot be added at run time")  # fmt: skip
        if kind not in DATA_TYPES:  # slapd has no such backend loaded
            raise LDAPError(ResultCode.other, "<olcDatabase> failed init")
        if position is not None and position <= 0:  # {0} is the config database's (slapd: 65, no text)
            raise LDAPError(ResultCode.objectClassViolation, "")
        existing = self.data_databases(self.entries)
        slot = len(existing) if position is None else min(position - 1, len(existing))
        dn = f"olcDatabase={{{slot + 1}}}{kind},{CONFIG_DN}"
        entry = self.new_entry(dn, "olcDatabase", f"{{{slot + 1}}}{kind}", request)
        check_entry(self.schema, entry, check_rdn=False)
        ordered = [e for _, e in existing]
        ordered.insert(slot, entry)
        changed, removed = self.renumbered(ordered, existing)
        moved = set(changed)
        changed[self.ndn(dn)] = entry
        self.commit(changed, removed, databases_may_change=True, who=who, renamed=moved - {self.ndn(dn)})
        return []

    def renumbered(
        self, ordered: list[Entry], existing: list[tuple[str, Entry]]
    ) -> tuple[dict[str, Entry], list[str]]:
        """Number the databases {1}, {2}... in this order: the entries (with their overlays) whose name changes
        are written anew under the new name and removed under the old one."""
        changed: dict[str, Entry] = {}
        removed: list[str] = []
        old_names = {id(e): ndn for ndn, e in existing}
        for index, entry in enumerate(ordered, start=1):
            old_ndn = old_names.get(id(entry))
            kind = strip_order(first(entry, "olcDatabase"))
            if old_ndn is None or order_of(first(entry, "olcDatabase")) == index:
                continue
            new_dn = f"olcDatabase={{{index}}}{kind},{CONFIG_DN}"
            moved = entry.copy()
            moved.dn = new_dn
            moved.put("olcdatabase", "olcDatabase", [f"{{{index}}}{kind}".encode()])
            changed[self.ndn(new_dn)] = moved
            removed.append(old_ndn)
            for child_ndn, child in list(self.entries.items()):
                if is_descendant(child_ndn, old_ndn) and child_ndn != old_ndn:
                    rdns = split_dn(child.dn)
                    copy = child.copy()
                    copy.dn = ",".join(rdns[: len(rdns) - 2] + [new_dn])
                    changed[self.ndn(copy.dn)] = copy
                    removed.append(child_ndn)
        return changed, removed

    def delete_database(self, ndn: str, who: str) -> None:
        existing = self.data_databases(self.entries)
        ordered = [e for n, e in existing if n != ndn]
        changed, removed = self.renumbered(ordered, existing)
        self.commit(changed, [ndn, *removed], databases_may_change=True, who=who, renamed=set(changed))

    def delete(self, session: Any, request: ldap.DelRequest, controls: list[Control]) -> list[Control]:
        with self.serialized(), self.client_write(session, request.dn, []):
            return self.delete_entry(session, request)

    def delete_entry(self, session: Any, request: ldap.DelRequest) -> list[Control]:
        if session.anonymous:
            raise LDAPError(ResultCode.strongerAuthRequired, "modifications require authentication")
        ndn = self.ndn(request.dn)
        self.lookup(ndn)
        self.require_write(session, request.dn)
        if self.has_children(ndn):
            raise LDAPError(ResultCode.notAllowedOnNonLeaf, "")
        if rdn_type(ndn) == "olcdatabase":
            kind = strip_order(first(self.entries[ndn], "olcDatabase")).lower()
            if kind in ("frontend", "config"):
                raise LDAPError(ResultCode.unwillingToPerform, "Cannot delete config or frontend database")
            if kind == "monitor":
                raise LDAPError(ResultCode.unwillingToPerform,
                                "pyldapd: the monitor database cannot be deleted at run time")  # fmt: skip
            self.delete_database(ndn, session.bind_ndn)  # slapd 2.5 closes it and renumbers the ones after it
            return []
        if rdn_type(ndn) != "olcoverlay":
            raise LDAPError(ResultCode.unwillingToPerform, "")
        self.commit({}, [ndn], who=session.bind_ndn)
        return []

    # -- commit ---------------------------------------------------------------------------------------------

    def commit(self, changed: dict[str, Entry], removed: list[str], *, databases_may_change: bool = False,
               who: str = CONFIG_DN, replicated: bool = False, renamed: set[str] | None = None,
               csns: dict[str, str] | None = None, replay: bool = False, publish: bool = True) -> list[Change]:  # fmt: skip
        """Validate the configuration the change leads to, apply it to the server, then persist it. A local
        change gets slapd's operational attributes (entryCSN...) and goes to cn=config's syncprov overlay; a
        `replicated` one (replication/configsync.py) keeps the provider's. `renamed`: the new names of entries
        only renumbered (databases after one added or deleted), which keep their entryCSN and are no change of
        their own, as in slapd, where each server renumbers its own tree. Returns the entries' changes.
        With several workers the commit is logged for the others, which `replay` it: the entries as stamped
        here (`csns` their new CSNs), made effective there without writing slapd.d again (`publish`: to
        cn=config's syncprov there, not when a worker starts)."""
        with self.serialized():
            return self.commit_held(changed, removed, databases_may_change, who, replicated, renamed or set(),
                                    csns, replay, publish)  # fmt: skip

    def commit_held(self, changed: dict[str, Entry], removed: list[str], databases_may_change: bool, who: str,
                    replicated: bool, renamed: set[str], logged_csns: dict[str, str] | None,
                    replay: bool, publish: bool) -> list[Change]:  # fmt: skip
        accesslog = self.backend.overlays.get("accesslog")  # the one running before this change
        before = {ndn: self.entries[ndn] for ndn in [*changed, *removed] if ndn in self.entries}
        # each entry changed is a change of its own with its own CSN (as each is an operation in slapd): a
        # consumer takes a change whose CSN its state already holds for one it has seen
        csns: dict[str, str] = dict(logged_csns or {})
        if not replicated and not replay:
            for ndn, entry in changed.items():
                if ndn in renamed:
                    continue
                csns[ndn] = self.server.directory.csn.next()
                stamp_entry(entry, csns[ndn], who or CONFIG_DN, new=ndn not in self.entries or ndn in removed,
                            schema=self.schema)  # fmt: skip
        candidate = dict(self.entries)
        for ndn in removed:
            del candidate[ndn]
        candidate.update(changed)
        ordered = sorted(candidate.items(), key=lambda item: item[0].count(","))
        try:
            new_config = config_from_entries([e for _, e in ordered])
            self.check_indexes(new_config)
            self.server.check_config(new_config, databases_may_change=databases_may_change)
        except LDAPError:
            raise
        except Exception as exc:
            if replay:
                raise
            raise LDAPError(ResultCode.other, self.slapd_message(exc)) from None
        try:
            self.server.apply_config(new_config)
        except ConfigValueError as exc:  # a database added that could not be opened: nothing was applied
            raise LDAPError(ResultCode.other, str(exc)) from None
        self.server.config.config_database = new_config.config_database
        # the modules Debian's slapd needs for what the tree now holds, so that it still loads the tree (a
        # replicated tree brings its provider's module entries)
        module_ndn = self.ndn(f"cn=module{{0}},{CONFIG_DN}")
        module = None if replicated or replay else module_entry_for(new_config, candidate.get(module_ndn))
        if module is not None:
            csns[module_ndn] = self.server.directory.csn.next()
            stamp_entry(module, csns[module_ndn], who or CONFIG_DN, new=module_ndn not in self.entries,
                        schema=self.schema)  # fmt: skip
            candidate[module_ndn] = changed[module_ndn] = module
        # a renamed entry's old file goes (deepest first, so that emptied folders go too), unless reused
        removed_dns = sorted((self.entries[ndn].dn for ndn in removed if ndn not in changed),
                             key=lambda dn: -len(split_dn(dn)))  # fmt: skip
        self.entries = tree_order({ndn: candidate[ndn] for ndn in self.sorted_keys(candidate)})
        if not replay:  # logged for the other workers as soon as it is in effect here, so that every live
            # worker has what this one has, even if writing slapd.d fails or this worker dies before it is done
            from pyldapd.server.configshare import encode_entry

            self.log_operation({"op": "commit", "entries": [[n, encode_entry(e)] for n, e in changed.items()],
                                "removed": removed, "databases": databases_may_change, "replicated": replicated,
                                "renamed": sorted(renamed), "csns": csns})  # fmt: skip
        # served from a slapd.conf: nothing is written, as slapd without -F; another worker's change: written there
        if self.path is not None and not replay:
            write_slapd_d(self.path, sorted(changed.values(), key=lambda e: len(split_dn(e.dn))))
            for dn in removed_dns:
                remove_entry_file(self.path, dn)
        changes = self.changes_made(before, changed, removed, renamed, csns)
        self.refresh_replication()
        if replay:
            if publish:
                self.publish_replayed(changes, replicated)
        elif not replicated:
            self.publish_local(changes, who, accesslog)
        return changes

    def changes_made(self, before: dict[str, Entry], changed: dict[str, Entry], removed: list[str],
                     renamed: set[str], csns: dict[str, str]) -> list[Change]:  # fmt: skip
        """The changes a commit made, told apart by entryUUID (a renumbered entry is the same entry under a new
        name: no change; a database deleted at {n} while another moves there is a delete)."""

        def identity(ndn: str, entry: Entry) -> bytes | str:
            return entry.first("entryuuid") or ndn

        old = {identity(ndn, before[ndn]): ndn for ndn in [*removed, *changed] if ndn in before}
        new = {identity(ndn, entry): ndn for ndn, entry in changed.items()}
        changes = [Change("delete", before[ndn], None, self.server.directory.csn.next())
                   for key, ndn in old.items() if key not in new]  # fmt: skip
        for key, ndn in new.items():
            if ndn in renamed and key in old:
                continue
            entry = changed[ndn]
            previous = before.get(old[key]) if key in old else None
            changes.append(Change("modify" if previous is not None else "add", previous, entry,
                                  csns.get(ndn) or (entry.first("entrycsn") or b"").decode()))  # fmt: skip
        return changes

    # -- replication of cn=config itself (replication/configsync.py) ----------------------------------------

    def refresh_replication(self) -> None:
        """syncprov and syncrepl of cn=config follow olcDatabase={0}config (at start and after each change)."""
        from pyldapd.replication import configsync

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving (yet): Server.start calls this again
        settings = self.server.config.config_database
        if settings is not None and (settings.syncrepl or settings.overlays):
            self.ensure_identities()
        configsync.refresh(self)

    def ensure_identities(self) -> None:
        """Replication tells entries apart by entryUUID: entries written without one (`pyldapd init` trees,
        older slapd.d) get theirs, with entryCSN and the rest, as slapd's slapd.d entries all have them."""
        with self.serialized():  # once for all workers: the first stamps them, the others take its entries
            missing = [(ndn, e) for ndn, e in self.entries.items() if not e.get("entryuuid")]
            for ndn, entry in missing:
                stamped = entry.copy()
                stamp_entry(
                    stamped, self.server.directory.csn.next(), CONFIG_DN, new=True, schema=self.schema
                )
                self.entries[ndn] = stamped
            if missing:
                self.log_put([self.entries[ndn] for ndn, _ in missing])
            if missing and self.path is not None:
                write_slapd_d(self.path, [self.entries[ndn] for ndn, _ in missing])

    def publish_replayed(self, changes: list[Change], replicated: bool) -> None:
        """Another worker's change, applied here: this worker's persistent searches of cn=config (syncprov) see
        it too. accesslog logged it once, in the worker that made it."""
        backend = self.backend
        if backend.provider is None:
            return
        with backend.db.write() as txn:
            for change in changes:
                backend.context.advance(txn, change.csn)
        for change in changes:
            change.replicated = replicated
            backend.publish(change)

    def publish_local(self, changes: list[Change], who: str = CONFIG_DN, accesslog: Any = None) -> None:
        """Changes made here: with syncprov on cn=config, their CSNs join the contextCSN and they go out; with
        accesslog there (before the change: the overlay's own add is not logged, as in slapd), each is logged."""
        backend = self.backend
        self.log_changes(changes, who, accesslog)
        if backend.provider is None:
            return  # as in slapd, where the syncprov overlay keeps cn=config's contextCSN
        with backend.db.write() as txn:
            for change in changes:
                backend.context.advance(txn, change.csn)
        for change in changes:
            backend.publish(change)

    def log_changes(self, changes: list[Change], who: str, accesslog: Any) -> None:
        """olcOverlay=accesslog on cn=config: a log entry per entry changed (a modify with the client's
        modifications, as slapd logs its request; the others as the entries show them)."""
        from pyldapd.overlays.accesslog import ConfigAccessLog
        from pyldapd.overlays.base import replicated_op

        if not isinstance(accesslog, ConfigAccessLog):
            return
        for change in changes:
            op = replicated_op(change, who)
            op.replicated = False
            if self.request is not None:
                # slapd logs the request, not what back-config does besides (siblings renumbered, pyldapd's
                # cn=module{0} for Debian's slapd): only the entry it names, under the DN it was given
                conn_id, dn, mods = self.request
                if without_order(self.ndn(op.dn)) != without_order(self.ndn(dn)):
                    continue
                op.dn, op.conn_id = dn, conn_id
                if change.kind == "modify":
                    op.changes = list(mods)
            if op.dn:
                accesslog.log_change(op)

    def store_context_csn(self, values: list[bytes]) -> None:
        """cn=config's contextCSN vector on the cn=config entry (and its file), as slapd keeps it."""
        with self.serialized():
            entry = self.entries.get(CONFIG_DN)
            if entry is None or entry.get("contextcsn") == values:
                return
            entry = entry.copy()
            entry.put("contextcsn", "contextCSN", values)
            self.entries[CONFIG_DN] = entry
            self.log_put([entry])  # first, as commit logs before writing slapd.d
            if self.path is not None and not self.replaying:
                write_slapd_d(self.path, [entry])

    def apply_replicated(self, changed: dict[str, Entry], removed: list[str]) -> list[Change]:
        """Entries from a provider of cn=config, applied as a cn=config change (validated, made effective,
        written): each as the provider has it, with its operational attributes."""
        for ndn, entry in changed.items():
            try:
                order_values(self.schema, entry)  # as slapd's config_add_internal orders what a consumer adds
            except LDAPError:
                pass  # values slapd could not order either: kept as the provider has them
            local = self.entries.get(ndn)
            if local is not None and local.get("contextcsn") and ndn == CONFIG_DN:
                entry.put("contextcsn", "contextCSN", local.get("contextcsn"))  # this server's own state
        return self.commit(changed, removed, databases_may_change=True, replicated=True)

    def adopt_uuid(self, ndn: str, entry_uuid: bytes) -> None:
        """This server's entry of a DN its provider has under another entryUUID takes the provider's (its
        content and entryCSN stay), in memory and in slapd.d."""
        with self.serialized():
            entry = self.entries.get(ndn)
            if entry is None or not entry_uuid or entry.first("entryuuid") == entry_uuid:
                return
            entry = entry.copy()
            entry.put("entryuuid", "entryUUID", [entry_uuid])
            self.entries[ndn] = entry
            self.log_put([entry])
            if self.path is not None:
                write_slapd_d(self.path, [entry])

    def delete_replicated(self, ndn: str) -> list[Change]:
        """An entry deleted at the provider: gone here too, with its children (a database's overlays)."""
        if rdn_type(ndn) == "olcdatabase" and strip_order(first(self.entries[ndn], "olcDatabase")).lower() in (
                "frontend", "config"):  # fmt: skip
            raise LDAPError(ResultCode.unwillingToPerform, "Cannot delete config or frontend database")
        doomed = [n for n in self.entries if n == ndn or is_descendant(n, ndn)]
        changed: dict[str, Entry] = {}
        moved: list[str] = []
        if rdn_type(ndn) == "olcdatabase" and parent_dn(ndn) == CONFIG_DN:
            # the databases after it move down one, as the provider's did: each server renumbers its own tree
            # (slapd replicates the delete alone)
            existing = self.data_databases(self.entries)
            changed, moved = self.renumbered([e for n, e in existing if n != ndn], existing)
        return self.commit(
            changed, [*doomed, *moved], databases_may_change=True, replicated=True, renamed=set(changed)
        )

    def insert_replicated(self, ndn: str, entry: Entry) -> list[Change]:
        """A database the provider added at {n} where this server has another one: inserted there, the others
        moved up one (slapd's back-config add with an index in use)."""
        existing = self.data_databases(self.entries)
        slot = min((order_of(first(entry, "olcDatabase")) or len(existing) + 1) - 1, len(existing))
        ordered = [e for _, e in existing]
        ordered.insert(slot, entry)
        changed, removed = self.renumbered(ordered, existing)
        moved = set(changed)
        changed[ndn] = entry
        return self.commit(
            changed, removed, databases_may_change=True, replicated=True, renamed=moved - {ndn}
        )

    def sync_search(self, conn: Any, message_id: int, request: ldap.SearchRequest, controls: list[Control],
                    sync_control: Control, selection_factory: Callable) -> Generator[Any, Any, bool]:  # fmt: skip
        """An RFC 4533 sync search of cn=config, answered by its syncprov overlay, as resumable steps
        (server/steps.py; True: it stays open)."""
        from pyldapd.protocol import controls as ctl

        base = self.ndn(request.base)
        provider = self.backend.provider
        if provider is None:
            if sync_control.critical:
                raise LDAPError(ResultCode.unavailableCriticalExtension, "critical extension is unavailable")
            sent = self.search(conn.session, message_id, request, selection_factory, conn.send)
            conn.result(message_id, ldap.SEARCH_RESULT_DONE, ResultCode.success, nentries=sent)
            return False
        self.lookup(base)
        if not self.allowed(conn.session):
            raise LDAPError(ResultCode.noSuchObject, "")
        try:
            sync = ctl.decode_sync_request(sync_control.value)
        except Exception as exc:
            raise LDAPError(ResultCode.protocolError, "Sync Request control value is malformed") from exc
        if request.scope not in (0, 1, 2, 3):
            raise LDAPError(ResultCode.protocolError, "invalid scope")
        selection = selection_factory(self.schema, request.attributes, request.types_only)
        matches = self.filters.compile(request.filter)
        return (yield from provider.sync_search(conn, message_id, request, controls, sync, selection, matches,
                                                base, 0))  # fmt: skip

    def check_schema_values(self, ndn: str, entry: Entry) -> None:
        """New attribute types name syntaxes slapd knows (pyldapd's Schema accepts unknown ones)."""
        if parent_dn(ndn) != self.ndn(SCHEMA_DN):
            return
        for value in entry.get("olcattributetypes"):
            match = SYNTAX_OID.search(value.decode("utf-8", "replace"))
            if match and self.server.schema.syntax(match.group(1)) is None:
                raise LDAPError(ResultCode.other, f'olcAttributeTypes: Syntax not found: "{match.group(1)}"')

    def check_indexes(self, config: ServerConfig) -> None:
        """olcDbIndex names attribute types of the data schema (with this change's schema additions)."""
        from pyldapd.config.slapdconf import index_problem
        from pyldapd.server.app import SCHEMA_DIR, already_defined, uses_accesslog

        schema = None
        for db in config.data_databases():
            seen: set[str] = set()
            for attr, kinds in db.indexes.items():
                if attr.lower() == "default":
                    continue
                if schema is None and self.server.schema.attribute_type(attr.partition(";")[0]) is None:
                    schema = self.server.schema.copy()
                    for source, text in config.schema_definitions:
                        if not already_defined(schema, text):
                            schema.load_text(text, source)
                    if uses_accesslog(config) and schema.attribute_type("reqStart") is None:
                        schema.load_file(str(SCHEMA_DIR / "accesslog.schema"))  # this change loads the module
                # slapd's checks and words (disallowed index types, duplicates by alias)
                problem = index_problem(attr, set(kinds), schema or self.server.schema, seen)
                if problem is not None:
                    raise ConfigValueError(problem)
        from pyldapd.config.slapdconf import tokenize
        from pyldapd.server.searchlimits import Limits

        for db in config.data_databases():
            Limits(db.limits, db.limits_sources, lambda dn: normalize_dn(dn, self.server.schema), tokenize)

    def slapd_message(self, exc: Exception) -> str:
        """The text slapd sends for a refused config value; pyldapd's own explanation goes to the log."""
        from pyldapd.config.slapdconf import ConfigError
        from pyldapd.model.schema import SchemaError
        from pyldapd.replication.spec import SyncreplError
        from pyldapd.server.acl import ACLError
        from pyldapd.server.searchlimits import LimitsError

        text = str(exc)
        self.server.log.error(f"cn=config change refused: {text}")
        if isinstance(exc, ConfigValueError):
            # slapd prefixes "config error processing <dn>: " when it reads slapd.d, not in an LDAP result
            return re.sub(r"^config error processing [^:]*: ", "", text)
        if isinstance(exc, SyncreplError):
            if text.startswith("Malformed"):
                return 'Error: Malformed "syncrepl" line in slapd config file' + text.split(" line", 1)[1].replace(
                    ":", ",", 1)  # fmt: skip
            return "Error: parse_syncrepl_line: " + text.removeprefix("syncrepl: ")
        if isinstance(exc, SchemaError):
            if exc.slapd_text and "ditcontentrule" in text:
                return f"olcDitContentRules: {exc.slapd_text}"
            # slapd's words (schemaparse.c): "<attribute>: <what> not found: \"<name>\""
            for pattern, attr, what in SCHEMA_NOT_FOUND:
                missing = re.search(pattern, text)
                if missing:
                    return f'{attr}: {what} not found: "{missing.group(1)}"'
            duplicate = re.search(r"(attributetype|objectclass) \S+: name '([^']+)' is already used", text)
            if duplicate and duplicate.group(1) == "attributetype":
                return f'olcAttributeTypes: Inconsistent duplicate attributeType: "{duplicate.group(2)}"'
            if duplicate:
                return f'olcObjectClasses: Duplicate objectClass: "{duplicate.group(2)}"'
            return f"<olcAttributeTypes> {text}"
        if isinstance(exc, LimitsError):
            return "<olcLimits> unable to parse value"
        if isinstance(exc, (ConfigError, ACLError)):
            return "<olcAccess> handler exited with 1"
        return text

    def sorted_keys(self, entries: dict[str, Entry]) -> list[str]:
        keys = list(self.entries)
        for key in entries:
            if key not in keys:
                keys.append(key)
        return [k for k in keys if k in entries]


def order_values(schema, entry: Entry) -> None:
    """X-ORDERED 'VALUES' of an entry added to cn=config put in order and numbered from 0, as slapd's check_vals
    does (ordered_value_sort): given numbers order the values, unnumbered ones are numbered as written, and a mix
    of the two is refused."""
    from pyldapd.model import ordered

    for attribute in entry.attrs.values():
        if not is_ordered(schema, attribute.name):
            continue
        try:
            attribute.values = ordered.sort_values(attribute.values, renumbered=True)
        except ordered.OrderError:
            raise LDAPError(
                ResultCode.invalidAttributeSyntax, f"ordered_value_sort failed on attr {attribute.name}\n"
            ) from None


def stamp_entry(entry: Entry, csn: str, who: str, *, new: bool, schema) -> None:
    """slapd's operational attributes on a cn=config entry a client (or the server) adds or changes."""
    now = (csn[:14] + "Z").encode()
    if new:
        for name, value in (("entryUUID", str(uuidlib.uuid1()).encode()), ("creatorsName", who.encode()),
                            ("createTimestamp", now)):  # fmt: skip
            if not entry.get(name.lower()):
                entry.put(name.lower(), name, [value])
        if not entry.get("structuralobjectclass"):
            structural = structural_class_of(schema, entry)
            if structural:
                entry.put("structuralobjectclass", "structuralObjectClass", [structural.encode()])
    entry.put("entrycsn", "entryCSN", [csn.encode()])
    entry.put("modifiersname", "modifiersName", [who.encode()])
    entry.put("modifytimestamp", "modifyTimestamp", [now])


def structural_class_of(schema, entry: Entry) -> str:
    """The most derived STRUCTURAL class among the entry's (olcMdbConfig over olcDatabaseConfig)."""
    from pyldapd.config.slapdd import ConfigImportError, _structural_class

    try:
        return _structural_class(schema, entry, entry.dn)
    except ConfigImportError:
        return ""


def tree_order(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Parents first, each followed by its children in slapd.d's order (type, then {n}), as read_slapd_d gives."""
    children: dict[str, list[str]] = {}
    for ndn in entries:
        children.setdefault(parent_dn(ndn), []).append(ndn)
    out: dict[str, Entry] = {}

    def visit(ndn: str) -> None:
        out[ndn] = entries[ndn]
        for child in sorted(children.get(ndn, []), key=lambda n: (rdn_type(n), order_of(
                n.split("=", 1)[1]) or 0, n)):  # fmt: skip
            visit(child)

    for root in [n for n in entries if parent_dn(n) not in entries]:
        visit(root)
    return out


def validate_config(config: ServerConfig) -> None:
    """What a running slapd would refuse in a configuration change (used before anything is applied)."""
    from pyldapd.overlays.accesslog import check_accesslog
    from pyldapd.replication.spec import check_naming_context, parse_syncrepl

    check_accesslog(config)
    from pyldapd.replication.provider import check_syncprov

    check_syncprov(config, online=True)  # values: read (and refused in slapd's words) by config_from_entries
    schema = config_schema()  # DNs of naming contexts and search bases compare in their normalized form

    def normalize(dn: str) -> str:
        return normalize_dn(dn, schema)

    for db in config.data_databases():
        for text in db.syncrepl:
            check_naming_context(parse_syncrepl(text), [normalize(s) for s in db.suffixes], normalize)
    for text in config.config_database.syncrepl if config.config_database else []:
        parse_syncrepl(text)


def without_order(ndn: str) -> str:
    """A cn=config DN without its {n} ordering prefixes (the DN a client added under, and the one stored)."""
    return re.sub(r"=\{-?\d+\}", "=", ndn)
