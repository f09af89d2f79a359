"""The delta-syncrepl consumer (`syncdata=accesslog`), as OpenLDAP 2.5's syncrepl.c behaves.

Instead of whole entries it replays the provider's change log: a sync search on `logbase` with `logfilter`
returns the provider's accesslog entries (reqType, reqDN, reqMod, reqNewRDN, ...) and each one is applied to the
local database as the operation it records, with the change's own CSN, in the same kind of write transaction as
the plain consumer's (the local overlays, an accesslog of this node included, see every applied change).

When the log cannot serve the consumer (no cookie yet, the provider answers e-syncRefreshRequired because its log
was purged past the cookie, or a change does not apply: the entry is missing, already there, ...) the consumer
falls back, as slapd's SYNCLOG_FALLBACK, to one refreshOnly search of the main searchbase (the plain consumer's
code), then goes back to the log on the same session.

Delta multi-provider (the database is `multiprovider`): a replayed modify older than the local entry keeps only
the changes to attributes no newer change of the entry touched; the newer changes are read from the local log
(`logbase` on this server), as slapd's syncrepl_op_modify. Two nodes that changed different attributes of one
entry during a partition thus both keep both changes; for one attribute the newest change wins.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyldapd.backends.base import AlreadyExists, NoSuchEntry, NotAllowedOnNonLeaf, Scope
from pyldapd.model.csn import parse_cookie
from pyldapd.model.dn import DNError, normalize_dn, pretty_dn, split_rdn
from pyldapd.model.entry import Entry
from pyldapd.model.filter import parse_filter
from pyldapd.overlays.base import WriteOp
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.replication.consumer import DYNAMIC_KEYS, ConsumerError, SyncConsumer
from pyldapd.replication.state import Change, entry_uuid_bytes, read_tombstone, write_tombstone
from pyldapd.server.entries import (
    add_rdn_values,
    apply_modifications,
    check_entry,
    equality_key,
    remove_rdn_values,
)
from pyldapd.server.errors import LDAPError

if TYPE_CHECKING:
    from pyldapd.replication.client import LDAPClient

# What slapd's consumer asks of a log entry (ldap_sync_search's lattrs for syncdata=accesslog)
# plus reqEntryUUID: a change made before a rename still finds its entry (slapd looks by reqDN only)
LOG_ATTRS = ["reqDN", "reqType", "reqMod", "reqNewRDN", "reqDeleteOldRDN", "reqNewSuperior", "reqControls",
             "entryCSN", "reqEntryUUID"]  # fmt: skip
# A replayed change failing with one of these means the consumer lost sync: full refresh (do_syncrep2's logerr)
LOST_SYNC = {ResultCode.entryAlreadyExists, ResultCode.noSuchObject, ResultCode.noSuchAttribute,
             ResultCode.attributeOrValueExists, ResultCode.notAllowedOnNonLeaf}  # fmt: skip
STAMP_KEYS = ("entrycsn", "modifiersname", "modifytimestamp")
SOFT_DELETE = "softdel"  # slapd's SLAP_MOD_SOFTDEL: delete what is there, no error for what is not
OPS = {"+": "add", "-": "delete", "=": "replace", "#": "increment"}
LDAP_OP = {"add": ldap.MOD_ADD, "delete": ldap.MOD_DELETE, "replace": ldap.MOD_REPLACE,
           "increment": ldap.MOD_INCREMENT}  # fmt: skip
SIGN = {
    ldap.MOD_ADD: "add",
    ldap.MOD_DELETE: "delete",
    ldap.MOD_REPLACE: "replace",
    ldap.MOD_INCREMENT: "increment",
}
MAX_FALLBACKS_PER_SESSION = (
    3  # a log that keeps failing right after a full refresh goes to the retry schedule
)


class KnownEntry(Exception):
    """A logged add of an entry this database holds already (under its DN or another)."""

    def __init__(self, entry_uuid: bytes) -> None:
        super().__init__()
        self.entry_uuid = entry_uuid


class RefreshRequired(Exception):
    """The log cannot bring this consumer up to date: a full refresh of the content is needed."""


@dataclass
class Mod:
    """One modification of a log entry's reqMod (slapd's Modifications)."""

    op: str  # add, delete, replace, increment, softdel
    name: str
    key: str
    values: list[bytes] = field(default_factory=list)
    soft_all: bool = (
        False  # a delete-all turned into "delete the values there are" (slapd's SLAP_MOD_INTERNAL)
    )
    original: str = ""  # the log's operation, before the single-value conversions (what a local log records)


@dataclass
class LogRecord:
    """A log entry as a replayable operation."""

    kind: str  # add, delete, modify, modrdn
    dn: str
    csn: str
    mods: list[Mod]
    new_rdn: str = ""
    delete_old_rdn: bool = False
    new_superior: str | None = None
    entry_uuid: bytes | None = None  # reqEntryUUID


class DeltaConsumer(SyncConsumer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.logging = True  # slapd's SYNCLOG_LOGGING; False: SYNCLOG_FALLBACK (a full refresh is due)
        self.log_filter = parse_filter(self.spec.logfilter)
        self.fallbacks = 0  # full refreshes made because the log could not serve (cn=Monitor, tests)

    # -- one session ----------------------------------------------------------------------------------------

    async def session(self) -> None:
        client = await self.open_client()
        for _ in range(MAX_FALLBACKS_PER_SESSION):
            if not self.logging or (not self.backend.context.csns.as_dict() and not self.refreshed_once):
                # no state (slapd: no cookie and no refresh done yet) or the log lost us: the whole content
                self.logging = False
                self.note("delta-sync: full refresh of the content")
                await self.content_search(client, persist=False)
                self.logging, self.refreshed_once = True, True
            try:
                await self.log_search(client)
                return
            except RefreshRequired as exc:
                self.logging = False
                self.fallbacks += 1
                self.note(f"delta-sync lost sync ({exc}), switching to a full refresh")
                client.close()
                client = await self.open_client()  # the log search may still run: a fresh connection
        raise ConsumerError("delta-sync: the log keeps failing after full refreshes")

    async def log_search(self, client: LDAPClient) -> None:
        spec = self.spec
        cookie = self.last_cookie_sent = self.request_cookie()
        mode = ctl.SYNC_MODE_REFRESH_AND_PERSIST if spec.persist else ctl.SYNC_MODE_REFRESH_ONLY
        # no reload hint: a provider whose log cannot cover the cookie answers e-syncRefreshRequired
        controls = [
            Control(ctl.SYNC_REQUEST, False, ctl.encode_sync_request(ctl.SyncRequest(mode, cookie, False))),
            Control(ctl.MANAGE_DSA_IT, True, None),
        ]
        request = ldap.SearchRequest(spec.logbase, Scope.SUB, 0, spec.sizelimit, spec.timelimit, False,
                                     self.log_filter, LOG_ATTRS)  # fmt: skip
        self.refresh_done = self.refresh_ended = False
        self.state = "refreshing"
        self.note(f"delta-sync search of {spec.logbase} with cookie {cookie.decode()}")
        # the log records are applied on the writer thread, many to a commit, as the plain consumer's messages
        await self.apply_stream(client.search(request, controls), self.log_applier, self.log_lost)

    def log_applier(self, message: ldap.LDAPMessage) -> Callable[[], None] | None:
        op = message.op
        if isinstance(op, ldap.SearchResultEntry):
            return functools.partial(self.on_log_entry, op, message.controls)
        if isinstance(op, ldap.IntermediateResponse) and op.name == ctl.SYNC_INFO:
            return functools.partial(self.on_log_info, ctl.decode_sync_info(op.value))
        if isinstance(op, ldap.SearchResultDone):
            return functools.partial(self.on_log_done, op, message.controls)
        return None

    def log_lost(self, op: ldap.SearchResultDone) -> None:
        """e-syncRefreshRequired on the log search: the log was purged past the cookie (full refresh)."""
        raise RefreshRequired(f"provider: {op.message or 'refresh required'}")

    def on_log_done(self, op: ldap.SearchResultDone, controls: list[Control]) -> None:
        if op.result_code != ResultCode.success:
            raise ConsumerError(f"log search ended with {op.result_code} {op.message}")
        control = ctl.find_control(controls, ctl.SYNC_DONE)
        if control is not None:
            self.save_cookie(ctl.decode_sync_done(control.value).cookie)
        self.after_commit(functools.partial(self.completed, "delta-sync refresh complete"))

    def on_log_info(self, info: ctl.SyncInfo) -> None:
        """The log's own present/delete phases say nothing about the content: only cookies count."""
        if isinstance(info, ctl.SyncInfoNewCookie):
            self.save_cookie(info.cookie)
        elif isinstance(info, ctl.SyncInfoRefreshPresent | ctl.SyncInfoRefreshDelete):
            self.save_cookie(info.cookie)
            if info.refresh_done:
                self.refresh_ended = True
                self.after_commit(functools.partial(self.persisting, "delta-sync refresh done, persisting"))

    # -- one log entry --------------------------------------------------------------------------------------

    def on_log_entry(self, op: ldap.SearchResultEntry, controls: list[Control]) -> None:
        control = ctl.find_control(controls, ctl.SYNC_STATE)
        if control is None:
            raise ConsumerError(f"log entry {op.dn!r} without a Sync State control")
        state = ctl.decode_sync_state(control.value)
        if state.state not in (ctl.SYNC_STATE_ADD, ctl.SYNC_STATE_MODIFY):
            return  # a purged log entry (delete) or a present one: nothing happened to the content
        cookie = parse_cookie(state.cookie) if state.cookie else None
        if cookie is not None and cookie.sid is not None:
            self.provider_sid = cookie.sid
        record = self.parse_record(op)
        if record is None or (self.too_old(record.csn) and not self.missing_here(record)):
            return  # slapd's check_csn_age: a change this database has (through another provider, or before)
        try:
            self.replay(record)
        except LDAPError as exc:
            if exc.code in LOST_SYNC:
                raise RefreshRequired(f"{record.kind} {record.dn}: result {exc.code} {exc.message}") from None
            # anything else (schema, ...) is logged and the change skipped, as slapd's consumer goes on
            self.log.error(f"syncrepl rid={self.rid:03d}: delta-sync {record.kind} {record.dn} failed: "
                           f"result {exc.code} {exc.message}")  # fmt: skip
        if cookie is not None and cookie.csns:
            self.save_cookie(state.cookie)

    def missing_here(self, record: LogRecord) -> bool:
        """A change older than the cookie that the entry does not reflect. A log is in CSN order per server ID
        only as far as its writes were: a provider that got content by a full refresh logged those entries in
        tree order, so a newer change can come before an older one. Such a change is applied all the same (slapd
        would skip it); a change the entry does reflect (same or newer entryCSN, a tombstone) is not."""
        schema = self.directory.schema
        try:
            ndn = normalize_dn(record.dn, schema)
        except DNError:
            return False
        with self.reading() as txn:  # on the writer thread: what the messages before this one left
            if record.kind == "add":
                uuid = next((m.values[0] for m in record.mods if m.key == "entryuuid" and m.values), None)
                raw = uuid_bytes(uuid) if uuid else None
                if raw is None or txn.by_uuid(raw) is not None or txn.exists(ndn):
                    return False
                return read_tombstone(txn, raw) is None
            current = self.target(txn, record, ndn)[0]
        return current is not None and (current.first("entrycsn") or b"").decode() < record.csn

    def parse_record(self, op: ldap.SearchResultEntry) -> LogRecord | None:
        values = {name.lower(): vals for name, vals in op.attributes}

        def one(name: str) -> str:
            got = values.get(name.lower())
            return got[0].decode("utf-8", "replace") if got else ""

        kind, dn, csn = one("reqType").lower(), one("reqDN"), one("entryCSN")
        if (
            kind not in ("add", "delete", "modify", "modrdn")
            or not dn
            or not csn
            or (kind == "modrdn" and not values.get("reqnewrdn"))
        ):
            self.note(f"log entry {op.dn} is not a replayable write, skipped")
            return None
        record = LogRecord(kind, dn, csn, self.parse_mods(values.get("reqmod", [])))
        record.entry_uuid = uuid_bytes(values["reqentryuuid"][0]) if values.get("reqentryuuid") else None
        if kind == "modrdn":
            record.new_rdn = one("reqNewRDN")
            record.delete_old_rdn = one("reqDeleteOldRDN").upper() == "TRUE"
            record.new_superior = one("reqNewSuperior") or None
        return record

    def parse_mods(self, raw: list[bytes]) -> list[Mod]:
        """reqMod values (`attr:+ value`, `attr:=`, ...) to modifications, as syncrepl_accesslog_mods: runs of
        one attribute and operation make one modification; single-valued adds become replaces and their
        deletes soft deletes (ITS#9295); dynamic and excluded attributes are dropped."""
        schema = self.directory.schema
        excluded = {schema.attribute_key(name) for name in self.spec.exattrs}
        mods: list[Mod] = []
        current: Mod | None = None
        for value in raw:
            colon = value.find(b":")
            if colon < 0:
                continue
            if colon == 0:
                current = None  # ITS#6545: an empty attribute starts a new modification
                continue
            name = value[:colon].decode("utf-8", "replace")
            op = OPS.get(value[colon + 1 : colon + 2].decode("latin-1"))
            at = schema.attribute_type(name.split(";", 1)[0])
            if op is None or at is None:
                if at is None:
                    raise ConsumerError(f"log entry names an unknown attribute {name!r}")
                continue
            key = schema.attribute_key(name)
            if key.split(";", 1)[0] in DYNAMIC_KEYS or key.split(";", 1)[0] in excluded:
                continue
            if current is None or current.key != key or current.original != op:
                effective = op
                if at.single_value and op == "add":
                    effective = "replace"
                elif at.single_value and op == "delete":
                    effective = SOFT_DELETE
                current = Mod(effective, name, key, original=op)
                mods.append(current)
            if value[colon + 2 : colon + 3] == b" ":
                current.values.append(value[colon + 3 :])
        return mods

    # -- applying a change ----------------------------------------------------------------------------------

    def replay(self, record: LogRecord) -> None:
        backend = self.backend
        schema = self.directory.schema
        try:
            ndn = normalize_dn(record.dn, schema)
        except DNError:
            raise ConsumerError(f"log entry with an invalid reqDN {record.dn!r}") from None
        if not backend.holds(ndn):
            self.note(f"{record.dn} is outside the database, ignored")
            return
        try:
            self.write(record, ndn)
        except KnownEntry as known:
            attributes = [(m.name, m.values) for m in record.mods if m.op in ("add", "replace") and m.values]
            self.apply_entry(record.dn, attributes, known.entry_uuid, record.csn)

    def write(self, record: LogRecord, ndn: str) -> None:
        backend = self.backend
        schema = self.directory.schema
        change: Change | None = None
        # on the writer thread, a savepoint in the message's transaction: a change that fails (an LDAP error the
        # consumer logs and skips) leaves nothing behind, as its own transaction did
        with self.writing() as outer, self.savepoint(outer) as txn:
            if record.kind == "add":
                change, op = self.replay_add(txn, record, ndn)
            elif record.kind == "delete":
                change, op = self.replay_delete(txn, record, ndn)
            elif record.kind == "modify":
                change, op = self.replay_modify(txn, record, ndn)
            else:
                change, op = self.replay_modrdn(txn, record, ndn)
            if change is not None and op is not None:
                if self.spec.schemachecking and change.after is not None:
                    check_entry(schema, change.after, check_rdn=False)
                backend.overlays.in_txn(op, txn)
            backend.context.advance(txn, record.csn)
        self.observe(record.csn)
        if change is not None:
            change.relay_sid = self.provider_sid
            change.replicated = True
            backend.publish(change)

    def savepoint(self, txn):
        return txn.savepoint() if self.backend.db.current_write() is txn else nullcontext(txn)

    def write_op(self, record: LogRecord, before: Entry | None, after: Entry | None, kind: str) -> WriteOp:
        """The operation as the local overlays see it: the log entry's own modifications and stamps, so a local
        accesslog records the change as its origin logged it."""
        changes = [ldap.Change(LDAP_OP.get(m.original or m.op, ldap.MOD_DELETE), m.name, list(m.values))
                   for m in record.mods if m.key not in STAMP_KEYS]  # fmt: skip
        stamps = {key: [] for key in STAMP_KEYS}
        for mod in record.mods:
            if mod.key in STAMP_KEYS:
                stamps[mod.key] = list(mod.values)
        if kind != "modify":
            changes = []  # an add is logged from its entry, a modrdn from its request (the overlays' convention)
        op = WriteOp(kind, record.dn, before, after, record.csn, 0, self.authz_dn(), changes=changes,
                     replicated=True, stamps=stamps)  # fmt: skip
        op.new_rdn, op.delete_old_rdn, op.new_superior = (
            record.new_rdn,
            record.delete_old_rdn,
            record.new_superior,
        )
        return op

    def replay_add(self, txn, record: LogRecord, ndn: str):
        entry = Entry(record.dn)
        for mod in record.mods:
            if mod.op in ("add", "replace") and mod.values:
                existing = entry.attrs.get(mod.key)
                if existing is None:
                    entry.put(mod.key, mod.name, mod.values)
                else:
                    existing.values.extend(mod.values)
        if entry.first("entrycsn") is None:
            entry.put("entrycsn", "entryCSN", [record.csn.encode()])
        entry_uuid = entry_uuid_bytes(entry)
        if entry_uuid is not None and txn.by_uuid(entry_uuid) is not None:
            raise KnownEntry(
                entry_uuid
            )  # an entry copy (a log written by a refresh): the plain consumer's rules
        tombstone = read_tombstone(txn, entry_uuid) if entry_uuid is not None else None
        if tombstone is not None and tombstone >= record.csn:
            # deleted here after this add was made (slapd would bring it back, and the mesh would diverge)
            if self.is_news(record.csn):
                self.conflict("delete", record.dn, tombstone, record.csn,
                              "an add older than the entry's delete: stays deleted", txn=txn)  # fmt: skip
            return None, None
        current = txn.get(ndn)
        if current is not None:
            # slapd: an add of an entry that is there is fine when the local one is as new or newer
            if (current.first("entrycsn") or b"").decode() >= record.csn:
                return None, None
            raise LDAPError(ResultCode.entryAlreadyExists, "")
        try:
            txn.add(entry)
        except AlreadyExists:
            raise LDAPError(ResultCode.entryAlreadyExists, "") from None
        except NoSuchEntry:
            raise LDAPError(ResultCode.noSuchObject, "parent missing") from None
        return Change("add", None, entry, record.csn), self.write_op(record, None, entry, "add")

    def target(self, txn, record: LogRecord, ndn: str) -> tuple[Entry | None, str]:
        """The entry a change is for, and its DN here: by reqDN, or by reqEntryUUID when the entry has been
        renamed since (a change made during a partition, before a rename made elsewhere)."""
        current = txn.get(ndn)
        if record.entry_uuid is None or (
            current is not None and entry_uuid_bytes(current) == record.entry_uuid
        ):
            return current, ndn
        moved = txn.by_uuid(record.entry_uuid)
        if moved is None:
            return current, ndn
        return moved, normalize_dn(moved.dn, self.directory.schema)

    def replay_delete(self, txn, record: LogRecord, ndn: str):
        current, ndn = self.target(txn, record, ndn)
        if current is None:
            return None, None  # slapd ignores the delete of an entry it does not have
        try:
            txn.delete(ndn)
        except NotAllowedOnNonLeaf:
            raise LDAPError(ResultCode.notAllowedOnNonLeaf, "") from None
        entry_uuid = entry_uuid_bytes(current)
        if entry_uuid is not None:
            write_tombstone(txn, entry_uuid, record.csn)
        return Change("delete", current, None, record.csn), self.write_op(record, current, None, "delete")

    def replay_modify(self, txn, record: LogRecord, ndn: str):
        current, ndn = self.target(txn, record, ndn)
        if current is None:
            raise LDAPError(ResultCode.noSuchObject, "")
        mods = record.mods
        local_csn = (current.first("entrycsn") or b"").decode()
        if self.backend.config.multiprovider and local_csn:
            if record.csn == local_csn:
                return None, None  # this very change is there already
            if record.csn < local_csn:
                mods = self.resolve_older(txn, record, ndn, current)
            else:
                mods = [soften(m) for m in mods]
        if not mods:
            return None, None  # nothing this database keeps (a provider's contextCSN write)
        entry = current.copy()
        apply_mods(self.directory.schema, entry, mods)
        txn.modify(ndn, entry)
        return Change("modify", current, entry, record.csn), self.write_op(record, current, entry, "modify")

    def replay_modrdn(self, txn, record: LogRecord, ndn: str):
        schema = self.directory.schema
        current, ndn = self.target(txn, record, ndn)
        if current is None:
            raise LDAPError(ResultCode.noSuchObject, "")
        old_rdn, old_parent = split_rdn(current.dn)
        parent = record.new_superior if record.new_superior is not None else old_parent
        parent = pretty_dn(parent, schema) if parent else ""
        rdn = pretty_dn(record.new_rdn, schema)
        entry = current.copy()
        entry.dn = f"{rdn},{parent}" if parent else rdn
        if record.delete_old_rdn:
            remove_rdn_values(schema, entry, old_rdn, record.new_rdn)
        add_rdn_values(schema, entry, record.new_rdn)
        apply_mods(schema, entry, record.mods)  # the stamps (entryCSN, modifiersName, modifyTimestamp)
        new_ndn = normalize_dn(entry.dn, schema)
        if new_ndn != ndn and txn.exists(new_ndn):
            raise LDAPError(ResultCode.entryAlreadyExists, "")
        try:
            txn.rename(ndn, entry)
        except AlreadyExists:
            raise LDAPError(ResultCode.entryAlreadyExists, "") from None
        except NoSuchEntry:
            raise LDAPError(ResultCode.noSuchObject, "new superior missing") from None
        return Change("rename", current, entry, record.csn), self.write_op(record, current, entry, "rename")

    # -- delta multi-provider conflicts ---------------------------------------------------------------------

    def resolve_older(self, txn, record: LogRecord, ndn: str, current: Entry) -> list[Mod]:
        """A modify older than the entry (syncrepl_op_modify, match < 0): the stamps go (the entry keeps its
        newer ones), replaces become delete-all + add, and what newer changes of the entry (read from the local
        log) superseded is dropped, attribute by attribute."""
        mods: list[Mod] = []
        for mod in record.mods:
            if mod.key in STAMP_KEYS:
                continue
            if mod.op == "replace" and not mod.values:
                mods.append(Mod("delete", mod.name, mod.key))
            elif mod.op == "replace":
                mods.append(Mod("delete", mod.name, mod.key))
                mods.append(Mod("add", mod.name, mod.key, list(mod.values)))
            else:
                mods.append(Mod(mod.op, mod.name, mod.key, list(mod.values)))
        newer = self.newer_local_changes(txn, record.csn, ndn, entry_uuid_bytes(current))
        schema = self.directory.schema
        for newer_mods in newer:
            for new in newer_mods:
                kept = []
                for old in mods:
                    if old.key != new.key:
                        kept.append(old)
                        continue
                    if supersede(schema, old, new, current):
                        kept.append(old)
                mods = kept
        dropped = {m.name for m in record.mods if m.key not in STAMP_KEYS} - {m.name for m in mods}
        if dropped:
            local_csn = (current.first("entrycsn") or b"").decode()
            self.conflict("modify", record.dn, local_csn, record.csn,
                          f"an older change merged, its changes to {', '.join(sorted(dropped))} superseded by "
                          "newer ones", txn=txn)  # fmt: skip
        return [soften(m) for m in mods]

    def newer_local_changes(self, txn, csn: str, ndn: str, entry_uuid: bytes | None) -> list[list[Mod]]:
        """The reqMods of this node's log entries for the entry with a CSN at or above csn, matching logfilter
        (slapd searches `(&(entryCSN>=csn)(reqDN=dn)logfilter)` under logbase; pyldapd also takes those with the
        entry's reqEntryUUID, made before a rename): the log database, and the
        records the accesslog overlay has not moved there yet (its outbox in this transaction)."""
        schema = self.directory.schema
        try:
            log_ndn = normalize_dn(self.spec.logbase, schema)
        except DNError:
            return []
        matches = self.directory.filters.compile(self.log_filter)
        found: dict[bytes, Entry] = {}
        log = self.directory.backend_for(log_ndn)
        if log is not None and log is not self.backend:
            with log.db.read() as log_txn:
                for entry in log_txn.csn_after(csn):
                    found[entry.first("reqstart") or entry.dn.encode()] = entry
        from pyldapd.overlays.accesslog import OUTBOX, decode_entry

        for _, data in txn.raw_metadata_items(OUTBOX):
            entry = decode_entry(data)
            if (entry.first("entrycsn") or b"").decode() > csn:
                found.setdefault(entry.first("reqstart") or entry.dn.encode(), entry)
        out = []
        for key in sorted(found):
            entry = found[key]
            try:
                target = normalize_dn((entry.first("reqdn") or b"").decode(), schema)
            except DNError:
                continue
            logged_uuid = entry.first("reqentryuuid")
            same = target == ndn or (entry_uuid is not None and logged_uuid is not None
                                     and uuid_bytes(logged_uuid) == entry_uuid)  # fmt: skip
            if not same or not matches(entry):
                continue
            if (entry.first("reqtype") or b"").decode().lower() != "modify":
                continue
            out.append(self.parse_mods(entry.get("reqmod")))
        return out


