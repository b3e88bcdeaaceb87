"""Ordered parallel map over threads, and torch's thread count around it: the exporter's and
the in-engine swap's merge."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar

import torch

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


def set_torch_threads(n: int) -> None:
    """torch.set_num_threads, also where vLLM's CPU worker has replaced that name with a no-op
    (it binds its own threads when it runs in its own process; in-process it does not). The
    calling thread's setting is also torch's default for threads that start later."""
    torch._C.set_num_threads(n)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to `n` for the block, then put back."""
    before = torch.get_num_threads()
    set_torch_threads(n)
    try:
        yield
    finally:
        set_torch_threads(before)
