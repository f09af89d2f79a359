"""Replication state of one database: its contextCSN vector and the record of each committed change.

The vector (one CSN per server ID) is what providers compare cookies with and what a consumer asks from. It is
kept in memory, written into the database's metadata inside the same LMDB transaction as every change (so a
`kill -9` never loses track of a committed change, deletes included), and copied onto the suffix entry's
contextCSN attribute at checkpoints and clean shutdown, where slapcat and OpenLDAP expect it.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from dataclasses import dataclass

from pyldapd.model.csn import CSNSet, sid_of
from pyldapd.model.entry import Entry, added_at_end

CONTEXT_CSN_KEY = b"contextCSN"


@dataclass
class Change:
    """One committed write, as the syncprov overlay and the session log see it."""

    kind: str  # "add", "modify", "delete", "rename"
    before: Entry | None
    after: Entry | None
    csn: str
    relay_sid: int | None = None  # for a replicated write: the server ID of the provider it came from
    replicated: bool = False
    # False for changes applied during a consumer's refresh: they arrive in no particular CSN order, so they
    # are relayed without a cookie (a cookie would tell the next consumer that everything older has arrived).
    in_csn_order: bool = True

    @property
    def origin_sid(self) -> int:
        return sid_of(self.csn)

    @property
    def entry_uuid(self) -> bytes | None:
        entry = self.after or self.before
        return None if entry is None else entry_uuid_bytes(entry)


def encode_change(change: Change, worker: int) -> bytes:
    """A change as the journal stores it (server/journal.py): plain values only, for `decode_change`.

    The entry before is written as what differs from the entry after: a modify of one attribute of a group of
    50,000 members writes the members once, not twice. Marshal's format 2 (no back-references): the values are
    shared with the entries, and format 4 would keep a reference table entry for each of them.
    """
    after = change.after
    return marshal.dumps(
        (
            2,
            change.kind,
            _plain(change.before) if after is None else _plain_against(change.before, after),
            _plain(after),
            change.csn,
            change.relay_sid,
            change.replicated,
            change.in_csn_order,
            worker,
        ),  # fmt: skip
        2,
    )


def decode_change(record: bytes) -> tuple[Change, int]:
    """The change of a journal record and the worker that wrote it."""
    version, kind, before, after, csn, relay_sid, replicated, in_order, worker = marshal.loads(record)
    after_entry = _entry(after)
    if version >= 2 and after_entry is not None:
        before_entry = _entry_against(before, after_entry)
    else:
        before_entry = _entry(before)
    return Change(kind, before_entry, after_entry, csn, relay_sid, replicated, in_order), worker


def _plain(entry: Entry | None) -> tuple | None:
    if entry is None:
        return None
    return entry.dn, entry.id, [(key, a.name, a.values) for key, a in entry.attrs.items()]


_SAME = 0  # an attribute of the entry before, as the entry after has it
_FIRST = 1  # ... the first N of the entry after's values (values were added at the end)
_VALUES = 2  # ... its own values


def _plain_against(entry: Entry | None, after: Entry) -> tuple | None:
    """`entry` (the version before a change) as what differs from `after`, for `_entry_against`."""
    if entry is None:
        return None
    attrs = []
    theirs = after.attrs
    for key, a in entry.attrs.items():
        other = theirs.get(key)
        added = added_at_end(a.values, other.values) if other is not None and other.name == a.name else None
        if added is None:
            attrs.append((key, a.name, _VALUES, a.values))
        elif added:
            attrs.append((key, a.name, _FIRST, len(a.values)))
        else:
            attrs.append((key, a.name, _SAME, None))
    return entry.dn, entry.id, attrs


def _entry(plain: tuple | None) -> Entry | None:
    if plain is None:
        return None
    from pyldapd.model.entry import Attribute

    dn, entry_id, attrs = plain
    return Entry(dn, {key: Attribute(name, list(values)) for key, name, values in attrs}, entry_id)


def _entry_against(plain: tuple | None, after: Entry) -> Entry | None:
    if plain is None:
        return None
    from pyldapd.model.entry import Attribute

    dn, entry_id, attrs = plain
    out: dict[str, Attribute] = {}
    for key, name, how, payload in attrs:
        if how == _SAME:
            out[key] = Attribute(name, list(after.attrs[key].values))
        elif how == _FIRST:
            out[key] = Attribute(name, after.attrs[key].values[:payload])
        else:
            out[key] = Attribute(name, list(payload))
    return Entry(dn, out, entry_id)


def entry_uuid_bytes(entry: Entry) -> bytes | None:
    value = entry.first("entryuuid")
    if value is None:
        return None
    text = value.decode("ascii", "replace").replace("-", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 16 else None


TOMBSTONE_PREFIX = b"tombstone:"


def write_tombstone(txn, entry_uuid: bytes, csn: str) -> None:
    """Remember when an entry was deleted, so that an older change to it arriving later cannot revive it."""
    txn.put_raw_metadata(TOMBSTONE_PREFIX + entry_uuid, csn.encode())


def read_tombstone(txn, entry_uuid: bytes) -> str | None:
    value = txn.get_raw_metadata(TOMBSTONE_PREFIX + entry_uuid)
    return value.decode() if value is not None else None


def uuid_string(raw: bytes) -> str:
    text = raw.hex()
    return f"{text[0:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"


class ContextState:
    """The contextCSN vector of a database.

    It moves only with a commit: `advance` and `merge` work on a copy held by the write transaction and written
    into it; the copy replaces the vector once LMDB has committed. A failed commit leaves the vector as it was,
    so a consumer asks its provider again from the last state it really stored.
    """

    def __init__(self) -> None:
        self.csns = CSNSet()
        self.dirty = False  # a write committed without advancing the vector (an older replicated CSN)
        # the vector of the latest commit, set by the committing (writer) thread; `csns` follows on the event
        # loop when that commit's effects run. The next transaction starts from this one, not from `csns`.
        self._committed: CSNSet | None = None
        # commit order: a transaction's hook runs under the LMDB write lock, so its number says which commit
        # came last; the loop installs a vector only if it is newer than the installed one (a write committed
        # on the loop between a group commit and that group's effects is never undone by them)
        self._commits = 0
        self._installed = 0
        # several worker processes write this database (server/journal.py): a transaction starts from the
        # vector stored in it (other workers' commits included), and the loop adopts the stored vector
        self.shared = False
        # called on the loop when a commit's vector is installed (server/journal.py tells the other workers)
        self.on_install: Callable[[], None] | None = None

    def load(self, stored: bytes | None, suffix_values: list[bytes]) -> None:
        values: list[bytes] = list(suffix_values)
        if stored:
            values += stored.split(b";")
        self.csns = CSNSet.from_values(values)
        self._committed = None

    def encoded(self) -> bytes:
        return encode_csns(self.csns)

    def _working(self, txn) -> _Pending:
        """This transaction's copy of the state, installed when (and only if) the transaction commits."""
        pending = txn.pending.get(self)
        if pending is None:
            # a nested transaction (one operation of a group commit) starts from the group's copy
            inherited = txn.inherited(self) if hasattr(txn, "inherited") else None
            if inherited is not None:
                base = inherited.csns
            else:
                committed = self._committed
                base = committed if committed is not None else self.csns
                if self.shared:  # what other workers committed, read under the write lock
                    stored = txn.get_raw_metadata(CONTEXT_CSN_KEY)
                    if stored:
                        base = base.copy()
                        base.merge(CSNSet.from_values(stored.split(b";")))
            pending = txn.pending[self] = _Pending(base.copy())
            if hasattr(txn, "on_commit_here"):
                txn.on_commit_here(lambda: self._committed_now(pending))
            txn.on_commit(lambda: self._install(pending))
        return pending

    def _committed_now(self, pending: _Pending) -> None:
        self._commits += 1
        pending.seq = self._commits
        self._committed = pending.csns

    def _install(self, pending: _Pending) -> None:
        if pending.dirty:
            self.dirty = True
        if pending.seq and pending.seq < self._installed:
            return  # a later commit's vector (which holds this one's) is in place already
        self._installed = pending.seq
        if self.shared:  # a vector another worker's later commit moved is in place already: only forward
            merged = self.csns.copy()
            merged.merge(pending.csns)
            self.csns = merged
            if self._committed is pending.csns:
                self._committed = None  # caught up: else `latest` would go on returning this commit's vector
            if self.on_install is not None:
                self.on_install()
            return
        self.csns = pending.csns
        if self._committed is pending.csns:
            self._committed = None  # the loop has caught up with the writer

    def published(self, csn: str) -> None:
        """A change read from the journal is about to be published: the vector holds its CSN first."""
        if csn and csn > self.csns.get(sid_of(csn), ""):
            merged = self.csns.copy()
            merged.update_csn(csn)
            self.csns = merged

    def adopt(self, stored: bytes | None) -> None:
        """The vector stored in the database (a snapshot that holds every change published so far, other
        workers' included) joins the in-memory one, which only ever moves forward this way."""
        if not stored:
            return
        merged = self.csns.copy()
        if merged.merge(CSNSet.from_values(stored.split(b";"))):
            self.csns = merged

    def advance(self, txn, csn: str) -> bool:
        """Record a change's CSN in the transaction; the vector moves when it commits. True if it will move."""
        pending = self._working(txn)
        changed = pending.csns.update_csn(csn)
        if changed:
            txn.put_raw_metadata(CONTEXT_CSN_KEY, encode_csns(pending.csns))
        else:
            pending.dirty = True
        return changed

    def merge(self, txn, csns) -> bool:
        pending = self._working(txn)
        changed = pending.csns.merge(csns)
        if changed:
            txn.put_raw_metadata(CONTEXT_CSN_KEY, encode_csns(pending.csns))
        return changed

    def latest(self) -> CSNSet:
        """The vector of the latest commit (ahead of `csns` while a group commit's effects are on their way to
        the event loop). Shared by workers, `csns` also moves with the other workers' commits (`published`,
        `adopt`) while this worker's own commit is on its way: then both, merged."""
        committed = self._committed
        if committed is None:
            return self.csns
        if not self.shared:
            return committed
        merged = committed.copy()
        merged.merge(self.csns)
        return merged

    def current(self, txn=None) -> CSNSet:
        """The vector as a write transaction sees it (its working copy, or its group's), else `latest`."""
        if txn is not None:
            pending = txn.pending.get(self) or txn.inherited(self)
            if pending is not None:
                return pending.csns
        return self.latest()

    def reset(self) -> None:
        """Forget the vector (a provider asked for a full reload); commits on their way to the loop keep out."""
        self.csns = CSNSet()
        self._committed = None
        self._installed = self._commits + 1

    def values(self) -> list[bytes]:
        return [v.encode() for v in self.csns.to_values()]


@dataclass
class _Pending:
    csns: CSNSet
    dirty: bool = False
    seq: int = 0  # its place in commit order (0: committed by a transaction without commit hooks)


def encode_csns(csns: CSNSet) -> bytes:
    return ";".join(csns.to_values()).encode()
