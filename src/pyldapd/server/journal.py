"""What follows a write when several worker processes share a database (issue 13, docs/architecture.md).

Every worker serves persistent sync searches, keeps a session log and a contextCSN vector in memory, and runs
overlays after each commit (syncprov, glue, accesslog's move). With one process these follow the commits
directly. With several, each worker must also see what the others committed, in the order they committed it:

- **CSNs**: each write transaction starts (under LMDB's write lock) by reading the contextCSN vector stored in
  the database, and this server's CSN generator observes this server's CSN in it; the transaction's working
  vector starts from the stored one too. So CSNs are unique and increasing in commit order across workers.
- **The journal**: each change is appended, in its own transaction, to the environment's `journal`
  sub-database (backends/mdb.py) under the next sequence number; the commit is announced on the bus
  (`("journal", suffix + seq)`). Every worker, the writing one included, publishes changes only by reading
  the journal in sequence order (`Journal.catch_up`), then adopts the stored vector of that same snapshot.
  A persistent search in any worker thus sees every commit in commit order. The journal keeps its last `keep`
  records, and no more than `keep_bytes` of them; a worker that finds records it has not published trimmed
  away ends its persistent searches with e-syncRefreshRequired (the consumers refresh) and starts a new
  session log, from the vector that holds the lost changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from pyldapd.model.csn import CSNSet
from pyldapd.replication.state import CONTEXT_CSN_KEY, Change, decode_change, encode_change

if TYPE_CHECKING:
    from pyldapd.backends.mdb import WriteTxn
    from pyldapd.server.directory import Backend, Directory
    from pyldapd.server.workers import WorkerBus

log = logging.getLogger(__name__)

JOURNAL_KEEP = 20_000  # records kept: how far behind the others a busy worker may fall before it resyncs
# ... and octets: a change record holds the entry before and after, so 20,000 changes of a large group would
# fill the database; the journal keeps at most this much (an eighth of a set `maxsize`, if less)
JOURNAL_KEEP_BYTES = 64 * 2**20
JOURNAL_KIND = "journal"
SERVED_KIND = "served"
RESYNC_KIND = "resync"
PSEARCH_KIND = "psearch"
CATCH_UP_EVERY = 1.0  # seconds
CATCH_UP_BATCH = 256  # journal records published in one go on the loop (the rest right after others' turn)


# test-only: a worker waits here, before it follows the journal, until this file exists (tests of what other
# workers commit meanwhile); read once, at import
_TEST_GATE = os.environ.get("PYLDAPD_TEST_JOURNAL_GATE", "")


def _wait_at_gate(path: str, timeout: float = 60.0) -> None:
    if os.path.exists(path):
        return
    waiting = path + ".waiting"
    open(waiting, "w").close()
    deadline = time.monotonic() + timeout
    try:
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.unlink(waiting)


class Journal:
    """The change journal of one database, in one worker."""

    def __init__(
        self, directory: Directory, backend: Backend, bus: WorkerBus, keep: int = JOURNAL_KEEP
    ) -> None:
        self.directory = directory
        self.backend = backend
        self.bus = bus
        self.keep = keep
        most = backend.db.max_mapsize  # a set `maxsize` (attach: only LMDB databases have a journal)
        self.keep_bytes = min(JOURNAL_KEEP_BYTES, most // 8) if most else JOURNAL_KEEP_BYTES
        self.key = backend.suffix_ndn.encode()
        with backend.db.read() as txn:
            self.published_up_to = txn.journal_last()  # what is older is in the data already
            stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
        # ... and in the vector, from the same snapshot: the vector read when the database opened may predate
        # changes other workers committed since (a worker restarting while they write), which this worker will
        # never publish; a session log begun from that older vector would claim to cover them
        # (at start, syncprov's session log is made after this, from this vector: server/app.py Server.start)
        backend.context.adopt(stored)
        self.announced = 0
        self.told = 0  # the sequence number last broadcast
        self.vector_told_pending = False
        self.catching_up = False
        self.again = False
        self.lost = 0  # times records were trimmed before this worker read them
        # this worker's own committed changes not published yet, by record: as they were, not decoded again
        self.own: dict[int, Change] = {}
        backend.context.shared = True
        backend.context.on_install = self.vector_moved
        backend.db.on_begin.append(self.write_begins)

    def close(self) -> None:
        try:
            self.backend.db.on_begin.remove(self.write_begins)
        except ValueError:
            pass

    # -- in the write transaction (writer thread) ---------------------------------------------------------

    def write_begins(self, txn: WriteTxn) -> None:
        """A write transaction began: no CSN it issues may be at or below one another worker committed."""
        stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
        if stored:
            own = CSNSet.from_values(stored.split(b";")).as_dict().get(self.directory.server_id)
            if own is not None:
                self.directory.csn.observe(own)

    def append(self, change: Change, txn: WriteTxn | None) -> None:
        """Record a change in the journal, in the transaction that makes it (when the change is committed
        already, as a few in-loop writes publish theirs after the commit, in a transaction of its own)."""
        record = encode_change(change, self.bus.index)
        if txn is None:
            with self.backend.db.write() as own:
                self.append(change, own)
            return
        seq = txn.journal_append(record, self.keep, self.keep_bytes)
        txn.on_commit(lambda: self.committed(seq, change))

    # -- on the event loop --------------------------------------------------------------------------------

    def committed(self, seq: int, change: Change) -> None:
        """This worker's commit of record `seq` (of `change`): tell the others (one message for a whole group),
        publish."""
        if seq > self.published_up_to:  # published from here, not decoded back
            self.own[seq] = change
        if seq > self.announced:
            self.announced = seq
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on a loop (tests): at once
                self.announce()
            else:  # once the group's other effects have run: one message for the group
                loop.call_soon(self.announce)
        if seq > self.published_up_to:  # else published already (with an earlier operation of its group)
            self.catch_up()

    def vector_moved(self) -> None:
        """A commit of this worker moved the contextCSN vector (its effects on the loop). Most such commits
        carry journal records, announced by `committed`; one that moved the vector alone (a consumer merging
        its provider's cookie, or keeping the cookie of an older change it skipped) is announced too, so that
        the other workers adopt the stored vector at once (their cn=Monitor, cookies, syncrepl state) rather
        than at their next look at the journal."""
        if self.vector_told_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop (tools, unit tests): the next announcement tells it
            return
        self.vector_told_pending = True
        # after the commit's other effects: a journal record of the same commit is announced by then
        loop.call_soon(self.tell_vector)

    def tell_vector(self) -> None:
        self.vector_told_pending = False
        if self.announced == self.told:  # no journal record of this worker on its way: say it alone
            self.announce(always=True)

    def announce(self, always: bool = False) -> None:
        """Tell the others of this worker's commits. Unless `always`, only where the changes are taken (an
        overlay, a glue superior): the workers share one configuration, so where nothing here takes them
        nothing there does, and the others adopt the vector at their next look (a search of the suffix, a
        sync search, the tick): a message per commit group, relayed by the supervisor and waking every worker,
        cost more than the writes' grouping saved with two workers."""
        self.told = self.announced
        if always or self.backend.listens():
            self.bus.broadcast(JOURNAL_KIND, self.key + b"\0" + str(self.announced).encode())

    def catch_up(self) -> None:
        """Publish every journal record not published yet, in sequence order, then adopt the stored vector
        of the snapshot they were read from."""
        if getattr(self.backend.db, "_closed", False):
            return
        if self.catching_up:  # a change published below wrote again (a checkpoint): the loop goes on
            self.again = True
            return
        self.catching_up = True
        try:
            while True:
                self.again = False
                if not self.backend.listens():
                    self.skip_to_last()
                    return
                with self.backend.db.read() as txn:
                    records = txn.journal_after(self.published_up_to, CATCH_UP_BATCH)
                    stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
                if records and records[0][0] != self.published_up_to + 1:
                    # the vector first: it holds the lost changes, so the session log begun anew does not
                    # claim to cover a cookie from before them
                    self.backend.context.adopt(stored)
                    self.gap(records[0][0] - self.published_up_to - 1)
                own = self.own
                for seq, record in records:
                    self.published_up_to = seq
                    change = own.pop(seq, None) if own else None
                    if change is None:
                        change, _worker = decode_change(record)
                    if change.in_csn_order:
                        self.backend.context.published(change.csn)
                    try:
                        self.backend.published(change)
                    except Exception:  # noqa: BLE001 (the change is durable: publish the next ones)
                        log.exception("publishing journal record %d of %s", seq, self.backend.config.suffix)
                self.backend.context.adopt(stored)
                if own:  # those trimmed before they were read (a gap) are never published from here
                    for seq in [seq for seq in own if seq <= self.published_up_to]:
                        del own[seq]
                if len(records) == CATCH_UP_BATCH:  # more: after what else waits on the loop
                    try:
                        asyncio.get_running_loop().call_soon(self.catch_up)
                    except RuntimeError:
                        continue  # not on a loop (tests): at once
                    return
                if not self.again:
                    return
        finally:
            self.catching_up = False

    def skip_to_last(self) -> None:
        """Nothing here takes the changes (no overlay, no glue superior: `Backend.published` would do nothing
        with them), so none is read or decoded: only the vector of the snapshot is adopted. (Decoding every
        other worker's change cost a worker about a quarter of a CPU under a thousand writes a second.) Should
        an overlay come (cn=config), it takes what is committed from then on."""
        with self.backend.db.read() as txn:
            last = txn.journal_last()
            stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
        self.published_up_to = max(self.published_up_to, last)
        self.own.clear()
        self.backend.context.adopt(stored)

    def gap(self, missing: int) -> None:
        """Records this worker never published were trimmed: its persistent searches cannot go on."""
        self.lost += 1
        self.directory.log.error(
            f"journal of {self.backend.config.suffix}: {missing} changes trimmed before this worker read them; "
            "its persistent searches end with e-syncRefreshRequired"
        )
        provider = self.backend.provider
        if provider is not None:
            provider.changes_lost()


