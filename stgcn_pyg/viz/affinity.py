"""The learned temporal affinity of one tracklet, drawn next to its frames.

The temporal branch relates all N = T*P patch nodes of a tracklet (P
horizontal stripes per frame). The heatmap shows the normalised weights
A_hat[i, j] (node ``t*P + p`` = stripe ``p`` of frame ``t``): bright
off-diagonal blocks show which body parts the model links across frames, and
a dark row/column band shows a frame it routes around (an occluded one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._common import load_frame, new_figure, save_figure

__all__ = ["plot_affinity"]


def plot_affinity(
    weights,
    frames: Sequence,
    num_stripes: int,
    path,
    *,
    title: str = "temporal affinity",
    size: tuple[int, int] = (1200, 560),
    dpi: int = 100,
    frame_size: tuple[int, int] = (128, 64),
) -> Path:
    """Heatmap of ``weights`` [N, N] (N = len(frames) * num_stripes) beside the frames, to ``path``.

    The frames are drawn left to right with the stripe boundaries; the
    heatmap's ticks name frame and stripe of each node ("f3/p1") when N is
    small enough to read (<= 64), the frames only otherwise. The PNG is
    ``size`` = (width, height) pixels.
    """
    w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    w = np.asarray(w, dtype=float)
    T, P = len(frames), int(num_stripes)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square [N, N] matrix, got shape {w.shape}")
    if T * P != w.shape[0]:
        raise ValueError(f"weights are {w.shape[0]}x{w.shape[1]} but {T} frames x {P} stripes = {T * P} nodes")
    fh, fw = frame_size
    strip = np.concatenate([np.asarray(load_frame(f, frame_size)) for f in frames], axis=1)

    fig = new_figure(*size, dpi=dpi)
    gs = fig.add_gridspec(1, 2, width_ratios=[1.15, 1.0], wspace=0.25)
    ax_f = fig.add_subplot(gs[0, 0])
    ax_f.imshow(strip)
    for p in range(1, P):  # stripe boundaries
        ax_f.axhline(p * fh / P - 0.5, color="white", lw=0.8, ls="--")
    for t in range(1, T):
        ax_f.axvline(t * fw - 0.5, color="black", lw=0.8)
    ax_f.set_xticks([t * fw + fw / 2 for t in range(T)])
    ax_f.set_xticklabels([f"f{t}" for t in range(T)], fontsize=8)
    ax_f.set_yticks([p * fh / P + fh / (2 * P) for p in range(P)])
    ax_f.set_yticklabels([f"p{p}" for p in range(P)], fontsize=8)
    ax_f.set_title(f"{T} frames x {P} stripes", fontsize=10)

    ax_h = fig.add_subplot(gs[0, 1])
    im = ax_h.imshow(w, cmap="viridis", interpolation="nearest")
    N = T * P
    if N <= 64:
        ticks = list(range(N))
        labels = [f"f{i // P}/p{i % P}" for i in ticks]
        fs = 6 if N > 24 else 8
    else:
        ticks = [t * P + (P - 1) / 2 for t in range(T)]
        labels = [f"f{t}" for t in range(T)]
        fs = 7
    ax_h.set_xticks(ticks)
    ax_h.set_xticklabels(labels, rotation=90, fontsize=fs)
    ax_h.set_yticks(ticks)
    ax_h.set_yticklabels(labels, fontsize=fs)
    for t in range(1, T):  # frame blocks
        ax_h.axhline(t * P - 0.5, color="white", lw=0.5)
        ax_h.axvline(t * P - 0.5, color="white", lw=0.5)
    ax_h.set_title("patch-to-patch weight", fontsize=10)
    fig.colorbar(im, ax=ax_h, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.04, right=0.96, bottom=0.16, top=0.88)
    return save_figure(fig, path)
