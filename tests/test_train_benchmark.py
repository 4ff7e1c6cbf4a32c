"""benchmarks/speed/train_gpu.py --quick runs on the CPU and writes its CSV and markdown tables."""

from __future__ import annotations

import csv
import importlib

import pytest



@pytest.mark.slow
def test_train_benchmark_quick(tiny_root, tmp_path):
    bench = importlib.import_module("benchmarks.speed.train_gpu")
    out = tmp_path / "results"
    assert bench.main(["--quick", "--steps", "2", "--warmup", "0", "--loader-steps", "1", "--root", str(tiny_root),
                       "--variants", "global-only,STGCN (all three)", "--out", str(out)]) == 0
    with open(out / "train_gpu_quick.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["variant"] for r in rows] == ["global-only", "STGCN (all three)"]
    for r in rows:
        assert float(r["ms_per_step"]) > 0 and float(r["images_per_s"]) > 0
        assert float(r["steps_per_s"]) == pytest.approx(1000 / float(r["ms_per_step"]), rel=1e-3)
    assert float(rows[0]["overhead_vs_global_pct"]) == 0.0
    md = (out / "train_gpu_quick.md").read_text()
    assert "| STGCN (all three) |" in md and "target at most +15%" in md and "with the real loader" in md
