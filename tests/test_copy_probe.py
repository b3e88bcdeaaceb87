"""copy_probe.CopyProbe: a tensor gets a destination only when its loader copies it, whole and
once, into a region of one parameter that nothing else writes."""

from __future__ import annotations

import torch

from ptm_core.engine.copy_probe import CopyProbe


class Model(torch.nn.Module):
    """Parameters filled by hand-written loaders of the kinds vLLM's have."""

    def __init__(self):
        super().__init__()
        for name, shape in {"fused": (6, 4), "norm": (4,), "square": (4, 4), "twice": (4,),
                            "shared": (4, 4), "plain": (4,)}.items():
            self.register_parameter(name, torch.nn.Parameter(torch.zeros(shape), requires_grad=False))

    def load_weights(self, weights):
        p = dict(self.named_parameters())
        for name, w in weights:
            if name == "q":  # a fused slice, through a narrow to the whole tensor (one rank)
                p["fused"].data.narrow(0, 0, 2).copy_(w.narrow(0, 0, w.shape[0]))
            elif name == "k":
                p["fused"].data[2:4].copy_(w)
            elif name == "v":  # only part of the tensor: not a whole copy
                p["fused"].data[4:6].copy_(w[:2])
            elif name == "norm":  # transformed on the way
                p["norm"].data.copy_(w * 2)
            elif name == "square":  # transposed
                p["square"].data.copy_(w.t())
            elif name == "twice":
                p["twice"].data.copy_(w)
                p["twice"].data.add_(w)
            elif name == "shared":  # copied whole, but another loader writes into it too
                p["shared"].data.copy_(w)
                p["shared"].data[0].fill_(1.0)
            elif name == "plain":
                p["plain"].data.copy_(w)
        return set(p)


def weights():
    return [("q", torch.randn(2, 4)), ("k", torch.randn(2, 4)), ("v", torch.randn(4, 4)),
            ("norm", torch.randn(4)), ("square", torch.randn(4, 4)), ("twice", torch.randn(4)),
            ("shared", torch.randn(4, 4)), ("plain", torch.randn(4))]


def test_whole_single_copies_into_one_parameter_are_destinations():
    model, probe = Model(), CopyProbe()
    given = weights()
    with torch.no_grad(), probe:
        model.load_weights(probe.watch(iter(given)))
    params = dict(model.named_parameters())
    found = probe.destinations(params)
    assert set(found) == {"q", "k", "plain"}
    fused = params["fused"]
    assert found["q"][1] == found["k"][1] == "fused" and found["plain"][1] == "plain"
    assert found["q"][0].data_ptr() == fused.data_ptr()
    assert found["k"][0].data_ptr() == fused[2].data_ptr()
    # writing into a destination is loading that tensor
    values = dict(given)
    found["k"][0].copy_(values["k"] + 1)
    assert torch.equal(fused[2:4], values["k"] + 1) and torch.equal(fused[:2], values["q"])


def test_nothing_is_watched_outside_the_probe():
    model, probe = Model(), CopyProbe()
    with torch.no_grad():
        model.load_weights(probe.watch(iter(weights())))
    assert probe.destinations(dict(model.named_parameters())) == {}


def test_a_failure_inside_the_probe_leaves_the_load_intact_and_finds_nothing(monkeypatch):
    import ptm_core.engine.copy_probe as copy_probe

    def broken(t):
        raise RuntimeError("unexpected tensor")

    monkeypatch.setattr(copy_probe, "_span", broken)
    model, probe = Model(), CopyProbe()
    given = weights()
    with torch.no_grad(), probe:
        model.load_weights(probe.watch(iter(given)))
    assert torch.equal(model.plain, dict(given)["plain"])  # the loaders still ran
    assert probe.destinations(dict(model.named_parameters())) == {}
