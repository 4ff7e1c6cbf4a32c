"""DukeMTMC-VideoReID, iLIDS-VID, PRID2011 and folder/CSV readers against hand-written fixtures."""

from __future__ import annotations

import pytest

from stgcn_pyg.data import load_dataset
from stgcn_pyg.errors import DatasetError

from data_fixtures import DUKE_TRACKS, duke_name, write_duke, write_image, write_two_camera


@pytest.mark.parametrize("style", ["plain", "underscore"])
def test_duke_both_name_styles(tmp_path, style):
    ds = load_dataset("dukemtmc-videoreid", write_duke(tmp_path, style))
    for split, df in ds.splits().items():
        exp = [(pid, cam, len(fr)) for s, pid, _, cam, fr in DUKE_TRACKS if s == split]
        assert [(int(p), int(c), int(n)) for p, c, n in zip(df.pid, df.camid, df.num_frames)] == exp
    # Frames in the order of their F number, not as listed or sorted by name.
    first = [f.rsplit("/", 1)[1] for f in ds.train.frames[0]]
    assert first == [duke_name(1, 1, f, style) for f in (1, 2, 3)]
    second = [f.rsplit("/", 1)[1] for f in ds.train.frames[1]]
    assert second == [duke_name(1, 2, f, style) for f in (2, 10)]
    assert ds.num_train_pids == 2 and ds.train.tracklet[1] == "0001/0002"


def test_duke_alias_and_root_variants(tmp_path):
    write_duke(tmp_path)
    assert len(load_dataset("duke", tmp_path / "dukemtmc-videoreid").query) == 1


def test_duke_bad_inputs(tmp_path):
    root = write_duke(tmp_path)
    d = root / "dukemtmc-videoreid"
    (d / "gallery" / "0009" / "0001" / "Thumbs.db").write_bytes(b"ignored")
    bad = d / "gallery" / "0009" / "0001" / "frame_01.jpg"
    write_image(bad)
    with pytest.raises(DatasetError, match=r"frame_01.jpg: frame name breaks the Duke convention"):
        load_dataset("dukemtmc-videoreid", root)
    bad.unlink()
    (d / "gallery" / "0009" / "0002").mkdir()
    with pytest.raises(DatasetError, match=r"empty tracklet: .*gallery/0009/0002 holds no frames"):
        load_dataset("dukemtmc-videoreid", root)
    (d / "gallery" / "0009" / "0002").rmdir()
    write_image(d / "gallery" / "0009" / "0001" / duke_name(8, 4, 3, "plain"))
    with pytest.raises(DatasetError, match=r"frame name says pid 8 but the folder is 0009"):
        load_dataset("dukemtmc-videoreid", root)
    with pytest.raises(DatasetError, match=r"DukeMTMC-VideoReID folders not found"):
        load_dataset("dukemtmc-videoreid", tmp_path / "dukemtmc-videoreid" / "train")


@pytest.mark.parametrize("kind,name", [("ilids", "ilids-vid"), ("prid", "prid2011")])
def test_two_camera_sets_follow_the_split_file(tmp_path, kind, name):
    root = write_two_camera(tmp_path, kind)
    ds = load_dataset(name, root)
    # split 0: people 1, 2 train (both cameras); 3, 4 test: cam 1 query, cam 2 gallery.
    assert [(int(p), int(c)) for p, c in zip(ds.train.pid, ds.train.camid)] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert ds.query.pid.tolist() == [3, 4] and set(ds.query.camid) == {1}
    assert ds.gallery.pid.tolist() == [3, 4] and set(ds.gallery.camid) == {2}
    assert ds.query.num_frames.tolist() == [3, 3] and ds.gallery.num_frames.tolist() == [2, 2]
    # Natural frame order: 9, 10, 11 (not "10", "11", "9").
    assert [f.rsplit("/", 1)[1].rsplit("_", 1)[-1] for f in ds.query.frames[0]] == ["9.png", "10.png", "11.png"]
    ds1 = load_dataset(name, root, split_id=1)
    assert ds1.query.pid.tolist() == [1, 2]
    with pytest.raises(DatasetError, match=r"split_id 5 out of range: the splits hold 2"):
        load_dataset(name, root, split_id=5)


def test_two_camera_without_split_file_uses_a_seeded_split(tmp_path):
    root = write_two_camera(tmp_path, "prid", people=(1, 2, 3, 4, 5, 6))
    (root / "prid2011" / "splits_prid2011.json").unlink()
    a, b = load_dataset("prid2011", root), load_dataset("prid2011", root)
    assert a.query.pid.tolist() == b.query.pid.tolist()
    assert len(a.query) == 3 and set(a.query.pid) | set(a.train.pid) == {1, 2, 3, 4, 5, 6}
    assert "not comparable" in a.notes[0]


