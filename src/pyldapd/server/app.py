"""The running server: schema and databases from the config, listeners from -h, clean shutdown on signals."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyldapd.backends.base import StorageError
from pyldapd.backends.mdb import FORMAT_VERSION
from pyldapd.config.model import ServerConfig
from pyldapd.config.slapdconf import ConfigError
from pyldapd.model.dn import normalize_dn
from pyldapd.model.schema import SCHEMA_DIR, Schema, SchemaError
from pyldapd.replication.consumer import SyncConsumer
from pyldapd.replication.delta import DeltaConsumer
from pyldapd.replication.provider import ProviderSettings, SyncProvider
from pyldapd.replication.spec import SyncreplSpec, parse_syncrepl
from pyldapd.server import handoff, journal, limits
from pyldapd.server.connection import LDAPConnection
from pyldapd.server.directory import Directory, Session
from pyldapd.server.listeners import ListenerURL, parse_listener_urls
from pyldapd.server.log import SYNC, Logger
from pyldapd.server.service import STOP_SIGNALS, Service
from pyldapd.server.sharedlisten import SharedListener
from pyldapd.server.stats import Stats
from pyldapd.server.steps import LONG_LIVED
from pyldapd.server.supervisor import WorkerContext, early_signals
from pyldapd.server.tls import TLSSetupError, build_context
from pyldapd.server.workers import ProcessBus, SoloBus, WorkerBus, worker_count

LISTEN_BACKLOG = (
    1024  # slapd's SLAPD_LISTEN_BACKLOG (asyncio's default is 100): a burst of connects is queued
)


FIRST_CONN_ID = 1000  # slapd's first conn=


class StartupError(Exception):
    pass


def build_schema(config: ServerConfig) -> Schema:
    """The schema a config asks for, as slapd builds it: the system schema, then the definitions the config
    includes, as written (so cn=Subschema shows their DESC and names as slapd does). A config that includes no
    schema gets pyldapd's own copies of core, cosine, inetorgperson and nis."""
    schema = Schema() if config.schema_definitions else Schema.default()
    for source, text in config.schema_definitions:
        if already_defined(schema, text):
            continue
        try:
            schema.load_text(text, source)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
    if uses_accesslog(config) and schema.attribute_type("reqStart") is None:
        schema.load_file(str(SCHEMA_DIR / "accesslog.schema"))  # built into slapd's accesslog module
    add_config_schema(schema)
    return schema


def add_config_schema(schema: Schema) -> None:
    """slapd-config(5)'s olc* types and classes are part of slapd's one schema: cn=Subschema shows them, and a
    data database may hold such entries (test059 keeps a consumer's cn=config in an ldif database)."""
    if schema.object_class("olcGlobal") is not None or schema.attribute_type("cn") is None:
        return  # there already, or the config includes no core schema (their classes name cn)
    from pyldapd.config.cnconfig import olc_schema_text

    schema.load_text(olc_schema_text(), "olc.schema")


def uses_accesslog(config: ServerConfig) -> bool:
    """slapd has the accesslog schema once its module is loaded (or built in and the overlay configured)."""
    loaded = {os.path.basename(m).split(".")[0].lower() for m in config.modules}
    return "accesslog" in loaded or any(o.name == "accesslog" for db in config.databases for o in db.overlays)


DEFINITION_OID = re.compile(r"^\s*(attributetypes?|objectclass(?:es)?)\s*\(\s*([\w.:;-]+)", re.IGNORECASE)


def already_defined(schema: Schema, text: str) -> bool:
    """A definition of an OID the schema has already (the system schema's, or one repeated) is skipped."""
    match = DEFINITION_OID.match(text)
    if match is None:
        return False
    oid = match.group(2)
    if match.group(1).lower().startswith("attribute"):
        return schema.attribute_type(oid) is not None
    return schema.object_class(oid) is not None


def choose_server_id(config: ServerConfig, urls: list[ListenerURL]) -> int:
    """A bare `serverID N` is this server's; with URLs, the one that names one of our listeners (slapd's rule)."""
    if not config.server_ids:
        return 0
    with_urls = [(sid, url) for sid, url in config.server_ids if url]
    if not with_urls:
        return config.server_ids[0][0]
    ours = {normalize_url(u.text) for u in urls}
    for sid, url in with_urls:
        if normalize_url(url) in ours:
            return sid
    raise StartupError(
        "serverID: none of the configured URLs ("
        + ", ".join(url for _, url in with_urls)
        + ") matches a listener ("
        + ", ".join(u.text for u in urls)
        + ")"
    )


def normalize_url(url: str) -> str:
    return url.lower().rstrip("/")


