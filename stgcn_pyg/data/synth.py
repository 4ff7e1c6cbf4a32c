"""A synthetic pedestrian-tracklet generator: the project's built-in dataset.

It draws walking people (head, hair, torso with a clothing pattern, arms and
legs that swing with a gait cycle, shoes, optional bag or hat) seen by several
cameras, and writes the tracklets in the exact MARS layout (``bbox_train``,
``bbox_test``, ``info/*.txt`` and ``info/*.mat``) and/or the
DukeMTMC-VideoReID layout, so that the very same readers load them.

Why it is hard enough to be useful:

* identities come in *look-alike groups*: members share every attribute but
  one (a torso pattern, the trousers' or shoes' colour, a bag, the hair, the
  sleeve length, or the gait), so a global colour average confuses them and a
  model has to look at one body part, or at the motion across frames;
* cameras differ in colour cast, brightness, contrast, blur (resolution),
  noise, background, walking direction (side/front/back views) and scale;
* occluders (poles sliding through the box, parked cars, passers-by) hide
  parts of the body in some frames, and boxes are misaligned and jittered;
* the test split holds junk tracklets (pid -1: background, cut-off bodies)
  and distractors (pid 0: people seen once), as MARS does.

Every tracklet draws from its own random stream derived from
``(seed, tracklet)``, so the output is deterministic whatever the number of
worker processes. Default size (100 identities, 6 cameras) is written in well
under a minute.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DatasetError

__all__ = [
    "SynthConfig",
    "generate_synthetic",
    "ensure_synthetic",
    "synthetic_set_folder",
    "default_cache_dir",
    "render_tracklet",
    "plan_synthetic",
]

# Attributes a look-alike group may differ in (exactly one per member).
_VARIANT_ATTRS = ("pattern", "pattern_color", "bottom_color", "shoe_color", "accessory", "hair", "sleeves", "gait")
_PATTERNS = ("solid", "hstripes", "vstripes", "checker", "twotone", "logo")
_ACCESSORIES = ("none", "backpack", "shoulderbag", "hat")


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
        if self.height < 16 or self.width < 8:
            raise DatasetError(f"image size {self.height}x{self.width} is too small (at least 16x8)")

    def key(self) -> str:
        """A short hash of the configuration, naming its cache folder."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------
# Random attributes
# ----------------------------------------------------------------------------


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def _cloth_color(rng: np.random.Generator) -> tuple[int, int, int]:
    # Real clothing is often dark or grey: a third of draws are achromatic.
    if rng.random() < 0.3:
        v = float(rng.choice([0.12, 0.25, 0.45, 0.65, 0.85]) + rng.uniform(-0.05, 0.05))
        return _rgb(0, 0, min(max(v, 0), 1))
    return _rgb(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))


