"""The directory: databases, schema and the LDAP operations on them, independent of connections and sockets.

Each handler takes a Session (who is asking) and a decoded request, and either returns response PDUs or raises
LDAPError. Searches stream their entries through a `send` callback so large results are not held in memory twice.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import secrets
import sys
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pyldapd.backends.base import (
    AlreadyExists,
    DatabaseFull,
    NoSuchEntry,
    NotAllowedOnNonLeaf,
    Scope,
    StorageError,
    TooManyCandidates,
)
from pyldapd.backends.mdb import CommitFailed, MdbDatabase, WriteTxn
from pyldapd.config.model import DatabaseConfig, ServerConfig
from pyldapd.model.csn import CSNGenerator, CSNSet
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, parse_dn, pretty_dn, split_rdn
from pyldapd.model.entry import MANY_VALUES, Attribute, Entry
from pyldapd.model.filter import (
    Equality,
    FilterEvaluator,
    ValuesFilter,
    filter_attributes,
    parse_filter,
    values_return_diagnostic,
    values_return_filter,
)
from pyldapd.model.passwords import hash_password, verify_password
from pyldapd.model.schema import SCHEMA_DIR, Schema, options_test
from pyldapd.overlays.base import Overlay, OverlayStack, WriteOp
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.replication.state import (
    CONTEXT_CSN_KEY,
    Change,
    ContextState,
    encode_csns,
    entry_uuid_bytes,
    write_tombstone,
)
from pyldapd.server import glue
from pyldapd.server.configdb import ConfigDatabase, names_config
from pyldapd.server.entries import (
    MANAGEABLE,
    MOD_ADD,
    MOD_REPLACE,
    OBJECT_CLASS,
    add_rdn_values,
    apply_modifications,
    check_changes,
    check_entry,
    check_no_user_modification,
    check_obsolete_attributes,
    entry_from_attributes,
    equality_key,
    normalize_or_fail,
    rename_target,
    renamed_entry,
    resolve_type,
)
from pyldapd.server.errors import LDAPError
from pyldapd.server.guard import AccessControl, compare_allowed
from pyldapd.server.log import Logger
from pyldapd.server.restrictions import check_restrictions, unrestricted_search
from pyldapd.server.searchlimits import (
    LimitSet,
    check_search_allowed,
    limit_set,
    limits_read_entries,
    paged_size_limit,
    request_limits,
    search_limits,
)
from pyldapd.server.steps import LARGE_ATTRIBUTE_LIST, STEP_EVERY, Offload, Steps, large_filter, run_steps

if TYPE_CHECKING:
    from pyldapd.replication.provider import SyncProvider
    from pyldapd.server.journal import Journal
    from pyldapd.server.workers import WorkerBus

SUBSCHEMA_DN = "cn=Subschema"
PROXIED_AUTHORIZATION_DENIED = 123  # RFC 4370
ORDER_PREFIX = re.compile(r"^\{\d+\}")  # X-ORDERED 'VALUES' (authzTo, authzFrom)
PEERCRED_SUFFIX = "cn=peercred,cn=external,cn=auth"
VENDOR_VERSION = "pyldapd 0.1.0"

SUPPORTED_CONTROLS = [
    ctl.SYNC_REQUEST,
    ctl.PROXIED_AUTHZ,
    ctl.DONT_USE_COPY,
    ctl.MANAGE_DSA_IT,
    ctl.PAGED_RESULTS,
    ctl.ASSERTION,
    ctl.PRE_READ,
    ctl.POST_READ,
    ctl.VALUES_RETURN_FILTER,
    ctl.SUBENTRIES,
]
SUPPORTED_EXTENSIONS = [ctl.WHO_AM_I, ctl.PASSWORD_MODIFY, ctl.CANCEL]
SUPPORTED_FEATURES = [
    "1.3.6.1.1.14",  # Modify-Increment
    "1.3.6.1.4.1.4203.1.5.1",  # all operational attributes ("+")
    "1.3.6.1.4.1.4203.1.5.2",  # attributes by object class ("@class")
    "1.3.6.1.4.1.4203.1.5.3",  # absolute true and false filters
    "1.3.6.1.4.1.4203.1.5.4",  # language tag options
    "1.3.6.1.4.1.4203.1.5.5",  # language range options
]
# Operational attributes slapd computes on the fly instead of storing.
COMPUTED = ("entryDN", "subschemaSubentry", "hasSubordinates")  # in the order slapd adds them


def generalized_time(now: float | None = None) -> bytes:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(now if now is not None else time.time())).encode()


@dataclass
class Session:
    """What the directory needs to know about the client of one connection."""

    conn_id: int
    peer: str = ""
    local: bool = False  # came in over ldapi://
    peer_uid: int | None = None
    peer_gid: int | None = None
    bind_dn: str = ""
    bind_ndn: str = ""
    paged: PagedSearch | None = None  # the connection's one open paged search (slapd's rule)
    paged_cookies: int = 0  # cookies issued so far: the next one is this plus one
    # security strength factors (server/tls.py): overall, transport (ldapi's localSSF), TLS cipher bits
    ssf: int = 0
    transport_ssf: int = 0
    tls_ssf: int = 0
    tls: bool = False
    tls_authzid: str = ""  # the verified client certificate's subject DN, for SASL EXTERNAL
    protocol: int = 0  # the version of the last bind request (slapd's c_protocol; 0: no bind yet)
    auth_method: str = ""  # "simple" or "sasl" after a successful bind (require strong/sasl)

    @property
    def anonymous(self) -> bool:
        return not self.bind_ndn


# Schemes whose check costs milliseconds of CPU (memory-hard or iterated): verified on a worker thread so that
# the event loop keeps serving other clients (server/connection.py).
SLOW_SCHEMES = ("{ARGON2}", "{PBKDF2", "{CRYPT}")


@dataclass
class PasswordCheck:
    """A simple bind that is valid so far and waits for its password to be checked against the stored values."""

    dn: str
    ndn: str
    password: bytes
    stored: list[bytes]
    backend: Any = None  # the database whose rootdn or entry it is (for `lastbind`)

    @property
    def slow(self) -> bool:
        return any(value[:9].upper().startswith(s.encode()) for value in self.stored for s in SLOW_SCHEMES)

    def verify(self) -> bool:
        return any(verify_password(self.password, value) for value in self.stored)


@dataclass
class PasswordChange:
    """A Password Modify between its checks and its write: the hashing and the old password's check to run."""

    ndn: str
    backend: Any
    new_password: bytes
    generated: bytes | None
    schemes: list[str]  # one value per `password-hash` scheme, as slapd stores them
    salt_format: str
    old_password: bytes | None  # to check against `stored`
    stored: list[bytes]
    hashed: list[bytes] = field(default_factory=list)
    old_valid: bool = True

    @property
    def slow(self) -> bool:
        if any(scheme.upper().startswith(s) for scheme in self.schemes for s in SLOW_SCHEMES):
            return True
        return self.old_password is not None and PasswordCheck("", "", b"", self.stored).slow

    def compute(self) -> None:
        self.hashed = [
            hash_password(self.new_password, scheme, self.salt_format or None) for scheme in self.schemes
        ]
        if self.old_password is not None:
            self.old_valid = any(verify_password(self.old_password, value) for value in self.stored)


SOURCE_SHIFT = 56  # a paged search's ids: the source (glued database) number above the entry id
SOURCE_ID_MASK = (1 << SOURCE_SHIFT) - 1


@dataclass
class PagedSource:
    """One database's part of a paged search: its read transaction, access guard, filter, base and scope."""

    txn: Any
    guard: Any
    matches: Callable[[Entry], bool]
    base_ndn: str
    scope: Scope
    present: bool = True  # False: a glued subordinate whose suffix entry is not there


@dataclass
class PagedSearch:
    """A paged search between pages: the request it answers, the ids of the matching entries (8 bytes each, one
    block the allocator can give back), where the next page starts, and the cookie that continues it."""

    request_key: tuple
    ids: array
    position: int = 0
    cookie: int = 0
    count: int = 0  # entries sent by the earlier pages (the size limits bound the whole search)


def logs_failures(kind: str) -> Callable[[Callable[..., list[Control]]], Callable[..., list[Control]]]:
    """A client write that fails is reported to the database's overlays (accesslog logs failures too)."""

    def wrap(method: Callable[..., list[Control]]) -> Callable[..., list[Control]]:
        @functools.wraps(method)
        def run(self: Directory, session: Session, request: Any, controls: list[Control]) -> list[Control]:
            try:
                return method(self, session, request, controls)
            except LDAPError as exc:
                if exc.code != ResultCode.referral:  # sent on before any database saw it
                    try:
                        self.write_failed(kind, session, request, exc)
                    except Exception as failure:  # noqa: BLE001 (the client gets its own error, not this one)
                        self.log.error(f"overlays: failed {kind} not recorded: {failure!r}")
                raise

        return run

    return wrap


FAILURE_KINDS = {"modify_dn": "rename"}  # Directory method -> the kind overlays record


def who(session: Session) -> tuple[int, str]:
    """The connection and authorization identity an overlay records for an operation."""
    return session.conn_id, session.bind_dn


def stored_indexes(config: DatabaseConfig) -> dict[str, set[str]]:
    """The indexes a database keeps: its `index` lines, and objectClass eq always (every search has one)."""
    indexes = {name: set(kinds) for name, kinds in config.indexes.items()}
    indexes.setdefault("objectClass", set()).add("eq")
    return indexes


@contextmanager
def storing(backend: Backend, failed: str) -> Iterator[WriteTxn]:
    """The write transaction of a client operation. When LMDB cannot store it (a failed commit: I/O error, disk
    full; the map at its maximum size) nothing of it happened and the client gets result 80 with back-mdb's
    text; in-memory state (contextCSN, session log, persistent searches) has not moved either."""
    try:
        nested = backend.db.current_write()
        if nested is not None:
            # on the database's writer thread (group commit): the operation's nested transaction, which the
            # writer commits with its group; a failed group commit answers with this text (Directory.write)
            nested.failed_text = failed
            yield nested
        else:
            with backend.db.write() as txn:
                yield txn
    except DatabaseFull:
        raise  # past maxsize: the connection answers as back-mdb answers MDB_MAP_FULL for the operation
    except StorageError as exc:
        raise LDAPError(ResultCode.other, getattr(exc, "result_text", "") or failed) from exc


@dataclass(slots=True)
class SearchPlan:
    """What the configuration and the client's identity decide about a search before any database is read. For
    a search without controls it is made once per request shape, identity and configuration
    (Directory.search_plans): the next search alike goes straight to the database."""

    base_ndn: str
    scope: Scope
    selection: AttributeSelection
    visible: Callable[[Entry], bool] | None  # which entries the search may see at all (subentry_visibility)
    parts: list  # (database, base, scope, missing_ok): one, unless the base lies in a glue superior
    limits: LimitSet | None
    size_limit: int
    time_limit: int


def plan_key(session: Session, request: ldap.SearchRequest) -> tuple:
    """What a search's plan depends on besides the configuration: the identity and the request's shape."""
    return (session.bind_ndn, request.base, request.scope, request.deref, request.size_limit, request.time_limit,
            request.types_only, *request.attributes)  # fmt: skip


SEARCH_PLANS_MOST = 1024  # plans kept (each a few hundred octets): past this, they are made afresh
PLAN_KEY_MOST = 2048  # characters of the base and the attribute list of a search whose plan is kept


