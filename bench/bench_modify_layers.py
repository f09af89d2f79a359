"""CPU of one modify, layer by layer, in one process: which part of pyldapd's write path costs what.

    .venv/bin/python bench/bench_modify_layers.py [--modifies 4000] [--repeat 5] [--instructions] [--layers a,b]

Loads bench_concurrency's data (10,000 users, 2,000 items) into a pyldapd database, then runs, in this process
and without sockets, the modifies ldclt's `-e attreplace=description:XXXXXXXXXX,random` sends as the rootdn
(replace description on a random user) through three cumulative layers, in groups of four as four ldclt
threads keep pyldapd's group commit filled:

1. `decode`: the request PDU decoded (protocol/ldap.py);
2. `directory`: decoded, then Directory.modify run as the writer thread runs a group: each modify in its own
   nested transaction of one write transaction per group, the group committed, the after-commit effects run;
3. `connection`: the PDUs handed to LDAPConnection.data_received of four bound connections whose transports
   only count their writes, the loop run until each is answered: the whole path (framing, dispatch, counters,
   checks, the hand-over to the writer thread and back, the group commit, the answer).

Every pass modifies the same users, so from the second on each entry was modified before and the entry cache
holds it as stored (a long-running server's hot entries; under ldclt a run's first modify of a user decodes it).
Prints microseconds per modify for each (the best and the median of --repeat passes); the timings include the
commits' fsyncs. With --instructions each layer runs under valgrind's callgrind instead and the instructions per
modify are printed (fsyncs are the kernel's and count for nothing there): the same figure on every run, for
comparing two versions of the code. bench_paired.py --load modify shows what they make of the rate under ldclt
against slapd. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_concurrency as bc  # noqa: E402
from bench_search_layers import USERS, CountingTransport, instructions_per, loaded_database  # noqa: E402

from tests.servers import ROOTDN, ROOTPW  # noqa: E402

WIDTH = 5
LAYERS = ("decode", "directory", "connection")
GROUP = 4  # ldclt's modifying threads in bench_concurrency: the size of each group commit


def modify_pdu(message_id: int, user: int, value: bytes) -> bytes:
    """A ModifyRequest as ldclt's attreplace sends it: replace description of uid=userNNNNN."""
    from pyldapd.protocol.ber import encode_integer, tlv

    dn = f"uid=user{user:0{WIDTH}d},{bc.PEOPLE}".encode()
    change = tlv(0x30, b"\x0a\x01\x02" + tlv(0x30, tlv(0x04, b"description") + tlv(0x31, tlv(0x04, value))))
    return tlv(0x30, encode_integer(message_id) + tlv(0x66, tlv(0x04, dn) + tlv(0x30, change)))


def bind_pdu(message_id: int) -> bytes:
    from pyldapd.protocol.ber import encode_integer, tlv

    body = b"\x02\x01\x03" + tlv(0x04, ROOTDN.encode()) + tlv(0x80, ROOTPW.encode())
    return tlv(0x30, encode_integer(message_id) + tlv(0x60, body))