def share(directory: Directory, bus: WorkerBus) -> None:
    """Several workers serve this directory: journal every database's changes and follow the others'."""
    if directory.bus is bus:
        return
    if _TEST_GATE:
        _wait_at_gate(_TEST_GATE)
    directory.bus = bus
    for backend in directory.backends:
        attach(directory, backend)
    bus.subscribe(JOURNAL_KIND, lambda sender, payload: heard(directory, payload))
    bus.subscribe(SERVED_KIND, lambda sender, payload: served_elsewhere(directory, payload))
    bus.subscribe(PSEARCH_KIND, lambda sender, payload: psearch_elsewhere(directory, sender, payload))
    bus.broadcast(PSEARCH_KIND, b"")  # (re)started: whatever an earlier life of this worker served is gone
    # messages to this worker were dropped (it did not read them in time): the journal has what they said
    bus.subscribe(RESYNC_KIND, lambda sender, payload: catch_up_all(directory))
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return

    # the bus is the fast path; a look at the journals every second bounds what a lost message can delay
    def tick() -> None:
        if directory.bus is bus:
            catch_up_all(directory)
            loop.call_later(CATCH_UP_EVERY, tick)

    loop.call_later(CATCH_UP_EVERY, tick)


def catch_up_all(directory: Directory) -> None:
    for backend in directory.backends:
        if backend.journal is not None:
            try:
                backend.journal.catch_up()
            except Exception:  # noqa: BLE001 (a database closing: the next look tries again)
                log.exception("journal of %s", backend.config.suffix)


