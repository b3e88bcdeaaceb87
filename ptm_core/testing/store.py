"""Small fakes implementing the engine, suite and recipe protocols, for hermetic tests of the
store, the worker and the sweeps (no torch, no vLLM). Also usable by the app's tests.

- `FakeRecipe` / `FakeBuilder`: MergeKit-shaped recipes as plain dicts, built the way
  `ptm_core.merge.ptm` builds them.
- `FakeEngine`: `apply` remembers the recipe's weight per model; `generate` answers every prompt
  with those weights as JSON.
- `FakeSuite`: scores the weights it reads back with a closed-form function of ω, so a test
  knows the exact score of any point (a per-layer ω, a gradient list, included).
- `write_experiment`: an experiment file with empty model directories under a tmp dir.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ptm_core.engine.base import Sampling
from ptm_core.evals.suite import SuiteResult
from ptm_core.store.experiment import Experiment
from ptm_core.store.keys import canonical_json
from ptm_core.testing.engines import ScriptedEngine


class FakeRecipe:
    def __init__(self, data: Mapping[str, Any]):
        self.data = json.loads(json.dumps(data))
        if not self.data.get("models"):
            raise ValueError("a recipe needs models")

    def key(self) -> str:
        return hashlib.sha256(canonical_json(self.data).encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False)

    def model_refs(self) -> list[str]:
        refs = [self.data["base_model"]] if self.data.get("base_model") else []
        return refs + [m["model"] for m in self.data["models"] if m["model"] not in refs]

    def with_refs(self, mapping: Mapping[str, str]) -> "FakeRecipe":
        d = json.loads(json.dumps(self.data))
        if d.get("base_model") in mapping:
            d["base_model"] = mapping[d["base_model"]]
        for m in d["models"]:
            m["model"] = mapping.get(m["model"], m["model"])
        return FakeRecipe(d)

    def weights(self) -> dict[str, float | list[float]]:
        """Model -> its weight: a number, or a gradient's anchors (a per-layer ω) as a list."""
        def w(v):
            return [float(x) for x in v] if isinstance(v, list) else float(v)
        return {m["model"]: w(m.get("parameters", {}).get("weight", 1.0)) for m in self.data["models"]}


def _weight(w):
    return [float(x) for x in w] if isinstance(w, (list, tuple)) else float(w)


class FakeBuilder:
    """Mirrors ptm_core.merge.ptm: task arithmetic (base θ_pre, θ_G weight 1, skills weight ω),
    linear (θ_G 1−ω, θ_D ω), WiSE-FT (base θ_G, θ_CFT weight ω), slerp (base θ_G, t ω),
    nuslerp (base θ_pre, θ_G 1−ω, θ_D ω), unweighted (θ_G and each θ_D, base θ_pre or none),
    single (linear, weight 1)."""

    def task_arithmetic(self, pre, general, skills, omegas, *, method="task_arithmetic", **params):
        models = [{"model": general, "parameters": {"weight": 1.0}}]
        models += [{"model": p, "parameters": {"weight": _weight(omegas[n])}} for n, p in skills.items()]
        d: dict[str, Any] = {"merge_method": method, "base_model": pre, "models": models}
        if params:
            d["parameters"] = dict(params)
        return FakeRecipe(d)

    def linear(self, pre, general, skill, omega):
        return FakeRecipe({"merge_method": "linear", "models": [
            {"model": general, "parameters": {"weight": 1.0 - omega}},
            {"model": skill, "parameters": {"weight": float(omega)}}]})

    def wise_ft(self, general, cft, omega):
        return FakeRecipe({"merge_method": "task_arithmetic", "base_model": general,
                           "models": [{"model": cft, "parameters": {"weight": float(omega)}}]})

    def slerp(self, general, skill, omega):
        return FakeRecipe({"merge_method": "slerp", "base_model": general,
                           "parameters": {"t": float(omega)},
                           "models": [{"model": general}, {"model": skill}]})

    def nuslerp(self, pre, general, skill, omega):
        return FakeRecipe({"merge_method": "nuslerp", "base_model": pre, "models": [
            {"model": general, "parameters": {"weight": 1.0 - omega}},
            {"model": skill, "parameters": {"weight": float(omega)}}]})

    def unweighted(self, method, pre, general, skills, **params):
        d: dict[str, Any] = {"merge_method": method,
                             "models": [{"model": general}] + [{"model": p} for p in skills.values()]}
        if pre:
            d["base_model"] = pre
        if params:
            d["parameters"] = dict(params)
        return FakeRecipe(d)

    def single(self, model):
        return FakeRecipe({"merge_method": "linear", "models": [{"model": model, "parameters": {"weight": 1.0}}]})

    def load(self, yaml_text):
        return FakeRecipe(yaml.safe_load(yaml_text))


