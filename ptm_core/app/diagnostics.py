"""Update sizes for the app: ‖τ‖/‖θ_pre‖ per layer and the cosines between τ_G, the τ_D and the
CFT/RT checkpoints of an experiment (the weight-space half of `python -m ptm_core diagnose`).

Light at import (no torch): the report itself is computed by `ptm_core.merge.task_vectors` on
first use, and the page caches it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd


@dataclass(frozen=True)
class DiagnosticInputs:
    """The checkpoints the diagnostics compare (labels as `python -m ptm_core diagnose` prints
    them), which of them are on this machine, and how to get the rest."""

    pre: str | None
    present: dict[str, str]
    missing: dict[str, str]
    how: str

    def ready(self) -> bool:
        return self.pre is not None and _on_disk(self.pre) and bool(self.present)

    def key(self) -> tuple:
        """What the cached report depends on: paths and modification times."""
        paths = [self.pre or "", *self.present.values()]
        return (self.pre, tuple(self.present.items()),
                tuple(Path(p).stat().st_mtime_ns if Path(p).exists() else 0 for p in paths))


def _on_disk(path: str) -> bool:
    from ptm_core.orchestrate.diagnose import is_checkpoint
    return is_checkpoint(path)


def how_to_get_checkpoints(source) -> str:
    """The command that makes an experiment's checkpoints (the lab's build, a world's
    materializer), else what the experiment expects."""
    from ptm_core.app.settings import WORLDS, settings, world_file

    ref = Path(getattr(source, "ref", "") or "")
    lab = settings().lab
    if lab is not None and ref.name and ref.resolve() == lab.resolve():
        return ("`python -m ptm_core lab build` makes them in runs/lab (θ_pre, θ_G, the θ_D and "
                "the full-size CFT are shipped in data/lab/models)")
    for name, (_, _, command) in WORLDS.items():
        path = world_file(name)
        if path is not None and ref.name and ref.resolve() == path.resolve():
            return f"`{command}` makes them"
    return "put the checkpoints at the paths the experiment names"


def diagnostic_inputs(source, skills) -> DiagnosticInputs:
    """θ_pre and the task vectors of `source`: an experiment file's τ_G, τ_D and every CFT/RT
    checkpoint it names; otherwise the models it lists by role (general, skills, cft:<skill>)."""
    exp = getattr(source, "exp", None)
    how = how_to_get_checkpoints(source)
    if exp is not None:
        from ptm_core.orchestrate.diagnose import task_vector_models
        present, missing = task_vector_models(exp)
        return DiagnosticInputs(exp.base, present, missing, how)
    models = source.models()
    wanted = {"G": models["general"]} if "general" in models else {}
    wanted.update({s: models[s] for s in skills if s in models})
    wanted.update({f"CFT {s}": models[f"cft:{s}"] for s in skills if f"cft:{s}" in models})
    present = {k: v for k, v in wanted.items() if _on_disk(v)}
    return DiagnosticInputs(models.get("base"), present,
                            {k: v for k, v in wanted.items() if k not in present}, how)


def diagnostic_report(pre: str, models: Mapping[str, str]) -> dict:
    """`checkpoints_report(...).to_dict()`: the checkpoints streamed tensor by tensor."""
    from ptm_core.merge.task_vectors import checkpoints_report
    return checkpoints_report(pre, models).to_dict()


def norms_frame(report: dict) -> pd.DataFrame:
    """‖τ‖/‖θ_pre‖ in %: rows task vectors, columns 'all' then the layer groups."""
    rows = {n: {"all": report["tau_over_pre"][n], **report["tau_over_pre_per_group"][n]}
            for n in report["names"]}
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["all", *report["groups"]]).astype(float) * 100


def cosine_frame(report: dict) -> pd.DataFrame:
    return pd.DataFrame(report["cosine"], index=report["names"],
                        columns=report["names"]).astype(float)
