"""benchmarks/studies/frozen_tier.py: cached stripe features reproduce the model, and the paired interval is right."""

from __future__ import annotations

import copy
import importlib
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from stgcn_pyg.models import STGCN
from stgcn_pyg.config import ModelConfig



@pytest.fixture(scope="module")
def frozen_tier():
    return importlib.import_module("benchmarks.studies.frozen_tier")


@pytest.mark.parametrize("centered", [False, True])
def test_cached_stripes_give_the_backbones_descriptor(frozen_tier, centered):
    """The frozen tier feeds [P, 1] stripe maps through an identity backbone: f_all must not change."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", weights="none", num_classes=4, num_stripes=2, temporal_width=24,
                      spatial_width=16, centered_affinity=centered, scaled_affinity=centered, seq_len=4)
    model = STGCN(cfg).eval()
    clips = torch.randn(3, 4, 3, 64, 32)  # maps of 4 rows: two rows per stripe
    with torch.no_grad():
        expected = model.encode(clips)
        maps = model.backbone(clips.flatten(0, 1))
        stripes = torch.nn.functional.adaptive_avg_pool2d(maps, (2, 1))  # [B*T, C, P, 1]
        cached = copy.deepcopy(model)
        cached.backbone = frozen_tier.CachedMaps(maps.size(1))
        got = cached.encode(stripes.view(3, 4, *stripes.shape[1:]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_paired_summary_is_the_t_interval_of_per_seed_differences(frozen_tier):
    df = pd.DataFrame({
        "variant": ["global"] * 3 + ["full"] * 3 + ["solo"],
        "seed": [0, 1, 2, 0, 1, 2, 5],
        "mAP": [10.0, 20.0, 30.0, 13.0, 21.0, 35.0, 50.0],
    })
    table = frozen_tier.paired_summary(df).set_index("variant")
    # differences 3, 1, 5: mean 3, sd 2, t(0.975, 2) = 4.302653 -> half width 4.302653 * 2 / sqrt(3)
    half = 4.302653 * 2 / 3**0.5
    assert table.loc["full", "diff"] == pytest.approx(3.0)
    assert table.loc["full", "ci_low"] == pytest.approx(3.0 - half, abs=1e-5)
    assert table.loc["full", "ci_high"] == pytest.approx(3.0 + half, abs=1e-5)
    assert table.loc["full", "wins"] == "3/3"
    assert table.loc["full", "sd"] == pytest.approx(124**0.5)  # of 13, 21, 35: squared deviations 100 + 4 + 144, over 2
    assert pd.isna(table.loc["solo", "diff"])  # no seed in common with the baseline: no pair, no interval


@pytest.fixture(scope="module")
def study():
    """The ablation study's modules: its variants, its runner and its reports."""
    from benchmarks.studies import study_reports, study_runs, study_variants

    return SimpleNamespace(variants=study_variants, runs=study_runs, reports=study_reports)


def test_every_ablation_variant_is_a_valid_config_in_every_tier(study):
    """A misspelt key or a value the config rejects would only show an hour into the study."""
    from stgcn_pyg.config import load_config

    for tier in study.variants.TIERS.values():
        for name, overrides in study.variants.VARIANTS.items():
            cfg = load_config(tier.get("config", "synthetic"), tier["overrides"] + overrides)
            assert cfg.resolved_model().seq_len == cfg.data.seq_len == 8, name


def test_lpft_fine_tunes_the_tiers_whole_budget_after_probing(study):
    """LP-FT's fine-tuning phase has the finetune tier's epochs and rate step, shifted by the frozen epochs."""
    from stgcn_pyg.config import load_config

    tier = study.variants.TIERS["finetune"]["overrides"]
    full = load_config("synthetic", tier)
    lpft = load_config("synthetic", tier + study.variants.VARIANTS["full-lpft"])
    inbudget = load_config("synthetic", tier + study.variants.VARIANTS["full-lpft-inbudget"])
    probe = lpft.train.freeze_backbone_epochs
    assert probe == inbudget.train.freeze_backbone_epochs == 4
    assert lpft.train.epochs - probe == full.train.epochs == inbudget.train.epochs
    assert lpft.optim.step_size - probe == full.optim.step_size == inbudget.optim.step_size


