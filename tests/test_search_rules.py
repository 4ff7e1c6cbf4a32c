"""Which gallery tracklets `search` leaves out (docs/evaluation.md), and what `extract` says when it ends."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from stgcn_pyg.cli import main
from stgcn_pyg.data import load_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_root, untrained_checkpoint):
    tmp = tmp_path_factory.mktemp("search-rules")
    return tmp, tiny_root, untrained_checkpoint(tmp)


def search(capsys, *argv):
    code = main(["search", *argv, "--engine", "torch", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_the_querys_identity_from_its_own_camera_stays_marked_unless_cross_camera(setup, capsys):
    tmp, root, ckpt = setup
    ds = load_dataset("mars", root)
    q = ds.query.iloc[0]
    same = ds.gallery[(ds.gallery.pid == q.pid) & (ds.gallery.camid == q.camid)]
    assert len(same) == 2  # the tiny set's first query has two such tracklets
    everything = ["--checkpoint", str(ckpt), "--query-tracklet", "0", "--topk", str(len(ds.gallery))]

    found = search(capsys, *everything)
    assert len(found["results"]) == len(ds.gallery) and found["excluded"] == []
    marked = [r for r in found["results"] if r["same_camera"]]
    assert sorted(r["tracklet"] for r in marked) == sorted(same.tracklet)
    assert all(r["pid"] == q.pid and r["camid"] == q.camid for r in marked)
    ranks = ", #".join(str(r["rank"]) for r in marked)
    assert (f"result(s) #{ranks}: the query's identity from its own camera c{q.camid}, which evaluate's protocols "
            "ignore; --cross-camera leaves them out") in found["notes"]

    found = search(capsys, *everything, "--cross-camera")
    assert len(found["results"]) == len(ds.gallery) - 2
    assert not any(r["pid"] == q.pid and r["camid"] == q.camid for r in found["results"])
    assert sorted(found["excluded"]) == sorted(same.tracklet)
    assert not any(r["same_camera"] for r in found["results"])


def test_a_copy_of_the_query_in_the_gallery_is_left_out_and_same_names_alone_are_not(setup, capsys):
    tmp, root, ckpt = setup
    ds = load_dataset("mars", root)
    query = tmp / "query"
    query.mkdir()
    for i, frame in enumerate(ds.query["frames"].iloc[0]):
        shutil.copy(frame, query / f"{i:03d}{Path(frame).suffix}")
    gallery = tmp / "gallery"
    shutil.copytree(query, gallery / "copy")  # the same files, in another folder
    for t in range(2):  # the query's file names, other tracklets' bytes
        (gallery / f"other{t}").mkdir()
        for i, frame in enumerate(ds.gallery["frames"].iloc[t]):
            shutil.copy(frame, gallery / f"other{t}" / f"{i:03d}{Path(frame).suffix}")
    found = search(capsys, "--checkpoint", str(ckpt), "--query", str(query), "--gallery", str(gallery))
    assert found["excluded"] == ["copy"]
    assert sorted(r["tracklet"] for r in found["results"]) == ["other0", "other1"]
    assert "left out 1 gallery tracklet(s) holding the query's own frames or copies of them (copy)" in found["notes"]
    # plain frame names: no camera to leave out
    assert main(["search", "--checkpoint", str(ckpt), "--query", str(query), "--gallery", str(gallery),
                 "--engine", "torch", "--cross-camera"]) == 2
    assert " ".join(capsys.readouterr().err.split()) == (
        "error: --cross-camera: the query's camera is unknown (its names are not MARS/Duke-style), so its own "
        "camera's tracklets cannot be told apart")


def test_extract_ends_with_frames_time_and_rate_in_a_terminal_too(setup, capsys, monkeypatch):
    """The terminal's bars vanish when they finish; the line of what was measured stays."""
    tmp, root, ckpt = setup
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich takes stdout for a terminal
    code = main(["extract", "--checkpoint", str(ckpt), "--out", str(tmp / "f.pt"), "--engine", "torch",
                 "--batch-size", "1", "--mode", "evenly"])  # one clip per batch: over 10 batches
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", capsys.readouterr().out)  # the bars redraw in place (carriage returns)
    assert code == 0
    n = len(load_dataset("mars", root).gallery)  # 17 batches (the query's 9 are too few for a line, as in a log)
    assert re.search(rf"^gallery descriptors: {n} tracklets, {2 * n} clip frames \(one clip of 2 evenly spaced frames "
                     rf"per tracklet, repeated in a shorter one\) in \d+\.\d s \([\d,]+ frames/s\)$",
                     out, re.MULTILINE), out
