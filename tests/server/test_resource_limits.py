"""Resource limits that hold (issue 14): deep DNs and filters, anonymous Password Modify, idle and half-sent
connections, connection floods, paged-search memory, slow password checks. Compared with Debian's slapd where it
has an answer; every wait is bounded."""

from __future__ import annotations

import socket
import time

import ldap as pyldap
import pytest

from pyldapd.protocol import ldap as pdu
from pyldapd.protocol.ber import tlv
from tests.servers import ROOTDN, ROOTPW, SUFFIX, ldap_tool, slapd_conf, start_pyldapd, start_slapd

SUFFIX_LDIF = (
    "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Debian's slapd and pyldapd on one config, each holding the suffix entry."""
    root = tmp_path_factory.mktemp("limits")
    servers = {}
    try:
        for name, start in (("slapd", start_slapd), ("pyldapd", start_pyldapd)):
            (root / name / "db").mkdir(parents=True)
            servers[name] = start(root / name, slapd_conf(root / name / "db", modules=True))
            added = ldap_tool("ldapadd", "-x", "-H", servers[name].url, "-D", ROOTDN, "-w", ROOTPW,
                              input=SUFFIX_LDIF)  # fmt: skip
            assert added.returncode == 0, added.stderr
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def read_messages(sock: socket.socket, count: int, timeout: float = 10.0) -> list:
    """Up to `count` messages (decoded), then "EOF" if the server closed the connection."""
    framer = pdu.MessageFramer(1 << 24)
    out: list = []
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            out.append("EOF")
            break
        out += [pdu.decode_message(p, 100_000) for p in framer.feed(data)]
    return out


def summary(messages: list) -> list:
    return [m if m == "EOF" else (m.message_id, type(m.op).__name__, getattr(m.op, "result_code", None),
                                  getattr(m.op, "message", None)) for m in messages]  # fmt: skip


def raw_search(base: str, filter_tlv: bytes, message_id: int = 1) -> bytes:
    """A SearchRequest PDU built by hand: the codec's encoder would recurse once per filter level."""
    body = (tlv(0x04, base.encode()) + tlv(0x0A, b"\x00") + tlv(0x0A, b"\x00") + tlv(0x02, b"\x00")
            + tlv(0x02, b"\x00") + tlv(0x01, b"\x00") + filter_tlv + tlv(0x30, tlv(0x04, b"1.1")))  # fmt: skip
    return tlv(0x30, tlv(0x02, bytes([message_id])) + tlv(0x63, body))


def nested_and(depth: int) -> bytes:
    f = tlv(0x87, b"objectClass")
    for _ in range(depth):
        f = tlv(0xA0, f)
    return f


def ask(server, request: bytes, count: int = 2) -> list:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        return summary(read_messages(sock, count))


@pytest.mark.parametrize("rdns", [1600, 10_000])
def test_deep_dn_answered_as_slapd(pair, rdns):
    """10,000 RDNs: slapd's DN length limit (8192 octets) answers invalidDNSyntax; pyldapd recursed and said 80."""
    dn = "cn=a," * (rdns - 2) + SUFFIX  # 1,600 RDNs: 8,007 octets, under the limit
    request = raw_search(dn, tlv(0x87, b"objectClass"))
    answers = {name: ask(server, request) for name, server in pair.items()}
    assert answers["pyldapd"] == answers["slapd"]
    expected = 34 if rdns == 10_000 else 32
    assert answers["pyldapd"][0][2] == expected
    assert "Traceback" not in pair["pyldapd"].log()


@pytest.mark.parametrize("depth", [1000, 1001])
def test_deep_filter_answered_as_slapd(pair, depth):
    """1,000 nested and-sets are answered (the entry found); 1,001 end the connection, as slapd's maxfilterdepth."""
    request = raw_search(SUFFIX, nested_and(depth))
    answers = {name: ask(server, request) for name, server in pair.items()}
    assert answers["pyldapd"] == answers["slapd"]
    if depth == 1000:
        assert [a[1] for a in answers["pyldapd"]] == ["SearchResultEntry", "SearchResultDone"]
    else:
        assert answers["pyldapd"] == [(0, "ExtendedResponse", 2, "filter nested too deeply"), "EOF"]


@pytest.mark.parametrize("identity", [None, ROOTDN])
def test_anonymous_password_modify_needs_authentication(pair, identity):
    answers = {}
    for name, server in pair.items():
        conn = pyldap.initialize(server.url)
        with pytest.raises(pyldap.STRONG_AUTH_REQUIRED) as info:
            conn.passwd_s(identity, None, "new")
        answers[name] = info.value.args[0]["info"]
        conn.unbind_s()
    assert answers["pyldapd"] == answers["slapd"] == "only authenticated users may change passwords"
