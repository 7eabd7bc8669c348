"""Command line: ``python -m cam_core layers|explain|video|sweep|trust|batch|compare|atlas|report``.

User mistakes (unknown model, layer, class or method; unreadable image) end
with one line on stderr and exit status 2, never a traceback.

Nothing heavy is imported at the top: ``--help`` and the mistakes found without torch (a missing file, an unknown
method, a number out of range: :func:`~cam_core.cli_parser.precheck`) are answered before torch imports
(seconds on a busy machine). Each command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_parser import EXIT_USAGE, build_parser, precheck
from .errors import CamError

if TYPE_CHECKING:
    import torch

__all__ = ["build_parser", "main"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _model_args(args: argparse.Namespace) -> dict[str, object]:
    """The ``load_model`` keyword arguments the options give (what ``_load`` passes, as plain values)."""
    from .models.outputs import parse_output

    weights = None if str(args.weights).lower() in ("none", "") else args.weights
    return {
        "spec": args.model, "weights": weights, "arch": args.arch, "checkpoint": args.checkpoint, "labels": args.labels,
        "trust_checkpoint": args.trust_checkpoint, "import_paths": list(args.import_path),
        "input_size": args.input_size, "mean": args.mean, "std": args.std, "fit": args.fit,
        "output": parse_output(args.output),
    }


def _load(args: argparse.Namespace):  # -> LoadedModel
    from .models.load import load_model

    return load_model(**_model_args(args))


def _prepare(model, image):  # (LoadedModel, PIL image) -> (x (1, 3, H, W), region or None)
    """The model's input for one image at the chosen fit, and the image's region when the rest is pad."""
    x, place = model.prepare(image)
    return x.unsqueeze(0), (place.content if place.padded else None)


def _cmd_layers(args: argparse.Namespace) -> int:
    from .models.layers import format_tree, list_layers

    model = _load(args)
    clips = f", clips of {model.clip_len} frames (t: the time axis)" if model.clip_len else ""
    print(f"# {model.name}: input {model.input_size[0]}×{model.input_size[1]}{clips}, {len(model.class_names)} classes")
    print(format_tree(list_layers(model)))
    return 0


def _unique_stems(paths: Sequence[str]) -> list[str]:
    stems: list[str] = []
    for p in paths:
        stem, n = Path(p).stem, 1
        while stem in stems:
            n += 1
            stem = f"{Path(p).stem}_{n}"
        stems.append(stem)
    return stems


def _cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from .engine.explainer import explain
    from .engine.methods import METHODS, check_methods
    from .io.folders import output_folder
    from .io.images import load_image
    from .render import COLORMAPS, maps_on_image, photo_overlay, save_png

    if args.method == ["list"]:
        return _list_methods()
    methods = check_methods(args.method or ["gradcam"])
    if args.cmap is not None and args.cmap not in COLORMAPS:
        raise CamError(f"unknown colormap {args.cmap!r}; choose from: {', '.join(COLORMAPS)}")
    images = [load_image(p) for p in args.image]  # all checked before the model loads
    out = output_folder(args.out)
    model = _load(args)
    for path, stem, img in zip(args.image, _unique_stems(args.image), images, strict=True):
        x, place = model.prepare(img)
        x, region = x.unsqueeze(0), (place.content if place.padded else None)
        res = explain(
            model, x, layer=args.layer, classes=args.classes, methods=methods, device=args.device,
            target=args.target, batch_size=args.batch_size, region=region, aug_smooth=args.aug_smooth,
            eigen_smooth=args.eigen_smooth, samples=args.samples, probs=args.probs,
        )
        arrays: dict[str, np.ndarray] = {
            "logits": res.logits[0].numpy(),
            "probs": res.probs[0].numpy(),
            "class_ids": res.class_ids[0].numpy(),
            "class_names": np.array(res.class_names[0]),
            "layer": np.array(res.layer),
        }
        probs = res.probs[0]
        for m in res.methods:
            arrays[f"maps_{m}"] = res.maps[m][0].numpy()
            arrays[f"up_{m}"] = res.upsampled(m)[0].numpy()
            on_photo = maps_on_image(arrays[f"maps_{m}"], place, img.size)  # overlays at the photo's own size
            for k, cid in enumerate(res.class_ids[0].tolist()):
                label = f"{res.class_names[0][k]} {float(probs[cid]):.1%} · {METHODS[m].title}" if args.label else None
                rgb = photo_overlay(img, on_photo[k], cmap=args.cmap, alpha=args.alpha, colorbar=args.colorbar,
                                    label=label)
                save_png(rgb, out / f"{stem}_{m}_{cid}.png")
        np.savez_compressed(out / f"{stem}.npz", **arrays)
        _write_json(out / f"{stem}.json", _diagnosis_json(model, x, res, path, img))
        top = ", ".join(
            f"{n} ({p:.1%})" for n, p in zip(res.class_names[0], res.probs[0, res.class_ids[0]].tolist(), strict=True)
        )
        untrained = "" if getattr(model, "pretrained", True) else " [untrained weights]"
        print(f"{path}: {top} at {res.layer}{untrained} → {out / stem}.npz")
    return 0


def _list_methods() -> int:
    from .engine.methods import METHODS

    width = max(len(m) for m in METHODS)
    for name, spec in METHODS.items():
        print(f"{name:<{width}}  {spec.title:<22}  {spec.cost}")
    return 0


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _diagnosis_json(model, x: torch.Tensor, res, path: str, image) -> dict[str, object]:  # model: LoadedModel
    """The diagnosis of every class and method for one image, with the head probe."""
    from .analysis.diagnose import diagnose, layer_context, probe_head

    info, rec = layer_context(model, res.layer)
    head = probe_head(model, x, rec) if rec else None
    classes = []
    for k, cid in enumerate(res.class_ids[0].tolist()):
        classes.append({
            "class_id": cid,
            "class_name": res.class_names[0][k],
            "logit": float(res.logits[0, cid]),
            "prob": float(res.probs[0, cid]),
            "diagnosis": {m: diagnose(res, 0, k, m, info, rec, head).to_dict() for m in res.methods},
        })
    place = model.place(image)
    return {
        "image": str(path),
        "model": model.name,
        "pretrained": bool(model.pretrained),
        "fit": place.fit,
        "input": place.describe(*image.size),
        "layer": res.layer,
        "recommended": rec,
        "layer_hints": list(info.hints) if info else [],
        "target": res.target,
        "head": None if head is None else {
            "layer": head.layer, "factor": head.factor, "change": head.change, "scale_invariant": head.scale_invariant,
        },
        "classes": classes,
    }


def _cmd_video(args: argparse.Namespace) -> int:
    import numpy as np

    from .engine.clip import explain_clip
    from .engine.methods import check_methods
    from .film import write_films
    from .io.folders import output_folder
    from .io.video import Sampling, probe_video

    methods = check_methods(args.method or ["gradcam"])
    sampling = Sampling(every=args.every, fps=args.fps, max_frames=args.max_frames)
    info = probe_video(args.video, sampling)  # the video is checked before the model loads
    out = output_folder(args.out)
    model = _load(args)
    print(f"{args.video}: {info.describe()}", file=sys.stderr)

    def progress(done: int, total: int | None, seconds: float) -> None:
        print(f"\r  {done}/{total or '?'} frames, {done / max(seconds, 1e-9):.1f} frames/s", end="", file=sys.stderr)

    res = explain_clip(
        model, args.video, layer=args.layer, classes=args.classes, methods=methods, sampling=sampling,
        batch_size=args.batch_size, device=args.device, fit=args.fit, window=args.window, stride=args.stride,
        progress=progress,
    )
    print(file=sys.stderr)
    stem = Path(args.video).stem
    slots = range(res.class_ids.shape[-1])
    names = {k: f"top{k + 1}" if res.per_frame else str(int(res.class_ids[k])) for k in slots}
    films = write_films(
        args.video, res, {(m, k): out / f"{stem}_{m}_{names[k]}.mp4" for m in methods for k in slots},
        smooth=args.smooth, scale=args.scale, alpha=args.alpha,
    )
    np.savez_compressed(out / f"{stem}.npz", **res.arrays())
    (out / f"{stem}.csv").write_text(res.csv_text(), encoding="utf-8")
    _write_json(out / f"{stem}.json", _video_json(model, res, args.smooth, films))
    shown = "each frame's top-1" if res.per_frame else ", ".join(res.names[c] for c in res.class_ids.tolist())
    untrained = "" if res.pretrained else " [untrained weights]"
    print(
        f"{args.video}: {res.frames} frames, {shown} at {res.layer} ({res.place.fit}){untrained}, "
        f"{res.frames / max(res.seconds['total'], 1e-9):.1f} frames/s → {out / stem}.npz, {len(films.paths)} film(s)"
    )
    return 0


def _video_json(model, res, smooth: float, films) -> dict[str, object]:  # (LoadedModel, ClipResult, float, Films)
    """What a video run did: model, how frames met it, sampling, classes, timings, and the films' colour scales."""
    return {
        "video": res.source,
        "header": res.info.describe(),
        "model": model.name,
        "pretrained": bool(model.pretrained),
        "fit": res.place.fit,
        "input": res.place.describe(*res.frame_size),
        "layer": res.layer,
        "methods": list(res.methods),
        "frames": res.frames,
        "rate": res.rate,
        "sampling": {"every": res.sampling.every, "fps": res.sampling.fps, "max_frames": res.sampling.max_frames},
        "window": res.window,
        "stride": res.stride,
        "classes": "per-frame" if res.per_frame else [
            {"class_id": int(c), "class_name": res.names[c], "mean_prob": float(res.probs[:, c].mean())}
            for c in res.class_ids.tolist()
        ],
        "smooth": smooth,
        "scale": films.scale,
        "films": [
            {"file": path.name, "method": m, "slot": k, "colour_scale": [float(v) for v in films.scales[(m, k)]]}
            for (m, k), path in films.paths.items()
        ],
        "seconds": {**{k: round(v, 3) for k, v in res.seconds.items()}, "films": round(films.seconds["total"], 3)},
    }


