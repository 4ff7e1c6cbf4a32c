"""Test-time box misalignment (`stgcn-pyg evaluate / extract / search --misalign`): the geometry by hand,
which frames, the seeding, share 0, the order with --occlude, and what the commands record."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from stgcn_pyg.cli import main
from stgcn_pyg.data import (BoxMisalignment, TestMisalignment, TestOcclusion, build_test_loader, load_dataset,
                            misalign_frame, resample_box)
from stgcn_pyg.data.loader import ClipTestSet, load_tracklet_frames
from stgcn_pyg.data.misalignment import (ASPECT_RANGE, MAX_SHIFT_X, MAX_SHIFT_Y, SCALE_RANGE, box_iou,
                                         draw_misalignment)
from stgcn_pyg.data.perturbation import perturbed_count
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.evaluation import TestOptions, read_descriptor_file


@pytest.fixture(scope="module")
def query(tiny_root):
    return load_dataset("mars", tiny_root).query


def pattern(height=64, width=32) -> torch.Tensor:
    """A uint8 [3, H, W] frame whose every pixel differs from its neighbours (a shift by k pixels is visible)."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([(x * 7 + y * 3) % 256, (y * 5) % 256, (x * 11 + 17) % 256]).to(torch.uint8)


def frames_of(df, misalignment=None, occlusion=None, seq_len=2, batch_size=64, mode="all"):
    loader = build_test_loader(df, seq_len=seq_len, mode=mode, image_size=(64, 32), batch_size=batch_size,
                               misalignment=misalignment, occlusion=occlusion)
    return torch.cat([clips for clips, _ in loader])


# --------------------------------------------------------------------------- geometry, by hand
def test_scale_one_and_no_shift_return_the_frame_exactly():
    frame = pattern()
    assert torch.equal(resample_box(frame, BoxMisalignment()), frame)
    hwc = frame.permute(1, 2, 0).numpy().copy()
    assert np.array_equal(resample_box(hwc, BoxMisalignment(0.0, 0.0, 1.0, 1.0)), hwc)
    assert np.array_equal(np.asarray(resample_box(Image.fromarray(hwc), BoxMisalignment())), hwc)
    assert torch.equal(resample_box(frame[0], BoxMisalignment()), frame[0])  # [H, W]


def test_a_pure_shift_moves_the_pattern_by_whole_pixels_and_repeats_the_border():
    frame = pattern(64, 32)
    # the box 4 px right (0.125 of 32) and 8 px up (0.125 of 64): the content moves 4 px left and 8 px down
    out = resample_box(frame, BoxMisalignment(dx=4 / 32, dy=-8 / 64))
    assert torch.equal(out[:, 8:, :28], frame[:, :56, 4:])
    assert torch.equal(out[:, 8:, 28:], frame[:, :56, 31:].expand(-1, -1, 4))  # right border column repeated
    assert torch.equal(out[:, :8, :28], frame[:, :1, 4:].expand(-1, 8, -1))  # top border row repeated
    assert torch.equal(out[:, :8, 28:], frame[:, :1, 31:].expand(-1, 8, 4))  # the corner pixel
    # the numpy (channels-last) form moves the same pixels
    hwc = resample_box(frame.permute(1, 2, 0).numpy(), BoxMisalignment(dx=4 / 32, dy=-8 / 64))
    assert np.array_equal(hwc, out.permute(1, 2, 0).numpy())


def test_scaling_samples_bilinearly_about_the_centre():
    row = torch.tensor([[[0, 10, 20, 30]]], dtype=torch.uint8)  # [1, 1, 4]
    # a box twice as wide: output pixel u samples x = 2u - 1.5 -> -1.5 (border), 0.5, 2.5, 4.5 (border)
    assert resample_box(row, BoxMisalignment(scale_x=2.0))[0, 0].tolist() == [0, 5, 25, 30]
    # half as wide: x = 0.5u + 0.75 -> 7.5, 12.5, 17.5, 22.5, rounded half up
    assert resample_box(row, BoxMisalignment(scale_x=0.5))[0, 0].tolist() == [8, 13, 18, 23]
    assert box_iou(BoxMisalignment(dx=0.5)) == pytest.approx(1 / 3)
    assert box_iou(BoxMisalignment(scale_x=2.0, scale_y=2.0)) == pytest.approx(1 / 4)


