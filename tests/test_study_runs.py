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


def test_perturbation_scores_share_zero_as_the_run_did_and_slice_each_branch(study_runs, finished):
    """The real-data tier's columns: f_all and each branch's slice under occlusion and misalignment."""
    job, row = finished
    scores = study_runs.score_test_perturbations(job["output"], shares=(0.0, 0.75))
    assert set(scores) == {f"{m}_{tag}{s}" for m in ("mAP", "rank1", "global_mAP") for tag in ("occ", "mis")
                           for s in (0, 75)}
    for tag in ("occ", "mis"):
        assert scores[f"mAP_{tag}0"] == row["mAP"] and scores[f"rank1_{tag}0"] == row["rank1"]
        # a global-only model's f_all is its global slice
        assert scores[f"global_mAP_{tag}75"] == scores[f"mAP_{tag}75"]
    assert scores["mAP_mis75"] != scores["mAP_mis0"]  # the shifted boxes change what the model sees
    assert scores["mAP_occ75"] == study_runs.score_test_occlusion(job["output"], shares=(0.75,))["mAP_occ75"]


def test_the_anchor_is_the_untrained_global_branch_scored_as_a_run(study_runs, tmp_path, tiny_root, tiny_overrides):
    row = study_runs.anchor_row("synthetic", tiny_overrides + [f'data.root="{tiny_root}"'], tmp_path / "anchor-seed0")
    assert row["variant"] == "anchor" and row["tier"] == "real" and row["seed"] == 0
    again = study_runs.score_checkpoint(str(tmp_path / "anchor-seed0"))
    assert row["mAP"] == again["mAP"] and row["mAP_occ0"] == row["mAP"] and row["mAP_mis0"] == row["mAP"]
    from stgcn_pyg.checkpoint import load_checkpoint

    model, cfg = load_checkpoint(tmp_path / "anchor-seed0" / "last.pt")
    assert list(model.feature_dims) == ["global"] and cfg.train.seed == 0


def test_the_anchor_is_scored_once_per_real_results_file_and_not_for_a_settings_check(study_runs):
    from types import SimpleNamespace as Args

    scored = {("real", "", "anchor", 0)}
    assert study_runs.anchor_wanted(Args(tier="real", force=False, paired_with=None), set())
    assert not study_runs.anchor_wanted(Args(tier="real", force=False, paired_with=None), scored)
    assert study_runs.anchor_wanted(Args(tier="real", force=True, paired_with=None), scored)
    assert not study_runs.anchor_wanted(Args(tier="real", force=False, paired_with="ablation_real"), set())
    assert not study_runs.anchor_wanted(Args(tier="finetune", force=True), set())


def test_the_real_report_computes_the_stated_tests(benchmark_module, tmp_path):
    """Hand-made rows: the primary interval and the temporal-slice test against hand-computed values."""
    reports = benchmark_module("study_reports")
    rows = [dict(tier="real", variant="anchor", seed=0, mAP=10.0, rank1=20.0, mAP_allframes=10.0, minutes=1.0,
                 mAP_occ0=10.0, mAP_occ75=5.0, mAP_mis0=10.0, mAP_mis75=8.0)]
    for seed, gap in enumerate([1.0, 2.0, 3.0, 4.0]):  # full − global: mean 2.5, sd 1.291, t(3) 3.182 → ±2.05
        for variant, base in (("global", 40.0), ("full", 40.0 + gap)):
            occ75 = base - 20 + (gap if variant == "full" else 0)  # the gap doubles at 75 %
            rows.append(dict(tier="real", variant=variant, seed=seed, mAP=base, rank1=base + 10,
                             mAP_allframes=base, minutes=30.0, mAP_occ0=base, mAP_occ75=occ75, mAP_mis0=base,
                             mAP_mis75=base - 5, temporal_mAP_occ75=occ75 + 1.0 + seed))
    pd.DataFrame(rows).to_csv(tmp_path / "real.csv", index=False)
    tables = reports.real_tables(pd.read_csv(tmp_path / "real.csv"))
    assert tables["primary"].iloc[0]["difference (95% CI; seeds above)"] == "+2.5 [+0.4, +4.6]; 4/4"
    secondary = tables["secondary"].set_index("test")["difference (95% CI; seeds above)"]
    assert secondary["growth of that gap, occluded 75 % − 0 %"] == "+2.5 [+0.4, +4.6]; 4/4"
    assert secondary["growth of that gap, misaligned 75 % − 0 %"] == "+0.0 [+0.0, +0.0]; 0/4"
    assert secondary["full models: temporal slice − f_all, 75 % occluded"] == "+2.5 [+0.4, +4.6]; 4/4"
    reports.write_real_report("real", tmp_path)
    text = (tmp_path / "real.md").read_text()
    assert "| anchor | 1 (0) | 10.0 |" in text and (tmp_path / "real.png").stat().st_size > 0


