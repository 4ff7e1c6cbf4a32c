"""Tracklet descriptors from clip descriptors, in bounded memory.

A test loader yields ``(clips [b, T, 3, H, W], tracklet_index [b])``: in the
dense "all frames" mode a long tracklet is cut into many consecutive clips
that may be spread over several batches. ``extract_descriptors`` keeps only a
running sum and a clip count per tracklet, so memory is O(num_tracklets x D)
plus one batch, whatever the tracklet lengths (900-frame tracklets included).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch

from ..errors import EvaluationError

__all__ = ["extract_descriptors"]


# Off a terminal, an extraction of fewer batches than this (a search's query, a tiny set) says nothing.
PLAIN_LINES_FROM_BATCHES = 10


class _Progress:
    """Progress of one extraction: a rich bar with frames/s on a terminal; elsewhere (a log, CI) a plain line at
    the start, since a bar there only leaves blank lines. Both end a long one with a line of frames, time and
    frames/s. On stdout, with the command's output."""

    def __init__(self, total: int | None, num_tracklets: int, description: str, console=None,
                 frames_note: str | None = None):
        from rich.console import Console

        self.console = console or Console(soft_wrap=True)
        self.total, self.num_tracklets, self.description = total, num_tracklets, description
        self.frames_note = frames_note
        self.frames, self.bar, self.task = 0, None, None
        self.lines = not self.console.is_terminal and (total is None or total >= PLAIN_LINES_FROM_BATCHES)

    def start(self) -> None:
        self.started = time.perf_counter()
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=True,
                                console=self.console)
            self.task = self.bar.add_task(self.description, total=self.total, rate="")
            self.bar.start()
        elif self.lines:
            batches = f" in {self.total:,} batches" if self.total is not None else ""
            self._line(f"{self.description}: {_tracklets(self.num_tracklets)}{batches} ...")

    def advance(self, frames: int) -> None:
        self.frames += frames
        if self.bar is not None:
            seconds = time.perf_counter() - self.started
            self.bar.update(self.task, advance=1, rate=f"{self.frames / max(seconds, 1e-9):,.0f} frames/s")

    def stop(self, done: bool) -> None:
        if self.bar is not None:
            self.bar.stop()  # transient: the bar goes, so the line below says what it measured
        if done and (self.lines or (self.bar is not None and (self.total is None
                                                              or self.total >= PLAIN_LINES_FROM_BATCHES))):
            seconds = time.perf_counter() - self.started
            # the frames encoded, padding included: more than a dataset's count (data info) where clips are padded
            what = f"clip frames ({self.frames_note})" if self.frames_note else "frames"
            self._line(f"{self.description}: {_tracklets(self.num_tracklets)}, {self.frames:,} {what} in "
                       f"{seconds:.1f} s ({self.frames / max(seconds, 1e-9):,.0f} frames/s)")

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)


def _tracklets(n: int) -> str:
    return f"{n:,} tracklet{'' if n == 1 else 's'}"


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
    frames_note: str | None = None,
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
        progress: show a rich progress bar with frames/s (over ``len(loader)`` when known) on a terminal,
            else a plain line at the start and one at the end.
        description: what the progress names the extraction ("query descriptors").
        frames_note: how the frames counted at the end make the clips (e.g. "clips of 8, each tracklet's last
            one padded"): the count is the frames encoded, so padding and repeats count, and it can exceed the
            dataset's own count of frames.

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
    bar = _Progress(total, num_tracklets, description, frames_note=frames_note) if progress else None
    if bar is not None:
        bar.start()
    done = False
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
            if bar is not None:
                bar.advance(clips.shape[0] * clips.shape[1] if clips.dim() == 5 else clips.shape[0])
        done = True
    finally:
        if bar is not None:
            bar.stop(done)
    missing = (counts == 0).nonzero().squeeze(1)
    if sums is None or missing.numel():
        first = missing[:5].tolist() if missing.numel() else []
        raise EvaluationError(
            f"{missing.numel() if sums is not None else num_tracklets} of {num_tracklets} tracklets "
            f"received no clip from the loader (first: {first}); is the loader built on the same table?"
        )
    return (sums / counts.unsqueeze(1)).float()
