"""The plan of a synthetic set: its settings, and who is seen by which camera in which tracklet (no drawing)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from ...errors import DatasetError
from .attributes import VARIANT_ATTRS, look_alike, random_camera, random_identity

__all__ = ["SynthConfig", "Track", "Plan", "plan_synthetic", "occlusion_summary"]


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and difficulty knobs of the synthetic dataset (all flags of ``stgcn-pyg synth``)."""

    num_ids: int = 100
    """Identities that appear in at least two cameras (split between train and test)."""
    seed: int = 0
    num_cameras: int = 6
    height: int = 128
    width: int = 64
    min_frames: int = 8
    max_frames: int = 24
    cameras_per_id: tuple[int, int] = (2, 4)
    tracklets_per_camera: tuple[int, int] = (1, 3)
    """Tracklets per (identity, camera); test identities get at least 2."""
    test_fraction: float = 0.5
    junk_fraction: float = 0.07
    """Junk tracklets (pid -1) as a fraction of the test identities' tracklets."""
    distractor_fraction: float = 0.2
    """Distractor tracklets (pid 0, people seen once) as a fraction of the test identities' tracklets."""
    occlusion_prob: float = 0.35
    """Share of the person tracklets with an occluder (a pole, a parked car or a passer-by), drawn over a
    stretch of at least a third of the tracklet's frames: 0.35 occludes about a fifth of all frames
    (:func:`occlusion_summary` counts them); 0 none, 1 every tracklet."""
    misalignment: float = 1.0
    """Scale of the box misalignment: the box's offset from the body (sd 5% of the width, 3% of the height
    at 1) and its per-frame jitter in position and size (3% and 2%); 0 centres every box on the body."""
    lookalike_group: tuple[int, int] = (1, 4)
    """Range of look-alike group sizes (1 = a unique identity)."""
    jpeg_quality: int = 90

    def __post_init__(self):
        if self.num_ids < 2:
            raise DatasetError(f"synthetic dataset needs at least 2 identities, got num_ids={self.num_ids}")
        if self.num_cameras < 2:
            raise DatasetError(f"synthetic dataset needs at least 2 cameras, got num_cameras={self.num_cameras}")
        if self.num_cameras > 9:
            raise DatasetError("the MARS name convention has one digit for the camera: num_cameras must be <= 9")
        if not 1 <= self.min_frames <= self.max_frames <= 999:
            raise DatasetError(f"need 1 <= min_frames <= max_frames <= 999, got {self.min_frames}, {self.max_frames}")
        if not 0 <= self.occlusion_prob <= 1:
            raise DatasetError(f"occlusion_prob is a share of tracklets in [0, 1], got {self.occlusion_prob}")
        if not 0 <= self.misalignment <= 10:
            raise DatasetError(f"misalignment scales the box jitter: expected 0 to 10 (1 = default), "
                               f"got {self.misalignment}")
        if self.height < 16 or self.width < 8:
            raise DatasetError(f"image size {self.height}x{self.width} is too small (at least 16x8)")

    def key(self) -> str:
        """A short hash of the configuration, naming its cache folder."""
        fields = asdict(self)
        # Knobs added after sets were cached: at their default they leave the key (and the cache) as it was.
        for name, default in _LATER_KNOBS.items():
            if fields[name] == default:
                del fields[name]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]



_LATER_KNOBS = {"misalignment": 1.0}


@dataclass
class Track:
    split: str  # "train" or "test"
    pid: int  # MARS pid: >0 identities, 0 distractor, -1 junk
    cam: int  # 1-based
    index: int  # tracklet number within (pid, cam), 1-based
    num_frames: int
    seed: int
    kind: str = "person"
    ident_key: int = -1  # index into identities (or -1)


@dataclass
class Plan:
    cfg: SynthConfig
    identities: list[dict]
    cameras: list[dict]
    tracks: list[Track] = field(default_factory=list)
    query: list[int] = field(default_factory=list)  # indices into test tracks (0-based)


