"""`python -m ptm_core lab build [--profile regime|plain|micro] [--out DIR]`: build the lab.

Steps, each skipped when its output already exists (a killed build restarts where it stopped):
the world (JSONL splits), the tokenizer, then every run of the plan in order (runs.py), each
written atomically with its run.json. Finally the validity check evaluates θ_pre, θ_G and the
θ_D and prints it (validity.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

from ptm_core.atomic import remove_stale_partials_in, staging_dir, write_text
from ptm_core.errors import PTMError
from ptm_core.lab.profiles import PROFILES, SHIPPED, Profile, get_profile
from ptm_core.lab.world import SPLITS, World, build_world

DEFAULT_OUT = {"regime": Path("runs/lab"), "plain": Path("runs/lab-plain"), "micro": Path("runs/lab-micro")}
BUILD_FILE = "build.json"


def save_world(world: World, out_dir: Path) -> None:
    """world/<split>/<domain>.jsonl and world/world.json, atomically."""
    with staging_dir(out_dir, force=True) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir()
            (tmp / split).chmod(0o755)
            for domain, examples in world.data[split].items():
                lines = (json.dumps(ex.to_dict(), ensure_ascii=False) for ex in examples)
                (tmp / split / f"{domain}.jsonl").write_text("\n".join(lines) + "\n")
        (tmp / "world.json").write_text(json.dumps(world.describe(), indent=2) + "\n")
        tmp.chmod(0o755)


def build_tokenizer(profile: Profile, world: World, out_dir: Path) -> None:
    import itertools

    from ptm_core.lab import tokenizer as T
    from ptm_core.lab.train import make_readable
    from ptm_core.lab.world.corpus import documents

    texts = list(itertools.islice(documents(profile.seed, profile.corpus), profile.tokenizer_docs))
    texts += [T.render_prompt(ex.prompt) + ex.answer
              for xs in world.data["train"].values() for ex in xs]
    tok = T.train_tokenizer(texts, profile.vocab_size)
    with staging_dir(out_dir, force=True) as tmp:
        T.save(tok, tmp)
        make_readable(tmp)


def quiet_transformers() -> None:
    """Our own bars show progress; transformers' per-file bars and notices would drown them."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def remove_stale_partials(out: Path) -> None:
    """A killed build can leave staging directories (".<name>.partial-<pid>-*",
    ".<name>.old-<pid>-*") in the build and models directories; see `atomic`."""
    for parent in (out, out / "models"):
        if parent.is_dir():
            remove_stale_partials_in(parent)


def _check_profile(out: Path, profile: Profile) -> None:
    """Refuse to mix profiles in one output directory."""
    path = out / BUILD_FILE
    if path.exists():
        found = json.loads(path.read_text()).get("profile")
        if found != profile.name:
            raise PTMError(f"{out} holds a {found!r} lab build; use another --out for {profile.name!r}")


def _check_hyper(path: Path, record: dict, spec, profile: Profile) -> None:
    """A resumed build must not mix runs trained with other hyperparameters (a profile edited
    between two calls): their scores and costs would not be one experiment's."""
    from dataclasses import asdict

    # Through JSON, as run.json stores it (tuples come back as lists).
    want = json.loads(json.dumps(asdict(profile.pretrain if spec.kind == "pre" else profile.finetune)))
    old = {"frozen": [], **record.get("hyper", {})}  # records from before `frozen` froze nothing
    if old != want:
        raise PTMError(f"{path} was trained with {record.get('hyper')}, the profile now says "
                       f"{want}; build into a fresh --out directory")


def build(profile: Profile, out: Path, *, check: bool = True, threads: int | None = None,
          stop_after: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Build (or finish building) the lab in `out`; returns the build summary.

    `stop_after` trains at most that many runs in this call (for tests of resumption)."""
    import torch
    from tqdm import tqdm

    from ptm_core.lab.runs import Context, method_costs, plan, train_one
    from ptm_core.lab.tokenizer import load
    from ptm_core.lab.train import pick_device, read_run

    if threads:
        torch.set_num_threads(threads)
    quiet_transformers()
    out.mkdir(parents=True, exist_ok=True)
    _check_profile(out, profile)
    started = time.perf_counter()
    write_text(out / BUILD_FILE, json.dumps({"profile": profile.name, "status": "building"}) + "\n")

    remove_stale_partials(out)
    world = build_world(profile.world)
    if not (out / "world" / "world.json").exists():
        save_world(world, out / "world")
    if not (out / "tokenizer" / "tokenizer.json").exists():
        build_tokenizer(profile, world, out / "tokenizer")
    tokenizer = load(out / "tokenizer")
    ctx = Context(profile, world, tokenizer, out / "tokenizer", out / "models", pick_device())

    specs = plan(profile, world)
    records: dict[str, dict] = {}
    trained = skipped = 0
    bar = tqdm(specs, desc=f"lab {profile.name}", unit="run", dynamic_ncols=True)
    for spec in bar:
        record = read_run(ctx.models_dir / spec.name)
        if record is not None:
            if record.get("profile") != profile.name:
                raise PTMError(f"{ctx.models_dir / spec.name} was built by profile {record.get('profile')!r}")
            _check_hyper(ctx.models_dir / spec.name, record, spec, profile)
            records[spec.name] = record
            skipped += 1
            continue
        if stop_after is not None and trained >= stop_after:
            break
        bar.set_postfix(run=spec.name)
        records[spec.name] = train_one(spec, ctx)
        trained += 1
    bar.close()

    complete = len(records) == len(specs)
    summary = {
        "profile": profile.name, "status": "complete" if complete else "partial",
        "device": ctx.device, "threads": torch.get_num_threads(),
        "world": world.describe(), "runs": {n: {k: r[k] for k in ("steps", "examples_seen", "wall_s")}
                                            for n, r in records.items()},
        "train_wall_s": round(sum(r["wall_s"] for r in records.values()), 1),
        "trained_now": trained, "skipped": skipped, "costs": method_costs(records),
    }
    if complete and check:
        from ptm_core.lab.validity import check_build

        checked = time.perf_counter()
        summary["validity"] = check_build(out, profile, world, ctx.device, log=log)
        summary["check_wall_s"] = round(time.perf_counter() - checked, 1)
    summary["this_call_wall_s"] = round(time.perf_counter() - started, 1)
    write_text(out / BUILD_FILE, json.dumps(summary, indent=2) + "\n")
    log(f"lab {profile.name}: {trained} runs trained, {skipped} reused, "
        f"{summary['this_call_wall_s']:.0f} s -> {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptm_core lab build",
                                     description="Build the lab: world, tokenizer, θ_pre, θ_G, θ_D, CFT and RT runs.")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=SHIPPED)
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default runs/lab, or runs/lab-micro for micro)")
    parser.add_argument("--no-check", action="store_true", help="skip the validity check")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    out = args.out or DEFAULT_OUT[profile.name]
    try:
        summary = build(profile, out, check=not args.no_check, threads=args.threads)
    except PTMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    validity = summary.get("validity")
    return 0 if validity is None or validity["passed"] else 1
