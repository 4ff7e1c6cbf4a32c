"""What every test-time perturbation shares: the share of frames, its check, and the per-row seeding.

A test-time perturbation (:class:`~stgcn_pyg.data.occlusion.TestOcclusion`,
:class:`~stgcn_pyg.data.misalignment.TestMisalignment`) changes ``perturbed_count(share, n)`` of the ``n``
decoded frames of every tracklet of one split, before the transform. Which frames and how is drawn from the
tracklet's own generator, seeded by (seed, split, row of the table[, the perturbation's stream]): the same
pixels in every run, in any loader worker, with any batch size, and for a shard of the table as for the whole.
The test loader applies them in :data:`PERTURBATION_ORDER`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["TestPerturbation", "check_share", "check_seed", "perturbed_count", "PERTURBATION_ORDER"]

PERTURBATION_ORDER = ("misalignment", "occlusion")
"""The order the test loader applies perturbations in: the box is misaligned first (the detector's crop),
then the occluder is drawn into the misaligned frame (an occluder stands in front of the person in the scene
the crop shows, so it stays where it is drawn, whole, rather than being shifted and cut by the box)."""


def perturbed_count(share: float, num_frames: int) -> int:
    """Frames of an ``num_frames``-frame tracklet that ``share`` perturbs: ``share * num_frames`` rounded half
    up (0.5 of 5 frames is 3), so share 1 perturbs every frame and share 0 none."""
    return min(num_frames, int(math.floor(share * num_frames + 0.5)))


def check_share(share, option: str = "--occlude", verb: str = "occlude") -> float:
    """``share`` as a float in [0, 1], or one ConfigError naming ``option`` (the share of frames to ``verb``)."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise ConfigError(f"{option}: the share of frames to {verb} is a number in [0, 1], got {share!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ConfigError(f"{option}: the share of frames to {verb} is a number in [0, 1], got {share}")
    return value


def check_seed(seed, option: str = "--seed") -> int:
    """``seed`` as an int >= 0 (numpy's seeding takes no negative words), or one ConfigError naming ``option``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"{option}: the seed of the test-time perturbations is an integer >= 0, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class TestPerturbation:
    """Perturb ``share`` of every tracklet's frames of one split (``split`` names it in the seeding).

    Subclasses say which frames (:meth:`affected`) and how (:meth:`apply`), drawing both from
    :meth:`generator`; the class attributes name the option (in errors), the verb and past participle (in
    errors and :meth:`describe`) and the stream, extra words of the seed that keep two perturbations of the
    same seed, split and row independent."""

    __test__ = False  # not a pytest test class
    OPTION = "--perturb"
    VERB = "perturb"
    DONE = "perturbed"
    STREAM = ()  # not annotated: class attributes, not fields

    share: float
    seed: int = 0
    split: str = "query"

    def __post_init__(self):
        object.__setattr__(self, "share", check_share(self.share, self.OPTION, self.VERB))
        object.__setattr__(self, "seed", check_seed(self.seed))

    def count(self, num_frames: int) -> int:
        """How many of a ``num_frames``-frame tracklet's frames are perturbed (:func:`perturbed_count`)."""
        return perturbed_count(self.share, num_frames)

    def generator(self, tracklet: int) -> np.random.Generator:
        """Row ``tracklet``'s own generator: seeded by (seed, split, row[, stream]), never by the clip or batch."""
        # crc32, not hash(): Python salts str hashes per process.
        return np.random.default_rng([int(self.seed), zlib.crc32(self.split.encode()), int(tracklet),
                                      *self.STREAM])

    def affected(self, tracklet: int, num_frames: int) -> list[int]:
        """The frame indices of row ``tracklet`` (of ``num_frames``) that are perturbed, in order."""
        raise NotImplementedError

    def apply(self, frames: list[torch.Tensor], indices, tracklet: int, num_frames: int) -> list[torch.Tensor]:
        """``frames`` (uint8 [3, H, W], frame ``indices[k]`` of row ``tracklet``'s ``num_frames``) with the
        perturbation in those that are :meth:`affected`; the others, and the input tensors, are left as they
        are."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.split} {self.DONE} {100 * self.share:g} % of frames (seed {self.seed})"
