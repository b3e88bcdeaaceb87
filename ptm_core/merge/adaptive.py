"""Methods that weigh their inputs from the tensors themselves: Model Stock, SCE, NearSwap,
Arcee Fusion and RAM / RAM+ (tensor-local).

Pure float32 tensor functions with MergeKit 0.1.5's operation order (merge_methods/
model_stock.py, sce.py, nearswap.py, arcee_fusion.py, ram.py). Each reads the whole tensor
(angles, variances, quantiles, overlap counts) except NearSwap and RAM, which are elementwise.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

# Arcee Fusion estimates its quantiles from a sample of this many entries of a larger tensor.
_QUANTILE_SAMPLE = 1_000_000


def model_stock(base: torch.Tensor, inputs: list[torch.Tensor], filter_wise: bool = False) -> torch.Tensor:
    """Interpolate from the base towards the inputs' average by a ratio set by the mean cosine
    between their deltas (per row with filter_wise)."""
    shape = base.shape
    if filter_wise:
        w0 = base.unsqueeze(0) if base.dim() == 1 else base
        ws = [w.unsqueeze(0) for w in inputs] if base.dim() == 1 else list(inputs)
    else:
        w0, ws = base.reshape(-1), [w.reshape(-1) for w in inputs]
    offsets = [w - w0 for w in ws]
    cosines = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            norm = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cosines.append(((a * b).sum(dim=-1) / norm.clamp(min=1e-6)).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    n = len(ws)
    den = 1 + (n - 1) * cos
    singular = den.abs() < 1e-6  # no finite estimate: keep the base there
    t = torch.where(singular, torch.zeros_like(cos),
                    (n * cos) / torch.where(singular, torch.ones_like(den), den))
    return (t * (sum(ws) / n) + (1 - t) * w0).reshape(shape)


def sce(base: torch.Tensor, inputs: list[torch.Tensor], select_topk: float = 1.0) -> torch.Tensor:
    """Select the entries where the task vectors vary most, weigh each task vector by its
    mean square, erase minority signs, and take the weighted mean."""
    if not inputs:
        return base
    tvs = torch.stack([x - base for x in inputs], dim=0)
    if select_topk < 1:
        tvs = tvs * _variance_mask(tvs, select_topk).unsqueeze(0)
    majority = (tvs.sum(dim=0) >= 0).to(tvs.dtype) * 2 - 1
    erase = tvs.sign() == majority
    weights = tvs.square().reshape(tvs.shape[0], -1).mean(dim=1)
    total = torch.sum(weights).item()
    weights = torch.ones_like(weights) / weights.shape[0] if abs(total) < 1e-6 else weights / total
    while weights.dim() < tvs.dim():
        weights = weights.unsqueeze(-1)
    erased = weights * erase
    return base + (tvs * erased).sum(dim=0) / torch.sum(erased, dim=0).clamp(min=1e-6)


def _variance_mask(tvs: torch.Tensor, density: float) -> torch.Tensor:
    if density <= 0:
        return torch.zeros_like(tvs[0])
    var = torch.var(tvs, dim=0, unbiased=False)
    k = int(torch.count_nonzero(var) * density)
    mask = torch.zeros_like(var)
    if k:
        mask.view(-1)[torch.topk(var.abs().view(-1), k=k, largest=True).indices] = 1
    return mask


def nearswap(base: torch.Tensor, other: torch.Tensor, t: float) -> torch.Tensor:
    """Take the other model's value where it is within about t of the base's."""
    weight = (t / torch.abs(base - other).clamp(min=1e-6)).clamp(min=0, max=1)
    return weight * other + (1 - weight) * base


def arcee_fusion(base: torch.Tensor, other: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Keep the other model's changes whose importance (|change| times the KL divergence of
    the rows' softmax) is an upper outlier: above median + 1.5 IQR."""
    eps = 1e-8
    p, q = F.softmax(other, dim=-1) + eps, F.softmax(base, dim=-1) + eps
    importance = (other - base).abs() * torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)
    flat = importance.reshape(-1)
    if flat.numel() > _QUANTILE_SAMPLE:  # sampled with replacement, from our seeded generator
        idx = torch.randint(flat.numel(), (_QUANTILE_SAMPLE,), generator=generator)
        flat = flat[idx.to(flat.device)]
    ordered = torch.sort(flat).values
    q1, median, q3 = ordered[(torch.tensor([0.25, 0.5, 0.75]) * (ordered.numel() - 1)).long()
                             .to(ordered.device)]
    mask = (importance >= median + 1.5 * (q3 - q1)).float()
    return base + (other - base) * mask


def _ram_vectors(base: torch.Tensor, inputs: list[torch.Tensor], epsilon: float):
    """Task vectors (flattened), which entries each changes by more than epsilon, and how many
    inputs change each entry."""
    tv = torch.stack([t - base for t in inputs], dim=0).view(len(inputs), -1)
    nonzero = tv.abs() > epsilon
    counts = nonzero.sum(dim=0, keepdim=True)
    return tv, nonzero, counts, counts > 1, counts == 1


def ram(base: torch.Tensor, inputs: list[torch.Tensor], epsilon: float = 1e-5) -> torch.Tensor:
    """Reinforced Agent Merging: an entry changed by one input keeps that change; one changed
    by several gets their mean change."""
    if not inputs:
        return base
    tv, nonzero, counts, overlap, unique = _ram_vectors(base, inputs, epsilon)
    tv = tv * nonzero
    merged = ((tv * unique) + (tv * overlap / counts.clamp(min=1))).sum(dim=0, keepdim=True)
    return base + merged.reshape_as(base)


def ramplus_tl(base: torch.Tensor, inputs: list[torch.Tensor], r: float = 0.1,
               alpha: float = 0.2, epsilon: float = 1e-5) -> torch.Tensor:
    """RAM+ (tensor-local): as RAM, with each input's unique changes scaled up by
    1 + r · min(alpha, shared / unique entries of that input in this tensor)."""
    if not inputs:
        return base
    tv, nonzero, counts, overlap, unique = _ram_vectors(base, inputs, epsilon)
    shared_n = (nonzero & overlap).sum(dim=1)
    unique_n = (nonzero & unique).sum(dim=1)
    rho = shared_n / unique_n.clamp(min=epsilon)
    lam = 1 + r * rho.clamp(min=0, max=alpha)
    tv = tv * nonzero
    merged = ((tv * unique * lam.unsqueeze(-1))
              + (tv * overlap / counts.clamp(min=1))).sum(dim=0, keepdim=True)
    return base + merged.reshape_as(base)
