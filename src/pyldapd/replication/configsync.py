"""Replication of cn=config itself, as slapd does it: the syncprov overlay over the config database
(olcOverlay=syncprov under olcDatabase={0}config) and syncrepl consumers on it (olcSyncrepl on
olcDatabase={0}config), plain or multi-provider (olcMultiProvider, olcServerID with URLs).

cn=config lives in memory (server/configdb.py) and in slapd.d files, not in LMDB, so `ConfigBackend` shows it
to the provider and consumer engines as the small part of a database they use: entries by DN and by entryUUID,
a scoped search, entries newer than a CSN, and a contextCSN vector. The vector is kept, as slapd keeps it, in the
contextCSN attribute of the cn=config entry (slapd.d's cn=config.ldif).

A consumer applies each received entry as a cn=config change (`ConfigDatabase.apply_replicated`): the whole
resulting configuration is validated and made effective at once, as for an ldapmodify over ldapi (databases
opened or closed, overlays, schema, syncrepl stanzas, server ID), then written to slapd.d. Entries keep the
provider's entryUUID, entryCSN and timestamps. The newer entryCSN wins (slapd's dn_callback): a local entry of
the same DN made independently (each server's slapadd -n0 gives its own entryUUIDs) is replaced by a newer one
from the provider and kept when it is newer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import Scope
from pyldapd.backends.writer import Chain
from pyldapd.config.model import DatabaseConfig
from pyldapd.model.csn import sid_of
from pyldapd.model.dn import DNError, is_descendant, parent_dn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.overlays.base import OverlayStack
from pyldapd.replication.conflicts import csn_sid
from pyldapd.replication.consumer import DYNAMIC_KEYS, ConsumerError, SyncConsumer
from pyldapd.replication.provider import in_scope
from pyldapd.replication.state import Change, ContextState, entry_uuid_bytes
from pyldapd.server.errors import LDAPError

if TYPE_CHECKING:
    from pyldapd.server.configdb import ConfigDatabase

CONFIG_NDN = "cn=config"


class ConfigTxn:
    """A "transaction" over the in-memory cn=config: reads, and the on-commit effects ContextState uses."""

    def __init__(self, backend: ConfigBackend) -> None:
        self.backend = backend
        self.entries = backend.configdb.entries
        self.pending: dict[Any, Any] = {}
        self.callbacks: list[Any] = []
        self.context_written = False

    # what ContextState and the consumer engine call
    def on_commit(self, callback) -> None:
        self.callbacks.append(callback)

    def put_raw_metadata(self, key: bytes, value: bytes) -> None:
        self.context_written = True  # saved onto the cn=config entry once committed

    def get_raw_metadata(self, key: bytes) -> bytes | None:
        return None

    # what the provider engine reads
    def get(self, ndn: str) -> Entry | None:
        return self.entries.get(ndn)

    def exists(self, ndn: str) -> bool:
        return ndn in self.entries

    def has_children(self, ndn: str) -> bool:
        return any(parent_dn(other) == ndn for other in self.entries)

    def nearest_ancestor(self, ndn: str) -> Entry | None:
        while ndn:
            ndn = parent_dn(ndn)
            if ndn in self.entries:
                return self.entries[ndn]
        return None

    def search(self, base_ndn: str, scope: Scope, filter_) -> Iterator[Entry]:
        matches = self.backend.configdb.filters.compile(filter_)
        for ndn, entry in list(self.entries.items()):
            if in_scope(ndn, base_ndn, scope) and matches(entry):
                yield entry

    def csn_after(self, csn: str) -> Iterator[Entry]:
        newer = [e for e in self.entries.values() if (e.first("entrycsn") or b"").decode() > csn]
        yield from sorted(newer, key=lambda e: e.first("entrycsn") or b"")

    def by_uuid(self, entry_uuid: bytes) -> Entry | None:
        ndn = self.backend.ndn_of_uuid(entry_uuid)
        return self.entries.get(ndn) if ndn is not None else None


class InlineWriter:
    """The consumer's writer for cn=config: each message applied at once on the loop (config changes are applied
    there), with the Chain's rule that nothing after a failed message is stored."""

    def submit(
        self, work: Callable[[Any], Any], chain: Chain | None = None, *, alone: bool = False
    ) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if chain is not None and chain.broken is not None:
            future.set_exception(chain.broken)
            return future
        try:
            future.set_result(work(None))
        except Exception as exc:
            if chain is not None:
                chain.broken = exc
            future.set_exception(exc)
        return future


