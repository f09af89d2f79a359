"""`pyldapd cluster` starts a 3-node mesh; `pyldapd status` sees it converge, then sees a divergence; cn=Monitor.

The cluster runs as a subprocess (the command a user types) and is stopped by its pid; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.replication.helpers import person
from tests.servers import ROOTDN, ROOTPW, free_port, ldap_tool, port_open, wait_for

PYLDAPD = [sys.executable, "-m", "pyldapd.cli.main"]
ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]


def free_port_run(count: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and not any(port_open(base + k) for k in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PYLDAPD, "status", *args], capture_output=True, text=True, timeout=60)


def stop_pid(pid: int, timeout: float = 25.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # a child of this test: reaped here (else it stays a zombie, alive to kill(pid, 0))
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not ours (a node the cluster command started)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@pytest.fixture
def cluster(tmp_path):
    # its ports come from below the ephemeral range (tests/servers.py), so no node's outgoing connection to a
    # peer not yet up can take one before that peer listens
    root = tmp_path / "c"
    base = free_port_run(3)
    out = tmp_path / "cluster.out"
    with open(out, "w") as handle:
        process = subprocess.Popen([*PYLDAPD, "cluster", "--nodes", "3", "--dir", str(root), "--base-port",
                                    str(base)], stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: "ready" in out.read_text() or process.poll() is not None, 90, what="the cluster")
    except BaseException:  # never left running: stopped by its pid
        process.kill()
        process.wait(10)
        raise
    extra: list[int] = []
    try:
        assert process.poll() is None, out.read_text()
        yield root, base, out, extra
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
        for pid in extra:
            stop_pid(pid)
    assert "stopping all nodes" in out.read_text()


def test_cluster_status_converges_then_diverges(cluster):
    root, base, out, extra = cluster
    urls = [f"ldap://127.0.0.1:{base + k}/" for k in range(3)]
    text = out.read_text()
    for k, url in enumerate(urls, 1):
        assert f"node {k}: serverID {k}  {url}" in text
        assert (root / f"node{k}" / "slapd.conf").exists() and (root / f"node{k}.pid").exists()
    conf = (root / "node1" / "slapd.conf").read_text()
    assert conf.count("syncrepl rid=") == 3 and "mirrormode on" in conf and "overlay syncprov" in conf

    # a write on node 2 reaches every node; status agrees, with 3 server IDs and persisting consumers
    result = ldap_tool("ldapadd", "-H", urls[1], *ADMIN, input=person("statususer"))
    assert result.returncode == 0, result.stderr
    proc = status("-D", ROOTDN, "-w", ROOTPW, "--wait", "30", *urls)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen: list = []

    def all_persisting() -> bool:  # a consumer may still be between a retry and its persist phase
        report = json.loads(status("-D", ROOTDN, "-w", ROOTPW, "--json", *urls).stdout)
        seen.append([(s["url"], c["rid"], c["state"], c["last_error"]) for s in report["servers"]
                     for c in s["consumers"] or []])  # fmt: skip
        return report["agree"] and all(state == "persisting" for _, _, state, _ in seen[-1])

    try:
        wait_for(all_persisting, 30, what="every consumer persisting")
    except TimeoutError:
        pytest.fail(f"consumers not all persisting: {seen[-1]}")
    proc = status("-D", ROOTDN, "-w", ROOTPW, *urls)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for sid in (1, 2, 3):
        assert f"serverID {sid} " in proc.stdout
    assert proc.stdout.count(" persisting ") == 6, proc.stdout  # 2 peers each (the stanza for itself ignored)
    assert "all 3 servers agree" in proc.stdout
    assert "contextCSN sid 002:" in proc.stdout

    report = json.loads(status("-D", ROOTDN, "-w", ROOTPW, "--json", *urls).stdout)
    assert report["agree"] is True, seen[:3]
    assert sorted(s["server_id"] for s in report["servers"]) == [1, 2, 3]
    assert {c["state"] for s in report["servers"] for c in s["consumers"]} == {"persisting"}

    # the same from node 1's config: the peers come from its serverID and syncrepl lines
    proc = status("-f", str(root / "node1" / "slapd.conf"), "--wait", "10")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(f"server {url}" in proc.stdout for url in urls)

    # cn=Monitor over ldapi with SASL EXTERNAL (root's peer credentials)
    ldapi = "ldapi://" + str(root / "node3" / "ldapi").replace("/", "%2F")
    result = ldap_tool("ldapsearch", "-LLL", "-Y", "EXTERNAL", "-H", ldapi, "-b", "cn=Monitor", "*", "+")
    assert result.returncode == 0, result.stderr
    assert "pyldapdServerID: 3" in result.stdout
    assert "dn: cn=Database 1,cn=Databases,cn=Monitor" in result.stdout
    assert "contextCSN: " in result.stdout and "pyldapdSyncState: persisting" in result.stdout
    assert "dn: cn=Consumer 001,cn=Syncrepl,cn=Monitor" in result.stdout

    # node 3 stopped; a write on node 1; node 3 back without its syncrepl stanzas: status lists the entry
    node3_pid = int((root / "node3.pid").read_text())
    stop_pid(node3_pid)
    wait_for(lambda: "node 3 exited" in out.read_text(), 20, what="the supervisor to notice")
    result = ldap_tool("ldapadd", "-H", urls[0], *ADMIN, input=person("afterstop"))
    assert result.returncode == 0, result.stderr
    isolated = root / "node3-isolated.conf"
    isolated.write_text("".join(line for line in (root / "node3" / "slapd.conf").read_text().splitlines(True)
                                if not line.startswith(("syncrepl ", "pidfile "))))  # fmt: skip
    with open(root / "node3-isolated.log", "ab") as log:
        node3 = subprocess.Popen([*PYLDAPD, "serve", "-f", str(isolated), "-h", f"{urls[2]} {ldapi}/"],
                                 stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    extra.append(node3.pid)
    wait_for(lambda: port_open(base + 2), 30, what="node 3 to listen again")
    proc = status("-D", ROOTDN, "-w", ROOTPW, *urls)
    assert proc.returncode != 0, proc.stdout
    assert "NOT CONVERGED" in proc.stdout
    dn = "uid=afterstop,ou=People,dc=example,dc=com"
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith(dn + ":"))
    assert f"{urls[2]} missing" in line and f"{urls[0]} 2" in line, proc.stdout
    assert "ou=People,dc=example,dc=com: DIFFER" in proc.stdout
    report = json.loads(status("-D", ROOTDN, "-w", ROOTPW, "--json", *urls).stdout)
    assert report["agree"] is False
    assert [d["dn"] for d in report["differences"]] == [dn]
    node3_report = next(s for s in report["servers"] if s["url"] == urls[2])
    assert node3_report["consumers"] == []  # no syncrepl stanzas in its isolated config
    assert node3_report["lag"]["001"] > 0


def test_status_usage_and_unreachable(tmp_path):
    assert status().returncode == 2
    proc = status("--timeout", "2", f"ldap://127.0.0.1:{free_port()}/")
    assert proc.returncode == 1 and "UNREACHABLE" in proc.stdout


def test_cluster_refuses_a_busy_port(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run([*PYLDAPD, "cluster", "--nodes", "1", "--dir", str(tmp_path / "c"), "--base-port",
                               str(port)], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 1 and "already in use" in proc.stderr
    assert not Path(tmp_path / "c" / "node1.pid").exists()
