"""The accesslog overlay (slapo-accesslog(5)): every logged write leaves an audit* entry in a log database.

**A change and its log entry are committed together or not at all.** The log database is a database of its own
(its own LMDB environment, as slapd's `database mdb` with `suffix cn=accesslog`) and two LMDB environments
cannot share a transaction, so the log entry goes through an *outbox*: inside the change's own transaction the
overlay stores the finished log entry in the main database's `aux` table under `accesslog/<reqStart>`. After the
commit it is added to the log database (step 2) and then removed from the outbox (step 3). Step 2 is idempotent
(an entry whose reqStart DN exists already is not added again), so a crash, a kill -9 or a failed commit of the
log database between the steps only delays it: the outbox is replayed, in reqStart order, when the server starts
and before each later move. An operation that fails changes nothing in the main database; its log entry
(logsuccess FALSE) is written to the log database directly.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import Scope, StorageError
from pyldapd.model.csn import sid_of
from pyldapd.model.dn import is_descendant, normalize_dn, split_rdn
from pyldapd.model.entry import Entry
from pyldapd.model.filter import parse_filter
from pyldapd.overlays.base import Overlay, WriteOp
from pyldapd.protocol import ldap
from pyldapd.replication.state import Change

if TYPE_CHECKING:
    from pyldapd.backends.mdb import WriteTxn

OUTBOX = b"accesslog/"


WRITES = ("add", "delete", "modify", "modrdn")
# slapo-accesslog(5)'s operation names; pyldapd logs the write operations (reads and session ones are refused)
OP_NAMES = {"writes": WRITES, "reads": ("compare", "search"), "session": ("abandon", "bind", "unbind"),
            "all": WRITES + ("compare", "search", "abandon", "bind", "unbind", "extended")}  # fmt: skip
ALL_OPS = OP_NAMES["all"]
KIND_OP = {"add": "add", "delete": "delete", "modify": "modify", "rename": "modrdn"}
OBJECT_CLASS = {"add": "auditAdd", "delete": "auditDelete", "modify": "auditModify", "modrdn": "auditModRDN"}
MOD_SIGN = {ldap.MOD_ADD: "+", ldap.MOD_DELETE: "-", ldap.MOD_REPLACE: "=", ldap.MOD_INCREMENT: "#"}
STAMPS = ("entryCSN", "modifiersName", "modifyTimestamp")  # what slapd adds to every modify and modrdn
AGE = re.compile(r"^(?:(\d+)\+)?(\d\d):(\d\d)(?::(\d\d))?$")


def parse_age(text: str) -> int:
    """slapd's [ddd+]hh:mm[:ss] interval, in seconds (ValueError when malformed)."""
    match = AGE.match(text)
    if match is None:
        raise ValueError(f"invalid interval {text!r} (expected [ddd+]hh:mm[:ss])")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds  # slapd checks no field's range but the days'
    if days > 25000 or total < 1:
        raise ValueError(f"invalid interval {text!r} (expected [ddd+]hh:mm[:ss], at least one second)")
    return total


def parse_ops(words: list[str]) -> set[str]:
    ops: set[str] = set()
    for word in words:
        for part in word.lower().split(","):  # slapd also accepts one comma-separated list
            if part in OP_NAMES:
                ops.update(OP_NAMES[part])
            elif part in ALL_OPS:
                ops.add(part)
            else:
                raise ValueError(f"unknown operation {part!r}")
    refused = sorted(ops - set(WRITES))
    if refused:  # logged as slapd does only for writes so far: refused rather than accepted and ignored
        raise ValueError(f"logging {', '.join(refused)} operations is not supported by pyldapd (only writes)")
    return ops


def truth(text: str) -> bool:
    value = text.lower()
    if value in ("true", "on", "yes", "1"):
        return True
    if value in ("false", "off", "no", "0"):
        return False
    raise ValueError(f"invalid boolean {text!r}")


