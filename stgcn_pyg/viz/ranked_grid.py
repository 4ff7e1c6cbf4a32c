"""Ranked retrieval results of one query as a PNG grid.

Top: an optional title line, then a strip of the query tracklet's frames
(blue border). Below: the gallery tracklets in rank order, each a short strip
of its frames with a green border when it is the query's identity, red when
not, grey when unknown, and a dashed grey one when the evaluation protocol
ignores it (:data:`IGNORED`); each has a caption (rank, and whatever the
caller adds: pid, camera, distance). An optional legend under the results
says what each border drawn means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ._common import load_frame, prepare_path, sample_evenly

__all__ = ["plot_ranked_results", "ranked_grid_size", "border_style", "IGNORED"]

BORDER = 4
GAP = 8
MARGIN = 8
CAPTION = 14
IGNORED = "ignored"
"""The mark of a gallery tracklet the protocol leaves out of the ranking (same pid and camera, junk)."""
COLORS = {True: (30, 170, 60), False: (220, 40, 40), None: (150, 150, 150), IGNORED: (140, 140, 140)}
QUERY_COLOR = (40, 90, 220)
DASH, DASH_GAP = 6, 4
LEGEND = {True: "green: the query's identity", False: "red: another identity", None: "grey: identity unknown",
          IGNORED: "dashed grey: ignored by the protocol (not ranked)"}


def border_style(mark) -> tuple[tuple[int, int, int], bool]:
    """``(colour, dashed)`` of the border of a result marked ``mark``: True (the query's identity), False
    (another), None (unknown) or :data:`IGNORED`."""
    if isinstance(mark, str):
        if mark != IGNORED:
            raise ValueError(f"unknown result mark {mark!r}: True, False, None or {IGNORED!r}")
        return COLORS[IGNORED], True
    return COLORS[None if mark is None else bool(mark)], False


def ranked_grid_size(
    num_query_frames: int,
    num_results: int,
    *,
    frames_per_result: int = 4,
    per_row: int = 5,
    frame_size: tuple[int, int] = (128, 64),
    title: bool = False,
    legend_lines: int = 0,
) -> tuple[int, int]:
    """(width, height) in pixels of the grid :func:`plot_ranked_results` draws (with a ``title`` line and
    ``legend_lines`` lines of legend)."""
    h, w = frame_size
    query_w = num_query_frames * w + 2 * BORDER
    item_w = frames_per_result * w + 2 * BORDER
    item_h = h + 2 * BORDER + CAPTION
    cols = max(1, min(per_row, num_results))
    rows = -(-num_results // cols) if num_results else 0
    width = 2 * MARGIN + max(query_w, cols * item_w + (cols - 1) * GAP)
    height = 2 * MARGIN + CAPTION + h + 2 * BORDER + rows * (GAP + item_h)
    height += CAPTION * (int(title) + legend_lines) + (GAP if legend_lines else 0)
    return width, height


def _strip(frames, n, frame_size, color, dashed=False):
    from PIL import Image, ImageDraw

    h, w = frame_size
    frames = sample_evenly(frames, n)
    size = (n * w + 2 * BORDER, h + 2 * BORDER)
    img = Image.new("RGB", size, (255, 255, 255) if dashed else color)
    if dashed:
        draw = ImageDraw.Draw(img)
        W, H = size
        for x in range(0, W, DASH + DASH_GAP):  # top and bottom edges
            draw.rectangle((x, 0, x + DASH - 1, BORDER - 1), fill=color)
            draw.rectangle((x, H - BORDER, x + DASH - 1, H - 1), fill=color)
        for y in range(0, H, DASH + DASH_GAP):  # left and right edges
            draw.rectangle((0, y, BORDER - 1, y + DASH - 1), fill=color)
            draw.rectangle((W - BORDER, y, W - 1, y + DASH - 1), fill=color)
    for i, f in enumerate(frames):
        img.paste(load_frame(f, frame_size), (BORDER + i * w, BORDER))
    if len(frames) < n:  # short tracklet: grey out the unused cells
        img.paste((235, 235, 235), (BORDER + len(frames) * w, BORDER, BORDER + n * w, BORDER + h))
    return img


def plot_ranked_results(
    query_frames: Sequence,
    gallery: Sequence[Sequence],
    path,
    *,
    matches: Sequence[bool | str | None] | None = None,
    captions: Sequence[str] | None = None,
    query_caption: str = "query",
    title: str | None = None,
    legend: bool = False,
    num_query_frames: int = 8,
    frames_per_result: int = 4,
    per_row: int = 5,
    frame_size: tuple[int, int] = (128, 64),
) -> Path:
    """Draw one query and its ranked gallery tracklets to ``path`` (PNG).

    Args:
        query_frames: the query's frames (paths, PIL images, arrays or
            tensors); ``num_query_frames`` of them, evenly spaced, are shown.
        gallery: the top-k gallery tracklets in rank order, each a sequence
            of frames (``frames_per_result`` shown).
        matches: per result, True (green), False (red), None (grey) or
            :data:`IGNORED` (dashed grey): :func:`border_style`.
        captions: per result, text under the strip (default "#rank").
        title: a line above the query (e.g. the protocol that ranked it).
        legend: a line per border style drawn, under the results.
        frame_size: (height, width) of every drawn frame.

    The image is :func:`ranked_grid_size` pixels.
    """
    from PIL import Image, ImageDraw

    k = len(gallery)
    matches = list(matches) if matches is not None else [None] * k
    captions = list(captions) if captions is not None else [f"#{i + 1}" for i in range(k)]
    if len(matches) != k or len(captions) != k:
        raise ValueError(f"{k} gallery results but {len(matches)} match flags and {len(captions)} captions")
    styles = [border_style(m) for m in matches]
    # the legend names the styles drawn, in LEGEND's order
    drawn = [m for m in LEGEND if any(border_style(m) == st for st in styles)] if legend else []
    nq = max(1, min(num_query_frames, len(query_frames)))
    width, height = ranked_grid_size(nq, k, frames_per_result=frames_per_result, per_row=per_row,
                                     frame_size=frame_size, title=title is not None, legend_lines=len(drawn))
    h, w = frame_size
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    if title is not None:
        draw.text((MARGIN, y), title, fill=(0, 0, 0))
        y += CAPTION
    draw.text((MARGIN, y), query_caption, fill=(0, 0, 0))
    y += CAPTION
    canvas.paste(_strip(query_frames, nq, frame_size, QUERY_COLOR), (MARGIN, y))
    y += h + 2 * BORDER
    cols = max(1, min(per_row, k))
    item_w = frames_per_result * w + 2 * BORDER
    for i, (frames, (color, dashed), caption) in enumerate(zip(gallery, styles, captions)):
        r, c = divmod(i, cols)
        x0 = MARGIN + c * (item_w + GAP)
        y0 = y + GAP + r * (GAP + h + 2 * BORDER + CAPTION)
        canvas.paste(_strip(frames, frames_per_result, frame_size, color, dashed), (x0, y0))
        draw.text((x0, y0 + h + 2 * BORDER + 1), caption, fill=color)
    y += -(-k // cols) * (GAP + h + 2 * BORDER + CAPTION) + GAP
    for mark in drawn:
        color, dashed = border_style(mark)
        draw.rectangle((MARGIN, y + 2, MARGIN + 9, y + 11), outline=color, width=2)
        draw.text((MARGIN + 16, y), LEGEND[mark], fill=color)
        y += CAPTION
    path = prepare_path(path)
    canvas.save(path, format="PNG")
    return path
