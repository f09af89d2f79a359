"""No reader stalls another (issue 13): a light client's latency while one heavy read runs, pyldapd beside slapd.

    .venv/bin/python bench/bench_stall.py [--users 100000] [--items 20000] [--terms 10000,100000] [--seconds 10]
                                          [--no-ldclt] [--workers N]

Both servers start from one slapd.conf (uid indexed eq, the syncprov overlay) and are loaded offline (`slapadd
-q`, `pyldapd add -q`) with the same LDIF: `--users` inetOrgPerson entries under ou=People and `--items` small
entries under ou=Items; `--workers N` puts `threads N` in it (pyldapd: N worker processes). Then, on each, a
light client sends root DSE base searches one after another (5 ms apart, its own connection) while one heavy
read runs on another connection, again and again for `--seconds`:

- as the rootdn, a search whose filter is an OR of N uid= terms (random uids, about half of them existing), for
  each N of `--terms`;
- as the rootdn, an unindexed subtree search of the whole suffix (employeeNumber=, one match);
- all of ou=Items read by a client with a 16 KB receive buffer taking 8 KB per 100 ms for `--seconds`;
- a consumer's initial refresh (refreshOnly sync search of the whole suffix, read at full speed).

For each it prints the heavy request's median time and the light client's p50/p99/max (ms) on both servers, and
the pyldapd server's peak RSS. Unless --no-ldclt: ldclt's uid= searches alone and while 2 threads modify (as in
bench_concurrency.py). Not a test: machines differ, ratios matter.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_big_filter import Client  # noqa: E402
from bench_concurrency import (  # noqa: E402
    bound_client,
    heavy_slow_reader,
    ldclt,
    ldclt_rate,
    load_and_start,
    make_ldif,
    median,
    percentile,
    print_heavy,
    uid,
)

from pyldapd.model.filter import Equality, Or, Present  # noqa: E402
from pyldapd.protocol import controls as ctl  # noqa: E402
from pyldapd.protocol import ldap  # noqa: E402
from tests.servers import slapd_conf  # noqa: E402

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
INDEXES = "index objectClass eq\nindex uid eq\nindex entryCSN,entryUUID eq"


HEAVY_TIMEOUT = [120.0]  # --heavy-timeout: a heavy request not answered by then is reported as such


def light_loop(port: int, stop, out) -> None:
    """The light client, in a process of its own (a thread beside the heavy client would share its GIL, and
    building and decoding a big request there would show as server latency): root DSE base searches one after
    another, 5 ms apart, until `stop` is set; (sent, answered) perf_counter pairs go to `out`."""
    client = Client(port)
    client.sock.settimeout(600)
    dse = client.encode(ldap.SearchRequest("", 0, 0, 0, 0, False, Present("objectClass"), ["namingContexts"]))
    samples = []
    try:
        for _ in range(1_000_000):
            if stop.is_set():
                break
            sent = time.perf_counter()
            client.request(dse)  # the same PDU each time: its message id is free once answered
            samples.append((sent, time.perf_counter()))
            time.sleep(0.005)
    finally:
        out.put(samples)
        client.close()


def with_light_client(port: int, heavy, repeat: float) -> tuple[list[float], str, list[float]]:
    """Run `heavy` (again and again for `repeat` seconds, at least once) while the light client runs in another
    process; the heavy request's times (s), its last outcome, and the latencies (ms) of the light searches in
    flight at some moment while it ran. perf_counter is CLOCK_MONOTONIC: one clock for both processes."""
    context = multiprocessing.get_context("fork")
    stop, out = context.Event(), context.Queue()
    prober = context.Process(target=light_loop, args=(port, stop, out), daemon=True)
    prober.start()
    time.sleep(0.3)
    times: list[float] = []
    outcome = ""
    began = time.perf_counter()
    for rnd in range(10_000):
        try:
            elapsed, outcome = heavy(rnd)
        except (OSError, RuntimeError) as exc:
            outcome = f"failed: {exc!r}"
            break
        times.append(elapsed)
        if time.perf_counter() - began >= repeat:
            break
    ended = time.perf_counter()
    time.sleep(0.05)
    stop.set()
    samples = out.get(timeout=600)
    prober.join(60)
    latencies = [
        (answered - sent) * 1000 for sent, answered in samples if answered >= began and sent <= ended
    ]
    return times, outcome, latencies


def heavy_or(terms: int):
    def run(port: int, args, width: int, rnd: int) -> tuple[float, str]:
        rng = random.Random(rnd)
        flt = Or(
            tuple(Equality("uid", uid(rng.randrange(args.users * 2), width).encode()) for _ in range(terms))
        )
        client = bound_client(port, HEAVY_TIMEOUT[0])
        pdu = client.encode(ldap.SearchRequest(SUFFIX, 2, 0, 0, 0, False, flt, ["1.1"]))
        began = time.perf_counter()
        reply, entries = client.request(pdu)
        elapsed = time.perf_counter() - began
        client.close()
        return elapsed, f"result {reply.op.result_code}, {entries} entries, {len(pdu) // 1024} KB PDU"

    return run


def heavy_unindexed(port: int, args, width: int, rnd: int) -> tuple[float, str]:
    client = bound_client(port, HEAVY_TIMEOUT[0])
    flt = Equality("employeeNumber", str(args.users // 2).encode())
    pdu = client.encode(ldap.SearchRequest(SUFFIX, 2, 0, 0, 0, False, flt, ["1.1"]))
    began = time.perf_counter()
    reply, entries = client.request(pdu)
    elapsed = time.perf_counter() - began
    client.close()
    return elapsed, f"result {reply.op.result_code}, {entries} entries"


def heavy_refresh(port: int, args, width: int, rnd: int) -> tuple[float, str]:
    """A consumer's initial refresh: a refreshOnly sync search of the whole suffix, every entry."""
    client = bound_client(port, HEAVY_TIMEOUT[0])
    control = ldap.Control(
        ctl.SYNC_REQUEST, True, ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_ONLY))
    )
    search = ldap.SearchRequest(SUFFIX, 2, 0, 0, 0, False, Present("objectClass"), ["*", "+"])
    message_id = client.next_id
    client.next_id += 1
    pdu = ldap.encode_message(ldap.LDAPMessage(message_id, search, [control]))
    began = time.perf_counter()
    reply, entries = client.request(pdu)
    elapsed = time.perf_counter() - began
    client.close()
    return elapsed, f"result {reply.op.result_code}, {entries} entries"