class Backend:
    """One configured data database: its config, its storage and its normalized names."""

    def __init__(self, config: DatabaseConfig, schema: Schema, *, sync: bool = True) -> None:
        self.config = config
        self.schema = schema
        if config.declared_type != "ldif":  # back-ldif never makes its folder (slapd's writes then fail)
            os.makedirs(config.directory, exist_ok=True)
        indexes = stored_indexes(config)
        # maxsize is slapd's hard limit on the map; without it the map grows as needed
        kwargs = {"maxsize": config.maxsize, "max_mapsize": config.maxsize} if config.maxsize else {}
        # sync=False: bulk loads (`pyldapd add -q`), which call db.sync() at the end
        if config.declared_type == "ldif":  # slapd-ldif(5): the entries are LDIF files
            from pyldapd.backends.ldif import LdifDatabase

            self.db = LdifDatabase(config.directory, schema, config.suffix, indexes=indexes)
        else:
            self.db = MdbDatabase(
                config.directory, schema, config.suffix, indexes=indexes, sync=sync, **kwargs
            )
        self.suffix_ndn = normalize_dn(config.suffix, schema)
        self.rootdn_ndn = normalize_dn(config.rootdn, schema) if config.rootdn else ""
        self.context = ContextState()
        self.overlays = OverlayStack()  # overlays/base.py: the engine calls them around every write
        self.consumers: dict[int, Any] = {}  # rid -> SyncConsumer
        # syncrepl stanzas naming this server itself as provider: slapd ignores them, so they make no shadow
        self.self_syncrepl = 0
        # glue (server/glue.py): the database this subordinate is glued under, and a superior's subordinates
        self.superior: Backend | None = None
        self.subordinates: list[Backend] = []
        # several worker processes: changes are published from the journal (server/journal.py)
        self.journal: Journal | None = None

    @property
    def provider(self) -> SyncProvider | None:
        """The syncprov overlay, when configured (sync searches are answered by it)."""
        return self.overlays.get("syncprov")  # type: ignore[return-value]

    @provider.setter
    def provider(self, provider: SyncProvider | None) -> None:
        self.overlays.set("syncprov", provider)
        self.overlays.order = [o.name for o in self.config.overlays]

    @property
    def shadow(self) -> bool:
        """A consumer database that does not take client writes (syncrepl without multiprovider)."""
        return len(self.config.syncrepl) > self.self_syncrepl and not self.config.multiprovider

    @property
    def copy(self) -> bool:
        """A database holding a copy of another server's entries (slapd's SLAP_SHADOW: syncrepl or updatedn,
        multiprovider or not): the dontUseCopy control (RFC 6171) does not read it."""
        return len(self.config.syncrepl) > self.self_syncrepl or bool(self.config.updatedn)

    @property
    def keeps_context(self) -> bool:
        """Whether the suffix entry shows contextCSN, as in slapd: where syncprov keeps it (its checkpoints) or a
        syncrepl consumer stores it (its cookie); a database with neither has none to show. (The vector is kept
        in the database's metadata with every change either way: CSNs stay monotonic over a restart.) From the
        configuration: the tools ask too (slapcat's suffix)."""
        syncprov = any(overlay.name == "syncprov" for overlay in self.config.overlays)
        return syncprov or len(self.config.syncrepl) > self.self_syncrepl

    def holds(self, ndn: str) -> bool:
        return ndn == self.suffix_ndn or is_descendant(ndn, self.suffix_ndn)

    def restore_context(self, server_id: int) -> None:
        """contextCSN at start: the persisted vector, raised by this server's own newer entryCSNs."""
        with self.db.read() as txn:
            suffix = txn.get(self.suffix_ndn)
            self.context.load(
                txn.get_raw_metadata(CONTEXT_CSN_KEY), suffix.get("contextcsn") if suffix else []
            )
            own = self.context.csns.as_dict().get(server_id)
            if own is None and self.shadow:
                return  # a pure consumer learns its state from its provider only
            newest = txn.newest_csn(server_id, own or "")
            if newest is not None:
                self.context.csns.update_csn(newest)

    def write_context_csn(self) -> None:
        """Copy the in-memory contextCSN vector onto the suffix entry, as syncprov's checkpoint does. On the
        database's writer thread (SyncProvider.checkpoint submits it there) in the running operation's nested
        transaction; elsewhere (the stop, the tools) in a transaction of its own."""
        if not self.keeps_context or (not self.context.values() and not self.context.latest()):
            return
        with self.db.writing() as txn:
            # the vector of the latest commit, read under the write lock: a group commit whose effects have not
            # reached the event loop yet is in it, the group's own earlier operations too (its working copy),
            # and no commit can slip in between
            latest = self.context.current(txn)
            if self.context.shared:  # other workers' commits are in the stored vector
                stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
                if stored:
                    latest = latest.copy()
                    latest.merge(CSNSet.from_values(stored.split(b";")))
            values = [v.encode() for v in latest.to_values()]
            # (a database whose suffix is "" has no suffix entry, only the root above it: the metadata holds it)
            suffix = txn.get(self.suffix_ndn) if self.suffix_ndn else None
            if not values or suffix is None or suffix.get("contextcsn") == values:
                return
            entry = suffix.copy()
            entry.put("contextcsn", "contextCSN", values)
            txn.modify(self.suffix_ndn, entry)
            txn.put_raw_metadata(CONTEXT_CSN_KEY, encode_csns(latest))

    def publish(self, change: Change, txn: WriteTxn | None = None) -> None:
        """After a commit: the overlays see the committed change (syncprov pushes it to persistent searches), and
        a glue superior's overlays above glue see a subordinate's. On the writer thread this waits for the group
        commit and runs on the event loop, in commit order. `txn`: the (still open) transaction that makes the
        change, when it is not the writer thread's. With several workers the change goes to the journal, in that
        transaction, and is published from there by every worker (server/journal.py)."""
        nested = txn if txn is not None else self.db.current_write()
        if self.journal is not None:
            self.journal.append(change, nested)
            return
        if nested is not None:
            nested.on_commit(functools.partial(self.published, change))
        else:
            self.published(change)

    def listens(self) -> bool:
        """Something takes this database's committed changes (`published`): an overlay, or a glue superior."""
        return bool(self.overlays.instances) or self.superior is not None

    def published(self, change: Change) -> None:
        self.overlays.after_commit(change)
        if self.superior is not None:
            glue.publish_to_superior(self, change)

    def close(self) -> None:
        self.overlays.close()
        if self.journal is not None:
            self.journal.close()
        if self.db._group_writer is not None:
            self.db._group_writer.stop()  # what it has queued is committed first
        try:
            self.write_context_csn()
        except StorageError as exc:
            # the vector is in the metadata already; its copy on the suffix entry waits for a later run
            print(f"contextCSN not copied onto {self.config.suffix}: {exc}", file=sys.stderr)
        self.db.close()


# attribute lists longer than this are not kept for reuse: 256 of the longest a PDU holds would hold gigabytes
SHARED_SELECTION_MOST = 64


