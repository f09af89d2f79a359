"""cn=config in every worker process (issue 13): the shared log of cn=config operations and its lock.

With `threads N` > 1 every worker serves cn=config from its own memory (server/configdb.py). A change made in
one worker (an ldapmodify over ldapi, or worker 0's syncrepl consumer of another server's cn=config) must take
effect in all of them, in the same order, exactly once. The supervisor creates one `ConfigShare` before it
forks the workers: an anonymous memory file (memfd) that every worker inherits, which is both

- the lock: a POSIX record lock (fcntl) on its first byte. POSIX locks belong to a process, so a worker that
  dies holding it (kill -9) frees it; the workers of one server are the only processes that hold the
  descriptor. A cn=config write takes it, first applies what other workers logged and it has not applied yet,
  then validates and applies its own change, appends it to the log, writes slapd.d and lets go;
- the log: a header (magic, record count, end offset) and length-prefixed records written and read with
  pwrite/pread at explicit offsets (no shared file position). A record is written before the header counts it,
  so a reader that trusts the count (without the lock) never reads half a record.

The other workers hear ("config", count) on the bus (server/workers.py) and apply the records they have not
applied, through the same code path as the writer, without writing slapd.d. A worker forked later starts from
the configuration the supervisor read before the first fork and applies the whole log (folded into one
change: server/configdb.py `catch_up_at_start`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

from pyldapd.model.entry import Attribute, Entry

MAGIC = b"PYLDCFG1"
HEADER = struct.Struct("<8sQQ")  # magic, records logged, offset after the last record
LENGTH = struct.Struct("<I")
# a worker that waits this long for the lock of a cn=config write that takes milliseconds has met a bug: it goes
# on waiting, loudly (a dead holder's lock is freed by the kernel, so this is a live worker stuck under it)
LOCK_PATIENCE = 30.0


class ConfigShare:
    """The memfd that carries the cn=config lock and operation log, inherited by every worker."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.depth = 0  # nested holds in this process (a client write takes it, then commit within it)
        self.appended = False  # records appended during the current hold: broadcast when released

    @classmethod
    def create(cls) -> ConfigShare:
        """Called by the supervisor before forking (the descriptor is inherited across fork; CLOEXEC keeps it
        out of programs a worker might exec)."""
        fd = os.memfd_create("pyldapd-cn-config", os.MFD_CLOEXEC)
        os.pwrite(fd, HEADER.pack(MAGIC, 0, HEADER.size), 0)
        return cls(fd)

    def close(self) -> None:
        os.close(self.fd)

    # -- the numbering lock ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def numbering(self) -> Iterator[None]:
        """Held while a worker takes the next conn=N, so that the workers number connections one after another
        as slapd does: a byte of its own (the configuration lock's is byte 0), held for microseconds, and let go
        by the kernel if the worker dies holding it."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 1)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 1)

    # -- the lock -------------------------------------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the lock if free (or already held by this process: nested). False: another worker has it."""
        if self.depth:
            self.depth += 1
            return True
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except (BlockingIOError, PermissionError):
            return False
        self.depth = 1
        self.appended = False
        return True

    def lock(self, log: Any = None) -> None:
        """Take the lock, waiting for another worker's write (milliseconds) in short sleeps."""
        started = time.monotonic()
        warned = False
        delay = 0.0005
        while not self.try_lock():
            if not warned and time.monotonic() - started > LOCK_PATIENCE:
                warned = True
                if log is not None:
                    log.error("cn=config: another worker has held the configuration lock for 30 s")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def unlock(self) -> bool:
        """Let go of one hold; True when the lock is free again and records were appended during the hold."""
        self.depth -= 1
        if self.depth:
            return False
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)
        appended, self.appended = self.appended, False
        return appended

    @property
    def held(self) -> bool:
        return self.depth > 0

    # -- the log --------------------------------------------------------------------------------------------

    def header(self) -> tuple[int, int]:
        magic, count, end = HEADER.unpack(os.pread(self.fd, HEADER.size, 0))
        if magic != MAGIC:
            raise RuntimeError("cn=config operation log: bad header")
        return count, end

    def append(self, record: dict[str, Any]) -> tuple[int, int]:
        """Log one operation (the lock held); returns its sequence number (1, 2...) and the offset after it."""
        if not self.depth:
            raise RuntimeError("cn=config operation log: append without the lock")
        payload = json.dumps(record, separators=(",", ":")).encode()
        count, end = self.header()
        data = LENGTH.pack(len(payload)) + payload
        written = os.pwrite(self.fd, data, end)
        if written != len(data):
            raise OSError("cn=config operation log: short write")
        os.pwrite(self.fd, HEADER.pack(MAGIC, count + 1, end + len(data)), 0)  # now readers see it
        self.appended = True
        return count + 1, end + len(data)

    def read_after(self, seq: int, offset: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Records after sequence `seq` (which ends at `offset`; 0, 0 for the start): (seq, end offset, record)."""
        count, _ = self.header()
        if offset == 0:
            offset = HEADER.size
        while seq < count:
            (length,) = LENGTH.unpack(os.pread(self.fd, LENGTH.size, offset))
            payload = os.pread(self.fd, length, offset + LENGTH.size)
            if len(payload) != length:
                raise RuntimeError("cn=config operation log: short record")
            seq += 1
            offset += LENGTH.size + length
            yield seq, offset, json.loads(payload)

    def count(self) -> int:
        return self.header()[0]


# -- entries in records: JSON, values base64 (cn=config values are text, but binary ones exist: olcRootPW) ----


def encode_entry(entry: Entry) -> list[Any]:
    return [entry.dn, [[key, a.name, [base64.b64encode(v).decode() for v in a.values]]
                       for key, a in entry.attrs.items()]]  # fmt: skip


def decode_entry(data: list[Any]) -> Entry:
    dn, attrs = data
    entry = Entry(dn)
    for key, name, values in attrs:
        entry.attrs[key] = Attribute(name, [base64.b64decode(v) for v in values])
    return entry
