"""`pyldapd cluster`: a local N-node multi-provider (mirror mode) mesh on loopback, for trying replication out.

Node K (1..N) gets DIR/nodeK/slapd.conf, its database in DIR/nodeK/db, an ldapi socket DIR/nodeK/ldapi, its log
in DIR/nodeK.log, its pid in DIR/nodeK.pid, and listens on ldap://127.0.0.1:(base port + K - 1)/. Each config
lists every node's `serverID K URL`, one `syncrepl` stanza per node *including itself* (as an admin would copy
one file to all nodes; the stanza naming a server's own listener is ignored, by slapd and by pyldapd alike),
`mirrormode on`, and the syncprov overlay with a checkpoint and a session log. On a machine with Debian's slapd
the files also include its schema files and modules, so any node can be swapped for slapd
(`slapd -f DIR/nodeK/slapd.conf -h URLS`).

The sample data is loaded on node 1 (over LDAP, as the rootdn; entries that already exist are left alone, so a
second run on the same DIR keeps its data) and replicates from there. In the foreground the command supervises
the nodes and stops them all on SIGINT or SIGTERM; with --detach it leaves them running (stop them with
`kill $(cat DIR/node*.pid)`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

SUFFIX = "dc=example,dc=com"
ROOTDN = "cn=admin,dc=example,dc=com"
ROOTPW = "secret"
SLAPD_SCHEMA_DIR = "/etc/ldap/schema"
SLAPD_MODULE_DIR = "/usr/lib/ldap"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def add_parser(commands) -> argparse.ArgumentParser:
    cluster = commands.add_parser("cluster", help="run a local multi-provider cluster of N nodes")
    cluster.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    cluster.add_argument("--dir", required=True, help="folder for the configs, databases, logs and pid files")
    cluster.add_argument("--base-port", type=int, default=3890, help="node K listens on base port + K - 1")
    cluster.add_argument("--detach", action="store_true", help="leave the nodes running and return")
    cluster.add_argument(
        "--debug", default="stats,sync", help="the nodes' log level (-d), default stats,sync"
    )
    return cluster


def ldapi_url(path: Path) -> str:
    return "ldapi://" + str(path).replace("/", "%2F") + "/"


class Node:
    def __init__(self, root: Path, index: int, port: int) -> None:
        self.index = index
        self.port = port
        self.dir = root / f"node{index}"
        self.conf = self.dir / "slapd.conf"
        self.db = self.dir / "db"
        self.socket = self.dir / "ldapi"
        self.log = root / f"node{index}.log"
        self.pidfile = root / f"node{index}.pid"
        self.process: subprocess.Popen | None = None
        self.reported = False

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def ldapi(self) -> str:
        return ldapi_url(self.socket)


def node_conf(node: Node, nodes: list[Node]) -> str:
    lines = [f"# node {node.index} of a {len(nodes)}-node pyldapd cluster (written by `pyldapd cluster`)"]
    if os.path.exists(os.path.join(SLAPD_SCHEMA_DIR, "core.schema")):
        lines += [
            f"include {SLAPD_SCHEMA_DIR}/{name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
        ]
    if os.path.isdir(SLAPD_MODULE_DIR):
        lines += [f"modulepath {SLAPD_MODULE_DIR}", "moduleload back_mdb", "moduleload syncprov"]
    lines += [f"serverID {peer.index} {peer.url}" for peer in nodes]
    lines += [
        f"pidfile {node.pidfile}",
        "",
        "database mdb",
        f'suffix "{SUFFIX}"',
        f'rootdn "{ROOTDN}"',
        f"rootpw {ROOTPW}",
        f"directory {node.db}",
        "maxsize 1073741824",
        "index objectClass eq",
        "index uid,mail eq,pres,sub",
        "index cn,sn eq,pres,sub",
        "index entryUUID,entryCSN eq",
    ]
    for peer in nodes:
        lines.append(
            f'syncrepl rid={peer.index:03d} provider={peer.url} bindmethod=simple binddn="{ROOTDN}" '
            f'credentials={ROOTPW} searchbase="{SUFFIX}" type=refreshAndPersist retry="1 +" timeout=3'
        )
    lines += ["mirrormode on", "overlay syncprov", "syncprov-checkpoint 100 1", "syncprov-sessionlog 1000"]
    return "\n".join(lines) + "\n"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def start_node(node: Node, debug: str) -> None:
    node.db.mkdir(parents=True, exist_ok=True)
    urls = f"{node.url} {node.ldapi}"
    argv = [sys.executable, "-m", "pyldapd.cli.main", "serve", "-f", str(node.conf), "-h", urls, "-d", debug]
    with open(node.log, "ab") as log:
        node.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=node.dir, start_new_session=True)  # fmt: skip
    node.pidfile.write_text(f"{node.process.pid}\n")


def wait_listening(node: Node) -> str:
    """Empty when the node listens; else why not (with its log's tail)."""
    deadline = time.monotonic() + START_TIMEOUT
    assert node.process is not None
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            return f"node {node.index} exited with code {node.process.returncode}:\n{tail(node.log)}"
        if port_open(node.port):
            return ""
        time.sleep(0.1)
    return f"node {node.index} did not listen on {node.url} within {START_TIMEOUT:.0f} s:\n{tail(node.log)}"


def stop_nodes(nodes: list[Node]) -> None:
    running = [n for n in nodes if n.process is not None and n.process.poll() is None]
    for node in running:
        try:
            node.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    for node in running:
        assert node.process is not None
        try:
            node.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(5)


async def load_sample(url: str) -> tuple[int, int]:
    """Add the sample entries on one node as the rootdn; (added, already there)."""
    from pyldapd.model.ldif import LDIFContent, parse_ldif
    from pyldapd.protocol import ldap
    from pyldapd.replication.client import ClientError, LDAPClient

    client = await LDAPClient.connect(url, timeout=10)
    added = existing = 0
    try:
        await client.bind("simple", ROOTDN, ROOTPW, timeout=10)
        sample = resources.files("pyldapd.data").joinpath("sample.ldif").read_text()
        for record in parse_ldif(sample):
            if not isinstance(record, LDIFContent):
                continue
            response = await client.request(ldap.AddRequest(record.dn, record.attributes), timeout=10)
            if response.op.result_code == 0:
                added += 1
            elif response.op.result_code == 68:  # entryAlreadyExists
                existing += 1
            else:
                raise ClientError(f"adding {record.dn}: {response.op.result_code} {response.op.message}")
    finally:
        client.close()
    return added, existing


def wait_converged(nodes: list[Node], timeout: float) -> bool:
    from pyldapd.cli.status import Target, compare, gather

    targets = [Target(n.url, ROOTDN, ROOTPW) for n in nodes]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = asyncio.run(gather(targets, SUFFIX, 5.0))
        if compare(states, SUFFIX)["agree"]:
            return True
        time.sleep(0.3)
    return False


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.nodes > 4095:
        print("pyldapd cluster: --nodes must be between 1 and 4095", file=sys.stderr)
        return 2
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    nodes = [Node(root, k, args.base_port + k - 1) for k in range(1, args.nodes + 1)]
    busy = [n.url for n in nodes if port_open(n.port)]
    if busy:
        print(
            f"pyldapd cluster: already in use: {' '.join(busy)} (choose another --base-port)", file=sys.stderr
        )
        return 1
    for node in nodes:
        node.dir.mkdir(parents=True, exist_ok=True)
        node.conf.write_text(node_conf(node, nodes))

    stopping = {"signal": 0}

    def on_signal(signum, _frame) -> None:
        stopping["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for node in nodes:
            start_node(node, args.debug)
        for node in nodes:
            problem = wait_listening(node)
            if problem:
                print(f"pyldapd cluster: {problem}", file=sys.stderr)
                stop_nodes(nodes)
                return 1
        try:
            added, existing = asyncio.run(load_sample(nodes[0].url))
        except Exception as exc:
            print(f"pyldapd cluster: loading the sample data on node 1: {exc}", file=sys.stderr)
            stop_nodes(nodes)
            return 1
        converged = wait_converged(nodes, 30.0)
    except BaseException:
        stop_nodes(nodes)
        raise

    out = sys.stdout
    print(
        f"pyldapd cluster: {len(nodes)} nodes in {root} (suffix {SUFFIX}, rootdn {ROOTDN} / {ROOTPW})",
        file=out,
    )
    if existing and not added:
        print("  sample data: already loaded (existing databases kept)", file=out)
    else:
        print(f"  sample data: {added} entries added on node 1", file=out)
    for node in nodes:
        pid = node.process.pid if node.process else "?"
        print(f"  node {node.index}: serverID {node.index}  {node.url}  {node.ldapi}  pid {pid}", file=out)
        print(f"          config {node.conf}  log {node.log}", file=out)
    print("try:", file=out)
    for node in nodes:
        print(f'  ldapsearch -x -H {node.url.rstrip("/")} -b {SUFFIX} "(uid=jdoe)" cn entryCSN', file=out)
    print(f"  ldapsearch -Y EXTERNAL -H {nodes[0].ldapi} -b cn=Monitor '*' '+'", file=out)
    print(f"  pyldapd status -D {ROOTDN} -w {ROOTPW} " + " ".join(n.url for n in nodes), file=out)
    if not converged:
        print("warning: the nodes had not converged after 30 s; see the logs", file=out)
    if args.detach:
        print(f"detached; stop the nodes with: kill $(cat {root}/node*.pid)", file=out)
        out.flush()
        return 0
    print("ready; Ctrl-C (SIGINT) or SIGTERM stops all nodes", file=out)
    out.flush()
    (root / "cluster.pid").write_text(f"{os.getpid()}\n")
    try:
        while not stopping["signal"]:
            for node in nodes:
                if node.process is not None and node.process.poll() is not None and not node.reported:
                    node.reported = True
                    print(f"node {node.index} exited with code {node.process.returncode} (log {node.log})",
                          file=out, flush=True)  # fmt: skip
            time.sleep(0.2)
    finally:
        print("stopping all nodes", file=out, flush=True)
        stop_nodes(nodes)
        for path in [root / "cluster.pid"] + [n.pidfile for n in nodes]:
            try:
                path.unlink()
            except OSError:
                pass
    return 0