class Server:
    def __init__(
        self,
        config: ServerConfig,
        urls: list[ListenerURL],
        log: Logger,
        cookies: dict[int, str] | None = None,
        tls_context: Any = None,
    ) -> None:
        self.config = config
        self.urls = urls
        self.log = log
        limits.allow_filter_recursion(config.max_filter_depth)
        try:  # TLS* directives -> the context for ldaps:// and StartTLS (None: TLS not configured)
            # (a worker process gets the one its supervisor read before dropping privileges)
            self.tls_context = tls_context or build_context(config.tls, log.error)
        except TLSSetupError as exc:
            raise StartupError(str(exc)) from None
        self.tls_tasks: set[asyncio.Task] = set()  # StartTLS handshakes under way
        self.schema = build_schema(config)
        self.server_id = choose_server_id(config, urls)
        self.directory = Directory(config, self.schema, self.server_id)
        self.directory.log = log
        for backend in self.directory.backends:
            if backend.db.upgraded_from is not None:
                log.error(f"{backend.config.directory}: database upgraded in place from format "
                          f"{backend.db.upgraded_from} to {FORMAT_VERSION}")  # fmt: skip
        self.directory.server = self
        self.directory.monitor.validate(config)  # the monitor database's access lines
        self.cookies: dict[int, str] = dict(cookies or {})
        self.trim_handle: asyncio.TimerHandle | None = None  # memory handed back soon (server/limits.py)
        self.connections: dict[LDAPConnection, None] = {}  # in accept order (eviction, server/limits.py)
        # slow password checks ({ARGON2}...) run here, one per CPU: bounded CPU and memory, the loop stays free
        self.password_pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, thread_name_prefix="password"
        )
        self.listeners: list[asyncio.AbstractServer | SharedListener] = []
        self.conn_ids = itertools.count(
            FIRST_CONN_ID
        )  # alone; worker processes share one numbering (new_session)
        self.stats = Stats()  # counters of cn=Monitor and /metrics (server/stats.py)
        self.bus: WorkerBus = SoloBus()  # the other worker processes (server/workers.py)
        self.http_listeners: list[asyncio.AbstractServer] = []  # http:// in -h (server/metrics.py)
        self.stopping = asyncio.Event()
        self.shutting_down = False
        self.service: Service | None = None  # -u/-g, sd_notify (server/service.py)
        # a `gentlehup` SIGHUP came: no new clients, no writes, stop when the last one goes
        self.gentle = False
        self.gentle_task: asyncio.Task | None = None
        self.prebound: dict[str, list[socket.socket]] = {}  # -r: listeners bound before the chroot
        self.worker: WorkerContext | None = None  # one of several worker processes (server/supervisor.py)
        # connections that write move to worker 0 (server/handoff.py): worker 0 receives, the others send
        self.handoff_sender: handoff.Sender | None = None
        self.handoff_receiver: handoff.Receiver | None = None

    def use_worker(self, worker: WorkerContext) -> None:
        """This server is worker `index` of `count` processes (server/supervisor.py): its bus, its slot of the
        shared counters."""
        self.worker = worker
        self.bus = ProcessBus(worker.index, worker.count, worker.sock, self.log)
        self.stats = Stats(worker.counters, worker.index, worker.capacity)
        if worker.handoff is not None:
            if worker.index == 0:
                self.handoff_receiver = handoff.Receiver(worker.handoff, self)
            else:
                self.handoff_sender = handoff.Sender(worker.handoff, worker.index)

    def refresh_replication(self, backend) -> None:
        """Bring a database's replication in line with its config: the syncprov overlay on or off, one syncrepl
        consumer per `syncrepl` value (new rids started, removed ones stopped). Called at start and whenever
        cn=config changes a database's olcSyncrepl, olcOverlay=syncprov, olcMultiProvider or olcServerID."""
        self.directory.configure_overlays(backend)  # the other overlays of the database's stack
        overlay = next((o for o in backend.config.overlays if o.name == "syncprov"), None)
        if overlay is None and backend.provider is not None:
            backend.provider.close()
            backend.provider = None
        elif overlay is not None:
            settings = ProviderSettings.from_overlay(overlay.settings)
            if backend.provider is None:
                backend.provider = SyncProvider(self.directory, backend, settings)
            else:
                backend.provider.settings = settings

        def make_consumer(spec: SyncreplSpec, cookie):
            kind = DeltaConsumer if spec.delta else SyncConsumer
            return kind(self.directory, backend, spec, cookie)

        self.reconcile_consumers(
            backend, backend.config.syncrepl, lambda spec: self.points_at_self(backend, spec), make_consumer
        )

    def reconcile_consumers(
        self,
        backend,
        stanzas: list[str],
        points_at_self: Callable[[SyncreplSpec], bool],
        make_consumer: Callable[[SyncreplSpec, Any], Any],
    ) -> None:
        """One running consumer per `syncrepl` stanza (a data database's or cn=config's): stanzas naming this
        server are counted and skipped, changed or removed rids stopped, new ones started with the cookie kept
        from the last run."""
        wanted: dict[int, SyncreplSpec] = {}
        backend.self_syncrepl = 0
        for text in stanzas:
            spec = parse_syncrepl(text)
            if points_at_self(spec):
                self.log.log(SYNC, f"syncrepl rid={spec.rid:03d}: provider is this server, ignored")
                backend.self_syncrepl += 1
                continue
            wanted[spec.rid] = spec
        for rid, consumer in list(backend.consumers.items()):
            if rid not in wanted or wanted[rid].text != consumer.spec.text:
                del backend.consumers[rid]
                asyncio.get_running_loop().create_task(consumer.stop())
        if not self.bus.primary:  # consumers run in worker 0 only (server/workers.py)
            wanted.clear()
        for rid, spec in wanted.items():
            if rid not in backend.consumers:
                consumer = make_consumer(spec, self.cookies.pop(rid, None))
                backend.consumers[rid] = consumer
                consumer.start()

    def points_at_self(self, backend, spec: SyncreplSpec) -> bool:
        """slapd ignores a stanza for its own suffix whose provider URL is one of its own listeners."""
        try:
            base = normalize_dn(spec.searchbase, self.schema)
        except ValueError:
            return False
        ours = {normalize_url(u.text) for u in self.urls}
        return base == backend.suffix_ndn and normalize_url(spec.provider) in ours

    def set_server_id(self, server_id: int) -> None:
        """olcServerID changed at run time: new CSNs carry the new ID, never lower than any issued before."""
        self.server_id = server_id
        self.directory.set_server_id(server_id)

    def match_databases(self, config: ServerConfig) -> tuple[list, list, list]:
        """The running databases a new configuration keeps (backend, new config), the ones it adds and the
        backends it drops: a database is known by its directory (two databases cannot share one)."""
        running = {os.path.realpath(b.config.directory): b for b in self.directory.backends}
        kept, added = [], []
        for db in config.data_databases():
            backend = running.pop(os.path.realpath(db.directory), None) if db.directory else None
            if backend is None:
                added.append(db)
            else:
                kept.append((backend, db))
        return kept, added, list(running.values())

    def check_config(self, config: ServerConfig, *, databases_may_change: bool = False) -> None:
        """Refuse a cn=config change the running server could not take (nothing is applied yet).
        `databases_may_change`: an add or delete of an olcDatabase entry, which opens or closes databases."""
        from pyldapd.config.cnconfig import ConfigValueError
        from pyldapd.server.configdb import validate_config

        validate_config(config)  # a serverID URL naming no listener is accepted at run time, as slapd does
        kept, added, dropped = self.match_databases(config)
        shared = [db for db in config.data_databases() if db.directory and [os.path.realpath(d.directory) for d in
                  config.data_databases()].count(os.path.realpath(db.directory)) > 1]  # fmt: skip
        if (
            shared and databases_may_change
        ):  # a database added on the folder of another: LMDB refuses to open it
            running = {
                (b.config.suffix.lower(), os.path.realpath(b.config.directory))
                for b in self.directory.backends
            }
            db = next((d for d in shared if (d.suffix.lower(), os.path.realpath(d.directory)) not in running),
                      shared[-1])  # fmt: skip
            last = "olcDbMaxSize" if db.maxsize else "olcDbIndex" if db.indexes else "olcDbDirectory"
            raise ConfigValueError(f"<{last}> failed startup")
        if any(b.config.suffix.lower() != d.suffix.lower() for b, d in kept) or (
                (added or dropped) and not databases_may_change):  # fmt: skip
            raise ValueError("changing a database's suffix or directory needs a restart")

        def under(dn: str, suffix: str) -> bool:
            try:
                ndn, base = normalize_dn(dn, self.schema), normalize_dn(suffix, self.schema)
            except ValueError:
                return False
            return ndn == base or ndn.endswith("," + base)

        def preceding_suffixes(db) -> list[str]:
            out = []
            for other in config.data_databases():
                if other is db:
                    break
                for suffix in other.suffixes:
                    try:
                        out.append(normalize_dn(suffix, self.schema))
                    except ValueError:
                        pass
            return out

        folders = [os.path.realpath(db.directory) for db in config.data_databases() if db.directory]
        for db in added:  # slapd's checks when it opens a database added over cn=config
            if db.declared_type == "ldif":  # back-ldif checks no path (its writes fail without the folder)
                if not db.suffixes:
                    raise ConfigValueError("<olcDbDirectory> failed startup")
                continue
            if not os.path.isdir(db.directory):
                raise ConfigValueError("olcDbDirectory: value #0: invalid path: No such file or directory")
            # slapd names the last olcMdbConfig setting it handled when the database does not start
            last = "olcDbMaxSize" if db.maxsize else "olcDbIndex" if db.indexes else "olcDbDirectory"
            if folders.count(os.path.realpath(db.directory)) > 1:  # in use by another database (LMDB's lock)
                raise ConfigValueError(f"<{last}> failed startup")
            if db.rootpw and not any(under(db.rootdn, suffix) for suffix in db.suffixes):
                raise ConfigValueError("<olcRootPW> can only be set when rootdn is under suffix")
            if not db.suffixes:
                raise ConfigValueError(f"<{last}> failed startup")
            for suffix in db.suffixes:
                try:
                    ndn = normalize_dn(suffix, self.schema)
                except ValueError:
                    raise ConfigValueError(f'<olcSuffix> invalid DN "{suffix}"') from None
                # slapd refuses a suffix a database before this one serves (a glued subordinate is inserted
                # before its superior, which then does not precede it)
                if any(ndn == other or ndn.endswith("," + other) for other in preceding_suffixes(db)):
                    raise ConfigValueError(
                        f'<olcSuffix> namingContext "{suffix}" already served by a preceding {db.declared_type} database'
                    )
        running = [b for b, _ in kept]
        new = [d for _, d in kept]
        # the schema the changed config builds when the server starts again, from the system schema (not the
        # running one, which may hold pyldapd's default schemas): a definition that needs one the config lacks
        # is refused now, as slapd refuses it, rather than accepted and then failing the next start
        try:
            build_schema(config)
        except StartupError as exc:
            cause = exc.__cause__ or exc.__context__
            raise SchemaError(str(exc), getattr(cause, "slapd_text", "")) from None
        old_access = (self.config.access, [b.config.access for b in running])
        try:
            self.config.access = config.access
            for backend, db in zip(running, new, strict=True):
                backend.config.access, db.access = db.access, backend.config.access
            from pyldapd.server.guard import AccessControl

            control = AccessControl(self.directory)
            for db in added:
                control.build(db.access, db.access_sources, config.access, config.access_sources)
            self.directory.monitor.validate(config)
        finally:
            self.config.access = old_access[0]
            for backend, db, access in zip(running, new, old_access[1], strict=True):
                db.access, backend.config.access = backend.config.access, access

    def apply_config(self, config: ServerConfig) -> None:
        """Make a validated cn=config change effective now, without a restart."""
        from pyldapd.model.filter import FilterEvaluator
        from pyldapd.server.guard import AccessControl

        kept, added, dropped = self.match_databases(config)
        opened = self.open_databases(added)  # first: a database that cannot open leaves everything as it was
        current = self.config
        if (
            config.loglevel != current.loglevel
        ):  # olcLogLevel: the syslog level; -d's debug level stays (slapd)
            current.loglevel = config.loglevel
            self.log.syslog_level = config.loglevel
        logging = ("logfile", "logfile_only", "logfile_rotate")
        if any(getattr(config, name) != getattr(current, name) for name in logging):
            for name in logging:  # olcLogFile* changed: lines go to the new file, rotated anew, from now on
                setattr(current, name, getattr(config, name))
            if self.service is not None:
                self.service.reopen_logfile(current)
        if config.threads != current.threads:  # olcThreads: the supervisor starts or stops workers
            current.threads = config.threads
            if isinstance(self.bus, ProcessBus):
                self.bus.tell_supervisor("_threads", str(worker_count(config)).encode())
            elif worker_count(config) > 1:
                self.log.error("olcThreads: more than one worker process from the next start")
        current.sizelimit, current.timelimit = config.sizelimit, config.timelimit
        current.sizelimit_words, current.timelimit_words = config.sizelimit_words, config.timelimit_words
        current.idletimeout = config.idletimeout
        current.writetimeout = config.writetimeout
        current.conn_max_pending, current.conn_max_pending_auth = (
            config.conn_max_pending,
            config.conn_max_pending_auth,
        )
        gentle = [d for d in config.extra if d[0] == "gentlehup"]  # olcGentleHUP: read by the next SIGHUP
        current.extra = [d for d in current.extra if d[0] != "gentlehup"] + gentle
        current.password_hash = config.password_hash
        current.access, current.access_sources = config.access, config.access_sources
        for name in ("allows", "disallows", "requires", "restrict", "authz_regexp", "referral", "authz_policy", "default_search_base", "readonly", "security",
                     "local_ssf", "max_pdu", "max_pdu_auth", "max_filter_depth", "password_crypt_salt_format"):  # fmt: skip
            setattr(current, name, getattr(config, name))
        for source, text in config.schema_definitions:
            if not already_defined(self.schema, text):
                self.schema.load_text(text, source)
        current.schema_definitions = config.schema_definitions
        if uses_accesslog(config) and self.schema.attribute_type("reqStart") is None:
            # olcModuleLoad: accesslog added over cn=config: slapd knows the accesslog schema from then on
            self.schema.load_file(str(SCHEMA_DIR / "accesslog.schema"))
        current.modules = list(config.modules)
        self.directory.filters = FilterEvaluator(self.schema)
        if config.server_ids != current.server_ids:
            current.server_ids = config.server_ids
            try:
                server_id = choose_server_id(current, self.urls)
            except StartupError:  # no URL names a listener: slapd keeps the ID it has
                server_id = self.server_id
            if server_id != self.server_id:
                self.set_server_id(server_id)
        self.drop_databases(dropped)
        for backend, db in kept:
            target = backend.config
            for name in ("rootdn", "rootpw", "maxsize", "sizelimit", "timelimit", "sizelimit_words", "timelimit_words", "readonly", "access", "access_sources",
                         "limits", "limits_sources", "syncrepl", "updateref", "multiprovider", "overlays",
                         "requires", "restrict", "security", "updatedn", "lastbind", "add_content_acl",
                         "subordinate"):  # fmt: skip
                setattr(target, name, getattr(db, name))
            backend.rootdn_ndn = normalize_dn(target.rootdn, self.schema) if target.rootdn else ""
            if db.indexes != target.indexes:
                target.indexes = db.indexes
                indexes = dict(db.indexes)
                indexes.setdefault("objectClass", set()).add("eq")
                self.rebuild_indexes(backend, indexes)
            self.refresh_replication(backend)
        for target, db in zip(current.databases, config.databases, strict=False):
            if target.type == db.type == "monitor":  # its rules and root, read by server/monitor.py
                for name in ("rootdn", "rootpw", "access", "access_sources"):
                    setattr(target, name, getattr(db, name))
        if added or dropped:  # the running list in the new order: known databases keep their objects
            configs = {id(db): backend.config for backend, db in kept}
            monitor = [db for db in current.databases if db.type == "monitor"]
            current.databases = [configs.get(id(db), db) if db.type != "monitor" else (monitor or [db])[0]
                                 for db in config.databases]  # fmt: skip
            backends = {id(backend.config): backend for backend in self.directory.backends + opened}
            self.directory.backends = [backends[id(db)] for db in current.data_databases()]
        else:
            self.directory.backends = self.directory.backends  # glue links follow olcSubordinate changes
        self.directory.access = AccessControl(self.directory)
        self.directory.configuration_changed()
        for backend in opened:  # syncprov and syncrepl of a new database (later overlays: refresh as above)
            self.refresh_replication(backend)

    def open_databases(self, added: list) -> list:
        """Databases added over cn=config: opened (made if new) and served at once, as slapd 2.5 does."""
        from pyldapd.server.directory import Backend

        opened = []
        try:
            for db in added:
                backend = Backend(db, self.schema)
                opened.append(backend)
                backend.restore_context(self.server_id)
                for csn in backend.context.csns.values():
                    self.directory.csn.observe(csn)
                journal.attach(self.directory, backend)
        except StorageError as exc:
            for backend in opened:
                backend.db.close()
            from pyldapd.config.cnconfig import ConfigValueError

            self.log.error(f"pyldapd: a database added over cn=config cannot be opened: {exc}")
            raise ConfigValueError("<olcDbDirectory> failed startup") from None
        for backend in opened:
            self.log.error(f"database {backend.config.suffix} ({backend.config.directory}) opened")
        return opened

    def rebuild_indexes(self, backend: Any, indexes: dict[str, set[str]]) -> None:
        """A database's new olcDbIndex: set and rebuilt on its writer thread, between two groups, not on the event
        loop (a reindex of a large database takes long). As slapd's back-mdb indexes online in a task, the
        change is answered at once; searches use a new index once it is built (results are the same)."""

        def rebuild(_txn: Any) -> None:
            backend.db.set_indexes(indexes)
            backend.db.reindex()

        try:
            future = backend.db.writer.submit(rebuild, alone=True)
        except RuntimeError:  # not serving: at once
            rebuild(None)
            return

        def done(future: asyncio.Future) -> None:
            failure = None if future.cancelled() else future.exception()
            if failure is not None:
                self.log.error(f"indexes of {backend.config.suffix} not rebuilt: {failure}")

        future.add_done_callback(done)

    def drop_databases(self, dropped: list) -> None:
        """Databases deleted over cn=config: no longer served; closed once their consumers have stopped."""
        if not dropped:
            return
        self.directory.backends = [b for b in self.directory.backends if b not in dropped]
        for backend in dropped:
            consumers = list(backend.consumers.values())
            backend.consumers.clear()

            async def close(backend=backend, consumers=consumers) -> None:
                for consumer in consumers:
                    await consumer.stop()
                backend.close()
                self.log.error(f"database {backend.config.suffix} ({backend.config.directory}) closed")

            asyncio.get_running_loop().create_task(close())

    def new_session(self, local: bool) -> Session:
        if self.worker is None:
            conn_id = next(self.conn_ids)
        else:  # one after the highest any worker gave (each keeps its last in its slot of the shared counters)
            with self.worker.config_share.numbering():
                conn_id = max(FIRST_CONN_ID - 1, self.stats.highest_conn_id()) + 1
                self.stats.last_conn_id = conn_id
        self.stats.last_conn_id = conn_id
        return Session(conn_id=conn_id, local=local)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.directory.configdb is not None and self.directory.configdb.share is not None:
            # a worker forked from the configuration the supervisor read: the cn=config changes made since, by
            # any worker, made effective before the first client (server/configshare.py)
            self.directory.configdb.catch_up_at_start()
        if self.bus.count > 1:  # other workers write the same databases: changes go through the journal
            journal.share(self.directory, self.bus)
        for url in self.urls:
            if url.scheme == "http":  # metrics and health checks (server/metrics.py), not an LDAP listener
                from pyldapd.server.metrics import start_http

                socks = self.prebound.pop(url.text, None) or [None]  # workers: the supervisor's
                if (
                    not self.bus.primary
                ):  # served by worker 0, where the consumers are (readyz, their figures)
                    continue
                for sock in socks:
                    self.http_listeners.append(await start_http(self, url.host, url.port, sock=sock))
                continue
            if url.scheme == "ldaps" and self.tls_context is None:
                raise StartupError(f"{url.text}: ldaps:// needs TLSCertificateFile and TLSCertificateKeyFile")
            if url.text in self.prebound and self.bus.count > 1:  # workers share the supervisor's sockets
                for sock in self.prebound.pop(url.text):
                    self.listeners.append(SharedListener(
                        sock, lambda u=url: LDAPConnection(self, u.text, u.scheme == "ldapi"), self.stats,
                        backlog=LISTEN_BACKLOG,
                        tls=self.tls_context if url.scheme == "ldaps" else None,
                        handshake_timeout=limits.PDU_ARRIVAL_TIMEOUT if url.scheme == "ldaps" else None))  # fmt: skip
                continue
            if url.text in self.prebound:
                for sock in self.prebound.pop(url.text):
                    self.listeners.append(await (
                        loop.create_unix_server(lambda u=url: LDAPConnection(self, u.text, True), sock=sock,
                                                backlog=LISTEN_BACKLOG)
                        if url.scheme == "ldapi" else loop.create_server(
                            lambda u=url: LDAPConnection(self, u.text, False), sock=sock, backlog=LISTEN_BACKLOG,
                            ssl=self.tls_context if url.scheme == "ldaps" else None,
                            ssl_handshake_timeout=limits.PDU_ARRIVAL_TIMEOUT if url.scheme == "ldaps" else None)))  # fmt: skip
                continue
            if url.scheme == "ldapi":
                if os.path.exists(url.path):
                    os.unlink(url.path)
                server = await loop.create_unix_server(
                    lambda u=url: LDAPConnection(self, u.text, True), path=url.path, backlog=LISTEN_BACKLOG
                )
                os.chmod(url.path, 0o777)
            else:
                host = url.host or None
                server = await loop.create_server(
                    lambda u=url: LDAPConnection(self, u.text, False),
                    host=host,
                    port=url.port,
                    reuse_address=True,
                    backlog=LISTEN_BACKLOG,
                    ssl=self.tls_context if url.scheme == "ldaps" else None,
                    # a handshake holds a descriptor before the connection counts: bounded like a request
                    ssl_handshake_timeout=limits.PDU_ARRIVAL_TIMEOUT if url.scheme == "ldaps" else None,
                )
            self.listeners.append(server)
        if self.service is not None and self.worker is None:  # listeners bound, databases open: now the user
            self.service.after_bind(
                self
            )  # the service runs as (workers: the supervisor did it before forking)
        self.log.error(
            f"pyldapd starting (serverID {self.server_id}) on {' '.join(u.text for u in self.urls)}"
        )
        for backend in self.directory.backends:
            self.refresh_replication(backend)
        if self.directory.configdb is not None:  # syncprov and syncrepl of cn=config itself
            self.directory.configdb.refresh_replication()
        self.log.starting = False
        if isinstance(self.bus, ProcessBus):  # the supervisor relays, and says READY=1 once all listen
            self.bus.attach(loop)
            if self.handoff_receiver is not None:
                self.handoff_receiver.attach(loop)
            self.directory.monitor.start_peers(self)  # every worker's connections in any worker's cn=Monitor
            self.stats.accepting(True)  # its share of new connections (server/sharedlisten.py)
            self.bus.tell_supervisor("_ready")
        elif self.service is not None:
            self.service.notify("READY=1", f"STATUS=listening on {' '.join(u.text for u in self.urls)}")

    def stop_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP and gentlehup(self.config) and not self.gentle and not self.stopping.is_set():
            self.gentle_shutdown()
            return
        if not self.stopping.is_set():
            self.log.error(f"daemon: shutdown requested and initiated ({sig.name}).")
        self.stopping.set()

    def gentle_shutdown(self) -> None:
        """slapd's `gentlehup on`: SIGHUP closes the listeners and restricts writes on every database (as
        `readonly` does: unwillingToPerform "operation restricted"); the server stops once the last client has
        gone. Another stop signal (or a second SIGHUP) stops it at once."""
        self.gentle = True
        self.log.error("slapd gentle shutdown")
        self.stats.accepting(False)
        for listener in self.listeners:
            listener.close()
        for backend in self.directory.backends:
            backend.config.readonly = True
        self.gentle_task = asyncio.get_running_loop().create_task(self.stop_when_idle())

    async def stop_when_idle(self) -> None:
        while self.connections and not self.stopping.is_set():
            await asyncio.sleep(0.1)
        if not self.stopping.is_set():
            self.log.error("daemon: no active streams, shutdown initiated.")
            self.stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:  # slapd's: each one a clean shutdown (checkpoint, pid file removed)
            loop.add_signal_handler(sig, self.stop_signal, sig)
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)  # slapd's "wake": not the default (death)
        for sig in early_signals():  # a worker's, that came while it started (server/supervisor.py)
            self.stop_signal(sig)
        await self.start()
        try:
            await self.stopping.wait()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        self.log.error("pyldapd shutting down")
        self.shutting_down = True  # what a connection reads from here on is not served (connection.py)
        self.stats.accepting(False)
        self.handoff_sender = None  # a connection closing now closes here
        if self.handoff_receiver is not None:
            self.handoff_receiver.close()
        if self.service is not None and self.worker is None:
            self.service.notify("STOPPING=1")
        for listener in self.listeners + self.http_listeners:
            listener.close()
        for backend in self.directory.replicated():
            for consumer in list(backend.consumers.values()):
                await consumer.stop()
            backend.consumers.clear()
        if self.directory.configdb is not None:
            self.directory.configdb.backend.close()
        for connection in list(self.connections):
            connection.close()
        for listener in self.listeners + self.http_listeners:
            await listener.wait_closed()
        for url in self.urls if self.worker is None else ():  # workers: the supervisor owns the sockets
            if url.scheme == "ldapi":
                try:
                    os.unlink(url.path)
                except FileNotFoundError:
                    pass
                except OSError as exc:  # after -u, a root-owned folder: left for the next start to replace
                    self.log.error(f"pyldapd: cannot remove {url.path}: {exc.strerror}")
        self.password_pool.shutdown(wait=True, cancel_futures=True)
        self.directory.close()
        if isinstance(self.bus, ProcessBus):
            self.bus.close()
        self.log.error("slapd stopped." if self.worker is None else f"worker {self.worker.index} stopped.")