class Directory:
    def __init__(self, config: ServerConfig, schema: Schema, server_id: int = 0) -> None:
        self.config = config
        self.schema = schema
        self.server_id = server_id
        self.csn = CSNGenerator(server_id)
        self.filters = FilterEvaluator(schema)
        self.log = Logger(0)
        self.configdb: ConfigDatabase | None = None  # cn=config, when the server runs from a slapd.d
        self.bus: WorkerBus | None = None  # set when several worker processes serve it (server/journal.py)
        self.backends = [Backend(db, schema) for db in config.data_databases()]
        for backend in self._backends:
            backend.restore_context(server_id)
            for csn in backend.context.csns.values():
                self.csn.observe(csn)
        glue.merge_contexts(self.backends)
        self.subschema_ndn = normalize_dn(SUBSCHEMA_DN, schema)
        self.started = generalized_time()
        from pyldapd.server.monitor import Monitor

        self.monitor = Monitor(self)  # the read-only cn=Monitor tree (server/monitor.py)
        self.access = AccessControl(self)  # access control (server/acl.py, server/guard.py)

    def configuration_changed(self) -> None:
        """The configuration (databases, limits, restrictions, access, schema) changed: what was decided from it
        is decided afresh (Server.apply_config calls this after every cn=config change)."""
        self.search_plans: dict[tuple, SearchPlan] = {}
        # facts of the configuration asked for every request (server/tls.py)
        self.decided: dict[str, Any] = {}

    @property
    def backends(self) -> list[Backend]:
        return self._backends

    @backends.setter
    def backends(self, backends: list[Backend]) -> None:
        """The data databases in config order; setting them (at start, after a cn=config change) glues
        subordinates to their superiors (server/glue.py)."""
        self._backends = backends
        glue.link(backends, self.schema)
        self.configuration_changed()

    def close(self) -> None:
        for backend in self.backends:
            writer = backend.db._group_writer
            backend.close()  # commits what its writer has queued
            if writer is not None and writer.groups:
                # one line at stop, whatever the level (as "slapd stopped."): how many writes each fsync carried
                self.log.write(f"group commit {backend.config.suffix}: {writer.operations} writes in "
                               f"{writer.groups} commits, {writer.refused} refused, largest group "
                               f"{writer.largest}", 0)  # fmt: skip

    def configure_overlays(self, backend: Backend) -> None:
        """Build (or follow a config change of) a database's overlay stack; syncprov is set up with the
        replication (server/app.py), the others here."""
        from pyldapd.overlays.accesslog import AccessLog, AccesslogSettings

        def make(name: str) -> Overlay | None:
            if name == "accesslog":
                return AccessLog(self, backend, AccesslogSettings.parse(settings[name]))
            return None

        settings = {o.name: o.settings for o in backend.config.overlays}
        if "accesslog" in settings and self.schema.attribute_type("reqStart") is None:  # added over cn=config
            self.schema.load_file(str(SCHEMA_DIR / "accesslog.schema"))
        backend.overlays.configure([o.name for o in backend.config.overlays], make)
        running = backend.overlays.get("accesslog")
        if isinstance(running, AccessLog):
            running.configure(AccesslogSettings.parse(settings["accesslog"]))
            running.start()

    def write_failed(self, kind: str, session: Session, request: Any, exc: LDAPError) -> None:
        """A write answered with an error: overlays that log failures (accesslog) are told."""
        try:
            backend = self.backend_for(normalize_dn(request.dn, self.schema))
        except ValueError:
            return
        if backend is None:
            return
        for overlay in backend.overlays.running():
            failed = getattr(overlay, "failed", None)
            if failed is not None:
                failed(kind, request.dn, session.conn_id, session.bind_dn, int(exc.code), exc.message,
                       changes=getattr(request, "changes", None), request=request)  # fmt: skip

    def set_server_id(self, server_id: int) -> None:
        last = self.csn.next()
        self.server_id = server_id
        self.csn = CSNGenerator(server_id)
        self.csn.observe(last)

    # -- lookups ---------------------------------------------------------------------------------------------

    def backend_for(self, ndn: str) -> Backend | None:
        best = None
        for backend in self.backends:
            if backend.holds(ndn) and (best is None or len(backend.suffix_ndn) > len(best.suffix_ndn)):
                best = backend
        return best

    def check_shadow(self, backend: Backend, dn: str, session: Session | None = None) -> None:
        """A read-only consumer refers writes to its provider (updateref), as slapd's single shadow does,
        except those of its `updatedn` (slapd's be_isupdate; an updatedn alone makes a database a shadow)."""
        if not backend.shadow and not (backend.config.updatedn and not backend.config.multiprovider):
            return
        if session is not None and session.bind_ndn and backend.config.updatedn:
            try:
                if normalize_dn(backend.config.updatedn, self.schema) == session.bind_ndn:
                    return
            except DNError:
                pass
        if backend.config.updateref:
            urls = [url.rstrip("/") + "/" + dn.replace(" ", "%20") for url in backend.config.updateref]
            raise LDAPError(ResultCode.referral, "", referrals=urls)
        raise LDAPError(ResultCode.unwillingToPerform, "shadow context; no update referral")

    def require_backend(self, ndn: str, *, update: bool = False, search_scope: int | None = None,
                        dn: str | None = None) -> Backend:  # fmt: skip
        backend = self.backend_for(ndn)
        if backend is None:
            if self.config.referral:  # slapd's default referral (`referral`, olcReferral), with the DN in it
                raise LDAPError(ResultCode.referral, "", referrals=[referral_url(self.config.referral,
                                dn if dn is not None else ndn, search_scope)])  # fmt: skip
            if update:  # slapd: no database and no default referral for this DN
                raise LDAPError(ResultCode.unwillingToPerform, "no global superior knowledge")
            raise LDAPError(ResultCode.noSuchObject, "")
        return backend

    def is_root(self, session: Session, backend: Backend) -> bool:
        return bool(session.bind_ndn) and session.bind_ndn == backend.rootdn_ndn

    def lookup_entry(self, ndn: str) -> Entry | None:
        """An entry by normalized DN from whichever database holds it (group lookups of access control)."""
        backend = self.backend_for(ndn)
        if backend is None:
            return None
        with backend.db.read() as txn:
            return txn.get(ndn)

    def search_limits(self, session: Session, backend: Backend | None, request: ldap.SearchRequest,
                      base_ndn: str = "") -> tuple[int, int]:  # fmt: skip
        """(size, seconds) a search runs with, 0 meaning unlimited: `limits`, sizelimit/timelimit, the request."""
        return search_limits(self, session, backend, request, base_ndn)

    def limits_for(self, session: Session, backend: Backend | None) -> tuple[int, int]:
        if backend is not None and self.is_root(session, backend):
            return 0, 0
        size = self.config.sizelimit
        seconds = self.config.timelimit
        if backend is not None:
            if backend.config.sizelimit is not None:
                size = backend.config.sizelimit
            if backend.config.timelimit is not None:
                seconds = backend.config.timelimit
        return size, seconds

    # -- bind ------------------------------------------------------------------------------------------------

    def bind(self, session: Session, request: ldap.BindRequest) -> tuple[str, str]:
        """Authenticate; returns (dn, ndn) of the new identity. Raises LDAPError on failure."""
        outcome = self.prepare_bind(session, request)
        if isinstance(outcome, PasswordCheck):
            if not outcome.verify():
                raise LDAPError(ResultCode.invalidCredentials)
            return self.finish_bind(session, outcome)
        return outcome

    def finish_bind(self, session: Session, check: PasswordCheck) -> tuple[str, str]:
        """A simple bind whose password verified: slapd's bookkeeping (auth method, `lastbind`)."""
        session.auth_method = "simple"
        if check.backend is not None and check.backend.config.lastbind:  # the rootdn: only with an entry
            self.record_last_bind(check.backend, check.ndn)
        return check.dn, check.ndn

    def prepare_bind(self, session: Session, request: ldap.BindRequest) -> tuple[str, str] | PasswordCheck:
        """A bind up to its password check: (dn, ndn) when no password is involved, else the check to run
        (the connection runs slow schemes on a worker thread). Raises LDAPError on failure.
        The checks and their order are slapd's do_bind/fe_op_bind (allow, disallow, restrict)."""
        session.auth_method = ""
        ndn = normalize_or_fail(self.schema, request.name) if request.name else ""
        if request.version not in (2, 3):
            raise LDAPError(ResultCode.protocolError, "requested protocol version not supported")
        if request.version < 3 and "bind_v2" not in self.config.allows:
            raise LDAPError(
                ResultCode.protocolError, "historical protocol version requested, use LDAPv3 instead"
            )
        session.protocol = request.version  # set whether or not the bind succeeds, as slapd does
        if request.sasl_mechanism is not None:
            if request.version < 3:
                raise LDAPError(ResultCode.protocolError, "SASL bind requires LDAPv3")
            check_restrictions(self, session, None, "bind")
            dn, sasl_ndn, granted = self.sasl_bind(session, request)
            # the authentication identity goes through authz-regexp; a granted other authzid is already final
            mapped = "" if granted else self.authz_map(sasl_ndn)
            if mapped:
                dn = sasl_ndn = mapped
            session.auth_method = "sasl"
            return dn, sasl_ndn
        password = request.password or b""
        allows = self.config.allows
        if not password or not ndn:  # slapd's "anonymous" binds
            if password and "bind_anon_cred" not in allows:
                raise LDAPError(ResultCode.invalidCredentials)
            if ndn and "bind_anon_dn" not in allows:
                raise LDAPError(
                    ResultCode.unwillingToPerform, "unauthenticated bind (DN with no password) disallowed"
                )
            if "bind_anon" in self.config.disallows:
                raise LDAPError(ResultCode.inappropriateAuthentication, "anonymous bind disallowed")
            check_restrictions(self, session, None, "bind")
            session.auth_method = "simple"
            return "", ""
        if "bind_simple" in self.config.disallows:
            raise LDAPError(ResultCode.unwillingToPerform, "unwilling to perform simple authentication")
        backend = self.backend_for(ndn)
        config_pw = self.configdb.root_password(ndn) if backend is None and self.configdb is not None else b""
        if config_pw:  # the config database's rootdn (olcRootPW on olcDatabase={0}config): any transport
            check_restrictions(self, session, None, "bind")
            return PasswordCheck(pretty_dn(request.name, self.schema), ndn, password, [config_pw])
        if backend is None:
            dn_ndn = self.monitor.bind_root(
                pretty_dn(request.name, self.schema), ndn, password
            )  # the monitor database's rootdn/rootpw
            session.auth_method = "simple"
            return dn_ndn
        check_restrictions(self, session, backend, "bind")
        if ndn == backend.rootdn_ndn and backend.config.rootpw:  # the identity in pretty form, as slapd's
            return PasswordCheck(pretty_dn(request.name, self.schema), ndn, password, [backend.config.rootpw],
                                 backend)  # fmt: skip
        with backend.db.read() as txn:
            entry = txn.get(ndn)
        if entry is None:
            raise LDAPError(ResultCode.invalidCredentials)
        if not self.access.check_bind(session, backend, entry, ndn):
            raise LDAPError(ResultCode.invalidCredentials)
        return PasswordCheck(entry.dn, ndn, password, list(entry.get("userpassword")), backend)

    def record_last_bind(self, backend: Backend, ndn: str) -> None:
        """`lastbind on`: pwdLastSuccess, written as the rootdn with the usual modify bookkeeping (slapd's
        fe_op_lastbind), at most once a second; a read-only consumer stores it without replicating it."""
        now = generalized_time()
        with backend.db.writing() as txn:
            current = txn.get(ndn)
            if current is None or (current.first("pwdlastsuccess") or b"") >= now:
                return
            entry = current.copy()
            entry.put("pwdlastsuccess", "pwdLastSuccess", [now])
            if backend.shadow:
                txn.modify(ndn, entry)
                return
            csn = self.stamp(entry, Session(conn_id=0, bind_dn=backend.config.rootdn), created=False)
            txn.modify(ndn, entry)
            changes = [ldap.Change(ldap.MOD_REPLACE, "pwdLastSuccess", [now])]
            backend.overlays.in_txn(WriteOp("modify", entry.dn, current, entry, csn, 0, backend.config.rootdn,
                                            changes=changes), txn)  # fmt: skip
            backend.context.advance(txn, csn)
            backend.publish(Change("modify", current, entry, csn), txn)

    def authz_map(self, ndn: str) -> str:
        """authz-regexp (olcAuthzRegexp): the first rule whose regular expression matches the SASL identity
        (a normalized DN such as gidnumber=0+uidnumber=0,cn=peercred,cn=external,cn=auth) maps it, with $1..$9
        replaced, to a DN or to an LDAP URL searched for exactly one entry. '' when nothing maps it."""
        for pattern, replacement in self.config.authz_regexp:
            try:
                match = re.search(pattern, ndn, re.IGNORECASE)
            except re.error:
                continue
            if match is None:
                continue
            groups = [match.group(0)] + [g or "" for g in match.groups()]
            target = re.sub(r"\$(\d)", lambda m, g=groups: g[int(m.group(1))] if int(m.group(1)) < len(g)
                            else "", replacement)  # fmt: skip
            return self.authz_target(target)  # slapd stops at the first matching rule
        return ""

    # -- proxied authorization (RFC 4370) and authz-policy ------------------------------------------------------

    def proxied_session(self, session: Session, controls: list[Control]) -> Session:
        """The identity an operation runs as: the session's, or the one its Proxied Authorization control asks
        for when authz-policy allows it (slapd's parseProxyAuthz and slap_sasl_authorized, same codes/texts)."""
        found = [c for c in controls if c.oid == ctl.PROXIED_AUTHZ]
        if not found:
            return session
        control = found[0]
        if len(found) > 1:
            raise LDAPError(ResultCode.protocolError, "proxy authorization control specified multiple times")
        if control.value is None:
            raise LDAPError(ResultCode.protocolError, "proxy authorization control value absent")
        if "proxy_authz_non_critical" in self.config.disallows and not control.critical:
            raise LDAPError(
                ResultCode.protocolError, "proxied authorization criticality of FALSE not allowed"
            )
        if "proxy_authz_anon" not in self.config.allows and session.anonymous:
            raise LDAPError(PROXIED_AUTHORIZATION_DENIED, "anonymous proxied authorization not allowed")
        if not control.value:
            return replace(session, bind_dn="", bind_ndn="")
        target = self.authzid_to_dn(control.value.decode("utf-8", "replace"))
        if target is None:
            raise LDAPError(PROXIED_AUTHORIZATION_DENIED, "authzId mapping failed")
        if not self.authorized(session.bind_ndn, target):
            raise LDAPError(PROXIED_AUTHORIZATION_DENIED, "not authorized to assume identity")
        return replace(session, bind_dn=target, bind_ndn=target)

    def authzid_to_dn(self, authzid: str) -> str | None:
        """An authzId (RFC 4513 5.2.1.8): dn:<DN>, or u:<user> as uid=<user>,cn=auth through authz-regexp."""
        lower = authzid.lower()
        if lower.startswith("dn:"):
            try:
                return normalize_dn(authzid[3:], self.schema)
            except (DNError, ValueError):
                return None
        if lower.startswith("u:") and len(authzid) > 2:
            user = authzid[2:].replace("\\", "\\5c").replace(",", "\\,").replace("+", "\\+")
            try:
                ndn = normalize_dn(f"uid={user},cn=auth", self.schema)
            except (DNError, ValueError):
                return None
            return self.authz_map(ndn) or ndn
        return None

    def authorized(self, authc: str, authz: str) -> bool:
        """May `authc` act as `authz`? Itself, a rootdn for DNs of its database, then authz-policy's rules."""
        if not authz:
            return True
        if not authc:
            return False
        if authc == authz:
            return True
        backend = self.backend_for(authz)
        if backend is not None and authc == backend.rootdn_ndn:
            return True
        policy = self.config.authz_policy
        if policy in ("to", "any", "all"):
            ok = self.authz_rules_allow(authc, "authzto", authz)
            if ok != (policy == "all"):  # "all" needs both rules; the others are satisfied by one
                return ok
        if policy in ("from", "any", "all"):
            return self.authz_rules_allow(authz, "authzfrom", authc)
        return False

    def authz_rules_allow(self, owner: str, attribute: str, candidate: str) -> bool:
        """Does a value of `owner`'s authzTo/authzFrom name `candidate` (dn[.style]:, dn.regex:, ldap:///, group:)?"""
        entry = self.lookup_entry(owner)
        if entry is None:
            return False
        for raw in entry.get(attribute):
            rule = ORDER_PREFIX.sub("", raw.decode("utf-8", "replace"), count=1)
            if self.authz_rule_matches(rule, candidate):
                return True
        return False

    def authz_rule_matches(self, rule: str, candidate: str) -> bool:
        lower = rule.lower()
        if lower.startswith("ldap:///"):
            return candidate in self.authz_target_all(rule)
        if lower.startswith(("group:", "group/")):
            head, _, dn = rule.partition(":")
            parts = head.split("/")
            attr = parts[2] if len(parts) > 2 else "member"
            try:
                group = self.lookup_entry(normalize_dn(dn, self.schema))
            except (DNError, ValueError):
                return False
            if group is None:
                return False
            for value in group.get(attr.lower()):
                try:
                    if normalize_dn(value.decode("utf-8", "replace"), self.schema) == candidate:
                        return True
                except (DNError, ValueError):
                    continue
            return False
        if lower.startswith("u:"):
            return self.authzid_to_dn(rule) == candidate
        style, sep, value = rule.partition(":")
        if not sep or not style.lower().startswith("dn"):
            style, value = "dn", rule  # a bare DN
        style = style.lower().split(".", 1)[1] if "." in style else "exact"
        if style == "regex":
            try:
                return re.search(value, candidate) is not None
            except re.error:
                return False
        try:
            dn = normalize_dn(value, self.schema)
        except (DNError, ValueError):
            return False
        if style in ("exact", "base"):
            return candidate == dn
        if style in ("subtree", "sub"):
            return candidate == dn or is_descendant(candidate, dn)
        if style == "children":
            return is_descendant(candidate, dn)
        if style in ("onelevel", "one"):
            return is_descendant(candidate, dn) and split_rdn(candidate)[1] == dn
        return False

    def authz_target_all(self, url: str) -> list[str]:
        return self.authz_search(url, limit=None)

    def authz_search(self, url: str, limit: int | None) -> list[str]:
        """Normalized DNs of the entries an ldap:///base??scope?filter URL names (internal search, no ACL)."""
        from urllib.parse import unquote

        parts = (url[len("ldap:///") :].split("?") + ["", "", ""])[:4]
        base, _attrs, scope_text, filter_text = (unquote(p) for p in parts)
        scopes = {"": Scope.BASE, "base": Scope.BASE, "one": Scope.ONE, "sub": Scope.SUB,
                  "children": Scope.CHILDREN, "subordinate": Scope.CHILDREN}  # fmt: skip
        scope = scopes.get(scope_text.lower())
        try:
            base_ndn = normalize_dn(base, self.schema)
            search_filter = parse_filter(filter_text or "(objectClass=*)")
        except (DNError, ValueError):
            return []
        backend = self.backend_for(base_ndn)
        if backend is None or scope is None:
            return []
        found: list[str] = []
        with backend.db.read() as txn:
            if txn.get(base_ndn) is None:
                return []
            for entry in txn.search(base_ndn, scope, search_filter):
                if self.filters.matches(search_filter, entry) and not is_glue(entry):
                    found.append(normalize_dn(entry.dn, self.schema))
                    if limit is not None and len(found) >= limit:
                        break
        return found

    def authz_target(self, target: str) -> str:
        lower = target.lower()
        if lower.startswith("ldap:///"):
            found = self.authz_search(target, limit=2)
            return found[0] if len(found) == 1 else ""  # slapd wants exactly one entry
        for prefix in ("dn.exact:", "dn.base:", "dn:"):
            if lower.startswith(prefix):
                target = target[len(prefix) :]
                break
        try:
            return normalize_dn(target, self.schema)
        except (DNError, ValueError):
            return ""

    def sasl_bind(self, session: Session, request: ldap.BindRequest) -> tuple[str, str, bool]:
        """(dn, ndn, whether that is another identity the authzid asked for and authz-policy granted)."""
        mechanism = (request.sasl_mechanism or "").upper()
        if mechanism != "EXTERNAL":
            raise LDAPError(ResultCode.authMethodNotSupported, "SASL(-4): no mechanism available: ")
        if session.tls_authzid:  # a client certificate (server/tls.py)
            from pyldapd.server.tls import external_identity

            requested = (request.sasl_credentials or b"").decode("utf-8", "replace")
            return (*external_identity(session, self.schema, requested), False)
        if not session.local or session.peer_uid is None:
            raise LDAPError(ResultCode.inappropriateAuthentication, "SASL(-4): no mechanism available: ")
        dn = f"gidNumber={session.peer_gid}+uidNumber={session.peer_uid},{PEERCRED_SUFFIX}"
        # normalized as any DN (types by their schema names, as slapd's dnNormalize): ACLs' `dn.exact=` and
        # rootdn compare with that form; without the nis schema's types, the lowercased DN
        try:
            ndn = normalize_dn(dn, self.schema)
        except (DNError, ValueError):
            ndn = dn.lower()
        requested = (request.sasl_credentials or b"").decode("utf-8", "replace")
        if requested and requested not in ("dn:" + dn, "u:"):
            # another identity: allowed by authz-policy (authzTo/authzFrom) or a rootdn, as slapd decides
            authc = self.authz_map(ndn) or ndn
            target = self.authzid_to_dn(requested)
            if target is None or not self.authorized(authc, target):
                raise LDAPError(
                    ResultCode.insufficientAccessRights, "SASL(-14): authorization failure: not authorized"
                )
            return target, target, True
        return dn, ndn, False

    # -- search ----------------------------------------------------------------------------------------------

    def search(
        self,
        session: Session,
        message_id: int,
        request: ldap.SearchRequest,
        controls: list[Control],
        send: Callable[[bytes], None],
    ) -> tuple[int, list[Control], str]:
        """Stream matching entries through `send`; returns (entries sent, response controls, diagnostic)."""
        return run_steps(self.search_steps(session, message_id, request, controls, send))

    def search_steps(
        self,
        session: Session,
        message_id: int,
        request: ldap.SearchRequest,
        controls: list[Control],
        send: Callable[[bytes], None],
    ) -> Steps:
        """The search as resumable steps (server/steps.py): yields every STEP_EVERY candidates, and an Offload to
        compile and plan a large filter; returns (entries sent, response controls, diagnostic). A cheap search
        runs to its end in the first step."""
        if not controls:  # planned before for this shape and identity: straight to the database
            plan = self.search_plans.get(plan_key(session, request))
            if plan is not None:
                return self.run_search_plan(session, message_id, request, controls, send, plan)
        return self.plan_then_search(session, message_id, request, controls, send)

    def plan_then_search(self, session: Session, message_id: int, request: ldap.SearchRequest,
                         controls: list[Control], send: Callable[[bytes], None]) -> Steps:  # fmt: skip
        """search_steps, its plan made first (and kept when it may serve again)."""
        if request.scope not in (0, 1, 2, 3):  # answered as slapd's do_search does; the connection goes on
            raise LDAPError(ResultCode.protocolError, "invalid scope")
        if request.deref not in (0, 1, 2, 3):
            raise LDAPError(ResultCode.protocolError, "invalid deref")
        if self.configdb is not None and names_config(request.base):
            check_restrictions(self, session, None, "search")
            items = self.values_return_items(controls)

            def selection_factory(
                schema: Schema, attributes: list[str], types_only: bool
            ) -> AttributeSelection:
                # cn=config's own schema matches the filter's values
                values_filter = values_return_filter(FilterEvaluator(schema), items) if items else None
                return AttributeSelection(schema, attributes, types_only, values_filter)

            sent = self.configdb.search(session, message_id, request, selection_factory, send)
            return sent, [], values_return_diagnostic(self.filters, items) if items else ""
        asked = request
        if not request.base and request.scope != 0 and self.config.default_search_base:
            request = replace(request, base=self.config.default_search_base)  # slapd's defaultsearchbase
        base_ndn = normalize_or_fail(self.schema, request.base)
        if request.deref & 2:  # derefFindingBaseObj, derefAlways: an alias base names the search's base
            target = self.dereference_base(base_ndn)
            if target is not None:
                request = replace(request, base=target[0])
                base_ndn = target[1]
        scope = SCOPES[request.scope]
        if controls:
            manage_dsa_it = any(c.oid == ctl.MANAGE_DSA_IT for c in controls)
            paged = next((c for c in controls if c.oid == ctl.PAGED_RESULTS), None)
            if paged is not None and request.size_limit > 0 and paged_page_size(paged) >= request.size_limit:
                paged = None  # RFC 2696 3: one page holds the whole answer, the control is ignored (as slapd)
            values_filter, diagnostic = self.matched_values(controls)
            visible = subentry_visibility(scope, ctl.subentries_visibility(controls))
        else:  # the common search: no control to look for
            manage_dsa_it, paged, values_filter, diagnostic = False, None, None, ""
            visible = subentry_visibility(scope, None)
        if len(request.attributes) >= LARGE_ATTRIBUTE_LIST:  # made on a thread while the loop serves others
            selection = yield Offload(
                functools.partial(self.selection, request.attributes, request.types_only, values_filter)
            )
        else:
            selection = self.selection(request.attributes, request.types_only, values_filter)
        if self.monitor.handles(base_ndn):  # cn=Monitor: its own read rule (server/monitor.py)
            check_restrictions(self, session, None, "search")
            matches = self.filters.compile(request.filter)
            sent = self.monitor.search(session, message_id, base_ndn, scope, matches, selection, send,
                                       request.filter)  # fmt: skip
            return sent, [], diagnostic
        special = None
        if base_ndn == "" and scope == Scope.BASE:
            special = self.root_dse()
        elif base_ndn == self.subschema_ndn:
            if scope != Scope.BASE:  # slapd's frontend answers only a base search there; no database holds it
                raise LDAPError(ResultCode.noSuchObject, "")
            special = self.subschema_entry()
        if special is not None:  # entries no database holds: the frontend's (global) access rules
            check_restrictions(self, session, None, "search")
            guard = self.access.search_guard(session, None, request.filter)
            if guard is not None:
                denied = guard.base_denied(special, base_ndn)
                if denied is not None:
                    raise LDAPError(denied, "")
                self.check_assertion(controls, special, session, None)
                blob = guard.encode(special, selection, None) if guard.matches(special) else None
            else:
                self.check_assertion(controls, special, session, None)
                blob = (
                    selection.encode(special, None) if self.filters.matches(request.filter, special) else None
                )
            if blob is None:
                return 0, [], diagnostic
            send(ldap.encode_search_result_entry(message_id, special.dn, blob))
            return 1, [], diagnostic
        backend = self.require_backend(base_ndn, search_scope=request.scope, dn=request.base)
        check_restrictions(self, session, backend, "search")
        if controls and backend.copy and ctl.find_control(controls, ctl.DONT_USE_COPY) is not None:
            # slapd's do_search: the original is elsewhere, where updateref (or the default referral) points
            urls = backend.config.updateref or ([self.config.referral] if self.config.referral else [])
            if not urls:
                raise LDAPError(
                    ResultCode.unwillingToPerform, "copy not used; no referral information available"
                )
            raise LDAPError(ResultCode.referral, "",
                            referrals=[referral_url(url, request.base, request.scope) for url in urls])  # fmt: skip
        limits = limit_set(self, session, backend, base_ndn)
        check_search_allowed(limits)  # slapd's limits_check runs before the database looks at the base
        size_limit, time_limit = request_limits(limits, request)
        # one part, unless the base lies in a glue superior: then its subordinates' below the base too (server/glue.py)
        parts = glue.search_parts(backend, base_ndn, scope)
        if paged is not None:
            deadline = time.monotonic() + time_limit if time_limit else None
            return (yield from self.paged_search_parts(session, message_id, request, paged, parts, manage_dsa_it,
                                                       selection, send, limits, deadline, diagnostic,
                                                       controls, visible))  # fmt: skip
        plan = SearchPlan(base_ndn, scope, selection, visible, parts, limits, size_limit, time_limit)
        if (
            not controls
            and request is asked  # no default base took the base's place
            and not request.deref & 2  # whether the base is an alias is data, which writes change
            # a plan's key holds the base and the attribute list: kept only when they are small, so that the
            # plans of any client's requests hold no more than SEARCH_PLANS_MOST x PLAN_KEY_MOST characters
            and len(request.attributes) <= SHARED_SELECTION_MOST
            and len(request.base) + sum(map(len, request.attributes)) <= PLAN_KEY_MOST
            and unrestricted_search(self, backend)  # else the decision is each session's
            and not limits_read_entries(self, backend)  # a `limits group/...` line: the group may change
        ):
            if len(self.search_plans) >= SEARCH_PLANS_MOST:
                self.search_plans.clear()
            self.search_plans[plan_key(session, request)] = plan
        return (yield from self.run_search_plan(session, message_id, request, controls, send, plan, manage_dsa_it,
                                                diagnostic))  # fmt: skip

    def run_search_plan(self, session: Session, message_id: int, request: ldap.SearchRequest,
                        controls: list[Control], send: Callable[[bytes], None], plan: SearchPlan,
                        manage_dsa_it: bool = False, diagnostic: str = "") -> Steps:  # fmt: skip
        """The search's databases read as `plan` says: returns (entries sent, response controls, diagnostic)."""
        deadline = time.monotonic() + plan.time_limit if plan.time_limit else None
        sent = 0
        for part, part_base, part_scope, missing_ok in plan.parts:  # one result stream, one count of limits
            sent = yield from self.search_database(session, message_id, request, controls, send, part, part_base,
                                                   part_scope, plan.selection, manage_dsa_it, plan.limits,
                                                   plan.size_limit, deadline, sent, missing_ok,
                                                   plan.visible)  # fmt: skip
        return sent, [], diagnostic

    def dereference_base(self, base_ndn: str) -> tuple[str, str] | None:
        """The (DN, normalized DN) an alias search base leads to, following aliases (slapd's deref_base), or None
        when the base is no alias. A missing target or a loop is aliasProblem, matched DN the alias."""
        seen: set[str] = set()
        ndn, found, alias_dn = base_ndn, None, ""
        while True:
            backend = self.backend_for(ndn)
            if backend is None:
                return found
            with backend.db.read() as txn:
                entry = txn.get(ndn)
            if entry is None or not is_alias(entry):
                if entry is None and found is not None:
                    raise LDAPError(ResultCode.aliasProblem, "aliasedObject not found", matched_dn=alias_dn)
                return found
            if ndn in seen:
                raise LDAPError(ResultCode.aliasProblem, "circular alias", matched_dn=entry.dn)
            seen.add(ndn)
            alias_dn = entry.dn
            target = entry.first("aliasedobjectname") or b""
            try:
                ndn = normalize_dn(target.decode("utf-8"), self.schema)
            except (DNError, UnicodeDecodeError):
                raise LDAPError(
                    ResultCode.aliasProblem, "aliasedObject not found", matched_dn=alias_dn
                ) from None
            found = (target.decode("utf-8"), ndn)

    def dereferenced(self, txn, found: Iterator[Entry], base_ndn: str, scope: Scope,
                     search_filter) -> Iterator[Entry]:  # fmt: skip
        """A search's candidates with aliases dereferenced in searching (slapd's back-mdb), still streamed: an
        alias is not returned; in a one-level search its target is (even when also a child of the base, as slapd
        does), in a subtree search the target's subtree where it lies outside the search's. Targets that are
        missing, in another database, or met before are left out (no loop)."""
        seen_targets: set[str] = set()
        extra_ids: set[int] = set()
        for entry in found:
            if not is_alias(entry):
                yield entry
                continue
            aliases = [entry]
            while aliases:
                alias = aliases.pop()
                target = alias.first("aliasedobjectname") or b""
                try:
                    target_ndn = normalize_dn(target.decode("utf-8"), self.schema)
                except (DNError, UnicodeDecodeError):
                    continue
                if target_ndn in seen_targets:
                    continue
                seen_targets.add(target_ndn)
                if scope == Scope.ONE:
                    resolved = txn.get(target_ndn)
                    if resolved is not None and not is_alias(resolved):
                        yield resolved
                    continue
                if target_ndn == base_ndn or is_descendant(target_ndn, base_ndn):
                    continue  # within the search's own subtree: met there
                for more in txn.search(target_ndn, Scope.SUB, search_filter):
                    if more.id in extra_ids:
                        continue
                    extra_ids.add(more.id)
                    try:
                        if is_descendant(normalize_dn(more.dn, self.schema), base_ndn):
                            continue  # (a target above the base: its subtree holds the search's own)
                    except DNError:
                        continue
                    if is_alias(more):
                        aliases.append(more)
                    else:
                        yield more

    def search_base(self, session: Session, controls: list[Control], backend: Backend, txn, guard,
                    base_ndn: str, scope: Scope, manage_dsa_it: bool, base_dn: str = "") -> Entry:  # fmt: skip
        """The search's base entry, or the error a missing (or hidden) one gives; the Assertion control is
        tested on it. A base that is a referral entry, or below one, is answered with the referral."""
        base = txn.get(base_ndn)
        if not base_dn or normalize_or_fail(self.schema, base_dn) != base_ndn:
            base_dn = base_ndn  # a glued database's part: its own suffix
        if not manage_dsa_it:
            refer(base, txn, base_ndn, base_dn, int(scope))
        if base is None or (scope == Scope.BASE and not manage_dsa_it and is_glue(base)):
            # a missing base below a referral entry: the referral, ManageDsaIT or not (back-mdb's search), when
            # the referral entry may be disclosed
            if guard is not None and base is None:
                raise self.access.not_found(
                    session, backend, txn, base_ndn, referred=base_dn, scope=int(scope)
                )
            if base is None:
                refer(None, txn, base_ndn, base_dn, int(scope))
            nearest = txn.nearest_ancestor(base_ndn) if base is None else None
            raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
        if guard is not None:
            denied = guard.base_denied(base, base_ndn)
            if denied is not None:
                raise LDAPError(denied, "")
        if controls:
            self.check_assertion(controls, base, session, backend, txn)  # on the base entry, as slapd
        return base

    def search_database(self, session: Session, message_id: int, request: ldap.SearchRequest,
                        controls: list[Control], send: Callable[[bytes], None], backend: Backend, base_ndn: str,
                        scope: Scope, selection: AttributeSelection, manage_dsa_it: bool, limits: LimitSet | None,
                        size_limit: int, deadline: float | None, sent: int, missing_ok: bool,
                        visible: Callable[[Entry], bool] | None = None) -> Steps:  # fmt: skip
        """One database's part of a search (the whole search, unless glued), as steps: returns the entries sent
        so far + its own.
        `missing_ok`: a glued subordinate's suffix that is not there adds nothing (slapd drops its 32).
        `visible`: which entries the search may see at all (`subentry_visibility`), None: all."""
        if backend.journal is not None and base_ndn == backend.suffix_ndn:
            # the suffix entry shows the live contextCSN: first what other workers committed (server/journal.py),
            # so that the vector shown is as new as the entries read after it
            backend.journal.catch_up()
        with backend.db.read() as txn:

            def prepare() -> tuple[Any, Callable[[Entry], bool] | None, Iterator[Entry] | None]:
                guard = self.access.search_guard(session, backend, request.filter, txn)
                if missing_ok:
                    base = txn.get(base_ndn)
                    if base is None:
                        return guard, None, None
                else:
                    base = self.search_base(
                        session, controls, backend, txn, guard, base_ndn, scope, manage_dsa_it, request.base
                    )
                # compiled once: by access control (with `search` checks) or plainly
                matches = self.filters.compile(request.filter) if guard is None else guard.matches
                if self.names_has_subordinates(request.filter) and getattr(
                    txn.has_children, "answers_has_subordinates", True
                ):
                    matches = with_subordinates_test(matches, txn.has_children, self.schema)
                # the database plans the filter (index lookups) before it hands over the first candidate
                return guard, matches, self.candidates(txn, base_ndn, scope, request, limits, base.id or None)

            # a filter of thousands of terms costs a long time to compile and plan, in one piece: a thread
            # does it while the loop serves others (server/steps.py)
            if large_filter(request.filter):
                guard, matches, found = yield Offload(prepare)
            else:
                guard, matches, found = prepare()
            if found is None:
                return sent
            if request.deref & 1 and scope != Scope.BASE:  # derefInSearching, derefAlways
                found = self.dereferenced(txn, found, base_ndn, scope, request.filter)
            has_children = txn.has_children if selection.wants_has_subordinates else None
            # the suffix entry (shown with the live contextCSN) is in scope only from itself, base or subtree
            suffix_id = (
                txn.id_of(backend.suffix_ndn)
                if base_ndn == backend.suffix_ndn
                and scope in (Scope.BASE, Scope.SUB)
                and backend.keeps_context
                else None
            )
            live_csns = (
                backend.context.csns
            )  # the vector as the search began (replaced, never changed, by commits)
            clock = time.monotonic
            countdown = STEP_EVERY
            for entry in found:
                countdown -= 1
                if (
                    not countdown
                ):  # the driver may stop here (its time slice is over, the client reads slowly)
                    countdown = STEP_EVERY
                    yield None
                # before each candidate, as back-mdb does: the bound is on the work, not only on what is sent
                if deadline is not None and clock() > deadline:
                    raise LDAPError(ResultCode.timeLimitExceeded, "", matched_dn="")
                if entry.id == suffix_id:
                    live_context = [v.encode() for v in live_csns.to_values()]
                    if live_context:
                        entry = with_context_csn(entry, live_context)
                if names_special_class(entry):  # (most entries are neither: one look at their classes)
                    if visible is not None and not visible(entry):
                        continue
                    if not manage_dsa_it and is_glue(entry):
                        continue
                    # before the filter, as back-mdb: a reference
                    if not manage_dsa_it and is_referral(entry):
                        send(search_reference(message_id, entry, scope))
                        continue
                elif visible is is_subentry:  # the Subentries control TRUE: subentries only
                    continue
                if not matches(entry):
                    continue
                if size_limit and sent >= size_limit:
                    raise SizeLimitExceeded(sent)
                if guard is not None:
                    blob = guard.encode(entry, selection, has_children)
                    if blob is None:
                        continue  # no read access to the entry: slapd leaves it out silently
                else:
                    blob = selection.encode(entry, has_children)
                send(ldap.encode_search_result_entry(message_id, entry.dn, blob))
                sent += 1
        return sent

    def selection(self, attributes: list[str], types_only: bool,
                  values_filter: ValuesFilter | None) -> AttributeSelection:  # fmt: skip
        """The AttributeSelection of a search's attribute list. Without a matchedValues filter it depends only on
        the list and the schema: made once and shared (it is never changed after it is made; access control copies
        it before narrowing it), kept in the schema's derived facts so that any schema change drops it."""
        if values_filter is not None or len(attributes) > SHARED_SELECTION_MOST:
            return AttributeSelection(self.schema, attributes, types_only, values_filter)
        cache = self.schema.derived.setdefault("search_selections", {})
        key = (tuple(attributes), types_only)
        found = cache.get(key)
        if found is None:
            found = AttributeSelection(self.schema, attributes, types_only, None)
            if len(cache) >= 256:
                cache.clear()
            cache[key] = found
        return found

    def matched_values(self, controls: list[Control]) -> tuple[ValuesFilter | None, str]:
        """The matchedValues control's filter (RFC 3876), applied to the values each entry returns, and the text
        its parsing leaves for the result; access control is checked on every value before the filter
        (GuardedSelection), so the filter reveals nothing hidden."""
        items = self.values_return_items(controls)
        if items is None:
            return None, ""
        return values_return_filter(self.filters, items), values_return_diagnostic(self.filters, items)

    @staticmethod
    def values_return_items(controls: list[Control]) -> list | None:
        control = ctl.find_control(controls, ctl.VALUES_RETURN_FILTER)
        if control is None:
            return None
        try:
            return ctl.decode_values_return_filter(control.value)
        except ldap.ProtocolError as exc:  # the connection refuses these first; kept for other callers
            raise LDAPError(ResultCode.protocolError, str(exc)) from None

    @staticmethod
    def candidates(txn, base_ndn: str, scope: Scope, request: ldap.SearchRequest, limits: LimitSet | None,
                   base_entry_id: int | None = None):  # fmt: skip
        """The entries the database hands over for the filter; `size.unchecked=N` refuses a search with more
        than N of them before anything is sent (adminLimitExceeded), as back-mdb counts its candidates."""
        unchecked = limits.unchecked if limits is not None and limits.unchecked > 0 else -1
        found = txn.search(base_ndn, scope, request.filter, unchecked=unchecked, base_entry_id=base_entry_id)
        try:
            first = next(found, None)  # the database counts its candidates before it hands over any entry
        except TooManyCandidates:
            raise LDAPError(ResultCode.adminLimitExceeded, "") from None
        return itertools.chain((first,) if first is not None else (), found)

    def paged_search_parts(self, session, message_id, request, paged, parts, manage_dsa_it, selection, send,
                           limits, deadline, diagnostic, controls, visible=None) -> Steps:  # fmt: skip
        """A paged search over the parts of a search (one database, or a glue superior's tree): each part's
        read transaction, access rules and filter; returns (entries sent, response controls, diagnostic)."""
        with ExitStack() as stack:
            sources: list[PagedSource] = []
            for part, part_base, part_scope, missing_ok in parts:
                txn = stack.enter_context(part.db.read())

                def prepare(part=part, txn=txn, part_base=part_base, part_scope=part_scope,
                            missing_ok=missing_ok) -> PagedSource:  # fmt: skip
                    guard = self.access.search_guard(session, part, request.filter, txn)
                    present = True
                    if (
                        missing_ok
                    ):  # kept in the list even when absent: the ids of later pages number the sources
                        present = txn.get(part_base) is not None
                    else:
                        self.search_base(
                            session,
                            controls,
                            part,
                            txn,
                            guard,
                            part_base,
                            part_scope,
                            manage_dsa_it,
                            request.base,
                        )
                    matches = self.filters.compile(request.filter) if guard is None else guard.matches
                    return PagedSource(txn, guard, matches, part_base, part_scope, present)

                # a large filter is compiled on a thread (server/steps.py), as for a search that is not paged
                sources.append((yield Offload(prepare)) if large_filter(request.filter) else prepare())
            return (yield from self.paged_search(session, message_id, request, paged, sources, selection,
                                                 manage_dsa_it, send, limits, deadline, diagnostic,
                                                 visible))  # fmt: skip

    def paged_search(self, session, message_id, request, paged, sources: list[PagedSource], selection,
                     manage_dsa_it, send, limits=None, deadline=None, diagnostic="", visible=None) -> Steps:  # fmt: skip
        """RFC 2696 paged results. The size limits bound the whole search, not a page (slapd's limits_check):
        each request may send what is left of them, and the search ends with sizeLimitExceeded there. Over a
        glued tree an id carries its source's number in its top byte."""
        try:
            page = ctl.decode_paged_results(paged.value or b"")
        except Exception as exc:
            raise LDAPError(ResultCode.protocolError, "paged results control could not be decoded") from exc
        key = (request.base.lower(), request.scope, request.filter, tuple(request.attributes))
        # One paged search per connection, cookies numbered per connection, checked as slapd's
        # parsePagedResults does: a cookie never issued is a protocol error, an earlier one is refused.
        state = session.paged
        count = 0
        if page.cookie:  # a refused cookie leaves the open search as it was
            number = int.from_bytes(page.cookie, "little") if len(page.cookie) == 8 else -1
            if not 0 < number <= session.paged_cookies:
                raise LDAPError(ResultCode.protocolError, "paged results cookie is invalid")
            if state is None or number != state.cookie:
                raise LDAPError(ResultCode.unwillingToPerform, "paged results cookie is invalid or old")
            if state.request_key != key:  # slapd would go on with the new request from the old position
                raise LDAPError(ResultCode.unwillingToPerform, "paged results cookie is invalid")
            session.paged = None
            count = state.count
        size_limit = paged_size_limit(limits, request.size_limit, count, page.size)
        if not page.cookie:  # a new paged search: the connection's previous one (if any) is abandoned
            session.paged = None
            ids = array("Q")
            examined = 0
            for number, source in enumerate(sources):
                if not source.present:
                    continue
                found = self.candidates(source.txn, source.base_ndn, source.scope, request, limits)
                if request.deref & 1 and source.scope != Scope.BASE:
                    found = self.dereferenced(
                        source.txn, found, source.base_ndn, source.scope, request.filter
                    )
                for entry in found:
                    examined += 1
                    if not examined % STEP_EVERY:
                        yield None
                    if deadline is not None and time.monotonic() > deadline:
                        raise LDAPError(ResultCode.timeLimitExceeded, "", matched_dn="")
                    if visible is not None and not visible(entry):
                        continue
                    if manage_dsa_it or not is_glue(entry):
                        if source.matches(entry) or (not manage_dsa_it and is_referral(entry)):
                            ids.append(number << SOURCE_SHIFT | entry.id)
            state = PagedSearch(key, ids)
        if page.size == 0:
            return 0, [paged_control(0, b"")], diagnostic
        sent = 0
        ids, position = state.ids, state.position
        while position < len(ids) and sent < page.size:
            if position % STEP_EVERY == STEP_EVERY - 1:
                yield None
            if size_limit >= 0 and sent >= size_limit:
                raise SizeLimitExceeded(sent)
            source = (
                sources[ids[position] >> SOURCE_SHIFT]
                if ids[position] >> SOURCE_SHIFT < len(sources)
                else None
            )
            entry = source.txn.get_by_id(ids[position] & SOURCE_ID_MASK) if source is not None else None
            position += 1
            if entry is None or source is None:
                continue
            if not manage_dsa_it and is_referral(entry):  # (kept in the ids whatever the filter: below)
                send(search_reference(message_id, entry, Scope(request.scope)))
                continue
            if page.cookie and not source.matches(entry):
                continue  # later pages test the filter as the session is now (slapd: a cursor over candidates)
            has_children = source.txn.has_children if selection.wants_has_subordinates else None
            guard = source.guard
            blob = selection.encode(entry, has_children) if guard is None else guard.encode(entry, selection,
                                                                                            has_children)  # fmt: skip
            if blob is None:
                continue
            send(ldap.encode_search_result_entry(message_id, entry.dn, blob))
            sent += 1
        if position >= len(ids):
            return sent, [paged_control(0, b"")], diagnostic
        if position > 4096 and position * 2 > len(ids):  # what was sent is given back as the search goes
            del ids[:position]
            position = 0
        session.paged_cookies += 1
        state.position, state.cookie, state.count = position, session.paged_cookies, count + sent
        session.paged = state
        return sent, [paged_control(0, state.cookie.to_bytes(8, "little"))], diagnostic

    def sync_search(self, conn, message_id: int, request: ldap.SearchRequest, controls: list[Control],
                    sync_control: Control) -> bool:  # fmt: skip
        """An RFC 4533 sync search; the syncprov overlay answers it. True when it stays open (persist)."""
        return run_steps(self.sync_search_steps(conn, message_id, request, controls, sync_control))

    def sync_search_steps(self, conn, message_id: int, request: ldap.SearchRequest, controls: list[Control],
                          sync_control: Control) -> Steps:  # fmt: skip
        """sync_search as resumable steps (server/steps.py): a refresh of many entries leaves others their turn."""
        if self.configdb is not None and names_config(request.base):  # replication of cn=config itself
            return (yield from self.configdb.sync_search(conn, message_id, request, controls, sync_control,
                                                         lambda schema, attrs, types_only: AttributeSelection(
                                                             schema, attrs, types_only)))  # fmt: skip
        base_ndn = normalize_or_fail(self.schema, request.base)
        backend = self.backend_for(base_ndn)
        if backend is None or backend.provider is None:
            if sync_control.critical:  # slapd's words when the database has no syncprov
                raise LDAPError(
                    ResultCode.unavailableCriticalExtension, "critical extension is not recognized"
                )
            sent, response_controls, text = yield from self.search_steps(
                conn.session, message_id, request, controls, conn.send
            )
            conn.result(message_id, ldap.SEARCH_RESULT_DONE, ResultCode.success, text, nentries=sent)
            return False
        try:
            sync = ctl.decode_sync_request(sync_control.value)
        except Exception as exc:
            raise LDAPError(ResultCode.protocolError, "Sync Request control value is malformed") from exc
        if request.scope not in (0, 1, 2, 3):
            raise LDAPError(ResultCode.protocolError, "invalid scope")
        if request.deref not in (0, 1, 2, 3):
            raise LDAPError(ResultCode.protocolError, "invalid deref")
        limits = limit_set(self, conn.session, backend, base_ndn)
        check_search_allowed(limits)
        size_limit, time_limit = request_limits(limits, request)
        # the refresh runs under the search's time limit, as back-mdb's search loop under syncprov
        deadline = time.monotonic() + time_limit if time_limit else None
        if limits is not None and limits.unchecked > 0:  # the refresh's candidates, counted as for a search
            with backend.db.read() as txn:
                for count, _entry in enumerate(self.candidates(txn, base_ndn, Scope(request.scope), request,
                                                               limits), 1):  # fmt: skip
                    if not count % STEP_EVERY:
                        yield None
        selection = AttributeSelection(self.schema, request.attributes, request.types_only,
                                       self.matched_values(controls)[0])  # fmt: skip
        matches = self.filters.compile(request.filter)
        guard = self.access.search_guard(conn.session, backend, request.filter)
        if guard is not None:
            selection, matches = guard.for_sync(backend, base_ndn, selection)
        if any(c.oid == ctl.ASSERTION for c in controls):  # tested on the base, as for any search
            with backend.db.read() as txn:
                base = txn.get(base_ndn)
                if base is not None:
                    self.check_assertion(controls, base, conn.session, backend, txn)
        return (yield from backend.provider.sync_search(conn, message_id, request, controls, sync, selection,
                                                        matches, base_ndn, size_limit, deadline))  # fmt: skip

    def stop_sync_search(self, conn, message_id: int, result: int | None) -> bool:
        """Abandon (result None) or Cancel (result cancelled) of a persistent search."""
        return any(b.provider.stop_search(conn, message_id, result) for b in self.replicated() if b.provider)

    def offers_sync(self) -> bool:
        """Is the Sync Request control known? slapd's syncprov overlay registers it: without one anywhere a
        critical Sync Request is not recognized."""
        return any(backend.provider is not None for backend in self.replicated())

    def replicated(self) -> list:
        """The data databases, and cn=config (which has syncprov and syncrepl of its own)."""
        return self.backends + ([self.configdb.backend] if self.configdb is not None else [])

    def connection_closed(self, conn) -> None:
        for backend in self.replicated():
            if backend.provider is not None:
                backend.provider.connection_closed(conn)

    def root_dse(self) -> Entry:
        entry = Entry("")
        put = entry.put
        put("objectclass", "objectClass", [b"top", b"OpenLDAProotDSE"])
        put("structuralobjectclass", "structuralObjectClass", [b"OpenLDAProotDSE"])
        # slapd always has its config database (slapd.conf or not) and names the monitor database only where
        # one is configured; it shows no vendor attributes
        put("configcontext", "configContext", [b"cn=config"])
        put("namingcontexts", "namingContexts", [b.config.suffix.encode() for b in self.backends
                                                 if b.config.subordinate in ("", "advertise")])  # fmt: skip
        put("supportedcontrol", "supportedControl", [oid.encode() for oid in sorted(SUPPORTED_CONTROLS)])
        put("supportedextension", "supportedExtension", [oid.encode() for oid in SUPPORTED_EXTENSIONS])
        put("supportedfeatures", "supportedFeatures", [oid.encode() for oid in SUPPORTED_FEATURES])
        put("supportedldapversion", "supportedLDAPVersion", [b"3"])
        put("supportedsaslmechanisms", "supportedSASLMechanisms", [b"EXTERNAL"])
        if self.has_monitor_database():
            put("monitorcontext", "monitorContext", [b"cn=Monitor"])
        for name, values in self.rootdse_attributes():  # `rootdse` files: added to what slapd produces
            key = self.schema.attribute_key(name)
            current = entry.attrs.get(key)
            put(key, current.name if current else name, [*(current.values if current else []), *values])
        # then subschemaSubentry: slapd's operational attributes, in its order
        put("entrydn", "entryDN", [b""])
        put("subschemasubentry", "subschemaSubentry", [SUBSCHEMA_DN.encode()])
        return entry

    def rootdse_attributes(self) -> list[tuple[str, list[bytes]]]:
        """The attributes of the config's `rootdse` files (olcRootDSE), read once per list of files."""
        from pyldapd.config.slapdconf import read_rootdse

        files = tuple(self.config.rootdse_files)
        cached = getattr(self, "_rootdse", None)
        if cached is None or cached[0] != files:
            attributes = []
            for path in files:
                try:
                    attributes += read_rootdse(path)
                except (OSError, ValueError) as exc:  # checked when the config was read; gone since
                    self.log.error(f"rootdse: {path}: {exc}")
            cached = self._rootdse = (files, attributes)
        return cached[1]

    def has_monitor_database(self) -> bool:
        """`database monitor` in slapd.conf, or an olcDatabase=...monitor entry in cn=config."""
        if any(db.type == "monitor" for db in self.config.databases):
            return True
        return self.configdb is not None and any(
            ndn.startswith("olcdatabase=") and ndn.split(",", 1)[0].endswith("monitor")
            for ndn in self.configdb.entries
        )

    def subschema_entry(self) -> Entry:
        entry = Entry(SUBSCHEMA_DN)
        entry.put("objectclass", "objectClass", [b"top", b"subentry", b"subschema", b"extensibleObject"])
        entry.put("cn", "cn", [b"Subschema"])
        entry.put("structuralobjectclass", "structuralObjectClass", [b"subentry"])
        entry.put("createtimestamp", "createTimestamp", [self.started])
        entry.put("modifytimestamp", "modifyTimestamp", [self.started])
        for name, values in self.schema.subschema_values().items():
            entry.put(name.lower(), name, values)
        # slapd's operational attributes, last and in its order
        entry.put("entrydn", "entryDN", [SUBSCHEMA_DN.encode()])
        entry.put("subschemasubentry", "subschemaSubentry", [SUBSCHEMA_DN.encode()])
        return entry

    # -- writes ----------------------------------------------------------------------------------------------

    def require_write(self, session: Session, backend: Backend, what: str) -> None:
        """A `readonly` database refuses every update; who may write what is access control's (guard.py)."""
        if backend.config.readonly:
            raise LDAPError(ResultCode.unwillingToPerform, "operation restricted")

    def stamp(self, entry: Entry, session: Session, *, created: bool, given: Iterable[str] = ()) -> str:
        """The operational attributes of a write. `given`: the keys of those the client wrote itself (with the
        Relax Rules control), which stay as written, as slapd's slap_add_opattrs and slap_mods_opattrs keep
        them."""
        csn = self.csn.next()
        now = (csn[:14] + "Z").encode()  # slapd derives the timestamps from the CSN, so the two agree
        who = (session.bind_dn or "").encode()
        kept = set(given)

        def put(key: str, name: str, value: bytes) -> None:
            if key not in kept:
                entry.replace(key, name, [value])

        if created:
            put("entryuuid", "entryUUID", str(uuid.uuid1()).encode())
            put("creatorsname", "creatorsName", who)
            put("createtimestamp", "createTimestamp", now)
        entry.replace("entrycsn", "entryCSN", [csn.encode()])
        put("modifiersname", "modifiersName", who)
        put("modifytimestamp", "modifyTimestamp", now)
        return csn

    @logs_failures("add")
    def add(self, session: Session, request: ldap.AddRequest, controls: list[Control]) -> list[Control]:
        if not request.attributes:
            # slapd's do_add refuses an empty attribute list (after checking the DN) before any backend sees it
            normalize_or_fail(self.schema, request.dn)
            raise LDAPError(ResultCode.protocolError, "no attributes provided")
        if self.configdb is not None and names_config(request.dn):
            check_restrictions(self, session, None, "add")
            return self.configdb.add(session, request, controls)
        ndn = normalize_or_fail(self.schema, request.dn)
        if not ndn:  # slapd's do_add
            raise LDAPError(ResultCode.entryAlreadyExists, "root DSE already exists")
        if ndn == self.subschema_ndn:
            raise LDAPError(ResultCode.entryAlreadyExists, "subschema subentry already exists")
        backend = self.require_backend(ndn, update=True, dn=request.dn)
        check_restrictions(self, session, backend, "add")
        self.check_shadow(backend, request.dn, session)
        relax = relaxes(controls)
        check_obsolete_attributes(self.schema, ((name, MOD_ADD, values) for name, values in request.attributes),
                                  relax=relax)  # fmt: skip
        check_no_user_modification(self.schema, (name for name, _ in request.attributes), relax=relax)
        entry = entry_from_attributes(self.schema, request.dn, request.attributes)
        add_rdn_values(self.schema, entry, split_rdn(request.dn)[0])  # slapd adds missing naming values
        structural = check_entry(self.schema, entry, relax=relax)
        entry.put("structuralobjectclass", "structuralObjectClass", [structural.name.encode()])
        given = [key for key in entry.attrs if key in MANAGEABLE]  # (only with relax: checked above)
        with storing(backend, "txn_commit failed") as txn:
            # back-mdb tests the assertion on the new entry, its operational attributes added, before anything
            csn = self.stamp(entry, session, created=True, given=given)
            self.check_assertion(controls, entry, session, backend, txn)
            if txn.exists(ndn):
                raise LDAPError(ResultCode.entryAlreadyExists, "")
            parent = None
            parent_ndn = split_rdn(ndn)[1]
            if ndn != backend.suffix_ndn:
                parent = txn.get(parent_ndn)
                if not manages_dsa_it(controls):  # below a referral entry: the referral (RFC 3296)
                    refer(parent, txn, parent_ndn, request.dn)
                if parent is None:
                    if backend.config.declared_type == "ldif":  # back-ldif finds no parent folder, names none
                        raise LDAPError(ResultCode.noSuchObject, "parent does not exist")
                    nearest = txn.nearest_ancestor(ndn)
                    raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
            self.require_write(session, backend, "parent" if parent is not None else "entry")
            self.access.check_add(session, backend, txn, entry, ndn, parent, parent_ndn, relax=relax)
            try:
                txn.add(entry)
            except AlreadyExists:
                raise LDAPError(ResultCode.entryAlreadyExists, "") from None
            except NoSuchEntry as exc:
                raise LDAPError(ResultCode.noSuchObject, "", matched_dn=exc.matched_dn) from None
            backend.overlays.in_txn(WriteOp("add", request.dn, None, entry, csn, *who(session)), txn)
            backend.context.advance(txn, csn)
            response = self.read_controls(controls, None, entry, session, backend, txn)
            backend.publish(Change("add", None, entry, csn), txn)
        return response

    @logs_failures("modify")
    def modify(self, session: Session, request: ldap.ModifyRequest, controls: list[Control]) -> list[Control]:
        if self.configdb is not None and names_config(request.dn):
            check_restrictions(self, session, None, "modify")
            return self.configdb.modify(session, request, controls)
        ndn = normalize_or_fail(self.schema, request.dn)
        if not ndn:  # slapd's do_modify
            raise LDAPError(ResultCode.unwillingToPerform, "modify upon the root DSE not supported")
        if ndn == self.subschema_ndn:  # its values checked first, as slapd does
            check_changes(self.schema, request.changes)
            raise LDAPError(ResultCode.unwillingToPerform, "modification of subschema subentry not supported")
        backend = self.require_backend(ndn, update=True, dn=request.dn)
        check_restrictions(self, session, backend, "modify")
        self.check_shadow(backend, request.dn, session)
        relax = relaxes(controls)
        check_changes(self.schema, request.changes, relax=relax)
        with storing(backend, "commit failed") as txn:
            current = txn.get(ndn)
            if current is None or not manages_dsa_it(controls):
                # a referral entry, or below one: the referral (RFC 3296); below one, back-mdb refers with
                # ManageDsaIT too (the entry asked for is not there to manage)
                refer(current, txn, ndn, request.dn)
            current = self.existing(txn, ndn)
            self.require_write(session, backend, "entry")
            self.check_assertion(controls, current, session, backend, txn)
            self.access.check_modify(session, backend, txn, current, ndn, request.changes, relax=relax)
            entry = current.copy()
            apply_modifications(self.schema, entry, request.changes)
            old_structural = current.first("structuralobjectclass")
            structural = check_entry(self.schema, entry, old_structural=old_structural, relax=relax)
            if old_structural is not None and structural.name.lower() != old_structural.decode().lower():
                # only with relax (check_entry refuses it otherwise): the entry's class follows its objectClass
                entry.put("structuralobjectclass", "structuralObjectClass", [structural.name.encode()])
            given = [self.schema.attribute_key(c.attr) for c in request.changes
                     if c.operation in (MOD_ADD, MOD_REPLACE)]  # fmt: skip
            csn = self.stamp(entry, session, created=False, given=given)
            txn.modify(ndn, entry)
            op = WriteOp("modify", request.dn, current, entry, csn, *who(session), changes=request.changes)
            backend.overlays.in_txn(op, txn)
            backend.context.advance(txn, csn)
            response = self.read_controls(controls, current, entry, session, backend, txn)
            backend.publish(Change("modify", current, entry, csn), txn)
        return response

    @logs_failures("delete")
    def delete(self, session: Session, request: ldap.DelRequest, controls: list[Control]) -> list[Control]:
        if self.configdb is not None and names_config(request.dn):
            check_restrictions(self, session, None, "delete")
            return self.configdb.delete(session, request, controls)
        ndn = normalize_or_fail(self.schema, request.dn)
        if not ndn or ndn == self.subschema_ndn:  # slapd's do_delete says this of both
            raise LDAPError(ResultCode.unwillingToPerform, "cannot delete the root DSE")
        backend = self.require_backend(ndn, update=True, dn=request.dn)
        check_restrictions(self, session, backend, "delete")
        self.check_shadow(backend, request.dn, session)
        with storing(backend, "commit failed") as txn:
            current = txn.get(ndn)
            if current is None or not manages_dsa_it(controls):  # (as in modify)
                refer(current, txn, ndn, request.dn)
            current = self.existing(txn, ndn)
            self.require_write(session, backend, "entry")
            self.access.check_delete(session, backend, txn, current, ndn, relax=relaxes(controls))
            self.check_assertion(controls, current, session, backend, txn)
            try:
                txn.delete(ndn)
            except NotAllowedOnNonLeaf:
                ldif = backend.config.declared_type == "ldif"  # back-ldif's rmdir failing says nothing more
                raise LDAPError(
                    ResultCode.notAllowedOnNonLeaf,
                    "" if ldif else "subordinate objects must be deleted first",
                ) from None
            csn = self.csn.next()  # a delete is a change too: it moves the contextCSN
            entry_uuid = entry_uuid_bytes(current)
            if entry_uuid is not None:
                write_tombstone(txn, entry_uuid, csn)
            backend.overlays.in_txn(WriteOp("delete", request.dn, current, None, csn, *who(session)), txn)
            backend.context.advance(txn, csn)
            response = self.read_controls(controls, current, None, session, backend, txn)
            backend.publish(Change("delete", current, None, csn), txn)
        return response

    @logs_failures("rename")
    def modify_dn(
        self, session: Session, request: ldap.ModifyDNRequest, controls: list[Control]
    ) -> list[Control]:
        if self.configdb is not None and names_config(request.dn):
            raise LDAPError(ResultCode.unwillingToPerform, "renaming is not supported in cn=config")
        ndn = normalize_or_fail(self.schema, request.dn)
        if not ndn:  # slapd's do_modrdn
            raise LDAPError(ResultCode.unwillingToPerform, "cannot rename the root DSE")
        if ndn == self.subschema_ndn:
            raise LDAPError(ResultCode.unwillingToPerform, "cannot rename subschema subentry")
        backend = self.require_backend(ndn, update=True, dn=request.dn)
        check_restrictions(self, session, backend, "rename")
        self.check_shadow(backend, request.dn, session)
        new_ndn = rename_target(self.schema, request.dn, request.new_rdn, request.new_superior)[1]
        old_rdn = split_rdn(request.dn)[0]
        if self.backend_for(new_ndn) is not backend:  # checked first, as slapd's frontend does
            raise LDAPError(ResultCode.affectsMultipleDSAs, "cannot rename between DSAs")
        if ndn == backend.suffix_ndn:
            raise LDAPError(ResultCode.unwillingToPerform, "cannot rename the suffix entry")
        if new_ndn == ndn or is_descendant(new_ndn, ndn):
            if new_ndn != ndn:
                raise LDAPError(ResultCode.unwillingToPerform, "cannot place an entry below itself")
        with storing(backend, "txn_commit failed") as txn:
            if not manages_dsa_it(controls):
                refer(txn.get(ndn), txn, ndn, request.dn)
            self.require_write(session, backend, "entry")
            # back-mdb's order: the parent (missing: noSuchObject naming nothing), write on its children, and
            # only then the entry (missing: the parent is the matched DN)
            parent = txn.get(split_rdn(ndn)[1])
            if parent is None:
                raise LDAPError(ResultCode.noSuchObject, "")
            self.access.check_rename_parent(session, backend, txn, ndn, request.new_superior is not None)
            current = txn.get(ndn)
            if current is None:
                refer(parent, txn, ndn, request.dn)  # below a referral entry: referred, ManageDsaIT or not
                raise LDAPError(ResultCode.noSuchObject, "", matched_dn=parent.dn)
            self.check_assertion(controls, current, session, backend, txn)
            new_parent_ndn = split_rdn(new_ndn)[1]
            if request.new_superior is not None and txn.get(new_parent_ndn) is None:
                raise LDAPError(ResultCode.noSuchObject, "new superior not found")
            self.access.check_rename(session, backend, txn, current, ndn, new_parent_ndn,
                                     request.new_superior is not None, old_rdn, request.new_rdn,
                                     request.delete_old_rdn, relax=relaxes(controls))  # fmt: skip
            if new_ndn != ndn and txn.exists(new_ndn):
                raise LDAPError(ResultCode.entryAlreadyExists, "")
            entry = renamed_entry(self.schema, current, request.new_rdn, request.new_superior,
                                  request.delete_old_rdn)  # fmt: skip
            check_entry(self.schema, entry, relax=relaxes(controls))
            csn = self.stamp(entry, session, created=False)
            try:
                txn.rename(ndn, entry)
            except AlreadyExists:
                raise LDAPError(ResultCode.entryAlreadyExists, "") from None
            except NoSuchEntry:
                raise LDAPError(ResultCode.noSuchObject, "new superior not found") from None
            op = WriteOp("rename", request.dn, current, entry, csn, *who(session), new_rdn=request.new_rdn,
                         delete_old_rdn=request.delete_old_rdn, new_superior=request.new_superior)  # fmt: skip
            backend.overlays.in_txn(op, txn)
            backend.context.advance(txn, csn)
            response = self.read_controls(controls, current, entry, session, backend, txn)
            backend.publish(Change("rename", current, entry, csn), txn)
        return response

    def compare(self, session: Session, request: ldap.CompareRequest, controls: list[Control]) -> int:
        if self.configdb is not None and names_config(request.dn):
            check_restrictions(self, session, None, "compare")
            return self.configdb.compare(session, request)
        ndn = normalize_or_fail(self.schema, request.dn)
        if self.schema.split_description(request.attr)[0] is None:  # slapd's do_compare says no more
            raise LDAPError(ResultCode.undefinedAttributeType, "")
        at = resolve_type(self.schema, request.attr)
        backend = None
        if ndn == "":
            check_restrictions(self, session, None, "compare")
            entry = self.root_dse()
        elif ndn == self.subschema_ndn:
            check_restrictions(self, session, None, "compare")
            entry = self.subschema_entry()
        elif self.monitor.handles(ndn):  # cn=Monitor: its own rules (server/monitor.py)
            return self.monitor.compare(session, ndn, at, request, controls)
        else:
            backend = self.require_backend(ndn, dn=request.dn)
            check_restrictions(self, session, backend, "compare")
            if backend.copy and ctl.find_control(controls, ctl.DONT_USE_COPY) is not None:
                raise LDAPError(ResultCode.unwillingToPerform, "copy not used")  # slapd's fe_op_compare
            if at.key in ("entrydn", "subschemasubentry"):  # slapd's fe_op_compare
                raise LDAPError(ResultCode.unwillingToPerform, f"{at.name} compare not supported")
            with backend.db.read() as txn:
                if not manages_dsa_it(controls):
                    refer(txn.get(ndn), txn, ndn, request.dn)
                if txn.get(ndn) is None:  # below a referral entry: referred, ManageDsaIT or not (back-mdb)
                    if self.access.configured:
                        raise self.access.not_found(session, backend, txn, ndn, referred=request.dn)
                    refer(None, txn, ndn, request.dn)
                entry = self.existing(txn, ndn)
                if at.key == "hassubordinates" and getattr(
                    txn.has_children, "answers_has_subordinates", True
                ):
                    # computed, as slapd's fe_op_compare asks the database
                    entry = with_has_subordinates(entry, txn.has_children(ndn))
        may_compare, disclose = compare_allowed(
            self.access, session, backend, entry, ndn, at.key, request.value
        )
        try:
            if not may_compare:
                raise LDAPError(ResultCode.insufficientAccessRights, "")
            self.check_assertion(controls, entry, session, backend)

            def may_compare_subtype(key: str) -> bool:
                return compare_allowed(self.access, session, backend, entry, ndn, key, request.value)[0]

            return self.compare_values(at, request, controls, entry, may_compare_subtype)
        except LDAPError as exc:
            if not disclose:  # slapd hides the entry from who may not even know it is there
                raise LDAPError(ResultCode.noSuchObject, "") from None
            raise exc

    def compare_values(self, at, request: ldap.CompareRequest, controls: list[Control], entry: Entry,
                       may_compare: Callable[[str], bool] | None = None) -> int:  # fmt: skip
        """slapd's slap_compare_entry: the entry's attributes of the asserted type and its subtypes, in the
        entry's order; a subtype the requester may not compare ends the compare with insufficientAccessRights."""
        if at.equality is None:
            raise LDAPError(ResultCode.inappropriateMatching, f"{request.attr}: no equality matching rule")
        wanted = at.equality.normalize_assertion(request.value)
        if wanted is None:
            raise LDAPError(ResultCode.invalidAttributeSyntax, "value does not conform to assertion syntax")
        if at.key == OBJECT_CLASS:  # objectSubClassMatch, as in a filter: `top` matches a person
            values = entry.get(OBJECT_CLASS)
            if not values:
                raise LDAPError(ResultCode.noSuchAttribute, "")
            if any(wanted in self.schema.object_class_closure(value) for value in values):
                return ResultCode.compareTrue
            return ResultCode.compareFalse
        keys = {subtype.key for subtype in self.schema.subtypes(at)}
        # with its options (userCertificate;binary, cn;lang-en) an attribute is one of the asserted type too, as
        # slapd's attrs_find finds it; options in the assertion must be held (`cn;lang-en` compares only those)
        holds = options_test(self.schema.split_description(request.attr)[1])
        found = False
        for key, attribute in entry.attrs.items():
            base, _, options = key.partition(";")
            if base not in keys or not attribute.values or not holds(options):
                continue
            found = True
            if base != at.key and may_compare is not None and not may_compare(base):
                raise LDAPError(ResultCode.insufficientAccessRights, "")
            if len(attribute.values) > MANY_VALUES:
                forms, invalid = attribute.normalized(at.equality)
                if wanted in forms:
                    return ResultCode.compareTrue
                if not invalid:  # else an invalid value compares as it is, below
                    continue
            for value in attribute.values:
                if equality_key(at, value) == wanted:
                    return ResultCode.compareTrue
        if not found:
            raise LDAPError(ResultCode.noSuchAttribute, "")
        return ResultCode.compareFalse

    # -- extended operations ---------------------------------------------------------------------------------

    def prepare_password_modify(self, session: Session, value: bytes | None) -> PasswordChange:
        """Password Modify up to its hashing and old-password check (see `password_modify`)."""
        if session.anonymous:  # slapd's passwd.c: before the request value is even read
            raise LDAPError(ResultCode.strongerAuthRequired, "only authenticated users may change passwords")
        try:
            request = ctl.decode_password_modify_request(value)  # no value: every field absent (RFC 3062)
        except ctl.ControlValueError as exc:
            raise LDAPError(ResultCode.protocolError, str(exc)) from exc
        except Exception as exc:
            raise LDAPError(ResultCode.protocolError, "") from exc  # not a SEQUENCE: slapd gives no text
        # slapd's slap_passwd_parse: a field given empty is refused, not taken as absent
        if request.old_password is not None and not request.old_password:
            raise LDAPError(ResultCode.unwillingToPerform, "old password value is empty")
        if request.new_password is not None and not request.new_password:
            raise LDAPError(ResultCode.unwillingToPerform, "new password value is empty")
        target_dn = request.user_identity.decode() if request.user_identity is not None else session.bind_dn
        if target_dn.startswith("dn:"):
            target_dn = target_dn[3:]
        ndn = normalize_or_fail(self.schema, target_dn)
        backend = self.backend_for(ndn)
        if backend is None and request.old_password is not None:
            raise LDAPError(ResultCode.unwillingToPerform, "unwilling to verify old password")
        backend = self.require_backend(ndn)
        check_restrictions(self, session, backend, "extended", ctl.PASSWORD_MODIFY)
        self.check_shadow(backend, target_dn, session)
        generated = None
        new_password = request.new_password
        if new_password is None:
            new_password = generated = generate_password()
        schemes = self.config.password_hash or ["{SSHA}"]
        with backend.db.read() as txn:
            found = txn.get(ndn)
        if found is None:  # slapd's passwd.c: no matched DN
            raise LDAPError(ResultCode.noSuchObject, "")
        stored = list(found.get("userpassword"))
        return PasswordChange(ndn, backend, new_password, generated, schemes, self.config.password_crypt_salt_format,
                              request.old_password, stored)  # fmt: skip

    def password_modify(self, session: Session, value: bytes | None) -> bytes | None:
        """Password Modify (RFC 3062) at once; the connection runs `change.compute` on a worker thread when the
        scheme is slow ({ARGON2}...)."""
        change = self.prepare_password_modify(session, value)
        change.compute()
        return self.finish_password_modify(session, change)

    def finish_password_modify(self, session: Session, change: PasswordChange) -> bytes | None:
        backend, ndn, hashed = change.backend, change.ndn, change.hashed
        with storing(backend, "commit failed") as txn:
            current = self.existing(txn, ndn)
            # slapd checks the old password whoever asks, the rootdn included (passwd.c)
            if not change.old_valid:
                raise LDAPError(ResultCode.unwillingToPerform, "unwilling to verify old password")
            if not self.is_root(session, backend):
                self.require_write(session, backend, "entry")
                self.access.check_password_modify(session, backend, txn, current, ndn, hashed[0])
            entry = current.copy()
            entry.put("userpassword", "userPassword", hashed)
            csn = self.stamp(entry, session, created=False)
            txn.modify(ndn, entry)
            # slapd's Password Modify is a modify of userPassword through the overlays
            changes = [ldap.Change(ldap.MOD_REPLACE, "userPassword", list(hashed))]
            backend.overlays.in_txn(WriteOp("modify", entry.dn, current, entry, csn, *who(session),
                                            changes=changes), txn)  # fmt: skip
            backend.context.advance(txn, csn)
            backend.publish(Change("modify", current, entry, csn), txn)
        generated = change.generated
        return ctl.encode_password_modify_response(generated) if generated is not None else None

    # -- writes off the event loop (group commit, backends/writer.py) -----------------------------------------

    def writer_for(self, dn: str) -> Any:
        """The writer thread a client write to `dn` goes through, or None when it runs at once on the loop
        (cn=config, a DN outside every database or that does not parse: answered without a data commit)."""
        if self.configdb is not None and names_config(dn):
            return None
        try:
            ndn = normalize_dn(dn, self.schema)
        except DNError:
            return None
        backend = self.backend_for(ndn)
        return backend.db.writer if backend is not None else None

    async def write(
        self, kind: str, session: Session, request: Any, controls: list[Control]
    ) -> list[Control]:
        """A client add/modify/delete/modify_dn (`kind` names the method): run on its database's writer thread
        inside a group commit, answered once durable. Same results as calling the method directly."""
        writer = self.writer_for(request.dn)
        if writer is None and self.configdb is not None and self.configdb.share is not None and names_config(
                request.dn):  # fmt: skip
            # several workers: cn=config's lock (server/configshare.py) is awaited, not waited for on the loop
            async with self.configdb.serialized_async():
                return getattr(self, kind)(session, request, controls)
        if writer is None:
            try:
                return getattr(self, kind)(session, request, controls)
            finally:
                await self.logs_settled()
        method = getattr(Directory, kind).__wrapped__  # without logs_failures: failures are reported here
        try:
            written = await writer.submit(lambda _txn: method(self, session, request, controls))
        except CommitFailed as exc:
            error = LDAPError(ResultCode.other, exc.failed_text)
            self.report_failure(kind, session, request, error)
            await self.logs_settled()
            raise error from None
        except LDAPError as exc:
            if exc.code != ResultCode.referral:
                self.report_failure(kind, session, request, exc)
                await self.logs_settled()
            raise
        await self.logs_settled()
        return written

    async def logs_settled(self) -> None:
        """Wait until what accesslog overlays handed to their log database's writer thread is durable (a logged
        write's move out of the outbox, a failure's or a cn=config change's log entry), so that a client is
        answered once its log entry is stored, as when those writes ran on the event loop."""
        pending = [
            future
            for backend in self.replicated()
            for overlay in [backend.overlays.get("accesslog")]
            if overlay is not None
            for future in getattr(overlay, "pending", ())
        ]
        if pending:
            await asyncio.wait(pending)

    def report_failure(self, kind: str, session: Session, request: Any, exc: LDAPError) -> None:
        try:
            self.write_failed(FAILURE_KINDS.get(kind, kind), session, request, exc)
        except Exception as failure:  # noqa: BLE001 (the client gets its own error, not this one)
            self.log.error(f"overlays: failed {kind} not recorded: {failure!r}")

    async def password_modify_written(self, session: Session, change: PasswordChange) -> bytes | None:
        """`finish_password_modify` on the target database's writer thread."""
        writer = change.backend.db.writer
        try:
            written = await writer.submit(lambda _txn: self.finish_password_modify(session, change))
        except CommitFailed as exc:
            raise LDAPError(ResultCode.other, exc.failed_text) from None
        await self.logs_settled()
        return written

    def who_am_i(self, session: Session) -> bytes:
        return f"dn:{session.bind_dn}".encode() if session.bind_dn else b""

    # -- helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def existing(txn, ndn: str) -> Entry:
        entry = txn.get(ndn)
        if entry is None:
            nearest = txn.nearest_ancestor(ndn)
            raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
        return entry

    def names_has_subordinates(self, f: Any) -> bool:
        """Does the filter name hasSubordinates? (Only then is it computed for each candidate.)"""
        names = (f.attr,) if type(f) is Equality else filter_attributes(f)  # the common search: one look
        known = self.schema.derived.setdefault("names hasSubordinates", {})  # by description, per schema
        for name in names:
            found = known.get(name)
            if found is None:
                at = self.schema.attribute_type(name.partition(";")[0])
                found = at is not None and at.key == "hassubordinates"
                if len(known) < 10_000:
                    known[name] = found
            if found:
                return True
        return False

    def check_assertion(self, controls: list[Control], entry: Entry, session: Session | None = None,
                        backend: Backend | None = None, txn: Any = None) -> None:  # fmt: skip
        """The Assertion control (RFC 4528), with the requester's `search` access on each attribute it tests."""
        for control in controls:
            if control.oid == ctl.ASSERTION:
                try:
                    assertion = ctl.decode_assertion(control.value or b"")
                except Exception as exc:
                    raise LDAPError(ResultCode.protocolError, "assertion control is malformed") from exc
                if session is None:
                    holds = self.filters.matches(assertion, entry)
                else:
                    holds = self.access.assertion_holds(session, backend, entry, assertion, txn)
                if not holds:
                    raise LDAPError(ResultCode.assertionFailed, "")

    def read_controls(self, controls: list[Control], before: Entry | None, after: Entry | None,
                      session: Session | None = None, backend: Backend | None = None,
                      txn: Any = None) -> list[Control]:  # fmt: skip
        """Pre-Read and Post-Read (RFC 4527) response controls, holding only what the requester may read.

        Called inside the write transaction: when a critical control cannot return its entry (no `read` on
        it), the operation fails with insufficientAccessRights and nothing is written. (slapd aborts the
        transaction there too, but still answers success; an acknowledged change must not be lost.)"""
        response: list[Control] = []
        for control in controls:
            if control.oid not in (ctl.PRE_READ, ctl.POST_READ):
                continue
            entry = before if control.oid == ctl.PRE_READ else after
            if entry is None:
                continue
            try:
                attributes = ctl.decode_read_request(control.value or b"")
            except Exception as exc:
                raise LDAPError(ResultCode.protocolError, "read entry control is malformed") from exc
            selection = AttributeSelection(self.schema, attributes, False)
            if session is None:
                blob: bytes | None = selection.encode(entry, None)
            else:
                blob = self.access.read_entry(session, backend, entry, selection, txn)
            if blob is None:
                if control.critical:
                    raise LDAPError(ResultCode.insufficientAccessRights, "")
                continue  # slapd leaves the control out
            response.append(Control(control.oid, False, ctl.encode_read_entry(entry.dn, blob)))
        return response