def test_the_real_report_times_only_runs_never_stopped(benchmark_module, tmp_path):
    """A resumed run's minutes are its last process's only: the median leaves it out (30 and 40 → 35.0)."""
    reports = benchmark_module("study_reports")
    rows = [dict(tier="real", variant="global", seed=s, mAP=40.0, rank1=50.0, mAP_allframes=40.0, minutes=m,
                 resumed=r)
            for s, (m, r) in enumerate([(30.0, False), (40.0, False), (1.0, True)])]
    pd.DataFrame(rows).to_csv(tmp_path / "real.csv", index=False)
    pd.DataFrame([dict(variant="global", seed=s, epoch=1, mAP=40.0, images_per_s=40.0 + s) for s in range(3)]
                 ).to_csv(tmp_path / "real_curves.csv", index=False)
    reports.write_real_report("real", tmp_path)
    text = (tmp_path / "real.md").read_text()
    assert "| global | 41.00 | 35.00 |" in text and "4 tracklets, 80 steps)" in text  # one epoch of 80 steps


def test_a_longer_budget_is_paired_run_by_run_with_the_stated_study(benchmark_module, tmp_path):
    """Each variant's change and the full − global gap's change, on the (variant, seed) pairs of one CPU."""
    reports = benchmark_module("study_reports")
    cpu, other = "Intel CPU, 2 threads", "AMD CPU, 2 threads"

    def row(variant, seed, mAP, device=cpu):
        return dict(tier="real", variant=variant, seed=seed, device=device, mAP=mAP, rank1=mAP + 10,
                    mAP_allframes=mAP, minutes=30.0, mAP_occ0=mAP, mAP_occ75=mAP / 2, mAP_mis0=mAP, mAP_mis75=mAP - 5)

    base = [row("anchor", 0, 10.0)] + [row(v, s, m) for s, (g, f) in enumerate([(40, 41), (42, 42), (44, 45)])
                                        for v, m in (("global", g), ("full", f))]
    # global gains 1, 2, 3; full gains 3, 5, 4 (seed 2 of full ran on another CPU: not paired)
    longer = [row("anchor", 0, 10.0), row("global", 0, 41), row("global", 1, 44), row("global", 2, 47),
              row("full", 0, 44), row("full", 1, 47), row("full", 2, 49, other)]
    pd.DataFrame(base).to_csv(tmp_path / "real.csv", index=False)
    pd.DataFrame(longer).to_csv(tmp_path / "real_960.csv", index=False)
    table = reports.budget_table(pd.read_csv(tmp_path / "real_960.csv"), pd.read_csv(tmp_path / "real.csv"))
    table = table.set_index("change")
    assert list(table.index) == ["global: this − baseline", "full: this − baseline", "full − global gap: this − baseline"]
    assert list(table["paired seeds"]) == [3, 2, 2]
    # global: 1, 2, 3 → mean 2, sd 1, t(2) 4.303 → ±2.48; full: 3, 5 → mean 4, sd 1.414, t(1) 12.706 → ±12.7
    assert table.loc["global: this − baseline", "mAP"] == "+2.0 [-0.5, +4.5]; 3/3"
    assert table.loc["full: this − baseline", "mAP"] == "+4.0 [-8.7, +16.7]; 2/2"
    # the gap's change on seeds 0 and 1: 3 − 1, 5 − 2 → 2, 3 (mean 2.5, sd 0.707 → ±6.35); at 75 % halved
    assert table.loc["full − global gap: this − baseline", "mAP"] == "+2.5 [-3.9, +8.9]; 2/2"
    assert table.loc["full − global gap: this − baseline", "mAP, 75 % occluded"] == "+1.2 [-1.9, +4.4]; 2/2"
    reports.write_real_report("real_960", tmp_path, baseline="real")
    text = (tmp_path / "real_960.md").read_text()
    assert "Exploratory, and said so" in text and "| full − global gap: this − baseline | 2 | +2.5 [-3.9, +8.9]; 2/2 |" in text
    assert "Step for step" not in text  # no curves, no step-for-step check
    (tmp_path / "alone").mkdir()
    pd.DataFrame(longer).to_csv(tmp_path / "alone" / "real_960.csv", index=False)
    reports.write_real_report("real_960", tmp_path / "alone", baseline="real")  # no baseline CSV there
    assert "Exploratory" not in (tmp_path / "alone" / "real_960.md").read_text()