@dataclass
class AccesslogSettings:
    """An accesslog overlay's configuration, slapd.conf names (`logdb` ...)."""

    logdb: str = ""
    ops: set[str] = field(default_factory=set)
    purge_age: int = 0  # seconds; 0: no purge
    purge_period: int = 0
    success: bool = False
    old_filter: str = ""
    old_attrs: list[str] = field(default_factory=list)
    bases: list[tuple[set[str], str]] = field(default_factory=list)

    @classmethod
    def parse(cls, settings: list[tuple[str, list[str]]]) -> AccesslogSettings:
        """Raises ValueError with the directive's name when a value is wrong."""
        result = cls()
        for name, args in settings:
            try:
                result.apply(name.lower(), args)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if not result.logdb:
            raise ValueError("logdb: the accesslog overlay needs a log database (logdb <suffix>)")
        return result

    def apply(self, name: str, args: list[str]) -> None:
        if not args:
            raise ValueError("missing value")
        if name == "logdb":
            self.logdb = " ".join(args).strip('"')  # cn=config values keep slapd's quotes
        elif name == "logops":
            self.ops |= parse_ops(args)
        elif name == "logpurge":
            if len(args) != 2:
                raise ValueError("expects <age> <period>")
            self.purge_age, self.purge_period = parse_age(args[0]), parse_age(args[1])
        elif name == "logsuccess":
            self.success = truth(args[0])
        elif name == "logold":
            parse_filter(" ".join(args))
            self.old_filter = " ".join(args)
        elif name == "logoldattr":
            self.old_attrs += [a for arg in args for a in arg.split(",") if a]
        elif name == "logbase":
            if len(args) < 2:
                raise ValueError("expects <operations> <base DN>")
            self.bases.append((parse_ops(args[0].split("|")), " ".join(args[1:]).strip('"')))
        else:
            raise ValueError("unknown accesslog directive")


def microtime(seconds: float) -> str:
    whole, micro = divmod(
        round(seconds * 1e6), 1_000_000
    )  # rounded: float steps of 1e-6 land on the microsecond
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(whole)) + f".{micro:06d}Z"


def encode_entry(entry: Entry) -> bytes:
    """An outbox record: the log entry's DN and attributes (bytes kept through latin-1)."""
    return json.dumps(
        [entry.dn, [[a.name, [v.decode("latin-1") for v in a.values]] for a in entry.attrs.values()]]
    ).encode()


def decode_entry(data: bytes) -> Entry:
    dn, attributes = json.loads(data)
    entry = Entry(dn)
    for name, values in attributes:
        entry.put(name.lower(), name, [v.encode("latin-1") for v in values])
    return entry


