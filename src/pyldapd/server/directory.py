"""The directory: databases, schema and the LDAP operations on them, independent of connections and sockets.

Each handler takes a Session (who is asking) and a decoded request, and either returns response PDUs or raises
LDAPError. Searches stream their entries through a `send` callback so large results are not held in memory twice.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import AlreadyExists, NoSuchEntry, NotAllowedOnNonLeaf, Scope
from pyldapd.backends.mdb import MdbDatabase
from pyldapd.config.model import DatabaseConfig, ServerConfig
from pyldapd.model.csn import CSNGenerator, sid_of
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, parse_dn, split_rdn
from pyldapd.model.entry import Entry
from pyldapd.model.filter import FilterEvaluator
from pyldapd.model.passwords import hash_password, verify_password
from pyldapd.model.schema import Schema
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.protocol.ldap import Control, ResultCode
from pyldapd.replication.state import CONTEXT_CSN_KEY, Change, ContextState, entry_uuid_bytes, write_tombstone
from pyldapd.server.configdb import ConfigDatabase, names_config
from pyldapd.server.entries import (
    add_rdn_values,
    apply_modifications,
    check_changes,
    check_entry,
    check_no_user_modification,
    entry_from_attributes,
    equality_key,
    normalize_or_fail,
    remove_rdn_values,
    resolve_type,
)
from pyldapd.server.errors import LDAPError
from pyldapd.server.guard import AccessControl, compare_allowed
from pyldapd.server.log import Logger
from pyldapd.server.searchlimits import search_limits

if TYPE_CHECKING:
    from pyldapd.replication.provider import SyncProvider

SUBSCHEMA_DN = "cn=Subschema"
PEERCRED_SUFFIX = "cn=peercred,cn=external,cn=auth"
VENDOR_VERSION = "pyldapd 0.1.0"

SUPPORTED_CONTROLS = [
    ctl.SYNC_REQUEST,
    ctl.MANAGE_DSA_IT,
    ctl.PAGED_RESULTS,
    ctl.ASSERTION,
    ctl.PRE_READ,
    ctl.POST_READ,
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
COMPUTED = ("hasSubordinates", "entryDN", "subschemaSubentry")


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
    paged: dict[bytes, PagedSearch] = field(default_factory=dict)
    # security strength factors (server/tls.py): overall, transport (ldapi's localSSF), TLS cipher bits
    ssf: int = 0
    transport_ssf: int = 0
    tls_ssf: int = 0
    tls: bool = False
    tls_authzid: str = ""  # the verified client certificate's subject DN, for SASL EXTERNAL

    @property
    def anonymous(self) -> bool:
        return not self.bind_ndn


@dataclass
class PagedSearch:
    request_key: tuple
    remaining: list[int]


def stored_indexes(config: DatabaseConfig) -> dict[str, set[str]]:
    """The indexes a database keeps: its `index` lines, and objectClass eq always (every search has one)."""
    indexes = {name: set(kinds) for name, kinds in config.indexes.items()}
    indexes.setdefault("objectClass", set()).add("eq")
    return indexes


class Backend:
    """One configured data database: its config, its storage and its normalized names."""

    def __init__(self, config: DatabaseConfig, schema: Schema, *, sync: bool = True) -> None:
        self.config = config
        self.schema = schema
        os.makedirs(config.directory, exist_ok=True)
        indexes = stored_indexes(config)
        # maxsize is slapd's hard limit on the map; without it the map grows as needed
        kwargs = {"maxsize": config.maxsize, "max_mapsize": config.maxsize} if config.maxsize else {}
        # sync=False: bulk loads (`pyldapd add -q`), which call db.sync() at the end
        self.db = MdbDatabase(config.directory, schema, config.suffix, indexes=indexes, sync=sync, **kwargs)
        self.suffix_ndn = normalize_dn(config.suffix, schema)
        self.rootdn_ndn = normalize_dn(config.rootdn, schema) if config.rootdn else ""
        self.context = ContextState()
        self.provider: SyncProvider | None = None  # the syncprov overlay, when configured
        self.consumers: dict[int, Any] = {}  # rid -> SyncConsumer

    @property
    def shadow(self) -> bool:
        """A consumer database that does not take client writes (syncrepl without multiprovider)."""
        return bool(self.config.syncrepl) and not self.config.multiprovider

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
            for entry in txn.csn_after(own or ""):
                csn = (entry.first("entrycsn") or b"").decode()
                if csn and sid_of(csn) == server_id:
                    self.context.csns.update_csn(csn)

    def write_context_csn(self) -> None:
        """Copy the in-memory contextCSN vector onto the suffix entry, as syncprov's checkpoint does."""
        values = self.context.values()
        if not values:
            return
        with self.db.write() as txn:
            suffix = txn.get(self.suffix_ndn)
            if suffix is None or suffix.get("contextcsn") == values:
                return
            entry = suffix.copy()
            entry.put("contextcsn", "contextCSN", values)
            txn.modify(self.suffix_ndn, entry)
            txn.put_raw_metadata(CONTEXT_CSN_KEY, self.context.encoded())

    def publish(self, change: Change) -> None:
        """After a commit: the provider pushes the change to persistent searches and logs it."""
        if self.provider is not None:
            self.provider.on_change(change)

    def close(self) -> None:
        if self.provider is not None:
            self.provider.close()
        self.write_context_csn()
        self.db.close()


