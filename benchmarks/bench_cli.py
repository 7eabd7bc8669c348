"""How fast the command line answers, as ratios to ``python -c "import torch"`` measured in the same run.

Targets (the issue "A first hour without surprises"): ``--help``, ``camdash --help`` and every argument mistake
(a missing file, an unknown method, a bad number) within 0.2× of importing torch (they are answered before torch
imports); ``layers`` and ``explain`` of one image within 1.2× of the floor: the imports they cannot avoid plus one
forward and backward of the model (``floor`` below, the same model and image size).

Each command runs ``--repeat`` times in a fresh interpreter (the median is kept); commands alternate, so a busy
machine slows them alike and the ratios hold where the seconds do not.

Run: ``python benchmarks/bench_cli.py [--repeat 3] [--model efficientnet_lite0]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOOR = (
    "import torch\n"
    "from PIL import Image\n"
    "from cam_core.models.load import load_model\n"
    "model = load_model({model!r})\n"
    "x, _ = model.prepare(Image.open({image!r}).convert('RGB'))\n"
    "x = x[None].requires_grad_(True)\n"
    "model.module(x).max().backward()\n"
)
CAMDASH_HELP = "import sys; sys.argv = ['camdash', '--help']; from dashboard.launch import main; main()"


def _seconds(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, timeout=600, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "photo.png"
        Image.new("RGB", (451, 300), (120, 90, 60)).save(image)
        out = str(Path(tmp) / "out")
        cli = ["-m", "cam_core"]
        quick = {
            "--help": [*cli, "--help"],
            "explain, missing image": [*cli, "explain", "--image", "absent.png"],
            "explain, unknown method": [*cli, "explain", "--image", str(image), "--method", "gradkam"],
            "explain, bad number": [*cli, "explain", "--image", str(image), "--alpha", "2"],
            "video, missing video": [*cli, "video", "--video", "absent.mp4"],
            "camdash --help": ["-c", CAMDASH_HELP],
        }
        heavy = {
            "layers": [*cli, "layers", "--model", args.model],
            "explain (1 image)": [*cli, "explain", "--model", args.model, "--image", str(image), "--classes", "top1",
                                  "--out", out],
        }
        runs: dict[str, list[float]] = {"import torch": [], "floor": []}
        for _ in range(args.repeat):
            runs["import torch"].append(_seconds(["-c", "import torch"]))
            for name, cmd in quick.items():
                runs.setdefault(name, []).append(_seconds(cmd))
            runs["floor"].append(_seconds(["-c", FLOOR.format(model=args.model, image=str(image))]))
            for name, cmd in heavy.items():
                runs.setdefault(name, []).append(_seconds(cmd))
    med = {name: statistics.median(v) for name, v in runs.items()}
    torch_s, floor_s = med["import torch"], med["floor"]
    print(f"import torch: {torch_s:.2f} s; floor (imports + one forward/backward of {args.model}): {floor_s:.2f} s")
    print(f"{'command':<28}{'seconds':>9}{'ratio':>9}  target")
    for name in quick:
        ratio = med[name] / torch_s
        print(f"{name:<28}{med[name]:>9.2f}{ratio:>9.2f}  ≤ 0.2× import torch {'ok' if ratio <= 0.2 else 'MISSED'}")
    for name in heavy:
        ratio = med[name] / floor_s
        print(f"{name:<28}{med[name]:>9.2f}{ratio:>9.2f}  ≤ 1.2× floor {'ok' if ratio <= 1.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
