"""Connections that write move to worker 0 (issue 13, docs/architecture.md "Workers").

LMDB has one writer at a time across processes, and each worker's writer thread can group only its own
clients' writes: with the writing clients spread over N workers, every fsync carries about 1/N of the writes it
would carry in one process, and the write rate falls as workers are added (measured: 4 writers, 2 workers, about
0.65 of one worker's rate). Forwarding each write to worker 0 and its answer back cost as much as it saved (two
more process wake-ups per write). So the connection itself moves, once: when a connection on worker k > 0 sends
its first update request (add, delete, modify, modrdn), the worker hands the socket (SCM_RIGHTS) and the
connection's state to worker 0 and forgets it; worker 0 adopts it and runs the request, and everything after it,
as if it had accepted it. The client sees one connection throughout. Writes then group in one process, and the
workers keep sharing the reads.

A connection moves only when nothing of it is in flight or kept in its worker: no TLS (the session keys are in
the worker's memory), no persistent or paged search, no operation running or answer unsent, and what it sent
after the request fits in one message. Otherwise it stays and its writes run where it is, as before.

The two ends are a datagram socketpair the supervisor makes before the first fork (server/supervisor.py):
worker 0 holds the receiving end and the others the sending end, so that only the server's own processes can
hand a worker a connection (and an identity with it). A handoff that cannot be sent at once (worker 0 busy
restarting, its queue full) is not made: the connection stays.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

from pyldapd.server import limits
from pyldapd.server.directory import Session

if TYPE_CHECKING:
    from pyldapd.server.app import Server
    from pyldapd.server.connection import LDAPConnection

MOST_PENDING = 48 * 1024  # octets the client sent after the write request that go with the connection
MOST_MESSAGE = MOST_PENDING + 8 * 1024  # + the state
_SESSION_FIELDS = tuple(f.name for f in fields(Session) if f.name != "paged")


def movable(conn: LDAPConnection) -> bool:
    """The connection has nothing in flight or kept here (see the module docstring)."""
    session = conn.session
    transport = conn.transport
    return (
        not conn.server.shutting_down
        and not conn.server.gentle
        and transport is not None
        and not transport.is_closing()
        and not session.tls
        and not conn.starting_tls
        and session.paged is None
        and not conn.busy
        and conn.job is None
        and not conn.write_paused
        and not conn.held_pdus
        and not conn.closing
        and limits.outstanding(conn) == 0
        # worker 0 takes connections: not starting again, stopping, nor in a gentle shutdown (then it may stop
        # while this worker still serves; a connection handed to it would wait for the whole server's stop)
        and conn.server.stats.accepting_at(0)
    )


def encode(conn: LDAPConnection, pending: bytes, sender: int) -> bytes:
    state = {
        "session": {name: value for name, value in asdict(conn.session).items() if name in _SESSION_FIELDS},
        "listener": conn.listener_url,
        "local": conn.local,
        "opened_at": conn.opened_at,
        "op_count": conn.op_count,
        "ops_completed": conn.ops_completed,
        "reads": conn.reads,
        "write_waits": conn.write_waits,
        "max_pdu": conn.framer.max_pdu_size,
        "sender": sender,
    }
    head = json.dumps(state).encode()
    return len(head).to_bytes(4, "big") + head + pending


def decode(message: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(message[:4], "big")
    return json.loads(message[4 : 4 + size]), message[4 + size :]


class Sender:
    """A worker k > 0's end: `send` hands a connection to worker 0."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        sock.setblocking(False)

    def send(self, conn: LDAPConnection, pending: bytes) -> bool:
        """Hand the connection's socket, state and `pending` octets (its requests from the write on) to worker 0;
        False when it cannot go now (it stays here, nothing of it changed)."""
        if len(pending) > MOST_PENDING or conn.transport is None:
            return False
        sock = conn.transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            socket.send_fds(
                self.sock, [encode(conn, pending, self.index)], [sock.fileno()], socket.MSG_DONTWAIT
            )
        except OSError:  # full (worker 0 is slow or starting again), or too large: not now
            return False
        return True


class Receiver:
    """Worker 0's end: adopts the connections the other workers hand over."""

    def __init__(self, sock: socket.socket, server: Server) -> None:
        self.sock = sock
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set[asyncio.Task] = set()
        sock.setblocking(False)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self.readable)

    def close(self) -> None:
        """This worker stops: no more adoptions. Those already sent (a worker that checked just before this
        one stopped accepting) are closed, as any connection at a stop, rather than left waiting."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
            self.loop = None
        for _ in range(256):
            try:
                _message, fds, _flags, _address = socket.recv_fds(self.sock, MOST_MESSAGE, 4)
            except OSError:  # (BlockingIOError: none left)
                return
            for fd in fds:
                socket.close(fd)

    def readable(self) -> None:
        for _ in range(64):  # a bounded batch: the loop's other work goes on between batches
            try:
                message, fds, _flags, _address = socket.recv_fds(self.sock, MOST_MESSAGE, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.server.log.error(f"pyldapd: handoff: {exc}")
                return
            if len(fds) != 1:  # (never sent so: the senders are this server's own workers)
                for fd in fds:
                    socket.close(fd)
                continue
            sock = socket.socket(fileno=fds[0])
            if self.server.shutting_down or self.loop is None:
                sock.close()  # as a connection accepted while stopping: closed unanswered
                continue
            try:
                state, pending = decode(message)
            except ValueError:  # (never sent so either)
                sock.close()
                continue
            task = self.loop.create_task(self.adopt(sock, state, pending))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def adopt(self, sock: socket.socket, state: dict[str, Any], pending: bytes) -> None:
        from pyldapd.server.connection import LDAPConnection

        session = Session(**state["session"])
        sock.setblocking(False)
        conn = LDAPConnection(self.server, state["listener"], state["local"], session=session, moved=state)
        try:
            assert self.loop is not None
            await self.loop.connect_accepted_socket(lambda: conn, sock)
        except (OSError, ConnectionError):  # the client went meanwhile
            if conn.transport is None:  # no transport owns the socket: close it here
                sock.close()
            return
        conn.resume(pending)
