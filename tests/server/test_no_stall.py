"""No reader stalls another (issue 13): while one client runs an expensive read, another is answered.

One pyldapd with 100,000 users (uid indexed, employeeNumber not) and 20,000 items of about 2 KB each, loaded
offline with `pyldapd add`. For each heavy read (a filter of 100,000 uid= terms as the rootdn, an unindexed subtree
search over every entry, a consumer's full refresh), a heavy client sends it on its own socket and reads the
answer at full speed; meanwhile a light client's root DSE search must be answered while the heavy read is still
running. A client that stops reading a 40 MB result holds a bounded buffer: the server's RSS stays put while
others are answered, and the result arrives whole once the client reads.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time

import ldap
import pytest

from pyldapd.model.filter import Equality, Or, Present
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap as proto
from tests.servers import ROOTDN, ROOTPW, server_rss_kb, slapd_conf, start_pyldapd

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=People,{SUFFIX}"
ITEMS = f"ou=Items,{SUFFIX}"
USERS = 100_000
ITEM_COUNT = 20_000
FILLER = "x" * 2000  # each item's description: the 20,000-entry result is about 40 MB


def make_ldif() -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n",
        f"dn: {ITEMS}\nobjectClass: organizationalUnit\nou: Items\n",
    ]
    for i in range(USERS):
        parts.append(
            f"dn: uid=user{i},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: User {i}\nsn: Number{i}\nuid: user{i}\n"
            f"employeeNumber: {i}\n"
        )
    for i in range(ITEM_COUNT):
        parts.append(f"dn: cn=item{i},{ITEMS}\nobjectClass: device\ncn: item{i}\ndescription: {i} {FILLER}\n")
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("stall")
    ldif = root / "data.ldif"
    ldif.write_text(make_ldif())
    conf = slapd_conf(root / "db", indexes="index objectClass eq\nindex uid eq\nindex entryCSN,entryUUID eq",
                      modules=True, extra_global="moduleload syncprov\nsizelimit unlimited",
                      extra_db="overlay syncprov").replace("maxsize 104857600", "maxsize 1073741824")  # fmt: skip
    (root / "load.conf").write_text(conf)
    load = [
        sys.executable,
        "-m",
        "pyldapd.cli.main",
        "add",
        "-q",
        "-f",
        str(root / "load.conf"),
        "-l",
        str(ldif),
    ]
    done = subprocess.run(load, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    running = start_pyldapd(root / "run", conf, debug="none")
    try:
        yield running
    finally:
        running.stop()


class RawClient:
    """One socket, requests encoded by pyldapd's own codec (a filter of 100,000 terms, a sync request)."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:  # before connect: the TCP window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(120)
        self.sock.connect(("127.0.0.1", port))
        self.framer = proto.MessageFramer(1 << 26)
        self.pending: list[bytes] = []

    def send(self, message_id: int, op, controls=()) -> None:
        self.sock.sendall(proto.encode_message(proto.LDAPMessage(message_id, op, list(controls))))

    def read_to_end(self) -> tuple[int, int]:
        """(result code, entries) of the response under way: read until its final message."""
        entries = 0
        for _ in range(10_000_000):  # bounded: each round reads at least one message or one chunk
            if not self.pending:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.pending.extend(self.framer.feed(data))
                continue
            message = proto.decode_message(self.pending.pop(0))
            if isinstance(message.op, proto.SearchResultEntry):
                entries += 1
            elif not isinstance(message.op, (proto.SearchResultReference, proto.IntermediateResponse)):
                return message.op.result_code, entries
        raise RuntimeError("no end of the response")

    def bind_root(self) -> None:
        self.send(1, proto.BindRequest(3, ROOTDN, ROOTPW.encode()))
        code, _ = self.read_to_end()
        assert code == 0

    def close(self) -> None:
        self.sock.close()


