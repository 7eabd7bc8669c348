"""How closely each method agrees with the peers that have it: the table of max differences.

Run from the repository root: ``python -m benchmarks.peer_agreement`` (CPU, a few minutes). Raw maps before any ReLU or
normalisation, at the layer's resolution; the difference is printed absolute and relative to the
map's largest |value|. Principal components are compared up to their sign. Where a peer draws random
numbers (noise, random weights) it gets ours; where its recipe differs from ours (Score-CAM's masks)
the row says which recipe was used. The comparisons are the ones tests/test_methods_peers.py and
tests/test_road.py assert; here on EfficientNet-Lite0 with its ImageNet weights (the cat photo),
resnet18 (random weights, 64 px, layer3: 4×4) for Score-CAM, tests/tiny.py's GapNet for SS-CAM / IS-CAM, and a
small random torchvision ViT for LeGrad.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

import cam_core
from cam_core.engine import perturb, smooth
from cam_core.io.samples import load_sample
from tests.test_methods_peers import _pgc_map, _pgc_masks, _raw, _torchcam_masks, _torchcam_weights
from tests.tiny import gapnet

ROWS: list[tuple[str, str, float, float]] = []


def record(method: str, peer: str, ours: torch.Tensor, theirs: torch.Tensor, up_to_sign: bool = False) -> None:
    ours, theirs = ours.double(), theirs.double()
    if up_to_sign and float((ours * theirs).sum()) < 0:
        theirs = -theirs
    diff = float((ours - theirs).abs().max())
    ROWS.append((method, peer, diff, diff / max(float(theirs.abs().max()), 1e-30)))


def lite0_rows() -> None:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam import FinerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = cam_core.load_model()
    module, layer = model.module, model.module._head_act
    x, _ = model.prepare(load_sample("chelsea"), "crop")
    x = x[None]
    cid = 285
    peers = {
        "gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM",
        "layercam": "LayerCAM", "gradcam_elementwise": "GradCAMElementWise", "eigengradcam": "EigenGradCAM",
        "eigencam": "EigenCAM", "kpcacam": "KPCA_CAM",
    }
    res = cam_core.explain(model, x, classes=[cid], methods=[*peers, "finercam"], device="cpu")
    for m, peer in peers.items():
        ref = _pgc_map(getattr(pgc, peer), module, layer, x, cid)
        record(m, f"pytorch-grad-cam {peer}", res.maps[m][0, 0], ref, up_to_sign=m in ("eigengradcam", "eigencam",
                                                                                      "kpcacam"))
    cam = FinerCAM(module, [layer], base_method=_raw(pgc.GradCAM))
    cam(input_tensor=x, target_idx=cid)
    cam.base_cam.activations_and_grads.release()
    record("finercam", "pytorch-grad-cam FinerCAM", res.maps["finercam"][0, 0], torch.as_tensor(cam.base_cam.raw)[0])
    soft = cam_core.explain(model, x, classes=[cid], methods=["shapleycam"], target="softmax", device="cpu")
    ref = _pgc_map(pgc.ShapleyCAM, module, layer, x, cid, target=ClassifierOutputSoftmaxTarget)
    record("shapleycam (softmax score)", "pytorch-grad-cam ShapleyCAM", soft.maps["shapleycam"][0, 0], ref)
    smoothed = cam_core.explain(model, x, classes=[cid], methods=["gradcam", "hirescam"], eigen_smooth=True)
    for m, peer in (("gradcam", "GradCAM"), ("hirescam", "HiResCAM")):
        ref = _pgc_map(getattr(pgc, peer), module, layer, x, cid, eigen_smooth=True)
        record(f"{m} eigen_smooth", f"pytorch-grad-cam {peer}", smoothed.maps[m][0, 0], ref, up_to_sign=True)
    rand = cam_core.explain(model, x, classes=[cid], methods=["randomcam"], device="cpu")
    uniform = np.random.uniform
    np.random.uniform = lambda low, high, size: rand.weights["randomcam"][0].numpy().astype(np.float64)
    try:
        record("randomcam (same weights)", "pytorch-grad-cam RandomCAM", rand.maps["randomcam"][0, 0],
               _pgc_map(pgc.RandomCAM, module, layer, x, cid))
    finally:
        np.random.uniform = uniform
    noise = smooth.input_noise
    smooth.input_noise = lambda gen, shape, std: torch.zeros(shape)
    try:
        calm = cam_core.explain(model, x, classes=[cid], methods=["smoothgradcampp"], samples=2, device="cpu")
    finally:
        smooth.input_noise = noise
    record("smoothgradcampp (no noise)", "pytorch-grad-cam GradCAMPlusPlus", calm.maps["smoothgradcampp"][0, 0],
           _pgc_map(pgc.GradCAMPlusPlus, module, layer, x, cid))
    road_row(model, x, res.upsampled("gradcam")[0, 0], cid)


def road_row(model, x: torch.Tensor, cam: torch.Tensor, cid: int) -> None:
    from pytorch_grad_cam.metrics import road as pgc_road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    cam = (cam - cam.min()) / (cam.max() - cam.min())
    ours = cam_core.road(model, x, cam, cid, noise=0.0, device="cpu")
    diffs = []
    for j, f in enumerate(ours.fractions):
        for metric, mine in ((pgc_road.ROADMostRelevantFirst, ours.morf), (pgc_road.ROADLeastRelevantFirst,
                                                                           ours.lerf)):
            peer = metric(round(100 * (1 - f)))
            peer.perturbation.imputer.noise = 0.0
            diffs.append(mine[j] - ours.base - peer(x, cam[None].numpy(), [ClassifierOutputSoftmaxTarget(cid)],
                                                    model.module)[0])
    diff = float(np.abs(diffs).max())
    ROWS.append(("ROAD (MoRF, LeRF, 9 fractions)", "pytorch-grad-cam metrics.road", diff, diff))


def scorecam_rows() -> None:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import ISCAM, SSCAM, ScoreCAM

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    recipes = {"ours": perturb.minmax_masks, "grad-cam": _pgc_masks, "torchcam": _torchcam_masks}
    with _raw(pgc.ScoreCAM)(model=resnet, target_layers=[resnet.layer3]) as cam:
        cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])
        pgc_w = torch.as_tensor(cam.weights[0])
    with ScoreCAM(resnet, "layer3", input_shape=(3, 64, 64)) as ext:
        with torch.no_grad():
            resnet(x)
        tc_w = ext._get_weights(3)[0][0]
    original = perturb.minmax_masks
    try:
        for name, masks in recipes.items():
            perturb.minmax_masks = masks
            w = cam_core.explain(resnet, x, layer="layer3", classes=[3], methods=["scorecam"]).weights["scorecam"][0, 0]
            if name != "torchcam":
                record(f"scorecam weights ({name} masks)", "pytorch-grad-cam ScoreCAM", w, pgc_w)
            if name != "grad-cam":
                record(f"scorecam weights ({name} masks)", "torchcam ScoreCAM", w, tc_w)
        perturb.minmax_masks = _torchcam_masks
        net, small = gapnet(seed=1, classes=6), torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
        ours = cam_core.explain(net, small, layer="features", classes=[2], methods=["iscam"], samples=4, batch_size=8)
        record("iscam weights (torchcam masks)", "torchcam ISCAM", ours.weights["iscam"][0, 0],
               _torchcam_weights(ISCAM, net, small, 2, num_samples=4, batch_size=8))
        drawn: list[torch.Tensor] = []
        noise = perturb.mask_noise

        def keep(gen, shape, std):
            drawn.append(noise(gen, shape, std))
            return drawn[-1]

        perturb.mask_noise = keep
        ours = cam_core.explain(net, small, layer="features", classes=[2], methods=["sscam"], samples=3)
        perturb.mask_noise = noise
        replay = iter(drawn)
        with SSCAM(net, "features", num_samples=3, std=2.0, input_shape=(3, 16, 16)) as ext:
            ext._distrib = type("Replay", (), {"sample": lambda self, size: next(replay).reshape(size)})()
            with torch.no_grad():
                net(small)
            record("sscam weights (torchcam masks, same noise)", "torchcam SSCAM", ours.weights["sscam"][0, 0],
                   ext._get_weights(2)[0][0])
    finally:
        perturb.minmax_masks = original


def legrad_row() -> None:
    from torchcam.methods import LeGrad

    torch.manual_seed(2)
    vit = torchvision.models.VisionTransformer(
        image_size=64, patch_size=8, num_layers=4, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    ).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    ours = cam_core.explain(vit, x, layer="encoder.layers.encoder_layer_1", classes=[4], methods=["legrad"])
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in (1, 2, 3)]
    with LeGrad(vit, blocks) as ext:
        (ref,) = ext.compute_cams(4, vit(x), normalized=False)
    record("legrad (3 blocks)", "torchcam LeGrad", ours.maps["legrad"][0, 0], ref[0].detach())


def main() -> None:
    lite0_rows()
    scorecam_rows()
    legrad_row()
    width = max(len(r[0]) for r in ROWS)
    peer_w = max(len(r[1]) for r in ROWS)
    print(f"{'method':<{width}}  {'peer':<{peer_w}}  {'max |diff|':>10}  {'relative':>9}")
    for method, peer, diff, rel in ROWS:
        print(f"{method:<{width}}  {peer:<{peer_w}}  {diff:>10.2e}  {rel:>9.2e}")


if __name__ == "__main__":
    main()
