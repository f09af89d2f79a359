"""Group commit: one writer thread per LMDB environment, so that commits never block the event loop and writes
that arrive together share one fsync.

The event loop submits a write operation (a function of a `WriteTxn`) and awaits a future. The writer thread
takes every operation queued so far, runs each in a nested transaction of one group transaction (a failing
operation aborts only itself; later operations see the earlier ones, so order and results are those of running
them one by one), commits the group once (one fsync), and only then hands each operation's result, with its
on-commit effects, back to the loop in submission order. The effects (contextCSN vector, session log, persistent
searches, counters) therefore run on the loop only, in commit order, and only after the data is durable. When
the group commit fails, every operation of the group gets the error and no effect runs.

The loop never waits for this thread, and this thread never waits for the loop, so neither can deadlock the
other. Work that must not share a group (a syncprov checkpoint, whose failed commit must cost no client write; an
index rebuild, which opens transactions of its own) is submitted `alone`: the thread runs it between two groups,
in submission order. Other processes' writers (the tools) take the same LMDB write lock and wait their turn.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import StorageError
from pyldapd.backends.mdb import CommitFailed

if TYPE_CHECKING:
    from pyldapd.backends.mdb import MdbDatabase, WriteTxn

log = logging.getLogger(__name__)

MAX_GROUP = 512  # operations in one group: bounds how long the first of them waits for its answer
LINGER_MAX = 0.002  # the longest a group waits for more operations (see GroupWriter._more)


RUNNING: set[GroupWriter] = set()  # this process's writer threads


def writing() -> bool:
    """Whether a writer thread of this process holds a group it has not handed back: the event loop then lets go
    of the GIL between the requests it serves (server/connection.py), so that the writer, which needs it a few
    times per group, takes it at once rather than after the interpreter's switch interval each time."""
    try:
        for writer in RUNNING:
            if writer.in_hand:
                return True
    except RuntimeError:  # a database opened or closed by another thread meanwhile: ask again later
        return False
    return False


class Chain:
    """Operations that depend on each other (a syncrepl consumer's stream: a cookie stored after entries): once
    one fails, or the commit of its group fails, the later ones fail without running, so nothing after a lost
    change is stored."""

    def __init__(self) -> None:
        self.broken: BaseException | None = None


class _Op:
    __slots__ = ("work", "future", "loop", "ok", "value", "effects", "failed_text", "chain", "alone")

    def __init__(self, work: Callable[[WriteTxn], Any], future: asyncio.Future, loop: asyncio.AbstractEventLoop,
                 chain: Chain | None = None, alone: bool = False) -> None:  # fmt: skip
        self.work = work
        self.future = future
        self.loop = loop
        self.chain = chain
        self.alone = alone
        self.ok = False
        self.value: Any = None
        self.effects: list[Callable[[], None]] = []
        self.failed_text = "commit failed"


