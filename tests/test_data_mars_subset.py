"""Real MARS tracklets (the mars-subset, in MARS's own layout) through the reader, the loaders and the CLI.

The subset lives beside the repository (``../shared/data/mars-subset`` from its root; CI provides it beside
the clone) and never inside it: MARS is for research use only, so no frame of it may be copied into the
repository, its fixtures or its outputs. Everything here reads it in place and writes only under pytest's
temporary folders. Its make-up (its README): 324 training identities, 840 tracklets, 6,720 frames; a test
split of 140 other identities, 398 tracklets, of which 165 queries (125 identities seen by 2+ cameras,
floor(k/2) of an identity's k tracklets) and 233 gallery tracklets (15 of their identities seen by one camera
only: distractors); every tracklet 8 frames at 128x64; one tracklet per (identity, camera).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

SUBSET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mars-subset"

pytestmark = pytest.mark.skipif(
    not (SUBSET / "info").is_dir(),
    reason="MARS subset not found at ../shared/data/mars-subset (CI provides it beside the clone)",
)

HEIGHT, WIDTH, FRAMES = 128, 64, 8


@pytest.fixture(scope="module")
def standard():
    from stgcn_pyg.data import load_dataset

    return load_dataset("mars", SUBSET)


@pytest.fixture(scope="module")
def official():
    from stgcn_pyg.data import load_dataset

    return load_dataset("mars", SUBSET, protocol="official")


def _keys(df) -> list[tuple[int, int]]:
    return list(zip(df.pid.tolist(), df.camid.tolist()))


def test_training_split_counts(standard):
    train = standard.train
    assert standard.num_train_pids == 324 and len(train) == 840 and int(train.num_frames.sum()) == 6720
    assert set(train.num_frames) == {FRAMES}
    # One tracklet per (identity, camera); people seen by 1 to 6 of MARS's 6 cameras, 64 by one only.
    assert len(set(_keys(train))) == len(train)
    cams = Counter(train.pid.tolist())
    assert min(cams.values()) == 1 and max(cams.values()) <= 6 and sum(v == 1 for v in cams.values()) == 64
    assert set(train.camid) <= set(range(1, 7)) and train.pid.min() > 0  # no junk, no pid-0 distractors
    # pid and camera come from the names, which agree with the table (the reader checks each row).
    name = train.frames[0][0].rsplit("/", 1)[1]
    assert (int(name[:4]), int(name[5])) == _keys(train)[0] and train.tracklet[0] == name[:11]


def test_standard_protocol_query_and_gallery(standard):
    q, g = standard.query, standard.gallery
    assert (len(q), q.pid.nunique(), int(q.num_frames.sum())) == (165, 125, 165 * FRAMES)
    assert (len(g), g.pid.nunique(), int(g.num_frames.sum())) == (233, 140, 233 * FRAMES)
    # Query and gallery split the 398 test tracklets (no junk here to drop); no identity is also in training.
    assert not set(q.test_index) & set(g.test_index)
    assert sorted([*q.test_index, *g.test_index]) == list(range(398))
    assert not set(q.pid) & set(standard.train.pid) and not set(g.pid) & set(standard.train.pid)
    test = _keys(q) + _keys(g)
    assert len(set(test)) == len(test)  # one tracklet per (identity, camera) in the test split too
    # floor(k/2) of an identity's k cameras are queries, the rest its gallery; 15 one-camera distractors.
    k = Counter(pid for pid, _ in test)
    assert Counter(q.pid.tolist()) == {p: n // 2 for p, n in k.items() if n >= 2}
    distractors = set(g.pid) - set(q.pid)
    assert len(distractors) == 15 and all(k[p] == 1 for p in distractors)
    # Every query has a true match in the gallery, in another camera: all 165 queries count.
    gallery_cams = {}
    for pid, cam in _keys(g):
        gallery_cams.setdefault(pid, set()).add(cam)
    assert all(gallery_cams.get(pid, set()) - {cam} for pid, cam in _keys(q))


def test_official_protocol_gallery_is_the_whole_test_split(standard, official):
    assert official.protocol == "official" and standard.protocol == "standard"
    assert _keys(official.query) == _keys(standard.query)
    g = official.gallery
    assert len(g) == 398 and g.pid.nunique() == 140 and g.test_index.tolist() == list(range(398))
    # Queries stay in the gallery (the metric ignores each query's own tracklet: same pid, same camera).
    assert set(official.query.tracklet) <= set(g.tracklet)
    assert sorted(g.tracklet) == sorted([*standard.query.tracklet, *standard.gallery.tracklet])


def test_every_frame_decodes_at_128x64(standard):
    from stgcn_pyg.data import read_frame

    paths = [p for df in standard.splits().values() for fr in df.frames for p in fr]
    assert len(paths) == 6720 + 3184
    assert {tuple(read_frame(p).shape) for p in paths} == {(3, HEIGHT, WIDTH)}


def test_loaders_give_the_frames_at_their_own_size(standard):
    from stgcn_pyg.data import TrackletTransform, build_test_loader, build_train_loader, read_frame

    g = standard.gallery.iloc[:5]
    clips, index = next(iter(build_test_loader(g, seq_len=FRAMES, mode="all", image_size=(HEIGHT, WIDTH),
                                               batch_size=5)))
    assert clips.shape == (5, FRAMES, 3, HEIGHT, WIDTH) and index.tolist() == list(range(5))
    # At the frames' own size nothing is resized: the clip is the decoded frames, in order, normalised.
    expected = TrackletTransform((HEIGHT, WIDTH))([read_frame(p) for p in g.frames.iloc[3]])
    torch.testing.assert_close(clips[3], expected, rtol=0, atol=0)
    # Every tracklet is 8 frames: the one evenly spaced clip of 8 is the dense and the strided tests' only clip.
    for mode in ("evenly", "strided"):
        other, _ = next(iter(build_test_loader(g, seq_len=FRAMES, mode=mode, image_size=(HEIGHT, WIDTH),
                                               batch_size=5)))
        torch.testing.assert_close(other, clips, rtol=0, atol=0)



def test_mars_subset_config_samples_81_batches_and_trains_480_steps(standard):
    """The built-in config on the subset: 81 batches of 4 ids x 4 tracklets an epoch, capped at 80, 6 epochs."""
    from stgcn_pyg.config import load_config
    from stgcn_pyg.data import build_train_loader

    cfg = load_config("mars-subset", [f'data.root="{SUBSET}"'])
    d, m, t = cfg.data, cfg.model, cfg.train
    assert d.image_size == [HEIGHT, WIDTH] and d.seq_len == FRAMES
    loader = build_train_loader(standard.train, seq_len=d.seq_len, num_ids=d.num_ids, num_instances=d.num_instances,
                                image_size=tuple(d.image_size), num_stripes=m.num_stripes, seed=t.seed)
    # Every identity has 1 to 6 tracklets: one group of 4 each (with replacement below 4), 324 // 4 batches.
    assert len(loader) == 81 and loader.num_classes == 324
    batch = next(iter(loader))
    assert tuple(batch.frames.shape) == (d.num_ids * d.num_instances * FRAMES, 3, HEIGHT, WIDTH)
    assert len(set(batch.label.tolist())) == d.num_ids
    steps = min(len(loader), t.max_steps_per_epoch)  # what the trainer takes per epoch
    assert t.epochs * steps == 480 and cfg.optim.step_size * steps == 400  # the rate divided by 10 after 400


def test_data_info_verify_through_the_cli(capsys):
    from stgcn_pyg.cli import main

    assert main(["data", "info", "--dataset", "mars", "--root", str(SUBSET), "--verify"]) == 0
    out = capsys.readouterr().out
    cells = [[c for c in line.split() if c not in "│┃"] for line in out.splitlines()]
    rows = {c[0]: c[1:4] for c in cells if c[:1] in (["train"], ["query"], ["gallery"])}
    assert rows == {"train": ["324", "840", "6,720"], "query": ["125", "165", "1,320"],
                    "gallery": ["140", "233", "1,864"]}
    assert "all frames decode" in out


def test_train_then_evaluate_through_the_cli(tmp_path, capsys, tiny_overrides):
    """conftest.py's tiny model trained 2 steps on the subset, then `stgcn-pyg evaluate --json` on both protocols."""
    run = tmp_path / "run"
    # One intra-op thread: on a shared 2-core machine, two threads next to another busy process run several
    # times slower than one (each parallel region waits for the descheduled thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_then_evaluate(run, capsys, tiny_overrides)
    finally:
        torch.set_num_threads(threads)


