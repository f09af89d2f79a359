"""Prometheus metrics and health checks over HTTP: `-h "... http://127.0.0.1:9330/"`.

    GET /metrics    the Prometheus text format, made by prometheus_client from the server's counters at scrape
                    time (server/stats.py, the databases, the syncrepl consumers): nothing is counted twice
    GET /healthz    200 while the server is serving, 503 once it is shutting down
    GET /readyz     200 when every LDAP listener is up and every syncrepl consumer has finished its first
                    refresh; else 503, with the reasons in the body

A tiny HTTP/1.0-style handler on the server's own event loop (one request per connection, bounded in size and
time), so no thread touches the counters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from pyldapd.model.csn import parse_csn
from pyldapd.protocol.ldap import ResultCode
from pyldapd.server.stats import LATENCY_BUCKETS, OPERATIONS

if TYPE_CHECKING:
    from pyldapd.server.app import Server

MAX_REQUEST = 8192  # bytes of request line and headers
REQUEST_TIMEOUT = 10.0  # seconds to send them


def result_name(code: int) -> str:
    try:
        return ResultCode(code).name
    except ValueError:
        return str(code)


def csn_seconds(csn: str | bytes) -> float | None:
    try:
        return parse_csn(csn).time_us / 1_000_000
    except ValueError:
        return None


class ServerCollector:
    """Reads the Server's counters and state at each scrape (a prometheus_client custom collector)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        stats = server.stats.totals()  # every worker's, summed
        now = time.time()

        started = GaugeMetricFamily("pyldapd_start_time_seconds", "Start time of the server, Unix seconds")
        started.add_metric([], stats.started)
        yield started
        initiated = CounterMetricFamily(
            "pyldapd_operations_initiated", "LDAP operations received", labels=["op"]
        )
        completed = CounterMetricFamily(
            "pyldapd_operations_completed", "LDAP operations completed", labels=["op"]
        )
        for name in OPERATIONS:
            initiated.add_metric([name.lower()], stats.initiated[name])
            completed.add_metric([name.lower()], stats.completed[name])
        yield initiated
        yield completed
        results = CounterMetricFamily("pyldapd_operation_results", "LDAP responses by operation and result code",
                                      labels=["op", "code", "result"])  # fmt: skip
        for (name, code), count in sorted(stats.results.items()):
            results.add_metric([name.lower(), str(code), result_name(code)], count)
        yield results
        latency = HistogramMetricFamily("pyldapd_operation_duration_seconds",
                                        "Time from request to response, per operation", labels=["op"])  # fmt: skip
        for name in OPERATIONS:
            histogram = stats.latency[name]
            buckets, running = [], 0
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), histogram.counts, strict=True):
                running += count
                buckets.append((bound, running))
            latency.add_metric([name.lower()], buckets, histogram.total)
        yield latency

        connections = GaugeMetricFamily("pyldapd_connections", "Client connections open now")
        connections.add_metric([], stats.current_connections)
        yield connections
        for metric, help_text, figure in (
            ("pyldapd_connections_accepted", "Client connections accepted", stats.connections_total),
            ("pyldapd_sent_bytes", "Bytes sent to clients", stats.bytes_sent),
            ("pyldapd_received_bytes", "Bytes received from clients", stats.bytes_received),
            ("pyldapd_sent_pdus", "LDAP messages sent to clients", stats.pdus_sent),
            ("pyldapd_received_pdus", "LDAP messages received from clients", stats.pdus_received),
            ("pyldapd_sent_entries", "Search result entries sent", stats.entries_sent),
            ("pyldapd_sent_referrals", "Search result references sent", stats.references_sent),
        ):
            counter = CounterMetricFamily(metric, help_text)
            counter.add_metric([], figure)
            yield counter
        yield from self.databases(now)

    def databases(self, now: float) -> Iterator[Metric]:
        backends = self.server.directory.backends
        context = GaugeMetricFamily("pyldapd_context_csn_timestamp_seconds",
                                    "Time of the newest change held from each server ID (contextCSN)",
                                    labels=["suffix", "sid"])  # fmt: skip
        lag = GaugeMetricFamily("pyldapd_replication_lag_seconds",
                                "Age of the newest change held from each server ID (now - contextCSN time)",
                                labels=["suffix", "sid"])  # fmt: skip
        consumer_lag = GaugeMetricFamily("pyldapd_syncrepl_lag_seconds",
                                         "Age of the newest change held from a consumer's provider server ID",
                                         labels=["suffix", "rid"])  # fmt: skip
        refreshed = GaugeMetricFamily("pyldapd_syncrepl_refreshed",
                                      "1 once a consumer has finished its first refresh", labels=["suffix", "rid"])  # fmt: skip
        persisting = GaugeMetricFamily("pyldapd_syncrepl_connected",
                                       "1 while a consumer is connected to its provider", labels=["suffix", "rid"])  # fmt: skip
        contact = GaugeMetricFamily("pyldapd_syncrepl_last_contact_timestamp_seconds",
                                    "Time of the last message from a consumer's provider", labels=["suffix", "rid"])  # fmt: skip
        conflicts = CounterMetricFamily("pyldapd_syncrepl_conflicts", "Replication conflicts resolved",
                                        labels=["suffix", "rid"])  # fmt: skip
        map_size = GaugeMetricFamily(
            "pyldapd_mdb_map_size_bytes", "LMDB map size (maxsize)", labels=["suffix"]
        )
        map_used = GaugeMetricFamily(
            "pyldapd_mdb_map_used_bytes", "LMDB pages in use, in bytes", labels=["suffix"]
        )
        readers = GaugeMetricFamily("pyldapd_mdb_readers", "LMDB reader slots in use", labels=["suffix"])
        entries = GaugeMetricFamily("pyldapd_mdb_entries", "Entries in the database", labels=["suffix"])
        for backend in backends:
            suffix = backend.config.suffix
            held = {sid: csn_seconds(csn) for sid, csn in backend.context.csns.as_dict().items()}
            for sid, seconds in sorted(held.items()):
                if seconds is not None:
                    context.add_metric([suffix, str(sid)], seconds)
                    lag.add_metric([suffix, str(sid)], max(now - seconds, 0.0))
            for rid, consumer in sorted(backend.consumers.items()):
                labels = [suffix, f"{rid:03d}"]
                sid = getattr(consumer, "provider_sid", None)
                # a provider without a serverID names none in its cookies: the newest change held stands for it
                seconds = held.get(sid) if sid is not None else max(filter(None, held.values()), default=None)
                if seconds is not None:
                    consumer_lag.add_metric(labels, max(now - seconds, 0.0))
                refreshed.add_metric(labels, 1 if getattr(consumer, "refreshed_once", False) else 0)
                persisting.add_metric(labels, 1 if getattr(consumer, "client", None) is not None else 0)
                contact.add_metric(labels, getattr(consumer, "last_contact", 0.0))
                conflicts.add_metric(labels, consumer.conflicts)
            try:
                env = backend.db.env
                info, stat = env.info(), env.stat()
                with backend.db.read() as txn:
                    count = txn.count()
            except Exception:  # a closed or failing database: its figures are left out of this scrape
                continue
            map_size.add_metric([suffix], info["map_size"])
            map_used.add_metric([suffix], (info["last_pgno"] + 1) * stat["psize"])
            readers.add_metric([suffix], info["num_readers"])
            entries.add_metric([suffix], count)
        yield from (context, lag, consumer_lag, refreshed, persisting, contact, conflicts, map_size, map_used,
                    readers, entries)  # fmt: skip


