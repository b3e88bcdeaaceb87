"""The explorer: Streamlit pages over the results store (see docs/app.md).

`data` is the one adapter to the store, the job queue, the merge engine and the exporter (its
parts: settings, requests, sources, export); `ui` is the Streamlit glue; `weightspace` is pure.
What the app shares with the lab report (results, figures, tables, the paper) is in
`ptm_core.analysis`.
"""
