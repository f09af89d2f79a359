"""A persistent search whose client stops reading costs bounded memory (issue 13).

A pyldapd provider takes 20,000 modifies (each carrying a 2 KB value: about 45 MB of persist-stage messages)
while a refreshAndPersist searcher reads nothing. Past PERSIST_UNSENT_MAX unread octets on its connection the
search ends with e-syncRefreshRequired (4096): the server's anonymous memory stays bounded, other clients are
answered meanwhile, the searcher gets 4096 (with the cookie of what it was sent) once it reads, and a real
consumer (pyldapd, Debian's slapd) frozen with SIGSTOP during the burst converges exactly after SIGCONT by a
refresh from its cookie.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import ldap
import pytest

from pyldapd.model.csn import parse_cookie
from pyldapd.model.filter import Present
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap as proto
from pyldapd.replication.provider import PERSIST_UNSENT_MAX
from tests.replication.helpers import BASE, add, consumer_conf, provider_conf, wait_converged
from tests.server.test_no_stall import RawClient
from tests.servers import ROOTDN, ROOTPW, SUFFIX, child_pids, start_pyldapd, start_slapd

PEOPLE = f"ou=People,{SUFFIX}"
TARGETS = 50  # entries the burst modifies, round robin
CHANGES = 20_000
WRITERS = 8
FILLER = "y" * 2000


def people() -> str:
    return "\n".join(
        f"dn: uid=u{i},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: U {i}\nsn: u{i}\nuid: u{i}\n"
        for i in range(TARGETS)
    )


def burst(server, changes: int = CHANGES) -> None:
    """`changes` modifies from WRITERS connections at once (they share commits), each acknowledged."""
    failures: list[BaseException] = []

    def write(first: int) -> None:
        try:
            conn = ldap.initialize(server.url)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
            conn.set_option(ldap.OPT_TIMEOUT, 60)
            conn.simple_bind_s(ROOTDN, ROOTPW)
            for n in range(first, changes, WRITERS):
                value = f"{n} {FILLER}".encode()
                conn.modify_ext_s(
                    f"uid=u{n % TARGETS},{PEOPLE}", [(ldap.MOD_REPLACE, "description", [value])]
                )
            conn.unbind_s()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not any(t.is_alive() for t in threads), "the burst did not end in 600 s"
    assert not failures, failures


def anon_kb(pid: int) -> int:
    """Anonymous resident memory (the heap: buffers and queues), not LMDB's file-backed map pages, of the server
    and its worker processes (the one holding the search is not known in advance)."""
    total = 0
    for each in [pid, *child_pids(pid)]:
        try:
            lines = Path(f"/proc/{each}/status").read_text().splitlines()
        except OSError:
            continue  # gone meanwhile
        total += next(int(line.split()[1]) for line in lines if line.startswith("RssAnon:"))
    return total


def signal_all(pid: int, sig: signal.Signals) -> None:
    """A signal to a server and its worker processes (SIGSTOP stops one process, not its children)."""
    for each in [pid, *child_pids(pid)]:
        os.kill(each, sig)


def root_dse(server) -> list:
    conn = ldap.initialize(server.url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    try:
        return conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"], timeout=10)
    finally:
        conn.unbind_s()


@pytest.fixture
def provider(tmp_path):
    # 1 GB of map: a refresh paused by its reader keeps its snapshot's pages from reuse during the burst
    conf = provider_conf(tmp_path / "provider" / "db").replace("maxsize 104857600", "maxsize 1073741824")
    server = start_pyldapd(tmp_path / "provider", conf, name="provider")
    try:
        add(server, BASE + "\n" + people())
        yield server
    finally:
        server.stop()


def test_stalled_searcher_costs_bounded_memory_and_gets_4096(provider) -> None:
    client = RawClient(provider.port, rcvbuf=16384)
    client.bind_root()
    sync = ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_AND_PERSIST))
    request = proto.SearchRequest(SUFFIX, 2, 0, 0, 0, False, Present("objectClass"), ["*", "+"])
    client.send(2, request, [proto.Control(ctl.SYNC_REQUEST, True, sync)])
    refreshed = 0
    for _ in range(100_000):  # bounded: each round consumes one message or one chunk
        if not client.pending:
            data = client.sock.recv(1 << 16)
            assert data, "server closed the connection"
            client.pending.extend(client.framer.feed(data))
            continue
        message = proto.decode_message(client.pending.pop(0))
        if isinstance(message.op, proto.IntermediateResponse):
            if getattr(ctl.decode_sync_info(message.op.value), "refresh_done", False):
                break
        else:
            assert isinstance(message.op, proto.SearchResultEntry), message.op
            refreshed += 1
    assert refreshed == TARGETS + 3
    # the persist stage: from here on the client reads nothing while the burst runs
    root_dse(provider)
    before = anon_kb(provider.process.pid)
    answered: list[float] = []
    stop = threading.Event()

    def light() -> None:  # another client, answered throughout
        while not stop.is_set() and len(answered) < 1000:
            began = time.monotonic()
            assert root_dse(provider)[0][1]["namingContexts"] == [SUFFIX.encode()]
            answered.append(time.monotonic() - began)
            stop.wait(0.5)

    watcher = threading.Thread(target=light, daemon=True)
    watcher.start()
    burst(provider)
    stop.set()
    watcher.join(30)
    grown = anon_kb(provider.process.pid) - before
    assert len(answered) >= 3 and max(answered) < 10, answered
    # unbounded, the 20,000 unread changes (about 45 MB) would stay in the server
    assert grown < 25_000, f"the server grew by {grown} KB while its persistent searcher read nothing"
    assert "e-syncRefreshRequired: more than" in provider.log()
    # now the client reads: what was sent before the bound, then the end of the search, 4096 and a cookie
    changes = 0
    last_csn = ""
    for _ in range(1_000_000):  # bounded: each round consumes one message or one chunk
        if not client.pending:
            data = client.sock.recv(1 << 20)
            assert data, "server closed the connection"
            client.pending.extend(client.framer.feed(data))
            continue
        message = proto.decode_message(client.pending.pop(0))
        if isinstance(message.op, proto.SearchResultDone):
            break
        assert isinstance(message.op, proto.SearchResultEntry), message.op
        changes += 1
        state = ctl.decode_sync_state(ctl.find_control(message.controls, ctl.SYNC_STATE).value)
        last_csn = max(last_csn, parse_cookie(state.cookie).csns[0])
    else:
        raise AssertionError("no end of the persistent search")
    assert message.op.result_code == proto.ResultCode.syncRefreshRequired, message.op
    assert 0 < changes < CHANGES, changes
    assert changes * len(FILLER) < 3 * PERSIST_UNSENT_MAX  # the bound, and what the kernel's buffers held
    done = ctl.decode_sync_done(ctl.find_control(message.controls, ctl.SYNC_DONE).value)
    assert parse_cookie(done.cookie).csns[0] == last_csn  # the state the client holds: refresh from there
    client.close()
    # the connection is still usable
    conn = ldap.initialize(provider.url)
    conn.simple_bind_s(ROOTDN, ROOTPW)
    conn.unbind_s()


@pytest.mark.parametrize("kind", ["pyldapd", "slapd"])
def test_frozen_consumer_converges_after_refresh_required(tmp_path, provider, kind) -> None:
    start = start_pyldapd if kind == "pyldapd" else start_slapd
    conf = consumer_conf(tmp_path / kind / "db", provider.url, slapd=kind == "slapd")
    consumer = start(tmp_path / kind, conf, name=kind)
    try:
        wait_converged([provider, consumer], timeout=60)
        time.sleep(1)  # its persistent search is registered on the provider
        signal_all(consumer.process.pid, signal.SIGSTOP)
        try:
            burst(provider)
        finally:
            signal_all(consumer.process.pid, signal.SIGCONT)
        assert "e-syncRefreshRequired: more than" in provider.log()
        wait_converged([provider, consumer], timeout=180)
        if kind == "pyldapd":  # a refresh from its cookie, not a reload from nothing
            assert "refreshing from the cookie" in consumer.log()
            assert "full reload" not in consumer.log()
    finally:
        consumer.stop()


def test_overflow_during_the_refresh_ends_after_refresh_done(provider) -> None:
    """The searcher stops reading during its refresh (about 6 MB) while the burst runs: the changes queued for
    after the refresh pass the bound and are dropped; once the client reads, the refresh arrives whole with
    its refreshDone and snapshot cookie, then 4096 with that same state, and no persist-stage change."""
    bulk = f"ou=Bulk,{SUFFIX}"
    ldif = f"dn: {bulk}\nobjectClass: organizationalUnit\nou: Bulk\n\n" + "\n".join(
        f"dn: cn=b{i},{bulk}\nobjectClass: device\ncn: b{i}\ndescription: {i} {FILLER}\n" for i in range(3000)
    )
    add(provider, ldif)
    root_dse(provider)
    before = anon_kb(provider.process.pid)
    client = RawClient(provider.port, rcvbuf=16384)
    client.bind_root()
    sync = ctl.encode_sync_request(ctl.SyncRequest(ctl.SYNC_MODE_REFRESH_AND_PERSIST))
    request = proto.SearchRequest(SUFFIX, 2, 0, 0, 0, False, Present("objectClass"), ["*", "+"])
    client.send(2, request, [proto.Control(ctl.SYNC_REQUEST, True, sync)])
    time.sleep(1)  # the refresh has begun, and waits for the client
    burst(provider)
    grown = anon_kb(provider.process.pid) - before
    assert grown < 25_000, f"the server grew by {grown} KB while its refreshing searcher read nothing"
    refreshed, refresh_cookie = 0, None
    for _ in range(1_000_000):  # bounded: each round consumes one message or one chunk
        if not client.pending:
            data = client.sock.recv(1 << 20)
            assert data, "server closed the connection"
            client.pending.extend(client.framer.feed(data))
            continue
        message = proto.decode_message(client.pending.pop(0))
        if isinstance(message.op, proto.SearchResultDone):
            break
        if isinstance(message.op, proto.IntermediateResponse):
            info = ctl.decode_sync_info(message.op.value)
            assert getattr(info, "refresh_done", False), info
            refresh_cookie = info.cookie
            continue
        assert refresh_cookie is None, "a persist-stage change after the overflow"
        assert isinstance(message.op, proto.SearchResultEntry), message.op
        refreshed += 1
    else:
        raise AssertionError("no end of the persistent search")
    assert refreshed == TARGETS + 3 + 3001
    assert message.op.result_code == proto.ResultCode.syncRefreshRequired, message.op
    done = ctl.decode_sync_done(ctl.find_control(message.controls, ctl.SYNC_DONE).value)
    assert refresh_cookie is not None
    assert parse_cookie(done.cookie).csns == parse_cookie(refresh_cookie).csns
    assert "e-syncRefreshRequired: more than" in provider.log()
    client.close()
