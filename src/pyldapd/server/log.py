"""slapd-style logging: one line per event, gated by OpenLDAP's log level bits.

`conn=N op=M SRCH base="..." scope=2 deref=0 filter="(uid=x)"` and `conn=N op=M SEARCH RESULT tag=101 err=0
nentries=1 text=` read as slapd's stats log does, so admins' grep habits carry over.

Where lines go (slapd's rules, see `pyldapd serve`): to stderr in the foreground debug mode (`-d`), else to
syslog (facility `-l`, default LOCAL4, ident `-n`, severity DEBUG as slapd's default); and, with `logfile`, also to
that file, rotated as OpenLDAP 2.6's `logfile-rotate <max> <Mbytes> <hours>` says. Until `configure` is called (a
config being read), everything goes to stderr, so start-up errors are seen where the command was typed.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from typing import TextIO

from pyldapd.config.model import LOG_LEVELS

STATS = LOG_LEVELS["stats"]
STATS2 = LOG_LEVELS["stats2"]
CONNS = LOG_LEVELS["conns"]
CONFIG = LOG_LEVELS["config"]
SYNC = LOG_LEVELS["sync"]
TRACE = LOG_LEVELS["trace"]
FILTER = LOG_LEVELS["filter"]

SYSLOG_FACILITIES = {f"local{n}": 16 + n for n in range(8)}  # syslog(3)'s LOG_LOCAL0..7
SYSLOG_DEBUG = 7  # slapd's default syslog severity (LOG_DEBUG)
# Test seam and for chroots: where the syslog datagram socket is (syslog(3) always uses /dev/log).
SYSLOG_SOCKET_ENV = "PYLDAPD_SYSLOG_SOCKET"


def stamp_line(message: str) -> str:
    stamp = time.time()
    return f"{int(stamp):x}.{int((stamp % 1) * 1e8):08x} {message}\n"


class SyslogSink:
    """RFC 3164 datagrams to the local syslog socket, as glibc's syslog(3) sends them. The socket is connected
    once (before privileges are dropped); when it cannot be reached or its queue is full, lines go to stderr
    (the journal, under systemd) instead of being lost or stalling the server."""

    def __init__(self, ident: str, facility: int, path: str | None = None, *, fallback: bool = True) -> None:
        self.ident = ident
        self.facility = facility
        self.path = path or os.environ.get(SYSLOG_SOCKET_ENV) or "/dev/log"
        self.sock: socket.socket | None = None
        # in the foreground debug mode stderr shows the -d level: syslog lines that cannot be sent are dropped
        # there (as syslog(3) drops them), not written to stderr
        self.fallback = fallback
        self.failed = not fallback
        self.connect()

    def connect(self) -> None:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.connect(self.path)
            sock.setblocking(False)  # a syslog daemon that cannot keep up must not stall the server
            self.sock = sock
        except OSError as exc:
            self.sock = None
            if not self.failed:
                sys.stderr.write(stamp_line(f"syslog: {self.path}: {exc.strerror}; logging to stderr"))
                self.failed = True

    def write(self, message: str) -> None:
        head = f"<{self.facility * 8 + SYSLOG_DEBUG}>{time.strftime('%b %e %H:%M:%S')} {self.ident}[{os.getpid()}]: "
        data = (head + message).encode("utf-8", "replace")
        for _ in range(2):  # the syslog daemon may have restarted: reconnect once
            if self.sock is None:
                self.connect()
            if self.sock is None:
                self.lost(message)
                return
            try:
                self.sock.send(data)
                return
            except BlockingIOError:  # its queue is full: this line goes to stderr rather than nowhere
                self.lost(message)
                return
            except OSError:
                self.sock.close()
                self.sock = None
        self.lost(message)

    def lost(self, message: str) -> None:
        if self.fallback:
            sys.stderr.write(stamp_line(message))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class LogFile:
    """`logfile` with OpenLDAP 2.6's `logfile-rotate max Mbytes hours`: before a line would take the file past
    Mbytes, or once it is older than hours, it is renamed NAME.01 (older ones shift up to NAME.<max>, the oldest
    dropped) and a new one started. 0 turns the size or age check off; no rotation unless configured."""

    def __init__(self, path: str, keep: int = 0, max_mbytes: int = 0, max_hours: int = 0) -> None:
        self.path = path
        self.keep, self.max_bytes, self.max_seconds = keep, max_mbytes * 1024 * 1024, max_hours * 3600
        self.handle: TextIO | None = None
        self.size = 0
        self.opened = 0.0
        self.open()

    def open(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o640)  # slapd's mode for it
        self.handle = open(fd, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 (kept open)
        st = os.fstat(fd)
        self.size = st.st_size
        self.inode = st.st_ino
        self.opened = st.st_ctime  # slapd's measure of the file's age ("not strictly true but close enough")

    def follow(self) -> None:
        """Worker processes (server/supervisor.py) share the file: one of them may have rotated it, and the
        others write to the same file, so the size is the file's, not this process's count."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or st.st_ino != self.inode:
            assert self.handle is not None
            self.handle.close()
            self.open()
        else:
            self.size = st.st_size

    def due(self, extra: int) -> bool:
        if not self.keep:
            return False
        if self.max_bytes and self.size and self.size + extra > self.max_bytes:
            return True
        return bool(self.max_seconds and time.time() - self.opened >= self.max_seconds)

    def rotate(self) -> None:
        assert self.handle is not None
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)  # one process rotates; the others follow
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or st.st_ino != self.inode:  # rotated by another process meanwhile
            self.handle.close()
            self.open()
            return
        self.handle.close()
        for n in range(self.keep, 0, -1):
            older = f"{self.path}.{n:02d}"
            source = self.path if n == 1 else f"{self.path}.{n - 1:02d}"
            if os.path.exists(source):
                os.replace(source, older)
        self.open()

    def write(self, line: str) -> None:
        if self.handle is None:
            return
        data = line.encode("utf-8", "replace")
        try:
            if self.keep:
                self.follow()
            if self.due(len(data)):
                self.rotate()
            self.handle.write(line)
            self.handle.flush()
            self.size += len(data)
        except OSError as exc:  # a full disk must not stop the server: say it where it can be seen
            sys.stderr.write(stamp_line(f"logfile {self.path}: {exc}"))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class Logger:
    """Two levels, as slapd has them (servers/slapd/main.c, bconfig.c): the debug level of `-d` says which lines
    go to stderr in the foreground, and only -d sets it; the syslog level (`loglevel` / olcLogLevel, else `-s`)
    says which lines go to syslog, and a cn=config change of olcLogLevel sets that one alone. `level` is their
    union: whether a line goes anywhere (slapd's LogTest)."""

    def __init__(self, level: int, stream: TextIO | None = None) -> None:
        self._debug_level = self._syslog_level = level
        self.level = level  # the union, kept as one attribute: read for every operation
        self.stream = stream
        self.to_stderr = True
        self.syslog: SyslogSink | None = None
        self.logfile: LogFile | None = None
        self.logfile_only = False
        self.foreground = True
        self.starting = True  # set False once the listeners are up (server/app.py)

    @property
    def debug_level(self) -> int:
        return self._debug_level

    @debug_level.setter
    def debug_level(self, value: int) -> None:
        self._debug_level = value
        self.level = value | self._syslog_level

    @property
    def syslog_level(self) -> int:
        return self._syslog_level

    @syslog_level.setter
    def syslog_level(self, value: int) -> None:
        self._syslog_level = value
        self.level = self._debug_level | value

    def configure(self, *, foreground: bool, syslog: SyslogSink | None = None, logfile: LogFile | None = None,
                  logfile_only: bool = False) -> None:  # fmt: skip
        """Service mode (no -d): syslog; foreground debug mode: stderr at the debug level and, as slapd, syslog
        at the syslog level; a logfile besides either, or instead of stderr with `logfile-only`."""
        self.foreground = foreground
        self.syslog = syslog
        self.logfile = logfile
        self.logfile_only = logfile_only
        self.to_stderr = foreground and not (logfile is not None and logfile_only)

    def enabled(self, bits: int) -> bool:
        return bool(self.level & bits)

    def log(self, bits: int, message: str) -> None:
        if self.level & bits:
            self.write(message, bits)

    def write(self, message: str, bits: int = STATS) -> None:
        """A line to each place whose level takes `bits` (0: an error, shown everywhere). The default is for
        the stats lines that server/connection.py writes once `level & STATS` said some place takes them."""
        line = stamp_line(message)
        if not bits or self.debug_level & bits:
            if self.stream is not None:
                self.stream.write(line)
            elif self.to_stderr:
                sys.stderr.write(line)
        if self.syslog is not None and (not bits or self.syslog_level & bits):
            self.syslog.write(message)
        if self.logfile is not None:
            self.logfile.write(line)

    def error(self, message: str) -> None:
        """Errors are always shown, whatever the level (slapd prints them at level 0 on stderr). Until the server
        is up they also go to stderr in service mode, so a failed start is seen by who started it."""
        self.write(message, 0)
        syslog_on_stderr = self.syslog is not None and self.syslog.sock is None  # its fallback wrote it there
        if self.starting and not self.to_stderr and self.stream is None and not syslog_on_stderr:
            sys.stderr.write(stamp_line(message))

    def close(self) -> None:
        if self.syslog is not None:
            self.syslog.close()
        if self.logfile is not None:
            self.logfile.close()
