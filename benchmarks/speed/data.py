"""Benchmark the training data pipeline: frames per second by loader workers.

What is timed: an epoch of the training loader, batches of num_ids x
num_instances tracklets (decode with TorchCodec or torchvision.io, resize to the training
size, flip, restricted random sampling, TrackletData graphs, PyG
collation), each batch handed to the device (``.to(device)``,
synchronised), on the synthetic dataset written in MARS layout. Two paths are compared:

* ``cpu-float``: workers normalise, float32 frames travel to the device
  (the default of ``build_train_loader``);
* ``device-uint8``: workers send uint8 frames, normalised on the device
  (``build_train_loader(..., device=...)``): a quarter of the bytes through
  shared memory, pinning and the PCIe copy;
* ``device-decode`` (CUDA only, ``--paths``): workers send the JPEG bytes,
  decoded on the GPU by nvjpeg (``data.decode = "cuda"``).

With ``--model`` (CUDA) it also times the model's training step at the same
batch (STGCN, ResNet-50, random weights, bf16 autocast, Adam) to give the
frames per second the model consumes, and the ratio supply / demand.

    python benchmarks/speed/data.py                       # CPU here, results/data_loading_cpu.*
    python benchmarks/speed/data.py --device cuda --model # the GPU machine, results/data_loading_cuda.*
    python benchmarks/speed/data.py --quick               # a tiny smoke run
    python benchmarks/speed/data.py --baselines           # how hard the synthetic set is (CPU, ~1 min):
                                                    # results/data_synthetic_baselines.*
    python benchmarks/speed/data.py --per-core            # the loader's uint8 path beside the bare decode of the
                                                    # same frames, per core (~1 min): results/data_per_core*

``--per-core`` (issue 34) times, on one thread and alternating batch by batch,
the loader's uint8 path (what a GPU receives: sampling, decode, resize, flip,
graphs and Data, PyG collation; no normalisation) and the bare decode (and
resize) of the same frames, for the synthetic set (128x64 JPEGs, resized)
and one drawn at MARS's 256x128 (not resized), both generated into the
cache in MARS layout; then each stage on its own, the loader with 1 and 2
workers, and what handing a worker's batch to the main process costs. Its
last line: ``loader/decode per core: synthetic X, mars-size Y``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.common import device_name, to_markdown  # noqa: E402

from stgcn_pyg.data import build_train_loader, ensure_synthetic, load_dataset

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loader(train, *, workers: int, path: str, device: torch.device, batches: int, args) -> dict:
    kw = dict(seq_len=args.seq_len, num_ids=args.num_ids, num_instances=args.num_instances,
              image_size=tuple(args.image_size), num_workers=workers, seed=0,
              pin_memory=device.type == "cuda")
    if path in ("device-uint8", "device-decode"):
        kw["device"] = device
    if path == "device-decode":
        kw["decode"] = "cuda"
    loader = build_train_loader(train, **kw)
    n = batches + 1  # epochs are chained when shorter
    frames = 0
    it = iter(loader)
    # The first batch pays for worker start-up: not timed.
    b = next(it)
    if path == "cpu-float":
        b = b.to(device, non_blocking=True)
    _sync(device)
    t0 = time.perf_counter()
    done = 0
    while done < n - 1:
        try:
            b = next(it)
        except StopIteration:  # a short epoch: start the next one
            loader.set_epoch(done + 1)
            it = iter(loader)
            continue
        if path == "cpu-float":
            b = b.to(device, non_blocking=True)
        frames += int(b.frames.size(0))
        done += 1
    _sync(device)
    dt = time.perf_counter() - t0
    del it, loader
    return {"path": path, "workers": workers, "batches": done, "frames/s": frames / dt,
            "ms/batch": 1000 * dt / max(done, 1)}


def time_model(num_classes: int, device: torch.device, args, steps: int = 12) -> float:
    """Frames per second one training step of the paper's configuration consumes."""
    from torch_geometric.data import Batch

    from stgcn_pyg.config import LossConfig, ModelConfig
    from stgcn_pyg.data import tracklet_batch
    from stgcn_pyg.models import STGCN, STGCNLoss

    cfg = ModelConfig(weights="none", num_classes=num_classes, seq_len=args.seq_len)
    model = STGCN(cfg).to(device).to(memory_format=torch.channels_last)
    model.channels_last = True
    crit = STGCNLoss.from_config(LossConfig())
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    B = args.num_ids * args.num_instances
    frames = torch.randn(B, args.seq_len, 3, *args.image_size)
    labels = torch.arange(args.num_ids).repeat_interleave(args.num_instances)
    batch: Batch = tracklet_batch(frames, labels, torch.zeros(B), graph=model.graph).to(device)
    labels = labels.to(device)
    times = []
    for i in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(batch)
            loss, _ = crit(out, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return B * args.seq_len / (sum(times) / len(times))


def _stripe_hsv(df, stripes: int, bins: int = 8, centre: bool = False):
    """Per tracklet: sqrt of the mean per-stripe HSV histogram (every other frame)."""
    import numpy as np
    from PIL import Image

    out = []
    for fr in df.frames:
        acc = 0
        for p in fr[::2]:
            a = np.asarray(Image.open(p).convert("HSV")).astype(np.int64)
            if centre:
                w = a.shape[1]
                a = a[:, w // 4: w - w // 4]
            code = (a[..., 0] * bins // 256) * bins * 2 + (a[..., 1] * bins // 256) * 2 + (a[..., 2] > 128)
            H = code.shape[0]
            hs = [np.bincount(code[i * H // stripes:(i + 1) * H // stripes].ravel(), minlength=bins * bins * 2)
                  for i in range(stripes)]
            acc = acc + np.concatenate([h / max(h.sum(), 1) for h in hs])
        out.append(np.sqrt(acc / len(fr[::2])))
    return np.asarray(out)


def contact_sheet(ds, path: Path, ids: int = 8, per_id: int = 8) -> None:
    """A picture of the set: per row one training identity, frames of its tracklets across cameras."""
    from PIL import Image

    df = ds.train
    rows = []
    for pid in sorted(df.pid.unique())[:ids]:
        tr = df[df.pid == pid]
        frames = []
        for k in range(per_id):  # cycle over the identity's tracklets, walking through each
            t = tr.iloc[k % len(tr)]
            frames.append(t.frames[(k // len(tr) * 3) % len(t.frames)])
        rows.append(frames)
    w, h = Image.open(rows[0][0]).size
    sheet = Image.new("RGB", (w * per_id, h * len(rows)), "white")
    for r, frames in enumerate(rows):
        for c, f in enumerate(frames):
            sheet.paste(Image.open(f).convert("RGB"), (c * w, r * h))
    sheet.save(path)


def baselines(ds, out_stem: Path) -> pd.DataFrame:
    """Hand-crafted baselines on the synthetic set: does appearance alone solve it?

    Raw colour histograms (whole box, centre, stripes) and a linear metric
    (regularised LDA, 40 dims) learned on the training identities.
    """
    import numpy as np
    import scipy.linalg

    from stgcn_pyg.metrics import compute_distance, evaluate_rank

    def score(q, g, g_off):
        rows = {}
        for proto, gal in (("standard", ds.gallery), ("official", official.gallery)):
            gg = g if proto == "standard" else g_off
            d = compute_distance(torch.tensor(q, dtype=torch.float32), torch.tensor(gg, dtype=torch.float32))
            cmc, mAP = evaluate_rank(d, ds.query.pid.values, gal.pid.values, ds.query.camid.values,
                                     gal.camid.values, protocol=proto)
            rows[f"rank1 {proto}"], rows[f"mAP {proto}"] = 100 * float(cmc[0]), 100 * float(mAP)
        return rows

    official = load_dataset("mars", ds.root, protocol="official")
    rows = []
    for name, stripes, centre in (("HSV histogram, whole box", 1, False), ("HSV histogram, box centre", 1, True),
                                  ("HSV histogram, 4 stripes", 4, False)):
        q, g = _stripe_hsv(ds.query, stripes, centre=centre), _stripe_hsv(ds.gallery, stripes, centre=centre)
        g_off = _stripe_hsv(official.gallery, stripes, centre=centre)
        rows.append({"method": name, **score(q, g, g_off)})
        if stripes == 4:
            X, y = _stripe_hsv(ds.train, stripes), ds.train.pid.to_numpy()
            mu = X.mean(0)
            Sw, Sb = np.zeros((X.shape[1],) * 2), np.zeros((X.shape[1],) * 2)
            for p in np.unique(y):
                Xp = X[y == p]
                m = Xp.mean(0)
                Sw += (Xp - m).T @ (Xp - m)
                Sb += len(Xp) * np.outer(m - mu, m - mu)
            _, V = scipy.linalg.eigh(Sb, Sw + 0.1 * np.trace(Sw) / len(Sw) * np.eye(len(Sw)))
            lda = V[:, -40:]
            rows.append({"method": "4 stripes + LDA learned on train ids", **score(q @ lda, g @ lda, g_off @ lda)})
    df = pd.DataFrame(rows)
    df.to_csv(out_stem.with_suffix(".csv"), index=False, float_format="%.2f")
    text = ["# How hard is the synthetic set? Hand-crafted baselines", "",
            f"Synthetic set `{ds.root.parent.name}` ({ds.num_train_pids} train ids, {len(ds.query)} queries, {len(ds.gallery)} gallery tracklets in the "
            "standard protocol). Rank-1 and mAP in %.", "", to_markdown(df, floatfmt=".1f")]
    out_stem.with_suffix(".md").write_text("\n".join(text) + "\n")
    return df


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--root", default=None, help="a MARS-layout dataset (default: the synthetic set, generated)")
    p.add_argument("--num-synthetic-ids", type=int, default=100)
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default 0,2,4,8,... cores)")
    p.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    p.add_argument("--seq-len", type=int, default=8)
    p.add_argument("--num-ids", type=int, default=16)
    p.add_argument("--num-instances", type=int, default=4)
    p.add_argument("--image-size", type=int, nargs=2, default=[256, 128])
    p.add_argument("--paths", default="cpu-float,device-uint8")
    p.add_argument("--model", action="store_true", help="also time the model's training step (CUDA)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--baselines", action="store_true", help="only the hand-crafted baselines (hardness)")
    p.add_argument("--per-core", action="store_true",
                   help="only the per-core table: the loader's uint8 path beside the bare decode, both sources")
    p.add_argument("--per-core-batches", type=int, default=12, help="timed batches per source (--per-core)")
    p.add_argument("--note", default="", help="a sentence added under the table (conditions of the run)")
    p.add_argument("--out", default=None, help="output stem (default results/data_loading_<device type>)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.quick:
        args.batches, args.num_ids, args.num_instances, args.seq_len = 3, 4, 2, 4
        args.image_size, args.num_synthetic_ids = [64, 32], 8
        workers = [0, 2]
    elif args.workers:
        workers = [int(w) for w in args.workers.split(",")]
    else:
        workers = sorted({0, 2, 4, 8, cores} | ({16} if cores >= 16 else set()))
    if args.per_core:
        return per_core(args)
    t0 = time.perf_counter()
    root = args.root or ensure_synthetic(num_ids=args.num_synthetic_ids)
    gen_s = time.perf_counter() - t0
    ds = load_dataset("mars", root)
    if args.baselines:
        contact_sheet(ds, RESULTS / "data_synthetic_samples.png")
        df = baselines(ds, RESULTS / "data_synthetic_baselines")
        console.print(df.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        return 0
    console.print(f"dataset {ds.root}: {len(ds.train)} train tracklets, {ds.train.num_frames.sum()} frames "
                  f"(ready in {gen_s:.1f} s); device {device_name(device)}; {cores} CPU cores")
    rows = []
    for path in args.paths.split(","):
        for w in workers:
            r = time_loader(ds.train, workers=w, path=path, device=device, batches=args.batches, args=args)
            console.print(f"{path:13s} workers={w:2d}: {r['frames/s']:8.0f} frames/s ({r['ms/batch']:.0f} ms/batch)")
            rows.append(r)
    df = pd.DataFrame(rows)
    demand = None
    if args.model:
        demand = time_model(ds.num_train_pids, device, args)
        console.print(f"model training step consumes {demand:.0f} frames/s")
        df["supply/demand"] = df["frames/s"] / demand
    df.insert(0, "device", device_name(device))
    df.insert(1, "cpu_cores", cores)
    df["batch"] = f"{args.num_ids}x{args.num_instances}x{args.seq_len} @ {args.image_size[0]}x{args.image_size[1]}"
    stem = Path(args.out) if args.out else RESULTS / f"data_loading_{device.type}{'_quick' if args.quick else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.3f")
    lines = [f"# Training data pipeline throughput ({device_name(device)}, {cores} CPU cores)", "",
             f"Synthetic set in MARS layout ({len(ds.train)} train tracklets, source JPEGs "
             f"{_source_size(ds)}), batch {df['batch'].iloc[0]}; frames/s of decode + resize + flip + "
             "graphs + collate + transfer to the device.", ""]
    if demand is not None:
        lines += [f"Model training step (STGCN, ResNet-50, bf16 autocast, Adam, random weights): "
                  f"**{demand:.0f} frames/s** consumed; supply/demand > 1 keeps the GPU fed.", ""]
    lines.append(to_markdown(df.drop(columns=["device", "cpu_cores", "batch"]), floatfmt=".2f"))
    if args.note:
        lines += ["", args.note]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.md')}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# --per-core: the loader's uint8 path beside the bare decode of the same frames, per core (issue 34).

SOURCES = {"synthetic": dict(num_ids=100), "mars-size": dict(num_ids=40, height=256, width=128)}
"""The two sources: the synthetic set (128x64 JPEGs, resized to 256x128) and one drawn at MARS's 256x128
(MARS layout, JPEGs of MARS's size in bytes, not resized)."""


def _batch_list(train, args, n: int):
    """``n`` sampler batches (epochs chained) and the training set that fetches them (uint8 path)."""
    from stgcn_pyg.data.loader import build_train_loader

    loader = build_train_loader(train, seq_len=args.seq_len, num_ids=args.num_ids, num_instances=args.num_instances,
                                image_size=tuple(args.image_size), seed=0, device="cpu", pin_memory=False)
    batches, e = [], 0
    while len(batches) < n:
        batches += loader.sampler.global_batches(e)
        e += 1
    return loader.dataset, batches[:n]


def _bare(ds, items) -> int:
    """Read and decode each distinct frame of the batch once, stack and resize each tracklet: the floor."""
    import numpy as np
    import torchvision.transforms.v2.functional as F

    from stgcn_pyg.data.sampling import restricted_random
    from stgcn_pyg.data.transforms import decode_frame, read_bytes, stack_frames

    n = 0
    for row, seed in items:
        paths = ds.frames[row]
        idx = restricted_random(len(paths), ds.seq_len, np.random.default_rng(seed)).tolist()
        got = {i: decode_frame(read_bytes(paths[i]), paths[i]) for i in set(idx)}
        x = stack_frames([got[i] for i in idx])
        if tuple(x.shape[-2:]) != ds.transform.size:
            x = F.resize(x, list(ds.transform.size), antialias=True)
        n += x.size(0)
    return n


def _stages(ds, items, torchvision_first: bool = False) -> dict:
    """Seconds per stage of the loader's work on ``items``, each stage timed on its own, tracklet by tracklet
    (as the loader works: a tracklet's decoded frames are released once written)."""
    import copy
    import warnings

    import numpy as np
    import torchvision.transforms.v2.functional as F
    from torchvision.io import ImageReadMode, decode_image

    from stgcn_pyg.data.batching import _template, frame_buffer
    from stgcn_pyg.data.sampling import restricted_random
    from stgcn_pyg.data.transforms import decode_frame, read_bytes, stack_frames

    T, size = ds.seq_len, ds.transform.size
    s = dict.fromkeys(("sampling", "read", "decode", "(decode with torchvision instead)", "resize", "flip + write",
                       "graph/Data + collation"), 0.0)
    clock = time.perf_counter

    def torchvision_decoder(data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            t = clock()
            kept = [decode_image(v, mode=ImageReadMode.RGB) for v in data.values()]  # held, as the loader's are
            s["(decode with torchvision instead)"] += clock() - t
            del kept

    t = clock()
    out = frame_buffer(len(items) * T, size, ds._pool)
    s["flip + write"] += clock() - t
    for b, (row, seed) in enumerate(items):
        t = clock()
        rng = np.random.default_rng(seed)
        idx = restricted_random(len(ds.frames[row]), T, rng).tolist()
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        flip = torch.rand((), generator=gen).item() < ds.transform.flip_prob
        s["sampling"] += clock() - t
        t = clock()
        data = {i: read_bytes(ds.frames[row][i]) for i in set(idx)}
        s["read"] += clock() - t
        if torchvision_first:  # alternated between batches: neither decoder always meets the bytes first
            torchvision_decoder(data)
        t = clock()
        got = {i: decode_frame(data[i], "") for i in data}
        s["decode"] += clock() - t
        if not torchvision_first:
            torchvision_decoder(data)
        t = clock()
        x = [got[i] for i in idx]
        if tuple(x[0].shape[-2:]) != size:
            x = F.resize(stack_frames(x), list(size), antialias=True)
        s["resize"] += clock() - t
        t = clock()
        slot = out[b * T:(b + 1) * T]
        if isinstance(x, list):
            for k, f in enumerate(x):
                slot[k].copy_(f.flip(-1) if flip else f)
        else:
            slot.copy_(x.flip(-1) if flip else x)
        s["flip + write"] += clock() - t
        del got, x
    t = clock()
    batch = copy.copy(_template(ds, len(items)))
    for key, value in list(batch.items()):
        if isinstance(value, torch.Tensor):
            batch[key] = value.clone()
    rows = [r for r, _ in items]
    batch.pid, batch.camid = torch.as_tensor(ds.pids[rows]), torch.as_tensor(ds.camids[rows])
    batch.label, batch.skipped = torch.as_tensor(ds.labels[rows]), torch.zeros(len(rows), dtype=torch.long)
    batch.frames = out
    s["graph/Data + collation"] += clock() - t
    return s


def _transfer(ds, batches, pause: float) -> tuple[float, float]:
    """Seconds a worker's batches cost to hand over: (the main process's, the worker's extra).

    Main process: ``next()`` on a batch already waiting (one worker, the main process idle ``pause`` s
    before each), unpickling the shared-memory handles, plus its first read of the frames (page faults on
    the shared pages). Worker: writing the frames into fresh shared memory rather than into a reused buffer.
    """
    from torch.utils.data import DataLoader

    from stgcn_pyg.data.batching import train_batch
    from stgcn_pyg.data.loader import _first

    it = iter(DataLoader(ds, batch_sampler=batches, num_workers=1, collate_fn=_first, prefetch_factor=2))
    next(it)
    main = 0.0
    for _ in batches[1:]:
        time.sleep(pause)
        t = time.perf_counter()
        b = next(it)
        b.frames.permute(0, 2, 3, 1).reshape(-1)[::4096].sum()  # one byte per page (a view: NHWC memory)
        main += time.perf_counter() - t
    del it
    worker = 0.0
    for items in batches[1:]:
        x = train_batch(ds, items).frames
        t = time.perf_counter()
        shared = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(x.numel()), 0,
                                                         (x.size(0), x.size(2), x.size(3), 3)).permute(0, 3, 1, 2)
        shared.copy_(x)
        worker += time.perf_counter() - t
        t = time.perf_counter()
        x.copy_(shared)  # the same bytes into a buffer already mapped
        worker -= time.perf_counter() - t
        del x, shared
    return main, worker


def _workers_rate(ds, batches, workers: int) -> float:
    """Frames/s of the loader's uint8 path with ``workers`` processes (the first batch, start-up, not timed)."""
    from torch.utils.data import DataLoader

    from stgcn_pyg.data.loader import _first

    loader = DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=_first,
                        persistent_workers=False, prefetch_factor=4)
    it = iter(loader)
    next(it)
    t, n = time.perf_counter(), 0
    for b in it:
        n += b.frames.size(0)
    dt = time.perf_counter() - t
    del it, loader
    return n / dt


def per_core(args) -> int:
    """The table of issue 34, item 1 (see ``--per-core``); its last line is the headline ratio."""
    from benchmarks.common import cpu_flags, cpu_model

    from torch_geometric.data import Batch

    from stgcn_pyg.data.batching import train_batch
    from stgcn_pyg.data.transforms import DECODER

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n_batches = 3 if args.quick else args.per_core_batches
    threads = torch.get_num_threads()
    rows, stage_rows, headline, spread = [], [], {}, {}
    for source, synth in SOURCES.items():
        kw = dict(synth, num_ids=8, height=synth.get("height", 128) // 2, width=synth.get("width", 64) // 2) \
            if args.quick else synth
        ds_all = load_dataset("mars", ensure_synthetic(progress=False, **kw))
        ds, batches = _batch_list(ds_all.train, args, n_batches + 1)
        src = _source_size(ds_all)
        torch.set_num_threads(1)
        try:
            train_batch(ds, batches[0])  # warm-up (templates, decoder)
            _bare(ds, batches[0])
            t_loader = t_bare = t_item = 0.0
            n_frames = 0
            stages = None
            for k, items in enumerate(batches[1:]):  # interleaved, so that a change of load hits every column alike
                t = time.perf_counter()
                b = train_batch(ds, items)
                dt_loader = time.perf_counter() - t
                n_frames += b.frames.size(0)
                del b
                t = time.perf_counter()
                _bare(ds, items)
                dt_bare = time.perf_counter() - t
                t_loader, t_bare = t_loader + dt_loader, t_bare + dt_bare
                spread.setdefault(source, []).append(dt_bare / dt_loader)
                t = time.perf_counter()
                Batch.from_data_list([ds[i] for i in items])  # per-item Data and PyG's collation (before)
                t_item += time.perf_counter() - t
                s = _stages(ds, items, torchvision_first=k % 2 == 1)
                stages = s if stages is None else {k: stages[k] + v for k, v in s.items()}
            transfer, transfer_worker = _transfer(ds, batches, pause=1.5 * t_loader / n_batches)
        finally:
            torch.set_num_threads(threads)
        bare = n_frames / t_bare
        loader = n_frames / t_loader
        headline[source] = loader / bare
        common_cols = {"source": source, "source JPEG": src, "resized": src != f"{args.image_size[0]}x{args.image_size[1]}"}
        rows.append({**common_cols, "path": "bare decode (+resize)", "workers": 0, "frames/s": bare,
                     "frames/s per core": bare, "of bare decode": 1.0})
        rows.append({**common_cols, "path": "loader uint8", "workers": 0, "frames/s": loader,
                     "frames/s per core": loader, "of bare decode": loader / bare})
        item = n_frames / t_item
        rows.append({**common_cols, "path": "per-item Data + PyG collation (before)", "workers": 0, "frames/s": item,
                     "frames/s per core": item, "of bare decode": item / bare})
        for w in (1, 2):
            r = _workers_rate(ds, batches, w)
            per = r / min(w, cores)
            rows.append({**common_cols, "path": "loader uint8", "workers": w, "frames/s": r,
                         "frames/s per core": per, "of bare decode": per / bare})
        total = sum(v for k, v in stages.items() if not k.startswith("("))
        for k, v in {**stages, "transfer: main process": transfer,
                     "transfer: worker (fresh shared memory)": transfer_worker}.items():
            stage_rows.append({"source": source, "stage": k, "us/frame": 1e6 * v / n_frames,
                               "share of loader": v / total if k in stages and not k.startswith("(") else float("nan")})
        console.print(f"{source}: bare {bare:.0f}, loader {loader:.0f} frames/s per core ({loader / bare:.2f})")
    flags = cpu_flags() or []
    cpu = f"{cpu_model() or 'unknown'} CPU ({cores} cores; flags {', '.join(flags) or 'no avx512/amx'})"
    df, st = pd.DataFrame(rows), pd.DataFrame(stage_rows)
    df.insert(0, "cpu", cpu)
    stem = Path(args.out) if args.out else RESULTS / f"data_per_core{'_quick' if args.quick else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.3f")
    st.to_csv(stem.with_name(stem.name + "_stages.csv"), index=False, float_format="%.3f")
    lines = ["# The loader's uint8 path against the bare decode, per core", "",
             f"{cpu}; decoder {DECODER}; batch {args.num_ids}x{args.num_instances}x{args.seq_len} at "
             f"{args.image_size[0]}x{args.image_size[1]}, {n_batches} batches per source, measured side by side "
             f"(interleaved) in one run of `python benchmarks/speed/data.py --per-core`, {time.strftime('%Y-%m-%d')}.", "",
             "*loader uint8*: what a GPU receives (sampling, decode, resize, flip, graphs and Data, PyG collation; "
             "no normalisation). *bare decode (+resize)*: reading and decoding each distinct frame once and "
             "resizing each tracklet, nothing else. In-process rows run on one thread; with workers, frames/s per "
             "core divides by the worker count (the main process shares the cores).", "",
             to_markdown(df.drop(columns=["cpu"]), floatfmt=".2f"), "",
             "Loader/bare per batch (in-process): " + "; ".join(
                 f"{k} {min(v):.2f} to {max(v):.2f}, median {sorted(v)[len(v) // 2]:.2f}" for k, v in spread.items())
             + ".", "",
             "Where a frame's time goes (in-process, each stage timed on its own). Transfer, with workers: the main "
             "process's `next()` on a batch already waiting (unpickling the shared-memory handles) and its first "
             "read of the frames; the worker's extra cost of writing them into fresh shared memory rather than into "
             "a reused buffer:", "",
             to_markdown(st, floatfmt=".2f")]
    if args.note:
        lines += ["", args.note]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.md')}")
    print(f"loader/decode per core: synthetic {headline['synthetic']:.2f}, mars-size {headline['mars-size']:.2f}")
    return 0


def _source_size(ds) -> str:
    from PIL import Image

    w, h = Image.open(ds.train.frames.iloc[0][0]).size
    return f"{h}x{w}"


if __name__ == "__main__":
    sys.exit(main())
