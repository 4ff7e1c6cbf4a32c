"""The synthetic generator: layout, splits, determinism, look-alikes, caching, CLI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from stgcn_pyg.cli import main
from stgcn_pyg.data import SynthConfig, ensure_synthetic, generate_synthetic, load_dataset
from stgcn_pyg.data.synth import plan_synthetic
from stgcn_pyg.data.synth.attributes import VARIANT_ATTRS, look_alike, random_identity
from stgcn_pyg.errors import DatasetError

# The generator's own tests: a small set in both layouts, with more junk and distractors than by default.
SMALL_SET = dict(num_ids=4, num_cameras=3, min_frames=2, max_frames=3, height=32, width=16, junk_fraction=0.2,
                 distractor_fraction=0.3)


def _digest(root: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "synth.json":
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, SynthConfig(**SMALL_SET), layout="both", workers=1, progress=False)
    return out


def test_mars_layout_splits_and_queries(small_set):
    ds = load_dataset("mars", small_set)
    official = load_dataset("mars", small_set, protocol="official")
    train_ids, test_ids = set(ds.train.pid), set(official.gallery.pid) - {0, -1}
    assert train_ids and test_ids and not train_ids & test_ids
    assert len(train_ids | test_ids) == 4 and ds.num_train_pids == len(train_ids)
    # Query: exactly one tracklet per (test id, camera), MARS-style.
    pairs = list(zip(ds.query.pid, ds.query.camid))
    assert len(pairs) == len(set(pairs))
    test_pairs = {(p, c) for p, c in zip(official.gallery.pid, official.gallery.camid) if p > 0}
    assert set(pairs) == test_pairs
    # Each query has a same-id gallery tracklet in another camera (so the standard protocol scores it).
    g = ds.gallery
    for p, c in pairs:
        assert ((g.pid == p) & (g.camid != c)).any()
    # Junk (-1) only in the official gallery, distractors (0) in both.
    assert (official.gallery.pid == -1).any() and not (ds.gallery.pid == -1).any()
    assert (ds.gallery.pid == 0).any()
    assert set(ds.train.camid) <= {1, 2, 3}
    assert ds.train.num_frames.between(2, 3).all()
    from PIL import Image

    assert Image.open(ds.train.frames[0][0]).size == (16, 32)


def test_duke_layout(small_set):
    mars = load_dataset("mars", small_set)
    duke = load_dataset("dukemtmc-videoreid", small_set)
    assert sorted(duke.train.pid) == sorted(mars.train.pid)
    # One query per test identity; distractors are identities of their own, gallery only.
    assert len(duke.query) == duke.query.pid.nunique() == len(set(mars.query.pid))
    extra = set(duke.gallery.pid) - set(duke.query.pid)
    n_distractors = int((mars.gallery.pid == 0).sum())
    assert len(extra) == n_distractors
    assert all(duke.gallery.pid.tolist().count(p) == 1 for p in extra)


def test_deterministic_by_seed_whatever_the_workers(small_set, tmp_path):
    cfg = SynthConfig(**SMALL_SET)
    generate_synthetic(tmp_path / "a", cfg, layout="both", workers=2, progress=False)
    assert _digest(tmp_path / "a") == _digest(small_set)
    generate_synthetic(tmp_path / "b", SynthConfig(**{**SMALL_SET, "seed": 1}), layout="mars", workers=1,
                       progress=False)
    assert _digest(tmp_path / "b") != _digest(tmp_path / "a" / "mars")


def test_lookalikes_differ_in_exactly_one_attribute():
    rng = np.random.default_rng(0)
    base = random_identity(rng)
    gait_keys = {"cadence", "stride", "arm_swing"}
    for attr in VARIANT_ATTRS:
        v = look_alike(base, attr, np.random.default_rng(1))
        changed = {k for k in base if str(base[k]) != str(v[k]).replace("[", "(").replace("]", ")")}
        assert changed, attr
        if attr == "gait":
            assert changed == gait_keys
        elif attr == "accessory":
            assert changed <= {"accessory", "accessory_color"} and "accessory" in changed
        elif attr == "pattern_color":
            assert changed <= {"pattern", "pattern_color"} and "pattern_color" in changed
        elif attr == "hair":
            assert changed == {"hair"}
        else:
            assert changed == {attr}
    # The plan builds groups of look-alikes: some identities share the torso colour exactly.
    plan = plan_synthetic(SynthConfig(num_ids=30))
    tops = [str(i["top_color"]) for i in plan.identities]
    assert len(set(tops)) < len(tops)


def test_ensure_synthetic_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("STGCN_PYG_CACHE", str(tmp_path / "cache"))
    small = {k: v for k, v in SMALL_SET.items() if k != "num_ids"}
    root = ensure_synthetic(num_ids=3, progress=False, workers=1, **small)
    assert root.parent == tmp_path / "cache" and root.name.startswith("synthetic-")
    stamp = (root / "mars" / "info" / "query_IDX.mat").stat().st_mtime_ns
    assert ensure_synthetic(num_ids=3, progress=False, workers=1, **small) == root
    assert (root / "mars" / "info" / "query_IDX.mat").stat().st_mtime_ns == stamp
    ds = load_dataset("synthetic", num_ids=3, progress=False, workers=1, **small)
    assert ds.name == "synthetic" and ds.root == root / "mars"
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp-" in p.name]
    with pytest.raises(DatasetError, match="bad synthetic dataset option"):
        ensure_synthetic(num_ids=3, colour="red")
    with pytest.raises(DatasetError, match="at least 2 identities"):
        ensure_synthetic(num_ids=1)


def test_generating_says_what_and_where_with_a_bar_only_on_a_terminal(tmp_path, capsys, monkeypatch):
    import re

    small = {k: v for k, v in SMALL_SET.items() if k != "num_ids"}
    root = ensure_synthetic(tmp_path / "in-a-log", num_ids=3, workers=1, **small)  # captured: not a terminal
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"generating the synthetic set (3 identities; first use only) into {root}"
    assert len(lines) == 2 and re.fullmatch(r"generated the synthetic set in \d+ s", lines[1]), lines
    ensure_synthetic(root, num_ids=3, workers=1, **small)
    assert capsys.readouterr().out == ""  # there already: nothing to say
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: this is a terminal
    ensure_synthetic(tmp_path / "on-a-terminal", num_ids=3, workers=1, **small)
    out = capsys.readouterr().out
    assert "generating the synthetic set" in out and "synth (MARS layout)" in out  # the bar
    assert "generated the synthetic set in" in out


def test_cli_synth_and_info(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--num-ids", "3", "--num-cameras", "2", "--min-frames", "2",
                 "--max-frames", "2", "--height", "32", "--width", "16", "--workers", "1"]) == 0
    assert main(["data", "info", "--dataset", "mars", "--root", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "gallery" in text and "all frames decode" in text
    assert main(["data", "info", "--dataset", "mars", "--root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "dataset root not found" in err and "Traceback" not in err
    # --verify reports an unreadable frame by name.
    victim = sorted((out / "mars" / "bbox_train").rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    assert main(["data", "info", "--dataset", "mars", "--root", str(out), "--verify"]) == 1
    assert victim.name in capsys.readouterr().out


def test_info_accepts_the_paths_it_prints_and_checks_a_folder_before_generating(tmp_path, capsys, monkeypatch):
    """`data info --dataset synthetic --root` takes the set's folder or its mars/ or duke/ child."""
    import stgcn_pyg.data.synth.cache as synth  # where ensure_synthetic looks generate_synthetic up

    out = tmp_path / "set"
    assert main(["synth", "--out", str(out), "--layout", "both", "--num-ids", "3", "--num-cameras", "2",
                 "--min-frames", "2", "--max-frames", "2", "--height", "32", "--width", "16", "--workers", "1"]) == 0
    capsys.readouterr()

    def no_generation(*args, **kwargs):
        raise AssertionError("generated a synthetic set where one exists or where none may be written")

    monkeypatch.setattr(synth, "generate_synthetic", no_generation)
    printed = []
    for root in (out, out / "mars", out / "dukemtmc-videoreid"):
        assert main(["data", "info", "--dataset", "synthetic", "--root", str(root)]) == 0
        printed.append(" ".join(capsys.readouterr().out.split()))
    assert all(p == printed[0] for p in printed) and f"synthetic: {out / 'mars'}" in printed[0]

    # A folder that is not a synthetic set and not empty: refused at once, naming it.
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"x")
    assert main(["data", "info", "--dataset", "synthetic", "--root", str(other)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{other}: no synthetic set here" in err and "Traceback" not in err
    with pytest.raises(DatasetError, match="without the MARS layout"):
        duke_only = tmp_path / "duke-only"
        monkeypatch.undo()
        generate_synthetic(duke_only, SynthConfig(**SMALL_SET), layout="duke", workers=1, progress=False)
        monkeypatch.setattr(synth, "generate_synthetic", no_generation)
        ensure_synthetic(duke_only, progress=False)


def test_summary_counts_people_not_junk_or_distractors(tmp_path):
    from data_fixtures import MARS_TEST, write_mars

    ds = load_dataset("mars", write_mars(tmp_path), protocol="official")
    test = ds.summary()[2]
    people = {pid for pid, *_ in MARS_TEST if pid > 0}
    assert test["split"] == "gallery" and test["ids"] == len(people) == 2
    assert test["junk"] == 1 and test["distractors"] == 1


# The frames of a small default-knob set, hashed at commit 50796af (before the occlusion and misalignment
# knobs existed): the knobs at their defaults must draw exactly what the generator drew then.
DEFAULT_FRAMES_SHA256 = "094b784fd7ca0b45e2dac7c9432c9609276e763378a52d5b5a94109f874ccc6f"
DEFAULT_SET_KEY = "80842f107e"  # the cache folder of the default set, synthetic-<key>, as users have it


def _frames_sha256(cfg: SynthConfig) -> str:
    from stgcn_pyg.data.synth.drawing import camera_background
    from stgcn_pyg.data.synth.writers import _render_track

    plan = plan_synthetic(cfg)
    assert {tr.kind for tr in plan.tracks} == {"person", "distractor", "junk"}
    h, backgrounds = hashlib.sha256(), {}
    for tr in plan.tracks:
        if tr.cam not in backgrounds:
            backgrounds[tr.cam] = camera_background(plan.cameras[tr.cam - 1], cfg.height, cfg.width)
        ident = plan.identities[tr.ident_key] if tr.ident_key >= 0 else None
        for img in _render_track(cfg, ident, plan.cameras[tr.cam - 1], backgrounds[tr.cam], tr):
            h.update(np.asarray(img).tobytes())
    return h.hexdigest()


def test_the_occlusion_knobs_at_their_defaults_leave_the_set_bit_identical():
    assert _frames_sha256(SynthConfig(num_ids=6, max_frames=10)) == DEFAULT_FRAMES_SHA256
    assert _frames_sha256(SynthConfig(num_ids=6, max_frames=10, occlusion_prob=0.35,
                                      misalignment=1.0)) == DEFAULT_FRAMES_SHA256
    assert SynthConfig().key() == DEFAULT_SET_KEY  # existing caches stay valid
    assert SynthConfig(misalignment=2.0).key() != DEFAULT_SET_KEY
    assert SynthConfig(occlusion_prob=0.9).key() != DEFAULT_SET_KEY
    # A changed knob changes the frames (the pin above is not blind).
    assert _frames_sha256(SynthConfig(num_ids=6, max_frames=10, misalignment=0.0)) != DEFAULT_FRAMES_SHA256


def test_occlusion_and_misalignment_levels_are_what_the_knobs_say():
    from stgcn_pyg.data.synth import occlusion_summary
    from stgcn_pyg.data.synth.drawing import BACKGROUND_WIDTHS, occluded_frames, tracklet_layout

    base = dict(num_ids=20, max_frames=12)
    none = occlusion_summary(SynthConfig(occlusion_prob=0.0, misalignment=0.0, **base))
    default = occlusion_summary(SynthConfig(**base))
    heavy = occlusion_summary(SynthConfig(occlusion_prob=0.9, misalignment=2.0, **base))
    every = occlusion_summary(SynthConfig(occlusion_prob=1.0, **base))
    assert none == dict(tracklets_occluded=0.0, frames_occluded=0.0, box_offset_px=0.0)
    assert every["tracklets_occluded"] == 1.0
    assert 0 < default["frames_occluded"] < default["tracklets_occluded"] < heavy["tracklets_occluded"] < 1
    assert default["frames_occluded"] < heavy["frames_occluded"]
    # Misalignment 2 doubles every box offset exactly (the same draws, twice the scale).
    twice = occlusion_summary(SynthConfig(misalignment=2.0, **base))
    assert twice["box_offset_px"] == pytest.approx(2 * default["box_offset_px"], rel=1e-12)
    # An occluder covers the frames its span says, clipped to the tracklet.
    cam = plan_synthetic(SynthConfig(**base)).cameras[0]
    lay = tracklet_layout(np.random.default_rng(3), cam, None, 9, BACKGROUND_WIDTHS * 64, 128, 64,
                          occlusion_prob=1.0)
    occ = lay["occ"]
    assert occluded_frames(lay, 9) == min(9, occ["start"] + occ["len"]) - occ["start"] > 0


def test_bad_occlusion_knobs_are_one_clear_error():
    from stgcn_pyg.config import load_config
    from stgcn_pyg.errors import ConfigError

    with pytest.raises(DatasetError, match="occlusion_prob is a share of tracklets in \\[0, 1\\], got 1.5"):
        SynthConfig(occlusion_prob=1.5)
    with pytest.raises(DatasetError, match="misalignment"):
        SynthConfig(misalignment=-1)
    with pytest.raises(ConfigError, match="data.synthetic_occlusion"):
        load_config("synthetic", ["data.synthetic_occlusion=2"])


def test_a_runs_config_sets_the_knobs_of_its_synthetic_set():
    from stgcn_pyg.config import load_config
    from stgcn_pyg.data.datasets import synthetic_options

    data = load_config("synthetic", ["data.synthetic_occlusion=0.9", "data.synthetic_misalignment=2"]).data
    assert synthetic_options(data)["occlusion_prob"] == 0.9 and synthetic_options(data)["misalignment"] == 2.0
    assert SynthConfig(**synthetic_options(load_config("synthetic").data)).key() == DEFAULT_SET_KEY


# ----------------------------------------------------------------- reading writes nothing into a user's folder
def test_reading_a_folder_without_a_set_writes_nothing_into_it(tmp_path, capsys, untrained_checkpoint):
    """Issue 39: `data info --root EMPTYDIR` replaced the folder (mode 755 became 700) and drew 12,000 frames
    into it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o751)
    before = empty.stat()
    ckpt = untrained_checkpoint(tmp_path / "ckpt")
    for argv in (["data", "info", "--dataset", "synthetic", "--root", str(empty)],
                 ["data", "info", "--dataset", "synthetic", "--root", str(tmp_path / "missing")],
                 ["evaluate", "--checkpoint", str(ckpt), "--engine", "torch", "--root", str(empty)],
                 ["extract", "--checkpoint", str(ckpt), "--engine", "torch", "--root", str(empty),
                  "--out", str(tmp_path / "f.pt")]):
        assert main(argv) == 2, argv
        err = " ".join(capsys.readouterr().err.split())
        root = argv[argv.index("--root") + 1]
        assert err.count("error:") == 1 and "Traceback" not in err
        assert f"error: {root}: no synthetic set here" in err and f"stgcn-pyg synth --out {root}" in err, err
    after = empty.stat()
    assert list(empty.iterdir()) == [] and (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert not (tmp_path / "missing").exists() and not (tmp_path / "f.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "empty"]


def test_generating_into_a_folder_keeps_it_and_its_mode(tmp_path):
    small = {k: v for k, v in SMALL_SET.items() if k != "num_ids"}
    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o751)
    before = empty.stat()
    assert ensure_synthetic(empty, num_ids=3, progress=False, workers=1, **small) == empty
    after = empty.stat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in empty.iterdir()) == ["mars", "synth.json"]
    umask = os.umask(0)
    os.umask(umask)
    new = ensure_synthetic(tmp_path / "new", num_ids=3, progress=False, workers=1, **small)
    assert new.stat().st_mode & 0o777 == 0o777 & ~umask  # a new folder's mode, not a temporary folder's 700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]


@pytest.mark.slow
def test_train_naming_an_empty_folder_generates_the_set_into_it(tmp_path, tiny_overrides, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    empty.chmod(0o751)
    before = empty.stat()
    argv = ["train", "--epochs", "1", "--output", str(tmp_path / "run"), "--root", str(empty)]
    argv += [a for o in tiny_overrides for a in ("--set", o)]
    assert main(argv) == 0
    assert f"generating the synthetic set (6 identities; first use only) into {empty}" in capsys.readouterr().out
    after = empty.stat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert (empty / "synth.json").is_file() and (empty / "mars" / "info" / "query_IDX.mat").is_file()
    # and what train wrote, the readers read
    assert main(["data", "info", "--dataset", "synthetic", "--root", str(empty)]) == 0
