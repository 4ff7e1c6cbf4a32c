"""Ranked retrieval results of one query as a PNG grid.

Top: a strip of the query tracklet's frames (blue border). Below: the top-k
gallery tracklets in rank order, each a short strip of its frames with a
green border when it is the query's identity, red when not (grey when
unknown), and a caption (rank, and whatever the caller adds: pid, camera,
distance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ._common import load_frame, prepare_path, sample_evenly

__all__ = ["plot_ranked_results", "ranked_grid_size"]

BORDER = 4
GAP = 8
MARGIN = 8
CAPTION = 14
COLORS = {True: (30, 170, 60), False: (220, 40, 40), None: (150, 150, 150)}
QUERY_COLOR = (40, 90, 220)


def ranked_grid_size(
    num_query_frames: int,
    num_results: int,
    *,
    frames_per_result: int = 4,
    per_row: int = 5,
    frame_size: tuple[int, int] = (128, 64),
) -> tuple[int, int]:
    """(width, height) in pixels of the grid :func:`plot_ranked_results` draws."""
    h, w = frame_size
    query_w = num_query_frames * w + 2 * BORDER
    item_w = frames_per_result * w + 2 * BORDER
    item_h = h + 2 * BORDER + CAPTION
    cols = max(1, min(per_row, num_results))
    rows = -(-num_results // cols) if num_results else 0
    width = 2 * MARGIN + max(query_w, cols * item_w + (cols - 1) * GAP)
    height = 2 * MARGIN + CAPTION + h + 2 * BORDER + rows * (GAP + item_h)
    return width, height


def _strip(frames, n, frame_size, color):
    from PIL import Image

    h, w = frame_size
    frames = sample_evenly(frames, n)
    img = Image.new("RGB", (n * w + 2 * BORDER, h + 2 * BORDER), color)
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
    matches: Sequence[bool | None] | None = None,
    captions: Sequence[str] | None = None,
    query_caption: str = "query",
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
        matches: per result, True (green), False (red) or None (grey).
        captions: per result, text under the strip (default "#rank").
        frame_size: (height, width) of every drawn frame.

    The image is :func:`ranked_grid_size` pixels.
    """
    from PIL import Image, ImageDraw

    k = len(gallery)
    matches = list(matches) if matches is not None else [None] * k
    captions = list(captions) if captions is not None else [f"#{i + 1}" for i in range(k)]
    if len(matches) != k or len(captions) != k:
        raise ValueError(f"{k} gallery results but {len(matches)} match flags and {len(captions)} captions")
    nq = max(1, min(num_query_frames, len(query_frames)))
    width, height = ranked_grid_size(nq, k, frames_per_result=frames_per_result, per_row=per_row,
                                     frame_size=frame_size)
    h, w = frame_size
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), query_caption, fill=(0, 0, 0))
    y = MARGIN + CAPTION
    canvas.paste(_strip(query_frames, nq, frame_size, QUERY_COLOR), (MARGIN, y))
    y += h + 2 * BORDER
    cols = max(1, min(per_row, k))
    item_w = frames_per_result * w + 2 * BORDER
    for i, (frames, match, caption) in enumerate(zip(gallery, matches, captions)):
        r, c = divmod(i, cols)
        x0 = MARGIN + c * (item_w + GAP)
        y0 = y + GAP + r * (GAP + h + 2 * BORDER + CAPTION)
        color = COLORS[None if match is None else bool(match)]
        canvas.paste(_strip(frames, frames_per_result, frame_size, color), (x0, y0))
        draw.text((x0, y0 + h + 2 * BORDER + 1), caption, fill=color)
    path = prepare_path(path)
    canvas.save(path, format="PNG")
    return path
