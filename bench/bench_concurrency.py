"""Concurrency: pyldapd against Debian's slapd under ldclt load and with one heavy client (issue 13).

    .venv/bin/python bench/bench_concurrency.py [--users 10000] [--seconds 10] [--workers N] [--mod-threads 2]

Both servers start from one slapd.conf (same indexes, `threads N` when --workers is given) and are loaded offline
(`slapadd -q`, `pyldapd add -q`) with the same LDIF: `--users` inetOrgPerson entries uid=user00000... under
ou=People and `--items` small entries under ou=Items (the large result).
Both commit durably: slapd's mdb syncs every commit by default, and so does pyldapd. Then each gets:

1. ldclt (389-ds-base) uid= exact searches on random users, 8 threads, anonymous;
2. the same searches while `--mod-threads` ldclt threads replace `description` of random users (as the rootdn);
3. modifies alone, 4 ldclt threads;
4. a light client (root DSE base searches in a loop, on its own connection) timed while one heavy request runs
   on another: an anonymous OR of 10,000 uid= terms, an unindexed subtree search over all entries, a
   `--items`-entry result read by a client with a small receive buffer that takes 8 KB per 100 ms for
   `--seconds` and then drains the rest, a modify adding `--values` values (100,000: a 1.4 MB request) to a
   new entry, and a burst of `--burst` modifies pipelined on 4 connections. Each heavy request
   but the slow read is repeated for `--seconds`; its median time is printed too.

`--only ldclt` runs the ldclt phases alone, `--only writes` the modifies and the heavy writes; pyldapd's line at
stop gives the writes per fsync of its group commit. Before/after a change: run once with
PYTHONPATH=<an older checkout>/src (the servers are started with this interpreter), once without.

ldclt counts in samples of 10 seconds, so each ldclt phase lasts --seconds rounded up to a multiple of 10.
Every figure is printed for both servers with the ratio pyldapd/slapd. Not a test: machines differ, ratios
matter. ldclt: `apt-get install -y 389-ds-base` (Debian) provides /usr/bin/ldclt.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_big_filter import Client  # noqa: E402

from pyldapd.model.filter import Equality, Or, Present  # noqa: E402
from pyldapd.protocol import ldap  # noqa: E402
from pyldapd.protocol.ldap import Change  # noqa: E402
from tests.servers import (  # noqa: E402
    ROOTDN,
    ROOTPW,
    SLAPD,
    slapd_conf,
    start_pyldapd,
    start_slapd,
    wait_for,
)

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
ITEMS = f"ou=Items,{SUFFIX}"
INDEXES = "index objectClass eq\nindex uid,cn,sn,mail eq,pres,sub"
RATE = re.compile(r"Global average rate:\s*[\d.]+/thr\s*\(\s*([\d.]+)/sec\)")
TIMEOUT = 600.0  # the bound on any one heavy request


def uid(i: int, width: int) -> str:
    return f"user{i:0{width}d}"  # ldclt fills its XXXXX mask with zero-padded numbers


def make_ldif(users: int, items: int, width: int) -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n",
        f"dn: {ITEMS}\nobjectClass: organizationalUnit\nou: Items\n",
    ]
    for i in range(users):
        u = uid(i, width)
        parts.append(
            f"dn: uid={u},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: User Number {i}\nsn: Number{i}\n"
            f"uid: {u}\nmail: {u}@example.com\nemployeeNumber: {i}\ndescription: benchmark entry {i}\n"
        )
    for i in range(items):
        parts.append(f"dn: cn=item{i},{ITEMS}\nobjectClass: device\ncn: item{i}\nserialNumber: {i:08d}\n")
    return "\n".join(parts) + "\n"


# -- ldclt phases ---------------------------------------------------------------------------------------------


def ldclt(port: int, users: int, width: int, threads: int, samples: int, modify: bool) -> subprocess.Popen:
    argv = ["ldclt", "-h", "127.0.0.1", "-p", str(port), "-b", PEOPLE, "-f", f"uid=user{'X' * width}",
            "-r0", f"-R{users - 1}", "-n", str(threads), "-N", str(samples), "-q"]  # fmt: skip
    if modify:
        argv += ["-D", ROOTDN, "-w", ROOTPW, "-e", "attreplace=description:XXXXXXXXXX,random"]
    else:
        argv += ["-e", "esearch,random"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ldclt_rate(proc: subprocess.Popen, samples: int, what: str) -> float:
    try:
        out, _ = proc.communicate(timeout=samples * 10 + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"ldclt ({what}) did not finish") from None
    match = RATE.search(out)
    if match is None:
        raise RuntimeError(f"ldclt ({what}) printed no rate:\n{out}")
    if "no error occurs" not in out:
        errors = [line for line in out.splitlines() if "rror" in line]
        print(f"  ldclt ({what}) reported errors: {errors[:5]}", file=sys.stderr)
    return float(match.group(1))


def ldclt_phases(port: int, args, width: int) -> dict[str, float]:
    samples = max(1, math.ceil(args.seconds / 10))
    figures: dict[str, float] = {}
    procs: list[subprocess.Popen] = []
    try:
        if args.only != "writes":
            procs.append(ldclt(port, args.users, width, 8, samples, False))
            figures["search"] = ldclt_rate(procs[-1], samples, "searches alone")
            procs.append(ldclt(port, args.users, width, 8, samples, False))
            procs.append(ldclt(port, args.users, width, args.mod_threads, samples, True))
            figures["search+mod"] = ldclt_rate(procs[-2], samples, "searches with modifies")
            figures["mod+search"] = ldclt_rate(procs[-1], samples, "modifies with searches")
        procs.append(ldclt(port, args.users, width, 4, samples, True))
        figures["modify"] = ldclt_rate(procs[-1], samples, "modifies alone")
    finally:
        for proc in procs:  # on an error, no ldclt is left running
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return figures


# -- a light client while a heavy one runs ---------------------------------------------------------------------


def bound_client(port: int, timeout: float = TIMEOUT) -> Client:
    """A connection bound as the rootdn whose reads give up after `timeout` seconds."""
    client = Client(port)
    client.sock.settimeout(timeout)
    reply, _ = client.request(ldap.BindRequest(3, ROOTDN, ROOTPW.encode(), None, None))
    if reply.op.result_code != 0:
        raise RuntimeError(f"bind failed: {reply.op}")
    return client


def heavy_or(port: int, args, width: int, rnd: int) -> tuple[float, str]:
    """An anonymous search whose filter is an OR of --terms uid= terms naming every 25th user."""
    flt = Or(tuple(Equality("uid", uid(i * 25, width).encode()) for i in range(args.terms)))
    client = Client(port)
    client.sock.settimeout(TIMEOUT)
    pdu = client.encode(ldap.SearchRequest(SUFFIX, 2, 0, 0, 0, False, flt, ["1.1"]))
    began = time.perf_counter()
    reply, entries = client.request(pdu)
    elapsed = time.perf_counter() - began
    client.close()
    return elapsed, f"result {reply.op.result_code}, {entries} entries"


def heavy_unindexed(port: int, args, width: int, rnd: int) -> tuple[float, str]:
    """A subtree search of the whole suffix on an attribute without an index (employeeNumber, which the
    modifies leave alone: one user matches), as the rootdn."""
    client = bound_client(port)
    flt = Equality("employeeNumber", str(args.users // 2).encode())
    pdu = client.encode(ldap.SearchRequest(SUFFIX, 2, 0, 0, 0, False, flt, ["1.1"]))
    began = time.perf_counter()
    reply, entries = client.request(pdu)
    elapsed = time.perf_counter() - began
    client.close()
    return elapsed, f"result {reply.op.result_code}, {entries} entries"


def heavy_slow_reader(port: int, args, width: int, rnd: int) -> tuple[float, str]:
    """All of ou=Items read by a client with a 16 KB receive buffer, 8 KB per 100 ms for --seconds, then at
    full speed (so the phase stays bounded)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: the window stays small
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    framer = ldap.MessageFramer(1 << 24)
    sock.sendall(ldap.encode_message(ldap.LDAPMessage(1, ldap.BindRequest(3, ROOTDN, ROOTPW.encode()), [])))
    pending: list[bytes] = []
    while not pending:
        pending.extend(framer.feed(sock.recv(65536)))
    search = ldap.SearchRequest(ITEMS, 2, 0, 0, 0, False, Present("objectClass"), [])
    began = time.perf_counter()
    sock.sendall(ldap.encode_message(ldap.LDAPMessage(2, search, [])))
    slow_until = time.monotonic() + args.seconds
    entries = 0
    for _ in range(10_000_000):  # bounded: each round reads at least one byte or ends
        slow = time.monotonic() < slow_until
        data = sock.recv(8192 if slow else 1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        for pdu in framer.feed(data):
            message = ldap.decode_message(pdu)
            if isinstance(message.op, ldap.SearchResultEntry):
                entries += 1
            elif not isinstance(message.op, ldap.SearchResultReference):
                elapsed = time.perf_counter() - began
                sock.close()
                return (
                    elapsed,
                    f"result {message.op.result_code}, {entries} entries, slow for {args.seconds:g} s",
                )
        if slow:
            time.sleep(0.1)
    raise RuntimeError("slow reader: no end of the result")


def heavy_many_values(port: int, args, width: int, rnd: int, count: int) -> tuple[float, str]:
    """One modify adding `count` description values to a new entry, as the rootdn; the entry is deleted
    afterwards (untimed) so that rounds do not fill the database's maxsize."""
    client = bound_client(port)
    dn = f"cn=many{rnd},{SUFFIX}"
    attrs = [("objectClass", [b"device"]), ("cn", [f"many{rnd}".encode()])]
    reply, _ = client.request(ldap.AddRequest(dn, attrs))
    if reply.op.result_code != 0:
        raise RuntimeError(f"add {dn}: {reply.op}")
    values = [f"value {i:07d}".encode() for i in range(count)]
    pdu = client.encode(ldap.ModifyRequest(dn, [Change(0, "description", values)]))
    began = time.perf_counter()
    reply, _ = client.request(pdu)
    elapsed = time.perf_counter() - began
    deleted, _ = client.request(ldap.DelRequest(dn))
    client.close()
    if deleted.op.result_code != 0:
        raise RuntimeError(f"delete {dn}: {deleted.op}")
    text = f" ({reply.op.message})" if reply.op.message else ""
    return elapsed, f"result {reply.op.result_code}{text}, {len(pdu) // 1024} KB PDU"


def heavy_burst(port: int, args, width: int, rnd: int) -> tuple[float, str]:
    """--burst modifies sent at once over 4 connections (pipelined; under slapd's conn_max_pending_auth of
    1000, beyond which slapd closes the connection), then every response read."""
    conns = 4
    clients = [bound_client(port) for _ in range(conns)]
    per = args.burst // conns
    codes: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def one(c: int) -> None:
        try:
            send_and_read(c)
        except OSError as exc:
            with lock:
                errors.append(repr(exc))

    def send_and_read(c: int) -> None:
        client = clients[c]
        pdus = b"".join(
            client.encode(
                ldap.ModifyRequest(
                    f"uid={uid((c * per + i) % args.users, width)},{PEOPLE}",
                    [Change(2, "description", [f"burst {rnd} {i}".encode()])],
                )
            )
            for i in range(per)
        )
        client.sock.sendall(pdus)  # the responses (14 bytes each) fit in the socket buffers meanwhile
        for _ in range(per):
            while not client.pending:
                data = client.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                client.pending.extend(client.framer.feed(data))
            code = ldap.decode_message(client.pending.pop(0)).op.result_code
            with lock:
                codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in range(conns)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    elapsed = time.perf_counter() - began
    for client in clients:
        client.close()
    if errors:
        raise RuntimeError(f"burst: {errors[0]} (result codes so far {codes})")
    return elapsed, f"{per * conns} modifies on {conns} connections, result codes {codes}"


def heavy_cases(args) -> list[tuple[str, Callable[..., tuple[float, str]], bool]]:
    """(label, request, repeated for --seconds) of each heavy request."""
    cases: list[tuple[str, Callable[..., tuple[float, str]], bool]] = [
        (f"OR of {args.terms:,} uid= terms, anonymous", heavy_or, True),
        ("unindexed subtree search, all entries", heavy_unindexed, True),
        (f"{args.items:,}-entry result read slowly", heavy_slow_reader, False),
    ]
    cases.append(
        (
            f"modify adding {args.values:,} values",
            functools.partial(heavy_many_values, count=args.values),
            True,
        )
    )
    cases.append((f"burst of {args.burst:,} pipelined modifies", heavy_burst, True))
    if args.only == "ldclt":
        return []
    if args.only == "writes":
        return [case for case in cases if "modif" in case[0]]
    return cases


GROUP_LINE = re.compile(r"group commit .*: (\d+) writes in (\d+) commits, (\d+) refused, largest group (\d+)")


def group_figures(log: str) -> tuple[int, int, int] | None:
    """pyldapd's line at stop: (writes stored, commits, largest group), summed over its databases."""
    found = GROUP_LINE.findall(log)
    if not found:
        return None
    writes, commits, _refused, largest = (sum(int(f[i]) for f in found) for i in range(4))
    return writes, commits, max(int(f[3]) for f in found)


def with_light_client(
    port: int, heavy: Callable[[int], tuple[float, str]], repeat: float
) -> tuple[list[float], str, list[float]]:
    """Run `heavy` (again and again for `repeat` seconds, at least once) while another connection sends root
    DSE base searches one after another (5 ms apart); return the heavy request's times (s), its last outcome
    and the latencies (ms) of the light searches in flight at some moment while it ran (those before or after
    would only dilute the tail)."""
    done = threading.Event()
    samples: list[tuple[float, float]] = []  # (sent, answered)

    def light() -> None:
        client = Client(port)
        client.sock.settimeout(TIMEOUT)
        dse = client.encode(
            ldap.SearchRequest("", 0, 0, 0, 0, False, Present("objectClass"), ["namingContexts"])
        )
        try:
            for _ in range(1_000_000):
                if done.is_set():
                    break
                sent = time.perf_counter()
                client.request(dse)  # the same PDU each time: its message id is free once answered
                samples.append((sent, time.perf_counter()))
                time.sleep(0.005)
        except OSError as exc:
            print(f"  light client failed: {exc!r}", file=sys.stderr)
        client.close()

    prober = threading.Thread(target=light, daemon=True)
    prober.start()
    time.sleep(0.2)
    times: list[float] = []
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
    done.set()
    prober.join(TIMEOUT)
    latencies = [
        (answered - sent) * 1000 for sent, answered in samples if answered >= began and sent <= ended
    ]
    return times, outcome, latencies


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# -- the run ----------------------------------------------------------------------------------------------------


def load_and_start(name: str, root: Path, conf: str, ldif_path: Path, timeout: float, tag: str = ""):
    """Load the LDIF offline (slapd's slapadd or pyldapd add, -q) into the database `conf` names, then start
    that server (logging off) on it, in root/tag (tag: the name by default)."""
    tag = tag or name
    conf_path = root / tag / "load.conf"
    conf_path.write_text(conf)
    if name == "slapd":
        load = [SLAPD[: -len("slapd")] + "slapadd", "-q", "-f", str(conf_path), "-l", str(ldif_path)]
    else:
        load = [
            sys.executable,
            "-m",
            "pyldapd.cli.main",
            "add",
            "-q",
            "-f",
            str(conf_path),
            "-l",
            str(ldif_path),
        ]
    subprocess.run(load, check=True, capture_output=True, timeout=timeout)
    if name == "slapd":
        return start_slapd(root / tag, conf, name=name)
    server = start_pyldapd(root / tag, conf, name=name, debug="none")
    workers = re.search(r"^threads (\d+)$", conf, re.M)
    count = int(workers.group(1)) if workers else len(os.sched_getaffinity(0))
    if (
        count > 1
    ):  # the port accepts once the first worker listens: wait for them all (the supervisor says so)
        try:
            wait_for(lambda: f"{count} worker processes listening" in server.log(), 60, what="the workers")
        except TimeoutError:
            server.stop()
            raise
    return server


def print_heavy(name: str, label: str, times: list[float], outcome: str, latencies: list[float]) -> None:
    """One heavy case's line: its own times, and the light client's root DSE latencies meanwhile."""
    print(f"{name:8} {label}: median {median(times):.3f} s of {len(times)} ({outcome}); root DSE "
          f"p50 {percentile(latencies, 0.5):.1f} p99 {percentile(latencies, 0.99):.1f} "
          f"max {max(latencies, default=0):.1f} ms of {len(latencies)}", file=sys.stderr)  # fmt: skip


def run(name: str, root: Path, ldif_path: Path, args, width: int, workers: int = 0, tag: str = "") -> dict:
    """Load, start and measure one server; `workers` puts `threads N` in its slapd.conf (none when 0: slapd's
    default of 16 threads, pyldapd's default of one worker per CPU)."""
    tag = tag or name
    db = root / tag / "db"
    db.mkdir(parents=True)
    if name == "slapd" and workers < 2:  # slapd refuses fewer than 2 threads: its default then
        workers = 0
    extra_global = "loglevel none" + (f"\nthreads {workers}" if workers else "")
    conf = slapd_conf(db, indexes=INDEXES, modules=True, extra_global=extra_global)
    server = load_and_start(name, root, conf, ldif_path, timeout=1200, tag=tag)
    name = tag
    figures: dict = {}
    try:
        figures.update(ldclt_phases(server.port, args, width))
        print(f"{name:8} " + ", ".join(f"{k} {v:.0f}/s" for k, v in figures.items()), file=sys.stderr)
        for label, heavy, again in heavy_cases(args):
            times, outcome, latencies = with_light_client(
                server.port,
                lambda rnd, h=heavy: h(server.port, args, width, rnd),
                args.seconds if again else 0,
            )
            figures[label] = (times, outcome, latencies)
            print_heavy(name, label, times, outcome, latencies)
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} died:\n{server.log()[-3000:]}")
    finally:
        server.stop()
    if name.startswith("pyldapd"):
        figures["group"] = group_figures(server.log())
    return figures


