"""Build the real-model world: train every run's adapter (resumable), and materialize full
checkpoints from the package plus the shipped adapters, checked against recorded fingerprints.

    data/smollm2/adapters/<run>/adapter.safetensors   LoRA A/B in bfloat16 (shipped, ≤ 5 MB)
    data/smollm2/adapters/<run>/run.json              spec, training record, fingerprint
    data/smollm2/pre.json                             θ_pre's fingerprint
    runs/smollm2/models/<run>/                        materialized checkpoints (not shipped)

A run is done when its run.json exists (written last, atomically); a run.json whose spec,
data or finetuning settings differ from the plan's is refused, never silently reused."""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from ptm_core.atomic import staging_dir, write_bytes, write_text
from ptm_core.errors import PTMError
from ptm_core.smollm2 import data, runs
from ptm_core.smollm2.lora import LoraConfig, merge_adapter, train_lora

REPO = Path(__file__).resolve().parents[2]
ADAPTERS = REPO / "data" / "smollm2" / "adapters"
MODELS = REPO / "runs" / "smollm2" / "models"
PRE_RECORD = REPO / "data" / "smollm2" / "pre.json"
CONFIG = LoraConfig(rank=8, alpha=16, lr=4e-4, epochs=1, batch_size=8, max_len=192)
ADAPTER_FILE, RUN_FILE = "adapter.safetensors", "run.json"


def fingerprint(model_dir: Path) -> str:
    from ptm_core.merge.checkpoint import Checkpoint

    with Checkpoint.open(str(model_dir)) as ck:
        return ck.fingerprint()


def examples_for(spec: runs.RunSpec) -> list[tuple[str, str]]:
    """The run's training examples: the first n of each part, each repeated as the part asks,
    mixed by a seeded shuffle."""
    mixed = [ex for part, n in spec.data.items()
             for ex in data.train_examples(part, n) * data.REPEATS[part]]
    random.Random(f"{data.SEED}:{spec.name}").shuffle(mixed)
    return mixed


def expected_header(spec: runs.RunSpec, cfg: LoraConfig) -> dict:
    return {"spec": spec.describe(), "lora": asdict(cfg),
            "data_digest": data.digest(examples_for(spec))}


