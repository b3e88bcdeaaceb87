"""Generate with a fresh vLLM engine in a separate process.

vLLM keeps process-global state (its distributed groups): one engine per process. Closing a
second in-process engine tears down the groups the first still uses. Cross-checks that need a
fresh engine beside a warm one (e.g. "does this swap equal a fresh start from the exported
checkpoint?") run it here instead."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from ptm_core.engine.base import Sampling

T = TypeVar("T")


def run_in_fresh_process(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a spawned child (fn and its arguments must pickle)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def _generate(model_dir: str, prompts: list[str], sampling: Sampling,
              engine_kwargs: dict[str, Any]) -> list[list[str]]:
    from ptm_core.engine.vllm_engine import VLLMEngine

    with VLLMEngine(model_dir, **engine_kwargs) as engine:
        return engine.generate(prompts, sampling)


def _evaluate(model_dir: str, suite: Any, engine_kwargs: dict[str, Any]):
    from ptm_core.engine.vllm_engine import VLLMEngine

    with VLLMEngine(model_dir, **engine_kwargs) as engine:
        return suite.run(engine)


def generate_in_fresh_engine(model_dir: str | Path, prompts: list[str], sampling: Sampling,
                             **engine_kwargs: Any) -> list[list[str]]:
    """`VLLMEngine(model_dir, **engine_kwargs).generate(prompts, sampling)` in a child process."""
    return run_in_fresh_process(_generate, str(model_dir), prompts, sampling, engine_kwargs)


def evaluate_in_fresh_engine(model_dir: str | Path, suite: Any, **engine_kwargs: Any):
    """`suite.run(VLLMEngine(model_dir, **engine_kwargs))` in a child process."""
    return run_in_fresh_process(_evaluate, str(model_dir), suite, engine_kwargs)
