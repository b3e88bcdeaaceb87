"""Trade-offs: for each skill, general score (x) against skill score (y) over ω, with CFT/RT,
the heuristic ω, the Pareto frontier and the paper's points; the best of each method beside it."""

import streamlit as st

from ptm_core.analysis import tables
from ptm_core.app import ui
from ptm_core.analysis.results import axis_title

PAGE = "tradeoffs"

source, res = ui.open_page("Trade-offs")
ui.worker_banner(source)
if ui.empty_state(res):
    st.stop()

skills = [s for s in res.skills if s in res.frame.columns and "general" in res.frame.columns]
if not skills:
    st.info("This experiment has no general-vs-skill axes to chart.")
    st.stop()
criterion = st.radio("Best of each method by", list(tables.CRITERIA), horizontal=True,
                     format_func=tables.CRITERIA.get, key=f"{PAGE}:criterion")
reference = ui.reference()


def _select(skill: str, chart_key: str) -> None:
    """A click on a point selects its recipe: PTM points move the slider to their ω."""
    state = st.session_state.get(chart_key)
    points = (state or {}).get("selection", {}).get("points", []) if state else []
    rows = [ui.row_id_of(p.get("customdata")) for p in points]
    rows = [r for r in rows if r is not None and 0 <= r < len(res.frame)]
    if not rows:  # a click on empty space, or on a paper point (not a recipe here)
        st.session_state.pop(f"{PAGE}:selected:{skill}", None)
        return
    rid = rows[0]
    st.session_state[f"{PAGE}:selected:{skill}"] = rid
    row = res.row(rid)
    if row["kind"] == "ptm" and row["skill_set"] == frozenset([skill]) and skill in row["omega_d"]:
        w = round(float(row["omega_d"][skill]), 4)
        grid = res.grid(skill)
        if w in grid:
            st.session_state[ui.slider_key(PAGE, skill)] = w
            ui.omega_store()[skill] = w


@ui.fragment
def skill_panel(skill: str) -> None:
    st.subheader(f"General vs {axis_title(skill)}")
    left, right = st.columns([5, 4], gap="medium")
    with left:
        w = ui.omega_slider(res, skill, page=PAGE, label=f"ω for {skill} (cached grid)")
        selected = st.session_state.get(f"{PAGE}:selected:{skill}")
        fig = ui.tradeoff_fig(skill, w, selected, res, reference)
        chart_key = f"{PAGE}:chart:{skill}"
        ui.chart(fig, f"tradeoff_{skill}", ui.points_csv(res, ["general", skill]), key=chart_key,
                 on_select=lambda: _select(skill, chart_key))
    with right:
        best = res.memo(("best", skill, criterion),
                        lambda: tables.best_of_each_method(res, skill, criterion=criterion))
        shown = res.memo(("best_shown", skill, criterion), lambda: tables.format_best_table(best))
        st.markdown("**Best of each method** (as the paper's Tables 2–3)")
        st.dataframe(shown, hide_index=True, width="stretch",
                     column_config={"training steps": st.column_config.NumberColumn(format="localized")})
        ui.csv_download(best, f"best_{skill}", key=f"{PAGE}:best:{skill}")
        if w is not None:
            row = res.lookup("ptm", {skill: w})
            if row is not None:
                st.caption(f"Slider: PTM ω={w:g} → general {row['general']:.1f}, "
                           f"{skill} {row[skill]:.1f}")
        if selected is not None and 0 <= selected < len(res.frame):
            row = res.row(selected)
            st.markdown(f"**Selected:** {row['label']}")
            facts = {a: row[a] for a in res.axes if a in row and row[a] == row[a]}
            st.caption(" · ".join(f"{axis_title(a)} {v:.1f}" for a, v in facts.items()))
            if ui.can_open_in_merge(row):
                if st.button("Open in Merge & export", key=f"{PAGE}:open:{skill}"):
                    ui.open_in_merge(res, row)
                    st.switch_page(ui.PAGE_FILES["merge"])


for skill in skills:
    skill_panel(skill)
