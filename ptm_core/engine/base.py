"""The engine interface that suites run against."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ptm_core.merge.recipe import Recipe


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters; part of every cache key, so keep them plain values."""

    temperature: float = 0.0
    max_tokens: int = 64
    n: int = 1
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@runtime_checkable
class Engine(Protocol):
    """Generates completions for chat prompts with the weights of the last applied recipe."""

    kind: str  # "vllm" or "hf": part of the cache key

    def apply(self, recipe: "Recipe") -> float:
        """Make the engine's weights those of `recipe`; return the seconds the swap took."""

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        """One list of `sampling.n` completions per prompt. Prompts are user messages; the
        engine applies the model's chat template."""
