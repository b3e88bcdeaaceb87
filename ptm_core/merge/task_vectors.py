"""Task-vector diagnostics in weight space: how large each update is and where it points.

For models θ_k finetuned from θ_pre, τ_k = θ_k − θ_pre. Per model, overall and per layer group:

- the relative size ‖τ_k‖ / ‖θ_pre‖ (weight arithmetic assumes it is small: real finetunes move
  the weights by well under a percent; the lab's first build moved them by 25-47 %), and the
  RMS of τ_k per weight (DARE compares SFT deltas per weight);
- the cosine between every pair of task vectors, cos(τ_a, τ_b) = <τ_a, τ_b> / (‖τ_a‖ ‖τ_b‖).

Everything follows from one Gram matrix per layer group of the vectors (θ_pre, τ_1 .. τ_K),
accumulated in float64 while the checkpoints stream: one tensor name at a time, and big tensors
in blocks of rows, so at most one block of each model is in memory (checkpoints can be 0.5 GB).
Inputs are `Mapping[str, Tensor]` state dicts or `TensorSource`s (`tensor_names`, `shape`,
`get(name, rows)`: `ptm_core.merge.checkpoint.Checkpoint`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Union

import numpy as np
import torch

# Groups besides the layer indices: input embeddings, the final norm, the output head.
EMBED, NORM, HEAD, OTHER = "embed", "norm", "head", "other"
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
_EMBED = re.compile(r"embed_tokens|embed_in|(?:^|\.)(?:wte|wpe|tok_embeddings|embeddings?)(?:\.|$)")
_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out|output|score)\.")
_NORM = re.compile(r"norm|(?:^|\.)ln_f\.")
BLOCK_ELEMENTS = 1 << 22  # elements per block, summed over the models read together


class TensorSource(Protocol):
    def tensor_names(self) -> list[str]: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor: ...


Source = Union[Mapping[str, torch.Tensor], TensorSource]


def layer_group(name: str) -> str:
    """The group of a parameter: its layer index ('0', '1', ...) when the name has one, else
    'embed' (token and position embeddings), 'norm' (the final norm), 'head' (the LM head)
    or 'other'. Norms inside a layer belong to the layer."""
    m = _LAYER.search(name)
    if m:
        return m.group(1)
    if _EMBED.search(name):
        return EMBED
    if _HEAD.search(name):
        return HEAD
    if _NORM.search(name):
        return NORM
    return OTHER


def group_order(groups) -> list[str]:
    """Embeddings first, then the layers in order, the final norm, the head, anything else."""
    groups = set(groups)
    layers = sorted((g for g in groups if g.isdigit()), key=int)
    return ([EMBED] if EMBED in groups else []) + layers + \
        [g for g in (NORM, HEAD, OTHER) if g in groups]


def _names(src: Source) -> list[str]:
    return list(src.keys()) if isinstance(src, Mapping) else list(src.tensor_names())


def _shape(src: Source, name: str) -> tuple[int, ...]:
    return tuple(src[name].shape) if isinstance(src, Mapping) else tuple(src.shape(name))


def _rows(src: Source, name: str, rows: tuple[int, int] | None) -> torch.Tensor:
    if isinstance(src, Mapping):
        t = src[name]
        return t if rows is None else t[rows[0]:rows[1]]
    return src.get(name, rows)


def _blocks(shape: tuple[int, ...], k: int, budget: int) -> list[tuple[int, int] | None]:
    """Row ranges covering a tensor so that `k` models' blocks hold about `budget` elements
    together (None: the whole tensor in one read)."""
    n = math.prod(shape)
    if not shape or n * k <= budget:
        return [None]
    per_row = max(1, n // shape[0])
    step = max(1, budget // (k * per_row))
    return [(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]


@dataclass
class TaskVectorReport:
    """Gram matrices of (θ_pre, τ_1 .. τ_K) per layer group; everything else derives from them."""

    names: list[str]  # the task vectors, e.g. "G", "science", "CFT coding, 1 of D"
    groups: list[str]  # group_order of the groups seen
    gram: dict[str, np.ndarray]  # group -> (K+1)×(K+1), index 0 is θ_pre
    n_params: dict[str, int]  # group -> parameters compared
    skipped: list[str] = field(default_factory=list)  # tensors not in every model / other shape

    def _total(self) -> np.ndarray:
        return sum(self.gram.values()) if self.gram else np.zeros((len(self.names) + 1,) * 2)

    @staticmethod
    def _relative(g: np.ndarray) -> list[float | None]:
        pre = math.sqrt(max(g[0, 0], 0.0))
        return [math.sqrt(max(g[i, i], 0.0)) / pre if pre > 0 else None
                for i in range(1, len(g))]

    @staticmethod
    def _cosine(g: np.ndarray) -> list[list[float | None]]:
        d = np.sqrt(np.clip(np.diag(g)[1:], 0, None))
        out = []
        for i in range(len(d)):
            out.append([float(np.clip(g[i + 1, j + 1] / (d[i] * d[j]), -1.0, 1.0))
                        if d[i] > 0 and d[j] > 0 else None for j in range(len(d))])
        return out

    def relative_norms(self) -> dict[str, float | None]:
        """‖τ_k‖ / ‖θ_pre‖ over every compared parameter."""
        return dict(zip(self.names, self._relative(self._total())))

    def relative_norms_per_group(self) -> dict[str, dict[str, float | None]]:
        """‖τ_k‖_g / ‖θ_pre‖_g for each group g: {task vector: {group: ratio}}."""
        per = {g: self._relative(self.gram[g]) for g in self.groups}
        return {n: {g: per[g][i] for g in self.groups} for i, n in enumerate(self.names)}

    def rms(self) -> dict[str, float]:
        """The root mean square of τ_k per weight."""
        total, n = self._total(), sum(self.n_params.values())
        return {name: math.sqrt(max(total[i + 1, i + 1], 0.0) / n) if n else 0.0
                for i, name in enumerate(self.names)}

    def cosine(self) -> list[list[float | None]]:
        """cos(τ_a, τ_b) over every compared parameter, rows and columns in `names` order
        (None where a task vector is zero)."""
        return self._cosine(self._total())

    def cosine_per_group(self) -> dict[str, list[list[float | None]]]:
        return {g: self._cosine(self.gram[g]) for g in self.groups}

    def to_dict(self) -> dict:
        """JSON-ready (no NaN: an undefined ratio or cosine is None)."""
        return {"names": list(self.names), "groups": list(self.groups),
                "n_params": {g: self.n_params[g] for g in self.groups},
                "tau_over_pre": self.relative_norms(),
                "tau_over_pre_per_group": self.relative_norms_per_group(),
                "tau_rms": self.rms(), "cosine": self.cosine(),
                "cosine_per_group": self.cosine_per_group(), "skipped": list(self.skipped)}


def task_vector_report(pre: Source, models: Mapping[str, Source], *,
                       block_elements: int = BLOCK_ELEMENTS) -> TaskVectorReport:
    """The Gram matrices of τ_k = models[k] − pre, streamed: for each tensor of `pre` (in its
    order), each block of rows is read from every model, folded in, and dropped. Tensors that
    some model lacks or holds in another shape are skipped (and listed)."""
    names = list(models)
    k = len(names) + 1
    have = {key: set(_names(m)) for key, m in models.items()}
    gram: dict[str, np.ndarray] = {}
    n_params: dict[str, int] = {}
    skipped: list[str] = []
    for tensor in _names(pre):
        shape = _shape(pre, tensor)
        if any(tensor not in have[key] or _shape(models[key], tensor) != shape for key in names):
            skipped.append(tensor)
            continue
        g = layer_group(tensor)
        acc = gram.setdefault(g, np.zeros((k, k)))
        for rows in _blocks(shape, k, block_elements):
            base = _rows(pre, tensor, rows).detach().to(torch.float64).reshape(-1)
            vecs = [base] + [_rows(models[key], tensor, rows).detach().to(torch.float64)
                             .reshape(-1) - base for key in names]
            stack = torch.stack(vecs)
            acc += (stack @ stack.T).numpy()
            del base, vecs, stack
        n_params[g] = n_params.get(g, 0) + math.prod(shape)
    return TaskVectorReport(names, group_order(gram), gram, n_params, skipped)


def checkpoints_report(pre: str | Path, models: Mapping[str, str | Path], **kwargs
                       ) -> TaskVectorReport:
    """`task_vector_report` of model directories on disk (safetensors, read tensor by tensor
    with `Checkpoint`); every checkpoint is closed afterwards."""
    from ptm_core.merge.checkpoint import Checkpoint

    opened: list[Checkpoint] = []

    def open_(path) -> Checkpoint:
        opened.append(Checkpoint.open(str(path)))
        return opened[-1]

    try:
        base = open_(pre)
        return task_vector_report(base, {n: open_(p) for n, p in models.items()}, **kwargs)
    finally:
        for c in opened:
            c.close()
