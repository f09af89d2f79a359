"""Operations as resumable steps, so that no client stalls another (issue 13).

A long search is a generator (`Steps`): it yields `None` every `STEP_EVERY` candidates ("I may stop here"), or an
`Offload` for a piece of work that cannot be cut (planning a filter of tens of thousands of terms) and that is
better run on a thread; it returns its outcome (StopIteration.value). The engine knows nothing of sockets: the
network front end (server/connection.py) drives the steps in time slices on the event loop, parks them while the
client's transport is paused (a slow reader), and runs an Offload on a worker thread. `run_steps` runs them to
the end in the caller's thread, for callers that want the answer now.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from pyldapd.model.filter import And, Not, Or

STEP_EVERY = 32  # candidates between two yields: a yield costs ~0.1 us, 32 candidates at least ~0.1 ms
LARGE_FILTER = 256  # filter nodes from which compiling and planning go to a thread (~2 ms of work)


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