def plan_synthetic(cfg: SynthConfig) -> Plan:
    """Decide identities, cameras and tracklets (cheap; no drawing)."""
    rng = np.random.default_rng([cfg.seed, 7])
    cameras = [random_camera(rng, i) for i in range(cfg.num_cameras)]
    identities: list[dict] = []
    while len(identities) < cfg.num_ids:
        size = int(rng.integers(cfg.lookalike_group[0], cfg.lookalike_group[1] + 1))
        base = random_identity(rng)
        identities.append(base)
        attrs = rng.permutation(len(VARIANT_ATTRS))
        for j in range(1, size):
            if len(identities) >= cfg.num_ids:
                break
            identities.append(look_alike(base, VARIANT_ATTRS[int(attrs[j - 1])], rng))
    # Pids 1..num_ids in a shuffled order, so look-alike groups straddle train and test.
    order = rng.permutation(cfg.num_ids)
    pids = np.empty(cfg.num_ids, int)
    pids[order] = np.arange(1, cfg.num_ids + 1)
    num_test = max(1, int(round(cfg.num_ids * cfg.test_fraction)))
    num_test = min(num_test, cfg.num_ids - 1)
    test_pids = set(range(cfg.num_ids - num_test + 1, cfg.num_ids + 1))
    plan = Plan(cfg, identities, cameras)
    train, test = [], []
    lo, hi = cfg.cameras_per_id
    hi = min(hi, cfg.num_cameras)
    lo = min(max(2, lo), hi)

    def nframes():
        return int(rng.integers(cfg.min_frames, cfg.max_frames + 1))

    for k in np.argsort(pids):  # by pid
        pid = int(pids[k])
        split = "test" if pid in test_pids else "train"
        cams = sorted(int(c) + 1 for c in rng.choice(cfg.num_cameras, int(rng.integers(lo, hi + 1)), replace=False))
        for c in cams:
            lo_t, hi_t = cfg.tracklets_per_camera
            if split == "test":
                # At least two per camera, so that each (id, camera) query leaves a tracklet in the gallery.
                lo_t, hi_t = max(lo_t, 2), max(hi_t, 2)
            for i in range(int(rng.integers(lo_t, hi_t + 1))):
                tr = Track(split, pid, c, i + 1, nframes(), int(rng.integers(2**62)), "person", int(k))
                (test if split == "test" else train).append(tr)
    n_test_person = len(test)
    # MARS query: one tracklet per (test id, camera).
    by_pc: dict[tuple[int, int], list[int]] = {}
    for j, tr in enumerate(test):
        by_pc.setdefault((tr.pid, tr.cam), []).append(j)
    query = sorted(int(rng.choice(v)) for v in by_pc.values())
    # Junk and distractors, numbered per camera like MARS.
    counters: dict[tuple[int, int], int] = {}
    for kind, pid, frac in (("distractor", 0, cfg.distractor_fraction), ("junk", -1, cfg.junk_fraction)):
        for _ in range(int(round(frac * n_test_person))):
            c = int(rng.integers(cfg.num_cameras)) + 1
            counters[(pid, c)] = counters.get((pid, c), 0) + 1
            test.append(Track("test", pid, c, counters[(pid, c)], nframes(), int(rng.integers(2**62)), kind))
    plan.tracks = train + test
    plan.query = query
    return plan


def occlusion_summary(cfg: SynthConfig) -> dict:
    """How occluded and misaligned a set is, counted from its plan without drawing a frame.

    Over the person tracklets (identities and distractors; junk has no occluder): ``tracklets_occluded``
    and ``frames_occluded``, the shares of tracklets with an occluder and of frames it is drawn in, and
    ``box_offset_px``, the mean absolute offset of a box from the body, in pixels (x and y together).
    """
    from .drawing import BACKGROUND_WIDTHS, occluded_frames, tracklet_layout

    plan = plan_synthetic(cfg)
    n_tracks = n_occ = frames = occluded = 0
    offset = 0.0
    for tr in plan.tracks:
        if tr.kind == "junk":
            continue
        ident = plan.identities[tr.ident_key] if tr.ident_key >= 0 else None
        lay = tracklet_layout(np.random.default_rng(tr.seed), plan.cameras[tr.cam - 1], ident, tr.num_frames,
                              BACKGROUND_WIDTHS * cfg.width, cfg.height, cfg.width, cfg.occlusion_prob, tr.kind, cfg.misalignment)
        k = occluded_frames(lay, tr.num_frames)
        n_tracks += 1
        n_occ += k > 0
        frames += tr.num_frames
        occluded += k
        offset += float(np.hypot(lay["off_x"], lay["off_y"]))
    return dict(tracklets_occluded=n_occ / n_tracks, frames_occluded=occluded / frames,
                box_offset_px=offset / n_tracks)
