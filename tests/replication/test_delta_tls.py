"""Delta multi-provider over TLS (issue 11; OpenLDAP's test069 and test070): a pyldapd node and a Debian slapd
node replicate each other with delta-syncrepl over StartTLS (`starttls=critical`) or ldaps://, each verifying the
other's certificate (`tls_cacert=`, `tls_reqcert=demand`), and converge with both nodes' changes kept."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.certs import TestPKI, make_pki, tls_conf
from tests.replication.delta import DELTA, delta_mesh_conf
from tests.replication.helpers import BASE, add, modify, person, wait_converged, wait_for
from tests.servers import SLAPD, SUFFIX, RunningServer, free_port, start_process

ALICE = f"uid=alice,ou=People,{SUFFIX}"


def start_node(kind: str, workdir: Path, conf: str, port: int, ldaps_port: int) -> RunningServer:
    """A node listening on ldap://, ldaps:// and ldapi:// (pyldapd with its stats and sync log)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{kind}.conf"
    config_path.write_text(conf)
    ldapi_path = str(workdir / f"{kind}.sock")
    urls = (
        f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/ ldapi://{ldapi_path.replace('/', '%2F')}/"
    )
    if kind == "slapd":
        argv = [SLAPD, "-f", str(config_path), "-h", urls, "-d", "stats,sync"]
    else:
        argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-f", str(config_path), "-h", urls,
                "-d", "stats,sync"]  # fmt: skip
    return start_process(kind, argv, port, ldapi_path, workdir, config_path)


def node_conf(
    tmp_path: Path, index: int, ports: list[int], ldaps_ports: list[int], pki: TestPKI, link: str
) -> str:
    # 127.0.0.1, not localhost: libldap checks a certificate for "localhost" against the machine's host name
    if link == "ldaps":
        urls = {j: f"ldaps://127.0.0.1:{ldaps_ports[j]}/" for j in range(2)}
        options = f" tls_cacert={pki.ca_cert} tls_reqcert=demand"
    else:
        urls = {j: f"ldap://127.0.0.1:{ports[j]}/" for j in range(2)}
        options = f" starttls=critical tls_cacert={pki.ca_cert} tls_reqcert=demand"
    conf = delta_mesh_conf(tmp_path / f"node{index + 1}" / "db", index, ports, urls)
    assert DELTA in conf
    return conf.replace(DELTA, DELTA + options).replace("database mdb", tls_conf(pki) + "database mdb", 1)


@pytest.mark.parametrize("link", ["starttls", "ldaps"])
def test_delta_multiprovider_with_slapd_over_tls(tmp_path, link):
    pki = make_pki(tmp_path / "pki")
    ports, ldaps_ports = [free_port(), free_port()], [free_port(), free_port()]
    nodes: list[RunningServer] = []
    try:
        for index, kind in enumerate(("pyldapd", "slapd")):
            conf = node_conf(tmp_path, index, ports, ldaps_ports, pki, link)
            nodes.append(
                start_node(kind, tmp_path / f"node{index + 1}", conf, ports[index], ldaps_ports[index])
            )
        ours, theirs = nodes
        add(ours, BASE + "\n" + person("alice", telephoneNumber="+1 555 0100"))
        wait_converged(nodes, timeout=60)
        add(theirs, person("bob"))
        wait_converged(nodes, timeout=60)
        modify(ours, f"dn: {ALICE}\nchangetype: modify\nadd: description\ndescription: from pyldapd\n")
        modify(
            theirs,
            f"dn: {ALICE}\nchangetype: modify\nreplace: telephoneNumber\ntelephoneNumber: +1 555 0200\n",
        )
        common = dict(wait_converged(nodes, timeout=60))
        alice = set(common[f"dn: {ALICE}"])
        assert {"description: from pyldapd", "telephonenumber: +1 555 0200"} <= alice, alice
        assert f"dn: uid=bob,ou=People,{SUFFIX}" in common
        # slapd's consumer reached pyldapd over TLS (StartTLS on the ldap:// port, or the ldaps:// listener), and
        # pyldapd's consumer took slapd's changes from slapd's accesslog
        wait_for(lambda: "TLS established" in ours.log(), what="a TLS session on pyldapd")
        log = ours.log()
        if link == "starttls":
            assert "EXT oid=1.3.6.1.4.1.1466.20037" in log, log[-3000:]
        assert 'SRCH base="cn=accesslog"' in log, log[-3000:]
        assert "delta-sync search of cn=accesslog" in log, log[-3000:]
    finally:
        for node in nodes:
            node.stop()