def _other_color(rng: np.random.Generator, c: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour clearly different from ``c`` (changes one identity of a look-alike group)."""
    for _ in range(20):
        d = _cloth_color(rng)
        if sum(abs(a - b) for a, b in zip(c, d)) > 150:
            return d
    return tuple(255 - x for x in c)  # type: ignore[return-value]


_SKIN = [(241, 194, 167), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (110, 70, 45)]
_HAIR = [(20, 15, 10), (60, 40, 20), (110, 75, 40), (200, 170, 90), (140, 140, 140), (150, 50, 20)]


def _random_identity(rng: np.random.Generator) -> dict:
    return {
        "height": float(rng.uniform(0.86, 1.0)),
        "build": float(rng.uniform(0.8, 1.25)),
        "leg_ratio": float(rng.uniform(0.44, 0.54)),
        "head": float(rng.uniform(0.85, 1.15)),
        "skin": _SKIN[int(rng.integers(len(_SKIN)))],
        "hair": {"color": _HAIR[int(rng.integers(len(_HAIR)))], "long": bool(rng.random() < 0.35)},
        "top_color": _cloth_color(rng),
        "pattern": _PATTERNS[int(rng.integers(len(_PATTERNS)))],
        "pattern_color": _cloth_color(rng),
        "pattern_freq": int(rng.integers(3, 7)),
        "sleeves": "long" if rng.random() < 0.6 else "short",
        "bottom": ["trousers", "trousers", "shorts", "skirt"][int(rng.integers(4))],
        "bottom_color": _cloth_color(rng),
        "shoe_color": _cloth_color(rng),
        "accessory": _ACCESSORIES[int(rng.integers(len(_ACCESSORIES)))],
        "accessory_color": _cloth_color(rng),
        # Gait: frames per cycle, leg and arm swing amplitudes (radians).
        "cadence": float(rng.uniform(7.0, 15.0)),
        "stride": float(rng.uniform(0.25, 0.6)),
        "arm_swing": float(rng.uniform(0.15, 0.5)),
    }


def _vary(base: dict, attr: str, rng: np.random.Generator) -> dict:
    """A look-alike of ``base`` that differs in exactly one attribute."""
    ident = json.loads(json.dumps(base))  # deep copy (tuples become lists, fine for drawing)
    if attr == "pattern":
        ident["pattern"] = str(rng.choice([p for p in _PATTERNS if p != base["pattern"]]))
    elif attr == "pattern_color":
        if ident["pattern"] == "solid":
            ident["pattern"] = "logo"
        ident["pattern_color"] = _other_color(rng, tuple(base["pattern_color"]))
    elif attr == "bottom_color":
        ident["bottom_color"] = _other_color(rng, tuple(base["bottom_color"]))
    elif attr == "shoe_color":
        ident["shoe_color"] = _other_color(rng, tuple(base["shoe_color"]))
    elif attr == "accessory":
        ident["accessory"] = str(rng.choice([a for a in _ACCESSORIES if a != base["accessory"]]))
        ident["accessory_color"] = _other_color(rng, tuple(base["top_color"]))
    elif attr == "hair":
        ident["hair"] = {"color": _HAIR[int(rng.integers(len(_HAIR)))], "long": not base["hair"]["long"]}
    elif attr == "sleeves":
        ident["sleeves"] = "short" if base["sleeves"] == "long" else "long"
    elif attr == "gait":
        # Same look, different walk: only the motion across frames tells them apart.
        ident["cadence"] = base["cadence"] + (5.0 if base["cadence"] < 11 else -5.0)
        ident["stride"] = 0.85 - base["stride"]
        ident["arm_swing"] = 0.65 - base["arm_swing"]
    return ident


def _random_camera(rng: np.random.Generator, index: int) -> dict:
    return {
        # Colour cast (per channel) times exposure (shared), as uncalibrated cameras do.
        "gain": [float(g) for g in rng.uniform(0.88, 1.12, size=3) * rng.uniform(0.75, 1.2)],
        "offset": float(rng.uniform(-12, 12)),
        "contrast": float(rng.uniform(0.8, 1.1)),
        "noise": float(rng.uniform(2, 9)),
        "lowres": float(rng.choice([1.0, 1.0, 0.6, 0.45])),
        "scale": float(rng.uniform(0.7, 0.95)),
        # Walking directions this camera sees, with weights: side views or front/back views.
        "views": (["left", "right", "left", "right", "front", "back"] if index % 2 == 0
                  else ["front", "back", "front", "back", "left", "right"]),
        "wall": _cloth_color(rng),
        "floor": _cloth_color(rng),
        "horizon": float(rng.uniform(0.45, 0.8)),
        "texture": int(rng.integers(3)),
        "bg_seed": int(rng.integers(2**31)),
    }


def _camera_background(cam: dict, height: int, width: int) -> np.ndarray:
    """A wide background strip (height x 6*width) a tracklet's box slides over."""
    rng = np.random.default_rng(cam["bg_seed"])
    W = width * 6
    img = np.empty((height, W, 3), np.float32)
    hy = int(height * cam["horizon"])
    img[:hy] = cam["wall"]
    img[hy:] = cam["floor"]
    tex = cam["texture"]
    if tex == 0:  # shop windows / doors on the wall
        x = 0
        while x < W:
            w = int(rng.integers(width // 3, width))
            shade = rng.uniform(0.6, 1.4)
            img[int(hy * rng.uniform(0.1, 0.4)):hy, x:x + w - 2] *= shade
            x += w
    elif tex == 1:  # floor tiles
        step = max(4, width // 6)
        for x in range(0, W, step):
            img[hy:, x:x + 1] *= 0.7
        for y in range(hy, height, step // 2 + 1):
            img[y:y + 1, :] *= 0.75
    else:  # vegetation-like blobs
        for _ in range(W // 6):
            cx, cy, r = rng.integers(W), rng.integers(hy), rng.integers(2, max(3, width // 5))
            img[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = _cloth_color(rng)
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------


def _pattern_tile(ident: dict, w: int, h: int, view: str) -> Image.Image:
    """The torso texture at size w x h (what distinguishes many look-alikes)."""
    top, pc = tuple(ident["top_color"]), tuple(ident["pattern_color"])
    arr = np.empty((h, w, 3), np.uint8)
    arr[:] = top
    f = max(2, h // (2 * ident["pattern_freq"]))
    kind = ident["pattern"]
    if kind == "hstripes":
        for y in range(0, h, 2 * f):
            arr[y:y + f] = pc
    elif kind == "vstripes":
        fw = max(1, w // (ident["pattern_freq"] + 1))
        for x in range(0, w, 2 * fw):
            arr[:, x:x + fw] = pc
    elif kind == "checker":
        yy, xx = np.mgrid[0:h, 0:w]
        arr[((yy // f) + (xx // max(1, f))) % 2 == 1] = pc
    elif kind == "twotone":
        arr[h // 2:] = pc
    elif kind == "logo" and view != "back":
        # A chest badge: only visible from the front or the side.
        y0, x0 = h // 5, w // 4 if view == "front" else w // 3
        arr[y0:y0 + max(2, h // 4), x0:x0 + max(2, w // 3)] = pc
    return Image.fromarray(arr)


def _rect(d: ImageDraw.ImageDraw, xy, fill) -> None:
    """``d.rectangle`` with corners in any order (mirrored views flip them)."""
    x0, y0, x1, y1 = xy
    d.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=fill)


def _draw_person(img: Image.Image, ident: dict, view: str, phase: float, cx: float, feet: float, hp: float) -> None:
    """Draw one person of height ``hp`` pixels standing at (cx, feet), gait phase in radians."""
    d = ImageDraw.Draw(img)
    b = ident["build"]
    rh = 0.065 * hp * ident["head"]
    leg_len = ident["leg_ratio"] * hp
    torso_len = hp - leg_len - 2 * rh - 0.02 * hp
    head_cy = feet - hp + rh
    neck = head_cy + rh + 0.02 * hp
    hip = neck + torso_len
    side = view in ("left", "right")
    s = 1.0 if view == "right" else -1.0
    tw = (0.17 if side else 0.27) * hp * b
    lw = max(2, int(0.085 * hp * b))
    aw = max(2, int(0.06 * hp * b))
    skin = tuple(ident["skin"])
    bottom = tuple(ident["bottom_color"])
    shoe = tuple(ident["shoe_color"])
    sleeve = tuple(ident["top_color"]) if ident["sleeves"] == "long" else skin
    acc, acc_c = ident["accessory"], tuple(ident["accessory_color"])
    st, arm = ident["stride"], ident["arm_swing"]

    def leg(angle: float, lift: float, x0: float, color_far: bool):
        thigh = leg_len * 0.5
        shin = leg_len * 0.5 * (1 - lift)
        if side:
            knee = (x0 + s * math.sin(angle) * thigh, hip + math.cos(angle) * thigh)
            bend = angle - 0.8 * max(0.0, math.sin(angle * 3.0))
            ankle = (knee[0] + s * math.sin(bend) * shin, knee[1] + math.cos(bend) * shin)
        else:
            knee = (x0, hip + thigh * (1 - 0.5 * lift))
            ankle = (x0, knee[1] + shin)
        dark = 0.75 if color_far else 1.0
        upper = tuple(int(c * dark) for c in bottom)
        lower = upper if ident["bottom"] == "trousers" else tuple(int(c * dark) for c in skin)
        d.line([(x0, hip), knee], fill=upper, width=lw)
        d.line([knee, ankle], fill=lower, width=lw)
        d.ellipse([ankle[0] - lw * 0.7 + s * lw * 0.3 * side, ankle[1] - lw * 0.4,
                   ankle[0] + lw * 0.7 + s * lw * 0.5 * side, ankle[1] + lw * 0.45], fill=shoe)

    def arm_(angle: float, x0: float, far: bool):
        la = 0.38 * hp
        elbow = (x0 + s * math.sin(angle) * la * 0.5 * side, neck + 0.05 * hp + math.cos(angle) * la * 0.5)
        hand = (elbow[0] + s * math.sin(angle * 1.4) * la * 0.5 * side, elbow[1] + math.cos(angle * 1.4) * la * 0.5)
        dark = 0.75 if far else 1.0
        d.line([(x0, neck + 0.05 * hp), elbow], fill=tuple(int(c * dark) for c in ident["top_color"]), width=aw)
        d.line([elbow, hand], fill=tuple(int(c * dark) for c in sleeve), width=aw)
        d.ellipse([hand[0] - aw * 0.5, hand[1] - aw * 0.5, hand[0] + aw * 0.5, hand[1] + aw * 0.5], fill=skin)

    sw = math.sin(phase)
    if side:
        # Far limbs first (darker), then torso, then near limbs.
        arm_(arm * sw, cx, True)
        leg(-st * sw, 0.0, cx, True)
        if acc == "backpack":
            _rect(d, [cx - s * (tw * 0.5 + 0.08 * hp), neck + 0.03 * hp, cx - s * tw * 0.4, neck + 0.6 * torso_len],
                        fill=acc_c)
    else:
        dx = tw * 0.25
        leg(0, 0.25 * max(0.0, sw) * st * 2, cx - dx, False)
        leg(0, 0.25 * max(0.0, -sw) * st * 2, cx + dx, False)
        if acc == "backpack" and view == "back":
            pass  # drawn over the torso below
    # Torso with its pattern.
    x0, x1 = int(cx - tw / 2), int(cx + tw / 2)
    y0, y1 = int(neck), int(hip + 0.03 * hp)
    if x1 > x0 and y1 > y0:
        img.paste(_pattern_tile(ident, x1 - x0, y1 - y0, view), (x0, y0))
    if ident["bottom"] == "skirt":
        d.polygon([(cx - tw * 0.5, hip), (cx + tw * 0.5, hip), (cx + tw * 0.75, hip + leg_len * 0.4),
                   (cx - tw * 0.75, hip + leg_len * 0.4)], fill=bottom)
    elif not side:
        _rect(d, [x0, int(hip), x1, int(hip + 0.05 * hp)], fill=bottom)
    if side:
        leg(st * sw, 0.0, cx, False)
        if acc == "shoulderbag":
            _rect(d, [cx - tw * 0.3, hip - 0.05 * hp, cx + tw * 0.4, hip + 0.08 * hp], fill=acc_c)
        arm_(-arm * sw, cx, False)
    else:
        arm_(0.1 * sw, cx - tw / 2 - aw / 2, False)
        arm_(-0.1 * sw, cx + tw / 2 + aw / 2, False)
        if acc == "backpack":
            if view == "back":
                _rect(d, [cx - tw * 0.38, neck + 0.04 * hp, cx + tw * 0.38, neck + 0.7 * torso_len], fill=acc_c)
            else:  # straps
                for sx in (-0.25, 0.25):
                    d.line([(cx + sx * tw, neck), (cx + sx * tw, neck + 0.5 * torso_len)], fill=acc_c, width=max(1, aw // 2))
        elif acc == "shoulderbag":
            _rect(d, [cx + tw * 0.35, hip - 0.06 * hp, cx + tw * 0.7, hip + 0.1 * hp], fill=acc_c)
    # Head and hair.
    hair = tuple(ident["hair"]["color"])
    d.ellipse([cx - rh, head_cy - rh, cx + rh, head_cy + rh], fill=skin if view != "back" else hair)
    d.chord([cx - rh, head_cy - rh * 1.05, cx + rh, head_cy + rh * 0.6], 180, 360, fill=hair)
    if ident["hair"]["long"]:
        if view == "back":
            _rect(d, [cx - rh * 0.9, head_cy, cx + rh * 0.9, neck + 0.12 * hp], fill=hair)
        elif side:
            _rect(d, [cx - s * rh * 1.0, head_cy - rh * 0.3, cx - s * rh * 0.2, neck + 0.1 * hp], fill=hair)
        else:
            for sx in (-1, 1):
                _rect(d, [cx + sx * rh * 0.7, head_cy - rh * 0.3, cx + sx * rh * 1.05, neck + 0.05 * hp], fill=hair)
    if acc == "hat":
        d.chord([cx - rh * 1.15, head_cy - rh * 1.3, cx + rh * 1.15, head_cy + rh * 0.3], 180, 360, fill=acc_c)


def render_tracklet(ident: dict | None, cam: dict, background: np.ndarray, num_frames: int, seed: int,
                    height: int, width: int, occlusion_prob: float = 0.35, kind: str = "person") -> list[Image.Image]:
    """Render one tracklet: ``num_frames`` RGB images of size ``height x width``.

    ``kind`` is "person" (an identity), "junk" (background or a cut-off body:
    a failed detection) or "distractor" (a person, boxes worse than usual).
    """
    rng = np.random.default_rng(seed)
    view = str(rng.choice(cam["views"]))
    cadence = ident["cadence"] if ident else 10.0
    phase0 = rng.uniform(0, 2 * math.pi)
    bg_w = background.shape[1]
    speed = (1 if view == "right" else -1 if view == "left" else 0.3) * rng.uniform(0.8, 2.0) * width / 32
    bg_x = rng.uniform(width, bg_w - 2 * width)
    # Systematic misalignment of this tracklet's boxes, then per-frame jitter.
    jit = 1.0 if kind == "person" else 2.5
    off_x = rng.normal(0, 0.05 * width * jit)
    off_y = rng.normal(0, 0.03 * height * jit)
    scale = cam["scale"] * rng.uniform(0.93, 1.05) * (ident["height"] if ident else 1.0)
    if kind == "junk":
        scale *= rng.uniform(1.4, 2.2)  # a zoomed-in piece of a body (or nothing)
        off_y += rng.uniform(-0.4, 0.4) * height
    # Occluders.
    occ = None
    if kind != "junk" and rng.random() < occlusion_prob:
        occ_kind = str(rng.choice(["pole", "car", "passer"]))
        occ = {
            "kind": occ_kind,
            "x": rng.uniform(-0.2, 1.2) * width,
            "v": rng.uniform(-1.5, 1.5) * width / 16,
            "w": rng.uniform(0.15, 0.3) * width,
            "h": rng.uniform(0.25, 0.45) * height,
            "color": _cloth_color(rng),
            "start": int(rng.integers(0, max(1, num_frames // 2))),
            "len": int(rng.integers(max(1, num_frames // 3), num_frames + 1)),
        }
        if occ_kind == "passer":
            occ["ident"] = _random_identity(rng)
    brightness = rng.uniform(0.9, 1.1)
    gain = np.array(cam["gain"], np.float32) * brightness * cam["contrast"]
    offset = cam["offset"] + 128 * (1 - cam["contrast"])
    frames = []
    for t in range(num_frames):
        x = int(bg_x + speed * t) % max(1, bg_w - width)
        img = Image.fromarray(background[:, x:x + width].copy())
        cx = width / 2 + off_x + rng.normal(0, 0.03 * width * jit)
        hp = height * scale * (1 + rng.normal(0, 0.02 * jit))
        feet = height * 0.5 + hp / 2 + off_y + rng.normal(0, 0.02 * height * jit)
        phase = phase0 + 2 * math.pi * t / cadence
        if ident is not None:
            _draw_person(img, ident, view, phase, cx, feet, hp)
        if occ is not None and occ["start"] <= t < occ["start"] + occ["len"]:
            d = ImageDraw.Draw(img)
            ox = occ["x"] + occ["v"] * (t - occ["start"])
            if occ["kind"] == "pole":
                _rect(d, [ox, 0, ox + occ["w"], height], fill=occ["color"])
            elif occ["kind"] == "car":
                _rect(d, [-1, height - occ["h"], width, height], fill=occ["color"])
                _rect(d, [0, height - occ["h"] * 1.25, width * 0.6, height - occ["h"]], fill=occ["color"])
            else:
                _draw_person(img, occ["ident"], view, phase + 1.0, ox, height * 1.05, height * 1.1)
        if cam["lowres"] < 1.0:
            small = (max(4, int(width * cam["lowres"])), max(8, int(height * cam["lowres"])))
            img = img.resize(small, Image.BILINEAR).resize((width, height), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) * gain + offset
        arr += rng.normal(0, cam["noise"], size=arr.shape).astype(np.float32)
        frames.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return frames


# ----------------------------------------------------------------------------
# The plan: who is seen where
# ----------------------------------------------------------------------------


@dataclass
class _Track:
    split: str  # "train" or "test"
    pid: int  # MARS pid: >0 identities, 0 distractor, -1 junk
    cam: int  # 1-based
    index: int  # tracklet number within (pid, cam), 1-based
    num_frames: int
    seed: int
    kind: str = "person"
    ident_key: int = -1  # index into identities (or -1)


@dataclass
class _Plan:
    cfg: SynthConfig
    identities: list[dict]
    cameras: list[dict]
    tracks: list[_Track] = field(default_factory=list)
    query: list[int] = field(default_factory=list)  # indices into test tracks (0-based)


def plan_synthetic(cfg: SynthConfig) -> _Plan:
    """Decide identities, cameras and tracklets (cheap; no drawing)."""
    rng = np.random.default_rng([cfg.seed, 7])
    cameras = [_random_camera(rng, i) for i in range(cfg.num_cameras)]
    identities: list[dict] = []
    while len(identities) < cfg.num_ids:
        size = int(rng.integers(cfg.lookalike_group[0], cfg.lookalike_group[1] + 1))
        base = _random_identity(rng)
        identities.append(base)
        attrs = rng.permutation(len(_VARIANT_ATTRS))
        for j in range(1, size):
            if len(identities) >= cfg.num_ids:
                break
            identities.append(_vary(base, _VARIANT_ATTRS[int(attrs[j - 1])], rng))
    # Pids 1..num_ids in a shuffled order, so look-alike groups straddle train and test.
    order = rng.permutation(cfg.num_ids)
    pids = np.empty(cfg.num_ids, int)
    pids[order] = np.arange(1, cfg.num_ids + 1)
    num_test = max(1, int(round(cfg.num_ids * cfg.test_fraction)))
    num_test = min(num_test, cfg.num_ids - 1)
    test_pids = set(range(cfg.num_ids - num_test + 1, cfg.num_ids + 1))
    plan = _Plan(cfg, identities, cameras)
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
                tr = _Track(split, pid, c, i + 1, nframes(), int(rng.integers(2**62)), "person", int(k))
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
            test.append(_Track("test", pid, c, counters[(pid, c)], nframes(), int(rng.integers(2**62)), kind))
    plan.tracks = train + test
    plan.query = query
    return plan


def _mars_name(tr: _Track, frame: int) -> str:
    p = "00-1" if tr.pid == -1 else f"{tr.pid:04d}"
    return f"{p}C{tr.cam}T{tr.index:04d}F{frame:03d}.jpg"


def _duke_name(tr: _Track, frame: int, style: str) -> str:
    x = (tr.seed % 40000) + frame
    if style == "underscore":
        return f"{tr.pid:04d}_C{tr.cam}_F{frame:04d}_X{x:05d}.jpg"
    return f"{tr.pid:04d}C{tr.cam}F{frame:04d}X{x:05d}.jpg"


def _render_track(plan_cfg: SynthConfig, ident: dict | None, cam: dict, bg: np.ndarray, tr: _Track) -> list[Image.Image]:
    if tr.kind == "distractor" or (tr.kind == "junk" and tr.seed % 2 == 0):
        # A person seen once, or (junk) a zoomed-in piece of one.
        ident = _random_identity(np.random.default_rng([tr.seed, 1]))
    return render_tracklet(ident, cam, bg, tr.num_frames, tr.seed, plan_cfg.height, plan_cfg.width,
                           plan_cfg.occlusion_prob, tr.kind)


_WORKER_STATE: dict = {}


def _init_worker(plan: _Plan):
    _WORKER_STATE["plan"] = plan
    _WORKER_STATE["bgs"] = {}


def _background(plan: _Plan, cam: int, cache: dict) -> np.ndarray:
    if cam not in cache:
        cache[cam] = _camera_background(plan.cameras[cam - 1], plan.cfg.height, plan.cfg.width)
    return cache[cam]


def _write_tracks(jobs: list[tuple[int, list[str]]]) -> int:
    """Render tracks ``jobs`` = [(track index, [output path per frame])]; returns frames written."""
    plan: _Plan = _WORKER_STATE["plan"]
    n = 0
    for ti, paths in jobs:
        tr = plan.tracks[ti]
        ident = plan.identities[tr.ident_key] if tr.ident_key >= 0 else None
        frames = _render_track(plan.cfg, ident, plan.cameras[tr.cam - 1], _background(plan, tr.cam, _WORKER_STATE["bgs"]), tr)
        for img, path in zip(frames, paths):
            img.save(path, quality=plan.cfg.jpeg_quality)
        n += len(frames)
    return n


def _run_jobs(plan: _Plan, jobs: list[tuple[int, list[str]]], workers: int, progress: bool, label: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(len(p) for _, p in jobs)
    chunks = [jobs[i:i + 16] for i in range(0, len(jobs), 16)]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress, transient=False) as bar:
        task = bar.add_task(label, total=total)
        if workers <= 1:
            _init_worker(plan)
            for ch in chunks:
                bar.advance(task, _write_tracks(ch))
        else:
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(plan,)) as ex:
                for n in ex.map(_write_tracks, chunks):
                    bar.advance(task, n)


def _savemat(path: Path, key: str, value: np.ndarray) -> None:
    """A MATLAB v5 file, byte-identical for identical data (scipy stamps the time in its header)."""
    import scipy.io

    scipy.io.savemat(str(path), {key: value}, format="5")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 5.0 MAT-file, written by stgcn-pyg synth".ljust(116, b" "))


def _write_mars(plan: _Plan, out: Path, workers: int, progress: bool) -> None:
    root = out / "mars"
    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    jobs = []
    tables: dict[str, list[list[int]]] = {"train": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "test": []}
    for ti, tr in enumerate(plan.tracks):
        folder = root / f"bbox_{tr.split}" / ("00-1" if tr.pid == -1 else f"{tr.pid:04d}")
        folder.mkdir(parents=True, exist_ok=True)
        fn = [_mars_name(tr, f + 1) for f in range(tr.num_frames)]
        start = len(names[tr.split]) + 1
        names[tr.split].extend(fn)
        tables[tr.split].append([start, start + len(fn) - 1, tr.pid, tr.cam])
        jobs.append((ti, [str(folder / n) for n in fn]))
    for split in ("train", "test"):
        (info / f"{split}_name.txt").write_text("\n".join(names[split]) + "\n")
        # MARS ships these tables as doubles in MATLAB v5 files.
        _savemat(info / f"tracks_{split}_info.mat", f"track_{split}_info", np.asarray(tables[split], np.float64))
    _savemat(info / "query_IDX.mat", "query_IDX", (np.asarray(plan.query, np.float64) + 1)[None, :])
    _run_jobs(plan, jobs, workers, progress, "synth (MARS layout)")


def _write_duke(plan: _Plan, out: Path, workers: int, progress: bool, style: str) -> None:
    root = out / "dukemtmc-videoreid"
    jobs = []
    query = set(plan.query)
    n_train = sum(1 for t in plan.tracks if t.split == "train")
    # Duke's query holds one tracklet per test identity (the first of the MARS queries of that id).
    first_q: dict[int, int] = {}
    for q in sorted(query):
        first_q.setdefault(plan.tracks[n_train + q].pid, n_train + q)
    counters: dict[int, int] = {}
    next_pid = max(t.pid for t in plan.tracks) + 1
    for ti, tr in enumerate(plan.tracks):
        if tr.kind == "junk":
            continue  # Duke has no junk tracklets
        if tr.kind == "distractor":
            # Each distractor is a person of its own, seen in the gallery only.
            tr_pid, split = next_pid, "gallery"
            next_pid += 1
        else:
            tr_pid = tr.pid
            split = "train" if tr.split == "train" else ("query" if first_q.get(tr.pid) == ti else "gallery")
        counters[tr_pid] = counters.get(tr_pid, 0) + 1
        folder = root / split / f"{tr_pid:04d}" / f"{counters[tr_pid]:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        named = replace(tr, pid=tr_pid)
        jobs.append((ti, [str(folder / _duke_name(named, f + 1, style)) for f in range(tr.num_frames)]))
    _run_jobs(plan, jobs, workers, progress, "synth (Duke layout)")


def generate_synthetic(out: str | os.PathLike, cfg: SynthConfig | None = None, *, layout: str = "mars",
                       workers: int = 0, progress: bool = True, duke_style: str = "plain") -> Path:
    """Write the synthetic dataset under ``out`` (``out/mars`` and/or ``out/dukemtmc-videoreid``).

    ``layout`` is "mars", "duke" or "both"; ``workers`` processes draw in
    parallel (0 = up to 8, one per CPU core); the result does not depend on it.
    Returns ``out``, the root that ``load_dataset("mars" | "dukemtmc-videoreid", out)`` reads.
    """
    cfg = cfg or SynthConfig()
    if layout not in ("mars", "duke", "both"):
        raise DatasetError(f"unknown synthetic layout {layout!r}: use mars, duke or both")
    if duke_style not in ("plain", "underscore"):
        raise DatasetError(f"unknown Duke frame-name style {duke_style!r}: use plain or underscore")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if workers <= 0:
        workers = min(8, os.cpu_count() or 1)
    plan = plan_synthetic(cfg)
    if layout in ("mars", "both"):
        _write_mars(plan, out, workers, progress)
    if layout in ("duke", "both"):
        _write_duke(plan, out, workers, progress, duke_style)
    (out / "synth.json").write_text(json.dumps({"config": asdict(cfg), "layout": layout}, indent=1))
    return out


def default_cache_dir() -> Path:
    """``$STGCN_PYG_CACHE`` or ``~/.cache/stgcn-pyg``."""
    env = os.environ.get("STGCN_PYG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "stgcn-pyg"


def _holds_mars_layout(root: Path) -> bool:
    return (root / "mars" / "info" / "query_IDX.mat").is_file() and (root / "synth.json").is_file()


def synthetic_set_folder(path: str | os.PathLike) -> Path:
    """The synthetic set's own folder for a path a user may give: the set or its mars/ or duke/ child.

    ``stgcn-pyg data info`` prints the folder the MARS reader uses (``<set>/mars``);
    that path, the set's folder and its ``dukemtmc-videoreid`` child all name the same set.
    """
    path = Path(path).expanduser()
    if path.name in ("mars", "dukemtmc-videoreid") and (path.parent / "synth.json").is_file():
        return path.parent
    return path


def ensure_synthetic(root: str | os.PathLike | None = None, num_ids: int | None = None, seed: int = 0, *,
                     progress: bool = True, workers: int = 0, **kwargs) -> Path:
    """The built-in synthetic dataset in MARS layout, generated on first use.

    With ``root=None`` it lives in ``<cache>/synthetic-<hash of the settings>``
    (see :func:`default_cache_dir`), so different sizes do not collide. The
    data are written to a temporary folder and renamed into place when
    complete, so an interrupted run never leaves a half-written dataset.
    Extra keyword arguments are :class:`SynthConfig` fields (``num_ids`` defaults
    to 100; in smoke-run mode, ``STGCN_PYG_QUICK=1``, fields not given take the
    small values of :data:`stgcn_pyg.quick.SYNTHETIC`). Returns the root that
    ``load_dataset("mars", root)`` reads.
    """
    from .. import quick

    settings = dict(quick.SYNTHETIC) if quick.enabled() else {}
    settings.update(kwargs)
    if num_ids is not None:
        settings["num_ids"] = num_ids
    try:
        cfg = SynthConfig(seed=seed, **settings)
    except TypeError as exc:
        raise DatasetError(f"bad synthetic dataset option: {exc}") from None
    if root is None:
        root = default_cache_dir() / f"synthetic-{cfg.key()}"
    else:
        root = synthetic_set_folder(root)
    if _holds_mars_layout(root):
        return root
    # Check the folder before spending seconds on generating: it must be new or empty.
    if (root / "synth.json").is_file():
        raise DatasetError(f"{root}: this synthetic set was written without the MARS layout "
                           "(stgcn-pyg synth --layout duke); read it with --dataset dukemtmc-videoreid")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root}: not a synthetic dataset (no synth.json and mars/info/) and not empty; "
                           "give the folder `stgcn-pyg data info` prints, a new folder to generate into, "
                           "or no --root (the cache)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=root.parent))
    try:
        generate_synthetic(tmp, cfg, layout="mars", workers=workers, progress=progress)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
        try:
            tmp.rename(root)
        except OSError:
            # Another process finished first (or root is not empty): keep theirs if it is complete.
            if not (root / "mars" / "info" / "query_IDX.mat").is_file():
                raise DatasetError(f"cannot create the synthetic dataset at {root}: the folder exists and is not one")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
