"""The CMC curve as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import new_figure, save_figure

__all__ = ["plot_cmc"]


def plot_cmc(
    cmc,
    path,
    *,
    title: str = "CMC",
    max_rank: int | None = 50,
    size: tuple[int, int] = (640, 480),
    dpi: int = 100,
) -> Path:
    """Plot one or several CMC curves (fractions in [0, 1], index 0 = rank 1) to ``path``.

    ``cmc``: an array, or a dict label -> array to compare runs (e.g. with and
    without re-ranking). The PNG is ``size`` = (width, height) pixels.
    Rank-1 of each curve is printed in its legend entry.
    """
    curves = cmc if isinstance(cmc, dict) else {"": cmc}
    fig = new_figure(*size, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    longest = 1
    for label, values in curves.items():
        y = np.asarray(values, dtype=float).reshape(-1)
        if max_rank:
            y = y[:max_rank]
        if y.size == 0:
            raise ValueError(f"empty CMC curve {label!r}")
        x = np.arange(1, y.size + 1)
        longest = max(longest, y.size)
        name = f"{label} (rank-1 {y[0] * 100:.1f}%)" if label else f"rank-1 {y[0] * 100:.1f}%"
        ax.plot(x, y * 100, marker="o" if y.size <= 20 else None, markersize=3, label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.set_xlim(1, max(longest, 2))
    ax.set_ylim(0, 100.5)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
