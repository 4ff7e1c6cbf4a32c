"""benchmarks/speed/train_step.py: its staged (profiled) step is the training step, and --quick writes its tables."""

from __future__ import annotations

import csv

import pytest
import torch
from gradient_checks import assert_same_gradients

from stgcn_pyg.training.run import build_run
from stgcn_pyg.training.trainer import train_step


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module("train_step")


def _frozen(run):
    """A zero-rate optimiser: the step leaves the weights as they were and the gradients in place."""
    run.optimizer = torch.optim.SGD(run.model.parameters(), lr=0.0)
    return run


@pytest.mark.parametrize("branches", ['["global", "temporal", "spatial"]', '["global"]', '["temporal", "spatial"]'])
def test_staged_step_has_the_training_steps_loss_and_gradients(bench, tiny_config, tmp_path, branches):
    whole = _frozen(build_run(tiny_config(tmp_path / "whole", "data.num_workers=0", f"model.branches={branches}")))
    staged = _frozen(build_run(tiny_config(tmp_path / "staged", "data.num_workers=0", f"model.branches={branches}")))
    batch = next(iter(whole.loader))
    whole.model.train(), staged.model.train()
    loss, _ = train_step(whole.net, whole.criterion, whole.optimizer, batch, whole.device)
    seconds, staged_loss = bench.staged_step(staged.model, staged.criterion, staged.optimizer, batch)
    torch.testing.assert_close(staged_loss, loss, rtol=1e-6, atol=1e-6)
    assert_same_gradients(whole.model, staged.model, tol=1e-4)  # the same sums in another order
    graph = [b for b in ("temporal", "spatial") if b in branches]
    expected = {"backbone forward", "backbone backward", "pooling forward", "pooling backward",
                "heads + losses forward", "heads + losses backward", "optimiser"}
    expected |= {f"{b} {d}" for b in graph for d in ("forward", "backward")}
    assert set(seconds) == expected and all(s >= 0 for s in seconds.values())


@pytest.mark.slow
def test_quick_run_writes_the_step_table_profile_and_plot(bench, tiny_root, tmp_path):
    out = tmp_path / "results"
    settings = ["eager fp32", "channels_last", "bf16"]
    assert bench.main(["--quick", "--threads", "1", "--steps", "1", "--warmup", "0", "--batches", "1", "--profile",
                       "--models", "full STGCN", "--settings", *settings[1:], "--root", str(tiny_root),
                       "--out", str(out)]) == 0
    with open(out / "train_step_quick.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["setting"] for r in rows] == settings  # the baseline is measured first, though not asked for
    assert {r["config"] for r in rows} == {"default run"} and {r["threads"] for r in rows} == {"1"}
    base = float(rows[0]["ms_per_step"])
    for r in rows:
        ms = float(r["ms_per_step"])
        assert ms > 0 and float(r["speedup"]) == pytest.approx(base / ms, rel=1e-6)
        assert float(r["frames_per_s"]) == pytest.approx(2 * 2 * 2 / (ms / 1000), rel=1e-6)  # 2 ids x 2 x T=2
        assert float(r["gflop_per_s"]) == pytest.approx(float(r["gflop_per_step"]) / (ms / 1000), rel=1e-6)
        assert float(r["gflop_per_step"]) > 0 and r["peak_dtype"] == ("bf16" if "bf16" in r["setting"] else "fp32")
    with open(out / "train_step_quick_profile.csv", newline="") as fh:
        profile = list(csv.DictReader(fh))
    assert {p["setting"] for p in profile} == set(settings)
    for setting in settings:
        shares = [float(p["share_pct"]) for p in profile if p["setting"] == setting]
        assert len(shares) == 11 and sum(shares) == pytest.approx(100.0)
    with open(out / "train_step_quick_operators.csv", newline="") as fh:
        operators = list(csv.DictReader(fh))
    assert 0 < len(operators) <= 12 and float(operators[0]["ms"]) >= float(operators[-1]["ms"])
    assert any(op["operator"].startswith("aten::") for op in operators)
    md = (out / "train_step_quick.md").read_text()
    assert "## Where an eager step's time goes (ms)" in md and "## The eager fp32 step's largest operators" in md and "| default run | full STGCN |" in md
    assert "flags" in md or "CPU" in md
    assert (out / "train_step_quick.png").stat().st_size > 0
    # --recount-flops times nothing and rewrites the FLOP columns with the same counter: the same numbers.
    assert bench.main(["--quick", "--recount-flops", "--root", str(tiny_root), "--out", str(out)]) == 0
    with open(out / "train_step_quick.csv", newline="") as fh:
        recounted = list(csv.DictReader(fh))
    for before, after in zip(rows, recounted):
        assert after["ms_per_step"] == before["ms_per_step"]
        assert float(after["gflop_per_step"]) == pytest.approx(float(before["gflop_per_step"]), rel=1e-9)
