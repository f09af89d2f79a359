"""A connection that writes moves to worker 0 (server/handoff.py): real processes, real sockets, real clients.

With the writers gathered in one worker, their writes share its group commits; a connection that cannot move
(TLS) writes where it is. The client must see nothing of it: same connection, same identity, same conn=N, every
request answered once, in order."""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import ldap
import pytest

from pyldapd.model.filter import Present
from pyldapd.protocol import ldap as proto
from tests.certs import make_pki, tls_conf
from tests.server.test_workers import start_workers
from tests.servers import (
    ROOTDN,
    ROOTPW,
    SUFFIX,
    connection_on_worker,
    ldap_tool,
    wait_for,
    worker_of,
)

PEOPLE = f"ou=People,{SUFFIX}"
BASE = (
    f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
    f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n"
)


def person_ldif(uid: str) -> str:
    return f"\ndn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: S\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("handoff")
    pki = make_pki(root / "pki")
    running = start_workers(root, extra_global=tls_conf(pki), extra_urls="")
    running.pki = pki
    try:
        data = BASE + "".join(person_ldif(f"u{n}") for n in range(20))
        loaded = ldap_tool("ldapadd", "-x", "-H", running.url, "-D", ROOTDN, "-w", ROOTPW, input=data)
        assert loaded.returncode == 0, loaded.stderr
        yield running
    finally:
        assert running.stop() == 0


def local_port(conn) -> int:
    sock = socket.socket(fileno=os.dup(conn.get_option(ldap.OPT_DESC)))
    try:
        return sock.getsockname()[1]
    finally:
        sock.close()


def description(conn, uid: str) -> bytes:
    found = conn.search_s(f"uid={uid},{PEOPLE}", ldap.SCOPE_BASE, "(objectClass=*)", ["description"])
    return found[0][1]["description"][0]


def test_a_connection_that_writes_moves_to_worker_0_as_the_same_connection(server):
    conn, conn_id = connection_on_worker(server, 1, 2)
    port = local_port(conn)
    try:
        assert conn.whoami_s() == f"dn:{ROOTDN}"
        conn.modify_s(f"uid=u1,{PEOPLE}", [(ldap.MOD_REPLACE, "description", [b"first"])])
        assert worker_of(server, port) == 0
        # the same connection: its identity, its number in the log, and what it asks next
        assert conn.whoami_s() == f"dn:{ROOTDN}"
        assert description(conn, "u1") == b"first"
        conn.modify_s(f"uid=u1,{PEOPLE}", [(ldap.MOD_REPLACE, "description", [b"second"])])
        assert description(conn, "u1") == b"second"
        log = server.log()
        assert f"conn={conn_id} fd=" in log and f"conn={conn_id} moved to worker 0" in log
        assert re.search(rf"conn={conn_id} fd=\d+ moved in from worker 1", log)
        assert len(re.findall(rf"conn={conn_id} fd=\d+ ACCEPT", log)) == 1
    finally:
        conn.unbind_s()
    wait_for(lambda: f"conn={conn_id} fd=-1 closed" in server.log(), 10, what="the close logged once")
    assert server.log().count(f"conn={conn_id} fd=-1 closed") == 1


