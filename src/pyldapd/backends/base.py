"""What the server asks of a database, independent of how it is stored.

A database holds one naming context (its suffix). Reads and writes happen in transactions; a write transaction
commits durably when its `with` block ends without an exception and aborts otherwise.
DNs given to these methods are normalized DNs (`pyldapd.model.dn.normalize_dn`), except `Entry.dn`, which keeps
the user's spelling.
"""

from __future__ import annotations

from enum import IntEnum


class Scope(IntEnum):
    BASE = 0
    ONE = 1
    SUB = 2
    CHILDREN = 3  # OpenLDAP's "subordinate" scope: the subtree without its base


class StorageError(Exception):
    """Base class of the errors a database reports to the server."""


class DatabaseFull(StorageError):
    """The write does not fit in the database's maxsize (LMDB's MDB_MAP_FULL); nothing of it is stored."""


class KeyTooLong(DatabaseFull):
    """A key (a DN's index key, an index value) past LMDB's key size (MDB_BAD_VALSIZE): back-mdb fails the
    write with the same result and text as when the map is full ("DN index add failed" for a modrdn)."""


class NoSuchEntry(StorageError):
    def __init__(self, ndn: str, matched_dn: str = "") -> None:
        super().__init__(ndn)
        self.matched_dn = matched_dn  # the user-spelled DN of the nearest existing ancestor, or ""


class AlreadyExists(StorageError):
    pass


class NotAllowedOnNonLeaf(StorageError):
    pass


class TooManyCandidates(StorageError):
    """A search would examine more candidates than its `size.unchecked` limit allows (slapd's back-mdb)."""

    def __init__(self, candidates: int) -> None:
        super().__init__(candidates)
        self.candidates = candidates
