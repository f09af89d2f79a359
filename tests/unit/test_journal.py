"""Issue 13, what follows a write when several worker processes share a database (server/journal.py), at the
engine level: two `Directory` objects on one LMDB environment, one in this process and one in a child process
(LMDB's write lock is the real one between them), each with a bus that records what it would tell the others.

The multi-process server itself is tested in tests/replication/test_workers_replication.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pyldapd.model.csn import parse_cookie
from pyldapd.protocol import controls as ctl
from pyldapd.protocol import ldap
from pyldapd.replication.state import CONTEXT_CSN_KEY, decode_change
from pyldapd.server import journal
from pyldapd.server.workers import WorkerBus
from tests.unit.test_replication_logic import (
    SUFFIX,
    FakeConnection,
    add,
    make_directory,
    populate,
    root,
    states,
    sync_search,
)

REPO = Path(__file__).resolve().parents[2]


class RecordingBus(WorkerBus):
    """The bus of worker `index` of two: what it would send, kept; handlers called by the test."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.count = 2
        self.sent: list[tuple[str, bytes]] = []
        self.handlers: dict[str, list[Callable[[int, bytes], None]]] = {}

    def broadcast(self, kind: str, payload: bytes = b"") -> None:
        self.sent.append((kind, payload))

    def subscribe(self, kind: str, handler: Callable[[int, bytes], None]) -> None:
        self.handlers.setdefault(kind, []).append(handler)


def other_worker(tmp_path: Path, count: int, keep: int = journal.JOURNAL_KEEP) -> subprocess.Popen:
    """Worker 1 in a child process: `count` adds to the same database, then a clean close."""
    script = textwrap.dedent(f"""
        from pathlib import Path
        from pyldapd.server import journal
        from tests.unit.test_journal import RecordingBus
        from tests.unit.test_replication_logic import SUFFIX, add, make_directory

        directory = make_directory(Path({str(tmp_path)!r}), "p", 1)
        journal.share(directory, RecordingBus(1))
        directory.backends[0].journal.keep = {keep}
        for i in range({count}):
            add(directory, f"uid=w1-{{i}},ou=People,{{SUFFIX}}", ("objectClass", [b"account"]),
                ("uid", [f"w1-{{i}}".encode()]))
        directory.close()
    """)
    # the sources under test first (a checkout run with PYTHONPATH=<it>/src), then the tests package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)


def journal_records(directory) -> list:
    with directory.backends[0].db.read() as txn:
        return [(seq, *decode_change(record)) for seq, record in txn.journal_after(0)]


def test_journal_appends_in_sequence_and_trims_to_its_bound(tmp_path: Path) -> None:
    directory = make_directory(tmp_path, "p", 1)
    db = directory.backends[0].db
    with db.write() as txn:
        assert txn.journal_last() == 0
        assert [txn.journal_append(f"r{i}".encode(), keep=3) for i in range(5)] == [1, 2, 3, 4, 5]
    with db.read() as txn:
        assert txn.journal_after(0) == [(3, b"r2"), (4, b"r3"), (5, b"r4")]
        assert txn.journal_after(4) == [(5, b"r4")]
        assert txn.journal_last() == 5
    directory.close()


def test_journal_trims_to_its_size_bound_too(tmp_path: Path) -> None:
    """Records of large changes (a group of 10,000 members, before and after) are bounded by their size, not
    only their count: 20,000 of them would fill any database. The record just appended always stays; a
    journal written before the size was counted is counted once from its records."""
    directory = make_directory(tmp_path, "p", 1)
    db = directory.backends[0].db
    record = b"x" * 1000
    with db.write() as txn:
        for _ in range(20):
            txn.journal_append(record, keep=1000, keep_bytes=5000)
    with db.read() as txn:
        kept = txn.journal_after(0)
        assert [seq for seq, _ in kept] == [16, 17, 18, 19, 20]
        assert txn.journal_bytes() == 5000
    with db.write() as txn:  # many small records, then a large one: as many small ones go as it takes
        for _ in range(100):
            txn.journal_append(b"s" * 40, keep=1000, keep_bytes=5000)
        txn.journal_append(b"L" * 4000, keep=1000, keep_bytes=5000)
        assert txn.journal_bytes() <= 5000 and len(txn.journal_after(0)) == 1 + (5000 - 4000) // 40
    with db.write() as txn:  # one record larger than the bound: alone, it stays
        txn.journal_append(b"y" * 9000, keep=1000, keep_bytes=5000)
    with db.read() as txn:
        assert [seq for seq, _ in txn.journal_after(0)] == [122] and txn.journal_bytes() == 9000
    with db.write() as txn:  # as a database written before the count: counted from the records
        txn._op(txn._del, b"journal-bytes", None, db.dbs["meta"])
        assert txn.journal_bytes() == 9000
        txn.journal_append(record, keep=1000, keep_bytes=5000)
        assert [seq for seq, _ in txn.journal_after(0)] == [123] and txn.journal_bytes() == 1000
    directory.close()


