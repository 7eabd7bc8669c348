"""``camdash`` carries the repository's Streamlit settings wherever it is started."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from dashboard.launch import CONFIG, repo_options


def test_every_setting_of_the_config_becomes_a_flag() -> None:
    settings = tomllib.loads(CONFIG.read_text())
    flags = repo_options()
    assert len(flags) == sum(len(v) for v in settings.values())
    assert "--server.fileWatcherType=none" in flags
    assert "--runner.postScriptGC=false" in flags
    assert "--browser.gatherUsageStats=false" in flags


def test_missing_config_gives_no_flags(tmp_path: Path) -> None:
    assert repo_options(tmp_path / "absent.toml") == []


def test_streamlit_run_applies_the_flags_from_another_folder(tmp_path: Path) -> None:
    """``streamlit run`` with the flags, started outside the repository, ends with the repository's settings.

    Streamlit's own option parsing runs (an unknown option or a bad value fails it); only the server start is
    replaced by printing the resulting configuration.
    """
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\n"
        "from streamlit import config\n"
        "from streamlit.web import bootstrap, cli\n"
        "from dashboard.launch import repo_options\n"
        "def show(main_script_path, *args):\n"
        "    flag_options = args[-1]\n"
        "    bootstrap.load_config_options(flag_options)\n"
        "    print(repr(config.get_option('runner.postScriptGC')), config.get_option('server.fileWatcherType'),\n"
        "          config.get_option('client.toolbarMode'), config.get_option('browser.gatherUsageStats'),\n"
        "          config.get_option('server.address'))\n"
        "bootstrap.run = show\n"
        "bootstrap.run_asgi_app = show  # app.py is also an ASGI app (importing it starts the warm start)\n"
        f"sys.argv = ['streamlit', 'run', {str(root / 'dashboard' / 'app.py')!r}, *repo_options()]\n"
        "cli.main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "none", "viewer", "False", "127.0.0.1"]


def test_camdash_options_become_the_servers_environment(tmp_path: Path) -> None:
    from dashboard.launch import own_options

    models = tmp_path / "demo.toml"
    models.write_text('[[model]]\ntitle = "Lite"\nmodel = "efficientnet_lite0"\n')
    env, rest = own_options(["--trust-visitors", "no", "--models", str(models), "--server.port", "8600"])
    assert env == {"CAMDASH_TRUST_VISITORS": "no", "CAMDASH_MODELS": str(models.resolve())}
    assert rest == ["--server.port", "8600"]  # Streamlit's own options pass through
    assert own_options(["--server.address", "0.0.0.0"]) == ({}, ["--server.address", "0.0.0.0"])
