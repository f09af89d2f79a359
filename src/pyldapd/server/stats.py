"""The server's counters, read by cn=Monitor (server/monitor.py) and the Prometheus scrape (server/metrics.py).

One `Stats` object is owned by the Server and bumped from the connections on the one event loop, so plain ints
need no lock. Everything is an int or a dict of ints, so the counters of several workers can be summed
(`Stats.merge`) should the server ever run more than one process.

The names follow slapd's back-monitor: cn=Statistics counts what was *sent* (bytes, PDUs, search entries, search
references, as slapd's send_ldap_ber / send_search_entry / send_search_reference count them), cn=Operations
counts each operation when it starts (initiated) and when its response is written (completed).
"""

from __future__ import annotations

import bisect
import time

# slapd's operation names, in cn=Operations order
OPERATIONS = (
    "Bind",
    "Unbind",
    "Search",
    "Compare",
    "Modify",
    "Modrdn",
    "Add",
    "Delete",
    "Abandon",
    "Extended",
)

# LDAP protocolOp tags (RFC 4511, APPLICATION n) -> slapd's operation name, for requests and responses
REQUEST_TAGS = {0x60: "Bind", 0x42: "Unbind", 0x63: "Search", 0x6E: "Compare", 0x66: "Modify", 0x6C: "Modrdn",
                0x68: "Add", 0x4A: "Delete", 0x50: "Abandon", 0x77: "Extended"}  # fmt: skip
RESPONSE_TAGS = {0x61: "Bind", 0x65: "Search", 0x6F: "Compare", 0x67: "Modify", 0x6D: "Modrdn", 0x69: "Add",
                 0x6B: "Delete", 0x78: "Extended"}  # fmt: skip
SEARCH_ENTRY_TAG = 0x64
SEARCH_REFERENCE_TAG = 0x73

# latency buckets (seconds) of the per-operation histograms: 100 µs to 10 s
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)  # fmt: skip