def seconds(figure) -> str:
    """The heavy request's median time, or how it failed (slapd's OR of 100,000 terms outlasts the timeout)."""
    return f"{median(figure[0]):.3f}" if figure[0] else ">timeout" if "timed out" in figure[1] else "failed"


def peak_rss_kb(pid: int) -> int:
    """The peak RSS of the process and of its children (pyldapd's workers under a supervisor), summed."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(peak_rss_kb(int(child)) for child in children)


def cases(args) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [(f"OR of {n:,} uid= terms, rootdn", heavy_or(n)) for n in args.terms]
    out.append((f"unindexed subtree search, {args.users + args.items:,} entries", heavy_unindexed))
    out.append((f"{args.items:,}-entry result read slowly", heavy_slow_reader))
    out.append((f"sync refresh of {args.users + args.items:,} entries", heavy_refresh))
    return out


def threads_line(args, name: str) -> str:
    """`threads N` in the slapd.conf when --workers is given (pyldapd: N worker processes; slapd refuses fewer
    than 2 threads, so it gets none then)."""
    if not args.workers or (name == "slapd" and args.workers < 2):
        return ""
    return f"\nthreads {args.workers}"


def run(name: str, root: Path, ldif_path: Path, args, width: int) -> dict:
    db = root / name / "db"
    conf = slapd_conf(db, indexes=INDEXES, modules=True, extra_global="moduleload syncprov\nloglevel none\n"
                      "sizelimit unlimited" + threads_line(args, name), extra_db="overlay syncprov")  # fmt: skip
    conf = conf.replace("maxsize 104857600", "maxsize 2147483648")
    server = load_and_start(name, root, conf, ldif_path, timeout=1800)
    figures: dict = {}
    try:
        for label, heavy in cases(args):
            repeat = 0 if heavy is heavy_slow_reader else args.seconds
            times, outcome, latencies = with_light_client(
                server.port, lambda rnd, h=heavy: h(server.port, args, width, rnd), repeat
            )
            figures[label] = (times, outcome, latencies)
            print_heavy(name, label, times, outcome, latencies)
        figures["rss"] = peak_rss_kb(server.process.pid)
        if not args.no_ldclt:
            samples = max(1, math.ceil(args.seconds / 10))
            procs = [ldclt(server.port, args.users, width, 8, samples, False)]
            figures["search"] = ldclt_rate(procs[-1], samples, "searches alone")
            procs.append(ldclt(server.port, args.users, width, 8, samples, False))
            procs.append(ldclt(server.port, args.users, width, 2, samples, True))
            figures["search+mod"] = ldclt_rate(procs[-2], samples, "searches with modifies")
            figures["mod+search"] = ldclt_rate(procs[-1], samples, "modifies with searches")
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} died:\n{server.log()[-3000:]}")
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--terms", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--no-ldclt", action="store_true")
    parser.add_argument("--workers", type=int, default=0,
                        help="`threads N` in both configs: N worker processes for pyldapd (default: none; slapd only "
                        "for N >= 2, its minimum)")  # fmt: skip
    parser.add_argument("--heavy-timeout", type=float, default=120, help="seconds a heavy request may take")
    args = parser.parse_args()
    HEAVY_TIMEOUT[0] = args.heavy_timeout
    if not args.no_ldclt and shutil.which("ldclt") is None:
        raise SystemExit("ldclt not found: it comes with 389-ds-base (or pass --no-ldclt)")
    width = max(5, len(str(args.users - 1)))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pyldapd-stall-") as tmp:
        root = Path(tmp)
        ldif_path = root / "data.ldif"
        ldif_path.write_text(make_ldif(args.users, args.items, width))
        for name in ("slapd", "pyldapd"):
            results[name] = run(name, root, ldif_path, args, width)
    slapd, ours = results["slapd"], results["pyldapd"]
    threads = f"threads {args.workers}" if args.workers else "threads not set"
    print(f"\n{args.users:,} users + {args.items:,} items, {threads}; root DSE latency (ms) while each heavy "
          "read runs")  # fmt: skip
    print(f"{'heavy read':44} {'time slapd':>10} {'pyldapd':>8} {'p50 slapd':>10} {'pyldapd':>8} "
          f"{'p99 slapd':>10} {'pyldapd':>8} {'max slapd':>10} {'pyldapd':>8}")  # fmt: skip
    for label, _heavy in cases(args):
        a, b = slapd[label], ours[label]
        print(f"{label:44} {seconds(a):>10} {seconds(b):>8} {percentile(a[2], 0.5):10.1f} "
              f"{percentile(b[2], 0.5):8.1f} {percentile(a[2], 0.99):10.1f} {percentile(b[2], 0.99):8.1f} "
              f"{max(a[2], default=0):10.1f} {max(b[2], default=0):8.1f}")  # fmt: skip
    print(f"peak RSS: slapd {slapd['rss'] / 1024:.0f} MB, pyldapd {ours['rss'] / 1024:.0f} MB")
    if not args.no_ldclt:
        for key, label in (("search", "uid= searches alone (ldclt, 8 threads)"),
                           ("search+mod", "the same while 2 threads modify"),
                           ("mod+search", "  those modifies")):  # fmt: skip
            print(f"{label:44} slapd {slapd[key]:8.0f}/s  pyldapd {ours[key]:8.0f}/s  ratio "
                  f"{ours[key] / slapd[key]:.2f}")  # fmt: skip
        print(f"pyldapd searches while modifies: {ours['search+mod'] / ours['search']:.0%} of alone "
              f"(slapd {slapd['search+mod'] / slapd['search']:.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
