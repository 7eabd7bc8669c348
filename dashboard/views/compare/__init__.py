"""The image page's comparison with a second model: its sidebar form (:mod:`.sidebar`) and the section under the
workspace (:mod:`.section`); the numbers come from :mod:`cam_core.analysis.compare_photo`."""
