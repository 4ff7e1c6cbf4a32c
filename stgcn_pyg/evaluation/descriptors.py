"""Tracklet descriptors from clip descriptors, in bounded memory.

A test loader yields ``(clips [b, T, 3, H, W], tracklet_index [b])``: in the
dense "all frames" mode a long tracklet is cut into many consecutive clips
that may be spread over several batches. ``extract_descriptors`` keeps only a
running sum and a clip count per tracklet, so memory is O(num_tracklets x D)
plus one batch, whatever the tracklet lengths (900-frame tracklets included).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import EvaluationError

__all__ = ["extract_descriptors"]


def _progress(total: int | None, description: str, enabled: bool):
    """A rich progress bar on a terminal, else None (in a file or CI a bar only leaves blank lines)."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    if not console.is_terminal:
        return None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=console,
    )
    return progress, progress.add_task(description, total=total)


@torch.no_grad()
def extract_descriptors(
    encode: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    num_tracklets: int,
    device="cpu",
    flip: bool = False,
    *,
    progress: bool = True,
    description: str = "descriptors",
) -> torch.Tensor:
    """Average the clip descriptors of each tracklet: ``[num_tracklets, D]`` on the CPU.

    Args:
        encode: maps clips ``[b, T, 3, H, W]`` to descriptors ``[b, D]``
            (``model.encode``); called under ``torch.no_grad``.
        loader: yields ``(clips, tracklet_index)`` with ``tracklet_index``
            [b] in ``0 .. num_tracklets - 1``.
        num_tracklets: rows of the result.
        device: where ``encode`` runs; clips are moved there batch by batch.
        flip: also encode the horizontally flipped clips and average the two
            descriptors (the flip test).
        progress: show a rich progress bar (over ``len(loader)`` when known).

    Raises:
        EvaluationError: an index out of range, a descriptor of the wrong
            shape, or a tracklet that received no clip.
    """
    device = torch.device(device)
    sums: torch.Tensor | None = None
    counts = torch.zeros(num_tracklets, dtype=torch.float64)
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    bar = _progress(total, description, progress)
    ctx = bar[0] if bar else None
    if ctx is not None:
        ctx.start()
    try:
        for clips, index in loader:
            index = torch.as_tensor(index, dtype=torch.long).reshape(-1).cpu()
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_tracklets):
                raise EvaluationError(
                    f"the loader gave tracklet index {int(index.max())} (or a negative one) "
                    f"but there are {num_tracklets} tracklets"
                )
            clips = clips.to(device, non_blocking=True)
            feats = encode(clips)
            if flip:
                feats = (feats + encode(clips.flip(-1))) / 2
            if feats.dim() != 2 or feats.size(0) != index.numel():
                raise EvaluationError(
                    f"encode returned shape {tuple(feats.shape)} for {index.numel()} clips; "
                    "expected [clips, dim]"
                )
            feats = feats.detach().to("cpu", torch.float64)
            if sums is None:
                sums = torch.zeros(num_tracklets, feats.size(1), dtype=torch.float64)
            sums.index_add_(0, index, feats)
            counts.index_add_(0, index, torch.ones(index.numel(), dtype=torch.float64))
            if ctx is not None:
                ctx.advance(bar[1])
    finally:
        if ctx is not None:
            ctx.stop()
    missing = (counts == 0).nonzero().squeeze(1)
    if sums is None or missing.numel():
        first = missing[:5].tolist() if missing.numel() else []
        raise EvaluationError(
            f"{missing.numel() if sums is not None else num_tracklets} of {num_tracklets} tracklets "
            f"received no clip from the loader (first: {first}); is the loader built on the same table?"
        )
    return (sums / counts.unsqueeze(1)).float()
