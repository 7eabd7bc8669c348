"""The video page (``/video``): :mod:`.page` wires it; :mod:`.compute` (runs and films, cached) and :mod:`.panels`
(its widgets and figures)."""
