"""The lab's counterparts of the paper's Tables 2-6, as Markdown, next to the paper's numbers.

`python -m ptm_core lab report` prints what the README's "What the lab shows" section holds.
Everything is read from the results store (which imports `cached_runs/`); nothing is typed in.
The tables are built by the same functions as the app's (`ptm_core.analysis.tables`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import pandas as pd

from ptm_core.analysis import tables
from ptm_core.analysis.paper import kind_of, skills_in, read_table
from ptm_core.analysis.results import Results

AXES = ("general", "science", "coding", "safety", "xstest_safe")
AXIS_NAMES = {"general": "general", "science": "science", "coding": "coding",
              "safety": "safety", "xstest_safe": "XSTest-safe"}
CURVE_METHODS = (("ptm", "task arithmetic"), ("linear", "linear"), ("wise_ft", "WiSE-FT"))


def _num(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)) and float(v).is_integer() and digits == 0:
        return f"{int(v):,}"
    return f"{float(v):.{digits}f}" if digits else f"{round(float(v)):,}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _with_interval(row, axis: str) -> str:
    """A lab score with its 95 % interval: "45.0 [40.1–50.2]" (the score alone without one)."""
    if row is None:
        return "–"
    score = _num(row[axis])
    lo, hi = row.get(f"{axis}_lo"), row.get(f"{axis}_hi")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return score
    return f"{score} [{tables.interval_text(lo, hi)}]"


def best_rows(res: Results, paper: Results, skill: str, x: str = "general",
              y: Optional[str] = None, who: str = "lab") -> str:
    """Tables 2-3: θ_G and the best CFT, RT and PTM (by average change on both axes). The lab's
    θ_G scores 0 on every skill, so its % change is undefined and not shown. Lab scores carry
    their 95 % interval; the best row says whether it is separable from the runner-up."""
    y = y or skill
    methods = ("cft", "rt", "ptm")
    lab = tables.best_of_each_method(res, skill, x=x, y=y, methods=methods).set_index("method")
    ref = tables.best_of_each_method(paper, skill, x=x, y=y, methods=methods).set_index("method")
    rows = []
    for name in lab.index.union(ref.index, sort=False):
        a = lab.loc[name] if name in lab.index else None
        b = ref.loc[name] if name in ref.index else None
        cell = lambda r, c, d=1: _num(None if r is None else r[c], d)  # noqa: E731
        rows.append([name, _with_interval(a, x), _with_interval(a, y), cell(a, "training steps", 0),
                     a["detail"] if a is not None else "",
                     a[tables.SEPARABLE] if a is not None else "",
                     cell(b, x), cell(b, y), cell(b, f"% Δ {y}"), cell(b, "training steps", 0)])
    gx, gy = AXIS_NAMES[x], AXIS_NAMES[y]
    return markdown_table(
        ["", f"{who} {gx} [95 % CI]", f"{who} {gy} [95 % CI]", f"{who} steps", f"{who} point",
         f"{who} best vs runner-up", f"paper {gx}", f"paper {gy}", f"paper % Δ {gy}", "paper steps"],
        rows)


def _paper_rows(table: int) -> dict[str, dict]:
    return {str(r["model"]): r for r in read_table(table).to_dict("records")}


def _lab_row(res: Results, kind: str, skills: Sequence[str]) -> Optional[pd.Series]:
    rows = res.of_kind(kind)
    match = rows[[set(s) == set(skills) for s in rows["skill_set"]]]
    return None if match.empty else match.iloc[0]


def all_three(res: Results, who: str = "lab") -> str:
    """Table 4 (and 6): all three skills at once: CFT, RT, PTM, TIES, DARE against θ_G."""
    omegas = res.heuristic_omegas()
    skills = list(res.skills)
    p4, p6 = _paper_rows(4), _paper_rows(6)
    lines = [("θ_G", res.general_row(), p4.get("Tulu Only")),
             ("CFT (all 3)", _lab_row(res, "cft", skills), p4.get("CFT (All 3)")),
             ("RT (all 3)", _lab_row(res, "rt", skills), p4.get("RT (All 3)")),
             ("PTM (all 3)", res.lookup("ptm", omegas), p4.get("PTM (All 3)")),
             ("TIES PTM (all 3)", res.lookup("ties", omegas), p6.get("TIES PTM (All 3)")),
             # the paper does not say which DARE; the lab measured both (density 0.5)
             ("DARE (linear) PTM (all 3)", res.lookup("dare_linear", omegas), p6.get("DARE PTM (All 3)")),
             ("DARE-TIES PTM (all 3)", res.lookup("dare_ties", omegas), p6.get("DARE PTM (All 3)"))]
    rows = [[name] + [f"{_num(res.score(row, a))} ({_num(None if ref is None else ref.get(a))})"
                      for a in AXES] for name, row, ref in lines]
    return markdown_table([f"{who} (paper)"] + [AXIS_NAMES[a] for a in AXES], rows)


def interference(res: Results, who: str = "lab") -> str:
    """Table 5: single-skill and pairwise merges (and all three) at the heuristic ω."""
    scores = tables.scores_table(res)
    # The paper's rows under the labels scores_table gives (it names pairs in another order)
    paper = {tables.merge_label([s for s in res.skills if s in skills_in(m)]): r
             for t in (4, 5) for m, r in _paper_rows(t).items() if kind_of(m) == "ptm"}
    paper["θ_G"] = _paper_rows(4)["Tulu Only"]
    rows = []
    for label, row in scores.iterrows():
        ref = paper.get(label)
        rows.append([label] + [f"{_num(row.get(a))} ({_num(None if ref is None else ref.get(a))})"
                               for a in AXES])
    return markdown_table([f"{who} (paper)"] + [AXIS_NAMES[a] for a in AXES], rows)


def curves(res: Results, skill: str) -> str:
    """General and skill score along ω for the single-skill merge methods."""
    ws = sorted({w for kind, _ in CURVE_METHODS for w in res.grid(skill, kind)})
    header = ["ω"] + [f"{name}: general / {AXIS_NAMES[skill]}" for _, name in CURVE_METHODS]
    rows = []
    for w in ws:
        cells = [f"{w:g}"]
        for kind, _ in CURVE_METHODS:
            row = res.general_row() if w == 0 else res.lookup(kind, {skill: w})
            cells.append("–" if row is None else
                         f"{_num(res.score(row, 'general'))} / {_num(res.score(row, skill))}")
        rows.append(cells)
    return markdown_table(header, rows)


PREAMBLE = """Each cell is the {who}'s number, with the paper's in parentheses where the paper has one.
"Best" follows the paper's Table 3 rule (average change on both axes; where θ_G scores 0 the
change is counted in points) among the points measured on the {who}'s test split (the paper
selected on validation data). Steps are the cost of each method's pool of models (paper
Section 2): CFT and RT sum their runs, PTM pays for θ_D once. The {who}'s scores in Tables 2-3
carry their 95 % interval (Wilson for rates, the bootstrap over items for means); "not
separable" means the best method's interval overlaps the runner-up's on every axis that chose it.
"""


def report(res: Results, paper: Results, *, with_curves: bool = True, who: str = "lab") -> str:
    parts = [PREAMBLE.format(who=who), "### Tables 2-3: the best of each method, per skill (by average change on both axes)"]
    for skill in ("science", "safety", "coding"):
        if skill in res.skills:
            parts += [f"\n**{skill}**\n", best_rows(res, paper, skill, who=who)]
    parts += ["\n**exaggerated refusals** (x: XSTest-safe compliance, y: safety)\n",
              best_rows(res, paper, "safety", x="xstest_safe", y="safety", who=who)]
    parts += ["\n### Tables 4 and 6: all three skills at once (heuristic ω for the merges)\n",
              all_three(res, who)]
    parts += ["\n### Table 5: single and pairwise merges at the heuristic ω\n", interference(res, who)]
    if not with_curves:
        return "\n".join(parts) + "\n"
    parts += ["\n### The merge curves (θ_G at ω = 0)"]
    for skill in res.skills:
        parts += [f"\n**{skill}** (heuristic ω = {res.heuristic_omega(skill):.3g})\n",
                  curves(res, skill)]
    return "\n".join(parts) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptm_core lab report",
                                description="Print the lab's counterparts of the paper's tables "
                                            "(Markdown) from the stored results.")
    p.add_argument("--experiment", default="lab",
                   help="'lab' (default) or an experiment YAML file")
    p.add_argument("--out", type=Path, help="also write the Markdown to this file")
    p.add_argument("--no-curves", action="store_true", help="only the paper's tables")
    a = p.parse_args(argv)
    from ptm_core.analysis.paper import paper_results
    from ptm_core.analysis.stored import results_of
    from ptm_core.atomic import write_text
    from ptm_core.lab.experiment import find_lab_experiment
    from ptm_core.merge.fingerprint import current_fingerprints
    from ptm_core.store.db import Store
    from ptm_core.store.experiment import Experiment
    from ptm_core.store.frame import results_frame

    path = find_lab_experiment() if a.experiment == "lab" else Path(a.experiment)
    if path is None or not path.is_file():
        print(f"no experiment file {a.experiment!r} (build the lab with `python -m ptm_core lab "
              "build`, or set PTM_LAB_EXPERIMENT)", file=sys.stderr)
        return 1
    exp = Experiment.load(path)
    store = Store.open_default()
    # Results of models rebuilt since are left out; the frame counts them (read once).
    frame = results_frame(store, exp, current=current_fingerprints(exp))
    res = results_of(frame, store, exp)
    stale = frame.attrs.get("stale_records", 0)
    if stale:
        print(f"note: {stale} stored result(s) of {exp.name} were measured on models rebuilt "
              "since and are left out (docs/store.md, \"Current results\")", file=sys.stderr)
    who = "lab" if exp.name == "lab" else exp.name
    if res.general_row() is None:
        print("no results for θ_G yet: run `python -m ptm_core sweep data/lab/lab.yml` first",
              file=sys.stderr)
        return 1
    text = report(res, paper_results(), with_curves=not a.no_curves, who=who)
    print(text, end="")
    if a.out:
        title = (f"# What the {who} shows: the full report\n\nGenerated by `python -m ptm_core lab "
                 f"report{'' if who == 'lab' else ' --experiment ' + str(a.experiment)} --out {a.out}` "
                 f"from the stored results (`cached_runs/` for the {who}: vLLM in float32 on its "
                 "test split).\n\n")
        write_text(a.out, title + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
