"""Glue (slapd.conf `subordinate`, olcSubordinate, slapo-glue): a superior database and its subordinate databases
answer as one tree, as slapd's backglue.c does.

- A `subordinate` database is glued under the first database configured after it that is not itself a
  subordinate and whose suffix holds its suffix (slapd's glue_sub_attach); without one slapd refuses to start.
- Reads and writes whose DN lies in a subordinate go to it (the most specific database, as slapd's
  select_backend). One-level and subtree searches based in the superior also search each subordinate below the
  base, superior first then the subordinates in config order, as one result stream whose size and time limits
  are the superior's and count across the parts (glue_op_search). A subordinate whose suffix entry does not
  exist adds nothing (its noSuchObject is dropped).
- Overlays configured on the superior after an explicit `overlay glue` (olcOverlay={0}glue) see the writes of the
  subordinates too (slapd runs overlays last configured first, and the glue overlay routes a write to its
  subordinate: overlays above it have seen it, those below it have not). Without an explicit glue overlay slapd
  puts it first in the chain, so the superior's overlays see only the superior's own writes. So a syncprov on the
  superior above glue serves the whole tree: its refresh reads the subordinates too (TreeRead) and its
  contextCSN advances with their changes.
- The offline tools (`pyldapd add`/`cat` with no -b/-n, or naming the superior) work on the whole tree: entries
  are routed to the database holding them, and slapcat lists the superior, then each subordinate in config order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from pyldapd.backends.base import Scope
from pyldapd.model.dn import DNError, is_descendant, normalize_dn, parent_dn

if TYPE_CHECKING:
    from pyldapd.config.model import DatabaseConfig
    from pyldapd.replication.state import Change
    from pyldapd.server.directory import Backend


def _ndn(dn: str, schema: Any = None) -> str:
    """A normalized DN; without a schema (slapd.conf's checks, before the schema is built) a plain one:
    lowercased, no spaces around separators."""
    if schema is not None:
        try:
            return normalize_dn(dn, schema)
        except DNError:
            pass
    return ",".join("=".join(p.strip() for p in rdn.split("=", 1)) for rdn in dn.lower().split(","))


def within(ndn: str, suffix_ndn: str) -> bool:
    """ndn is suffix_ndn or lies below it (slapd's dnIsSuffix)."""
    return ndn == suffix_ndn or is_descendant(ndn, suffix_ndn)


def superior_of(databases: list[DatabaseConfig], position: int, schema: Any = None) -> int | None:
    """The index of the database a subordinate at `position` is glued under: the first one after it that is not
    a subordinate and whose suffix holds its suffix (slapd's glue_sub_attach), or None."""
    sub = _ndn(databases[position].suffix, schema)
    for index in range(position + 1, len(databases)):
        db = databases[index]
        if db.subordinate or not db.suffixes:
            continue
        if within(sub, _ndn(db.suffix, schema)):
            return index
    return None


def unsupported_above_glue(db: DatabaseConfig) -> str | None:
    """The refusal for an overlay pyldapd cannot run over a glued tree: accesslog writes its records in the
    written database's transaction, so above an explicit glue overlay it would miss the subordinates' writes."""
    names = [o.name for o in db.overlays]
    if "glue" in names and "accesslog" in names[names.index("glue") + 1 :]:
        return "overlay accesslog above overlay glue: not supported by pyldapd (configure it before glue)"
    return None


def link(backends: list[Backend], schema: Any) -> None:
    """Set each backend's `superior` and `subordinates` (config order) from the config's subordinate flags. A
    subordinate without a superior (added over cn=config before it) stands alone, as slapd waits for one."""
    configs = [b.config for b in backends]
    for backend in backends:
        backend.superior = None
        backend.subordinates = []
    for position, backend in enumerate(backends):
        if not backend.config.subordinate:
            continue
        index = superior_of(configs, position, schema)
        if index is not None:
            backend.superior = backends[index]
            backends[index].subordinates.append(backend)


def tree(backend: Backend) -> list[Backend]:
    """A glue superior and its subordinates, in slapd's search order (superior first)."""
    return [backend, *backend.subordinates]


def search_parts(holder: Backend, base_ndn: str, scope: Scope) -> list[tuple[Backend, str, Scope, bool]]:
    """(database, base, scope, missing_ok) for each part of a search based in `holder` (glue_op_search):
    missing_ok parts are a subordinate's suffix whose absence adds nothing."""
    if not holder.subordinates or scope == Scope.BASE:
        return [(holder, base_ndn, scope, False)]
    parts: list[tuple[Backend, str, Scope, bool]] = []
    for backend in tree(holder):
        suffix = backend.suffix_ndn
        if not within(suffix, holder.suffix_ndn):
            continue
        if scope == Scope.ONE and backend is not holder and parent_dn(suffix) == base_ndn:
            parts.append((backend, suffix, Scope.BASE, True))
        elif scope == Scope.SUB and suffix == base_ndn:
            parts.append((backend, base_ndn, scope, False))
        elif scope == Scope.SUB and is_descendant(suffix, base_ndn):
            parts.append((backend, suffix, Scope.SUB, True))
        elif within(base_ndn, suffix):
            parts.append((backend, base_ndn, scope, False))
    return parts


def above_glue(backend: Backend) -> list[Any]:
    """The running overlays of a superior configured after an explicit glue overlay (they see the
    subordinates' writes), in calling order."""
    order = backend.overlays.order
    if "glue" not in order:
        return []
    names = order[order.index("glue") + 1 :]
    return [backend.overlays.instances[n] for n in reversed(names) if n in backend.overlays.instances]


def publish_to_superior(backend: Backend, change: Change) -> None:
    """After a subordinate's commit: the superior's overlays above glue see the change, and when they do the
    superior's contextCSN vector moves with it (in memory; written at its next checkpoint or shutdown)."""
    superior = backend.superior
    if superior is None:
        return
    overlays = above_glue(superior)
    if not overlays:
        return
    if change.csn:
        superior.context.csns.update_csn(change.csn)
    for overlay in overlays:
        overlay.after_commit(change)


def merge_contexts(backends: list[Backend]) -> None:
    """At start: a superior whose overlays above glue serve the whole tree holds at least its subordinates'
    contextCSNs (theirs are written with each change; the superior's copy only at checkpoints)."""
    for backend in backends:
        if backend.subordinates and above_glue_names(backend):
            for sub in backend.subordinates:
                backend.context.csns.merge(sub.context.csns.as_dict())


def above_glue_names(backend: Backend) -> list[str]:
    order = backend.overlays.order or [o.name for o in backend.config.overlays]
    return order[order.index("glue") + 1 :] if "glue" in order else []


class TreeRead:
    """Read transactions over a glue superior and its subordinates, offering what a database's read
    transaction offers to syncprov, over the whole tree."""

    def __init__(self, backend: Backend) -> None:
        self.backends = tree(backend)
        self.stack = ExitStack()
        self.txns: list[Any] = []

    def __enter__(self) -> TreeRead:
        self.txns = [self.stack.enter_context(b.db.read()) for b in self.backends]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _holder(self, ndn: str) -> Any:
        best, length = self.txns[0], -1
        for backend, txn in zip(self.backends, self.txns, strict=True):
            if within(ndn, backend.suffix_ndn) and len(backend.suffix_ndn) > length:
                best, length = txn, len(backend.suffix_ndn)
        return best

    def get(self, ndn: str) -> Any:
        return self._holder(ndn).get(ndn)

    def has_children(self, ndn: str) -> bool:
        return self._holder(ndn).has_children(ndn)

    def nearest_ancestor(self, ndn: str) -> Any:
        found = self._holder(ndn).nearest_ancestor(ndn)
        return found if found is not None else self.txns[0].nearest_ancestor(ndn)

    def by_uuid(self, uuid: bytes) -> Any:
        for txn in self.txns:
            entry = txn.by_uuid(uuid)
            if entry is not None:
                return entry
        return None

    def csn_after(self, csn: str | bytes) -> Iterator[Any]:
        return heapq.merge(*(txn.csn_after(csn) for txn in self.txns),
                           key=lambda e: e.first("entrycsn") or b"")  # fmt: skip

    def search(self, base_ndn: str, scope: Scope, filter: Any = None) -> Iterator[Any]:
        txn_of = dict(zip((id(b) for b in self.backends), self.txns, strict=True))
        for backend, base, part_scope, missing_ok in search_parts(self.backends[0], base_ndn, scope):
            txn = txn_of[id(backend)]
            if missing_ok and txn.get(base) is None:
                continue
            yield from txn.search(base, part_scope, filter)