def _cmd_sweep(args: argparse.Namespace) -> int:
    import numpy as np

    from .analysis.sweep import check_sweep_methods, sweep
    from .io.folders import output_folder
    from .io.images import load_image
    from .render import model_view, overlay, save_png

    methods = check_sweep_methods(args.method or ["gradcam", "hirescam"])
    images = [load_image(p) for p in args.image]
    out = output_folder(args.out)
    model = _load(args)
    for path, stem, img in zip(args.image, _unique_stems(args.image), images, strict=True):
        x, _ = _prepare(model, img)
        res = sweep(model, x, args.class_id, extra=args.layer, methods=methods, target=args.target, device=args.device)
        np.savez_compressed(out / f"{stem}_sweep.npz", **res.arrays())
        _write_json(out / f"{stem}_sweep.json", {"image": str(path), **res.to_dict()})
        view = model_view(x[0], model.mean, model.std)
        ups = res.arrays()[f"up_{methods[0]}"]
        # Filmstrip: one column per layer, shallow → deep; top row ReLU'd, bottom row signed.
        rows = [np.concatenate([overlay(view, up, view=v, alpha=args.alpha) for up in ups], axis=1)
                for v in ("relu", "signed")]
        save_png(np.concatenate(rows, axis=0), out / f"{stem}_sweep.png")
        print(f"{path}: '{res.class_name}' (logit {float(res.logits[res.class_id]):.4g}) → {out / stem}_sweep.json")
        for la in res.layers:
            d = la.diagnosis[methods[0]]
            print(f"  {la.name:<40} {la.grid[0]}×{la.grid[1]:<4} {d.summary}")
    return 0


