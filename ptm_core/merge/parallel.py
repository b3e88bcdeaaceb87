"""Ordered parallel map over threads: the exporter's and the in-engine swap's merge."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_parallel(fn: Callable[[T], R], tasks: list[T], workers: int, window: int = 8,
                     initializer: Optional[Callable[[], None]] = None) -> Iterator[R]:
    """fn over tasks on `workers` threads, results in order, at most `window` in flight (bounded
    memory). Torch releases the GIL in its kernels, so threads give real parallelism; one
    intra-op thread each avoids OpenMP spin-waiting when cores are oversubscribed."""
    if workers <= 1:
        yield from map(fn, tasks)
        return
    with ThreadPoolExecutor(workers, initializer=initializer) as pool:
        pending: deque[Future] = deque()
        it = iter(tasks)
        try:
            for task in it:
                pending.append(pool.submit(fn, task))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