def test_csns_unique_and_increasing_across_processes_and_every_change_published_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both workers write at once, their CSN generators on the same (fake) clock: without reading the stored
    vector at each transaction's start their CSNs would collide. A persistent search in this worker sees every
    change of both, once, in commit order, with cookies that never go backwards. Only the other worker's
    records are decoded: this worker publishes its own changes as they were."""
    decoded: list[bytes] = []

    def counting_decode(record: bytes):
        decoded.append(record)
        return decode_change(record)

    monkeypatch.setattr(journal, "decode_change", counting_decode)
    directory = make_directory(tmp_path, "p", 1)
    populate(directory)
    bus = RecordingBus(0)
    journal.share(directory, bus)
    backend = directory.backends[0]
    conn = FakeConnection()
    assert sync_search(directory, conn, ctl.SYNC_MODE_REFRESH_AND_PERSIST, "rid=002") is True
    conn.take()
    child = other_worker(tmp_path, 150)
    written = 0
    for i in range(3000):  # bounded: until the other worker is done
        add(
            directory,
            f"uid=w0-{i},ou=People,{SUFFIX}",
            ("objectClass", [b"account"]),
            ("uid", [f"w0-{i}".encode()]),
        )
        written += 1
        if child.poll() is not None:
            break
    assert child.wait(timeout=120) == 0
    backend.journal.catch_up()  # the other worker's announcement

    records = journal_records(directory)
    assert len(records) == written + 150
    writers = [worker for _, _, worker in records]
    assert writers.count(1) == 150 and writers.count(0) == written
    switches = sum(1 for a, b in zip(writers, writers[1:], strict=False) if a != b)
    assert switches >= 2, "the two workers' writes did not interleave"
    csns = [change.csn for _, change, _ in records]
    assert len(set(csns)) == len(csns) and csns == sorted(csns)  # unique, increasing in commit order
    with backend.db.read() as txn:  # what each entry carries
        stored = {e.dn: e.first("entrycsn").decode() for e in txn.children(f"ou=people,{SUFFIX}".lower())}
        vector = txn.get_raw_metadata(CONTEXT_CSN_KEY)
    assert [stored[change.after.dn] for _, change, _ in records] == csns

    pushed = conn.take()
    assert states(pushed) == [(change.after.dn, ctl.SYNC_STATE_ADD) for _, change, _ in records]
    cookies = [
        parse_cookie(ctl.decode_sync_state(ctl.find_control(m.controls, ctl.SYNC_STATE).value).cookie)
        for m in pushed
    ]
    assert [c.csns[1] for c in cookies] == csns
    assert backend.context.csns.as_dict() == {1: csns[-1]} and vector == csns[-1].encode()
    assert backend.journal.published_up_to == records[-1][0]
    assert [kind for kind, _ in bus.sent].count("journal") == written  # one announcement per own commit
    assert len(decoded) == 150 and backend.journal.own == {}
    directory.close()


def test_a_worker_that_lost_journal_records_ends_its_persistent_searches(tmp_path: Path) -> None:
    directory = make_directory(tmp_path, "p", 1)
    populate(directory)
    journal.share(directory, RecordingBus(0))
    backend = directory.backends[0]
    conn = FakeConnection()
    assert sync_search(directory, conn, ctl.SYNC_MODE_REFRESH_AND_PERSIST, "rid=002") is True
    conn.take()
    before = backend.context.csns.as_dict()
    child = other_worker(tmp_path, 30, keep=5)  # this worker reads nothing meanwhile: 25 are trimmed
    assert child.wait(timeout=120) == 0
    backend.journal.catch_up()
    done = conn.take()[-1]
    assert isinstance(done.op, ldap.SearchResultDone)
    assert done.op.result_code == ldap.ResultCode.syncRefreshRequired
    assert backend.provider.psearches == [] and backend.journal.lost == 1 and backend.journal.own == {}
    # the vector is the stored one all the same, and the session log covers no older cookie
    with backend.db.read() as txn:
        assert backend.context.encoded() == txn.get_raw_metadata(CONTEXT_CSN_KEY)
    assert not backend.provider.session_log.covers({1: "20000101000000.000000Z#000000#001#000000"})
    # nor, once it holds a delete made after the gap, a cookie from before the lost changes: it starts from
    # the vector that holds them
    directory.delete(root(directory), ldap.DelRequest(f"uid=a,ou=People,{SUFFIX}"), [])
    backend.journal.catch_up()
    assert backend.provider.session_log.records
    assert not backend.provider.session_log.covers(before)
    directory.close()


def test_served_refreshes_reach_the_other_workers(tmp_path: Path) -> None:
    """A refresh served by worker 1 is known to worker 0, whose consumer tells concurrent writes by it."""
    serving, primary = make_directory(tmp_path, "a", 1), make_directory(tmp_path, "b", 1)
    populate(serving)
    serving_bus, primary_bus = RecordingBus(1), RecordingBus(0)
    journal.share(serving, serving_bus)
    journal.share(primary, primary_bus)
    assert sync_search(serving, FakeConnection(), ctl.SYNC_MODE_REFRESH_ONLY, "rid=002,sid=003") is False
    sent = [payload for kind, payload in serving_bus.sent if kind == journal.SERVED_KIND]
    assert len(sent) == 1
    for handler in primary_bus.handlers[journal.SERVED_KIND]:
        handler(1, sent[0])
    ((when, covered),) = primary.backends[0].provider.served[3]
    assert (when, covered) == serving.backends[0].provider.served[3][0]
    assert covered == serving.backends[0].context.csns[1]
    serving.close()
    primary.close()


def test_persistent_searches_of_consumers_are_known_to_the_other_workers(tmp_path: Path) -> None:
    """worker 0's consumer tells a concurrent write by the sender's persistent search on this node, whichever
    worker serves it; a worker that starts again says none of its searches is left."""
    serving, primary = make_directory(tmp_path, "a", 1), make_directory(tmp_path, "b", 1)
    populate(serving)
    serving_bus, primary_bus = RecordingBus(1), RecordingBus(0)
    journal.share(serving, serving_bus)
    journal.share(primary, primary_bus)

    def deliver() -> None:
        for kind, payload in serving_bus.sent:
            for handler in primary_bus.handlers.get(kind, []):
                handler(1, payload)
        serving_bus.sent.clear()

    deliver()
    conn = FakeConnection()
    assert sync_search(serving, conn, ctl.SYNC_MODE_REFRESH_AND_PERSIST, "rid=002,sid=003") is True
    deliver()
    (ps,) = serving.backends[0].provider.psearches
    assert primary.backends[0].provider.remote_psearches == {(1, 3, ps.registered_at)}
    serving.stop_sync_search(conn, 7, ldap.ResultCode.cancelled)
    deliver()
    assert primary.backends[0].provider.remote_psearches == set()
    assert (
        sync_search(serving, FakeConnection(), ctl.SYNC_MODE_REFRESH_AND_PERSIST, "rid=002,sid=003") is True
    )
    deliver()
    assert len(primary.backends[0].provider.remote_psearches) == 1
    journal.psearch_elsewhere(primary, 1, b"")  # what a restarted worker 1 says first
    assert primary.backends[0].provider.remote_psearches == set()
    serving.close()
    primary.close()


def test_journal_records_write_the_entry_before_as_what_differs_from_the_entry_after() -> None:
    """encode_change/decode_change round trips: the attributes the change kept, the values it added at the end,
    the values it changed otherwise, an attribute renamed or gone, an add and a delete; a record of the first
    format (both entries whole) still reads."""
    import marshal

    from pyldapd.model.entry import Attribute, Entry
    from pyldapd.replication.state import Change, encode_change

    members = [f"uid=u{i},dc=example,dc=com".encode() for i in range(5000)]
    before = Entry(
        f"cn=g,{SUFFIX}",
        {
            "objectclass": Attribute("objectClass", [b"groupOfNames"]),
            "member": Attribute("member", members),
            "description": Attribute("description", [b"old"]),
            "cn": Attribute("cn", [b"g"]),
            "seealso": Attribute("seeAlso", [b"cn=x"]),
            "owner": Attribute("owner", [b"cn=a", b"cn=b"]),
        },
        7,
    )
    after = before.copy()
    after.attrs["member"].values.append(b"uid=new,dc=example,dc=com")
    after.attrs["description"].values = [b"new"]
    after.attrs["cn"] = Attribute("CN", [b"g"])  # another spelling of the name
    del after.attrs["seealso"]
    after.attrs["owner"].values = [b"cn=a"]  # fewer values: not a prefix case
    after.attrs["mail"] = Attribute("mail", [b"g@example.com"])
    changes = [
        Change("modify", before, after, "20261126000000.000000Z#000000#001#000000", 2, True, False),
        Change("add", None, after, "20261126000000.000001Z#000000#001#000000"),
        Change("delete", before, None, "20261126000000.000002Z#000000#001#000000"),
        Change("modify", before, before.copy(), "20261126000000.000003Z#000000#001#000000"),
    ]
    for change in changes:
        record = encode_change(change, 1)
        decoded, worker = decode_change(record)
        assert (decoded, worker) == (change, 1)
        for got, want in ((decoded.before, change.before), (decoded.after, change.after)):
            if want is not None:
                assert list(got.attrs) == list(want.attrs) and got.id == want.id
                assert [a.name for a in got.attrs.values()] == [a.name for a in want.attrs.values()]
        if decoded.before is not None and decoded.after is not None:  # no list shared between the two
            shared = {id(a.values) for a in decoded.before.attrs.values()}
            assert not shared & {id(a.values) for a in decoded.after.attrs.values()}
    whole = len(marshal.dumps(tuple(members) * 2, 2))
    assert len(encode_change(changes[0], 1)) < whole * 0.6  # the members once
    first_format = marshal.dumps((1, "modify", ("cn=g", 7, [("cn", "cn", [b"g"])]),
                                  ("cn=g", 7, [("cn", "cn", [b"h"])]), "csn", None, False, True, 0))  # fmt: skip
    old, worker = decode_change(first_format)
    assert old.before.attrs["cn"].values == [b"g"] and old.after.attrs["cn"].values == [b"h"] and worker == 0