def test_a_longer_run_is_checked_to_repeat_its_baseline_run_until_the_schedules_part(benchmark_module, tmp_path):
    reports = benchmark_module("study_reports")

    def curve(variant, seed, losses):
        return [dict(variant=variant, seed=seed, epoch=e, loss=x, mAP=50.0 - x, images_per_s=40.0)
                for e, x in enumerate(losses, 1)]

    base = curve("global", 0, [6.0, 5.0, 4.0]) + curve("full", 0, [9.0, 8.0, 7.0]) + curve("full", 1, [9.5, 8.5, 7.5])
    longer = (curve("global", 0, [6.0, 5.0, 4.5, 4.2])  # parts after epoch 2
              + curve("full", 0, [9.0, 8.0, 7.0, 6.0, 5.0])  # the baseline's 3 epochs repeated, then more
              + curve("full", 1, [9.4, 8.5, 7.5]))  # differs from the first epoch: not the same run
    through = reports.identical_through(pd.DataFrame(longer), pd.DataFrame(base))
    assert through.to_dict() == {("full", 0): 3, ("full", 1): 0, ("global", 0): 2}
    row = dict(tier="real", seed=0, mAP=40.0, rank1=50.0, mAP_allframes=40.0, minutes=30.0)
    pd.DataFrame([dict(row, variant="global"), dict(row, variant="full")]).to_csv(tmp_path / "real.csv", index=False)
    pd.DataFrame([dict(row, variant="global")]).to_csv(tmp_path / "real_960.csv", index=False)
    pd.DataFrame(base).to_csv(tmp_path / "real_curves.csv", index=False)
    pd.DataFrame(longer).to_csv(tmp_path / "real_960_curves.csv", index=False)
    reports.write_real_report("real_960", tmp_path, baseline="real")
    assert ("identical to the baseline run's through epoch 0 in 1 of 3 runs, through epoch 2 in 1 of 3 runs, "
            "through epoch 3 in 1 of 3 runs.") in (tmp_path / "real_960.md").read_text()


def test_seeds_needed_is_the_first_count_whose_interval_excludes_zero(benchmark_module):
    from scipy import stats

    reports = benchmark_module("study_reports")
    gaps = pd.Series([3.0, -1.0, 2.0, -2.0])  # mean 0.5, sd 2.38: the interval includes zero
    n = int(reports.seeds_needed(gaps))
    half = lambda k: stats.t.ppf(0.975, k - 1) * gaps.std(ddof=1) / k ** 0.5  # noqa: E731
    assert half(n) < 0.5 <= half(n - 1)
    assert reports.seeds_needed(pd.Series([1.0, 2.0, 3.0, 4.0])) == ""  # already excludes zero


def _settings_rows(tmp_path, gaps, devices=None):
    """Baseline and settings runs of `full`, paired by seed; the settings' mAP differs by ``gaps``."""
    base, fast, base_curves, fast_curves = [], [], [], []
    for seed, gap in enumerate(gaps):
        device = (devices or ["cpu A"] * len(gaps))[seed]
        common = dict(tier="real", variant="full", seed=seed, rank1=50.0, mAP_allframes=40.0, mAP_occ75=30.0)
        base.append(dict(common, mAP=40.0 + seed, minutes=30.0, device="cpu A", mAP_mis75=35.0))
        fast.append(dict(common, mAP=40.0 + seed + gap, minutes=20.0, device=device, mAP_mis75=35.0 + 2 * gap))
        for epoch in (1, 2):
            base_curves.append(dict(variant="full", seed=seed, epoch=epoch, mAP=1.0, images_per_s=40.0))
            fast_curves.append(dict(variant="full", seed=seed, epoch=epoch, mAP=1.0, images_per_s=60.0))
    anchor = dict(tier="real", variant="anchor", seed=0, mAP=16.0, rank1=20.0, minutes=1.0, device="cpu A",
                  commit="old")
    for row in fast:
        row["commit"] = "new"
    pd.DataFrame([anchor] + base).to_csv(tmp_path / "real.csv", index=False)
    pd.DataFrame([anchor] + fast).to_csv(tmp_path / "fast.csv", index=False)
    pd.DataFrame(base_curves).to_csv(tmp_path / "real_curves.csv", index=False)
    pd.DataFrame(fast_curves).to_csv(tmp_path / "fast_curves.csv", index=False)


