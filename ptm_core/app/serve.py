"""`python -m ptm_core.app.serve APP.py [streamlit options]`: `streamlit run`, minus one quirk.

Streamlit sees the pages/ folder beside app.py and, until some run has called st.navigation,
treats the app as an old-style (v1) multipage app. The first page load of a fresh server at a
deep link such as /merge then shows "Page not found" before app.py's own navigation takes over.
app.py always calls st.navigation, so the server can start in that mode directly. The launcher,
the benchmark and the browser test start the app through here; plain `streamlit run app.py`
works too (with that one-time notice on a deep link).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from streamlit.runtime.pages_manager import PagesManager
        PagesManager.uses_pages_directory = False
    except (ImportError, AttributeError):  # a Streamlit without this switch: nothing to do
        pass
    from streamlit.web import cli
    sys.argv = ["streamlit", "run", *args]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
