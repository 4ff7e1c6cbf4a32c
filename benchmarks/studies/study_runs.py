"""The ablation study's runs: each run in its own process, the results merged into the study's CSVs as they end.

Workers (`run_one`, `run_frozen_job`, `run_finetune_job`) are submitted to a 'spawn' process pool, so they live
at module level here and are imported by name in each worker (the repository root is on the parent's sys.path, which
the workers inherit).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import device_name, git
from benchmarks.studies.frozen_tier import affinity_stats
from benchmarks.studies.study_reports import (
    write_occlusion_report, write_outputs, write_pretrained_report, write_real_report, write_settings_check_report,
    write_study_report, write_test_occlusion_report,
)
from benchmarks.studies.study_variants import CPU_BUDGET, OCCLUSION_LEVELS, REAL_RESULTS, RESULTS, TIERS, VARIANTS


def run_one(job: dict) -> dict:
    """One run through `stgcn_pyg.training.train` (a worker): its row of scores and minutes."""
    import torch

    torch.set_num_threads(job["threads"])
    from rich.console import Console

    from stgcn_pyg.config import load_config
    from stgcn_pyg.training import train

    overrides = job["overrides"] + [f"train.seed={job['seed']}", f'train.output="{job["output"]}"']
    cfg = load_config(job["config"], overrides)
    start = time.perf_counter()
    Path(job["output"]).parent.mkdir(parents=True, exist_ok=True)
    # A run stopped part-way (the session ended, the machine restarted) continues from its last epoch: the same
    # weights as a run never stopped. Its minutes are then this process's only.
    last = Path(job["output"]) / "last.pt"
    resume = last if last.is_file() else None
    with open(Path(job["output"]).with_suffix(".console.txt"), "a" if resume else "w") as fh:
        results = train(cfg, resume=resume, console=Console(file=fh, width=120))
    job["output"] = results["output"]
    if "mAP" not in results:  # it had finished before (nothing to train): its last evaluation, again
        results.update(score_checkpoint(results["output"]))
    return dict(
        variant=job["variant"], seed=job["seed"], minutes=round((time.perf_counter() - start) / 60, 2),
        resumed=resume is not None, **{k: results[k] for k in ("rank1", "rank5", "mAP", "mINP")},
    )


def score_checkpoint(run_dir: str, **changes) -> dict:
    """The scores of a run's last.pt under its own test settings (the training loop's last evaluation), with
    ``changes`` to :class:`~stgcn_pyg.evaluation.TestOptions` on top."""
    import torch

    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import load_configured_dataset
    from stgcn_pyg.evaluation import TestOptions
    from stgcn_pyg.evaluation.evaluate import evaluate_model

    model, cfg = load_checkpoint(Path(run_dir) / "last.pt")
    ds = load_configured_dataset(cfg.data, progress=False)
    with torch.no_grad():
        return evaluate_model(model, ds, TestOptions.from_config(cfg, progress=False, **changes),
                              metric=cfg.eval.metric)


# The shares of every query tracklet's frames occluded at test time (`stgcn-pyg evaluate --occlude`, seed 0,
# gallery clean) each fine-tune run is also scored at; share 0 is scored too, through the same code.
TEST_OCCLUSION_SHARES = (0.0, 0.25, 0.5, 0.75)


def occluded_scores(run_dir: str, shares=TEST_OCCLUSION_SHARES, seed: int = 0, *, slices: bool = False):
    """Yield ``(share, part, scores)`` for a finished run's last.pt with its query occluded at each share
    (:func:`perturbed_scores` with ``--occlude``'s fields)."""
    yield from perturbed_scores(run_dir, "occlude", "occlude_seed", shares, seed, slices=slices)


def score_test_occlusion(run_dir: str, shares=TEST_OCCLUSION_SHARES, seed: int = 0) -> dict:
    """``mAP_occ{100*share}`` (and rank-1) of a finished run's last.pt, its query occluded at each share
    (:func:`occluded_scores`, the whole descriptor)."""
    out = {}
    for share, _, r in occluded_scores(run_dir, shares, seed):
        tag = f"occ{round(100 * share)}"
        out[f"mAP_{tag}"], out[f"rank1_{tag}"] = r["mAP"], r["rank1"]
    return out


# The test-time perturbations of the real-data tier: (column tag, TestOptions field of the share, of the seed).
TEST_PERTURBATIONS = (("occ", "occlude", "occlude_seed"), ("mis", "misalign", "misalign_seed"))


def perturbed_scores(run_dir: str, share_field: str, seed_field: str, shares=TEST_OCCLUSION_SHARES,
                     seed: int = 0, *, slices: bool = False):
    """Yield ``(share, part, scores)`` for a finished run's last.pt with its query perturbed at each share:
    ``share_field`` is the :class:`~stgcn_pyg.evaluation.TestOptions` field of the perturbation (``occlude``,
    ``misalign``), ``seed_field`` that of its seed.

    The run's own test settings (one evenly spaced clip per tracklet in the fine-tune tiers); the gallery's
    descriptors are extracted once, unperturbed. ``part`` is "all" (the whole descriptor f_all) and, with
    ``slices``, also each branch's own slice of it (``model.feature_dims``, in order).
    """
    import torch

    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import load_configured_dataset
    from stgcn_pyg.evaluation import TestOptions, branch_columns
    from stgcn_pyg.evaluation.evaluate import evaluate_dataset_descriptors, extract_split

    model, cfg = load_checkpoint(Path(run_dir) / "last.pt")
    ds = load_configured_dataset(cfg.data, progress=False)
    options = TestOptions.from_config(cfg, progress=False)
    parts = {"all": slice(None), **{b: branch_columns(model.feature_dims, (b,)) for b in
                                    (model.feature_dims if slices else ())}}
    with torch.no_grad():
        gf = extract_split(model, ds.gallery, options, split="gallery")
        for share in shares:
            perturbed = options.replace(**{share_field: share, seed_field: seed})
            qf = extract_split(model, ds.query, perturbed, split="query")
            for part, cols in parts.items():
                yield share, part, evaluate_dataset_descriptors(qf[:, cols], gf[:, cols], ds, perturbed,
                                                                metric=cfg.eval.metric)


def score_test_perturbations(run_dir: str, shares=TEST_OCCLUSION_SHARES, seed: int = 0) -> dict:
    """The real-data tier's perturbation columns of a finished run's last.pt: for each perturbation (``occ``,
    ``mis``) and share, ``mAP_{tag}{100*share}`` and ``rank1_...`` of f_all, and ``{branch}_mAP_{tag}...`` of
    each branch's slice (docs/ablation-real.md's tests of the temporal slice use them)."""
    out = {}
    for tag, share_field, seed_field in TEST_PERTURBATIONS:
        for share, part, r in perturbed_scores(run_dir, share_field, seed_field, shares, seed, slices=True):
            col = f"{tag}{round(100 * share)}"
            if part == "all":
                out[f"mAP_{col}"], out[f"rank1_{col}"] = r["mAP"], r["rank1"]
            else:
                out[f"{part}_mAP_{col}"] = r["mAP"]
    return out


def branch_breakdown(run_dir: str) -> list[dict]:
    """mAP of each branch's own slice of f_all, from a finished run's last.pt.

    Tells apart "the graph branch's features are weak" from "training the
    graph branch hurt the shared backbone" (the global slice of the full
    model against the global-only model).
    """
    import torch

    from stgcn_pyg.data import load_dataset
    from stgcn_pyg.data.loader import build_test_loader
    from stgcn_pyg.evaluation import branch_columns
    from stgcn_pyg.evaluation.evaluate import evaluate_descriptors, extract_split, tracklet_ids
    from stgcn_pyg.checkpoint import load_checkpoint

    model, cfg = load_checkpoint(Path(run_dir) / "last.pt")
    d, e = cfg.data, cfg.eval
    ds = load_dataset(d.dataset if d.root else "synthetic", d.root or None)
    common = dict(seq_len=e.seq_len, mode=e.mode, image_size=tuple(d.image_size), progress=False)
    with torch.no_grad():
        qf, gf = (extract_split(model, df, **common) for df in (ds.query, ds.gallery))
    ids = tracklet_ids
    rows = []
    for branch in model.feature_dims:
        sl = branch_columns(model.feature_dims, (branch,))
        r = evaluate_descriptors(qf[:, sl], gf[:, sl], ids(ds.query, "pid"), ids(ds.gallery, "pid"),
                                 ids(ds.query, "camid"), ids(ds.gallery, "camid"))
        rows.append(dict(branch=branch, rank1=r["rank1"], mAP=r["mAP"]))
        if branch == "temporal" and model.cfg.graph_layer == "gcn":
            loader = build_test_loader(ds.query.head(32), seq_len=d.seq_len, mode="evenly",
                                       image_size=tuple(d.image_size), batch_size=32)
            clips, _ = next(iter(loader))
            rows[-1].update(affinity_stats(model, clips))
    return rows



def _merge(earlier: list[dict], rows: list[dict]) -> list[dict]:
    """Earlier rows, minus those of a (variant, seed) that was run again, plus the new rows."""
    new = {(r["variant"], r["seed"]) for r in rows}
    return [r for r in earlier if (r["variant"], r["seed"]) not in new] + rows


def _jobs_of(rows: list[dict], args) -> list[dict]:
    """The finished runs behind result rows (those whose last.pt is still in --runs-dir)."""
    jobs = [dict(variant=r["variant"], seed=int(r["seed"]), output=str(Path(args.runs_dir) / f"{r['variant']}-seed{int(r['seed'])}"))
            for r in rows]
    return [j for j in jobs if (Path(j["output"]) / "last.pt").is_file()]


def run_study(args, results: Path = RESULTS) -> None:
    """The CPU study: every (variant, seed) of ``args`` trained, ``--jobs`` at a time, then reported.

    ``args``: benchmarks/studies/ablation.py's arguments (variants and seeds already filled in).
    """
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
        earlier = pd.read_csv(results / f"{args.out}.csv").to_dict("records")
    if args.breakdown_only:
        finish_study(args, base, _jobs_of(earlier, args), earlier, results)
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
            write_outputs(pd.DataFrame(_merge(earlier, rows)), args.out, "(partial)", results=results)
    rows = _merge(earlier, rows)
    finish_study(args, base, _jobs_of(rows, args), rows, results)


def finish_study(args, base: list[str], jobs: list[dict], rows: list[dict], results: Path = RESULTS) -> None:
    """Score each finished run's branch slices (unless --no-breakdown) and write the CPU study's report."""
    import torch

    breakdown = None
    if args.breakdown:
        parts = []
        for job in jobs:
            for r in branch_breakdown(job["output"]):
                parts.append(dict(variant=job["variant"], seed=job["seed"], **r))
        breakdown = pd.DataFrame(parts)
        breakdown.to_csv(results / f"{args.out}_branches.csv", index=False)
    write_study_report(rows, args.out, config=args.config, overrides=base, jobs=args.jobs,
                       device=device_name("cuda" if torch.cuda.is_available() else "cpu"),
                       command=" ".join(a for a in sys.argv[1:] if a != "--breakdown-only"),
                       appended=args.append, breakdown=breakdown, results=results)
    print((results / f"{args.out}.md").read_text())


def _level(row: dict) -> str:
    """A result row's occlusion level ("" in the tables that have none)."""
    level = row.get("level", "")
    return level if isinstance(level, str) else ""


def _key(row: dict) -> tuple:
    """A result row's identity in the pretrained study's CSVs: (tier, occlusion level, variant, seed)."""
    return row["tier"], _level(row), row["variant"], int(row["seed"])


def run_frozen_job(job: dict) -> dict:
    """One frozen-tier run on the cached features (a worker): its row and its learning curve."""
    import torch

    torch.set_num_threads(job["threads"])
    torch.set_flush_denormal(True)
    from benchmarks.studies import frozen_tier

    from stgcn_pyg.config import load_config
    from stgcn_pyg.training.run import load_data

    cfg = load_config(job["config"], job["overrides"] + [f"train.seed={job['seed']}"])
    ds = load_data(cfg)
    cache = frozen_tier.build_cache(ds, image_size=tuple(cfg.data.image_size), num_stripes=cfg.model.num_stripes)
    out = frozen_tier.train_frozen(cfg, cache, ds, eval_every=job["eval_every"])
    curve = [dict(tier="frozen", variant=job["variant"], seed=job["seed"], **c) for c in out["curve"]]
    return dict(row=dict(tier="frozen", variant=job["variant"], seed=job["seed"], **out["result"]), curve=curve)


def run_finetune_job(job: dict) -> dict:
    """One fine-tune run through `stgcn_pyg.training.train`, then its branch slices and affinity (and, in the
    real-data tier, each branch's slice under test-time occlusion and misalignment)."""
    tier = job.get("tier", "finetune")
    row = run_one(job)  # on the CPU, the run flushes denormals (train.flush_denormal)
    metrics = pd.read_csv(Path(job["output"]) / "metrics.csv")
    curve = [dict(tier=tier, variant=job["variant"], seed=job["seed"], epoch=int(r.epoch),
                  step=int(r.step) if "step" in metrics else None, loss=r.loss, rank1=r.rank1, mAP=r.mAP,
                  mINP=r.mINP, **({"seconds": r.seconds, "images_per_s": r.images_per_s} if tier == "real" else {}))
             for r in metrics.itertuples() if not pd.isna(getattr(r, "mAP", float("nan")))]
    row.update(score_all_frames(job["output"]))
    if tier == "real":
        row.update(score_test_perturbations(job["output"]))
    else:
        row.update(score_test_occlusion(job["output"]))
    for part in branch_breakdown(job["output"]):
        row[f"{part['branch']}_mAP"] = part["mAP"]
        for k in ("aff_top", "aff_same_stripe", "aff_hub"):
            if k in part:
                row[k] = part[k]
    row["tier"] = tier
    if tier == "real":  # which code and CPU trained it: fp32 training differs in its last digits across CPUs
        row.update(commit=_commit(), device=device_name("cpu"))
    if job.get("level"):
        row["level"] = job["level"]
        for c in curve:
            c["level"] = job["level"]
    return dict(row=row, curve=curve)


def anchor_wanted(args, done: set) -> bool:
    """Whether ``run_tier`` scores the untrained backbone first: once per real-tier results file, as every
    trained run's floor; a settings check (``--paired-with``) reports trained pairs only, so it gets none."""
    return (args.tier == "real" and not getattr(args, "paired_with", None)
            and (args.force or ("real", "", "anchor", 0) not in done))


def anchor_row(config: str, overrides: list[str], output: Path) -> dict:
    """The real-data study's floor: the ImageNet backbone with no training on the data, scored as every run is.

    The global branch of ``config`` (its backbone and weights) at seed 0's initialisation: its descriptor is
    the backbone's pooled feature through an untrained BN neck (the identity in eval mode, up to its eps).
    Written as ``output``/last.pt, so the same scoring reads it.
    """
    import torch

    from stgcn_pyg.checkpoint import save_checkpoint
    from stgcn_pyg.config import config_to_dict, load_config
    from stgcn_pyg.models import STGCN

    start = time.perf_counter()
    cfg = load_config(config, overrides + VARIANTS["global"] + ["train.seed=0", f'train.output="{output}"'])
    torch.manual_seed(0)
    model = STGCN(cfg.resolved_model()).eval()
    output.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output / "last.pt", {"config": config_to_dict(cfg), "model": model.state_dict()})
    r = score_checkpoint(str(output))
    row = dict(tier="real", variant="anchor", seed=0, resumed=False, commit=_commit(), device=device_name("cpu"),
               **{k: r[k] for k in ("rank1", "rank5", "mAP", "mINP")})
    row.update(score_all_frames(str(output)))
    row.update(score_test_perturbations(str(output)))
    row["minutes"] = round((time.perf_counter() - start) / 60, 2)
    return row


