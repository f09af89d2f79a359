"""pyldapd against Debian's slapd, side by side, on the same data and load, in one run.

    .venv/bin/python bench/bench_core.py [--entries 10000] [--clients 4] [--seconds 10]

Both servers start from one slapd.conf with the same indexes, are loaded with the same LDIF through ldapadd, and
then get the same load from the same client processes: uid equality searches, simple binds and modifies. Each
figure is printed for both servers with the ratio pyldapd/slapd. Not a test: machines differ, ratios matter.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyldapd.protocol import ldap  # noqa: E402
from pyldapd.protocol.ldap import Change  # noqa: E402
from tests.servers import ROOTDN, ROOTPW, ldap_tool, slapd_conf, start_pyldapd, start_slapd  # noqa: E402

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"


def make_ldif(count: int) -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n",
    ]
    for i in range(count):
        parts.append(
            f"dn: uid=user{i},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: User Number {i}\nsn: Number{i}\n"
            f"givenName: User\nuid: user{i}\nmail: user{i}@example.com\nuserPassword: pw{i}\n"
            f"telephoneNumber: +1 555 {i:06d}\ndescription: benchmark entry {i}\n"
        )
    return "\n".join(parts) + "\n"


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = ldap.MessageFramer(1 << 24)
        self.pending: list[bytes] = []
        self.next_id = 1

    def request(self, op) -> ldap.LDAPMessage:
        """Send one request and read its final response (entries of a search are read and dropped)."""
        message_id = self.next_id
        self.next_id += 1
        self.sock.sendall(ldap.encode_message(ldap.LDAPMessage(message_id, op, [])))
        while True:
            while not self.pending:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.pending.extend(self.framer.feed(data))
            message = ldap.decode_message(self.pending.pop(0))
            if not isinstance(message.op, (ldap.SearchResultEntry, ldap.SearchResultReference)):
                return message


def worker(args: tuple[str, int, int, float, int]) -> int:
    kind, port, entries, seconds, seed = args
    rng = random.Random(seed)
    client = Client(port)
    client.request(ldap.BindRequest(3, ROOTDN, ROOTPW.encode(), None, None))
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        i = rng.randrange(entries)
        if kind == "search":
            op = ldap.SearchRequest(PEOPLE, 2, 0, 0, 0, False, ldap_filter_eq("uid", f"user{i}"), [])
            reply = client.request(op)
        elif kind == "bind":
            reply = client.request(
                ldap.BindRequest(3, f"uid=user{i},{PEOPLE}", f"pw{i}".encode(), None, None)
            )
        else:
            change = Change(2, "description", [f"changed {rng.random()}".encode()])
            reply = client.request(ldap.ModifyRequest(f"uid=user{i},{PEOPLE}", [change]))
        if reply.op.result_code != 0:
            raise RuntimeError(f"{kind} failed with {reply.op.result_code}: {reply.op.message}")
        done += 1
    return done


def ldap_filter_eq(attr: str, value: str):
    from pyldapd.model.filter import Equality

    return Equality(attr, value.encode())


def measure(kind: str, port: int, entries: int, clients: int, seconds: float) -> float:
    with multiprocessing.Pool(clients) as pool:
        counts = pool.map(worker, [(kind, port, entries, seconds, seed) for seed in range(clients)])
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    ldif = make_ldif(args.entries)
    indexes = "index objectClass eq\nindex uid,mail eq,pres\nindex cn,sn eq,sub"
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pyldapd-bench-") as tmp:
        root = Path(tmp)
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf = slapd_conf(root / name / "db", indexes=indexes, modules=True, extra_global="loglevel none")
            (root / name / "db").mkdir(parents=True)
            kwargs = {"debug": "none"} if name == "pyldapd" else {}
            server = start(root / name, conf, name=name, **kwargs)
            try:
                figures = results[name] = {}
                began = time.monotonic()
                result = ldap_tool("ldapadd", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=ldif,
                                   timeout=3600)  # fmt: skip
                if result.returncode != 0:
                    raise SystemExit(f"{name}: ldapadd failed: {result.stderr}")
                figures["ldapadd adds/s"] = (args.entries + 2) / (time.monotonic() - began)
                for kind in ("search", "bind", "modify"):
                    figures[f"{kind} ops/s"] = measure(
                        kind, server.port, args.entries, args.clients, args.seconds
                    )
                    print(f"{name:8} {kind:7} {figures[f'{kind} ops/s']:10.0f}/s", file=sys.stderr)
            finally:
                server.stop()
    print(f"\n{args.entries} entries, {args.clients} client processes, {args.seconds:.0f} s per load")
    print(f"{'figure':18} {'slapd':>10} {'pyldapd':>10} {'ratio':>8}")
    for figure in results["slapd"]:
        ours, theirs = results["pyldapd"][figure], results["slapd"][figure]
        print(f"{figure:18} {theirs:10.0f} {ours:10.0f} {ours / theirs:8.2f}")


if __name__ == "__main__":
    main()
