"""The video page's parts: :mod:`.compute` (runs and films, cached) and :mod:`.panels` (its widgets and figures)."""
