"""A search whose filter is an OR of many uid= terms, pyldapd against Debian's slapd (issue 13).

    .venv/bin/python bench/bench_big_filter.py [--entries 10000] [--terms 10000] [--repeat 3]

Both servers start from one slapd.conf (uid indexed eq), loaded offline with the same LDIF (`slapadd`,
`pyldapd add`). Three requests are timed on each: anonymous, where the terms name every 25th user so about
entries/25 match (under the default sizelimit of 500), the matching terms first ("anonymous") or last
("anon-last": an evaluator that tries the terms one by one goes through all of them for every entry); and as the
rootdn, where the terms name random uids of which about 43% exist. While each big search runs, another connection sends root DSE searches one after another;
the slowest answer among them is printed too (it shows whether one expensive search stalls other clients).
Not a test: machines differ, ratios matter.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyldapd.model.filter import Equality, Or, Present  # noqa: E402
from pyldapd.protocol import ldap  # noqa: E402
from tests.servers import ROOTDN, ROOTPW, SLAPD, slapd_conf, start_pyldapd, start_slapd  # noqa: E402

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
ACL = """\
access to attrs=userPassword by self write by anonymous auth by * none
access to attrs=shadowLastChange by self write by * read
access to * by * read
"""


def make_ldif(count: int) -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n",
    ]
    for i in range(count):
        parts.append(
            f"dn: uid=user{i},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: User Number {i}\nsn: Number{i}\n"
            f"uid: user{i}\nmail: user{i}@example.com\ndescription: benchmark entry {i}\n"
        )
    return "\n".join(parts) + "\n"


class Client:
    """A blocking LDAP client on one socket: enough to time requests without a client library's overhead."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(600)
        self.framer = ldap.MessageFramer(1 << 26)
        self.pending: list[bytes] = []
        self.next_id = 1

    def encode(self, op) -> bytes:
        """The PDU of a request with the next message id (encode ahead to time only the server)."""
        message_id = self.next_id
        self.next_id += 1
        return ldap.encode_message(ldap.LDAPMessage(message_id, op, []))

    def request(self, op: Any) -> tuple[ldap.LDAPMessage, int]:
        """Send one request (an operation, or a PDU from `encode`); return its final response and the number
        of entries that came before it."""
        self.sock.sendall(op if isinstance(op, bytes) else self.encode(op))
        entries = 0
        while True:
            while not self.pending:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.pending.extend(self.framer.feed(data))
            message = ldap.decode_message(self.pending.pop(0))
            if isinstance(message.op, ldap.SearchResultEntry):
                entries += 1
            elif not isinstance(message.op, ldap.SearchResultReference):
                return message, entries

    def close(self) -> None:
        self.sock.close()


def big_or(values: list[str]) -> Or:
    return Or(tuple(Equality("uid", v.encode()) for v in values))


def timed_search(port: int, flt: Or, bind: bool) -> tuple[float, int, int, float, int]:
    """(seconds, result code, entries, slowest root DSE answer meanwhile, root DSE answers meanwhile)."""
    client = Client(port)
    if bind:
        reply, _ = client.request(ldap.BindRequest(3, ROOTDN, ROOTPW.encode(), None, None))
        assert reply.op.result_code == 0, reply.op
    done = threading.Event()
    latencies: list[float] = []

    def probe() -> None:
        other = Client(port)
        dse = ldap.SearchRequest("", 0, 0, 0, 0, False, Present("objectClass"), ["namingContexts"])
        while not done.is_set() and len(latencies) < 100_000:
            began = time.perf_counter()
            other.request(dse)
            latencies.append(time.perf_counter() - began)
            time.sleep(0.01)
        other.close()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(0.1)
    pdu = client.encode(ldap.SearchRequest(SUFFIX, 2, 0, 0, 0, False, flt, ["1.1"]))
    began = time.perf_counter()
    reply, entries = client.request(pdu)
    elapsed = time.perf_counter() - began
    done.set()
    prober.join(120)
    client.close()
    return elapsed, reply.op.result_code, entries, max(latencies, default=0.0), len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--terms", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each search; the best is kept")
    parser.add_argument("--acl", action="store_true", help="with Debian's default access rules (else none)")
    args = parser.parse_args()
    rng = random.Random(13)
    anonymous = big_or([f"user{i * 25}" for i in range(args.terms)])
    anonymous_last = Or(tuple(reversed(anonymous.filters)))
    rooted = big_or([f"user{rng.randrange(int(args.entries * 2.3))}" for _ in range(args.terms)])
    cases: tuple[tuple[str, Or, bool], ...] = (
        ("anonymous", anonymous, False),
        ("anon-last", anonymous_last, False),
        ("rootdn", rooted, True),
    )
    if len(ldap.encode_filter(anonymous)) > 250_000:  # over the anonymous PDU limit (sockbuf_max_incoming)
        cases = cases[2:]
    results: dict[str, dict[str, tuple[float, int, int, float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="pyldapd-bench-") as tmp:
        root = Path(tmp)
        ldif_path = root / "data.ldif"
        ldif_path.write_text(make_ldif(args.entries))
        for name in ("slapd", "pyldapd"):
            db = root / name / "db"
            db.mkdir(parents=True)
            conf = slapd_conf(db, indexes="index objectClass eq\nindex uid eq", modules=True,
                              extra_global="loglevel none", extra_db=ACL if args.acl else "")  # fmt: skip
            conf_path = root / name / "load.conf"
            conf_path.write_text(conf)
            if name == "slapd":
                load = [SLAPD[: -len("slapd")] + "slapadd", "-q", "-f", str(conf_path), "-l", str(ldif_path)]
            else:
                load = [sys.executable, "-m", "pyldapd.cli.main", "add", "-q", "-f", str(conf_path),
                        "-l", str(ldif_path)]  # fmt: skip
            subprocess.run(load, check=True, capture_output=True, timeout=600)
            start = start_slapd if name == "slapd" else start_pyldapd
            kwargs = {"debug": "none"} if name == "pyldapd" else {}
            server = start(root / name, conf, name=name, **kwargs)
            try:
                figures = results[name] = {}
                for case, flt, bind in cases:
                    runs = [timed_search(server.port, flt, bind) for _ in range(args.repeat)]
                    best = min(runs, key=lambda r: r[0])
                    figures[case] = best
                    print(f"{name:8} {case:9} {best[0]:8.3f} s  result {best[1]}  {best[2]} entries  "
                          f"root DSE slowest {best[3] * 1000:.1f} ms of {best[4]}", file=sys.stderr)  # fmt: skip
            finally:
                server.stop()
    acl = "Debian's access rules" if args.acl else "no access rules"
    print(f"\n{args.entries} entries, OR of {args.terms} uid= terms, {acl}, best of {args.repeat}")
    print(
        f"{'search':10} {'slapd s':>9} {'pyldapd s':>10} {'ratio':>7} {'entries':>8}  root DSE slowest (ms)"
    )
    for case, _flt, _bind in cases:
        ours, theirs = results["pyldapd"][case], results["slapd"][case]
        print(f"{case:10} {theirs[0]:9.3f} {ours[0]:10.3f} {ours[0] / theirs[0]:7.2f} {ours[2]:8}  "
              f"slapd {theirs[3] * 1000:.1f}, pyldapd {ours[3] * 1000:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
