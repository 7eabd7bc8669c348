"""The dashboard's pages; each module has a short ``main()`` that wires sidebar, engine calls and figures."""
