"""The code's layout holds: public names from ``cam_core``, no Streamlit in the engine, no import cycle
in the dashboard, ruff clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = [
    "METHODS", "CamError", "Diagnosis", "ExplainResult", "LayerInfo", "LoadedModel", "compare_methods", "contrast",
    "deletion_insertion", "diagnose", "explain", "inspect_point", "list_layers", "load_model",
    "randomisation_check", "recommended_layer", "sweep",
]


def test_public_names_import_from_cam_core() -> None:
    import cam_core

    missing = [name for name in PUBLIC if not hasattr(cam_core, name)]
    assert not missing
    assert set(PUBLIC) <= set(cam_core.__all__)
    assert callable(cam_core.explain) and callable(cam_core.sweep) and callable(cam_core.diagnose)


def test_the_engine_never_imports_streamlit() -> None:
    code = (
        "import pkgutil, importlib, sys, cam_core\n"
        "for m in pkgutil.walk_packages(cam_core.__path__, 'cam_core.'):\n"
        "    if m.name != 'cam_core.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The dashboard modules ``path`` imports at module level, ``if TYPE_CHECKING:`` blocks included
    (imports inside functions run later: no cycle)."""
    found: set[str] = set()
    body = ast.parse(path.read_text(encoding="utf-8")).body
    nodes = [*body, *(inner for node in body if isinstance(node, ast.If) for inner in node.body)]
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                pkg = _module_name(path).split(".")
                if path.name != "__init__.py":
                    pkg = pkg[:-1]
                base = ".".join([*pkg[: len(pkg) - node.level + 1], node.module])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules}


def test_no_import_cycle_in_the_dashboard() -> None:
    files = {_module_name(p): p for p in (ROOT / "dashboard").rglob("*.py")}
    graph = {name: _imports(path, set(files)) - {name} for name, path in files.items()}
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    for name in graph:
        graph[name] = {m for m in graph[name] if not (files[name].name == "__init__.py" and m.startswith(name + "."))}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
    # the checker sees real edges
    assert graph["dashboard.views.image.debug.section"] >= {"dashboard.views.image.debug.tabs"}


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    out = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
