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


class Stats:
    def __init__(self) -> None:
        self.started = time.time()
        self.bytes_sent = 0
        self.pdus_sent = 0
        self.entries_sent = 0
        self.references_sent = 0
        self.bytes_received = 0
        self.pdus_received = 0
        self.connections_total = 0
        self.initiated = dict.fromkeys(OPERATIONS, 0)
        self.completed = dict.fromkeys(OPERATIONS, 0)
        self.results: dict[tuple[str, int], int] = {}  # (operation, result code) -> count
        self.latency = {name: Latency() for name in OPERATIONS}

    # -- hooks (one call each from server/connection.py) ----------------------------------------------------

    def sent(self, data: bytes) -> None:
        """Bytes written to a client: count them, and each PDU in them by its kind. A header walk inlined for
        speed (this runs once per search entry): SEQUENCE length, messageID (always a short length), op tag."""
        end = len(data)
        self.bytes_sent += end
        offset = 0
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
                self.pdus_sent += 1
                if tag == SEARCH_ENTRY_TAG:
                    self.entries_sent += 1
                elif tag == SEARCH_REFERENCE_TAG:
                    self.references_sent += 1
        except IndexError:  # not LDAP messages (never sent by this server): bytes counted, nothing else
            return

    def received(self, data: bytes) -> None:
        self.bytes_received += len(data)

    def initiate(self, request_tag: int) -> None:
        """A request decoded (its protocolOp tag); an unknown operation counts as a PDU only."""
        self.pdus_received += 1
        name = REQUEST_TAGS.get(request_tag)
        if name is not None:
            self.initiated[name] += 1

    def finish(self, operation: str) -> None:
        """An operation that has no response (Unbind, Abandon) is complete once handled."""
        self.completed[operation] += 1

    def complete(self, operation: str, code: int, seconds: float) -> None:
        self.completed[operation] += 1
        key = (operation, code)
        self.results[key] = self.results.get(key, 0) + 1
        self.latency[operation].observe(seconds)

    # -- reading ----------------------------------------------------------------------------------------------

    def merge(self, other: Stats) -> None:
        """Add another worker's counters to these."""
        for name in ("bytes_sent", "pdus_sent", "entries_sent", "references_sent", "bytes_received",
                     "pdus_received", "connections_total"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in OPERATIONS:
            self.initiated[name] += other.initiated[name]
            self.completed[name] += other.completed[name]
            mine, theirs = self.latency[name], other.latency[name]
            mine.counts = [a + b for a, b in zip(mine.counts, theirs.counts, strict=True)]
            mine.total += theirs.total
        for key, count in other.results.items():
            self.results[key] = self.results.get(key, 0) + count
        self.started = min(self.started, other.started)
