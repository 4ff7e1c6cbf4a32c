"""Training and test loaders: tracklet tables -> batches on their way to the model.

Training batches are :class:`~torch_geometric.data.Batch` objects of
:class:`TrackletData`, each built whole by the dataset (``num_ids`` identities
x ``num_instances`` tracklets, restricted random frame sampling; see
:mod:`stgcn_pyg.data.batching`); test batches are plain ``(clips [b, T, 3, H, W],
tracklet_index [b])`` pairs, whose clips cover every frame in consecutive
clips ("all"), one evenly spaced clip per tracklet ("evenly"), or every frame
in clips that each span the tracklet ("strided").

A corrupt or missing frame met while loading is replaced by a readable frame
of the same tracklet, with a warning on the ``stgcn_pyg.data`` logger; the loaders count these
(``loader.num_skipped_frames``). A tracklet with no readable frame raises
:class:`~stgcn_pyg.errors.DatasetError`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DatasetError
from .sampling import RandomIdentitySampler, all_clips, evenly, restricted_random, strided_clips
from ..graphs import TrackletGraph
from .misalignment import TestMisalignment
from .occlusion import TestOcclusion
from .perturbation import PERTURBATION_ORDER
from .tracklet import TrackletData, resolve_graph
from .batching import DECODE_MODES, BufferPool, decode_on_device, device_jpeg_decoder, train_batch
from .transforms import DEFAULT_IMAGE_SIZE, TrackletTransform, load_tracklet_frames, normalize_frames

__all__ = ["build_train_loader", "build_test_loader", "load_tracklet_frames", "TrainLoader", "TestLoader",
           "TrackletTrainSet", "ClipTestSet", "TEST_MODES"]

TEST_CLIPS = {"all": all_clips, "evenly": lambda n, T: [evenly(n, T)], "strided": strided_clips}
"""Test mode -> ``clips(num_frames, T)``: every frame in consecutive clips, one clip of evenly spaced frames, or
every frame in clips that each span the tracklet (training's spacing)."""
TEST_MODES = tuple(TEST_CLIPS)

log = logging.getLogger("stgcn_pyg.data")


def _single_threaded(loader):
    """Iterate ``loader``; with no worker processes, fetch each batch on one intra-op thread.

    Decoding and resizing are many small tensor operations: torch's thread
    pool makes them several times slower in the main process (3x measured
    on 2 cores), whereas workers run single-threaded. The caller's thread
    count is restored before each batch is handed over.
    """
    it = iter(loader)
    if getattr(loader, "num_workers", 0) > 0:
        yield from it
        return
    while True:
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            batch = next(it)
        except StopIteration:
            return
        finally:
            torch.set_num_threads(n)
        yield batch


def _frames_column(df: pd.DataFrame) -> list[list[str]]:
    if not isinstance(df, pd.DataFrame) or "frames" not in df.columns:
        raise ConfigError("expected a tracklet table (a DataFrame with a 'frames' column)")
    frames = [list(f) for f in df["frames"]]
    for r, f in enumerate(frames):
        if not f:
            name = df["tracklet"].iloc[r] if "tracklet" in df.columns else r
            raise DatasetError(f"tracklet {name} has no frames")
    return frames


class TrackletTrainSet(Dataset):
    """Training tracklets; item ``(row, draw_seed)`` -> a :class:`TrackletData`.

    The draw seed fixes the restricted random frames and the augmentation.
    Every item shares ``graph`` (edges built once per T, not per item).
    Extra attributes: ``label`` (pid relabelled 0..C-1), ``skipped`` (frames
    replaced because unreadable).
    """

    def __init__(self, df: pd.DataFrame, seq_len: int, transform: TrackletTransform, graph: TrackletGraph,
                 raw: bool = False, decode: str = "cpu"):
        self.frames = _frames_column(df)
        self.pids = df["pid"].to_numpy(np.int64)
        self.camids = df["camid"].to_numpy(np.int64)
        uniq = sorted(set(self.pids.tolist()))
        self.pid2label = {p: i for i, p in enumerate(uniq)}
        self.labels = np.array([self.pid2label[p] for p in self.pids.tolist()], np.int64)
        self.seq_len, self.transform, self.graph = seq_len, transform, graph
        self.raw = raw  # uint8 frames + erasing rectangles, normalised later (on the GPU)
        self.decode = decode  # "cuda": batches carry the JPEG bytes, decoded in the main process
        self._templates = {}
        self._pool = BufferPool()  # in-process batches reuse released frame buffers

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, item) -> TrackletData:
        row, seed = item if isinstance(item, tuple) else (item, 0)
        paths = self.frames[row]
        rng = np.random.default_rng(seed)
        idx = restricted_random(len(paths), self.seq_len, rng)
        imgs, skipped = load_tracklet_frames(paths, idx)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        extra = {}
        if self.raw:
            x, erase = self.transform.geometric(imgs, gen)
            extra["erase"] = erase if erase is not None else torch.zeros(x.size(0), 4, dtype=torch.long)
        else:
            x = self.transform(imgs, gen)
        return TrackletData.from_frames(
            x, int(self.pids[row]), int(self.camids[row]), graph=self.graph,
            label=torch.tensor([int(self.labels[row])]), skipped=torch.tensor([len(skipped)]), **extra,
        )

    def __getitems__(self, items) -> list:
        """The DataLoader's batched fetch: the whole batch, built at once (:func:`~stgcn_pyg.data.batching.train_batch`)."""
        return [train_batch(self, items)]