# lutil_passwd_generate's alphabet: crypt(3)'s 64 characters
CRYPT64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def generate_password() -> bytes:
    """A Password Modify without a new password gets one made up, as slapd makes it: 8 characters (some
    getpass(3) truncate there) of the crypt64 alphabet."""
    return "".join(secrets.choice(CRYPT64) for _ in range(8)).encode()


def referral_url(url: str, dn: str, scope: int | None) -> str:
    """slapd's referral_rewrite: the default referral's URL with the request's DN (and a search's scope)."""
    from urllib.parse import quote

    head = url.split("/", 3)
    base = "/".join(head[:3]) + "/" + quote(dn, safe=",=+@:;'")
    if scope is None:
        return base
    return base + "??" + {0: "base", 1: "one", 2: "sub", 3: "subordinate"}.get(scope, "sub")


def with_context_csn(entry: Entry, values: list[bytes]) -> Entry:
    """The suffix entry as clients see it: contextCSN is the live in-memory vector (syncprov does the same)."""
    if entry.get("contextcsn") == values:
        return entry
    shown = entry.copy()
    shown.put("contextcsn", "contextCSN", values)
    return shown


class SizeLimitExceeded(Exception):
    def __init__(self, sent: int) -> None:
        super().__init__(sent)
        self.sent = sent


