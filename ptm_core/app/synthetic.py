"""A synthetic results frame shaped like the lab's, for tests and the benchmark only.

Never shown as data: the app offers it nowhere. It has every kind of row a real experiment has
(θ_pre, θ_G, θ_D, PTM/linear/WiSE-FT curves over ω = 0, 0.1, ..., 1, the heuristic ω, five CFT
and five RT points per skill, pairwise and three-skill merges, TIES and DARE), with smooth,
plausible curves so that charts, tables and look-ups can be checked.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from ptm_core.catalogue import heuristic_omega

SKILLS = ("science", "coding", "safety")
G_SIZE = 4096
D_SIZES = {"science": 912, "coding": 1536, "safety": 1024}
BATCH = 16
GENERAL = {"general": 50.0, "science": 28.0, "coding": 37.0, "safety": 50.0, "xstest_safe": 99.0}
SKILL_TOP = {"science": 40.0, "coding": 58.0, "safety": 98.0}


def _round(d: dict) -> dict:
    return {k: round(float(v), 2) for k, v in d.items()}


def _ptm_scores(skill: str, w: float) -> dict:
    s = dict(GENERAL)
    top = SKILL_TOP[skill]
    s[skill] = GENERAL[skill] + (top - GENERAL[skill]) * (1 - math.exp(-3.0 * w))
    s["general"] = GENERAL["general"] + 1.5 * w - 9.0 * w ** 2
    if skill == "safety":
        s["xstest_safe"] = GENERAL["xstest_safe"] - 30.0 * w ** 2
    return s


def _linear_scores(skill: str, w: float) -> dict:
    s = dict(GENERAL)
    s[skill] = GENERAL[skill] + (SKILL_TOP[skill] - GENERAL[skill]) * w
    s["general"] = GENERAL["general"] - 30.0 * w ** 1.5
    if skill == "safety":
        s["xstest_safe"] = GENERAL["xstest_safe"] - 70.0 * w
    return s


def _wise_scores(skill: str, w: float) -> dict:
    s = dict(GENERAL)
    s[skill] = GENERAL[skill] + (SKILL_TOP[skill] + 1 - GENERAL[skill]) * min(1.0, 1.6 * w)
    s["general"] = GENERAL["general"] - 18.0 * w ** 1.2
    if skill == "safety":
        s["xstest_safe"] = GENERAL["xstest_safe"] - 80.0 * w
    return s


def synthetic_frame(experiment: str = "synthetic", grid_step: float = 0.1) -> pd.DataFrame:
    rows: list[dict] = []

    def add(kind, skills, omega, label, data_size, steps, scores, key=None):
        rows.append({
            "experiment": experiment, "kind": kind, "skills": skills,
            "omega": None if omega is None else json.dumps(omega, sort_keys=True),
            "label": label, "data_size": data_size, "train_steps": steps,
            "recipe_key": key or f"{kind}:{skills}:{json.dumps(omega, sort_keys=True)}",
            **_round(scores),
        })

    add("base", None, None, "θ_pre", None, None,
        {"general": 8.0, "science": 5.0, "coding": 4.0, "safety": 20.0, "xstest_safe": 100.0})
    add("general", None, None, "θ_G", G_SIZE, G_SIZE // BATCH, GENERAL)
    n = int(round(1 / grid_step))
    for skill in SKILLS:
        d = D_SIZES[skill]
        steps = d // BATCH
        only = dict(GENERAL, general=12.0, **{skill: SKILL_TOP[skill] - 2})
        add("skill", skill, None, f"θ_D ({skill})", d, steps, only)
        for i in range(1, n + 1):
            w = round(i * grid_step, 4)
            add("ptm", skill, {skill: w}, f"PTM {skill} ω={w:g}", d, steps, _ptm_scores(skill, w))
            add("linear", skill, {skill: w}, f"linear {skill} ω={w:g}", d, steps, _linear_scores(skill, w))
            add("wise_ft", skill, {skill: w}, f"WiSE-FT {skill} ω={w:g}", d, steps, _wise_scores(skill, w))
        h = round(heuristic_omega(d, G_SIZE), 4)
        add("ptm", skill, {skill: h}, f"PTM {skill} heuristic ω={h:g}", d, steps, _ptm_scores(skill, h))
        total_cft = total_rt = 0
        for j, frac in enumerate((1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)):
            size = int(d * frac)
            total_cft += size // BATCH
            total_rt += (G_SIZE + size) // BATCH
            cft = dict(GENERAL)
            cft[skill] = GENERAL[skill] + (SKILL_TOP[skill] + 2 - GENERAL[skill]) * (0.5 + 0.5 * frac)
            cft["general"] = GENERAL["general"] - 8 - 12 * frac
            rt = dict(GENERAL)
            rt[skill] = GENERAL[skill] + (SKILL_TOP[skill] - GENERAL[skill]) * (0.3 + 0.7 * frac)
            rt["general"] = GENERAL["general"] + 0.4 - 0.3 * j
            if skill == "safety":
                cft["xstest_safe"] = 99 - 60 - 25 * frac
                rt["xstest_safe"] = 99 - 30 - 30 * frac
            add("cft", skill, None, f"CFT {skill} |D_i|={size}", size, size // BATCH, cft)
            add("rt", skill, None, f"RT {skill} |D_i|={size}", size, (G_SIZE + size) // BATCH, rt)
    # Multi-skill merges at the heuristic ω.
    hs = {s: round(heuristic_omega(D_SIZES[s], G_SIZE), 4) for s in SKILLS}
    pairs = [("science", "coding"), ("science", "safety"), ("coding", "safety"), SKILLS]
    for combo in pairs:
        s = dict(GENERAL)
        for k in combo:
            single = _ptm_scores(k, hs[k])
            for a in s:
                s[a] += single[a] - GENERAL[a]
        if "coding" in combo and "safety" in combo:
            s["science"] -= 6.0  # interference, as in the paper's Table 5
        om = {k: hs[k] for k in combo}
        add("ptm", "+".join(combo), om, "PTM " + " + ".join(combo) + " (heuristic)", None, 0, s)
        if len(combo) == 3:
            t = dict(s, science=s["science"] + 1.0, general=s["general"] + 0.1)
            add("ties", "+".join(combo), om, "TIES (all 3, heuristic)", None, 0, t)
            dd = dict(s, science=s["science"] - 1.5, general=s["general"] - 1.0)
            add("dare_linear", "+".join(combo), om, "DARE (all 3, heuristic)", None, 0, dd)
    return pd.DataFrame(rows)
