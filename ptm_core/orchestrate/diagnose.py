"""Diagnostics of an experiment's models: are they in the regime where task vectors add?

    python -m ptm_core diagnose EXPERIMENT.yml [--omegas 0,0.25,0.5,0.75,1] [--ts ...]
        [--cap N] [--skills ...] [--no-references] [--no-likelihood] [--out report.json]

1. Task vectors (ptm_core.merge.task_vectors): ‖τ‖/‖θ_pre‖ of τ_G, each τ_D and each CFT/RT
   checkpoint the experiment names, overall and per layer, and the cosine between them.
2. The held-out likelihood: the mean per-token NLL of each suite's reference answers
   (`evals.registry.get_references`; suites without them are skipped, with the reason) along
   θ_G + ω τ_D for each skill (the heuristic ω |D|/|G| included), and along the straight line
   θ_G → θ_D, whose loss barrier is max_t [L(t) − ((1 − t) L(0) + t L(1))]: on each suite and on
   the mean of the general and the skill suite (the two data sets the endpoints were trained on).

Merges run in memory through the transformers engine (CPU by default), on `--cap` items per
suite. Prints readable tables, then the report as one JSON line; `--out` writes it atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from ptm_core.atomic import write_text
from ptm_core.errors import PTMError
from ptm_core.store.experiment import Experiment

DEFAULT_OMEGAS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_TS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_CAP = 40  # items per suite: the shipped lab's diagnostic takes about a minute on two cores
GENERAL = "G"  # the label of τ_G


def is_checkpoint(path: str) -> bool:
    return (Path(path) / "config.json").is_file()


def require_checkpoint(exp: Experiment, role: str, path: str) -> None:
    if not is_checkpoint(path):
        raise PTMError(f"{exp.name}: {role} ({path}) is not on this machine (no config.json); "
                       "build or materialize the experiment's checkpoints first (the lab: "
                       "`python -m ptm_core lab build`; smollm2: `python -m ptm_core smollm2 "
                       "materialize`)")


def task_vector_models(exp: Experiment, references: bool = True
                       ) -> tuple[dict[str, str], dict[str, str]]:
    """The checkpoints whose task vectors (θ − θ_pre) to compare, by label: τ_G as "G", each
    skill by its name, each CFT/RT reference by its label; split into those on this machine
    and those missing."""
    wanted = {GENERAL: exp.general.model, **{s: spec.model for s, spec in exp.skills.items()}}
    if references:
        for ref in exp.references:
            if ref.model:
                wanted.setdefault(ref.display_label(), ref.model)
    present = {k: v for k, v in wanted.items() if is_checkpoint(v)}
    return present, {k: v for k, v in wanted.items() if k not in present}


def experiment_task_vectors(exp: Experiment, references: bool = True) -> dict:
    """`checkpoints_report` of the experiment's task vectors, as JSON, with the missing ones."""
    from ptm_core.merge.task_vectors import checkpoints_report

    require_checkpoint(exp, "θ_pre", exp.base)
    present, missing = task_vector_models(exp, references)
    out = checkpoints_report(exp.base, present).to_dict()
    out["missing"] = missing
    return out


def loss_barrier(ts: Sequence[float], losses: Sequence[float]) -> float:
    """max_t [L(t) − ((1 − t) L(0) + t L(1))] over a grid from t = 0 to t = 1 (0 when the
    losses lie on or below the chord between the endpoints)."""
    if len(ts) != len(losses) or len(ts) < 2 or ts[0] != 0.0 or ts[-1] != 1.0:
        raise PTMError("a loss barrier needs losses on a grid of t from 0 to 1")
    l0, l1 = losses[0], losses[-1]
    return max(loss - ((1.0 - t) * l0 + t * l1) for t, loss in zip(ts, losses))


def reference_sets(exp: Experiment, cap: Optional[int]
                   ) -> tuple[dict[str, list[tuple[str, str]]], dict[str, dict]]:
    """Reference pairs per suite group of the experiment (named by its first axis), and what
    each group is: its suite, axes, items, or the reason it has none."""
    from ptm_core.evals.registry import get_references
    from ptm_core.orchestrate.worlds import load_worlds

    load_worlds()
    pairs: dict[str, list[tuple[str, str]]] = {}
    info: dict[str, dict] = {}
    for first, axes in exp.suite_groups().items():
        spec = exp.axes[first]
        info[first] = {"suite": spec.suite, "axes": axes}
        try:
            pairs[first] = get_references(spec.suite, cap=cap, **spec.options)
            info[first]["items"] = len(pairs[first])
        except PTMError as e:  # NoReferences, or the suite's data is not on this machine
            info[first]["skipped"] = str(e)
    return pairs, info


def _grid(values: Sequence[float], *extra: float) -> list[float]:
    return sorted({round(float(v), 6) for v in (*values, *extra)})


