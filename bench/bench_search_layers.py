"""CPU of one uid= search, layer by layer, in one process: which part of pyldapd's request path costs what.

    .venv/bin/python bench/bench_search_layers.py [--searches 20000] [--repeat 5] [--instructions] [--layers a,b]

Loads bench_concurrency's data (10,000 users, 2,000 items) into a pyldapd database, then times, in this process
and without sockets, the same uid= exact searches (as ldclt's `-e esearch,random` sends them: subtree under
ou=People, no attribute list, no control, anonymous) through four cumulative layers:

1. `decode`: the request PDU decoded (protocol/ldap.py);
2. `bare`: decoded, base normalized, candidates planned and read (MdbDatabase.search), the compiled filter tested,
   the stored encoding and the result encoded: pyldapd's codec and storage, nothing else (bench_floor's `bare`);
3. `directory`: decoded, then Directory.search_steps run to its end and the result encoded: the directory
   engine's search (access control, limits, referrals, glue, subentries, selection);
4. `connection`: the PDU handed to LDAPConnection.data_received of a connection whose transport only counts its
   writes: the whole request path of the server (framing, dispatch, counters, checks, time slices, answer).

Prints microseconds per search for each (the best and the median of --repeat passes). The differences are what
each layer adds; bench_floor.py shows what they cost in searches per second against slapd. With --instructions,
each layer runs under valgrind's callgrind instead, and the instructions per search are printed: the same
figure on every run, where timings on a shared VM move by 10% (several minutes; valgrind from apt). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_concurrency as bc  # noqa: E402
from bench_floor import SEARCH_DONE, bare_search  # noqa: E402

from tests.servers import slapd_conf  # noqa: E402

USERS, ITEMS, WIDTH = 10_000, 2_000, 5
LAYERS = ("decode", "bare", "directory", "connection")


def search_pdu(message_id: int, uid: str) -> bytes:
    """A SearchRequest as ldclt sends it: (uid=...) under ou=People, subtree, no attributes."""
    from pyldapd.protocol.ber import encode_integer, tlv

    equality = tlv(0xA3, tlv(0x04, b"uid") + tlv(0x04, uid.encode()))
    # scope subtree, derefAliases never, sizeLimit 0, timeLimit 0, typesOnly FALSE, the filter, no attributes
    body = tlv(0x04, bc.PEOPLE.encode()) + b"\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00"
    return tlv(0x30, encode_integer(message_id) + tlv(0x63, body + equality + b"\x30\x00"))


class CountingTransport(asyncio.Transport):
    """A transport that keeps nothing: the connection's writes are counted, not sent."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closed = False

    def write(self, data) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def build_layers(conf_path: Path, pdus: list[bytes]):
    """The four layers as functions that run `pdus` through them (the caches warmed by one pass of each), with
    the connection's transport, the list the other layers answer into, and the connection."""
    from pyldapd.config.slapdconf import load_slapd_conf
    from pyldapd.protocol import ldap
    from pyldapd.server.app import Server
    from pyldapd.server.connection import LDAPConnection
    from pyldapd.server.directory import Session
    from pyldapd.server.log import Logger
    from pyldapd.server.steps import LONG_LIVED, run_steps

    server = Server(load_slapd_conf(str(conf_path)), [], Logger(0))
    LONG_LIVED.install()
    directory = server.directory
    schema, filters, db = directory.schema, directory.filters, directory.backends[0].db
    session = Session(conn_id=1)
    sink: list[bytes] = []
    conn = LDAPConnection(server, "ldap://127.0.0.1:389/", False)
    transport = CountingTransport()
    conn.connection_made(transport)

    def decode() -> None:
        for pdu in pdus:
            ldap.decode_message(pdu, 64)

    def bare() -> None:
        for pdu in pdus:
            bare_search(pdu, schema, filters, db, sink)

    def engine() -> None:
        for pdu in pdus:
            message = ldap.decode_message(pdu, 64)
            run_steps(directory.search_steps(session, message.message_id, message.op, [], sink.append))
            sink.append(ldap.encode_result(message.message_id, SEARCH_DONE, 0))

    def connection() -> None:
        for pdu in pdus:
            conn.data_received(pdu)

    layers = {"decode": decode, "bare": bare, "directory": engine, "connection": connection}
    for run in layers.values():  # warm: the entry cache, the DN and filter caches
        run()
        sink.clear()
    return layers, transport, sink, conn


