"""Test-time misalignment: a share of each test tracklet's boxes shifted and scaled as a detector errs.

Scores a trained model under controlled box misalignment on any dataset (``stgcn-pyg evaluate --misalign
SHARE``): in every tracklet of a split, ``round(SHARE * n)`` of its ``n`` frames, scattered over the tracklet
(a detector errs frame by frame), get a box of their own: its centre moved, its size scaled and its aspect
ratio jittered by independent draws per frame, within the bounds below. The new box is cut from the decoded
crop by bilinear resampling to the crop's size, before the transform; where it reaches past the crop, the
crop's border pixels are repeated outwards.

Magnitudes (fractions of the original box; every draw uniform, the two ratios uniform in log):

- centre: up to ±:data:`MAX_SHIFT_X` (15 %) of the box width horizontally, ±:data:`MAX_SHIFT_Y` (10 %) of
  its height vertically: a pedestrian box is about twice as tall as wide, and its width is the less certain
  side (swinging arms and legs, a bag), its height held by head and feet;
- size: both sides times a factor in :data:`SCALE_RANGE` (0.8 to 1.25, so area x0.64 to x1.56): the box
  cuts into the body or takes in background, equally likely in log;
- aspect ratio: the width relative to the height times a factor in :data:`ASPECT_RANGE` (0.9 to 1.11), a
  mild jitter.

At the extremes together the new box still overlaps the original with IoU 0.56 (mean 0.73 over draws,
:func:`box_iou`): each stays a correct detection of the person under the IoU 0.5 rule detectors are scored by
(PASCAL VOC, MOTChallenge), the kind of imperfect box the DPM and ACF detectors behind MARS and
DukeMTMC-VideoReID produce, and two to three times the synthetic set's own box jitter (offsets of sd 5 % and
3 %, per-frame jitter 3 % and 2 %), which training has seen.

Border fill: the part of a box past the crop is scene the crop never held. Repeating the crop's outermost
pixels outwards continues the background at the edge (MARS crops are the box, with background around the
person) without inventing structure: black or grey padding would add hard edges and flat regions that no
real crop has, so the test would measure padding; mirroring would copy arms and legs outside the body.

Which frames and which boxes: each tracklet's come from its own generator, seeded by (seed, split, row of
the table, "misalign"): the same pixels in every run, in any loader worker, with any batch size, and
independent of the occluders of the same seed. The frames are the first ``round(SHARE * n)`` of a random
order of the tracklet's frames and each frame's box is drawn whatever the share, so a larger share adds
misaligned frames and leaves those of a smaller one as they were. docs/evaluation.md shows them.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .perturbation import TestPerturbation

__all__ = ["TestMisalignment", "BoxMisalignment", "misalign_frame", "resample_box", "draw_misalignment",
           "box_iou", "MAX_SHIFT_X", "MAX_SHIFT_Y", "SCALE_RANGE", "ASPECT_RANGE"]

MAX_SHIFT_X = 0.15
"""The box centre moves by a uniform draw in ±this fraction of the box width, horizontally."""
MAX_SHIFT_Y = 0.10
"""The box centre moves by a uniform draw in ±this fraction of the box height, vertically."""
SCALE_RANGE = (0.8, 1.25)
"""Both sides of the box are scaled by a factor drawn log-uniformly in this range (area x0.64 to x1.56)."""
ASPECT_RANGE = (0.9, 1 / 0.9)
"""The box's width relative to its height is scaled by a factor drawn log-uniformly in this range."""


class BoxMisalignment(NamedTuple):
    """One frame's box error: the centre moved by ``dx`` box widths and ``dy`` box heights (right and down
    positive), the width scaled by ``scale_x`` and the height by ``scale_y``. (0, 0, 1, 1) is the box itself."""

    dx: float = 0.0
    dy: float = 0.0
    scale_x: float = 1.0
    scale_y: float = 1.0


def draw_misalignment(rng: np.random.Generator, size: int | None = None) -> BoxMisalignment:
    """A box error drawn within the module's bounds (arrays of ``size`` draws with ``size``): the shifts,
    then the scale and the aspect factor, each for all ``size`` frames in turn."""
    dx = rng.uniform(-MAX_SHIFT_X, MAX_SHIFT_X, size)
    dy = rng.uniform(-MAX_SHIFT_Y, MAX_SHIFT_Y, size)
    scale = np.exp(rng.uniform(math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1]), size))
    aspect = np.sqrt(np.exp(rng.uniform(math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1]), size)))
    box = BoxMisalignment(dx, dy, scale * aspect, scale / aspect)
    return box if size is not None else BoxMisalignment(*(float(v) for v in box))


def box_iou(box: BoxMisalignment) -> float:
    """Intersection over union of the misaligned box with the original (sizes as fractions: the original is
    the unit square)."""
    dx, dy, sx, sy = box
    ix = max(0.0, min(1.0, 0.5 + dx + sx / 2) - max(0.0, 0.5 + dx - sx / 2))
    iy = max(0.0, min(1.0, 0.5 + dy + sy / 2) - max(0.0, 0.5 + dy - sy / 2))
    inter = ix * iy
    return inter / (1.0 + sx * sy - inter)


