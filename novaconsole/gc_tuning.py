"""The garbage collector tuned for a service process: what the CLI does, never the library.

CPython's collector runs a young collection every 700 net allocations of container objects,
and a full one once the objects promoted since the last reach a quarter of the old
generation; a full collection walks every object of the process (SQLAlchemy's, Textual's, the
handlers' modules) while the event loop waits. A batch pipeline keeps each item's objects
(its job, its outcome until the writer commits it) alive across young collections, so they
are promoted, and the full collections come often: B1 with the SQLite store spent 1.06 s of a
7.2 s run collecting, in 11 full collections of up to 81 ms and 1,488 young ones.

:func:`tuned_gc`: once start-up is over, collect, then freeze what is left (modules, classes,
compiled SQL: alive for the life of the process anyway) out of every later collection, and
raise the young generation's threshold to :data:`YOUNG_THRESHOLD`. Cycles are still
collected, a little later. ``[process] tune_gc = false`` keeps CPython's defaults.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 7000
"""Net allocations between two young collections (CPython's default: 700)."""


@contextmanager
def tuned_gc(enabled: bool = True) -> Iterator[None]:
    """Tune the collector for the block (see the module docstring), then restore it."""
    if not enabled:
        yield
        return
    thresholds = gc.get_threshold()
    gc.collect()  # garbage frozen now would never be collected
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
