"""Protective limits on what one client may ask of the server (hardening), with defaults for a small machine.

- connections: the open-file limit is the bound (raised from soft to hard at start; `FD_RESERVE` descriptors
  kept for databases, logs, listeners), lowered to `ServerConfig.max_connections` if set. When the descriptors
  are all in use, a new connection is not refused: the oldest connection that never completed a request is
  closed to make room, else the longest idle anonymous one, else the longest idle bound one (`eviction_victim`),
  each told "too many connections" in a Notice of Disconnection (unavailable, 52). The rootdn and connections
  with an operation, a write or StartTLS under way are never evicted; only when nothing can be is the new
  connection told so and closed. A flood of silent or trickling connections so locks out neither new clients,
  nor the rootdn, nor ldapi://. Listeners queue 1024 connects (slapd's SLAPD_LISTEN_BACKLOG).
- request arrival: a request that began arriving must be complete within `PDU_ARRIVAL_TIMEOUT` (30 s, or the
  idletimeout if shorter); more octets do not extend it. slapd has no such bound (a byte a second keeps a slapd
  connection), pyldapd's choice so that half-sent requests cannot hold descriptors.
- `idletimeout` (slapd's): a connection without requests that long is closed, unless it has an operation under
  way (a persistent search, a password check, a blocked write), as slapd. `writetimeout` (slapd's): a
  connection whose writes stay blocked (the transport's buffer over its high-water mark) that long is closed.
- outstanding operations per connection: slapd's `conn_max_pending` (100 anonymous) and `conn_max_pending_auth`
  (1000 bound). A pyldapd connection runs one operation at a time, to its end, before running the next, so the
  operations outstanding on it are the one being run plus its persistent (refreshAndPersist) searches; a request
  beyond the limit gets busy (51). While a search runs in steps (server/steps.py) the connection reads on (an
  Abandon is acted on at once) and holds up to 64 requests, in order, then stops reading; pipelined requests
  beyond wait in the socket, and when a client does not read its responses the connection stops reading
  requests (transport flow control) and its search pauses until it does.
- filter nesting: `maxfilterdepth` (slapd's default 1000: 1000 nested and/or/not sets are answered), at most
  `FILTER_DEPTH_CAP`; deeper is a protocol error, "filter nested too deeply", the connection closed (slapd's
  answer). Filters are walked recursively, so the interpreter's recursion limit is raised to match at start.
- DNs: longer than 8192 octets (slapd's SLAP_LDAPDN_MAXLEN) is invalidDNSyntax (model/dn.py).
- paged results: one open paged search per connection (server/directory.py), as slapd.
- values per request: none beyond the PDU size (`sockbuf_max_incoming[_auth]`), as slapd: an add of a group of
  100,000 members is answered as slapd answers it. A large request is decoded on a worker thread and written
  on the writer thread (connection.py, backends/writer.py), so other clients go on being answered.
- PDU size (`sockbuf_max_incoming[_auth]`), `sizelimit`/`timelimit` are enforced where they always were
  (connection.py, directory.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import resource
import sys
from typing import TYPE_CHECKING

from pyldapd.model.filter import MAX_MATCH_DEPTH
from pyldapd.protocol.ldap import ResultCode
from pyldapd.server.errors import LDAPError

if TYPE_CHECKING:
    from pyldapd.server.app import Server
    from pyldapd.server.connection import LDAPConnection

FILTER_DEPTH_CAP = MAX_MATCH_DEPTH  # model/filter.py
FRAMES_PER_FILTER_LEVEL = 4
FD_RESERVE = 64  # descriptors kept for databases, logs, listeners


PDU_ARRIVAL_TIMEOUT = 30  # seconds a request that began arriving has to complete (idletimeout if shorter)


def raise_descriptor_limit() -> int:
    """The open-file soft limit raised to the hard one at start (the real bound on connections); returns it."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    except (OSError, ValueError):
        return 0
    return soft


