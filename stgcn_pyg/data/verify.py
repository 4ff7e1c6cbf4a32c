"""Decode every frame of a dataset once, to find unreadable files before training."""

from __future__ import annotations

from .datasets.base import ReIDDataset
from .transforms import CorruptFrameError, read_frame

__all__ = ["verify_dataset"]


def verify_dataset(ds: ReIDDataset, progress: bool = True) -> list[tuple[str, str]]:
    """``[(path, message)]`` for every frame of ``ds`` that cannot be decoded."""
    from rich.progress import Progress

    paths = sorted({p for df in ds.splits().values() for fr in df["frames"] for p in fr})
    bad = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("decoding frames", total=len(paths))
        for p in paths:
            try:
                read_frame(p)
            except CorruptFrameError as exc:
                bad.append((p, str(exc)))
            bar.advance(task)
    return bad
