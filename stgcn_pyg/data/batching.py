"""A training batch built whole: frames written once into one buffer, graphs collated once per batch size.

:meth:`TrackletTrainSet.__getitems__ <stgcn_pyg.data.loader.TrackletTrainSet>` calls :func:`train_batch`
for a sampler's batch. Per tracklet it draws the frames and the augmentation
exactly as ``__getitem__`` does (same generator, same order), decodes each
distinct frame once, resizes the tracklet's frames in one call and writes
them, flipped or not, into a uint8 channels_last buffer [B*T, 3, H, W]
(shared memory in a worker process, so that the batch crosses to the main
process without a copy). The :class:`~torch_geometric.data.Batch` around it
comes from PyG's collation of B tracklets, done once per batch size and
copied; per batch only pid, camid, label, skipped and erase are new.

With ``decode="cuda"`` the frames are not decoded here: the batch carries the
files' JPEG bytes (``encoded``, ``encoded_sizes``), which
:func:`decode_on_device` decodes on the device in one call, then resizes,
flips and normalises there.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import get_worker_info
from torch_geometric.data import Batch

from ..errors import DatasetError
from .sampling import restricted_random
from .tracklet import TrackletData
from .transforms import CorruptFrameError, decode_frame, erasing_params, is_complete_jpeg, load_tracklet_frames, \
    normalize_frames, read_bytes, stack_frames

__all__ = ["DECODE_MODES", "train_batch", "frame_buffer", "BufferPool", "decode_on_device", "device_jpeg_decoder"]

DECODE_MODES = ("cpu", "cuda")
"""Where training frames are decoded (``data.decode``): in the loader's workers, or on the GPU by nvjpeg."""


def _holders(x: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(x.untyped_storage()._cdata)


def _counts_holders() -> bool:
    x = torch.empty(1)
    alone = _holders(x)
    view = x[:]  # a second holder of x's storage, alive until the count is read
    held = _holders(x)
    del view
    return held == alone + 1


class BufferPool:
    """In-process frame buffers, each reused once nothing but the pool holds it.

    A fresh 50 MB batch costs a page fault per 4 KiB page when first written
    (a fifth of the loader's time per core, measured); the batch before last
    is usually released by then. A held buffer (a caller keeping batches) is
    never reused: a new one is allocated and replaces the oldest in the pool.
    """

    enabled = _counts_holders()  # storage reference counts as this torch reports them

    def __init__(self, size: int = 3):
        self.size, self.buffers = size, []

    def __reduce__(self):
        return BufferPool, (self.size,)  # workers get an empty pool (and never use it)

    def get(self, shape: tuple[int, ...]) -> torch.Tensor:
        for buf in self.buffers:
            if buf.shape == shape and _holders(buf) == self._alone:
                return buf
        buf = torch.empty(shape, dtype=torch.uint8)
        if self.enabled:
            if len(self.buffers) == self.size:
                self.buffers.pop(0)  # the oldest, still held by its batch: the pool lets go of it
            self._alone = _holders(buf)
            self.buffers.append(buf)
        return buf


def frame_buffer(n: int, size: tuple[int, int], pool: BufferPool | None = None) -> torch.Tensor:
    """Uninitialised uint8 frames [n, 3, H, W], channels_last: in a worker process in shared memory, else from
    ``pool`` when given."""
    H, W = size
    if get_worker_info() is not None:
        # As torch's default_collate does: the batch then pickles to the main process as a handle, not a copy.
        storage = torch.UntypedStorage._new_shared(n * H * W * 3)
        x = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (n, H, W, 3))
    elif pool is not None:
        x = pool.get((n, H, W, 3))
    else:
        x = torch.empty(n, H, W, 3, dtype=torch.uint8)
    return x.permute(0, 3, 1, 2)


def _template(ds, B: int) -> Batch:
    """PyG's collation of B tracklets with empty frames (cached per B): the graph part of every batch."""
    key = ("batch", B)
    if key not in ds._templates:
        T = ds.seq_len
        extra = {"erase": torch.zeros(T, 4, dtype=torch.long)} if ds.raw else {}
        items = [TrackletData.from_frames(torch.empty(T, 3, 0, 0, dtype=torch.uint8), graph=ds.graph,
                                          label=torch.zeros(1, dtype=torch.long),
                                          skipped=torch.zeros(1, dtype=torch.long), **extra) for _ in range(B)]
        ds._templates[key] = Batch.from_data_list(items)
    return ds._templates[key]


def _read_encoded(path: str):
    """``("bytes", data)`` for a complete JPEG file (decoded later on the device), else ``("pixels", frame)``."""
    data = read_bytes(path)
    if is_complete_jpeg(data):
        return "bytes", data
    return "pixels", decode_frame(data, path)  # PNG and others, or the error that names a bad file


