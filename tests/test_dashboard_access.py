"""Who may do what on a shared dashboard: the trust setting (both modes), pinned models, what messages show,
and uploads deleted when their session ends. Markers prove that nothing malicious ran.

AppTest with the setting forced by the environment (as ``camdash --trust-visitors`` sets it); the
default from the bind address is tested on a real server bound to a non-loopback address inside a
network namespace (nothing outside the namespace can reach it), with Chromium in the same namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from streamlit.testing.v1 import AppTest
from torch import nn

from dashboard import uploads
from dashboard.access import is_loopback

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 120


def _app(monkeypatch: pytest.MonkeyPatch, trust: str | None = None, models: Path | None = None) -> AppTest:
    if trust is not None:
        monkeypatch.setenv("CAMDASH_TRUST_VISITORS", trust)
    if models is not None:
        monkeypatch.setenv("CAMDASH_MODELS", str(models))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _upload(at: AppTest, key: str, path: Path) -> AppTest:
    return at.file_uploader(key=key).set_value((path.name, path.read_bytes(), "application/octet-stream")).run()


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("") and not is_loopback("0.0.0.0") and not is_loopback("10.200.0.1")
    assert not is_loopback("::") and not is_loopback("my-host")


def test_on_loopback_everything_is_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMDASH_TRUST_VISITORS", raising=False)
    at = _app(monkeypatch)  # AppTest reads .streamlit/config.toml: 127.0.0.1
    assert at.radio(key="model_source").options == ["Offline default", "torchvision model", "timm model",
                                                    "Hugging Face model", "Upload a checkpoint", "Python factory"]
    assert not [w for w in at.warning if "run code" in w.value]


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


class _WritesAFile(nn.Module):
    """A TorchScript graph that writes into a file on the server when it runs (``torch.from_file``, shared)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        written = torch.from_file(self.path, shared=True, size=4, dtype=torch.uint8).fill_(7)
        return self.conv(x).mean((2, 3)) + written[:1].float() * 0


def test_visitors_of_an_untrusting_server_cannot_run_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker, ts_marker = tmp_path / "marker", tmp_path / "ts_marker"
    ts_marker.write_bytes(b"\0" * 4)
    at = _app(monkeypatch, trust="no")
    sources = at.radio(key="model_source").options
    assert "Python factory" not in sources and "Upload weights" in sources
    assert any("model sources that run code" in c.value for c in at.sidebar.caption)
    at.radio(key="model_source").set_value("checkpoint").run()
    assert not [c for c in at.checkbox if c.key == "ckpt_trust"]  # no box a visitor could tick
    assert "(none: TorchScript or whole model)" not in at.selectbox(key="ckpt_arch").options
    # A pickle that would write a marker: refused, and the message does not suggest trusting it.
    evil = tmp_path / "evil.pt"
    torch.save({"model": _WritesMarker(marker)}, evil)
    at = _upload(at, "ckpt_file", evil)
    errors = [e.value for e in at.error]
    assert any("not allowed here" in e for e in errors) and not any("Trust" in e for e in errors), errors
    # A TorchScript archive whose forward writes a file: refused before it is even loaded.
    script = tmp_path / "writer.pt"
    writer = torch.jit.script(_WritesAFile(str(tmp_path / "probe")))
    (tmp_path / "probe").write_bytes(b"\0" * 4)
    writer(torch.randn(1, 3, 8, 8))
    assert (tmp_path / "probe").read_bytes() == b"\7" * 4  # it really writes files when run
    torch.jit.script(_WritesAFile(str(ts_marker))).save(str(script))
    at = _upload(at, "ckpt_file", script)
    assert any("TorchScript archive" in e.value and "not allowed here" in e.value for e in at.error)
    assert not marker.exists() and ts_marker.read_bytes() == b"\0" * 4
    # No message names a server path: the file is named as the visitor named it.
    assert not any("/tmp/" in e.value or "cam_dashboard_uploads" in e.value for e in at.error)
    # Weights only, for an architecture the server knows: that works.
    torch.manual_seed(0)
    weights = tmp_path / "resnet18_7.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=7).state_dict(), weights)
    at.selectbox(key="ckpt_arch").set_value("resnet18").run()
    at = _upload(at, "ckpt_file", weights)
    assert not at.error, [e.value for e in at.error]
    assert at.number_input(key="top_k").value == 3 and len(at.multiselect(key="class_picker").value) == 3


def test_trusting_a_served_dashboard_is_said_to_every_visitor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "yes")
    from dashboard import access

    served = access.Access(address="0.0.0.0", loopback=False, trust_visitors=True)
    monkeypatch.setattr(access, "current", lambda: served)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert any("lets every visitor use model sources that run code" in w.value for w in at.warning)
    assert "Python factory" in at.radio(key="model_source").options