SCOPES = tuple(Scope)  # by value, without an Enum call per search


def with_has_subordinates(entry: Entry, children: bool) -> Entry:
    """A copy of `entry` showing the computed hasSubordinates (stored entries stay as stored)."""
    shown = Attribute("hasSubordinates", [b"TRUE" if children else b"FALSE"])
    return Entry(entry.dn, {**entry.attrs, "hassubordinates": shown}, entry.id)


def with_subordinates_test(
    matches: Callable[[Entry], bool], has_children: Callable[[str], bool], schema: Schema
) -> Callable[[Entry], bool]:
    """A filter test that sees each candidate's computed hasSubordinates, as slapd's filter code asks the
    database for it (`(hasSubordinates=TRUE)` finds the entries that have children)."""

    def test(entry: Entry) -> bool:
        return matches(with_has_subordinates(entry, has_children(normalize_dn(entry.dn, schema))))

    return test


def has_object_class(entry: Entry, name: bytes) -> bool:
    """Whether the entry's objectClass values name the class `name` (lowercase), as written."""
    attribute = entry.attrs.get("objectclass")
    if attribute is None:
        return False
    size = len(name)
    for value in attribute.values:  # a loop, not any(<generator>): this runs for every candidate of a search
        if len(value) == size and value.lower() == name:
            return True
    return False


