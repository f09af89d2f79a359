"""A group of many members, pyldapd against Debian's slapd, side by side in one run.

    .venv/bin/python bench/bench_big_group.py [--members 50000] [--repeat 20] [--workers N]

Both servers start from one slapd.conf (`index member eq`, durable commits, `loglevel none`); one connection,
bound as the rootdn, adds `cn=big` (a groupOfNames of --members members), then times, each --repeat times:
a modify adding one member, one taking one away (each followed by the first (member=...) search after it), one
replacing the group's description (its members untouched), a (member=...) search again, and a compare of a member.
Medians in ms, and the ratio pyldapd/slapd (above 1: pyldapd slower). Directory clients (sssd, nslcd) ask
(member=...) of groups all the time; administrators add one member to a group of 100,000.
Not a test: machines differ, ratios matter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_big_filter import Client  # noqa: E402

from pyldapd.model.filter import Equality  # noqa: E402
from pyldapd.protocol import ldap  # noqa: E402
from pyldapd.protocol.ldap import Change  # noqa: E402
from tests.servers import ROOTDN, ROOTPW, slapd_conf, start_pyldapd, start_slapd  # noqa: E402

SUFFIX = "dc=example,dc=com"
GROUP = f"cn=big,{SUFFIX}"


def member(i: int | str) -> bytes:
    return f"uid=user{i},ou=People,{SUFFIX}".encode()


def timed(client: Client, op: object) -> tuple[float, object]:
    pdu = client.encode(op)
    began = time.perf_counter()
    reply, entries = client.request(pdu)
    return time.perf_counter() - began, (reply.op.result_code, entries)


def run(port: int, members: int, repeat: int) -> dict[str, float]:
    client = Client(port)
    reply, _ = client.request(ldap.BindRequest(3, ROOTDN, ROOTPW.encode(), None, None))
    assert reply.op.result_code == 0, reply.op
    top = [("objectClass", [b"dcObject", b"organization"]), ("o", [b"E"]), ("dc", [b"example"])]
    assert client.request(ldap.AddRequest(SUFFIX, top))[0].op.result_code == 0
    everyone = [member(i) for i in range(members)]
    group = [("objectClass", [b"groupOfNames"]), ("cn", [b"big"]), ("member", everyone)]
    figures: dict[str, float] = {}
    seconds, outcome = timed(client, ldap.AddRequest(GROUP, group))
    assert outcome == (0, 0), outcome
    figures["add the group"] = seconds
    times: dict[str, list[float]] = {}

    def note(name: str, op: object, expected: tuple[int, int]) -> None:
        seconds, outcome = timed(client, op)
        if outcome != expected:
            raise RuntimeError(f"{name}: {outcome}, expected {expected}")
        times.setdefault(name, []).append(seconds)

    def search(who: bytes) -> ldap.SearchRequest:
        return ldap.SearchRequest(SUFFIX, 2, 0, 0, 0, False, Equality("member", who), ["1.1"])

    for i in range(repeat):
        note(
            "modify adding one member",
            ldap.ModifyRequest(GROUP, [Change(0, "member", [member(f"new{i}")])]),
            (0, 0),
        )
        note("(member=) search after adding one", search(member(members - 1 - i)), (0, 1))
        note(
            "modify taking one away",
            ldap.ModifyRequest(GROUP, [Change(1, "member", [member(i * 7)])]),
            (0, 0),
        )
        note("(member=) search after taking one away", search(member(members - 1 - i)), (0, 1))
        note(
            "modify of its description",
            ldap.ModifyRequest(GROUP, [Change(2, "description", [b"%d" % i])]),
            (0, 0),
        )
        note("(member=) search again", search(member(members - 1 - i)), (0, 1))
        note("compare of a member", ldap.CompareRequest(GROUP, "member", member(members - 1 - i)), (6, 0))
    client.close()
    figures.update({name: statistics.median(values) for name, values in times.items()})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="pyldapd's threads (default: one per CPU)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pyldapd-bench-") as tmp:
        root = Path(tmp)
        for name in ("slapd", "pyldapd"):
            threads = f"threads {args.workers}" if args.workers and name == "pyldapd" else ""
            conf = slapd_conf(root / name / "db", indexes="index objectClass eq\nindex member eq", modules=True,
                              extra_global=f"loglevel none\n{threads}")  # fmt: skip
            server = (start_slapd(root / name, conf) if name == "slapd"
                      else start_pyldapd(root / name, conf, debug="none"))  # fmt: skip
            try:
                results[name] = run(server.port, args.members, args.repeat)
            finally:
                server.stop()
            print(f"{name} done", file=sys.stderr)
    workers = args.workers or "one per CPU"
    print(
        f"\ngroup of {args.members:,} members, member eq-indexed, median of {args.repeat} (pyldapd workers: {workers})"
    )
    print(f"{'':34} {'slapd ms':>9} {'pyldapd ms':>11} {'ratio':>7}")
    for figure, theirs in results["slapd"].items():
        ours = results["pyldapd"][figure]
        print(f"{figure:34} {theirs * 1000:9.2f} {ours * 1000:11.2f} {ours / theirs:7.2f}")


if __name__ == "__main__":
    main()
