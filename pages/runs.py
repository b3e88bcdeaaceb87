"""Runs: the workers (each with its host: one per engine, on any machine of the store), the job
queue and its history, with errors readable."""

import streamlit as st

from ptm_core.app import ui

PAGE = "runs"

source, res = ui.open_page("Runs")
if not source.can_queue():
    st.info("This experiment is read-only: it has no job queue. Pick the lab or an experiment "
            "YAML file to see its runs.")
    st.stop()
ui.worker_banner(source)


def workers() -> None:
    """Every worker of the store seen in the last hour (any experiment's), live ones first."""
    st.subheader("Workers")
    try:
        ws = source.workers()
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot read the workers: {e}")
        return
    if ws.empty:
        st.caption("No worker has been seen in the last hour.")
        return
    live = ws[~ws["state"].str.startswith(("stopped", "gone"))]
    st.caption(f"{len(live)} live worker(s) on {live['host'].nunique()} host(s); "
               f"{len(ws) - len(live)} stopped or gone in the last hour. Jobs done and engine: "
               "counted with each result the worker wrote.")
    st.dataframe(ws, hide_index=True, width="stretch")


@ui.fragment(run_every=2.0)
def queue() -> None:
    try:
        counts = source.queue_counts()
        jobs = source.jobs()
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot read the job queue: {e}")
        return
    cols = st.columns(5)
    for col, s in zip(cols, ("queued", "running", "done", "failed", "cancelled")):
        col.metric(s.capitalize(), counts.get(s, 0))
    workers()
    st.subheader("Jobs")
    if jobs.empty:
        st.caption("No jobs yet.")
        return
    st.dataframe(jobs.drop(columns=["error"]), hide_index=True, width="stretch", height=360)
    ui.csv_download(jobs, "jobs", key=f"{PAGE}:csv")
    failed = jobs[jobs["error"].astype(bool)]
    if len(failed):
        st.subheader("Errors")
        for r in failed.head(20).itertuples(index=False):
            with st.expander(f"Job {r.id}: {r.label} ({r.suite}) — {r.status}"):
                st.code(r.error, language=None)


queue()
c1, c2 = st.columns(2)
if c1.button("Retry failed jobs", key=f"{PAGE}:retry"):
    st.toast(f"{source.retry_failed()} job(s) queued again")
if c2.button("Cancel queued jobs", key=f"{PAGE}:cancel"):
    st.toast(f"{source.cancel_queued()} job(s) cancelled")
