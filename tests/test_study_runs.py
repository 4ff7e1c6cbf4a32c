"""benchmarks/studies/study_runs.py: a study run resumes where it stopped, and is scored under test-time occlusion."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

@pytest.fixture(scope="module")
def study_runs(benchmark_module):
    return benchmark_module("study_runs")


@pytest.fixture(scope="module")
def finished(study_runs, tmp_path_factory, tiny_root, tiny_overrides):
    """A 2-epoch tiny run through the study's worker, and its row."""
    output = tmp_path_factory.mktemp("study") / "global-seed0"
    job = dict(config="synthetic", variant="global", seed=0, threads=1, output=str(output),
               overrides=tiny_overrides + [f'data.root="{tiny_root}"', "train.epochs=2", "train.eval_every=0",
                                           'model.branches=["global"]'])
    return job, study_runs.run_one(dict(job))


def test_the_row_names_a_fresh_run_and_its_final_scores(finished):
    job, row = finished
    assert row["variant"] == "global" and row["seed"] == 0 and row["resumed"] is False
    metrics = pd.read_csv(Path(job["output"]) / "metrics.csv")
    assert list(metrics.epoch) == [1, 2]
    assert row["mAP"] == pytest.approx(metrics.mAP.iloc[-1], abs=1e-4)  # the log rounds to 4 places


def test_a_finished_run_started_again_is_not_retrained_and_scores_the_same(study_runs, finished):
    job, row = finished
    again = study_runs.run_one(dict(job))
    assert again["resumed"] is True
    assert [again[k] for k in ("rank1", "mAP", "mINP")] == [row[k] for k in ("rank1", "mAP", "mINP")]
    assert list(pd.read_csv(Path(job["output"]) / "metrics.csv").epoch) == [1, 2]  # no epoch trained twice


def test_a_stopped_run_continues_from_its_last_epoch(study_runs, finished, tmp_path):
    job, row = finished
    stopped = dict(job, output=str(tmp_path / "global-seed0"))
    # the folder as a stop after epoch 1 leaves it: epoch 1's checkpoint and log row
    assert study_runs.run_one(dict(stopped, overrides=job["overrides"] + ["train.epochs=1"]))["resumed"] is False
    resumed = study_runs.run_one(dict(stopped))
    assert resumed["resumed"] is True
    assert list(pd.read_csv(tmp_path / "global-seed0" / "metrics.csv").epoch) == [1, 2]
    # the same weights as the run never stopped, so the same scores
    assert [resumed[k] for k in ("rank1", "mAP", "mINP")] == [row[k] for k in ("rank1", "mAP", "mINP")]


def test_test_occlusion_scores_share_zero_as_the_run_did(study_runs, finished):
    job, row = finished
    scores = study_runs.score_test_occlusion(job["output"])
    assert set(scores) == {f"{m}_occ{s}" for m in ("mAP", "rank1") for s in (0, 25, 50, 75)}
    assert scores["mAP_occ0"] == row["mAP"] and scores["rank1_occ0"] == row["rank1"]
    assert scores["mAP_occ75"] != scores["mAP_occ0"]  # the occluders change what the model sees
    assert study_runs.score_test_occlusion(job["output"], shares=(0.75,)) == {
        "mAP_occ75": scores["mAP_occ75"], "rank1_occ75": scores["rank1_occ75"]}  # seeded: the same pixels