def test_ilids_bad_inputs(tmp_path):
    root = write_two_camera(tmp_path, "ilids")
    (root / "ilids-vid" / "splits.json").write_text("{broken")
    with pytest.raises(DatasetError, match=r"splits.json: cannot read the splits"):
        load_dataset("ilids-vid", root)
    with pytest.raises(DatasetError, match=r"iLIDS-VID folder not found"):
        load_dataset("ilids-vid", tmp_path / "ilids-vid" / "i-LIDS-VID")
    (root / "ilids-vid" / "splits.json").unlink()
    (root / "ilids-vid" / "i-LIDS-VID" / "sequences" / "cam2" / "person002" / "person002_9.png").unlink()
    (root / "ilids-vid" / "i-LIDS-VID" / "sequences" / "cam2" / "person002" / "person002_10.png").unlink()
    with pytest.raises(DatasetError, match=r"empty tracklet: .*cam2/person002 holds no images"):
        load_dataset("ilids-vid", root)


def _write_folder(root):
    layout = [("train", 1, "c1", "a", 3), ("train", 1, "cam2", "b", 2), ("train", 2, "c1", "a", 2),
              ("query", 5, "c1", "x", 2), ("gallery", 5, "c2", "y", 4), ("gallery", 0, "c3", "z", 1),
              ("gallery", -1, "c1", "w", 1)]
    for split, pid, cam, tr, n in layout:
        for f in range(n):
            write_image(root / split / str(pid) / cam / tr / f"img{f + 8}.jpg")
    return layout


def test_folder_layout(tmp_path):
    layout = _write_folder(tmp_path)
    ds = load_dataset("folder", tmp_path)
    for split, df in ds.splits().items():
        exp = sorted((pid, int(cam.strip("acm")), n) for s, pid, cam, _, n in layout if s == split)
        assert sorted(zip(df.pid.tolist(), df.camid.tolist(), df.num_frames.tolist())) == exp
    assert [f.rsplit("/", 1)[1] for f in ds.train.frames[0]] == ["img8.jpg", "img9.jpg", "img10.jpg"]


def test_folder_csv_index(tmp_path):
    for i in range(3):
        write_image(tmp_path / "imgs" / f"{i}.jpg")
    (tmp_path / "index.csv").write_text(
        "split,pid,camid,tracklet,path\n"
        "train,1,1,t1,imgs/2.jpg\ntrain,1,1,t1,imgs/0.jpg\n"
        "query,3,1,q,imgs/1.jpg\ngallery,3,2,g,imgs/0.jpg\ngallery,3,2,g,imgs/1.jpg\n")
    ds = load_dataset("folder", tmp_path)
    assert [f.rsplit("/", 1)[1] for f in ds.train.frames[0]] == ["2.jpg", "0.jpg"]  # row order
    assert ds.query.pid.tolist() == [3] and ds.gallery.camid.tolist() == [2] and ds.gallery.num_frames.tolist() == [2]
    assert len(load_dataset("folder", tmp_path / "index.csv").gallery) == 1


@pytest.mark.parametrize("text,message", [
    ("split,pid,camid,path\nquery,1,1,a.jpg\n", r"missing column\(s\) tracklet"),
    ("split,pid,camid,tracklet,path\nquery,x,1,t,imgs/0.jpg\n", r"line 2: pid 'x' is not an integer"),
    ("split,pid,camid,tracklet,path\ntest,1,1,t,imgs/0.jpg\n", r"line 2: split 'test' is not train, query or gallery"),
    ("split,pid,camid,tracklet,path\nquery,1,1,t,imgs/0.jpg\ngallery,1,2,t,imgs/9.jpg\n",
     r"image listed in .*index.csv \(line 3\) not found: .*imgs/9.jpg"),
])
def test_folder_csv_bad_inputs(tmp_path, text, message):
    write_image(tmp_path / "imgs" / "0.jpg")
    (tmp_path / "index.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset("folder", tmp_path)


def test_folder_bad_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"query not found"):
        load_dataset("folder", tmp_path)
    _write_folder(tmp_path)
    (tmp_path / "query" / "bob").mkdir()
    with pytest.raises(DatasetError, match=r"query/bob: identity folder name must be an integer pid"):
        load_dataset("folder", tmp_path)
    (tmp_path / "query" / "bob").rmdir()
    (tmp_path / "gallery" / "5" / "c2" / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty tracklet: .*gallery/5/c2/empty"):
        load_dataset("folder", tmp_path)
