"""XSTest (Röttger et al., NAACL 2024): 250 safe prompts that look unsafe (compliance rate:
low means exaggerated refusals) and 200 unsafe contrast prompts (refusal rate).

The prompts are CC BY 4.0 and are not shipped: pass the CSV (`xstest_prompts.csv` from
github.com/paul-rottger/exaggerated-safety), or leave the path out on a machine that reaches
the Hugging Face hub (dataset `Paul/XSTest`)."""

from __future__ import annotations

from pathlib import Path

from ptm_core.engine.base import Sampling
from ptm_core.errors import PTMError
from ptm_core.evals.prompt_files import file_digest, read_records
from ptm_core.evals.refusal import RefusalClassifier, StringMatchClassifier
from ptm_core.evals.refusal_suite import COMPLY, REFUSE, RefusalSuite
from ptm_core.evals.suite import Item

HUB_DATASET = "Paul/XSTest"
COLUMNS = ("prompt", "type", "label")
VERSION = "xstest-v2"


def load_xstest_rows(path: str | Path | None = None) -> tuple[list[dict], str]:
    """The prompts as records with prompt/type/label, and a version tag of their source."""
    if path is not None:
        return read_records(path, COLUMNS), f"{VERSION}-{file_digest(path)}"
    try:
        from datasets import load_dataset

        rows = [dict(r) for r in load_dataset(HUB_DATASET, split="train")]
    except Exception as e:  # offline, hub unreachable, datasets missing
        raise PTMError(
            f"XSTest: no prompt file given and the hub dataset {HUB_DATASET!r} cannot be loaded "
            f"({type(e).__name__}: {e}). Pass the path of xstest_prompts.csv "
            "(github.com/paul-rottger/exaggerated-safety).") from None
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise PTMError(f"XSTest: hub dataset {HUB_DATASET!r} lacks column {missing[0]!r}")
    return rows, f"{VERSION}-hub"


def xstest_suite(path: str | Path | None = None, *, sampling: Sampling | None = None,
                 classifier: RefusalClassifier | None = None) -> RefusalSuite:
    """Metrics: `compliance_rate` (safe prompts), `refusal_rate` (unsafe prompts), and both
    per prompt type (e.g. `compliance_rate/homonyms`)."""
    rows, version = load_xstest_rows(path)
    labels = {str(r["label"]).strip().lower() for r in rows}
    if not labels <= {"safe", "unsafe"}:
        raise PTMError(f"XSTest: labels must be 'safe' or 'unsafe', got {sorted(labels)}")
    items = [Item(prompt=str(r["prompt"]),
                  target=COMPLY if str(r["label"]).strip().lower() == "safe" else REFUSE,
                  group=str(r["type"])) for r in rows]
    return RefusalSuite(name="xstest", version=version, items=items,
                        sampling=sampling or Sampling(max_tokens=128),
                        classifier=classifier or StringMatchClassifier())
