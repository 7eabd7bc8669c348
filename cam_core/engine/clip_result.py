"""What :func:`~cam_core.engine.clip.explain_clip` returns, and its files' contract (``.npz`` arrays, CSV rows).

Apart from the clip engine so that readers of a clip's maps (the film, the video page) need not know how
frames were decoded and batched.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np

from ..io.video import Sampling, VideoInfo
from ..models.preprocess import Placement

__all__ = ["ClipResult"]


@dataclass
class ClipResult:
    """Scores and raw signed maps of every explained frame of a clip (NumPy, CPU).

    Attributes:
        source: How the input was called.
        frame_index: (T,) index of each explained frame among all decoded frames.
        times: (T,) seconds, from the container.
        logits, probs: (T, C) per frame (video models: the mean over the windows holding the frame).
        class_ids: (K,) for the clip's or fixed classes, (T, K) for per-frame classes.
        names: The model's class names (C).
        layer: Where the maps were taken.
        methods: The methods computed.
        maps: method → (T, K, h, w) float32 raw signed maps at the layer's resolution, over the
            model's whole input (for a letterbox, the pad is zero; ``place.content`` is the frame).
        place: How a frame met the model (fit, input size, where the frame lies in it).
        frame_size: (width, height) of the decoded frames (upright, short side at most
            :data:`~cam_core.engine.clip.WORK_SHORT_SIDE`).
        rate: Frames per second of the explained frames (the source rate, sampled).
        info: The container's header.
        sampling: How frames were sampled.
        model_name, pretrained: Which model, and whether its weights are trained.
        window, stride: The temporal window and its step (video models only).
        seconds: Where the time went: ``total``, ``engine`` (explain calls), ``waiting`` (for frames).
        recomputed: Frames computed a second time to fill in maps of the final classes.
    """

    source: str
    frame_index: np.ndarray
    times: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    class_ids: np.ndarray
    names: list[str]
    layer: str
    methods: tuple[str, ...]
    maps: dict[str, np.ndarray]
    place: Placement
    frame_size: tuple[int, int]
    rate: float
    info: VideoInfo
    sampling: Sampling
    model_name: str = ""
    pretrained: bool = True
    window: int | None = None
    stride: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    recomputed: int = 0

    @property
    def per_frame(self) -> bool:
        """Whether each frame explains its own classes (``class_ids`` is (T, K))."""
        return self.class_ids.ndim == 2

    @property
    def frames(self) -> int:
        """Number of explained frames T."""
        return len(self.frame_index)

    @property
    def top1(self) -> np.ndarray:
        """(T,) each frame's most probable class."""
        return self.probs.argmax(1)

    def slot_ids(self, k: int) -> np.ndarray:
        """(T,) the class explained in slot ``k`` at every frame."""
        return self.class_ids[:, k] if self.per_frame else np.full(self.frames, self.class_ids[k])

    def class_names(self) -> np.ndarray:
        """Names of ``class_ids``, the same shape."""
        return np.vectorize(lambda i: self.names[i], otypes=[object])(self.class_ids).astype(str)

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``.npz`` contract: ``frame_index``, ``times``, ``logits``, ``probs``, ``class_ids``, ``class_names``,
        ``layer``, ``maps_<method>`` (T, K, h, w), and how frames met the model (``fit``, ``input_size``,
        ``content``)."""
        out = {
            "frame_index": self.frame_index,
            "times": self.times,
            "logits": self.logits,
            "probs": self.probs,
            "class_ids": self.class_ids,
            "class_names": self.class_names(),
            "layer": np.array(self.layer),
            "fit": np.array(self.place.fit),
            "input_size": np.array(self.place.size),
            "content": np.array(self.place.content),
        }
        out.update({f"maps_{m}": self.maps[m] for m in self.methods})
        return out

    def csv_text(self) -> str:
        """One row per explained frame: index, time, top-1 class and probability, each explained class's probability."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        k = self.class_ids.shape[-1]
        if self.per_frame:
            extra = [h for j in range(k) for h in (f"class_{j}", f"class_{j}_name", f"prob_{j}")]
        else:
            extra = [f"prob_{cid}_{self.names[cid]}" for cid in self.class_ids.tolist()]
        writer.writerow(["frame_index", "time_s", "top1", "top1_name", "top1_prob", *extra])
        top = self.top1
        for t in range(self.frames):
            row: list[object] = [
                int(self.frame_index[t]), f"{self.times[t]:.4f}", int(top[t]), self.names[top[t]],
                f"{self.probs[t, top[t]]:.6f}",
            ]
            for j in range(k):
                cid = int(self.slot_ids(j)[t])
                row += [cid, self.names[cid], f"{self.probs[t, cid]:.6f}"] if self.per_frame else [
                    f"{self.probs[t, cid]:.6f}"
                ]
            writer.writerow(row)
        return buf.getvalue()
