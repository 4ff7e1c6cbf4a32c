"""Writing a planned synthetic set to disk in the MARS and DukeMTMC-VideoReID layouts, drawn in parallel."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DatasetError
from .attributes import random_identity
from .drawing import camera_background, render_tracklet
from .plan import Plan, SynthConfig, Track, plan_synthetic

__all__ = ["generate_synthetic"]


def _mars_name(tr: Track, frame: int) -> str:
    p = "00-1" if tr.pid == -1 else f"{tr.pid:04d}"
    return f"{p}C{tr.cam}T{tr.index:04d}F{frame:03d}.jpg"


def _duke_name(tr: Track, frame: int, style: str) -> str:
    x = (tr.seed % 40000) + frame
    if style == "underscore":
        return f"{tr.pid:04d}_C{tr.cam}_F{frame:04d}_X{x:05d}.jpg"
    return f"{tr.pid:04d}C{tr.cam}F{frame:04d}X{x:05d}.jpg"


def _render_track(plan_cfg: SynthConfig, ident: dict | None, cam: dict, bg: np.ndarray, tr: Track) -> list[Image.Image]:
    if tr.kind == "distractor" or (tr.kind == "junk" and tr.seed % 2 == 0):
        # A person seen once, or (junk) a zoomed-in piece of one.
        ident = random_identity(np.random.default_rng([tr.seed, 1]))
    return render_tracklet(ident, cam, bg, tr.num_frames, tr.seed, plan_cfg.height, plan_cfg.width,
                           plan_cfg.occlusion_prob, tr.kind, plan_cfg.misalignment)


_WORKER_STATE: dict = {}


def _init_worker(plan: Plan):
    _WORKER_STATE["plan"] = plan
    _WORKER_STATE["bgs"] = {}


def _background(plan: Plan, cam: int, cache: dict) -> np.ndarray:
    if cam not in cache:
        cache[cam] = camera_background(plan.cameras[cam - 1], plan.cfg.height, plan.cfg.width)
    return cache[cam]


def _write_tracks(jobs: list[tuple[int, list[str]]]) -> int:
    """Render tracks ``jobs`` = [(track index, [output path per frame])]; returns frames written."""
    plan: Plan = _WORKER_STATE["plan"]
    n = 0
    for ti, paths in jobs:
        tr = plan.tracks[ti]
        ident = plan.identities[tr.ident_key] if tr.ident_key >= 0 else None
        frames = _render_track(plan.cfg, ident, plan.cameras[tr.cam - 1], _background(plan, tr.cam, _WORKER_STATE["bgs"]), tr)
        for img, path in zip(frames, paths):
            img.save(path, quality=plan.cfg.jpeg_quality)
        n += len(frames)
    return n


def _run_jobs(plan: Plan, jobs: list[tuple[int, list[str]]], workers: int, progress: bool, label: str) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(len(p) for _, p in jobs)
    chunks = [jobs[i:i + 16] for i in range(0, len(jobs), 16)]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  # a bar is for terminals: in a log it would only print its last state
                  disable=not (progress and Console().is_terminal), transient=False) as bar:
        task = bar.add_task(label, total=total)
        if workers <= 1:
            _init_worker(plan)
            for ch in chunks:
                bar.advance(task, _write_tracks(ch))
        else:
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(plan,)) as ex:
                for n in ex.map(_write_tracks, chunks):
                    bar.advance(task, n)


def _savemat(path: Path, key: str, value: np.ndarray) -> None:
    """A MATLAB v5 file, byte-identical for identical data (scipy stamps the time in its header)."""
    import scipy.io

    scipy.io.savemat(str(path), {key: value}, format="5")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 5.0 MAT-file, written by stgcn-pyg synth".ljust(116, b" "))


def _write_mars(plan: Plan, out: Path, workers: int, progress: bool) -> None:
    root = out / "mars"
    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    jobs = []
    tables: dict[str, list[list[int]]] = {"train": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "test": []}
    for ti, tr in enumerate(plan.tracks):
        folder = root / f"bbox_{tr.split}" / ("00-1" if tr.pid == -1 else f"{tr.pid:04d}")
        folder.mkdir(parents=True, exist_ok=True)
        fn = [_mars_name(tr, f + 1) for f in range(tr.num_frames)]
        start = len(names[tr.split]) + 1
        names[tr.split].extend(fn)
        tables[tr.split].append([start, start + len(fn) - 1, tr.pid, tr.cam])
        jobs.append((ti, [str(folder / n) for n in fn]))
    for split in ("train", "test"):
        (info / f"{split}_name.txt").write_text("\n".join(names[split]) + "\n")
        # MARS ships these tables as doubles in MATLAB v5 files.
        _savemat(info / f"tracks_{split}_info.mat", f"track_{split}_info", np.asarray(tables[split], np.float64))
    _savemat(info / "query_IDX.mat", "query_IDX", (np.asarray(plan.query, np.float64) + 1)[None, :])
    _run_jobs(plan, jobs, workers, progress, "synth (MARS layout)")


def _write_duke(plan: Plan, out: Path, workers: int, progress: bool, style: str) -> None:
    root = out / "dukemtmc-videoreid"
    jobs = []
    query = set(plan.query)
    n_train = sum(1 for t in plan.tracks if t.split == "train")
    # Duke's query holds one tracklet per test identity (the first of the MARS queries of that id).
    first_q: dict[int, int] = {}
    for q in sorted(query):
        first_q.setdefault(plan.tracks[n_train + q].pid, n_train + q)
    counters: dict[int, int] = {}
    next_pid = max(t.pid for t in plan.tracks) + 1
    for ti, tr in enumerate(plan.tracks):
        if tr.kind == "junk":
            continue  # Duke has no junk tracklets
        if tr.kind == "distractor":
            # Each distractor is a person of its own, seen in the gallery only.
            tr_pid, split = next_pid, "gallery"
            next_pid += 1
        else:
            tr_pid = tr.pid
            split = "train" if tr.split == "train" else ("query" if first_q.get(tr.pid) == ti else "gallery")
        counters[tr_pid] = counters.get(tr_pid, 0) + 1
        folder = root / split / f"{tr_pid:04d}" / f"{counters[tr_pid]:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        named = replace(tr, pid=tr_pid)
        jobs.append((ti, [str(folder / _duke_name(named, f + 1, style)) for f in range(tr.num_frames)]))
    _run_jobs(plan, jobs, workers, progress, "synth (Duke layout)")


def generate_synthetic(out: str | os.PathLike, cfg: SynthConfig | None = None, *, layout: str = "mars",
                       workers: int = 0, progress: bool = True, duke_style: str = "plain") -> Path:
    """Write the synthetic dataset under ``out`` (``out/mars`` and/or ``out/dukemtmc-videoreid``).

    ``layout`` is "mars", "duke" or "both"; ``workers`` processes draw in
    parallel (0 = up to 8, one per CPU core); the result does not depend on it.
    Returns ``out``, the root that ``load_dataset("mars" | "dukemtmc-videoreid", out)`` reads.
    """
    cfg = cfg or SynthConfig()
    if layout not in ("mars", "duke", "both"):
        raise DatasetError(f"unknown synthetic layout {layout!r}: use mars, duke or both")
    if duke_style not in ("plain", "underscore"):
        raise DatasetError(f"unknown Duke frame-name style {duke_style!r}: use plain or underscore")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if workers <= 0:
        workers = min(8, os.cpu_count() or 1)
    plan = plan_synthetic(cfg)
    if layout in ("mars", "both"):
        _write_mars(plan, out, workers, progress)
    if layout in ("duke", "both"):
        _write_duke(plan, out, workers, progress, duke_style)
    (out / "synth.json").write_text(json.dumps({"config": asdict(cfg), "layout": layout}, indent=1))
    return out
