"""The overlay interface and a database's overlay stack.

The engine (server/directory.py, replication/consumer.py) knows only `OverlayStack`: inside every write
transaction it calls `in_txn` with the operation (an overlay may write into the same transaction), after the
commit `after_commit` with the committed change. Which overlays exist is decided by the database's config
(`overlay` lines / olcOverlay entries), in config order; slapd runs the last configured overlay first, and so
does the stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyldapd.model.dn import split_rdn

if TYPE_CHECKING:
    from pyldapd.backends.mdb import WriteTxn
    from pyldapd.model.entry import Entry
    from pyldapd.replication.state import Change

BOOKKEEPING = ("entrycsn", "modifiersname", "modifytimestamp")


@dataclass
class WriteOp:
    """One database write as the overlays see it inside its transaction."""

    kind: str  # "add", "modify", "delete", "rename"
    dn: str  # the target DN as the client wrote it (the old DN of a rename)
    before: Entry | None
    after: Entry | None
    csn: str
    conn_id: int = 0
    authz_dn: str = ""
    changes: list[Any] = field(default_factory=list)  # a modify's protocol.ldap.Change list
    new_rdn: str = ""  # a rename's request
    delete_old_rdn: bool = False
    new_superior: str | None = None
    replicated: bool = False  # applied by a syncrepl consumer
    # a delta-syncrepl replay: the stamps (entryCSN, modifiersName, modifyTimestamp) its origin logged
    stamps: dict[str, list[bytes]] | None = None


class Overlay:
    """Base class: every hook does nothing; an overlay overrides the ones it needs."""

    name = ""

    def in_txn(self, op: WriteOp, txn: WriteTxn) -> None:
        """Inside the write transaction, after the database has changed and before the commit."""

    def after_commit(self, change: Change) -> None:
        """Once the change's transaction has committed."""

    def start(self) -> None:
        """The server is running (an event loop exists): recovery, timers."""

    def close(self) -> None:
        """The server stops."""


class OverlayStack:
    """A database's overlays, in config order; hooks run last configured first, as slapd's overlay chain."""

    def __init__(self) -> None:
        self.instances: dict[str, Overlay] = {}
        self.order: list[str] = []  # overlay names as configured

    def configure(self, names: list[str], make: Callable[[str], Overlay | None]) -> None:
        """Follow the database's overlay list: keep running instances, make missing ones, close dropped ones.
        `make` returns None for an overlay managed elsewhere (syncprov is set by the replication setup)."""
        self.order = list(names)
        for name in names:
            if name not in self.instances:
                made = make(name)
                if made is not None:
                    self.instances[name] = made
        for name in [n for n in self.instances if n not in names]:
            self.instances.pop(name).close()

    def set(self, name: str, overlay: Overlay | None) -> None:
        if overlay is None:
            self.instances.pop(name, None)
        else:
            self.instances[name] = overlay
            if name not in self.order:
                self.order.append(name)

    def get(self, name: str) -> Overlay | None:
        return self.instances.get(name)

    def running(self) -> list[Overlay]:
        """The overlays in calling order: last configured first."""
        return [self.instances[n] for n in reversed(self.order) if n in self.instances]

    def writers(self) -> list[Overlay]:
        """The running overlays that act inside write transactions (the others keep the base's no-op)."""
        return [o for o in self.running() if type(o).in_txn is not Overlay.in_txn]

    def in_txn(self, op: WriteOp, txn: WriteTxn) -> None:
        for overlay in self.writers():
            overlay.in_txn(op, txn)

    def after_commit(self, change: Change) -> None:
        for overlay in self.running():
            overlay.after_commit(change)

    def start(self) -> None:
        for overlay in self.running():
            overlay.start()

    def close(self) -> None:
        for overlay in self.running():
            overlay.close()


def replicated_op(change: Change, authz_dn: str) -> WriteOp:
    """A change a syncrepl consumer applies, as a write operation: an entry copy arrives whole, so a modify is
    the replacement of each attribute that differs (what slapd's consumer computes from the two entries)."""
    from pyldapd.protocol import ldap

    before, after = change.before, change.after
    target = before if before is not None else after
    op = WriteOp(change.kind, target.dn if target is not None else "", before, after, change.csn, 0, authz_dn,
                 replicated=True)  # fmt: skip
    if change.kind in ("modify", "rename") and before is not None and after is not None:
        for key, attribute in after.attrs.items():
            old = before.attrs.get(key)
            if key in BOOKKEEPING:
                continue  # set by every write: overlays read them from the entry, as for a client's modify
            if old is None or list(old.values) != list(attribute.values):
                op.changes.append(ldap.Change(ldap.MOD_REPLACE, attribute.name, list(attribute.values)))
        for key, attribute in before.attrs.items():
            if key not in after.attrs and key not in BOOKKEEPING:
                op.changes.append(ldap.Change(ldap.MOD_DELETE, attribute.name, []))
    if change.kind == "rename" and after is not None:
        rdn, parent = split_rdn(after.dn)
        op.new_rdn = rdn
        old_parent = split_rdn(before.dn)[1] if before is not None else ""
        op.new_superior = parent if parent.lower() != old_parent.lower() else None
        op.delete_old_rdn = True
    return op