class AccessLog(Overlay):
    name = "accesslog"
    last_issued = 0.0  # the latest reqStart handed out, shared by all instances

    def __init__(self, directory: Any, backend: Any, settings: AccesslogSettings) -> None:
        self.directory = directory
        self.backend = backend
        self.purge_handle: asyncio.TimerHandle | None = None
        self.configure(settings)
        # outbox records already in the log database: removed by the next write transaction of the main
        # database (one commit per write saved), or at close; a replay of one is skipped (same DN)
        self.moved: list[bytes] = []
        self.moving: set[bytes] = set()  # records on their way to the log database (its writer thread)
        # writes handed to the log database's writer thread and not yet durable: a client's answer waits for
        # them (Directory.logs_settled), so its log entry is there when it is answered, as before
        self.pending: set[asyncio.Future] = set()

    def configure(self, settings: AccesslogSettings) -> None:
        """New settings (cn=config); a changed purge period takes effect at the next run."""
        self.settings = settings
        self.old_filter = parse_filter(settings.old_filter) if settings.old_filter else None

    # -- configuration ---------------------------------------------------------------------------------------

    @property
    def log_backend(self) -> Any:
        ndn = normalize_dn(self.settings.logdb, self.directory.schema)
        return next((b for b in self.directory.backends if b.suffix_ndn == ndn), None)

    def wants(self, op_name: str, ndn: str) -> bool:
        """slapo-accesslog: an operation is logged when logops names it; an operation a logbase names is
        logged only under that base."""
        restricted = [base for ops, base in self.settings.bases if op_name in ops]
        if restricted:
            return any(ndn == b or is_descendant(ndn, b) for b in self.normalized(restricted))
        return op_name in self.settings.ops

    def normalized(self, dns: list[str]) -> list[str]:
        return [normalize_dn(dn, self.directory.schema) for dn in dns]

    # -- hooks -----------------------------------------------------------------------------------------------

    def in_txn(self, op: WriteOp, txn: WriteTxn) -> None:
        if self.moved:
            done = list(self.moved)
            for key in done:
                txn.delete_raw_metadata(key)
            txn.on_commit(lambda: self.forget(done))
        op_name = KIND_OP[op.kind]
        if self.log_backend is None or not self.wants(op_name, normalize_dn(op.dn, self.directory.schema)):
            return
        entry = self.log_entry(op, op_name, 0, "")
        txn.put_raw_metadata(OUTBOX + entry.first("reqstart"), encode_entry(entry))  # type: ignore[operator]

    def after_commit(self, change: Change) -> None:
        self.flush()

    def start(self) -> None:
        if self.log_root_wanted():
            self.on_log_writer(lambda _txn: self.open_log(), "log database's suffix entry not made")
        self.flush()  # records a crash left between the commit and the move
        self.tidy()
        self.schedule_purge()

    # -- the log database's writes: on its writer thread ----------------------------------------------------

    def on_log_writer(self, work: Callable[[Any], Any], failed: str,
                      then: Callable[[Any], None] | None = None) -> asyncio.Future | None:  # fmt: skip
        """Run work(txn) on the log database's writer thread (group commit, in submission order), never on the
        event loop, where it would wait for the LMDB write lock behind a running group; `then` gets its result
        on the loop once durable (the future, None when done at once or refused). Where no event loop runs (a
        start before serving, a tool) at once."""
        log = self.log_backend
        if log is None:
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                value = work(None)
            except StorageError as exc:
                self.directory.log.error(f"accesslog: {failed}: {exc}")
                return None
            if then is not None:
                then(value)
            return None
        try:
            future = log.db.writer.submit(work)
        except StorageError as exc:
            # the log database is closing: what is in the outbox waits for the next start
            self.directory.log.error(f"accesslog: {failed}: {exc}")
            return None
        self.pending.add(future)

        def done(future: asyncio.Future) -> None:
            self.pending.discard(future)
            if future.cancelled():
                return
            exc = future.exception()
            if exc is not None:
                self.directory.log.error(f"accesslog: {failed}: {exc}")
            elif then is not None:
                then(future.result())

        future.add_done_callback(done)
        return future

    async def settled(self) -> None:
        """Once every log write handed to the writer so far is durable (or failed)."""
        if self.pending:
            await asyncio.wait(list(self.pending))

    def close(self) -> None:
        if self.purge_handle is not None:
            self.purge_handle.cancel()
            self.purge_handle = None
        self.tidy()

    def forget(self, keys: list[bytes]) -> None:
        self.moved = [k for k in self.moved if k not in keys]

    def tidy(self) -> None:
        """Remove the moved records from the outbox now (at start and close: no write to carry it)."""
        if not self.moved:
            return
        done = list(self.moved)
        try:
            with self.backend.db.write() as txn:
                for key in done:
                    txn.delete_raw_metadata(key)
            self.forget(done)
        except StorageError as exc:  # a later start skips them: their DNs are in the log database
            self.directory.log.error(f"accesslog: outbox not tidied: {exc}")

    def failed(self, kind: str, dn: str, conn_id: int, authz_dn: str, result: int, text: str,
               changes: list[Any] | None = None, request: Any = None) -> None:  # fmt: skip
        """A write that failed changed nothing: its log entry (logsuccess FALSE) goes to the log database."""
        op_name = KIND_OP[kind]
        if self.settings.success or self.log_backend is None:
            return
        try:
            ndn = normalize_dn(dn, self.directory.schema)
        except ValueError:
            return
        if not self.wants(op_name, ndn):
            return
        with self.backend.db.read() as txn:
            before = txn.get(ndn)
        op = WriteOp(
            kind, dn, before, None, self.directory.csn.next(), conn_id, authz_dn, changes=changes or []
        )
        if request is not None and kind == "rename":
            op.new_rdn, op.delete_old_rdn = request.new_rdn, request.delete_old_rdn
            op.new_superior = request.new_superior
        if kind == "add" and request is not None:
            op.after = self.attempted_entry(request, op.csn, authz_dn)
            op.before = None
            if before is not None:  # entryAlreadyExists: slapd names the entry that is there
                op.changes = [before]
        # a failed write changed nothing: its log entry does not move the log's contextCSN, which a delta
        # consumer takes as its own state (it would claim a CSN the logged database never had)
        entry = self.log_entry(op, op_name, result, text)
        self.on_log_writer(lambda _txn: self.store(entry, advance=False),
                           f"log entry of a failed {op_name} not stored")  # fmt: skip

    def attempted_entry(self, request: Any, csn: str, authz_dn: str) -> Entry:
        """The entry a failed add would have stored: the client's attributes and the operational ones slapd's
        front end adds before the database refuses it."""
        from pyldapd.server.entries import check_entry, entry_from_attributes

        try:
            entry = entry_from_attributes(self.directory.schema, request.dn, request.attributes)
        except Exception:  # noqa: BLE001 (a request bad enough to fail here is logged without its attributes)
            return Entry(request.dn)
        try:
            structural = check_entry(self.directory.schema, entry)
            entry.put("structuralobjectclass", "structuralObjectClass", [structural.name.encode()])
        except Exception:  # noqa: BLE001, S110 (schema errors are the failure being logged)
            pass
        stamp = (csn[:14] + "Z").encode()
        entry.put("entryuuid", "entryUUID", [str(uuidlib.uuid1()).encode()])
        entry.put("creatorsname", "creatorsName", [authz_dn.encode()])
        entry.put("createtimestamp", "createTimestamp", [stamp])
        entry.put("entrycsn", "entryCSN", [csn.encode()])
        entry.put("modifiersname", "modifiersName", [authz_dn.encode()])
        entry.put("modifytimestamp", "modifyTimestamp", [stamp])
        return entry

    # -- the log entry ---------------------------------------------------------------------------------------

    def next_start(self) -> float:
        """reqStart: now, to the microsecond, after the previous one of every accesslog of this process (it
        names the log entry, and two logged databases may share a log database)."""
        now = max(time.time(), AccessLog.last_issued + 2e-6)
        AccessLog.last_issued = now
        return now

    def log_entry(self, op: WriteOp, op_name: str, result: int, text: str) -> Entry:
        start = self.next_start()
        log = self.log_backend
        req_start = microtime(start)
        entry = Entry(f"reqStart={req_start},{log.config.suffix}")
        structural = OBJECT_CLASS[op_name]
        entry.put("objectclass", "objectClass", [structural.encode()])
        entry.put("structuralobjectclass", "structuralObjectClass", [structural.encode()])
        entry.put("reqstart", "reqStart", [req_start.encode()])
        entry.put("reqend", "reqEnd", [microtime(start + 1e-6).encode()])
        entry.put("reqtype", "reqType", [op_name.encode()])
        entry.put("reqsession", "reqSession", [str(op.conn_id).encode()])
        if op.authz_dn:
            entry.put("reqauthzid", "reqAuthzID", [op.authz_dn.encode()])
        entry.put("reqdn", "reqDN", [op.dn.encode()])
        if text:
            entry.put("reqmessage", "reqMessage", [text.encode()])
        entry.put("reqresult", "reqResult", [str(result).encode()])
        after = op.after
        stamps = {n.lower(): after.get(n.lower()) if after is not None else [] for n in STAMPS}
        if op.after is None and op.kind in (
            "modify",
            "rename",
        ):  # a failed write: the stamps it would have had
            stamps = {"entrycsn": [op.csn.encode()], "modifiersname": [op.authz_dn.encode()],
                      "modifytimestamp": [(op.csn[:14] + "Z").encode()]}  # fmt: skip
        if op.stamps is not None:  # a replayed change: its origin's stamps (an older one leaves the entry's)
            stamps = {key: values for key, values in op.stamps.items()}
        if op_name == "add" and after is not None:
            entry.put(
                "reqmod",
                "reqMod",
                [f"{a.name}:+ ".encode() + v for a in after.attrs.values() for v in a.values],
            )
        elif op_name == "modify":
            mods = []
            for index, change in enumerate(op.changes):
                sign = MOD_SIGN[change.operation]
                mods += [f"{change.attr}:{sign} ".encode() + v for v in change.values] or [
                    f"{change.attr}:{sign}".encode()
                ]
                following = op.changes[index + 1] if index + 1 < len(op.changes) else None
                if (following is not None and following.operation == change.operation
                        and self.key(following.attr) == self.key(change.attr)):  # fmt: skip
                    mods.append(b":")  # ITS#6545: one attribute changed twice in a row, as two modifications
            mods += [f"{n}:= ".encode() + v for n in STAMPS for v in stamps[n.lower()]]
            entry.put("reqmod", "reqMod", mods)
        elif op_name == "modrdn":
            entry.put("reqmod", "reqMod", [f"{n}:= ".encode() + v for n in STAMPS for v in stamps[n.lower()]])
        old = self.old_values(op, op_name)
        if old:
            entry.put("reqold", "reqOld", old)
        if op_name == "modrdn":
            entry.put("reqnewrdn", "reqNewRDN", [op.new_rdn.encode()])
            entry.put("reqdeleteoldrdn", "reqDeleteOldRDN", [b"TRUE" if op.delete_old_rdn else b"FALSE"])
            if op.new_superior is not None:
                entry.put("reqnewsuperior", "reqNewSuperior", [op.new_superior.encode()])
            parent = op.new_superior if op.new_superior is not None else split_rdn(op.dn)[1]
            entry.put("reqnewdn", "reqNewDN", [(f"{op.new_rdn},{parent}" if parent else op.new_rdn).encode()])
        target = op.after if op.after is not None else op.before
        if op_name == "add" and op.changes:  # a failed add of an existing DN: that entry's UUID
            target = op.changes[0]
        if target is not None and target.get("entryuuid"):
            entry.put("reqentryuuid", "reqEntryUUID", target.get("entryuuid"))
        rootdn = (log.config.rootdn or "").encode()
        entry.put("entryuuid", "entryUUID", [str(uuidlib.uuid1()).encode()])
        entry.put("creatorsname", "creatorsName", [rootdn])
        entry.put("createtimestamp", "createTimestamp", [(op.csn[:14] + "Z").encode()])
        entry.put("entrycsn", "entryCSN", [op.csn.encode()])
        entry.put("modifiersname", "modifiersName", [rootdn])
        entry.put("modifytimestamp", "modifyTimestamp", [(op.csn[:14] + "Z").encode()])
        return entry

    def old_values(self, op: WriteOp, op_name: str) -> list[bytes]:
        """reqOld (logold): the old entry when it matches the filter; a delete keeps all of it, a modify and a
        modrdn the attributes they change plus those logoldattr names."""
        before = op.before
        if (
            before is None
            or self.old_filter is None
            or not self.directory.filters.matches(self.old_filter, before)
        ):
            return []
        if op_name == "delete":
            keys = list(before.attrs)
        elif op_name == "modrdn" and not self.settings.old_attrs:
            return []  # slapd keeps a renamed entry's old values only when logoldattr names some
        else:
            names = {self.key(n) for n in self.settings.old_attrs}
            names |= {n.lower() for n in STAMPS}
            if op_name == "modify":
                names |= {self.key(c.attr) for c in op.changes}
            elif op_name == "modrdn":  # the RDN attributes the rename adds values to or removes them from
                rdns = [op.new_rdn] + ([split_rdn(op.dn)[0]] if op.delete_old_rdn else [])
                parts = [part for rdn in rdns for part in re.split(r"(?<!\\)\+", rdn)]
                names |= {self.key(part.split("=", 1)[0]) for part in parts}
            keys = [k for k in before.attrs if k in names]
        return [f"{before.attrs[k].name}: ".encode() + v for k in keys for v in before.attrs[k].values]

    def key(self, name: str) -> str:
        at = self.directory.schema.attribute_type(name)
        return self.directory.schema.attribute_key(name) if at is not None else name.lower()

    # -- moving the outbox into the log database -------------------------------------------------------------

    def flush(self) -> None:
        """Move the outbox's records into the log database, in reqStart order, on the log database's writer
        thread (one operation of its group commit). A failure leaves them all in the outbox: moved after the
        next write or at the next start (a record stored already is skipped)."""
        with self.backend.db.read() as txn:
            records = txn.raw_metadata_items(OUTBOX)
        todo = [(key, data) for key, data in records if key not in self.moved and key not in self.moving]
        if not todo:
            return
        keys = [key for key, _ in todo]
        self.moving.update(keys)

        def move(_txn: Any) -> list[bytes]:
            for _key, data in todo:
                self.store(decode_entry(data))
            return keys

        def moved(done: list[bytes]) -> None:
            self.moved.extend(k for k in done if k not in self.moved)

        future = self.on_log_writer(move, f"{keys[0].decode()} and later left in the outbox", moved)
        if future is None:  # done at once, or refused
            self.moving.difference_update(keys)
        else:  # after `moved`: a record is always in one of the two
            future.add_done_callback(lambda _f: self.moving.difference_update(keys))

    def store(self, entry: Entry, *, advance: bool = True) -> None:
        """Add a log entry to the log database, once (its reqStart DN says whether it is there already)."""
        log = self.log_backend
        schema = self.directory.schema
        ndn = normalize_dn(entry.dn, schema)
        csn = (entry.first("entrycsn") or b"").decode()
        added = []
        with log.db.writing() as txn:
            for _ in range(1000):
                existing = txn.get(ndn)
                if existing is None:
                    break
                if existing.first("entrycsn") == entry.first("entrycsn"):
                    return  # a replayed outbox record: stored already
                # another record holds this reqStart (the clock stepped back since): the next microsecond
                entry = self.restarted(entry, existing.first("reqstart") or b"")
                ndn = normalize_dn(entry.dn, schema)
            if not txn.exists(log.suffix_ndn):
                added.append(self.container(log, [csn] if csn else []))
                txn.add(added[-1])
            elif csn:
                self.note_min_csn(txn, log, csn)
            txn.add(entry)
            added.append(entry)
            if csn and advance:
                log.context.advance(txn, csn)
            for stored in added:  # the log database's own overlays (syncprov for delta-syncrepl consumers)
                log.publish(Change("add", None, stored, csn, in_csn_order=advance), txn)

    def restarted(self, entry: Entry, taken: bytes) -> Entry:
        text = taken.decode()
        start = calendar.timegm(time.strptime(text[:14], "%Y%m%d%H%M%S")) + int(text[15:21] or 0) / 1e6
        moved = entry.copy()
        req_start = microtime(start + 2e-6)
        moved.dn = f"reqStart={req_start},{self.log_backend.config.suffix}"
        moved.put("reqstart", "reqStart", [req_start.encode()])
        moved.put("reqend", "reqEnd", [microtime(start + 3e-6).encode()])
        return moved

    @staticmethod
    def container(log: Any, csns: list[str]) -> Entry:
        """The log database's suffix entry, as slapd's accesslog_db_root makes it: the logged database's
        contextCSN as its entryCSN, contextCSN and minCSN (the oldest change the log can replay, per server
        ID: syncprov's sessionlog-source and delta consumers read it)."""
        entry = Entry(log.config.suffix)
        entry.put("objectclass", "objectClass", [b"auditContainer"])
        rdn_attr, _, rdn_value = split_rdn(log.config.suffix)[0].partition("=")
        if rdn_attr.lower() == "cn":
            entry.put("cn", "cn", [rdn_value.encode()])
        entry.put("structuralobjectclass", "structuralObjectClass", [b"auditContainer"])
        if csns:
            values = [c.encode() for c in sorted(csns, key=sid_of)]
            entry.put("entrycsn", "entryCSN", [values[0]])
            entry.put("contextcsn", "contextCSN", values)
            entry.put("mincsn", "minCSN", values)
        return entry

    def note_min_csn(self, txn: Any, log: Any, csn: str) -> None:
        """A change of a server ID minCSN has no value for: its CSN becomes that server ID's minCSN
        (accesslog_response); the log holds every later change of it."""
        root = txn.get(log.suffix_ndn)
        if root is None:
            return
        values = root.get("mincsn")
        sid = sid_of(csn)
        if any(sid_of(v.decode()) == sid for v in values):
            return
        updated = root.copy()
        updated.put("mincsn", "minCSN", sorted([*values, csn.encode()], key=lambda v: sid_of(v.decode())))
        txn.modify(log.suffix_ndn, updated)

    def log_root_wanted(self) -> bool:
        """The log database's suffix entry is missing, or lacks minCSN (open_log has something to write)."""
        log = self.log_backend
        if log is None:
            return False
        with log.db.read() as txn:
            root = txn.get(log.suffix_ndn)
            return root is None or bool(not root.get("mincsn") and root.get("contextcsn"))

    def open_log(self) -> None:
        """At start, as slapd's accesslog_db_root: the log database's suffix entry is made if missing (with the
        logged database's contextCSN as minCSN, so a consumer in step with it can be answered from the log);
        one without minCSN takes its contextCSN as minCSN."""
        log = self.log_backend
        if log is None or not self.log_root_wanted():
            return  # nothing to do: no write
        csns = list(self.backend.context.csns.as_dict().values())
        added = None
        with log.db.writing() as txn:
            root = txn.get(log.suffix_ndn)
            if root is None:
                added = self.container(log, csns)
                txn.add(added)
                if csns:
                    log.context.advance(txn, added.first("entrycsn").decode())  # type: ignore[union-attr]
            elif not root.get("mincsn") and root.get("contextcsn"):
                updated = root.copy()
                updated.put("mincsn", "minCSN", list(root.get("contextcsn")))
                txn.modify(log.suffix_ndn, updated)
            if added is not None:
                log.publish(Change("add", None, added, (added.first("entrycsn") or b"").decode()), txn)

    # -- logpurge --------------------------------------------------------------------------------------------

    def schedule_purge(self) -> None:
        if not self.settings.purge_period or self.purge_handle is not None:
            return
        server = getattr(self.directory, "server", None)
        if (
            server is not None and not server.bus.primary
        ):  # one purge per server: worker 0's (server/workers.py)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.purge_handle = loop.call_later(self.settings.purge_period, self.purge_tick)

    def purge_tick(self) -> None:
        self.purge_handle = None
        now = time.time()
        self.on_log_writer(lambda _txn: self.purge(now), "purge failed")
        self.schedule_purge()

    def purge(self, now: float) -> int:
        """Delete the log entries whose reqStart is older than `age` (slapd's log_old_lookup/purge)."""
        log = self.log_backend
        if log is None or not self.settings.purge_age:  # logpurge removed over cn=config meanwhile
            return 0
        cutoff = microtime(now - self.settings.purge_age).encode()
        removed = []
        with log.db.writing() as txn:
            for child in list(txn.search(log.suffix_ndn, Scope.ONE)):
                started = child.first("reqstart")
                if started is not None and started <= cutoff:  # slapd's (reqStart<=now-age)
                    txn.delete(normalize_dn(child.dn, self.directory.schema))
                    removed.append(child)
            purged = [(child.first("entrycsn") or b"").decode() for child in removed]
            self.raise_min_csn(txn, log, [csn for csn in purged if csn], first_only=False)
            for child in removed:
                log.publish(Change("delete", child, None, (child.first("entrycsn") or b"").decode()), txn)
        return len(removed)

    @staticmethod
    def raise_min_csn(txn: Any, log: Any, csns: list[str], *, first_only: bool) -> None:
        """minCSN on the log's suffix entry, one value per server ID: from where the log holds every change of
        that server. A server ID's first logged change adds its value; a purge raises it to the newest purged
        change (slapd's accesslog_response and log_old_lookup). syncprov on the log database compares a
        delta-syncrepl consumer's cookie with it (replication/provider.py)."""
        container = txn.get(log.suffix_ndn)
        if container is None or not csns:
            return
        by_sid = {sid_of(v.decode()): v.decode() for v in container.get("mincsn")}
        changed = False
        for csn in csns:
            sid = sid_of(csn)
            if sid not in by_sid or (not first_only and csn > by_sid[sid]):
                by_sid[sid] = csn
                changed = True
        if changed:
            updated = container.copy()
            updated.put("mincsn", "minCSN", [by_sid[sid].encode() for sid in sorted(by_sid)])
            txn.modify(log.suffix_ndn, updated)


