"""Pure table builders over :class:`Results`: best of each method (paper Tables 2-3) and
interference between skills (paper Table 5)."""

from __future__ import annotations

import itertools
import math
from typing import Mapping

import numpy as np
import pandas as pd

from ptm_core import catalogue
from ptm_core.analysis.results import Results, axis_title, kind_title


def table_methods() -> tuple[str, ...]:
    """The kinds a "best of each method" table compares: the references, then every merge."""
    return catalogue.reference_kinds() + catalogue.merge_kinds()

CRITERIA = {
    "avg_pct": "average % change on both axes (paper Table 3; points where θ_G scores 0)",
    "skill": "skill score (paper Table 2)",
}


def pct_change(value: float, base: float) -> float:
    if base is None or value is None or base == 0 or math.isnan(base) or math.isnan(value):
        return float("nan")
    return 100.0 * (value - base) / base


def pool_steps(res: Results, kind: str, skill: str) -> float:
    """Training steps to create the pool of models the method selects from (paper Section 2):
    CFT and RT sum every run (Σ|D_i|, n·|G| + Σ|D_i|); PTM and the other merges pay for their
    inputs once (|D|), whatever number of ω are tried."""
    rows = res.of_kind(kind, skill)
    rows = rows[~rows["estimated"].astype(bool)]
    steps = pd.to_numeric(rows["train_steps"], errors="coerce").dropna()
    if kind in catalogue.reference_kinds():
        return float(steps.sum()) if len(steps) else float("nan")
    if len(steps):
        return float(steps.max())
    sk = res.of_kind("skill", skill)["train_steps"].dropna()
    return float(sk.max()) if len(sk) else float("nan")


