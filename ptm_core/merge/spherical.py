"""Interpolation on the hypersphere: SLERP, NuSLERP, Multi-SLERP and the Karcher mean.

Pure float32 tensor functions with MergeKit 0.1.5's operation order (merge_methods/slerp.py,
nuslerp.py, multislerp.py, karcher.py), so results agree to rounding. Each treats one whole
tensor at a time (norms and angles span the tensor), so none can be merged in row chunks.
"""

from __future__ import annotations

from typing import Optional

import torch

# MergeKit bounds its float32 scratch by reading a tensor in column chunks of this many
# elements; the sums over chunks are kept in the same order so large tensors round alike.
_SLERP_CHUNK = 1024 * 1024


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995,
          eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation from v0 (t=0) to v1 (t=1) over the flattened tensor; nearly
    collinear (or antipodal) pairs interpolate linearly."""
    a, b = v0.reshape(1, -1), v1.reshape(1, -1)
    tt = torch.tensor([[t]], dtype=torch.float32, device=a.device)
    if not a.shape[1]:
        return ((1 - tt) * a + tt * b).reshape(v0.shape)
    spans = range(0, a.shape[1], _SLERP_CHUNK)
    norm_a = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(a[:, s:s + _SLERP_CHUNK], dim=1, keepdim=True) for s in spans]), dim=0)
    norm_b = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(b[:, s:s + _SLERP_CHUNK], dim=1, keepdim=True) for s in spans]), dim=0)
    norm_a = torch.where(norm_a > eps, norm_a, 1)
    norm_b = torch.where(norm_b > eps, norm_b, 1)
    dot = torch.stack([((a[:, s:s + _SLERP_CHUNK] / norm_a) * (b[:, s:s + _SLERP_CHUNK] / norm_b))
                       .sum(dim=1, keepdim=True) for s in spans]).sum(dim=0).clamp(-1, 1)
    linear = dot.abs() > dot_threshold
    theta = torch.acos(torch.where(linear, 0, dot))
    sin_theta = torch.sin(theta)
    coef_a = torch.where(linear, 1 - tt, torch.sin((1 - tt) * theta) / sin_theta)
    coef_b = torch.where(linear, tt, torch.sin(tt * theta) / sin_theta)
    return (coef_a * a + coef_b * b).reshape(v0.shape)


def nuslerp(t: float, v0: torch.Tensor, v1: torch.Tensor, row_wise: bool = False,
            flatten: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """SLERP over the flattened tensor (flatten), or over each row (row_wise: each column)."""
    shape = v0.shape
    if flatten:
        v0, v1 = v0.reshape(-1), v1.reshape(-1)
    elif row_wise:
        v0, v1 = v0.transpose(0, -1), v1.transpose(0, -1)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / torch.norm(x, dim=-1, keepdim=True).clamp(min=1e-7)

    cos_theta = torch.sum(unit(v0) * unit(v1), dim=-1, keepdim=True).clamp(-1, 1)
    colinear = (1 - cos_theta.square()) <= eps ** 2
    theta = torch.acos(torch.where(colinear, 0, cos_theta))
    result = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
    result = torch.where(colinear, (1 - t) * v0 + t * v1, result)
    if row_wise and not flatten:
        result = result.transpose(0, -1)
    return result.reshape(shape)


def multislerp(tensors: list[torch.Tensor], weights: list[float], base: Optional[torch.Tensor],
               normalize_weights: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Barycentric interpolation on the hypersphere: project onto the tangent space at the
    weighted mean direction, average there, map back; scaled to the weighted mean norm."""
    if len(tensors) == 1:
        return tensors[0]
    stacked = torch.stack(tensors, dim=0)
    if base is not None:
        stacked -= base
    flat = stacked.view(stacked.shape[0], -1)
    w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device)
    if normalize_weights:
        w = w / w.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    units = flat / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if stacked.shape[0] != 2:
            raise ValueError("multislerp: the weighted directions cancel out (antipodal inputs "
                             "with balancing weights); choose other weights")
        res = (stacked[0] * w[0] + stacked[1] * w[1]).view(stacked.shape[1:])
        return res + base if base is not None else res
    mean = mean / mean_norm
    tangents = units - (units * mean).sum(-1, keepdim=True) * mean
    tangent = (tangents * w.view(-1, 1)).sum(0)
    tangent_norm = torch.norm(tangent) + eps
    result = mean * torch.cos(tangent_norm) + tangent * (torch.sin(tangent_norm) / tangent_norm)
    result = (result * (norms.squeeze(-1) * w).sum()).view(stacked.shape[1:])
    return result + base if base is not None else result


def karcher(tensors: list[torch.Tensor], max_iter: int = 10, tol: float = 1e-5) -> torch.Tensor:
    """The equal-weight Karcher (Riemannian) mean of the directions, by fixed-point iteration,
    scaled to the mean norm."""
    if len(tensors) == 1:
        return tensors[0]
    alphas = [1.0 / len(tensors)] * len(tensors)
    norms = [torch.linalg.vector_norm(t) for t in tensors]
    units = [torch.zeros_like(t) if n.item() == 0.0 else t / n for t, n in zip(tensors, norms)]
    valid = [i for i, n in enumerate(norms) if n.item() > tol]
    if not valid:
        return sum(t * 0 for t in tensors)
    total = sum(alphas[i] for i in valid)
    weights = [alphas[i] / total for i in valid]
    vunits = [units[i] for i in valid]
    mean = torch.zeros_like(vunits[0])
    for a, u in zip(weights, vunits):
        mean += a * u
    mean_norm = torch.linalg.vector_norm(mean)
    mean = vunits[0].clone() if mean_norm.item() < tol else mean / mean_norm
    for _ in range(max_iter):
        tangent = torch.zeros_like(mean)
        for a, u in zip(weights, vunits):
            dot = torch.clamp(torch.dot(mean.flatten(), u.flatten()), -1.0, 1.0)
            theta = torch.arccos(dot)
            if theta.item() < tol:
                continue
            tangent += a * (theta / torch.sin(theta)) * (u - dot * mean)
        tangent_norm = torch.linalg.vector_norm(tangent)
        if tangent_norm.item() < tol:
            break
        mean = torch.cos(tangent_norm) * mean + torch.sin(tangent_norm) * (tangent / tangent_norm)
        unit_norm = torch.linalg.vector_norm(mean)
        if unit_norm.item() > tol:
            mean = mean / unit_norm
    return sum(a * n for a, n in zip(alphas, norms)) * mean
