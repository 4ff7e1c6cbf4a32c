"""MARS reader: counts, pids, camids, frame order, both protocols, every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from stgcn_pyg.data import load_dataset
from stgcn_pyg.errors import DatasetError

from data_fixtures import MARS_QUERY, MARS_TEST, MARS_TRAIN, mars_name, write_mars


@pytest.fixture
def mars_root(tmp_path):
    return write_mars(tmp_path)


def _triples(df):
    return [(int(p), int(c), int(n)) for p, c, n in zip(df.pid, df.camid, df.num_frames)]


def test_train_split_matches_what_was_written(mars_root):
    ds = load_dataset("mars", mars_root)
    assert ds.name == "mars" and ds.protocol == "standard"
    assert _triples(ds.train) == [(p, c, n) for p, c, _, n in MARS_TRAIN]
    assert ds.num_train_pids == 2
    # Frames are the listed files, in order, under bbox_train/<pid>/.
    first = ds.train.frames[0]
    assert [f.rsplit("/", 1)[1] for f in first] == [mars_name(1, 1, 1, f) for f in (1, 2, 3)]
    assert all("/bbox_train/0001/" in f for f in first)
    assert ds.train.tracklet.tolist()[2] == "0001C2T0001"


def test_standard_protocol_query_and_gallery(mars_root):
    ds = load_dataset("mars", mars_root, protocol="standard")
    q_rows = [MARS_TEST[i - 1] for i in MARS_QUERY]
    assert _triples(ds.query) == [(p, c, n) for p, c, _, n in q_rows]
    # Gallery: test rows not in the query, junk (pid -1) dropped, distractor (0) kept.
    expected = [MARS_TEST[i] for i in range(len(MARS_TEST)) if i + 1 not in MARS_QUERY and MARS_TEST[i][0] != -1]
    assert _triples(ds.gallery) == [(p, c, n) for p, c, _, n in expected]
    assert -1 not in ds.gallery.pid.tolist() and 0 in ds.gallery.pid.tolist()
    assert "junk" in ds.notes[0]


def test_official_protocol_keeps_every_test_tracklet(mars_root):
    ds = load_dataset("mars", mars_root, protocol="official")
    assert ds.protocol == "official"
    assert _triples(ds.gallery) == [(p, c, n) for p, c, _, n in MARS_TEST]
    assert len(ds.query) == 3
    # The queries are in the official gallery (the metric treats them as junk).
    assert set(ds.query.tracklet) <= set(ds.gallery.tracklet)
    assert ds.gallery.pid.tolist().count(-1) == 1
    assert all("/bbox_test/00-1/" in f for f in ds.gallery.frames[6])


def test_root_may_be_the_mars_folder_itself(mars_root):
    ds = load_dataset("mars", mars_root / "mars")
    assert len(ds.train) == len(MARS_TRAIN)


def test_unknown_protocol_and_dataset(mars_root):
    with pytest.raises(DatasetError, match="unknown evaluation protocol 'foo'"):
        load_dataset("mars", mars_root, protocol="foo")
    with pytest.raises(DatasetError, match="unknown dataset 'marz'"):
        load_dataset("marz", mars_root)


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="dataset root not found: .*nowhere"):
        load_dataset("mars", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="MARS info folder not found"):
        load_dataset("mars", tmp_path)


@pytest.mark.parametrize("name", ["train_name.txt", "tracks_test_info.mat", "query_IDX.mat"])
def test_missing_info_file(mars_root, name):
    (mars_root / "mars" / "info" / name).unlink()
    with pytest.raises(DatasetError, match=f"MARS info file not found: .*{name}"):
        load_dataset("mars", mars_root)


def test_listed_image_absent(mars_root):
    victim = mars_root / "mars" / "bbox_test" / "0002" / mars_name(2, 2, 1, 3)
    victim.unlink()
    with pytest.raises(DatasetError, match=r"image listed in .*test_name.txt \(line 8\) not found: .*0002C2T0001F003.jpg"):
        load_dataset("mars", mars_root)


def test_name_breaking_the_convention(mars_root):
    p = mars_root / "mars" / "info" / "train_name.txt"
    lines = p.read_text().splitlines()
    lines[3] = "0001_C1_T0002_F002.jpg"
    p.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"train_name.txt: line 4: image name '0001_C1_T0002_F002.jpg' breaks the MARS"):
        load_dataset("mars", mars_root)


def test_empty_tracklet(mars_root):
    p = mars_root / "mars" / "info" / "tracks_train_info.mat"
    t = scipy.io.loadmat(p)["track_train_info"]
    t[1, 0], t[1, 1] = 5, 4
    scipy.io.savemat(p, {"track_train_info": t})
    with pytest.raises(DatasetError, match=r"tracks_train_info.mat: row 2 is an empty tracklet"):
        load_dataset("mars", mars_root)


def test_table_disagreeing_with_names(mars_root):
    p = mars_root / "mars" / "info" / "tracks_train_info.mat"
    t = scipy.io.loadmat(p)["track_train_info"]
    t[0, 3] = 2  # camera 2, but the names say C1
    scipy.io.savemat(p, {"track_train_info": t})
    with pytest.raises(DatasetError, match=r"row 1 says pid 1 camera 2, but line 1 .* is '0001C1T0001F001.jpg'"):
        load_dataset("mars", mars_root)


def test_corrupt_mat_file(mars_root):
    (mars_root / "mars" / "info" / "tracks_test_info.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(DatasetError, match=r"tracks_test_info.mat: not a readable MATLAB file"):
        load_dataset("mars", mars_root)


def test_wrong_variable_and_query_range(mars_root):
    info = mars_root / "mars" / "info"
    scipy.io.savemat(info / "query_IDX.mat", {"query_IDX": np.array([[1, 99]], float)})
    with pytest.raises(DatasetError, match=r"query_IDX.mat: query rows must lie in 1..8"):
        load_dataset("mars", mars_root)
    scipy.io.savemat(info / "query_IDX.mat", {"qidx": np.array([[1]], float)})
    with pytest.raises(DatasetError, match=r"variable 'query_IDX' not found \(variables: qidx\)"):
        load_dataset("mars", mars_root)
