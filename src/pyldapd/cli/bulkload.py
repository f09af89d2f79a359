"""`pyldapd add` (slapadd): an LDIF file into a stopped server's LMDB database, as fast as Python allows.

How the work is split
---------------------
The LDIF is cut at blank lines into chunks of about `CHUNK_BYTES`. Each chunk gets a range of entry ids up front
(one per possible record: blank-line runs + 1), so everything but the writes can happen in any process:
parsing the records, checking each entry against the schema, adding the operational attributes slapadd adds,
encoding the id2entry record and computing the index keys, sorted per index (`EntryPreparer`). The writer, this
process, takes chunk results in LDIF order, one write transaction per chunk: it resolves parents, stores the
records and writes the chunk's index keys in one sorted pass per index (`Writer`). A profile of the serial load
showed the preparing at three quarters of the time, so with `tool-threads` worker processes (one per CPU unless
the config says otherwise, as slapd's `tool-threads`) the writer is what bounds the rate.

What slapadd users rely on is kept: errors are reported in LDIF order with their line numbers; without -c the
load stops at the first one and what came before it is stored; a child may come before its parent (it waits for
it, and its index keys are computed when it is stored); entries whose parent never comes are reported at the end.
Ids of records that were not stored (errors, comments) are gaps, which nothing depends on.

A search over a whole database returns its entries in id order (as back-mdb), so ids keep slapadd's: each record
gets `HOLE_ROOM` ids, its own the last of them. When a record's parent is missing, back-mdb's slapadd gives the
missing ancestors the next ids (its "holes", topmost first) and the record the one after; the ancestor, when it
comes, is stored under its hole. Here the missing ancestors take the ids just below the record's own, and one
that comes later is stored under that id (its index keys computed then, not in its chunk), so it comes before
the record that named it, as with slapd.

Workers are forked before the database is opened (an LMDB environment must not cross a fork) and inherit the
LDIF (a mapped file, or the bytes read from standard input), so only offsets go to them; at most two chunks per worker are in flight, which bounds memory. Each
worker stamps CSNs in its own lane of the counter field (`CSNGenerator` lanes), so no two entries share one.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from pyldapd.backends.base import AlreadyExists, NoSuchEntry
from pyldapd.backends.mdb import EntryCodec, IndexBatch
from pyldapd.model import ordered
from pyldapd.model.csn import CSNGenerator, CSNSet, parse_csn
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, parent_dn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.ldif import LDIFChange, LDIFError, parse_ldif
from pyldapd.model.schema import Schema
from pyldapd.server.entries import (
    check_entry,
    entry_from_attributes,
    equality_keys,
    object_classes,
    resolve_type,
    stored_description,
    structural_class,
)
from pyldapd.server.errors import LDAPError

CHUNK_BYTES = 256 * 1024  # LDIF bytes per chunk: about 800 of the benchmark's entries
# ids per record: its own, and below it room for 15 missing ancestors (see the module docstring)
HOLE_ROOM = 16
IN_FLIGHT_PER_WORKER = 2

__all__ = ["LoadOptions", "load_ldif", "Progress", "split_chunks"]


@dataclass(frozen=True)
class LoadOptions:
    """What `pyldapd add` was asked to do (the flags that matter once the database is chosen)."""

    number: int  # slapd's database number, for messages
    suffix: str
    rootdn: str
    schema_check: bool = True
    value_check: bool = True  # attribute syntax checks (not with -q, as slapadd)
    write_context: bool = False  # -w
    continue_: bool = False  # -c
    dry_run: bool = False  # -u
    skip_to: int = 0  # -j: records before this line are skipped
    server_id: int = 0  # -S
    workers: int = 1
    verbose: bool = False  # -v: each entry added, as slapadd prints it
    trace: bool = False  # -d: each entry as it is stored
    clock_seq: int = field(default_factory=lambda: random.getrandbits(14))  # of entryUUIDs, + the lane


class Chunk(NamedTuple):
    start: int  # byte offsets in the LDIF
    end: int
    first_line: int
    first_id: int
    ids: int  # ids reserved for its records


class Prepared(NamedTuple):
    """A record ready to store."""

    line: int
    dn: str
    ndn: str
    eid: int
    record: bytes  # `EntryCodec.encode` output (parent id filled in by the writer)
    csn: bytes | None  # its entryCSN, for -w


class Refused(NamedTuple):
    """A record that is not stored; `notes` are printed as they are, `error` after "pyldapd add: "."""

    line: int
    notes: tuple[str, ...]
    error: str
    fatal: bool  # unreadable LDIF: nothing after it is read, even with -c


class ChunkResult(NamedTuple):
    outcomes: list[Prepared | Refused]
    index: dict[str, tuple[list[bytes], list[list[bytes]]]]  # `IndexBatch.sealed()`
    last_line: int
    end_id: int  # ids below it are reserved


LDIFData = bytes | mmap.mmap  # a file is mapped, not read: workers share its pages and memory stays small


def count_lines(data: LDIFData) -> int:
    step = 1 << 24
    return sum(data[i : i + step].count(b"\n") for i in range(0, len(data), step))


def split_chunks(data: LDIFData, first_id: int, size: int = CHUNK_BYTES) -> list[Chunk]:
    """Cut the LDIF at blank lines (always record boundaries) after every `size` bytes."""
    chunks: list[Chunk] = []
    start, line, next_id = 0, 1, first_id
    while start < len(data):
        lf = data.find(b"\n\n", start + size)
        crlf = data.find(b"\n\r\n", start + size, len(data) if lf < 0 else lf)  # never past the LF cut
        cut = crlf if crlf >= 0 else lf
        end = cut + 1 if cut >= 0 else len(data)
        text = data[start:end]
        ids = (text.count(b"\n\n") + text.count(b"\n\r\n") + 1) * HOLE_ROOM
        chunks.append(Chunk(start, end, line, next_id, ids))
        line += text.count(b"\n")
        next_id += ids
        start = end
    return chunks


class EntryPreparer:
    """Turns the records of a chunk into stored-ready records and index keys, as slapadd checks them."""

    def __init__(
        self, schema: Schema, codec: EntryCodec, options: LoadOptions, *, lane: int = 0, lanes: int = 1
    ) -> None:
        self.schema = schema
        self.codec = codec
        self.options = options
        self.suffix_ndn = normalize_dn(options.suffix, schema)
        self.who = options.rootdn.encode()
        self.csn = CSNGenerator(options.server_id, lane=lane, lanes=lanes)
        self.uuids = TimeUUIDs(options.clock_seq + lane)
        # attribute description -> (Entry.attrs key, the name it is stored under), for defined types
        self._keys: dict[str, tuple[str, str]] = {}

    def prepare_chunk(self, data: LDIFData, chunk: Chunk) -> ChunkResult:
        options = self.options
        outcomes: list[Prepared | Refused] = []
        index = IndexBatch(self.codec)
        eid = chunk.first_id + HOLE_ROOM - 1  # the ids below a record's are for its missing ancestors
        text = data[chunk.start : chunk.end]
        records = parse_ldif(text, first_line=chunk.first_line, header=chunk.start == 0)
        try:
            for record in records:
                if record.line < options.skip_to:
                    continue
                outcome, entry = self.prepare(record, eid)
                outcomes.append(outcome)
                if entry is not None:
                    index.add(entry, eid.to_bytes(8, "big"))
                elif not options.continue_:
                    break  # the writer stops here: preparing more is wasted
                eid += HOLE_ROOM
        except LDIFError as exc:
            outcomes.append(Refused(exc.line or 0, (), f"could not parse entry ({exc})", True))
        last_line = chunk.first_line + text.count(b"\n")
        return ChunkResult(outcomes, index.sealed(), last_line, chunk.first_id + chunk.ids)

    def prepare(self, record: Any, eid: int) -> tuple[Prepared | Refused, Entry | None]:
        """The record ready to store and its entry, or why it is refused and None."""
        line = record.line
        if isinstance(record, LDIFChange) and record.changetype != "add":
            text = f'dn="{record.dn}" (line={line}): changetype {record.changetype} is not supported'
            return Refused(line, (), text, False), None
        try:
            ndn = normalize_dn(record.dn, self.schema)
        except DNError:
            return Refused(
                line, (), f'could not parse entry (line={line}): invalid DN "{record.dn}"', False
            ), None
        if ndn != self.suffix_ndn and not is_descendant(ndn, self.suffix_ndn):
            return Refused(
                line,
                (),
                f"line {line}: database #{self.options.number} ({self.options.suffix}) not configured to hold "
                f'"{record.dn}"; no database configured for that naming context',
                False,
            ), None
        try:
            entry = self.build(record.dn, record.attributes)
            if self.options.schema_check:
                structural = check_entry(self.schema, entry)
            else:
                try:
                    structural = structural_class(object_classes(self.schema, entry))
                except LDAPError:
                    structural = None
        except LDAPError as exc:
            return Refused(
                line,
                (f"Entry ({record.dn}): {exc.message}",),
                f'dn="{record.dn}" (line={line}): ({exc.code}) {exc.message}',
                False,
            ), None
        csn = self.stamp(entry, structural)
        record_bytes = self.codec.encode(entry, ndn, bytes(8))[0]
        csn_kept = csn if self.options.write_context else None
        return Prepared(line, record.dn, ndn, eid, record_bytes, csn_kept), entry

    def build(self, dn: str, attributes: Any) -> Entry:
        """The entry as given: types must be defined; syntax checked unless -q. A value given twice is kept once:
        slapd's slapadd takes it (OpenLDAP's own test LDIF has such entries) where an LDAP add refuses it."""
        if self.options.value_check:
            return entry_from_attributes(self.schema, dn, self.distinct(attributes))
        entry = Entry(dn)
        attrs = entry.attrs
        keys = self._keys
        for description, values in attributes:
            known = keys.get(description)
            if known is None:
                at = resolve_type(self.schema, description)  # LDAPError for an undefined type
                known = keys[description] = (
                    self.schema.attribute_key(description),
                    stored_description(at, description),
                )
            key, name = known
            attribute = attrs.get(key)
            if attribute is None:
                attribute = attrs[key] = Attribute(name, list(values))
            else:
                attribute.values.extend(values)
            if len(attribute.values) > 1 and len(set(attribute.values)) != len(attribute.values):
                attribute.values = list(dict.fromkeys(attribute.values))
        return entry

    def distinct(self, attributes: Any) -> list[tuple[str, list[bytes]]]:
        """Each attribute's values without those equal (by its equality rule) to an earlier one."""
        out = []
        for description, values in attributes:
            at = resolve_type(self.schema, description) if len(values) > 1 else None
            if at is not None and ordered.ordered_kind(at) is None:  # (`{0}x` and `{1}x` are two values)
                seen: set[bytes] = set()
                kept = []
                for value, key in zip(values, equality_keys(at, values), strict=True):
                    if key not in seen:
                        seen.add(key)
                        kept.append(value)
                values = kept
            out.append((description, values))
        return out

    def stamp(self, entry: Entry, structural: Any) -> bytes:
        """Add the operational attributes slapadd generates when the LDIF does not carry them; the entryCSN."""
        attrs = entry.attrs
        if structural is not None and "structuralobjectclass" not in attrs:
            attrs["structuralobjectclass"] = Attribute("structuralObjectClass", [structural.name.encode()])
        csn_value = entry.first("entrycsn")
        if csn_value is None:
            csn_value = self.csn.next().encode()
            attrs["entrycsn"] = Attribute("entryCSN", [csn_value])
        else:
            try:
                self.csn.observe(csn_value)
            except ValueError:
                pass
        now = csn_value[:14] + b"Z" if csn_value[:14].isdigit() else time.strftime("%Y%m%d%H%M%SZ").encode()
        if "entryuuid" not in attrs:
            attrs["entryuuid"] = Attribute("entryUUID", [self.uuids.next()])
        if "creatorsname" not in attrs:
            attrs["creatorsname"] = Attribute("creatorsName", [self.who])
        if "createtimestamp" not in attrs:
            attrs["createtimestamp"] = Attribute("createTimestamp", [now])
        if "modifiersname" not in attrs:
            attrs["modifiersname"] = Attribute("modifiersName", [self.who])
        if "modifytimestamp" not in attrs:
            attrs["modifytimestamp"] = Attribute("modifyTimestamp", [now])
        return csn_value