class Directory:
    def __init__(self, config: ServerConfig, schema: Schema, server_id: int = 0) -> None:
        self.config = config
        self.schema = schema
        self.server_id = server_id
        self.csn = CSNGenerator(server_id)
        self.filters = FilterEvaluator(schema)
        self.log = Logger(0)
        self.configdb: ConfigDatabase | None = None  # cn=config, when the server runs from a slapd.d
        self.backends = [Backend(db, schema) for db in config.data_databases()]
        for backend in self.backends:
            backend.restore_context(server_id)
            for csn in backend.context.csns.values():
                self.csn.observe(csn)
        self.subschema_ndn = normalize_dn(SUBSCHEMA_DN, schema)
        self.started = generalized_time()
        from pyldapd.server.monitor import Monitor

        self.monitor = Monitor(self)  # the read-only cn=Monitor tree (server/monitor.py)
        self.access = AccessControl(self)  # access control (server/acl.py, server/guard.py)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()

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

    @staticmethod
    def require_authentication(session: Session) -> None:
        """slapd's frontend refuses anonymous updates before a database sees them."""
        if session.anonymous:
            raise LDAPError(ResultCode.strongerAuthRequired, "modifications require authentication")

    @staticmethod
    def check_shadow(backend: Backend, dn: str) -> None:
        """A read-only consumer refers writes to its provider (updateref), as slapd's single shadow does."""
        if not backend.shadow:
            return
        if backend.config.updateref:
            urls = [url.rstrip("/") + "/" + dn.replace(" ", "%20") for url in backend.config.updateref]
            raise LDAPError(ResultCode.referral, "", referrals=urls)
        raise LDAPError(ResultCode.unwillingToPerform, "shadow context; no update referral")

    def require_backend(self, ndn: str, *, update: bool = False) -> Backend:
        backend = self.backend_for(ndn)
        if backend is None:
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
        if request.version != 3:
            raise LDAPError(ResultCode.protocolError, "requested protocol version not allowed")
        if request.sasl_mechanism is not None:
            return self.sasl_bind(session, request)
        password = request.password or b""
        if not request.name:
            if password:
                raise LDAPError(
                    ResultCode.unwillingToPerform, "unauthenticated bind (DN with no password) disallowed"
                )
            return "", ""
        ndn = normalize_or_fail(self.schema, request.name)
        if not password:
            raise LDAPError(
                ResultCode.unwillingToPerform, "unauthenticated bind (DN with no password) disallowed"
            )
        backend = self.backend_for(ndn)
        if backend is None:
            raise LDAPError(ResultCode.invalidCredentials)
        if ndn == backend.rootdn_ndn and backend.config.rootpw:
            if verify_password(password, backend.config.rootpw):
                return request.name, ndn
            raise LDAPError(ResultCode.invalidCredentials)
        with backend.db.read() as txn:
            entry = txn.get(ndn)
        if entry is None:
            raise LDAPError(ResultCode.invalidCredentials)
        if not self.access.check_bind(session, backend, entry, ndn):
            raise LDAPError(ResultCode.invalidCredentials)
        for stored in entry.get("userpassword"):
            if verify_password(password, stored):
                return entry.dn, ndn
        raise LDAPError(ResultCode.invalidCredentials)

    def sasl_bind(self, session: Session, request: ldap.BindRequest) -> tuple[str, str]:
        mechanism = (request.sasl_mechanism or "").upper()
        if mechanism != "EXTERNAL":
            raise LDAPError(ResultCode.authMethodNotSupported, "SASL(-4): no mechanism available: ")
        if session.tls_authzid:  # a client certificate (server/tls.py)
            from pyldapd.server.tls import external_identity

            requested = (request.sasl_credentials or b"").decode("utf-8", "replace")
            return external_identity(session, self.schema, requested)
        if not session.local or session.peer_uid is None:
            raise LDAPError(ResultCode.inappropriateAuthentication, "SASL(-4): no mechanism available: ")
        dn = f"gidNumber={session.peer_gid}+uidNumber={session.peer_uid},{PEERCRED_SUFFIX}"
        requested = (request.sasl_credentials or b"").decode("utf-8", "replace")
        if requested and requested not in ("dn:" + dn, "u:"):
            raise LDAPError(ResultCode.insufficientAccessRights, "SASL(-14): authorization failure: ")
        return dn, dn.lower()

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
        if self.configdb is not None and names_config(request.base):
            return self.configdb.search(session, message_id, request, AttributeSelection, send), [], ""
        base_ndn = normalize_or_fail(self.schema, request.base)
        scope = Scope(request.scope) if request.scope in (0, 1, 2, 3) else None
        if scope is None:
            raise LDAPError(ResultCode.protocolError, "invalid scope")
        manage_dsa_it = any(c.oid == ctl.MANAGE_DSA_IT for c in controls)
        paged = next((c for c in controls if c.oid == ctl.PAGED_RESULTS), None)
        selection = AttributeSelection(self.schema, request.attributes, request.types_only)
        matches = self.filters.compile(request.filter)
        if self.monitor.handles(base_ndn):  # cn=Monitor: its own read rule (server/monitor.py)
            return self.monitor.search(session, message_id, base_ndn, scope, matches, selection, send), [], ""
        special = None
        if base_ndn == "" and scope == Scope.BASE:
            special = self.root_dse()
        elif base_ndn == self.subschema_ndn:
            if scope != Scope.BASE:
                return 0, [], ""
            special = self.subschema_entry()
        if special is not None:  # entries no database holds: the frontend's (global) access rules
            guard = self.access.search_guard(session, None, request.filter)
            if guard is not None:
                denied = guard.base_denied(special, base_ndn)
                if denied is not None:
                    raise LDAPError(denied, "")
                blob = guard.encode(special, selection, None) if guard.matches(special) else None
            else:
                blob = selection.encode(special, None) if matches(special) else None
            if blob is None:
                return 0, [], ""
            send(ldap.encode_search_result_entry(message_id, special.dn, blob))
            return 1, [], ""
        backend = self.backend_for(base_ndn)
        if backend is None:
            raise LDAPError(ResultCode.noSuchObject, "")
        size_limit, time_limit = self.search_limits(session, backend, request, base_ndn)
        deadline = time.monotonic() + time_limit if time_limit else None
        with backend.db.read() as txn:
            guard = self.access.search_guard(session, backend, request.filter, txn)
            base = txn.get(base_ndn)
            if base is None or (is_glue(base) and not manage_dsa_it and scope == Scope.BASE):
                if guard is not None and base is None:
                    raise self.access.not_found(session, backend, txn, base_ndn)
                nearest = txn.nearest_ancestor(base_ndn) if base is None else None
                raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
            if guard is not None:
                denied = guard.base_denied(base, base_ndn)
                if denied is not None:
                    raise LDAPError(denied, "")
                matches = guard.matches
            has_children = txn.has_children if selection.wants_has_subordinates else None
            if paged is not None:
                return self.paged_search(session, message_id, request, paged, backend, txn, matches, selection,
                                         manage_dsa_it, send, guard)  # fmt: skip
            sent = 0
            checked = 0
            suffix_id = txn.id_of(backend.suffix_ndn)
            live_context = backend.context.values()
            for entry in txn.search(base_ndn, scope, request.filter):
                if entry.id == suffix_id and live_context:
                    entry = with_context_csn(entry, live_context)
                checked += 1
                if deadline is not None and checked % 64 == 0 and time.monotonic() > deadline:
                    raise LDAPError(ResultCode.timeLimitExceeded, "", matched_dn="")
                if not manage_dsa_it and is_glue(entry):
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
        return sent, [], ""

    def paged_search(self, session, message_id, request, paged, backend, txn, matches, selection, manage_dsa_it,
                     send, guard=None) -> tuple[int, list[Control], str]:  # fmt: skip
        try:
            page = ctl.decode_paged_results(paged.value or b"")
        except Exception as exc:
            raise LDAPError(ResultCode.protocolError, "paged results control value is malformed") from exc
        key = (request.base.lower(), request.scope, repr(request.filter), tuple(request.attributes))
        if page.cookie:
            state = session.paged.pop(page.cookie, None)
            if state is None or state.request_key != key:
                raise LDAPError(ResultCode.unwillingToPerform, "paged results cookie is invalid")
            remaining = state.remaining
        else:
            remaining = []
            for entry in txn.search(
                normalize_dn(request.base, self.schema), Scope(request.scope), request.filter
            ):
                if (manage_dsa_it or not is_glue(entry)) and matches(entry):
                    remaining.append(entry.id)
        if page.size == 0:
            return 0, [paged_control(0, b"")], ""
        has_children = txn.has_children if selection.wants_has_subordinates else None
        sent = 0
        while remaining and sent < page.size:
            entry = txn.get_by_id(remaining.pop(0))
            if entry is None:
                continue
            blob = selection.encode(entry, has_children) if guard is None else guard.encode(entry, selection,
                                                                                            has_children)  # fmt: skip
            if blob is None:
                continue
            send(ldap.encode_search_result_entry(message_id, entry.dn, blob))
            sent += 1
        cookie = b""
        if remaining:
            cookie = secrets.token_bytes(8)
            session.paged[cookie] = PagedSearch(key, remaining)
        return sent, [paged_control(0, cookie)], ""

    def sync_search(self, conn, message_id: int, request: ldap.SearchRequest, controls: list[Control],
                    sync_control: Control) -> bool:  # fmt: skip
        """An RFC 4533 sync search; the syncprov overlay answers it. True when it stays open (persist)."""
        base_ndn = normalize_or_fail(self.schema, request.base)
        backend = self.backend_for(base_ndn)
        if backend is None or backend.provider is None:
            if sync_control.critical:
                raise LDAPError(ResultCode.unavailableCriticalExtension, "critical extension is unavailable")
            sent, response_controls, text = self.search(
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
        size_limit, _ = self.search_limits(conn.session, backend, request, base_ndn)
        selection = AttributeSelection(self.schema, request.attributes, request.types_only)
        matches = self.filters.compile(request.filter)
        guard = self.access.search_guard(conn.session, backend, request.filter)
        if guard is not None:
            selection, matches = guard.for_sync(backend, base_ndn, selection)
        return backend.provider.sync_search(conn, message_id, request, controls, sync, selection, matches,
                                            base_ndn, size_limit)  # fmt: skip

    def stop_sync_search(self, conn, message_id: int, result: int | None) -> bool:
        """Abandon (result None) or Cancel (result cancelled) of a persistent search."""
        return any(b.provider.stop_search(conn, message_id, result) for b in self.backends if b.provider)

    def connection_closed(self, conn) -> None:
        for backend in self.backends:
            if backend.provider is not None:
                backend.provider.connection_closed(conn)

    def root_dse(self) -> Entry:
        entry = Entry("")
        put = entry.put
        put("objectclass", "objectClass", [b"top", b"OpenLDAProotDSE"])
        put("structuralobjectclass", "structuralObjectClass", [b"OpenLDAProotDSE"])
        put("namingcontexts", "namingContexts", [b.config.suffix.encode() for b in self.backends])
        put("supportedcontrol", "supportedControl", [oid.encode() for oid in sorted(SUPPORTED_CONTROLS)])
        put("supportedextension", "supportedExtension", [oid.encode() for oid in SUPPORTED_EXTENSIONS])
        put("supportedfeatures", "supportedFeatures", [oid.encode() for oid in SUPPORTED_FEATURES])
        put("supportedldapversion", "supportedLDAPVersion", [b"3"])
        put("supportedsaslmechanisms", "supportedSASLMechanisms", [b"EXTERNAL"])
        put("subschemasubentry", "subschemaSubentry", [SUBSCHEMA_DN.encode()])
        put("vendorname", "vendorName", [b"pyldapd"])
        put("vendorversion", "vendorVersion", [VENDOR_VERSION.encode()])
        put("monitorcontext", "monitorContext", [b"cn=Monitor"])
        put("entrydn", "entryDN", [b""])
        return entry

    def subschema_entry(self) -> Entry:
        entry = Entry(SUBSCHEMA_DN)
        entry.put("objectclass", "objectClass", [b"top", b"subentry", b"subschema", b"extensibleObject"])
        entry.put("cn", "cn", [b"Subschema"])
        entry.put("structuralobjectclass", "structuralObjectClass", [b"subentry"])
        entry.put("createtimestamp", "createTimestamp", [self.started])
        entry.put("modifytimestamp", "modifyTimestamp", [self.started])
        entry.put("entrydn", "entryDN", [SUBSCHEMA_DN.encode()])
        entry.put("subschemasubentry", "subschemaSubentry", [SUBSCHEMA_DN.encode()])
        for name, values in self.schema.subschema_values().items():
            entry.put(name.lower(), name, values)
        return entry

    # -- writes ----------------------------------------------------------------------------------------------

    def require_write(self, session: Session, backend: Backend, what: str) -> None:
        """A `readonly` database refuses every update; who may write what is access control's (guard.py)."""
        if backend.config.readonly:
            raise LDAPError(ResultCode.unwillingToPerform, "operation restricted")

    def stamp(self, entry: Entry, session: Session, *, created: bool) -> str:
        csn = self.csn.next()
        now = (csn[:14] + "Z").encode()  # slapd derives the timestamps from the CSN, so the two agree
        who = (session.bind_dn or "").encode()
        if created:
            entry.put("entryuuid", "entryUUID", [str(uuid.uuid1()).encode()])
            entry.put("creatorsname", "creatorsName", [who])
            entry.put("createtimestamp", "createTimestamp", [now])
        entry.put("entrycsn", "entryCSN", [csn.encode()])
        entry.put("modifiersname", "modifiersName", [who])
        entry.put("modifytimestamp", "modifyTimestamp", [now])
        return csn

    def add(self, session: Session, request: ldap.AddRequest, controls: list[Control]) -> list[Control]:
        if self.configdb is not None and names_config(request.dn):
            return self.configdb.add(session, request, controls)
        ndn = normalize_or_fail(self.schema, request.dn)
        if not request.dn:
            raise LDAPError(ResultCode.unwillingToPerform, "root DSE already exists")
        backend = self.require_backend(ndn, update=True)
        self.require_authentication(session)
        self.check_shadow(backend, request.dn)
        check_no_user_modification(self.schema, (name for name, _ in request.attributes))
        entry = entry_from_attributes(self.schema, request.dn, request.attributes)
        add_rdn_values(self.schema, entry, split_rdn(request.dn)[0])  # slapd adds missing naming values
        structural = check_entry(self.schema, entry)
        entry.put("structuralobjectclass", "structuralObjectClass", [structural.name.encode()])
        with backend.db.write() as txn:
            if txn.exists(ndn):
                raise LDAPError(ResultCode.entryAlreadyExists, "")
            parent = None
            parent_ndn = split_rdn(ndn)[1]
            if ndn != backend.suffix_ndn:
                parent = txn.get(parent_ndn)
                if parent is None:
                    nearest = txn.nearest_ancestor(ndn)
                    raise LDAPError(ResultCode.noSuchObject, "", matched_dn=nearest.dn if nearest else "")
            self.require_write(session, backend, "parent" if parent is not None else "entry")
            self.access.check_add(session, backend, txn, entry, ndn, parent, parent_ndn)
            self.check_assertion(controls, parent if parent is not None else Entry(""))
            csn = self.stamp(entry, session, created=True)
            try:
                txn.add(entry)
            except AlreadyExists:
                raise LDAPError(ResultCode.entryAlreadyExists, "") from None
            except NoSuchEntry as exc:
                raise LDAPError(ResultCode.noSuchObject, "", matched_dn=exc.matched_dn) from None
            backend.context.advance(txn, csn)
        backend.publish(Change("add", None, entry, csn))
        return self.read_controls(controls, None, entry)

    def modify(self, session: Session, request: ldap.ModifyRequest, controls: list[Control]) -> list[Control]:
        if self.configdb is not None and names_config(request.dn):
            return self.configdb.modify(session, request, controls)
        ndn = normalize_or_fail(self.schema, request.dn)
        backend = self.require_backend(ndn, update=True)
        self.require_authentication(session)
        self.check_shadow(backend, request.dn)
        check_changes(self.schema, request.changes)
        with backend.db.write() as txn:
            current = self.existing(txn, ndn)
            self.require_write(session, backend, "entry")
            self.check_assertion(controls, current)
            self.access.check_modify(session, backend, txn, current, ndn, request.changes)
            entry = current.copy()
            apply_modifications(self.schema, entry, request.changes)
            check_entry(self.schema, entry, old_structural=current.first("structuralobjectclass"))
            csn = self.stamp(entry, session, created=False)
            txn.modify(ndn, entry)
            backend.context.advance(txn, csn)
        backend.publish(Change("modify", current, entry, csn))
        return self.read_controls(controls, current, entry)

    def delete(self, session: Session, request: ldap.DelRequest, controls: list[Control]) -> list[Control]:
        if self.configdb is not None and names_config(request.dn):
            return self.configdb.delete(session, request, controls)
        ndn = normalize_or_fail(self.schema, request.dn)
        backend = self.require_backend(ndn, update=True)
        self.require_authentication(session)
        self.check_shadow(backend, request.dn)
        with backend.db.write() as txn:
            current = self.existing(txn, ndn)
            self.require_write(session, backend, "entry")
            self.access.check_delete(session, backend, txn, current, ndn)
            self.check_assertion(controls, current)
            try:
                txn.delete(ndn)
            except NotAllowedOnNonLeaf:
                raise LDAPError(
                    ResultCode.notAllowedOnNonLeaf, "subordinate objects must be deleted first"
                ) from None
            csn = self.csn.next()  # a delete is a change too: it moves the contextCSN
            entry_uuid = entry_uuid_bytes(current)
            if entry_uuid is not None:
                write_tombstone(txn, entry_uuid, csn)
            backend.context.advance(txn, csn)
        backend.publish(Change("delete", current, None, csn))
        return self.read_controls(controls, current, None)

    def modify_dn(
        self, session: Session, request: ldap.ModifyDNRequest, controls: list[Control]
    ) -> list[Control]:
        if self.configdb is not None and names_config(request.dn):
            raise LDAPError(ResultCode.unwillingToPerform, "renaming is not supported in cn=config")
        ndn = normalize_or_fail(self.schema, request.dn)
        backend = self.require_backend(ndn, update=True)
        self.require_authentication(session)
        self.check_shadow(backend, request.dn)
        try:
            new_rdn_parts = parse_dn(request.new_rdn)
        except DNError:
            raise LDAPError(ResultCode.invalidDNSyntax, "invalid new RDN") from None
        if len(new_rdn_parts) != 1:
            raise LDAPError(ResultCode.invalidDNSyntax, "invalid new RDN")
        try:
            normalize_dn(request.new_rdn, self.schema)
        except DNError:
            raise LDAPError(ResultCode.invalidDNSyntax, "invalid new RDN") from None
        old_rdn, old_parent = split_rdn(request.dn)
        parent_dn = old_parent if request.new_superior is None else request.new_superior
        new_dn = f"{request.new_rdn},{parent_dn}" if parent_dn else request.new_rdn
        new_ndn = normalize_or_fail(self.schema, new_dn)
        if ndn == backend.suffix_ndn:
            raise LDAPError(ResultCode.unwillingToPerform, "cannot rename the suffix entry")
        if self.backend_for(new_ndn) is not backend:
            raise LDAPError(ResultCode.affectsMultipleDSAs, "cannot move entry to another database")
        if new_ndn == ndn or is_descendant(new_ndn, ndn):
            if new_ndn != ndn:
                raise LDAPError(ResultCode.unwillingToPerform, "cannot move an entry below itself")
        with backend.db.write() as txn:
            current = self.existing(txn, ndn)
            self.require_write(session, backend, "entry")
            self.check_assertion(controls, current)
            new_parent_ndn = split_rdn(new_ndn)[1]
            if request.new_superior is not None and txn.get(new_parent_ndn) is None:
                raise LDAPError(ResultCode.noSuchObject, "new superior not found")
            self.access.check_rename(session, backend, txn, current, ndn, new_parent_ndn,
                                     request.new_superior is not None, old_rdn, request.new_rdn,
                                     request.delete_old_rdn)  # fmt: skip
            if new_ndn != ndn and txn.exists(new_ndn):
                raise LDAPError(ResultCode.entryAlreadyExists, "")
            entry = current.copy()
            entry.dn = new_dn
            if request.delete_old_rdn:
                remove_rdn_values(self.schema, entry, old_rdn, request.new_rdn)
            add_rdn_values(self.schema, entry, request.new_rdn)
            check_entry(self.schema, entry)
            csn = self.stamp(entry, session, created=False)
            try:
                txn.rename(ndn, entry)
            except AlreadyExists:
                raise LDAPError(ResultCode.entryAlreadyExists, "") from None
            except NoSuchEntry:
                raise LDAPError(ResultCode.noSuchObject, "new superior not found") from None
            backend.context.advance(txn, csn)
        backend.publish(Change("rename", current, entry, csn))
        return self.read_controls(controls, current, entry)

    def compare(self, session: Session, request: ldap.CompareRequest, controls: list[Control]) -> int:
        if self.configdb is not None and names_config(request.dn):
            return self.configdb.compare(session, request)
        ndn = normalize_or_fail(self.schema, request.dn)
        at = resolve_type(self.schema, request.attr)
        backend = None
        if ndn == "":
            entry = self.root_dse()
        elif ndn == self.subschema_ndn:
            entry = self.subschema_entry()
        else:
            backend = self.require_backend(ndn)
            with backend.db.read() as txn:
                if txn.get(ndn) is None and self.access.configured:
                    raise self.access.not_found(session, backend, txn, ndn)
                entry = self.existing(txn, ndn)
        may_compare, disclose = compare_allowed(
            self.access, session, backend, entry, ndn, at.key, request.value
        )
        try:
            if not may_compare:
                raise LDAPError(ResultCode.insufficientAccessRights, "")
            return self.compare_values(at, request, controls, entry)
        except LDAPError as exc:
            if not disclose:  # slapd hides the entry from who may not even know it is there
                raise LDAPError(ResultCode.noSuchObject, "") from None
            raise exc

    def compare_values(self, at, request: ldap.CompareRequest, controls: list[Control], entry: Entry) -> int:
        self.check_assertion(controls, entry)
        if at.equality is None:
            raise LDAPError(ResultCode.inappropriateMatching, f"{request.attr}: no equality matching rule")
        wanted = at.equality.normalize(request.value)
        if wanted is None:
            raise LDAPError(ResultCode.invalidAttributeSyntax, "value does not conform to assertion syntax")
        found = False
        for subtype in self.schema.subtypes(at):
            for value in entry.get(subtype.key):
                found = True
                if equality_key(at, value) == wanted:
                    return ResultCode.compareTrue
        if not found:
            raise LDAPError(ResultCode.noSuchAttribute, "")
        return ResultCode.compareFalse

    # -- extended operations ---------------------------------------------------------------------------------

    def password_modify(self, session: Session, value: bytes | None) -> bytes | None:
        try:
            request = ctl.decode_password_modify_request(value or b"")
        except Exception as exc:
            raise LDAPError(ResultCode.protocolError, "password modify request is malformed") from exc
        if session.anonymous and request.user_identity is None:
            raise LDAPError(ResultCode.unwillingToPerform, "only authenticated users may change passwords")
        target_dn = request.user_identity.decode() if request.user_identity is not None else session.bind_dn
        if target_dn.startswith("dn:"):
            target_dn = target_dn[3:]
        ndn = normalize_or_fail(self.schema, target_dn)
        backend = self.require_backend(ndn)
        self.check_shadow(backend, target_dn)
        generated = None
        new_password = request.new_password
        if new_password is None:
            new_password = generated = secrets.token_urlsafe(9).encode()
        scheme = self.config.password_hash[0] if self.config.password_hash else "{SSHA}"
        with backend.db.write() as txn:
            current = self.existing(txn, ndn)
            hashed = hash_password(new_password, scheme, self.config.password_crypt_salt_format or None)
            if not self.is_root(session, backend):
                if (
                    request.old_password is not None
                    and session.bind_ndn == ndn
                    and not any(verify_password(request.old_password, v) for v in current.get("userpassword"))
                ):
                    raise LDAPError(ResultCode.unwillingToPerform, "unwilling to verify old password")
                self.require_write(session, backend, "entry")
                self.access.check_password_modify(session, backend, txn, current, ndn, hashed)
            entry = current.copy()
            entry.put("userpassword", "userPassword", [hashed])
            csn = self.stamp(entry, session, created=False)
            txn.modify(ndn, entry)
            backend.context.advance(txn, csn)
        backend.publish(Change("modify", current, entry, csn))
        return ctl.encode_password_modify_response(generated) if generated is not None else None

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

    def check_assertion(self, controls: list[Control], entry: Entry) -> None:
        for control in controls:
            if control.oid == ctl.ASSERTION:
                try:
                    assertion = ctl.decode_assertion(control.value or b"")
                except Exception as exc:
                    raise LDAPError(ResultCode.protocolError, "assertion control is malformed") from exc
                if not self.filters.matches(assertion, entry):
                    raise LDAPError(ResultCode.assertionFailed, "")

    def read_controls(
        self, controls: list[Control], before: Entry | None, after: Entry | None
    ) -> list[Control]:
        """Pre-Read and Post-Read (RFC 4527) response controls."""
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
            blob = selection.encode(entry, None)
            response.append(Control(control.oid, False, ctl.encode_read_entry(entry.dn, blob)))
        return response


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


def is_glue(entry: Entry) -> bool:
    attribute = entry.attrs.get("objectclass")
    return attribute is not None and any(v.lower() == b"glue" for v in attribute.values)


class AttributeSelection:
    """Which attributes of an entry a search returns (RFC 4511 4.5.1.8, with `+` and `@class` of RFC 3673/4529)."""

    def __init__(self, schema: Schema, requested: list[str], types_only: bool) -> None:
        self.schema = schema
        self.types_only = types_only
        self.all_user = not requested
        self.all_operational = False
        self.keys: set[str] = set()
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
                at = schema.attribute_type(name.split(";", 1)[0])
                if at is not None:
                    self.keys.update(sub.key for sub in schema.subtypes(at))
        if self.only_none:
            self.all_user = False
        computed_keys = {c.lower() for c in COMPUTED}
        self.computed = [c for c in COMPUTED if self.all_operational or c.lower() in self.keys]
        self.wants_has_subordinates = "hasSubordinates" in self.computed
        self.fast_user_only = (
            self.all_user and not self.keys and not self.types_only and not self.all_operational
        )
        self.fast_all = self.all_user and self.all_operational and not self.types_only
        self.keys -= computed_keys

    def encode(self, entry: Entry, has_children: Callable[[str], bool] | None) -> bytes:
        if self.only_none:
            return b""
        if self.fast_user_only and entry.encoded_user is not None:
            return entry.encoded_user
        if self.fast_all and entry.encoded_user is not None and entry.encoded_operational is not None:
            return entry.encoded_user + entry.encoded_operational + self.encode_computed(entry, has_children)
        chosen: list[tuple[str, list[bytes]]] = []
        for key, attribute in entry.attrs.items():
            base = key.split(";", 1)[0]
            at = self.schema.attribute_type(base)
            operational = at is not None and at.operational
            if base in self.keys or (self.all_operational if operational else self.all_user):
                chosen.append((attribute.name, [] if self.types_only else attribute.values))
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
                    values.append((own.name, [] if self.types_only else own.values))
                continue
            if special and name == "hasSubordinates":
                continue  # slapd shows none for them
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
            values.append((name, [] if self.types_only else [value]))
        return ldap.encode_partial_attribute_list(values)


def paged_control(size: int, cookie: bytes) -> Control:
    return Control(ctl.PAGED_RESULTS, False, ctl.encode_paged_results(ctl.PagedResults(size, cookie)))
