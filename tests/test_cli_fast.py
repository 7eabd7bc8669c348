"""The command line answers at once: ``--help`` and the mistakes found without torch (a missing file, an unknown
method, a number out of range) import no torch, and exit 2 with one line; ``camdash --help`` imports neither torch
nor Streamlit. Imports are read from ``python -X importtime`` (no timings here: those are in
``benchmarks/bench_cli.py``, as ratios)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cam_core.cli_parser import METHOD_NAMES, SPEC_HELP, spec_help_from_registry

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "torchvision", "numpy", "streamlit", "av"}


def _run(args: list[str], cwd: Path = REPO) -> tuple[int, list[str], set[str], str]:
    """(status, stderr lines other than importtime's, top-level packages imported, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    lines = out.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return out.returncode, [line for line in lines if not line.startswith("import time:")], imported, out.stdout


@pytest.mark.parametrize("command", [[], ["explain"], ["video"], ["layers"], ["batch"], ["report"]])
def test_help_imports_no_torch(command) -> None:
    rc, err, imported, out = _run(["-m", "cam_core", *command, "--help"])
    assert rc == 0 and ("explain" in out if not command else "efficientnet_lite0" in out) and not err
    assert "cam_core" in imported and not imported & HEAVY, imported & HEAVY


def test_model_help_is_the_registrys() -> None:
    assert spec_help_from_registry() == SPEC_HELP


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["explain", "--image", "no/such.png"], "no such image file: no/such.png"),
        (["explain", "--image", "README.md", "--method", "gradkam"], "unknown method 'gradkam'"),
        (["explain", "--image", "README.md", "--alpha", "2"], "2 is not between 0 and 1"),
        (["layers", "--input-size", "many"], "'many' is not a whole number"),
        (["video", "--video", "no/such.mp4"], "no such video file: no/such.mp4"),
        (["video", "--video", "README.md", "--smooth", "1.5"], "--smooth must be at least 0 and below 1"),
        (["video", "--video", "README.md", "--max-frames", "0"], "--max-frames must be between 1 and"),
        (["sweep", "--image", "gone.jpg", "--out", "o"], "no such image file: gone.jpg"),
        (["batch", "--images", "README.md", "--method", "nope", "--out", "o"], "unknown method 'nope'"),
        (["report", "--results", "no/such/run"], "no such folder: no/such/run"),
        (["report", "--image", "README.md", "--out", "report.pdf"], "--out must name an .html file"),
        (["report", "--compare", "tests", "--out", "no/such/dir/r.html"], "--out's folder does not exist"),
        (["report", "--image", "README.md", "--results", "tests"], "not allowed with argument"),
    ],
)
def test_mistakes_exit_2_with_one_line_before_torch(args, needle) -> None:
    rc, err, imported, _ = _run(["-m", "cam_core", *args])
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not imported & HEAVY, imported & HEAVY


def test_method_list_needs_no_image() -> None:
    rc, err, _, out = _run(["-m", "cam_core", "explain", "--image", "absent.jpg", "--method", "list"])
    assert rc == 0 and "scorecam" in out, err


def test_method_names_without_torch_match_the_registry() -> None:
    from cam_core.engine.methods import METHODS

    assert tuple(METHODS) == METHOD_NAMES


def test_camdash_help_imports_neither_torch_nor_streamlit(tmp_path) -> None:
    code = "import sys; sys.argv = ['camdash', '--help']; from dashboard.launch import main; main()"
    rc, err, imported, out = _run(["-c", code], cwd=tmp_path)
    assert rc == 0 and "--trust-visitors" in out and "streamlit run" in out and not err
    assert not imported & HEAVY, imported & HEAVY
    rc, err, imported, _ = _run(["-c", code.replace("'--help'", "'--models', 'absent.toml'")], cwd=tmp_path)
    assert rc == 2 and err == ["camdash: error: --models absent.toml: no such file"]
    assert not imported & HEAVY


def test_camdash_variables_are_the_dashboards() -> None:
    from dashboard import access, dataroot, launch
    from dashboard.server import stats

    assert (launch.ENV_TRUST, launch.ENV_MODELS, launch.ENV_DATA_ROOT) == (
        access.ENV_TRUST, access.ENV_MODELS, dataroot.ENV
    )
    assert (launch.ENV_QUOTA, launch.ENV_SHARED_UPLOADS, launch.ENV_TOKEN) == (
        dataroot.ENV_QUOTA, dataroot.ENV_SHARED_UPLOADS, stats.ENV_TOKEN
    )
