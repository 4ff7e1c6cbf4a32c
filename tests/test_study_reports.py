"""benchmarks/studies/study_reports.py: the committed ablation reports regenerate byte-identical from their CSVs.

Each report is rewritten into tmp_path from the committed results (what `benchmarks/studies/ablation.py --report-only`
does in place; docs/ablation-paper.md, "Reproduce") and compared with the committed markdown byte for byte.
Not covered: ablation_pretrained*.md, written by older code (other columns and tier settings), and the CPU
study's reports (ablation_synthetic*.md, ablation_full_rerun.md), whose header names the machine and the command.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "studies" / "results"

# stem -> the --set values its runs had on top of the tier's (the report's "Overrides:" names them all).
PRETRAINED_REPORTS = {
    "ablation_paper": [],  # the frozen tier
    "ablation_paper_12ep": [],  # the fine-tune tier, 192 steps
    "ablation_paper_30ep": ["train.epochs=30", "optim.step_size=25"],  # the fine-tune tier, 480 steps
}


@pytest.fixture(scope="module")
def reports(benchmark_module):
    return benchmark_module("study_reports")


def _copy(tmp_path: Path, *names: str) -> None:
    for name in names:
        shutil.copy(RESULTS / name, tmp_path / name)


def _assert_same(tmp_path: Path, stem: str) -> None:
    got, committed = (tmp_path / f"{stem}.md").read_bytes(), (RESULTS / f"{stem}.md").read_bytes()
    assert got == committed, f"{stem}.md no longer regenerates byte-identical from {stem}.csv"
    assert (tmp_path / f"{stem}.png").stat().st_size > 0


@pytest.mark.parametrize("stem", list(PRETRAINED_REPORTS))
def test_pretrained_reports_regenerate_byte_identical(reports, tmp_path, stem):
    _copy(tmp_path, f"{stem}.csv", f"{stem}_curves.csv")
    reports.write_pretrained_report(stem, PRETRAINED_REPORTS[stem], results=tmp_path)
    _assert_same(tmp_path, stem)


def test_occlusion_report_regenerates_byte_identical(reports, tmp_path):
    _copy(tmp_path, "ablation_occlusion.csv")
    overrides = reports.TIERS["finetune"]["overrides"]
    reports.write_occlusion_report("ablation_occlusion", "synthetic", overrides, results=tmp_path)
    _assert_same(tmp_path, "ablation_occlusion")


def test_test_occlusion_report_regenerates_byte_identical_when_committed(reports, tmp_path):
    stem = "ablation_paper_30ep"
    if not (RESULTS / f"{stem}_test_occlusion.md").is_file():
        pytest.skip("no run of the 480-step tier has been scored under test-time occlusion yet")
    _copy(tmp_path, f"{stem}.csv")
    assert reports.write_test_occlusion_report(stem, results=tmp_path)
    assert (tmp_path / f"{stem}_test_occlusion.md").read_bytes() == (RESULTS / f"{stem}_test_occlusion.md").read_bytes()


def test_test_occlusion_report_by_hand(reports, tmp_path):
    import pandas as pd

    # mAP at shares 0/25/50/75 %: global loses 4 a step; full loses 3, 2 or 1 a step by seed
    rows = []
    for seed, loss in ((8, 3), (9, 2), (10, 1)):
        rows.append(dict(tier="finetune", variant="global", seed=seed, mAP=50.0,
                         **{f"mAP_occ{s}": 50.0 - 4 * k for k, s in enumerate((0, 25, 50, 75))}))
        rows.append(dict(tier="finetune", variant="full", seed=seed, mAP=55.0,
                         **{f"mAP_occ{s}": 55.0 - loss * k for k, s in enumerate((0, 25, 50, 75))}))
    rows.append(dict(tier="finetune", variant="global", seed=0, mAP=48.0))  # an older row, never occluded
    # the single-branch models on other seeds: +temporal − +spatial is 2, 4, 6, 8 (seed 0) and 4, 4, 4, 4 (seed 1)
    for seed, temporal, spatial in ((0, (52, 50, 48, 46), (50, 46, 42, 38)), (1, (54, 51, 48, 45), (50, 47, 44, 41))):
        for variant, scores in (("+temporal", temporal), ("+spatial", spatial)):
            rows.append(dict(tier="finetune", variant=variant, seed=seed, mAP=float(scores[0]),
                             **{f"mAP_occ{s}": float(m) for s, m in zip((0, 25, 50, 75), scores)}))
    pd.DataFrame(rows).to_csv(tmp_path / "s.csv", index=False)
    assert reports.write_test_occlusion_report("s", results=tmp_path)
    text = (tmp_path / "s_test_occlusion.md").read_text()
    # gap at 0 %: +5 in every seed (sd 0: a zero-width interval); at 75 %: 5 + 3*(4 - loss) = +8, +11, +14
    assert "| 0 % | 3 | +5.0 [+5.0, +5.0]; 3/3 |" in text
    # growth to 75 %: +3, +6, +9: mean +6, sd 3, t(0.975, 2) = 4.3027 -> half-width 4.3027 * 3 / sqrt(3) = 7.45
    assert "| 75 % | 3 | +6.0 [-1.5, +13.5]; 3/3 |" in text
    assert "the growth from 0 % to 75 %, +6.0 [-1.5, +13.5]; 3/3 over 3 seeds" in text
    assert "| global | 3 (8, 9, 10) | 50.0 ± 0.0 |" in text  # the row of seed 0 has no occluded scores
    # kept at 75 %: global 38 / 50; full (55 - 3 * mean(3, 2, 1)) / 55 = 49 / 55; +spatial 39.5 / 50
    assert text.count("| 76 % |") == 1 and "| 89 % |" in text and "| 79 % |" in text
    # +temporal − +spatial over seeds 0 and 1: at 0 % 2 and 4 (mean 3, sd sqrt 2, t(0.975, 1) = 12.706:
    # half-width 12.706); at 75 % 8 and 4 (mean 6, sd 2 sqrt 2: half-width 25.41); the change from 0 %: +6 and
    # 0 (mean 3, sd 3 sqrt 2: half-width 38.12)
    assert "| 0 % | 2 | +3.0 [-9.7, +15.7]; 2/2 |  |" in text
    assert "| 75 % | 2 | +6.0 [-19.4, +31.4]; 2/2 | +3.0 [-35.1, +41.1]; 1/2 |" in text
    assert (tmp_path / "s_test_occlusion.png").stat().st_size > 0


def test_no_test_occlusion_report_without_occluded_scores(reports, tmp_path):
    _copy(tmp_path, "ablation_paper_12ep.csv")
    assert reports.write_test_occlusion_report("ablation_paper_12ep", results=tmp_path) is False
    assert not (tmp_path / "ablation_paper_12ep_test_occlusion.md").exists()


@pytest.mark.parametrize("stem, baseline", [("ablation_real", None), ("ablation_real_960", "ablation_real")])
def test_real_report_regenerates_byte_identical_when_committed(reports, tmp_path, stem, baseline):
    if not (RESULTS / f"{stem}.md").is_file():
        pytest.skip(f"no run of {stem} has landed yet")
    _copy(tmp_path, *(f"{name}{suffix}.csv" for name in filter(None, (stem, baseline)) for suffix in ("", "_curves")
                      if (RESULTS / f"{name}{suffix}.csv").is_file()))
    reports.write_real_report(stem, results=tmp_path, baseline=baseline)
    _assert_same(tmp_path, stem)


def test_settings_check_report_regenerates_byte_identical_when_committed(reports, tmp_path):
    stem, baseline = "ablation_real_fast", "ablation_real"
    if not (RESULTS / f"{stem}.md").is_file():
        pytest.skip("the settings check has not been committed")
    _copy(tmp_path, *(f"{name}{suffix}.csv" for name in (stem, baseline) for suffix in ("", "_curves")))
    reports.write_settings_check_report(stem, baseline, ["train.channels_last=on", "optim.fused=true"], tmp_path)
    assert (tmp_path / f"{stem}.md").read_bytes() == (RESULTS / f"{stem}.md").read_bytes()
