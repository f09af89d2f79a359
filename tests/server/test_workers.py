"""Worker processes (issue 13): `threads N` runs a supervisor and N workers sharing the listeners
(server/supervisor.py), real processes over real sockets."""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ldap

from tests.certs import make_pki, tls_conf
from tests.servers import (
    ROOTDN,
    ROOTPW,
    SUFFIX,
    conn_id_of,
    connection_on_worker,
    free_port,
    ldap_tool,
    port_open,
    process_alive,
    slapd_conf,
    start_process,
    start_pyldapd,
    wait_for,
    wait_workers,
    worker_of,
    worker_pids,
)


def start_workers(
    tmp_path, count: int = 2, *, extra_global: str = "", name: str = "pyldapd", extra_urls: str = ""
):
    workdir = tmp_path / name
    conf = slapd_conf(workdir / "db", extra_global=f"threads {count}\n{extra_global}")
    if extra_urls:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / f"{name}.conf"
        config_path.write_text(conf)
        port, ldapi_path = free_port(), str(workdir / f"{name}.sock")
        urls = f"ldap://127.0.0.1:{port}/ ldapi://{ldapi_path.replace('/', '%2F')}/ {extra_urls}"
        argv = [
            sys.executable,
            "-m",
            "pyldapd.cli.main",
            "serve",
            "-f",
            str(config_path),
            "-h",
            urls,
            "-d",
            "stats",
        ]
        server = start_process(name, argv, port, ldapi_path, workdir, config_path)
    else:
        server = start_pyldapd(workdir, conf, name=name)
    try:
        wait_workers(server, count)
    except BaseException:
        server.stop()
        raise
    return server


def test_two_workers_serve_ldap_ldapi_and_ldaps_and_both_get_connections(tmp_path):
    pki = make_pki(tmp_path / "pki")
    ldaps_port = free_port()
    server = start_workers(tmp_path, extra_global=tls_conf(pki),
                           extra_urls=f"ldaps://127.0.0.1:{ldaps_port}/")  # fmt: skip
    try:
        assert len(worker_pids(server)) == 2
        tls_env = dict(os.environ, LDAPCONF=os.devnull, LDAPRC=os.devnull, LDAPTLS_CACERT=str(pki.ca_cert),
                       LDAPTLS_REQCERT="demand")  # fmt: skip
        for url in (server.url, server.ldapi_url, f"ldaps://127.0.0.1:{ldaps_port}"):
            for _ in range(4):  # connections spread over the workers: each one serves every listener
                result = subprocess.run(["ldapsearch", "-o", "nettimeout=10", "-x", "-H", url, "-b", "", "-s",
                                         "base", "namingContexts"], capture_output=True, text=True, timeout=30,
                                        env=tls_env)  # fmt: skip
                assert "namingContexts: dc=example,dc=com" in result.stdout, result.stderr
        assert "TLS established" in server.log()
        connections = []
        for index in range(2):
            conn, _ = connection_on_worker(server, index, 2)
            connections.append(conn)
        connections[0].add_s("dc=example,dc=com", [("objectClass", [b"dcObject", b"organization"]),
                                                     ("dc", [b"example"]), ("o", [b"example"])])  # fmt: skip
        found = connections[1].search_s("dc=example,dc=com", ldap.SCOPE_BASE, "(objectClass=*)", ["o"])
        assert found[0][1]["o"] == [b"example"]  # written by worker 0, read by worker 1: one database
        for conn in connections:
            conn.unbind_s()
    finally:
        assert server.stop() == 0


SUFFIX_ENTRY = [("objectClass", [b"dcObject", b"organization"]), ("dc", [b"example"]), ("o", [b"example"])]
WRITERS = 8


