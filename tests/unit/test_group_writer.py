"""Group commit (pyldapd.backends.writer) on real LMDB environments: operations of one group run in nested
transactions, fail alone, see the earlier ones, and hand their effects to the event loop after the commit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from pyldapd.backends.base import AlreadyExists, NoSuchEntry, StorageError
from pyldapd.backends.mdb import MdbDatabase
from pyldapd.model.dn import normalize_dn
from pyldapd.replication.state import ContextState
from tests.unit.test_mdb import SUFFIX, _schema, make_entry, person

PEOPLE = "ou=People,dc=Example,dc=com"


@pytest.fixture(scope="module")
def schema() -> Any:
    return _schema()


def top(schema: Any) -> list:
    return [
        make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"),
        make_entry(schema, PEOPLE, objectClass=["top", "organizationalUnit"], ou="People"),
    ]


def dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def ndn(uid: str) -> str:
    return normalize_dn(dn(uid), _schema())


async def submit_all(db: MdbDatabase, works: list) -> list:
    """Submit every work at once (they queue while the writer is busy) and collect results or exceptions."""
    futures = [db.writer.submit(work) for work in works]
    return await asyncio.gather(*futures, return_exceptions=True)


def test_operations_fail_alone_and_see_the_earlier_ones(tmp_path: Path, schema: Any) -> None:
    db = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, maxsize=64 * 2**20)
    try:
        entries = top(schema)

        def add(entry):
            return lambda txn: txn.add(entry.copy())

        def modify_cn(uid: str, cn: str):
            def work(txn):
                entry = txn.get(ndn(uid)).copy()  # sees the add earlier in the group
                entry.put("cn", "cn", [cn.encode()])
                txn.modify(ndn(uid), entry)
                return cn

            return work

        def delete(uid: str):
            return lambda txn: txn.delete(ndn(uid)).dn

        anna = person(schema, dn("anna"), "anna", "Anna A")
        works = [add(entries[0]), add(entries[1]), add(anna), add(anna), modify_cn("anna", "Anna B"),
                 delete("nobody"), delete("anna"), modify_cn("anna", "Anna C")]  # fmt: skip
        results = asyncio.run(submit_all(db, works))
        assert isinstance(results[0], int) and isinstance(results[2], int)
        assert isinstance(results[3], AlreadyExists)  # the same DN twice: as one by one
        assert results[4] == "Anna B"
        assert isinstance(results[5], NoSuchEntry)
        assert results[6].lower() == dn("anna").lower()
        assert isinstance(results[7], AttributeError)  # the entry is gone for the operation after the delete
        with db.read() as txn:
            assert txn.get(ndn("anna")) is None
            assert txn.get(normalize_dn(PEOPLE, schema)) is not None
        writer = db.writer
        assert writer.operations == 5 and writer.refused == 3
    finally:
        db.close()


def test_effects_run_on_the_loop_in_order_after_the_commit(tmp_path: Path, schema: Any) -> None:
    db = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, maxsize=64 * 2**20)
    context = ContextState()
    seen: list[tuple[str, int, bool]] = []

    def add(entry, csn: str):
        def work(txn):
            txn.add(entry.copy())
            context.advance(txn, csn)
            entry_ndn = normalize_dn(entry.dn, schema)

            def effect() -> None:  # on the loop, once durable: the entry is there for a fresh reader
                with db.read() as reader:
                    seen.append((csn, threading.get_ident(), reader.get(entry_ndn) is not None))

            txn.on_commit(effect)

        return work

    def failing(txn):
        context.advance(txn, "20300101000000.000000Z#000000#001#000000")
        txn.on_commit(lambda: seen.append(("never", 0, False)))
        raise StorageError("this operation fails")

    async def main() -> list:
        entries = top(schema)
        csns = [f"20250101000000.00000{i}Z#000000#001#000000" for i in range(4)]
        works = [add(entries[0], csns[0]), add(entries[1], csns[1]), failing,
                 add(person(schema, dn("bo"), "bo", "Bo B"), csns[2])]  # fmt: skip
        results = await submit_all(db, works)
        return [threading.get_ident(), csns, results]

    try:
        loop_thread, csns, results = asyncio.run(main())
        assert isinstance(results[2], StorageError)
        assert [s[0] for s in seen] == [csns[0], csns[1], csns[2]]
        assert all(thread == loop_thread for _, thread, _ in seen)
        assert all(durable for _, _, durable in seen)
        assert context.csns.as_dict() == {1: csns[2]}  # the failed operation's CSN never reached the vector
    finally:
        db.close()


def test_the_map_grows_inside_a_group(tmp_path: Path, schema: Any) -> None:
    """A group that outgrows the map: the group and the running operation are replayed in a bigger map."""
    db = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, maxsize=256 * 1024)
    big = "x" * 3000
    try:
        entries = top(schema)
        works = [lambda txn, e=e: txn.add(e.copy()) for e in entries]
        for i in range(400):
            entry = person(schema, dn(f"u{i}"), f"u{i}", f"User {i}", description=big)
            works.append(lambda txn, e=entry: txn.add(e.copy()))
        results = asyncio.run(submit_all(db, works))
        assert not [r for r in results if isinstance(r, BaseException)]
        assert db.stat()["map_size"] > 256 * 1024
        assert db.writer.largest > 100  # most of the 1.2 MB went in one group: it grew the map mid-group
    finally:
        db.close()
    db = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX)
    try:
        with db.read() as txn:
            assert txn.count() == 402
    finally:
        db.close()


def test_past_maxsize_only_the_operation_that_does_not_fit_fails(tmp_path: Path, schema: Any) -> None:
    db = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, maxsize=512 * 1024, max_mapsize=512 * 1024)
    try:
        entries = top(schema)
        small = person(schema, dn("small"), "small", "Small S")
        huge = person(
            schema, dn("huge"), "huge", "Huge H", description=["y" * 4000 + str(i) for i in range(300)]
        )
        after = person(schema, dn("after"), "after", "After A")
        works = [lambda txn, e=e: txn.add(e.copy()) for e in (*entries, small, huge, after)]
        results = asyncio.run(submit_all(db, works))
        assert isinstance(results[3], StorageError)  # DatabaseFull
        assert not [r for i, r in enumerate(results) if i != 3 and isinstance(r, BaseException)]
        with db.read() as txn:
            assert txn.get(ndn("small")) is not None and txn.get(ndn("after")) is not None
            assert txn.get(ndn("huge")) is None
    finally:
        db.close()


def test_an_operation_arriving_while_a_group_is_applied_joins_it(tmp_path: Path, schema: Any) -> None:
    """A group is open until what came while its operations ran is in it too (up to the size of the recent
    groups): the second write, queued while the first one runs, shares its commit (one fsync); and a write
    queued behind an `alone` one does not join the group before it: the three run in submission order, in two
    groups and the alone one."""
    db = MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, maxsize=64 * 2**20)
    try:
        entries = top(schema)
        asyncio.run(submit_all(db, [lambda txn, e=e: txn.add(e.copy()) for e in entries]))
        db.writer._recent.append(4)  # recent groups of four writers: a group of one waits for more
        groups = db.writer.groups
        running, queued = threading.Event(), threading.Event()
        order: list[str] = []

        def first(txn):
            running.set()
            assert queued.wait(10), "the second write was never queued"
            order.append("first")
            return txn.add(person(schema, dn("first"), "first", "First One"))

        def second(txn):
            order.append("second")
            return txn.add(person(schema, dn("second"), "second", "Second One"))

        async def scenario() -> list:
            one = db.writer.submit(first)
            for _ in range(1000):  # bounded: the writer thread takes it at once
                if running.is_set():
                    break
                await asyncio.sleep(0.01)
            two = db.writer.submit(second)
            queued.set()
            return await asyncio.gather(one, two)

        assert all(isinstance(result, int) for result in asyncio.run(scenario()))
        assert order == ["first", "second"]
        assert db.writer.groups == groups + 1, "the second write did not join the open group"

        running.clear()
        queued.clear()
        order.clear()

        def alone(txn):
            assert txn is None
            order.append("alone")

        async def with_alone() -> None:
            one = db.writer.submit(lambda txn: (running.set(), queued.wait(10), order.append("third"))[-1])
            for _ in range(1000):
                if running.is_set():
                    break
                await asyncio.sleep(0.01)
            between = db.writer.submit(alone, alone=True)
            after = db.writer.submit(lambda txn: order.append("fourth"))
            queued.set()
            await asyncio.gather(one, between, after)

        groups = db.writer.groups
        asyncio.run(with_alone())
        assert order == ["third", "alone", "fourth"]
        assert db.writer.groups == groups + 2
    finally:
        db.close()
