"""Running as a system service, as slapd does: `-u user -g group` (privileges dropped once the listeners are bound
and the databases open), systemd's readiness protocol, slapd's stop signals.

Files owned accordingly. slapd itself chowns nothing (Debian's maintainer scripts chown /var/lib/ldap and
/etc/ldap/slapd.d to openldap). A packaged pyldapd has no such scripts to lean on, so before it drops privileges
it hands to the service user what it must still write: each database directory and its files, the slapd.d tree
(cn=config changes are written back), the pid and args files and the logfile, and the ldapi sockets it created.
Folders above those stay as they are: the pid file's and logfile's folders must be writable by that user for the
pid file to be removed at stop and the logfile rotated (as /run/slapd and /var/log/slapd are for slapd).

Sandbox (`-r dir`), in slapd's order (main.c): the syslog socket is connected (slapd's openlog with LOG_NDELAY)
and the listeners bound, then chdir(dir) and chroot(dir), then -u/-g, then the configuration is read and the
databases opened: -f/-F, `directory`, the pid file, TLS files, logfile are all paths inside dir; ldapi sockets are
bound outside (slapd cannot remove them at stop either, and neither does pyldapd). slapd is one binary with its
libraries mapped before the chroot; Python loads modules and data files lazily, so everything pyldapd could load
later (all its modules, the stdlib and third-party modules it imports inside functions, the shipped schema files,
OpenSSL's and the time zone's data) is loaded first and nothing of Python is needed inside dir. User and group
names are resolved, with the user's supplementary groups, before the chroot: dir needs no /etc/passwd (slapd
resolves them inside). Host names in syncrepl provider URLs are resolved inside dir, as for slapd (/etc/hosts or
/etc/resolv.conf there, or IP addresses).

sd_notify. systemd's protocol is one datagram of `KEY=VALUE` lines to the unix socket named by $NOTIFY_SOCKET
(an abstract address when it starts with `@`); it needs no library. The socket is connected at start-up, while
still root, so the messages still reach systemd after the privilege drop.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyldapd.config.model import ServerConfig
from pyldapd.server.listeners import ListenerURL
from pyldapd.server.log import LogFile, Logger

if TYPE_CHECKING:
    from pyldapd.server.app import Server

# slapd stops cleanly on each of these (daemon.c: SIGHUP unless gentlehup, SIGINT, SIGTERM, SIGUSR2).
STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class ServiceError(Exception):
    pass


@dataclass
class Identity:
    """Who to become: -u (a name or a number) and -g (likewise); with -u alone, the user's own group."""

    uid: int | None = None
    gid: int | None = None
    user_name: str | None = None
    groups: list[int] | None = None  # the user's supplementary groups (initgroups), read before any chroot

    @property
    def changes(self) -> bool:
        return self.uid is not None or self.gid is not None


def resolve_identity(user: str | None, group: str | None) -> Identity:
    identity = Identity()
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except (KeyError, OverflowError):
            if not user.isdigit():
                raise ServiceError(f"-u {user}: no such user") from None
            identity.uid = int(user)  # a bare number names a uid even without a passwd entry, as in slapd
        else:
            identity.uid, identity.gid, identity.user_name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if group:
        try:
            identity.gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except (KeyError, OverflowError):
            if not group.isdigit():
                raise ServiceError(f"-g {group}: no such group") from None
            identity.gid = int(group)
    if identity.user_name and identity.gid is not None:
        identity.groups = os.getgrouplist(identity.user_name, identity.gid)
    return identity