def test_requests_sent_with_the_write_go_along_in_order(server):
    """The write, then a search, a modify, a Who am I? and half of a last request, all in one segment: worker 1
    reads them together and hands every one to worker 0, the half request too; each is answered once, in
    order."""
    for _attempt in range(200):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if worker_of(server, sock.getsockname()[1]) == 1:
            break
        sock.close()
    else:
        pytest.fail("no connection landed on worker 1")
    try:
        requests = [
            proto.BindRequest(3, ROOTDN, ROOTPW.encode()),
            proto.ModifyRequest(f"uid=u2,{PEOPLE}", [proto.Change(proto.MOD_REPLACE, "description", [b"a"])]),
            proto.SearchRequest(
                f"uid=u2,{PEOPLE}", 0, 0, 0, 0, False, Present("objectClass"), ["description"]
            ),  # fmt: skip
            proto.ModifyRequest(f"uid=u2,{PEOPLE}", [proto.Change(proto.MOD_REPLACE, "description", [b"b"])]),
            proto.ExtendedRequest("1.3.6.1.4.1.4203.1.11.3", None),
            proto.SearchRequest(
                f"uid=u2,{PEOPLE}", 0, 0, 0, 0, False, Present("objectClass"), ["description"]
            ),  # fmt: skip
        ]
        pdus = [proto.encode_message(proto.LDAPMessage(mid, op)) for mid, op in enumerate(requests, 1)]
        sock.sendall(pdus[0])
        answers = read_messages(sock, 1)
        assert answers[0].op.result_code == 0
        last = pdus[-1]
        sock.sendall(b"".join(pdus[1:-1]) + last[:5])
        time.sleep(0.3)
        sock.sendall(last[5:])
        answers = read_messages(sock, 7)  # 2 search entries among them
        kinds = [(m.message_id, type(m.op).__name__) for m in answers]
        assert kinds == [(2, "ModifyResponse"), (3, "SearchResultEntry"), (3, "SearchResultDone"),
                         (4, "ModifyResponse"), (5, "ExtendedResponse"), (6, "SearchResultEntry"),
                         (6, "SearchResultDone")], kinds  # fmt: skip
        assert answers[1].op.attributes == [("description", [b"a"])]
        assert answers[4].op.value == f"dn:{ROOTDN}".encode()
        assert answers[5].op.attributes == [("description", [b"b"])]
        assert all(getattr(m.op, "result_code", 0) == 0 for m in answers)
        assert worker_of(server, sock.getsockname()[1]) == 0
    finally:
        sock.close()


def read_messages(sock: socket.socket, count: int) -> list:
    framer, messages = proto.MessageFramer(1 << 20), []
    deadline = time.monotonic() + 20
    while len(messages) < count:
        assert time.monotonic() < deadline, messages
        data = sock.recv(65536)
        assert data, f"closed after {messages}"
        messages += [proto.decode_message(pdu) for pdu in framer.feed(data)]
    return messages


def test_a_tls_connection_writes_where_it_is(server):
    conn, conn_id = connection_on_worker(server, 1, 2, tls_ca=server.pki.ca_cert)
    port = local_port(conn)
    try:
        conn.modify_s(f"uid=u3,{PEOPLE}", [(ldap.MOD_REPLACE, "description", [b"tls"])])
        assert description(conn, "u3") == b"tls"
        assert worker_of(server, port) == 1
        assert f"conn={conn_id} moved" not in server.log()
    finally:
        conn.unbind_s()


def test_ldapi_identities_and_refused_writes_move_unchanged(server):
    """Over ldapi:// with SASL EXTERNAL, and a write the identity may not make: the answer is the same from
    either worker, and the peer's identity stays."""
    identity = f"dn:gidNumber={os.getgid()}+uidNumber={os.getuid()},cn=peercred,cn=external,cn=auth"
    conns = []
    try:
        for _ in range(6):  # shared between the workers: some of them on worker 1
            conn = ldap.initialize(server.ldapi_url)
            conn.sasl_external_bind_s()
            conns.append(conn)
        for conn in conns:
            with pytest.raises(ldap.INSUFFICIENT_ACCESS):
                conn.modify_s(f"uid=u4,{PEOPLE}", [(ldap.MOD_REPLACE, "description", [b"x"])])
            assert conn.whoami_s() == identity
        assert re.search(r"conn=\d+ fd=\d+ moved in from worker 1", server.log())
    finally:
        for conn in conns:
            conn.unbind_s()


def test_writers_on_both_workers_end_in_worker_0_with_every_write_done(server):
    conns = [connection_on_worker(server, index % 2, 2)[0] for index in range(8)]
    errors: list[BaseException] = []

    def writer(number: int, conn) -> None:
        try:
            for round_ in range(25):
                value = f"w{number}-{round_}".encode()
                conn.modify_s(f"uid=u{10 + number},{PEOPLE}", [(ldap.MOD_REPLACE, "description", [value])])
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n, c)) for n, c in enumerate(conns)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors and not any(t.is_alive() for t in threads), errors
        assert [worker_of(server, local_port(conn)) for conn in conns] == [0] * 8
        for number, conn in enumerate(conns):
            assert description(conn, f"u{10 + number}") == f"w{number}-24".encode()
    finally:
        for conn in conns:
            conn.unbind_s()
