"""Pure table builders over :class:`Results`: best of each method (paper Tables 2-3) and
interference between skills (paper Table 5)."""

from __future__ import annotations

import itertools
import math
from typing import Mapping

import numpy as np
import pandas as pd

from ptm_core import catalogue
from ptm_core.analysis.results import Results, axis_title, interval, kind_title
from ptm_core.intervals import overlaps
from ptm_core.store.point import format_omega


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
    bounds = [f"{x}_lo", f"{x}_hi", f"{y}_lo", f"{y}_hi"]
    cols = ["method", x, y, f"% Δ {x}", f"% Δ {y}", "training steps", "detail", SEPARABLE,
            *bounds, "row_id"]
    g = res.general_row()
    if g is None or x not in res.frame or y not in res.frame:
        return pd.DataFrame(columns=cols)
    gx, gy = res.score(g, x), res.score(g, y)
    out = [{"method": "θ_G (general only)", x: gx, y: gy, f"% Δ {x}": 0.0, f"% Δ {y}": 0.0,
            "training steps": float("nan"), "detail": str(g["label"] or ""), SEPARABLE: "",
            **_bounds(g, x, y), "row_id": int(g["row_id"])}]
    ranked: list[tuple[float, int]] = []  # (selection score, index in out) of each method's best
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
        om = r["omega_all"] if isinstance(r.get("omega_all"), dict) else r["omega_d"]
        if om:
            detail = "ω " + ", ".join(f"{k}={format_omega(v)}" for k, v in om.items())
        elif pd.notna(r["data_size"]):
            detail = f"|D_i| = {int(r['data_size']):,}"
        ranked.append((float(score[i]), len(out)))
        out.append({"method": f"Best {kind_title(kind)}", x: float(r[x]), y: float(r[y]),
                    f"% Δ {x}": dx[i], f"% Δ {y}": dy[i],
                    "training steps": _reported_pool_steps(r) or pool_steps(res, kind, skill),
                    "detail": detail, SEPARABLE: "", **_bounds(r, x, y),
                    "row_id": int(r["row_id"])})
    _mark_separability(out, ranked, (y,) if criterion == "skill" else (x, y))
    return pd.DataFrame(out, columns=cols)


# The best-of-method table's verdict on its winner against the runner-up.
SEPARABLE = "vs runner-up"


def _bounds(row: pd.Series, x: str, y: str) -> dict[str, float]:
    (xl, xh), (yl, yh) = interval(row, x), interval(row, y)
    return {f"{x}_lo": xl, f"{x}_hi": xh, f"{y}_lo": yl, f"{y}_hi": yh}


def separability(best: Mapping, runner_up: Mapping, axes: tuple[str, ...]) -> str:
    """"separable" when the 95 % intervals of the two rows are disjoint on some axis the
    selection looks at, "not separable" when they overlap on every one, "no interval" when an
    interval is missing and no axis separates them."""
    verdicts = [overlaps((best[f"{a}_lo"], best[f"{a}_hi"]),
                         (runner_up[f"{a}_lo"], runner_up[f"{a}_hi"])) for a in axes]
    if any(v is False for v in verdicts):
        return "separable"
    return "no interval" if any(v is None for v in verdicts) else "not separable"


def _mark_separability(out: list[dict], ranked: list[tuple[float, int]], axes: tuple[str, ...]) -> None:
    """Say on the best method's row whether it is separable from the runner-up (the method
    ranked second by the same selection score)."""
    if len(ranked) < 2:
        return
    (_, first), (_, second) = sorted(ranked, key=lambda t: -t[0])[:2]
    verdict = separability(out[first], out[second], axes)
    out[first][SEPARABLE] = f"{verdict} from {out[second]['method']}"


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
    """Display form: axis titles, one decimal, thousands separators, no row ids; each axis's
    95 % interval as text ("40.1–50.2") in a column after the axis."""
    shown = df.drop(columns=["row_id"], errors="ignore").copy()
    for c in list(shown.columns):
        if f"{c}_lo" in shown.columns and f"{c}_hi" in shown.columns:
            text = [interval_text(lo, hi) for lo, hi in zip(shown[f"{c}_lo"], shown[f"{c}_hi"])]
            shown.insert(shown.columns.get_loc(c) + 1, f"{c} 95 % CI", text)
            shown = shown.drop(columns=[f"{c}_lo", f"{c}_hi"])
    text_cols = {"method", "training steps", "detail", SEPARABLE} | {
        c for c in shown.columns if c.endswith(" 95 % CI")}
    ren = {}
    for c in shown.columns:
        if c.startswith("% Δ "):
            ren[c] = "% Δ " + axis_title(c[4:])
        elif c.endswith(" 95 % CI"):
            ren[c] = axis_title(c[:-len(" 95 % CI")]) + " 95 % CI"
        elif c not in text_cols:
            ren[c] = axis_title(c)
    for c in shown.columns:
        if c not in text_cols:
            shown[c] = pd.to_numeric(shown[c], errors="coerce").round(1)
    if "training steps" in shown.columns:
        shown["training steps"] = pd.to_numeric(shown["training steps"], errors="coerce").round().astype("Int64")
    shown = shown.rename(columns=ren)
    return shown


def interval_text(lo, hi) -> str:
    """A 95 % interval for display; "–" when there is none."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return "–"
    return f"{float(lo):.1f}–{float(hi):.1f}"


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
