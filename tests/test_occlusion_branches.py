"""benchmarks/studies/occlusion_branches.py: each branch's slice of f_all scored under test-time occlusion.

The slices are checked against a reference (the descriptors extracted and sliced by hand, scored with
evaluate_descriptors), the report's statistics against hand-computed values.
"""

from __future__ import annotations

import pandas as pd
import pytest


def test_each_slice_scores_as_the_hand_sliced_descriptor(benchmark_module, finished_run, tmp_path, monkeypatch):
    import torch

    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import load_configured_dataset
    from stgcn_pyg.evaluation import TestOptions
    from stgcn_pyg.evaluation.evaluate import evaluate_descriptors, extract_split, tracklet_ids

    bench = benchmark_module("occlusion_branches")
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    run = finished_run("full-seed3")
    bench.main([str(run), "--out", "occ"])
    df = pd.read_csv(tmp_path / "occ.csv")
    assert sorted(set(zip(df.share, df.part))) == sorted((s, p) for s in (0, 25, 50, 75) for p in bench.PARTS)
    assert len(df) == 16 and set(df.variant) == {"full"} and set(df.seed) == {3}

    # reference at share 50: extract the whole descriptor once, slice it by feature_dims, score each slice
    model, cfg = load_checkpoint(run / "last.pt")
    ds = load_configured_dataset(cfg.data, progress=False)
    options = TestOptions.from_config(cfg, progress=False)
    with torch.no_grad():
        gf = extract_split(model, ds.gallery, options, split="gallery")
        qf = extract_split(model, ds.query, options.replace(occlude=0.5, occlude_seed=0), split="query")
    ids = [tracklet_ids(s, k) for k in ("pid", "camid") for s in (ds.query, ds.gallery)]
    start = 0
    for branch, dim in model.feature_dims.items():
        want = evaluate_descriptors(qf[:, start:start + dim], gf[:, start:start + dim], ids[0], ids[1], ids[2],
                                    ids[3])["mAP"]
        start += dim
        assert df[(df.share == 50) & (df.part == branch)].mAP.item() == pytest.approx(want, abs=1e-4)
    assert df[(df.share == 50) & (df.part == "all")].mAP.item() == pytest.approx(
        evaluate_descriptors(qf, gf, *ids)["mAP"], abs=1e-4)
    assert start == qf.size(1)  # the slices cover the descriptor

    text = (tmp_path / "occ.md").read_text()
    assert "| full | temporal | 1 |" in text and (tmp_path / "occ.png").stat().st_size > 0
    bench.main([str(run), "--out", "occ"])  # resumed: nothing scored twice
    assert len(pd.read_csv(tmp_path / "occ.csv")) == len(df)


def test_report_tables_by_hand(benchmark_module):
    bench = benchmark_module("occlusion_branches")
    # two models; temporal − global is 1 then 3 (seed 0) and 3 then 5 (seed 1) at shares 0 and 75
    rows = []
    for seed, glob, temporal in ((0, (40.0, 20.0), (41.0, 23.0)), (1, (42.0, 22.0), (45.0, 27.0))):
        for share, g, t in zip((0, 75), glob, temporal):
            rows += [dict(variant="+temporal", seed=seed, share=share, part="global", mAP=g),
                     dict(variant="+temporal", seed=seed, share=share, part="temporal", mAP=t)]
    df = pd.DataFrame(rows)
    scores = bench.scores_table(df)
    temporal = scores[scores.part == "temporal"].iloc[0]
    # mean 43 ± sd 2.83 unoccluded, 25 ± 2.83 at 75 %: keeps 25 / 43 = 58 %
    assert (temporal["0 %"], temporal["75 %"], temporal["kept at 75 %"]) == ("43.0 ± 2.8", "25.0 ± 2.8", "58 %")
    diffs = bench.slice_differences(df)
    assert list(diffs.slices) == ["temporal − global"]  # no spatial slice, no whole descriptor in these rows
    d = diffs.iloc[0]
    # at 0 %: 1 and 3 (mean 2, sd sqrt 2, t(0.975, 1) = 12.706: half-width 12.7); the change: 2 and 2 (sd 0)
    assert d["0 %"] == "+2.0 [-10.7, +14.7]; 2/2" and d["change 0 → 75 %"] == "+2.0 [+2.0, +2.0]; 2/2"
