"""Protective limits (server/limits.py): connections, idle timeout, outstanding operations, filter depth, values per
request. Every wait is bounded."""

from __future__ import annotations

import socket
import sys
import time

import ldap as pyldap

from pyldapd.model import filter as flt
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap as pdu
from pyldapd.protocol.ber import tlv
from tests.servers import (
    ROOTDN,
    ROOTPW,
    SUFFIX,
    free_port,
    ldap_tool,
    slapd_conf,
    start_process,
    start_pyldapd,
    wait_for,
)

SUFFIX_LDIF = (
    "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
)


def read_messages(sock: socket.socket, count: int, timeout: float = 5.0) -> list[pdu.LDAPMessage]:
    framer = pdu.MessageFramer(1 << 24)
    out: list[pdu.LDAPMessage] = []
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        out += [pdu.decode_message(p, 1000) for p in framer.feed(data)]
    return out


def search(message_id: int, f, controls=()) -> bytes:
    request = pdu.SearchRequest(SUFFIX, 0, 0, 0, 0, False, f, ["1.1"])
    return pdu.encode_message(pdu.LDAPMessage(message_id, request, list(controls)))


def nested(depth: int):
    f = flt.Present("objectClass")
    for _ in range(depth):
        f = flt.Not(f)
    return f


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except TimeoutError:
        return False


def test_idletimeout_closes_idle_connections(tmp_path):
    server = start_pyldapd(tmp_path / "s", "idletimeout 1\n" + slapd_conf(tmp_path / "s" / "db"))
    try:
        with (
            socket.create_connection(("127.0.0.1", server.port)) as idle,
            socket.create_connection(("127.0.0.1", server.port)) as busy,
        ):
            started = time.monotonic()
            for message_id in range(1, 5):  # a connection in use stays open
                busy.sendall(search(message_id, flt.Present("objectClass")))
                assert read_messages(busy, 1)
                time.sleep(0.4)
            assert closed_within(idle, 5.0)
            assert time.monotonic() - started < 5.0
            busy.sendall(search(9, flt.Present("objectClass")))
            assert read_messages(busy, 1)[0].message_id == 9
        assert "idle timeout" in server.log()
    finally:
        server.stop()


def test_many_values_in_one_request_as_slapd(tmp_path):
    """slapd sets no bound on the values of one request but the PDU size (sockbuf_max_incoming_auth, 4 MB for
    a bound client): an add of 20,001 values and a modify adding 30,000 more are stored by both servers alike
    (pyldapd once refused past 10,000 values, with adminLimitExceeded)."""
    from tests.servers import start_slapd

    many = [f"member {i:06d}".encode() for i in range(20_001)]
    more = [f"member {i:06d}".encode() for i in range(20_001, 50_001)]
    counts = {}
    for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
        server = start(tmp_path / name, slapd_conf(tmp_path / name / "db", modules=True), name=name)
        try:
            conn = pyldap.initialize(server.url)
            conn.simple_bind_s(ROOTDN, ROOTPW)
            conn.add_s(SUFFIX, [("objectClass", [b"dcObject", b"organization"]), ("o", [b"E"]),
                                ("dc", [b"example"])])  # fmt: skip
            conn.add_s(f"cn=big,{SUFFIX}", [("objectClass", [b"person"]), ("cn", [b"big"]), ("sn", [b"x"]),
                                             ("description", many)])  # fmt: skip
            conn.modify_s(f"cn=big,{SUFFIX}", [(pyldap.MOD_ADD, "description", more)])
            stored = conn.search_s(f"cn=big,{SUFFIX}", pyldap.SCOPE_BASE, attrlist=["description"])
            counts[name] = len(stored[0][1]["description"])
            conn.unbind_s()
        finally:
            server.stop()
    assert counts == {"slapd": 50_001, "pyldapd": 50_001}


def test_filter_depth_limit(tmp_path):
    server = start_pyldapd(tmp_path / "s", "maxfilterdepth 20\n" + slapd_conf(tmp_path / "s" / "db"))
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(search(1, nested(10)))
            reply = read_messages(sock, 1)
            assert isinstance(reply[0].op, pdu.SearchResultDone)
            sock.sendall(search(2, nested(30)))
            notice = read_messages(sock, 1)[0]
            assert notice.message_id == 0 and notice.op.result_code == pdu.ResultCode.protocolError
        assert ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", "", "-s", "base").returncode == 0
    finally:
        server.stop()


