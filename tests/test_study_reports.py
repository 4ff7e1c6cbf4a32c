"""benchmarks/study_reports.py: the committed ablation reports regenerate byte-identical from their CSVs.

Each report is rewritten into tmp_path from the committed results (what `benchmarks/ablation.py --report-only`
does in place; docs/ablation-paper.md, "Reproduce") and compared with the committed markdown byte for byte.
Not covered: ablation_pretrained*.md, written by older code (other columns and tier settings), and the CPU
study's reports (ablation_synthetic*.md, ablation_full_rerun.md), whose header names the machine and the command.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results"

# stem -> the --set values its runs had on top of the tier's (the report's "Overrides:" names them all).
PRETRAINED_REPORTS = {
    "ablation_paper": [],  # the frozen tier
    "ablation_paper_12ep": [],  # the fine-tune tier, 192 steps
    "ablation_paper_30ep": ["train.epochs=30", "optim.step_size=25"],  # the fine-tune tier, 480 steps
}


@pytest.fixture(scope="module")
def reports():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import study_reports

        yield study_reports
    finally:
        sys.path.remove(str(BENCHMARKS))


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