class ConfigStore:
    """The `db` of ConfigBackend: read and write "transactions" over the in-memory entries."""

    def __init__(self, backend: ConfigBackend) -> None:
        self.backend = backend
        self.writer = InlineWriter()

    def current_write(self) -> None:
        """No writer thread: cn=config changes are applied on the event loop (Server.apply_config)."""
        return None

    @contextmanager
    def read(self) -> Iterator[ConfigTxn]:
        yield ConfigTxn(self.backend)

    @contextmanager
    def write(self) -> Iterator[ConfigTxn]:
        txn = ConfigTxn(self.backend)
        yield txn
        for callback in txn.callbacks:
            callback()
        if txn.context_written:
            self.backend.save_context()


class ConfigBackend:
    """cn=config as the syncprov overlay and the syncrepl consumers see a database."""

    def __init__(self, configdb: ConfigDatabase) -> None:
        self.configdb = configdb
        self.schema = configdb.schema
        self.config = DatabaseConfig(type="config", declared_type="config", source="olcDatabase={0}config")
        self.config.suffixes = ["cn=config"]
        self.suffix_ndn = CONFIG_NDN
        self.db = ConfigStore(self)
        self.context = ContextState()
        self.context.load(None, configdb.entries.get(CONFIG_NDN, Entry("cn=config")).get("contextcsn"))
        self.overlays = OverlayStack()
        self.consumers: dict[int, SyncConsumer] = {}
        self.self_syncrepl = 0
        # cn=config is never glued (server/glue.py asks every database)
        self.superior: Any = None
        self.subordinates: list[Any] = []

    @property
    def provider(self) -> Any:
        return self.overlays.get("syncprov")

    @provider.setter
    def provider(self, provider: Any) -> None:
        self.overlays.set("syncprov", provider)
        others = [n for n in self.overlays.order if n != "syncprov"]
        self.overlays.order = (["syncprov"] if provider is not None else []) + others

    @property
    def shadow(self) -> bool:
        return len(self.config.syncrepl) > self.self_syncrepl and not self.config.multiprovider

    def holds(self, ndn: str) -> bool:
        return ndn == CONFIG_NDN or is_descendant(ndn, CONFIG_NDN)

    def ndn_of_uuid(self, entry_uuid: bytes) -> str | None:
        if entry_uuid == bytes(16):  # a provider's entry without entryUUID: known by its DN only
            return None
        for ndn, entry in self.configdb.entries.items():
            if entry_uuid_bytes(entry) == entry_uuid:
                return ndn
        return None

    def publish(self, change: Change) -> None:
        self.overlays.after_commit(change)

    def save_context(self) -> None:
        """The contextCSN vector onto the cn=config entry (memory and cn=config.ldif), where slapd keeps it."""
        self.configdb.store_context_csn(self.context.values())

    def write_context_csn(self) -> None:  # the provider's checkpoint: the vector is saved with every change
        self.save_context()

    def close(self) -> None:
        self.overlays.close()


