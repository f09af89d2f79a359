"""Delta multi-provider (issue 11): two pyldapd providers replicating each other with delta-syncrepl keep both
changes when each changed a different attribute of one entry during a partition (plain multi-provider keeps
only the newer entry), and resolve changes to one attribute newest-wins, as slapd 2.5's delta-MPR does."""

from __future__ import annotations

import time

from tests.replication.delta import delta_mesh_conf
from tests.replication.helpers import BASE, add, modify, person, wait_converged
from tests.replication.proxy import LinkProxy
from tests.servers import SUFFIX, free_port, start_pyldapd, start_slapd

ALICE = f"uid=alice,ou=People,{SUFFIX}"


def attributes(common, dn: str) -> set[str]:
    return set(dict(common)[f"dn: {dn}"])


def test_changes_to_different_attributes_during_a_partition_are_all_kept(tmp_path):
    ports = [free_port(), free_port()]
    links = {(i, j): LinkProxy(ports[j]) for i in range(2) for j in range(2) if i != j}
    nodes = []
    try:
        for index in range(2):
            urls = {j: links[(index, j)].url for j in range(2) if j != index}
            conf = delta_mesh_conf(tmp_path / f"node{index + 1}" / "db", index, ports, urls)
            nodes.append(start_pyldapd(tmp_path / f"node{index + 1}", conf, name=f"node{index + 1}",
                                       port=ports[index]))  # fmt: skip
        node_a, node_b = nodes
        add(node_a, BASE + "\n" + person("alice", telephoneNumber="+1 555 0100", description="start"))
        wait_converged(nodes)
        add(node_b, person("bob"))  # both server IDs are known everywhere before the partition
        wait_converged(nodes)

        # 1. different attributes: A adds a description value, B (later) replaces telephoneNumber
        for proxy in links.values():
            proxy.cut()
        modify(node_a, f"dn: {ALICE}\nchangetype: modify\nadd: description\ndescription: from A\n")
        time.sleep(0.05)
        modify(
            node_b,
            f"dn: {ALICE}\nchangetype: modify\nreplace: telephoneNumber\ntelephoneNumber: +1 555 0200\n",
        )
        for proxy in links.values():
            proxy.heal()
        common = wait_converged(nodes, timeout=60)
        alice = attributes(common, ALICE)
        assert {"description: start", "description: from A", "telephonenumber: +1 555 0200"} <= alice, alice
        assert "telephonenumber: +1 555 0100" not in alice

        # 2. the same attribute: the newer change wins, on both nodes, whichever node made it
        for first, second, value in ((node_a, node_b, "B wins"), (node_b, node_a, "A wins")):
            for proxy in links.values():
                proxy.cut()
            modify(first, f"dn: {ALICE}\nchangetype: modify\nreplace: description\ndescription: older\n")
            modify(
                first, f"dn: {ALICE}\nchangetype: modify\nadd: mail\nmail: {value[0].lower()}@example.com\n"
            )
            time.sleep(0.05)
            modify(second, f"dn: {ALICE}\nchangetype: modify\nreplace: description\ndescription: {value}\n")
            for proxy in links.values():
                proxy.heal()
            common = wait_converged(nodes, timeout=60)
            alice = attributes(common, ALICE)
            descriptions = {a for a in alice if a.startswith("description:")}
            assert descriptions == {f"description: {value}"}, alice
            assert (
                f"mail: {value[0].lower()}@example.com" in alice
            )  # the older change's other attribute stays
        # the older changes were merged by the delta rules (each node's journal says which attributes lost)
        assert all("an older change merged" in node.log() for node in nodes)
    finally:
        for node in nodes:
            node.stop()
        for proxy in links.values():
            proxy.close()


def test_mixed_mesh_with_slapd_keeps_both_changes(tmp_path):
    """A delta multi-provider mesh of Debian's slapd and two pyldapd nodes: content written anywhere converges
    everywhere (entryCSN and entryUUID included), and the partition case keeps both changes on all three, slapd
    resolving the older change by the same rules."""
    kinds = ["slapd", "pyldapd", "pyldapd"]
    ports = [free_port() for _ in kinds]
    links = {(i, j): LinkProxy(ports[j]) for i in range(3) for j in range(3) if i != j}
    nodes = []
    try:
        for index, kind in enumerate(kinds):
            urls = {j: links[(index, j)].url for j in range(3) if j != index}
            conf = delta_mesh_conf(tmp_path / f"node{index + 1}" / "db", index, ports, urls)
            start = start_slapd if kind == "slapd" else start_pyldapd
            nodes.append(
                start(tmp_path / f"node{index + 1}", conf, name=f"node{index + 1}", port=ports[index])
            )
        slapd_node, py_b, py_c = nodes
        add(py_b, BASE + "\n" + person("alice", telephoneNumber="+1 555 0100"))
        wait_converged(nodes, timeout=60)
        add(slapd_node, person("bob"))
        add(py_c, person("carol"))
        wait_converged(nodes, timeout=60)
        modify(slapd_node, f"dn: uid=carol,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=caroline\n"
                           "deleteoldrdn: 1\n")  # fmt: skip
        modify(py_b, f"dn: uid=bob,ou=People,{SUFFIX}\nchangetype: delete\n")
        wait_converged(nodes, timeout=60)

        for proxy in links.values():
            proxy.cut()
        modify(slapd_node, f"dn: {ALICE}\nchangetype: modify\nadd: description\ndescription: from slapd\n")
        time.sleep(0.05)
        modify(
            py_b, f"dn: {ALICE}\nchangetype: modify\nreplace: telephoneNumber\ntelephoneNumber: +1 555 0200\n"
        )
        for proxy in links.values():
            proxy.heal()
        common = wait_converged(nodes, timeout=90)
        alice = attributes(common, ALICE)
        assert {"description: from slapd", "telephonenumber: +1 555 0200"} <= alice, alice
        assert f"dn: uid=caroline,ou=People,{SUFFIX}" in dict(common)
    finally:
        for node in nodes:
            node.stop()
        for proxy in links.values():
            proxy.close()
