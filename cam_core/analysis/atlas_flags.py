"""The atlas' flags: clusters whose maps look where the object is unlikely to be ("Clever Hans" shortcuts).

Each rule reads a cluster's mean map (a mass distribution on the atlas grid, summing to 1) and, when
the results carry loc's ``box_energy``, its members' energy in the box; it answers a :class:`Flag`
with its reason in words, or nothing. The thresholds are set well above what a map spread evenly
over the image gives (its share of a region is the region's share of the area), so a cluster of maps
on the object (most photos: near the middle) is not flagged, and one that piles up at the edge is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .localisation import WRONG_REASONS_ENERGY

__all__ = [
    "BORDER_SHARE",
    "CORNER_SHARE",
    "MIN_BOXED",
    "OUTSIDE_BOX_ENERGY",
    "Flag",
    "border_mass",
    "cluster_flags",
    "corner_mass",
]

BORDER_SHARE = 0.7  # mass on the outer eighth of each side (44% of the area: an even map puts 44% there)
CORNER_SHARE = 0.4  # mass in one corner's square, a third of each side (1/9 of the area: an even map puts 11% there)
OUTSIDE_BOX_ENERGY = WRONG_REASONS_ENERGY  # the Dataset page's "right for the wrong reasons", for a cluster's mean
MIN_BOXED = 0.5  # the box rule speaks only when at least this share of the cluster's images have a box
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class Flag:
    """A reason to look at a cluster: ``code`` (``corner``, ``border``, ``outside_box``), the number behind it,
    and the reason in words."""

    code: str
    value: float
    reason: str

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "value": round(float(self.value), 4)}


def border_mass(mean: np.ndarray) -> float:
    """Share of the mass in the ring of the outer eighth of each side (at least one cell)."""
    g = mean.shape[0]
    ring = max(1, round(g / 8))
    inner = mean[ring : g - ring, ring : g - ring].sum()
    return float(mean.sum() - inner)


def corner_mass(mean: np.ndarray) -> tuple[str, float]:
    """(which corner, its share of the mass): the corner square (a third of each side) holding the most."""
    g = mean.shape[0]
    q = max(1, round(g / 3))
    shares = (mean[:q, :q].sum(), mean[:q, -q:].sum(), mean[-q:, :q].sum(), mean[-q:, -q:].sum())
    i = int(np.argmax(shares))
    return CORNERS[i], float(shares[i])


def cluster_flags(mean: np.ndarray, box_energy: np.ndarray) -> list[Flag]:
    """The flags of one cluster: its mean map (grid, grid) and its members' energy in the box (NaN: no box)."""
    flags = []
    where, corner = corner_mass(mean)
    if corner >= CORNER_SHARE:
        flags.append(Flag("corner", corner, f"{corner:.0%} of the mean map's mass lies in the {where} corner "
                                            "(a square of a third of each side, a ninth of the image)"))
    border = border_mass(mean)
    if border >= BORDER_SHARE:
        flags.append(Flag("border", border, f"{border:.0%} of the mean map's mass lies on the border (the outer "
                                            "eighth of each side, 44% of the image)"))
    boxed = box_energy[np.isfinite(box_energy)]
    if boxed.size and boxed.size >= MIN_BOXED * box_energy.size:
        energy = float(boxed.mean())
        if energy < OUTSIDE_BOX_ENERGY:
            flags.append(Flag("outside_box", energy, f"most of the map's mass lies outside the object's box: "
                                                     f"{energy:.1%} inside, on average over {boxed.size} image(s) "
                                                     "with a box"))
    return flags