def _train_then_evaluate(run, capsys, tiny_overrides):
    from stgcn_pyg.cli import main

    argv = ["train", "--dataset", "mars", "--root", str(SUBSET), "--output", str(run), "--epochs", "1",
            "--no-progress", "--set", "train.max_steps_per_epoch=2"]
    for o in tiny_overrides:
        argv += ["--set", o]
    assert main(argv) == 0
    assert "165 queries x 233 gallery tracklets" in capsys.readouterr().out
    assert "840 training tracklets, 324 identities" in (run / "train.log").read_text()

    for protocol, gallery in (("standard", 233), ("official", 398)):
        assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--json", "--engine", "torch",
                     "--protocol", protocol, "--mode", "evenly"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert (res["dataset"], res["protocol"], res["num_query"], res["num_gallery"]) == (
            "mars", protocol, 165, gallery)
        ranks = [res[f"rank{k}"] for k in (1, 5, 10, 20)]
        assert ranks == sorted(ranks) and 0 <= ranks[0] and ranks[-1] <= 100
        assert 0 < res["mAP"] <= 100 and 0 < res["mINP"] <= 100
        cmc = np.asarray(res["cmc"])
        assert len(cmc) == 50 and np.all(np.diff(cmc) >= 0) and 0 <= cmc[0] and cmc[-1] <= 1
        assert cmc[0] * 100 == pytest.approx(ranks[0])


def test_no_frame_of_the_subset_is_in_the_repository():
    """MARS is for research use only: no tracked file has the bytes of a subset file, and no JPEG is tracked."""
    import hashlib
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    subset = {hashlib.sha1(p.read_bytes()).hexdigest() for p in SUBSET.rglob("*") if p.is_file()}
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    copied, jpegs = [], []
    for name in filter(None, tracked.decode().split("\0")):
        path = repo / name
        if name.lower().endswith((".jpg", ".jpeg")):
            jpegs.append(name)
        if path.is_file() and hashlib.sha1(path.read_bytes()).hexdigest() in subset:
            copied.append(name)
    assert not copied, f"files of the MARS subset are in the repository: {copied}"
    assert not jpegs, f"JPEG files are tracked (the project draws its pictures as PNG): {jpegs}"
