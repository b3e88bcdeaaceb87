"""Streamlit pieces shared by every page: the experiment picker, cached sources and figures,
ω state that survives page switches, charts with PNG/SVG and CSV downloads, status banners."""

from __future__ import annotations

import re
from typing import Callable, Mapping

import pandas as pd
import streamlit as st

from ptm_core import catalogue
from ptm_core.analysis import figures
from ptm_core.app import data
from ptm_core.analysis.results import Results, is_layered

PAGES_DIR = data.REPO / "pages"
PAGE_FILES = {name: PAGES_DIR / f"{stem}.py" for name, stem in (
    ("tradeoffs", "tradeoffs"), ("refusals", "refusals"), ("interference", "interference"),
    ("merge", "merge_export"), ("search", "search"), ("runs", "runs"))}
PAGE_SLIDER_KEYS = "_omega"  # persistent ω per experiment: {ref: {skill: ω}}
FMT_KEY = "chart_format"
REF_KEY = "show_paper_points"


# --- experiment ------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=16)
def _open_source(ref: str, env_stamp: tuple) -> data.ExperimentSource:
    return data.open_source(ref)


def _env_stamp(ref: str) -> tuple:
    """What, besides the reference, decides what a source is: settings, and the experiment
    file's modification time (an edited experiment file is read again)."""
    cfg = data.settings()
    path = cfg.lab if ref == "lab" else (None if ref == "paper" else cfg.root / ref)
    try:
        mtime = path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        mtime = 0
    return (str(cfg.lab), str(cfg.store_path), cfg.roots, mtime)


def experiment_picker() -> None:
    """Sidebar: which experiment every page shows (lab, paper, or a file under the root)."""
    cfg = data.settings()
    default = cfg.default_experiment
    worlds = [w for w in data.WORLDS if data.world_file(w) is not None]
    choices = ["lab", *worlds, "paper", "file"]
    labels = {"lab": "The lab (default)", "paper": "The paper's reference numbers",
              "file": "An experiment file…", **{w: data.WORLDS[w][0] for w in worlds}}
    lab_missing = cfg.lab is None or not cfg.lab.is_file()
    if "exp_choice" not in st.session_state:
        if default == "lab" and lab_missing:
            default = "paper"  # a fresh checkout before `make lab`: something to look at
            st.session_state["_lab_fallback"] = True
        st.session_state["exp_choice"] = default if default in choices[:-1] else "file"
        if default not in choices[:-1]:
            st.session_state["exp_path"] = default
    with st.sidebar:
        st.radio("Experiment", choices, format_func=labels.get, key="exp_choice")
        if st.session_state.get("_lab_fallback") and st.session_state["exp_choice"] == "paper":
            st.caption("The lab is not built yet (`make lab`), so the paper's numbers are shown.")
        if st.session_state["exp_choice"] == "file":
            st.text_input("Experiment YAML or results CSV", key="exp_path",
                          help=f"A path under {cfg.root} (relative paths start there).",
                          placeholder="experiments/my_experiment.yaml")
        st.toggle("Show the paper's points", value=True, key=REF_KEY,
                  help="Draw the paper's numbers (Llama 2 7B, Tables 2-6) where the axes agree.")
        st.radio("Chart download format", ["png", "svg"], horizontal=True, key=FMT_KEY,
                 help="The camera icon in each chart's toolbar downloads it in this format.")


def current_ref() -> str:
    choice = st.session_state.get("exp_choice", "lab")
    if choice == "file":
        return (st.session_state.get("exp_path") or "").strip()
    return choice


def current_source() -> data.ExperimentSource | None:
    """The picked experiment, or None after showing why it cannot be opened."""
    ref = current_ref()
    if not ref:
        st.info("Enter the path of an experiment YAML file or a results CSV in the sidebar.")
        return None
    try:
        return _open_source(ref, _env_stamp(ref))
    except Exception as e:  # noqa: BLE001 - every failure is shown, never raised
        st.error(f"Cannot open experiment {ref!r}: {e}")
        if ref == "lab":
            st.caption("Pick “The paper's reference numbers” in the sidebar to explore without the lab.")
        return None


def results(source: data.ExperimentSource) -> Results | None:
    try:
        return source.results()
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot read the results of {source.title!r}: {e}")
        return None


