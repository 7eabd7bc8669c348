"""The model zoo, end to end with random weights: every torchvision classifier and one timm model per family.

Run from the repository root: ``python -m benchmarks.zoo [--out zoo.md] [--only NAME ...] [--timeout 180]``
(CPU, one torch thread, sequential: about 20 minutes on two busy cores). Each model goes through
tests/zoo_check.py's :func:`check_model`: it loads with ``weights=None`` (no download), lists its layers, its
recommended layer must be one a person would choose (not in attention, not in the head, not a resampling pool,
not class-score maps) with a one-line why, the gradient methods explain its top 3 classes without NaN, and
its Grad-CAM is compared with pytorch-grad-cam's at the same layer (max absolute difference, and the peer's
largest |value|). A model past the timeout, or failing, is a row with its error; the sweep goes on.

CNNs run at a small input (128 px, fast) when they take any size; models built for one size (ViT, LeViT, …)
at their own. pytorch-grad-cam is skipped where it is known to be wrong: DenseNet, whose in-place ReLU after
``features`` changes the tensor the peer keeps.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import time
import warnings
from collections.abc import Iterator

import torch
import torchvision

from tests.zoo_check import ZooRow, check_model

# One timm model per family (the smallest, where there is a choice): CNNs, ViT/DeiT/BEiT/EVA and their kin,
# Swin/MaxViT/CoAtNet, hybrids (LeViT, MobileViT, EfficientFormer, FastViT, …) and MLP models.
TIMM = [
    # CNNs
    "resnet10t", "resnetv2_18", "convnext_atto", "convnextv2_atto", "efficientnet_b0", "efficientnetv2_rw_t",
    "mobilenetv3_small_050", "mobilenetv4_conv_small", "regnetx_002", "ghostnet_100", "rexnet_100", "dla46_c",
    "densenet121", "dpn48b", "cs3darknet_s", "hrnet_w18_small", "res2net50_14w_8s", "resnest14d", "skresnet18",
    "nf_regnet_b0", "selecsls42b", "tresnet_m", "vgg11", "inception_v3", "xception41", "mixnet_s", "lcnet_050",
    "repvgg_a0", "mobileone_s0", "repghostnet_050", "tinynet_e", "hgnetv2_b0", "inception_next_atto",
    "ese_vovnet19b_slim_dw", "botnet26t_256", "halonet26t", "lambda_resnet26t", "starnet_s050", "rdnet_tiny",
    "repvit_m0_9", "mambaout_femto", "convmixer_768_32",
    # transformers
    "vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "deit3_small_patch16_224",
    "beit_base_patch16_224", "eva02_tiny_patch14_224", "flexivit_small", "cait_xxs24_224", "convit_tiny",
    "volo_d1_224", "crossvit_tiny_240", "pit_ti_224", "tnt_s_patch16_224", "twins_pcpvt_small", "pvt_v2_b0",
    "xcit_nano_12_p16_224", "visformer_tiny", "gcvit_xxtiny", "nest_tiny_jx", "hiera_tiny_224",
    # windows and grids
    "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "maxvit_nano_rw_256", "coatnet_nano_rw_224",
    "coat_lite_tiny", "davit_tiny", "focalnet_tiny_srf", "tiny_vit_5m_224",
    # hybrids
    "levit_128s", "mobilevit_xxs", "mobilevitv2_050", "efficientformer_l1", "efficientformerv2_s0", "fastvit_t8",
    "edgenext_xx_small", "efficientvit_b0", "efficientvit_m0", "nextvit_small", "poolformer_s12",
    "vitamin_small_224",
    # MLPs
    "mixer_s16_224", "resmlp_12_224", "gmlp_ti16_224", "sequencer2d_s",
]  # fmt: skip

SMALL = 128
PEER_SKIPPED = "skipped (in-place ReLU)"


class _Timeout(BaseException):
    """A model past its time (a BaseException, so that check_model's own ``except Exception`` lets it through)."""


def _alarm(_signum: int, _frame: object) -> None:
    raise _Timeout


def _family(spec: str) -> str:
    """The module that defines the architecture: ``resnet``, ``vision_transformer``, …"""
    if spec.startswith("timm:"):
        import timm

        return timm.models.model_entrypoint(spec[5:]).__module__.rsplit(".", 1)[-1]
    return torchvision.models.get_model_builder(spec).__module__.rsplit(".", 1)[-1]


def _fixed_size(spec: str) -> bool:
    """Whether the model is built for one input size (then it runs at its own)."""
    if spec.startswith("timm:"):
        import timm

        cfg = timm.models.get_pretrained_cfg(spec[5:])
        return bool(cfg is None or cfg.fixed_input_size)
    return spec.startswith(("vit_", "maxvit", "swin"))


def _specs(only: list[str]) -> Iterator[str]:
    names = [*torchvision.models.list_models(module=torchvision.models), *(f"timm:{n}" for n in TIMM)]
    yield from (n for n in names if not only or n in only or n.removeprefix("timm:") in only)


def run_one(spec: str, timeout: int) -> ZooRow:
    """One model under a timeout: at 128 px when it takes any size, else (or when that fails) at its own."""
    family = _family(spec)
    peer = spec.startswith("timm:") or family != "densenet"  # torchvision's DenseNet: see the module docstring
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    start = time.perf_counter()
    try:
        row = check_model(spec, None if _fixed_size(spec) else SMALL, family, peer)
        if row.error and "forward pass failed" in row.error and not _fixed_size(spec):
            row = check_model(spec, None, family, peer)
    except _Timeout:
        row = ZooRow(spec, family, error=f"timed out after {timeout} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        gc.collect()
    row.seconds = time.perf_counter() - start
    if not peer and not row.error:
        row.peer = PEER_SKIPPED
    return row


def table(rows: list[ZooRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| model | family | input | recommended layer | why | Grad-CAM vs pytorch-grad-cam | s | failure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = f"{r.size[0]}×{r.size[1]}" if r.size else "—"
        lines.append(
            f"| {r.spec} | {r.family} | {size} | `{r.layer}` | {r.why} | {r.peer} | {r.seconds:.1f} | {r.error} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--only", nargs="*", default=[], help="model names (torchvision, or timm without timm:)")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    rows = []
    for spec in _specs(args.only):
        row = run_one(spec, args.timeout)
        rows.append(row)
        status = row.error or f"{row.layer} · peer {row.peer}"
        print(f"{row.seconds:6.1f}s {spec:40s} {status}", flush=True)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(table(rows) + "\n")
    failed = [r for r in rows if r.error]
    families = {r.family for r in rows}
    print(f"\n{len(rows)} models, {len(families)} families, {len(failed)} failures", flush=True)
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
