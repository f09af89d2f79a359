"""Operations as resumable steps, so that no client stalls another (issue 13).

A long search is a generator (`Steps`): it yields `None` every `STEP_EVERY` candidates ("I may stop here"), or an
`Offload` for a piece of work that cannot be cut (planning a filter of tens of thousands of terms) and that is
better run on a thread; it returns its outcome (StopIteration.value). The engine knows nothing of sockets: the
network front end (server/connection.py) drives the steps in time slices on the event loop, parks them while the
client's transport is paused (a slow reader), and runs an Offload on a worker thread. `run_steps` runs them to
the end in the caller's thread, for callers that want the answer now.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from pyldapd.model.filter import And, Not, Or

STEP_EVERY = 32  # candidates between two yields: a yield costs ~0.1 us, 32 candidates at least ~0.1 ms
LARGE_FILTER = 256  # filter nodes from which compiling and planning go to a thread (~2 ms of work)
LARGE_ATTRIBUTE_LIST = 2048  # a search's attribute descriptions from which its selection is made on a thread
# (~0.5 us each: 60,000 of them, in an anonymous client's 256 KB, cost 30 ms)


@dataclass(slots=True)
class Offload:
    """Work for a worker thread; the steps get its result (or its exception) back."""

    work: Callable[[], Any]


Steps = Generator[Offload | None, Any, Any]


def run_steps(steps: Steps) -> Any:
    """Run steps to the end here; an Offload runs inline."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            item = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        if item is not None:
            try:
                value = item.work()
            except Exception as exc:
                error = exc


def large_filter(f: Any, limit: int = LARGE_FILTER) -> bool:
    """Whether a filter has at least `limit` nodes (counted only as far as the limit: cheap for any filter)."""
    if not isinstance(f, (And, Or, Not)):
        return False  # one term: the common search
    budget = limit
    stack = [f]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget <= 0:
            return True
        if isinstance(node, (And, Or)):
            if len(node.filters) >= budget:
                return True
            stack.extend(node.filters)
        elif isinstance(node, Not):
            stack.append(node.filter)
    return False


class Collector:
    """CPython's cycle collector and large requests: a filter of 100,000 terms is some 300,000 objects, and every
    collection of the older generations walks all of them, holding the GIL (and so the event loop) for tens to
    hundreds of milliseconds, again and again while they live. So a large request is built (decoded, compiled,
    planned, on a worker thread) with the collector off, its objects are then frozen (gc.freeze: out of every
    later collection; reference counting still frees them), and everything is thawed (gc.unfreeze) once no large
    request is alive. Measured in bench/bench_stall.py (docs/architecture.md)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.building = 0  # large works running on threads
        self.alive = 0  # large requests not yet answered

    def hold(self) -> None:
        with self.lock:
            self.alive += 1

    def release(self, count: int) -> None:
        if count <= 0:
            return
        with self.lock:
            self.alive -= count
            if self.alive <= 0:
                self.alive = 0
                gc.unfreeze()

    def build(self, work: Callable[[], Any]) -> Callable[[], Any]:
        def quietly() -> Any:
            with self.lock:
                self.building += 1
                gc.disable()
            try:
                return work()
            finally:
                with self.lock:
                    self.building -= 1
                    gc.freeze()
                    if not self.building:
                        gc.enable()

        return quietly


COLLECTOR = Collector()

YOUNG_THRESHOLD = 10_000  # allocations between two young collections (CPython: 700)
THAW_EVERY = 8  # full collections between two that look at every object (frozen ones included)


class LongLivedObjects:
    """The cycle collector and a running server's long-lived objects (its schema, configuration, the entry
    cache: some 300,000 objects for 10,000 cached entries): each full collection walks them all, some 90 ms
    holding the GIL, and searches that keep adding to the caches trigger one every second or so (10% of a
    busy server's CPU, and a stall for every client each time). A full collection leaves only reachable objects:
    freezing them then (gc.freeze) takes them out of the next collections, which walk only what came since.
    Frozen objects that later become unreachable in a cycle are kept until the next thaw: every THAW_EVERY-th
    full collection finds everything thawed (gc.unfreeze), so such garbage is bounded and then freed. The
    Collector above thaws too (a large request's end): the next full collection walks everything and freezes
    again."""

    def __init__(self) -> None:
        self.full = 0

    def install(self) -> None:
        if self.after_collection not in gc.callbacks:
            gc.callbacks.append(self.after_collection)
        # a young collection walks what is alive among the objects allocated since the last one: a request's
        # objects die by reference counting, so collecting every 700 allocations (CPython's default) mostly
        # finds a few requests in flight, and promotes them; every YOUNG_THRESHOLD costs as much per collection
        _first, second, third = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, second, third)

    def after_collection(self, phase: str, info: dict) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        self.full += 1
        if self.full >= THAW_EVERY and not COLLECTOR.alive:  # (a large request's objects stay frozen)
            self.full = 0
            gc.unfreeze()  # the next full collection looks at everything
        else:
            gc.freeze()


LONG_LIVED = LongLivedObjects()