def fake_fingerprinter(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()[:16]


class FakeEngine(ScriptedEngine):
    """Answers every prompt with the applied recipe's weights as JSON (FakeSuite reads them)."""

    def __init__(self, *, fail_apply: Callable[[FakeRecipe], bool] | None = None,
                 generate_delay_s: float = 0.0):
        super().__init__(lambda prompt, sampling, i: json.dumps(self.weights), kind="fake",
                         fail_apply=fail_apply, swap_s=0.001, generate_delay_s=generate_delay_s)

    @property
    def weights(self) -> dict[str, float]:
        return self.recipe.weights() if self.recipe is not None else {}


@dataclass
class FakeSuite:
    """Score = clip(f(weights), 0, 100) where `f` gets {model ref: weight} read back from the
    engine's outputs (so the suite really goes through `generate`)."""

    name: str
    version: str
    score: Callable[[dict[str, float]], float]
    n_items: int = 4
    sampling: Sampling = field(default_factory=Sampling)
    fail: str | None = None  # raise RuntimeError(fail) from run
    metric: str = "score"
    runs: list = field(default_factory=list)
    shift: float = 0.0  # added to the score
    # a subsample scores this much higher, so a test sees which record a frame row shows
    subsample_shift: float = 0.5

    def subsample(self, k: int) -> "FakeSuite":
        """The suite on k of its items (ptm_core.evals.subsample calls this)."""
        return dataclasses.replace(self, n_items=k, shift=self.subsample_shift, runs=[])

    @property
    def items(self) -> list[str]:
        return [f"prompt {i}" for i in range(self.n_items)]

    def run(self, engine) -> SuiteResult:
        if self.fail:
            raise RuntimeError(self.fail)
        start = time.perf_counter()
        outs = engine.generate(self.items, self.sampling)
        weights = json.loads(outs[0][0])
        v = min(100.0, max(0.0, float(self.score(weights)) + self.shift))
        self.runs.append(weights)
        return SuiteResult(self.name, self.version, {self.metric: v}, {self.metric: self.n_items},
                           time.perf_counter() - start,
                           [{"prompt": p, "outputs": o} for p, o in zip(self.items, outs)])


def quadratic_score(exp: Experiment, axis: str) -> Callable[[dict[str, Any]], float]:
    """A known closed form per axis: general falls with Σω², a skill's axis rises with its ω.
    A per-layer ω (a gradient list) counts its first layer's ω for general and its last layer's
    for the skill (other axes: the mean anchor), so a gradient rising over the layers beats any
    one ω; for a number both are that number."""
    skill_refs = {exp.skills[s].model: s for s in exp.skills}

    def at(w, i: int) -> float:
        return float(w[i]) if isinstance(w, list) else float(w)

    def f(weights: dict[str, Any]) -> float:
        om = {skill_refs[r]: w for r, w in weights.items() if r in skill_refs}
        if axis == "general":
            return 60.0 - 20.0 * sum(at(w, 0) ** 2 for w in om.values())
        if axis in exp.skills:
            w = at(om.get(axis, 0.0), -1)
            return 20.0 + 70.0 * w - 30.0 * w * w
        return 50.0 + 10.0 * sum(sum(w) / len(w) if isinstance(w, list) else w for w in om.values())

    return f


class FakeSuiteResolver:
    """`resolver(exp, axis) -> FakeSuite`, one suite per (experiment, axis), remembered in
    `made`. Picklable (its lock is made anew), so Ray actors and subprocesses can take one."""

    def __init__(self, *, fail_axes: Mapping[str, str] | None = None, version: str = "1",
                 n_items: int = 4):
        self.fail_axes, self.version, self.n_items = dict(fail_axes or {}), version, n_items
        self.made: dict[tuple[str, str], FakeSuite] = {}
        self._lock = threading.Lock()

    def __call__(self, exp: Experiment, axis: str) -> FakeSuite:
        with self._lock:
            k = (exp.name, axis)
            if k not in self.made:
                spec = exp.axes[axis]
                self.made[k] = FakeSuite(name=spec.suite, version=self.version,
                                         score=quadratic_score(exp, axis), n_items=self.n_items,
                                         fail=self.fail_axes.get(axis),
                                         metric=spec.metric or "score")
            return self.made[k]

    def __getstate__(self) -> dict:
        return {"fail_axes": self.fail_axes, "version": self.version, "n_items": self.n_items}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


def fake_suite_resolver(*, fail_axes: Mapping[str, str] | None = None, version: str = "1",
                        n_items: int = 4) -> FakeSuiteResolver:
    return FakeSuiteResolver(fail_axes=fail_axes, version=version, n_items=n_items)


@dataclass(frozen=True)
class FakeEngineFactory:
    """`factory(experiment) -> FakeEngine`, picklable (for Ray actors and subprocesses)."""

    generate_delay_s: float = 0.0

    def __call__(self, experiment: Experiment) -> FakeEngine:
        return FakeEngine(generate_delay_s=self.generate_delay_s)


EXPERIMENT_YAML = """\
name: {name}
description: fake lab for store tests
base: models/pre
general: {{model: models/general, size: 1000, steps: 100}}
size_unit: examples
skills:
  science: {{model: models/science, size: 200, steps: 20}}
  coding: {{model: models/coding, size: 100, steps: 10}}
axes:
  general: {{suite: fake_general}}
  science: {{suite: fake_science}}
  coding: {{suite: fake_coding}}
  safety: {{suite: fake_xstest, metric: score}}
  xstest_safe: {{suite: fake_xstest, metric: score}}
references:
  - {{kind: cft, skills: [science], model: models/cft_science, data_size: 200, train_steps: 20}}
  - {{kind: rt, skills: [science], scores: {{general: 55.0, science: 40.0}}, data_size: 200, train_steps: 120}}
engine: fake
"""


def write_experiment(root: str | Path, name: str = "fakelab", text: str | None = None) -> Path:
    root = Path(root)
    for m in ("pre", "general", "science", "coding", "cft_science"):
        (root / "models" / m).mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yml"
    path.write_text(text if text is not None else EXPERIMENT_YAML.format(name=name))
    return path


def fake_lab(root: str | Path, name: str = "fakelab"):
    """(experiment, builder, suite resolver) for a fake lab under `root`."""
    exp = Experiment.load(write_experiment(root, name=name))
    return exp, FakeBuilder(), fake_suite_resolver()


def ptm_specs(exp: Experiment, omegas, *, skill: str = "science", axes=None, resolver=None):
    """Job specs for task-arithmetic points of one skill at the given ω values."""
    from ptm_core.orchestrate.jobs import plan_jobs
    from ptm_core.orchestrate.points import ptm_point

    b = FakeBuilder()
    points = [ptm_point(exp, b, {skill: w}) for w in omegas]
    return plan_jobs(exp, points, resolver or fake_suite_resolver(), fake_fingerprinter, axes=axes,
                     builder=b)
