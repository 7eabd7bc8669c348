"""The map-shift measure against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cam_core.analysis.compare import map_shift, match_classes


def test_same_map_and_scaled_copy_did_not_move() -> None:
    m = np.arange(12, dtype=np.float32).reshape(3, 4) - 3.0
    for other in (m, 5 * m):
        s = map_shift(m, other, photo_size=(30, 40))
        assert s.shift == pytest.approx(0.0, abs=1e-6) and s.peak_px == pytest.approx(0.0)


def test_hand_computed_correlation_and_peak() -> None:
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    b = np.array([[3.0, 2.0], [1.0, -4.0]])  # ReLU'd: [3, 2, 1, 0]
    x, y = np.array([0, 1, 2, 3.0]), np.array([3, 2, 1, 0.0])
    r = ((x - x.mean()) @ (y - y.mean())) / (np.linalg.norm(x - x.mean()) * np.linalg.norm(y - y.mean()))
    s = map_shift(a, b, photo_size=(200, 100))
    assert r == pytest.approx(-1.0)
    assert s.correlation == pytest.approx(r) and s.shift == pytest.approx(2.0)
    # Peaks: a at cell (1, 1) → (150, 75); b at (0, 0) → (50, 25): distance √(100² + 50²).
    assert s.peak_px == pytest.approx(math.hypot(100, 50))


def test_grids_differ_compared_on_the_finer() -> None:
    coarse = np.zeros((2, 2))
    coarse[1, 1] = 1.0
    fine = np.zeros((8, 8))
    fine[6, 6] = 1.0
    s = map_shift(coarse, fine, photo_size=(8, 8))
    # The coarse map's peak, upsampled bilinearly to 8×8, lies in its bottom-right quadrant.
    assert s.peak_px < 3.0 and 0.0 < s.shift < 1.0


def test_blank_maps() -> None:
    live, blank = np.eye(3), -np.eye(3)
    assert map_shift(blank, blank).shift == 0.0
    one = map_shift(live, blank)
    assert one.shift == 1.0 and math.isnan(one.peak_px)


def test_match_classes_by_normalised_name_with_differing_label_sets() -> None:
    a = ["tabby", "Egyptian_cat", "tiger cat", "dog"]
    b = ["egyptian  cat", "DOG", "bird", "Tabby"]
    assert match_classes(a, b) == [3, 0, None, 1]
    assert match_classes(b, a) == [1, 3, None, 0]
    assert match_classes([], b) == [] and match_classes(a, []) == [None] * 4


def test_match_classes_duplicate_names_in_order_and_identical_sets_by_index() -> None:
    names = ["crane", "cat", "crane", "maillot", "maillot"]
    assert match_classes(names, names) == [0, 1, 2, 3, 4]
    assert match_classes(names, ["crane", "maillot"]) == [0, None, None, 1, None]
