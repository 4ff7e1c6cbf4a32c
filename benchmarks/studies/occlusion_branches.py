"""Benchmark: which branch carries the robustness to occlusion? Each branch's slice of f_all, scored occluded.

Run:  .venv/bin/python benchmarks/studies/occlusion_branches.py RUN_DIR [RUN_DIR ...] [--out occlusion_branches_30ep]

Each RUN_DIR is a finished run of `benchmarks/studies/ablation.py` (``last.pt``, a folder named ``<variant>-seed<k>``).
It is scored as the study scores its ``mAP_occ*`` columns (`stgcn-pyg evaluate --occlude SHARE --seed 0`:
the query occluded at shares 0, 0.25, 0.5 and 0.75, the gallery clean, one evenly spaced clip per tracklet),
on the whole descriptor f_all (``all``) and on each branch's own slice of it (``global``, ``temporal``,
``spatial``: the features the retrieval loss of that branch trained). Within one model the slices see the same
frames, the same occluders and the same backbone, so one slice against another is paired by model; across
variants, only the seeds both have are paired.

Rows go to ``benchmarks/studies/results/<out>.csv`` (resumable: a run already there is skipped); a table of means over
seeds, the paired slice differences and a plot to ``<out>.md`` / ``<out>.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.common import append_rows, measured_on, run_folder_parser, runs_of, to_markdown  # noqa: E402
from benchmarks.studies.study_stats import interval_text, kept_text, mean_text, t_half_width  # noqa: E402
from benchmarks.studies.study_variants import variant_rank  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("global", "temporal", "spatial", "all")


def score_run(run: Path) -> list[dict]:
    """Rows (share in %, part, mAP, rank1) of one finished run."""
    from benchmarks.studies.study_runs import occluded_scores

    return [dict(share=round(100 * share), part=part, mAP=r["mAP"], rank1=r["rank1"])
            for share, part, r in occluded_scores(str(run), slices=True)]


def _by_model(d: pd.DataFrame) -> pd.DataFrame:
    """mAP indexed by (seed, share), a column per part."""
    return d.pivot_table(index=["seed", "share"], columns="part", values="mAP")


def scores_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds of each (variant, part) at each share, and the share of its unoccluded mAP it keeps
    at the largest share (ratio of the means)."""
    shares = sorted(df.share.unique())
    rows = []
    for (variant, part), g in sorted(df.groupby(["variant", "part"]),
                                     key=lambda kv: (variant_rank(kv[0][0]), PARTS.index(kv[0][1]))):
        m = g.pivot_table(index="seed", columns="share", values="mAP")
        rows.append({"variant": variant, "part": part, "seeds": len(m),
                     **{f"{s} %": mean_text(m[s], len(m)) for s in shares},
                     f"kept at {shares[-1]} %": kept_text(m[shares[-1]], m[shares[0]])})
    return pd.DataFrame(rows)


def slice_differences(df: pd.DataFrame, pairs=(("temporal", "global"), ("spatial", "global"),
                                               ("all", "temporal"))) -> pd.DataFrame:
    """Per variant, ``a`` − ``b`` within each model (paired by seed) at each share, and its change from share 0."""
    shares = sorted(df.share.unique())
    rows = []
    for variant, g in sorted(df.groupby("variant"), key=lambda kv: variant_rank(kv[0])):
        wide = _by_model(g)
        for a, b in pairs:
            if a not in wide or b not in wide:
                continue
            diff = (wide[a] - wide[b]).unstack("share")
            rows.append({"variant": variant, "slices": f"{a} − {b}", "seeds": len(diff),
                         **{f"{s} %": interval_text(diff[s]) for s in shares},
                         f"change 0 → {shares[-1]} %": interval_text(diff[shares[-1]] - diff[shares[0]])})
    return pd.DataFrame(rows)


def write_plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted(df.variant.unique(), key=variant_rank)
    fig, axes = plt.subplots(1, len(variants), figsize=(4.5 * len(variants), 3.6), squeeze=False, sharey=True)
    for ax, variant in zip(axes[0], variants):
        g = df[df.variant == variant]
        for k, part in enumerate(PARTS):  # a part keeps its colour and offset in every panel
            if part not in set(g.part):
                continue
            m = g[g.part == part].pivot_table(index="seed", columns="share", values="mAP")
            halves = [t_half_width(m[s]) if len(m) > 1 else 0.0 for s in m.columns]
            ax.errorbar([s + (k - 1.5) * 1.0 for s in m.columns], m.mean().values, yerr=halves, fmt="o-",
                        capsize=3, color=f"C{k}", label=part)
        ax.set_title(f"{variant} ({g.seed.nunique()} seeds)")
        ax.set_xlabel("query frames occluded (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("mAP of the slice (mean over seeds, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = run_folder_parser(__doc__, "occlusion_branches")
    args = parser.parse_args(argv)
    runs = runs_of(args)

    import torch

    torch.set_num_threads(1)
    csv = RESULTS / f"{args.out}.csv"
    df = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=["variant", "seed"])
    for run, variant, seed in runs:
        if ((df.variant == variant) & (df.seed == seed)).any():
            continue
        rows = [dict(variant=variant, seed=seed, **r) for r in score_run(run)]
        df = append_rows(df, rows, csv, float_format="%.6g")
        print(f"{run.name}: " + ", ".join(f"{r['part']}@{r['share']} {r['mAP']:.1f}" for r in rows), flush=True)

    df = df.astype({"seed": int, "share": int}).sort_values(["variant", "seed", "share", "part"])
    write_plot(df, RESULTS / f"{args.out}.png")
    top = df.share.max()
    text = (f"# Which branch carries the robustness to occlusion?\n\n"
            f"Written by `benchmarks/studies/occlusion_branches.py` (what it measures: its docstring). {args.study} "
            f"{df.groupby(['variant', 'seed']).ngroups} models; measured on {measured_on()}, fp32 (the scores do "
            f"not depend on the CPU beyond float rounding).\n\n"
            f"mAP of each branch's slice of f_all and of the whole (`all`) with a share of every query "
            f"tracklet's frames occluded (mean ± sd over seeds; kept: the mean at {top} % over the mean at 0 %):"
            f"\n\n{to_markdown(scores_table(df))}\n\n"
            f"One slice against another within the same models (paired by seed; 95% t-interval; seeds above "
            f"zero), and how the difference changes from 0 % to {top} %:\n\n"
            f"{to_markdown(slice_differences(df))}\n\n![mAP of each slice by share]({args.out}.png)\n")
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
