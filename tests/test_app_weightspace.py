"""Task-vector statistics against direct computations."""

from __future__ import annotations

import pytest
import torch

from ptm_core.app.weightspace import layer_group, task_vector_stats


def _states(seed=0):
    g = torch.Generator().manual_seed(seed)
    pre = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(16, 8, generator=g) for i in range(3)}
    pre["model.embed_tokens.weight"] = torch.randn(20, 8, generator=g)
    pre["lm_head.weight"] = torch.randn(20, 8, generator=g)
    a = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in pre.items()}
    b = {k: v + 0.5 * (a[k] - v) + 0.1 * torch.randn(v.shape, generator=g) for k, v in pre.items()}
    c = {k: v - (a[k] - v) for k, v in pre.items()}  # τ_c = −τ_a
    return pre, {"a": a, "b": b, "c": c}


def _flat(pre, m):
    return torch.cat([(m[k] - pre[k]).flatten() for k in pre]).double()


def test_cosine_and_conflicts_match_direct_computation():
    pre, models = _states()
    s = task_vector_stats(pre, models)
    ta, tb = _flat(pre, models["a"]), _flat(pre, models["b"])
    cos = torch.nn.functional.cosine_similarity(ta, tb, dim=0).item()
    assert s.cosine().loc["a", "b"] == pytest.approx(cos, abs=1e-9)
    assert s.cosine().loc["a", "c"] == pytest.approx(-1.0)
    both = (ta != 0) & (tb != 0)
    conf = ((torch.sign(ta) != torch.sign(tb)) & both).sum().item() / both.sum().item()
    assert s.conflict().loc["a", "b"] == pytest.approx(conf)
    assert s.conflict().loc["a", "c"] == pytest.approx(1.0)
    assert s.conflict().loc["a", "a"] == 0.0
    assert s.n_params == sum(v.numel() for v in pre.values())


def test_per_layer_groups():
    pre, models = _states()
    s = task_vector_stats(pre, models)
    assert s.groups == ["embed", "0", "1", "2", "head"]
    per = s.cosine_per_layer()
    assert list(per.index) == ["a · b", "a · c", "b · c"]
    k = "model.layers.1.mlp.up_proj.weight"
    ta = (models["a"][k] - pre[k]).flatten().double()
    tb = (models["b"][k] - pre[k]).flatten().double()
    assert per.loc["a · b", "1"] == pytest.approx(
        torch.nn.functional.cosine_similarity(ta, tb, dim=0).item())
    assert s.conflict_per_layer().loc["a · c"].eq(1.0).all()
    assert layer_group("model.norm.weight") == "head"
    assert layer_group("transformer.h.11.attn.c_attn.weight") == "11"


def test_reads_lazily_from_a_tensor_source():
    pre, models = _states()

    class Source:
        def __init__(self, d):
            self.d, self.reads = d, 0

        def tensor_names(self):
            return list(self.d)

        def get(self, name):
            self.reads += 1
            return self.d[name]

    src = {k: Source(v) for k, v in models.items()}
    s = task_vector_stats(Source(pre), src)
    assert s.cosine().loc["a", "c"] == pytest.approx(-1.0)
    assert all(x.reads == len(pre) for x in src.values())  # each tensor read once


def test_zero_task_vector_gives_nan_not_an_error():
    pre, models = _states()
    s = task_vector_stats(pre, {"same": pre, "a": models["a"]})
    assert s.cosine().isna().loc["same", "a"]
