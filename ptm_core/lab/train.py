"""A plain nanoGPT-style training loop: AdamW, linear warmup, cosine decay, gradient clipping.

`train_run` trains one run of the plan (runs.py) and writes its checkpoint with a run.json
beside it: optimizer steps (the paper's cost axis), examples and tokens seen, wall time, seed.
The checkpoint directory appears atomically, so a killed build never leaves half a run.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ptm_core.atomic import staging_dir

RUN_FILE = "run.json"


@dataclass(frozen=True)
class Hyper:
    lr: float
    batch_size: int
    epochs: int = 1
    warmup_frac: float = 0.03  # paper, Appendix A.2
    min_lr_frac: float = 0.1
    weight_decay: float = 0.0  # paper, Appendix A.2
    grad_clip: float = 1.0
    beta2: float = 0.95
    # Substrings of parameter names kept at their starting values (e.g. "embed_tokens",
    # "lm_head", "norm"): an anchored post-training whose task vectors leave them at θ_pre.
    frozen: tuple[str, ...] = ()


def lr_at(step: int, total: int, h: Hyper) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`."""
    warmup = max(1, round(h.warmup_frac * total))
    if step < warmup:
        return h.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = h.lr * h.min_lr_frac
    return floor + 0.5 * (h.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def optimize(model, batches: Iterable[tuple], total_steps: int, h: Hyper, device: str,
             desc: str = "train", on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Run `total_steps` AdamW steps over `batches` of (inputs, targets); targets already
    aligned with the logits (IGNORE where no loss). Returns the loss of every step."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    model.to(device).train()
    trainable = []
    for n, p in model.named_parameters():
        p.requires_grad_(not any(part in n for part in h.frozen))
        if p.requires_grad:
            trainable.append((n, p))
    decay = [p for n, p in trainable if p.dim() >= 2]
    no_decay = [p for n, p in trainable if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=h.lr, betas=(0.9, h.beta2))
    losses: list[float] = []
    bar = tqdm(total=total_steps, desc=desc, unit="step", leave=False, dynamic_ncols=True)
    for step, (inputs, targets) in zip(range(total_steps), batches):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total_steps, h)
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], h.grad_clip)
        opt.step()
        losses.append(loss.item())
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step:
            on_step(step, losses[-1])
    bar.close()
    model.eval()
    return losses


def shifted(batches: Iterable[tuple]) -> Iterator[tuple]:
    """(ids, labels) padded batches -> (inputs, targets) with targets shifted by one."""
    for ids, labels in batches:
        yield ids[:, :-1], labels[:, 1:]


def loss_summary(losses: list[float], points: int = 20) -> dict:
    """First/last losses and an evenly thinned curve, for run.json."""
    if not losses:
        return {"final": None, "curve": []}
    stride = max(1, len(losses) // points)
    tail = losses[-max(1, len(losses) // 10):]
    return {"first": losses[0], "final": sum(tail) / len(tail),
            "curve": [[i, round(losses[i], 4)] for i in range(0, len(losses), stride)]}


def environment() -> dict:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def write_checkpoint(model, tokenizer_dir: Path, out_dir: Path, record: dict) -> None:
    """Save model, tokenizer and run.json into `out_dir`, atomically (all or nothing)."""
    from ptm_core.lab.model import save_model

    with staging_dir(out_dir, force=True) as tmp:
        save_model(model, tokenizer_dir, tmp)
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
        make_readable(tmp)


def make_readable(directory: Path) -> None:
    """Temporary directories and files are created private; checkpoints are for everyone."""
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def read_run(out_dir: Path) -> dict | None:
    path = Path(out_dir) / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else None