def connect(server, url: str | None = None):
    conn = ldap.initialize(url or server.url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.set_option(ldap.OPT_TIMEOUT, 30)
    conn.simple_bind_s(ROOTDN, ROOTPW)
    return conn


def stored_cns(server) -> set[str]:
    conn = connect(server)
    try:
        found = conn.search_s(SUFFIX, ldap.SCOPE_ONELEVEL, "(objectClass=person)", ["cn"])
    finally:
        conn.unbind_s()
    return {attrs["cn"][0].decode() for _, attrs in found}


def test_a_killed_worker_is_restarted_and_no_acknowledged_write_is_lost(tmp_path):
    """8 writers add entries while workers are killed (-9) at seeded random moments: each dead worker is
    started again with its index, the writers reconnect, every acknowledged add is there."""
    rng = random.Random(1313)
    server = start_workers(tmp_path)
    acknowledged: set[str] = set()
    stop = threading.Event()
    problems: list[BaseException] = []
    try:
        connect(server).add_s(SUFFIX, SUFFIX_ENTRY)

        def write(writer: int) -> None:
            conn = None
            for attempt in range(5000):  # bounded; the stop event ends it much earlier
                if stop.is_set():
                    break
                cn = f"w{writer}-{attempt}"
                try:
                    if conn is None:
                        conn = connect(server)
                    conn.add_s(f"cn={cn},{SUFFIX}", [("objectClass", [b"person"]), ("cn", [cn.encode()]),
                                                       ("sn", [b"S"])])  # fmt: skip
                    acknowledged.add(cn)
                except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.UNAVAILABLE, ldap.TIMEOUT, ldap.BUSY):
                    conn = None  # its worker died under it: a new connection (maybe to the other worker)
                    time.sleep(0.05)
                except ldap.LDAPError as exc:
                    problems.append(exc)
                    return
            if conn is not None:
                conn.unbind_s()

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for thread in threads:
            thread.start()
        restarted = 0
        for _round in range(3):
            time.sleep(rng.uniform(0.5, 2.0))
            before = worker_pids(server)
            victim = rng.choice(before)
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda victim=victim, before=before: len(worker_pids(server)) == 2
                     and victim not in worker_pids(server), 30, what="the killed worker restarted")  # fmt: skip
            restarted += 1
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()
        assert not problems, problems
        assert restarted == 3 and server.log().count("restarting it in") == 3
        stored = stored_cns(server)
        assert acknowledged - stored == set(), "acknowledged adds lost"
        assert len(acknowledged) > 50, "too few writes were acknowledged to show anything"
        # both workers serve again after the kills
        for index in range(2):
            connection_on_worker(server, index, 2)[0].unbind_s()
    finally:
        stop.set()
        assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_kill_9_of_the_supervisor_takes_the_workers_along(tmp_path):
    server = start_workers(tmp_path)
    workers = worker_pids(server)
    assert len(workers) == 2
    server.process.kill()
    server.process.wait(10)
    wait_for(lambda: not any(process_alive(pid) for pid in workers), 10, what="the workers to die")
    assert not port_open(server.port)


