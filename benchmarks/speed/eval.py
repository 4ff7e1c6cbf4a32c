"""Benchmark: stgcn_pyg.metrics.evaluate_rank at MARS size, against a plain loop and torchreid.

Run:  .venv/bin/python benchmarks/speed/eval.py [--torchreid-site DIR] [--device cuda] [--quick]

What it measures, in one run on one machine:
- ours: ``evaluate_rank`` (standard and official protocols) on random
  1,980 x 9,330 distances (MARS: queries x standard gallery), best of N;
- loop: a plain per-query numpy loop (argsort each row, torchreid's
  eval_market1501 logic) — the anchor when torchreid's Cython path cannot be
  built (it measured 1.6x faster than the loop);
- torchreid: ``torchreid.reid.metrics.rank.evaluate_rank`` of the PyPI
  package (0.2.5) when it is importable (``pip install --no-deps --target DIR
  torchreid`` and ``--torchreid-site DIR``); its rank.py is loaded by file so
  that torchreid's heavy package ``__init__`` is not needed. Its pure-Python
  path always runs. Its Cython path runs when the extension is built: the
  PyPI package ships rank_cylib/setup.py but not rank_cy.pyx, so copy
  ``torchreid/metrics/rank_cylib/rank_cy.pyx`` from a deep-person-reid
  checkout into ``DIR/torchreid/reid/metrics/rank_cylib/`` and run
  ``pip install cython && cythonize -i rank_cy.pyx`` there (needs a C
  compiler and numpy's headers);
- ten times the gallery (1,980 x 93,300) for time and peak memory.

Every method's rank-1/5/10/20 and mAP are asserted equal to ours (CMC to
1e-6, mAP to 1e-9; torchreid's Cython code sums AP in float32, so its mAP
to 1e-5 relative). Results go to benchmarks/speed/results/eval_<device>.csv and
.md.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from stgcn_pyg.metrics import evaluate_rank  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# torchreid's Cython path against the plain loop, measured at this size on a 2-core machine (1.1 s vs 1.8 s).
CYTHON_OVER_LOOP = 1.6


def make_problem(num_q, num_g, seed=0, num_ids=625, num_cams=6):
    """Random distances without ties (each row a random permutation of G distinct float32 values).

    Plain float32 uniforms repeat within a row of 93,300 values, and then the
    methods differ only in how they break ties (ours keeps gallery order
    within a tie; argsort's default order is arbitrary).
    """
    rng = np.random.default_rng(seed)
    ranks = rng.permuted(np.broadcast_to(np.arange(num_g, dtype=np.int32), (num_q, num_g)), axis=1)
    distmat = ((ranks + np.float32(0.5)) / np.float32(num_g)).astype(np.float32, order="C")
    del ranks
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = rng.integers(1, num_ids + 1, num_g)
    q_camids = rng.integers(1, num_cams + 1, num_q)
    g_camids = rng.integers(1, num_cams + 1, num_g)
    return distmat, q_pids, g_pids, q_camids, g_camids


def loop_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The plain per-query loop: argsort each row, drop same pid & camera, score."""
    cmcs, aps = [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i])
        matches = g_pids[order] == q_pids[i]
        keep = ~(matches & (g_camids[order] == q_camids[i]))
        hits = matches[keep]
        if not hits.any():
            continue
        cmc = hits.cumsum()
        cmcs.append(np.minimum(cmc[:max_rank], 1))
        aps.append((cmc[hits] / (np.nonzero(hits)[0] + 1.0)).sum() / hits.sum())
    return np.mean(cmcs, 0).astype(np.float32), float(np.mean(aps))


