"""LDAP Sync replication, pyldapd->pyldapd against slapd->slapd, side by side, in one run (issue 4).

    .venv/bin/python bench/bench_replication.py [--entries 10000] [--writes 300] [--offline-writes 1000]
                                                [--load offline|ldapadd] [--workers N]

For each implementation one provider (syncprov, `syncprov-sessionlog 2000`) and one refreshAndPersist
consumer, both from the configs tests/replication/helpers.py writes (the same shape for both servers: eq indexes
on objectClass, entryUUID, entryCSN and uid, a 4 GB maxsize), with `loglevel none` (and `-d none` for pyldapd).
Both commit every write, replicated ones included, with sync (no dbnosync): durable on both sides.

  (b) initial refresh: --entries people (plus the suffix and ou=People) are loaded into the provider (by
      default offline before it starts, `slapadd -q -w` / `pyldapd add -q -w`, which generate entryCSN,
      entryUUID and the contextCSN; `--load ldapadd` adds them over LDAP instead), then the consumer starts
      empty; seconds from launching the consumer process until its contextCSN equals the provider's and it holds
      all entries, and the rate in entries/s (consumer start-up included; the time until it listens is printed
      as well).
  (a) one write: --writes sequential modifies on the provider, each timed from the modify response until a
      base search on the consumer (a persistent connection, polled every --poll-ms) returns the new value;
      p50/p99/max in ms.
  (c) catch-up: the consumer is stopped, --offline-writes modifies (distinct entries) go to the provider, the
      consumer is started again; seconds from its launch until its contextCSN equals the provider's and every
      modified entry holds its new value.

(b) runs before (a) so that one provider serves all three. Every figure is printed for both implementations
with the ratio pyldapd/slapd (for times a ratio above 1 means pyldapd is slower; for rates, below 1). Not a
test: machines differ, ratios matter. Client and servers share the machine's CPUs.

To see why a refresh does not end: `--consumer-log "stats sync"` (slapd gets it as -d, its syslog levels
otherwise go nowhere here), `--progress 20` (the consumer's count and contextCSN every 20 s); on a timeout the
consumer log's end and its error lines are printed. That is how a 100 MB map (the tests' maxsize) showed up as
slapd's consumer stalling at 86,000 entries: `mdb_add: txn_commit failed : MDB_MAP_FULL`, then the refresh retried
every second (`retry="1 +"`) from the start, each entry "unchanged, ignored", a core busy, for ever.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_core import make_ldif  # noqa: E402  (the same generated people in every benchmark)
from pyldapd.model.filter import Present, Substrings  # noqa: E402
from pyldapd.protocol import ldap  # noqa: E402
from tests.replication.helpers import consumer_conf, provider_conf  # noqa: E402
from tests.servers import (  # noqa: E402
    ROOTDN,
    ROOTPW,
    SLAPD,
    SUFFIX,
    free_port,
    ldap_tool,
    start_process,
    start_pyldapd,
    start_slapd,
)

PEOPLE = f"ou=People,{SUFFIX}"
ERRORS = re.compile(r"(?i)error|MDB_MAP_FULL|failed|err=[1-9]")
WORKERS = [0]  # --workers: `threads N` in every config (pyldapd: N worker processes; 0: no such line)
STARTERS = {"pyldapd": start_pyldapd, "slapd": start_slapd}


class Conn:
    """A persistent LDAP connection over a raw socket (pyldapd's codec), bound as the rootdn. Synchronous."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = ldap.MessageFramer(1 << 26)
        self.pending: list[bytes] = []
        self.next_id = 1
        reply, _ = self.request(ldap.BindRequest(3, ROOTDN, ROOTPW.encode(), None, None))
        if reply.result_code != 0:
            raise RuntimeError(f"bind failed: {reply.result_code} {reply.message}")

    def request(self, op) -> tuple[ldap.LDAPResult, list[ldap.SearchResultEntry]]:
        message_id = self.next_id
        self.next_id += 1
        self.sock.sendall(ldap.encode_message(ldap.LDAPMessage(message_id, op, [])))
        entries = []
        while True:
            while not self.pending:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.pending.extend(self.framer.feed(data))
            message = ldap.decode_message(self.pending.pop(0))
            if isinstance(message.op, ldap.SearchResultEntry):
                entries.append(message.op)
            elif not isinstance(message.op, ldap.SearchResultReference):
                return message.op, entries

    def modify(self, dn: str, attr: str, value: str) -> None:
        change = ldap.Change(ldap.MOD_REPLACE, attr, [value.encode()])
        reply, _ = self.request(ldap.ModifyRequest(dn, [change]))
        if reply.result_code != 0:
            raise RuntimeError(f"modify {dn} failed: {reply.result_code} {reply.message}")

    def search(self, base: str, scope: int, filt, attrs: list[str]) -> list[ldap.SearchResultEntry]:
        """Entries found; [] when the base does not exist (yet)."""
        reply, entries = self.request(ldap.SearchRequest(base, scope, 0, 0, 0, False, filt, attrs))
        if reply.result_code == 32:
            return []
        if reply.result_code != 0:
            raise RuntimeError(f"search {base} failed: {reply.result_code} {reply.message}")
        return entries

    def values(self, dn: str, attr: str) -> list[bytes]:
        """Values of one attribute of one entry (base search); [] when absent."""
        for entry in self.search(dn, ldap.SCOPE_BASE_OBJECT, Present("objectClass"), [attr]):
            for name, vals in entry.attributes:
                if name.lower() == attr.lower():
                    return vals
        return []

    def count(self, filt=None, base: str = SUFFIX) -> int:
        return len(self.search(base, ldap.SCOPE_WHOLE_SUBTREE, filt or Present("objectClass"), ["1.1"]))

    def close(self) -> None:
        try:
            self.sock.sendall(ldap.encode_message(ldap.LDAPMessage(self.next_id, ldap.UnbindRequest(), [])))
        except OSError:
            pass
        self.sock.close()


def connect(port: int, timeout: float = 30.0) -> Conn:
    """A connection once the server answers a bind (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Conn(port)
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def wait_until(predicate, timeout: float, interval: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def node_conf(kind: str, root: Path, name: str, conf_fn, loglevel: str = "none", **kw) -> str:
    directory = root / name / "db"
    directory.mkdir(parents=True, exist_ok=True)
    conf = f"loglevel {loglevel}\n" + conf_fn(directory, slapd=(kind == "slapd"), **kw)
    if WORKERS[0] and (kind == "pyldapd" or WORKERS[0] >= 2):  # slapd refuses threads below 2
        conf = f"threads {WORKERS[0]}\n" + conf
    # the tests' 100 MB map holds about 50,000 people in pyldapd: room for --entries 100000 and more, both servers
    return conf.replace("maxsize 104857600", f"maxsize {4 << 30}")


def start_node(kind: str, root: Path, name: str, conf_fn, port: int | None = None, loglevel: str = "none",
               **kw):  # fmt: skip
    conf = node_conf(kind, root, name, conf_fn, loglevel, **kw)
    if kind == "pyldapd":
        return start_pyldapd(root / name, conf, name=name, port=port, debug=loglevel.replace(" ", ","))
    if loglevel == "none":
        return start_slapd(root / name, conf, name=name, port=port)
    # slapd sends `loglevel` to syslog: -d puts the same on its stderr, the node's log file
    workdir = root / name
    config_path = workdir / f"{name}.conf"
    config_path.write_text(conf)
    port = port or free_port()
    ldapi_path = str(workdir / f"{name}.sock")
    urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi_path.replace('/', '%2F')}/"
    argv = [SLAPD, "-f", str(config_path), "-h", urls, "-d", loglevel.replace(" ", ",")]
    return start_process(name, argv, port, ldapi_path, workdir, config_path)


def load_offline(kind: str, root: Path, name: str, conf_fn, ldif: str, **kw) -> None:
    """slapadd -q -w / pyldapd add -q -w of the LDIF into the database of the node's config (entryCSN,
    entryUUID and the suffix's contextCSN generated by the tool), before the node starts."""
    conf_path = root / name / "load.conf"
    conf_path.parent.mkdir(parents=True, exist_ok=True)
    conf_path.write_text(node_conf(kind, root, name, conf_fn, **kw))
    ldif_path = root / name / "load.ldif"
    ldif_path.write_text(ldif)
    if kind == "slapd":
        tool = ["/usr/sbin/slapadd"]
    else:
        tool = [sys.executable, "-m", "pyldapd.cli.main", "add"]
    done = subprocess.run([*tool, "-q", "-w", "-f", str(conf_path), "-l", str(ldif_path)],
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{kind}: offline load failed: {done.stdout}{done.stderr}")


def run(kind: str, root: Path, args) -> dict[str, float]:
    figures: dict[str, float] = {}
    say = lambda text: print(f"{kind:8} {text}", file=sys.stderr, flush=True)  # noqa: E731
    total = args.entries + 2
    began = time.monotonic()
    if args.load == "offline":
        load_offline(
            kind, root, "provider", provider_conf, make_ldif(args.entries), sessionlog=args.sessionlog
        )
    provider = start_node(kind, root, "provider", provider_conf, sessionlog=args.sessionlog)
    consumer = None
    conns: list[Conn] = []
    try:
        if args.load == "ldapadd":
            result = ldap_tool("ldapadd", "-H", provider.url, "-x", "-D", ROOTDN, "-w", ROOTPW,
                               input=make_ldif(args.entries), timeout=3600)  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(f"{kind}: ldapadd failed: {result.stderr}")
        say(f"loaded {total} entries into the provider ({args.load}) in {time.monotonic() - began:.1f}s")
        p = connect(provider.port)
        conns.append(p)

        def converged(c: Conn, check) -> bool:
            want = sorted(p.values(SUFFIX, "contextCSN"))
            return bool(want) and sorted(c.values(SUFFIX, "contextCSN")) == want and check()

        # (b) initial refresh into an empty consumer
        launched = time.monotonic()
        consumer = start_node(kind, root, "consumer", consumer_conf, provider_url=provider.url,
                              loglevel=args.consumer_log)  # fmt: skip
        figures["consumer start-up s"] = time.monotonic() - launched
        c = connect(consumer.port)
        conns.append(c)
        shown = [launched]

        def refreshed() -> bool:
            if args.progress and time.monotonic() - shown[0] >= args.progress:
                shown[0] = time.monotonic()
                ours = c.values(SUFFIX, "contextCSN")
                theirs = p.values(SUFFIX, "contextCSN")
                say(f"  {shown[0] - launched:.0f}s: {c.count()} entries on the consumer, its contextCSN "
                    f"{b' '.join(ours).decode()} (the provider's {b' '.join(theirs).decode()})")  # fmt: skip
            return converged(c, lambda: c.count() == total)

        try:
            wait_until(refreshed, args.timeout, 0.02, "the initial refresh")
        except TimeoutError:
            lines = consumer.log().splitlines()
            errors = [line for line in lines if ERRORS.search(line)]
            tail = "\n".join(lines[-args.log_lines :])
            say(f"refresh unfinished: {c.count()} entries on the consumer; its log ends:\n{tail}")
            say(f"{len(errors)} error lines in its log, the first:\n" + "\n".join(errors[: args.log_lines]))
            if args.keep:
                say(f"kept: {root}; consumer pid {consumer.process.pid}, provider pid {provider.process.pid}")
                time.sleep(args.keep)
            raise
        elapsed = time.monotonic() - launched
        figures["refresh s"] = elapsed
        figures["refresh entries/s"] = total / elapsed
        say(f"initial refresh of {total} entries: {elapsed:.2f}s ({total / elapsed:.0f}/s)")

        # (a) one write at a time: modify response -> value visible on the consumer
        lags: list[float] = []
        misses = 0
        poll = args.poll_ms / 1000
        for i in range(args.writes):
            dn = f"uid=user{i % args.entries},{PEOPLE}"
            value = f"latency {i}".encode()
            p.modify(dn, "description", value.decode())
            answered = time.perf_counter()
            limit = answered + args.write_timeout
            while True:
                seen = value in c.values(dn, "description")
                now = time.perf_counter()
                if seen:
                    lags.append((now - answered) * 1000)
                    break
                if now > limit:
                    misses += 1
                    break
                time.sleep(poll)
        figures["write p50 ms"] = statistics.median(lags) if lags else float("nan")
        figures["write p99 ms"] = percentile(lags, 99)
        figures["write max ms"] = max(lags) if lags else float("nan")
        figures["writes not seen"] = misses
        say(f"{args.writes} writes: p50 {figures['write p50 ms']:.2f} ms, p99 {figures['write p99 ms']:.2f} ms, "
            f"max {figures['write max ms']:.2f} ms, {misses} not seen in {args.write_timeout}s")  # fmt: skip

        # (c) catch-up after the consumer was offline
        c.close()
        conns.remove(c)
        consumer.stop()
        k = min(args.offline_writes, args.entries)
        began = time.monotonic()
        for i in range(k):
            p.modify(f"uid=user{i},{PEOPLE}", "description", f"catchup {i}")
        say(f"{k} modifies while the consumer was down in {time.monotonic() - began:.1f}s")
        catchup = Substrings("description", b"catchup ", (), None)
        launched = time.monotonic()
        consumer = start_node(kind, root, "consumer", consumer_conf, provider_url=provider.url,
                              port=consumer.port)  # fmt: skip
        c = connect(consumer.port)
        conns.append(c)
        wait_until(lambda: converged(c, lambda: c.count(catchup) == k), args.timeout, 0.02, "the catch-up")
        elapsed = time.monotonic() - launched
        figures["catch-up s"] = elapsed
        # not timed: the values themselves, and the whole tree
        missing = [
            i
            for i in range(k)
            if c.values(f"uid=user{i},{PEOPLE}", "description") != [f"catchup {i}".encode()]
        ]
        if missing or c.count() != total:
            raise SystemExit(f"{kind}: catch-up incomplete: {len(missing)} wrong values, {c.count()} entries")
        say(f"catch-up of {k} offline modifies: {elapsed:.2f}s (start-up included)")
    finally:
        for conn in conns:
            conn.close()
        if consumer is not None:
            consumer.stop()
        provider.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10000, help="people loaded before the consumer starts")
    parser.add_argument("--writes", type=int, default=300, help="sequential modifies timed one by one")
    parser.add_argument(
        "--offline-writes", type=int, default=1000, help="modifies while the consumer is down"
    )
    parser.add_argument("--sessionlog", type=int, default=2000, help="syncprov-sessionlog on the provider")
    parser.add_argument("--poll-ms", type=float, default=0.5, help="pause between polls of the consumer")
    parser.add_argument("--write-timeout", type=float, default=10.0, help="give up on one write after S")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on refresh and catch-up")
    parser.add_argument("--only", choices=sorted(STARTERS), help="run one implementation only")
    parser.add_argument("--workers", type=int, default=0,
                        help="`threads N` in every config: N worker processes for pyldapd (default: no line, one "
                        "worker per CPU; slapd gets the line only for N >= 2, its minimum)")  # fmt: skip
    parser.add_argument("--load", choices=("offline", "ldapadd"), default="offline",
                        help="fill the provider with slapadd/pyldapd add -q -w before it starts (default), "
                        "or with ldapadd once it runs")  # fmt: skip
    parser.add_argument("--consumer-log", default="none", help="the consumer's loglevel, e.g. 'stats sync'")
    parser.add_argument("--log-lines", type=int, default=20, help="consumer log lines shown on a timeout")
    parser.add_argument("--progress", type=float, default=0, help="count the consumer's entries every S s")
    parser.add_argument("--keep", type=float, default=0, help="on a refresh timeout, keep the servers S s")
    args = parser.parse_args()
    WORKERS[0] = args.workers
    kinds = [args.only] if args.only else ["slapd", "pyldapd"]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pyldapd-bench-repl-") as tmp:
        for kind in kinds:
            results[kind] = run(kind, Path(tmp) / kind, args)
    print(f"\nprovider -> refreshAndPersist consumer; {args.entries + 2} entries, {args.writes} timed writes "
          f"(poll every {args.poll_ms} ms), {min(args.offline_writes, args.entries)} offline modifies, "
          f"sessionlog {args.sessionlog}; threads {args.workers or 'not set'}; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'figure':22} {'slapd':>10} {'pyldapd':>10} {'ratio':>8}")
    for figure in results[kinds[0]]:
        row = [results.get(k, {}).get(figure) for k in ("slapd", "pyldapd")]
        cells = [f"{v:10.2f}" if v is not None else f"{'-':>10}" for v in row]
        ratio = f"{row[1] / row[0]:8.2f}" if None not in row and row[0] else f"{'-':>8}"
        print(f"{figure:22} {cells[0]} {cells[1]} {ratio}")


if __name__ == "__main__":
    main()
