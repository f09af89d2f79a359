"""Worker processes (issue 13): the interface the rest of the server uses to talk to the other workers.

`pyldapd serve` with `threads N` (slapd.conf) / `olcThreads` (cn=config) runs N worker processes that share the
listening sockets and the LMDB environments. The parts of the server that must see what another worker did (a
commit's journal records, a cn=config change, the shared counters) use the bus below; a single-process server
has a `SoloBus` whose broadcasts go nowhere.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Callable


class WorkerBus:
    """Messages between the workers of one server, delivered on each worker's event loop.

    `index` is this worker's number (0 .. count-1); worker 0 runs what must run once per server (syncrepl
    consumers, logpurge). `broadcast` never blocks the caller; messages of one sender arrive in the order sent.
    """

    index: int = 0
    count: int = 1

    def broadcast(self, kind: str, payload: bytes = b"") -> None:
        """Send (kind, payload) to every other worker."""
        raise NotImplementedError

    def subscribe(self, kind: str, handler: Callable[[int, bytes], None]) -> None:
        """Call handler(sender index, payload) on this worker's loop for each message of `kind` from another worker."""
        raise NotImplementedError

    def send_to(self, index: int, kind: str, payload: bytes = b"") -> None:
        """Send (kind, payload) to worker `index` only (dropped if it is not running)."""
        raise NotImplementedError

    @property
    def primary(self) -> bool:
        return self.index == 0


class SoloBus(WorkerBus):
    """The bus of a server that runs one process: nobody else to tell."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Callable[[int, bytes], None]]] = {}

    def broadcast(self, kind: str, payload: bytes = b"") -> None:
        return None

    def send_to(self, index: int, kind: str, payload: bytes = b"") -> None:
        return None

    def subscribe(self, kind: str, handler: Callable[[int, bytes], None]) -> None:
        self.handlers.setdefault(kind, []).append(handler)


# -- the real bus: one SOCK_SEQPACKET socketpair per worker, relayed by the supervisor ---------------------------
#
# Wire format. Worker -> supervisor: kind length (1 byte), kind (ASCII), payload. Supervisor -> worker: sender
# index (2 bytes, big-endian; SUPERVISOR for the supervisor's own messages), then the same. Kinds that start with
# "_" are between a worker and the supervisor only (never relayed): "_ready" (this worker listens), "_threads"
# (olcThreads changed: the wanted count), "_count" (the supervisor's: the number of workers is now N), "_to"
# (target index, 2 bytes, then a message for that worker only: `send_to`).
# "resync" (from SUPERVISOR) tells a worker that messages meant for it were dropped (see Supervisor.QUEUE_LIMIT):
# whoever keeps state from bus messages catches up from storage when it comes.

MAX_MESSAGE = 64 * 1024  # a message is a notice (a sequence number, a count), never data
SUPERVISOR = 0xFFFF
RESYNC = "resync"


def default_workers() -> int:
    """The number of worker processes when the config sets none: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_count(config) -> int:
    """`threads` (slapd.conf) / `olcThreads` (cn=config), else default_workers()."""
    return config.threads or default_workers()


def encode(kind: str, payload: bytes) -> bytes:
    name = kind.encode("ascii")
    if not 0 < len(name) < 256:
        raise ValueError(f"bus message kind {kind!r}: 1 to 255 ASCII characters")
    message = bytes([len(name)]) + name + payload
    if len(message) > MAX_MESSAGE:
        raise ValueError(
            f"bus message {kind!r} of {len(payload)} bytes: a bus message is at most {MAX_MESSAGE}"
        )
    return message


def decode(message: bytes) -> tuple[str, bytes]:
    size = message[0]
    return message[1 : 1 + size].decode("ascii"), message[1 + size :]


class ProcessBus(WorkerBus):
    """A worker's end of its socketpair to the supervisor. `attach` (on the worker's loop) starts delivery;
    messages that arrive before it wait in the socket."""

    def __init__(self, index: int, count: int, sock: socket.socket, log=None) -> None:
        self.index = index
        self.count = count
        self.sock = sock
        self.log = log
        self.handlers: dict[str, list[Callable[[int, bytes], None]]] = {}
        self.outbox: deque[bytes] = deque()  # sent while the socket was full: flushed when it drains
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_count: list[Callable[[int], None]] = []  # called when the supervisor changes the count
        self.closed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self.readable)
        if self.outbox:
            loop.add_writer(self.sock.fileno(), self.writable)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()

    def broadcast(self, kind: str, payload: bytes = b"") -> None:
        if kind.startswith("_"):
            raise ValueError(f"bus message kind {kind!r}: names starting with '_' are the supervisor's")
        self.send(encode(kind, payload))

    def send_to(self, index: int, kind: str, payload: bytes = b"") -> None:
        if kind.startswith("_"):
            raise ValueError(f"bus message kind {kind!r}: names starting with '_' are the supervisor's")
        self.send(encode("_to", index.to_bytes(2, "big") + encode(kind, payload)))

    def tell_supervisor(self, kind: str, payload: bytes = b"") -> None:
        self.send(encode(kind, payload))

    def subscribe(self, kind: str, handler: Callable[[int, bytes], None]) -> None:
        self.handlers.setdefault(kind, []).append(handler)

    def send(self, message: bytes) -> None:
        if self.closed:
            return
        if not self.outbox:
            try:
                self.sock.send(message)
                return
            except BlockingIOError:
                pass
            except OSError:  # the supervisor is gone: PR_SET_PDEATHSIG ends this process anyway
                return
        self.outbox.append(message)  # bounded by the supervisor reading: it always reads
        if self.loop is not None and len(self.outbox) == 1:
            self.loop.add_writer(self.sock.fileno(), self.writable)

    def writable(self) -> None:
        while self.outbox:
            try:
                self.sock.send(self.outbox[0])
            except BlockingIOError:
                return
            except OSError:
                self.outbox.clear()
                break
            self.outbox.popleft()
        if self.loop is not None:
            self.loop.remove_writer(self.sock.fileno())

    def readable(self) -> None:
        for _ in range(256):  # a bounded batch: the loop's other work goes on between batches
            try:
                data = self.sock.recv(MAX_MESSAGE + 2)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the supervisor is gone
                if self.loop is not None:
                    self.loop.remove_reader(self.sock.fileno())
                return
            self.deliver(int.from_bytes(data[:2], "big"), *decode(data[2:]))

    def deliver(self, sender: int, kind: str, payload: bytes) -> None:
        if kind == "_count":
            self.count = int(payload)
            for callback in list(self.on_count):
                callback(self.count)
            return
        for handler in list(self.handlers.get(kind, ())):
            try:
                handler(sender, payload)
            except Exception as exc:  # noqa: BLE001 (one subscriber's bug must not stop the others' messages)
                if self.log is not None:
                    self.log.error(f"pyldapd: worker {self.index}: bus handler for {kind!r} failed: {exc!r}")
