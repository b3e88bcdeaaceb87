"""The paper's runs on the real model, as a plan (parents before children).

    pre            θ_pre: SmolLM2-135M-Instruct, dequantized from the package (not trained here)
    general        θ_G: θ_pre + a LoRA tuned on G
    skill-<s>      θ_D: θ_pre + a LoRA tuned on skill s alone
    cft-<s>-<i>    CFT: θ_G + a LoRA tuned on the i-th nested amount of skill s
    rt-<s>-<i>     RT: θ_pre + a LoRA tuned on G plus the i-th amount of skill s
    cft-all, rt-all  on all three skills together (paper Table 4)

`priority` orders the build so that what the explorer needs first (the merge inputs) is
trained first and the reference runs after; the build is resumable at any point."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ptm_core.smollm2.data import SKILLS, TRAIN_SIZES

FRACTIONS = (0.5, 1.0)  # of each skill's data, for CFT and RT
ALL = "all"


@dataclass(frozen=True)
class RunSpec:
    name: str
    kind: str  # general | skill | cft | rt
    init: str  # the run whose weights it starts from ("pre" or "general")
    data: dict[str, int] = field(default_factory=dict)  # part -> first n training examples
    skills: tuple[str, ...] = ()
    fraction: float | None = None
    priority: int = 0

    def describe(self) -> dict:
        return {**asdict(self), "skills": list(self.skills)}


def plan(sizes: dict[str, int] | None = None) -> list[RunSpec]:
    sizes = dict(TRAIN_SIZES if sizes is None else sizes)
    g = sizes["general"]
    runs = [RunSpec("general", "general", "pre", {"general": g}, priority=0)]
    runs += [RunSpec(f"skill-{s}", "skill", "pre", {s: sizes[s]}, (s,), 1.0, priority=0) for s in SKILLS]
    for i, f in enumerate(FRACTIONS, 1):
        full = f == 1.0
        for s in SKILLS:
            n = max(1, round(f * sizes[s]))
            runs.append(RunSpec(f"cft-{s}-{i}", "cft", "general", {s: n}, (s,), f, priority=1 if full else 3))
            runs.append(RunSpec(f"rt-{s}-{i}", "rt", "pre", {"general": g, s: n}, (s,), f, priority=2 if full else 3))
    everything = {s: sizes[s] for s in SKILLS}
    runs.append(RunSpec(f"cft-{ALL}", "cft", "general", everything, SKILLS, 1.0, priority=2))
    runs.append(RunSpec(f"rt-{ALL}", "rt", "pre", {"general": g, **everything}, SKILLS, 1.0, priority=3))
    return runs


def build_order(runs: list[RunSpec]) -> list[RunSpec]:
    """By priority, parents first (a run's init always has a lower or equal priority)."""
    return sorted(runs, key=lambda r: (r.priority, r.kind != "general"))


def wise_ft_source(skill: str) -> str:
    """The CFT run on the full skill data: θ_CFT for WiSE-FT."""
    return f"cft-{skill}-{FRACTIONS.index(1.0) + 1}"
