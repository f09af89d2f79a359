"""Replication lag in a 3-node multi-provider mesh under steady writes, pyldapd against slapd (issue 5).

    .venv/bin/python bench/bench_mesh.py [--nodes 3] [--rate 200] [--seconds 10] [--sample 10]

Each implementation runs a mesh of --nodes nodes from one slapd.conf shape (every node lists every `serverID`
with its URL, has one refreshAndPersist `syncrepl` stanza per node, `mirrormode on`, `overlay syncprov` with a
session log; `loglevel none`), as tests/replication/test_multiprovider.py builds it. Node 1 gets the suffix
and --entries people per node; once all nodes agree, one client process per node writes to its own node at
--rate/--nodes modifies per second (paced on a fixed schedule) for --seconds. Every --sample-th write of a
process goes to that process's probe entry (description = the write's sequence number); a thread of the same
process polls the probe entry on every other node (persistent connections, every --poll-ms while a sample is
outstanding) and records, per sampled write, the time from the modify response until the number (or a later
one) is visible on all other nodes. The other writes go round-robin over the process's own people, so writers
never conflict.

Printed per implementation and as the ratio pyldapd/slapd: writes/s achieved, lag p50/p90/p99/max in ms,
samples over 50 ms, samples never seen (within --write-timeout), how far a writer fell behind its schedule,
seconds after the load until all nodes hold the same (DN, entryCSN, description) for every entry, and whether
they converged within --converge-timeout. Not a test: the client processes and all nodes share the machine's
CPUs; a single run's p99 of ~200 samples rests on two samples, so run it more than once.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_replication import Conn, connect, percentile  # noqa: E402

from pyldapd.model.filter import Present  # noqa: E402
from pyldapd.protocol import ldap  # noqa: E402
from tests.replication import helpers  # noqa: E402
from tests.servers import (  # noqa: E402
    ROOTDN,
    ROOTPW,
    SUFFIX,
    free_port,
    ldap_tool,
    start_pyldapd,
    start_slapd,
)

PEOPLE = f"ou=People,{SUFFIX}"
STARTERS = {"pyldapd": start_pyldapd, "slapd": start_slapd}


def mesh_conf(directory: Path, ports: list[int], *, slapd: bool, sessionlog: int) -> str:
    return helpers.mesh_conf(
        directory, ports, slapd=slapd, sessionlog=sessionlog, extra_global="loglevel none\n"
    )


def seed_ldif(nodes: int, per_node: int) -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n",
    ]
    for n in range(1, nodes + 1):
        names = [f"probe{n}"] + [f"w{n}-{j}" for j in range(per_node)]
        for uid in names:
            parts.append(f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: {uid}\nsn: {uid}\n"
                         f"uid: {uid}\ndescription: 0\n")  # fmt: skip
    return "\n".join(parts) + "\n"


def snapshot(conn: Conn) -> dict[str, tuple[str, str]]:
    """DN -> (entryCSN, description) of every entry under the suffix."""
    out = {}
    for entry in conn.search(
        SUFFIX, ldap.SCOPE_WHOLE_SUBTREE, Present("objectClass"), ["entryCSN", "description"]
    ):
        attrs = {name.lower(): b"|".join(sorted(vals)).decode() for name, vals in entry.attributes}
        out[entry.dn.lower()] = (attrs.get("entrycsn", ""), attrs.get("description", ""))
    return out


def writer(job: tuple) -> dict:
    """One client process: paced modifies on its own node, sampled writes polled on every other node."""
    index, ports, rate, seconds, sample, per_node, poll_ms, write_timeout, start_at = job
    node = index + 1
    own = connect(ports[index])
    probe = f"uid=probe{node},{PEOPLE}"
    pending: list[tuple[int, float, set[int]]] = []  # (sequence, response time, nodes not yet showing it)
    lock = threading.Lock()
    lags: list[float] = []
    lost: list[int] = []
    done = threading.Event()

    def poller() -> None:
        others = {i: connect(port) for i, port in enumerate(ports) if i != index}
        while True:
            with lock:
                work = bool(pending)
            if not work:
                if done.is_set():
                    break
                time.sleep(poll_ms / 1000)
                continue
            seen: dict[int, int] = {}
            for i, conn in others.items():
                values = conn.values(probe, "description")
                seen[i] = max((int(v) for v in values), default=-1)
            now = time.perf_counter()
            with lock:
                for item in list(pending):
                    sequence, answered, missing = item
                    missing.difference_update(i for i, value in seen.items() if value >= sequence)
                    if not missing:
                        lags.append((now - answered) * 1000)
                        pending.remove(item)
                    elif now - answered > write_timeout:
                        lost.append(sequence)
                        pending.remove(item)
            time.sleep(poll_ms / 1000)
        for conn in others.values():
            conn.close()

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    interval = 1.0 / rate
    total = int(rate * seconds)
    behind = 0.0
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.perf_counter()
    written = 0
    for n in range(1, total + 1):
        due = began + (n - 1) * interval
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        if n % sample == 0:
            own.modify(probe, "description", str(n))
            answered = time.perf_counter()
            with lock:
                pending.append((n, answered, {i for i in range(len(ports)) if i != index}))
        else:
            own.modify(f"uid=w{node}-{n % per_node},{PEOPLE}", "description", str(n))
        written += 1
    elapsed = time.perf_counter() - began
    done.set()
    thread.join(write_timeout + 30)
    own.close()
    return {"written": written, "elapsed": elapsed, "lags": lags, "lost": len(lost), "behind": behind}


def run(kind: str, root: Path, args) -> dict[str, float]:
    say = lambda text: print(f"{kind:8} {text}", file=sys.stderr, flush=True)  # noqa: E731
    ports = [free_port() for _ in range(args.nodes)]
    nodes = []
    figures: dict[str, float] = {}
    conns: list[Conn] = []
    try:
        for i in range(args.nodes):
            name = f"node{i + 1}"
            directory = root / name / "db"
            directory.mkdir(parents=True, exist_ok=True)
            conf = mesh_conf(directory, ports, slapd=(kind == "slapd"), sessionlog=args.sessionlog)
            extra = {"debug": "none"} if kind == "pyldapd" else {}
            nodes.append(STARTERS[kind](root / name, conf, name=name, port=ports[i], **extra))
        result = ldap_tool("ldapadd", "-H", nodes[0].url, "-x", "-D", ROOTDN, "-w", ROOTPW,
                           input=seed_ldif(args.nodes, args.entries), timeout=600)  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"{kind}: seeding node1 failed: {result.stderr}")
        conns = [connect(port) for port in ports]
        expected = 2 + args.nodes * (args.entries + 1)
        began = time.monotonic()
        while True:
            snaps = [snapshot(c) for c in conns]
            if len(snaps[0]) == expected and all(s == snaps[0] for s in snaps[1:]):
                break
            if time.monotonic() - began > args.converge_timeout:
                counts = [len(s) for s in snaps]
                raise SystemExit(f"{kind}: the seed entries did not reach every node in {args.converge_timeout}s "
                                 f"(entries per node: {counts}, expected {expected})")  # fmt: skip
            time.sleep(0.1)
        say(f"{expected} seed entries on all {args.nodes} nodes after {time.monotonic() - began:.2f}s")

        start_at = time.time() + 0.5
        jobs = [(i, ports, args.rate / args.nodes, args.seconds, args.sample, args.entries, args.poll_ms,
                 args.write_timeout, start_at) for i in range(args.nodes)]  # fmt: skip
        with multiprocessing.get_context("fork").Pool(args.nodes) as pool:
            outcomes = pool.map(writer, jobs)
        load_end = time.monotonic()
        lags = [lag for o in outcomes for lag in o["lags"]]
        written = sum(o["written"] for o in outcomes)
        figures["writes/s achieved"] = written / max(o["elapsed"] for o in outcomes)
        figures["samples"] = len(lags) + sum(o["lost"] for o in outcomes)
        figures["lag p50 ms"] = statistics.median(lags) if lags else float("nan")
        figures["lag p90 ms"] = percentile(lags, 90)
        figures["lag p99 ms"] = percentile(lags, 99)
        figures["lag max ms"] = max(lags) if lags else float("nan")
        figures["samples over 50 ms"] = sum(1 for lag in lags if lag > 50)
        figures["samples never seen"] = sum(o["lost"] for o in outcomes)
        figures["writer max behind ms"] = max(o["behind"] for o in outcomes) * 1000
        say(f"{written} writes at {figures['writes/s achieved']:.0f}/s; lag p50 {figures['lag p50 ms']:.2f} ms "
            f"p99 {figures['lag p99 ms']:.2f} ms max {figures['lag max ms']:.2f} ms; "
            f"{figures['samples never seen']} of {figures['samples']} samples never seen")  # fmt: skip

        snaps = []
        while time.monotonic() - load_end < args.converge_timeout:
            snaps = [snapshot(c) for c in conns]
            if all(s == snaps[0] for s in snaps[1:]):
                break
            time.sleep(0.05)
        converged = bool(snaps) and all(s == snaps[0] for s in snaps[1:])
        figures["converge after load s"] = time.monotonic() - load_end if converged else float("nan")
        figures["converged (1=yes)"] = 1.0 if converged else 0.0
        if converged:
            say(f"all nodes hold the same {len(snaps[0])} (DN, entryCSN, description) after "
                f"{figures['converge after load s']:.2f}s")  # fmt: skip
        else:
            for i, snap in enumerate(snaps[1:], 2):
                differing = sorted(dn for dn in set(snaps[0]) | set(snap) if snaps[0].get(dn) != snap.get(dn))
                say(
                    f"NOT converged in {args.converge_timeout}s: node1 vs node{i}: {len(differing)} entries differ, "
                    f"e.g. "
                    + "; ".join(f"{dn}: {snaps[0].get(dn)} != {snap.get(dn)}" for dn in differing[:3])
                )
            for node in nodes:
                alive = "running" if node.process.poll() is None else f"exited {node.process.returncode}"
                say(f"{node.name} {alive}; log tail: {node.log()[-500:]!r}")
    finally:
        for conn in conns:
            try:
                conn.close()
            except OSError:
                pass
        for node in nodes:
            node.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="writes per second over all nodes")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sample", type=int, default=10, help="time every N-th write of each client")
    parser.add_argument("--entries", type=int, default=100, help="people per node the writes go round")
    parser.add_argument("--sessionlog", type=int, default=1000)
    parser.add_argument("--poll-ms", type=float, default=1.0, help="pause between polls of the other nodes")
    parser.add_argument("--write-timeout", type=float, default=30.0, help="a sample not seen by then is lost")
    parser.add_argument("--converge-timeout", type=float, default=60.0)
    parser.add_argument("--only", choices=sorted(STARTERS), help="run one implementation only")
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["slapd", "pyldapd"]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pyldapd-bench-mesh-") as tmp:
        for kind in kinds:
            results[kind] = run(kind, Path(tmp) / kind, args)
    print(f"\n{args.nodes}-node mesh, {args.rate:.0f} writes/s for {args.seconds:.0f} s from {args.nodes} client "
          f"processes, 1 in {args.sample} writes timed (poll every {args.poll_ms} ms); {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'figure':24} {'slapd':>10} {'pyldapd':>10} {'ratio':>8}")
    for figure in results[kinds[0]]:
        row = [results.get(k, {}).get(figure) for k in ("slapd", "pyldapd")]
        cells = [f"{v:10.2f}" if v is not None else f"{'-':>10}" for v in row]
        ratio = f"{row[1] / row[0]:8.2f}" if None not in row and row[0] else f"{'-':>8}"
        print(f"{figure:24} {cells[0]} {cells[1]} {ratio}")


if __name__ == "__main__":
    main()
