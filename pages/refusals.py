"""Refusals: general score and safety against XSTest-safe compliance for every method (the
paper's Figures 4-5), heuristic ω marked; the best of each method on exaggerated refusals."""

import streamlit as st

from ptm_core.analysis import figures, tables
from ptm_core.app import ui

PAGE = "refusals"

source, res = ui.open_page("Refusals")
ui.worker_banner(source)
if ui.empty_state(res):
    st.stop()
if "xstest_safe" not in res.frame.columns:
    st.info("This experiment has no XSTest-safe axis (`xstest_safe`): nothing to show here.")
    st.stop()

st.caption("XSTest-safe compliance: how often the model answers safe prompts that look unsafe "
           "(low = exaggerated refusals). Safety: how often it refuses unsafe prompts.")
skill = "safety" if "safety" in res.skills else (res.skills[0] if res.skills else "safety")
reference = ui.reference()


figs = res.memo(("refusal_figs", skill, reference is not None), lambda: [
    ui.freeze(f) for f in figures.refusal_figures(res, skill=skill, reference=reference)])
cols = st.columns(2, gap="medium")
for col, fig, name in zip(cols, figs, ("general_vs_xstest", "safety_vs_xstest")):
    with col:
        ui.chart(fig, name, ui.points_csv(res, ["general", "safety", "xstest_safe"]),
                 key=f"{PAGE}:{name}")

if "safety" in res.frame.columns:
    st.markdown("**Best of each method on exaggerated refusals and safety** "
                "(as the paper's Table 3, “Ex. Ref.” rows)")
    best = res.memo(("best_exref", skill),
                    lambda: tables.best_of_each_method(res, skill, x="xstest_safe", y="safety"))
    st.dataframe(tables.format_best_table(best), hide_index=True, width="stretch")
    ui.csv_download(best, "best_exaggerated_refusals", key=f"{PAGE}:best")
