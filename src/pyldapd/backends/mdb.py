"""The LMDB storage backend: pyldapd's counterpart of OpenLDAP's back-mdb.

Storage layout
--------------
One LMDB environment (a directory holding ``data.mdb`` and ``lock.mdb``) with these named sub-databases:

``id2entry``   8-byte big-endian entry id -> entry record (below).
``dn2id``      normalized DN (UTF-8) -> 8-byte id. The empty DN is never a key (LMDB has none of length 0): in a
               database whose suffix is "" it is the root, id 0, as in back-mdb; elsewhere it names nothing.
``children``   the DN tree: dupsort, 8-byte parent id -> 8-byte child ids (the suffix entry's parent is id 0, and
               so are the top-level entries' of a database whose suffix is "").
               One-level scope is one duplicate run; subtree scope below the suffix walks it depth first from the
               base, so it costs one lookup per entry in the subtree and never scans the rest of the database;
               entries come out parents first. The suffix's subtree is the whole database: read in id order, as
               back-mdb lists it (`ReadTxn._scan_ids`). (A reversed-DN key range would make subtrees one range scan
               but makes one-level scope scan the whole subtree; slapd's back-mdb also keeps a parent -> children
               tree.)
``eq``         dupsort: ``type key + 0x00 + normalized value`` -> id runs   (equality index)
``pres``       dupsort: ``type key`` -> id runs                              (presence index)
``sub``        dupsort: ``type key + 0x00 + marker + gram`` -> id runs      (substring index, see `_grams`)
``approx``     dupsort: ``type key + 0x00 + phonetic key of a word`` -> id runs  (approximate index)
``uuid``       dupsort: entryUUID as 16 raw bytes -> id run (always maintained)
``csn``        dupsort: normalized entryCSN -> id runs (always maintained; ordered: `csn_after` is a range scan)
``meta``       internal: format version (3), next id, which indexes are built
``aux``        `put_raw_metadata` / `get_raw_metadata` side table for the server (contextCSN cache, ...)
``journal``    8-byte big-endian sequence -> one committed change, as the server encodes it (server/journal.py):
               written only when several worker processes share the environment, in the transaction of the
               change, so that every worker publishes every change in commit order; trimmed to a bound

An index value is a *run*: 1 to 63 sorted 8-byte ids (dupsort values are keys of an LMDB sub-database, so at most
511 bytes). The runs of one key are disjoint id ranges, so the run that holds or would hold an id is found with
one cursor seek (`_find_run`). A bulk load writes one run per key for up to 63 entries instead of one value per
entry and key (`IndexBatch`), which makes it six times fewer LMDB writes. A single write adds an id to the run
whose range holds it, else as a value of its own; a new entry's id is above every range, so its keys are
written without a lookup (version 1 databases had one id per value).

Index keys use the attribute *type* key (``cn`` for ``cn;lang-en`` too); a filter on a type also looks up its
subtypes. Keys longer than `_MAX_KEY` bytes are cut and completed with a hash (a collision only adds a
candidate: indexes return supersets, the caller evaluates the filter). An index is used by searches only once it
is *built*: configured when the database was empty, or rebuilt with `MdbDatabase.reindex` (like slapindex).
Configured indexes are maintained by every write from the moment they are configured.

The substring index stores, per value (normalized by the type's substrings rule, as a string): its prefixes of
1..3 characters (marker 0x01), its suffixes of 1..3 characters (marker 0x03) and all its 3-grams (marker 0x02).
An initial (final) component uses its prefix (suffix) key and its 3-grams; an any component of 3 characters or
more uses its 3-grams; shorter any components add no constraint. A substrings filter with no usable component
is unindexed.

Entry record (``id2entry`` value)::

    struct ">BQIII": record version (1 or 2), parent id, len(ndn), len(dn), len(user blob)
    ndn (UTF-8) | dn as given (UTF-8) | user attributes | operational attributes
    version 2 only: | order (one byte per attribute, 0 user, 1 operational) | struct ">I": len(order)

The two attribute blobs are ``encode_partial_attribute_list`` outputs (PartialAttribute TLVs, ready to send);
operational means the schema says so, unknown types count as user attributes. An entry keeps its attributes in
the order they were written, as slapd's do (an added or replaced one goes to the end, after the operational
ones a write stamps): when that order is not every user attribute before every operational one, the record is
version 2 and its order says how the two lists interleave (databases of format 3 on: older ones hold version 1
records only). A `*` search still sends the user blob as stored.

Entries returned and the cache
------------------------------
Entries are decoded once and kept in an LRU cache (id -> (record bytes, Entry)); a cached Entry is returned only
if the record read in the current transaction is byte-identical to the one it was decoded from, so the cache is
always coherent with the transaction's snapshot (and with other processes writing the same database).
**Entries returned by this module are shared and must be treated as read-only: call ``entry.copy()`` before
changing one** (``Entry.copy`` drops the encoded blobs, which is right for a modified entry).

Transactions
------------
``read()`` opens a snapshot; many may be open at once, readers never block the writer. ``search`` and the other
iterators are lazy generators bound to their transaction: consume them inside the ``with`` block.
``write()`` opens the one write transaction (a second `write()` from another thread waits; from the same thread,
while one is open, it raises StorageError rather than deadlocking). It commits when the block exits cleanly and
aborts on an exception. Durability: with ``sync=True`` (the default) a commit is fsynced (data and meta pages)
before ``__exit__`` returns, so it survives kill -9 and power loss; ``sync=False`` is for bulk loads, call
`MdbDatabase.sync` (or `close`) at the end. ``WriteTxn.child()`` opens a nested transaction (one operation of
a group commit, `pyldapd.backends.writer`): it folds into its parent (`commit_child`) or vanishes alone
(`abort_child`); `MdbDatabase.writer` is the environment's writer thread and `current_write()`, on that thread,
the running operation's nested transaction.

Map size
--------
``maxsize`` is the initial LMDB map size. The map grows by itself: before a write transaction starts, if more
than 3/4 of the map is in use it is doubled; if a write still hits MDB_MAP_FULL, the transaction is aborted, the
map doubled, and the transaction's low-level writes replayed (the caller never sees it). There is no upper cap
unless ``max_mapsize`` is given; the server gives ``max_mapsize=maxsize`` when the config sets ``maxsize``
(slapd's hard limit). Past the cap a write raises DatabaseFull (answered as back-mdb answers MDB_MAP_FULL:
80 with "entry store failed" for an add...), and nothing of it is stored. Growing invalidates open
read transactions in this process (py-lmdb rule); a `ReadTxn` notices and transparently renews its snapshot, so a
lazy search that spans a growth may see changes committed meanwhile (this is rare: growth doubles).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import struct
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import lmdb

from pyldapd.backends.base import (
    AlreadyExists,
    DatabaseFull,
    KeyTooLong,
    NoSuchEntry,
    NotAllowedOnNonLeaf,
    Scope,
    StorageError,
    TooManyCandidates,
)
from pyldapd.model.csn import sid_of
from pyldapd.model.dn import is_descendant, normalize_dn, parent_dn, split_rdn
from pyldapd.model.entry import MANY_VALUES, Attribute, Entry, added_at_end
from pyldapd.model.filter import And, Approx, Equality, Filter, Or, Present, Substrings
from pyldapd.model.matching import APPROX_RULES as _APPROX_RULES
from pyldapd.model.matching import UNIQUE_MEMBER_MATCH, approx_filter_keys, approx_keys
from pyldapd.protocol.ldap import (
    decode_partial_attribute_list,
    decode_values,
    encode_partial_attribute,
    encode_values,
    index_partial_attribute_list,
)

__all__ = ["CommitFailed", "MdbDatabase", "ReadTxn", "WriteTxn", "open_database", "INDEX_KINDS"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # of the database layout; 1 had one id per index value, 2 no version 2 records
_RECORD_VERSION = 1  # a record whose attributes are all user ones first, then the operational ones
_INTERLEAVED_RECORD_VERSION = 2  # a record with its attributes' order (`EntryCodec.encode`)
_ORDER_SIZE = struct.Struct(">I")
INDEX_KINDS = frozenset({"eq", "pres", "sub", "approx"})
_KIND_ALIASES = {
    "eq": "eq",
    "equality": "eq",
    "pres": "pres",
    "present": "pres",
    "sub": "sub",
    "substr": "sub",
    "substring": "sub",
    "subinitial": "sub",
    "subany": "sub",
    "subfinal": "sub",
    "approx": "approx",
}

_HDR = struct.Struct(">BQIII")
_HDR_SIZE = _HDR.size
_ID = struct.Struct(">Q")
_pack_id = _ID.pack
_MAX_KEY = 480  # LMDB's default max key size is 511
_GRAM = 3
_ROOT_PARENT = bytes(8)  # parent id of the suffix entry

_M_NEXT_ID = b"next_id"
_M_VERSION = b"version"
_M_BUILT = b"built_indexes"
_M_APPROX_KEYS = b"approx-keys"  # which phonetic keys the approx index holds
_M_JOURNAL_BYTES = b"journal-bytes"  # the size of the journal's records, together (trimming by size)

_INDEX_DBS = ("eq", "pres", "sub", "approx")
_ALL_INDEX_DBS = (*_INDEX_DBS, "uuid", "csn")

_SUB_PREFIX = b"\x01"
_SUB_GRAM = b"\x02"
_SUB_SUFFIX = b"\x03"

_SMALL_SET = 16  # candidate sets this small are not narrowed further
_PROBE_RATIO = 4  # an And part this many times larger than the current set is probed, not read


# A search adds its first candidates to the entry cache, not the rest: a scan of 100,000 entries would replace
# the cache's hot entries by cold ones, and the cycle collector walks every cached entry (some 30 objects each)
# at each older-generation collection while the scan churns it: 2/3 of an unindexed search's time, in pauses of
# 30 to 100 ms (issue 13, bench/bench_stall.py).
SCAN_CACHED = 64


def _unpack_id(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _ikey(prefix: bytes, value: bytes) -> bytes:
    key = prefix + value
    if len(key) > _MAX_KEY:
        # hashed keys are longer than any plain key, so they never collide with one
        key = key[: _MAX_KEY - 31] + hashlib.sha256(key).digest()
    return key


_RUN_MAX = 63  # ids per index value: dupsort values are keys of a sub-database, so at most 511 bytes
_RUNS = [struct.Struct(f">{n}Q") for n in range(_RUN_MAX + 1)]


def _run_ids(run: bytes) -> tuple[int, ...]:
    return _RUNS[len(run) >> 3].unpack(run)


def _split_runs(key: bytes, ids: list[bytes], keys_out: list[bytes], runs_out: list[bytes]) -> None:
    """Sorted ids (8 bytes each) as values of at most _RUN_MAX ids."""
    for i in range(0, len(ids), _RUN_MAX):
        keys_out.append(key)
        runs_out.append(b"".join(ids[i : i + _RUN_MAX]))


def _upgrade_from_1(env: Any, txn: Any, meta: Any) -> None:
    """Format 1 -> 2, in place, inside the caller's write transaction (a crash leaves format 1, and the next
    start upgrades again). Format 1 kept one 8-byte id per index value in DUPFIXED sub-databases; format 2
    keeps runs of up to _RUN_MAX sorted ids in DUPSORT ones. Keys, entry records and the DN tree are the same.
    LMDB cannot change a sub-database's flags, so each index is read whole (key -> sorted ids; duplicates come
    out in id order), dropped, made again with the new flags and written as runs."""
    for name in ("eq", "pres", "sub", "approx", "uuid", "csn"):
        old = env.open_db(name.encode(), txn=txn, dupsort=True, dupfixed=True)
        keys: list[bytes] = []
        runs: list[bytes] = []
        with txn.cursor(old) as cur:
            current: bytes | None = None
            ids: list[bytes] = []
            for key, idb in cur.iternext(keys=True, values=True):
                if key != current:
                    if current is not None:
                        _split_runs(current, ids, keys, runs)
                    current, ids = key, []
                ids.append(idb)
            if current is not None:
                _split_runs(current, ids, keys, runs)
        txn.drop(old, delete=True)
        new = env.open_db(name.encode(), txn=txn, dupsort=True)
        with txn.cursor(new) as cur:
            for key, run in zip(keys, runs, strict=True):
                cur.put(key, run, dupdata=True)
    txn.put(_M_VERSION, str(FORMAT_VERSION).encode(), db=meta)


def _find_run(cur: Any, key: bytes, idb: bytes) -> bytes | None:
    """The value of `key` whose id range holds idb, with the cursor on it; None if no range holds it.

    The values of one key are disjoint id ranges (writes keep them so), ordered by their first id.
    """
    if cur.set_range_dup(key, idb):
        run = cur.value()
        if run[:8] == idb:
            return run
        if not cur.prev_dup():
            return None
    elif not (cur.set_key(key) and cur.last_dup()):
        return None
    run = cur.value()
    return run if run[:8] <= idb <= run[-8:] else None


def _grams(text: str) -> list[str]:
    return [text[i : i + _GRAM] for i in range(len(text) - _GRAM + 1)]


def _value_sub_keys(prefix: bytes, text: str, out: set[bytes]) -> None:
    data = text.encode("utf-8", "surrogatepass")
    if len(data) == len(text) and len(prefix) + 1 + _GRAM <= _MAX_KEY:
        # ASCII (the common case): byte slices are character slices, and no key needs hashing
        n = len(data)
        head, tail, gram = prefix + _SUB_PREFIX, prefix + _SUB_SUFFIX, prefix + _SUB_GRAM
        short = min(n, _GRAM) + 1
        out.update(
            [head + data[:i] for i in range(1, short)]
            + [tail + data[-i:] for i in range(1, short)]
            + [gram + data[i : i + _GRAM] for i in range(n - _GRAM + 1)]
        )
        return
    n = len(text)
    for i in range(1, min(n, _GRAM) + 1):
        out.add(_ikey(prefix + _SUB_PREFIX, text[:i].encode("utf-8", "surrogatepass")))
        out.add(_ikey(prefix + _SUB_SUFFIX, text[-i:].encode("utf-8", "surrogatepass")))
    for g in _grams(text):
        out.add(_ikey(prefix + _SUB_GRAM, g.encode("utf-8", "surrogatepass")))


_NO_INDEX = object()  # an attribute that no index covers


class _IndexKeys:
    """The index keys of one entry, one set per index sub-database."""

    __slots__ = ("eq", "pres", "sub", "approx", "uuid", "csn")

    def __init__(self) -> None:
        self.eq: set[bytes] = set()
        self.pres: set[bytes] = set()
        self.sub: set[bytes] = set()
        self.approx: set[bytes] = set()
        self.uuid: set[bytes] = set()
        self.csn: set[bytes] = set()


# Query plans: ("keys", dbname, [key, ...]) = union of the ids under those keys; ("and", [plans]);
# ("or", [plans]); ("empty",). None stands for "not indexed" (every entry in scope is a candidate).
_Plan = tuple[Any, ...]
_EMPTY: _Plan = ("empty",)
_GENERAL = ("general",)  # an equality planned by the general path (ReadTxn._equality_shape)


def _kept_encoding(
    attr: Attribute, stored: Attribute | None, span: tuple[bytes, int, int, int] | None
) -> bytes | None:
    """The PartialAttribute TLV of `attr` from the stored one's (`span` of its encoding) when its values are the
    stored values, or those and more at the end; else None."""
    if stored is None or span is None or stored.name != attr.name:
        return None
    blob, start, values_start, stop = span
    added = added_at_end(stored.values, attr.values)
    if added is None:
        return None
    if not added:
        return blob[start:stop]
    return encode_partial_attribute(attr.name, blob[values_start:stop] + encode_values(attr.values[-added:]))


_REUSE_RECORD = 16384  # a record this long is decoded reusing its cached older version (MdbDatabase._decode)


def _decode_reusing(
    blob: bytes,
    older: Entry,
    spans: dict[str, tuple[bytes, int, int, int] | None],
    key_of: Callable[[str], str],
) -> list[Attribute]:
    """The attributes of `blob`, where one whose encoding is the older version's (of the same entry) is that
    version's Attribute, shared (stored entries are never changed in place), and one whose encoding starts with
    the older one's is its values and the rest decoded."""
    out: list[Attribute] = []
    for name, _start, values_start, stop in index_partial_attribute_list(blob):
        key = key_of(name)
        old = older.attrs.get(key)
        span = spans.get(key)
        if old is not None and span is not None and old.name == name:
            old_blob, _s, old_values_start, old_stop = span
            size = old_stop - old_values_start
            if stop - values_start >= size and blob.startswith(
                memoryview(old_blob)[old_values_start:old_stop], values_start
            ):
                if stop - values_start == size:
                    out.append(old)
                else:
                    out.append(old.extended(decode_values(blob, values_start + size, stop)))
                continue
        out.append(Attribute(name, decode_values(blob, values_start, stop)))
    return out


