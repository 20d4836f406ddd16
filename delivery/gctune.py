"""Garbage-collector settings for the delivery worker's steady state.

The worker keeps a large start-up heap (schemas, clients, the webhook view: ~100k objects) that
never becomes garbage, and allocates many short-lived objects per delivery. With the default
settings every full collection rescans that heap and young collections run every 700 net
allocations: measured at ~12 us of collector time per delivery (bench/delivery.py, gc callbacks
over the worker phase). Freezing the start-up heap and collecting the young generation less
often brings that to ~0-3 us.

The settings are process-wide, so they are applied while at least one worker runs and the
previous ones are restored when the last one stops (tests and the bench run workers in-process).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# Young-generation threshold while a worker runs (CPython's default is 700).
YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def steady_state_gc(young_threshold: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Freeze what exists now (the start-up heap) and raise the young-generation threshold
    for the duration of the block; restore both when the last such block ends."""
    global _users, _saved
    with _lock:
        _users += 1
        if _users == 1:
            _saved = gc.get_threshold()
            gc.collect()  # leave start-up garbage out of the frozen set
            gc.freeze()
            gc.set_threshold(max(young_threshold, _saved[0]), _saved[1], _saved[2])
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                gc.unfreeze()
                _saved = None
