"""CPU time pyldapd spends per uid= search under ldclt (issue 13's search load), from the kernel's own accounting.

    .venv/bin/python bench/bench_search_cpu.py [--workers 1] [--samples 2] [--repeat 1]

Loads bench_concurrency's data (10,000 users, 2,000 items) into pyldapd (`threads N`), runs ldclt's
`-e esearch,random` (uid=userNNNNN under ou=People, anonymous, 8 threads, one request outstanding each) and reads
the server processes' utime + stime from /proc around the run: CPU per search = CPU seconds / searches, with its
system (kernel) part. A rate depends on what else runs on the machine; this figure much less, so two versions
compare by running this twice (PYTHONPATH=<other checkout>/src for the other). Not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_concurrency as bc  # noqa: E402

from tests.servers import child_pids, slapd_conf  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user + system, system) CPU seconds of these processes."""
    total = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
        system += int(fields[12])
    return total / TICKS, system / TICKS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2, help="ldclt samples of 10 s")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pyldapd-search-cpu-"))
    try:
        ldif = root / "data.ldif"
        ldif.write_text(bc.make_ldif(10000, 2000, 5))
        db = root / "pyldapd" / "db"
        db.mkdir(parents=True)
        conf = slapd_conf(db, indexes=bc.INDEXES, modules=True,
                          extra_global=f"loglevel none\nthreads {args.workers}")  # fmt: skip
        server = bc.load_and_start("pyldapd", root, conf, ldif, 600)
        try:
            pids = child_pids(server.process.pid) or [server.process.pid]
            for _ in range(args.repeat):
                ldclt = bc.ldclt(server.port, 10000, 5, 8, args.samples, False)
                time.sleep(0.5)  # its threads connected
                (cpu0, sys0), t0 = cpu_seconds(pids), time.monotonic()
                time.sleep(args.samples * 10 - 1)
                (cpu1, sys1), t1 = cpu_seconds(pids), time.monotonic()
                rate = bc.ldclt_rate(ldclt, args.samples, "searches")
                searches = rate * (t1 - t0)
                print(f"{rate:.0f} searches/s, server at {100 * (cpu1 - cpu0) / (t1 - t0):.0f}% of a CPU: "
                      f"{1e6 * (cpu1 - cpu0) / searches:.1f} us of CPU per search "
                      f"({1e6 * (sys1 - sys0) / searches:.1f} us in the kernel)")  # fmt: skip
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