# the classes a search treats apart (glue, referral, subentry by name or OID), lowercase
SPECIAL_CLASSES = frozenset({b"glue", b"referral", b"subentry", b"2.5.17.0"})
SPECIAL_CLASS_LONGEST = max(len(name) for name in SPECIAL_CLASSES)


def names_special_class(entry: Entry) -> bool:
    """Whether the entry's objectClass values name glue, referral or subentry: one pass, before a search asks
    which (is_glue, is_referral, is_subentry), which for most entries it then need not."""
    attribute = entry.attrs.get("objectclass")
    if attribute is None:
        return False
    for value in attribute.values:
        if len(value) <= SPECIAL_CLASS_LONGEST and value.lower() in SPECIAL_CLASSES:
            return True
    return False


def is_glue(entry: Entry) -> bool:
    return has_object_class(entry, b"glue")


def is_subentry(entry: Entry) -> bool:
    """An entry of objectClass subentry (RFC 3672), by name or OID."""
    return has_object_class(entry, b"subentry") or has_object_class(entry, b"2.5.17.0")


def is_plain(entry: Entry) -> bool:
    return not is_subentry(entry)


def subentry_visibility(scope: Scope, subentries: bool | None) -> Callable[[Entry], bool] | None:
    """Which entries a search sees (RFC 3672, back-mdb's search): without the Subentries control, subentries only
    as the base of a base search; with it TRUE only subentries, with it FALSE only other entries. None: all
    (a base search without the control). Sync searches do not ask this: replication copies subentries too."""
    if subentries is True:
        return is_subentry
    if subentries is None and scope == Scope.BASE:
        return None
    return is_plain