class TrainLoader:
    """Iterable over training batches; ``len()`` batches per epoch, ``set_epoch()`` to reshuffle.

    Each batch is a :class:`~torch_geometric.data.Batch` with ``frames``
    [B*T, 3, H, W], ``pid``, ``camid``, ``label`` [B], the two offset edge sets
    and ``skipped`` [B]. ``num_skipped_frames`` counts unreadable frames met.
    """

    def __init__(self, loader, sampler: RandomIdentitySampler, dataset: TrackletTrainSet, device=None,
                 decoder=None):
        self.loader, self.sampler, self.dataset = loader, sampler, dataset
        self.device = None if device is None else torch.device(device)
        self.decoder = decoder  # decode="cuda": JPEG bytes -> frames on the device
        self.num_skipped_frames = 0

    @property
    def num_classes(self) -> int:
        return len(self.dataset.pid2label)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for batch in _single_threaded(self.loader):
            n = int(batch.skipped.sum())
            if n:
                self.num_skipped_frames += n
                log.warning("skipped %d unreadable frame(s) in this batch (%d so far)", n, self.num_skipped_frames)
            if self.decoder is not None:
                tf = self.dataset.transform
                batch = decode_on_device(batch, self.device, self.decoder, tf.size, tf.mean, tf.std)
            elif self.device is not None:
                # uint8 frames travel (a quarter of the bytes); normalise and erase on the device.
                batch = batch.to(self.device, non_blocking=True)
                batch.frames = normalize_frames(batch.frames, batch.erase)
                del batch.erase
            yield batch


def _pin(pin_memory):
    return torch.cuda.is_available() if pin_memory is None else bool(pin_memory)


def build_train_loader(df: pd.DataFrame, *, seq_len: int = 8, num_ids: int = 16, num_instances: int = 4,
                       image_size=DEFAULT_IMAGE_SIZE, graph: TrackletGraph | None = None, num_stripes: int | None = None,
                       temporal_topology=None, spatial_topology=None, num_workers: int = 0, seed: int = 0,
                       random_erasing: bool = False, rank: int = 0, world_size: int = 1,
                       pin_memory=None, flip_prob: float = 0.5, prefetch_factor: int = 4,
                       device=None, decode: str = "cpu", decoder=None) -> TrainLoader:
    """Batches of ``num_ids`` identities x ``num_instances`` tracklets from a training table (``dataset.train``).

    The tracklet graphs are ``graph`` (give the model's, ``model.graph``) or
    the graph of ``num_stripes`` and the two topologies (the model's config
    values; the model rejects batches whose graph is not its own).

    With ``device`` (e.g. "cuda"), workers send uint8 frames, and the loader
    moves each batch to ``device`` and normalises (and erases) there: the
    same values as without it, a quarter of the bytes through shared and
    pinned memory. Without it batches stay on the CPU, frames float32.

    ``decode="cuda"`` (with a CUDA ``device``): workers only read the JPEG
    files' bytes; the main process decodes each batch on the device in one
    nvjpeg call and resizes, flips and normalises there. ``decoder`` replaces
    that call (``decoder(list of byte tensors) -> frames on device``; tests
    pass a CPU stand-in).
    """
    if seq_len < 1:
        raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
    if decode not in DECODE_MODES:
        raise ConfigError(f"data.decode: {decode!r} is not one of {', '.join(map(repr, DECODE_MODES))}")
    if decode == "cuda":
        if device is None or (decoder is None and torch.device(device).type != "cuda"):
            raise ConfigError(f'data.decode = "cuda" decodes on a CUDA device; the training device is '
                              f'{"the CPU" if device is None else torch.device(device)}: use data.decode = "cpu"')
        decoder = decoder or device_jpeg_decoder(device)
    transform = TrackletTransform(image_size, train=True, flip_prob=flip_prob, random_erasing=random_erasing)
    graph = resolve_graph(graph, num_stripes, temporal_topology, spatial_topology)
    ds = TrackletTrainSet(df, seq_len, transform, graph, raw=device is not None, decode=decode)
    sampler = RandomIdentitySampler(ds.pids, num_instances, num_ids, seed, rank, world_size)
    extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers > 0 else {}
    # The JPEG bytes stay in pageable memory (the decoder reads them from the CPU): no pinning then.
    pin = _pin(pin_memory) and decode == "cpu"
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin,
                                         collate_fn=_first, **extra)
    return TrainLoader(loader, sampler, ds, device, decoder if decode == "cuda" else None)


