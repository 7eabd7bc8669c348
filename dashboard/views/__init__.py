"""The dashboard's pages; each module has a short ``main()`` that wires sidebar, engine calls and figures,
and ``page()`` for ``st.navigation``.

Not named ``pages``: Streamlit treats a ``pages/`` folder beside the entry script as its older
multipage app and runs a fresh server's first visit to ``/video`` as that file alone.
"""
