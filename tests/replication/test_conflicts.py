"""Every conflict is visible: a partition in which both nodes of a 2-node mesh add `uid=new1` and modify `jdoe`.

After the heal both nodes hold the newer versions, and on *both* nodes (the one that discards the older incoming
changes and the one whose own writes are overridden) the log names each DN with both CSNs, the cn=Monitor
journal holds the conflicts, and `pyldapd status --conflicts` lists them. Normal updates of one entry by both
nodes in turn (each seeing the other's version) are not conflicts.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.replication.helpers import BASE, add, modify, person, wait_converged, wait_for
from tests.replication.proxy import LinkProxy
from tests.servers import ROOTDN, ROOTPW, SUFFIX, free_port, ldap_tool, slapd_conf, start_pyldapd

PEOPLE = f"ou=People,{SUFFIX}"
NEW1 = f"uid=new1,{PEOPLE}"
JDOE = f"uid=jdoe,{PEOPLE}"
ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]
PYLDAPD = [sys.executable, "-m", "pyldapd.cli.main"]


def node_conf(directory, index: int, ports: list[int], links: dict[tuple[int, int], LinkProxy],
              sync_type: str = "refreshAndPersist") -> str:  # fmt: skip
    glob = "".join(f"serverID {i + 1} ldap://127.0.0.1:{port}/\n" for i, port in enumerate(ports))
    stanzas = "".join(
        f'syncrepl rid={j + 1:03d} provider={links[(index, j)].url} bindmethod=simple binddn="{ROOTDN}" '
        f'credentials={ROOTPW} searchbase="{SUFFIX}" type={sync_type} retry="1 +" timeout=3\n'
        for j in range(len(ports))
        if j != index
    )
    db = stanzas + "mirrormode on\noverlay syncprov\nsyncprov-checkpoint 50 1\nsyncprov-sessionlog 500\n"
    return slapd_conf(directory, indexes="index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq",
                      extra_global=glob, extra_db=db)  # fmt: skip


def monitor(node, base: str = "cn=Monitor") -> str:
    result = ldap_tool("ldapsearch", "-H", node.url, *ADMIN, "-LLL", "-o", "ldif-wrap=no", "-b", base, "+")
    assert result.returncode == 0, result.stderr
    return result.stdout


def consumer_states(node) -> list[str]:
    return [
        line.split(": ", 1)[1] for line in monitor(node).splitlines() if line.startswith("pyldapdSyncState:")
    ]


def entry_csn(node, dn: str) -> str:
    result = ldap_tool("ldapsearch", "-H", node.url, *ADMIN, "-LLL", "-b", dn, "-s", "base", "entryCSN")
    assert result.returncode == 0, result.stderr
    return next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("entryCSN:"))


def conflict_lines(node) -> list[str]:
    return [line for line in node.log().splitlines() if " conflict " in line]


def journal(node) -> list[dict[str, str]]:
    """The cn=Conflicts entries of database 1, as dicts of their attributes."""
    text = monitor(node, "cn=Conflicts,cn=Database 1,cn=Databases,cn=Monitor")
    records = []
    for block in text.strip().split("\n\n"):
        attrs = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "pyldapdConflictKind" in attrs:
            records.append(attrs)
    return records


def test_partition_conflicts_visible_on_both_nodes(tmp_path):
    ports = [free_port(), free_port()]
    links = {(i, j): LinkProxy(ports[j]) for i in range(2) for j in range(2) if i != j}
    nodes: list = []
    try:
        for index in range(2):
            directory = tmp_path / f"node{index + 1}" / "db"
            directory.mkdir(parents=True)
            # -d 0: conflicts are logged whatever the log level
            nodes.append(start_pyldapd(tmp_path / f"node{index + 1}", node_conf(directory, index, ports, links),
                                       name=f"node{index + 1}", port=ports[index], debug="0"))  # fmt: skip
        one, two = nodes
        add(one, BASE + "\n" + person("jdoe"))
        wait_converged(nodes)
        wait_for(
            lambda: all(consumer_states(n) == ["persisting"] for n in nodes), 30, "both consumers persisting"
        )

        # normal updates in turn: each node sees the other's version first; no conflict anywhere
        modify(one, f"dn: {JDOE}\nchangetype: modify\nreplace: description\ndescription: normal 1\n")
        wait_converged(nodes)
        modify(two, f"dn: {JDOE}\nchangetype: modify\nreplace: description\ndescription: normal 2\n")
        wait_converged(nodes)
        assert [conflict_lines(n) for n in nodes] == [[], []]
        assert [journal(n) for n in nodes] == [[], []]

        # partition: both links cut, until both consumers have noticed
        for link in links.values():
            link.cut()
        wait_for(lambda: all(consumer_states(n) != ["persisting"] for n in nodes), 30, "the partition")
        add(two, person("new1", description="added on node 2"))
        modify(two, f"dn: {JDOE}\nchangetype: modify\nreplace: description\ndescription: node 2\n")
        add(one, person("new1", description="added on node 1"))
        modify(one, f"dn: {JDOE}\nchangetype: modify\nreplace: description\ndescription: node 1\n")
        lost = {NEW1: entry_csn(two, NEW1), JDOE: entry_csn(two, JDOE)}
        won = {NEW1: entry_csn(one, NEW1), JDOE: entry_csn(one, JDOE)}
        assert all(won[dn] > lost[dn] for dn in won)  # node 1 wrote last: its versions win

        # heal one direction at a time, so that each node sees the other's versions: node 1 first receives
        # node 2's older changes (and discards them), then node 2 receives node 1's (which override its own).
        # Healed at once, a node may resolve a conflict before serving its peer: the peer then never sees the
        # losing version, and only the node that saw both records it.
        links[(0, 1)].heal()
        wait_for(lambda: len(journal(one)) >= 2, 30, "node 1's journal")
        links[(1, 0)].heal()
        wait_converged(nodes)
        for node in nodes:
            assert [entry_csn(node, NEW1), entry_csn(node, JDOE)] == [won[NEW1], won[JDOE]]
        wait_for(lambda: all(len(journal(n)) >= 2 for n in nodes), 20, "both journals")

        for node in nodes:
            # the log (at level 0) names each DN with both CSNs and their server IDs
            lines = conflict_lines(node)
            for dn in (NEW1, JDOE):
                assert any(dn in line and won[dn] in line and lost[dn] in line and "(sid 001)" in line
                           and "(sid 002)" in line for line in lines), (node.name, dn, lines)  # fmt: skip
            # the journal under cn=Monitor
            records = journal(node)
            pairs = {
                (r["pyldapdConflictDN"].lower(), r["pyldapdWinnerCSN"], r["pyldapdLoserCSN"]) for r in records
            }
            assert (NEW1.lower(), won[NEW1], lost[NEW1]) in pairs, records
            assert (JDOE.lower(), won[JDOE], lost[JDOE]) in pairs, records
            kinds = {r["pyldapdConflictDN"].lower(): r["pyldapdConflictKind"] for r in records}
            assert kinds[NEW1.lower()] == "add" and kinds[JDOE.lower()] == "modify"
            assert all(
                r["pyldapdWinnerServerID"] == "1" and r["pyldapdLoserServerID"] == "2" for r in records
            )
            counter = monitor(node, "cn=Conflicts,cn=Database 1,cn=Databases,cn=Monitor")
            assert f"monitorCounter: {len(records)}" in counter
            states = monitor(node)
            assert "pyldapdConflicts: 2" in states, states

        # pyldapd status --conflicts lists each node's journal
        urls = [n.url for n in nodes]
        proc = subprocess.run([*PYLDAPD, "status", "-D", ROOTDN, "-w", ROOTPW, "--conflicts", *urls],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count("conflicts: 2 recorded since start") == 2, proc.stdout
        for dn in (NEW1, JDOE):
            line = f" {dn}: winner {won[dn]} (sid 001), loser {lost[dn]} (sid 002): "
            assert proc.stdout.count(line) == 2, proc.stdout
        report = json.loads(subprocess.run([*PYLDAPD, "status", "-D", ROOTDN, "-w", ROOTPW, "--json", *urls],
                                           capture_output=True, text=True, timeout=60).stdout)  # fmt: skip
        for server in report["servers"]:
            assert server["conflicts_total"] == 2
            assert {(c["dn"].lower(), c["winner_sid"], c["loser_sid"]) for c in server["conflicts"]} == {
                (NEW1.lower(), 1, 2),
                (JDOE.lower(), 1, 2),
            }
    finally:
        for node in nodes:
            node.stop()
        for link in links.values():
            link.close()


def test_updates_in_turn_are_not_conflicts_with_refresh_only(tmp_path):
    """refreshOnly polls: a node overriding its own write with a peer's later one, made after the peer's poll had
    fetched it, is an ordinary update, not a conflict."""
    ports = [free_port(), free_port()]
    links = {(i, j): LinkProxy(ports[j]) for i in range(2) for j in range(2) if i != j}
    nodes: list = []
    try:
        for index in range(2):
            directory = tmp_path / f"node{index + 1}" / "db"
            directory.mkdir(parents=True)
            conf = node_conf(directory, index, ports, links, "refreshOnly interval=00:00:00:01")
            nodes.append(start_pyldapd(tmp_path / f"node{index + 1}", conf, name=f"node{index + 1}",
                                       port=ports[index], debug="0"))  # fmt: skip
        one, two = nodes
        add(one, BASE + "\n" + person("jdoe"))
        wait_converged(nodes)
        for turn in range(4):
            node = nodes[turn % 2]
            modify(node, f"dn: {JDOE}\nchangetype: modify\nreplace: description\ndescription: turn {turn}\n")
            wait_converged(nodes)
        assert [conflict_lines(n) for n in nodes] == [[], []]
        assert [journal(n) for n in nodes] == [[], []]
        assert "monitorCounter: 0" in monitor(one, "cn=Conflicts,cn=Database 1,cn=Databases,cn=Monitor")
    finally:
        for node in nodes:
            node.stop()
        for link in links.values():
            link.close()


def test_delete_versus_modify_conflicts_on_both_nodes(tmp_path):
    """Across a partition one node deletes an entry and the other modifies it; the newer change wins on both
    nodes and both record the conflict (kind `delete`), whichever is newer."""
    ports = [free_port(), free_port()]
    links = {(i, j): LinkProxy(ports[j]) for i in range(2) for j in range(2) if i != j}
    nodes: list = []
    x, y = f"uid=x,{PEOPLE}", f"uid=y,{PEOPLE}"

    def partition() -> None:
        for link in links.values():
            link.cut()
        wait_for(lambda: all(consumer_states(n) != ["persisting"] for n in nodes), 30, "the partition")

    def heal(first: tuple[int, int], node, count: int) -> None:
        # one direction first, so that each node sees the other's version (see the test above)
        links[first].heal()
        wait_for(lambda: len(journal(node)) >= count, 30, f"{node.name}'s journal")
        for link in links.values():
            link.heal()
        wait_converged(nodes)

    def delete(node, dn: str) -> None:
        result = ldap_tool("ldapdelete", "-H", node.url, *ADMIN, dn)
        assert result.returncode == 0, result.stderr

    try:
        for index in range(2):
            directory = tmp_path / f"node{index + 1}" / "db"
            directory.mkdir(parents=True)
            nodes.append(start_pyldapd(tmp_path / f"node{index + 1}", node_conf(directory, index, ports, links),
                                       name=f"node{index + 1}", port=ports[index], debug="0"))  # fmt: skip
        one, two = nodes
        add(one, BASE + "\n" + person("x"))
        wait_converged(nodes)
        # both server IDs in both contextCSNs, as in a mesh where both nodes write: refreshes then replay
        # deletes with their CSNs from the session log (a present phase cannot tell a delete at the provider
        # from an add it has not received yet)
        add(two, person("y"))
        wait_converged(nodes)
        wait_for(
            lambda: all(consumer_states(n) == ["persisting"] for n in nodes), 30, "both consumers persisting"
        )

        # x: deleted on node 2, modified later on node 1: the modify wins, x stays everywhere
        partition()
        delete(two, x)
        modify(one, f"dn: {x}\nchangetype: modify\nreplace: description\ndescription: kept\n")
        modified = entry_csn(one, x)
        heal((0, 1), one, 1)
        assert [entry_csn(n, x) for n in nodes] == [modified, modified]
        wait_for(lambda: len(journal(two)) >= 1, 20, "node 2's journal")
        for node in nodes:
            [record] = [r for r in journal(node) if r["pyldapdConflictDN"].lower() == x.lower()]
            assert record["pyldapdConflictKind"] == "delete" and record["pyldapdWinnerCSN"] == modified
            assert record["pyldapdLoserServerID"] == "2" and record["pyldapdLoserCSN"] < modified
            assert any(x in line and modified in line for line in conflict_lines(node))

        # y: modified on node 1, deleted later on node 2: the delete wins, y is gone everywhere
        partition()
        modify(one, f"dn: {y}\nchangetype: modify\nreplace: description\ndescription: lost\n")
        lost = entry_csn(one, y)
        delete(two, y)
        heal((1, 0), two, 2)
        for node in nodes:
            result = ldap_tool("ldapsearch", "-H", node.url, *ADMIN, "-b", y, "-s", "base")
            assert result.returncode == 32, result.stdout
        wait_for(lambda: len(journal(one)) >= 2, 20, "node 1's journal")
        for node in nodes:
            [record] = [r for r in journal(node) if r["pyldapdConflictDN"].lower() == y.lower()]
            assert record["pyldapdConflictKind"] == "delete" and record["pyldapdLoserCSN"] == lost
            assert record["pyldapdWinnerServerID"] == "2" and record["pyldapdWinnerCSN"] > lost
            assert any(y in line and lost in line for line in conflict_lines(node))
    finally:
        for node in nodes:
            node.stop()
        for link in links.values():
            link.close()


def test_delete_of_a_parent_versus_add_of_a_child_makes_glue_on_both_nodes(tmp_path):
    """Across a partition node 1 deletes ou=Groups and node 2 adds an entry under it: node 2 keeps the parent as a
    glue entry (it has a child here) and node 1 creates it as glue (the child's parent is missing); both record a
    `glue` conflict, and the child is on both nodes."""
    ports = [free_port(), free_port()]
    links = {(i, j): LinkProxy(ports[j]) for i in range(2) for j in range(2) if i != j}
    nodes: list = []
    groups = f"ou=Groups,{SUFFIX}"
    child = f"cn=team,{groups}"
    try:
        for index in range(2):
            directory = tmp_path / f"node{index + 1}" / "db"
            directory.mkdir(parents=True)
            nodes.append(start_pyldapd(tmp_path / f"node{index + 1}", node_conf(directory, index, ports, links),
                                       name=f"node{index + 1}", port=ports[index], debug="0"))  # fmt: skip
        one, two = nodes
        add(one, BASE)
        wait_converged(nodes)
        add(two, person("y"))  # both server IDs in both states (see the test above)
        wait_converged(nodes)
        wait_for(
            lambda: all(consumer_states(n) == ["persisting"] for n in nodes), 30, "both consumers persisting"
        )

        for link in links.values():
            link.cut()
        wait_for(lambda: all(consumer_states(n) != ["persisting"] for n in nodes), 30, "the partition")
        result = ldap_tool("ldapdelete", "-H", one.url, *ADMIN, groups)
        assert result.returncode == 0, result.stderr
        add(two, f"dn: {child}\nobjectClass: groupOfNames\ncn: team\nmember: {ROOTDN}\n")
        links[(1, 0)].heal()  # node 2 first receives the delete of the parent of its new entry
        wait_for(lambda: len(journal(two)) >= 1, 30, "node 2's journal")
        links[(0, 1)].heal()
        wait_for(lambda: len(journal(one)) >= 1, 30, "node 1's journal")
        for node in nodes:
            [record] = journal(node)
            assert (
                record["pyldapdConflictKind"] == "glue"
                and record["pyldapdConflictDN"].lower() == groups.lower()
            )
            assert any(groups in line and "glue" in line for line in conflict_lines(node))
            result = ldap_tool("ldapsearch", "-H", node.url, *ADMIN, "-b", child, "-s", "base", "1.1")
            assert result.returncode == 0, result.stderr
    finally:
        for node in nodes:
            node.stop()
        for link in links.values():
            link.close()
