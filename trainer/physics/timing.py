"""One way to time a stage, so every benchmark figure means the same thing: the best of a
few repeats after a warm-up (first calls compile kernels and fill caches)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable


def best_rate(run: Callable[[], object], items: int, repeats: int = 3,
              sync: Callable[[], object] | None = None) -> float:
    """Items per second of ``run()`` (which processes ``items`` items), best of ``repeats``
    after one warm-up call; ``sync`` waits for asynchronous work (a CUDA stream) to end."""
    best = math.inf
    for attempt in range(repeats + 1):
        if sync:
            sync()
        start = time.perf_counter()
        run()
        if sync:
            sync()
        if attempt:
            best = min(best, time.perf_counter() - start)
    return items / best
