"""Issue 14 at the storage level: in-memory replication state moves only when its LMDB transaction commits.

Real LMDB databases; commits fail for real (the map at its maximum size) or through the test-only fault hook
PYLDAPD_FAULT_COMMIT, in a child process since the hook is read when backends/mdb.py is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyldapd.backends.base import StorageError
from pyldapd.backends.mdb import MdbDatabase
from pyldapd.model.csn import CSNGenerator
from pyldapd.replication.state import CONTEXT_CSN_KEY, ContextState
from tests.unit.test_mdb import SUFFIX, make_entry, person
from tests.unit.test_mdb import schema as schema  # noqa: F401  (the module-scoped fixture)


def stored(db: MdbDatabase) -> bytes | None:
    with db.read() as r:
        return r.get_raw_metadata(CONTEXT_CSN_KEY)


def test_context_moves_when_the_transaction_commits(tmp_path: Path, schema: Any) -> None:
    csns = CSNGenerator(1)
    first, second, older = csns.next(), csns.next(), CSNGenerator(2).next()
    state = ContextState()
    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX) as db:
        with db.write() as w:
            assert state.advance(w, first)
            assert state.advance(w, second)  # the transaction's own copy accumulates
            assert state.csns.as_dict() == {}  # nothing claimed before the commit
        assert state.csns.as_dict() == {1: second}
        assert stored(db) == second.encode()
        with db.write() as w:
            assert not state.advance(w, first)  # older than what is held: the vector stays, marked dirty
            assert not state.dirty
        assert state.dirty
        with db.write() as w:
            assert state.merge(w, {2: older})
        assert state.csns.as_dict() == {1: second, 2: older}


def test_context_stays_when_the_transaction_aborts(tmp_path: Path, schema: Any) -> None:
    state = ContextState()
    effects: list[str] = []
    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX) as db:
        with pytest.raises(RuntimeError), db.write() as w:
            state.advance(w, CSNGenerator(1).next())
            w.on_commit(lambda: effects.append("ran"))
            raise RuntimeError("the operation failed")
        assert state.csns.as_dict() == {} and not state.dirty and effects == []
        assert stored(db) is None


def test_context_stays_when_the_map_is_full(tmp_path: Path, schema: Any) -> None:
    """MDB_MAP_FULL at maxsize takes the same path as a failed commit: nothing stored, nothing moved."""
    state = ContextState()
    csns = CSNGenerator(1)
    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX, maxsize=2**20, max_mapsize=2**20) as db:
        with db.write() as w:
            w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
            state.advance(w, csns.next())
        held = state.csns.as_dict()
        blob = "x" * 30_000
        inside = False
        with pytest.raises(StorageError):
            for chunk in range(40):  # 300 KB a chunk: one of them overflows the 1 MB map
                inside = False
                with db.write() as w:
                    state.advance(w, csns.next())
                    inside = True
                    for i in range(chunk * 10, (chunk + 1) * 10):
                        w.add(person(schema, f"uid=u{i},{SUFFIX}", f"u{i}", f"Person {i}", description=blob))
                held = state.csns.as_dict()  # this chunk committed
        assert inside  # the map filled up inside a transaction that had advanced the vector
        assert state.csns.as_dict() == held
        assert stored(db) == held[1].encode()


def test_failed_commit_moves_nothing(tmp_path: Path) -> None:
    """The second write commit fails (PYLDAPD_FAULT_COMMIT=2): CommitFailed, vector and effects untouched, the
    entry absent, the cache not serving it, and the next commit fine."""
    script = textwrap.dedent(
        f"""
        from pyldapd.backends.mdb import CommitFailed, MdbDatabase
        from pyldapd.model.csn import CSNGenerator
        from pyldapd.replication.state import ContextState
        from tests.unit.test_mdb import SUFFIX, _schema, make_entry, person

        schema = _schema()
        state, csns, effects = ContextState(), CSNGenerator(1), []
        with MdbDatabase({str(tmp_path / "db")!r}, schema, SUFFIX) as db:
            with db.write() as w:
                w.add(make_entry(schema, SUFFIX, objectClass=["top", "domain"], dc="example"))
                state.advance(w, csns.next())
            held = state.csns.as_dict()
            try:
                with db.write() as w:
                    w.add(person(schema, "uid=a," + SUFFIX, "a", "A A"))
                    state.advance(w, csns.next())
                    w.on_commit(lambda: effects.append("ran"))
            except CommitFailed as exc:
                print("failed:", exc)
            assert state.csns.as_dict() == held and effects == [], (state.csns, effects)
            with db.read() as r:
                assert r.count() == 1
            with db.write() as w:
                w.add(person(schema, "uid=b," + SUFFIX, "b", "B B"))
                last = csns.next()
                state.advance(w, last)
            assert state.csns.as_dict() == {{1: last}}
            with db.read() as r:
                assert r.count() == 2
        print("ok")
        """
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=root,
                            env=dict(os.environ, PYLDAPD_FAULT_COMMIT="2"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "failed: mdb_txn_commit: Input/output error" in result.stdout
    assert result.stdout.rstrip().endswith("ok")


def test_shared_context_latest_holds_other_workers_commits(tmp_path: Path, schema: Any) -> None:
    """Two workers' vectors of one database (server/journal.py): once a worker's own commit is installed, what
    another worker committed later and this one adopted is in `latest` (the consumer's cookie and its "is this
    change news" test read it: a stale vector made node 1 take its own delete, echoed back, for a conflict)."""
    mine, other = ContextState(), ContextState()
    mine.shared = other.shared = True
    csns = CSNGenerator(1)
    first, second = csns.next(), csns.next()
    with MdbDatabase(str(tmp_path / "db"), schema, SUFFIX) as db:
        with db.write() as w:
            mine.advance(w, first)
        assert mine.latest().as_dict() == {1: first}
        with db.write() as w:  # the other worker's commit, journaled and adopted by this one
            other.advance(w, second)
        mine.adopt(stored(db))
        assert mine.csns.as_dict() == {1: second}
        assert mine.latest().as_dict() == {1: second}
