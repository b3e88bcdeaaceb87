"""The explorer: Streamlit pages over the results store (see docs/app.md).

Pure parts (results, figures, tables, weightspace, paper) import no Streamlit; `ui` is the
Streamlit glue; `data` is the one adapter to the store, the merge engine and the exporter.
"""
