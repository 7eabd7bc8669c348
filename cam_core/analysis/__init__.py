"""What a map says and whether to trust it: :mod:`.diagnose` (why a map is blank or odd),
:mod:`.sweep` (every stage, method comparison, contrast), :mod:`.trust` (deletion/insertion,
model randomisation).

Import the functions from their modules (``from cam_core.analysis.sweep import sweep``) or from
``cam_core``; this package does not re-export them, because ``diagnose`` and ``sweep`` would
then shadow the modules of the same name.
"""