def _commit() -> str:
    """The checkout's commit (short), with "+" when it has uncommitted changes ("" outside git)."""
    head = git("rev-parse", "--short", "HEAD")
    return head + ("+" if head and git("status", "--porcelain", "--untracked-files=no") else "")


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


def run_tier(args, results: Path = RESULTS) -> None:
    """Train the tier's missing (variant, seed) runs, two at a time, merging each into the results as it ends.

    ``args``: benchmarks/studies/ablation.py's arguments; the results are ``{args.out}.csv`` and ``{args.out}_curves.csv``
    under ``results``, and the report is written there when the runs end.
    """
    from rich.progress import Progress

    tier = TIERS[args.tier]
    variants = args.variants or tier["variants"]
    seeds = args.seeds or tier["seeds"]
    csv_path, curve_path = results / f"{args.out}.csv", results / f"{args.out}_curves.csv"
    if args.reuse_default and not args.force:
        reuse_default_rows(args.out, args.reuse_default, variants, seeds, results)
    rows = pd.read_csv(csv_path).to_dict("records") if csv_path.is_file() else []
    done = {_key(r) for r in rows}
    config = tier.get("config", args.config)
    base = tier["overrides"] + ([f'data.root="{args.root}"'] if args.root else []) + args.overrides
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    levels = args.occlusion or [""]
    jobs = [dict(config=config, tier=args.tier, variant=v, seed=s, threads=threads, level=level,
                 overrides=base + OCCLUSION_LEVELS.get(level, []) + VARIANTS[v], eval_every=tier["eval_every"],
                 output=str(Path(args.runs_dir) / args.tier / level / f"{v}-seed{s}"))
            for s in seeds for level in levels for v in variants
            if args.force or (args.tier, level, v, s) not in done]
    from stgcn_pyg.config import load_config
    from stgcn_pyg.training.run import load_data

    cfg = load_config(config, base)
    ds = load_data(cfg)
    for level in levels:  # each level's set generated once, before the workers race for it
        if OCCLUSION_LEVELS.get(level):
            load_data(load_config(config, base + OCCLUSION_LEVELS[level]))
    if anchor_wanted(args, done):
        _merge_rows(csv_path, [anchor_row(config, base, Path(args.runs_dir) / args.tier / "anchor-seed0")])
    if args.tier == "frozen":
        from benchmarks.studies import frozen_tier

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
        write_occlusion_report(args.out, args.config, base, results)
    elif getattr(args, "paired_with", None):
        write_settings_check_report(args.out, args.paired_with, args.overrides, results)
    elif args.tier == "real":
        write_real_report(args.out, results, baseline=None if args.out == REAL_RESULTS else REAL_RESULTS)
    else:
        write_pretrained_report(args.out, args.overrides, results)
        if args.tier == "finetune":
            write_test_occlusion_report(args.out, results)


def reuse_default_rows(out: str, source: str, variants: list[str], seeds: list[int],
                       results: Path = RESULTS) -> list[tuple]:
    """Copy the fine-tune runs of ``source`` into the sweep ``out`` as its default level (the same set-up).

    ``out`` and ``source`` are file stems under ``results``.

    The sweep's default level is the tier's own set, so its runs repeat the tier study's bit for bit. The
    copy is made only if every (variant, seed) trained in both agrees on rank-1, mAP and mINP to 1e-6 (at
    least one must), and each copied row names its origin in ``reused_from``. Its ``*_allframes`` scores stay empty
    when the source has none (the source's checkpoints are needed to compute them). Returns the keys copied.
    """
    src_path, out_path = results / f"{source}.csv", results / f"{out}.csv"
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
    curves_path = results / f"{source}_curves.csv"
    if curves_path.is_file():
        c = pd.read_csv(curves_path)
        copied = pd.MultiIndex.from_tuples([(r["variant"], int(r["seed"])) for r in new])
        c = c[(c.tier == "finetune") & pd.MultiIndex.from_arrays([c.variant, c.seed.astype(int)]).isin(copied)]
        _merge_rows(results / f"{out}_curves.csv", [dict(r, level="default") for r in c.to_dict("records")])
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