class GroupWriter:
    """The writer thread of one `MdbDatabase`."""

    def __init__(self, db: MdbDatabase, max_group: int = MAX_GROUP) -> None:
        self.db = db
        self.max_group = max_group
        self._queue: deque[_Op] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        # figures (benchmarks, the log at stop): committed groups, the operations they stored, the operations
        # that stored nothing (an LDAP error, a failed commit), the most operations taken in one group
        self.groups = 0
        self.operations = 0
        self.refused = 0
        self.largest = 0
        self._recent: deque[int] = deque(maxlen=16)  # sizes of the last groups taken
        self._commit_seconds = 0.0
        self.in_hand = False  # a group taken and not yet handed back (`writing`)
        RUNNING.add(self)
        self._thread = threading.Thread(target=self._run, name=f"pyldapd writer {db.suffix}", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[WriteTxn], Any], chain: Chain | None = None, *,
               alone: bool = False) -> asyncio.Future:  # fmt: skip
        """Queue work(txn) (called on the writer thread, inside its own nested transaction); the future, on the
        calling loop, gets work's return value once the group holding it is durable, or its exception.

        `alone`: work(None) runs on the writer thread between two groups, in submission order, outside any
        transaction: it writes in transactions of its own (a syncprov checkpoint, whose failed commit must cost
        no client write; maintenance such as a reindex) and publishes nothing."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._wake:
            if self._stopping:
                raise StorageError("the database is closing")
            self._queue.append(_Op(work, future, loop, chain, alone))
            self._wake.notify()
        return future

    def stop(self) -> None:
        """Commit what is queued, then end the thread (database close)."""
        RUNNING.discard(self)
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- the writer thread --

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    return
                if self._queue[0].alone:
                    batch = [self._queue.popleft()]
                else:
                    batch = self._take([])
            self.in_hand = True
            try:
                if batch[0].alone:
                    self._run_alone(batch[0])
                    continue
                self._commit_group(batch)
            except BaseException as exc:  # noqa: BLE001 (the thread must live: every operation gets an answer)
                log.exception("writer of %s: group failed", self.db.suffix)
                for op in batch:
                    op.ok, op.value, op.effects = False, exc, []
                    if op.chain is not None and op.chain.broken is None:
                        op.chain.broken = exc
                self._deliver(batch)
            finally:
                self.in_hand = False

    def _run_alone(self, op: _Op) -> None:
        try:
            op.value, op.ok = op.work(None), True
        except BaseException as exc:  # noqa: BLE001 (its caller gets the failure)
            op.value, op.ok = exc, False
        self._deliver([op])

    def _take(self, batch: list[_Op]) -> list[_Op]:
        """Move what is queued into `batch`, up to the group's bound and short of an `alone` operation (called
        with the lock held)."""
        queue = self._queue
        while queue and len(batch) < self.max_group and not queue[0].alone:
            batch.append(queue.popleft())
        return batch

    def _more(self, batch: list[_Op], budget: list[float]) -> int:
        """Operations added to the open group `batch` (0: commit it now).

        With N clients writing one operation at a time, groups otherwise settle at about N/2: half the clients
        wait for their answer while the other half's group commits. So a group is held open until it reaches the
        size of the recent ones, waiting in all at most half a commit's time (never more than LINGER_MAX, and
        not at all for a lone client, whose recent groups are of 1), so that each fsync carries about N writes.
        The operations that came first are applied meanwhile, while their clients' neighbours are still being
        answered and sending their next requests, so the wait costs the group little. A group grows no larger
        than the recent ones (or than what was queued when it began): a stream of writes does not keep one open,
        and LMDB's write lock, which the open group holds, goes to another process's writer (a worker's) at
        the usual pace. `budget`: [seconds of waiting left]."""
        target = max(self._recent, default=1)
        with self._wake:
            while True:
                if self._stopping or len(batch) >= target or (self._queue and self._queue[0].alone):
                    return 0
                before = len(batch)
                if self._queue:
                    self._take(batch)
                    return len(batch) - before
                if budget[0] <= 0:
                    return 0
                started = time.monotonic()
                self.in_hand = False  # waiting, it needs no GIL: the loop need not let go of it (`writing`)
                try:
                    self._wake.wait(budget[0])
                finally:
                    self.in_hand = True
                budget[0] -= time.monotonic() - started

    def _commit_group(self, batch: list[_Op]) -> None:
        db = self.db
        local = db._local
        committed = 0
        budget = [min(self._commit_seconds / 2, LINGER_MAX)]
        try:
            with db.write() as group:
                done = 0
                while done < len(batch) or self._more(batch, budget):
                    op = batch[done]
                    done += 1
                    if op.chain is not None and op.chain.broken is not None:
                        op.ok, op.value = (
                            False,
                            StorageError(f"not applied after a failure: {op.chain.broken}"),
                        )
                        continue
                    try:
                        nested = group.child()
                    except BaseException as exc:  # noqa: BLE001
                        op.ok, op.value = False, exc
                        if op.chain is not None:
                            op.chain.broken = exc
                        continue
                    local.txn = nested
                    try:
                        op.value = op.work(nested)
                        op.failed_text = nested.failed_text
                        op.effects = nested.commit_child()
                        op.ok = True
                        committed += 1
                    except BaseException as exc:  # noqa: BLE001 (an LDAP result or a failure of this op alone)
                        nested.abort_child()
                        op.ok, op.value = False, exc
                        if op.chain is not None:
                            op.chain.broken = exc
                    finally:
                        local.txn = None
                self._recent.append(len(batch))
                started = time.monotonic()  # the commit (and its fsync) is the with block's exit
            # an exponential average of the commit's (fsync's) time: how long lingering may last
            self._commit_seconds += (time.monotonic() - started - self._commit_seconds) / 8
        except StorageError as exc:  # the group commit failed: nothing of it is stored, nobody's effects run
            for op in batch:
                if op.ok:
                    failure: StorageError = exc
                    if isinstance(exc, CommitFailed):  # answered 80 with the operation's own back-mdb text
                        failure = CommitFailed(str(exc), op.failed_text)
                    elif getattr(exc, "result_text", ""):  # a backend's own text (back-ldif's file errors)
                        failure = CommitFailed(str(exc), exc.result_text)  # type: ignore[attr-defined]
                    op.ok, op.value, op.effects = False, failure, []
                if op.chain is not None and op.chain.broken is None:
                    op.chain.broken = exc
            committed = 0
        if committed:
            self.groups += 1
            self.operations += committed
        self.refused += len(batch) - committed
        self.largest = max(self.largest, len(batch))
        self._deliver(batch)

    def _deliver(self, batch: list[_Op]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
        for op in batch:
            by_loop.setdefault(op.loop, []).append(op)
        for loop, ops in by_loop.items():
            try:
                loop.call_soon_threadsafe(_answer, ops, self.db)
            except RuntimeError:  # the loop is closed (server stopping): nobody waits for the answers
                pass


def _answer(ops: list[_Op], db: MdbDatabase) -> None:
    """On the loop, in commit order: each operation's effects, then its answer. Once the database is closed
    (a stop with writes in flight) the effects are skipped: their state is in the database already."""
    for op in ops:
        if op.ok:
            for effect in op.effects if not db._closed else ():
                try:
                    effect()
                except Exception:  # noqa: BLE001 (the write is durable: its client gets its answer)
                    log.exception("after-commit effect failed")
            if not op.future.done():
                op.future.set_result(op.value)
        elif not op.future.done():
            op.future.set_exception(op.value)