class World:
    """Where one copy of the world lives (the repository's by default; tests use temp dirs)."""

    def __init__(self, adapters: Path = ADAPTERS, models: Path = MODELS,
                 pre_record: Path = PRE_RECORD, gguf: Optional[Path] = None,
                 cfg: LoraConfig = CONFIG, plan: Optional[list[runs.RunSpec]] = None):
        self.adapters, self.models, self.pre_record = Path(adapters), Path(models), Path(pre_record)
        self.gguf, self.cfg = gguf, cfg
        self.plan = {r.name: r for r in (plan if plan is not None else runs.plan())}

    # --- records ------------------------------------------------------------------------------
    def record(self, name: str) -> dict | None:
        path = self.adapters / name / RUN_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PTMError(f"{path}: not a run record ({e}); move it aside to retrain the run") from None

    def done(self) -> list[str]:
        return [n for n in self.plan if self.record(n) is not None]

    def check_record(self, name: str, record: dict) -> None:
        want = expected_header(self.plan[name], self.cfg)
        for key, value in want.items():
            if record.get(key) != value:
                raise PTMError(f"{self.adapters / name / RUN_FILE}: trained with another {key} than "
                               "this build plans; move the run aside (or delete it) to retrain it")

    # --- materializing ------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.models / name

    def materialize(self, name: str, progress: Callable[[str], None] = print) -> Path:
        """The run's full checkpoint, built if missing, and checked against its fingerprint."""
        out = self.model_dir(name)
        want = self._recorded_fingerprint(name)
        if not (out / "config.json").is_file():
            if out.exists():  # not ours to delete: it may hold someone's work
                raise PTMError(f"{out} exists but has no config.json (not a whole checkpoint): "
                               f"move it aside to materialize {name!r}")
            if name == "pre":
                self._materialize_pre(out, progress)
            else:
                self._materialize_run(name, out, progress)
        got = fingerprint(out)
        if want is not None and got != want:
            raise PTMError(f"{out}: fingerprint {got} differs from the recorded {want}; the "
                           "package or adapter changed, or the directory was edited: move it aside "
                           "and materialize again")
        return out

    def _recorded_fingerprint(self, name: str) -> str | None:
        if name == "pre":
            if self.pre_record.is_file():
                return json.loads(self.pre_record.read_text(encoding="utf-8"))["fingerprint"]
            return None
        rec = self.record(name)
        return rec["fingerprint"] if rec else None

    def _materialize_pre(self, out: Path, progress) -> None:
        from ptm_core.smollm2 import sources
        from ptm_core.smollm2.gguf_model import gguf_to_hf

        gguf = self.gguf or sources.smollm2_gguf()
        progress(f"materializing pre: dequantizing {gguf.name}")
        gguf_to_hf(gguf, out)

    def _materialize_run(self, name: str, out: Path, progress) -> None:
        rec = self.record(name)
        if rec is None:
            raise PTMError(f"run {name!r} is not built: no {self.adapters / name / RUN_FILE}; "
                           "`python -m ptm_core smollm2 build` trains it")
        self._merge(name, rec, out, progress)

    def _merge(self, name: str, record: dict, out: Path, progress) -> None:
        """out = the run's init checkpoint with the run's adapter merged in (atomic)."""
        from safetensors.torch import load_file, save_file

        base = self.materialize(record["spec"]["init"], progress)
        progress(f"materializing {name}: {record['spec']['init']} + adapter")
        state = load_file(str(base / "model.safetensors"))
        adapter = load_file(str(self.adapters / name / ADAPTER_FILE))
        merged = merge_adapter(state, adapter, record["lora"]["alpha"] / record["lora"]["rank"])
        with staging_dir(out) as tmp:
            save_file(merged, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            for f in base.iterdir():
                if f.is_file() and f.name != "model.safetensors":
                    shutil.copy2(f, tmp / f.name)

    # --- training -----------------------------------------------------------------------------
    def train(self, name: str, progress: Callable[[str], None] = print) -> dict:
        from safetensors.torch import save

        spec = self.plan[name]
        existing = self.record(name)
        if existing is not None:
            self.check_record(name, existing)
            return existing
        base = self.materialize(spec.init, progress)
        examples = examples_for(spec)
        start = time.perf_counter()
        step_log = max(1, self.cfg.steps(len(examples)) // 10)

        def report(step: int, total: int, loss: float) -> None:
            if step % step_log == 0 or step == total:
                progress(f"  {name}: step {step}/{total} loss {loss:.3f} "
                         f"({time.perf_counter() - start:.0f} s)")

        progress(f"training {name}: {len(examples)} examples from {spec.init}")
        state, record = train_lora(base, examples, self.cfg, report)
        run_dir = self.adapters / name
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes(run_dir / ADAPTER_FILE, save(state))
        out = self.model_dir(name)
        if out.exists():  # a stale materialization of an earlier, unrecorded try
            shutil.rmtree(out)
        full = {**expected_header(spec, self.cfg), "train": record}
        # run.json is written last, after the model it describes exists: its presence means done.
        self._merge(name, full, out, progress)
        full["fingerprint"] = fingerprint(out)
        write_text(run_dir / RUN_FILE, json.dumps(full, indent=1, sort_keys=True) + "\n")
        return full

    def record_pre(self) -> str:
        fp = fingerprint(self.materialize("pre"))
        if not self.pre_record.is_file():
            self.pre_record.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.pre_record, json.dumps({"fingerprint": fp}, indent=1) + "\n")
        return fp

    def build(self, max_priority: int | None = None, only: list[str] | None = None,
              progress: Callable[[str], None] = print) -> list[str]:
        self.record_pre()
        todo = [r for r in runs.build_order(list(self.plan.values()))
                if (max_priority is None or r.priority <= max_priority) and (not only or r.name in only)]
        built = []
        for spec in todo:
            existing = self.record(spec.name)
            if existing is None:
                self.train(spec.name, progress)
                built.append(spec.name)
            else:
                self.check_record(spec.name, existing)
        return built