def check_accesslog(config: Any) -> None:
    """What slapd refuses in a whole configuration: an accesslog overlay without a usable logdb (ValueError)."""

    for db in config.data_databases():
        check_database(config, db)
    if getattr(config, "config_database", None) is not None:
        check_database(config, config.config_database)
        for overlay in config.config_database.overlays:
            if overlay.name == "accesslog" and not AccesslogSettings.parse(overlay.settings).success:
                # a refused cn=config change is not written anywhere pyldapd could log it from
                from pyldapd.config.cnconfig import ConfigValueError

                raise ConfigValueError("<olcAccessLogSuccess> FALSE (logging failed writes) on the config "
                                       "database is not supported by pyldapd")  # fmt: skip


def check_database(config: Any, db: Any) -> None:
    def plain(dn: str) -> str:
        return ",".join(part.strip().lower() for part in dn.split(","))

    for overlay in db.overlays:
        if overlay.name != "accesslog":
            continue
        settings = AccesslogSettings.parse(overlay.settings)
        logdb = plain(settings.logdb)
        if logdb in (plain(s) for s in db.suffixes):
            raise ValueError(f"logdb {settings.logdb}: the log database cannot be the logged database")
        if not any(logdb in (plain(s) for s in other.suffixes) for other in config.data_databases()):
            from pyldapd.config.cnconfig import ConfigValueError

            raise ConfigValueError("<olcAccessLogDB> no matching backend found for suffix")  # slapd's words