class TimeUUIDs:
    """Version 1 (time-based) UUIDs as slapadd makes for entryUUID, about ten times faster than uuid.uuid1().

    The 60-bit timestamp counts 100 ns steps and never repeats within a process; processes of one load differ
    in their clock sequence (one random base for the load, plus their lane).
    """

    _EPOCH = 0x01B21DD213814000  # 1582-10-15 to 1970-01-01 in 100 ns steps

    def __init__(self, clock_seq: int) -> None:
        clock_seq &= 0x3FFF
        self._tail = f"-{(clock_seq >> 8) | 0x80:02x}{clock_seq & 0xFF:02x}-{uuid.getnode():012x}"
        self._last = 0

    def next(self) -> bytes:
        stamp = max(time.time_ns() // 100 + self._EPOCH, self._last + 1)
        self._last = stamp
        return (
            f"{stamp & 0xFFFFFFFF:08x}-{(stamp >> 32) & 0xFFFF:04x}-{(stamp >> 48) & 0x0FFF | 0x1000:04x}"
            f"{self._tail}"
        ).encode()


class Writer:
    """Stores chunk results in LDIF order (see the module docstring)."""

    def __init__(self, db: Any, options: LoadOptions, err: TextIO) -> None:
        self.db = db
        self.options = options
        self.err = err
        self.suffix_ndn = db.suffix_ndn
        self.errors = 0
        self.added = 0
        self.failed = False  # stopped: an error without -c, or unreadable LDIF
        self.put_failed = False  # an entry the database refused (exists): slapadd exits 1 for it even with -c
        self.waiting: dict[str, list[tuple[int, Prepared]]] = {}  # missing parent -> (record number, child)
        self.waiting_ndns: set[str] = set()  # the records waiting for their parent
        self.holes: dict[str, int] = {}  # missing ancestor -> the id it gets when it comes (module docstring)
        self.records = 0  # LDIF records read so far
        self.dry_added: set[str] = set() if self.suffix_ndn else {""}  # (the root above a suffix "" is there)
        self.max_csns = CSNSet()

    def error(self, text: str) -> None:
        self.errors += 1
        print(f"pyldapd add: {text}", file=self.err)

    def take(self, result: ChunkResult) -> None:
        if self.options.dry_run:
            self._take(None, result)
            return
        with self.db.write() as txn:
            self._take(txn, result)

    def _take(self, txn: Any, result: ChunkResult) -> None:
        unstored: set[bytes] = set()  # ids whose index keys in result.index must not be written
        for position, outcome in enumerate(result.outcomes):
            self.records += 1
            if isinstance(outcome, Refused):
                for note in outcome.notes:
                    print(note, file=self.err)
                self.error(outcome.error)
                if outcome.fatal:
                    self.records -= 1  # unreadable LDIF is no record
                    self.failed = True
            elif not self.store(txn, outcome):
                unstored.add(outcome.eid.to_bytes(8, "big"))
            if self.errors and not self.options.continue_:
                self.failed = True
            if self.failed:
                for later in result.outcomes[position + 1 :]:
                    if isinstance(later, Prepared):
                        unstored.add(later.eid.to_bytes(8, "big"))
                break
        if txn is None:
            return
        txn.reserve_ids(result.end_id)
        txn.add_index_batch(result.index, unstored)

    def store(self, txn: Any, prepared: Prepared) -> bool:
        """Store one record with the index keys of its chunk (True), or store it under its hole with keys of its
        own, report it or make it wait (False)."""
        hole = self.holes.pop(prepared.ndn, None)
        if hole is not None:
            prepared = prepared._replace(eid=hole)
        state = self._store_one(txn, prepared, index=hole is not None)
        if state == "exists":
            self.refuse_existing(prepared)
            return False
        if state == "no parent":
            if hole is None:  # (a hole's ancestors were given theirs with it, as far as there was room)
                self.make_holes(txn, prepared)
            self.waiting.setdefault(parent_dn(prepared.ndn), []).append((self.records, prepared))
            self.waiting_ndns.add(prepared.ndn)
            return False
        stack = [child for _, child in reversed(self.waiting.pop(prepared.ndn, ()))]
        while stack:  # children that came first, stored now with index keys of their own
            child = stack.pop()
            self.waiting_ndns.discard(child.ndn)
            if self._store_one(txn, child, index=True) == "exists":
                self.refuse_existing(child)
                continue
            stack.extend(grandchild for _, grandchild in reversed(self.waiting.pop(child.ndn, ())))
        return hole is None

    def make_holes(self, txn: Any, prepared: Prepared) -> None:
        """The ancestors of a record that are neither stored, nor waiting, nor given an id already take the ids
        just below the record's own, the parent the nearest (slapadd's holes)."""
        ancestor = parent_dn(prepared.ndn)
        for below in range(1, HOLE_ROOM):
            if ancestor in self.holes or ancestor in self.waiting_ndns or self.known(txn, ancestor):
                return
            self.holes[ancestor] = prepared.eid - below
            if ancestor == self.suffix_ndn:
                return
            ancestor = parent_dn(ancestor)

    def known(self, txn: Any, ndn: str) -> bool:
        """The entry is stored (or, with -u, would be)."""
        return ndn in self.dry_added if txn is None else txn.exists(ndn)

    def refuse_existing(self, prepared: Prepared) -> None:
        self.put_failed = True
        self.error(
            f'could not add entry dn="{prepared.dn}" (line={prepared.line}): txn_aborted! MDB_KEYEXIST: '
            "Key/data pair already exists (-30799)"
        )

    def _store_one(self, txn: Any, prepared: Prepared, *, index: bool) -> str:
        """ "stored", or why not: "exists", "no parent" (txn None, -u: against what this load stored)."""
        ndn = prepared.ndn
        if self.options.trace:
            print(f'=> add( {prepared.eid}, "{ndn}" )', file=self.err)
        if txn is None:
            if ndn in self.dry_added:
                return "exists"
            if ndn != self.suffix_ndn and parent_dn(ndn) not in self.dry_added:
                return "no parent"
            self.dry_added.add(ndn)
        else:
            try:
                txn.add_encoded(prepared.eid, ndn, prepared.record, index=index)
            except AlreadyExists:
                return "exists"
            except NoSuchEntry:
                return "no parent"
        self.added += 1
        if self.options.verbose:
            print(
                f'added: "{prepared.dn}"' + ("" if txn is None else f" ({prepared.eid:08x})"), file=self.err
            )
        if prepared.csn is not None:
            try:
                parse_csn(prepared.csn)
                self.max_csns.update_csn(prepared.csn.decode())
            except ValueError:
                pass
        return "stored"

    def report_missing(self) -> None:
        """slapadd's "Error, entries missing!" report (with the number of the first record that named the missing
        parent), then the entries not added (slapadd stores them, unreachable; pyldapd does not)."""
        print("Error, entries missing!", file=self.err)
        for pndn, children in sorted(self.waiting.items(), key=lambda item: item[1][0][0]):
            print(f"  entry {children[0][0]}: {pndn}", file=self.err)
            for _, child in children:
                print(f'  not added: dn="{child.dn}" (line={child.line})', file=self.err)

    def write_context_csn(self) -> None:
        """-w: the suffix entry's contextCSN becomes the greatest entryCSN per server ID (merged with its own)."""
        if not self.max_csns:
            return
        if store_context_csns(self.db, self.suffix_ndn, self.max_csns) is None:
            print("pyldapd add: -w: the suffix entry is not in the database; contextCSN not written",
                  file=self.err)  # fmt: skip


def store_context_csns(db: Any, suffix_ndn: str, csns: CSNSet) -> Entry | None:
    """The suffix entry's contextCSN and the stored vector merged with `csns` (the greatest CSN per server ID
    wins), as slapadd -w and slapmodify -w leave them. The suffix entry as written; None when it is missing
    (nothing written). A database whose suffix is "" has no suffix entry (the root above it is none): the stored
    vector only, and its root (an entry without attributes) is returned."""
    from pyldapd.replication.state import CONTEXT_CSN_KEY

    with db.write() as txn:
        suffix = txn.get(suffix_ndn) if suffix_ndn else None
        if suffix is None and suffix_ndn:
            return None
        merged = CSNSet.from_values(suffix.get("contextcsn") if suffix is not None else [])
        stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
        if stored:
            merged.merge(CSNSet.from_values(stored.split(b";")))
        merged.merge(csns)
        values = [v.encode() for v in merged.to_values()]
        txn.put_raw_metadata(CONTEXT_CSN_KEY, b";".join(values))
        if suffix is None:
            return Entry("", {}, 0)
        entry = suffix.copy()
        entry.put("contextcsn", "contextCSN", values)
        txn.modify(suffix_ndn, entry)
    return entry


# --- worker processes -----------------------------------------------------------------------------------------

_worker_data: LDIFData = b""  # the LDIF, set before the pool forks
_worker_preparer: EntryPreparer | None = None
_worker_setup: tuple[Schema, EntryCodec, LoadOptions] | None = None


def _start_worker(lanes: Any) -> None:
    global _worker_preparer
    assert _worker_setup is not None
    schema, codec, options = _worker_setup
    _worker_preparer = EntryPreparer(schema, codec, options, lane=lanes.get(), lanes=options.workers)


def _prepare_in_worker(chunk: Chunk) -> ChunkResult:
    assert _worker_preparer is not None
    return _worker_preparer.prepare_chunk(_worker_data, chunk)


class LoadError(Exception):
    """The load could not go on (a worker process died); what was committed before stays."""


def _worker_ready() -> None:
    pass


def load_ldif(
    data: LDIFData, schema: Schema, codec: EntryCodec, options: LoadOptions, open_db: Any, err: TextIO
) -> tuple[Writer, Any]:
    """Load `data` into the database `open_db()` opens; returns the writer (counts, errors) and the database,
    still open (the caller syncs and closes it). Workers are started before the database is opened."""
    global _worker_data, _worker_setup
    progress = Progress(count_lines(data) + 1, err)
    pool = None
    workers = options.workers
    try:
        if workers > 1 and len(data) > CHUNK_BYTES:
            context = multiprocessing.get_context("fork")
            lanes = context.SimpleQueue()
            for lane in range(workers):
                lanes.put(lane)
            _worker_data, _worker_setup = data, (schema, codec, options)
            # a process pool that notices a worker dying (multiprocessing.Pool would wait for it forever)
            pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=_start_worker, initargs=(lanes,)
            )
            for started in [pool.submit(_worker_ready) for _ in range(workers)]:
                started.result()
        db = open_db()
        try:
            with db.read() as txn:
                first_id = txn.next_id()
            writer = Writer(db, options, err)
            chunks = split_chunks(data, first_id)
            if pool is None:
                preparer = EntryPreparer(schema, codec, options)
                results = (preparer.prepare_chunk(data, chunk) for chunk in chunks)
            else:
                results = _in_order(pool, chunks, workers * IN_FLIGHT_PER_WORKER)
            for result in results:
                writer.take(result)
                progress.entries = writer.added
                progress.update(result.last_line)
                if writer.failed:
                    break
            progress.finish()
        except BaseException:
            db.close()
            raise
    except BrokenProcessPool:
        raise LoadError(
            "a worker process ended abruptly (killed, or out of memory?); the chunks committed before stay"
        ) from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        _worker_data, _worker_setup = b"", None
    return writer, db


