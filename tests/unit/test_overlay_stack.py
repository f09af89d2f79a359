"""The overlay stack (overlays/base.py): built in config order, hooks called last configured first (slapd's
overlay chain), dropped overlays closed, a write's in-transaction hook before its after-commit hook."""

from __future__ import annotations

from pyldapd.overlays.base import Overlay, OverlayStack, WriteOp
from pyldapd.replication.state import Change


class Recorder(Overlay):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def in_txn(self, op, txn) -> None:
        self.calls.append(f"{self.name}.in_txn:{op.kind}")

    def after_commit(self, change) -> None:
        self.calls.append(f"{self.name}.after_commit:{change.kind}")

    def close(self) -> None:
        self.calls.append(f"{self.name}.close")


def test_hooks_run_last_configured_first_and_dropped_overlays_close():
    calls: list[str] = []
    stack = OverlayStack()
    stack.configure(["syncprov", "accesslog", "other"], lambda name: Recorder(name, calls))
    stack.in_txn(WriteOp("add", "cn=x", None, None, "csn"), txn=None)
    stack.after_commit(Change("add", None, None, "csn"))
    assert calls == ["other.in_txn:add", "accesslog.in_txn:add", "syncprov.in_txn:add",
                     "other.after_commit:add", "accesslog.after_commit:add", "syncprov.after_commit:add"]  # fmt: skip
    calls.clear()
    kept = stack.get("accesslog")
    stack.configure(["accesslog"], lambda name: Recorder(name, calls))
    assert sorted(calls) == ["other.close", "syncprov.close"] and stack.get("accesslog") is kept
    assert [o.name for o in stack.running()] == ["accesslog"]


def test_an_overlay_managed_elsewhere_keeps_its_configured_place():
    calls: list[str] = []
    stack = OverlayStack()
    stack.configure(
        ["syncprov", "accesslog"], lambda name: Recorder(name, calls) if name != "syncprov" else None
    )
    assert [o.name for o in stack.running()] == ["accesslog"]
    stack.set("syncprov", Recorder("syncprov", calls))  # the replication setup makes syncprov
    assert [o.name for o in stack.running()] == ["accesslog", "syncprov"]
    stack.set("syncprov", None)
    assert [o.name for o in stack.running()] == ["accesslog"]


def test_only_overlays_with_a_transaction_hook_are_writers():
    class AfterOnly(Overlay):
        name = "after"

    stack = OverlayStack()
    stack.configure(["after", "rec"], lambda name: AfterOnly() if name == "after" else Recorder(name, []))
    assert [o.name for o in stack.writers()] == ["rec"]