def readiness(server: Server) -> list[str]:
    """What keeps the server from being ready (empty: ready)."""
    reasons = []
    ldap_urls = [u for u in server.urls if u.scheme != "http"]
    serving = [listener for listener in server.listeners if listener.is_serving()]
    if len(serving) < len(ldap_urls):
        reasons.append(f"{len(serving)} of {len(ldap_urls)} LDAP listeners up")
    for backend in server.directory.backends:
        for rid, consumer in sorted(backend.consumers.items()):
            if not getattr(consumer, "refreshed_once", False):
                error = f" ({consumer.last_error})" if getattr(consumer, "last_error", "") else ""
                reasons.append(f"syncrepl rid={rid:03d}: first refresh not done, {consumer.state}{error}")
    return reasons


class MetricsEndpoint:
    """The HTTP side: one registry with the server's collector, and the request handler."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(server))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except asyncio.LimitOverrunError:
                await self.reply(writer, 431, "request header too large\n")
                return
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await self.reply(writer, 400, "bad request\n")
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await self.reply(
                    writer, 405, "method not allowed\n", head_only=False, extra="Allow: GET, HEAD\r\n"
                )
                return
            status, body, content_type = self.route(target)
            await self.reply(writer, status, body, content_type=content_type, head_only=method == "HEAD")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def route(self, target: str) -> tuple[int, bytes | str, str]:
        if target == "/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if target == "/healthz":
            if self.server.stopping.is_set():
                return 503, "shutting down\n", "text/plain; charset=utf-8"
            return 200, "ok\n", "text/plain; charset=utf-8"
        if target == "/readyz":
            reasons = readiness(self.server)
            if self.server.stopping.is_set():
                reasons.insert(0, "shutting down")
            if reasons:
                return 503, "".join(f"{r}\n" for r in reasons), "text/plain; charset=utf-8"
            return 200, "ready\n", "text/plain; charset=utf-8"
        return 404, "not found (try /metrics, /healthz, /readyz)\n", "text/plain; charset=utf-8"

    @staticmethod
    async def reply(writer: asyncio.StreamWriter, status: int, body: bytes | str, *,
                    content_type: str = "text/plain; charset=utf-8", head_only: bool = False,
                    extra: str = "") -> None:  # fmt: skip
        data = body.encode() if isinstance(body, str) else body
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large", 503: "Service Unavailable"}.get(status, "")  # fmt: skip
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
                f"{extra}Connection: close\r\n\r\n")  # fmt: skip
        writer.write(head.encode() + (b"" if head_only else data))
        await writer.drain()


async def start_http(server: Server, host: str, port: int, sock=None) -> asyncio.AbstractServer:
    """The http:// listener; `sock`: bound already (worker processes share the supervisor's)."""
    endpoint = MetricsEndpoint(server)
    if sock is not None:
        return await asyncio.start_server(endpoint.handle, sock=sock, limit=MAX_REQUEST)
    return await asyncio.start_server(endpoint.handle, host=host or None, port=port, reuse_address=True,
                                      limit=MAX_REQUEST)  # fmt: skip
