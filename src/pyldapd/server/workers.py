"""Worker processes (issue 13): the interface the rest of the server uses to talk to the other workers.

`pyldapd serve` with `threads N` (slapd.conf) / `olcThreads` (cn=config) runs N worker processes that share the
listening sockets and the LMDB environments. The parts of the server that must see what another worker did (a
commit's journal records, a cn=config change, the shared counters) use the bus below; a single-process server
has a `SoloBus` whose broadcasts go nowhere.
"""

from __future__ import annotations

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

    @property
    def primary(self) -> bool:
        return self.index == 0


class SoloBus(WorkerBus):
    """The bus of a server that runs one process: nobody else to tell."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Callable[[int, bytes], None]]] = {}

    def broadcast(self, kind: str, payload: bytes = b"") -> None:
        return None

    def subscribe(self, kind: str, handler: Callable[[int, bytes], None]) -> None:
        self.handlers.setdefault(kind, []).append(handler)