def is_alias(entry: Entry) -> bool:
    """An entry of objectClass alias, whose aliasedObjectName names another entry."""
    return has_object_class(entry, b"alias")


def is_referral(entry: Entry) -> bool:
    """An entry of objectClass referral (RFC 3296): a named subordinate reference to another server."""
    return has_object_class(entry, b"referral")


def referral_urls(entry: Entry, target_dn: str, scope: int | None) -> list[str]:
    """slapd's referral_rewrite of a referral entry's `ref` URLs for a request on target_dn (the entry or one
    below it): a URL's DN gets the target's RDNs below the entry put in front (a URL without a DN gets the
    target's DN), and a search's scope is added."""
    try:
        depth = len(parse_dn(target_dn)) - len(parse_dn(entry.dn))
    except DNError:
        depth = 0
    relative = []
    rest = target_dn
    for _ in range(max(depth, 0)):
        rdn, rest = split_rdn(rest)
        relative.append(rdn)
    urls = []
    for ref in entry.get("ref"):
        # a `ref` value is a labeledURI (RFC 3296): the URL, then maybe a space and a label, which slapd cuts off
        url = ref.decode("utf-8", "replace").split(None, 1)[0] if ref.strip() else ""
        url = url.split("?", 1)[0]
        head, _, url_dn = url.partition("://")[2].partition("/")
        scheme = url.partition("://")[0]
        dn = ",".join([*relative, url_dn]) if url_dn else target_dn
        urls.append(referral_url(f"{scheme}://{head}/", unquote(dn), scope))
    return urls


