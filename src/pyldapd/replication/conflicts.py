"""The conflict journal of a database: every change replication discarded or overrode, kept where admins look.

A conflict is recorded by the node that decides it (a consumer applying a provider's change), on both sides of a
newest-wins decision: the node that discards an older incoming change, and the node whose own, not yet replicated
write is overridden by a newer incoming one. Each record is logged at the default level (always on, as errors are),
counted, and kept in a bounded in-memory journal per database (the last `JOURNAL_SIZE`; a restart starts a new
journal: the log keeps the history), published under cn=Monitor as
`cn=Conflict N,cn=Conflicts,cn=Database K,cn=Databases,cn=Monitor` and read by `pyldapd status --conflicts`.

Kinds: `modify` (two writes of one entry: the newer entryCSN wins the whole entry), `add` (two adds of one DN with
different entryUUIDs), `delete` (a delete against a newer change, or a change against a newer delete), `glue`
(an entry whose parent is missing here: the parent becomes a glue entry, or a deleted entry that still has
children becomes one).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pyldapd.model.csn import sid_of
from pyldapd.model.entry import Entry

JOURNAL_SIZE = 1000


def csn_sid(csn: str) -> int | None:
    try:
        return sid_of(csn) if csn else None
    except (ValueError, IndexError):
        return None


@dataclass
class Conflict:
    number: int  # 1, 2, ... in the order this server recorded them (since it started)
    kind: str  # modify | add | delete | glue
    dn: str
    winner_csn: str  # the change that stands ("" when unknown)
    loser_csn: str  # the change discarded or overridden
    resolution: str  # what happened here, in words
    rid: int
    stamp: float = field(default_factory=time.time)

    @property
    def winner_sid(self) -> int | None:
        return csn_sid(self.winner_csn)

    @property
    def loser_sid(self) -> int | None:
        return csn_sid(self.loser_csn)

    def log_text(self) -> str:
        def side(csn: str) -> str:
            sid = csn_sid(csn)
            return f"{csn or 'unknown'} (sid {sid:03x})" if sid is not None else csn or "unknown"

        return (f"conflict {self.kind} on {self.dn}: winner {side(self.winner_csn)}, "
                f"loser {side(self.loser_csn)}: {self.resolution}")  # fmt: skip


class ConflictJournal:
    def __init__(self, size: int = JOURNAL_SIZE) -> None:
        self.total = 0
        self.records: deque[Conflict] = deque(maxlen=size)

    def record(
        self, kind: str, dn: str, winner_csn: str, loser_csn: str, resolution: str, rid: int
    ) -> Conflict:
        self.total += 1
        conflict = Conflict(self.total, kind, dn, winner_csn, loser_csn, resolution, rid)
        self.records.append(conflict)
        return conflict


def journal_of(backend: Any) -> ConflictJournal:
    """The journal of a database, created on first use (one per Backend, shared by all its consumers)."""
    journal = getattr(backend, "conflict_journal", None)
    if journal is None:
        journal = ConflictJournal()
        backend.conflict_journal = journal
    return journal


# -- cn=Monitor -----------------------------------------------------------------------------------------------

# pyldapd's own attribute types, under the monitor's OID arc (server/monitor.py ARC), operational as the rest.
_TEXT = "EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15"
_CSN = "EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15"
_INT = "EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27"
_DN = "EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12"
_OP = "SINGLE-VALUE NO-USER-MODIFICATION USAGE dSAOperation"
CONFLICT_SCHEMA = [
    ("2.1", "pyldapdConflictKind", f"DESC 'kind of a replication conflict' {_TEXT} {_OP}"),
    ("2.2", "pyldapdConflictDN", f"DESC 'entry of a replication conflict' {_DN} {_OP}"),
    ("2.3", "pyldapdWinnerCSN", f"DESC 'CSN of the change that stands' {_CSN} {_OP}"),
    ("2.4", "pyldapdLoserCSN", f"DESC 'CSN of the change discarded or overridden' {_CSN} {_OP}"),
    ("2.5", "pyldapdWinnerServerID", f"DESC 'server ID of the winning change' {_INT} {_OP}"),
    ("2.6", "pyldapdLoserServerID", f"DESC 'server ID of the losing change' {_INT} {_OP}"),
]


def install_conflict_schema(schema, arc: str) -> None:
    for suffix, name, rest in CONFLICT_SCHEMA:
        oid = f"{arc}.{suffix}"
        if schema.attribute_type(oid) is None and schema.attribute_type(name) is None:
            schema.load_text(f"attributetype ( {oid} NAME '{name}' {rest} )", "<monitor>")


def conflict_monitor_entries(backend: Any, database_dn: str, make_container) -> list[Entry]:
    """`cn=Conflicts` under a database's monitor entry (monitorCounter = all recorded since start, the
    journal's bounded tail as children). `make_container(dn, cn, description)` builds a monitor entry."""
    journal = journal_of(backend)
    top_dn = f"cn=Conflicts,{database_dn}"
    top = make_container(
        top_dn, "Conflicts", f"replication conflicts (the last {journal.records.maxlen} kept)"
    )
    top.put("monitorcounter", "monitorCounter", [str(journal.total).encode()])
    entries = [top]
    for conflict in journal.records:
        name = f"Conflict {conflict.number}"
        entry = make_container(f"cn={name},{top_dn}", name, conflict.resolution)
        entry.put("pyldapdconflictkind", "pyldapdConflictKind", [conflict.kind.encode()])
        entry.put("pyldapdconflictdn", "pyldapdConflictDN", [conflict.dn.encode()])
        if conflict.winner_csn:
            entry.put("pyldapdwinnercsn", "pyldapdWinnerCSN", [conflict.winner_csn.encode()])
        if conflict.loser_csn:
            entry.put("pyldapdlosercsn", "pyldapdLoserCSN", [conflict.loser_csn.encode()])
        if conflict.winner_sid is not None:
            entry.put("pyldapdwinnerserverid", "pyldapdWinnerServerID", [str(conflict.winner_sid).encode()])
        if conflict.loser_sid is not None:
            entry.put("pyldapdloserserverid", "pyldapdLoserServerID", [str(conflict.loser_sid).encode()])
        entry.put("pyldapdsyncrid", "pyldapdSyncRid", [str(conflict.rid).encode()])
        entry.put("createtimestamp", "createTimestamp",
                  [time.strftime("%Y%m%d%H%M%SZ", time.gmtime(conflict.stamp)).encode()])  # fmt: skip
        entries.append(entry)
    return entries