def likelihood(exp: Experiment, pairs: dict[str, list[tuple[str, str]]], *,
               omegas: Sequence[float], ts: Sequence[float], skills: Sequence[str],
               device: str = "cpu", batch_size: int = 16,
               log: Callable[[str], None] = lambda _: None) -> dict:
    """NLL of every reference set at θ_G, along θ_G + ω τ_D and along θ_G → θ_D per skill,
    merged in memory by the transformers engine (θ_G is the engine's template)."""
    from ptm_core.engine.hf import HFEngine
    from ptm_core.engine.likelihood import reference_nll
    from ptm_core.merge.ptm import linear_interpolation, task_arithmetic

    for role, path in [("θ_pre", exp.base), ("θ_G", exp.general.model),
                       *((f"θ_{s}", exp.skills[s].model) for s in skills)]:
        require_checkpoint(exp, role, path)
    engine = HFEngine(exp.general.model, device=device, batch_size=batch_size)
    tokens: dict[str, int] = {}

    def measure(label: str, recipe=None) -> dict[str, float | None]:
        if recipe is not None:
            engine.apply(recipe)
        out = {}
        for axis, items in pairs.items():
            r = reference_nll(engine.model, engine.tokenizer, items, batch_size=batch_size)
            out[axis] = r.mean if r.tokens else None
            tokens[axis] = r.tokens
        log(f"  {label}: " + ", ".join(f"{a} {v:.3f}" for a, v in out.items() if v is not None))
        return out

    general = measure("θ_G")
    result: dict = {"theta_G": general, "skills": {}}
    pre, gen = exp.base, exp.general.model
    ts = _grid(ts, 0.0, 1.0)
    for s in skills:
        model = exp.skills[s].model
        heuristic = round(float(exp.heuristic_omega(s)), 6)
        along = [{"omega": w, "heuristic": w == heuristic,
                  "nll": general if w == 0 else measure(
                      f"θ_G + {w:g} τ_{s}", task_arithmetic(pre, gen, {s: model}, {s: w}))}
                 for w in _grid(omegas, heuristic)]
        line = [general if t == 0 else measure(f"θ_G → θ_{s}, t = {t:g}",
                                                linear_interpolation(pre, gen, model, t))
                for t in ts]
        per_axis = {a: [p[a] for p in line] for a in pairs}
        if "general" in pairs and s in pairs:
            per_axis["joint"] = [None if p["general"] is None or p[s] is None
                                 else (p["general"] + p[s]) / 2 for p in line]
        barrier = {a: loss_barrier(ts, v) for a, v in per_axis.items()
                   if all(x is not None for x in v)}
        result["skills"][s] = {"heuristic_omega": heuristic, "along_omega": along,
                               "line": {"t": ts, "nll": per_axis}, "barrier": barrier}
    result["tokens"] = tokens
    return result


def diagnose(exp: Experiment, *, omegas: Sequence[float] = DEFAULT_OMEGAS,
             ts: Sequence[float] = DEFAULT_TS, cap: Optional[int] = DEFAULT_CAP,
             skills: Optional[Sequence[str]] = None, references: bool = True,
             with_likelihood: bool = True, device: str = "cpu", batch_size: int = 16,
             log: Callable[[str], None] = lambda _: None) -> dict:
    """The whole report (see the module docstring), JSON-ready."""
    import torch

    skills = list(exp.skills) if skills is None else list(skills)
    unknown = [s for s in skills if s not in exp.skills]
    if unknown:
        raise PTMError(f"unknown skill(s) {', '.join(unknown)}; {exp.name} has "
                       f"{', '.join(exp.skills)}")
    start = time.perf_counter()
    report: dict = {"experiment": exp.name, "source": exp.source, "cap": cap,
                    "omegas": _grid(omegas), "ts": _grid(ts, 0.0, 1.0), "skills": skills,
                    "device": device, "threads": torch.get_num_threads()}
    log("task vectors ...")
    report["task_vectors"] = experiment_task_vectors(exp, references)
    report["wall_s"] = {"task_vectors": round(time.perf_counter() - start, 2)}
    if with_likelihood:
        pairs, info = reference_sets(exp, cap)
        report["references"] = info
        if pairs:
            log(f"likelihood of reference answers ({', '.join(pairs)}) ...")
            t0 = time.perf_counter()
            lik = likelihood(exp, pairs, omegas=omegas, ts=ts, skills=skills, device=device,
                             batch_size=batch_size, log=log)
            for axis, n in lik.pop("tokens").items():
                info[axis]["tokens"] = n
            report["likelihood"] = lik
            report["wall_s"]["likelihood"] = round(time.perf_counter() - t0, 2)
        else:
            report["likelihood_skipped"] = "no suite of the experiment has reference answers"
    report["wall_s"]["total"] = round(time.perf_counter() - start, 2)
    return report


