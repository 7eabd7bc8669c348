"""The dashboard's pages, one folder each: ``page.py`` holds ``page()`` (the ``st.Page`` for ``st.navigation``) and a
short ``main()`` that wires sidebar, engine calls and figures; the page's own pieces sit beside it.

Not named ``pages``: Streamlit treats a ``pages/`` folder beside the entry script as its older
multipage app and runs a fresh server's first visit to ``/video`` as that file alone.
"""
