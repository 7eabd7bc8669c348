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


def _dataset_page() -> None:
    """The Dataset page as ``app.py`` draws it: the shared sidebar, then the page (its clicks go to the image page)."""
    from dashboard import shell
    from dashboard.views.dataset import page as dataset
    from dashboard.views.image import page as image

    shell.register_pages({"image": image.page()})
    shell.shared_sidebar()
    dataset.main()


@pytest.fixture
def dataset_app(root, monkeypatch):
    """``make(**query)``: the Dataset page run by AppTest on the module's data root (its ``root`` fixture), with
    the link's query parameters (``folder=runs/a``)."""
    from streamlit.testing.v1 import AppTest

    from dashboard import dataroot

    monkeypatch.setenv(dataroot.ENV, str(root))

    def make(**query: str) -> AppTest:
        at = AppTest.from_function(_dataset_page, default_timeout=180)
        for name, value in query.items():
            at.query_params[name] = value
        return at.run()

    return make
