"""Random people and cameras of the synthetic set: the attributes that are drawn.

Identities come in look-alike groups whose members differ in exactly one
attribute (:data:`VARIANT_ATTRS`); cameras differ in colour cast, exposure,
noise, resolution, scale, walking directions and background.
"""

from __future__ import annotations

import colorsys
import json

import numpy as np

__all__ = ["VARIANT_ATTRS", "PATTERNS", "ACCESSORIES", "cloth_color", "random_identity", "look_alike",
           "random_camera"]

# Attributes a look-alike group may differ in (exactly one per member).
VARIANT_ATTRS = ("pattern", "pattern_color", "bottom_color", "shoe_color", "accessory", "hair", "sleeves", "gait")
PATTERNS = ("solid", "hstripes", "vstripes", "checker", "twotone", "logo")
ACCESSORIES = ("none", "backpack", "shoulderbag", "hat")


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def cloth_color(rng: np.random.Generator) -> tuple[int, int, int]:
    # Real clothing is often dark or grey: a third of draws are achromatic.
    if rng.random() < 0.3:
        v = float(rng.choice([0.12, 0.25, 0.45, 0.65, 0.85]) + rng.uniform(-0.05, 0.05))
        return _rgb(0, 0, min(max(v, 0), 1))
    return _rgb(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))


def _other_color(rng: np.random.Generator, c: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour clearly different from ``c`` (changes one identity of a look-alike group)."""
    for _ in range(20):
        d = cloth_color(rng)
        if sum(abs(a - b) for a, b in zip(c, d)) > 150:
            return d
    return tuple(255 - x for x in c)  # type: ignore[return-value]


_SKIN = [(241, 194, 167), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (110, 70, 45)]
_HAIR = [(20, 15, 10), (60, 40, 20), (110, 75, 40), (200, 170, 90), (140, 140, 140), (150, 50, 20)]


def random_identity(rng: np.random.Generator) -> dict:
    return {
        "height": float(rng.uniform(0.86, 1.0)),
        "build": float(rng.uniform(0.8, 1.25)),
        "leg_ratio": float(rng.uniform(0.44, 0.54)),
        "head": float(rng.uniform(0.85, 1.15)),
        "skin": _SKIN[int(rng.integers(len(_SKIN)))],
        "hair": {"color": _HAIR[int(rng.integers(len(_HAIR)))], "long": bool(rng.random() < 0.35)},
        "top_color": cloth_color(rng),
        "pattern": PATTERNS[int(rng.integers(len(PATTERNS)))],
        "pattern_color": cloth_color(rng),
        "pattern_freq": int(rng.integers(3, 7)),
        "sleeves": "long" if rng.random() < 0.6 else "short",
        "bottom": ["trousers", "trousers", "shorts", "skirt"][int(rng.integers(4))],
        "bottom_color": cloth_color(rng),
        "shoe_color": cloth_color(rng),
        "accessory": ACCESSORIES[int(rng.integers(len(ACCESSORIES)))],
        "accessory_color": cloth_color(rng),
        # Gait: frames per cycle, leg and arm swing amplitudes (radians).
        "cadence": float(rng.uniform(7.0, 15.0)),
        "stride": float(rng.uniform(0.25, 0.6)),
        "arm_swing": float(rng.uniform(0.15, 0.5)),
    }


def look_alike(base: dict, attr: str, rng: np.random.Generator) -> dict:
    """A look-alike of ``base`` that differs in exactly one attribute."""
    ident = json.loads(json.dumps(base))  # deep copy (tuples become lists, fine for drawing)
    if attr == "pattern":
        ident["pattern"] = str(rng.choice([p for p in PATTERNS if p != base["pattern"]]))
    elif attr == "pattern_color":
        if ident["pattern"] == "solid":
            ident["pattern"] = "logo"
        ident["pattern_color"] = _other_color(rng, tuple(base["pattern_color"]))
    elif attr == "bottom_color":
        ident["bottom_color"] = _other_color(rng, tuple(base["bottom_color"]))
    elif attr == "shoe_color":
        ident["shoe_color"] = _other_color(rng, tuple(base["shoe_color"]))
    elif attr == "accessory":
        ident["accessory"] = str(rng.choice([a for a in ACCESSORIES if a != base["accessory"]]))
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


def random_camera(rng: np.random.Generator, index: int) -> dict:
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
        "wall": cloth_color(rng),
        "floor": cloth_color(rng),
        "horizon": float(rng.uniform(0.45, 0.8)),
        "texture": int(rng.integers(3)),
        "bg_seed": int(rng.integers(2**31)),
    }