def connection_limit(configured: int) -> int:
    """Connections open at once: what the open-file limit allows, lowered to the configured maximum if any."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        soft = resource.RLIM_INFINITY
    if soft == resource.RLIM_INFINITY:
        return configured or 1 << 20
    allowed = max(1, soft - FD_RESERVE)
    return min(configured, allowed) if configured else allowed


def at_capacity(server: Server) -> bool:
    """This process's descriptors all in use, or the configured maximum of connections reached, counted over
    every worker process (server/stats.py: their shared counters)."""
    if len(server.connections) >= connection_limit(0):
        return True
    configured = server.config.max_connections
    return bool(configured) and max(server.stats.open_connections(), len(server.connections)) >= configured


def eviction_rank(conn: LDAPConnection) -> int | None:
    """How readily a connection gives its descriptor to a new one: 0 nothing complete received yet, 1 anonymous
    and idle, 2 bound and idle; None never (the rootdn, an operation or a write under way, StartTLS)."""
    if conn.closing or conn.starting_tls or conn.busy or conn.held_pdus or conn.job is not None:
        return None
    transport = conn.transport
    if transport is None or transport.get_write_buffer_size():
        return None
    if conn.op_count == 0:  # nothing asked yet: no identity, no operation
        return 0
    session = conn.session
    if session.bind_ndn and any(session.bind_ndn == b.rootdn_ndn for b in conn.directory.backends):
        return None
    if outstanding(conn):
        return None
    return 2 if session.bind_ndn else 1


def eviction_victim(server: Server) -> LDAPConnection | None:
    """The connection to close so that a new one is served when the descriptors are all in use: the oldest that
    never completed a request, else the longest idle anonymous one, else the longest idle bound one. A flood of
    silent or trickling connections so cannot lock out new clients, the rootdn or ldapi://."""
    best: LDAPConnection | None = None
    best_key: tuple[int, float] | None = None
    for conn in server.connections:  # accept order: the oldest first
        rank = eviction_rank(conn)
        if rank is None:
            continue
        if rank == 0:
            return conn
        key = (rank, conn.last_active)
        if best_key is None or key < best_key:
            best, best_key = conn, key
    return best


def _malloc_trim() -> None:
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def give_back_memory(server: Server) -> None:
    """glibc keeps freed heap for reuse: after a connection's paged-search state is freed, it is handed back to
    the system (malloc_trim), at most once a second."""
    if server.trim_handle is not None:
        return

    def trim() -> None:
        server.trim_handle = None
        _malloc_trim()

    server.trim_handle = asyncio.get_running_loop().call_later(1.0, trim)


def pdu_timeout(idletimeout: int) -> int:
    return min(idletimeout, PDU_ARRIVAL_TIMEOUT) if idletimeout else PDU_ARRIVAL_TIMEOUT


def filter_depth(configured: int) -> int:
    return max(1, min(configured, FILTER_DEPTH_CAP))


def allow_filter_recursion(configured: int) -> None:
    """Filters are walked recursively (decode, compile, match, index planning, access checks, logging), a few
    Python frames per nesting level: the interpreter's limit is raised to hold the deepest filter accepted."""
    needed = FRAMES_PER_FILTER_LEVEL * filter_depth(configured) + 1000
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def outstanding(conn: LDAPConnection) -> int:
    """Operations outstanding on the connection besides the one arriving: its persistent searches."""
    count = 0
    for backend in conn.directory.backends:
        provider = getattr(backend, "provider", None)
        if provider is not None and provider.psearches:
            count += sum(1 for ps in provider.psearches if ps.conn is conn)
    return count


def check_request(conn: LDAPConnection, op) -> None:
    """Raise LDAPError when the request goes beyond a limit (see the module docstring)."""
    config = conn.server.config
    limit = config.conn_max_pending_auth if conn.session.bind_ndn else config.conn_max_pending
    if limit and outstanding(conn) + 1 > limit:
        raise LDAPError(ResultCode.busy, "too many pending operations")
