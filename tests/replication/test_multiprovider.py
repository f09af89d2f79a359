"""Multi-provider replication: every node a provider and a consumer of every other, writes anywhere.

Topologies of pyldapd nodes, and mixed clusters with Debian's slapd; conflicting writes; a node killed with -9.
"""

from __future__ import annotations

import signal

import pytest

from tests.replication.helpers import BASE, add, dump, mesh_conf, modify, person, wait_converged
from tests.servers import ROOTDN, ROOTPW, SUFFIX, free_port, slapd_conf, start_pyldapd, start_slapd

STARTERS = {"pyldapd": start_pyldapd, "slapd": start_slapd}


class Mesh:
    def __init__(self, root, kinds: list[str]) -> None:
        self.root = root
        self.kinds = kinds
        self.ports = [free_port() for _ in kinds]
        self.nodes: list = [None] * len(kinds)

    def start(self, index: int):
        kind = self.kinds[index]
        name = f"node{index + 1}"
        directory = self.root / name / "db"
        directory.mkdir(parents=True, exist_ok=True)
        conf = mesh_conf(directory, self.ports, slapd=(kind == "slapd"))
        self.nodes[index] = STARTERS[kind](self.root / name, conf, name=name, port=self.ports[index])
        return self.nodes[index]

    def start_all(self) -> None:
        for index in range(len(self.kinds)):
            self.start(index)

    def running(self) -> list:
        return [n for n in self.nodes if n is not None and n.process.poll() is None]

    def stop_all(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.stop()


@pytest.fixture
def mesh_factory(tmp_path):
    meshes: list[Mesh] = []

    def make(kinds: list[str]) -> Mesh:
        mesh = Mesh(tmp_path, kinds)
        meshes.append(mesh)
        mesh.start_all()
        return mesh

    yield make
    for mesh in meshes:
        mesh.stop_all()


def writes_everywhere(mesh: Mesh) -> None:
    nodes = mesh.running()
    for index, node in enumerate(nodes):
        add(node, person(f"n{index + 1}user", description=f"added on node {index + 1}"))


@pytest.mark.parametrize(
    "kinds",
    [
        ["pyldapd", "pyldapd"],
        ["pyldapd", "pyldapd", "pyldapd"],
        ["pyldapd", "pyldapd", "pyldapd", "pyldapd"],
        ["pyldapd", "slapd"],
        ["pyldapd", "pyldapd", "slapd"],
    ],
    ids=lambda kinds: "+".join(kinds),
)
def test_mesh_converges(mesh_factory, kinds):
    mesh = mesh_factory(kinds)
    first = mesh.nodes[0]
    add(first, BASE)
    wait_converged(mesh.nodes)
    writes_everywhere(mesh)
    common = wait_converged(mesh.nodes)
    assert len([dn for dn, _ in common if "user," in dn]) == len(kinds)
    # the same entry changed on every node at nearly the same time: one version wins everywhere
    target = f"uid=n1user,ou=People,{SUFFIX}"
    for index, node in enumerate(mesh.nodes):
        modify(
            node,
            f"dn: {target}\nchangetype: modify\nreplace: description\ndescription: from node {index + 1}\n",
        )
    wait_converged(mesh.nodes)
    # deletes and renames travel too
    modify(mesh.nodes[-1], f"dn: uid=n2user,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=n2renamed\n"
                           "deleteoldrdn: 1\n")  # fmt: skip
    modify(mesh.nodes[0], f"dn: uid=n1user,ou=People,{SUFFIX}\nchangetype: delete\n")
    common = wait_converged(mesh.nodes)
    dns = [dn for dn, _ in common]
    assert f"dn: uid=n2renamed,ou=People,{SUFFIX}" in dns and f"dn: {target}" not in dns


def test_node_killed_and_restarted(mesh_factory):
    mesh = mesh_factory(["pyldapd", "pyldapd", "pyldapd"])
    add(mesh.nodes[0], BASE)
    wait_converged(mesh.nodes)
    victim = mesh.nodes[2]
    victim.stop(signal.SIGKILL)
    add(mesh.nodes[0], person("whileDown1"))
    add(mesh.nodes[1], person("whileDown2"))
    mesh.start(2)
    add(mesh.nodes[2], person("afterRestart"))
    common = wait_converged(mesh.nodes)
    dns = [dn for dn, _ in common]
    for uid in ("whileDown1", "whileDown2", "afterRestart"):
        assert f"dn: uid={uid},ou=People,{SUFFIX}" in dns


def test_same_dn_added_on_two_nodes_converges(mesh_factory):
    mesh = mesh_factory(["pyldapd", "pyldapd"])
    add(mesh.nodes[0], BASE)
    wait_converged(mesh.nodes)
    mesh.nodes[1].stop()
    add(mesh.nodes[0], person("twin", description="first"))
    mesh.start(1)
    add_second = person("twin", description="second")
    # node 2 may or may not have received node 1's entry yet; either way one version must win everywhere
    from tests.servers import ldap_tool

    ldap_tool("ldapadd", "-H", mesh.nodes[1].url, "-x", "-D", ROOTDN, "-w", ROOTPW, input=add_second)
    common = wait_converged(mesh.nodes)
    twins = [attrs for dn, attrs in common if dn == f"dn: uid=twin,ou=People,{SUFFIX}"]
    assert len(twins) == 1
    assert dump(mesh.nodes[0]) == dump(mesh.nodes[1])


def test_server_id_urls_that_match_no_listener_stop_startup(tmp_path):
    import subprocess
    import sys

    directory = tmp_path / "db"
    directory.mkdir()
    conf = tmp_path / "node.conf"
    conf.write_text(
        slapd_conf(directory, extra_global="serverID 1 ldap://127.0.0.1:1/\nserverID 2 ldap://127.0.0.1:2/\n")
    )
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "serve", "-f", str(conf), "-h",
                             f"ldap://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert "ldap://127.0.0.1:1/" in result.stderr and f"ldap://127.0.0.1:{port}/" in result.stderr
