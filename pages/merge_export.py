"""Merge & export: ω per skill, the method and its parameters. Cached scores appear at once;
uncached points go to the worker as jobs (progress shown, an estimate marked as such until the
measured score arrives: first on a subsample of each suite, marked preliminary, then in full).
Export writes the checkpoint and its card under the export directory."""

from pathlib import Path

import pandas as pd
import streamlit as st

from ptm_core import catalogue
from ptm_core.analysis.results import preliminary_note
from ptm_core.app import data, ui

PAGE = "merge"

source, res = ui.open_page("Merge & export")
worker = ui.worker_banner(source)
cfg = data.settings()
if not res.skills:
    st.info("This experiment names no skills yet: nothing to merge.")
    st.stop()

# --- the recipe --------------------------------------------------------------------------------
c_method, c_param = st.columns([2, 1])
menu = data.method_menu()
method = c_method.selectbox("Method", list(menu), format_func=menu.get, key="merge:method")
entry = catalogue.method(method)
density = 0.5
if entry.sparse:
    density = c_param.slider("density (fraction of each τ kept)", 0.05, 1.0, 0.5, 0.05,
                             key="merge:density")
one_skill = entry.one_skill
grid_kind = catalogue.curve_of(entry.kind)
fine = entry.weighted and st.toggle("Off-grid ω (values without a cached result are queued for the worker)",
                 key="merge:fine")
# a per-layer ω (MergeKit gradient anchors, first layer to last): base-relative methods only
layered = entry.form == "task_arithmetic" and st.toggle(
    "Per-layer ω (a gradient: ω at evenly spaced layers, first to last, interpolated between)",
    key="merge:layered")
groups = int(st.radio("Anchors per skill", [2, 3, 4], horizontal=True, key="merge:groups")) \
    if layered else 1
skills = res.skills
if one_skill:
    skills = [st.radio("Skill", res.skills, horizontal=True, key="merge:skill")]
store = ui.omega_store()
omegas: dict[str, float] = {}
cols = st.columns(len(skills))
if not entry.weighted:  # the method weighs the models itself: choose which skills go in
    st.caption("This method has no ω: it merges θ_G with the chosen skill models and sets "
               "their weights itself.")
layers = ui.layer_store()
for col, skill in zip(cols if entry.weighted else [], skills):
    if layered:  # one input per anchor, started from the stored gradient (or the one ω)
        start = data.resample(layers.get(skill, store.get(skill, 0.0)), groups)
        anchors = []
        for g, key in enumerate(ui.layer_keys(skill, groups)):
            if key not in st.session_state:
                st.session_state[key] = round(min(1.0, max(0.0, start[g])), 4)
            where = "first layer" if g == 0 else "last layer" if g == groups - 1 else f"anchor {g + 1}"
            anchors.append(float(col.number_input(f"ω for {skill}, {where}", 0.0, 1.0, step=0.05,
                                                  key=key)))
        layers[skill] = tuple(anchors)
        omegas[skill] = tuple(anchors)
        continue
    grid = sorted(set(res.grid(skill, grid_kind)) | {0.0})
    if fine or len(grid) < 2:
        key = f"{PAGE}:fine:{skill}"
        if key not in st.session_state:
            st.session_state[key] = float(store.get(skill, 0.0))
        w = col.slider(f"ω for {skill}", 0.0, 1.0, step=0.01, key=key,
                       on_change=lambda s=skill, k=key: store.__setitem__(s, st.session_state[k]))
        store[skill] = w
    else:
        w = ui.omega_slider(res, skill, page=PAGE, kind=grid_kind, container=col,
                            label=f"ω for {skill}")
    omegas[skill] = float(w or 0.0)
if not entry.weighted:
    for i, (col, skill) in enumerate(zip(cols, skills)):
        omegas[skill] = 1.0 if col.checkbox(f"θ_D {skill}", value=i == 0,
                                            key=f"{PAGE}:include:{skill}") else 0.0
try:
    req = data.MergeRequest.make(method, omegas, density)
except data.AppDataError as e:
    st.warning(str(e))
    st.stop()

# --- scores: measured, or queued with an estimate ------------------------------------------------
st.subheader(req.label())
row = source.lookup(req)
g = res.general_row()
base = {a: res.score(g, a) for a in res.axes} if g is not None else None
measured = row is not None and not bool(row["estimated"])
preliminary = measured and bool(row["preliminary"])
if measured:
    scores = {a: res.score(row, a) for a in res.axes if res.score(row, a) is not None}
if measured and not preliminary:
    st.success(f"Measured: {row['label']}", icon=":material/check_circle:")
    ui.metric_row(scores, base, res.axes)