async def measure(
    conf_path: Path, pdus: list[bytes], repeat: int, names: list[str]
) -> dict[str, list[float]]:
    every, transport, sink, conn = await build_layers(conf_path, pdus)
    layers = {name: every[name] for name in names}
    writes = transport.writes
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(repeat):
        for name, run in layers.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) / len(pdus) * 1e6)
            sink.clear()
    if "connection" in layers and transport.writes - writes != repeat * len(pdus):
        raise SystemExit(
            f"the connection wrote {transport.writes - writes} times for {repeat * len(pdus)} searches"
        )
    conn.connection_lost(None)
    return times


def make_pdus(count: int) -> list[bytes]:
    rng = random.Random(1)
    return [search_pdu(n % 100_000 + 1, f"user{rng.randrange(USERS):0{WIDTH}d}") for n in range(count)]


def run_child(conf_path: Path, layer: str, passes: int, searches: int) -> None:
    """Under callgrind: build the layers (warmed), then `passes` more passes of one layer."""
    import uvloop

    async def run() -> None:
        layers, _transport, sink, _conn = await build_layers(conf_path, make_pdus(searches))
        for _ in range(passes):
            layers[layer]()
            sink.clear()

    uvloop.run(run())


def loaded_database(root: Path) -> Path:
    """bench_concurrency's data loaded offline into a one-worker pyldapd database under `root`: its slapd.conf."""
    ldif = root / "data.ldif"
    ldif.write_text(bc.make_ldif(USERS, ITEMS, WIDTH))
    db = root / "db"
    db.mkdir()
    conf_path = root / "slapd.conf"
    conf_path.write_text(
        slapd_conf(db, indexes=bc.INDEXES, modules=True, extra_global="loglevel none\nthreads 1")
    )
    load = [sys.executable, "-m", "pyldapd.cli.main", "add", "-q", "-f", str(conf_path), "-l", str(ldif)]
    subprocess.run(load, check=True, capture_output=True, timeout=600)
    return conf_path


def instructions_per(
    script: str, item: str, flag: str, count: int, conf_path: Path, layers: list[str]
) -> None:
    """Instructions per `item` of each layer of `script` (run as `script FLAG N --child CONF LAYER PASSES`): a
    run with two passes less a run with one, so that the start, the loading and the warming cancel out.
    Deterministic (PYTHONHASHSEED fixed), whatever else the machine does: for comparing two versions of the code
    where timings drown in the machine's noise."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    env = dict(os.environ, PYTHONHASHSEED="0")

    def collected(layer: str, passes: int) -> subprocess.Popen:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, script,
                flag, str(count), "--child", str(conf_path), layer, str(passes)]  # fmt: skip
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def total(proc: subprocess.Popen) -> int:
        out, _ = proc.communicate(timeout=3600)
        found = re.search(r"Collected : (\d+)", out)
        if proc.returncode != 0 or found is None:
            raise SystemExit(f"callgrind run failed:\n{out[-2000:]}")
        return int(found.group(1))

    print(f"{count} {item} requests under callgrind; instructions per {item}")
    previous = 0.0
    for layer in layers:
        one, two = collected(layer, 1), collected(layer, 2)  # the two side by side (2 CPUs)
        per_item = (total(two) - total(one)) / count
        print(f"{layer:12s} {per_item:10.0f}   {per_item - previous:+10.0f}", flush=True)
        previous = per_item


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", type=int, help="20,000 (2,000 with --instructions)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's callgrind instead of timing (--searches 2000)",
    )
    parser.add_argument(
        "--layers", default=",".join(LAYERS), help="which layers, in order (default: all four)"
    )
    parser.add_argument("--child", nargs=3, metavar=("CONF", "LAYER", "PASSES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.searches is None:
        args.searches = 2_000 if args.instructions else 20_000
    if args.child:
        run_child(Path(args.child[0]), args.child[1], int(args.child[2]), args.searches)
        return
    root = Path(tempfile.mkdtemp(prefix="pyldapd-layers-"))
    try:
        conf_path = loaded_database(root)
        pdus = make_pdus(args.searches)
        if args.instructions:
            instructions_per(
                __file__, "search", "--searches", args.searches, conf_path, args.layers.split(",")
            )
            return
        import uvloop

        times = uvloop.run(measure(conf_path, pdus, args.repeat, args.layers.split(",")))
        print(f"{args.searches} uid= searches x {args.repeat}, in one process; microseconds per search")
        print(f"{'layer':12s} {'best':>7s} {'median':>7s}   {'adds (best)':>11s}")
        previous = 0.0
        for name, figures in times.items():
            best = min(figures)
            print(f"{name:12s} {best:7.1f} {statistics.median(figures):7.1f}   {best - previous:+11.1f}")
            previous = best
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
