"""Test-time occlusion: occluders drawn into a share of each test tracklet's frames.

Scores a trained model under controlled occlusion on any dataset (``stgcn-pyg evaluate --occlude SHARE``):
in every tracklet of a split, ``round(SHARE * n)`` of its ``n`` frames, one contiguous run as a real
occluder passes, get an occluder drawn into the decoded frame before the transform. The occluders are the
synthetic set's (:func:`~stgcn_pyg.data.synth.drawing.draw_occluder`: a pole, a parked car or a passer-by),
kept inside the box for the whole run, so every frame of the run is occluded. Each tracklet's run and
occluder come from its own generator, seeded by (seed, split, row of the table): the same pixels in every
run, in any loader worker, on any CPU. docs/evaluation.md shows them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .perturbation import TestPerturbation, check_share, perturbed_count

__all__ = ["TestOcclusion", "OCCLUDER_KINDS", "occluded_count", "check_share"]

OCCLUDER_KINDS = ("pole", "car", "passer")
_VIEWS = ("front", "back", "left", "right")

occluded_count = perturbed_count
"""Frames of an ``num_frames``-frame tracklet that ``share`` occludes (:func:`~.perturbation.perturbed_count`)."""


@dataclass(frozen=True)
class TestOcclusion(TestPerturbation):
    """Occlude ``share`` of every tracklet's frames of one split (``split`` names it in the seeding): one
    contiguous run per tracklet, as a real occluder passes."""

    __test__ = False  # not a pytest test class
    OPTION = "--occlude"
    VERB = "occlude"
    DONE = "occluded"
    STREAM = ()  # (seed, split, row): the seeding that came before misalignment, same pixels

    def plan(self, tracklet: int, num_frames: int, height: int, width: int) -> dict | None:
        """The occluder of row ``tracklet`` (None when no frame is occluded): the occluded frames
        ``start <= i < start + length``, the kind, its size and colour, and its positions at both ends of the
        run (pixels of a ``height x width`` frame, linearly in between)."""
        from .synth.attributes import cloth_color, random_identity

        length = self.count(num_frames)
        if length == 0:
            return None
        rng = self.generator(tracklet)
        occ = {"start": int(rng.integers(0, num_frames - length + 1)), "length": length,
               "kind": OCCLUDER_KINDS[int(rng.integers(len(OCCLUDER_KINDS)))],
               "w": float(rng.uniform(0.15, 0.3)) * width, "h": float(rng.uniform(0.25, 0.45)) * height,
               "color": cloth_color(rng), "view": _VIEWS[int(rng.integers(len(_VIEWS)))],
               "phase": float(rng.uniform(0, 2 * math.pi))}
        # Inside the box from the run's first frame to its last: the pole's left edge, the passer's centre.
        lo, hi = (0.0, width - occ["w"]) if occ["kind"] == "pole" else (0.2 * width, 0.8 * width)
        occ["x0"], occ["x1"] = (float(v) for v in rng.uniform(lo, hi, size=2))
        occ["ident"] = random_identity(rng)
        return occ

    def occluded(self, tracklet: int, num_frames: int) -> range:
        """The frame indices of row ``tracklet`` that get the occluder."""
        occ = self.plan(tracklet, num_frames, 1, 1)
        return range(0) if occ is None else range(occ["start"], occ["start"] + occ["length"])

    def affected(self, tracklet: int, num_frames: int) -> list[int]:
        return list(self.occluded(tracklet, num_frames))

    def apply(self, frames: list[torch.Tensor], indices, tracklet: int, num_frames: int) -> list[torch.Tensor]:
        """``frames`` (uint8 [3, H, W], frame ``indices[k]`` of the tracklet) with the occluder drawn into those
        in the run; the others, and the input tensors, are left as they are."""
        from PIL import Image

        from .synth.drawing import draw_occluder

        out = list(frames)
        plans: dict[tuple[int, int], dict | None] = {}
        for k, (img, i) in enumerate(zip(frames, indices)):
            size = (int(img.shape[1]), int(img.shape[2]))
            if size not in plans:  # frames of one tracklet usually share a size
                plans[size] = self.plan(tracklet, num_frames, *size)
            occ = plans[size]
            if occ is None or not occ["start"] <= int(i) < occ["start"] + occ["length"]:
                continue
            along = (int(i) - occ["start"]) / max(1, occ["length"] - 1)
            pil = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
            draw_occluder(pil, occ, occ["x0"] + (occ["x1"] - occ["x0"]) * along, occ["view"], occ["phase"])
            out[k] = torch.from_numpy(np.array(pil)).permute(2, 0, 1).contiguous()
        return out