def search_reference(message_id: int, entry: Entry, scope: Scope) -> bytes:
    """The SearchResultReference for a referral entry met within a search's scope (RFC 4511 4.5.3): a one-level
    search goes on with a base search there, the others with a subtree search."""
    urls = referral_urls(entry, entry.dn, Scope.BASE if scope == Scope.ONE else Scope.SUB)
    return ldap.encode_message(ldap.LDAPMessage(message_id, ldap.SearchResultReference(urls)))


def relaxes(controls: list[Control]) -> bool:
    """The Relax Rules control (draft-zeilenga-ldap-relax): a write may break some schema rules slapd relaxes
    (OBSOLETE elements, a structural class change, MANAGEABLE operational types), with `manage` access."""
    return any(c.oid == ctl.RELAX for c in controls) if controls else False


def manages_dsa_it(controls: list[Control]) -> bool:
    """The ManageDsaIT control (RFC 3296): referral entries are entries, not referrals."""
    return any(c.oid == ctl.MANAGE_DSA_IT for c in controls) if controls else False


def refer(entry: Entry | None, txn: Any, ndn: str, dn: str, scope: int | None = None) -> None:
    """RFC 3296 (slapd's back-mdb without manageDsaIT): a request on a referral entry, or below one, is
    answered with a referral to where the entry points, matched DN the referral entry's."""
    if entry is None:
        entry = txn.nearest_ancestor(ndn)
    if entry is not None and is_referral(entry):
        raise LDAPError(
            ResultCode.referral, "", matched_dn=entry.dn, referrals=referral_urls(entry, dn, scope)
        )


class AttributeSelection:
    """Which attributes of an entry a search returns (RFC 4511 4.5.1.8, with `+` and `@class` of RFC 3673/4529)."""

    def __init__(self, schema: Schema, requested: list[str], types_only: bool,
                 values_filter: ValuesFilter | None = None) -> None:  # fmt: skip
        self.schema = schema
        self.types_only = types_only
        # the matchedValues control's filter; slapd ignores it when only types are asked for
        self.values_filter = None if types_only else values_filter
        self.all_user = not requested
        self.all_operational = False
        self.keys: set[str] = set()
        # types asked for with options (`cn;lang-en`, `name;lang-en-`): only attributes holding those options
        # (RFC 4512 2.5.2), a test of the attribute's options per request
        self.with_options: dict[str, list[Callable[[str], bool]]] = {}
        self.only_none = False
        for name in requested:
            if name == "*":
                self.all_user = True
            elif name == "+":
                self.all_operational = True
            elif name == "1.1":
                self.only_none = len(requested) == 1
            elif name.startswith("@"):
                oc = schema.object_class(name[1:])
                if oc is not None:
                    self.keys.update(at.key for at in oc.all_must())
                    self.keys.update(at.key for at in oc.all_may())
            else:
                type_name, _, options = name.partition(";")
                at = schema.attribute_type(type_name)
                if at is None:
                    continue
                if options:
                    wanted = options_test(o for o in options.split(";") if o)
                    for sub in schema.subtypes(at):
                        self.with_options.setdefault(sub.key, []).append(wanted)
                else:
                    self.keys.update(sub.key for sub in schema.subtypes(at))
        if self.only_none:
            self.all_user = False
        computed_keys = {c.lower() for c in COMPUTED}
        self.computed = [c for c in COMPUTED if self.all_operational or c.lower() in self.keys]
        self.wants_has_subordinates = "hasSubordinates" in self.computed
        self.fast_user_only = (
            self.all_user and not self.keys and not self.with_options and not self.types_only
            and not self.all_operational
        ) and self.values_filter is None  # fmt: skip
        self.fast_all = (
            self.all_user and self.all_operational and not self.types_only and self.values_filter is None
        )
        self.keys -= computed_keys

    def encode(self, entry: Entry, has_children: Callable[[str], bool] | None) -> bytes:
        if self.only_none:
            return b""
        if self.fast_user_only and entry.encoded_user is not None:
            return entry.encoded_user
        if self.fast_all and entry.encoded_user is not None:  # a stored entry, every attribute
            computed = self.encode_computed(entry, has_children)
            if entry.encoded_operational is not None:
                return entry.encoded_user + entry.encoded_operational + computed
            # its attributes of both kinds interleave (backends/mdb.py): each in its order, as stored
            stored = [(attribute.name, attribute.values) for attribute in entry.attrs.values()]
            return ldap.encode_partial_attribute_list(stored) + computed
        chosen: list[tuple[str, list[bytes]]] = []
        with_options = self.with_options
        for key, attribute in entry.attrs.items():
            base, _, options = key.partition(";")
            at = self.schema.attribute_type(base)
            operational = at is not None and at.operational
            if not (base in self.keys or (self.all_operational if operational else self.all_user)):
                wanted = with_options.get(base) if with_options else None
                if wanted is None:
                    continue
                if not any(holds(options) for holds in wanted):
                    continue
            values = [] if self.types_only else attribute.values
            if self.values_filter is not None:
                values = self.values_filter(key, attribute.name, values)
                if not values:
                    continue  # slapd's send_search_entry leaves out a stored attribute with no value kept
            chosen.append((attribute.name, values))
        blob = ldap.encode_partial_attribute_list(chosen)
        return blob + self.encode_computed(entry, has_children)

    def encode_computed(self, entry: Entry, has_children: Callable[[str], bool] | None) -> bytes:
        if not self.computed:
            return b""
        values: list[tuple[str, list[bytes]]] = []
        special = entry.attrs.get("entrydn") is not None  # the root DSE and subschema entries carry their own
        for name in self.computed:
            own = entry.attrs.get(name.lower())
            if own is not None:
                if not self.all_operational:  # else the loop over the entry's attributes sent it
                    own_values = [] if self.types_only else own.values
                    if self.values_filter is not None:
                        own_values = self.values_filter(name.lower(), own.name, own_values)
                    values.append((own.name, own_values))
                continue
            if special and name == "hasSubordinates":
                continue  # slapd shows none for them
            if name == "hasSubordinates" and not getattr(has_children, "answers_has_subordinates", True):
                continue  # a database that does not compute it (slapd's back-ldif has no has_subordinates)
            if name == "entryDN":
                value = entry.dn.encode()
            elif name == "subschemaSubentry":
                value = SUBSCHEMA_DN.encode()
            else:
                children = False
                if has_children is not None and entry.dn:
                    try:
                        children = has_children(normalize_dn(entry.dn, self.schema))
                    except DNError:
                        children = False
                value = b"TRUE" if children else b"FALSE"
            computed = [] if self.types_only else [value]
            if self.values_filter is not None:
                # slapd sends an operational attribute it computes even when no value is kept
                computed = self.values_filter(name.lower(), name, computed)
            values.append((name, computed))
        return ldap.encode_partial_attribute_list(values)


def paged_page_size(control: Control) -> int:
    try:
        return ctl.decode_paged_results(control.value or b"").size
    except Exception as exc:
        raise LDAPError(ResultCode.protocolError, "paged results control could not be decoded") from exc


def paged_control(size: int, cookie: bytes) -> Control:
    return Control(ctl.PAGED_RESULTS, False, ctl.encode_paged_results(ctl.PagedResults(size, cookie)))
