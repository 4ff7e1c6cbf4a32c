"""Benchmark: how the test clips are drawn, scored on trained runs of the ablation study.

Run:  .venv/bin/python benchmarks/studies/test_modes.py RUN_DIR [RUN_DIR ...] [--out test_modes_30ep]

Each RUN_DIR is a finished run (``last.pt``; named ``<variant>-seed<k>`` as `benchmarks/studies/ablation.py` names
them). Every run is scored on its own test split three ways, the same weights each time:

- ``evenly``: one clip of T evenly spaced frames per tracklet (what the training loop reports);
- ``all``: every frame, in consecutive clips of T, the clip descriptors averaged (the dense test,
  `stgcn-pyg evaluate`'s default);
- ``strided``: every frame, in clips that each take one frame of each of T equal chunks of the tracklet
  (the spacing training samples), averaged.

The question it answers: the 480-step study found all-frames testing scores full STGCN *lower* than one
clip, while the global branch gains a little from it. If consecutive clips are the cause (the graph
branches see 8 neighbouring frames, which training never shows them), ``strided`` should recover the
loss. Rows go to ``benchmarks/studies/results/<out>.csv`` (resumable: a run and mode already there is skipped)
and a table of means and of ``full`` − ``global`` paired by seed to ``<out>.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.studies.study_stats import paired_text  # noqa: E402
from benchmarks.common import append_rows, measured_on, run_folder_parser, runs_of, to_markdown  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("evenly", "all", "strided")


def score_modes(run_dir: Path, modes=MODES) -> list[dict]:
    """rank-1, mAP and mINP of ``run_dir/last.pt`` under each test mode, with the number of clips scored."""
    import torch

    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import build_test_loader, load_configured_dataset
    from stgcn_pyg.evaluation import TestOptions
    from stgcn_pyg.evaluation.evaluate import evaluate_model

    model, cfg = load_checkpoint(run_dir / "last.pt")
    ds = load_configured_dataset(cfg.data, progress=False)
    rows = []
    for mode in modes:
        options = TestOptions.from_config(cfg, mode=mode, progress=False)
        clips = sum(build_test_loader(split, **options.replace(num_workers=0).loader_settings()).num_clips
                    for split in (ds.query, ds.gallery))
        start = time.perf_counter()
        with torch.no_grad():
            r = evaluate_model(model, ds, options)
        rows.append(dict(mode=mode, seq_len=options.seq_len, clips=clips, rank1=r["rank1"], mAP=r["mAP"],
                         mINP=r["mINP"], seconds=round(time.perf_counter() - start, 1)))
    return rows


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """A row per mode: each variant's mean mAP, its change from ``evenly`` (and, for ``strided``, from ``all``)
    paired by seed, and full − global paired by seed (the ablation reports' intervals: 2 pairs at least)."""
    rows = []
    for mode in [m for m in MODES if (df["mode"] == m).any()]:
        row = {"mode": mode}
        for variant in sorted(df.variant.unique()):
            runs = df[df.variant == variant]
            v = runs[runs["mode"] == mode].mAP
            row[f"{variant} mAP"] = f"{v.mean():.1f} ({len(v)} seeds)" if len(v) else ""
            by_mode = runs.assign(variant=runs["mode"])  # the modes of one variant, paired by seed
            if mode != "evenly":
                row[f"{variant}: − evenly"] = paired_text(by_mode, "mAP", baseline="evenly").get(mode, "")
            if mode == "strided":  # the hypothesis: spread clips beat consecutive ones
                row[f"{variant}: − all"] = paired_text(by_mode, "mAP", baseline="all").get(mode, "")
        if {"full", "global"} <= set(df.variant):
            row["full − global (paired by seed)"] = paired_text(df[df["mode"] == mode], "mAP").get("full", "")
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def main(argv=None) -> None:
    args = run_folder_parser(__doc__, "test_modes").parse_args(argv)
    runs = runs_of(args)

    import torch

    csv = RESULTS / f"{args.out}.csv"
    df = pd.read_csv(csv) if csv.is_file() else pd.DataFrame()
    for run, variant, seed in runs:
        have = set(df[(df.variant == variant) & (df.seed == seed)]["mode"]) if len(df) else set()
        todo = [m for m in MODES if m not in have]
        if not todo:
            continue
        rows = [dict(variant=variant, seed=seed, **r) for r in score_modes(run, todo)]
        df = append_rows(df, rows, csv)
        print(f"{run.name}: " + ", ".join(f"{r['mode']} {r['mAP']:.1f}" for r in rows), flush=True)

    text = (f"# Test modes: one clip, consecutive clips, strided clips\n\n"
            f"The same trained weights scored three ways on their test split (`benchmarks/studies/test_modes.py`): "
            f"`evenly` one clip of T evenly spaced frames per tracklet; `all` every frame in consecutive clips of "
            f"T, averaged; `strided` every frame in clips that each span the tracklet (one frame of each of T "
            f"equal chunks, training's spacing), averaged. {args.study} {len(df)} scores of "
            f"{df.groupby(['variant', 'seed']).ngroups} runs, measured on {measured_on()}; the scores do "
            f"not depend on the CPU (fp32, torch {torch.__version__}).\n\n"
            f"{to_markdown(summary(df))}\n\n(paired differences: mean [95% t-interval]; seeds above zero)\n\n"
            f"Per run:\n\n{to_markdown(df.sort_values(['variant', 'seed']), floatfmt='.2f')}\n")
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
