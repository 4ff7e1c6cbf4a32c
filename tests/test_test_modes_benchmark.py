"""benchmarks/studies/test_modes.py: each run scored under every test mode, resumably, with paired intervals."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest



@pytest.fixture(scope="module")
def test_modes():
    return importlib.import_module("benchmarks.studies.test_modes")


def test_scores_every_mode_once_and_counts_the_clips(test_modes, finished_run, tiny_root, tmp_path,
                                                     monkeypatch):
    from stgcn_pyg.data import all_clips, load_dataset, strided_clips

    monkeypatch.setattr(test_modes, "RESULTS", tmp_path)
    run = finished_run("full-seed3")
    test_modes.main([str(run), "--out", "modes"])
    df = pd.read_csv(tmp_path / "modes.csv")
    assert df["mode"].tolist() == ["evenly", "all", "strided"] and set(df.variant) == {"full"} and set(df.seed) == {3}
    ds = load_dataset("synthetic", tiny_root)
    frames = pd.concat([ds.query, ds.gallery]).num_frames.tolist()
    T = 2  # the tiny run's eval.seq_len
    expected = {"evenly": len(frames), "all": sum(len(all_clips(n, T)) for n in frames),
                "strided": sum(len(strided_clips(n, T)) for n in frames)}
    assert dict(zip(df["mode"], df.clips)) == expected
    assert df.mAP.between(0, 100).all() and (df.seq_len == T).all()
    assert "| evenly |" in (tmp_path / "modes.md").read_text()
    test_modes.main([str(run), "--out", "modes"])  # resumed: nothing scored twice
    assert len(pd.read_csv(tmp_path / "modes.csv")) == 3


def test_a_folder_that_is_not_a_finished_run_is_named(benchmark_module, tmp_path):
    parse_run = benchmark_module("common").parse_run  # shared by the benchmarks over finished runs
    (tmp_path / "notarun").mkdir()
    with pytest.raises(SystemExit, match="notarun: not a run"):
        parse_run(tmp_path / "notarun")
    (tmp_path / "full-seed1").mkdir()
    with pytest.raises(SystemExit, match="full-seed1: no last.pt"):
        parse_run(tmp_path / "full-seed1")
    (tmp_path / "full-seed1" / "last.pt").touch()
    assert parse_run(tmp_path / "full-seed1") == ("full", 1)


def test_summary_pairs_full_and_global_by_seed(test_modes):
    rows = [dict(variant=v, seed=s, mode=m, mAP=x) for v, s, m, x in [
        ("global", 0, "evenly", 40.0), ("global", 0, "strided", 41.0), ("global", 1, "evenly", 50.0),
        ("global", 1, "strided", 53.0), ("full", 0, "evenly", 44.0), ("full", 0, "strided", 46.0),
        ("full", 1, "evenly", 52.0), ("full", 1, "strided", 58.0), ("full", 0, "all", 45.0), ("full", 1, "all", 55.0)]]
    table = test_modes.summary(pd.DataFrame(rows)).set_index("mode")
    # full - global: evenly 4 and 2 (mean 3, sd sqrt 2: half-width 12.706); strided 5 and 5 (sd 0)
    assert table.loc["evenly", "full − global (paired by seed)"] == "+3.0 [-9.7, +15.7]; 2/2"
    assert table.loc["strided", "full − global (paired by seed)"] == "+5.0 [+5.0, +5.0]; 2/2"
    assert table.loc["strided", "full: − evenly"] == "+4.0 [-21.4, +29.4]; 2/2"  # 2 and 6: sd 2 sqrt 2
    assert table.loc["evenly", "global mAP"] == "45.0 (2 seeds)"
    assert table.loc["strided", "full: − all"] == "+2.0 [-10.7, +14.7]; 2/2"  # 1 and 3: sd sqrt 2
    assert table.loc["all", "global: − evenly"] == "" and table.loc["all", "global mAP"] == ""  # no "all" score
