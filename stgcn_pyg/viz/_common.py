"""Shared helpers for the pictures: frame loading and headless matplotlib figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError

__all__ = ["load_frame", "sample_evenly", "new_figure", "save_figure", "prepare_path"]


def prepare_path(path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the folder for {path}: {exc.strerror}") from None
    return path


def load_frame(frame, size: tuple[int, int]):
    """One frame as an RGB PIL image of ``size`` = (height, width).

    ``frame``: an image path, a PIL image, an array [H, W, 3] (uint8, or float
    in [0, 1]) or a tensor [3, H, W] (uint8, float in [0, 1], or normalised
    with the ImageNet statistics as the test loaders produce).
    """
    from PIL import Image, UnidentifiedImageError

    h, w = size
    if isinstance(frame, (str, os.PathLike)):
        try:
            with Image.open(frame) as im:
                img = im.convert("RGB")
        except FileNotFoundError:
            raise DatasetError(f"image not found: {frame}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"cannot read image {frame}: {exc}") from None
    elif isinstance(frame, Image.Image):
        img = frame.convert("RGB")
    else:
        if isinstance(frame, torch.Tensor):
            arr = frame.detach().cpu()
            if arr.dim() != 3 or arr.size(0) not in (1, 3):
                raise ValueError(f"a frame tensor must be [3, H, W], got shape {tuple(arr.shape)}")
            arr = arr.expand(3, -1, -1).permute(1, 2, 0).numpy()
            if arr.dtype != np.uint8 and (arr.min() < 0 or arr.max() > 1):
                from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

                arr = arr * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)  # undo the loaders' normalisation
        else:
            arr = np.asarray(frame)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"a frame array must be [H, W, 3], got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(arr))
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    return img


def sample_evenly(frames, n: int) -> list:
    """``n`` frames spread evenly over the sequence (all of them when there are fewer)."""
    frames = list(frames)
    if len(frames) <= n:
        return frames
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [frames[i] for i in idx]


def new_figure(width_px: int, height_px: int, dpi: int = 100):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path) -> Path:
    """Write the figure as PNG at exactly its pixel size (no tight bounding box)."""
    path = prepare_path(path)
    fig.savefig(path, dpi=fig.dpi, format="png")
    return path