else:
    if not measured:
        scores = source.estimate(req) or {}
    try:  # a preliminary point's full jobs are already queued: this finds them
        sub = ui.submit_once(source, req)
    except Exception as e:  # noqa: BLE001
        st.error(f"Could not queue this point: {e}")
        sub = None
    if preliminary:
        st.info(f"Measured {preliminary_note(row)}: {row['label']} on a subsample of "
                "each suite, with its wider 95 % interval; replaced by the full suites' scores "
                "when they finish.", icon=":material/timelapse:")
    if not source.can_queue():
        st.info("Not measured, and this experiment is read-only (no job queue): the scores "
                "below are an **estimate** interpolated from cached points.", icon=":material/straighten:")
    elif sub is not None and sub.status == "queued":
        @ui.fragment(run_every=1.0)
        def job_progress() -> None:
            p = source.progress(sub.job_ids)
            if source.version() != res.version:  # new results: redraw with the measured score
                st.rerun()
            if p.state == "failed":
                st.error("The evaluation failed:")
                st.code(p.error or "no message", language=None)
            else:
                wait = "" if worker is None or worker.alive else " — waiting for a worker"
                st.progress(p.fraction, text=f"Job {p.state}{wait}: "
                            f"{p.message or 'evaluating'} ({100 * p.fraction:.0f}%)")
        job_progress()
    if preliminary:
        ui.metric_row(scores, base, res.axes, note=preliminary_note(row))
    elif scores:
        st.caption("**Estimate** — not measured; replaced by the measured score when it arrives.")
        ui.metric_row(scores, base, res.axes, estimated=True)
    elif req.layered:
        st.caption("No estimate for a per-layer ω (estimates read one ω per skill): its scores "
                   "appear when the worker has measured it.")
    else:
        st.caption("No estimate is possible for this point (no cached neighbours).")

if scores:
    ui.csv_download(lambda: pd.DataFrame([{
        "recipe": req.label(), "method": req.method, "omega": str(req.active), "density": req.density,
        "measured": measured, "preliminary": preliminary, **scores}]), f"scores_{req.method}",
        key=f"{PAGE}:scores_csv",
        label="Scores (CSV)")

# --- where this recipe stands ----------------------------------------------------------------------
chart_skills = [s for s in res.skills if s in res.frame.columns]
if chart_skills and "general" in res.frame.columns:
    st.caption("Where this recipe stands (●: measured, ○: estimate); legends and the full "
               "curves are on **Trade-offs**.")
    reference = ui.reference()
    cols = st.columns(min(3, len(chart_skills)))
    for i, skill in enumerate(chart_skills):
        cur = None
        if scores.get("general") is not None and scores.get(skill) is not None:
            cur = (round(scores["general"], 4), round(scores[skill], 4), req.label(), not measured)
        fig = ui.tradeoff_fig(skill, None, None, res, reference, current=cur, compact=True)
        with cols[i % len(cols)]:
            ui.chart(fig, f"merge_{skill}", ui.points_csv(res, ["general", skill]),
                     key=f"{PAGE}:chart:{skill}")

# --- export ------------------------------------------------------------------------------------------
st.divider()
st.subheader("Export")
default_name = ui.slug(f"{source.title}-{req.method}-" + "-".join(
    f"{k}{data.format_omega(v)}" for k, v in req.active.items()) or "general")
name = st.text_input("Name", value=default_name, key=f"{PAGE}:name:{default_name}",
                     help=f"A plain name; the checkpoint goes to {cfg.export_dir}/NAME.")
overwrite = st.checkbox("Replace an existing export of that name", key=f"{PAGE}:force")
st.caption(f"Writes a Hugging Face checkpoint (safetensors, config, tokenizer) and a model card "
           f"(recipe, inputs, scores) to `{cfg.export_dir}/{name}`.")
if st.button("Export checkpoint", type="primary", key=f"{PAGE}:export"):
    try:
        with st.spinner("Merging to disk…"):
            result = data.export_merge(source, req, name, scores if measured and not preliminary
                                       else None, cfg,
                                       force=overwrite)
        st.session_state["merge:last_export"] = str(result.path)
        st.toast(f"Exported to {result.path}")
    except Exception as e:  # noqa: BLE001
        st.error(f"Export failed: {e}")
last = st.session_state.get("merge:last_export")
if last and Path(last).is_dir():
    p = Path(last)
    size = data.dir_size(p)
    files = sorted(f.name for f in p.iterdir())
    st.success(f"Exported to `{p}` ({size / 1e6:.1f} MB): {', '.join(files)}")
    if size <= cfg.zip_limit_bytes:
        st.download_button("Download as zip", data=lambda: data.zip_dir(p), file_name=f"{p.name}.zip",
                           mime="application/zip", key=f"{PAGE}:zip", on_click="ignore",
                           icon=":material/download:")
    else:
        st.caption(f"Too large to download from the browser (over {cfg.zip_limit_bytes / 1e6:.0f} "
                   "MB): copy it from the export directory.")