def reference() -> Results | None:
    """The paper's points, unless hidden or already the picked experiment."""
    if not st.session_state.get(REF_KEY, True) or current_ref() == "paper":
        return None
    return _paper_results()


@st.cache_resource(show_spinner=False)
def _paper_results() -> Results:
    return data.PaperSource().results()


def header(title: str, source: data.ExperimentSource, res: Results) -> None:
    st.title(title)
    n = len(res.frame)
    st.caption(f"Experiment: **{source.title}** · {n} evaluated point{'s' * (n != 1)}"
               + (" · read-only" if source.read_only else ""))
    if source.notice:
        st.warning(source.notice, icon=":material/warning:")


def open_page(title: str) -> tuple[data.ExperimentSource, Results]:
    """Every page's start: the picked experiment and its results under the page's title; the
    page stops here (after saying why) when either cannot be had."""
    source = current_source()
    res = results(source) if source is not None else None
    if res is None:
        st.stop()
    header(title, source, res)
    return source, res


def worker_banner(source: data.ExperimentSource) -> data.WorkerState | None:
    if not source.can_queue():
        return None
    try:
        w = source.worker()
    except Exception as e:  # noqa: BLE001
        w = data.WorkerState(False, f"cannot read the worker's state: {e}")
    if not w.alive:
        st.warning("The worker is not running: every cached result is shown, and new points "
                   f"will wait in the queue until it starts. ({w.detail})", icon=":material/pause_circle:")
    return w


def empty_state(res: Results) -> bool:
    if res.empty:
        st.info("No results in this experiment yet. Cached results appear here as soon as the "
                "store has them; queue points from **Merge & export** or run a sweep "
                "(`python -m ptm_core sweep ...`).")
        return True
    return False


# --- ω state ---------------------------------------------------------------------------------
def omega_store(ref: str | None = None) -> dict[str, float]:
    per_experiment = st.session_state.setdefault(PAGE_SLIDER_KEYS, {})
    return per_experiment.setdefault(ref or current_ref(), {})


def snap(value: float | None, grid: list[float]) -> float | None:
    if not grid:
        return None
    if value is None:
        return grid[0]
    return min(grid, key=lambda g: (abs(g - value), g))


def omega_slider(res: Results, skill: str, *, page: str, kind: str = "ptm",
                 label: str | None = None, default: float | None = None,
                 container=None) -> float | None:
    """A slider over the cached ω grid of one skill (snapped), shared by all pages."""
    grid = res.grid(skill, kind)
    if not grid:
        (container or st).caption(f"No cached {kind} points for {skill}.")
        return None
    store = omega_store()
    key = f"{page}:omega:{skill}:{kind}"
    h = res.heuristic_omega(skill)
    hr = None if h is None else round(h, 4)
    start = store.get(skill, default if default is not None else (hr if hr in grid else grid[0]))
    if key not in st.session_state or st.session_state[key] not in grid:
        st.session_state[key] = snap(start, grid)

    def fmt(w: float) -> str:
        return f"{w:g}" + (" (heuristic)" if hr is not None and abs(w - hr) < 1e-9 else "")

    def on_change() -> None:
        omega_store()[skill] = st.session_state[key]

    w = (container or st).select_slider(label or f"ω for {skill}", options=grid, key=key,
                                        format_func=fmt, on_change=on_change)
    store[skill] = w
    return w


def slider_key(page: str, skill: str, kind: str = "ptm") -> str:
    return f"{page}:omega:{skill}:{kind}"


def submit_once(source: data.ExperimentSource, req: data.MergeRequest) -> data.Submission | None:
    """Queue an unmeasured point once per session (reruns and page switches do not queue it
    again): its submission, or None when the source has no job queue. A failed submit raises
    and is tried again on the next rerun."""
    jobs: dict = st.session_state.setdefault("merge:jobs", {})
    key = (source.ref, req)
    if key not in jobs and source.can_queue():
        jobs[key] = source.submit(req)
    return jobs.get(key)


def can_open_in_merge(row: pd.Series) -> bool:
    """A merge point (of a method in the catalogue) with ω: the Merge page can rebuild it."""
    return catalogue.method_of_kind(row["kind"]) is not None and bool(row.get("omega_all")
                                                                      or row["omega_d"])


