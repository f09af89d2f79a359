"""A consumer's refresh after a provider restart: from the accesslog (`syncprov-sessionlog-source`) against the
present phase the in-memory session log leaves after a restart, pyldapd beside slapd (issue 11).

    .venv/bin/python bench/bench_sessionlog_source.py [--entries 5000] [--deletes 20]

For each server and each provider config (the same slapd.conf for both servers, from
tests/replication/test_persistent_sessionlog.py: `source` = syncprov-sessionlog-source cn=accesslog with the
accesslog overlay; `memory` = syncprov-sessionlog 1000 without it): --entries people are loaded with ldapadd, a
refreshOnly cookie is taken, --deletes entries are deleted, the provider restarts, and a refreshOnly sync search
from the old cookie (ldapsearch -E sync=ro/<cookie>) is timed; printed: seconds, the bytes ldapsearch printed,
UUIDs in delete-phase syncIdSets, UUIDs in present-phase syncIdSets. Not a test: machines differ.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_core import make_ldif  # noqa: E402
from tests.replication.test_persistent_sessionlog import ADMIN, cookie_of, provider_conf, start  # noqa: E402
from tests.servers import SUFFIX, ldap_tool  # noqa: E402

PEOPLE = f"ou=People,{SUFFIX}"


def run(kind: str, mode: str, workdir: Path, entries: int, deletes: int) -> tuple[float, int, int, int]:
    conf = provider_conf(workdir, slapd=kind == "slapd", accesslog=mode == "source")
    if mode == "memory":
        conf = conf.replace("overlay syncprov\n", "overlay syncprov\nsyncprov-sessionlog 1000\n", 2)
    server = start(kind, workdir, conf)
    try:
        loaded = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=make_ldif(entries), timeout=1800)
        assert loaded.returncode == 0, loaded.stderr
        cookie = cookie_of(server)
        for i in range(deletes):
            assert ldap_tool("ldapdelete", "-H", server.url, *ADMIN, f"uid=user{i},{PEOPLE}").returncode == 0
        server.stop()
        server = start(kind, workdir, conf, port=server.port)
        began = time.monotonic()
        result = ldap_tool("ldapsearch", "-H", server.url, *ADMIN, "-b", SUFFIX, "-E", f"sync=ro/{cookie}",
                           "(objectClass=*)", "1.1", timeout=600)  # fmt: skip
        seconds = time.monotonic() - began
        assert result.returncode == 0, result.stderr
        blocks = [b for b in result.stdout.split("\n\n") if "SyncInfo Received: ID Set" in b]
        deleted = sum(b.count("\n#\t") for b in blocks if "no longer match" in b)
        present = sum(b.count("\n#\t") for b in blocks if "no longer match" not in b)
        return seconds, len(result.stdout), deleted, present
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--deletes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sessionlog-") as tmp:
        print(
            f"{args.entries} entries, {args.deletes} deleted, provider restarted, refresh from the old cookie"
        )
        print(f"{'server':8} {'mode':7} {'seconds':>8} {'bytes':>9} {'deleted':>8} {'present':>8}")
        for mode in ("source", "memory"):
            figures = {}
            for kind in ("slapd", "pyldapd"):
                figures[kind] = run(kind, mode, Path(tmp) / f"{kind}-{mode}", args.entries, args.deletes)
                seconds, size, deleted, present = figures[kind]
                print(f"{kind:8} {mode:7} {seconds:8.2f} {size:9d} {deleted:8d} {present:8d}", flush=True)
            print(f"{'ratio':8} {mode:7} {figures['pyldapd'][0] / max(figures['slapd'][0], 1e-6):8.2f}")


if __name__ == "__main__":
    main()
