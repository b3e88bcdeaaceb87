"""What the app and the lab report share: the results frame as `Results`, the paper's numbers,
the tables and the figures. Pure (no Streamlit, no I/O beyond the paper's shipped CSVs)."""
