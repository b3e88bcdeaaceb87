"""The paper's reference numbers (data/paper/*.csv) as a results frame.

See data/paper/README.md for what was transcribed and how each table becomes points.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ptm_core.analysis.results import KNOWN_AXES, Results
from ptm_core.catalogue import heuristic_omega

PAPER_DIR = Path(__file__).resolve().parents[2] / "data" / "paper"
EXPERIMENT = "paper"
PAPER_TITLE = "Paper (Llama 2 7B, reference numbers)"
SKILL_NAMES = {"science": "science", "safety": "safety", "coding": "coding"}
_DATASET_SKILL = {"SciRIFF": "science", "Safety (internal)": "safety", "CodeFeedback": "coding"}


def read_table(n: int, paper_dir: Path = PAPER_DIR) -> pd.DataFrame:
    return pd.read_csv(paper_dir / f"table{n}.csv", keep_default_na=True)


def dataset_sizes(paper_dir: Path = PAPER_DIR) -> tuple[int, dict[str, int]]:
    t1 = read_table(1, paper_dir)
    g = int(t1.loc[t1["dataset"].str.startswith("Tülu"), "train_size"].iloc[0])
    sizes = {_DATASET_SKILL[d]: int(s) for d, s in zip(t1["dataset"], t1["train_size"])
             if d in _DATASET_SKILL}
    return g, sizes


def skills_in(model: str) -> list[str]:
    m = model.lower()
    if "all 3" in m:
        return ["science", "coding", "safety"]
    inside = re.search(r"\(([^)]*)\)", model)
    text = (inside.group(1) if inside else "").lower()
    return [s for s in ("science", "coding", "safety") if s in text]


def kind_of(model: str) -> str:
    m = model.lower()
    if m.startswith(("tulu only", "tülu only")):
        return "general"
    for prefix, kind in (("ties", "ties"), ("dare", "dare_linear"), ("best cft", "cft"),
                         ("cft", "cft"), ("best rt", "rt"), ("rt", "rt"), ("best ptm", "ptm"),
                         ("ptm", "ptm")):
        if m.startswith(prefix):
            return kind
    raise ValueError(f"unknown paper row {model!r}")


def _derive(baseline: float, pct: float) -> float:
    """An absolute score from a % change, clipped to the 0-100 scale (rounding can exceed it)."""
    return round(min(100.0, max(0.0, float(baseline) * (1 + float(pct) / 100))), 2)


PAPER_SKILLS = ("science", "coding", "safety")  # Table 4's column order


@lru_cache(maxsize=4)
def paper_frame(paper_dir: Path = PAPER_DIR) -> pd.DataFrame:
    """Every row of Tables 2-6 as a point of the results frame, with ``source`` provenance."""
    g_size, d_sizes = dataset_sizes(paper_dir)
    heur = {s: heuristic_omega(d_sizes[s], g_size) for s in d_sizes}
    rows: list[dict] = []

    def add(t: int, r: int, model: str, scores: dict, steps=None, derived=False, skills=None,
            with_omega=True):
        kind = kind_of(model)
        sk = skills if skills is not None else skills_in(model)
        omega = None
        if with_omega and kind in ("ptm", "ties", "dare_linear") and sk:
            omega = json.dumps({s: round(heur[s], 4) for s in sk}, sort_keys=True)
        data_size = g_size if kind == "general" else None
        if kind in ("cft", "rt", "ptm") and len(sk) == 1 and t == 2:
            data_size = None  # the best of five sizes; the paper does not say which
        rows.append({
            "experiment": EXPERIMENT, "kind": kind, "skills": "+".join(sk) if sk else None,
            "omega": omega, "label": model, "data_size": data_size,
            "train_steps": steps, "recipe_key": None,
            **{a: scores.get(a) for a in KNOWN_AXES},
            # Tables 2-3 report the cost of each method's whole pool of models (Section 2).
            "pool_steps": steps if t in (2, 3) else None,
            "source": f"Table {t}, row {r}" + (" (derived from % change)" if derived else ""),
            "derived": derived,
        })

    t4 = read_table(4, paper_dir)
    base = t4[t4["model"].str.startswith("Tulu")].iloc[0]
    # θ_G and the skill models' sizes (so the heuristic ω is known).
    for s, size in d_sizes.items():
        rows.append({"experiment": EXPERIMENT, "kind": "skill", "skills": s, "omega": None,
                     "label": f"θ_D ({s}), size from Table 1", "data_size": size,
                     "train_steps": round(size / 128), "recipe_key": None,
                     **{a: None for a in KNOWN_AXES}, "source": "Table 1", "derived": False})

    t2 = read_table(2, paper_dir)
    for r in t2.itertuples(index=False):
        if kind_of(r.model) == "general":
            continue  # test-set baseline; Table 4's validation baseline is θ_G
        add(2, r.row, r.model, {"general": r.general, "science": r.science},
            steps=r.train_steps, skills=["science"], with_omega=False)
    t3 = read_table(3, paper_dir)
    for r in t3.itertuples(index=False):
        scores = {r.gen_axis: _derive(base[r.gen_axis], r.pct_delta_gen),
                  r.spec_axis: _derive(base[r.spec_axis], r.pct_delta_spec)}
        skill = "safety" if "Ex. Ref." in r.model else skills_in(r.model)[0]
        add(3, r.row, r.model, scores, steps=r.train_steps, derived=True, skills=[skill],
            with_omega=False)
    for t in (4, 5, 6):
        tab = read_table(t, paper_dir)
        for r in tab.to_dict("records"):
            if t != 4 and kind_of(r["model"]) == "general":
                continue  # same baseline as Table 4
            if t == 6 and r["model"] == "PTM (All 3)":
                continue  # same row as Table 4
            steps = r.get("additional_train_steps")
            add(t, r["row"], r["model"], {a: r.get(a) for a in KNOWN_AXES},
                steps=None if pd.isna(steps) else steps)
    return pd.DataFrame(rows)


def paper_results() -> Results:
    """The paper's numbers as `Results` (what the app's "paper" experiment shows)."""
    return Results.from_frame(paper_frame(), name=PAPER_TITLE, version="static",
                              skills=list(PAPER_SKILLS))