def root_dse(server) -> list:
    conn = ldap.initialize(server.url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    try:
        return conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"], timeout=10)
    finally:
        conn.unbind_s()


def heavy_while_light(server, send_heavy, expect_entries) -> None:
    """Start a heavy read; after it has begun, the light client's root DSE search is answered before the heavy
    read ends (and within seconds); then the heavy read ends whole."""
    client = RawClient(server.port)
    client.bind_root()
    outcome: list = []
    finished = threading.Event()

    def heavy() -> None:
        try:
            send_heavy(client)
            outcome.append(client.read_to_end())
        except Exception as exc:  # reported by the assertion below
            outcome.append(exc)
        finally:
            finished.set()

    began = time.monotonic()
    worker = threading.Thread(target=heavy, daemon=True)
    worker.start()
    time.sleep(0.5)  # the heavy request has reached the server
    answered = []
    for _ in range(3):
        light_began = time.monotonic()
        result = root_dse(server)
        answered.append((time.monotonic() - light_began, finished.is_set()))
        assert result[0][1]["namingContexts"] == [SUFFIX.encode()]
    assert not answered[0][1], f"the heavy read ended before the light one was answered: {answered}"
    assert all(took < 5 for took, _ in answered), answered
    worker.join(300)
    assert finished.is_set()
    client.close()
    code, entries = outcome[0]
    assert code == 0, outcome
    assert expect_entries(entries), entries
    assert time.monotonic() - began < 300


def test_slow_reader_holds_a_bounded_buffer(server) -> None:
    """A client asks for 20,000 entries (40 MB) and reads nothing: others are answered meanwhile, the server's
    memory does not grow by the result, and once the client reads, every entry arrives. (First in the module:
    the server's heap is not yet grown by the other tests.)"""
    root_dse(server)
    before = server_rss_kb(server)  # its worker processes' too
    client = RawClient(server.port, rcvbuf=16384)
    client.bind_root()
    client.send(2, proto.SearchRequest(ITEMS, 1, 0, 0, 0, False, Present("objectClass"), ["*"]))
    for _ in range(10):  # 5 s in all, the result unread
        time.sleep(0.5)
        assert root_dse(server)[0][1]["namingContexts"] == [SUFFIX.encode()]
    grown = server_rss_kb(server) - before
    assert grown < 10_000, f"the server grew by {grown} KB while a 40 MB result stayed unread"
    code, entries = client.read_to_end()
    client.close()
    assert (code, entries) == (0, ITEM_COUNT)


def test_big_or_as_rootdn(server) -> None:
    rng = random.Random(13)
    values = [f"user{rng.randrange(2 * USERS)}".encode() for _ in range(100_000)]
    expected = len({v for v in values if int(v[4:]) < USERS})
    flt = Or(tuple(Equality("uid", v) for v in values))

    def send(client: RawClient) -> None:
        client.send(2, proto.SearchRequest(SUFFIX, 2, 0, 0, 0, False, flt, ["1.1"]))

    heavy_while_light(server, send, lambda n: n == expected)


def test_unindexed_subtree_search(server) -> None:
    def send(client: RawClient) -> None:
        flt = Or((Equality("employeeNumber", b"99999"), Equality("description", b"nothing")))
        client.send(2, proto.SearchRequest(SUFFIX, 2, 0, 0, 0, False, flt, ["1.1"]))

    heavy_while_light(server, send, lambda n: n == 1)


def test_consumer_full_refresh(server) -> None:
    def send(client: RawClient) -> None:
        sync = ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_ONLY))
        request = proto.SearchRequest(SUFFIX, 2, 0, 0, 0, False, Present("objectClass"), ["*", "+"])
        client.send(2, request, [proto.Control(ctl.SYNC_REQUEST, True, sync)])

    heavy_while_light(server, send, lambda n: n == USERS + ITEM_COUNT + 3)


def test_writes_during_a_persistent_search_refresh(server) -> None:
    """A refreshAndPersist search of every entry: a modify from another client is answered while the refresh
    runs, and reaches the searcher after the refresh's end, as a persist-stage change (nothing falls between the
    refresh's snapshot and the persist stage)."""
    client = RawClient(server.port)
    client.bind_root()
    sync = ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_AND_PERSIST))
    request = proto.SearchRequest(SUFFIX, 2, 0, 0, 0, False, Present("objectClass"), ["description"])
    client.send(2, request, [proto.Control(ctl.SYNC_REQUEST, True, sync)])
    time.sleep(0.5)  # the refresh has begun
    writer = ldap.initialize(server.url)
    writer.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    writer.simple_bind_s(ROOTDN, ROOTPW)
    target = f"uid=user5,{PEOPLE}"
    writer.modify_ext_s(target, [(ldap.MOD_REPLACE, "description", [b"changed during the refresh"])])
    writer.unbind_s()
    refreshed = 0
    refresh_done = False
    for _ in range(10_000_000):  # bounded: every round consumes one message or one chunk
        if not client.pending:
            data = client.sock.recv(1 << 20)
            assert data, "server closed the connection"
            client.pending.extend(client.framer.feed(data))
            continue
        message = proto.decode_message(client.pending.pop(0))
        op = message.op
        if isinstance(op, proto.IntermediateResponse):
            info = ctl.decode_sync_info(op.value)
            if getattr(info, "refresh_done", False):
                refresh_done = True
            continue
        assert isinstance(op, proto.SearchResultEntry), op
        if not refresh_done:
            refreshed += 1
            continue
        # the first entry after the refresh: the change made while it ran
        assert op.dn.lower() == target.lower()
        values = {name.lower(): vals for name, vals in op.attributes}
        assert values["description"] == [b"changed during the refresh"]
        break
    else:
        raise AssertionError("no end of the refresh")
    # nothing was read before the modify was answered: the refresh (about 10 MB) was paused under way
    assert refreshed == USERS + ITEM_COUNT + 3
    client.close()


def test_abandon_stops_a_running_search(server) -> None:
    """A refresh of every entry, abandoned: it stops (no final result, far fewer entries than the whole), and the
    next request on the same connection is answered."""
    client = RawClient(server.port)
    client.bind_root()
    sync = ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_ONLY))
    request = proto.SearchRequest(SUFFIX, 2, 0, 0, 0, False, Present("objectClass"), ["*", "+"])
    client.send(2, request, [proto.Control(ctl.SYNC_REQUEST, True, sync)])
    time.sleep(0.5)
    client.send(3, proto.AbandonRequest(2))
    client.send(4, proto.SearchRequest("", 0, 0, 0, 0, False, Present("objectClass"), ["namingContexts"]))
    abandoned_entries = 0
    for _ in range(10_000_000):  # bounded: every round consumes one message or one chunk
        if not client.pending:
            data = client.sock.recv(1 << 20)
            assert data, "server closed the connection"
            client.pending.extend(client.framer.feed(data))
            continue
        message = proto.decode_message(client.pending.pop(0))
        if message.message_id == 2:
            assert isinstance(message.op, (proto.SearchResultEntry, proto.IntermediateResponse)), message.op
            abandoned_entries += 1
            continue
        assert message.message_id == 4
        if isinstance(message.op, proto.SearchResultEntry):
            assert message.op.attributes == [("namingContexts", [SUFFIX.encode()])]
            continue
        assert message.op.result_code == 0
        break
    else:
        raise AssertionError("the root DSE search was not answered")
    assert abandoned_entries < (USERS + ITEM_COUNT) // 2, abandoned_entries
    client.close()