def open_in_merge(res: Results, row: pd.Series) -> None:
    """Set the Merge page's method and ω to a point's (its sliders start from there; a per-layer
    ω, its anchors)."""
    method = catalogue.method_of_kind(row["kind"])
    if is_layered(row.get("omega_all") or {}):
        open_omega_in_merge(res, method, row["omega_all"])
        return
    st.session_state["merge:method"] = method
    st.session_state["merge:layered"] = False
    store = omega_store()
    for s in res.skills:
        store[s] = float(row["omega_d"].get(s, 0.0))
        for kind in catalogue.curve_kinds():
            st.session_state.pop(slider_key("merge", s, kind), None)


def open_omega_in_merge(res: Results, method: str, omega: Mapping) -> None:
    """Set the Merge page to `method` at any ω (a predicted or suggested point): off-grid
    sliders when some ω is not on the cached grid; per-layer ω (`layer_store`) when some ω is
    a gradient, every skill then given as anchors (a number repeated)."""
    st.session_state["merge:method"] = method
    store = omega_store()
    grid_kind = catalogue.curve_of(catalogue.method(method).kind)
    groups = max((len(v) for v in omega.values() if isinstance(v, (list, tuple))), default=1)
    st.session_state["merge:layered"] = groups > 1
    if groups > 1:
        st.session_state["merge:groups"] = groups
        layers = layer_store()
    off_grid = False
    for s in res.skills:
        v = omega.get(s, 0.0)
        anchors = [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)] * groups
        w = round(sum(anchors) / len(anchors), 4)
        store[s] = w
        if groups > 1:
            layers[s] = tuple(round(a, 4) for a in anchors)
            for k in layer_keys(s, groups):
                st.session_state.pop(k, None)
        off_grid |= w not in set(res.grid(s, grid_kind)) | {0.0}
        for kind in catalogue.curve_kinds():
            st.session_state.pop(slider_key("merge", s, kind), None)
        st.session_state.pop(f"merge:fine:{s}", None)
    st.session_state["merge:fine"] = off_grid


def layer_store(ref: str | None = None) -> dict[str, tuple[float, ...]]:
    """The Merge page's per-layer ω per experiment: {skill: anchors, first layer to last}."""
    per_experiment = st.session_state.setdefault("_omega_layers", {})
    return per_experiment.setdefault(ref or current_ref(), {})


def layer_keys(skill: str, groups: int) -> list[str]:
    """The state keys of a skill's anchor inputs on the Merge page, at `groups` anchors."""
    return [f"merge:layer:{skill}:{groups}:{g}" for g in range(groups)]


def search_view(res: Results, req: data.FrontRequest) -> data.FrontView:
    """The predicted front of `req` over these results (fitted once per results version)."""
    return res.memo(("search_view", req), lambda: data.front_view(res.frame, req, res.axes))


def search_suggestions(res: Results, view: data.FrontView, q: int,
                       exclude: tuple = ()) -> pd.DataFrame:
    """The next `q` ω for the view's objective, not in `exclude` (pairs of (skill, ω))."""
    return res.memo(("search_suggest", view.request, q, exclude),
                    lambda: data.suggest(view, q, [dict(e) for e in exclude]))


def row_id_of(customdata) -> int | None:
    """The frame row a clicked point stands for (its ``customdata``), whatever its wrapping."""
    v = customdata
    while isinstance(v, (list, tuple)) and v:
        v = v[0]
    if isinstance(v, dict):
        v = next(iter(v.values()), None)
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# --- charts and downloads ------------------------------------------------------------------------
def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "chart"


def chart(fig, name: str, frame: pd.DataFrame | Callable[[], pd.DataFrame] | None, *,
          key: str | None = None, on_select: Callable | str = "ignore",
          selection_mode=("points",)) -> object:
    """A Plotly chart whose toolbar downloads PNG/SVG, plus a CSV of the data behind it."""
    fmt = st.session_state.get(FMT_KEY, "png")
    kwargs = {}
    if on_select != "ignore":
        kwargs = {"on_select": on_select, "selection_mode": selection_mode}
    event = st.plotly_chart(fig, key=key, config=figures.chart_config(slug(name), fmt), **kwargs)
    if frame is not None:
        csv_download(frame, name, key=f"csv:{key or name}")
    return event


def csv_download(frame: pd.DataFrame | Callable[[], pd.DataFrame], name: str, *,
                 key: str, label: str = "Data (CSV)") -> None:
    def make() -> bytes:
        df = frame() if callable(frame) else frame
        return to_csv(df)
    st.download_button(label, data=make, file_name=f"{slug(name)}.csv", mime="text/csv", key=key,
                       on_click="ignore", icon=":material/download:")


