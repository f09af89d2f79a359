"""`pyldapd status` over a mixed pyldapd/slapd pair: slapd's own monitor data, and a node that is down.

Debian's slapd 2.5 publishes one `olmSyncReplInstance` entry per consumer under its database in cn=Monitor
(olmSRProviderURIList, olmSRSyncPhase, olmSRLastContact, olmSRLastCookieRcvd/Sent); status shows a slapd node from
them as fully as a pyldapd node (its server ID from the cookie it sends). A node that is down is shown with the lag
remembered in `--state FILE` and with the newest change of its server ID that the others hold.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.replication.helpers import BASE, add, mesh_conf, person, wait_converged, wait_for
from tests.servers import ROOTDN, ROOTPW, free_port, start_pyldapd, start_slapd

PYLDAPD = [sys.executable, "-m", "pyldapd.cli.main"]
# slapd's monitor database, readable by the same administrator (back_monitor is a module in Debian's build)
SLAPD_MONITOR = f"moduleload back_monitor\ndatabase monitor\nrootdn {ROOTDN}\n"


def status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PYLDAPD, "status", "-D", ROOTDN, "-w", ROOTPW, *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_status_reads_slapd_monitor_and_remembers_a_down_node(tmp_path):
    ports = [free_port(), free_port()]
    nodes: list = []
    try:
        for index, kind in enumerate(["pyldapd", "slapd"]):
            directory = tmp_path / f"node{index + 1}" / "db"
            directory.mkdir(parents=True)
            conf = mesh_conf(directory, ports, slapd=kind == "slapd")
            starter = start_slapd if kind == "slapd" else start_pyldapd
            if kind == "slapd":
                conf += SLAPD_MONITOR
            nodes.append(
                starter(tmp_path / f"node{index + 1}", conf, name=f"node{index + 1}", port=ports[index])
            )
        py, sl = nodes
        add(py, BASE + "\n" + person("jdoe"))
        wait_converged(nodes)  # ou=People must have reached slapd before an entry is added under it there
        add(sl, person("fromslapd"))
        wait_converged(nodes)
        urls = [n.url for n in nodes]
        state = tmp_path / "status.json"

        def both_persisting() -> bool:
            report = json.loads(status("--json", "--state", str(state), *urls).stdout)
            return report["agree"] and all(
                [c["state"] for c in s["consumers"] or []] in (["persisting"], ["persist"])
                for s in report["servers"]
            )

        wait_for(both_persisting, 30, "both consumers in their persist phase")
        report = json.loads(status("--json", *urls).stdout)
        slapd_node = report["servers"][1]
        assert slapd_node["server_id"] == 2 and slapd_node["vendor"].startswith("OpenLDAP")
        [consumer] = slapd_node["consumers"]
        assert (
            consumer["rid"] == 1 and consumer["provider"] == urls[0] + "/" and consumer["state"] == "persist"
        )
        assert consumer["last_contact"] and consumer["last_cookie"].startswith("rid=001,sid=001,csn=")
        assert slapd_node["conflicts_total"] is None  # slapd keeps no conflict journal

        proc = status(*urls)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "serverID 2  OpenLDAP" in proc.stdout
        assert f"syncrepl rid=001 {urls[0]}/ persist last contact " in proc.stdout
        assert "n/a" not in proc.stdout.split(f"server {urls[1]}")[1].split("convergence")[0]
        assert "conflicts: not counted (no conflict journal in its cn=Monitor)" in proc.stdout

        # slapd goes down; a write on pyldapd; status shows slapd as down with its last known lag
        sl.stop()
        add(py, person("whileslapddown"))
        proc = status("--state", str(state), *urls)
        assert proc.returncode == 1, proc.stdout
        down = proc.stdout.split(f"server {urls[1]}")[1]
        assert "UNREACHABLE" in down and "last seen " in down and ": lag 0.000 s, contextCSN " in down, (
            proc.stdout
        )
        assert "newest change from server ID 002 held by the others: " in down, proc.stdout
        report = json.loads(status("--json", "--state", str(state), *urls).stdout)
        gone = report["servers"][1]
        assert gone["error"] and gone["last_seen"]["lag"] == 0 and gone["last_seen"]["server_id"] == 2
        assert gone["last_change_seen_by_others"]["server_id"] == 2
        assert gone["last_change_seen_by_others"]["behind"] > 0  # the write made while it was down is newer
    finally:
        for node in nodes:
            node.stop()