def test_settings_check_pairs_by_seed_and_applies_the_rule(benchmark_module, tmp_path):
    """Hand-computed: gaps 0, -1, +1 have mean 0, sd 1, t(2) 4.303 → ±2.5; the rule's lower end −2.5 fails."""
    reports = benchmark_module("study_reports")
    _settings_rows(tmp_path, [0.0, -1.0, 1.0])
    t = reports.settings_check_tables(pd.read_csv(tmp_path / "fast.csv"), pd.read_csv(tmp_path / "real.csv"))
    scores = t["scores"].set_index("score")
    assert scores.loc["mAP", "difference (95% CI; runs above)"] == "+0.0 [-2.5, +2.5]; 1/3"
    assert scores.loc["mAP", "baseline"] == "41.0 ± 1.0" and scores.loc["mAP", "paired runs"] == 3
    assert scores.loc["mAP, 75 % of query frames misaligned", "difference (95% CI; runs above)"] == \
        "+0.0 [-5.0, +5.0]; 1/3"
    assert t["verdict"].startswith("lower end -2.5 mAP not above -1.0")
    reports.write_settings_check_report("fast", "real", ["optim.fused=true"], tmp_path)
    text = (tmp_path / "fast.md").read_text()
    assert "# Settings check: `optim.fused=true`" in text and "(commits new)" in text  # the anchor's is not theirs
    assert "60.0 frames/s with the settings against 40.0 (1.50x)" in text
    assert "minutes per run with its evaluation after each epoch 20.0 against 30.0" in text

    _settings_rows(tmp_path, [0.4, 0.5, 0.6])  # mean 0.5, sd 0.1: [+0.25, +0.75], above −1.0
    t = reports.settings_check_tables(pd.read_csv(tmp_path / "fast.csv"), pd.read_csv(tmp_path / "real.csv"))
    assert t["verdict"] == "lower end +0.3 mAP above -1.0: the settings may become a default"


def test_settings_check_never_pairs_runs_from_different_cpus(benchmark_module, tmp_path):
    reports = benchmark_module("study_reports")
    _settings_rows(tmp_path, [1.0, 2.0, 3.0], devices=["cpu A", "cpu B", "cpu A"])
    t = reports.settings_check_tables(pd.read_csv(tmp_path / "fast.csv"), pd.read_csv(tmp_path / "real.csv"))
    assert t["scores"].set_index("score").loc["mAP", "difference (95% CI; runs above)"] == "+2.0 [-10.7, +14.7]; 2/2"
    reports.write_settings_check_report("fast", "real", [], tmp_path)
    assert "Not paired (no baseline run of the same variant and seed on the same CPU): full seed 1." in \
        (tmp_path / "fast.md").read_text()
    _settings_rows(tmp_path, [1.0], devices=["cpu B"])
    t = reports.settings_check_tables(pd.read_csv(tmp_path / "fast.csv"), pd.read_csv(tmp_path / "real.csv"))
    assert t["verdict"] == "no paired runs"


@pytest.mark.parametrize("argv, message", [
    (["--paired-with", "ablation_real", "--out", "fast"], "--paired-with checks settings on the real-data study"),
    (["--tier", "real", "--root", "x", "--paired-with", "ablation_real"], "a file stem of their own with --out"),
])
def test_paired_with_refuses_what_it_cannot_check(benchmark_module, capsys, argv, message):
    ablation = benchmark_module("ablation")
    with pytest.raises(SystemExit):
        ablation.main(argv)
    assert message in capsys.readouterr().err
