"""Task vectors in weight space: signed cosine similarity and sign conflicts, overall and per layer.

τ_k = θ_k − θ_pre for every skill (and τ_G = θ_G − θ_pre when the general model is given). For
each pair of task vectors:

- cosine similarity  cos(τ_a, τ_b) = <τ_a, τ_b> / (‖τ_a‖ ‖τ_b‖), in [-1, 1];
- sign conflicts: among the coordinates where both τ_a and τ_b are non-zero, the fraction where
  their signs differ (what TIES-merging resolves), in [0, 1].

Pure: inputs are state dicts (``Mapping[str, torch.Tensor]``) or any object with
``tensor_names()`` and ``get(name)`` (a lazily-read checkpoint), read one tensor at a time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Protocol, Union

import numpy as np
import pandas as pd
import torch

CHUNK = 1 << 22  # elements per block: bounds memory to a few tensors' worth


class TensorSource(Protocol):
    def tensor_names(self) -> list[str]: ...
    def get(self, name: str) -> torch.Tensor: ...


Source = Union[Mapping[str, torch.Tensor], TensorSource]


def _names(src: Source) -> list[str]:
    return list(src.keys()) if isinstance(src, Mapping) else list(src.tensor_names())


def _get(src: Source, name: str) -> torch.Tensor:
    return src[name] if isinstance(src, Mapping) else src.get(name)


def layer_group(name: str) -> str:
    """'embed', the layer index as text, or 'head' (final norm, LM head, everything after):
    `ptm_core.merge.task_vectors.layer_group` with the groups after the layers as one."""
    from ptm_core.merge import task_vectors

    g = task_vectors.layer_group(name)
    return g if g == task_vectors.EMBED or g.isdigit() else "head"


def _group_order(groups) -> list[str]:
    layers = sorted((g for g in groups if g.isdigit()), key=int)
    return (["embed"] if "embed" in groups else []) + layers + (["head"] if "head" in groups else [])


@dataclass
class TaskVectorStats:
    """Pairwise statistics of task vectors; frames are labelled by the task-vector names."""

    names: list[str]
    groups: list[str]  # 'embed', '0', '1', ..., 'head'
    dot: dict[str, np.ndarray]  # group -> K×K dot products
    conflicts: dict[str, np.ndarray]  # group -> K×K sign-conflict counts
    both: dict[str, np.ndarray]  # group -> K×K counts of coordinates where both are non-zero
    n_params: int

    def _total(self, table: dict[str, np.ndarray]) -> np.ndarray:
        return sum(table.values()) if table else np.zeros((len(self.names),) * 2)

    @staticmethod
    def _cos(dot: np.ndarray) -> np.ndarray:
        norms = np.sqrt(np.clip(np.diag(dot), 0, None))
        denom = np.outer(norms, norms)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(denom > 0, dot / denom, np.nan)
        return np.clip(c, -1.0, 1.0)

    @staticmethod
    def _frac(conf: np.ndarray, both: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(both > 0, conf / np.maximum(both, 1), np.nan)

    def cosine(self) -> pd.DataFrame:
        return pd.DataFrame(self._cos(self._total(self.dot)), index=self.names, columns=self.names)

    def conflict(self) -> pd.DataFrame:
        f = self._frac(self._total(self.conflicts), self._total(self.both))
        return pd.DataFrame(f, index=self.names, columns=self.names)

    def norms(self) -> pd.DataFrame:
        """‖τ_k‖ per layer group (rows: task vectors)."""
        data = {g: np.sqrt(np.clip(np.diag(self.dot[g]), 0, None)) for g in self.groups}
        return pd.DataFrame(data, index=self.names)[self.groups]

    def _per_layer(self, fn) -> pd.DataFrame:
        pairs = list(itertools.combinations(range(len(self.names)), 2))
        rows = {}
        for i, j in pairs:
            rows[f"{self.names[i]} · {self.names[j]}"] = [fn(g)[i, j] for g in self.groups]
        return pd.DataFrame.from_dict(rows, orient="index", columns=self.groups)

    def cosine_per_layer(self) -> pd.DataFrame:
        return self._per_layer(lambda g: self._cos(self.dot[g]))

    def conflict_per_layer(self) -> pd.DataFrame:
        return self._per_layer(lambda g: self._frac(self.conflicts[g], self.both[g]))


def task_vector_stats(pre: Source, models: Mapping[str, Source],
                      names: list[str] | None = None) -> TaskVectorStats:
    """Cosine similarity and sign conflicts of τ_k = models[k] − pre, accumulated per layer.

    Tensors present in ``pre`` and every model with equal shapes are compared; others are
    skipped. Accumulation is in float64, one tensor (and at most ``CHUNK`` elements) at a time.
    """
    keys = list(models)
    k = len(keys)
    common = [n for n in _names(pre) if all(n in set(_names(m)) for m in models.values())] \
        if names is None else list(names)
    dot: dict[str, np.ndarray] = {}
    conf: dict[str, np.ndarray] = {}
    both: dict[str, np.ndarray] = {}
    n_params = 0
    model_names = {key: set(_names(m)) for key, m in models.items()}
    for name in common:
        if not all(name in model_names[key] for key in keys):
            continue
        base = _get(pre, name).detach().to(torch.float64).reshape(-1)
        taus = []
        for key in keys:
            t = _get(models[key], name).detach().to(torch.float64).reshape(-1)
            if t.shape != base.shape:
                break
            taus.append(t - base)
        else:
            g = layer_group(name)
            if g not in dot:
                dot[g] = np.zeros((k, k))
                conf[g] = np.zeros((k, k))
                both[g] = np.zeros((k, k))
            tau = torch.stack(taus)  # K × N
            n_params += tau.shape[1]
            for start in range(0, tau.shape[1], CHUNK):
                blk = tau[:, start:start + CHUNK]
                dot[g] += (blk @ blk.T).numpy()
                pos = (blk > 0).to(torch.float64)
                neg = (blk < 0).to(torch.float64)
                c = pos @ neg.T
                conf[g] += (c + c.T).numpy()
                both[g] += ((pos + neg) @ (pos + neg).T).numpy()
    groups = _group_order(set(dot))
    return TaskVectorStats(keys, groups, dot, conf, both, n_params)


def checkpoint_stats(roles: Mapping[str, str]) -> "TaskVectorStats":
    """`task_vector_stats` of the checkpoints on disk: `roles` maps "base" and each other role
    to a model directory; every checkpoint is closed afterwards."""
    from ptm_core.merge.checkpoint import Checkpoint

    opened = {r: Checkpoint.open(p) for r, p in roles.items()}
    try:
        return task_vector_stats(opened["base"], {k: v for k, v in opened.items() if k != "base"})
    finally:
        for c in opened.values():
            c.close()