class Latency:
    """A cumulative-on-read histogram: one count per bucket (+Inf last) and the sum of observations."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


# One worker's slot of the shared table: int64 fields (the floats share the memory as doubles), written only by
# that worker, read by every worker for the sums. Fixed offsets, in 8-byte fields:
SCALARS = ("bytes_sent", "pdus_sent", "entries_sent", "references_sent", "bytes_received", "pdus_received",
           "connections_total", "current_connections", "last_conn_id")  # fmt: skip
ACCEPTED = 12  # connections accepted so far: only grows (server/sharedlisten.py)
HANDSHAKES = 13  # connections accepted, not yet open (server/sharedlisten.py)
ACCEPTING = 14  # 1 while the worker accepts connections (server/sharedlisten.py)
STARTED = 15  # a double: when the slot was first used (0: never)
INITIATED = 16  # one per operation
COMPLETED = 32
LATENCY = 48  # len(OPERATIONS) * (len(LATENCY_BUCKETS) + 1) counts
LATENCY_TOTAL = 224  # doubles, one per operation
RESULT_KEYS = 256  # (operation index << 32 | result code) + 1, 0 for a free entry
RESULT_COUNTS = 512
RESULT_ENTRIES = 256
FIELDS = 768
SLOT_SIZE = FIELDS * 8
BUCKETS = len(LATENCY_BUCKETS) + 1
OPERATION_INDEX = {name: index for index, name in enumerate(OPERATIONS)}
assert LATENCY + len(OPERATIONS) * BUCKETS <= LATENCY_TOTAL


def slot_views(table, index: int) -> tuple[memoryview, memoryview]:
    raw = memoryview(table)[index * SLOT_SIZE : (index + 1) * SLOT_SIZE]
    return raw.cast("q"), raw.cast("d")


def clear_connections(table, index: int) -> None:
    """A worker died: its open connections are gone with it, and it accepts no more."""
    ints, _ = slot_views(table, index)
    ints[SCALARS.index("current_connections")] = 0
    ints[ACCEPTING] = ints[HANDSHAKES] = 0


class Totals:
    """The counters as read: one worker's, or the sum over all of them (what cn=Monitor and /metrics show)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.bytes_sent = 0
        self.pdus_sent = 0
        self.entries_sent = 0
        self.references_sent = 0
        self.bytes_received = 0
        self.pdus_received = 0
        self.connections_total = 0
        self.current_connections = 0
        self.last_conn_id = 0
        self.initiated = dict.fromkeys(OPERATIONS, 0)
        self.completed = dict.fromkeys(OPERATIONS, 0)
        self.results: dict[tuple[str, int], int] = {}  # (operation, result code) -> count
        self.latency = {name: Latency() for name in OPERATIONS}

    @classmethod
    def read(cls, table, index: int) -> Totals:
        ints, floats = slot_views(table, index)
        totals = cls()
        totals.started = floats[STARTED] or totals.started
        for offset, name in enumerate(SCALARS):
            setattr(totals, name, ints[offset])
        for op, name in enumerate(OPERATIONS):
            totals.initiated[name] = ints[INITIATED + op]
            totals.completed[name] = ints[COMPLETED + op]
            latency = totals.latency[name]
            latency.counts = list(ints[LATENCY + op * BUCKETS : LATENCY + (op + 1) * BUCKETS])
            latency.total = floats[LATENCY_TOTAL + op]
        for entry in range(RESULT_ENTRIES):
            key = ints[RESULT_KEYS + entry]
            if key:
                key -= 1
                totals.results[(OPERATIONS[key >> 32], key & 0xFFFFFFFF)] = ints[RESULT_COUNTS + entry]
        return totals

    def merge(self, other: Totals) -> None:
        """Add another worker's counters to these."""
        for name in ("bytes_sent", "pdus_sent", "entries_sent", "references_sent", "bytes_received",
                     "pdus_received", "connections_total", "current_connections"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.last_conn_id = max(self.last_conn_id, other.last_conn_id)
        for name in OPERATIONS:
            self.initiated[name] += other.initiated[name]
            self.completed[name] += other.completed[name]
            mine, theirs = self.latency[name], other.latency[name]
            mine.counts = [a + b for a, b in zip(mine.counts, theirs.counts, strict=True)]
            mine.total += theirs.total
        for key, count in other.results.items():
            self.results[key] = self.results.get(key, 0) + count
        self.started = min(self.started, other.started)


def scalar(offset: int) -> property:
    def get(self: Stats) -> int:
        return self.ints[offset]

    def put(self: Stats, value: int) -> None:
        self.ints[offset] = value

    return property(get, put)


class Stats:
    """This process's counters, kept in its slot of a table that, with worker processes, the supervisor shares
    with every worker (an anonymous shared mmap made before the first fork, server/supervisor.py); alone, a
    private table of one slot. Each worker writes only its own slot, so no lock is needed; `totals()` sums
    them all."""

    def __init__(self, table=None, index: int = 0, capacity: int = 1) -> None:
        self.table = table if table is not None else bytearray(SLOT_SIZE * capacity)
        self.index = index
        self.capacity = capacity
        self.ints, self.floats = slot_views(self.table, index)
        self.slots = [slot_views(self.table, i) for i in range(capacity)]  # every worker's, for the sums
        self.others = [ints for i, (ints, _) in enumerate(self.slots) if i != index]
        if not self.floats[STARTED]:  # a restarted worker goes on counting in its slot
            self.floats[STARTED] = time.time()
        self.result_entries: dict[tuple[int, int], int] = {}
        for entry in range(RESULT_ENTRIES):
            key = self.ints[RESULT_KEYS + entry]
            if key:
                self.result_entries[((key - 1) >> 32, (key - 1) & 0xFFFFFFFF)] = entry

    bytes_sent = scalar(0)
    pdus_sent = scalar(1)
    entries_sent = scalar(2)
    references_sent = scalar(3)
    bytes_received = scalar(4)
    pdus_received = scalar(5)
    connections_total = scalar(6)
    current_connections = scalar(7)  # this worker's; cn=Monitor shows the sum
    last_conn_id = scalar(8)

    @property
    def started(self) -> float:
        return self.floats[STARTED]

    # -- hooks (one call each from server/connection.py) ----------------------------------------------------

    def sent(self, data: bytes) -> None:
        """Bytes written to a client: count them, and each PDU in them by its kind. A header walk inlined for
        speed (this runs once per search entry): SEQUENCE length, messageID (always a short length), op tag."""
        ints = self.ints
        end = len(data)
        ints[0] += end
        offset = pdus = entries = references = 0
        try:
            while offset < end:
                first = data[offset + 1]
                if first < 0x80:
                    body, length = offset + 2, first
                else:
                    body = offset + 2 + (first & 0x7F)
                    length = int.from_bytes(data[offset + 2 : body], "big")
                tag = data[body + 2 + data[body + 1]]
                offset = body + length
                pdus += 1
                if tag == SEARCH_ENTRY_TAG:
                    entries += 1
                elif tag == SEARCH_REFERENCE_TAG:
                    references += 1
        except IndexError:  # not LDAP messages (never sent by this server): bytes counted, nothing else
            pass
        ints[1] += pdus
        if entries:  # (a shared 8-byte field is read and written back: not for nothing)
            ints[2] += entries
        if references:
            ints[3] += references

    def received(self, data: bytes) -> None:
        self.ints[4] += len(data)

    def initiate(self, request_tag: int) -> None:
        """A request decoded (its protocolOp tag); an unknown operation counts as a PDU only."""
        self.ints[5] += 1
        name = REQUEST_TAGS.get(request_tag)
        if name is not None:
            self.ints[INITIATED + OPERATION_INDEX[name]] += 1

    def finish(self, operation: str) -> None:
        """An operation that has no response (Unbind, Abandon) is complete once handled."""
        self.ints[COMPLETED + OPERATION_INDEX[operation]] += 1

    def complete(self, operation: str, code: int, seconds: float) -> None:
        op = OPERATION_INDEX[operation]
        ints = self.ints
        ints[COMPLETED + op] += 1
        code &= 0xFFFFFFFF
        entry = self.result_entries.get((op, code))
        if entry is None:
            entry = self.result_entry(op, code)
        if entry is not None:
            ints[RESULT_COUNTS + entry] += 1
        ints[LATENCY + op * BUCKETS + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.floats[LATENCY_TOTAL + op] += seconds

    def result_entry(self, op: int, code: int) -> int | None:
        """A new (operation, result code) pair: the next free entry (the count first, then the key, so a reader
        never sees a key with another pair's count)."""
        if len(self.result_entries) >= RESULT_ENTRIES:
            return None  # 256 distinct pairs: more are not told apart (never seen in practice)
        entry = len(self.result_entries)
        self.ints[RESULT_COUNTS + entry] = 0
        self.ints[RESULT_KEYS + entry] = (op << 32 | code) + 1
        self.result_entries[(op, code)] = entry
        return entry

    # -- reading ----------------------------------------------------------------------------------------------

    def mine(self) -> Totals:
        return Totals.read(self.table, self.index)

    def totals(self) -> Totals:
        """Every worker's counters summed (one process: its own)."""
        totals: Totals | None = None
        for index, (_, floats) in enumerate(self.slots):
            if not floats[STARTED]:
                continue
            slot = Totals.read(self.table, index)
            if totals is None:
                totals = slot
            else:
                totals.merge(slot)
        return totals or self.mine()

    def open_connections(self) -> int:
        """Client connections open now in all the workers (limits, cn=Monitor's Current)."""
        return sum(ints[7] for ints, _ in self.slots)

    def accepting(self, flag: bool) -> None:
        self.ints[ACCEPTING] = int(flag)

    def accepting_at(self, index: int) -> bool:
        """Whether worker `index` takes connections (listening, not stopping nor in a gentle shutdown)."""
        return 0 <= index < len(self.slots) and bool(self.slots[index][0][ACCEPTING])

    def handshake(self, step: int) -> None:
        """One more (1: just accepted) or one less (-1) connection accepted and not yet open (connection_made
        counts it)."""
        self.ints[HANDSHAKES] += step
        if step > 0:
            self.ints[ACCEPTED] += step

    def fewer_connections_elsewhere(self) -> bool:
        """Whether another worker that accepts connections holds fewer clients than this one (counting those
        accepted and still on their way to connection_made, so a burst is not judged on stale counts)."""
        mine = self.ints[7] + self.ints[HANDSHAKES]
        return any(ints[ACCEPTING] and ints[7] + ints[HANDSHAKES] < mine for ints in self.others)

    def accepted_elsewhere(self) -> int:
        """How many connections the other workers have accepted: it grows whenever one does (a sum of counts
        that also fall, open ones or handshakes, could come back to a value seen before and hide an accept)."""
        return sum(ints[ACCEPTED] for ints in self.others)

    def highest_conn_id(self) -> int:
        return max(ints[8] for ints, _ in self.slots)
