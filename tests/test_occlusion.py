"""Test-time occlusion (`stgcn-pyg evaluate --occlude`): which frames, which pixels, and the errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from stgcn_pyg.cli import main
from stgcn_pyg.data import build_test_loader, load_dataset
from stgcn_pyg.data.loader import load_tracklet_frames
from stgcn_pyg.data.occlusion import TestOcclusion, occluded_count
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.evaluation import TestOptions


@pytest.fixture(scope="module")
def query(tiny_root):
    return load_dataset("mars", tiny_root).query


def frames_of(df, occlusion=None, mode="all", seq_len=2, num_workers=0):
    """Every clip frame of ``df`` as loaded (uint8 is not exposed: compare the normalised floats)."""
    loader = build_test_loader(df, seq_len=seq_len, mode=mode, image_size=(64, 32), batch_size=64,
                               num_workers=num_workers, occlusion=occlusion)
    return torch.cat([clips for clips, _ in loader])


def changed_frames(frames: list[torch.Tensor], occlusion: TestOcclusion, key: int) -> list[int]:
    """Indices of the frames whose pixels ``occlusion`` changes."""
    drawn = occlusion.apply(frames, range(len(frames)), key, len(frames))
    return [i for i, (a, b) in enumerate(zip(frames, drawn)) if not torch.equal(a, b)]


def test_occluded_count_rounds_half_up_by_hand():
    # share x frames: 0.25 x 10 = 2.5 -> 3; 0.5 x 5 = 2.5 -> 3; 0.3 x 7 = 2.1 -> 2; 0.75 x 4 = 3; 0.1 x 4 = 0.4 -> 0
    assert [occluded_count(s, n) for s, n in ((0.25, 10), (0.5, 5), (0.3, 7), (0.75, 4), (0.1, 4))] == [3, 3, 2, 3, 0]
    assert occluded_count(0.0, 9) == 0 and occluded_count(1.0, 9) == 9


def test_a_short_tracklet_gets_one_contiguous_run_of_the_counted_frames(query):
    paths = query["frames"].iloc[0]
    frames, _ = load_tracklet_frames(paths, range(len(paths)))
    n = len(frames)
    for share in (0.25, 0.5, 0.75):
        occ = TestOcclusion(share, seed=3)
        run = occ.occluded(0, n)
        assert len(run) == occluded_count(share, n) and 0 <= run.start and run.stop <= n
        # every frame of the run is drawn on (the occluder stays inside the box), and no other
        assert changed_frames(frames, occ, 0) == list(run)


def test_share_one_occludes_every_frame_and_the_input_is_left_alone(query):
    for row in range(len(query)):
        paths = query["frames"].iloc[row]
        frames, _ = load_tracklet_frames(paths, range(len(paths)))
        before = [f.clone() for f in frames]
        assert changed_frames(frames, TestOcclusion(1.0, seed=row), row) == list(range(len(frames)))
        assert all(torch.equal(a, b) for a, b in zip(frames, before))


def test_same_seed_same_pixels_other_seed_other_pixels(query):
    a = frames_of(query, TestOcclusion(0.5, seed=7))
    assert torch.equal(a, frames_of(query, TestOcclusion(0.5, seed=7)))
    assert torch.equal(a, frames_of(query, TestOcclusion(0.5, seed=7), num_workers=2))  # any worker, same pixels
    assert not torch.equal(a, frames_of(query, TestOcclusion(0.5, seed=8)))
    # query and gallery tracklets of the same row draw different occluders
    assert TestOcclusion(1.0, split="query").plan(0, 8, 64, 32) != TestOcclusion(1.0, split="gallery").plan(0, 8, 64, 32)


def test_share_zero_is_bit_identical_to_no_occlusion(query):
    plain = frames_of(query)
    assert torch.equal(plain, frames_of(query, TestOcclusion(0.0, seed=5)))
    assert "occlusion" not in TestOptions(occlude=0.0).loader_settings()  # today's loader, untouched
    assert not torch.equal(plain, frames_of(query, TestOcclusion(0.5, seed=5)))


def test_a_shard_of_the_table_draws_what_the_whole_table_does(query):
    occ = TestOcclusion(0.5, seed=2)
    whole = build_test_loader(query, seq_len=2, mode="evenly", image_size=(64, 32), batch_size=64, occlusion=occ)
    shard = build_test_loader(query.iloc[2:4], seq_len=2, mode="evenly", image_size=(64, 32), batch_size=64,
                              occlusion=occ)
    assert torch.equal(next(iter(whole))[0][2:4], next(iter(shard))[0])


def test_options_occlude_the_query_and_the_gallery_only_when_asked():
    options = TestOptions(occlude=0.25, occlude_seed=4)
    assert options.occlusion("query") == TestOcclusion(0.25, seed=4, split="query")
    assert options.occlusion("gallery") is None
    assert options.replace(occlude_gallery=True).occlusion("gallery") == TestOcclusion(0.25, seed=4, split="gallery")


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan"), "half"])
def test_a_share_outside_zero_one_is_one_clear_error(share):
    with pytest.raises(ConfigError, match=r"share of frames to occlude is a number in \[0, 1\]"):
        TestOcclusion(share)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        TestOptions(occlude=share)


def test_cli_refuses_a_bad_share_before_any_work(capsys, tmp_path):
    # the checkpoint does not exist: the share is checked first
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--occlude", "1.5"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("error:") == 1 and "--occlude: the share of frames to occlude is a number in [0, 1], got 1.5" in err
    assert main(["evaluate", "--features", str(tmp_path / "f.pt"), "--occlude", "0.5"]) == 2
    assert "give --checkpoint or --model, not --features" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("command", ["evaluate", "extract", "search"])
@pytest.mark.parametrize("flag", ["--occlude", "--misalign"])
def test_every_command_refuses_a_bad_share_before_any_work(command, flag, capsys, tmp_path):
    # evaluate, extract and search take the same perturbation flags; the checkpoint does not exist
    argv = [command, "--checkpoint", str(tmp_path / "none.pt"),
            *{"evaluate": [], "extract": ["--out", str(tmp_path / "d.pt")], "search": ["--query-tracklet", "0"]}[command]]
    verb = flag[2:]
    for bad, shown in (("1.5", "1.5"), ("-0.1", "-0.1"), ("nan", "nan"), ("half", "'half'")):
        assert main([*argv, flag, bad]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert err.count("error:") == 1, err
        assert f"{flag}: the share of frames to {verb} is a number in [0, 1], got {shown}" in err
    assert main([*argv, f"{flag}-gallery"]) == 2
    assert f"{flag}-gallery: give the share to {verb} with {flag} SHARE" in " ".join(capsys.readouterr().err.split())


def _to_folder_layout(ds, root):
    """The query and gallery of ``ds`` as the folder dataset's tree: <split>/<pid>/c<cam>/<tracklet>/<frames>."""
    for split in ("query", "gallery"):
        for r in getattr(ds, split).itertuples():
            folder = root / split / str(r.pid) / f"c{r.camid}" / str(r.tracklet)
            folder.mkdir(parents=True)
            for p in r.frames:
                shutil.copy(p, folder)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, untrained_checkpoint):
    return untrained_checkpoint(tmp_path_factory.mktemp("occlude"))