class Notifier:
    """sd_notify(3) without libsystemd: no-op when $NOTIFY_SOCKET is not set."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.sock: socket.socket | None = None
        self.problem = ""
        if not address:
            return
        if address.startswith("@"):
            address = "\0" + address[1:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(address)
        except OSError as exc:  # as sd_notify(3): not being able to tell is no reason not to serve
            sock.close()
            self.problem = f"NOTIFY_SOCKET {address!r}: {exc.strerror}"
            return
        sock.setblocking(False)  # a stalled manager must not stall the server
        self.sock = sock

    def send(self, *fields: str) -> None:
        if self.sock is None:
            return
        try:
            self.sock.send("\n".join(fields).encode())
        except OSError:
            pass  # systemd gone (or never listening): nothing to tell

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Service:
    def __init__(self, identity: Identity, log: Logger, config: ServerConfig, config_dir: str | None = None,
                 notifier: Notifier | None = None) -> None:  # fmt: skip
        self.identity = identity
        self.log = log
        self.config = config
        self.config_dir = config_dir
        self.notifier = notifier or Notifier("")

    def notify(self, *fields: str) -> None:
        self.notifier.send(*fields, f"MAINPID={os.getpid()}")

    def owned_paths(self, directories: list[str], urls: list[ListenerURL]) -> list[tuple[str, bool]]:
        """(path, recursive) of what the service user must be able to write after the drop."""
        paths: list[tuple[str, bool]] = [(directory, True) for directory in directories if directory]
        if self.config_dir:
            paths.append((self.config_dir, True))
        for path in (self.config.pidfile, self.config.argsfile, self.config.logfile):
            if path:
                paths.append((path, False))
        paths += [(u.path, False) for u in urls if u.scheme == "ldapi"]
        return paths

    def after_bind(self, server: Server) -> None:
        """One process: the databases are open, the listeners bound; now the service user."""
        self.change_identity([b.config.directory for b in server.directory.backends], server.urls)

    def become_user(self, config: ServerConfig, urls: list[ListenerURL]) -> None:
        """The supervisor of worker processes, before it forks them: the listeners are bound, the databases
        are opened later by the workers (as that user), so their folders are handed over as they are."""
        self.change_identity([db.directory for db in config.data_databases()], urls)

    def change_identity(self, directories: list[str], urls: list[ListenerURL]) -> None:
        identity = self.identity
        if not identity.changes:
            return
        uid = -1 if identity.uid is None else identity.uid
        gid = -1 if identity.gid is None else identity.gid
        if os.geteuid() == 0:
            for path, recursive in self.owned_paths(directories, urls):
                chown_tree(path, uid, gid, recursive)
        try:
            if identity.gid is not None and identity.gid != os.getegid():
                os.setgroups(identity.groups or [identity.gid])  # initgroups(3)'s list, read before a chroot
                os.setgid(identity.gid)
            elif identity.groups and os.geteuid() == 0:
                os.setgroups(identity.groups)
            if identity.uid is not None and identity.uid != os.geteuid():
                os.setuid(identity.uid)
        except OSError as exc:
            from pyldapd.server.app import StartupError

            who = " ".join(
                f"-{k} {v}" for k, v in (("u", identity.uid), ("g", identity.gid)) if v is not None
            )
            raise StartupError(f"{who}: cannot change identity: {exc.strerror}") from None
        self.log.error(f"pyldapd: running as uid {os.getuid()} gid {os.getgid()}")

    def reopen_logfile(self, config: ServerConfig) -> None:
        old = self.log.logfile
        try:
            new = open_logfile(config)
        except OSError as exc:  # validated already; a file that cannot be opened keeps the old one
            self.log.error(f"pyldapd: logfile {config.logfile}: {exc.strerror}")
            return
        self.log.configure(foreground=self.log.foreground, syslog=self.log.syslog, logfile=new,
                           logfile_only=config.logfile_only)  # fmt: skip
        if old is not None:
            old.close()

    def close(self) -> None:
        self.notifier.close()
        self.log.close()


def open_logfile(config: ServerConfig) -> LogFile | None:
    if not config.logfile:
        return None
    keep, mbytes, hours = config.logfile_rotate or (0, 0, 0)
    return LogFile(config.logfile, keep, mbytes, hours)


def chown_tree(path: str, uid: int, gid: int, recursive: bool) -> None:
    if not os.path.lexists(path):
        return
    os.lchown(path, uid, gid)
    if recursive and os.path.isdir(path) and not os.path.islink(path):
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(top, name), uid, gid)


# Loaded inside functions (by pyldapd or by the stdlib on first use): imported before a chroot, each package
# with all its submodules (lmdb, for one, imports a helper module when the first environment opens).
LAZY_MODULES = ("crypt", "getpass", "ssl", "traceback")
LAZY_PACKAGES = ("argon2", "asyncio", "concurrent", "encodings", "lmdb", "pyldapd", "uvloop")
NOT_PRELOADED = ("lmdb.cffi",)  # py-lmdb's other binding (unused: the C extension is): importing it compiles


def preload_for_sandbox() -> None:
    """Load now what the server could otherwise load from the file system later (see the module's text)."""
    import ctypes
    import hashlib
    import importlib
    import pkgutil
    import ssl
    import time
    import warnings

    with warnings.catch_warnings():  # crypt's deprecation notice is not the admin's concern
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in LAZY_MODULES:
            importlib.import_module(name)
        for name in LAZY_PACKAGES:
            try:
                package = importlib.import_module(name)
            except ImportError:  # optional (uvloop, argon2): the server will not ask for it either
                continue
            for info in pkgutil.walk_packages(package.__path__, f"{name}."):
                if info.name.endswith("__main__") or "test" in info.name or info.name in NOT_PRELOADED:
                    continue
                try:
                    importlib.import_module(info.name)
                except Exception:  # noqa: BLE001 (another platform's or an unused backend's module)
                    pass
    from pyldapd.config.cnconfig import config_schema
    from pyldapd.model.schema import Schema

    Schema.default()  # the shipped schema files, read once and cached
    config_schema()  # olc.schema, likewise
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # OpenSSL's configuration and providers loaded
    hashlib.sha256(b"").digest()
    try:  # glibc loads it for thread exit and cancellation ("libgcc_s.so.1 must be installed": slapd's abort)
        ctypes.CDLL("libgcc_s.so.1")
    except OSError:
        pass
    time.localtime()  # the time zone read once: glibc keeps it (log times stay local, not UTC)


def bind_sandbox_listeners(urls: list[ListenerURL], *, http: bool = False) -> dict[str, list[socket.socket]]:
    """The LDAP listeners bound before a chroot, as slapd binds them (ldapi paths outside the sandbox; host
    names resolved outside it), or before worker processes are forked (`http`: the metrics listener too, which
    they share as well). The server takes them over when it starts (Server.start)."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for url in urls:
            if url.scheme == "http" and not http:  # bound at start: a TCP port needs no file
                continue
            socks: list[socket.socket] = []
            bound[url.text] = socks
            if url.scheme == "ldapi":
                if os.path.exists(url.path):
                    os.unlink(url.path)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(url.path)
                os.chmod(url.path, 0o777)
                continue
            for family, kind, proto, _, address in socket.getaddrinfo(
                url.host or None, url.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            ):
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio's create_server: one socket per family
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        for socks in bound.values():
            for sock in socks:
                sock.close()
        raise ServiceError(f"{url.text}: {exc.strerror or exc}") from None
    return bound


def enter_sandbox(path: str) -> None:
    """slapd's -r: chdir(dir), chroot(dir), so relative paths then start at the sandbox's root. A relative dir is
    taken from the current folder (slapd's chroot after its chdir would look for dir/dir)."""
    path = os.path.abspath(path)
    for step, call in (("chdir", os.chdir), ("chroot", os.chroot)):
        try:
            call(path)
        except OSError as exc:
            raise ServiceError(f"-r {path}: {step}: {exc.strerror}") from None
    os.chdir("/")
