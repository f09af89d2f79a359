"""The syncprov overlay: answers LDAP Content Synchronization (RFC 4533) searches as OpenLDAP's syncprov does.

Refresh: an initial load (every entry as `add`, ended as a delete phase), an incremental refresh from a cookie
(a delete phase replayed from the session log when it covers the consumer's state, else a present phase of
syncIdSets), or nothing but the end of the refresh when nothing changed. Persist: every committed change is
pushed to each persistent search it concerns, in commit (so CSN) order, with a cookie, except to the consumer
the change came from (echo suppression by server ID, as syncprov's "skipping original/relayed sid").
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import Scope, StorageError
from pyldapd.model.csn import CSNGenerator, format_cookie, parse_cookie, sid_of
from pyldapd.model.dn import is_descendant, normalize_dn, parent_dn, parse_dn
from pyldapd.model.entry import Entry
from pyldapd.overlays.base import Overlay
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.replication.state import Change, entry_uuid_bytes
from pyldapd.server import journal
from pyldapd.server.directory import is_glue
from pyldapd.server.errors import LDAPError
from pyldapd.server.log import SYNC
from pyldapd.server.steps import STEP_EVERY, Steps

if TYPE_CHECKING:
    from pyldapd.server.directory import Backend, Directory

# what syncprov_play_accesslog's filter picks: (objectClass=auditWriteObject) (so its subclasses) or auditExtended
LOGGED_WRITES = {"auditwriteobject", "auditadd", "auditdelete", "auditmodify", "auditmodrdn", "auditextended"}
UUID_SET_SIZE = 256  # syncIdSet batch size, as OpenLDAP's SLAP_SYNCUUID_SET_SIZE
# A persistent search whose connection holds this many octets the client has not read (the transport's buffer,
# plus the changes queued while its refresh runs) ends with e-syncRefreshRequired: a consumer that stopped
# reading costs at most this much memory, and redoes a refresh from its cookie when it reads again. slapd queues
# without a bound (syncprov_qresp) and only writetimeout ends such a connection. 4 MiB: about 4,000 changes of
# 1 KB entries, several seconds of a write burst, before a consumer is asked to refresh.
PERSIST_UNSENT_MAX = 4 << 20


@dataclass
class ProviderSettings:
    checkpoint_ops: int = 0
    checkpoint_minutes: int = 0
    sessionlog: int = 0
    nopresent: bool = False
    reloadhint: bool = False
    # syncprov-sessionlog-source: the accesslog database whose entries answer a consumer's delete phase
    sessionlog_source: str = ""

    @classmethod
    def from_overlay(cls, settings: list[tuple[str, list[str]]]) -> ProviderSettings:
        """`syncprov-checkpoint 100 10`, `syncprov-sessionlog 100`, `syncprov-nopresent TRUE`, ...
        Raises SyncprovConfigError (slapd's words) for what slapd's syncprov refuses."""
        result = cls()
        for name, args in settings:
            try:
                result.apply(name.lower().removeprefix("syncprov-"), args)
            except SyncprovConfigError as exc:
                exc.directive = name
                raise
        return result

    def apply(self, key: str, args: list[str]) -> None:
        if key == "checkpoint":
            if len(args) != 2:
                raise SyncprovConfigError("<{name}> missing <ops> <minutes> argument")
            ops, minutes = integer(args[0], "ops #"), integer(args[1], "time")
            if ops <= 0:
                raise SyncprovConfigError(f'{{name}} invalid checkpoint ops # "{ops}"')
            if minutes <= 0:  # slapd's text shows the ops count here (syncprov.c), kept for identical errors
                raise SyncprovConfigError(f'{{name}} invalid checkpoint time "{ops}"')
            self.checkpoint_ops, self.checkpoint_minutes = ops, minutes
        elif key == "sessionlog":
            if len(args) != 1:
                raise SyncprovConfigError("<{name}> missing <ops> argument")
            size = integer(args[0], "size")
            if size < 0:
                raise SyncprovConfigError(f"{{name}} size {size} is negative")
            self.sessionlog = size
        elif key in ("nopresent", "reloadhint"):
            if len(args) != 1:
                raise SyncprovConfigError("<{name}> missing TRUE or FALSE")
            setattr(self, key, on_off(args[0]))
        elif key == "sessionlog-source":
            dn = args[0].strip('"') if len(args) == 1 else ""
            try:
                parse_dn(dn)
            except ValueError:
                raise SyncprovConfigError("<{name}> invalid DN 21 (Invalid syntax)") from None
            if not dn:
                raise SyncprovConfigError("<{name}> invalid DN 21 (Invalid syntax)")
            self.sessionlog_source = dn
        else:
            raise SyncprovConfigError("unknown directive <{name}> inside backend database definition.")


class SyncprovConfigError(ValueError):
    """A syncprov value slapd refuses; its message names the directive or the olcSp* attribute as slapd does."""

    def __init__(self, template: str) -> None:
        super().__init__(template)
        self.template = template
        self.directive = ""

    def text_for(self, name: str) -> str:
        return self.template.format(name=name)

    def __str__(self) -> str:
        return self.text_for(self.directive or "syncprov")


def check_syncprov(config: Any, *, online: bool = False) -> None:
    """What slapd refuses in a whole configuration's syncprov overlays (ValueError): bad values; a
    syncprov-sessionlog-source without the accesslog schema (syncprov_setup_accesslog), or, added over
    cn=config (`online`), naming no database."""
    import os

    from pyldapd.config.cnconfig import ConfigValueError

    loaded = {os.path.basename(m).split(".")[0].lower() for m in config.modules}
    has_accesslog = "accesslog" in loaded or any(
        o.name == "accesslog" for db in config.databases for o in db.overlays
    )
    for db in config.data_databases():
        for overlay in db.overlays:
            if overlay.name != "syncprov":
                continue
            source = ProviderSettings.from_overlay(overlay.settings).sessionlog_source
            if not source:
                continue
            if not has_accesslog:
                raise ConfigValueError("<olcSpSessionlogSource> couldn't get definition for attribute reqType, "
                                       "is accesslog configured?")  # fmt: skip
            wanted = plain_dn(source)
            if online and not any(
                wanted == plain_dn(s) for other in config.data_databases() for s in other.suffixes
            ):
                raise ConfigValueError("<olcSpSessionlogSource> no matching backend found for suffix")


def plain_dn(dn: str) -> str:
    return ",".join(part.strip().lower() for part in dn.strip('"').split(","))


def integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SyncprovConfigError(f'{{name}} unable to parse {what} "{text}"') from None


def on_off(text: str) -> bool:
    value = text.lower()
    if value in ("true", "on", "yes"):
        return True
    if value in ("false", "off", "no"):
        return False
    raise SyncprovConfigError("<{name}> invalid value")


class SessionLog:
    """The last N non-add changes (CSN, entryUUID, kind), enough to replay deletes to a consumer that is behind."""

    def __init__(self, size: int, lower_bounds: dict[int, str]) -> None:
        self.size = size
        self.records: deque[tuple[str, bytes, str]] = deque()
        self.lower_bounds = dict(lower_bounds)  # per sid: changes at or below this CSN may be missing

    def add(self, change: Change) -> None:
        uuid = change.entry_uuid
        if change.kind == "add" or uuid is None or self.size <= 0:
            return
        self.records.append((change.csn, uuid, change.kind))
        while len(self.records) > self.size:
            csn, _, _ = self.records.popleft()
            self.lower_bounds[sid_of(csn)] = csn

    def covers(self, consumer: dict[int, str]) -> bool:
        if not self.records:
            return False
        return all(
            sid not in self.lower_bounds or csn >= self.lower_bounds[sid] for sid, csn in consumer.items()
        )

    def since(self, consumer: dict[int, str], provider: dict[int, str]) -> list[tuple[str, bytes, str]]:
        out = []
        for csn, uuid, kind in self.records:
            sid = sid_of(csn)
            if sid in consumer and csn <= consumer[sid]:
                continue
            if sid in provider and csn > provider[sid]:
                continue
            out.append((csn, uuid, kind))
        return out


class PersistentSearch:
    def __init__(self, conn: Any, message_id: int, base_ndn: str, scope: Scope, matches: Callable[[Entry], bool],
                 selection: Any, rid: int, consumer_sid: int | None, manage_dsa_it: bool) -> None:  # fmt: skip
        self.conn = conn
        self.message_id = message_id
        self.base_ndn = base_ndn
        self.scope = scope
        self.matches = matches
        self.selection = selection
        self.rid = rid
        self.consumer_sid = consumer_sid
        self.manage_dsa_it = manage_dsa_it
        # from here on every change is pushed to it: replication/consumer.py tells concurrent writes by it
        self.registered_at = time.time()
        # while its refresh runs (in steps, others served between them), the changes committed meanwhile wait
        # here and follow the refresh's end, as syncprov queues them for a search still refreshing; each with
        # the CSNs its cookie gives the consumer
        self.queued: list[tuple[bytes, dict[int, str] | None]] | None = None
        self.queued_bytes = 0
        # past PERSIST_UNSENT_MAX unsent octets: what was queued is dropped, and the search ends with
        # e-syncRefreshRequired once its refresh is over (at once when it is over already)
        self.overflowed = False
        # the state the consumer holds once it has read what went to the connection (the cookie of the
        # e-syncRefreshRequired result: RFC 4533 3.3.2, "for use in subsequent Sync Operations")
        self.sent_state: dict[int, str] = {}

    def unsent(self) -> int:
        """Octets of this search's connection not yet taken by the client, plus those queued here."""
        transport = getattr(self.conn, "transport", None)
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return buffered + self.queued_bytes

    def send(self, message: bytes, state: dict[int, str] | None = None) -> bool:
        """Send (or queue, while refreshing) one message; False when the connection's unsent octets would
        pass PERSIST_UNSENT_MAX: the search has overflowed and its queue is freed."""
        if self.overflowed:
            return False
        pending = self.unsent()
        if pending and pending + len(message) > PERSIST_UNSENT_MAX:  # (one larger entry alone goes out)
            self.overflowed = True
            if self.queued is not None:
                self.queued, self.queued_bytes = [], 0
            return False
        if self.queued is not None:
            self.queued.append((message, state))
            self.queued_bytes += len(message)
        else:
            self.conn.send(message)
            self.sent(state)
        return True

    def sent(self, state: dict[int, str] | None) -> None:
        for sid, csn in (state or {}).items():
            if csn > self.sent_state.get(sid, ""):
                self.sent_state[sid] = csn

    def go_live(self, state: dict[int, str]) -> None:
        """The refresh is over (the consumer holds `state`): what was queued meanwhile goes out, then every
        change as it comes."""
        self.sent(state)
        queued, self.queued, self.queued_bytes = self.queued, None, 0
        for message, changed in queued or ():
            self.conn.send(message)
            self.sent(changed)


def in_scope(ndn: str, base_ndn: str, scope: Scope) -> bool:
    if scope == Scope.BASE:
        return ndn == base_ndn
    if scope == Scope.ONE:
        return ndn != base_ndn and parent_dn(ndn) == base_ndn
    if scope == Scope.SUB:
        return ndn == base_ndn or is_descendant(ndn, base_ndn)
    return is_descendant(ndn, base_ndn)


class SyncProvider(Overlay):
    """The syncprov overlay: the stack calls after_commit with every committed change."""

    name = "syncprov"

    def __init__(self, directory: Directory, backend: Backend, settings: ProviderSettings) -> None:
        self.directory = directory
        self.backend = backend
        self.settings = settings
        self.schema = directory.schema
        self.log = directory.log
        self.psearches: list[PersistentSearch] = []
        # per consumer server ID, its last refreshes: (when sent, this server's own CSN they covered); the
        # consumer engine reads them to tell a concurrent write from a later one (replication/consumer.py)
        self.served: dict[int, deque[tuple[float, str]]] = {}
        # the persistent searches of consumers that other worker processes serve: (worker, consumer sid, when
        # registered) (server/journal.py), read by the consumer engine as `psearches`
        self.remote_psearches: set[tuple[int, int, float]] = set()
        self.session_log = SessionLog(settings.sessionlog, backend.context.csns.as_dict())
        self.ops_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.checkpointing = False  # a checkpoint is on the writer thread

    @property
    def server_id(self) -> int:
        return self.directory.server_id

    def cookie_sid(self) -> int | None:
        return self.server_id or None  # slapd omits sid= when its server ID is 0

    # -- changes --------------------------------------------------------------------------------------------

    def after_commit(self, change: Change) -> None:
        self.on_change(change)

    def on_change(self, change: Change) -> None:
        """Called after every committed write to the database, in commit order."""
        self.session_log.add(change)
        self.ops_since_checkpoint += 1
        for ps in list(self.psearches):
            if ps.overflowed:
                continue  # refreshing still, then ending with e-syncRefreshRequired: nothing more is queued
            # slapd knows a change's origin only for a replicated write (its CSN is set before syncprov sees it):
            # a local write goes to every consumer, even one of this server's own databases (test059)
            origin = change.origin_sid if change.replicated else None
            if ps.consumer_sid is not None and ps.consumer_sid in (origin, change.relay_sid):
                self.log.log(SYNC, f"syncprov: skipping sid {ps.consumer_sid:03x} for rid={ps.rid:03d}")
                continue
            try:
                self.push(ps, change)
            except Exception as exc:  # one broken consumer must not stop the others
                self.log.error(f"syncprov: dropping persistent search of rid={ps.rid:03d}: {exc!r}")
                self.remove(ps)
        # After the fan-out: a checkpoint is a write of its own, and its failure must cost neither the consumers
        # their change nor the client its (committed) result.
        self.maybe_checkpoint()

    def covers(self, ps: PersistentSearch, entry: Entry | None) -> bool:
        if entry is None:
            return False
        if not ps.manage_dsa_it and is_glue(entry):
            return False
        try:
            ndn = normalize_dn(entry.dn, self.schema)
        except ValueError:
            return False
        return in_scope(ndn, ps.base_ndn, ps.scope) and ps.matches(entry)

    def push(self, ps: PersistentSearch, change: Change) -> None:
        before = self.covers(ps, change.before)
        after = change.kind != "delete" and self.covers(ps, change.after)
        cookie = (
            format_cookie(ps.rid, self.cookie_sid(), [change.csn]).encode() if change.in_csn_order else None
        )
        state = {sid_of(change.csn): change.csn} if cookie is not None else None
        if after:
            state_kind = ctl.SYNC_STATE_MODIFY if before else ctl.SYNC_STATE_ADD
            assert change.after is not None
            message = self.entry_message(ps.message_id, change.after, state_kind, cookie, ps.selection)
        elif before:
            assert change.before is not None
            message = self.delete_message(ps.message_id, change.before, cookie)
        else:
            vector = self.backend.context.csns.as_dict()
            info = ctl.SyncInfoNewCookie(format_cookie(ps.rid, self.cookie_sid(), vector).encode())
            message, state = self.info_message(ps.message_id, info), vector
        if not ps.send(message, state) and ps.queued is None:
            self.refresh_required(ps)

    def refresh_required(self, ps: PersistentSearch) -> None:
        """A persistent search whose client left too much unread (PERSIST_UNSENT_MAX): it ends with
        e-syncRefreshRequired (4096) and the state its client will hold once it has read what was sent, so the
        consumer goes on from its cookie with a refresh; what was queued for it is freed."""
        self.remove(ps)
        ps.queued, ps.queued_bytes = None, 0
        conn_id = getattr(getattr(ps.conn, "session", None), "conn_id", "?")
        self.log.log(SYNC, f"syncprov: rid={ps.rid:03d} conn={conn_id} persistent search ended, "
                           f"e-syncRefreshRequired: more than {PERSIST_UNSENT_MAX} octets unread")  # fmt: skip
        cookie = format_cookie(ps.rid, self.cookie_sid(), ps.sent_state).encode() if ps.sent_state else None
        done = Control(ctl.SYNC_DONE, False, ctl.encode_sync_done(ctl.SyncDone(cookie, False)))
        try:
            ps.conn.result(ps.message_id, ldap.SEARCH_RESULT_DONE, ResultCode.syncRefreshRequired,
                           "consumer too slow: refresh required", controls=[done], nentries=0)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 (the connection is going away: nothing more to tell it)
            self.log.error(f"syncprov: rid={ps.rid:03d}: e-syncRefreshRequired not sent: {exc!r}")

    def full_cookie(self, rid: int) -> str:
        return format_cookie(rid, self.cookie_sid(), self.backend.context.csns.as_dict())

    # -- messages -------------------------------------------------------------------------------------------

    def entry_message(
        self, message_id: int, entry: Entry, state: int, cookie: bytes | None, selection: Any
    ) -> bytes:
        uuid = entry_uuid_bytes(entry) or bytes(16)
        control = Control(ctl.SYNC_STATE, False, ctl.encode_sync_state(ctl.SyncState(state, uuid, cookie)))
        blob = selection.encode(entry, self.has_children if selection.wants_has_subordinates else None)
        return ldap.encode_search_result_entry(message_id, entry.dn, blob, [control])

    def delete_message(self, message_id: int, entry: Entry, cookie: bytes | None) -> bytes:
        uuid = entry_uuid_bytes(entry) or bytes(16)
        control = Control(ctl.SYNC_STATE, False,
                          ctl.encode_sync_state(ctl.SyncState(ctl.SYNC_STATE_DELETE, uuid, cookie)))  # fmt: skip
        return ldap.encode_search_result_entry(message_id, entry.dn, b"", [control])

    @staticmethod
    def info_message(message_id: int, info: ctl.SyncInfo) -> bytes:
        op = ldap.IntermediateResponse(ctl.SYNC_INFO, ctl.encode_sync_info(info))
        return ldap.encode_message(ldap.LDAPMessage(message_id, op, []))

    def read(self) -> Any:
        """A read transaction over what this provider serves: its database, or the glued tree when it sits above
        an explicit glue overlay on the superior (server/glue.py)."""
        from pyldapd.server import glue

        if self.backend.subordinates and self in glue.above_glue(self.backend):
            return glue.TreeRead(self.backend)
        return self.backend.db.read()

    def has_children(self, ndn: str) -> bool:
        with self.read() as txn:
            return txn.has_children(ndn)

    # -- sync searches --------------------------------------------------------------------------------------

    def sync_search(self, conn: Any, message_id: int, request: ldap.SearchRequest, controls: list[Control],
                    sync: ctl.SyncRequest, selection: Any, matches: Callable[[Entry], bool], base_ndn: str,
                    size_limit: int, deadline: float | None = None) -> Steps:  # fmt: skip
        """Run the refresh stage; True when the search stays open for the persist stage. Past `deadline`
        (time.monotonic()) the refresh ends with timeLimitExceeded, as back-mdb checks it for each candidate.

        Resumable steps (server/steps.py): a refresh of 100,000 entries yields every STEP_EVERY of them, and
        other clients (writers included) are served between steps. The refresh reads one snapshot; a persistent
        search is registered with that snapshot (in the same step, so no commit falls between them) and queues
        the changes committed while the refresh runs, sent after its refreshDone; the refresh's cookie is the
        snapshot's state."""
        manage = any(c.oid == ctl.MANAGE_DSA_IT for c in controls)
        cookie = None
        if sync.cookie:
            try:
                cookie = parse_cookie(sync.cookie)
            except ValueError:
                cookie = None
            if cookie is not None and cookie.rid is None:
                cookie = None
        rid = cookie.rid if cookie is not None and cookie.rid is not None else 0
        consumer_sid = cookie.sid if cookie is not None else None
        provider_state = self.backend.context.csns.as_dict()
        consumer_state = {
            sid: csn for sid, csn in (cookie.csns if cookie else {}).items() if sid in provider_state
        }
        own = self.server_id
        if own in consumer_state and consumer_state[own] > provider_state.get(own, ""):
            raise LDAPError(ResultCode.unwillingToPerform, "consumer state is newer than provider!")
        persist = sync.mode == ctl.SYNC_MODE_REFRESH_AND_PERSIST
        send = conn.send
        end_cookie: str | None = None
        sent = 0

        def send_entry(entry: Entry) -> None:
            nonlocal sent
            if size_limit and sent >= size_limit:
                raise LDAPError(ResultCode.sizeLimitExceeded, "")
            send(self.entry_message(message_id, entry, ctl.SYNC_STATE_ADD, None, selection))
            sent += 1

        def visible(entry: Entry) -> bool:
            if deadline is not None and time.monotonic() > deadline:
                raise LDAPError(ResultCode.timeLimitExceeded, "")
            return (manage or not is_glue(entry)) and matches(entry)

        ps: PersistentSearch | None = None
        with self.read() as txn:  # the database, or the glued tree (server/glue.py)
            if persist:
                ps = PersistentSearch(conn, message_id, base_ndn, Scope(request.scope), matches, selection, rid,
                                      consumer_sid, manage)  # fmt: skip
                ps.queued = []
                self.psearches.append(ps)
                if consumer_sid is not None:
                    journal.tell_psearch(self.directory, self.backend, consumer_sid, ps.registered_at, True)
            try:
                refresh_deletes, end_cookie = yield from self.refresh(
                    txn,
                    conn,
                    message_id,
                    base_ndn,
                    request,
                    sync,
                    cookie,
                    rid,
                    provider_state,
                    consumer_state,
                    persist,
                    send_entry,
                    visible,
                )
            except BaseException:  # an error, a time or size limit, an abandon: nothing stays registered
                if ps is not None:
                    self.remove(ps)
                raise
        encoded_cookie = end_cookie.encode() if end_cookie is not None else None
        if consumer_sid is not None:
            sent_at, covered = time.time(), provider_state.get(own, "")
            self.note_served(consumer_sid, sent_at, covered)
            journal.tell_served(self.directory, self.backend, consumer_sid, sent_at, covered)
        if ps is not None:
            if refresh_deletes:
                info: ctl.SyncInfo = ctl.SyncInfoRefreshDelete(encoded_cookie, True)
            else:
                info = ctl.SyncInfoRefreshPresent(encoded_cookie, True)
            send(self.info_message(message_id, info))
            held = dict(consumer_state)
            for sid, csn in provider_state.items():
                held[sid] = max(csn, held.get(sid, ""))
            ps.go_live(held)
            if ps.overflowed:  # changes committed during the refresh overflowed: it ends here
                self.refresh_required(ps)
                return False
            self.log.log(
                SYNC, f"syncprov: persistent search rid={rid:03d} registered (conn={conn.session.conn_id})"
            )
            return True
        done = Control(
            ctl.SYNC_DONE, False, ctl.encode_sync_done(ctl.SyncDone(encoded_cookie, refresh_deletes))
        )
        conn.result(message_id, ldap.SEARCH_RESULT_DONE, ResultCode.success, controls=[done], nentries=sent)
        return False

    def refresh(self, txn, conn: Any, message_id: int, base_ndn: str, request: ldap.SearchRequest,
                sync: ctl.SyncRequest, cookie: Any, rid: int, provider_state: dict[int, str], consumer_state: dict[int, str],
                persist: bool, send_entry: Callable[[Entry], None], visible: Callable[[Entry], bool]) -> Steps:  # fmt: skip
        """The refresh stage's content from one snapshot; returns (refreshDeletes, the cookie to end with)."""
        send = conn.send
        scope = Scope(request.scope)
        snapshot_cookie = format_cookie(rid, self.cookie_sid(), provider_state)
        base = txn.get(base_ndn)
        if not provider_state and base is None and persist:
            # An empty database: slapd 2.5 ends a refreshAndPersist search with noSuchObject (a refreshOnly one
            # gets refresh-done with no cookie, as below); nothing stays registered for later entries.
            nearest = txn.nearest_ancestor(base_ndn)
            raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
        if not provider_state:
            # A provider with no state yet (a new, empty node of a cluster): slapd refuses a consumer that has
            # state (53, and the consumer waits for its retry); pyldapd sends what it holds, as an initial load,
            # so a new mesh converges without waiting for retries.
            if base is not None:
                for count, entry in enumerate(txn.search(base_ndn, scope, request.filter), 1):
                    if not count % STEP_EVERY:
                        yield None
                    if visible(entry):
                        send_entry(entry)
            return True, None
        if base is None:
            nearest = txn.nearest_ancestor(base_ndn)
            raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
        if cookie and cookie.csns and self.log_cannot_cover(txn, cookie.csns, provider_state):
            raise LDAPError(ResultCode.syncRefreshRequired, "sync cookie is stale")
        if not cookie or not cookie.csns or set(consumer_state) != set(provider_state):
            # initial content, or a state we cannot compare with ours: everything, as adds
            initial = not cookie or not cookie.csns
            for count, entry in enumerate(txn.search(base_ndn, scope, request.filter), 1):
                if not count % STEP_EVERY:
                    yield None
                if visible(entry):
                    send_entry(entry)
            return initial or self.settings.nopresent, snapshot_cookie
        behind = [sid for sid in provider_state if consumer_state[sid] < provider_state[sid]]
        if not behind and not self.backend.context.dirty:
            return True, None
        # syncprov-sessionlog-source: the delete phase comes from the accesslog (None: it cannot cover the
        # cookie, and a present phase follows), as syncprov_play_accesslog
        logged = (
            (yield from self.accesslog_deletes(txn, consumer_state, provider_state, base_ndn, scope, visible))
            if self.settings.sessionlog_source
            else None
        )
        covered = (
            logged is not None
            if self.settings.sessionlog_source
            else self.session_log.covers(consumer_state) or self.settings.nopresent
        )
        if self.settings.reloadhint and not sync.reload_hint and not covered:
            raise LDAPError(ResultCode.syncRefreshRequired, "sync cookie is stale")
        mincsn = min((consumer_state[sid] for sid in behind), default=max(consumer_state.values()))
        if logged is not None:
            refresh_deletes = True
            self.log.log(SYNC, f"syncprov: rid={rid:03d} delete phase of {len(logged)} entries from the accesslog "
                               f"{self.settings.sessionlog_source}")  # fmt: skip
            for count, (csn, uuid) in enumerate(logged, 1):
                if not count % STEP_EVERY:
                    yield None
                cookie_text = format_cookie(rid, self.cookie_sid(), consumer_state, delcsn=csn)
                send(self.info_message(message_id, ctl.SyncInfoIdSet(cookie_text.encode(), True, [uuid])))
        elif covered:
            refresh_deletes = True
            yield from self.replay_deletes(txn, message_id, rid, consumer_state, provider_state, base_ndn, scope,
                                           visible, send)  # fmt: skip
        else:
            refresh_deletes = False
            self.log.log(
                SYNC, f"syncprov: rid={rid:03d} present phase (cookie not covered by the session log)"
            )
            yield from self.send_present(txn, message_id, base_ndn, scope, request, visible, send)
        for count, entry in enumerate(txn.csn_after(mincsn), 1):
            if not count % STEP_EVERY:
                yield None
            csn = (entry.first("entrycsn") or b"").decode()
            sid = sid_of(csn) if csn else -1
            if sid in consumer_state and csn <= consumer_state[sid]:
                continue  # the consumer has it already
            ndn = normalize_dn(entry.dn, self.schema)
            if in_scope(ndn, base_ndn, scope) and visible(entry):
                send_entry(entry)
        return refresh_deletes, snapshot_cookie

    def log_cannot_cover(self, txn, consumer: dict[int, str], provider: dict[int, str]) -> bool:
        """syncprov on an accesslog database (nopresent and reloadhint, as a delta-syncrepl provider sets it): a
        consumer behind whose cookie the log starts (minCSN on its suffix entry, raised by logpurge) must
        reload the content; slapd answers e-syncRefreshRequired."""
        if not (self.settings.nopresent and self.settings.reloadhint):
            return False
        behind = any(sid not in consumer or consumer[sid] < csn for sid, csn in provider.items())
        if not behind and not self.backend.context.dirty:
            return False
        suffix = txn.get(self.backend.suffix_ndn)
        for value in suffix.get("mincsn") if suffix is not None else []:
            oldest = value.decode()
            held = consumer.get(sid_of(oldest))
            if held is not None and oldest <= held:
                continue
            if held is None and self.holds_csn(txn, oldest):
                # a server ID the consumer never heard of, whose first logged change is still there (no purge
                # went past it): the log has all of it, and a full reload in a delta multi-provider mesh would
                # lose what the logs merge (slapd reloads here)
                continue
            return True
        return False

    def holds_csn(self, txn, csn: str) -> bool:
        from pyldapd.model.filter import parse_filter

        return any(
            True for _ in txn.search(self.backend.suffix_ndn, Scope.SUB, parse_filter(f"(entryCSN={csn})"))
        )

    def send_present(
        self, txn, message_id: int, base_ndn: str, scope: Scope, request, visible, send
    ) -> Steps:
        batch: list[bytes] = []
        for count, entry in enumerate(txn.search(base_ndn, scope, request.filter), 1):
            if not count % STEP_EVERY:
                yield None
            if not visible(entry):
                continue
            uuid = entry_uuid_bytes(entry)
            if uuid is not None:
                batch.append(uuid)
            if len(batch) == UUID_SET_SIZE:
                send(self.info_message(message_id, ctl.SyncInfoIdSet(None, False, batch)))
                batch = []
        if batch:
            send(self.info_message(message_id, ctl.SyncInfoIdSet(None, False, batch)))

    def replay_deletes(self, txn, message_id: int, rid: int, consumer: dict[int, str], provider: dict[int, str],
                       base_ndn: str, scope: Scope, visible, send) -> Steps:  # fmt: skip
        """Delete phase from the session log: each gone (or moved-out) entry as its own syncIdSet, CSN order."""
        seen: set[bytes] = set()
        for count, (csn, uuid, kind) in enumerate(self.session_log.since(consumer, provider), 1):
            if not count % STEP_EVERY:
                yield None
            if uuid in seen and kind != "delete":
                continue
            if kind != "delete":
                entry = txn.by_uuid(uuid)
                if entry is not None and in_scope(normalize_dn(entry.dn, self.schema), base_ndn, scope) and visible(
                        entry):  # fmt: skip
                    continue  # still there and still wanted: the changed-entries pass sends it
            seen.add(uuid)
            cookie = format_cookie(rid, self.cookie_sid(), consumer, delcsn=csn).encode()
            send(self.info_message(message_id, ctl.SyncInfoIdSet(cookie, True, [uuid])))

    def accesslog_deletes(self, txn, consumer: dict[int, str], provider: dict[int, str], base_ndn: str,
                          scope: Scope, visible) -> Steps:  # fmt: skip
        """The delete phase syncprov_play_accesslog builds from the log database named by
        syncprov-sessionlog-source: each entry deleted, renamed out of the search base or no longer matching
        since the consumer's cookie, as (its log entry's CSN, its entryUUID), in CSN order. None when the log
        cannot answer: no such database, no minCSN on its suffix entry, or a minCSN (the oldest change the
        log still holds, per server ID) newer than the cookie's CSN for a server ID the consumer is behind on.
        As steps (server/steps.py): the result is the generator's return value."""
        source = self.settings.sessionlog_source
        try:
            log_ndn = normalize_dn(source, self.schema)
        except ValueError:
            return None
        log = next((b for b in self.directory.backends if b.suffix_ndn == log_ndn), None)
        if log is None or log is self.backend:
            self.log.log(SYNC, f"syncprov: no database configured to hold accesslog dn={source}")
            return None
        behind = [sid for sid in provider if consumer.get(sid, "") < provider[sid]]
        if not behind:
            return []
        with log.db.read() as log_txn:
            root = log_txn.get(log_ndn)
            mins = {sid_of(v.decode()): v.decode() for v in (root.get("mincsn") if root is not None else [])}
            for sid in behind:
                if sid not in mins or consumer[sid] < mins[sid]:
                    self.log.log(SYNC, "syncprov: accesslog information inadequate for log replay on "
                                       f"csn={consumer[sid]}")  # fmt: skip
                    return None
            oldest = min(consumer[sid] for sid in behind)
            deletes: list[tuple[str, bytes]] = []
            seen: set[bytes] = set()
            for count, record in enumerate(log_txn.csn_after(oldest), 1):  # streamed: not held in memory
                if not count % STEP_EVERY:
                    yield None
                picked = self.logged_delete(txn, record, consumer, provider, base_ndn, scope, visible, seen)
                if picked is not None:
                    deletes.append(picked)
        return deletes

    def logged_delete(self, txn, record: Entry, consumer: dict[int, str], provider: dict[int, str], base_ndn: str,
                      scope: Scope, visible, seen: set[bytes]) -> tuple[str, bytes] | None:  # fmt: skip
        """One log entry as syncprov_accesslog_uuid_cb sees it: (CSN, entryUUID) when it names an entry the
        consumer must delete, else None; `seen` holds the UUIDs already decided."""
        csn = (record.first("entrycsn") or b"").decode()
        if record.first("reqresult") != b"0" or not csn or csn > provider.get(sid_of(csn), csn):
            return None  # a failure, or newer than the state this refresh ends at
        classes = {c.decode("utf-8", "replace").lower() for c in record.get("objectclass")}
        kind = (record.first("reqtype") or b"").decode().lower()
        if not classes & LOGGED_WRITES or kind == "add":
            return None
        gone = kind == "delete"
        old_dn, new_dn = self.logged_dn(record, "reqdn"), self.logged_dn(record, "reqnewdn")
        if not (under(old_dn, base_ndn) or under(new_dn, base_ndn)):
            return None  # never in the consumer's content
        if kind == "modrdn":
            if not under(old_dn, base_ndn):
                return None  # renamed into the base: the changed-entries pass sends it
            gone = not under(new_dn, base_ndn)
        sid = sid_of(csn)
        if sid in consumer and csn <= consumer[sid]:
            return None  # the consumer has it
        uuid = uuid_bytes(record.first("reqentryuuid"))
        if uuid is None or uuid in seen:
            return None
        seen.add(uuid)
        if not gone:  # modified or renamed inside the base: gone if no longer there or no longer matching
            entry = txn.by_uuid(uuid)
            gone = entry is None or not (
                in_scope(normalize_dn(entry.dn, self.schema), base_ndn, scope) and visible(entry)
            )
        return (csn, uuid) if gone else None

    def logged_dn(self, record: Entry, name: str) -> str | None:
        value = record.first(name)
        if value is None:
            return None
        try:
            return normalize_dn(value.decode(), self.schema)
        except ValueError:
            return None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def stop_search(self, conn: Any, message_id: int, result: int | None) -> bool:
        for ps in list(self.psearches):
            if ps.conn is conn and ps.message_id == message_id:
                self.remove(ps)
                if result is not None:
                    conn.result(message_id, ldap.SEARCH_RESULT_DONE, result, nentries=0)
                return True
        return False

    def connection_closed(self, conn: Any) -> None:
        for ps in list(self.psearches):
            if ps.conn is conn:
                self.remove(ps)

    def remove(self, ps: PersistentSearch) -> None:
        if ps in self.psearches:
            self.psearches.remove(ps)
            if ps.consumer_sid is not None:
                journal.tell_psearch(self.directory, self.backend, ps.consumer_sid, ps.registered_at, False)

    def note_served(self, consumer_sid: int, sent_at: float, covered: str) -> None:
        """A refresh served to a consumer, by this worker or another (server/journal.py)."""
        self.served.setdefault(consumer_sid, deque(maxlen=16)).append((sent_at, covered))

    def changes_lost(self) -> None:
        """Changes were committed that this worker can no longer publish (server/journal.py): no persistent
        search can go on without them, so each ends with e-syncRefreshRequired (its consumer refreshes, RFC 4533
        3.4), and the session log starts again from the vector it no longer covers."""
        for ps in list(self.psearches):
            self.remove(ps)
            try:
                ps.conn.result(
                    ps.message_id, ldap.SEARCH_RESULT_DONE, ResultCode.syncRefreshRequired, nentries=0
                )
            except Exception as exc:  # noqa: BLE001 (a closed connection: nothing to tell)
                self.log.error(f"syncprov: rid={ps.rid:03d} not told to refresh: {exc!r}")
        self.session_log = SessionLog(self.settings.sessionlog, self.backend.context.latest().as_dict())

    def maybe_checkpoint(self) -> None:
        bus = self.directory.bus
        if bus is not None and not bus.primary:  # every worker sees every change: one of them checkpoints
            return
        settings = self.settings
        due = settings.checkpoint_ops and self.ops_since_checkpoint >= settings.checkpoint_ops
        if (
            settings.checkpoint_minutes
            and time.monotonic() - self.last_checkpoint >= settings.checkpoint_minutes * 60
        ):
            due = True
        if due:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the contextCSN vector onto the suffix entry (no timestamps touched, not replicated): a write of the
        database's writer thread (group commit), never of the event loop, which would wait there for the LMDB
        write lock behind a running group. One at a time; the changes counted meanwhile stay due."""
        if self.checkpointing:
            return
        taken = self.ops_since_checkpoint
        backend = self.backend
        try:
            # alone: in a transaction of its own, as before, so that its failed commit costs no client write
            future = backend.db.writer.submit(lambda _txn: backend.write_context_csn(), alone=True)
        except RuntimeError:  # no event loop (a tool, a test): in a transaction of its own
            self.write_checkpoint_now()
            return
        except StorageError as exc:  # the database is closing: its close writes the vector
            self.log.error(f"syncprov: checkpoint of contextCSN failed: {exc}")
            return
        self.checkpointing = True
        future.add_done_callback(lambda done: self.checkpointed(done, taken))

    def checkpointed(self, done: Any, taken: int) -> None:
        self.checkpointing = False
        failure = None if done.cancelled() else done.exception()
        if done.cancelled() or failure is not None:
            # The vector stays safe in the database's metadata; the bookkeeping stays due, so the next change
            # (or the shutdown) tries again.
            self.log.error(f"syncprov: checkpoint of contextCSN failed: {failure}")
            return
        self.ops_since_checkpoint = max(0, self.ops_since_checkpoint - taken)
        self.last_checkpoint = time.monotonic()

    def write_checkpoint_now(self) -> None:
        try:
            self.backend.write_context_csn()
        except StorageError as exc:
            self.log.error(f"syncprov: checkpoint of contextCSN failed: {exc}")
            return
        self.ops_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()

    def close(self) -> None:
        for ps in list(self.psearches):
            try:
                ps.conn.result(ps.message_id, ldap.SEARCH_RESULT_DONE, ResultCode.unavailable, nentries=0)
            except Exception:
                pass
        self.psearches.clear()
        if self.ops_since_checkpoint:
            # the stop: at once (a data database's close writes the vector again once its writer has stopped)
            self.write_checkpoint_now()


def under(ndn: str | None, base_ndn: str) -> bool:
    return ndn is not None and (ndn == base_ndn or is_descendant(ndn, base_ndn))


def uuid_bytes(value: bytes | None) -> bytes | None:
    """A logged reqEntryUUID (its string form) as the 16 bytes a syncIdSet carries."""
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value.decode("ascii").replace("-", ""))
    except ValueError:
        return None
    return raw if len(raw) == 16 else None


def new_context_csn(server_id: int) -> str:
    return CSNGenerator(server_id).next()
