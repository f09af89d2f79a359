"""Bad input, crashes and restarts: the server stays up, answers, and keeps every acknowledged write."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from pyldapd.protocol import ldap as pdu
from tests.servers import ROOTDN, ROOTPW, ldap_tool, slapd_conf, start_pyldapd

ADMIN = ["-x", "-D", ROOTDN, "-w", ROOTPW]
SUFFIX_LDIF = (
    "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
)


def raw_exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while len(chunks) < 1000:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def assert_notice_of_disconnection(reply: bytes, code: int = 2) -> None:
    message = pdu.decode_message(reply)
    assert message.message_id == 0
    assert isinstance(message.op, pdu.ExtendedResponse)
    assert message.op.name == "1.3.6.1.4.1.1466.20036"
    assert message.op.result_code == code


def server_answers(server) -> bool:
    return ldap_tool("ldapsearch", "-H", server.url, "-x", "-b", "", "-s", "base").returncode == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"\x31\x03\x02\x01\x01",  # not a SEQUENCE
        b"\x30\x80\x02\x01\x01\x00\x00",  # indefinite length
        b"\x30\x05\x02\x01\x01\x77\x00",  # unknown operation
        b"\x30\x03\x04\x01\x01",  # message id is not an INTEGER
        b"\x30\x84\xff\xff\xff\xff",  # announces 4 GiB
        b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x81\x00",  # bind with a bad auth choice
    ],
)
def test_malformed_pdus_get_notice_of_disconnection(pyldapd, payload):
    reply = raw_exchange(pyldapd.port, payload)
    assert reply, pyldapd.log()
    assert_notice_of_disconnection(reply)
    assert server_answers(pyldapd)


def test_oversized_pdu_is_refused_without_buffering(pyldapd):
    header = b"\x30\x84" + (300_000).to_bytes(4, "big")
    reply = raw_exchange(pyldapd.port, header + b"\x02\x01\x01")
    assert_notice_of_disconnection(reply)
    assert server_answers(pyldapd)


def test_random_garbage_never_kills_the_server(pyldapd):
    import random

    rng = random.Random(4511)
    bind = pdu.encode_message(pdu.LDAPMessage(1, pdu.BindRequest(3, ROOTDN, ROOTPW.encode(), None, None), []))
    for _ in range(60):
        data = bytearray(bind)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        raw_exchange(pyldapd.port, bytes(data[: rng.randint(1, len(data))]), timeout=0.5)
    assert server_answers(pyldapd)
    assert "Traceback" not in pyldapd.log()


def test_acknowledged_writes_survive_kill_9(tmp_path):
    workdir = tmp_path / "node"
    conf = slapd_conf(workdir / "db")
    server = start_pyldapd(workdir, conf)
    try:
        assert ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=SUFFIX_LDIF).returncode == 0
        records = "".join(
            f"dn: cn=user{i},dc=example,dc=com\nobjectClass: person\ncn: user{i}\nsn: S{i}\n\n"
            for i in range(50)
        )
        result = ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=records)
        assert result.returncode == 0, result.stderr
    finally:
        server.kill()
    server = start_pyldapd(workdir, conf)
    try:
        result = ldap_tool(
            "ldapsearch", "-H", server.url, "-x", "-LLL", "-b", "dc=example,dc=com", "(sn=*)", "1.1"
        )
        assert result.stdout.count("dn: ") == 50
    finally:
        server.stop()


def test_sigterm_stops_cleanly(tmp_path):
    server = start_pyldapd(tmp_path / "n", slapd_conf(tmp_path / "n" / "db"))
    assert server.stop(signal.SIGTERM) == 0
    assert "slapd stopped." in server.log()
    assert not (tmp_path / "n" / "pyldapd.sock").exists()


def test_clients_hammering_a_stopping_server_get_no_internal_error(tmp_path):
    """After python-ldap's test107_reconnect_restore: threads search (reconnecting every millisecond) or bind
    on new connections in a loop while the server (two workers) stops and starts again; every client goes on
    without an error. In one CI run that test got "internal error" (80) to a bind that a worker served after
    it had closed its databases; a client does not retry an 80. A worker that stops now closes, unanswered,
    any connection a request reaches it on after its shutdown began (the client reconnects). This test did not reproduce that race in six runs without the fix: it guards the behaviour
    around a stop, python-ldap's own test the race."""
    import threading
    import time

    import ldap
    from ldap.ldapobject import ReconnectLDAPObject

    from tests.servers import wait_workers

    workdir = tmp_path / "node"
    conf = "threads 2\n" + slapd_conf(workdir / "db")
    server = start_pyldapd(workdir, conf)
    wait_workers(server, 2)
    assert ldap_tool("ldapadd", "-H", server.url, *ADMIN, input=SUFFIX_LDIF).returncode == 0
    errors: list[str] = []
    stop_at = [time.monotonic() + 60]
    ready = threading.Barrier(9)

    def hammer(index: int) -> None:
        conn = ReconnectLDAPObject(server.url, retry_max=100_000, retry_delay=0.001)
        try:
            conn.simple_bind_s(ROOTDN, ROOTPW)
            ready.wait(30)
            while time.monotonic() < stop_at[0]:
                if index % 2:  # a new connection each time: binds land on a worker as it stops
                    fresh = ldap.initialize(server.url)
                    try:
                        fresh.simple_bind_s(ROOTDN, ROOTPW)
                        fresh.unbind_s()
                    except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR):
                        time.sleep(0.001)
                else:
                    conn.search_ext_s("dc=example,dc=com", ldap.SCOPE_BASE, attrlist=["dc"])
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(index,), daemon=True) for index in range(8)]
    for thread in threads:
        thread.start()
    ready.wait(30)
    time.sleep(0.3)
    server.stop(signal.SIGTERM)
    server = start_pyldapd(workdir, conf, port=server.port)
    try:
        wait_workers(server, 2)
        time.sleep(0.5)  # the clients find the new server
        stop_at[0] = time.monotonic()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
    finally:
        server.stop()


def test_a_stopping_server_stops_accepting_in_every_worker_at_once(tmp_path):
    """At a stop signal the supervisor shuts the shared listening sockets down, so no worker takes a new
    connection from then on, even one that has not handled the signal yet: here worker 1 is frozen (SIGSTOP)
    while worker 0 stops. Before, the still-listening socket of worker 1 completed the connection (and a worker
    in that state answered the binds of the clients the first one had dropped, then dropped them in turn:
    python-ldap's test107_reconnect_restore, once in a CI run)."""
    import os
    import time

    from tests.servers import process_alive, wait_for, wait_workers

    workdir = tmp_path / "node"
    server = start_pyldapd(workdir, "threads 2\n" + slapd_conf(workdir / "db"))
    frozen = None
    try:
        first, frozen = wait_workers(server, 2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10):
            pass  # listening
        os.kill(frozen, signal.SIGSTOP)
        os.kill(server.process.pid, signal.SIGTERM)
        wait_for(lambda: not process_alive(first), 30, what="worker 0 to stop")
        time.sleep(0.2)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
            unix = socket.socket(socket.AF_UNIX)
            try:
                unix.connect(server.ldapi_path)
            finally:
                unix.close()
        os.kill(frozen, signal.SIGCONT)  # it handles the stop signal it was sent, and the server ends
        frozen = None
        assert server.process.wait(30) == 0
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        server.stop()


def test_config_error_names_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("database mdb\nsuffix dc=example,dc=com\nfrobnicate yes\n")
    result = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", "serve", "-f", str(conf), "-h",
                             "ldap://127.0.0.1:1/"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert f"{conf}: line 3: unknown directive <frobnicate>" in result.stderr