def load_torchreid_rank(site: str | None):
    """torchreid's metrics/rank.py as a module, or (None, reason).

    The module's ``IS_CYTHON_AVAI`` says whether its Cython extension was
    found: rank.py imports it through the torchreid package (whose
    ``__init__`` pulls in the whole library), so a built ``rank_cy*.so``
    beside it is loaded by file and handed to the module here.
    """
    if site:
        sys.path.insert(0, site)
    spec = importlib.util.find_spec("torchreid")
    if spec is None or not spec.submodule_search_locations:
        return None, "torchreid not installed (pip install --no-deps --target DIR torchreid; --torchreid-site DIR)"
    pkg = Path(list(spec.submodule_search_locations)[0])
    rank_py = pkg / "reid" / "metrics" / "rank.py"
    if not rank_py.is_file():
        rank_py = pkg / "metrics" / "rank.py"
    if not rank_py.is_file():
        return None, f"no metrics/rank.py under {pkg}"
    mspec = importlib.util.spec_from_file_location("_torchreid_rank", rank_py)
    mod = importlib.util.module_from_spec(mspec)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        mspec.loader.exec_module(mod)
    if not getattr(mod, "IS_CYTHON_AVAI", False):
        built = sorted((rank_py.parent / "rank_cylib").glob("rank_cy*.so"))
        if built:
            espec = importlib.util.spec_from_file_location("rank_cy", built[0])
            ext = importlib.util.module_from_spec(espec)
            espec.loader.exec_module(ext)
            mod.evaluate_cy, mod.IS_CYTHON_AVAI = ext.evaluate_cy, True
    version = "?"
    for dist in pkg.parent.glob("torchreid-*.dist-info"):
        version = dist.name.split("-")[1].replace(".dist", "")
    return mod, f"torchreid {version}"


CPU_SECONDS = {}  # id(result) -> CPU seconds (all threads) of the best run


def timed(fn, repeats):
    """Best wall time of ``repeats`` runs; the CPU time of that run is kept in CPU_SECONDS."""
    best, cpu, out = float("inf"), float("nan"), None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall, c = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, cpu = wall, c
    CPU_SECONDS[id(out)] = cpu
    return best, out


def rss_mb(field="VmRSS"):
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class PeakRSS:
    """Samples the process's resident memory every 2 ms while the block runs (peak above the start)."""

    def __enter__(self):
        import ctypes
        import gc
        import threading

        gc.collect()
        try:  # hand freed heap pages back to the OS, so that reusing them shows as growth
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self.base = self.peak = rss_mb()
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self.peak = max(self.peak, rss_mb())
                self._stop.wait(0.002)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.extra = self.peak - self.base


