"""The syncrepl consumer: one engine per `syncrepl` directive, as OpenLDAP's syncrepl.c behaves.

It connects to its provider, binds, asks for the changes since its cookie (the database's contextCSN vector) and
applies them as the database's rootdn would, bypassing access control and the shadow check, keeping the
provider's operational attributes. refreshOnly polls every `interval`; refreshAndPersist stays connected.
Failures are retried on the `retry` schedule; the cookie makes every restart incremental.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import uuid as uuidlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import AlreadyExists, NoSuchEntry, NotAllowedOnNonLeaf, Scope, StorageError
from pyldapd.backends.writer import Chain
from pyldapd.model.csn import CSNSet, format_cookie, parse_cookie, parse_csn, sid_of
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, split_rdn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.filter import parse_filter
from pyldapd.overlays.base import replicated_op
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.replication.client import ClientError, LDAPClient
from pyldapd.replication.conflicts import csn_sid, journal_of
from pyldapd.replication.spec import SyncreplSpec
from pyldapd.replication.state import (
    CONTEXT_CSN_KEY,
    Change,
    entry_uuid_bytes,
    read_tombstone,
    uuid_string,
    write_tombstone,
)
from pyldapd.server.directory import is_glue
from pyldapd.server.entries import check_entry
from pyldapd.server.errors import LDAPError
from pyldapd.server.log import SYNC

if TYPE_CHECKING:
    from pyldapd.server.directory import Backend, Directory

# Attributes slapd computes on the fly: never stored from a provider's entry.
DYNAMIC = {"hasSubordinates", "entryDN", "subschemaSubentry", "contextCSN", "numSubordinates"}
DYNAMIC_KEYS = {name.lower() for name in DYNAMIC}
DN_SYNTAX = "1.3.6.1.4.1.1466.115.121.1.12"
# Messages handed to the writer thread before the consumer waits for the oldest to be stored: a refresh shares
# commits (group commit: a 100,000-entry refresh makes a few hundred commits, not 100,000) while the memory held
# by messages in flight stays bounded. The Chain keeps a failure from letting later messages (a cookie) be stored.
APPLY_WINDOW = 256
FUTURE_SKEW_SECONDS = 60  # a peer CSN further ahead of our clock than this is worth a warning


class ConsumerError(Exception):
    pass


class RefreshFromCookie(ConsumerError):
    """e-syncRefreshRequired in the persist stage (a provider ending a search its consumer read too slowly):
    everything before it is stored, so a new session starts at once from the cookie (slapd's consumer retries
    immediately, SYNC_PAUSED, keeping its cookie)."""


def ends_refresh(message: ldap.LDAPMessage) -> bool:
    """The message that closes a refresh stage (refreshDone, or the end of a refreshOnly search)."""
    op = message.op
    if isinstance(op, ldap.SearchResultDone):
        return True
    if isinstance(op, ldap.IntermediateResponse) and op.name == ctl.SYNC_INFO:
        info = ctl.decode_sync_info(op.value)
        return isinstance(info, ctl.SyncInfoRefreshPresent | ctl.SyncInfoRefreshDelete) and info.refresh_done
    return False


class SyncConsumer:
    def __init__(self, directory: Directory, backend: Backend, spec: SyncreplSpec,
                 cookie_override: str | None = None) -> None:  # fmt: skip
        self.directory = directory
        self.backend = backend
        self.spec = spec
        self.log = directory.log
        self.cookie_override = cookie_override
        self.state = "stopped"
        self.last_error = ""
        self.conflicts = 0
        self.task: asyncio.Task | None = None
        self.client: LDAPClient | None = None
        # the stream's state, touched only by the writer thread while a session's messages are applied (and
        # reset on the loop between sessions, once none is left with the writer)
        self.present: set[bytes] = set()
        self.refresh_ended = False  # a refreshDone came in this session (the protocol check)
        # what cn=Monitor shows, set on the loop once the message that changed it is stored
        self.refresh_done = False
        self.provider_sid: int | None = None
        # cn=Monitor's olmSR* attributes and /readyz (server/monitor.py, server/metrics.py)
        self.last_connect = self.last_contact = self.next_connect = 0.0
        self.last_cookie_sent = self.last_cookie_rcvd = b""
        self.local_address = ""
        self.refreshed_once = False
        self.base_ndn = normalize_dn(spec.searchbase, directory.schema)
        # suffixmassage: the provider's searchbase is this DN here (slapd's rewrite rule, on the DN as sent)
        self.massage: tuple[re.Pattern[str], str] | None = None
        if spec.suffixmassage:
            massaged = normalize_dn(spec.suffixmassage, directory.schema)
            self.massage = (
                re.compile("(.*)" + re.escape(self.base_ndn) + "$", re.IGNORECASE | re.DOTALL),
                massaged,
            )
            self.base_ndn = massaged  # where this consumer's entries are, here
        self.filter = parse_filter(spec.filter)

    @property
    def rid(self) -> int:
        return self.spec.rid

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self.run(), name=f"syncrepl rid={self.rid:03d}"
            )

    async def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
        self.state = "stopped"

    def note(self, message: str) -> None:
        self.log.log(SYNC, f"syncrepl rid={self.rid:03d}: {message}")

    # -- scheduling -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        schedule = [list(step) for step in self.spec.retry]
        step = 0
        while True:
            try:
                self.state = "connecting"
                await self.session()
                schedule = [list(s) for s in self.spec.retry]
                step = 0
                if self.spec.persist:
                    raise ConsumerError("provider ended the persistent search")
                self.state = "idle"
                await asyncio.sleep(self.spec.interval)
                continue
            except asyncio.CancelledError:
                raise
            except RefreshFromCookie as exc:
                self.last_error = str(exc)
                self.note(f"{exc}; refreshing from the cookie")
                continue  # (the finally below closes the session's connection)
            except (TimeoutError, OSError, ClientError, ConsumerError, LDAPError, ldap.BERError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            except StorageError as exc:
                # A change could not be stored (failed commit: I/O error, disk full): nothing of it moved the
                # state, so the next session asks again from the last committed cookie.
                self.last_error = f"could not store a change: {exc}"
            except Exception as exc:  # a bug in one consumer must not stop the server
                self.last_error = repr(exc)
                self.log.error(f"syncrepl rid={self.rid:03d}: internal error: {exc!r}")
            finally:
                if self.client is not None:
                    self.client.close()
                    self.client = None
            while step < len(schedule) and schedule[step][1] == 0:
                step += 1
            if step >= len(schedule):
                self.state = "stopped"
                self.log.error(
                    f"syncrepl rid={self.rid:03d}: giving up after the retry schedule ({self.last_error})"
                )
                return
            delay, count = schedule[step]
            if count > 0:
                schedule[step][1] -= 1
            self.state = "retrying"
            self.next_connect = time.time() + delay
            self.log.error(f"syncrepl rid={self.rid:03d}: {self.last_error}; retrying in {delay} s")
            await asyncio.sleep(delay)

    # -- one session ----------------------------------------------------------------------------------------

    def request_cookie(self) -> bytes:
        own_sid = self.directory.server_id if self.backend.config.multiprovider else None
        if self.cookie_override is not None:
            override = parse_cookie(self.cookie_override)
            self.cookie_override = None
            return format_cookie(self.rid, own_sid, override.csns).encode()
        return format_cookie(self.rid, own_sid, self.backend.context.latest().as_dict()).encode()

    async def session(self) -> None:
        await self.content_search(await self.open_client(), self.spec.persist)

    async def open_client(self) -> LDAPClient:
        """Connect to the provider and bind as the stanza says (replication/delta.py reuses it)."""
        spec = self.spec
        timeout = spec.network_timeout or None
        self.client = client = await LDAPClient.connect(spec.provider, timeout=timeout, tls=spec.tls,
                                                        starttls=spec.starttls, keepalive=spec.keepalive)  # fmt: skip
        self.last_connect, self.local_address = time.time(), client.local_address()
        await client.bind(spec.bindmethod, spec.binddn, spec.credentials, spec.saslmech, spec.authzid,
                          timeout=spec.timeout or None)  # fmt: skip
        return client

    async def content_search(self, client: LDAPClient, persist: bool) -> None:
        """The sync search of the replicated content (searchbase, filter, attrs), applied entry by entry."""
        spec = self.spec
        cookie = self.last_cookie_sent = self.request_cookie()
        mode = ctl.SYNC_MODE_REFRESH_AND_PERSIST if persist else ctl.SYNC_MODE_REFRESH_ONLY
        controls = [
            Control(ctl.SYNC_REQUEST, False, ctl.encode_sync_request(ctl.SyncRequest(mode, cookie, True))),
            Control(ctl.MANAGE_DSA_IT, True, None),
        ]
        attrs = list(spec.attrs)
        if not spec.default_attrs:
            attrs += [a for a in ("objectClass", "structuralObjectClass", "entryCSN") if a not in attrs]
        request = ldap.SearchRequest(spec.searchbase, spec.scope, 0, spec.sizelimit, spec.timelimit,
                                     spec.attrsonly, self.filter, attrs)  # fmt: skip
        self.present = set()
        self.refresh_done = self.refresh_ended = False
        self.state = "refreshing"
        self.note(f"sync search with cookie {cookie.decode()}")
        await self.apply_stream(client.search(request, controls), self.applier, self.reload_required)

    async def apply_stream(self, messages: AsyncIterator[ldap.LDAPMessage],
                           applier: Callable[[ldap.LDAPMessage], Callable[[], None] | None],
                           refresh_required: Callable[[ldap.SearchResultDone], None]) -> None:  # fmt: skip
        """Apply a sync search's messages on the database's writer thread, in order, many to a commit (group
        commit): up to APPLY_WINDOW are in flight while the next ones are read. A failure (of a message, or of
        the commit of its group) stops the ones after it (the Chain) and is raised here. Whatever ends the
        stream, it returns only once no message of it is left with the writer, so the next session's state
        (present set, refresh flags) is never touched by this one's messages."""
        writer, chain = self.backend.db.writer, Chain()
        pending: deque[asyncio.Future] = deque()
        try:
            async for message in messages:
                self.last_contact = time.time()
                op = message.op
                if isinstance(op, ldap.SearchResultDone) and op.result_code == ResultCode.syncRefreshRequired:
                    while pending:  # what came before is stored first; then the reload, on the loop
                        await pending.popleft()
                    refresh_required(op)
                    return
                apply = applier(message)
                if apply is None:
                    continue
                if ends_refresh(message):
                    # the refresh's last cookie gets a commit of its own once its entries are stored (slapd
                    # stores it apart too): the cost of one commit per refresh makes what a failure leaves
                    # behind always the same (entries stored, vector unmoved)
                    while pending:
                        await pending.popleft()
                pending.append(writer.submit(lambda _txn, apply=apply: apply(), chain))
                while pending and (len(pending) >= APPLY_WINDOW or pending[0].done()):
                    await pending.popleft()
            while pending:
                await pending.popleft()
        finally:
            if pending:
                # the session ends early (connection lost, a failure, a stop): the messages not yet applied are
                # dropped (the next session asks again from the committed cookie); wait for the writer to be
                # done with them, and retrieve their outcome (the chain's failure)
                if chain.broken is None:
                    chain.broken = ConsumerError("the sync session ended")
                await asyncio.wait(pending)
                for future in pending:
                    future.cancelled() or future.exception()

    def reload_required(self, op: ldap.SearchResultDone) -> None:
        """e-syncRefreshRequired (on the loop, every earlier message stored). In the persist stage (the provider
        gave up on a consumer that read too slowly) the state is sound: a refresh from the cookie, at once. In
        the refresh stage (the provider cannot serve the cookie): forget the vector, ask again."""
        if self.refresh_done:
            raise RefreshFromCookie(f"e-syncRefreshRequired in the persist stage: {op.message}")
        self.note("provider asks for a full reload")
        self.backend.context.reset()
        if self.backend.context.shared:
            # other worker processes (server/journal.py): each adopts the stored vector, which would bring the
            # forgotten one back; it goes too, as the single process's next commit would overwrite it
            try:
                with self.backend.db.write() as txn:
                    txn.delete_raw_metadata(CONTEXT_CSN_KEY)
            except StorageError as exc:
                self.note(f"stored contextCSN not cleared: {exc}")
        raise ConsumerError("e-syncRefreshRequired: reloading")

    def after_commit(self, effect: Callable[[], None]) -> None:
        """Run effect (the consumer's visible state: cn=Monitor, /readyz) on the loop once the running message
        is stored; dropped if its commit fails, so that state always says what is committed."""
        nested = self.backend.db.current_write()
        if nested is not None:
            nested.on_commit(effect)
        else:
            effect()

    def applier(self, message: ldap.LDAPMessage) -> Callable[[], None] | None:
        op = message.op
        if isinstance(op, ldap.SearchResultEntry):
            return functools.partial(self.on_entry, op, message.controls)
        if isinstance(op, ldap.IntermediateResponse) and op.name == ctl.SYNC_INFO:
            return functools.partial(self.on_info, ctl.decode_sync_info(op.value))
        if isinstance(op, ldap.SearchResultDone):
            return functools.partial(self.on_done, op, message.controls)
        return None

    @contextmanager
    def writing(self) -> Iterator[Any]:
        """The write transaction: on the writer thread, the running message's nested one."""
        nested = self.backend.db.current_write()
        if nested is not None:
            yield nested
        else:
            with self.backend.db.write() as txn:
                yield txn

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """What the next write will see: on the writer thread, the running message's nested transaction."""
        nested = self.backend.db.current_write()
        if nested is not None:
            yield nested
        else:
            with self.backend.db.read() as txn:
                yield txn

    def seen(self) -> CSNSet:
        """The contextCSN vector as the messages applied so far left it (committed or not yet)."""
        return self.backend.context.current(self.backend.db.current_write())

    # -- messages -------------------------------------------------------------------------------------------

    def on_entry(self, op: ldap.SearchResultEntry, controls: list[Control]) -> None:
        control = ctl.find_control(controls, ctl.SYNC_STATE)
        if control is None:
            raise ConsumerError(f"entry {op.dn!r} without a Sync State control")
        state = ctl.decode_sync_state(control.value)
        cookie = parse_cookie(state.cookie) if state.cookie else None
        if cookie is not None and cookie.sid is not None:
            self.provider_sid = cookie.sid
        cookie_csn = next(iter(cookie.csns.values()), None) if cookie and cookie.csns else None
        if cookie_csn is not None and self.too_old(cookie_csn):
            self.note(f"CSN {cookie_csn} too old, ignoring {op.dn}")
            return
        if state.state == ctl.SYNC_STATE_PRESENT:
            self.present.add(state.entry_uuid)
            return
        if state.state == ctl.SYNC_STATE_DELETE:
            self.delete_by_uuid(state.entry_uuid, cookie_csn or self.directory.csn.next(), cookie_csn)
            return
        self.present.add(state.entry_uuid)
        attributes = op.attributes
        if self.massage is not None:
            attributes = [(name, self.massaged_values(name, values)) for name, values in attributes]
        self.apply_entry(self.massaged(op.dn), attributes, state.entry_uuid, cookie_csn)

    def massaged(self, dn: str) -> str:
        """A DN from the provider as it is kept here (unchanged without suffixmassage or outside searchbase)."""
        if self.massage is None:
            return dn
        pattern, suffix = self.massage
        match = pattern.match(dn)
        return dn if match is None else match.group(1) + suffix

    def massaged_values(self, name: str, values: list[bytes]) -> list[bytes]:
        """slapd rewrites the values of DN-syntax attributes too."""
        at, _ = self.directory.schema.split_description(name)
        if at is None or at.syntax is None or at.syntax.oid != DN_SYNTAX:
            return values
        return [
            self.massaged(v.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
            for v in values
        ]

    def on_info(self, info: ctl.SyncInfo) -> None:
        if isinstance(info, ctl.SyncInfoNewCookie):
            self.save_cookie(info.cookie)
        elif isinstance(info, ctl.SyncInfoIdSet):
            if info.refresh_deletes:
                cookie = parse_cookie(info.cookie) if info.cookie else None
                delete_csn = (cookie.delcsn if cookie else None) or self.directory.csn.next()
                for entry_uuid in info.uuids:
                    self.delete_by_uuid(entry_uuid, delete_csn, None, covered_by=cookie.csns if cookie else None,
                                        csn_known=bool(cookie and cookie.delcsn))  # fmt: skip
            else:
                self.present.update(info.uuids)
        elif isinstance(info, ctl.SyncInfoRefreshPresent | ctl.SyncInfoRefreshDelete):
            if self.refresh_ended:
                raise ConsumerError("server sent multiple refreshDone messages")
            if isinstance(info, ctl.SyncInfoRefreshPresent):
                self.delete_nonpresent(info.cookie)
            self.save_cookie(info.cookie)
            self.present = set()
            if info.refresh_done:
                self.refresh_ended = True  # the stream's own check, on the writer thread
                self.after_commit(functools.partial(self.persisting, "refresh done, persisting"))

    def persisting(self, message: str) -> None:
        """The refresh is stored: the consumer follows the provider's changes now (on the loop)."""
        self.refresh_done = self.refreshed_once = True
        self.last_error = ""
        self.state = "persisting"
        self.note(message)

    def completed(self, message: str) -> None:
        """A refreshOnly search is stored to its end (on the loop)."""
        self.last_error = ""
        self.refreshed_once = True
        self.note(message)

    def on_done(self, op: ldap.SearchResultDone, controls: list[Control]) -> None:
        if op.result_code != ResultCode.success:
            raise ConsumerError(f"sync search ended with {op.result_code} {op.message}")
        control = ctl.find_control(controls, ctl.SYNC_DONE)
        done = ctl.decode_sync_done(control.value) if control is not None else ctl.SyncDone()
        if not done.refresh_deletes:
            self.delete_nonpresent(done.cookie)
        self.save_cookie(done.cookie)
        self.after_commit(functools.partial(self.completed, "refresh complete"))

    # -- state ----------------------------------------------------------------------------------------------

    def too_old(self, csn: str) -> bool:
        held = self.seen().as_dict().get(sid_of(csn))
        return held is not None and csn <= held

    def save_cookie(self, raw: bytes | None) -> None:
        if not raw:
            return
        self.after_commit(functools.partial(setattr, self, "last_cookie_rcvd", raw))
        cookie = parse_cookie(raw)
        if cookie.sid is not None:
            self.provider_sid = cookie.sid
        if not cookie.csns:
            return
        with self.writing() as txn:
            self.backend.context.merge(txn, cookie.csns)
        for csn in cookie.csns.values():
            self.observe(csn)

    def observe(self, csn: str) -> None:
        """Clock safety: never issue a CSN below one seen; warn about a peer far in the future."""
        self.directory.csn.observe(csn)
        stamp = csn[:14]
        now = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + FUTURE_SKEW_SECONDS))
        if stamp > now:
            self.log.error(
                f"syncrepl rid={self.rid:03d}: CSN {csn} from server ID {sid_of(csn):03x} is in the future"
            )

    # -- applying changes -----------------------------------------------------------------------------------

    def incoming_entry(self, dn: str, attributes: list[tuple[str, list[bytes]]], entry_uuid: bytes) -> Entry:
        schema = self.directory.schema
        entry = Entry(dn)
        excluded = {schema.attribute_key(name) for name in self.spec.exattrs}
        for name, values in attributes:
            key = schema.attribute_key(name)
            base = key.split(";", 1)[0]
            if base in DYNAMIC_KEYS or base in excluded or not values:
                continue
            existing = entry.attrs.get(key)
            if existing is None:
                entry.attrs[key] = Attribute(name, list(values))
            else:
                existing.values.extend(values)
        if entry.first("entryuuid") is None:
            entry.put("entryuuid", "entryUUID", [uuid_string(entry_uuid).encode()])
        return entry

    def merged(self, local: Entry | None, incoming: Entry) -> Entry:
        """Partial replication (attrs=/exattrs=): local attributes the stanza does not carry are kept."""
        spec = self.spec
        if local is None or (spec.default_attrs and not spec.exattrs):
            return incoming
        schema = self.directory.schema
        carried = set()
        for name in spec.attrs:
            if name in ("*", "+"):
                continue
            at = schema.attribute_type(name)
            if at is not None:
                carried.update(sub.key for sub in schema.subtypes(at))
        for key, attribute in local.attrs.items():
            base = key.split(";", 1)[0]
            at = schema.attribute_type(base)
            operational = at is not None and at.operational
            covered = (
                base in carried
                or ("*" in spec.attrs and not operational)
                or ("+" in spec.attrs and operational)
            )
            excluded = any(base == (schema.attribute_key(x)) for x in spec.exattrs)
            if (not covered or excluded) and key not in incoming.attrs:
                incoming.attrs[key] = Attribute(attribute.name, list(attribute.values))
        return incoming

    def apply_entry(self, dn: str, attributes: list[tuple[str, list[bytes]]], entry_uuid: bytes,
                    cookie_csn: str | None) -> None:  # fmt: skip
        schema = self.directory.schema
        backend = self.backend
        try:
            ndn = normalize_dn(dn, schema)
        except DNError:
            raise ConsumerError(f"provider sent an invalid DN {dn!r}") from None
        if not backend.holds(ndn):
            self.note(f"{dn} is outside the database, ignored")
            return
        incoming = self.incoming_entry(dn, attributes, entry_uuid)
        incoming_csn = (incoming.first("entrycsn") or b"").decode() or cookie_csn or self.directory.csn.next()
        if incoming.first("entrycsn") is None:
            incoming.put("entrycsn", "entryCSN", [incoming_csn.encode()])
        change: Change | None = None
        with self.writing() as txn:
            local = txn.by_uuid(entry_uuid)
            tombstone = read_tombstone(txn, entry_uuid) if local is None else None
            if local is None and tombstone is not None and tombstone >= incoming_csn:
                if self.is_news(incoming_csn):
                    self.conflict(
                        "delete",
                        dn,
                        tombstone,
                        incoming_csn,
                        "a change older than its delete: stays deleted",
                        txn=txn,
                    )
            elif local is None:
                if tombstone is not None and self.concurrent(tombstone, incoming_csn):
                    self.conflict("delete", dn, incoming_csn, tombstone,
                                  "deleted here, changed later there: the newer change brings it back", txn=txn)  # fmt: skip
                existing = txn.get(ndn)
                existing_csn = (existing.first("entrycsn") or b"").decode() if existing is not None else ""
                if existing is not None and not is_glue(existing) and existing_csn >= incoming_csn:
                    # two servers added the same DN: the newer entry wins everywhere
                    if self.is_news(incoming_csn):
                        self.conflict("add", dn, existing_csn, incoming_csn,
                                      "two adds of one DN: the incoming, older one discarded", txn=txn)  # fmt: skip
                elif existing is not None:
                    # a glue entry (or an older entry of another identity) holds the DN: the provider's replaces it
                    if not is_glue(existing):
                        self.conflict("add", dn, incoming_csn, existing_csn,
                                      "two adds of one DN: the local, older one replaced", txn=txn)  # fmt: skip
                    change = self.replace_local(txn, existing, ndn, incoming, incoming_csn)
                else:
                    self.add_with_glue(txn, ndn, self.merged(None, incoming), incoming_csn)
                    change = Change("add", None, incoming, incoming_csn)
            else:
                local_csn = (local.first("entrycsn") or b"").decode()
                if not is_glue(local) and local_csn and local_csn >= incoming_csn:
                    if local_csn > incoming_csn and self.is_news(incoming_csn):
                        self.conflict("modify", dn, local_csn, incoming_csn,
                                      "the incoming change is older than the local entry: discarded", txn=txn)  # fmt: skip
                    elif local_csn == incoming_csn:
                        self.note(f"entry {dn} unchanged")
                else:
                    if not is_glue(local) and self.concurrent(local_csn, incoming_csn):
                        self.conflict("modify", dn, incoming_csn, local_csn,
                                      "a local change not yet replicated, overridden by a newer one", txn=txn)  # fmt: skip
                    change = self.replace_local(txn, local, ndn, incoming, incoming_csn)
            if self.spec.schemachecking and change is not None and change.after is not None:
                check_entry(schema, change.after, check_rdn=False)
            # the replicated operation (a diff of the entries) is made only for an overlay that uses it
            if change is not None and backend.overlays.writers():
                backend.overlays.in_txn(replicated_op(change, self.authz_dn()), txn)
            if cookie_csn is not None:
                backend.context.advance(txn, cookie_csn)
        self.observe(incoming_csn)
        if change is not None:
            change.relay_sid = self.provider_sid
            change.replicated = True
            change.in_csn_order = cookie_csn is not None
            backend.publish(change)

    def authz_dn(self) -> str:
        """Who a replicated write is made as (slapd's consumer writes as the database's rootdn)."""
        return self.backend.config.rootdn

    def replace_local(self, txn, local: Entry, ndn: str, incoming: Entry, csn: str) -> Change:
        local_ndn = normalize_dn(local.dn, self.directory.schema)
        new_entry = self.merged(local, incoming)
        if local_ndn != ndn:
            parent = split_rdn(ndn)[1]
            if ndn != self.backend.suffix_ndn and not txn.exists(parent):
                self.add_glue_ancestors(txn, ndn, incoming.dn, csn)
            if txn.exists(ndn):
                blocker = txn.get(ndn)
                if blocker is not None and is_glue(blocker) and not txn.has_children(ndn):
                    txn.delete(ndn)
            txn.rename(local_ndn, new_entry)
            return Change("rename", local, new_entry, csn)
        txn.modify(ndn, new_entry)
        return Change("modify", local, new_entry, csn)

    def add_with_glue(self, txn, ndn: str, entry: Entry, csn: str) -> None:
        try:
            txn.add(entry)
        except NoSuchEntry:
            self.add_glue_ancestors(txn, ndn, entry.dn, csn)
            txn.add(entry)
        except AlreadyExists:
            txn.modify(ndn, entry)

    def add_glue_ancestors(self, txn, ndn: str, dn: str, csn: str) -> None:
        """Create the missing entries between the suffix and the entry's parent as glue (objectClass glue)."""
        suffix = self.backend.suffix_ndn
        chain: list[tuple[str, str]] = []
        current, current_dn = split_rdn(ndn)[1], split_rdn(dn)[1]
        while current and (current == suffix or is_descendant(current, suffix)) and not txn.exists(current):
            chain.append((current, current_dn))
            if current == suffix:
                break
            current, current_dn = split_rdn(current)[1], split_rdn(current_dn)[1]
        rootdn = self.backend.config.rootdn.encode()
        stamp = (csn[:14] + "Z").encode()
        for _, missing_dn in reversed(chain):
            glue = Entry(missing_dn)
            glue.put("objectclass", "objectClass", [b"top", b"glue"])
            glue.put("structuralobjectclass", "structuralObjectClass", [b"glue"])
            glue.put("entryuuid", "entryUUID", [str(uuidlib.uuid1()).encode()])
            glue.put("entrycsn", "entryCSN", [csn.encode()])
            glue.put("creatorsname", "creatorsName", [rootdn])
            glue.put("modifiersname", "modifiersName", [rootdn])
            glue.put("createtimestamp", "createTimestamp", [stamp])
            glue.put("modifytimestamp", "modifyTimestamp", [stamp])
            txn.add(glue)
            self.note(f"added glue entry {glue.dn}")
            if (
                self.backend.config.multiprovider
            ):  # every node holds the whole tree: a missing parent is a conflict
                self.conflict(
                    "glue", glue.dn, csn, "", f"parent of {dn} missing here: created as a glue entry", txn=txn
                )

    def delete_by_uuid(self, entry_uuid: bytes, csn: str, cookie_csn: str | None,
                       covered_by: dict[int, str] | None = None, csn_known: bool = False) -> None:  # fmt: skip
        """csn is the delete's own when it came with it (persist cookie, or a refresh's delcsn): then the
        newer of the delete and the local entry wins; otherwise (present phase) the provider's word stands."""
        backend = self.backend
        csn_known = csn_known or cookie_csn is not None
        change = None
        with self.writing() as txn:
            local = txn.by_uuid(entry_uuid)
            if local is not None and covered_by is not None:
                local_csn = (local.first("entrycsn") or b"").decode()
                held = covered_by.get(sid_of(local_csn)) if local_csn else None
                if held is None or local_csn > held:
                    # changed since the provider's state: the provider deleted a version it had not seen
                    # (its delete CSN is known only from the cookie's delcsn; else csn was made here and means nothing)
                    delete_csn = csn if csn_sid(csn) != self.directory.server_id else ""
                    self.conflict("delete", local.dn, local_csn, delete_csn,
                                  "deleted there, changed here since: the entry stays", txn=txn)  # fmt: skip
                    local = None
            local_csn = (local.first("entrycsn") or b"").decode() if local is not None else ""
            if local is not None and csn_known and local_csn > csn:
                if self.is_news(csn):
                    self.conflict(
                        "delete",
                        local.dn,
                        local_csn,
                        csn,
                        "a delete older than the entry: the entry stays",
                        txn=txn,
                    )
                local = None
            elif local is not None and csn_known and self.concurrent(local_csn, csn):
                self.conflict("delete", local.dn, csn, local_csn,
                              "a local change not yet replicated, overridden by a newer delete", txn=txn)  # fmt: skip
            if local is not None:
                change = self.delete_local(txn, local, csn)
                if backend.overlays.writers():
                    backend.overlays.in_txn(replicated_op(change, self.authz_dn()), txn)
            if cookie_csn is not None:
                backend.context.advance(txn, cookie_csn)
        if change is not None:
            change.relay_sid = self.provider_sid
            change.replicated = True
            change.in_csn_order = cookie_csn is not None
            backend.publish(change)

    def delete_local(self, txn, local: Entry, csn: str) -> Change:
        schema = self.directory.schema
        ndn = normalize_dn(local.dn, schema)
        entry_uuid = entry_uuid_bytes(local)
        if entry_uuid is not None:
            write_tombstone(txn, entry_uuid, csn)
        try:
            txn.delete(ndn)
        except NotAllowedOnNonLeaf:
            glue = Entry(local.dn)
            glue.put("objectclass", "objectClass", [b"top", b"glue"])
            glue.put("structuralobjectclass", "structuralObjectClass", [b"glue"])
            glue.put("entryuuid", "entryUUID", local.get("entryuuid"))
            glue.put("entrycsn", "entryCSN", [csn.encode()])
            txn.modify(ndn, glue)
            self.note(f"{local.dn} has children: turned into a glue entry")
            self.conflict("glue", local.dn, csn, (local.first("entrycsn") or b"").decode(),
                          "deleted there, has children here: turned into a glue entry", txn=txn)  # fmt: skip
            return Change("delete", local, None, csn)
        self.delete_empty_glue_parents(txn, ndn)
        return Change("delete", local, None, csn)

    def delete_empty_glue_parents(self, txn, ndn: str) -> None:
        parent = split_rdn(ndn)[1]
        while parent and parent != self.backend.suffix_ndn and is_descendant(parent, self.backend.suffix_ndn):
            entry = txn.get(parent)
            if entry is None or not is_glue(entry) or txn.has_children(parent):
                return
            txn.delete(parent)
            parent = split_rdn(parent)[1]

    def delete_nonpresent(self, raw_cookie: bytes | None) -> None:
        """End of a present phase: what the provider did not mention (and that its state covers) is gone."""
        cookie = parse_cookie(raw_cookie) if raw_cookie else None
        covered = cookie.csns if cookie and cookie.csns else self.seen().as_dict()
        matches = self.directory.filters.compile(self.filter)
        doomed: list[Entry] = []
        with self.reading() as txn:
            for entry in txn.search(self.base_ndn, Scope(self.spec.scope), self.filter):
                entry_uuid = entry_uuid_bytes(entry)
                if entry_uuid is None or entry_uuid in self.present or is_glue(entry) or not matches(entry):
                    continue
                if normalize_dn(entry.dn, self.directory.schema) == self.backend.suffix_ndn:
                    continue
                local_csn = (entry.first("entrycsn") or b"").decode()
                held = covered.get(sid_of(local_csn)) if local_csn else None
                if local_csn and (held is None or local_csn > held):
                    continue
                doomed.append(entry)
        doomed.sort(key=lambda e: -e.dn.count(","))  # children before parents
        for entry in doomed:
            self.note(f"deleting {entry.dn}: not present at the provider")
            self.delete_by_uuid(entry_uuid_bytes(entry) or b"", self.directory.csn.next(), None)
        self.present = set()

    def conflict(
        self, kind: str, dn: str, winner_csn: str, loser_csn: str, resolution: str, txn=None
    ) -> None:
        """Every resolved conflict is visible: a log line at the default level, a counter per consumer and the
        database's journal (cn=Monitor), once the transaction that resolved it (when given) has committed. slapd
        only logs these at debug level."""

        def resolved() -> None:
            self.conflicts += 1
            record = journal_of(self.backend).record(kind, dn, winner_csn, loser_csn, resolution, self.rid)
            self.log.error(f"syncrepl rid={self.rid:03d}: {record.log_text()}")

        if txn is None:
            resolved()
        else:
            txn.on_commit(resolved)

    def is_news(self, csn: str) -> bool:
        """An incoming change this node had not received before (the discarding side of a conflict): newer than
        what the contextCSN vector holds of its server ID. An older one is a copy of a change seen already (a
        full reload, a second path), whose conflict, if any, was recorded when it first came."""
        held = self.seen().as_dict().get(csn_sid(csn) or 0)
        return held is None or csn > held

    def concurrent(self, local_csn: str, incoming_csn: str) -> bool:
        """Is the local version, overridden by a newer incoming change, a write the sender had not seen?

        Only this node's own writes count (a version replicated here from elsewhere is recorded by its origin).
        The rule: the origin of the incoming change (or the provider relaying it) had the local version before
        it made its own, if it had a persistent sync search on this node registered before then (from its
        registration on, every local write is pushed to it in commit order), or a refresh that covered the local
        version was sent to it before then (refreshOnly polls). Otherwise (the link was down, as in a partition)
        the two writes were concurrent. "Then" is the time in the incoming CSN, so the rule is as exact as the
        servers' clocks agree."""
        own = self.directory.server_id
        if not self.backend.config.multiprovider:
            return False  # a plain consumer makes no writes of its own (and shares server ID 0 with its provider)
        if (
            not local_csn
            or csn_sid(local_csn) != own
            or csn_sid(incoming_csn) == own
            or local_csn >= incoming_csn
        ):
            return False
        provider = self.backend.provider
        senders = {csn_sid(incoming_csn), self.provider_sid} - {None}
        try:
            made = parse_csn(incoming_csn).time_us / 1_000_000
        except ValueError:
            return True
        if provider is None:
            return True
        for ps in provider.psearches:
            if ps.consumer_sid in senders and getattr(ps, "registered_at", made + 1) <= made:
                return False
        for _worker, sid, registered_at in getattr(provider, "remote_psearches", ()):  # in other workers
            if sid in senders and registered_at <= made:
                return False
        # a refresh (refreshOnly polls too) that carried the local version to the sender before it wrote
        for sid in senders:
            for sent_at, covered in getattr(provider, "served", {}).get(sid, ()):
                if covered >= local_csn and sent_at <= made:
                    return False
        return True

    def status(self) -> dict[str, Any]:
        return {"rid": self.rid, "provider": self.spec.provider, "state": self.state,
                "last_error": self.last_error, "conflicts": self.conflicts}  # fmt: skip
