"""Drawing the synthetic set: camera backgrounds, walking people, occluders, camera effects."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .attributes import cloth_color, random_identity

__all__ = ["camera_background", "render_tracklet", "draw_occluder"]


BACKGROUND_WIDTHS = 6
"""A camera's background strip is this many box widths wide."""


def camera_background(cam: dict, height: int, width: int) -> np.ndarray:
    """A wide background strip (height x BACKGROUND_WIDTHS*width) a tracklet's box slides over."""
    rng = np.random.default_rng(cam["bg_seed"])
    W = width * BACKGROUND_WIDTHS
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
            img[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = cloth_color(rng)
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


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


def tracklet_layout(rng: np.random.Generator, cam: dict, ident: dict | None, num_frames: int, bg_width: int,
                    height: int, width: int, occlusion_prob: float = 0.35, kind: str = "person",
                    misalignment: float = 1.0) -> dict:
    """The draws that fix a tracklet before its frames: view, gait phase, motion, box misalignment, occluder.

    ``occ`` is None or the occluder, drawn in frames ``occ["start"] <= t < occ["start"] + occ["len"]``.
    ``misalignment`` scales the box's offset from the body and its per-frame jitter (``jit``; 0 centres every
    box on the body, 1 is the default set).
    """
    view = str(rng.choice(cam["views"]))
    cadence = ident["cadence"] if ident else 10.0
    phase0 = rng.uniform(0, 2 * math.pi)
    speed = (1 if view == "right" else -1 if view == "left" else 0.3) * rng.uniform(0.8, 2.0) * width / 32
    bg_x = rng.uniform(width, bg_width - 2 * width)
    # Systematic misalignment of this tracklet's boxes, then per-frame jitter.
    jit = (1.0 if kind == "person" else 2.5) * misalignment
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
            "color": cloth_color(rng),
            "start": int(rng.integers(0, max(1, num_frames // 2))),
            "len": int(rng.integers(max(1, num_frames // 3), num_frames + 1)),
        }
        if occ_kind == "passer":
            occ["ident"] = random_identity(rng)
    return dict(view=view, cadence=cadence, phase0=phase0, speed=speed, bg_x=bg_x, jit=jit, off_x=off_x,
                off_y=off_y, scale=scale, occ=occ)


def draw_occluder(img: Image.Image, occ: dict, x: float, view: str, phase: float) -> None:
    """Draw the occluder ``occ`` into ``img`` in place, at horizontal position ``x`` (pixels).

    "pole": a full-height bar ``occ["w"]`` wide from ``x``; "car": a body over the whole width ``occ["h"]``
    high at the bottom, with a roof over the left 60 %; "passer": a person (``occ["ident"]``, seen from
    ``view`` at gait ``phase``) centred on ``x``, a tenth taller than the box and standing below its bottom.
    Flat colours (``occ["color"]``), as a near object out of focus; the passer-by wears its clothes' patterns.
    """
    height, width = img.height, img.width
    d = ImageDraw.Draw(img)
    if occ["kind"] == "pole":
        _rect(d, [x, 0, x + occ["w"], height], fill=occ["color"])
    elif occ["kind"] == "car":
        _rect(d, [-1, height - occ["h"], width, height], fill=occ["color"])
        _rect(d, [0, height - occ["h"] * 1.25, width * 0.6, height - occ["h"]], fill=occ["color"])
    else:
        _draw_person(img, occ["ident"], view, phase, x, height * 1.05, height * 1.1)


def occluded_frames(layout: dict, num_frames: int) -> int:
    """How many of the tracklet's frames its occluder is drawn in (0 without one)."""
    occ = layout["occ"]
    return 0 if occ is None else max(0, min(num_frames, occ["start"] + occ["len"]) - occ["start"])


def render_tracklet(ident: dict | None, cam: dict, background: np.ndarray, num_frames: int, seed: int,
                    height: int, width: int, occlusion_prob: float = 0.35, kind: str = "person",
                    misalignment: float = 1.0) -> list[Image.Image]:
    """Render one tracklet: ``num_frames`` RGB images of size ``height x width``.

    ``kind`` is "person" (an identity), "junk" (background or a cut-off body:
    a failed detection) or "distractor" (a person, boxes worse than usual).
    ``occlusion_prob`` and ``misalignment``: see :class:`~stgcn_pyg.data.synth.SynthConfig`.
    """
    rng = np.random.default_rng(seed)
    bg_w = background.shape[1]
    lay = tracklet_layout(rng, cam, ident, num_frames, bg_w, height, width, occlusion_prob, kind, misalignment)
    view, cadence, phase0, speed, bg_x = lay["view"], lay["cadence"], lay["phase0"], lay["speed"], lay["bg_x"]
    jit, off_x, off_y, scale, occ = lay["jit"], lay["off_x"], lay["off_y"], lay["scale"], lay["occ"]
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
            draw_occluder(img, occ, occ["x"] + occ["v"] * (t - occ["start"]), view, phase + 1.0)
        if cam["lowres"] < 1.0:
            small = (max(4, int(width * cam["lowres"])), max(8, int(height * cam["lowres"])))
            img = img.resize(small, Image.BILINEAR).resize((width, height), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) * gain + offset
        arr += rng.normal(0, cam["noise"], size=arr.shape).astype(np.float32)
        frames.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return frames
