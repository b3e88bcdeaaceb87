"""PTM Explorer: the Streamlit app. Run with `make run` or `streamlit run app.py`.

The experiment picker lives in the sidebar and is shared by every page; the pages are in pages/
(named with absolute paths, so this script also runs from a copy, as the tests do).
"""

import time

import streamlit as st

from ptm_core.app import ui

_t0 = time.perf_counter()

st.set_page_config(page_title="PTM Explorer", page_icon=":material/merge:", layout="wide")

nav = st.navigation([
    st.Page(ui.PAGE_FILES["tradeoffs"], title="Trade-offs", icon=":material/scatter_plot:",
            url_path="tradeoffs", default=True),
    st.Page(ui.PAGE_FILES["refusals"], title="Refusals", icon=":material/block:",
            url_path="refusals"),
    st.Page(ui.PAGE_FILES["interference"], title="Interference", icon=":material/grid_on:",
            url_path="interference"),
    st.Page(ui.PAGE_FILES["merge"], title="Merge & export", icon=":material/tune:",
            url_path="merge"),
    st.Page(ui.PAGE_FILES["search"], title="Search", icon=":material/travel_explore:",
            url_path="search"),
    st.Page(ui.PAGE_FILES["runs"], title="Runs", icon=":material/list_alt:", url_path="runs"),
])
ui.experiment_picker()
try:
    nav.run()
finally:  # the server-side time of this run, read by `python -m ptm_core bench app`
    st.session_state["_run_ms"] = 1000 * (time.perf_counter() - _t0)
