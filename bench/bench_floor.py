"""Where pyldapd's search rate stops: slapd, pyldapd, and two stripped servers under the same ldclt load, in turn.

    .venv/bin/python bench/bench_floor.py [--workers 2] [--rounds 2]

The load is issue 13's: ldclt uid= exact searches on random users (`-e esearch,random`, 8 threads, anonymous)
over bench_concurrency's data (10,000 users, 2,000 items), 10 s per server per round. The servers:

- `slapd`: Debian's slapd 2.5 (threads not set: 16);
- `pyldapd`: `pyldapd serve` with `threads N`;
- `bare`: N processes (SO_REUSEPORT) of uvloop and pyldapd's own codec and storage, on pyldapd's database:
  decode the request, normalize the base, plan and read the candidates (MdbDatabase.search), test the compiled
  filter, send the stored `*` encoding and the result. No access control, limits, counters, logs, referral or
  glue checks, time slices or controls: what every search costs pyldapd before it does what a server must;
- `canned`: N processes of uvloop answering every search with one fixed entry (its DN set to the uid asked
  for): what the event loop, the sockets and ldclt leave on this machine.

Prints each server's rate, its ratio to slapd in the same round, and its CPU per search (utime + stime of its
processes over the sample). `bare` is the floor of the design: a gap between it and slapd no cut of the
server's own work can close. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_concurrency as bc  # noqa: E402
from bench_search_cpu import cpu_seconds  # noqa: E402

from tests.servers import child_pids, free_port, slapd_conf, start_pyldapd, wait_for  # noqa: E402

USERS, ITEMS, WIDTH = 10_000, 2_000, 5
SEARCH_DONE = 0x65


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def serve_forever(sock: socket.socket, workers: int, protocol_factory) -> None:
    """Fork workers - 1 more processes; each builds its protocol (after the fork: LMDB is opened per process)."""
    for _ in range(workers - 1):
        if os.fork() == 0:
            break
    import uvloop

    async def main() -> None:
        await asyncio.get_running_loop().create_server(protocol_factory(), sock=sock)
        await asyncio.Event().wait()

    uvloop.run(main())


class Responder(asyncio.Protocol):
    """Frames the requests of one connection and writes the answers of each read in one write."""

    def connection_made(self, transport) -> None:
        from pyldapd.protocol.ldap import MessageFramer

        self.transport = transport
        self.framer = MessageFramer()

    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        for pdu in self.framer.feed(data):
            if not self.answer(pdu, out):
                self.transport.close()
                return
        if out:
            self.transport.write(b"".join(out))

    def answer(self, pdu: bytes, out: list[bytes]) -> bool:
        """Append the responses to one request; False: an Unbind, the connection ends."""
        raise NotImplementedError


def bare_search(pdu: bytes, schema, filters, db, out: list[bytes]):
    """pyldapd's codec and storage alone on one request: a search answered into `out`; returns the message."""
    from pyldapd.model.dn import normalize_dn
    from pyldapd.protocol import ldap

    message = ldap.decode_message(pdu, 64)
    op, mid = message.op, message.message_id
    if isinstance(op, ldap.SearchRequest):
        matches = filters.compile(op.filter)
        with db.read() as txn:
            for entry in txn.search(normalize_dn(op.base, schema), op.scope, op.filter):
                if matches(entry):
                    out.append(ldap.encode_search_result_entry(mid, entry.dn, entry.encoded_user))
        out.append(ldap.encode_result(mid, SEARCH_DONE, 0))
    return message


def bare_protocol(conf_path: str):
    """pyldapd's codec and storage, nothing else (see the module docstring)."""
    from pyldapd.config.slapdconf import load_slapd_conf
    from pyldapd.protocol import ldap
    from pyldapd.server.app import build_schema
    from pyldapd.server.directory import Directory

    config = load_slapd_conf(conf_path)
    directory = Directory(config, build_schema(config), 0)
    schema, filters, db = directory.schema, directory.filters, directory.backends[0].db

    class Bare(Responder):
        def answer(self, pdu: bytes, out: list[bytes]) -> bool:
            message = bare_search(pdu, schema, filters, db, out)
            if isinstance(message.op, ldap.BindRequest):
                out.append(ldap.encode_result(message.message_id, ldap.BIND_RESPONSE, 0))
            return not isinstance(message.op, ldap.UnbindRequest)

    return Bare


def canned_protocol(_conf_path: str):
    """The event loop alone: one fixed entry for every search, its DN the uid asked for."""
    from pyldapd.protocol import ldap
    from pyldapd.protocol.ber import encode_integer, tlv

    attributes = [("objectClass", [b"inetOrgPerson"]), ("cn", [b"User Number 42"]), ("sn", [b"Number42"]),
                  ("mail", [b"user00042@example.com"]), ("employeeNumber", [b"42"]),
                  ("description", [b"benchmark entry 42"])]  # fmt: skip
    blob = b"".join(
        tlv(0x30, tlv(0x04, name.encode()) + tlv(0x31, b"".join(tlv(0x04, v) for v in values)))
        for name, values in attributes
    )
    done = b"\x0a\x01\x00\x04\x00\x04\x00"
    uid_marker = b"\x04\x03uid\x04"

    class Canned(Responder):
        def answer(self, pdu: bytes, out: list[bytes]) -> bool:
            at = 2 if pdu[1] < 0x80 else 2 + (pdu[1] & 0x7F)
            mid_len = pdu[at + 1]
            mid = encode_integer(int.from_bytes(pdu[at + 2 : at + 2 + mid_len], "big"))
            op = pdu[at + 2 + mid_len]
            if op == ldap.SEARCH_REQUEST:
                start = pdu.find(uid_marker) + len(uid_marker)
                uid = pdu[start + 1 : start + 1 + pdu[start]]
                dn = b"uid=" + uid + b"," + bc.PEOPLE.encode()
                entry = tlv(0x64, tlv(0x04, dn) + tlv(0x30, blob))
                out.append(tlv(0x30, mid + entry))
                out.append(tlv(0x30, mid + tlv(SEARCH_DONE, done)))
            elif op == ldap.BIND_REQUEST:
                out.append(tlv(0x30, mid + tlv(ldap.BIND_RESPONSE, done)))
            return op != ldap.UNBIND_REQUEST

    return Canned