def train_batch(ds, items) -> Batch:
    """The batch of ``items`` ((row, draw_seed) pairs) of the training set ``ds`` (see the module's doc)."""
    T, size, tf = ds.seq_len, ds.transform.size, ds.transform
    B = len(items)
    encoded = ds.decode == "cuda"
    rows, flips, erases, skipped = [], [], [], []
    frames = frame_buffer(B * T, size, ds._pool) if not encoded else None
    sources, encoded_list, decoded_list, encoded_paths = [], [], [], []
    for b, item in enumerate(items):
        row, seed = item if isinstance(item, tuple) else (item, 0)
        rows.append(row)
        paths = ds.frames[row]
        rng = np.random.default_rng(seed)
        idx = restricted_random(len(paths), T, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        if encoded:
            got, bad = load_tracklet_frames(paths, idx, read=_read_encoded)
            ids = {}
            for (kind, value), i in zip(got, idx.tolist()):
                key = id(value)
                if key not in ids:
                    if kind == "bytes":
                        ids[key] = ("e", len(encoded_list))
                        encoded_list.append(value)
                        encoded_paths.append(paths[i])
                    else:
                        ids[key] = ("d", len(decoded_list))
                        decoded_list.append(value)
                sources.append(ids[key])
        else:
            imgs, bad = load_tracklet_frames(paths, idx)
        skipped.append(len(bad))
        # The draws of TrackletTransform.geometric, in its order: the flip, then the erasing rectangles.
        flip = tf.train and torch.rand((), generator=gen).item() < tf.flip_prob
        flips.append(flip)
        if tf.train and tf.random_erasing:
            erases.append(erasing_params(T, size, tf.erasing_prob, gen))
        if not encoded:
            slot = frames[b * T:(b + 1) * T]
            if all(tuple(f.shape[-2:]) == size for f in imgs):
                for t, f in enumerate(imgs):
                    slot[t].copy_(f.flip(-1) if flip else f)
            else:
                x = tf.resize(imgs)
                slot.copy_(x.flip(-1) if flip else x)
    batch = copy.copy(_template(ds, B))
    for key, value in list(batch.items()):
        if isinstance(value, torch.Tensor):
            batch[key] = value.clone()  # a batch of its own: nothing shared with the template or other batches
        elif isinstance(value, list):
            batch[key] = list(value)
    batch.pid = torch.as_tensor(ds.pids[rows])
    batch.camid = torch.as_tensor(ds.camids[rows])
    batch.label = torch.as_tensor(ds.labels[rows])
    batch.skipped = torch.tensor(skipped, dtype=torch.long)
    erase = torch.cat(erases) if erases else None
    if encoded:
        n = len(encoded_list)
        batch.encoded = torch.cat(encoded_list) if encoded_list else torch.empty(0, dtype=torch.uint8)
        batch.encoded_sizes = torch.tensor([e.numel() for e in encoded_list], dtype=torch.long)
        batch.encoded_paths = encoded_paths
        batch.decoded = decoded_list
        batch.frame_source = torch.tensor([j if k == "e" else n + j for k, j in sources], dtype=torch.long)
        batch.flip = torch.tensor(flips, dtype=torch.bool)
    if ds.raw:
        batch.erase = erase if erase is not None else torch.zeros(B * T, 4, dtype=torch.long)
        if not encoded:
            batch.frames = frames
    else:
        batch.frames = normalize_frames(frames, erase, tf.mean, tf.std)
    return batch


def device_jpeg_decoder(device):
    """``decode(list of JPEG byte tensors) -> list of uint8 [3, h, w] on device``: one batched nvjpeg call
    (TorchCodec's decode_jpeg, else torchvision's)."""
    device = torch.device(device)
    try:
        from torchcodec.decoders import decode_jpeg as tc_decode_jpeg

        return lambda datas: tc_decode_jpeg(datas, mode="RGB", device=device)
    except Exception:  # torchvision's decoder: also one call on a list
        import warnings

        from torchvision.io import ImageReadMode, decode_jpeg

        def decode(datas):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)

        return decode


def _decode_all(datas: list[torch.Tensor], paths: list[str], decoder) -> list[torch.Tensor]:
    try:
        return list(decoder(datas))
    except RuntimeError:
        pass
    # One frame the batch decoder rejects: find it, and let the CPU decoder name the problem.
    out = []
    for data, path in zip(datas, paths):
        try:
            out.append(decoder([data])[0])
        except RuntimeError:
            try:
                frame = decode_frame(data, path)
            except CorruptFrameError as exc:
                raise DatasetError(f"cannot decode a training frame on the device: {exc}") from None
            out.append(frame)
    return out


def decode_on_device(batch: Batch, device, decoder, size: tuple[int, int], mean, std) -> Batch:
    """A batch of JPEG bytes (``decode="cuda"``) -> the batch on ``device`` with normalised frames.

    The distinct frames are decoded in one ``decoder`` call, resized there
    (one call per source size), gathered into [B*T, 3, H, W], flipped per
    tracklet, normalised and erased: the CPU path's values, within the two
    decoders' tolerance.
    """
    device = torch.device(device)
    datas = list(torch.split(batch.encoded, batch.encoded_sizes.tolist())) if batch.encoded.numel() else []
    imgs = _decode_all(datas, batch.encoded_paths, decoder) if datas else []
    imgs += [f.to(device, non_blocking=True) for f in batch.decoded]
    # Resize the distinct frames, grouped by size (a tracklet's frames usually share one).
    H, W = size
    distinct = torch.empty(len(imgs), 3, H, W, dtype=torch.uint8, device=device,
                           memory_format=torch.channels_last)
    by_size: dict[tuple, list[int]] = {}
    for i, f in enumerate(imgs):
        by_size.setdefault(tuple(f.shape), []).append(i)
    for shape, ids in by_size.items():
        x = stack_frames([imgs[i].to(device) for i in ids])
        if tuple(shape[-2:]) != (H, W):
            x = F.resize(x, [H, W], antialias=True)
        distinct[torch.tensor(ids, device=device)] = x
    src, flip, erase = batch.frame_source, batch.flip, batch.erase
    for key in ("encoded", "encoded_sizes", "encoded_paths", "decoded", "frame_source", "flip", "erase"):
        delattr(batch, key)
    batch = batch.to(device, non_blocking=True)
    frames = distinct[src.to(device)]
    B = flip.numel()
    frames = frames.view(B, -1, 3, H, W)
    flip = flip.to(device).view(B, 1, 1, 1, 1)
    frames = torch.where(flip, frames.flip(-1), frames).view(-1, 3, H, W)
    batch.frames = normalize_frames(frames, erase.to(device), mean, std)
    return batch
