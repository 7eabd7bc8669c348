"""The image page (``/``): :mod:`.page` wires it; :mod:`.compute` (maps, cached), :mod:`.panels` (its widgets and
figures), :mod:`.exports`, :mod:`.still` (the overlay as HTML while Plotly starts) and :mod:`.debug` (the debug
section)."""