class Stripped:
    """A `bare` or `canned` server started as this script's own child process (`--serve KIND`)."""

    def __init__(self, kind: str, workers: int, conf_path: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, __file__, "--serve", kind, "--port", str(self.port), "--workers", str(workers),
                "--conf", str(conf_path)]  # fmt: skip
        self.process = subprocess.Popen(argv, start_new_session=True)
        wait_for(self.accepts, 60, what=f"the {kind} server")
        if workers > 1:
            wait_for(lambda: len(child_pids(self.process.pid)) >= workers - 1, 30, what="its workers")
        time.sleep(0.5)

    def accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def pids(self) -> list[int]:
        return [self.process.pid, *child_pids(self.process.pid)]

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(15)


def measure(port: int, pids: list[int]) -> tuple[float, float, float]:
    """(searches per second, server CPU microseconds per search, the kernel's part of them) over one ldclt
    sample of 10 s."""
    load = bc.ldclt(port, USERS, WIDTH, 8, 1, False)
    time.sleep(0.5)
    (cpu0, sys0), t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(8.5)
    (cpu1, sys1), t1 = cpu_seconds(pids), time.monotonic()
    rate = bc.ldclt_rate(load, 1, "searches")
    searches = rate * (t1 - t0)
    return rate, 1e6 * (cpu1 - cpu0) / searches, 1e6 * (sys1 - sys0) / searches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=("bare", "canned"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--conf", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        factory = bare_protocol if args.serve == "bare" else canned_protocol
        serve_forever(listening_socket(args.port), args.workers, lambda: factory(args.conf))
        return
    root = Path(tempfile.mkdtemp(prefix="pyldapd-floor-"))
    running = []
    try:
        ldif = root / "data.ldif"
        ldif.write_text(bc.make_ldif(USERS, ITEMS, WIDTH))
        confs = {}
        for kind in ("slapd", "pyldapd"):
            db = root / kind / "db"
            db.mkdir(parents=True)
            extra = "loglevel none" + (f"\nthreads {args.workers}" if kind == "pyldapd" else "")
            confs[kind] = slapd_conf(db, indexes=bc.INDEXES, modules=True, extra_global=extra)
        slapd = bc.load_and_start("slapd", root, confs["slapd"], ldif, 600)
        running.append(slapd)
        bc.load_and_start(
            "pyldapd", root, confs["pyldapd"], ldif, 600
        ).stop()  # loaded once, started per round
        conf_path = root / "pyldapd" / "bare.conf"
        conf_path.write_text(confs["pyldapd"])
        rows: dict[str, list[tuple[float, float, float, float]]] = {}
        for round_no in range(1, args.rounds + 1):
            slapd_rate, slapd_cpu, slapd_sys = measure(slapd.port, [slapd.process.pid])
            rows.setdefault("slapd", []).append((slapd_rate, 1.0, slapd_cpu, slapd_sys))
            for kind in ("pyldapd", "bare", "canned"):
                if kind == "pyldapd":
                    server = start_pyldapd(root / "pyldapd", confs["pyldapd"], debug="none")
                    if args.workers > 1:
                        wait_for(lambda s=server: f"{args.workers} worker processes listening" in s.log(), 60,
                                 what="the workers")  # fmt: skip
                    pids = child_pids(server.process.pid) or [server.process.pid]
                    port = server.port
                else:
                    server = Stripped(kind, args.workers, conf_path)
                    pids, port = server.pids(), server.port
                running.append(server)
                try:
                    rate, cpu, kernel = measure(port, pids)
                finally:
                    server.stop()
                    running.remove(server)
                rows.setdefault(kind, []).append((rate, rate / slapd_rate, cpu, kernel))
            print(
                f"round {round_no}: " + ", ".join(f"{k} {v[-1][0]:.0f}/s" for k, v in rows.items()),
                flush=True,
            )
        print(f"\nuid= searches (ldclt, 8 threads), {args.workers} worker processes for the Python servers; "
              f"per round: rate, ratio to slapd, server CPU per search (in the kernel)")  # fmt: skip
        for kind, figures in rows.items():
            cells = "   ".join(f"{rate:7.0f}/s {ratio:4.2f} {cpu:5.1f} us ({kernel:4.1f})"
                               for rate, ratio, cpu, kernel in figures)  # fmt: skip
            print(f"{kind:8s} {cells}")
    finally:
        for server in running:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