def gentlehup(config: ServerConfig) -> bool:
    """slapd.conf's global `gentlehup on|off` or cn=config's olcGentleHUP (kept with the directives read as
    given)."""
    values = [args for name, args in config.extra if name == "gentlehup"]
    return bool(values) and bool(values[-1]) and values[-1][0].lower() in ("on", "true", "yes")


def write_pid_files(config: ServerConfig, argv: list[str]) -> None:
    if config.pidfile:
        with open(config.pidfile, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    if config.argsfile:
        with open(config.argsfile, "w") as handle:
            handle.write(" ".join(argv) + "\n")


def remove_pid_files(config: ServerConfig) -> None:
    for path in (config.pidfile, config.argsfile):
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def parse_cookie_overrides(values: list[str]) -> dict[int, str]:
    """`-c rid=NNN[,sid=SSS][,csn=...]`: a cookie that replaces the stored one on that consumer's first run."""
    overrides: dict[int, str] = {}
    for value in values:
        fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
        if "rid" not in fields or not fields["rid"].isdigit():
            raise StartupError(f"-c {value}: a rid=NNN is required")
        rid = int(fields["rid"])
        if rid in overrides:
            raise StartupError(f"-c: rid {rid:03d} given twice")
        overrides[rid] = value
    return overrides


def run_server(config: ServerConfig, urls_text: str, log: Logger, cookies: list[str] | None = None, *,
               config_dir: str | None = None, config_entries: list | None = None,
               service: Service | None = None, prebound: dict[str, list[socket.socket]] | None = None,
               workers: int | None = None) -> int:  # fmt: skip
    """Serve until a stop signal: one process, or (`threads` > 1) a supervisor and its worker processes."""
    try:
        urls = parse_listener_urls(urls_text)
    except ValueError as exc:
        log.error(str(exc))
        return 1
    limits.raise_descriptor_limit()  # the descriptors are the real bound on connections
    # While a worker thread decodes or plans a large request, the event loop gets the GIL back within this; at
    # CPython's default of 5 ms, each of the several hand-overs a request needs may cost that much (issue 13)
    sys.setswitchinterval(0.001)
    LONG_LIVED.install()  # full collections walk only what is new (server/steps.py); workers inherit it
    count = workers or worker_count(config)
    if count > 1:
        return supervise(config, urls, log, cookies, count, config_dir=config_dir, config_entries=config_entries,
                         service=service, prebound=prebound)  # fmt: skip
    write_pid_files(config, sys.argv)
    try:
        return serve(config, urls, log, cookies, config_dir=config_dir, config_entries=config_entries,
                     service=service, prebound=prebound)  # fmt: skip
    finally:
        try:
            remove_pid_files(config)
        except OSError as exc:  # after -u, the pid file's folder must be writable by that user (as for slapd)
            log.error(f"pyldapd: {exc}")
        if service is not None:
            service.close()


def serve(config: ServerConfig, urls: list[ListenerURL], log: Logger, cookies: list[str] | None, *,
          config_dir: str | None, config_entries: list | None, service: Service | None,
          prebound: dict[str, list[socket.socket]] | None, worker: WorkerContext | None = None,
          tls_context: Any = None) -> int:  # fmt: skip
    """One server process's event loop: the whole server, or one worker of several."""
    try:
        import uvloop  # type: ignore[import-not-found]

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> None:
        server = Server(config, urls, log, parse_cookie_overrides(cookies or []), tls_context=tls_context)
        server.service = service
        server.prebound = dict(prebound or {})
        if worker is not None:
            server.use_worker(worker)
        if config_dir is not None:
            from pyldapd.server.configdb import ConfigDatabase

            server.directory.configdb = ConfigDatabase(server, config_dir, config_entries or [])
        elif any(db.type == "config" for db in config.databases):  # slapd -f: cn=config in memory
            from pyldapd.server.configdb import ConfigDatabase

            server.directory.configdb = ConfigDatabase.in_memory(server, config)
        if worker is not None and server.directory.configdb is not None:  # one cn=config in every worker
            server.directory.configdb.attach_share(worker.config_share)
        await server.run()

    try:
        runner(main())
    except (StartupError, OSError, ConfigError, StorageError) as exc:  # ConfigError: access/limits, on start
        log.error(f"pyldapd: {exc}")
        return 1
    return 0


def supervise(config: ServerConfig, urls: list[ListenerURL], log: Logger, cookies: list[str] | None, count: int,
              *, config_dir: str | None, config_entries: list | None, service: Service | None,
              prebound: dict[str, list[socket.socket]] | None) -> int:  # fmt: skip
    """`count` worker processes (server/supervisor.py): every listener bound here first, then shared by all."""
    from pyldapd.server.service import (
        Identity,
        Notifier,
        ServiceError,
        bind_sandbox_listeners,
        preload_for_sandbox,
    )
    from pyldapd.server.supervisor import Supervisor

    bound = dict(prebound or {})
    try:
        bound.update(bind_sandbox_listeners([u for u in urls if u.text not in bound], http=True))
    except ServiceError as exc:
        log.error(f"pyldapd: {exc}")
        return 1
    sockets = [sock for socks in bound.values() for sock in socks]

    def close_listeners() -> None:
        for sock in sockets:
            # the listening socket itself stops, in every worker at once (they share it): otherwise a worker
            # still running would take the clients another one just dropped on its way out, answer their bind,
            # and drop them in turn when its own stop comes (python-ldap's test107_reconnect_restore saw it)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            sock.close()

    def cleanup() -> None:
        close_listeners()
        for url in urls:
            if url.scheme == "ldapi" and url.text not in (prebound or {}):  # -r: outside the sandbox, kept
                try:
                    os.unlink(url.path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.error(f"pyldapd: cannot remove {url.path}: {exc.strerror}")
        try:
            remove_pid_files(config)
        except OSError as exc:
            log.error(f"pyldapd: {exc}")
        if service is not None:
            service.close()

    write_pid_files(config, sys.argv)
    tls_context = None
    try:  # read now, as root if started so (as the single process reads it before it drops privileges)
        tls_context = build_context(config.tls, log.error)
    except TLSSetupError:
        pass  # each worker reports it (and the server stops)
    if service is not None:
        if service.identity.changes:  # what the workers would load later, loaded while files can be read
            preload_for_sandbox()
        try:
            service.become_user(config, urls)
        except StartupError as exc:
            log.error(f"pyldapd: {exc}")
            cleanup()
            return 1

    def run_worker(context: WorkerContext) -> int:
        if service is not None:  # the supervisor speaks to systemd, and did -u/-g already
            service.notifier = Notifier("")
            service.identity = Identity()
        return serve(config, urls, log, cookies, config_dir=config_dir, config_entries=config_entries,
                     service=service, prebound=bound, worker=context, tls_context=tls_context)  # fmt: skip

    return Supervisor(count, log, service, run_worker, cleanup, close_listeners).run()