def _rows(seeds, level=None, shift=0.0, allframes=True):
    rows = []
    for s in seeds:
        for v, base in (("global", 40.0), ("full", 45.0)):
            r = dict(variant=v, seed=s, minutes=10.0, rank1=base + s, mAP=base + s * (1.5 if v == "full" else 1) + shift, mINP=base / 2 + s,
                     tier="finetune")
            if allframes:
                r["mAP_allframes"] = base + s - 1
            if level is not None:
                r["level"] = level
            rows.append(r)
    return rows


def test_reuse_default_copies_the_tier_runs_only_when_the_shared_runs_agree(study, tmp_path):
    pd.DataFrame(_rows([0, 1, 2], allframes=False)).to_csv(tmp_path / "tier.csv", index=False)
    pd.DataFrame([dict(tier="finetune", variant=v, seed=s, epoch=e, mAP=float(e))
                  for v in ("global", "full") for s in (0, 1, 2) for e in (2, 4)]).to_csv(
        tmp_path / "tier_curves.csv", index=False)
    pd.DataFrame(_rows([0], level="default") + _rows([0, 1], level="heavy")).to_csv(tmp_path / "sweep.csv", index=False)

    copied = study.runs.reuse_default_rows("sweep", "tier", ["global", "full"], [0, 1, 2], tmp_path)
    assert sorted(copied) == sorted(("finetune", "default", v, s) for v in ("global", "full") for s in (1, 2))
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    default = sweep[sweep.level == "default"].set_index(["variant", "seed"])
    assert default.loc[("full", 2), "mAP"] == 48.0 and default.loc[("full", 2), "reused_from"] == "tier"
    assert pd.isna(default.loc[("full", 0), "reused_from"])  # the trained run stays as it was
    assert pd.isna(default.loc[("global", 1), "mAP_allframes"])  # the tier never scored all frames
    assert len(sweep[sweep.level == "heavy"]) == 4  # other levels untouched
    curves = pd.read_csv(tmp_path / "sweep_curves.csv")
    assert len(curves) == 8 and set(curves.level) == {"default"} and set(curves.seed) == {1, 2}
    # The report says which rows are borrowed and counts the seeds behind each all-frames mean.
    table, _ = study.reports.occlusion_table(sweep, {"none": 0.0, "default": 0.2, "heavy": 0.5})
    row = table[(table.level == "default") & (table.variant == "full")].iloc[0]
    assert row["seeds"] == 3 and row["mAP_allframes"] == "44.0 (1 of 3)"
    assert "global seeds 1 2" in study.reports.reused_text(sweep)
    assert study.runs.reuse_default_rows("sweep", "tier", ["global", "full"], [0, 1, 2], tmp_path) == []  # idempotent


def test_reuse_default_refuses_a_different_set_up_and_names_the_file(study, tmp_path):
    pd.DataFrame(_rows([0, 1], shift=0.5)).to_csv(tmp_path / "tier.csv", index=False)
    pd.DataFrame(_rows([0], level="default")).to_csv(tmp_path / "sweep.csv", index=False)
    with pytest.raises(SystemExit, match=r"tier\.csv is not the default level's set-up: global seed 0 scored mAP"):
        study.runs.reuse_default_rows("sweep", "tier", ["global", "full"], [0, 1], tmp_path)
    pd.DataFrame(_rows([1], level="default")).to_csv(tmp_path / "sweep.csv", index=False)
    pd.DataFrame(_rows([0])).to_csv(tmp_path / "tier.csv", index=False)
    with pytest.raises(SystemExit, match="no trained default-level run"):
        study.runs.reuse_default_rows("sweep", "tier", ["global", "full"], [0], tmp_path)
    with pytest.raises(SystemExit, match=r"missing\.csv does not exist"):
        study.runs.reuse_default_rows("sweep", "missing", ["global"], [0], tmp_path)
    assert len(pd.read_csv(tmp_path / "sweep.csv")) == 2  # nothing written on refusal
