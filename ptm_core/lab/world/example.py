"""One instruction example: a user prompt and the assistant answer the lab trains on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Domain = Literal["general", "science", "coding", "safety"]
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    """`domain` is the data set the example belongs to (G or one skill D); `kind` its task type.

    `answer` is the training target and the reference: exact-match answer for general and
    science kinds, a reference solution for coding (scored by `tests`), a refusal for unsafe
    prompts and a compliant reply for safe lookalikes (scored by refusal detection).
    """

    domain: Domain
    kind: str
    prompt: str
    answer: str
    tests: str = ""  # coding only: assert statements run against the generated function
    key: str = ""  # what the example is about (a list, a fact, a substance, a function name):
    # its split is decided by this key, so content of an eval example is never trained on

    @property
    def split_key(self) -> str:
        return self.key or prompt_key(self.prompt)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Example":
        return Example(**d)


def prompt_key(prompt: str) -> str:
    """What makes two prompts "the same example": case and whitespace do not count."""
    return " ".join(prompt.lower().split())
