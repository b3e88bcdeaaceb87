"""Search: state an objective over the experiment's skills, see the predicted Pareto front (the
surrogate's mean with its 95 % band, marked as predicted) beside the measured points, queue the
suggested next ω for the worker, and open any front point in Merge & export."""

import pandas as pd
import streamlit as st

from ptm_core.analysis.front_figure import front_figure
from ptm_core.analysis.results import axis_title
from ptm_core.app import data, ui

PAGE = "search"
METHOD = "task_arithmetic"

source, res = ui.open_page("Search")
ui.worker_banner(source)
if ui.empty_state(res):
    st.stop()
skills = [s for s in res.skills if s in res.frame.columns]
if not skills:
    st.info("This experiment has no skill axes to maximise.")
    st.stop()

# --- the objective -----------------------------------------------------------------------------
st.caption("Task arithmetic θ_G + Σ ω_k τ_k over the chosen skills, ω on a lattice in [0, 1]. The "
           "front below is **predicted** by a surrogate fitted to the measured points (as "
           "`python -m ptm_core search`); measure the suggested points to sharpen it.")
c1, c2, c3 = st.columns([3, 2, 2])
chosen = c1.multiselect("Skills to maximise (their ω are searched)", skills,
                        default=skills[:2], key=f"{PAGE}:skills")
chosen = [s for s in skills if s in chosen]  # experiment order
mode = c2.radio("Objective", ["pareto", "weighted"], key=f"{PAGE}:mode",
                format_func={"pareto": "Pareto front", "weighted": "Weighted sum"}.get)
kind = c3.radio("Surrogate", ["gp", "quadratic"], key=f"{PAGE}:surrogate", horizontal=True,
                format_func={"gp": "Gaussian process", "quadratic": "quadratic (MAP)"}.get)
weights = None
if mode == "weighted" and chosen:
    cols = st.columns(len(chosen))
    weights = tuple(float(col.number_input(f"weight of {s}", value=1.0, step=0.5,
                                           key=f"{PAGE}:w:{s}")) for col, s in zip(cols, chosen))
groups = int(st.radio(
    "ω per skill", [1, 2, 3, 4], key=f"{PAGE}:groups", horizontal=True,
    format_func=lambda g: "one ω" if g == 1 else f"per layer: {g} groups",
    help="Per layer: each skill's ω is a MergeKit gradient list of G anchors, from the first layer "
         "to the last and interpolated between, so the search has skills × G dimensions (columns "
         "ω_<skill>[1] … [G]). A point with equal anchors is the one-ω point. The lattice step "
         "grows with the dimensions; past 50,000 points the candidates are a seeded sample "
         "(every one-ω point, then uniform draws)."))
delta = None
if "general" in res.axes:
    d1, d2 = st.columns([2, 3])
    if d1.toggle("Keep general within Δ of θ_G", value=True, key=f"{PAGE}:constrain"):
        delta = float(d2.number_input("Δ (points of general ability)", min_value=0.0,
                                      max_value=100.0, value=5.0, step=0.5, key=f"{PAGE}:delta"))
if not chosen:
    st.info("Choose at least one skill to maximise.")
    st.stop()
try:
    req = data.FrontRequest(tuple(chosen), weights, delta, surrogate=kind,
                            step=data.lattice_step(len(chosen) * groups), groups=groups)
    with st.spinner("Fitting the surrogate…"):
        view = ui.search_view(res, req)
except data.AppDataError as e:
    st.warning(str(e))
    st.stop()
st.markdown(f"**Objective:** {view.objective.describe()}")
if groups > 1:
    st.caption(f"Per-layer ω: {view.space.describe()}. Measured points with one ω per skill count "
               "as equal anchors.")

# --- the predicted front -------------------------------------------------------------------------
xy = data.plot_axes(view)
suggested = st.session_state.get(f"{PAGE}:suggested")
shown = None
if suggested is not None and suggested[0] == (source.ref, req):
    shown = ui.search_suggestions(res, view, suggested[1], suggested[2])
drawn = view.front is not None and not view.front.empty
if not drawn:
    st.info(view.message, icon=":material/info:")
if xy is None:
    st.caption("One skill and no general axis: nothing to chart against; the table below has "
               "the predicted best ω.")
else:
    x, y = xy
    floor = ("general", view.floor) if view.floor is not None else None
    title = f"{axis_title(x)} vs {axis_title(y)}: " + (
        "predicted front and measured points" if drawn else "measured points (no front predicted)")
    fig = res.memo(("search_fig", req, x, y, suggested[1:] if shown is not None else None),
                   lambda: front_figure(view.measured, view.front, x, y, suggested=shown,
                                        floor=floor, title=title))
    ui.chart(fig, f"front_{'_'.join(chosen)}",
             lambda: pd.concat([view.measured.assign(point="measured"),
                                (view.front if view.front is not None else pd.DataFrame())
                                .assign(point="predicted")], ignore_index=True),
             key=f"{PAGE}:chart")
st.caption(f"{view.have} distinct ω measured (the {kind} surrogate needs {view.need}). Filled "
           "markers are measured; the dashed line and the shaded band are the surrogate's "
           "prediction (mean and 95 %), not measurements.")

if drawn:
    st.markdown("**Predicted front** (not measured)")
    cols = [c for c in view.front.columns if c != "label"]
    st.dataframe(view.front[["label", *cols]], hide_index=True, width="stretch")
    labels = list(view.front["label"])
    pick = st.selectbox("Point of the predicted front", range(len(labels)),
                        format_func=labels.__getitem__, key=f"{PAGE}:pick")
    if st.button("Open in Merge & export", key=f"{PAGE}:open"):
        row = view.front.iloc[int(pick or 0)]
        ui.open_omega_in_merge(res, METHOD, view.omegas(row))
        st.switch_page(ui.PAGE_FILES["merge"])

# --- suggest next --------------------------------------------------------------------------------
st.divider()
st.subheader("Suggest next")
queued = st.session_state.setdefault(f"{PAGE}:queued", {}).setdefault((source.ref, tuple(chosen)), [])
q = int(st.number_input("Points per batch", min_value=1, max_value=12, value=4, step=1,
                        key=f"{PAGE}:q"))
if st.button("Suggest next", key=f"{PAGE}:suggest"):
    st.session_state[f"{PAGE}:suggested"] = ((source.ref, req), q, tuple(queued))
    st.rerun()
if shown is not None:
    if shown.empty:
        st.info("Every lattice point is measured or queued.")
    else:
        st.dataframe(shown, hide_index=True, width="stretch")
        if not source.can_queue():
            st.caption("This experiment is read-only (no job queue): measure these points with "
                       "`python -m ptm_core search` or a sweep.")
        elif st.button(f"Queue these {len(shown)} point(s) for the worker", type="primary",
                       key=f"{PAGE}:queue"):
            n_jobs, errors = 0, []
            for _, r in shown.iterrows():
                om = view.omegas(r)
                try:
                    sub = ui.submit_once(source, data.MergeRequest.make(METHOD, om))
                    n_jobs += len(sub.job_ids) if sub is not None else 0
                    queued.append(tuple(sorted(om.items())))
                except Exception as e:  # noqa: BLE001 - shown, the others still queue
                    errors.append(f"{r['label']}: {e}")
            for e in errors:
                st.error(f"Could not queue {e}")
            st.success(f"Queued {n_jobs} job(s) for {len(shown) - len(errors)} point(s); the "
                       "front redraws as the worker stores results.")
            st.session_state.pop(f"{PAGE}:suggested", None)