def evaluate_json(capsys, *argv):
    assert main(["evaluate", *argv, "--mode", "evenly", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("reader", ["synthetic", "mars", "folder"])
def test_evaluate_occlude_on_every_reader(reader, checkpoint, tiny_root, tmp_path, capsys):
    where = {"synthetic": [],  # the checkpoint's own set, as its config records it
             "mars": ["--dataset", "mars", "--root", str(tiny_root)],
             "folder": ["--dataset", "folder",
                        "--root", str(_to_folder_layout(load_dataset("mars", tiny_root), tmp_path / "f"))]}[reader]
    base = ["--checkpoint", str(checkpoint), *where, "--engine", "torch"]
    plain = evaluate_json(capsys, *base)
    zero = evaluate_json(capsys, *base, "--occlude", "0")
    assert zero["mAP"] == plain["mAP"] and "occlude" not in zero
    occluded = evaluate_json(capsys, *base, "--occlude", "1", "--occlude-gallery", "--seed", "3")
    assert occluded["occlude"] == 1.0 and occluded["occlude_gallery"] and occluded["occlude_seed"] == 3
    assert occluded["mAP"] != plain["mAP"]  # every frame of both splits changed
    assert evaluate_json(capsys, *base, "--occlude", "1", "--occlude-gallery", "--seed", "3")["mAP"] == occluded["mAP"]


def test_the_results_heading_names_the_share(checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--mode", "evenly", "--engine", "torch",
                 "--occlude", "0.25"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "query occluded: 25 % of each tracklet's frames (seed 0)" in out


def test_an_exported_model_is_occluded_like_its_checkpoint(checkpoint, tmp_path, capsys):
    exported = tmp_path / "tiny.pt2"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torch-export", "--out", str(exported)]) == 0
    capsys.readouterr()
    eager = evaluate_json(capsys, "--checkpoint", str(checkpoint), "--engine", "torch", "--occlude", "0.5", "--seed", "1")
    deployed = evaluate_json(capsys, "--model", str(exported), "--occlude", "0.5", "--seed", "1")
    assert deployed["occlude"] == 0.5 and deployed["occlude_seed"] == 1
    for key in ("rank1", "mAP", "mINP"):
        assert deployed[key] == pytest.approx(eager[key], abs=1e-6), key


def test_the_fields_count_the_frames_the_share_came_to():
    import pandas as pd

    from stgcn_pyg.evaluation import perturbation_text

    query = pd.DataFrame({"frames": [["f"] * 10, ["f"] * 20]})  # 30 frames
    gallery = pd.DataFrame({"frames": [["f"] * 40]})
    tables = {"query": query, "gallery": gallery}
    one = TestOptions(occlude=0.01).perturbation_fields(tables)
    assert one["occlude_frames"] == [0, 30]  # 1 % of 10 and of 20 frames both round to none
    assert TestOptions(occlude=0.25, occlude_gallery=True).perturbation_fields(tables)["occlude_frames"] == [
        3 + 5 + 10, 70]  # 2.5 -> 3, 5, 10
    assert TestOptions(misalign=0.5).perturbation_fields(tables)["misalign_frames"] == [15, 30]
    assert "occlude_frames" not in TestOptions(occlude=0.01).perturbation_fields()  # no tables, no count
    # the heading says what the share came to where that differs, and only there
    assert perturbation_text(one) == ["query occluded: 1 % of each tracklet's frames (seed 0), rounded per "
                                      "tracklet to 0 of 30 frames (0.0 %)"]
    assert perturbation_text(TestOptions(misalign=0.5).perturbation_fields(tables)) == [
        "query misaligned: 50 % of each tracklet's frames (seed 0)"]


def test_a_share_that_rounds_to_no_frame_says_so(checkpoint, capsys):
    got = evaluate_json(capsys, "--checkpoint", str(checkpoint), "--engine", "torch", "--occlude", "0.01")
    assert got["occlude"] == 0.01 and got["occlude_frames"][0] == 0 and got["occlude_frames"][1] > 0
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--mode", "evenly", "--engine", "torch",
                 "--occlude", "0.01"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (f"query occluded: 1 % of each tracklet's frames (seed 0), rounded per tracklet to 0 of "
            f"{got['occlude_frames'][1]:,} frames (0.0 %)") in out
