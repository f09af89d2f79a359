"""Paired rounds: the same ldclt load on several servers started in turn, round after round, so that a machine's
drift (other jobs, the VM's neighbours) lands on every variant alike. Use it to compare two versions of pyldapd
or two worker counts beside slapd when one-shot rates swing between runs.

    .venv/bin/python bench/bench_paired.py [--rounds 3] [--load modify|search] [--clients N] VARIANT...

VARIANT is `slapd` or `NAME=SRC:THREADS`: pyldapd from the source tree SRC (its PYTHONPATH, e.g. a checkout's
src/) with `threads THREADS`. Every variant gets bench_concurrency's data (10,000 users) loaded once, durable;
each round starts each variant, runs ldclt for one 10 s sample (modify: attreplace of description on random
users, 4 threads, as the rootdn; search: uid= exact searches on random users, 8 threads, anonymous; --clients
sets the threads), stops it. Prints each round's rates and each variant's ratio to the first variant of the same
round. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_concurrency as bc  # noqa: E402

from tests.servers import slapd_conf, start_pyldapd, start_slapd, wait_for  # noqa: E402

USERS, WIDTH = 10_000, 5


def parse_variant(text: str) -> tuple[str, str, int]:
    """(tag, source tree or "", threads) of one VARIANT argument."""
    if text == "slapd":
        return "slapd", "", 0
    tag, _, rest = text.partition("=")
    src, _, threads = rest.rpartition(":")
    if not tag or not src or not threads.isdigit():
        raise SystemExit(f"bad variant {text!r}: slapd or NAME=SRC:THREADS")
    return tag, str(Path(src).resolve()), int(threads)


def start(root: Path, tag: str, src: str, threads: int, conf: str):
    if not src:
        return start_slapd(root / tag, conf, name=tag)
    env = {**os.environ, "PYTHONPATH": src}
    server = start_pyldapd(root / tag, conf, name=tag, debug="none", env=env)
    if threads > 1:
        wait_for(lambda: f"{threads} worker processes listening" in server.log(), 60, what="the workers")
    return server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", choices=("modify", "search"), default="modify")
    parser.add_argument("--clients", type=int, help="ldclt threads (default: 4 modifying, 8 searching)")
    parser.add_argument("variants", nargs="+")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    rates: dict[str, list[float]] = {tag: [] for tag, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="pyldapd-paired-") as tmp:
        root = Path(tmp)
        ldif = root / "data.ldif"
        ldif.write_text(bc.make_ldif(USERS, 10, WIDTH))
        confs = {}
        for tag, src, threads in variants:
            db = root / tag / "db"
            db.mkdir(parents=True)
            extra = "loglevel none" + (f"\nthreads {threads}" if src else "")
            conf = slapd_conf(db, indexes=bc.INDEXES, modules=True, extra_global=extra)
            # the offline load runs with this interpreter: point it at the variant's tree too
            saved = os.environ.get("PYTHONPATH")
            if src:
                os.environ["PYTHONPATH"] = src
            try:
                bc.load_and_start("pyldapd" if src else "slapd", root, conf, ldif, 600, tag=tag).stop()
            finally:
                if saved is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = saved
            confs[tag] = conf
        for round_ in range(args.rounds):
            for tag, src, threads in variants:
                server = start(root, tag, src, threads, confs[tag])
                logged = server.log().count("group commit ")  # the log file goes on from round to round
                try:
                    modify = args.load == "modify"
                    clients = args.clients or (4 if modify else 8)
                    proc = bc.ldclt(server.port, USERS, WIDTH, clients, 1, modify)
                    rate = bc.ldclt_rate(proc, 1, args.load)
                finally:
                    server.stop()
                rates[tag].append(rate)
                # pyldapd's stop line: how many writes each commit and each sync carried
                grouping = [line.split("group commit ", 1)[1] for line in server.log().splitlines()
                            if "group commit " in line][logged:] if src and modify else []  # fmt: skip
                print(f"round {round_ + 1} {tag}: {rate:.0f}/s", *grouping, sep="  ", flush=True)
    first = rates[variants[0][0]]
    what = "modifies" if args.load == "modify" else "searches"
    print(f"\n{what} per second, and ratio to {variants[0][0]} in the same round")
    for tag, _, _ in variants:
        figures = "  ".join(
            f"{rate:7.0f} ({rate / base:.2f})" for rate, base in zip(rates[tag], first, strict=True)
        )
        print(f"{tag:12} {figures}")


if __name__ == "__main__":
    main()
