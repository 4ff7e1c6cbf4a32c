"""benchmarks/gpu/gpu_check.py: the prepared GPU check, run as ``--smoke`` on the CPU; and its CUDA-test selection."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.gpu import gpu_check  # noqa: E402
from benchmarks.gpu.cuda_tests_plugin import needs_cuda  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One ``gpu_check.py --smoke`` run in a subprocess (as on the GPU machine: the source tree on PYTHONPATH)."""
    out = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "gpu_check.py"), "--smoke", "--out", str(out),
                           "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "gpu_check_smoke_cpu.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return SimpleNamespace(out=out, rows=rows, md=(out / "gpu_check_smoke_cpu.md").read_text(), stdout=proc.stdout)


def value(rows, section, metric):
    found = [r for r in rows if r["section"] == section and r["metric"] == metric]
    assert len(found) == 1, f"{section} / {metric}: {len(found)} rows"
    return found[0]


@pytest.mark.slow
def test_smoke_runs_every_section_ok(smoke):
    statuses = {r["section"]: r["value"] for r in smoke.rows if r["metric"] == "section status"}
    assert statuses == {name: "ok" for name in gpu_check.SECTIONS}
    assert list(smoke.rows[0]) == list(gpu_check.Check.FIELDS)
    # the markdown has the summary table and one part per section
    for name in gpu_check.SECTIONS:
        assert f"| {name} | ok |" in smoke.md and f"## {name}" in smoke.md
    assert "smoke run on the CPU" in smoke.md


@pytest.mark.slow
def test_smoke_measures_each_figure(smoke):
    rows = smoke.rows
    for variant in ("full STGCN", "global-only"):
        assert float(value(rows, "train_step", f"{variant}: frames/s")["value"]) > 0
    share = float(value(rows, "train_step", "graph branches: share of the full step")["value"])
    assert -100 < share < 100
    assert value(rows, "train_step", "graph branches vs the 15 % goal")["value"] in ("meets", "misses")
    # the loader at the smoke's two worker counts, CPU and GPU decode measured against the step's demand
    for workers in gpu_check.SMOKE.workers:
        for decode in ("cpu", "cuda"):
            assert float(value(rows, "loader_supply", f"{workers} workers, {decode} decode: frames/s")["value"]) > 0
            assert float(value(rows, "loader_supply",
                               f"{workers} workers, {decode} decode: supply / demand")["value"]) > 0
        # GPU decode's path (data.decode = "cuda") with a CPU stand-in for the nvjpeg call
        assert "stand-in" in value(rows, "loader_supply", f"{workers} workers, cuda decode: frames/s")["note"]
    assert float(value(rows, "loader_supply", "1 workers, cuda decode: frames/s per worker")["value"]) > 0
    assert float(value(rows, "eval_all_frames", "fp32: end to end")["value"]) > 0
    # fp32 on the same device agrees with the CPU's fp32 to float rounding
    assert float(value(rows, "descriptor_agreement", "fp32 (default): max rel diff")["value"]) < 1e-4
    assert float(value(rows, "descriptor_agreement", "fp32 (default): max 1 - cosine")["value"]) < 1e-6
    # the suite's GPU tests were found and collected (not run: --smoke)
    assert int(value(rows, "cuda_tests", "GPU tests collected")["value"]) >= 1
    assert value(rows, "environment", "torch version")["value"]


def test_device_file_names():
    assert gpu_check.slug("NVIDIA H200") == "nvidia-h200"
    assert gpu_check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_selection_of_the_tests_that_need_a_device():
    def item(name, *marks):
        return SimpleNamespace(name=name, iter_markers=lambda: iter(marks))

    gpu_skip = SimpleNamespace(name="skipif", args=(True,), kwargs={"reason": "needs a GPU"})
    other_skip = SimpleNamespace(name="skipif", args=(True,), kwargs={"reason": "needs onnxruntime"})
    assert needs_cuda(item("test_gpu_matches_cpu", gpu_skip))
    assert needs_cuda(item("test_decode", SimpleNamespace(name="skipif", args=("not torch.cuda.is_available()",),
                                                          kwargs={})))
    assert needs_cuda(item("test_x", SimpleNamespace(name="cuda", args=(), kwargs={})))
    assert not needs_cuda(item("test_export", other_skip))
    assert not needs_cuda(item("test_plain"))
    # the suite's own GPU test is found by the file scan
    files = gpu_check.cuda_test_files()
    assert "tests/test_metrics.py" in files and "tests/test_gpu_check.py" not in files


def test_a_failing_section_is_recorded_and_the_next_runs(tmp_path):
    args = gpu_check.parse_args(["--smoke", "--out", str(tmp_path)])
    check = gpu_check.Check(args, gpu_check.SMOKE)
    check.shared["env"] = {"device": "test"}

    def broken(check, clock):
        raise ValueError("boom")

    def late(check, clock):
        clock.seconds = 0
        clock.check("step 2")

    def fine(check, clock):
        check.add("answer", 42)

    for name, fn in (("environment", broken), ("cuda_tests", late), ("train_step", fine)):
        check.run(name, fn)
    assert [(s["section"], s["status"]) for s in check.sections] == [
        ("environment", "failed"), ("cuda_tests", "timeout"), ("train_step", "ok")]
    assert "ValueError: boom" in check.sections[0]["note"]
    assert "step 2" in check.sections[1]["note"]
    csv_path, md_path = check.write(tmp_path, "gpu_check_test")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"section": "train_step", "metric": "answer", "value": "42", "unit": "", "status": "ok", "note": ""} in rows
    assert "| environment | failed |" in md_path.read_text()


def test_the_alarm_stops_a_section_that_does_not_check_its_clock():
    import time

    with pytest.raises(gpu_check.SectionTimeout, match="alarm"):
        with gpu_check.alarm(0.01):
            time.sleep(5)
