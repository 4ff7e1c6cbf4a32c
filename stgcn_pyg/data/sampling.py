"""Frame sampling within a tracklet, and the identity batch sampler (``num_ids`` x ``num_instances``).

Frame sampling (``n`` frames -> indices):

* :func:`restricted_random` (training): cut the tracklet into ``T`` equal
  chunks and take one random frame of each, so every part of the walk is
  represented; a tracklet shorter than ``T`` repeats its frames in order.
* :func:`evenly` (testing, fast): ``T`` evenly spaced frames.
* :func:`all_clips` (testing, dense): every frame, in consecutive clips of
  ``T``; the last clip is completed by repeating its own frames.
* :func:`strided_clips` (testing, dense and spread): every frame, in clips
  that each span the whole tracklet as training's clips do (clip ``k`` takes
  the ``k``-th frame of each of ``T`` equal chunks).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["restricted_random", "evenly", "all_clips", "strided_clips", "RandomIdentitySampler"]


def _check(n: int, T: int) -> None:
    if n < 1:
        raise ValueError(f"a tracklet needs at least one frame, got {n}")
    if T < 1:
        raise ConfigError(f"sequence length must be >= 1, got {T}")


def restricted_random(n: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """One random frame from each of ``T`` equal chunks of ``range(n)`` (sorted)."""
    _check(n, T)
    if n < T:
        return (np.arange(T) * n) // T  # 0,0,1,1,2,2,... repetition in temporal order
    bounds = (np.arange(T + 1) * n) // T
    return bounds[:-1] + (rng.random(T) * (bounds[1:] - bounds[:-1])).astype(np.int64)


def evenly(n: int, T: int) -> np.ndarray:
    """``T`` evenly spaced frames (the centres of ``T`` equal chunks)."""
    _check(n, T)
    return ((2 * np.arange(T) + 1) * n) // (2 * T)


def all_clips(n: int, T: int) -> list[np.ndarray]:
    """Every frame in consecutive clips of ``T``; the last one padded by cycling its frames."""
    _check(n, T)
    clips = []
    for s in range(0, n, T):
        idx = np.arange(s, min(s + T, n))
        if len(idx) < T:
            idx = idx[np.arange(T) % len(idx)]
        clips.append(idx)
    return clips


def strided_clips(n: int, T: int) -> list[np.ndarray]:
    """Every frame in clips spread over the whole tracklet: clip ``k`` is the ``k``-th frame of each of ``T`` chunks.

    The chunks are :func:`restricted_random`'s, so each clip has the frame spacing the model was trained on
    (consecutive clips, :func:`all_clips`, have none of it). Chunks differ in length by at most one; a shorter
    chunk repeats its last frame in the last clip. A tracklet shorter than ``T`` gives one clip, as in training.
    """
    _check(n, T)
    if n < T:
        return [(np.arange(T) * n) // T]
    bounds = (np.arange(T + 1) * n) // T
    starts, lengths = bounds[:-1], np.diff(bounds)
    return [starts + np.minimum(k, lengths - 1) for k in range(int(lengths.max()))]


class RandomIdentitySampler(torch.utils.data.Sampler):
    """Batches of ``num_ids`` identities x ``num_instances`` tracklets per identity.

    Per epoch (seeded by ``seed`` and the epoch given to :meth:`set_epoch`):
    each identity's tracklets are shuffled and cut into groups of
    ``num_instances`` (an identity with fewer tracklets is sampled with
    replacement, up to ``num_instances``); batches then take ``num_ids``
    random identities that still have a group left.
    Each batch item is ``(row, draw_seed)``: the seed of its frame sampling and
    augmentation, so a batch is the same whatever the loader's workers.

    Under DistributedDataParallel every rank builds the same global list of
    batches and takes every ``world_size``-th one from ``rank``; all ranks get
    ``len(self)`` batches, a global batch being ``world_size`` x ``num_ids`` x ``num_instances``.
    """

    def __init__(self, pids, num_instances: int = 4, num_ids: int = 16, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        pids = np.asarray(pids)
        if num_instances < 1 or num_ids < 1:
            raise ConfigError(f"need num_ids >= 1 and num_instances >= 1, got {num_ids} x {num_instances}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside world size {world_size}")
        self.index = defaultdict(list)
        for i, p in enumerate(pids.tolist()):
            self.index[p].append(i)
        self.pids = sorted(self.index)
        if len(self.pids) < num_ids:
            raise ConfigError(f"a batch of num_ids={num_ids} identities needs {num_ids} identities but the training split has "
                              f"{len(self.pids)}: lower num_ids")
        self.num_instances, self.num_ids, self.seed = int(num_instances), int(num_ids), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        groups = sum(max(1, len(v) // self.num_instances) for v in self.index.values())
        # An epoch is as many batches as the groups fill: fixed by the counts alone.
        self._len = (groups // self.num_ids) // self.world_size
        if self._len == 0:
            raise ConfigError(f"the training split gives no complete {self.num_ids} x {self.num_instances} batch "
                              f"per rank ({len(self.pids)} identities, {groups} groups of {self.num_instances}, "
                              f"world size {self.world_size})")

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle deterministically for ``epoch`` (call it on every rank)."""
        self.epoch = int(epoch)

    def _groups(self, rng: np.random.Generator) -> dict[int, list[list[int]]]:
        groups = {}
        for p in self.pids:
            idx = np.asarray(self.index[p])
            k = self.num_instances
            idx = rng.choice(idx, k, replace=True) if len(idx) < k else rng.permutation(idx)
            groups[p] = [idx[g * k:(g + 1) * k].tolist() for g in range(len(idx) // k)]
        return groups

    def global_batches(self, epoch: int | None = None) -> list[list[tuple[int, int]]]:
        """All ranks' batches of an epoch, as lists of ``(row, draw_seed)``."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch)])
        target = self._len * self.world_size
        batches: list[list[tuple[int, int]]] = []
        groups = self._groups(rng)
        while len(batches) < target:
            avail = [p for p in self.pids if groups[p]]
            if len(avail) < self.num_ids:
                # Identities with many tracklets outlast the others: start a fresh round of groups.
                fresh = self._groups(rng)
                for p in self.pids:
                    groups[p] = groups[p] + fresh[p]
                continue
            batch = []
            for c in rng.choice(len(avail), self.num_ids, replace=False):
                batch.extend(groups[avail[c]].pop())
            batches.append([(int(i), int(rng.integers(2**62))) for i in batch])
        return batches

    def __iter__(self):
        yield from self.global_batches()[self.rank::self.world_size]

    def __len__(self) -> int:
        return self._len
