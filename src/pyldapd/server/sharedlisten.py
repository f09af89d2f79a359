"""Accepting on a listening socket that every worker shares, so that the workers hold about as many clients each.

LDAP connections live long (an nslcd or sssd pool, a load tool's threads), so whichever worker happens to be in
accept() when a burst of connects arrives keeps that share for good: ldclt's ten connections were measured split
7/4, 4/7, 5/6 and 3/8 over two workers, and the busier worker's clients then wait on its one core. uvloop's
listener (libuv) accepts until the backlog is empty, which makes a burst land in one worker.

Here a worker accepts one connection per wake-up, and only when no other accepting worker holds fewer clients
(the counts are the shared counter table's, server/stats.py). A worker that holds more defers for `DEFER`
seconds, then takes one connection of those still waiting; while the others accept nothing it goes on so, one
per `DEFER`, for `STALLED` rounds (a peer without CPU for a few ms, on a loaded machine, gets its share when it
wakes), and after that takes everything waiting (up to `BURST`), so a frozen or dying peer never makes a client
wait longer than STALLED x DEFER.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import ssl
from collections.abc import Callable

from pyldapd.server.stats import Stats

DEFER = 0.002  # how long a worker with more clients leaves a waiting connection to the others
BURST = 64  # connections taken at once when the others left them waiting for STALLED rounds
STALLED = 10  # rounds of DEFER without an accept elsewhere before a worker takes everything waiting
RETRY_AFTER_EMFILE = 1.0  # out of descriptors: asyncio's accept_retry_delay
GONE = {errno.EBADF, errno.EINVAL, errno.ENOTSOCK}  # the listener was shut down or closed (stop, gentle stop)


class SharedListener:
    """One worker's accept loop on a listening socket inherited from the supervisor (asyncio.Server's close and
    wait_closed, which is what the Server uses)."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        stats: Stats,
        *,
        backlog: int,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.fd = sock.fileno()
        self.protocol_factory = protocol_factory
        self.stats = stats
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.handshakes: set[asyncio.Task] = set()
        self.watching = False
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.seen_elsewhere = 0  # stats.accepted_elsewhere() when this worker began to defer
        self.stalled_rounds = 0  # rounds of deferring in a row during which no other worker accepted
        sock.setblocking(False)
        sock.listen(backlog)  # bound by the supervisor; listen() again only sets the backlog
        self.watch()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """As asyncio.Server's: the listening socket while open (cn=Monitor's listener addresses)."""
        return () if self.closed else (self.sock,)

    def is_serving(self) -> bool:
        """As asyncio.Server's: open and watching the socket (or about to again, after deferring)."""
        return not self.closed

    def watch(self) -> None:
        if not self.closed and not self.watching:
            self.loop.add_reader(self.fd, self.readable)
            self.watching = True

    def unwatch(self) -> None:
        if self.watching:
            self.loop.remove_reader(self.fd)
            self.watching = False

    def readable(self) -> None:
        if self.stats.fewer_connections_elsewhere():
            self.unwatch()
            self.seen_elsewhere = self.stats.accepted_elsewhere()
            self.timer = self.loop.call_later(DEFER, self.after_deferring)
            return
        self.stalled_rounds = 0
        self.accept()

    def after_deferring(self) -> None:
        """What waits after DEFER: one connection is taken (the next ones are shared again), or everything
        waiting (up to BURST) once the others have accepted nothing for STALLED rounds in a row (frozen or
        dying: a burst then waits STALLED x DEFER once, not that long per connection)."""
        self.timer = None
        if self.closed:
            return
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if self.stats.accepted_elsewhere() == self.seen_elsewhere:
            self.stalled_rounds += 1
        else:
            self.stalled_rounds = 0
        stalled = self.stalled_rounds >= STALLED
        if stalled:
            self.stalled_rounds = 0
        for _ in range(BURST if stalled else 1):
            if not poller.poll(0) or not self.accept() or self.timer is not None:
                break
        if self.timer is None:  # (accept may have paused for descriptors: its timer watches again)
            self.watch()

    def accept(self) -> bool:
        """Take one waiting connection; False when there was none to take (or it could not be taken)."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False  # another worker took it, or the client gave up
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.unwatch()  # as asyncio does: pause rather than spin on a connection that cannot be taken
                self.timer = self.loop.call_later(RETRY_AFTER_EMFILE, self.after_deferring)
            elif exc.errno in GONE:
                self.unwatch()
            return False
        conn.setblocking(False)
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports do
        self.stats.handshake(1)
        task = self.loop.create_task(self.connect(conn))
        self.handshakes.add(task)
        task.add_done_callback(self.opened)
        return True

    def opened(self, task: asyncio.Task) -> None:
        self.handshakes.discard(task)
        self.stats.handshake(-1)

    async def connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(
                self.protocol_factory, conn, ssl=self.tls, ssl_handshake_timeout=self.handshake_timeout
            )
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError):
            # a failed TLS handshake or a client already gone: nothing was served; the transport the loop made
            # of the socket owns it and has closed it (closing it here too could close a descriptor reused since)
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.unwatch()
        self.sock.close()  # this worker's descriptor: the supervisor keeps its own
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # connections already accepted finish opening: cancelled half-way, one could be left registered but never
        # read (its client's close unseen), and a gentle stop would wait for it for ever

    async def wait_closed(self) -> None:
        """Nothing to wait for: connections still opening are the server's like the others."""