def _resample(arr: np.ndarray, box: BoxMisalignment) -> np.ndarray:
    """``arr`` (uint8 [H, W, C]) cut at ``box`` and resampled (bilinear) to [H, W, C], the border repeated."""
    h, w = arr.shape[:2]
    dx, dy, sx, sy = (float(v) for v in box)
    # Output pixel u (centre u + 0.5) samples the box at its centre's offset scaled by the box's size; pixel
    # centres are at integer + 0.5, so the sample's pixel index is that position - 0.5. A box of (0, 0, 1, 1)
    # samples every pixel at its own index (exactly: the offsets are half-integers, scaled by 1.0).
    xs = (w / 2 + dx * w) + (np.arange(w) + 0.5 - w / 2) * sx - 0.5
    ys = (h / 2 + dy * h) + (np.arange(h) + 0.5 - h / 2) * sy - 0.5
    xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)  # past the crop: its border pixel
    x0, y0 = np.floor(xs).astype(np.intp), np.floor(ys).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    wx, wy = (xs - x0)[None, :, None], (ys - y0)[:, None, None]
    a = arr.astype(np.float64)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    out = top * (1 - wy) + bottom * wy
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def resample_box(frame, box: BoxMisalignment):
    """``frame`` as the misaligned ``box`` would have cropped it: the box region, bilinearly resampled to the
    frame's size, the frame's border pixels repeated where the box reaches past it.

    ``frame`` is uint8: a torch tensor channels-first ([C, H, W], as the loaders decode frames, or [H, W]),
    a numpy array channels-last ([H, W, C], as PIL and imageio give them, or [H, W]), or a PIL image; the
    result is of the same kind and layout, a new object (the input is left as it is).
    """
    if isinstance(frame, torch.Tensor):
        arr = frame.numpy() if frame.dim() == 2 else frame.permute(1, 2, 0).numpy()
        out = _resample(arr if arr.ndim == 3 else arr[:, :, None], box)
        out = torch.from_numpy(out)
        return out[:, :, 0].contiguous() if frame.dim() == 2 else out.permute(2, 0, 1).contiguous()
    if isinstance(frame, np.ndarray):
        out = _resample(frame if frame.ndim == 3 else frame[:, :, None], box)
        return out if frame.ndim == 3 else out[:, :, 0]
    from PIL import Image

    if isinstance(frame, Image.Image):
        return Image.fromarray(resample_box(np.asarray(frame), box))
    raise TypeError(f"resample_box: a uint8 torch tensor, numpy array or PIL image, got {type(frame).__name__}")


def misalign_frame(frame, rng=None):
    """``frame`` cropped by a box misaligned as :data:`MAX_SHIFT_X`, :data:`MAX_SHIFT_Y`, :data:`SCALE_RANGE`
    and :data:`ASPECT_RANGE` bound it, drawn from ``rng`` (a numpy Generator, or a seed);
    :func:`resample_box` says which frames it takes."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return resample_box(frame, draw_misalignment(rng))


@dataclass(frozen=True)
class TestMisalignment(TestPerturbation):
    """Misalign the box of ``share`` of every tracklet's frames of one split (``split`` names it in the
    seeding): frames scattered over the tracklet, each with a box error of its own."""

    __test__ = False  # not a pytest test class
    OPTION = "--misalign"
    VERB = "misalign"
    DONE = "misaligned"
    STREAM = (zlib.crc32(b"misalign"),)  # independent of the occluders of the same (seed, split, row)

    def plan(self, tracklet: int, num_frames: int) -> dict[int, BoxMisalignment]:
        """Frame index -> box error, for the misaligned frames of row ``tracklet`` (empty at share 0)."""
        count = self.count(num_frames)
        if count == 0:
            return {}
        rng = self.generator(tracklet)
        order = rng.permutation(num_frames)
        boxes = draw_misalignment(rng, num_frames)  # frame i's box, whatever the share
        return {int(i): BoxMisalignment(*(float(v[i]) for v in boxes)) for i in sorted(order[:count].tolist())}

    def affected(self, tracklet: int, num_frames: int) -> list[int]:
        return list(self.plan(tracklet, num_frames))

    def apply(self, frames: list[torch.Tensor], indices, tracklet: int, num_frames: int) -> list[torch.Tensor]:
        plan = self.plan(tracklet, num_frames)
        return [resample_box(img, plan[int(i)]) if int(i) in plan else img for img, i in zip(frames, indices)]

    def frames(self, frames: list, tracklet: int = 0) -> list:
        """Every frame of a tracklet (``frames``, all of them, in order: uint8 tensors [C, H, W], numpy
        arrays [H, W, C] or PIL images) as this misalignment gives them for row ``tracklet``: for pictures."""
        plan = self.plan(tracklet, len(frames))
        return [resample_box(img, plan[i]) if i in plan else img for i, img in enumerate(frames)]
