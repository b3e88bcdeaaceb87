"""The warm engine preloads the experiment's models that exist: a fresh clone of the lab has
θ_pre, θ_G and the θ_D shipped but not the CFT/RT checkpoints under runs/, and an ω of PTM
must still be measurable there (it failed at engine start when every reference was preloaded)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ptm_core.orchestrate.wiring import resident_refs
from ptm_core.store.experiment import Experiment

SHIPPED_LAB = Path(__file__).resolve().parent.parent / "data" / "lab" / "lab.yml"


def test_missing_reference_checkpoints_are_not_preloaded(tmp_path):
    data = yaml.safe_load(SHIPPED_LAB.read_text(encoding="utf-8"))
    lab = Experiment.load(SHIPPED_LAB)
    missing = [r.model for r in lab.references if r.model and not Path(r.model).is_dir()]
    # the copy points its references at a folder that is not there, whatever this checkout built
    for ref in data.get("references", []):
        if ref.get("model"):
            ref["model"] = str(tmp_path / "not-built" / Path(ref["model"]).name)
    copy = tmp_path / "lab.yml"
    for key in ("base",):
        data[key] = str((SHIPPED_LAB.parent / data[key]).resolve())
    data["general"]["model"] = str((SHIPPED_LAB.parent / data["general"]["model"]).resolve())
    for skill in data["skills"].values():
        skill["model"] = str((SHIPPED_LAB.parent / skill["model"]).resolve())
    copy.write_text(yaml.safe_dump(data), encoding="utf-8")
    exp = Experiment.load(copy)

    refs = resident_refs(exp)
    assert refs == [exp.base, exp.general.model, *(s.model for s in exp.skills.values())]
    assert not any("not-built" in r for r in refs)
    assert len(exp.model_refs()) > len(refs)
    # on the shipped experiment itself, nothing missing is preloaded either
    assert not set(missing) & set(resident_refs(lab))