class ConfigConsumer(SyncConsumer):
    """A syncrepl consumer of a provider's cn=config: each entry it receives is a cn=config change here."""

    def __init__(
        self, configdb: ConfigDatabase, backend: ConfigBackend, spec, cookie: str | None = None
    ) -> None:
        super().__init__(configdb.server.directory, backend, spec, cookie)
        self.configdb = configdb

    def incoming_entry(self, dn: str, attributes: list[tuple[str, list[bytes]]], entry_uuid: bytes) -> Entry:
        schema = self.configdb.schema
        entry = Entry(dn)
        for name, values in attributes:
            at = schema.attribute_type(name)
            key = at.key if at is not None else name.lower()
            if key in DYNAMIC_KEYS or not values:
                continue
            existing = entry.attrs.get(key)
            if existing is None:
                entry.attrs[key] = Attribute(at.name if at is not None else name, list(values))
            else:
                existing.values.extend(values)
        if entry.first("entryuuid") is None:
            from pyldapd.replication.state import uuid_string

            entry.put("entryuuid", "entryUUID", [uuid_string(entry_uuid).encode()])
        return entry

    def apply_entry(self, dn: str, attributes: list[tuple[str, list[bytes]]], entry_uuid: bytes,
                    cookie_csn: str | None) -> None:  # fmt: skip
        # with several workers, decided and applied under cn=config's lock (server/configshare.py): the local
        # entries compared are the current ones whichever worker changed them last
        with self.configdb.serialized():
            self.apply_entry_held(dn, attributes, entry_uuid, cookie_csn)

    def apply_entry_held(self, dn: str, attributes: list[tuple[str, list[bytes]]], entry_uuid: bytes,
                         cookie_csn: str | None) -> None:  # fmt: skip
        configdb, backend = self.configdb, self.backend
        try:
            ndn = configdb.ndn(dn)
        except LDAPError:
            raise ConsumerError(f"provider sent an invalid DN {dn!r}") from None
        if not backend.holds(ndn):
            self.note(f"{dn} is outside cn=config, ignored")
            return
        incoming = self.incoming_entry(dn, attributes, entry_uuid)
        incoming_csn = (incoming.first("entrycsn") or b"").decode() or cookie_csn or self.directory.csn.next()
        if incoming.first("entrycsn") is None:
            incoming.put("entrycsn", "entryCSN", [incoming_csn.encode()])
        local_ndn = backend.ndn_of_uuid(entry_uuid)
        # a conflict is two versions of one entry; entries of one DN made on each server (slapadd -n0) are not
        same_entry = local_ndn is not None
        inserted = False
        if local_ndn is None and ndn in configdb.entries:
            if another_database(configdb.entries[ndn], incoming):
                inserted = True  # a database added at a place taken here: the one here moves up
            else:
                local_ndn = ndn  # the same entry made on each server (slapadd -n0): another entryUUID
        local = configdb.entries.get(local_ndn) if local_ndn is not None else None
        local_csn = (local.first("entrycsn") or b"").decode() if local is not None else ""
        changes: list[Change] = []
        if local is not None and local_csn >= incoming_csn:
            if not same_entry:
                # ours (made here, of the same DN) stays, known from now on by the provider's entryUUID, so
                # that a later present phase, which names entries by entryUUID alone, does not delete it
                configdb.adopt_uuid(local_ndn, incoming.first("entryuuid") or b"")
            if local_csn == incoming_csn:
                self.note(f"entry {dn} unchanged")
            elif same_entry and self.is_news(incoming_csn):  # journaled as data consumers do (conflicts.py)
                self.conflict("modify", dn, local_csn, incoming_csn,
                              "the incoming change is older than the local entry: discarded")  # fmt: skip
        else:
            removed = [local_ndn] if local_ndn is not None and local_ndn != ndn else []
            overridden = same_entry and self.concurrent(local_csn, incoming_csn)
            try:
                if inserted:
                    changes = configdb.insert_replicated(ndn, incoming)
                else:
                    changes = configdb.apply_replicated({ndn: incoming}, removed)
            except LDAPError as exc:
                # slapd logs a change its config refuses and goes on with the next one
                self.log.error(f"syncrepl rid={self.rid:03d}: cn=config entry {dn} not applied: "
                               f"{exc.code} {exc.message}")  # fmt: skip
            else:
                self.note(f"cn=config entry {dn} applied")
                if overridden:
                    self.conflict("modify", dn, incoming_csn, local_csn,
                                  "a local change not yet replicated, overridden by a newer one")  # fmt: skip
        self.observe(incoming_csn)
        self.finish(changes, cookie_csn)

    def delete_by_uuid(self, entry_uuid: bytes, csn: str, cookie_csn: str | None,
                       covered_by: dict[int, str] | None = None, csn_known: bool = False) -> None:  # fmt: skip
        with self.configdb.serialized():
            self.delete_by_uuid_held(entry_uuid, csn, cookie_csn, covered_by, csn_known)

    def delete_by_uuid_held(self, entry_uuid: bytes, csn: str, cookie_csn: str | None,
                            covered_by: dict[int, str] | None = None, csn_known: bool = False) -> None:  # fmt: skip
        configdb, backend = self.configdb, self.backend
        ndn = backend.ndn_of_uuid(entry_uuid)
        changes: list[Change] = []
        if ndn is not None and ndn != CONFIG_NDN:
            local = configdb.entries[ndn]
            local_csn = (local.first("entrycsn") or b"").decode()
            held = covered_by.get(sid_of(local_csn)) if covered_by is not None and local_csn else None
            csn_known = csn_known or cookie_csn is not None
            if covered_by is not None and (held is None or local_csn > held):
                delete_csn = csn if csn_sid(csn) != self.directory.server_id else ""
                self.conflict("delete", local.dn, local_csn, delete_csn,
                              "deleted there, changed here since: the entry stays")  # fmt: skip
            elif csn_known and local_csn > csn:
                if self.is_news(csn):
                    self.conflict("delete", local.dn, local_csn, csn,
                                  "a delete older than the entry: the entry stays")  # fmt: skip
            else:
                overridden = csn_known and self.concurrent(local_csn, csn)
                try:
                    changes = configdb.delete_replicated(ndn)
                except LDAPError as exc:
                    self.log.error(f"syncrepl rid={self.rid:03d}: cn=config entry {local.dn} not deleted: "
                                   f"{exc.code} {exc.message}")  # fmt: skip
                else:
                    if overridden:
                        self.conflict("delete", local.dn, csn, local_csn,
                                      "a local change not yet replicated, overridden by a newer delete")  # fmt: skip
        self.finish(changes, cookie_csn)

    def finish(self, changes: list[Change], cookie_csn: str | None) -> None:
        if cookie_csn is not None:
            with self.backend.db.write() as txn:
                self.backend.context.advance(txn, cookie_csn)
        for change in changes:
            change.relay_sid = self.provider_sid
            change.replicated = True
            change.in_csn_order = cookie_csn is not None
            self.backend.publish(change)

    def delete_nonpresent(self, raw_cookie: bytes | None) -> None:
        """End of a present phase: entries the provider did not mention are gone there. The fixed entries
        (cn=config, the frontend and config databases, cn=schema) stay, whatever their entryUUID."""
        with self.configdb.serialized():
            self.delete_nonpresent_held(raw_cookie)

    def delete_nonpresent_held(self, raw_cookie: bytes | None) -> None:
        from pyldapd.model.csn import parse_cookie

        cookie = parse_cookie(raw_cookie) if raw_cookie else None
        covered = cookie.csns if cookie and cookie.csns else self.backend.context.csns.as_dict()
        fixed = {CONFIG_NDN, "cn=schema,cn=config"}
        doomed = []
        for ndn, entry in self.configdb.entries.items():
            entry_uuid = entry_uuid_bytes(entry)
            if entry_uuid is None or entry_uuid in self.present or ndn in fixed:
                continue
            if ndn.startswith("olcdatabase={-1}") or ndn.startswith("olcdatabase={0}config"):
                continue
            if ndn.startswith("olcdatabase={0}") and parent_dn(ndn) == CONFIG_NDN:
                continue
            local_csn = (entry.first("entrycsn") or b"").decode()
            held = covered.get(sid_of(local_csn)) if local_csn else None
            if local_csn and (held is None or local_csn > held):
                continue
            doomed.append((ndn, entry_uuid))
        doomed.sort(key=lambda item: -item[0].count(","))
        for ndn, entry_uuid in doomed:
            self.note(f"deleting {ndn}: not present at the provider")
            self.delete_by_uuid(entry_uuid, self.directory.csn.next(), None)
        self.present = set()

    def authz_dn(self) -> str:
        return self.configdb.rootdn_ndn() or CONFIG_NDN