# --- the readable tables ------------------------------------------------------------------------
def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_report(report: dict) -> str:
    tv = report["task_vectors"]
    names, groups = tv["names"], tv["groups"]
    parts = [f"{report['experiment']}: task vectors τ = θ − θ_pre",
             "\n‖τ‖ / ‖θ_pre‖ in %, overall and per layer group (RMS of τ per weight):",
             _table(["task vector", "all", "RMS", *groups],
                    [[n, _pct(tv["tau_over_pre"][n]), f"{tv['tau_rms'][n]:.2g}",
                      *(_pct(tv["tau_over_pre_per_group"][n][g]) for g in groups)] for n in names]),
             "\ncosine between task vectors:",
             _table(["", *(f"[{i + 1}]" for i in range(len(names)))],
                    [[f"[{i + 1}] {n}", *(_num(c, 2) for c in row)]
                     for i, (n, row) in enumerate(zip(names, tv["cosine"]))])]
    if tv["missing"]:
        parts.append(f"\nnot on this machine ({len(tv['missing'])}): "
                     + ", ".join(list(tv["missing"])[:6]) + (" ..." if len(tv["missing"]) > 6 else ""))
    for axis, info in report.get("references", {}).items():
        if "skipped" in info:
            parts.append(f"likelihood: {axis} skipped: {info['skipped']}")
    lik = report.get("likelihood")
    if lik:
        axes = list(lik["theta_G"])
        parts.append(f"\nheld-out NLL per reference token (nats; {report['cap']} items per "
                     "suite at most; lower is better):")
        for s, d in lik["skills"].items():
            parts.append(f"\nθ_G + ω τ_{s} (* heuristic ω = |D|/|G|):")
            parts.append(_table(["ω", *axes], [[f"{p['omega']:g}" + ("*" if p["heuristic"] else ""),
                                                *(_num(p["nll"][a]) for a in axes)]
                                               for p in d["along_omega"]]))
            cols = list(d["line"]["nll"])
            rows = [[f"{t:g}", *(_num(d["line"]["nll"][a][i]) for a in cols)]
                    for i, t in enumerate(d["line"]["t"])]
            rows.append(["barrier", *(_num(d["barrier"].get(a)) for a in cols)])
            parts.append(f"\nθ_G → θ_{s}: (1 − t) θ_G + t θ_{s} (joint: mean of general and {s}):")
            parts.append(_table(["t", *cols], rows))
    elif "likelihood_skipped" in report:
        parts.append(f"likelihood skipped: {report['likelihood_skipped']}")
    return "\n".join(parts)


SMALL_MODEL_BYTES = 64 * 1024 * 1024


def _weight_bytes(model_dir: str) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ptm_core diagnose",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("experiment", help="experiment YAML file")
    ap.add_argument("--omegas", default=",".join(f"{w:g}" for w in DEFAULT_OMEGAS),
                    help="ω along θ_G + ω τ_D: a comma list or START:STOP:STEP (the heuristic "
                         "ω is always added)")
    ap.add_argument("--ts", default=",".join(f"{t:g}" for t in DEFAULT_TS),
                    help="t along θ_G → θ_D (0 and 1 are always added)")
    ap.add_argument("--cap", type=int, default=DEFAULT_CAP,
                    help=f"reference items per suite (default {DEFAULT_CAP}; 0: all)")
    ap.add_argument("--skills", default=None, help="comma list (default: every skill)")
    ap.add_argument("--no-references", action="store_true",
                    help="leave the CFT/RT checkpoints out of the task vectors")
    ap.add_argument("--no-likelihood", action="store_true",
                    help="task vectors only (no merges, no engine)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: 1 for models under 64 MB, else torch's)")
    ap.add_argument("--out", type=Path, default=None, help="also write the report (JSON) here")
    return ap


def main(argv: Optional[Sequence[str]] = None, out=None) -> int:
    from ptm_core.orchestrate.sweep import parse_omegas

    out = out or sys.stdout
    a = build_parser().parse_args(argv)
    if a.cap < 0:
        raise PTMError("--cap must be 0 (all items) or more")
    exp = Experiment.load(a.experiment)
    skills = [s.strip() for s in a.skills.split(",") if s.strip()] if a.skills else None
    ts = parse_omegas(a.ts)
    if any(not 0.0 <= t <= 1.0 for t in ts):
        raise PTMError(f"--ts {a.ts!r}: t lies in [0, 1]")
    import torch

    from ptm_core.merge.parallel import torch_threads

    threads = a.threads or torch.get_num_threads()
    if not a.threads and _weight_bytes(exp.general.model) < SMALL_MODEL_BYTES:
        threads = 1  # a tiny model gains nothing from a second thread, only contention
    with torch_threads(threads):  # put back afterwards, for a caller in the same process
        report = diagnose(exp, omegas=parse_omegas(a.omegas), ts=ts, cap=a.cap or None,
                          skills=skills, references=not a.no_references,
                          with_likelihood=not a.no_likelihood, device=a.device,
                          batch_size=a.batch_size, log=lambda m: print(m, file=sys.stderr))
    text = json.dumps(report, ensure_ascii=False, allow_nan=False)
    if a.out:
        write_text(a.out, json.dumps(report, ensure_ascii=False, indent=1, allow_nan=False) + "\n")
    print(format_report(report), file=out)
    if a.out:
        print(f"-> {a.out}", file=out)
    print(text, file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
