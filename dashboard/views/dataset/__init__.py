"""The dataset page (``/dataset``): :mod:`.page` wires it; the results table (:mod:`.table`), thumbnails
(:mod:`.thumbs`), the confusion matrix's data (:mod:`.figures`) and the widgets that wire them (:mod:`.ui`)."""
