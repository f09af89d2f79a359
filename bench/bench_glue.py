"""Glued databases (`subordinate`), pyldapd against Debian's slapd: an offline load through the glue and a subtree
search of the whole tree.

    .venv/bin/python bench/bench_glue.py [--entries 10000] [--repeat 3]

Both start from one slapd.conf (tests/server/test_glue.py's: two subordinates under dc=example,dc=com); the LDIF
puts `--entries` people into the ou=People subordinate. `slapadd`/`pyldapd add` load it with no -b (each entry
routed to its database), then a served subtree search of dc=example,dc=com (as the rootdn, 1.1) is timed on each.
Not a test: machines differ, ratios matter.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server.test_glue import LDIF, PEOPLE, SUFFIX, entry, glue_conf, tool  # noqa: E402
from tests.servers import ROOTDN, ROOTPW, ldap_tool, start_pyldapd, start_slapd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    people = [entry(f"uid=b{i},{PEOPLE}", "objectClass: inetOrgPerson", f"uid: b{i}", f"cn: B {i}", f"sn: B{i}")
              for i in range(args.entries)]  # fmt: skip
    ldif = "\n".join([LDIF, *people])
    figures: dict[str, tuple[float, float, int]] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-glue-"))
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            conf_text = glue_conf(root / name / "db", global_lines="sizelimit unlimited")
            conf_text = conf_text.replace("index objectClass eq", "index objectClass eq\nmaxsize 1073741824")
            conf = root / name / "slapd.conf"
            conf.write_text(conf_text)
            began = time.monotonic()
            added = tool(name, "add", conf, "-q", input=ldif)
            load = time.monotonic() - began
            if added.returncode != 0:
                raise SystemExit(f"{name}: load failed: {added.stderr}")
            server = start(root / name, conf_text, name=name)
            try:
                best, found = float("inf"), 0
                for _ in range(args.repeat):
                    began = time.monotonic()
                    result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, "-LLL",
                                       "-b", SUFFIX, "1.1", timeout=600)  # fmt: skip
                    best = min(best, time.monotonic() - began)
                    found = result.stdout.count("dn: ")
            finally:
                server.stop()
            figures[name] = (load, best, found)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'':10} {'load (s)':>10} {'search (s)':>11} {'entries':>8}")
    for name, (load, search, found) in figures.items():
        print(f"{name:10} {load:10.2f} {search:11.2f} {found:8}")
    (sl, ss, _), (pl, ps, _) = figures["slapd"], figures["pyldapd"]
    print(f"{'ratio':10} {pl / sl:10.1f} {ps / ss:11.1f}   (pyldapd / slapd)")


if __name__ == "__main__":
    main()