def print_growth(args, slapd: dict, ours: dict[int, dict]) -> None:
    """One row per figure: slapd's, pyldapd's for each worker count, the growth from the first count to the last
    and the last one's ratio to slapd."""
    counts = sorted(ours)
    first, last = ours[counts[0]], ours[counts[-1]]
    slapd_threads = f"threads {args.workers}" if args.workers >= 2 else "threads not set: 16"
    print(f"\n{args.users} users + {args.items} items, both durable; slapd ({slapd_threads}) beside pyldapd "
          f"with `threads N` = N worker processes; {len(os.sched_getaffinity(0))} CPUs")  # fmt: skip
    heads = "".join(f"{f'pyldapd {n}w':>14}" for n in counts)
    print(f"{'figure':50} {'slapd':>12}{heads} {f'{counts[-1]}w/{counts[0]}w':>8} {'/slapd':>7}")
    print("(rates: above 1 is growth; times and latencies: below 1 is faster)")

    def row(label: str, pick: Callable[[dict], float], fmt: str) -> None:
        values = [pick(ours[n]) for n in counts]
        theirs = pick(slapd)
        cells = "".join(f"{fmt.format(v):>14}" for v in values)
        growth = values[-1] / values[0] if values[0] else float("nan")
        ratio = values[-1] / theirs if theirs else float("nan")
        print(f"{label:50} {fmt.format(theirs):>12}{cells} {growth:8.2f} {ratio:7.2f}")

    if "search" in first:
        row("uid= searches alone (ldclt, 8 threads) /s", lambda f: f["search"], "{:.0f}")
        row(f"the same while {args.mod_threads} threads modify /s", lambda f: f["search+mod"], "{:.0f}")
        row("  % of alone", lambda f: 100 * f["search+mod"] / f["search"], "{:.0f}%")
        row("  those modifies /s", lambda f: f["mod+search"], "{:.0f}")
    row("modifies alone (ldclt attreplace, 4 threads) /s", lambda f: f["modify"], "{:.0f}")
    for label, _heavy, _again in heavy_cases(args):
        row(f"{label}: time, median s", lambda f, k=label: median(f[k][0]), "{:.3f}")
        row("  root DSE meanwhile, p99 ms", lambda f, k=label: percentile(f[k][2], 0.99), "{:.1f}")
    for n in counts:
        if ours[n].get("group"):
            writes, commits, largest = ours[n]["group"]
            print(f"pyldapd {n}w group commit: {writes} writes in {commits} commits "
                  f"({writes / max(commits, 1):.2f} per fsync), largest group {largest}")  # fmt: skip
    if last is first:
        print("(one worker count only)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--items", type=int, default=20000, help="entries of the large result")
    parser.add_argument("--seconds", type=float, default=10, help="per ldclt phase (10 s samples); slow read")
    parser.add_argument("--workers", type=int, default=0,
                        help="`threads N` in slapd.conf: N worker processes for pyldapd (default: none, one per "
                        "CPU); with --growth, slapd's threads only (N >= 2; slapd refuses fewer)")  # fmt: skip
    parser.add_argument("--growth", type=lambda s: [int(x) for x in s.split(",")], metavar="N,M,...",
                        help="run pyldapd once per worker count (`threads N`), e.g. 1,2, and slapd once; print "
                        "how each figure grows")  # fmt: skip
    parser.add_argument("--mod-threads", type=int, default=2, help="ldclt modify threads beside the searches")
    parser.add_argument("--terms", type=int, default=10000)
    parser.add_argument("--values", type=int, default=100000)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--only", choices=("all", "ldclt", "writes"), default="all",
                        help="ldclt: the ldclt phases only; writes: modifies alone and the heavy writes")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("ldclt") is None:
        raise SystemExit(
            "ldclt not found: it comes with 389-ds-base (Debian: apt-get install -y 389-ds-base)"
        )
    width = max(5, len(str(args.users - 1)))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pyldapd-bench-") as tmp:
        root = Path(tmp)
        ldif_path = root / "data.ldif"
        ldif_path.write_text(make_ldif(args.users, args.items, width))
        if args.growth:
            slapd_threads = args.workers if args.workers >= 2 else 0
            theirs = run("slapd", root, ldif_path, args, width, slapd_threads)
            ours = {n: run("pyldapd", root, ldif_path, args, width, n, f"pyldapd{n}w") for n in args.growth}
            print_growth(args, theirs, ours)
            return
        for name in ("slapd", "pyldapd"):
            results[name] = run(name, root, ldif_path, args, width, args.workers)
    slapd, ours = results["slapd"], results["pyldapd"]
    seconds = max(1, math.ceil(args.seconds / 10)) * 10
    print(f"\n{args.users} users + {args.items} items, ldclt phases of {seconds} s, both durable, "
          f"threads {args.workers or 'not set (slapd: 16, pyldapd: one worker per CPU)'}")  # fmt: skip
    print(f"{'figure':52} {'slapd':>16} {'pyldapd':>16} {'ratio':>6}")

    def row(label: str, theirs: float, mine: float, fmt: str = "{:.0f}/s", extra=("", "")) -> None:
        a, b = fmt.format(theirs) + extra[0], fmt.format(mine) + extra[1]
        print(f"{label:52} {a:>16} {b:>16} {mine / theirs if theirs else float('nan'):6.2f}")

    if "search" in ours:
        row("uid= searches alone (ldclt, 8 threads)", slapd["search"], ours["search"])
        share = (
            f" {slapd['search+mod'] / slapd['search']:.0%}",
            f" {ours['search+mod'] / ours['search']:.0%}",
        )
        row(f"the same while {args.mod_threads} threads modify (% of alone)", slapd["search+mod"],
            ours["search+mod"], extra=share)  # fmt: skip
        row("  those modifies", slapd["mod+search"], ours["mod+search"])
    row("modifies alone (ldclt attreplace, 4 threads)", slapd["modify"], ours["modify"])
    if ours.get("group"):
        writes, commits, largest = ours["group"]
        print(
            f"pyldapd group commit over the whole run: {writes} writes in {commits} commits, "
            f"{writes / max(commits, 1):.2f} writes per fsync, largest group {largest}"
        )
    for label, _heavy, _again in heavy_cases(args):
        theirs, mine = slapd[label], ours[label]
        row(f"{label}: its time, median", median(theirs[0]), median(mine[0]), "{:.3f} s",
            (f" ({len(theirs[0])})", f" ({len(mine[0])})"))  # fmt: skip
        for p, title in ((0.5, "p50"), (0.99, "p99")):
            row(
                f"  root DSE meanwhile, {title}",
                percentile(theirs[2], p),
                percentile(mine[2], p),
                "{:.1f} ms",
            )
        row("  root DSE meanwhile, max", max(theirs[2], default=0), max(mine[2], default=0), "{:.1f} ms",
            (f" ({len(theirs[2])})", f" ({len(mine[2])})"))  # fmt: skip
        print(f"  outcome: slapd {theirs[1]}; pyldapd {mine[1]}")


if __name__ == "__main__":
    main()