def _in_order(pool: ProcessPoolExecutor, chunks: list[Chunk], window: int) -> Iterator[ChunkResult]:
    """Chunk results in LDIF order, with at most `window` chunks handed out and not yet taken."""
    pending: deque[Future[ChunkResult]] = deque()
    queued = iter(chunks)
    for chunk in queued:
        pending.append(pool.submit(_prepare_in_worker, chunk))
        if len(pending) >= window:
            break
    while pending:
        result = pending.popleft().result()
        for chunk in queued:
            pending.append(pool.submit(_prepare_in_worker, chunk))
            break
        yield result


def default_workers(configured: int) -> int:
    """tool-threads as configured, else one process per CPU this process may run on."""
    if configured > 0:
        return configured
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Progress:
    """slapadd's progress meter, on a terminal only."""

    def __init__(self, total_lines: int, stream: TextIO) -> None:
        self.total = max(total_lines, 1)
        self.stream = stream
        self.enabled = stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.entries = 0

    def update(self, line: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        done = min(line / self.total, 1.0)
        elapsed = now - self.start
        eta = elapsed / done - elapsed if done > 0 else 0.0
        bar = "#" * int(done * 20)
        rate = self.entries / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\r{bar:<20} {done * 100:6.2f}% eta {clock(eta)} elapsed {clock(elapsed)} spd {rate:8.0f} e/s "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.total, force=True)
            self.stream.write("\n")
            self.stream.flush()


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"