def uuid_bytes(value: bytes) -> bytes | None:
    try:
        raw = bytes.fromhex(value.decode("ascii").replace("-", ""))
    except ValueError:
        return None
    return raw if len(raw) == 16 else None


def soften(mod: Mod) -> Mod:
    """A replayed modify in multi-provider: deletes never fail, single-valued adds replace (syncrepl_op_modify)."""
    if mod.op == "delete" or mod.soft_all:
        return Mod(SOFT_DELETE, mod.name, mod.key, list(mod.values))
    return mod


def supersede(schema, old: Mod, new: Mod, current: Entry) -> bool:
    """Resolve an older modification against a newer one of the same attribute (slapd's resolve table);
    modifies `old` in place; False when nothing of it is left."""
    at = schema.attribute_type(old.key.split(";", 1)[0])
    new_values = [] if new.op == "replace" else new.values
    if new.op in ("delete", SOFT_DELETE, "replace"):
        if not new_values:
            return False  # a newer delete-all (or replace) cancels everything older
        if old.op in ("delete", SOFT_DELETE):
            if not old.values:
                old.soft_all = True  # delete all, but softly
            else:
                old.values = without(at, old.values, new_values)
                if not old.values:
                    return False
        elif old.op == "add":
            old.values = without(at, old.values, new_values)
            if not old.values:
                return False
    if new.op in ("add", "replace"):
        if at is not None and at.single_value:
            return False
        if old.op in ("delete", SOFT_DELETE):
            if new.op == "replace":
                return False
            if not old.values:
                # ITS#9751: a newer add supersedes part of an older delete-all: delete the values there are
                there = current.get(old.key)
                if not there:
                    return False
                old.values = list(there)
                old.soft_all = False
        old.values = without(at, old.values, new.values)
        if not old.values:
            return False
    return True


def without(at, values: list[bytes], remove: list[bytes]) -> list[bytes]:
    gone = {equality_key(at, v) for v in remove}
    return [v for v in values if equality_key(at, v) not in gone]


def apply_mods(schema, entry: Entry, mods: list[Mod]) -> None:
    """Apply modifications in order; a soft delete removes only what is there (never noSuchAttribute)."""
    for mod in mods:
        if mod.op == SOFT_DELETE:
            attribute = entry.attrs.get(mod.key)
            if attribute is None:
                continue
            if not mod.values:
                del entry.attrs[mod.key]
                continue
            at = schema.attribute_type(mod.key.split(";", 1)[0])
            present = {equality_key(at, v) for v in attribute.values}
            values = [v for v in mod.values if equality_key(at, v) in present]
            if values:
                apply_modifications(schema, entry, [ldap.Change(ldap.MOD_DELETE, mod.name, values)])
            continue
        if mod.op == "replace" and not mod.values:
            entry.attrs.pop(mod.key, None)
            continue
        apply_modifications(schema, entry, [ldap.Change(LDAP_OP[mod.op], mod.name, list(mod.values))])