def to_csv(df: pd.DataFrame) -> bytes:
    drop = [c for c in ("omega_d", "omega_all", "skill_set") if c in df.columns]
    return df.drop(columns=drop).to_csv(index=False).encode("utf-8")


def points_csv(res: Results, axes: list[str]) -> Callable[[], pd.DataFrame]:
    """The experiment's rows with the columns a trade-off chart shows."""
    def make() -> pd.DataFrame:
        cols = ["kind", "skills", "omega", "label", "data_size", "train_steps", "recipe_key",
                "source", "estimated", *axes, *(f"{a}{b}" for a in axes for b in ("_lo", "_hi"))]
        return res.frame[[c for c in cols if c in res.frame.columns]]
    return make


def metric_row(scores: Mapping[str, float], base: Mapping[str, float] | None, axes: list[str],
               *, estimated: bool = False, note: str = "") -> None:
    """One metric per axis with its change against θ_G; "(est.)" on estimates, `note` (e.g.
    "(preliminary, n=10)") after each title."""
    cols = st.columns(max(1, len(axes)))
    for col, a in zip(cols, axes):
        v = scores.get(a)
        if v is None:
            col.metric(_title(a), "–")
            continue
        delta = None
        if base and base.get(a) is not None:
            delta = f"{v - base[a]:+.1f} vs θ_G"
        col.metric(_title(a) + (" (est.)" if estimated else "") + (f" {note}" if note else ""),
                   f"{v:.1f}", delta)


def _title(axis: str) -> str:
    from ptm_core.analysis.results import axis_title
    return axis_title(axis)


# --- cached figures (built once per results version and inputs) ---------------------------------
def freeze(fig):
    """Serialize a cached figure once: Streamlit calls ``to_dict()`` on every render, which
    deep-copies and re-encodes every array; a frozen figure hands back the same dict."""
    d = fig.to_dict()
    fig.to_dict = lambda: d  # noqa: E731 - instance attribute shadows the method
    return fig



def compose(base_fig, last_trace) -> object:
    """``base_fig`` (frozen) with its last trace (the 'current' placeholder) replaced, without
    re-validating the figure: a slider move then costs one small trace, not a whole figure."""
    import plotly.graph_objects as go

    base = base_fig.to_dict()
    d = {"data": base["data"][:-1] + [last_trace.to_plotly_json()], "layout": base["layout"]}
    fig = go.Figure(layout=base_fig.layout)  # a light shell: Streamlit only calls to_dict()
    fig.to_dict = lambda: d  # noqa: E731
    return fig


def tradeoff_fig(skill: str, omega: float | None, selected: int | None, _res: Results,
                 _reference: Results | None, x_axis: str = "general", y_axis: str | None = None,
                 current: tuple | None = None, compact: bool = False):
    """A trade-off figure with the slider's ω (or ``current = (x, y, label, estimated)``, an
    arbitrary recipe) highlighted. The rest of the figure is built once per results version."""
    y = y_axis or skill
    base = _res.memo(("tradeoff_base", skill, selected, _reference is not None, x_axis, y_axis,
                      compact),
                     lambda: freeze(figures.tradeoff_figure(
                         _res, skill, x_axis=x_axis, y_axis=y_axis, reference=_reference,
                         selected_row=selected, compact=compact)))
    key = ("tradeoff_fig", skill, omega, selected, _reference is not None, x_axis, y_axis, current,
           compact)

    def build():
        if current is not None:
            point = {x_axis: current[0], y: current[1], "label": current[2], "estimated": current[3]}
        else:
            point = figures.current_at(_res, skill, omega, x_axis, y)
        return compose(base, figures.current_trace(point, x_axis, y))
    return _res.memo(key, build)


def fragment(func=None, *, run_every=None):
    """``st.fragment``, unless PTM_APP_FRAGMENTS=0 (AppTest, whose runs re-render the whole
    page: a fragment-only run there returns only the fragment's elements)."""
    import os

    def wrap(f):
        if os.environ.get("PTM_APP_FRAGMENTS", "1") == "0":
            return f
        return st.fragment(f, run_every=run_every)
    return wrap(func) if func is not None else wrap
