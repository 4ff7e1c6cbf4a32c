"""Tracklets found in loose folders of frames, with identities from MARS/Duke-style names (for search)."""

from __future__ import annotations

import pytest

from data_fixtures import MARS_TEST, write_duke, write_image, write_mars
from stgcn_pyg.data.datasets.scan import parse_tracklet_name, scan_tracklets
from stgcn_pyg.errors import DatasetError


def test_a_mars_folder_is_grouped_into_its_tracklets_with_pid_and_camera(tmp_path):
    bbox_test = write_mars(tmp_path) / "mars" / "bbox_test"
    table = scan_tracklets(bbox_test)
    expected = sorted((f"{'00-1' if p == -1 else f'{p:04d}'}C{c}T{t:04d}", p, c, n) for p, c, t, n in MARS_TEST)
    got = sorted(zip(table["tracklet"], table["pid"], table["camid"], table["num_frames"]))
    assert got == expected and table["known"].all()
    # frames in temporal order (F number), each tracklet's own
    for frames in table["frames"]:
        numbers = [int(f.rsplit("F", 1)[1][:3]) for f in frames]
        assert numbers == sorted(numbers) and len({f.rsplit("F", 1)[0] for f in frames}) == 1


def test_duke_frames_give_pid_and_camera_and_are_ordered_by_f(tmp_path):
    gallery = write_duke(tmp_path, style="underscore") / "dukemtmc-videoreid" / "gallery"
    table = scan_tracklets(gallery)
    rows = {t: (p, c, n) for t, p, c, n in zip(table["tracklet"], table["pid"], table["camid"], table["num_frames"])}
    assert rows == {"0007/0002": (7, 2, 2), "0007/0003": (7, 1, 1), "0009/0001": (9, 4, 2)}
    frames = table.set_index("tracklet").loc["0007/0002", "frames"]
    assert [f.rsplit("_F", 1)[1][:4] for f in frames] == ["0004", "0005"]  # stored as 5, 4


def test_plain_frames_are_one_tracklet_per_folder_named_by_the_folder(tmp_path):
    for name in ("img10.png", "img2.png", "img1.png"):
        write_image(tmp_path / "g" / "0051C3T0002" / name)
        write_image(tmp_path / "g" / "someone" / name)
    table = scan_tracklets(tmp_path / "g").set_index("tracklet")
    assert (table.loc["0051C3T0002", "pid"], table.loc["0051C3T0002", "camid"]) == (51, 3)
    assert bool(table.loc["0051C3T0002", "known"]) and not bool(table.loc["someone", "known"])
    assert [f.rsplit("/", 1)[1] for f in table.loc["someone", "frames"]] == ["img1.png", "img2.png", "img10.png"]
    assert parse_tracklet_name("00-1C1T0003") == (-1, 1) and parse_tracklet_name("person7") is None


def test_no_frames_or_no_folder_is_one_clear_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no image files"):
        scan_tracklets(tmp_path / "empty", "gallery folder")
    with pytest.raises(DatasetError, match="gallery folder not found"):
        scan_tracklets(tmp_path / "missing", "gallery folder")
