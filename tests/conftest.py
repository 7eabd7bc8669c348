"""Shared fixtures. Keep this small; add, never remove."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cam_core.models import LoadedModel

_REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def lite0() -> LoadedModel:
    """The offline default model (EfficientNet-Lite0, ImageNet weights), loaded once. Do not modify it."""
    from cam_core.models import load_model

    return load_model()


@pytest.fixture(scope="session")
def seed_net_dir() -> Path:
    """The folder holding ``seed_net.py`` (the seed user's model, factory ``seed_net:build``)."""
    for folder in (_REPO / "shared" / "fixtures", _REPO.parent / "shared" / "fixtures", Path("/work/shared/fixtures")):
        if (folder / "seed_net.py").is_file():
            return folder
    pytest.skip("seed_net.py not found (expected in shared/fixtures)")
