"""Delta-syncrepl against plain syncrepl, pyldapd->pyldapd beside slapd->slapd (issue 11).

    .venv/bin/python bench/bench_delta.py [--entries 50] [--modifies 1000] [--offline 2000] [--value-kb 16]

For each implementation and each consumer kind (plain, `syncdata=accesslog`): one provider with syncprov and
accesslog (its log database served by syncprov, as tests/replication/delta.py writes it for both servers) and
one refreshAndPersist consumer whose connection goes through a counting TCP proxy.

  traffic: --entries large entries (a --value-kb KB description each) are loaded and replicated; then
      --modifies single-attribute modifies (replace telephoneNumber, round robin over the entries) go to the
      provider; bytes the provider sent the consumer from the first modify until the consumer's contextCSN
      equals the provider's.
  catch-up: the consumer is stopped, --offline modifies go to the provider, the consumer starts again; seconds
      from its launch until its contextCSN equals the provider's.

Figures are printed per implementation with the ratio pyldapd/slapd. Not a test: ratios matter, machines differ.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.replication.delta import delta_consumer_conf, delta_provider_conf  # noqa: E402
from tests.replication.helpers import BASE, consumer_conf  # noqa: E402
from tests.servers import ROOTDN, ROOTPW, SUFFIX, ldap_tool, start_pyldapd, start_slapd  # noqa: E402

STARTERS = {"pyldapd": start_pyldapd, "slapd": start_slapd}
PEOPLE = f"ou=People,{SUFFIX}"


class CountingProxy:
    """Loopback TCP proxy counting the bytes the provider sends (downstream)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.downstream = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            threading.Thread(target=self.pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, True), daemon=True).start()

    def pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(65536):
                if count:
                    with self.lock:
                        self.downstream += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass


def context_csn(server) -> str:
    result = ldap_tool("ldapsearch", "-H", server.url, "-x", "-D", ROOTDN, "-w", ROOTPW, "-LLL", "-s", "base",
                       "-b", SUFFIX, "(objectClass=*)", "contextCSN")  # fmt: skip
    return " ".join(sorted(line for line in result.stdout.splitlines() if line.startswith("contextCSN")))


def wait_same_state(provider, consumer, timeout: float = 900) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        target = context_csn(provider)
        if target and context_csn(consumer) == target:
            return time.monotonic() - began
        time.sleep(0.2)
    raise RuntimeError("the consumer did not catch up")


def modifies(count: int, entries: int, tag: str) -> str:
    return "".join(f"dn: uid=big{i % entries},{PEOPLE}\nchangetype: modify\nreplace: telephoneNumber\n"
                   f"telephoneNumber: +1 555 {tag}{i}\n\n" for i in range(count))  # fmt: skip


def run(kind: str, delta: bool, args, root: Path) -> dict[str, float]:
    start = STARTERS[kind]
    slapd = kind == "slapd"
    quiet = {} if slapd else {"debug": "none"}  # slapd runs with -d 0
    provider = start(
        root / "p", delta_provider_conf(root / "p" / "db", slapd=slapd), name="provider", **quiet
    )
    proxy = CountingProxy(provider.port)
    url = f"ldap://127.0.0.1:{proxy.port}/"
    conf = (delta_consumer_conf(root / "c" / "db", url, slapd=slapd) if delta
            else consumer_conf(root / "c" / "db", url, slapd=slapd))  # fmt: skip

    def consumer_start():
        return start(root / "c", conf, name="consumer", **quiet)

    consumer = None
    try:
        value = "x" * (args.value_kb * 1024)
        people = "".join(f"dn: uid=big{i},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: Big {i}\nsn: big\nuid: big{i}\n"
                         f"description: {value}\ntelephoneNumber: +1 555 0\n\n" for i in range(args.entries))  # fmt: skip
        ldap_tool("ldapadd", "-H", provider.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=BASE + "\n" + people,
                  check=True, timeout=600)  # fmt: skip
        consumer = consumer_start()
        wait_same_state(provider, consumer)
        before = proxy.downstream
        ldap_tool("ldapmodify", "-H", provider.url, "-x", "-D", ROOTDN, "-w", ROOTPW,
                  input=modifies(args.modifies, args.entries, "1"), check=True, timeout=900)  # fmt: skip
        wait_same_state(provider, consumer)
        traffic = proxy.downstream - before
        consumer.stop()
        ldap_tool("ldapmodify", "-H", provider.url, "-x", "-D", ROOTDN, "-w", ROOTPW,
                  input=modifies(args.offline, args.entries, "2"), check=True, timeout=1800)  # fmt: skip
        launched = time.monotonic()
        consumer = consumer_start()
        wait_same_state(provider, consumer)
        return {"traffic": traffic, "catchup": time.monotonic() - launched}
    finally:
        provider.stop()
        if consumer is not None:
            consumer.stop()
        proxy.listener.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--modifies", type=int, default=1000)
    parser.add_argument("--offline", type=int, default=2000)
    parser.add_argument("--value-kb", type=int, default=16)
    args = parser.parse_args()
    results: dict[tuple[str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
        for kind in ("pyldapd", "slapd"):
            for mode in ("plain", "delta"):
                results[(kind, mode)] = run(kind, mode == "delta", args, Path(tmp) / f"{kind}-{mode}")
                print(f"{kind:8} {mode:6} traffic {results[(kind, mode)]['traffic'] / 1e6:9.2f} MB   "
                      f"catch-up {results[(kind, mode)]['catchup']:7.1f} s", flush=True)  # fmt: skip
    for mode in ("plain", "delta"):
        py, sl = results[("pyldapd", mode)], results[("slapd", mode)]
        print(f"{mode:6} pyldapd/slapd: traffic {py['traffic'] / max(sl['traffic'], 1):.2f}, "
              f"catch-up {py['catchup'] / max(sl['catchup'], 1e-9):.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
