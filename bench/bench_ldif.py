"""back-ldif (`database ldif`): pyldapd against Debian's slapd on the same config.

    .venv/bin/python bench/bench_ldif.py [--entries 2000]

Each server gets `--entries` inetOrgPerson entries in one ldapadd (every entry one LDIF file written with fsync),
then a subtree search returning all of them, a search for one uid (back-ldif has no index: both read every entry),
and a restart: the time from start until the server answers (pyldapd builds its private LMDB copy from the files
then; slapd reads the files on every search instead). Prints each figure and the ratio pyldapd/slapd.
pyldapd fsyncs each entry's file and its folder before answering (as it commits back-mdb writes); slapd's
back-ldif does not sync at all, so adds mostly measure the disk's fsync time on pyldapd's side.
Not a test: machines differ, ratios matter.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import ROOTDN, ROOTPW, SCHEMA_DIR, SUFFIX, start_pyldapd, start_slapd  # noqa: E402


def conf(directory: Path) -> str:
    includes = "".join(
        f"include {SCHEMA_DIR}/{n}.schema\n" for n in ("core", "cosine", "inetorgperson", "nis")
    )
    return (f'{includes}database ldif\nsuffix "{SUFFIX}"\nrootdn "{ROOTDN}"\nrootpw {ROOTPW}\n'
            f"directory {directory}\n")  # fmt: skip


def data(count: int) -> str:
    out = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
           f"dn: ou=People,{SUFFIX}\nobjectClass: organizationalUnit\nou: People\n"]  # fmt: skip
    for i in range(count):
        out.append(f"dn: uid=user{i:05d},ou=People,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: user{i:05d}\n"
                   f"cn: User {i}\nsn: {i}\nmail: user{i}@example.com\n")  # fmt: skip
    return "\n".join(out)


def timed(argv: list[str], stdin: str | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr}")
    return time.perf_counter() - start


def measure(name: str, root: Path, entries: int) -> dict[str, float]:
    start = start_slapd if name == "slapd" else start_pyldapd
    folder = root / name
    (folder / "db").mkdir(parents=True)
    figures = {}
    server = start(folder, conf(folder / "db"), name=name)
    try:
        auth = ["-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW]
        figures["add (s)"] = timed(["ldapadd", *auth], data(entries))
        figures["search all (s)"] = timed(["ldapsearch", *auth, "-b", SUFFIX, "(objectClass=*)"])
        figures["search one uid (s)"] = timed(
            ["ldapsearch", *auth, "-b", SUFFIX, f"(uid=user{entries // 2:05d})"]
        )
    finally:
        server.stop()
    began = time.perf_counter()
    server = start(folder, conf(folder / "db"), name=name)
    figures["restart until answering (s)"] = time.perf_counter() - began
    try:
        auth = ["-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW]
        figures["search one uid after restart (s)"] = timed(
            ["ldapsearch", *auth, "-b", SUFFIX, f"(uid=user{entries // 3:05d})"]
        )
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ldif-") as tmp:
        results = {name: measure(name, Path(tmp), args.entries) for name in ("slapd", "pyldapd")}
    print(f"{args.entries} entries, database ldif")
    print(f"{'':36} {'slapd':>10} {'pyldapd':>10} {'ratio':>8}")
    for key in results["slapd"]:
        theirs, ours = results["slapd"][key], results["pyldapd"][key]
        print(f"{key:36} {theirs:10.3f} {ours:10.3f} {ours / theirs if theirs else float('nan'):8.2f}")


if __name__ == "__main__":
    main()