def another_database(local: Entry, incoming: Entry) -> bool:
    """Two olcDatabase={n} entries (n > 0) of one name but different suffixes are different databases: the
    provider inserted one at {n}. Of one suffix, they are one database made on each server."""
    from pyldapd.config.cnconfig import order_of

    def suffixes(entry: Entry) -> set[str]:
        return {v.decode("utf-8", "replace").replace(" ", "").lower() for v in entry.get("olcsuffix")}

    names = [(e.first("olcdatabase") or b"").decode("utf-8", "replace") for e in (local, incoming)]
    if not all(names) or any((order_of(name) or 0) < 1 for name in names):
        return False
    return suffixes(local) != suffixes(incoming)


def refresh(configdb: ConfigDatabase) -> None:
    """Bring cn=config's own replication in line with olcDatabase={0}config: the syncprov overlay on or off,
    one consumer per olcSyncrepl value (new rids started, changed or removed ones stopped), as
    Server.refresh_replication does for a data database."""
    from pyldapd.replication.provider import ProviderSettings, SyncProvider

    server = configdb.server
    backend = configdb.backend
    settings = server.config.config_database or DatabaseConfig(type="config")
    for name in ("syncrepl", "multiprovider", "updateref", "updatedn", "overlays"):
        setattr(backend.config, name, getattr(settings, name))
    backend.config.rootdn = configdb.rootdn_ndn()
    overlay = next((o for o in settings.overlays if o.name == "syncprov"), None)
    if overlay is None and backend.provider is not None:
        backend.provider.close()
        backend.provider = None
    elif overlay is not None:
        provider_settings = ProviderSettings.from_overlay(overlay.settings)
        if backend.provider is None:
            provider = SyncProvider(server.directory, backend, provider_settings)
            provider.schema = configdb.schema  # olc* attribute types name cn=config's entries
            backend.provider = provider
        else:
            backend.provider.settings = provider_settings
    refresh_accesslog(configdb, settings)
    server.reconcile_consumers(
        backend,
        settings.syncrepl,
        lambda spec: points_at_self(server, spec),
        lambda spec, cookie: ConfigConsumer(configdb, backend, spec, cookie),
    )


