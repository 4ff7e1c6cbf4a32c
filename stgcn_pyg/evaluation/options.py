"""How test descriptors are made: clip sampling, batching, the flip test, the device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import Config
from ..data.transforms import DEFAULT_IMAGE_SIZE

__all__ = ["TestOptions", "branch_columns", "clips_per_call"]

# On the CPU, extraction ran fastest with about this many pixels per forward pass (one clip of 8 frames at
# 256x128, four at 128x64), and up to 3x slower at 16 clips: benchmarks/speed/results/inference_cpu.md.
CPU_PIXELS_PER_CALL = 2**18
GPU_CLIPS_PER_CALL = 32


def clips_per_call(batch_size: int, seq_len: int, image_size, device) -> int:
    """``batch_size``, or for 0 (auto) the clips per forward pass for ``device``: on the CPU, as many as make
    about 2^18 pixels (at least one); elsewhere 32."""
    if batch_size > 0:
        return batch_size
    if torch.device(device).type != "cpu":
        return GPU_CLIPS_PER_CALL
    height, width = image_size
    return max(1, CPU_PIXELS_PER_CALL // (seq_len * height * width))


def branch_columns(feature_dims: dict[str, int] | None, branches) -> torch.Tensor | None:
    """The columns of f_all that hold ``branches``' slices (f_all is the branches' features concatenated in
    ``feature_dims``' order), in that order; None for no ``branches`` (all of f_all).

    Raises:
        ConfigError: a name that is not one of the model's branches, or a model that does not say how its
            descriptor splits (no ``feature_dims``).
    """
    from ..errors import ConfigError

    if not branches:
        return None
    if not feature_dims:
        raise ConfigError("branches: this model does not say how its descriptor splits into branches "
                          "(no feature_dims); score the whole descriptor")
    unknown = [b for b in branches if b not in feature_dims]
    if unknown:
        raise ConfigError(f"branches: {', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not "
                          f"a branch of this model (its branches: {', '.join(feature_dims)})")
    columns, start = [], 0
    for branch, dim in feature_dims.items():
        if branch in branches:
            columns.append(torch.arange(start, start + dim))
        start += dim
    return torch.cat(columns)


@dataclass(frozen=True)
class TestOptions:
    """The settings of every descriptor extraction (docs/method.md, "Testing").

    Built once (:meth:`from_config` for a run's settings) and passed to
    :func:`~stgcn_pyg.evaluation.extract_split`, :func:`~stgcn_pyg.evaluation.evaluate_model`
    and the commands that score a model.
    """

    __test__ = False  # a settings object, not a pytest test class

    seq_len: int = 8
    """T: frames per test clip."""
    mode: str = "all"
    """"all": every frame, in consecutive clips of seq_len (dense); "evenly": one clip per tracklet; "strided":
    every frame, in clips that each span the tracklet (training's spacing)."""
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    """[height, width] frames are resized to (the model's training size)."""
    batch_size: int = 0
    """Clips per forward pass; 0 = what measured fastest on the device (:func:`clips_per_call`)."""
    num_workers: int = 0
    """Data loader processes."""
    flip: bool = False
    """Average each clip's descriptor with its horizontally flipped clip's."""
    device: torch.device | str = "cpu"
    """Where the model runs."""
    progress: bool = True
    """Progress bars (on a terminal)."""
    occlude: float = 0.0
    """Share of every query tracklet's frames (one contiguous run) that get an occluder drawn in
    (:class:`~stgcn_pyg.data.occlusion.TestOcclusion`); 0 = none."""
    occlude_gallery: bool = False
    """Occlude the gallery's tracklets too (with ``occlude`` > 0)."""
    occlude_seed: int = 0
    """Seeds which frames and which occluders: the same seed gives the same pixels in every run."""
    misalign: float = 0.0
    """Share of every query tracklet's frames (scattered) whose box is shifted and scaled as a detector errs
    (:class:`~stgcn_pyg.data.misalignment.TestMisalignment`); 0 = none. With ``occlude``, the box is misaligned
    first and the occluder drawn into the misaligned frame."""
    misalign_gallery: bool = False
    """Misalign the gallery's tracklets too (with ``misalign`` > 0)."""
    misalign_seed: int = 0
    """Seeds which frames and which box errors (independent of the occluders of the same seed)."""
    branches: tuple[str, ...] = ()
    """The branches whose slices of f_all make the descriptor, e.g. ``("temporal",)`` (a comma-separated
    string works too); () = the whole f_all, the paper's descriptor (:func:`branch_columns`)."""

    def __post_init__(self):
        from ..data.misalignment import TestMisalignment
        from ..data.occlusion import TestOcclusion
        from ..data.perturbation import check_seed, check_share

        from ..errors import ConfigError

        for kind in (TestOcclusion, TestMisalignment):
            name = kind.OPTION.lstrip("-")
            object.__setattr__(self, name, check_share(getattr(self, name), kind.OPTION, kind.VERB))
            object.__setattr__(self, f"{name}_seed", check_seed(getattr(self, f"{name}_seed")))
        # Named as the commands' flags: a zero clip length divided by zero deep in the loader.
        for name, least in (("seq_len", 1), ("batch_size", 0), ("num_workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"--{name.replace('_', '-')}: must be an integer >= {least}, got {value!r}")
        branches = self.branches.split(",") if isinstance(self.branches, str) else self.branches
        object.__setattr__(self, "branches", tuple(dict.fromkeys(b.strip() for b in branches if b.strip())))

    def _perturbation(self, kind, name: str, split: str):
        """``kind`` (a TestPerturbation class) of ``split`` as the fields ``name``, ``name``_gallery and
        ``name``_seed set it, or None (share 0, or the gallery when ``name``_gallery is off)."""
        share = getattr(self, name)
        if share == 0 or (split != "query" and not getattr(self, f"{name}_gallery")):
            return None
        return kind(share, seed=getattr(self, f"{name}_seed"), split=split)

    def occlusion(self, split: str = "query"):
        """The :class:`~stgcn_pyg.data.occlusion.TestOcclusion` of ``split`` ("query" or "gallery"), or None."""
        from ..data.occlusion import TestOcclusion

        return self._perturbation(TestOcclusion, "occlude", split)

    def misalignment(self, split: str = "query"):
        """The :class:`~stgcn_pyg.data.misalignment.TestMisalignment` of ``split`` ("query" or "gallery"), or
        None."""
        from ..data.misalignment import TestMisalignment

        return self._perturbation(TestMisalignment, "misalign", split)

    def perturbation_fields(self, tables: dict | None = None) -> dict:
        """The test-time perturbations in force, as results, descriptor files and ``search --json`` record them:
        ``occlude``, ``occlude_gallery``, ``occlude_seed`` when ``occlude`` > 0, the same three of
        ``misalign``; {} for none.

        With ``tables`` (split name -> tracklet table: the "query" and "gallery" tables perturbed), also
        ``occlude_frames`` (and ``misalign_frames``): ``[perturbed, total]``, the frames perturbed of those
        tables' frames. The share is rounded per tracklet (:func:`~stgcn_pyg.data.perturbation.perturbed_count`),
        so a small share of short tracklets perturbs fewer frames than it says, or none (1 % of tracklets
        under 50 frames)."""
        from ..data.perturbation import perturbed_count

        fields = {}
        for name in ("occlude", "misalign"):
            share = getattr(self, name)
            if not share:
                continue
            gallery = bool(getattr(self, f"{name}_gallery"))
            fields.update({name: float(share), f"{name}_gallery": gallery,
                           f"{name}_seed": int(getattr(self, f"{name}_seed"))})
            if tables is not None:
                lengths = [len(frames) for split in (("query", "gallery") if gallery else ("query",))
                           if tables.get(split) is not None for frames in tables[split]["frames"]]
                fields[f"{name}_frames"] = [sum(perturbed_count(share, n) for n in lengths), sum(lengths)]
        return fields

    @classmethod
    def from_config(cls, cfg: Config, **changes) -> "TestOptions":
        """A run's test settings (``eval.seq_len``, ``eval.mode``, ``data.image_size``, ``eval.batch_size``,
        ``eval.num_workers``) with ``changes`` on top; a change of None keeps the config's value."""
        options = cls(seq_len=cfg.eval.seq_len, mode=cfg.eval.mode, image_size=tuple(cfg.data.image_size),
                      batch_size=cfg.eval.batch_size, num_workers=cfg.eval.num_workers)
        return options.replace(**changes)

    def replace(self, **changes) -> "TestOptions":
        """A copy with ``changes`` (fields of this class; None values ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "image_size" in changes:
            changes["image_size"] = tuple(int(v) for v in changes["image_size"])
        return dataclasses.replace(self, **changes)

    def loader_settings(self, split: str = "query") -> dict:
        """The keyword arguments of :func:`~stgcn_pyg.data.build_test_loader` for ``split``'s table."""
        settings = dict(seq_len=self.seq_len, mode=self.mode, image_size=self.image_size,
                        batch_size=clips_per_call(self.batch_size, self.seq_len, self.image_size, self.device),
                        num_workers=self.num_workers)
        for name, perturbation in (("occlusion", self.occlusion(split)), ("misalignment", self.misalignment(split))):
            if perturbation is not None:  # none: today's loader, untouched
                settings[name] = perturbation
        return settings