class one_core:
    """Pins every thread of this process (and torch to one thread) to a single CPU core meanwhile."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        self.masks = {}
        core = min(os.sched_getaffinity(0))
        torch.set_num_threads(1)
        for tid in os.listdir("/proc/self/task"):
            try:
                self.masks[int(tid)] = os.sched_getaffinity(int(tid))
                os.sched_setaffinity(int(tid), {core})
            except OSError:  # a thread that ended meanwhile
                pass
        return self

    def __exit__(self, *exc):
        for tid, mask in self.masks.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                pass
        torch.set_num_threads(self.threads)


def plot_times(rows, path, title):
    """Horizontal bars of seconds per method at MARS size (log scale)."""
    from stgcn_pyg.viz._common import new_figure, save_figure

    mars = [r for r in rows if r["size"] == rows[0]["size"]]
    fig = new_figure(800, 60 + 50 * len(mars))
    ax = fig.add_subplot(1, 1, 1)
    labels = [f"{r['method']} ({r['protocol']})" for r in mars]
    secs = [r["seconds"] for r in mars]
    ax.barh(range(len(mars)), secs, color=["tab:green" if r["method"].startswith("stgcn") else "tab:gray" for r in mars])
    ax.set_yticks(range(len(mars)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    for i, v in enumerate(secs):
        ax.text(v, i, f" {v:.3g} s", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def check_same(name, cmc, mAP, ref_cmc, ref_mAP, map_rtol=0.0):
    np.testing.assert_allclose(cmc[:50], ref_cmc[:50], atol=1e-6, err_msg=f"{name}: CMC differs from ours")
    assert abs(mAP - ref_mAP) < max(1e-9, map_rtol * abs(ref_mAP)), f"{name}: mAP {mAP} differs from ours {ref_mAP}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (ours only; the others are numpy)")
    ap.add_argument("--torchreid-site", default=os.environ.get("TORCHREID_SITE"),
                    help="a folder holding the torchreid package (pip install --no-deps --target DIR torchreid)")
    ap.add_argument("--repeats", type=int, default=5, help="best of N for ours (the loops run once)")
    ap.add_argument("--loop-repeats", type=int, default=3, help="best of N for the plain loop (torchreid runs once)")
    ap.add_argument("--no-torchreid-python", action="store_true", help="skip torchreid's pure-Python path (~40 s)")
    ap.add_argument("--quick", action="store_true", help="a 10x smaller problem (smoke test)")
    ap.add_argument("--no-large", action="store_true", help="skip the 10x gallery")
    ap.add_argument("--large-loop", action="store_true", help="also time the plain loop on the 10x gallery")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, "
                     f"{torch.get_num_threads()} torch threads")
    scale = 10 if args.quick else 1
    Q, G = 1980 // scale, 9330 // scale
    rows = []

    def add(size, method, protocol, seconds, cmc, mAP, peak=None, note="", cpu=float("nan")):
        rows.append({"size": size, "method": method, "protocol": protocol, "seconds": round(seconds, 4),
                     "cpu_seconds": round(cpu, 4),
                     "rank1": round(float(cmc[0]) * 100, 4), "rank5": round(float(cmc[4]) * 100, 4),
                     "rank10": round(float(cmc[9]) * 100, 4), "rank20": round(float(cmc[19]) * 100, 4),
                     "mAP": round(mAP * 100, 6), "peak_extra_MB": "" if peak is None else round(peak, 1),
                     "note": note})
        print(f"{size:>14} {method:<28} {protocol:<9} {seconds:8.3f} s (cpu {cpu:7.3f} s)  rank1 {cmc[0] * 100:6.3f}  mAP {mAP * 100:8.5f}"
              + (f"  peak +{peak:.0f} MB" if peak is not None else ""), flush=True)

    prob = make_problem(Q, G)
    size = f"{Q}x{G}"
    evaluate_rank(*prob, device=device)  # warm-up (thread pools, CUDA context)
    tr, tr_note = load_torchreid_rank(args.torchreid_site)
    cython = tr is not None and tr.IS_CYTHON_AVAI
    # both protocols and torchreid's Cython path take turns, round after round,
    # so that load from other processes on a shared machine hits them alike
    t_std = t_off = t_cy = float("inf")
    for _ in range(args.repeats):
        t, res = timed(lambda: evaluate_rank(*prob, device=device), 1)
        if t < t_std:
            t_std, c_std, (cmc, mAP) = t, CPU_SECONDS[id(res)], res
        t, res = timed(lambda: evaluate_rank(*prob, protocol="official", device=device), 1)
        if t < t_off:
            t_off, c_off, (cmc_o, mAP_o) = t, CPU_SECONDS[id(res)], res
        if cython:
            t, res = timed(lambda: tr.evaluate_rank(*prob, max_rank=50, use_cython=True), 1)
            if t < t_cy:
                t_cy, c_cy, (cy_cmc, cy_mAP) = t, CPU_SECONDS[id(res)], res
    add(size, f"stgcn-pyg ({device.type})", "standard", t_std, cmc, mAP, cpu=c_std)
    add(size, f"stgcn-pyg ({device.type})", "official", t_off, cmc_o, mAP_o, cpu=c_off)
    t_one = None
    if device.type == "cpu" and hasattr(os, "sched_setaffinity"):
        with one_core():
            t_one, res = timed(lambda: evaluate_rank(*prob), args.repeats)
        check_same("ours, 1 core", res[0], res[1], cmc, mAP)
        add(size, "stgcn-pyg (cpu, pinned to 1 core)", "standard", t_one, *res, cpu=CPU_SECONDS[id(res)])

    t_loop, res = timed(lambda: loop_eval(*prob), args.loop_repeats)
    (lcmc, lmAP), c_loop = res, CPU_SECONDS[id(res)]
    check_same("loop", lcmc, lmAP, cmc, mAP)
    add(size, "numpy per-query loop", "standard", t_loop, lcmc, lmAP, note="identical to ours", cpu=c_loop)

    t_tr = None
    if cython:
        check_same("torchreid (Cython)", cy_cmc, cy_mAP, cmc, mAP, map_rtol=1e-5)
        add(size, "torchreid evaluate_rank, Cython", "standard", t_cy, cy_cmc, cy_mAP,
            note=f"{tr_note}, rank_cy built from source; same CMC, mAP to float32", cpu=c_cy)
    else:
        t_cy = None
    if tr is not None and not args.no_torchreid_python:
        t_tr, res = timed(lambda: tr.evaluate_rank(*prob, max_rank=50, use_cython=False), 1)
        (tcmc, tmAP), c_tr = res, CPU_SECONDS[id(res)]
        check_same("torchreid (Python)", tcmc, tmAP, cmc, mAP)
        add(size, "torchreid evaluate_rank, Python", "standard", t_tr, tcmc, tmAP, note=f"{tr_note}; identical to ours",
            cpu=c_tr)
    if tr is None:
        print(f"torchreid: {tr_note}")
    elif not tr.IS_CYTHON_AVAI:
        print(f"torchreid: {tr_note} without its Cython extension (see this script's docstring to build it)")

    large = None
    if not args.no_large:
        del prob
        G10 = G * 10
        big = make_problem(Q, G10, seed=1)
        with PeakRSS() as mem:
            t_big, res = timed(lambda: evaluate_rank(*big, device=device), 1)
        (bcmc, bmAP) = res
        peak = mem.extra if device.type == "cpu" else None
        add(f"{Q}x{G10}", f"stgcn-pyg ({device.type})", "standard", t_big, bcmc, bmAP, peak=peak,
            note=f"distmat itself {big[0].nbytes / 2**20:.0f} MB", cpu=CPU_SECONDS[id(res)])
        large = (t_big, peak, big[0].nbytes / 2**20)
        if args.large_loop:
            t_bl, res = timed(lambda: loop_eval(*big), 1)
            (blc, blm) = res
            check_same("loop (10x)", blc, blm, bcmc, bmAP)
            add(f"{Q}x{G10}", "numpy per-query loop", "standard", t_bl, blc, blm, note="identical to ours",
                cpu=CPU_SECONDS[id(res)])

    if args.quick:  # a smoke test: nothing written
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = device.type
    csv_path, md_path = RESULTS / f"eval_{tag}.csv", RESULTS / f"eval_{tag}.md"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    est_cython = t_loop / CYTHON_OVER_LOOP
    lines = [
        f"# evaluate_rank at MARS size ({Q:,} queries x {G:,} gallery, random distances)",
        "",
        f"Device: {dev_name}; torch {torch.__version__}, numpy {np.__version__}. "
        "All methods in one run; ours is the best of "
        f"{args.repeats} and torchreid's Cython path the best of {args.repeats}, taking turns round after round; "
        f"the plain loop the best of {args.loop_repeats}, torchreid's Python path and the 10x loop run once. Every method's CMC and mAP are asserted equal to ours "
        "(torchreid's Cython code sums AP in float32: its mAP agrees to 1e-5 relative).",
        "",
        "| gallery | method | protocol | wall s | CPU s (all threads) | rank-1 | mAP | extra peak memory |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['size']} | {r['method']} | {r['protocol']} | {r['seconds']:.3f} | {r['cpu_seconds']:.3f} | "
                     f"{r['rank1']:.3f} | "
                     f"{r['mAP']:.4f} | {r['peak_extra_MB'] if r['peak_extra_MB'] != '' else ''}"
                     + (" MB" if r['peak_extra_MB'] != '' else "") + " |")
    lines += [
        "",
        "Ratios (standard protocol, same machine, same run):",
        "",
        f"- plain numpy loop / ours: **{t_loop / t_std:.1f}x** wall, {c_loop / c_std:.1f}x CPU time",
    ]
    if t_cy is not None:
        lines.append(f"- torchreid's Cython path ({tr_note}, measured here) / ours: **{t_cy / t_std:.1f}x** wall, "
                     f"{c_cy / c_std:.1f}x CPU time (target 10x)")
        if t_one is not None:
            lines.append(f"- torchreid's Cython path (one thread) / ours pinned to one core: **{t_cy / t_one:.1f}x** wall")
    else:
        lines.append(f"- torchreid's Cython path, estimated from the loop (Cython measured 1.6x faster than it: "
                     f"{est_cython:.2f} s here) / ours: **{est_cython / t_std:.1f}x** wall (target 10x; not built here)")
    if t_tr is not None:
        lines.append(f"- torchreid's pure-Python path ({tr_note}) / ours: **{t_tr / t_std:.1f}x** wall, "
                     f"{c_tr / c_std:.1f}x CPU time")
    lines += [
        f"- official / standard protocol time: {t_off / t_std:.2f}",
    ]
    if large:
        lines.append(f"- 10x gallery: {large[0]:.2f} s ({large[0] / t_std:.1f}x the MARS-size time); "
                     + (f"peak memory beyond the {large[2]:.0f} MB distance matrix: {large[1]:.0f} MB "
                        "(queries are scored in chunks)" if large[1] is not None else ""))
    md_path.write_text("\n".join(lines) + "\n")
    png_path = plot_times(rows, RESULTS / f"eval_{tag}.png", f"evaluate_rank, {Q:,} x {G:,} ({dev_name})")
    print(f"wrote {csv_path}, {md_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