class EntryCodec:
    """What an entry becomes in the database: its id2entry record and its index keys.

    A pure function of the schema and the index configuration, without the LMDB environment, so that a bulk
    load can encode entries in worker processes while one process writes (`pyldapd.cli.bulkload`).
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._type_cache: dict[str, Any] = {}
        self._key_cache: dict[str, str] = {}
        self._index_config: dict[str, frozenset[str]] = {}
        self._plans: dict[str, Any] = {}  # attribute description key -> `_index_plan`
        self._value_steps: dict[str, Any] = {}  # type key -> `_value_step`
        self._operational: dict[str, bool] = {}  # attribute description key -> stored as operational

    @property
    def index_config(self) -> dict[str, frozenset[str]]:
        """type key -> index kinds maintained on writes"""
        return self._index_config

    @index_config.setter
    def index_config(self, config: dict[str, frozenset[str]]) -> None:
        self._index_config = config
        self._plans = {}
        self._value_steps = {}

    def set_schema(self, schema: Any) -> None:
        self.schema = schema
        self._type_cache.clear()
        self._key_cache.clear()
        self._plans = {}
        self._value_steps = {}
        self._operational = {}

    def attribute_type(self, base: str) -> Any:
        try:
            return self._type_cache[base]
        except KeyError:
            at = self.schema.attribute_type(base)
            self._type_cache[base] = at
            return at

    def attribute_key(self, name: str) -> str:
        try:
            return self._key_cache[name]
        except KeyError:
            key = self.schema.attribute_key(name)
            if len(self._key_cache) > 10_000:
                self._key_cache.clear()
            self._key_cache[name] = key
            return key

    def expand_types(self, at: Any) -> list[Any]:
        """at and all its subtypes (transitively); kept until the schema changes (every indexed search asks)."""
        derived = self.schema.derived
        cache = derived.get("mdb.expand_types")
        if cache is None:
            cache = derived["mdb.expand_types"] = {}
        found = cache.get(at.oid)
        if found is None or found[0] is not at:
            found = cache[at.oid] = (at, self._expand_types_afresh(at))
        return found[1]

    def _expand_types_afresh(self, at: Any) -> list[Any]:
        out = [at]
        seen = {at.key}
        i = 0
        while i < len(out):
            for sub in self.schema.subtypes(out[i]) or ():
                if sub.key not in seen:
                    seen.add(sub.key)
                    out.append(sub)
            i += 1
        return out

    def resolve_indexes(self, indexes: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
        config: dict[str, set[str]] = {}
        for name, kinds in indexes.items():
            at = self.attribute_type(name.strip().lower()) if name else None
            if at is None:
                at = self.schema.attribute_type(name)
            if at is None:
                log.warning("index: unknown attribute type %r ignored", name)
                continue
            wanted: set[str] = set()
            for k in kinds:
                kind = _KIND_ALIASES.get(k.strip().lower())
                if kind is None:
                    log.warning("index: unknown index type %r for %s ignored", k, name)
                else:
                    wanted.add(kind)
            # an index on a supertype covers its subtypes, as in slapd
            for t in self.expand_types(at):
                config.setdefault(t.key, set()).update(wanted)
        return {k: frozenset(v) for k, v in config.items() if v}

    def encode(
        self, entry: Entry, ndn: str, parent: bytes, previous: Entry | None = None
    ) -> tuple[bytes, bytes, bytes | None]:
        """(record, user blob, operational blob: None when the attributes of both kinds interleave). `previous`:
        the stored entry this one replaces (decoded from its record): the encoding of a large attribute whose
        values it kept, or added to at the end, is taken from there (a modify of a group of 100,000 members
        encodes what changed, not every member again)."""
        user: list[bytes] = []
        oper: list[bytes] = []
        order = bytearray()  # 0: the next user attribute, 1: the next operational one
        operational = self._operational
        spans: dict[str, tuple[bytes, int, int, int] | None] | None = None
        for key, attr in entry.attrs.items():
            values = attr.values
            if not values:
                continue
            kind = operational.get(key)
            if kind is None:
                at = self.attribute_type(key.partition(";")[0])
                kind = operational[key] = at is not None and at.operational
            piece = None
            if previous is not None and len(values) > MANY_VALUES:
                if spans is None:
                    spans = self.attribute_spans(previous)
                piece = _kept_encoding(attr, previous.attrs.get(key), spans.get(key))
            if piece is None:
                piece = encode_partial_attribute(attr.name, encode_values(values))
            (oper if kind else user).append(piece)
            order.append(kind)
        ublob = b"".join(user)
        oblob = b"".join(oper)
        bndn = ndn.encode("utf-8", "surrogateescape")
        bdn = entry.dn.encode("utf-8", "surrogateescape")
        if b"\x01\x00" not in order:  # every user attribute first: the common record, blobs as they are
            head = _HDR.pack(_RECORD_VERSION, _unpack_id(parent), len(bndn), len(bdn), len(ublob))
            return b"".join((head, bndn, bdn, ublob, oblob)), ublob, oblob
        head = _HDR.pack(_INTERLEAVED_RECORD_VERSION, _unpack_id(parent), len(bndn), len(bdn), len(ublob))
        record = b"".join((head, bndn, bdn, ublob, oblob, order, _ORDER_SIZE.pack(len(order))))
        # no operational blob to send as is: its attributes go between the others
        return record, ublob, None

    def attribute_spans(self, entry: Entry) -> dict[str, tuple[bytes, int, int, int] | None]:
        """Where each attribute of a stored entry is in its encoded lists: key -> (blob, start, values start,
        stop); None for a key met twice (its values are not one TLV's)."""
        out: dict[str, tuple[bytes, int, int, int] | None] = {}
        for blob in (entry.encoded_user, entry.encoded_operational):
            if not blob:
                continue
            for name, start, values_start, stop in index_partial_attribute_list(blob):
                key = self.attribute_key(name)
                out[key] = None if key in out else (blob, start, values_start, stop)
        return out

    def index_keys(self, entry: Entry, bases: set[str] | None = None) -> _IndexKeys:
        """The entry's index keys; with `bases`, only those of the attributes of these types (a key comes from
        one attribute type: it starts with that type's name, so the keys of other types never mix in)."""
        out = _IndexKeys()
        plans = self._plans
        for key, attr in entry.attrs.items():
            if bases is not None and key.partition(";")[0] not in bases:
                continue
            plan = plans.get(key)
            if plan is None:
                plan = plans[key] = self._index_plan(key)
            if plan is not _NO_INDEX:
                plan(attr.values, out)
        return out

    def modify_keys(self, old: Entry, new: Entry) -> tuple[_IndexKeys, _IndexKeys]:
        """The index keys a modify takes away and puts, as (old side, new side) for `WriteTxn._apply_index`.

        Only the keys of the attribute types whose values changed (a description's modify need not recompute the
        substring keys of uid, cn, sn and mail). Of an attribute under one description before and after whose
        indexes key each value on its own (eq, pres), only the keys of the values taken away and added, as slapd
        indexes a modify: adding one member to a group of 100,000 normalizes one value, not 100,000. (The values
        of one description are distinct under its equality rule, so no other value shares their key.)
        """
        old_attrs, new_attrs = old.attrs, new.attrs
        descriptions: dict[str, list[str]] = {}  # base type -> descriptions on either side
        changed: set[str] = set()
        for key in old_attrs.keys() | new_attrs.keys():
            base = key.partition(";")[0]
            descriptions.setdefault(base, []).append(key)
            o, n = old_attrs.get(key), new_attrs.get(key)
            if o is None or n is None or o.values != n.values:
                changed.add(base)
        whole: set[str] = set()
        taken: list[tuple[Any, list[bytes]]] = []
        put: list[tuple[Any, list[bytes]]] = []
        for base in changed:
            step = self._value_step(base)
            keys = descriptions[base]
            if step is None or len(keys) != 1 or keys[0] not in old_attrs or keys[0] not in new_attrs:
                whole.add(base)
                continue
            if step is _NO_INDEX:
                continue
            before, after = old_attrs[keys[0]].values, new_attrs[keys[0]].values
            if added_at_end(before, after) is not None:  # values added at the end
                put.append((step, after[len(before) :]))
                continue
            kept, now = set(after), set(before)
            taken.append((step, [v for v in before if v not in kept]))
            put.append((step, [v for v in after if v not in now]))
        old_keys = self.index_keys(old, whole) if whole else _IndexKeys()
        new_keys = self.index_keys(new, whole) if whole else _IndexKeys()
        for step, values in taken:
            step(values, old_keys)
        for step, values in put:
            step(values, new_keys)
        return old_keys, new_keys

    def _value_step(self, base: str) -> Any:
        """For an attribute type whose index keys are each one value's own (an eq index, perhaps pres, and no
        other), the step that puts the eq keys of some values; _NO_INDEX when the type is not indexed by value
        at all (no index, or pres alone); None when its keys are not per value (sub, approx, objectClass's
        superclasses, entryUUID and entryCSN)."""
        cache = self._value_steps
        if base in cache:
            return cache[base]
        kinds = self.index_config.get(base) or frozenset()
        at = self.attribute_type(base)
        step: Any = None
        if base in ("entryuuid", "entrycsn", "objectclass") or at is None or not kinds <= {"eq", "pres"}:
            step = None
        elif "eq" not in kinds:
            step = _NO_INDEX
        elif at.equality is not None and not getattr(at.equality, "_word", False):
            prefix = base.encode() + b"\x00"
            step = _value_keys(at.equality.normalize, lambda n, p=prefix: _ikey(p, n), "eq")
        else:
            step = _NO_INDEX  # an eq index without an equality rule keys nothing (as _index_plan)
        cache[base] = step
        return step

    def _index_plan(self, key: str) -> Any:
        """What indexing the values of one attribute description means: a function (values, out), or _NO_INDEX."""
        base = key.partition(";")[0]
        at = self.attribute_type(base)
        steps: list[Any] = []
        if base in ("entryuuid", "entrycsn"):
            norm = at.equality.normalize if at is not None and at.equality is not None else None
            uuid = base == "entryuuid"

            def internal(values: list[bytes], out: _IndexKeys) -> None:
                target = out.uuid if uuid else out.csn
                for v in values:
                    n = norm(v) if norm is not None else v
                    if n is not None and (not uuid or len(n) == 16):
                        target.add(n)

            steps.append(internal)
        kinds = self.index_config.get(base)
        if kinds and at is not None:
            prefix = base.encode() + b"\x00"
            if "pres" in kinds:
                present = base.encode()
                steps.append(lambda values, out: out.pres.add(present))
            if "eq" in kinds and base == "objectclass":
                closure = self.schema.object_class_closure  # (objectClass=person) finds inetOrgPersons too
                cache: dict[bytes, list[bytes]] = {}

                def classes(values: list[bytes], out: _IndexKeys) -> None:
                    for v in values:
                        keys = cache.get(v)
                        if keys is None:
                            keys = cache[v] = [_ikey(prefix, n) for n in closure(v)]
                        out.eq.update(keys)

                steps.append(classes)
            elif "eq" in kinds and at.equality is not None and not getattr(at.equality, "_word", False):
                steps.append(_value_keys(at.equality.normalize, lambda n, p=prefix: _ikey(p, n), "eq"))
            if "sub" in kinds and at.substr is not None:
                nsub = at.substr.normalize_substring

                def substrings(values: list[bytes], out: _IndexKeys) -> None:
                    for v in values:
                        text = nsub(v)
                        if text:
                            _value_sub_keys(prefix, text, out.sub)

                steps.append(substrings)
            if "approx" in kinds and at.equality is not None:
                steps.append(_approx_value_keys(at.equality, prefix))
        if not steps:
            return _NO_INDEX
        if len(steps) == 1:
            return steps[0]

        def all_steps(values: list[bytes], out: _IndexKeys) -> None:
            for step in steps:
                step(values, out)

        return all_steps


def _value_keys(normalize: Any, to_key: Any, index: str) -> Any:
    """An `_index_plan` step: one key per value (normalized; None: the value has no key) into out.<index>."""

    def step(values: list[bytes], out: _IndexKeys) -> None:
        keys = getattr(out, index)
        for v in values:
            n = normalize(v)
            if n is not None:
                keys.add(to_key(n))

    return step


def _approx_value_keys(rule: Any, prefix: bytes) -> Any:
    """An `_index_plan` step for an approx index: as slapd's approxIndexer, a key per word (its phonetic key) of
    each value under rules with an approximate form; under other rules slapd indexes the equality key."""
    normalize = rule.normalize
    if rule.oid not in _APPROX_RULES:
        return _value_keys(normalize, lambda n: _ikey(prefix, n), "approx")

    def step(values: list[bytes], out: _IndexKeys) -> None:
        for v in values:
            n = normalize(v)
            if n is not None:
                out.approx.update(_ikey(prefix, k) for k in approx_keys(n))

    return step


class IndexBatch:
    """The index keys of many entries, grouped by key: what a bulk load writes in one sorted pass per index.

    Ids must be added in increasing order and be greater than any id already in the database (a bulk load's ids
    are reserved fresh), so that the values written never overlap stored ones. `sealed()` is the compact,
    picklable form `WriteTxn.add_index_batch` takes: per index sub-database, keys and values, sorted.
    """

    __slots__ = ("codec", "groups")

    def __init__(self, codec: EntryCodec) -> None:
        self.codec = codec
        self.groups: dict[str, defaultdict[bytes, list[bytes]]] = {
            name: defaultdict(list) for name in _ALL_INDEX_DBS
        }

    def add(self, entry: Entry, idb: bytes) -> None:
        keys = self.codec.index_keys(entry)
        for name, group in self.groups.items():
            for key in getattr(keys, name):
                group[key].append(idb)

    def sealed(self) -> dict[str, tuple[list[bytes], list[bytes]]]:
        out = {}
        for name, group in self.groups.items():
            if group:
                keys: list[bytes] = []
                runs: list[bytes] = []
                for key in sorted(group):
                    ids = group[key]
                    if len(ids) == 1:
                        keys.append(key)
                        runs.append(ids[0])
                    else:
                        _split_runs(key, ids, keys, runs)
                out[name] = (keys, runs)
        return out


class MdbDatabase:
    """One naming context stored in LMDB. See the module docstring for the layout and the rules."""

    # an unindexed search over the whole database reads it in id order, as back-mdb (`ReadTxn._scan_ids`)
    scan_by_id = True

    def __init__(
        self,
        directory: str,
        schema: Any,
        suffix: str,
        *,
        maxsize: int = 10 * 2**30,
        indexes: Mapping[str, Iterable[str]] | None = None,
        sync: bool = True,
        max_mapsize: int | None = None,
        cache_size: int = 10_000,
        max_readers: int = 1024,
    ) -> None:
        self.directory = directory
        self.schema = schema
        self.suffix = suffix
        self.suffix_ndn = normalize_dn(suffix, schema)
        self.sync_writes = sync
        self.max_mapsize = max_mapsize
        self.cache_size = cache_size
        mapsize = max(int(maxsize), 64 * 1024)
        if _INITIAL_MAPSIZE and max_mapsize is None:  # test-only (see below): a small map that must grow
            mapsize = _INITIAL_MAPSIZE
        if max_mapsize is not None:
            mapsize = min(mapsize, max_mapsize)
        try:
            os.makedirs(directory, exist_ok=True)
            self.env = lmdb.open(
                directory,
                map_size=mapsize,
                subdir=True,
                max_dbs=16,
                max_readers=max_readers,
                sync=sync,
                metasync=sync,
                readahead=False,
                lock=True,
            )
        except (OSError, lmdb.Error) as exc:
            # as slapd's mdb_db_open, a clear message rather than a traceback (unwritable, not a database...)
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rpartition(": ")[2]
            )
            raise StorageError(f'database "{suffix}" cannot be opened: {directory}: {reason}') from None
        # reader slots of processes that died (a worker killed, server/supervisor.py) are freed, not left to
        # pin old pages
        self.env.reader_check()
        self._psize = self.env.stat()["psize"]
        self.upgraded_from: int | None = None  # the format this database had before being upgraded at open
        meta = self.env.open_db(b"meta")
        with self.env.begin(write=True) as txn:  # before the sub-databases, whose flags changed in version 2
            version = txn.get(_M_VERSION, db=meta)
            if version is None:
                txn.put(_M_VERSION, str(FORMAT_VERSION).encode(), db=meta)
                txn.put(_M_NEXT_ID, _pack_id(1), db=meta)
            elif int(version) == 1:
                _upgrade_from_1(self.env, txn, meta)  # in this transaction: all or nothing
                self.upgraded_from = 1
            elif int(version) == 2:  # format 3 adds version 2 records (attributes interleaved): no change
                txn.put(_M_VERSION, str(FORMAT_VERSION).encode(), db=meta)
                self.upgraded_from = 2
            elif int(version) != FORMAT_VERSION:
                self.env.close()
                raise StorageError(
                    f"{directory}: database format {version.decode()} was written by a newer pyldapd, this one "
                    f"reads formats 1 to {FORMAT_VERSION}; run that pyldapd, or export the data with it "
                    "(pyldapd cat) and load it here (pyldapd add)"
                )
        dup = {"dupsort": True, "dupfixed": True}
        self.dbs: dict[str, Any] = {
            "id2entry": self.env.open_db(b"id2entry"),
            "dn2id": self.env.open_db(b"dn2id"),
            "children": self.env.open_db(b"children", **dup),
            "eq": self.env.open_db(b"eq", dupsort=True),
            "pres": self.env.open_db(b"pres", dupsort=True),
            "sub": self.env.open_db(b"sub", dupsort=True),
            "approx": self.env.open_db(b"approx", dupsort=True),
            "uuid": self.env.open_db(b"uuid", dupsort=True),
            "csn": self.env.open_db(b"csn", dupsort=True),
            "meta": meta,
            "aux": self.env.open_db(b"aux"),
            "journal": self.env.open_db(b"journal"),
        }
        self._id2entry = self.dbs["id2entry"]
        self._dn2id = self.dbs["dn2id"]
        self._children = self.dbs["children"]
        self._gen = 0  # bumped whenever the map is resized (which invalidates open transactions)
        self._write_lock = threading.Lock()
        self._writer: int | None = None  # thread ident of the open write transaction
        self._group_writer: Any = None  # the GroupWriter thread (backends/writer.py), made on first use
        # on the writer thread: the nested transaction of the running operation
        self._local = threading.local()
        self._cache: OrderedDict[int, tuple[bytes, Entry]] = OrderedDict()
        self.codec = EntryCodec(schema)
        self._type = self.codec.attribute_type
        self._attr_key = self.codec.attribute_key
        self._expand_types = self.codec.expand_types
        self._encode = self.codec.encode
        self._index_keys = self.codec.index_keys
        self._built: set[tuple[str, str]] = set()  # (type key, kind) usable by searches
        self._equality_shapes: dict[str, Any] = {}  # ReadTxn._equality_shape per description, with its inputs
        self._closed = False
        self._built_new: set[tuple[str, str]] = set()
        # called with each outermost write transaction right after it began, under LMDB's write lock: what
        # another process committed since is visible there (server/journal.py: CSNs across worker processes)
        self.on_begin: list[Callable[[WriteTxn], None]] = []
        self.set_indexes(indexes or {})

    def set_schema(self, schema: Any) -> None:
        """Use a new schema (after a schema change); index configuration is re-resolved."""
        self.schema = schema
        self.codec.set_schema(schema)
        self._cache.clear()

    # --- index configuration ----------------------------------------------------------------------------------

    def set_indexes(self, indexes: Mapping[str, Iterable[str]]) -> None:
        """Configure the attribute indexes (attribute name -> kinds).

        Index data of removed indexes is deleted. Added indexes are maintained from now on, but searches use them
        only after `reindex` (or immediately if the database is empty).
        """
        config = self.codec.resolve_indexes(indexes)
        wanted = {(k, kind) for k, kinds in config.items() for kind in kinds}

        def work(w: WriteTxn) -> None:
            txn = w._t
            meta = self.dbs["meta"]
            raw = txn.get(_M_BUILT, db=meta)
            built = set()
            if raw:
                for line in raw.decode().split("\n"):
                    if line:
                        k, _, kind = line.partition("\x00")
                        built.add((k, kind))
            if txn.get(_M_APPROX_KEYS, db=meta) != b"metaphone":
                # approx indexes written before the keys were slapd's metaphone ones cannot serve searches now
                built = {(k, kind) for k, kind in built if kind != "approx"}
                txn.drop(self.dbs["approx"], delete=False)
                txn.put(_M_APPROX_KEYS, b"metaphone", db=meta)
            for key, kind in sorted(built - wanted):
                self._drop_index(txn, key, kind)
            built &= wanted
            if txn.stat(self._id2entry)["entries"] == 0:
                built = set(wanted)
            txn.put(_M_BUILT, "\n".join(sorted(f"{k}\x00{v}" for k, v in built)).encode(), db=meta)
            self._built_new = built

        self._run_maintenance(work)
        self.codec.index_config = config
        self._built = self._built_new
        missing = sorted(wanted - self._built)
        if missing:
            log.warning(
                "indexes not built yet (run reindex / 'pyldapd index'): %s",
                ", ".join(f"{k} {v}" for k, v in missing),
            )

    def _drop_index(self, txn: Any, key: str, kind: str) -> None:
        db = self.dbs[kind]
        prefix = key.encode() if kind == "pres" else key.encode() + b"\x00"
        cur = txn.cursor(db)
        if not cur.set_range(prefix):
            return
        while True:
            k = cur.key()
            if not (k == prefix if kind == "pres" else k.startswith(prefix)):
                break
            if not cur.delete(dupdata=True):
                break
            if not cur.key():  # cursor ran past the end
                break

    @property
    def indexes_built(self) -> set[tuple[str, str]]:
        return set(self._built)

    def reindex(self) -> int:
        """Rebuild every index (attribute indexes, entryUUID, entryCSN) from the entries, like slapindex.

        Returns the number of entries processed. Runs in one write transaction.
        """
        result = [0]

        def work(w: WriteTxn) -> None:
            txn = w._t
            for name in _ALL_INDEX_DBS:
                txn.drop(self.dbs[name], delete=False)
            n = 0
            batch = IndexBatch(self.codec)
            cur = txn.cursor(self._id2entry)
            for k, rec in cur.iternext(keys=True, values=True):  # in id order, as IndexBatch wants
                batch.add(self._decode(_unpack_id(k), rec), k)
                n += 1
                if n % 10_000 == 0:
                    self._write_batch(txn, batch)
                    batch = IndexBatch(self.codec)
            self._write_batch(txn, batch)
            built = {(k, kind) for k, kinds in self.codec.index_config.items() for kind in kinds}
            txn.put(
                _M_BUILT, "\n".join(sorted(f"{k}\x00{v}" for k, v in built)).encode(), db=self.dbs["meta"]
            )
            self._built_new = built
            result[0] = n

        self._run_maintenance(work)
        self._built = self._built_new
        return result[0]

    def _write_batch(self, txn: Any, batch: IndexBatch) -> None:
        for name, items in _batch_items(batch.sealed(), None):
            txn.cursor(db=self.dbs[name]).putmulti(items, dupdata=True)

    # --- transactions -----------------------------------------------------------------------------------------

    def read(self) -> ReadTxn:
        """A read transaction (a snapshot); use as a context manager."""
        return ReadTxn(self)

    def write(self) -> WriteTxn:
        """The write transaction; use as a context manager (commit on clean exit, abort on exception)."""
        return WriteTxn(self)

    @property
    def writer(self) -> Any:
        """This environment's group-commit writer thread (`pyldapd.backends.writer.GroupWriter`)."""
        if self._group_writer is None:
            from pyldapd.backends.writer import GroupWriter

            self._group_writer = GroupWriter(self)
        return self._group_writer

    def current_write(self) -> WriteTxn | None:
        """On the writer thread, the nested transaction of the operation it runs; None anywhere else."""
        return getattr(self._local, "txn", None)

    @contextmanager
    def writing(self) -> Iterator[WriteTxn]:
        """A write transaction: on the writer thread the running operation's nested one (committed with its
        group), elsewhere one of its own."""
        nested = self.current_write()
        if nested is not None:
            yield nested
        else:
            with self.write() as txn:
                yield txn

    def _begin_read(self) -> Any:
        return self._begin(write=False)

    def _begin_write(self) -> Any:
        self._maybe_grow()
        return self._begin(write=True)

    def _begin(self, *, write: bool) -> Any:
        """A top-level transaction. Another process (worker) that grew the map past this process's size makes
        LMDB refuse it (MDB_MAP_RESIZED): adopt the size it wrote and begin again (bounded: it may grow again
        meanwhile, each time at least doubling)."""
        for _ in range(16):
            try:
                return self.env.begin(write=write, buffers=False)
            except lmdb.MapResizedError:
                self._adopt_map_size()
        return self.env.begin(write=write, buffers=False)

    def _adopt_map_size(self) -> None:
        """set_mapsize(0): the map size the last commit stored. py-lmdb invalidates every transaction of the
        environment open in this process, so a reader thread waits for this process's write transaction to end
        first (the writer thread, which holds the lock, adopts at once: no write of another process can then
        be past its map)."""
        if self._writer == threading.get_ident():
            self._resize(0)
            return
        with self._write_lock:
            self._resize(0)

    def _acquire_write(self) -> None:
        me = threading.get_ident()
        if self._writer == me:
            raise StorageError("a write transaction is already open in this thread")
        self._write_lock.acquire()
        self._writer = me

    def _release_write(self) -> None:
        self._writer = None
        self._write_lock.release()

    def _resize(self, size: int) -> None:
        # the generation moves first: a reader on another thread renews its snapshot rather than using the one
        # set_mapsize is about to invalidate (py-lmdb drains in-flight calls and invalidates every open txn)
        self._gen += 1
        self.env.set_mapsize(size)
        self._gen += 1

    def _map_used(self) -> tuple[int, int]:
        info = self.env.info()
        return (info["last_pgno"] + 1) * self._psize, info["map_size"]

    def _maybe_grow(self) -> None:
        used, size = self._map_used()
        if used * 4 > size * 3 and (self.max_mapsize is None or size < self.max_mapsize):
            self._grow(
                size
            )  # at the cap, a write that does not fit fails (MapFullError) rather than this one

    def _grow(self, size: int | None = None) -> None:
        """Double the map size (up to max_mapsize); raise StorageError when it cannot grow."""
        if size is None:
            size = self.env.info()["map_size"]
        new = size * 2
        if self.max_mapsize is not None:
            new = min(new, self.max_mapsize)
            if new <= size:
                raise DatabaseFull("database full (maxsize reached)")
        log.info("growing the LMDB map of %s from %d to %d bytes", self.directory, size, new)
        self._resize(new)

    def _run_maintenance(self, work: Any) -> None:
        """Run work(WriteTxn) in a write transaction, redoing it from scratch if the map is full."""
        self._acquire_write()
        try:
            while True:
                w = WriteTxn(self, replayable=False)
                w._t = self._begin_write()
                try:
                    work(w)
                    w._t.commit()
                    self._cache.clear()
                    return
                except lmdb.MapFullError:
                    w._t.abort()
                    self._grow()
                except BaseException:
                    w._t.abort()
                    raise
        finally:
            self._release_write()

    # --- encoding ---------------------------------------------------------------------------------------------

    def _decode(self, eid: int, rec: bytes, keep: bool = True) -> Entry:
        """The entry of a record, through the entry cache; `keep` False: not added to it (a scan)."""
        cached = self._cache.get(eid)
        if cached is not None and cached[0] == rec:
            try:
                self._cache.move_to_end(eid)
            except KeyError:  # the writer thread dropped it meanwhile: the entry is still the right one
                pass
            return cached[1]
        version, _parent, ln, ld, lu = _HDR.unpack_from(rec)
        o = _HDR_SIZE + ln
        dn = rec[o : o + ld].decode("utf-8", "surrogateescape")
        o += ld
        ublob = rec[o : o + lu]
        order = None
        if version == _RECORD_VERSION:
            oblob = rec[o + lu :]
        else:  # the attributes' order after the two lists
            end = len(rec) - _ORDER_SIZE.size
            start = end - _ORDER_SIZE.unpack_from(rec, end)[0]
            oblob = rec[o + lu : start]
            order = rec[start:end]
        attrs: dict[str, Attribute] = {}
        key_of = self._attr_key
        # the version this record replaces, when still cached: a large attribute whose encoding it kept (or added
        # to) keeps its decoded values, and what they were found to hold (Attribute.normalized)
        older = cached[1] if cached is not None and len(rec) > _REUSE_RECORD else None
        spans = self.codec.attribute_spans(older) if older is not None else None
        user = self._attributes(ublob, older, spans)
        oper = self._attributes(oblob, older, spans)
        if order is None:
            items = user + oper
        else:  # interleaved as written
            kinds = (iter(user), iter(oper))
            items = [next(kinds[kind]) for kind in order]
        for attribute in items:
            key = key_of(attribute.name)
            prev = attrs.get(key)
            # met twice: a new Attribute (`prev` may be the older version's)
            attrs[key] = attribute if prev is None else Attribute(prev.name, prev.values + attribute.values)
        entry = Entry(dn, attrs, eid, ublob, oblob if order is None else None)
        if keep:
            self._keep(eid, rec, entry)
        return entry

    def _keep(self, eid: int, rec: bytes, entry: Entry) -> None:
        """Put an entry in the entry cache under its record."""
        if self.cache_size > 0:
            cache = self._cache
            cache[eid] = (rec, entry)
            if len(cache) > self.cache_size:
                try:
                    cache.popitem(last=False)
                except KeyError:  # emptied by the other thread (the loop reads while the writer writes)
                    pass

    def _attributes(self, blob: bytes, older: Entry | None, spans: dict | None) -> list[Attribute]:
        """The attributes of one of a record's lists (reusing the older version's where `spans` says so)."""
        if not blob:
            return []
        if spans is None:
            return [Attribute(name, values) for name, values in decode_partial_attribute_list(blob)]
        return _decode_reusing(blob, older, spans, self._attr_key)  # type: ignore[arg-type]

    # --- misc -------------------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Flush everything to disk (needed after writes with sync=False)."""
        self.env.sync(True)

    def stat(self) -> dict[str, Any]:
        used, size = self._map_used()
        return {"map_size": size, "map_used": used, "entries": self.env.stat()["entries"]}

    def close(self) -> None:
        if self._closed:
            return
        if self._group_writer is not None:
            self._group_writer.stop()  # queued operations are committed first
        self._closed = True
        if not self.sync_writes:
            self.env.sync(True)
        self._cache.clear()
        self.env.close()

    def __enter__(self) -> MdbDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReadTxn:
    """A read-only snapshot of the database. Use as a context manager; `close()` ends it explicitly."""

    def __init__(self, db: MdbDatabase) -> None:
        self.db = db
        self._gen = db._gen
        try:  # (one per search: _begin's retries only when another process grew the map)
            self._t: Any = db.env.begin(write=False, buffers=False)
        except lmdb.MapResizedError:
            self._t = db._begin_read()

    # -- plumbing --

    def __enter__(self) -> ReadTxn:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        t = self._t
        if t is not None:
            self._t = None
            if self._gen == self.db._gen:
                t.abort()

    def _check(self) -> Any:
        """The lmdb transaction, renewed if a map resize invalidated it."""
        if self._gen != self.db._gen:
            if self._t is None:
                raise StorageError("transaction is closed")
            self._gen = self.db._gen
            self._t = self.db._begin_read()
        t = self._t
        if t is None:
            raise StorageError("transaction is closed")
        return t

    def _id_of(self, ndn: str) -> bytes | None:
        if not ndn:
            # LMDB refuses an empty key. The empty DN is never stored: over a database whose suffix is "" it is
            # the root every top-level entry hangs from (back-mdb's id 0), elsewhere it is outside the database
            return _ROOT_PARENT if not self.db.suffix_ndn else None
        return self._check().get(ndn.encode("utf-8", "surrogateescape"), db=self.db._dn2id)

    def _entry(self, idb: bytes, keep: bool = True) -> Entry | None:
        rec = self._check().get(idb, db=self.db._id2entry)
        if rec is None:
            return None
        return self.db._decode(_unpack_id(idb), rec, keep)

    def _child_ids(self, idb: bytes) -> list[bytes]:
        cur = self._check().cursor(self.db._children)
        if not cur.set_key(idb):
            return []
        return list(cur.iternext_dup(keys=False, values=True))

    # -- lookups --

    def get(self, ndn: str) -> Entry | None:
        if not ndn:
            # back-mdb's root entry: over a database whose suffix is "", the empty DN reads as an entry without
            # attributes (its top-level entries' parent, a search's base); never stored, never a candidate
            return Entry("") if not self.db.suffix_ndn else None
        idb = self._id_of(ndn)
        return None if idb is None else self._entry(idb)

    def get_by_id(self, entry_id: int) -> Entry | None:
        return self._entry(_pack_id(entry_id))

    def id_of(self, ndn: str) -> int | None:
        idb = self._id_of(ndn)
        return None if idb is None else _unpack_id(idb)

    def exists(self, ndn: str) -> bool:
        return self._id_of(ndn) is not None

    def has_children(self, ndn: str) -> bool:
        idb = self._id_of(ndn)
        if idb is None:
            return False
        cur = self._check().cursor(self.db._children)
        return cur.set_key(idb)

    def nearest_ancestor(self, ndn: str) -> Entry | None:
        """The deepest existing entry strictly above ndn (within this database), or None."""
        suffix = self.db.suffix_ndn
        p = ndn
        while p and p != suffix:
            p = parent_dn(p)
            if not p or (p != suffix and not is_descendant(p, suffix)):
                return None  # (the root above a database whose suffix is "" is no entry)
            entry = self.get(p)
            if entry is not None:
                return entry
        return None

    def _matched(self, ndn: str) -> str:
        entry = self.nearest_ancestor(ndn)
        return entry.dn if entry is not None else ""

    def count(self) -> int:
        return int(self._check().stat(self.db._id2entry)["entries"])

    def children(self, ndn: str) -> Iterator[Entry]:
        idb = self._id_of(ndn)
        if idb is None:
            return
        for cid in self._child_ids(idb):
            entry = self._entry(cid)
            if entry is not None:
                yield entry

    def by_uuid(self, uuid: bytes) -> Entry | None:
        run = self._check().get(bytes(uuid), db=self.db.dbs["uuid"])
        return None if run is None else self._entry(run[:8])

    def csn_after(self, csn: str | bytes) -> Iterator[Entry]:
        """Entries whose entryCSN is greater than csn, in ascending entryCSN order."""
        raw = self._csn_key(csn.encode() if isinstance(csn, str) else bytes(csn))
        cur = self._check().cursor(self.db.dbs["csn"])
        ids: list[bytes] = []
        if cur.set_range(raw):
            for k, v in cur.iternext(keys=True, values=True):
                if k != raw:
                    ids.extend([v[i : i + 8] for i in range(0, len(v), 8)])
        del cur
        for idb in ids:
            entry = self._entry(idb)
            if entry is not None:
                yield entry

    def _csn_key(self, csn: bytes) -> bytes:
        """A CSN as the csn index keys it (normalized by entryCSN's equality rule; as given if it is none)."""
        at = self.db._type("entrycsn")
        if at is not None and at.equality is not None:
            return at.equality.normalize(csn) or csn
        return csn

    def newest_csn(self, sid: int, after: str = "") -> str | None:
        """The greatest entryCSN of server `sid` above `after`, from the csn index's keys alone: walked back from
        the newest, no entry read (a start over a million entries of other servers' CSNs reads no entry)."""
        floor = self._csn_key(after.encode()) if after else b""
        cur = self._check().cursor(self.db.dbs["csn"])
        try:
            if not cur.last():
                return None
            for key in cur.iterprev_nodup(keys=True, values=False):
                if key <= floor:
                    return None
                try:
                    if sid_of(key) == sid:
                        return key.decode("ascii", "replace")
                except ValueError:  # not a CSN (never written by this server): not anyone's
                    continue
            return None
        finally:
            cur.close()

    def get_raw_metadata(self, key: bytes) -> bytes | None:
        return self._check().get(key, db=self.db.dbs["aux"])

    def raw_metadata_items(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """The side table's records whose key starts with prefix, in key order."""
        items = []
        with self._check().cursor(db=self.db.dbs["aux"]) as cur:
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    items.append((bytes(key), bytes(value)))
        return items

    def journal_after(self, seq: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """The journal's records after `seq`, oldest first (at most `limit`)."""
        cur = self._check().cursor(db=self.db.dbs["journal"])
        out: list[tuple[int, bytes]] = []
        if not cur.set_range(_pack_id(seq + 1)):
            return out
        for key, value in cur:
            out.append((_unpack_id(key), value))
            if len(out) >= limit:
                break
        return out

    def journal_last(self) -> int:
        """The sequence number of the journal's latest record (0: empty)."""
        cur = self._check().cursor(db=self.db.dbs["journal"])
        return _unpack_id(cur.key()) if cur.last() else 0

    def journal_bytes(self) -> int:
        """The size of the journal's records together (counted once, from the records, where a database
        written before this count has none)."""
        t = self._check()
        stored = t.get(_M_JOURNAL_BYTES, db=self.db.dbs["meta"])
        if stored is not None:
            return _unpack_id(stored)
        cur = t.cursor(db=self.db.dbs["journal"])
        return sum(len(value) for value in cur.iternext(keys=False, values=True))

    def next_id(self) -> int:
        """The id the next added entry gets."""
        return _unpack_id(self._check().get(_M_NEXT_ID, db=self.db.dbs["meta"]))

    # -- search --

    def search(
        self,
        base_ndn: str,
        scope: Scope,
        filter: Filter | None = None,
        *,
        unchecked: int = -1,
        base_entry_id: int | None = None,
    ) -> Iterator[Entry]:
        """Entries in scope that may match `filter` (a superset: the caller evaluates the filter).

        Indexed filters yield ids ascending; unindexed one-level scans yield children by id, unindexed subtree
        scans of the suffix yield every entry by id (back-mdb's order), those below it depth first, parents before
        children. Lazy: stop iterating whenever you like.
        A missing base yields nothing: check `exists`/`nearest_ancestor` first for noSuchObject and matchedDN.
        `unchecked` >= 0 is slapd's `size.unchecked`: TooManyCandidates is raised (before any entry) when both
        the candidates (the index's answer, or every entry of the database when the filter is not indexed)
        and the entries in scope are more than that, as back-mdb decides.
        `base_entry_id`: the base's id when the caller read it in this transaction already.
        """
        db = self.db
        base_id = self._id_of(base_ndn) if base_entry_id is None else _pack_id(base_entry_id)
        if base_id is None:
            return
        if scope == Scope.BASE:
            entry = self._entry(base_id)
            if entry is not None:
                yield entry
            return
        plan = self._plan(filter) if filter is not None else None
        if plan is not None and plan[0] == "empty":
            return
        ids = sorted(self._ids(plan)) if plan is not None and unchecked >= 0 else None
        if unchecked >= 0:
            candidates = len(ids) if ids is not None else self.count()
            if candidates > unchecked and self._scope_size(base_ndn, base_id, scope, unchecked) > unchecked:
                raise TooManyCandidates(candidates)
        if plan is not None and scope == Scope.ONE:
            cur = self._check().cursor(db._children)
            nchildren = cur.count() if cur.set_key(base_id) else 0
            del cur
            if nchildren <= (len(ids) if ids is not None else self._estimate(plan)):
                plan = None
        whole_db = scope == Scope.SUB and base_ndn == db.suffix_ndn
        if plan is None:
            if scope != Scope.ONE and base_ndn == db.suffix_ndn and db.scan_by_id:  # the whole database
                yield from self._scan_ids(skip=base_id if scope == Scope.CHILDREN else None)
            else:
                yield from self._scan_scope(base_id, scope)
            return
        if ids is None:
            ids = sorted(self._ids(plan))
        base_b = base_ndn.encode("utf-8", "surrogateescape")
        base_pid = _unpack_id(base_id)
        id2entry = db._id2entry
        keep = SCAN_CACHED
        for i in ids:
            idb = _pack_id(i)
            rec = self._check().get(idb, db=id2entry)
            if rec is None:
                continue
            if not whole_db:
                _v, parent, ln, _ld, _lu = _HDR.unpack_from(rec)
                if scope == Scope.ONE:
                    if parent != base_pid:
                        continue
                elif parent != base_pid:  # (a child of the base is in subtree or children scope)
                    ndn_b = rec[_HDR_SIZE : _HDR_SIZE + ln]
                    if ndn_b == base_b:
                        if scope == Scope.CHILDREN:
                            continue
                    elif not is_descendant(ndn_b.decode("utf-8", "surrogateescape"), base_ndn):
                        continue
            if keep:
                keep -= 1
            yield db._decode(i, rec, keep > 0)

    def _scope_size(self, base_ndn: str, base_id: bytes, scope: Scope, stop: int) -> int:
        """Entries in scope, as back-mdb counts them for `size.unchecked` (a subtree counts its base), or any
        number above `stop` once it is known to be larger."""
        if scope == Scope.ONE:
            cur = self._check().cursor(self.db._children)
            return cur.count() if cur.set_key(base_id) else 0
        if base_ndn == self.db.suffix_ndn:
            return self.count()
        size = 0
        stack = [base_id]
        while stack and size <= stop:
            size += 1
            stack.extend(self._child_ids(stack.pop()))
        return size

    def _scan_ids(self, skip: bytes | None) -> Iterator[Entry]:
        """Every entry of the database (but `skip`) in id order: back-mdb's order for a search over its whole tree
        (the candidates, all ids, not a walk of the tree: its suffix's subtree is not smaller), so a child added
        before a sibling's descendants comes out before them, and one moved under a newer parent before it."""
        db = self.db
        keep = SCAN_CACHED
        after: bytes | None = None
        while True:
            # a map resize (the writer thread) renews this snapshot (`_check`) and ends the cursor: reopened after
            # the last id read
            t = self._check()
            gen = db._gen
            cur = t.cursor(db._id2entry)
            if after is None:
                more = cur.first()
            else:
                more = cur.set_range(after)
                if more and cur.key() == after:
                    more = cur.next()
            while more:
                idb = cur.key()
                after = idb
                if idb != skip:
                    if keep:
                        keep -= 1
                    yield db._decode(_unpack_id(idb), cur.value(), keep > 0)
                    if db._gen != gen:
                        break
                more = cur.next()
            else:
                return

    def _scan_scope(self, base_id: bytes, scope: Scope) -> Iterator[Entry]:
        keep = SCAN_CACHED
        if scope == Scope.ONE:
            for cid in self._child_ids(base_id):
                if keep:
                    keep -= 1
                entry = self._entry(cid, keep > 0)
                if entry is not None:
                    yield entry
            return
        # depth first, parents before children, siblings by id
        stack: list[bytes] = [base_id]
        first = True
        while stack:
            idb = stack.pop()
            if not (first and scope == Scope.CHILDREN):
                if keep:
                    keep -= 1
                entry = self._entry(idb, keep > 0)
                if entry is not None:
                    yield entry
            first = False
            kids = self._child_ids(idb)
            if kids:
                kids.reverse()
                stack.extend(kids)

    # -- query planning --

    def _plan(self, f: Filter) -> _Plan | None:
        db = self.db
        if type(f) is Equality:  # the most common search: its attribute's index keys, worked out once
            shape = db._equality_shapes.get(f.attr)
            if shape is None or shape[0] is not db._built or shape[1] is not db.schema.derived:
                if len(db._equality_shapes) > 1024:
                    db._equality_shapes.clear()
                shape = db._equality_shapes[f.attr] = (
                    db._built,
                    db.schema.derived,
                    self._equality_shape(f.attr),
                )
            steps = shape[2]
            if steps is None:
                return None
            if steps is not _GENERAL:
                keys = []
                for prefix, normalize in steps:
                    n = normalize(f.value)
                    if n is not None:  # else Undefined for every value of this type: no key
                        keys.append(_ikey(prefix, n))
                return ("keys", "eq", keys) if keys else _EMPTY
        if isinstance(f, And):
            parts = [p for p in (self._plan(x) for x in f.filters) if p is not None]
            if not parts:
                return None
            if any(p[0] == "empty" for p in parts):
                return _EMPTY
            return parts[0] if len(parts) == 1 else ("and", parts)
        if isinstance(f, Or):
            if not f.filters:
                return _EMPTY
            parts = []
            groups: dict[str, list[bytes]] = {}  # equality terms by attribute, planned together
            order: list[Filter | str] = []  # the other members, and each group's attribute
            for x in f.filters:
                if type(x) is Equality:
                    values = groups.get(x.attr)
                    if values is None:
                        groups[x.attr] = [x.value]
                        order.append(x.attr)
                    else:
                        values.append(x.value)
                else:
                    order.append(x)
            for item in order:
                p = self._plan_equalities(item, groups[item]) if type(item) is str else self._plan(item)  # type: ignore[arg-type]
                if p is None:
                    return None
                if p[0] != "empty":
                    parts.append(p)
            if not parts:
                return _EMPTY
            return parts[0] if len(parts) == 1 else _union(parts)
        if isinstance(f, (Equality, Present, Substrings, Approx)):
            desc = f.attr
            base = desc.partition(";")[0]
            at = db._type(base.lower()) or db.schema.attribute_type(base)
            if at is None:
                return None  # unknown attribute: the evaluator decides (Undefined)
            if isinstance(f, Present) and at.key == "objectclass":
                return None  # every entry has one
            if isinstance(f, Equality) and at.key == "entryuuid" and at.equality is not None:
                n = at.equality.normalize_assertion(f.value)
                if n is not None and len(n) == 16:
                    return ("keys", "uuid", [n])
            plans: list[_Plan] = []
            for t in db._expand_types(at):
                p = self._plan_type(f, t)
                if p is None:
                    return None
                if p[0] != "empty":
                    plans.append(p)
            if not plans:
                return _EMPTY
            if len(plans) == 1:
                return plans[0]
            if all(p[0] == "keys" and p[1] == plans[0][1] for p in plans):
                return ("keys", plans[0][1], [k for p in plans for k in p[2]])
            return ("or", plans)
        return None  # Not, ordering, extensible: unindexed

    def _equality_shape(self, desc: str) -> Any:
        """How `desc=value` is planned, whatever the value: None (not indexed: the evaluator decides), _GENERAL
        (entryUUID: `_plan`'s general path), else (key prefix, normalize) for each type the description covers,
        as `_plan_type` would make them."""
        db = self.db
        base = desc.partition(";")[0]
        at = db._type(base.lower()) or db.schema.attribute_type(base)
        if at is None:
            return None
        if at.key == "entryuuid":
            return _GENERAL
        steps = []
        for t in db._expand_types(at):
            rule = t.equality
            if (t.key, "eq") not in db._built or rule is None or getattr(rule, "_word", False):
                return None
            steps.append((t.key.encode() + b"\x00", rule.normalize_assertion))
        return steps

    def _plan_equalities(self, desc: str, values: list[bytes]) -> _Plan | None:
        """The plan of an OR of `desc=value` terms: the attribute resolved once, one key per value and type."""
        db = self.db
        base = desc.partition(";")[0]
        at = db._type(base.lower()) or db.schema.attribute_type(base)
        if at is None:
            return None  # unknown attribute: the evaluator decides (Undefined)
        if at.key == "entryuuid":
            plans = [self._plan(Equality(desc, v)) for v in values]
            if any(p is None for p in plans):
                return None
            found = [p for p in plans if p is not None and p[0] != "empty"]
            return _union(found) if found else _EMPTY
        keys: list[bytes] = []
        for t in db._expand_types(at):
            rule = t.equality
            if (t.key, "eq") not in db._built or rule is None or getattr(rule, "_word", False):
                return None
            prefix = t.key.encode() + b"\x00"
            # a value Undefined for this type (None) has no key
            keys += [
                k if len(k := prefix + n) <= _MAX_KEY else _ikey(prefix, n)
                for n in rule.normalize_assertions(values)
                if n is not None
            ]
        return ("keys", "eq", list(dict.fromkeys(keys))) if keys else _EMPTY

    def _plan_type(self, f: Filter, at: Any) -> _Plan | None:
        built = self.db._built
        key = at.key
        prefix = key.encode() + b"\x00"
        if isinstance(f, Equality):
            rule = at.equality
            if (key, "eq") not in built or rule is None or getattr(rule, "_word", False):
                return None
            n = rule.normalize_assertion(f.value)
            if n is None:
                return _EMPTY  # Undefined for every value of this type
            return ("keys", "eq", [_ikey(prefix, n)])
        if isinstance(f, Present):
            if (key, "pres") not in built:
                return None
            return ("keys", "pres", [key.encode()])
        if isinstance(f, Approx):
            # as slapd's approx_candidates: the entries having every word's phonetic key (the filter is then
            # tested on each); a word without letters has an empty key, under which slapd finds nothing; rules
            # without an approximate form are keyed by the normalized value
            rule = at.equality
            if (key, "approx") not in built or rule is None or rule.oid == UNIQUE_MEMBER_MATCH:
                return None  # (uniqueMember's `~=` ignores a UID its key holds: the evaluator decides)
            n = rule.normalize_assertion(f.value)
            if n is None:
                return _EMPTY
            if rule.oid not in _APPROX_RULES:
                return ("keys", "approx", [_ikey(prefix, n)])
            words = approx_filter_keys(n)
            if not words:
                return None
            if not all(words):
                return _EMPTY
            return ("and", [("keys", "approx", [_ikey(prefix, k)]) for k in dict.fromkeys(words)])
        if isinstance(f, Substrings):
            rule = at.substr
            if (key, "sub") not in built or rule is None:
                return None
            nsub = rule.normalize_substring
            keys: list[bytes] = []

            def enc(s: str) -> bytes:
                return s.encode("utf-8", "surrogatepass")

            if f.initial is not None:
                c = nsub(f.initial)
                if c is None:
                    return _EMPTY
                if c:
                    keys.append(_ikey(prefix + _SUB_PREFIX, enc(c[:_GRAM])))
                    keys.extend(_ikey(prefix + _SUB_GRAM, enc(g)) for g in _grams(c))
            for piece in f.any:
                c = nsub(piece)
                if c is None:
                    return _EMPTY
                keys.extend(_ikey(prefix + _SUB_GRAM, enc(g)) for g in _grams(c))
            if f.final is not None:
                c = nsub(f.final)
                if c is None:
                    return _EMPTY
                if c:
                    keys.append(_ikey(prefix + _SUB_SUFFIX, enc(c[-_GRAM:])))
                    keys.extend(_ikey(prefix + _SUB_GRAM, enc(g)) for g in _grams(c))
            if not keys:
                return None
            unique = list(dict.fromkeys(keys))
            if len(unique) == 1:
                return ("keys", "sub", unique)
            return ("and", [("keys", "sub", [k]) for k in unique])
        return None

    def _estimate(self, plan: _Plan) -> int:
        kind = plan[0]
        if kind == "keys":
            cur = self._check().cursor(self.db.dbs[plan[1]])
            total = 0
            for k in plan[2]:
                if cur.set_key(k):
                    total += sum(len(run) for run in cur.iternext_dup(keys=False, values=True)) >> 3
            return total
        if kind == "and":
            return min(self._estimate(p) for p in plan[1])
        if kind == "or":
            return sum(self._estimate(p) for p in plan[1])
        return 0

    def _ids(self, plan: _Plan) -> set[int]:
        kind = plan[0]
        if kind == "keys":
            cur = self._check().cursor(self.db.dbs[plan[1]])
            out: set[int] = set()
            for k in sorted(plan[2]):  # in key order: neighbouring lookups share B-tree pages
                if cur.set_key(k):
                    for run in cur.iternext_dup(keys=False, values=True):
                        out.update(_RUNS[len(run) >> 3].unpack(run))
            return out
        if kind == "or":
            out = set()
            for p in plan[1]:
                out |= self._ids(p)
            return out
        if kind == "and":
            parts = sorted(((self._estimate(p), p) for p in plan[1]), key=lambda x: x[0])
            result = self._ids(parts[0][1])
            for est, p in parts[1:]:
                if len(result) <= _SMALL_SET:
                    break
                # probing costs a lookup per (candidate, key): only when far cheaper than reading the part
                if est > _PROBE_RATIO * len(result) and (p[0] != "keys" or len(p[2]) * len(result) <= est):
                    if p[0] != "keys":
                        continue  # a superset is fine
                    cur = self._check().cursor(self.db.dbs[p[1]])
                    keys = p[2]
                    result = {i for i in result if any(_run_holds(cur, k, i) for k in keys)}
                else:
                    result &= self._ids(p)
            return result
        return set()


def _union(parts: list[_Plan]) -> _Plan:
    """An OR of plans: the keys of one index merged into one lookup list (an OR of 10,000 equality terms is
    one pass over one cursor, not 10,000 plans)."""
    keys: dict[str, dict[bytes, None]] = {}
    rest: list[_Plan] = []
    for p in parts:
        if p[0] == "keys":
            keys.setdefault(p[1], {}).update(dict.fromkeys(p[2]))
        else:
            rest.append(p)
    merged = [("keys", index, list(ks)) for index, ks in keys.items()] + rest
    return merged[0] if len(merged) == 1 else ("or", merged)


def _batch_items(
    sealed: Mapping[str, tuple[list[bytes], list[bytes]]], skip: set[bytes] | None
) -> Iterator[tuple[str, list[tuple[bytes, bytes]]]]:
    """(index sub-database, sorted (key, value) pairs) of an `IndexBatch.sealed()`, without the ids in skip."""
    for name, (keys, runs) in sealed.items():
        if skip:
            items = []
            for key, run in zip(keys, runs, strict=True):
                kept = b"".join([run[i : i + 8] for i in range(0, len(run), 8) if run[i : i + 8] not in skip])
                if kept:
                    items.append((key, kept))
        else:
            items = list(zip(keys, runs, strict=True))
        if items:
            yield name, items


class CommitFailed(StorageError):
    """LMDB refused to commit a write transaction (I/O error, disk full...): nothing of it was stored."""

    def __init__(self, message: str, failed_text: str = "commit failed") -> None:
        super().__init__(message)
        self.failed_text = failed_text  # what the client is told (back-mdb's text for the operation)


class _CommitFault:
    """Test-only fault injection, off unless PYLDAPD_FAULT_COMMIT is set (read once, at import).

    ``N`` fails the Nth write commit of the process, ``N-M`` the Nth to the Mth; a path (``/...``) fails every
    write commit while that file exists; ``meta=KEY`` fails every write commit that stores the metadata KEY
    (``meta=contextCSN``: every commit that would move the contextCSN vector, whatever the group it is in). A
    failed commit is aborted and raises as a real I/O error would.
    """

    def __init__(self, spec: str) -> None:
        self.path: str | None = None
        self.meta: bytes | None = None
        self.first = self.last = 0
        self.count = 0
        if spec.startswith("/"):
            self.path = spec
        elif spec.startswith("meta="):
            self.meta = spec[5:].encode()
        elif spec:
            first, _, last = spec.partition("-")
            self.first = int(first)
            self.last = int(last) if last else self.first

    def hit(self, txn: WriteTxn) -> bool:
        if self.path is not None:
            return os.path.exists(self.path)
        if self.meta is not None:
            aux = txn.db.dbs["aux"]
            return any(dbh is aux and key == self.meta for _, dbh, key, _ in txn._log)
        self.count += 1
        return self.first <= self.count <= self.last


# Test-only, off unless set: PYLDAPD_INITIAL_MAPSIZE=N opens a database without maxsize with an N-byte map
# (instead of 10 GiB), so that a test sees it grow by writes (across worker processes too) in seconds
_INITIAL_MAPSIZE = int(os.environ.get("PYLDAPD_INITIAL_MAPSIZE", "0") or 0)
_FAULT_SPEC = os.environ.get("PYLDAPD_FAULT_COMMIT", "")
_FAULT = _CommitFault(_FAULT_SPEC) if _FAULT_SPEC else None


def _replay(t: Any, writes: list[tuple[int, Any, Any, bytes | None]]) -> None:
    """Redo logged low-level writes in a fresh transaction (after the map grew)."""
    for op, dbh, key, value in writes:
        if op == 0:
            t.put(key, value, db=dbh)
        elif op == 2:
            t.cursor(db=dbh).putmulti(key, dupdata=True)
        else:
            t.delete(key, value if value is not None else b"", db=dbh)


def _run_holds(cur: Any, key: bytes, eid: int) -> bool:
    run = _find_run(cur, key, _pack_id(eid))
    return run is not None and eid in _run_ids(run)


class WriteTxn(ReadTxn):
    """The write transaction. Commits on a clean exit from the `with` block, aborts on an exception."""

    def __init__(self, db: MdbDatabase, *, replayable: bool = True) -> None:
        self.db = db
        self._gen = db._gen
        self._t = None
        self._replayable = replayable
        self._log: list[tuple[int, Any, bytes, bytes | None]] = []  # low-level writes, replayed after a grow
        self._touched: set[int] = set()
        self._entered = False
        # Effects on in-memory state (replication state, counters) that must happen only if this transaction
        # commits: run in order after a successful commit, dropped on abort or a failed commit.
        self._on_commit: list[Callable[[], None]] = []
        # per-transaction working copies of such state, keyed by their owner
        self.pending: dict[Any, Any] = {}
        # run in the committing thread right after the commit, before the effects (which a group writer hands
        # to the event loop): what the next transaction must start from (the committed contextCSN vector)
        self._here: list[Callable[[], None]] = []
        self._parent: WriteTxn | None = None  # set on a nested transaction (`child`)
        self.failed_text = "commit failed"  # the text a client gets if this operation's commit fails

    def on_commit(self, effect: Callable[[], None]) -> None:
        """Run `effect` once this transaction has committed (never if it aborts or its commit fails)."""
        self._on_commit.append(effect)

    def on_commit_here(self, hook: Callable[[], None]) -> None:
        """Run `hook` in the committing thread as soon as the outermost transaction has committed."""
        self._here.append(hook)

    def inherited(self, owner: Any) -> Any:
        """The working copy of owner's state held by an enclosing transaction, or None."""
        parent = self._parent
        while parent is not None:
            found = parent.pending.get(owner)
            if found is not None:
                return found
            parent = parent._parent
        return None

    # -- nested transactions (one operation of a group commit, backends/writer.py) --

    def child(self) -> WriteTxn:
        """A nested write transaction in this one: its writes are visible to this transaction's later
        children once it commits into it (`commit_child`), and vanish alone if it aborts (`abort_child`).
        Valid because the environment does not use MDB_WRITEMAP."""
        nested = type(self)(self.db)  # a database's own transaction kind (back-ldif records its files)
        nested._parent = self
        nested._t = self.db.env.begin(write=True, parent=self._t, buffers=False)
        nested._gen = self._gen
        nested._entered = True
        return nested

    def commit_child(self) -> list[Callable[[], None]]:
        """Fold this nested transaction into its parent; returns its on-commit effects, which the caller runs
        once the outermost transaction has committed."""
        parent = self._parent
        assert parent is not None
        while True:
            try:
                self._t.commit()
                break
            except lmdb.MapFullError:
                self._regrow()
        self._t = None
        parent._log.extend(self._log)
        parent._touched |= self._touched
        parent.pending.update(self.pending)
        parent._here.extend(self._here)
        effects, self._on_commit = self._on_commit, []
        return effects

    @contextmanager
    def savepoint(self) -> Iterator[WriteTxn]:
        """A nested transaction in this one (on the writer thread, the current one while it runs): folded in on
        a clean exit, rolled back alone on an exception (a replicated change that fails and is skipped)."""
        inner = self.child()
        local = self.db._local
        outer = getattr(local, "txn", None)
        local.txn = inner
        try:
            yield inner
            for effect in inner.commit_child():
                self.on_commit(effect)
        except BaseException:
            inner.abort_child()
            raise
        finally:
            local.txn = outer

    def abort_child(self) -> None:
        if self._t is not None:
            self._t.abort()
            self._t = None
        self._on_commit = []
        self._here = []
        self.pending = {}
        self._invalidate()

    def __enter__(self) -> WriteTxn:
        self.db._acquire_write()
        try:
            self._t = self.db._begin_write()
            self._gen = self.db._gen
        except BaseException:
            self.db._release_write()
            raise
        self._entered = True
        try:
            for hook in self.db.on_begin:
                hook(self)
        except BaseException:
            self._abort()
            self._t = None
            self._entered = False
            self.db._release_write()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is None:
                self._commit()
            else:
                self._abort()
        finally:
            self._t = None
            self._entered = False
            self.db._release_write()

    def _commit(self) -> None:
        effects, self._on_commit = self._on_commit, []
        self.pending = {}
        try:
            while True:
                try:
                    if _FAULT is not None and _FAULT.hit(self):
                        self._t.abort()
                        raise lmdb.Error("mdb_txn_commit: Input/output error (PYLDAPD_FAULT_COMMIT)")
                    self._t.commit()
                    break
                except lmdb.MapFullError:
                    self._regrow()
        except lmdb.Error as exc:
            # mdb_txn_commit failed: LMDB has already freed the transaction and nothing of it is stored
            log.error("commit failed in %s: %s", self.db.directory, exc)
            self._here = []
            raise CommitFailed(str(exc)) from exc
        finally:
            self._invalidate()
        here, self._here = self._here, []
        for hook in here:
            hook()
        for effect in effects:
            effect()

    def _abort(self) -> None:
        self._on_commit = []
        self._here = []
        self.pending = {}
        if self._t is not None:
            self._t.abort()
        self._invalidate()

    def _invalidate(self) -> None:
        cache = self.db._cache
        for i in self._touched:
            cache.pop(i, None)
        self._touched.clear()

    def _check(self) -> Any:
        t = self._t
        if t is None:
            raise StorageError("write transaction is not open (use it as a context manager)")
        return t

    def close(self) -> None:  # a write transaction ends with its `with` block
        pass

    def _regrow(self) -> None:
        """Map full: abort, grow the map, start over and replay the low-level writes done so far."""
        if not self._replayable:
            raise DatabaseFull("map full in a non-replayable transaction")
        parent = self._parent
        if parent is not None:
            # a nested transaction: LMDB cannot resize under a live write transaction, so both go, the map
            # grows, the parent replays the operations committed into it so far and this one its own writes
            self._t.abort()
            self._t = None
            parent._t.abort()
            parent._t = None
            try:
                self.db._grow()
            finally:  # past maxsize, only this operation fails: the group goes on without it
                parent._t = self.db._begin(write=True)
                parent._gen = self._gen = self.db._gen
                _replay(parent._t, parent._log)
            self._t = self.db.env.begin(write=True, parent=parent._t, buffers=False)
            _replay(self._t, self._log)
            return
        self._t.abort()
        self._t = None
        self.db._grow()
        self._t = self.db._begin(write=True)
        self._gen = self.db._gen
        _replay(self._t, self._log)

    def _op(self, fn: Any, *args: Any) -> Any:
        mark = len(self._log)
        while True:
            try:
                return fn(*args)
            except lmdb.MapFullError:
                del self._log[mark:]
                self._regrow()
            except lmdb.BadValsizeError as exc:  # LMDB checked the size before writing: nothing of it stored
                del self._log[mark:]
                raise KeyTooLong(str(exc)) from None

    # low-level writes, logged for replay
    def _put(self, key: bytes, value: bytes, dbh: Any) -> None:
        self._t.put(key, value, db=dbh)
        self._log.append((0, dbh, key, value))

    def _put_many(self, items: list[tuple[bytes, bytes]], dbh: Any) -> None:
        self._t.cursor(db=dbh).putmulti(items, dupdata=True)
        self._log.append((2, dbh, items, None))  # type: ignore[arg-type]

    def _del(self, key: bytes, value: bytes | None, dbh: Any) -> None:
        self._t.delete(key, value if value is not None else b"", db=dbh)
        self._log.append((1, dbh, key, value))

    def _apply_index(
        self, idb: bytes, old: _IndexKeys | None, new: _IndexKeys | None, *, fresh: bool = False
    ) -> None:
        """Index changes of one entry. fresh: its id is above every stored id (a new entry), so no stored value's
        range can hold it and its keys are written as they are."""
        dbs = self.db.dbs
        for name in _ALL_INDEX_DBS:
            o = getattr(old, name) if old is not None else set()
            n = getattr(new, name) if new is not None else set()
            if o == n:
                continue
            dbh = dbs[name]
            if fresh:
                for k in n:
                    self._put(k, idb, dbh)
                continue
            cur = self._t.cursor(db=dbh)
            for k in o - n:
                self._index_del(cur, k, idb, dbh)
            for k in n - o:
                self._index_put(cur, k, idb, dbh)

    def _index_put(self, cur: Any, key: bytes, idb: bytes, dbh: Any) -> None:
        """Add an id to a key: into the value whose range holds it (values stay disjoint ranges), else as a
        value of its own."""
        run = _find_run(cur, key, idb)
        if run is None:
            self._put(key, idb, dbh)
            return
        ids = list(_run_ids(run))
        eid = _unpack_id(idb)
        at = bisect.bisect_left(ids, eid)
        if at < len(ids) and ids[at] == eid:
            return
        ids.insert(at, eid)
        self._del(key, run, dbh)
        if len(ids) <= _RUN_MAX:
            self._put(key, _RUNS[len(ids)].pack(*ids), dbh)
        else:
            half = len(ids) // 2
            self._put(key, _RUNS[half].pack(*ids[:half]), dbh)
            self._put(key, _RUNS[len(ids) - half].pack(*ids[half:]), dbh)

    def _index_del(self, cur: Any, key: bytes, idb: bytes, dbh: Any) -> None:
        run = _find_run(cur, key, idb)
        if run is None:
            return
        eid = _unpack_id(idb)
        ids = [i for i in _run_ids(run) if i != eid]
        if len(ids) == len(run) >> 3:
            return
        self._del(key, run, dbh)
        if ids:
            self._put(key, _RUNS[len(ids)].pack(*ids), dbh)

    # -- operations --

    def put_raw_metadata(self, key: bytes, value: bytes) -> None:
        self._op(self._put, key, value, self.db.dbs["aux"])

    def journal_append(self, record: bytes, keep: int, keep_bytes: int = 0) -> int:
        """Append a record to the journal (its sequence: the last one + 1, under the write lock) and trim the
        journal to its last `keep` records and, when `keep_bytes`, to that many octets (the record just
        appended always stays); returns the record's sequence number. Past the count, a few records go per
        append (a journal whose bound was lowered shrinks over the next appends); past the size, as many as it
        takes: what goes is about what came in, and a large record must not pile up over small ones."""
        seq = self.journal_last() + 1
        dbh = self.db.dbs["journal"]
        meta = self.db.dbs["meta"]
        total = self.journal_bytes() + len(record)
        self._op(self._put, _pack_id(seq), record, dbh)
        cur = self._check().cursor(db=dbh)
        trimmed = 0
        while cur.first():
            oldest = _unpack_id(cur.key())
            if oldest >= seq:
                break
            if not (keep_bytes and total > keep_bytes) and (seq - oldest < keep or trimmed >= 64):
                break
            total -= len(cur.value())
            self._op(self._del, cur.key(), None, dbh)
            trimmed += 1
        self._op(self._put, _M_JOURNAL_BYTES, _pack_id(max(total, 0)), meta)
        return seq

    def delete_raw_metadata(self, key: bytes) -> None:
        if self._check().get(key, db=self.db.dbs["aux"]) is not None:
            self._op(self._del, key, None, self.db.dbs["aux"])

    def add(self, entry: Entry) -> int:
        """Store a new entry; returns its id and sets entry.id and its encoded blobs."""
        return self._op(self._add, entry)

    def _place(self, ndn: str, dn: str) -> tuple[bytes, bytes]:
        """(DN key, parent id) for a new entry; AlreadyExists, StorageError (outside the suffix), NoSuchEntry."""
        db = self.db
        if self._id_of(ndn) is not None:
            raise AlreadyExists(ndn)
        bndn = ndn.encode("utf-8", "surrogateescape")
        if ndn == db.suffix_ndn:
            return bndn, _ROOT_PARENT
        if not is_descendant(ndn, db.suffix_ndn):
            raise StorageError(f"{dn!r} is not within the naming context {db.suffix!r}")
        pndn = parent_dn(ndn)
        pid = self._id_of(pndn)
        if pid is None:
            raise NoSuchEntry(pndn, matched_dn=self._matched(pndn) if pndn != db.suffix_ndn else "")
        return bndn, pid

    def _add(self, entry: Entry) -> int:
        db = self.db
        t = self._check()
        ndn = normalize_dn(entry.dn, db.schema)
        bndn, pid = self._place(ndn, entry.dn)
        meta = db.dbs["meta"]
        eid = _unpack_id(t.get(_M_NEXT_ID, db=meta))
        idb = _pack_id(eid)
        rec, ublob, oblob = db._encode(entry, ndn, pid)
        self._put(_M_NEXT_ID, _pack_id(eid + 1), meta)
        self._put(idb, rec, db._id2entry)
        self._put(bndn, idb, db._dn2id)
        self._put(pid, idb, db._children)
        self._apply_index(idb, None, db._index_keys(entry), fresh=True)
        self._touched.add(eid)
        entry.id = eid
        entry.encoded_user = ublob
        entry.encoded_operational = oblob
        return eid

    # -- bulk loads (pyldapd add): entries encoded elsewhere by `EntryCodec`, ids reserved in advance --

    def reserve_ids(self, end: int) -> None:
        """Ids below `end` are taken: entries will be stored under them with `add_encoded`."""
        meta = self.db.dbs["meta"]
        if _unpack_id(self._check().get(_M_NEXT_ID, db=meta)) < end:
            self._op(self._put, _M_NEXT_ID, _pack_id(end), meta)

    def add_encoded(self, eid: int, ndn: str, record: bytes, *, index: bool) -> None:
        """Store a record made by `EntryCodec.encode` (any parent id) under a reserved id.

        Its parent must exist (NoSuchEntry otherwise, AlreadyExists if the DN does). index=False: the caller
        writes the entry's index keys itself (`IndexBatch`, then `add_index_batch`).
        """
        self._op(self._add_encoded, eid, ndn, record, index)

    def _add_encoded(self, eid: int, ndn: str, record: bytes, index: bool) -> None:
        db = self.db
        bndn, pid = self._place(ndn, ndn)
        idb = _pack_id(eid)
        record = record[:1] + pid + record[9:]  # the header's parent id (see the module docstring)
        self._put(idb, record, db._id2entry)
        self._put(bndn, idb, db._dn2id)
        self._put(pid, idb, db._children)
        if index:
            self._apply_index(idb, None, db._index_keys(db._decode(eid, record)))
        self._touched.add(eid)

    def add_index_batch(
        self, sealed: Mapping[str, tuple[list[bytes], list[bytes]]], skip: set[bytes] | None = None
    ) -> None:
        """Write an `IndexBatch.sealed()`, leaving out the ids in `skip` (entries that were not stored)."""
        for name, items in _batch_items(sealed, skip):
            self._op(self._put_many, items, self.db.dbs[name])

    def _load(self, ndn: str) -> tuple[bytes, bytes, Entry]:
        """(id, record, entry) of an existing entry, or NoSuchEntry."""
        idb = self._id_of(ndn)
        rec = None if idb is None else self._check().get(idb, db=self.db._id2entry)
        if idb is None or rec is None:
            raise NoSuchEntry(ndn, matched_dn=self._matched(ndn))
        return idb, rec, self.db._decode(_unpack_id(idb), rec)

    def modify(self, ndn: str, entry: Entry) -> None:
        """Replace the stored content of ndn with `entry` (same DN). Sets entry.id and its encoded blobs."""
        self._op(self._modify, ndn, entry)

    def _modify(self, ndn: str, entry: Entry) -> None:
        db = self.db
        idb, rec, old = self._load(ndn)
        if entry.dn != old.dn and normalize_dn(entry.dn, db.schema) != ndn:
            raise StorageError(f"modify cannot change the DN ({old.dn!r} -> {entry.dn!r}); use rename")
        pid = rec[1:9]
        new_rec, ublob, oblob = db._encode(entry, ndn, pid, old)
        self._apply_index(idb, *db.codec.modify_keys(old, entry))
        self._put(idb, new_rec, db._id2entry)
        eid = _unpack_id(idb)
        entry.id = eid
        entry.encoded_user = ublob
        entry.encoded_operational = oblob
        if len(new_rec) <= _REUSE_RECORD:
            # the new version is cached as stored, so that the next read of the entry (the next modify of it, a
            # search) need not decode it. A reader compares records: one whose snapshot still holds the old record
            # (or the old one, should this transaction not commit) decodes its own. A copy, as the caller keeps
            # the entry it gave. A long record instead stays to be decoded reusing the cached older version's
            # large attributes and what was found of them (MdbDatabase._decode).
            attrs = {key: Attribute(a.name, list(a.values)) for key, a in entry.attrs.items() if a.values}
            db._keep(eid, new_rec, Entry(entry.dn, attrs, eid, ublob, oblob))

    def delete(self, ndn: str) -> Entry:
        """Remove a leaf entry; returns it."""
        return self._op(self._delete, ndn)

    def _delete(self, ndn: str) -> Entry:
        db = self.db
        idb, rec, old = self._load(ndn)
        if self._check().cursor(db._children).set_key(idb):
            raise NotAllowedOnNonLeaf(ndn)
        pid = rec[1:9]
        self._apply_index(idb, db._index_keys(old), None)
        self._del(ndn.encode("utf-8", "surrogateescape"), None, db._dn2id)
        self._del(idb, None, db._id2entry)
        self._del(pid, idb, db._children)
        eid = _unpack_id(idb)
        db._cache.pop(eid, None)
        self._touched.add(eid)
        return old

    def rename(self, ndn: str, entry: Entry) -> None:
        """Move/rename ndn to entry.dn (content as given); descendants follow, only their DNs change."""
        self._op(self._rename, ndn, entry)

    def _rename(self, ndn: str, entry: Entry) -> None:
        db = self.db
        idb, rec, old = self._load(ndn)
        new_ndn = normalize_dn(entry.dn, db.schema)
        old_pid = rec[1:9]
        new_pid = old_pid
        if new_ndn != ndn:
            if ndn == db.suffix_ndn:
                raise StorageError("the suffix entry cannot be renamed")
            if not is_descendant(new_ndn, db.suffix_ndn):
                raise StorageError(f"{entry.dn!r} is not within the naming context {db.suffix!r}")
            if self._id_of(new_ndn) is not None:
                raise AlreadyExists(new_ndn)
            new_pndn = parent_dn(new_ndn)
            if new_pndn == ndn or is_descendant(new_pndn, ndn):
                raise StorageError("an entry cannot be moved below itself")
            pid = self._id_of(new_pndn)
            if pid is None:
                raise NoSuchEntry(new_pndn, matched_dn=self._matched(new_pndn))
            new_pid = pid
        new_rec, ublob, oblob = db._encode(entry, new_ndn, new_pid)
        self._apply_index(idb, db._index_keys(old), db._index_keys(entry))
        self._put(idb, new_rec, db._id2entry)
        if new_ndn != ndn:
            self._del(ndn.encode("utf-8", "surrogateescape"), None, db._dn2id)
            self._put(new_ndn.encode("utf-8", "surrogateescape"), idb, db._dn2id)
        if new_pid != old_pid:
            self._del(old_pid, idb, db._children)
            self._put(new_pid, idb, db._children)
        eid = _unpack_id(idb)
        db._cache.pop(eid, None)
        self._touched.add(eid)
        entry.id = eid
        entry.encoded_user = ublob
        entry.encoded_operational = oblob
        if new_ndn != ndn or entry.dn != old.dn:
            self._move_descendants(idb, ndn, new_ndn, entry.dn)

    def _move_descendants(self, top: bytes, old_ndn: str, new_ndn: str, new_dn: str) -> None:
        db = self.db
        t = self._check()
        stack: list[tuple[bytes, str, str, str]] = [(top, old_ndn, new_ndn, new_dn)]
        while stack:
            pidb, p_old_ndn, p_new_ndn, p_new_dn = stack.pop()
            for cid in self._child_ids(pidb):
                rec = t.get(cid, db=db._id2entry)
                if rec is None:
                    continue
                version, parent, ln, ld, lu = _HDR.unpack_from(rec)
                c_old_ndn = rec[_HDR_SIZE : _HDR_SIZE + ln].decode("utf-8", "surrogateescape")
                c_old_dn = rec[_HDR_SIZE + ln : _HDR_SIZE + ln + ld].decode("utf-8", "surrogateescape")
                body = rec[_HDR_SIZE + ln + ld :]
                rdn_n = c_old_ndn[: len(c_old_ndn) - len(p_old_ndn) - 1]
                c_new_ndn = f"{rdn_n},{p_new_ndn}"
                c_new_dn = f"{split_rdn(c_old_dn)[0]},{p_new_dn}"
                bn = c_new_ndn.encode("utf-8", "surrogateescape")
                bd = c_new_dn.encode("utf-8", "surrogateescape")
                new_rec = _HDR.pack(version, parent, len(bn), len(bd), lu) + bn + bd + body
                self._put(cid, new_rec, db._id2entry)
                if c_new_ndn != c_old_ndn:
                    self._del(c_old_ndn.encode("utf-8", "surrogateescape"), None, db._dn2id)
                    self._put(bn, cid, db._dn2id)
                eid = _unpack_id(cid)
                db._cache.pop(eid, None)
                self._touched.add(eid)
                stack.append((cid, c_old_ndn, c_new_ndn, c_new_dn))


def open_database(directory: str, schema: Any, suffix: str, **kw: Any) -> MdbDatabase:
    """Open (creating if needed) the LMDB database of `suffix` in `directory`."""
    return MdbDatabase(directory, schema, suffix, **kw)
