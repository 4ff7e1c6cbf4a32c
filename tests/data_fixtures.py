"""Tiny datasets written by hand in each exact on-disk format (for the data tests).

Every image is a 16x8 JPEG/PNG whose colour encodes (pid, camera, tracklet,
frame), so a test can check that the loaders return the right frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def frame_color(pid: int, cam: int, tr: int, frame: int) -> tuple[int, int, int]:
    return ((pid * 37) % 256, (cam * 50 + tr * 7) % 256, (frame * 10) % 256)


def write_image(path: Path, color=(128, 128, 128), size=(8, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:] = color
    Image.fromarray(arr).save(path)


def mars_name(pid: int, cam: int, tr: int, frame: int) -> str:
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam}T{tr:04d}F{frame:03d}.jpg"


# (pid, cam, tracklet number, num_frames)
MARS_TRAIN = [(1, 1, 1, 3), (1, 1, 2, 2), (1, 2, 1, 4), (3, 1, 1, 2), (3, 3, 1, 5)]
MARS_TEST = [
    (2, 1, 1, 3),   # row 1: query
    (2, 1, 2, 2),   # row 2: same pid, same camera as the query
    (2, 2, 1, 4),   # row 3: query (cam 2)
    (2, 2, 2, 1),   # row 4
    (4, 2, 1, 2),   # row 5: query
    (4, 3, 1, 3),   # row 6
    (-1, 1, 1, 2),  # row 7: junk
    (0, 2, 1, 2),   # row 8: distractor
]
MARS_QUERY = [1, 3, 5]  # 1-based rows of the test table


def write_mars(root: Path, train=MARS_TRAIN, test=MARS_TEST, query=MARS_QUERY) -> Path:
    """The MARS layout under ``root/mars``; returns ``root``."""
    m = root / "mars"
    (m / "info").mkdir(parents=True, exist_ok=True)
    for split, tracks in (("train", train), ("test", test)):
        names, table = [], []
        for pid, cam, tr, n in tracks:
            fn = [mars_name(pid, cam, tr, f + 1) for f in range(n)]
            for f, name in enumerate(fn):
                write_image(m / f"bbox_{split}" / name[:4] / name, frame_color(pid, cam, tr, f))
            table.append([len(names) + 1, len(names) + n, pid, cam])
            names.extend(fn)
        (m / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        scipy.io.savemat(m / "info" / f"tracks_{split}_info.mat", {f"track_{split}_info": np.array(table, float)})
    scipy.io.savemat(m / "info" / "query_IDX.mat", {"query_IDX": np.array([query], float)})
    return root


# Duke: (split, pid, tracklet folder, camera, frame numbers as stored)
DUKE_TRACKS = [
    ("train", 1, 1, 1, [3, 1, 2]),
    ("train", 1, 2, 2, [10, 2]),
    ("train", 5, 1, 3, [1, 2]),
    ("query", 7, 1, 1, [1, 2, 3]),
    ("gallery", 7, 2, 2, [5, 4]),
    ("gallery", 7, 3, 1, [1]),
    ("gallery", 9, 1, 4, [1, 2]),
]


def duke_name(pid: int, cam: int, frame: int, style: str) -> str:
    x = 1000 + frame
    if style == "underscore":
        return f"{pid:04d}_C{cam}_F{frame:04d}_X{x:05d}.jpg"
    return f"{pid:04d}C{cam}F{frame:04d}X{x:05d}.jpg"


def write_duke(root: Path, style: str = "plain", tracks=DUKE_TRACKS) -> Path:
    d = root / "dukemtmc-videoreid"
    for split, pid, tr, cam, frames in tracks:
        for f in frames:
            write_image(d / split / f"{pid:04d}" / f"{tr:04d}" / duke_name(pid, cam, f, style), frame_color(pid, cam, tr, f))
    return root


def write_two_camera(root: Path, kind: str, people=(1, 2, 3, 4), frames=(3, 2)) -> Path:
    """iLIDS-VID ("ilids") or PRID2011 ("prid") layout with a splits JSON file."""
    if kind == "ilids":
        base = root / "ilids-vid"
        cams = [base / "i-LIDS-VID" / "sequences" / c for c in ("cam1", "cam2")]
        names = [f"person{p:03d}" for p in people]
        split_file = base / "splits.json"
    else:
        base = root / "prid2011"
        cams = [base / "prid_2011" / "multi_shot" / c for c in ("cam_a", "cam_b")]
        names = [f"person_{p:04d}" for p in people]
        split_file = base / "splits_prid2011.json"
    for ci, cdir in enumerate(cams):
        for p, name in zip(people, names):
            for f in range(frames[ci]):
                # Frame numbers 1..n, stored so that lexicographic order would be wrong (9 < 10).
                fn = f"{name}_{f + 9:d}.png" if kind == "ilids" else f"{f + 9:d}.png"
                write_image(cdir / name / fn, frame_color(p, ci + 1, 1, f))
    split_file.write_text(json.dumps([
        {"train": names[: len(names) // 2], "test": names[len(names) // 2:]},
        {"train": names[len(names) // 2:], "test": names[: len(names) // 2]},
    ]))
    return root