def _first(batches: list):
    return batches[0]  # TrackletTrainSet.__getitems__ collates the batch itself


class ClipTestSet(Dataset):
    """Test clips; item i -> ``(clip [T, 3, H, W], tracklet index)``."""

    def __init__(self, df: pd.DataFrame, seq_len: int, mode: str, transform: TrackletTransform,
                 occlusion: TestOcclusion | None = None, misalignment: TestMisalignment | None = None):
        self.frames = _frames_column(df)
        self.occlusion, self.misalignment = occlusion, misalignment
        # Test-time perturbations of the decoded frames, before the transform, in PERTURBATION_ORDER: the box
        # misaligned first, then the occluder drawn into the misaligned frame.
        given = {"misalignment": misalignment, "occlusion": occlusion}
        self.perturbations = tuple(given[name] for name in PERTURBATION_ORDER if given[name] is not None)
        # A tracklet's perturbations are seeded by its row label, so that a shard (df.iloc[rows]) draws what
        # the whole table would.
        self.keys = ([int(k) for k in df.index] if pd.api.types.is_integer_dtype(df.index)
                     else list(range(len(df))))
        if mode not in TEST_CLIPS:
            raise ConfigError(f"unknown test sampling mode {mode!r}: use {' or '.join(map(repr, TEST_MODES))}")
        self.clips = [(t, c) for t, f in enumerate(self.frames) for c in TEST_CLIPS[mode](len(f), seq_len)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        t, idx = self.clips[i]
        imgs, skipped = load_tracklet_frames(self.frames[t], idx)
        for perturbation in self.perturbations:
            imgs = perturbation.apply(imgs, idx, self.keys[t], len(self.frames[t]))
        return self.transform(imgs), t, len(skipped)


class TestLoader:
    """Iterable of ``(clips [b, T, 3, H, W], tracklet_index [b])``; ``num_skipped_frames`` as in training."""

    def __init__(self, loader, dataset: ClipTestSet):
        self.loader, self.dataset = loader, dataset
        self.num_skipped_frames = 0

    @property
    def num_clips(self) -> int:
        return len(self.dataset)

    @property
    def num_tracklets(self) -> int:
        return len(self.dataset.frames)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for clips, index, skipped in _single_threaded(self.loader):
            n = int(skipped.sum())
            if n:
                self.num_skipped_frames += n
                log.warning("skipped %d unreadable frame(s) (%d so far)", n, self.num_skipped_frames)
            yield clips, index


def build_test_loader(df: pd.DataFrame, *, seq_len: int = 8, mode: str = "all", image_size=DEFAULT_IMAGE_SIZE,
                      batch_size: int = 32, num_workers: int = 0, pin_memory=None,
                      prefetch_factor: int = 4, occlusion: TestOcclusion | None = None,
                      misalignment: TestMisalignment | None = None) -> TestLoader:
    """Clips of a query or gallery table in tracklet order (memory bounded by ``batch_size``).

    ``occlusion`` draws occluders into a share of every tracklet's frames (:class:`TestOcclusion`),
    ``misalignment`` shifts and scales the box of a share of them (:class:`TestMisalignment`); with both, the
    box is misaligned first and the occluder drawn into the misaligned frame."""
    if seq_len < 1 or batch_size < 1:
        raise ConfigError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
    ds = ClipTestSet(df, seq_len, mode, TrackletTransform(image_size, train=False), occlusion, misalignment)
    extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 else {}
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         pin_memory=_pin(pin_memory), **extra)
    return TestLoader(loader, ds)
