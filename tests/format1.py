"""A database in pyldapd's format 1, made for upgrade tests from that format's description (git history of
backends/mdb.py): the same records, keys and DN tree as format 2, but every index sub-database (eq, pres, sub,
approx, uuid, csn) DUPSORT|DUPFIXED with one 8-byte id per value, and meta `version` = b"1".

It is made by writing a format-2 database with today's code and rewriting its indexes the old way, so the
entries are exactly those a format-1 pyldapd would have stored."""

from __future__ import annotations

import struct

import lmdb

INDEX_DBS = ("eq", "pres", "sub", "approx", "uuid", "csn")


def rewrite_as_format_1(directory: str) -> int:
    """Turn the format-2 database in `directory` into format 1; returns the number of index values written."""
    env = lmdb.open(directory, max_dbs=16, map_size=1 << 30)
    written = 0
    try:
        with env.begin(write=True) as txn:
            for name in INDEX_DBS:
                db = env.open_db(name.encode(), txn=txn, dupsort=True)
                pairs = []
                for key, run in txn.cursor(db).iternext(keys=True, values=True):
                    pairs += [(key, struct.pack(">Q", i)) for i in struct.unpack(f">{len(run) // 8}Q", run)]
                txn.drop(db, delete=True)
                old = env.open_db(name.encode(), txn=txn, dupsort=True, dupfixed=True)
                for key, idb in pairs:
                    txn.put(key, idb, db=old, dupdata=True)
                written += len(pairs)
            txn.put(b"version", b"1", db=env.open_db(b"meta", txn=txn))
    finally:
        env.close()
    return written