def refresh_accesslog(configdb: ConfigDatabase, settings: DatabaseConfig) -> None:
    """olcOverlay=accesslog on olcDatabase={0}config: started, reconfigured or stopped with the tree."""
    from pyldapd.overlays.accesslog import AccesslogSettings, ConfigAccessLog

    backend = configdb.backend
    overlay = next((o for o in settings.overlays if o.name == "accesslog"), None)
    running = backend.overlays.get("accesslog")
    if overlay is None:
        if running is not None:
            running.close()
            backend.overlays.set("accesslog", None)
            backend.overlays.order.remove("accesslog")
        return
    parsed = AccesslogSettings.parse(overlay.settings)
    if isinstance(running, ConfigAccessLog):
        running.configure(parsed)
        return
    accesslog = ConfigAccessLog(configdb.server.directory, backend, parsed)
    backend.overlays.set("accesslog", accesslog)
    accesslog.start()


def points_at_self(server, spec) -> bool:
    """slapd ignores a cn=config stanza whose provider URL is one of this server's listeners."""
    from pyldapd.server.app import normalize_url

    try:
        base = spec.searchbase.replace(" ", "").lower()
    except (AttributeError, DNError):
        return False
    return base == CONFIG_NDN and normalize_url(spec.provider) in {normalize_url(u.text) for u in server.urls}