def test_drawn_boxes_stay_within_the_documented_bounds():
    dx, dy, sx, sy = draw_misalignment(np.random.default_rng(0), 20000)
    assert np.abs(dx).max() <= MAX_SHIFT_X and np.abs(dy).max() <= MAX_SHIFT_Y
    assert SCALE_RANGE[0] <= np.sqrt(sx * sy).min() and np.sqrt(sx * sy).max() <= SCALE_RANGE[1]
    assert ASPECT_RANGE[0] <= (sx / sy).min() and (sx / sy).max() <= ASPECT_RANGE[1]
    # the extremes together still overlap the true box with IoU > 0.5 (a correct detection), as the docs say
    worst = min(box_iou(BoxMisalignment(x, y, s * math.sqrt(a), s / math.sqrt(a)))
                for x, y, s, a in itertools.product((-MAX_SHIFT_X, MAX_SHIFT_X), (-MAX_SHIFT_Y, MAX_SHIFT_Y),
                                                    SCALE_RANGE, ASPECT_RANGE))
    assert worst == pytest.approx(0.555, abs=0.001)


def test_misalign_frame_takes_either_layout_and_a_seed():
    frame = pattern()
    chw = misalign_frame(frame, np.random.default_rng(5))
    assert chw.dtype == torch.uint8 and chw.shape == frame.shape and not torch.equal(chw, frame)
    assert torch.equal(chw, misalign_frame(frame, 5))  # a seed is a generator's seed
    hwc = misalign_frame(frame.permute(1, 2, 0).numpy(), 5)
    assert np.array_equal(hwc, chw.permute(1, 2, 0).numpy())
    pil = misalign_frame(Image.fromarray(hwc), 5)
    assert isinstance(pil, Image.Image) and pil.size == (32, 64)
    with pytest.raises(TypeError):
        misalign_frame([[0]], 5)


# --------------------------------------------------------------------------- which frames
def test_share_gives_the_counted_frames_scattered_and_nested():
    frames = [pattern(16, 8) + i for i in range(20)]
    before = [f.clone() for f in frames]
    previous = set()
    for share in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0):
        mis = TestMisalignment(share, seed=3)
        affected = mis.affected(7, len(frames))
        assert len(affected) == perturbed_count(share, 20) and affected == sorted(affected)
        out = mis.apply(frames, range(20), 7, 20)
        assert [i for i in range(20) if not torch.equal(out[i], frames[i])] == affected
        assert previous <= set(affected)  # a larger share adds frames; the smaller share's stay as they were
        assert all(torch.equal(out[i], kept[i]) for i in previous)
        previous, kept = set(affected), out
    assert all(torch.equal(a, b) for a, b in zip(frames, before))  # the input is left alone
    # scattered: not one run (for this seed), unlike an occluder
    half = TestMisalignment(0.5, seed=3).affected(7, 20)
    assert half != list(range(half[0], half[0] + 10))
    # every frame of a tracklet at once, for pictures: what the loader's calls give
    mis = TestMisalignment(0.5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(mis.frames(frames, 7), mis.apply(frames, range(20), 7, 20)))


def test_each_frame_of_a_clip_gets_the_tracklets_box_whatever_frames_the_clip_holds():
    frames = [pattern(16, 8) + i for i in range(9)]
    mis = TestMisalignment(1.0, seed=1)
    whole = mis.apply(frames, range(9), 4, 9)
    part = mis.apply([frames[i] for i in (6, 2, 2)], (6, 2, 2), 4, 9)
    assert torch.equal(part[0], whole[6]) and torch.equal(part[1], whole[2]) and torch.equal(part[2], whole[2])