def best_of_each_method(res: Results, skill: str, *, x: str = "general", y: str | None = None,
                        criterion: str = "avg_pct",
                        methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """θ_G and the best point of each method for one skill, with % change against θ_G and the
    training steps, as the paper's Tables 2-3. ``x``/``y`` default to general and the skill;
    ``x="xstest_safe", y="safety"`` gives Table 3's exaggerated-refusal rows."""
    y = y or skill
    methods = table_methods() if methods is None else methods
    cols = ["method", x, y, f"% Δ {x}", f"% Δ {y}", "training steps", "detail", "row_id"]
    g = res.general_row()
    if g is None or x not in res.frame or y not in res.frame:
        return pd.DataFrame(columns=cols)
    gx, gy = res.score(g, x), res.score(g, y)
    out = [{"method": "θ_G (general only)", x: gx, y: gy, f"% Δ {x}": 0.0, f"% Δ {y}": 0.0,
            "training steps": float("nan"), "detail": str(g["label"] or ""), "row_id": int(g["row_id"])}]
    for kind in methods:
        rows = res.of_kind(kind, skill)  # with or without ω (the paper's "best" rows have none)
        # ω = 0 everywhere is θ_G itself, not a candidate of the method (the paper tried ω > 0)
        rows = rows[np.array([not o or any(o.values()) for o in rows["omega_d"]], dtype=bool)]
        rows = rows[~rows["estimated"].astype(bool)]
        rows = rows[rows[x].notna() & rows[y].notna()] if len(rows) else rows
        if rows.empty:
            continue
        dx = np.array([pct_change(float(v), gx) for v in rows[x]])
        dy = np.array([pct_change(float(v), gy) for v in rows[y]])
        score = _selection_score(rows, x, y, gx, gy, dx, dy, criterion)
        if np.all(np.isnan(score)):
            continue
        i = int(np.nanargmax(score))
        r = rows.iloc[i]
        detail = ""
        if r["omega_d"]:
            detail = "ω " + ", ".join(f"{k}={v:g}" for k, v in r["omega_d"].items())
        elif pd.notna(r["data_size"]):
            detail = f"|D_i| = {int(r['data_size']):,}"
        out.append({"method": f"Best {kind_title(kind)}", x: float(r[x]), y: float(r[y]),
                    f"% Δ {x}": dx[i], f"% Δ {y}": dy[i],
                    "training steps": _reported_pool_steps(r) or pool_steps(res, kind, skill),
                    "detail": detail,
                    "row_id": int(r["row_id"])})
    return pd.DataFrame(out, columns=cols)


def _reported_pool_steps(row: pd.Series) -> float | None:
    """The pool cost a source reported for this row (the paper's Tables 2-3 give it per best
    model; summing their rows would count one model twice)."""
    v = row.get("pool_steps")
    return float(v) if v is not None and pd.notna(v) else None


def _selection_score(rows: pd.DataFrame, x: str, y: str, gx: float, gy: float,
                     dx: np.ndarray, dy: np.ndarray, criterion: str) -> np.ndarray:
    """What "best" maximises. The average % change is undefined where θ_G scores 0 on an axis
    (the lab's θ_G has no skills at all); there the average change in points ranks instead."""
    if criterion != "avg_pct":
        return rows[y].to_numpy(dtype=float)
    if gx and gy:
        return (dx + dy) / 2
    return ((rows[x].to_numpy(dtype=float) - gx) + (rows[y].to_numpy(dtype=float) - gy)) / 2


def format_best_table(df: pd.DataFrame) -> pd.DataFrame:
    """Display form: axis titles, one decimal, thousands separators, no row ids."""
    shown = df.drop(columns=["row_id"], errors="ignore").copy()
    ren = {}
    for c in shown.columns:
        if c.startswith("% Δ "):
            ren[c] = "% Δ " + axis_title(c[4:])
        elif c not in ("method", "training steps", "detail"):
            ren[c] = axis_title(c)
    for c in shown.columns:
        if c not in ("method", "detail", "training steps"):
            shown[c] = pd.to_numeric(shown[c], errors="coerce").round(1)
    if "training steps" in shown.columns:
        shown["training steps"] = pd.to_numeric(shown["training steps"], errors="coerce").round().astype("Int64")
    shown = shown.rename(columns=ren)
    return shown


def _singles(res: Results, omegas: Mapping[str, float]) -> dict[str, pd.Series | None]:
    return {k: res.lookup("ptm", {k: w}) for k, w in omegas.items()}


def merge_label(skills) -> str:
    return "PTM (" + " + ".join(skills) + ")"


def combos(res: Results) -> list[tuple[str, ...]]:
    """Every skill combination merged in this experiment (size >= 2), in skill order."""
    found = set()
    for s in res.multi_skill_merges()["skill_set"]:
        found.add(frozenset(s))
    order = {k: i for i, k in enumerate(res.skills)}
    out = [tuple(sorted(c, key=lambda k: order.get(k, 99))) for c in found]
    return sorted(out, key=lambda c: (len(c), [order.get(k, 99) for k in c]))


def all_combos(skills: list[str]) -> list[tuple[str, ...]]:
    return [c for n in range(2, len(skills) + 1) for c in itertools.combinations(skills, n)]


def interference_table(res: Results, omegas: Mapping[str, float] | None = None,
                       *, kind: str = "ptm") -> tuple[pd.DataFrame, list[dict]]:
    """For every multi-skill merge at ``omegas`` (default: the heuristic ω), the change on every
    metric against the single-skill merges at the same ω.

    The reference for a skill's own metric is that skill's single merge; for every other metric
    (general, XSTest, a skill not in the merge) it is the mean of the single merges involved —
    what the merge would score if the task vectors did not interfere. Returns the long table
    (merge, skills, metric, value, reference, delta, row_id) and the merges that are not measured
    yet (each ``{"skills": tuple, "omegas": dict}``) so the page can queue them.
    """
    omegas = dict(omegas or res.heuristic_omegas())
    rows, missing = [], []
    targets = combos(res) if omegas else []
    for combo in all_combos([s for s in res.skills if s in omegas]):
        if combo not in targets and len(combo) == 2:
            targets.append(combo)
    for combo in targets:
        om = {k: omegas[k] for k in combo if k in omegas}
        if len(om) != len(combo):
            continue
        row = res.lookup(kind, om)
        if row is None or bool(row["estimated"]):
            missing.append({"skills": combo, "omegas": om})
            continue
        singles = _singles(res, om)
        for axis in res.axes:
            v = res.score(row, axis)
            if v is None:
                continue
            if axis in combo:
                ref = res.score(singles.get(axis), axis)
            else:
                refs = [res.score(s, axis) for s in singles.values()]
                refs = [r for r in refs if r is not None]
                ref = float(np.mean(refs)) if len(refs) == len(singles) else None
            rows.append({"merge": merge_label(combo), "skills": "+".join(combo), "metric": axis,
                         "value": v, "reference": ref,
                         "delta": (v - ref) if ref is not None else float("nan"),
                         "row_id": int(row["row_id"])})
    cols = ["merge", "skills", "metric", "value", "reference", "delta", "row_id"]
    return pd.DataFrame(rows, columns=cols), missing


def scores_table(res: Results, omegas: Mapping[str, float] | None = None,
                 *, kind: str = "ptm") -> pd.DataFrame:
    """θ_G, each single-skill merge and each multi-skill merge (rows) × every axis: Table 5."""
    omegas = dict(omegas or res.heuristic_omegas())
    out: dict[str, dict] = {}
    g = res.general_row()
    if g is not None:
        out["θ_G"] = {a: res.score(g, a) for a in res.axes}
    for k in res.skills:
        if k in omegas:
            r = res.lookup(kind, {k: omegas[k]})
            if r is not None:
                out[merge_label([k])] = {a: res.score(r, a) for a in res.axes}
    for combo in combos(res):
        om = {k: omegas[k] for k in combo if k in omegas}
        r = res.lookup(kind, om) if len(om) == len(combo) else None
        if r is not None:
            out[merge_label(combo)] = {a: res.score(r, a) for a in res.axes}
    return pd.DataFrame.from_dict(out, orient="index", columns=res.axes).astype(float)