def verbs(ops: set[str]) -> list[str]:
    """slapd's mask_to_verbs: the group names a set covers whole, then the single operations left, in its order."""
    words, left = [], set(ops)
    for word in ("all", "writes", "session", "reads", *ALL_OPS):
        members = set(OP_NAMES.get(word, (word,)))
        if members <= left:
            words.append(word)
            left -= members
    return words


def unparse_age(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}+" if days else "") + f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def olc_values(settings: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """The olcAccessLog* values slapd writes for these directives (cn=config form), by directive name."""
    parsed = AccesslogSettings()
    for name, args in settings:
        parsed.apply(name.lower(), args)
    values: dict[str, list[str]] = {}
    if parsed.logdb:
        values["logdb"] = [parsed.logdb]
    if parsed.ops:
        values["logops"] = verbs(parsed.ops)
    if parsed.purge_age:
        values["logpurge"] = [f"{unparse_age(parsed.purge_age)} {unparse_age(parsed.purge_period)}"]
    if any(name.lower() == "logsuccess" for name, _ in settings):
        values["logsuccess"] = ["TRUE" if parsed.success else "FALSE"]
    if parsed.old_filter:
        values["logold"] = [parsed.old_filter]
    if parsed.old_attrs:
        values["logoldattr"] = parsed.old_attrs[::-1]  # slapd keeps them newest first
    if parsed.bases:
        values["logbase"] = [f'{"|".join(verbs(ops))} "{base}"' for ops, base in parsed.bases]
    return values


class ConfigAccessLog(AccessLog):
    """slapo-accesslog over cn=config (olcOverlay=accesslog under olcDatabase={0}config): each change the
    config database commits is logged to the log database after it is written, as slapd's accesslog logs a
    back-config write once it succeeded. cn=config has no transaction to carry an outbox: the log entry is
    stored directly (a crash in between loses that log entry, not the change)."""

    def in_txn(self, op: WriteOp, txn: WriteTxn) -> None:  # cn=config calls log_change instead
        return

    def after_commit(self, change: Change) -> None:
        return

    def start(self) -> None:
        if self.log_root_wanted():
            self.on_log_writer(lambda _txn: self.open_log(), "log database's suffix entry not made")
        self.schedule_purge()

    def close(self) -> None:
        if self.purge_handle is not None:
            self.purge_handle.cancel()
            self.purge_handle = None

    def log_change(self, op: WriteOp) -> None:
        op_name = KIND_OP[op.kind]
        if self.log_backend is None or not self.wants(op_name, normalize_dn(op.dn, self.directory.schema)):
            return
        entry = self.log_entry(op, op_name, 0, "")
        self.on_log_writer(lambda _txn: self.store(entry), "cn=config change not logged")
