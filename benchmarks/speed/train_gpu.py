"""Training-step benchmark: the paper's STGCN configuration vs the global-branch-only model.

Runs the paper's setting (ResNet-50, last stride 1, 256x128 frames, T=8,
16 ids x 4 tracklets = 512 images per step, bf16 autocast + channels_last on
CUDA) on the built-in synthetic set in MARS layout and records, for each model
variant in the same process and on the same batches:

* steps/s, images/s and ms/step of full training steps (forward, loss,
  backward, Adam update), timed with CUDA synchronisation;
* peak GPU memory of the variant;
* the share of step time the graph branches add over the global-only model
  (the target: at most +15%).

The model-step timing cycles through a few batches pre-loaded onto the device,
so that the data pipeline (JPEG decoding on the CPU) does not hide the model's
cost; the end-to-end loader throughput is measured separately for the full
model. Results go to ``benchmarks/studies/results/train_gpu[_quick].{csv,md}``.

    python benchmarks/speed/train_gpu.py                # on a GPU: a few hundred steps per variant
    python benchmarks/speed/train_gpu.py --quick        # CPU smoke run with tiny sizes (checks the script)
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root

from stgcn_pyg.config import load_config  # noqa: E402
from stgcn_pyg.data import build_train_loader, load_dataset  # noqa: E402
from stgcn_pyg.models import STGCN, STGCNLoss  # noqa: E402
from stgcn_pyg.training.run import build_optimizer  # noqa: E402
from stgcn_pyg.training.trainer import train_step  # noqa: E402

VARIANTS = {
    "global-only": ["global"],
    "global+temporal": ["global", "temporal"],
    "global+spatial": ["global", "spatial"],
    "STGCN (all three)": ["global", "temporal", "spatial"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny CPU-sized run (ResNet-18, 64x32, T=2, few steps)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 200; quick: 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default 20; quick: 1)")
    p.add_argument("--loader-steps", type=int, default=None, help="steps timed with the real loader (default 50)")
    p.add_argument("--device", default="auto")
    p.add_argument("--weights", default="none", help='backbone weights: none (default: timing only) or "imagenet"')
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: min(8, cpus))")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list of: " + ", ".join(VARIANTS))
    p.add_argument("--root", default=None, help="synthetic set root (default: generated in the cache)")
    p.add_argument("--out", default=str(HERE / "results"))
    return p.parse_args(argv)


def settings(args):
    if args.quick:
        over = ["model.backbone=resnet18", "data.image_size=[64, 32]", "data.seq_len=2", "eval.seq_len=2", "data.num_ids=2",
                "data.num_instances=2", "model.temporal_width=64", "model.spatial_width=64",
                "data.synthetic_ids=6", "data.synthetic_frames=[4, 6]", "data.synthetic_image_size=[64, 32]"]
        steps, warmup, loader_steps = args.steps or 3, args.warmup if args.warmup is not None else 1, 2
    else:
        over = ["data.synthetic_ids=100", "data.synthetic_image_size=[256, 128]"]
        steps, warmup, loader_steps = args.steps or 200, args.warmup if args.warmup is not None else 20, 50
    if args.loader_steps is not None:
        loader_steps = args.loader_steps
    cfg = load_config("mars", over + [f'model.weights="{args.weights}"', "data.dataset=synthetic"])
    cfg.model = cfg.resolved_model()
    return cfg, steps, warmup, loader_steps


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(cfg, branches, batches, device, steps, warmup, use_amp):
    """Timed training steps of one model variant cycling over pre-loaded batches."""
    mcfg = type(cfg.model)(**{**vars(cfg.model), "branches": list(branches), "weights": "none"})
    torch.manual_seed(0)
    model = STGCN(mcfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    crit = STGCNLoss.from_config(cfg.loss)
    opt = build_optimizer(model, cfg.optim)
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else (lambda: None)
    for i in range(warmup):
        train_step(model, crit, opt, batches[i % len(batches)], device, amp())
    sync(device)
    losses = []
    start = time.perf_counter()
    for i in range(steps):
        loss, _ = train_step(model, crit, opt, batches[i % len(batches)], device, amp())
        losses.append(loss)
    sync(device)
    seconds = time.perf_counter() - start
    images = sum(int(batches[i % len(batches)].frames.size(0)) for i in range(steps))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    final_loss = float(torch.stack(losses[-5:]).float().mean())
    del model, opt
    return {"steps_per_s": steps / seconds, "images_per_s": images / seconds, "ms_per_step": 1000 * seconds / steps,
            "peak_mem_gib": peak, "loss_last5": final_loss}


def time_loader(cfg, loader, device, steps, use_amp):
    """End-to-end steps/s of the full model with the real loader (decoding included)."""
    torch.manual_seed(0)
    model = STGCN(cfg.model).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    crit, opt = STGCNLoss.from_config(cfg.loss), build_optimizer(model, cfg.optim)
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else (lambda: None)
    it = iter(loader)
    train_step(model, crit, opt, next(it), device, amp())  # workers warm
    sync(device)
    start, images, n = time.perf_counter(), 0, 0
    for batch in it:
        if n == steps:
            break
        train_step(model, crit, opt, batch, device, amp())
        images += int(batch.frames.size(0))
        n += 1
    sync(device)
    seconds = time.perf_counter() - start
    return {"steps_per_s": n / seconds, "images_per_s": images / seconds, "steps": n}


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg, steps, warmup, loader_steps = settings(args)
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if args.device == "auto" else args.device))
    use_amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    d = cfg.data
    print(f"device {device}; generating/reading the synthetic set ...", flush=True)
    ds = load_dataset("synthetic", args.root, num_ids=d.synthetic_ids, min_frames=d.synthetic_frames[0],
                      max_frames=d.synthetic_frames[1], height=d.synthetic_image_size[0],
                      width=d.synthetic_image_size[1],
                      workers=0 if args.quick else (os.cpu_count() or 1))  # generation processes (first use only)
    workers = args.workers if args.workers is not None else (0 if args.quick else min(8, os.cpu_count() or 1))
    loader = build_train_loader(ds.train, seq_len=d.seq_len, num_ids=d.num_ids, num_instances=d.num_instances,
                                image_size=tuple(d.image_size), num_stripes=cfg.model.num_stripes,
                                temporal_topology=cfg.model.temporal_topology,
                                spatial_topology=cfg.model.spatial_topology, num_workers=workers, seed=0,
                                device=device if device.type == "cuda" else None)
    cfg.model.num_classes = loader.num_classes
    batches = []
    for batch in loader:
        batches.append(batch.to(device))
        if len(batches) == 4:
            break
    print(f"{len(batches)} batches of {batches[0].frames.size(0)} images "
          f"({d.num_ids} ids x {d.num_instances} tracklets x T={d.seq_len}, {d.image_size[0]}x{d.image_size[1]})")

    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    rows = []
    for name in wanted:
        print(f"timing {name}: {warmup} warm-up + {steps} steps ...", flush=True)
        r = time_variant(cfg, VARIANTS[name], batches, device, steps, warmup, use_amp)
        rows.append({"variant": name, **r})
        print(f"  {r['ms_per_step']:.1f} ms/step, {r['images_per_s']:.0f} img/s, peak {r['peak_mem_gib']:.2f} GiB")
    base = next((r for r in rows if r["variant"] == "global-only"), None)
    for r in rows:
        r["overhead_vs_global_pct"] = 100 * (r["ms_per_step"] / base["ms_per_step"] - 1) if base else float("nan")
    loader_result = None
    if loader_steps > 0:
        print(f"timing the full model with the real loader ({workers} workers, {loader_steps} steps) ...", flush=True)
        loader_result = time_loader(cfg, loader, device, loader_steps, use_amp)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "train_gpu_quick" if args.quick else "train_gpu"
    fields = ["variant", "ms_per_step", "steps_per_s", "images_per_s", "peak_mem_gib", "overhead_vs_global_pct",
              "loss_last5"]
    with open(out / f"{stem}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in fields})
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    full = next((r for r in rows if r["variant"] == "STGCN (all three)"), None)
    lines = [
        f"# Training step: STGCN vs global-branch-only ({'quick CPU smoke run' if args.quick else 'paper config'})",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; device: {dev_name}; "
        f"torch {torch.__version__}; bf16 autocast: {use_amp}; channels_last: {device.type == 'cuda'}",
        f"- config: {cfg.model.backbone} (last stride {cfg.model.last_stride}), "
        f"{d.image_size[0]}x{d.image_size[1]}, T={d.seq_len}, {d.num_ids} ids x {d.num_instances} tracklets "
        f"= {batches[0].frames.size(0)} images/step, {cfg.model.num_stripes} stripes, "
        f"{cfg.model.temporal_layers} temporal / {cfg.model.spatial_layers} spatial graph layers, Adam; "
        f"synthetic set in MARS layout",
        f"- {warmup} warm-up + {steps} timed steps per variant, cycling over {len(batches)} batches already on "
        f"the device (the model's cost without JPEG decoding)",
        "",
        "| variant | ms/step | steps/s | images/s | peak memory (GiB) | step time vs global-only |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['ms_per_step']:.1f} | {r['steps_per_s']:.2f} | {r['images_per_s']:.0f} "
                     f"| {r['peak_mem_gib']:.2f} | {r['overhead_vs_global_pct']:+.1f}% |")
    lines.append("")
    if full is not None and base is not None:
        share = 100 * (1 - base["ms_per_step"] / full["ms_per_step"])
        verdict = "meets" if full["overhead_vs_global_pct"] <= 15 else "misses"
        lines.append(f"Graph branches: {full['overhead_vs_global_pct']:+.1f}% step time over the global-only model "
                     f"({share:.1f}% of the full model's step); target at most +15%: {verdict}.")
    if loader_result is not None:
        lines.append(f"End to end with the real loader ({workers} workers): {loader_result['steps_per_s']:.2f} steps/s, "
                     f"{loader_result['images_per_s']:.0f} images/s over {loader_result['steps']} steps.")
    if args.quick:
        lines.append("")
        lines.append("Quick run: tiny sizes on the CPU to check the script; the numbers say nothing about a GPU.")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / (stem + '.csv')} and {out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
