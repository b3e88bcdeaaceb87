"""Helpers for the app's tests (and the benchmark): fixture experiments and an AppTest factory.

AppTest quirk worked around here: AppTest creates a fresh PagesManager for every run, which sees
the pages/ folder beside app.py and falls back to Streamlit's v1 multipage mode; a rerun after a
widget change then executes the page script alone (no sidebar, no picker). Running a copy of
app.py from a directory without a pages/ folder avoids it (app.py names its pages by absolute
path). The real server is unaffected: st.navigation switches v1 mode off process-wide.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Mapping

import pandas as pd

from ptm_core.analysis.results import KNOWN_AXES, META
from ptm_core.app import data
from ptm_core.app.synthetic import synthetic_frame

FRAME_COLUMNS = META + KNOWN_AXES  # an empty results CSV: the contract columns and the axes


def write_frame_experiment(root: Path, name: str = "fixture", frame: pd.DataFrame | None = None,
                           models: Mapping[str, str | Path] | None = None) -> Path:
    """A results-CSV experiment under ``root/name/results.csv`` (synthetic unless ``frame``),
    with ``models.json`` naming checkpoints by role when ``models`` is given."""
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    df = synthetic_frame(experiment=name) if frame is None else frame
    path = d / "results.csv"
    df.to_csv(path, index=False)
    if models is not None:
        (d / "models.json").write_text(json.dumps({k: str(v) for k, v in models.items()}, indent=1))
    return path


def write_empty_experiment(root: Path, name: str = "empty") -> Path:
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    path = d / "results.csv"
    pd.DataFrame(columns=FRAME_COLUMNS).to_csv(path, index=False)
    return path


def app_env(experiment: str | Path, root: Path, export_dir: Path | None = None) -> dict[str, str]:
    env = {"PTM_APP_EXPERIMENT": str(experiment), "PTM_APP_ROOT": str(root),
           "PTM_APP_FRAGMENTS": "0", "PTM_EXPORT_DIR": str(export_dir or Path(root) / "exports")}
    return env


def app_test(tmp: Path, timeout: float = 120):
    """An AppTest of app.py run from a copy under ``tmp/_app`` (see the module docstring)."""
    from streamlit.testing.v1 import AppTest

    d = Path(tmp) / "_app"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(data.REPO / "app.py", d / "app.py")
    return AppTest.from_file(str(d / "app.py"), default_timeout=timeout)


def run_page(tmp: Path, page: str):
    """An AppTest of the app opened on `page` ("tradeoffs" is the landing page)."""
    at = app_test(tmp)
    at.run()
    if page != "tradeoffs":
        at.switch_page(page_path(page))
        at.run()
    return at


def page_path(name: str) -> str:
    from ptm_core.app.ui import PAGE_FILES
    return str(PAGE_FILES[name])


def plotly_specs(at) -> list[dict]:
    """The Plotly figures an AppTest run rendered, as dicts (in page order)."""
    out = []
    for el in at.get("plotly_chart"):
        out.append(json.loads(el.proto.spec))
    return out


def plotly_array(v) -> list:
    """A trace's data array as a list: Plotly sends numeric arrays as ``{dtype, bdata}``
    (base64 of the raw buffer)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if isinstance(shape, str):  # 2-D arrays (heatmaps) give it as text: "4, 7"
            shape = [int(x) for x in shape.split(",")]
        return a.reshape(shape).tolist() if shape else a.tolist()
    return list(v) if v is not None else []


def current_point(spec: dict) -> tuple[float, float] | None:
    for t in spec.get("data", []):
        if str(t.get("name", "")).startswith("current") and t.get("x"):
            return float(t["x"][0]), float(t["y"][0])
    return None


def set_env(env: Mapping[str, str]) -> dict[str, str | None]:
    """Set variables; returns the previous values for :func:`restore_env`."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return old


def restore_env(old: Mapping[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