# --------------------------------------------------------------------------- seeding, share 0
def test_same_seed_same_pixels_across_batch_sizes_and_shards(query):
    a = frames_of(query, TestMisalignment(0.5, seed=7))
    assert torch.equal(a, frames_of(query, TestMisalignment(0.5, seed=7), batch_size=3))
    assert not torch.equal(a, frames_of(query, TestMisalignment(0.5, seed=8)))
    mis = TestMisalignment(1.0, seed=2)
    whole = frames_of(query, mis, mode="evenly")
    shard = frames_of(query.iloc[2:4], mis, mode="evenly", batch_size=1)
    assert torch.equal(whole[2:4], shard)
    # query and gallery rows, and occluders of the same seed, draw from streams of their own
    assert TestMisalignment(1.0, split="query").plan(0, 8) != TestMisalignment(1.0, split="gallery").plan(0, 8)
    occ, mis = TestOcclusion(1.0, seed=4), TestMisalignment(1.0, seed=4)
    assert occ.generator(3).random() != mis.generator(3).random()


def test_share_zero_is_bit_identical_to_no_misalignment(query):
    plain = frames_of(query)
    assert torch.equal(plain, frames_of(query, TestMisalignment(0.0, seed=5)))
    assert "misalignment" not in TestOptions(misalign=0.0).loader_settings()
    assert not torch.equal(plain, frames_of(query, TestMisalignment(0.5, seed=5)))


def test_options_misalign_the_query_and_the_gallery_only_when_asked():
    options = TestOptions(misalign=0.25, misalign_seed=4)
    assert options.misalignment("query") == TestMisalignment(0.25, seed=4, split="query")
    assert options.misalignment("gallery") is None and options.occlusion("query") is None
    assert options.replace(misalign_gallery=True).misalignment("gallery") == TestMisalignment(0.25, seed=4,
                                                                                                split="gallery")
    assert options.loader_settings()["misalignment"] == TestMisalignment(0.25, seed=4)
    assert options.perturbation_fields() == {"misalign": 0.25, "misalign_gallery": False, "misalign_seed": 4}


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan"), "half"])
def test_a_share_outside_zero_one_is_one_clear_error(share):
    with pytest.raises(ConfigError, match=r"--misalign: the share of frames to misalign is a number in \[0, 1\]"):
        TestMisalignment(share)
    with pytest.raises(ConfigError, match=r"--misalign: .*\[0, 1\]"):
        TestOptions(misalign=share)


# --------------------------------------------------------------------------- with --occlude
def test_the_box_is_misaligned_first_and_the_occluder_drawn_into_it(query):
    mis, occ = TestMisalignment(1.0, seed=6), TestOcclusion(1.0, seed=6)
    ds = ClipTestSet(query, 2, "all", lambda imgs: imgs, occlusion=occ, misalignment=mis)
    got, t, _ = ds[0]
    _, idx = ds.clips[0]
    raw, _ = load_tracklet_frames(query["frames"].iloc[t], idx)
    n = len(query["frames"].iloc[t])
    expected = occ.apply(mis.apply(raw, idx, t, n), idx, t, n)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    other_order = mis.apply(occ.apply(raw, idx, t, n), idx, t, n)
    assert not all(torch.equal(a, b) for a, b in zip(got, other_order))


# --------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, untrained_checkpoint):
    return untrained_checkpoint(tmp_path_factory.mktemp("misalign"))