def test_an_operator_pins_the_models_of_a_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    models = tmp_path / "demo.toml"
    models.write_text(
        textwrap.dedent(
            f"""
            [[model]]
            title = "Cat spotter"
            model = "efficientnet_lite0"

            [[model]]
            title = "Tiny"
            model = "tests.tiny:gapnet"
            import_path = "{ROOT}"
            """
        )
    )
    at = _app(monkeypatch, trust="no", models=models)  # the operator's factory loads even for untrusted visitors
    assert not [r for r in at.radio if r.key == "model_source"]  # visitors choose among the pinned ones only
    assert at.selectbox(key="pinned_model").options == ["Cat spotter", "Tiny"]
    at.selectbox(key="pinned_model").set_value("Tiny").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    badges = " ".join(m.value for m in at.markdown if "badge" in m.value)
    assert "Tiny" in badges and str(ROOT) not in badges  # its title, never its paths
    assert at.query_params["model"] == "pinned:Tiny"
    assert at.number_input(key="top_k").value == 3


def test_uploads_of_ended_sessions_are_deleted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(uploads, "UPLOAD_ROOT", tmp_path)
    monkeypatch.setattr(uploads, "_SERVER", "server-test")  # this server's folder (tests/test_shared_server.py:
    server = uploads.server_folder()  # other servers' folders are left alone while those servers run)
    alive, ended = server / "alive-session", server / "ended-session"
    for folder in (alive, ended):
        (folder / "0123456789abcdef").mkdir(parents=True)
        (folder / "0123456789abcdef" / "w.pt").write_bytes(b"x")

    class FakeRuntime:
        @staticmethod
        def exists() -> bool:
            return True

        @staticmethod
        def instance() -> FakeRuntime:
            return FakeRuntime()

        def is_active_session(self, session_id: str) -> bool:
            return session_id == "alive-session"

    monkeypatch.setattr(uploads, "Runtime", FakeRuntime)
    monkeypatch.setattr(uploads.st, "get_option", lambda name: 0)  # no grace period
    assert uploads.sweep(force=True) == 1
    assert alive.exists() and not ended.exists()
    uploads.release()  # at shutdown: this server's files
    assert not alive.exists()
    text = f"{tmp_path}/alive-session/0123456789abcdef/w.pt does not fit"
    monkeypatch.setattr(uploads, "_UPLOADED", __import__("re").compile(
        __import__("re").escape(str(tmp_path)) + r"/[^/\s'\"]+/[0-9a-f]{16}/([^/\s'\"]+)"))
    assert uploads.redact(text) == "w.pt does not fit"


# ---- a real server beyond loopback, in a network namespace ----------------------------------------------------

_NETNS = "camdash_test"
_PROBE = """
import json, shutil, subprocess, sys, time, urllib.request
from playwright.sync_api import sync_playwright
root, address, trust = sys.argv[1], sys.argv[2], sys.argv[3]
env = dict(__import__("os").environ)
env.pop("CAMDASH_TRUST_VISITORS", None)
cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address", address,
       "--server.port", "8799", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
if trust != "default":
    env["CAMDASH_TRUST_VISITORS"] = trust
server = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
url = f"http://{address}:8799"
try:
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1); break
        except OSError:
            time.sleep(0.5)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = b.new_page()
        page.goto(url)
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180000)
        page.wait_for_selector(".st-key-model_source", timeout=180000)
        # every source drawn (its label and at least five choices), not the radio's first paint
        page.wait_for_function("document.querySelectorAll('.st-key-model_source label').length >= 6", timeout=180000)
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180000)
        out = {"sources": page.locator(".st-key-model_source label").all_inner_texts(),
               "text": page.inner_text("body")}
        b.close()
    print(json.dumps(out))
finally:
    server.terminate()
"""


def _netns() -> bool:
    if shutil.which("ip") is None or shutil.which("chromium") is None:
        return False
    subprocess.run(["ip", "netns", "del", _NETNS], capture_output=True)
    steps = [["ip", "netns", "add", _NETNS], ["ip", "netns", "exec", _NETNS, "ip", "link", "set", "lo", "up"],
             ["ip", "netns", "exec", _NETNS, "ip", "addr", "add", "10.200.0.1/32", "dev", "lo"]]
    return all(subprocess.run(s, capture_output=True).returncode == 0 for s in steps)


@pytest.fixture(scope="module")
def netns():
    if not _netns():
        pytest.skip("network namespaces are not available here (ip netns add needs root)")
    yield _NETNS
    subprocess.run(["ip", "netns", "del", _NETNS], capture_output=True)


def _probe(netns: str, address: str, trust: str) -> dict:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _PROBE, str(ROOT), address, trust],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_a_server_beyond_loopback_does_not_trust_visitors_by_default(netns: str) -> None:
    served = _probe(netns, "10.200.0.1", "default")
    assert not any("factory" in s for s in served["sources"]), served["sources"]
    assert any("Upload weights" in s for s in served["sources"])
    assert "model sources that run code" in served["text"]
    opened = _probe(netns, "10.200.0.1", "yes")  # the operator's deliberate choice, said to every visitor
    assert any("factory" in s for s in opened["sources"])
    assert "lets every visitor use model sources that run code" in opened["text"]
    local = _probe(netns, "127.0.0.1", "default")  # a person's own tool
    assert any("factory" in s for s in local["sources"]) and "run code on the server" not in local["text"]