def _cmd_trust(args: argparse.Namespace) -> int:
    import numpy as np

    from .analysis.sweep import SWEEP_METHODS
    from .analysis.trust import deletion_insertion, randomisation_check, road, sanity_verdicts
    from .engine.explainer import explain
    from .engine.methods import check_methods
    from .io.folders import output_folder
    from .io.images import load_image

    check_methods([args.method])
    if args.randomise_units != 0 and args.method not in SWEEP_METHODS:
        raise CamError(
            f"the randomisation check recomputes {args.method!r} once per unit, which is too costly; use one of "
            f"{', '.join(SWEEP_METHODS)}, or --randomise-units 0 to skip the check"
        )
    images = [load_image(p) for p in args.image]
    out = output_folder(args.out)
    model = _load(args)
    for path, stem, img in zip(args.image, _unique_stems(args.image), images, strict=True):
        x, _ = _prepare(model, img)
        classes = "top1" if args.class_id is None else [args.class_id]
        res = explain(model, x, layer=args.layer, classes=classes, methods=[args.method], device=args.device)
        cid = int(res.class_ids[0, 0])
        saliency = res.upsampled(args.method)[0, 0]
        curves = deletion_insertion(
            model, x, saliency, cid, steps=args.steps, baseline=args.baseline,
            batch_size=args.batch_size, with_random=True, device=args.device,
        )
        arrays = {f"curve_{k}": v for k, v in curves.arrays().items()}
        data: dict[str, object] = {
            "image": str(path), "layer": res.layer, "method": args.method, "class_id": cid,
            "class_name": res.class_names[0][0], "curves": curves.to_dict(), "sanity": None,
        }
        verdicts = [curves.verdict]
        if not args.no_road:
            roads = road(
                model, x, saliency, cid, with_random=True, layer=res.layer, batch_size=args.batch_size,
                device=args.device,
            )
            data["road"] = roads.to_dict()
            arrays.update(roads.arrays())
            verdicts.append(roads.verdict)
        if args.randomise_units != 0:
            sanity = randomisation_check(
                model, x, res.layer, cid, methods=[args.method], max_units=args.randomise_units, device=args.device
            )
            data["sanity"] = sanity.to_dict()
            arrays.update(sanity.arrays())
            verdicts.append(sanity_verdicts(sanity)[args.method])
        np.savez_compressed(out / f"{stem}_trust.npz", **arrays)
        _write_json(out / f"{stem}_trust.json", data)
        print(f"{path}: '{res.class_names[0][0]}' {args.method} at {res.layer} → {out / stem}_trust.json")
        for v in verdicts:  # the verdicts cam_core.analysis.trust decides, one line each
            print(f"  {v.check}: {v.outcome.upper()}: {v.text}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:

    from .batch import BatchJob, discover, run_local
    from .io.folders import output_folder

    if args.ray_address and args.engine != "ray":
        raise CamError("--ray-address goes with --engine ray")
    job = BatchJob(
        model=_model_args(args), layer=args.layer, methods=tuple(args.method or ["gradcam"]), classes=args.classes,
        labels=args.labels_from_folders, fit=args.fit, device=args.device, batch_size=args.batch_size,
        boxes=args.boxes,
    )
    found = discover(args.images)  # all checked before the model loads
    out = output_folder(args.out)
    if args.engine == "ray":
        from .batch.ray import import_ray, run_ray

        import_ray()
        actors = 2 if args.workers is None else args.workers
        summary = run_ray(job, found, out, workers=actors, address=args.ray_address)
    else:
        summary = run_local(job, found, out, workers=args.workers, bar=True)
    print(summary.line())
    if args.boxes is not None:
        from .batch.results import read_run
        from .batch.truth import GroundTruth

        print(GroundTruth.line(read_run(out).get("boxes", {})))
    return 0


def _model_b_args(args: argparse.Namespace) -> dict[str, object]:
    """Model B's ``load_model`` arguments: model A's options, with B's own (``--…-b``) where given; the checkpoint
    and the fit are each model's own, never inherited."""
    b = argparse.Namespace(**vars(args))
    b.model, b.checkpoint, b.fit = args.model_b, args.checkpoint_b, args.fit_b
    for name in ("weights", "arch", "labels", "input_size"):
        if getattr(args, f"{name}_b") is not None:
            setattr(b, name, getattr(args, f"{name}_b"))
    return _model_args(b)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .batch import BatchJob, discover
    from .batch.compare import run_compare

    if args.ray_address and args.engine != "ray":
        raise CamError("--ray-address goes with --engine ray")
    classes = args.classes or ("pred,label" if args.labels_from_folders else "pred")
    jobs = [
        BatchJob(model=model, layer=layer, methods=(args.method or "gradcam",), classes=classes,
                 labels=args.labels_from_folders, fit=model["fit"], device=args.device, batch_size=args.batch_size)
        for model, layer in ((_model_args(args), args.layer), (_model_b_args(args), args.layer_b))
    ]
    found = discover(args.images)  # all checked before the models load
    summary = run_compare(*jobs, found, args.out, engine=args.engine, workers=args.workers,
                          address=args.ray_address, photo_side=args.photo_side, bar=True)
    for which, run in zip(("A", "B", "A (the other's classes)"), summary.runs, strict=True):
        print(f"model {which}: {run.line()}")
    print(summary.line())
    return 0


def _cmd_atlas(args: argparse.Namespace) -> int:
    from .analysis.atlas import build_atlas, parse_clusters, write_atlas

    k = parse_clusters(args.clusters)
    atlases = [build_atlas(args.results, m, k, args.of) for m in dict.fromkeys(args.method or [None])]
    written = write_atlas(args.results, atlases)
    if args.sheet:
        from .analysis.atlas_sheet import write_sheet

        written += (write_sheet(args.results, atlases),)
    for a in atlases:
        clusters = sum(len(c.clusters) for c in a.classes)
        print(f"{a.method}: {len(a.paths):,} maps, {len(a.classes)} classes, {clusters} clusters, "
              f"{len(a.flagged())} flagged ({a.seconds:.1f} s)")
        for c, k_ in a.flagged():
            print(f"  {c.name} · cluster {k_.id} ({k_.size} images): {'; '.join(f.reason for f in k_.flags)}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from . import report

    if args.image is not None:
        from .engine.methods import check_methods
        from .io.images import load_image

        methods = check_methods(args.method or ["gradcam"])
        load_image(args.image)  # an unreadable image is said before the model loads
        facts = report.explain_image(_load(args), args.image, layer=args.layer, classes=args.classes,
                                     methods=methods, device=args.device)
        page = report.image_report(facts)
    else:
        if args.method and len(args.method) > 1:
            raise CamError("--results and --compare show one method's maps: give --method once")
        options = {"method": args.method[0] if args.method else None, **({"top": args.top} if args.top else {})}
        if args.results is not None:
            page = report.dataset_report(args.results, **options)
        else:
            page = report.compare_report(args.compare, **options)
    out = Path(args.out)
    out.write_text(page, encoding="utf-8")
    print(f"{out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status.

    A user's mistake is one line and status 2; Ctrl-C one line and 130; running out of memory one line
    and 1; a closed pipe (``| head``) ends quietly. Anything else is a bug and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        precheck(args)
        commands = {
            "layers": _cmd_layers, "explain": _cmd_explain, "video": _cmd_video, "sweep": _cmd_sweep,
            "trust": _cmd_trust, "batch": _cmd_batch, "compare": _cmd_compare, "atlas": _cmd_atlas,
            "report": _cmd_report,
        }
        return commands[args.command](args)
    except CamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("error: out of memory: explain fewer or smaller images, or fewer classes at a time", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
