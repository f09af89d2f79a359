"""Chaos: a seeded random schedule of writes on random nodes of a mesh, with kills and partitions.

Every replication link goes through a LinkProxy so the test can partition nodes. At the end every node must hold
the same content within a bounded time, and every entry that was added and never touched again must be there.
The test prints what it did; a failure is reproducible from its seed (PYLDAPD_CHAOS_SEED).
"""

from __future__ import annotations

import os
import random
import signal
import time

from tests.replication.helpers import BASE, add, describe_difference, dump, person, wait_converged
from tests.replication.proxy import LinkProxy
from tests.servers import ROOTDN, ROOTPW, SUFFIX, free_port, ldap_tool, slapd_conf, start_pyldapd

NODES = int(os.environ.get("PYLDAPD_CHAOS_NODES", "3"))
OPERATIONS = int(os.environ.get("PYLDAPD_CHAOS_OPS", "80"))
SEED = int(os.environ.get("PYLDAPD_CHAOS_SEED", "4533"))
PEOPLE = f"ou=People,{SUFFIX}"


def node_conf(directory, index: int, ports: list[int], links: dict[tuple[int, int], LinkProxy]) -> str:
    glob = "".join(f"serverID {i + 1} ldap://127.0.0.1:{port}/\n" for i, port in enumerate(ports))
    stanzas = "".join(
        f'syncrepl rid={j + 1:03d} provider={links[(index, j)].url} bindmethod=simple binddn="{ROOTDN}" '
        f'credentials={ROOTPW} searchbase="{SUFFIX}" type=refreshAndPersist retry="1 +" timeout=3\n'
        for j in range(len(ports))
        if j != index
    )
    db = stanzas + "mirrormode on\noverlay syncprov\nsyncprov-checkpoint 50 1\nsyncprov-sessionlog 500\n"
    return slapd_conf(directory, indexes="index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq",
                      extra_global=glob, extra_db=db)  # fmt: skip


def ldapmodify(node, ldif: str) -> bool:
    return (
        ldap_tool("ldapmodify", "-H", node.url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=ldif).returncode == 0
    )


def test_chaos_converges(tmp_path):
    run_chaos(tmp_path, node_conf, SEED)


def run_chaos(tmp_path, conf_for, seed: int) -> None:
    """The scenario: `conf_for(directory, index, ports, links)` is a node's slapd.conf (plain or delta MPR)."""
    rng = random.Random(seed)
    ports = [free_port() for _ in range(NODES)]
    links = {(i, j): LinkProxy(ports[j]) for i in range(NODES) for j in range(NODES) if i != j}
    nodes: list = [None] * NODES

    def start(index: int):
        directory = tmp_path / f"node{index + 1}" / "db"
        directory.mkdir(parents=True, exist_ok=True)
        nodes[index] = start_pyldapd(tmp_path / f"node{index + 1}", conf_for(directory, index, ports, links),
                                     name=f"node{index + 1}", port=ports[index], debug="sync")  # fmt: skip

    stats = {"adds": 0, "modifies": 0, "deletes": 0, "renames": 0, "failed": 0, "kills": 0, "partitions": 0}
    untouched: set[str] = set()  # uids added and never changed afterwards
    known: list[str] = []
    down: set[int] = set()
    cut: list[LinkProxy] = []
    try:
        for index in range(NODES):
            start(index)
        add(nodes[0], BASE)
        wait_converged(nodes)
        for step in range(OPERATIONS):
            roll = rng.random()
            if roll < 0.04 and not down:
                victim = rng.randrange(NODES)
                nodes[victim].stop(signal.SIGKILL)
                down.add(victim)
                stats["kills"] += 1
                continue
            if roll < 0.08 and not cut:
                isolated = rng.randrange(NODES)
                cut = [p for (i, j), p in links.items() if isolated in (i, j)]
                for proxy in cut:
                    proxy.cut()
                stats["partitions"] += 1
                continue
            if roll < 0.12:
                for victim in list(down):
                    start(victim)
                    down.discard(victim)
                for proxy in cut:
                    proxy.heal()
                cut = []
                continue
            alive = [i for i in range(NODES) if i not in down]
            node = nodes[rng.choice(alive)]
            kind = rng.random()
            if kind < 0.45 or len(known) < 3:
                uid = f"c{step}"
                dn_line, rest = person(uid).split("\n", 1)
                if ldapmodify(node, f"{dn_line}\nchangetype: add\n{rest}"):
                    known.append(uid)
                    untouched.add(uid)
                    stats["adds"] += 1
                else:
                    stats["failed"] += 1
                continue
            uid = rng.choice(known)
            dn = f"uid={uid},{PEOPLE}"
            if kind < 0.75:
                ok = ldapmodify(
                    node, f"dn: {dn}\nchangetype: modify\nreplace: description\ndescription: s{step}\n"
                )
                stats["modifies" if ok else "failed"] += 1
            elif kind < 0.88:
                ok = ldapmodify(node, f"dn: {dn}\nchangetype: delete\n")
                stats["deletes" if ok else "failed"] += 1
                if ok:
                    known.remove(uid)
            else:
                new_uid = f"{uid}r{step}"
                ok = ldapmodify(
                    node, f"dn: {dn}\nchangetype: modrdn\nnewrdn: uid={new_uid}\ndeleteoldrdn: 1\n"
                )
                stats["renames" if ok else "failed"] += 1
                if ok:
                    known.remove(uid)
                    known.append(new_uid)
            untouched.discard(uid)
        for victim in list(down):
            start(victim)
        for proxy in cut:
            proxy.heal()
        began = time.monotonic()
        try:
            common = wait_converged(nodes, timeout=90)
            divergences = 0
        except AssertionError:
            divergences = len(describe_difference([dump(n) for n in nodes]).split("; "))
            raise
        finally:
            print(f"\nchaos seed={seed} nodes={NODES} operations={OPERATIONS} {stats} "
                  f"converged in {time.monotonic() - began:.1f}s divergences={locals().get('divergences', '?')}")  # fmt: skip
        present = {dn for dn, _ in common}
        lost = [uid for uid in untouched if f"dn: uid={uid},{PEOPLE}" not in present]
        assert not lost, f"acknowledged adds lost: {lost}"
        assert divergences == 0
    finally:
        for node in nodes:
            if node is not None:
                node.stop()
        for proxy in links.values():
            proxy.close()