class AnsweredTransport(CountingTransport):
    """Counts its writes and wakes whoever waits for the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future | None = None
        self.failed = 0  # answers other than success (a bind's or a modify's)

    def write(self, data) -> None:
        self.writes += 1
        if not bytes(data).endswith(b"\x0a\x01\x00\x04\x00\x04\x00"):  # resultCode 0, no DN, no text
            self.failed += 1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def build_layers(conf_path: Path, pdus: list[bytes]):
    """The three layers as coroutine functions that run `pdus` through them (the caches warmed by one pass of
    each), and the server."""
    from pyldapd.config.slapdconf import load_slapd_conf
    from pyldapd.protocol import ldap
    from pyldapd.server.app import Server
    from pyldapd.server.connection import LDAPConnection
    from pyldapd.server.directory import Directory, Session
    from pyldapd.server.log import Logger
    from pyldapd.server.steps import LONG_LIVED

    server = Server(load_slapd_conf(str(conf_path)), [], Logger(0))
    LONG_LIVED.install()
    directory = server.directory
    backend = directory.backends[0]
    session = Session(conn_id=1, bind_dn=backend.config.rootdn, bind_ndn=backend.rootdn_ndn)
    modify = Directory.modify.__wrapped__  # as Directory.write hands it to the writer thread
    db = backend.db
    local = db._local
    connections = []
    for _ in range(GROUP):
        conn = LDAPConnection(server, "ldap://127.0.0.1:389/", False)
        transport = AnsweredTransport()
        conn.connection_made(transport)
        connections.append((conn, transport))
    for conn, transport in connections:  # bound as the rootdn, as ldclt's modifying threads are
        transport.waiter = asyncio.get_running_loop().create_future()
        conn.data_received(bind_pdu(1))
        await transport.waiter

    async def decode() -> None:
        for pdu in pdus:
            ldap.decode_message(pdu, 64)

    async def engine() -> None:
        for start in range(0, len(pdus), GROUP):
            effects = []
            with db.write() as group:
                for pdu in pdus[start : start + GROUP]:
                    message = ldap.decode_message(pdu, 64)
                    nested = group.child()
                    local.txn = nested
                    try:
                        modify(directory, session, message.op, [])
                        effects += nested.commit_child()
                    finally:
                        local.txn = None
            for effect in effects:
                effect()

    async def connection() -> None:
        loop = asyncio.get_running_loop()
        for start in range(0, len(pdus), GROUP):
            waiters = []
            for (conn, transport), pdu in zip(connections, pdus[start : start + GROUP], strict=False):
                transport.waiter = loop.create_future()
                waiters.append(transport.waiter)
                conn.data_received(pdu)
            await asyncio.gather(*waiters)

    layers = {"decode": decode, "directory": engine, "connection": connection}
    for run in layers.values():  # warm: the caches, the writer thread
        await run()
    return layers, server, connections


async def measure(
    conf_path: Path, pdus: list[bytes], repeat: int, names: list[str]
) -> dict[str, list[float]]:
    every, server, connections = await build_layers(conf_path, pdus)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeat):
        for name in names:
            started = time.perf_counter()
            await every[name]()
            times[name].append((time.perf_counter() - started) / len(pdus) * 1e6)
    close(server, connections)
    failed = sum(transport.failed for _conn, transport in connections)
    if failed:
        raise SystemExit(f"{failed} modifies were not answered with success")
    return times


def close(server, connections) -> None:
    for conn, _transport in connections:
        conn.connection_lost(None)
    for backend in server.directory.backends:
        backend.close()


def make_pdus(count: int) -> list[bytes]:
    rng = random.Random(1)
    return [
        modify_pdu(n % 100_000 + 2, rng.randrange(USERS), b"%010d" % rng.randrange(10**10))
        for n in range(count)
    ]


def run_child(conf_path: Path, layer: str, passes: int, modifies: int) -> None:
    """Under callgrind: build the layers (warmed), then `passes` more passes of one layer."""
    import uvloop

    async def run() -> None:
        layers, server, connections = await build_layers(conf_path, make_pdus(modifies))
        for _ in range(passes):
            await layers[layer]()
        close(server, connections)

    uvloop.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modifies", type=int, help="4,000 (1,000 with --instructions)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind")
    parser.add_argument(
        "--layers", default=",".join(LAYERS), help="which layers, in order (default: all three)"
    )
    parser.add_argument("--child", nargs=3, metavar=("CONF", "LAYER", "PASSES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.modifies is None:
        args.modifies = 1_000 if args.instructions else 4_000
    args.modifies -= args.modifies % GROUP
    if args.child:
        run_child(Path(args.child[0]), args.child[1], int(args.child[2]), args.modifies)
        return
    root = Path(tempfile.mkdtemp(prefix="pyldapd-modify-layers-"))
    try:
        conf_path = loaded_database(root)
        if args.instructions:
            print(f"(in groups of {GROUP})")
            instructions_per(
                __file__, "modify", "--modifies", args.modifies, conf_path, args.layers.split(",")
            )
            return
        import uvloop

        pdus = make_pdus(args.modifies)
        times = uvloop.run(measure(conf_path, pdus, args.repeat, args.layers.split(",")))
        print(
            f"{args.modifies} modifies x {args.repeat}, in one process, groups of {GROUP}; microseconds per modify"
        )
        previous = 0.0
        for name, values in times.items():
            best = min(values)
            print(
                f"{name:12s} best {best:8.1f}  median {statistics.median(values):8.1f}   {best - previous:+8.1f}"
            )
            previous = best
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
