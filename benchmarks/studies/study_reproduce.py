"""Does today's code train a study's runs as they were trained? Rerun the first epochs of one and compare.

    python benchmarks/studies/study_reproduce.py --out ablation_paper_30ep --variant global --seed 0 --epochs 2 \\
        --set train.epochs=30 --set optim.step_size=25

Trains the fine-tune tier's ``VARIANT`` at ``SEED`` for ``--epochs`` epochs (the study's worker, one thread,
a temporary folder) and compares its loss, rank-1 and mAP at the last of them with the row of
``{out}_curves.csv`` for that epoch. The runs of a study may be paired across commits only if they agree (to
1e-4: the curves keep 4 places of the scores). ``--set`` gives the study's own overrides; ``train.epochs`` is
then cut to ``--epochs``, which changes nothing before it (the schedule steps at ``optim.step_size``).
Exit 0 if it reproduces, 1 if not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.studies.study_runs import run_one  # noqa: E402
from benchmarks.studies.study_variants import RESULTS, TIERS, VARIANTS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the study's file stem under benchmarks/results")
    parser.add_argument("--variant", default="global", choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2, help="an epoch the study evaluated at")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    curves = pd.read_csv(RESULTS / f"{args.out}_curves.csv")
    want = curves[(curves.tier == "finetune") & (curves.variant == args.variant) & (curves.seed == args.seed)
                  & (curves.epoch == args.epochs)]
    if want.empty:
        raise SystemExit(f"{args.out}_curves.csv has no finetune row for {args.variant} seed {args.seed} "
                         f"at epoch {args.epochs}")
    want = want.iloc[0]
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / f"{args.variant}-seed{args.seed}"
        run_one(dict(config="synthetic", variant=args.variant, seed=args.seed, threads=1, output=str(output),
                     overrides=TIERS["finetune"]["overrides"] + args.overrides + VARIANTS[args.variant]
                     + [f"train.epochs={args.epochs}"]))
        got = pd.read_csv(output / "metrics.csv").set_index("epoch").loc[args.epochs]
    ok = True
    for key in ("loss", "rank1", "mAP"):
        same = abs(float(got[key]) - float(want[key])) <= 1e-4
        ok &= same
        print(f"{key:>5}: now {float(got[key]):.6f}  then {float(want[key]):.6f}  {'same' if same else 'DIFFERENT'}")
    print(f"{args.variant} seed {args.seed}, epoch {args.epochs}: " + ("reproduces" if ok else "does NOT reproduce"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
