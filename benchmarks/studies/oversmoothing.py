"""Benchmark: do the graph branches over-smooth? Node similarity layer by layer, on trained runs.

Run:  .venv/bin/python benchmarks/studies/oversmoothing.py RUN_DIR [RUN_DIR ...] [--out oversmoothing_30ep] [--init]

Each RUN_DIR is a finished run of `benchmarks/studies/ablation.py` (``last.pt``, a folder named
``<variant>-seed<k>``). Its query tracklets (one clip of T evenly spaced frames each, unoccluded) go
through the model, and :meth:`stgcn_pyg.models.STGCN.branch_layers` gives each graph branch's node
features at its input and after each layer. Per graph (a tracklet's T*P patches for the temporal branch,
a frame's P patches for the spatial one) two measures of how alike its nodes are:

- ``mean_cos``: the mean cosine similarity over pairs of distinct nodes (1: all nodes point the same way);
- ``spread``: ||X - mean row||_F / ||X||_F (0: all nodes equal; the share of the features' energy that
  still tells nodes apart).

Over-smoothing shows as ``mean_cos`` rising towards 1 and ``spread`` falling towards 0 with depth. Both
are averaged over graphs. ``--init`` adds each variant's model as it starts training (ImageNet backbone,
fresh graph layers, the first run's seed), for comparison with what training made of it.

Rows go to ``benchmarks/studies/results/<out>.csv`` (resumable: a run already there is skipped), and a table of
means over seeds and a plot to ``<out>.md`` / ``<out>.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.common import append_rows, measured_on, run_folder_parser, runs_of, to_markdown  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def node_similarity(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean_cos, spread)`` per graph of ``x`` [G, n, F] (n >= 2 nodes each), each [G] (see the module doc)."""
    if x.dim() != 3 or x.size(1) < 2:
        raise ValueError(f"x must be [graphs, nodes >= 2, features], got {tuple(x.shape)}")
    x = x.double()
    unit = torch.nn.functional.normalize(x, dim=2)
    n = x.size(1)
    gram = unit @ unit.transpose(1, 2)
    mean_cos = (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (n * (n - 1))
    centred = x - x.mean(1, keepdim=True)
    spread = centred.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    return mean_cos, spread


def measure(model, cfg, *, batch_size: int = 32) -> list[dict]:
    """Rows (branch, layer, mean_cos, spread, graphs) of ``model`` on its config's query split."""
    from stgcn_pyg.data import build_test_loader, load_configured_dataset
    from stgcn_pyg.evaluation import TestOptions

    ds = load_configured_dataset(cfg.data, progress=False)
    options = TestOptions.from_config(cfg, mode="evenly", progress=False)
    loader = build_test_loader(ds.query, **options.replace(num_workers=0, batch_size=batch_size).loader_settings())
    sums: dict[tuple[str, int], list] = {}
    for clips, *_ in loader:
        for branch, layers in model.branch_layers(clips).items():
            for depth, x in enumerate(layers):
                cos, spread = node_similarity(x)
                acc = sums.setdefault((branch, depth), [0.0, 0.0, 0])
                acc[0] += float(cos.sum())
                acc[1] += float(spread.sum())
                acc[2] += x.size(0)
    return [dict(branch=b, layer=d, mean_cos=c / g, spread=s / g, graphs=g) for (b, d), (c, s, g) in sums.items()]


def initial_model(cfg):
    """The model of ``cfg`` as its training starts: pretrained backbone, graph layers from the run's seed."""
    from stgcn_pyg.models import STGCN

    torch.manual_seed(cfg.train.seed)
    return STGCN(cfg.resolved_model()).eval()


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds of each measure, a row per (variant, stage, branch, layer)."""
    rows = []
    for (variant, stage, branch, layer), g in df.groupby(["variant", "stage", "branch", "layer"], sort=True):
        rows.append({"variant": variant, "weights": stage, "branch": branch,
                     "layer": "input" if layer == 0 else f"after layer {layer}", "seeds": len(g),
                     "mean cosine": f"{g.mean_cos.mean():.3f} ± {g.mean_cos.std(ddof=1):.3f}" if len(g) > 1
                     else f"{g.mean_cos.mean():.3f}",
                     "spread": f"{g.spread.mean():.3f} ± {g.spread.std(ddof=1):.3f}" if len(g) > 1
                     else f"{g.spread.mean():.3f}"})
    return pd.DataFrame(rows)


def write_plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    branches = sorted(df.branch.unique())
    fig, axes = plt.subplots(1, len(branches), figsize=(4.5 * len(branches), 3.6), squeeze=False)
    for ax, branch in zip(axes[0], branches):
        for (variant, stage), g in df[df.branch == branch].groupby(["variant", "stage"]):
            m = g.groupby("layer").mean_cos.mean()
            ax.plot(m.index, m.values, marker="o", ls="-" if stage == "trained" else "--",
                    label=f"{variant} ({stage})")
        ax.set_xticks(sorted(df[df.branch == branch].layer.unique()))
        ax.set_title(f"{branch} branch")
        ax.set_xlabel("layer (0 = branch input)")
        ax.set_ylabel("mean cosine similarity of a graph's nodes")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = run_folder_parser(__doc__, "oversmoothing")
    parser.add_argument("--init", action="store_true", help="also measure each variant's model before training")
    args = parser.parse_args(argv)
    runs = runs_of(args)

    from stgcn_pyg.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    csv = RESULTS / f"{args.out}.csv"
    df = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=["variant", "seed", "stage"])
    first_seed = {}
    for _, variant, seed in runs:
        first_seed.setdefault(variant, seed)
    for run, variant, seed in runs:
        stages = ["trained"] + (["init"] if args.init and seed == first_seed[variant] else [])
        todo = [s for s in stages if not ((df.variant == variant) & (df.seed == seed) & (df.stage == s)).any()]
        if not todo:
            continue
        trained, cfg = load_checkpoint(run / "last.pt")
        for stage in todo:
            model = trained if stage == "trained" else initial_model(cfg)
            rows = [dict(variant=variant, seed=seed, stage=stage, **r) for r in measure(model, cfg)]
            df = append_rows(df, rows, csv, float_format="%.6g")
            print(f"{run.name} ({stage}): " + ", ".join(
                f"{r['branch']}[{r['layer']}] {r['mean_cos']:.3f}" for r in rows), flush=True)

    df = df.astype({"seed": int, "layer": int}).sort_values(["variant", "stage", "seed", "branch", "layer"])
    write_plot(df, RESULTS / f"{args.out}.png")
    text = (f"# Over-smoothing: how alike a graph's nodes are, layer by layer\n\n"
            f"Written by `benchmarks/studies/oversmoothing.py` (what it measures: its docstring). {args.study} "
            f"{df.groupby(['variant', 'seed', 'stage']).ngroups} models, each on its query split (one clip of "
            f"T evenly spaced frames per tracklet); measured on {measured_on()}, fp32 "
            f"(the figures do not depend on the CPU beyond float rounding).\n\n"
            f"`mean cosine`: mean cosine similarity of a graph's distinct nodes (1 = all alike); `spread`: "
            f"||X − mean row|| / ||X|| (0 = all equal). Mean ± sd over seeds; `init` is the model as training "
            f"starts (ImageNet backbone, fresh graph layers).\n\n"
            f"{to_markdown(summary(df))}\n\n![mean cosine by layer]({args.out}.png)\n")
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