def attach(directory: Directory, backend: Backend) -> None:
    from pyldapd.backends.mdb import MdbDatabase

    if directory.bus is None or directory.bus.count < 2 or backend.journal is not None:
        return
    if isinstance(backend.db, MdbDatabase):  # back-ldif's files have no journal (one worker writes them)
        backend.journal = Journal(directory, backend, directory.bus)


def heard(directory: Directory, payload: bytes) -> None:
    """Another worker committed into a database: publish what it journaled."""
    key, _, _seq = payload.partition(b"\0")
    for backend in directory.backends:
        if backend.journal is not None and backend.journal.key == key:
            backend.journal.catch_up()


def tell_served(
    directory: Directory, backend: Backend, consumer_sid: int, sent_at: float, covered: str
) -> None:
    """syncprov served a refresh to a consumer: worker 0's consumer must know it (replication/consumer.py)."""
    bus = directory.bus
    if bus is not None and bus.count > 1:
        fields = (backend.suffix_ndn, str(consumer_sid), repr(sent_at), covered)
        bus.broadcast(SERVED_KIND, "\0".join(fields).encode())


def served_elsewhere(directory: Directory, payload: bytes) -> None:
    try:
        suffix, sid, sent_at, covered = payload.decode().split("\0")
        consumer_sid, when = int(sid), float(sent_at)
    except ValueError:
        log.error("served: bad message %r", payload[:100])
        return
    for backend in directory.backends:
        if backend.suffix_ndn == suffix and backend.provider is not None:
            backend.provider.note_served(consumer_sid, when, covered)


def tell_psearch(
    directory: Directory, backend: Backend, consumer_sid: int, registered_at: float, live: bool
) -> None:
    """A consumer's persistent search began or ended here: worker 0's consumer reads them all (consumer.py)."""
    bus = directory.bus
    if bus is not None and bus.count > 1:
        fields = (backend.suffix_ndn, str(consumer_sid), repr(registered_at), "1" if live else "0")
        bus.broadcast(PSEARCH_KIND, "\0".join(fields).encode())


def psearch_elsewhere(directory: Directory, sender: int, payload: bytes) -> None:
    if not payload:  # the sender started again: none of its searches is left
        for backend in directory.backends:
            if backend.provider is not None:
                backend.provider.remote_psearches = {
                    k for k in backend.provider.remote_psearches if k[0] != sender
                }
        return
    try:
        suffix, sid, registered_at, live = payload.decode().split("\0")
        key = (sender, int(sid), float(registered_at))
    except ValueError:
        log.error("psearch: bad message %r", payload[:100])
        return
    for backend in directory.backends:
        if backend.suffix_ndn == suffix and backend.provider is not None:
            if live == "1":
                backend.provider.remote_psearches.add(key)
            else:
                backend.provider.remote_psearches.discard(key)