def test_sigterm_stops_every_worker_and_removes_the_pid_file(tmp_path):
    pidfile = tmp_path / "pyldapd" / "pyldapd.pid"
    server = start_workers(tmp_path, extra_global=f"pidfile {pidfile}")
    workers = worker_pids(server)
    assert pidfile.read_text().strip() == str(server.process.pid)  # the supervisor's
    os.kill(server.process.pid, signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert not any(process_alive(pid) for pid in workers)
    assert not pidfile.exists()
    assert not os.path.exists(server.ldapi_path)
    assert server.log().count("shutdown requested and initiated (SIGTERM)") >= 1
    assert "worker 0 stopped." in server.log() and "worker 1 stopped." in server.log()


def test_a_stop_signal_relayed_to_a_starting_worker_waits_for_its_loop(tmp_path):
    """A gentle SIGHUP that reaches a worker before its event loop handles signals (the supervisor relays it as
    soon as the worker is forked) is not its death: the worker takes it once it runs, gently, as the others."""
    workdir = tmp_path / "pyldapd"
    workdir.mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(slapd_conf(workdir / "db", extra_global="threads 2\ngentlehup on"))
    log = workdir / "pyldapd.log"
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pyldapd.cli.main", "serve", "-f", str(conf), "-h",
                                    f"ldap://127.0.0.1:{port}/", "-d", "stats"], stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: "worker 1 started" in log.read_text(), 30, what="the workers forked")
        process.send_signal(signal.SIGHUP)  # the workers are still importing, opening the database
        assert process.wait(30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = log.read_text()
    assert "killed by signal" not in text and text.count("slapd gentle shutdown") == 2, text


def test_cn_monitor_counts_the_operations_of_every_worker(tmp_path):
    server = start_workers(tmp_path, extra_global="", name="pyldapd")
    try:
        connect(server).add_s(SUFFIX, SUFFIX_ENTRY)
        conns = [connection_on_worker(server, index, 2)[0] for index in range(2)]
        for conn in conns:
            for _ in range(5):
                conn.compare_s(SUFFIX, "o", b"example")

        def compares(conn) -> int:
            found = conn.search_s("cn=Compare,cn=Operations,cn=Monitor", ldap.SCOPE_BASE, "(objectClass=*)",
                                  ["monitorOpCompleted"])  # fmt: skip
            return int(found[0][1]["monitorOpCompleted"][0])

        for conn in conns:  # each worker shows the sum: 10 compares, 5 in each
            assert compares(conn) == 10
        current = conns[0].search_s("cn=Current,cn=Connections,cn=Monitor", ldap.SCOPE_BASE, "(objectClass=*)",
                                    ["monitorCounter"])[0][1]["monitorCounter"][0]  # fmt: skip
        assert int(current) >= 2  # both connections, one in each worker
        threads = conns[1].search_s("cn=Max,cn=Threads,cn=Monitor", ldap.SCOPE_BASE, "(objectClass=*)",
                                    ["monitoredInfo"])[0][1]["monitoredInfo"][0]  # fmt: skip
        assert threads == b"2"
        for conn in conns:
            conn.unbind_s()
    finally:
        server.stop()


def test_olcthreads_over_ldapi_changes_the_number_of_workers(tmp_path):
    conf = (
        slapd_conf(tmp_path / "pyldapd" / "db", extra_global="threads 2")
        + "database config\nrootpw configpw\n"
    )
    server = start_pyldapd(tmp_path / "pyldapd", conf)
    try:
        wait_workers(server, 2)

        def threads(count: int) -> None:
            change = f"dn: cn=config\nchangetype: modify\nreplace: olcThreads\nolcThreads: {count}\n"
            result = ldap_tool("ldapmodify", "-x", "-D", "cn=config", "-w", "configpw", "-H", server.ldapi_url,
                               input=change)  # fmt: skip
            assert result.returncode == 0, result.stderr

        threads(3)
        wait_for(lambda: len(worker_pids(server)) == 3, 30, what="a third worker")
        wait_for(lambda: "pyldapd: 3 worker processes (were 2)" in server.log(), 10, what="the log line")
        for url in (server.url, server.ldapi_url):  # every one serves
            for _ in range(6):
                result = ldap_tool("ldapsearch", "-x", "-H", url, "-b", "", "-s", "base", "namingContexts")
                assert "namingContexts: dc=example,dc=com" in result.stdout, result.stderr
        threads(1)
        wait_for(lambda: len(worker_pids(server)) == 1, 30, what="one worker left")
        result = ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", "", "-s", "base", "namingContexts")
        assert "namingContexts: dc=example,dc=com" in result.stdout, result.stderr
    finally:
        assert server.stop() == 0


def test_workers_run_as_the_u_g_user(tmp_path):
    """-u/-g with worker processes: the supervisor drops privileges before it forks, so every worker runs as the
    service user and writes the database as that user."""
    from tests.server.test_service import SERVICE_USER, proc_ids

    user = pwd.getpwnam(SERVICE_USER)
    workdir = Path(tempfile.mkdtemp(prefix="pyldapd-workers-"))  # reachable by that user (tmp_path is not)
    workdir.chmod(0o755)
    try:
        conf = slapd_conf(workdir / "db", extra_global="threads 2")
        server = start_pyldapd(workdir, conf, extra_args=["-u", SERVICE_USER, "-g", SERVICE_USER])
        try:
            workers = wait_workers(server, 2)
            for pid in [server.process.pid, *workers]:
                uids, gids, _groups = proc_ids(pid)
                assert uids == [user.pw_uid] * 4 and gids == [user.pw_gid] * 4, server.log()
            for index in range(2):  # each worker writes as that user
                conn, _ = connection_on_worker(server, index, 2)
                if index == 0:
                    conn.add_s(SUFFIX, SUFFIX_ENTRY)
                else:
                    conn.modify_s(SUFFIX, [(ldap.MOD_REPLACE, "o", [b"changed"])])
                conn.unbind_s()
            assert os.stat(workdir / "db" / "data.mdb").st_uid == user.pw_uid
        finally:
            assert server.stop() == 0, server.log()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_cn_monitor_shows_the_connections_of_every_worker(tmp_path):
    """Each worker holds its own connections; a cn=Monitor search asks the others over the bus, so either worker
    lists both (cn=Connection N, with its conn=N)."""
    server = start_workers(tmp_path)
    try:
        placed = [connection_on_worker(server, index, 2) for index in range(2)]
        wanted = {conn_id for _, conn_id in placed}
        for conn, _ in placed:
            found = conn.search_s("cn=Connections,cn=Monitor", ldap.SCOPE_ONELEVEL, "(objectClass=monitorConnection)",
                                  ["monitorConnectionNumber"])  # fmt: skip
            numbers = {int(attrs["monitorConnectionNumber"][0]) for _, attrs in found}
            assert wanted <= numbers, (wanted, numbers)
        for conn, _ in placed:
            conn.unbind_s()
    finally:
        assert server.stop() == 0


# a base search of the root DSE, (objectClass=*), messageID 1 (RFC 4511), as raw bytes
ROOT_DSE_SEARCH = bytes.fromhex(
    "3025020101632004000a01000a0100020100020100010100870b6f626a656374436c6173733000"
)


def workers_of(server, socks, count: int = 2) -> list[int]:
    """How many of these TCP connections each worker holds."""
    held = [0] * count
    for sock in socks:
        held[worker_of(server, sock.getsockname()[1])] += 1
    return held


def test_workers_number_connections_one_after_another(tmp_path):
    """conn=N goes up by one per connection whichever worker takes it, as in slapd (OpenLDAP's test056-monitor
    reads cn=Connection 1001 after one earlier connection)."""
    server = start_workers(tmp_path)
    socks: list[socket.socket] = []
    try:
        ids = []
        for _ in range(8):  # one at a time, each accepted before the next: in order
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            ids.append(conn_id_of(server, socks[-1].getsockname()[1]))
        assert ids == list(range(ids[0], ids[0] + 8)), ids
        assert min(workers_of(server, socks)) > 0  # both workers took some
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_a_burst_of_connections_is_shared_by_the_workers(tmp_path):
    """Long-lived clients opened all at once (a load tool's threads, a connection pool) are split about evenly
    over the workers, not left to whichever worker woke first (server/sharedlisten.py); closing some lets the
    emptier worker take the next ones. Sharing is best effort: a worker that does not accept within 2 ms (its
    cycle collector, no CPU for it) leaves the burst to the other, so a round may come out uneven; one even
    round in three shows the sharing (without it every round goes to one worker: 16/0, 2/14)."""
    server = start_workers(tmp_path)
    rounds = []
    try:
        for _ in range(3):
            socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(16)]
            try:
                held = workers_of(server, socks)
                busier = [s for s in socks if worker_of(server, s.getsockname()[1]) == 0][:6]
                for sock in busier:  # worker 0 down to about 2 clients, worker 1 keeps about 8
                    socks.remove(sock)
                    sock.close()
                left = workers_of(server, socks)
                time.sleep(0.5)  # (the closes reach the worker)
                fresh = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(6)]
                socks.extend(fresh)
                rounds.append((held, left, workers_of(server, fresh)))
                for sock in socks:  # every one of them is served
                    sock.sendall(ROOT_DSE_SEARCH)
                    assert sock.recv(65536)[:1] == b"\x30"
            finally:
                for sock in socks:
                    sock.close()
            held, left, taken = rounds[-1]
            emptier = left.index(min(left))
            if sum(held) == 16 and max(held) - min(held) <= 2 and taken[emptier] >= 4:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no round shared (16 at once, then 6 more): {rounds}")
    finally:
        assert server.stop() == 0


def test_a_stopped_worker_does_not_keep_new_clients_waiting(tmp_path):
    """A worker that holds fewer clients but does not accept (here frozen by SIGSTOP; in life, busy) only
    delays the others' accepting by a few ms: every new client is served."""
    server = start_workers(tmp_path)
    frozen: int | None = None
    socks: list[socket.socket] = []
    try:
        socks.append(connection_on_worker(server, 0, 2)[0])
        frozen = sorted(worker_pids(server))[1]  # worker 1 (forked second), now holding fewer clients
        os.kill(frozen, signal.SIGSTOP)
        for _ in range(4):
            conn = connect(server)
            assert conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
            socks.append(conn)
        burst = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
        try:  # a burst meanwhile: taken at once by the worker that accepts (each one answered)
            for sock in burst:
                sock.sendall(ROOT_DSE_SEARCH)
            for sock in burst:
                assert sock.recv(65536)[:1] == b"\x30"
            assert workers_of(server, burst) == [20, 0]
        finally:
            for sock in burst:
                sock.close()
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        for conn in socks:
            conn.unbind_s()
        assert server.stop() == 0