def raw_nested_search(message_id: int, depth: int) -> bytes:
    """A search whose filter is `depth` nested '!' around (objectClass=*), built by hand: the codec's encoder
    recurses once per level, the test process has Python's default recursion limit."""
    f = tlv(0x87, b"objectClass")
    for _ in range(depth):
        f = tlv(0xA2, f)
    body = (tlv(0x04, SUFFIX.encode()) + tlv(0x0A, b"\x00") + tlv(0x0A, b"\x00") + tlv(0x02, b"\x00")
            + tlv(0x02, b"\x00") + tlv(0x01, b"\x00") + f + tlv(0x30, tlv(0x04, b"1.1")))  # fmt: skip
    return tlv(0x30, tlv(0x02, bytes([message_id])) + tlv(0x63, body))


def test_default_filter_depth_is_slapds_and_safe(pyldapd):
    """slapd's default maxfilterdepth (1000) holds: the deepest filter allowed is answered, one level more is a
    protocol error; neither crashes the server."""
    with socket.create_connection(("127.0.0.1", pyldapd.port)) as sock:
        sock.sendall(search(1, nested(150)))
        assert isinstance(read_messages(sock, 1)[0].op, pdu.SearchResultDone)
        sock.sendall(raw_nested_search(2, 1000))
        assert isinstance(read_messages(sock, 1)[0].op, pdu.SearchResultDone)
        sock.sendall(raw_nested_search(3, 1001))
        assert read_messages(sock, 1)[0].message_id == 0  # notice of disconnection, not a crash
    assert "Traceback" not in pyldapd.log()
    assert ldap_tool("ldapsearch", "-x", "-H", pyldapd.url, "-b", "", "-s", "base").returncode == 0


def test_connection_limit_evicts_the_oldest_silent_connections(tmp_path):
    """At the descriptor limit a new connection is served and the oldest that never sent a request makes room.
    (The limit is a process's: one worker process here, each worker has its own.)"""
    workdir = tmp_path / "s"
    workdir.mkdir()
    conf = workdir / "pyldapd.conf"
    conf.write_text(slapd_conf(workdir / "db", extra_global="threads 1"))
    port = free_port()
    sock_path = str(workdir / "pyldapd.sock")
    urls = f"ldap://127.0.0.1:{port}/"
    argv = ["prlimit", "--nofile=80:80", sys.executable, "-m", "pyldapd.cli.main", "serve", "-f", str(conf),
            "-h", urls, "-d", "stats"]  # fmt: skip
    server = start_process(
        "pyldapd", argv, port, sock_path, workdir, conf
    )  # 80 - 64 reserved: 16 connections
    try:
        time.sleep(0.3)  # the readiness probe's connection is gone
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(24)]
        try:
            wait_for(lambda: server.log().count(" ACCEPT from ") >= 25, 10, what="24 accepts")  # + the probe
            turned_away = []
            for index, sock in enumerate(socks):
                sock.sendall(search(1, flt.Present("objectClass")))
                reply = read_messages(sock, 1)
                if reply and reply[0].message_id == 0:
                    assert reply[0].op.result_code == pdu.ResultCode.unavailable
                    turned_away.append(index)
            assert turned_away == list(range(24 - 16))  # the 8 oldest, evicted for the 8 newest
        finally:
            for sock in socks:
                sock.close()
        time.sleep(0.3)
        assert ldap_tool("ldapsearch", "-x", "-H", server.url, "-b", "", "-s", "base").returncode == 0
        assert "too many connections" in server.log()
    finally:
        server.stop()


def test_outstanding_operations_limit_answers_busy(tmp_path):
    conf = "conn_max_pending 2\n" + slapd_conf(tmp_path / "s" / "db", extra_db="overlay syncprov")
    server = start_pyldapd(tmp_path / "s", conf)
    try:
        assert (
            ldap_tool(
                "ldapadd", "-x", "-H", server.url, "-D", ROOTDN, "-w", ROOTPW, input=SUFFIX_LDIF
            ).returncode
            == 0
        )
        persist = pdu.Control(ctl.SYNC_REQUEST, True,
                              ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_AND_PERSIST)))  # fmt: skip
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(search(1, flt.Present("objectClass"), [persist]))  # stays outstanding
            time.sleep(0.5)
            sock.sendall(search(2, flt.Present("objectClass")))  # 2 outstanding: allowed
            sock.sendall(search(3, flt.Present("objectClass"), [persist]))  # second persistent search
            sock.sendall(search(4, flt.Present("objectClass")))  # would be the third: busy
            done = {}
            for message in read_messages(sock, 20, timeout=3):
                if isinstance(message.op, pdu.SearchResultDone):
                    done[message.message_id] = message.op.result_code
            assert done.get(2) == pdu.ResultCode.success
            assert done.get(4) == pdu.ResultCode.busy
            assert 1 not in done
    finally:
        server.stop()