def evaluate_json(capsys, *argv):
    assert main(["evaluate", *argv, "--mode", "evenly", "--engine", "torch", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_records_the_share_and_composes_with_occlude(checkpoint, capsys):
    base = ["--checkpoint", str(checkpoint)]
    plain = evaluate_json(capsys, *base)
    assert "misalign" not in plain
    zero = evaluate_json(capsys, *base, "--misalign", "0")
    assert zero["mAP"] == plain["mAP"] and "misalign" not in zero
    both = evaluate_json(capsys, *base, "--misalign", "1", "--misalign-gallery", "--occlude", "0.5", "--seed", "3")
    assert (both["misalign"], both["misalign_gallery"], both["misalign_seed"]) == (1.0, True, 3)
    assert (both["occlude"], both["occlude_gallery"], both["occlude_seed"]) == (0.5, False, 3)
    misaligned = evaluate_json(capsys, *base, "--misalign", "1", "--misalign-gallery", "--seed", "3")
    assert misaligned["mAP"] != plain["mAP"] and misaligned["mAP"] != both["mAP"]
    assert main(["evaluate", *base, "--mode", "evenly", "--engine", "torch", "--misalign", "0.25",
                 "--occlude", "0.5", "--seed", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # the tiny set's short tracklets round the shares up: the heading says to what (14 of 48 is 29.2 %)
    assert ("query misaligned: 25 % of each tracklet's frames (seed 2), rounded per tracklet to 14 of 48 frames "
            "(29.2 %), query occluded: 50 % of each tracklet's frames (seed 2), rounded per tracklet to 25 of 48 "
            "frames (52.1 %)") in out


def test_extract_share_zero_is_bit_identical_and_the_file_records_the_share(checkpoint, tmp_path, capsys):
    def extract(name, *flags):
        path = tmp_path / name
        assert main(["extract", "--checkpoint", str(checkpoint), "--mode", "evenly", "--engine", "torch",
                     "--out", str(path), *flags]) == 0
        return read_descriptor_file(path), " ".join(capsys.readouterr().out.split())

    plain, _ = extract("plain.pt")
    zero, _ = extract("zero.pt", "--misalign", "0")
    assert torch.equal(zero["query_features"], plain["query_features"])
    assert torch.equal(zero["gallery_features"], plain["gallery_features"]) and "misalign" not in zero
    half, said = extract("half.pt", "--misalign", "0.5", "--seed", "4")
    assert (half["misalign"], half["misalign_gallery"], half["misalign_seed"]) == (0.5, False, 4)
    assert "query misaligned: 50 % of each tracklet's frames (seed 4)" in said
    assert not torch.equal(half["query_features"], plain["query_features"])
    assert torch.equal(half["gallery_features"], plain["gallery_features"])  # the gallery only when asked
    # evaluate --features names the descriptors' misalignment, in --json and the heading
    assert main(["evaluate", "--features", str(tmp_path / "half.pt"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert (scored["misalign"], scored["misalign_gallery"], scored["misalign_seed"]) == (0.5, False, 4)
    assert main(["evaluate", "--features", str(tmp_path / "half.pt")]) == 0
    assert "query misaligned: 50 % of each tracklet's frames (seed 4)" in " ".join(capsys.readouterr().out.split())


def test_search_misaligns_the_query_and_says_so(checkpoint, capsys):
    def search(*flags):
        assert main(["search", "--checkpoint", str(checkpoint), "--query-tracklet", "0", "--mode", "evenly",
                     "--engine", "torch", "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out)

    plain, moved = search(), search("--misalign", "1", "--seed", "1")
    assert "misalign" not in plain and (moved["misalign"], moved["misalign_seed"]) == (1.0, 1)
    assert [r["distance"] for r in moved["results"]] != [r["distance"] for r in plain["results"]]


@pytest.mark.parametrize("argv", [
    ["evaluate", "--features", "f.pt", "--misalign", "0.5"],
    ["evaluate", "--features", "f.pt", "--misalign-gallery"],
])
def test_features_with_misalign_is_an_error(argv, capsys):
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("error:") == 1 and "--misalign changes the frames: give --checkpoint or --model" in err
