"""`pyldapd add -q` against Debian's `slapadd -q`: the same generated LDIF, the same slapd.conf, in one run.

    .venv/bin/python bench/bench_slapadd.py [--entries 100000] [--keep DIR]

Each tool loads the LDIF into its own empty database directory (one slapd.conf each, identical but for the
directory). Prints both rates (entries per second, wall clock including start-up) and the ratio; then checks
that both databases hold the same number of entries (`pyldapd cat` / `slapcat`). Not a test: machines differ.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_core import make_ldif  # noqa: E402  (the same generated people in every benchmark)
from tests.servers import slapd_conf  # noqa: E402

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed


def count_entries(argv: list[str]) -> int:
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    return sum(1 for line in result.stdout.splitlines() if line.startswith("dn:"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-slapadd-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ldif = work / "data.ldif"
        ldif.write_text(make_ldif(args.entries))
        total = args.entries + 2
        confs = {}
        for name in ("slapd", "pyldapd"):
            db = work / f"{name}-db"
            shutil.rmtree(db, ignore_errors=True)
            db.mkdir()
            conf = work / f"{name}.conf"
            conf.write_text(
                slapd_conf(db, modules=(name == "slapd")).replace("maxsize 104857600", "maxsize 2147483648")
            )
            confs[name] = conf
        slapd_time = timed(["/usr/sbin/slapadd", "-q", "-f", str(confs["slapd"]), "-l", str(ldif)])
        ours_time = timed(
            [
                sys.executable,
                "-m",
                "pyldapd.cli.main",
                "add",
                "-q",
                "-f",
                str(confs["pyldapd"]),
                "-l",
                str(ldif),
            ]
        )
        slapd_rate, ours_rate = total / slapd_time, total / ours_time
        print(f"entries loaded: {total} (indexes: objectClass eq; uid,cn,sn,mail eq,pres,sub; uidNumber eq)")
        print(f"slapadd -q        {slapd_time:8.2f} s  {slapd_rate:10.0f} entries/s")
        print(f"pyldapd add -q    {ours_time:8.2f} s  {ours_rate:10.0f} entries/s")
        print(f"ratio (pyldapd time / slapadd time): {ours_time / slapd_time:.1f}x")
        n_slapd = count_entries(["/usr/sbin/slapcat", "-f", str(confs["slapd"])])
        n_ours = count_entries([sys.executable, "-m", "pyldapd.cli.main", "cat", "-f", str(confs["pyldapd"])])
        print(f"entries in the databases: slapcat {n_slapd}, pyldapd cat {n_ours}")
        return 0 if n_slapd == n_ours == total else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
