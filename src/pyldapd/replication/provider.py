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
from pyldapd.model.dn import is_descendant, normalize_dn, parent_dn
from pyldapd.model.entry import Entry
from pyldapd.overlays.base import Overlay
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.replication.state import Change, entry_uuid_bytes
from pyldapd.server.directory import is_glue
from pyldapd.server.errors import LDAPError
from pyldapd.server.log import SYNC

if TYPE_CHECKING:
    from pyldapd.server.directory import Backend, Directory

UUID_SET_SIZE = 256  # syncIdSet batch size, as OpenLDAP's SLAP_SYNCUUID_SET_SIZE


@dataclass
class ProviderSettings:
    checkpoint_ops: int = 0
    checkpoint_minutes: int = 0
    sessionlog: int = 0
    nopresent: bool = False
    reloadhint: bool = False

    @classmethod
    def from_overlay(cls, settings: list[tuple[str, list[str]]]) -> ProviderSettings:
        """`syncprov-checkpoint 100 10`, `syncprov-sessionlog 100`, `syncprov-nopresent TRUE`, ..."""
        result = cls()
        for name, args in settings:
            key = name.lower().removeprefix("syncprov-")
            if key == "checkpoint" and len(args) == 2:
                result.checkpoint_ops, result.checkpoint_minutes = int(args[0]), int(args[1])
            elif key == "sessionlog" and args:
                result.sessionlog = int(args[0])
            elif key == "nopresent" and args:
                result.nopresent = args[0].lower() in ("true", "on", "yes")
            elif key == "reloadhint" and args:
                result.reloadhint = args[0].lower() in ("true", "on", "yes")
        return result


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
        self.session_log = SessionLog(settings.sessionlog, backend.context.csns.as_dict())
        self.ops_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()

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
        if after:
            state = ctl.SYNC_STATE_MODIFY if before else ctl.SYNC_STATE_ADD
            assert change.after is not None
            ps.conn.send(self.entry_message(ps.message_id, change.after, state, cookie, ps.selection))
        elif before:
            assert change.before is not None
            ps.conn.send(self.delete_message(ps.message_id, change.before, cookie))
        else:
            info = ctl.SyncInfoNewCookie(self.full_cookie(ps.rid).encode())
            ps.conn.send(self.info_message(ps.message_id, info))

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
                    size_limit: int, deadline: float | None = None) -> bool:  # fmt: skip
        """Run the refresh stage; True when the search stays open for the persist stage. Past `deadline`
        (time.monotonic()) the refresh ends with timeLimitExceeded, as back-mdb checks it for each candidate."""
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

        with self.read() as txn:
            base = txn.get(base_ndn)
            if not provider_state and base is None and persist:
                # An empty database: slapd 2.5 ends a refreshAndPersist search with noSuchObject (a refreshOnly
                # one gets refresh-done with no cookie, as below); nothing stays registered for later entries.
                nearest = txn.nearest_ancestor(base_ndn)
                raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
            if not provider_state:
                # A provider with no state yet (a new, empty node of a cluster): slapd refuses a consumer that has
                # state (53, and the consumer waits for its retry); pyldapd sends what it holds, as an initial
                # load, so a new mesh converges without waiting for retries.
                if base is not None:
                    for entry in txn.search(base_ndn, Scope(request.scope), request.filter):
                        if visible(entry):
                            send_entry(entry)
                refresh_deletes, end_cookie = True, None
            elif base is None:
                nearest = txn.nearest_ancestor(base_ndn)
                raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
            elif not cookie or not cookie.csns or set(consumer_state) != set(provider_state):
                # initial content, or a state we cannot compare with ours: everything, as adds
                initial = not cookie or not cookie.csns
                for entry in txn.search(base_ndn, Scope(request.scope), request.filter):
                    if visible(entry):
                        send_entry(entry)
                refresh_deletes = initial or self.settings.nopresent
                end_cookie = self.full_cookie(rid)
            else:
                behind = [sid for sid in provider_state if consumer_state[sid] < provider_state[sid]]
                if not behind and not self.backend.context.dirty:
                    refresh_deletes, end_cookie = True, None
                else:
                    if (self.settings.reloadhint and not sync.reload_hint and not self.session_log.covers(
                            consumer_state) and not self.settings.nopresent):  # fmt: skip
                        raise LDAPError(ResultCode.syncRefreshRequired, "sync cookie is stale")
                    mincsn = min(
                        (consumer_state[sid] for sid in behind), default=max(consumer_state.values())
                    )
                    if self.session_log.covers(consumer_state) or self.settings.nopresent:
                        refresh_deletes = True
                        self.replay_deletes(txn, message_id, rid, consumer_state, provider_state, base_ndn,
                                            Scope(request.scope), visible, send)  # fmt: skip
                    else:
                        refresh_deletes = False
                        self.send_present(
                            txn, message_id, base_ndn, Scope(request.scope), request, visible, send
                        )
                    for entry in txn.csn_after(mincsn):
                        csn = (entry.first("entrycsn") or b"").decode()
                        sid = sid_of(csn) if csn else -1
                        if sid in consumer_state and csn <= consumer_state[sid]:
                            continue  # the consumer has it already
                        ndn = normalize_dn(entry.dn, self.schema)
                        if in_scope(ndn, base_ndn, Scope(request.scope)) and visible(entry):
                            send_entry(entry)
                    end_cookie = self.full_cookie(rid)
        encoded_cookie = end_cookie.encode() if end_cookie is not None else None
        if consumer_sid is not None:
            self.served.setdefault(consumer_sid, deque(maxlen=16)).append(
                (time.time(), provider_state.get(own, ""))
            )
        if persist:
            if refresh_deletes:
                info: ctl.SyncInfo = ctl.SyncInfoRefreshDelete(encoded_cookie, True)
            else:
                info = ctl.SyncInfoRefreshPresent(encoded_cookie, True)
            send(self.info_message(message_id, info))
            self.psearches.append(PersistentSearch(conn, message_id, base_ndn, Scope(request.scope), matches,
                                                   selection, rid, consumer_sid, manage))  # fmt: skip
            self.log.log(
                SYNC, f"syncprov: persistent search rid={rid:03d} registered (conn={conn.session.conn_id})"
            )
            return True
        done = Control(
            ctl.SYNC_DONE, False, ctl.encode_sync_done(ctl.SyncDone(encoded_cookie, refresh_deletes))
        )
        conn.result(message_id, ldap.SEARCH_RESULT_DONE, ResultCode.success, controls=[done], nentries=sent)
        return False

    def send_present(self, txn, message_id: int, base_ndn: str, scope: Scope, request, visible, send) -> None:
        batch: list[bytes] = []
        for entry in txn.search(base_ndn, scope, request.filter):
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
                       base_ndn: str, scope: Scope, visible, send) -> None:  # fmt: skip
        """Delete phase from the session log: each gone (or moved-out) entry as its own syncIdSet, CSN order."""
        seen: set[bytes] = set()
        for csn, uuid, kind in self.session_log.since(consumer, provider):
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

    def maybe_checkpoint(self) -> None:
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
        """Copy the contextCSN vector onto the suffix entry (no timestamps touched, not replicated)."""
        try:
            self.backend.write_context_csn()
        except StorageError as exc:
            # The vector stays safe in the database's metadata; the bookkeeping stays due, so the next change
            # (or the shutdown) tries again.
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
            self.checkpoint()


def new_context_csn(server_id: int) -> str:
    return CSNGenerator(server_id).next()
