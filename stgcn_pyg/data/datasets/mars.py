"""MARS (Zheng et al., ECCV 2016) in its distributed layout.

::

    <root>/[mars/]bbox_train/<pid>/<name>.jpg      pid folders: 4 digits
    <root>/[mars/]bbox_test/<pid>/<name>.jpg       junk in 00-1, distractors in 0000
    <root>/[mars/]info/train_name.txt, test_name.txt          one image name per line
    <root>/[mars/]info/tracks_train_info.mat (track_train_info)  rows [start, end, pid, camid]
    <root>/[mars/]info/tracks_test_info.mat (track_test_info)    start/end: 1-based lines
    <root>/[mars/]info/query_IDX.mat (query_IDX)                 1-based rows of the test table

A name ``0001C1T0001F001.jpg`` is pid (chars 0-3), camera (char 5),
tracklet (7-10), frame (12-14).

Evaluation protocols (``protocol=``):

* ``"standard"`` (default, what video re-ID papers report): the gallery is the
  test tracklets outside the query set with junk (pid -1) removed; the metric
  ignores same-pid-same-camera gallery items.
* ``"official"`` (MARS's MATLAB code): the gallery is all test tracklets,
  queries and junk included; the metric treats pid -1 and same-pid-same-camera
  as junk; distractors (pid 0) stay as negatives.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DatasetError
from .base import PROTOCOLS, ReIDDataset, list_dir, make_frame_table

__all__ = ["load_mars", "find_mars_root", "read_mat_table"]

NAME_RE = re.compile(r"^(\d{4}|00-1)C(\d)T(\d{4})F(\d{3})\.jpg$")


def find_mars_root(root: str | Path) -> Path:
    """The folder holding ``info/``: ``root`` itself or ``root/mars`` (or ``root/MARS``)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset root not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset root is not a folder: {root}")
    for cand in (root, root / "mars", root / "MARS"):
        if (cand / "info").is_dir():
            return cand
    raise DatasetError(f"MARS info folder not found: expected {root / 'info'} or {root / 'mars' / 'info'}")


def read_mat_table(path: Path, key: str) -> np.ndarray:
    """Variable ``key`` of a MATLAB v5 file as an int64 array, with clear errors."""
    import scipy.io

    if not path.is_file():
        raise DatasetError(f"MARS info file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError, MatReadError...
        raise DatasetError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    if key not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise DatasetError(f"{path}: variable {key!r} not found (variables: {found})")
    arr = np.asarray(mat[key])
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr))):
        raise DatasetError(f"{path}: variable {key!r} is not a numeric table")
    out = arr.astype(np.int64)
    if arr.dtype.kind == "f" and not np.array_equal(out, arr):
        raise DatasetError(f"{path}: variable {key!r} holds non-integer values")
    return out


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"MARS info file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the name list ({exc})") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _parse_split(mroot: Path, split: str) -> pd.DataFrame:
    info = mroot / "info"
    names_path = info / f"{split}_name.txt"
    table_path = info / f"tracks_{split}_info.mat"
    names = _read_names(names_path)
    table = read_mat_table(table_path, f"track_{split}_info")
    if table.ndim != 2 or table.shape[1] < 4:
        if table.size == 0:
            return make_frame_table([])
        raise DatasetError(f"{table_path}: expected rows [start, end, pid, camid], got shape {table.shape}")
    ser = pd.Series(names, dtype=object)
    m = ser.str.extract(NAME_RE)
    bad = m[0].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{names_path}: line {i + 1}: image name {names[i]!r} breaks the MARS convention "
                           "(expected like 0001C1T0001F001.jpg)")
    name_pid = m[0].map(lambda p: -1 if p == "00-1" else int(p)).to_numpy(np.int64)
    name_cam = m[1].astype(np.int64).to_numpy()
    folder = m[0].to_numpy()
    # Every listed image must exist: one directory listing per pid folder.
    bbox = mroot / f"bbox_{split}"
    if not bbox.is_dir():
        raise DatasetError(f"MARS image folder not found: {bbox}")
    present: dict[str, set[str]] = {}
    for f in np.unique(folder):
        try:
            present[f] = set(list_dir(bbox / f, "MARS pid folder"))
        except DatasetError:
            present[f] = set()
    for i, (f, n) in enumerate(zip(folder, names)):
        if n not in present[f]:
            raise DatasetError(f"image listed in {names_path} (line {i + 1}) not found: {bbox / f / n}")
    rows = []
    base = str(bbox)
    for r, (start, end, pid, cam) in enumerate(table[:, :4]):
        if end < start:
            raise DatasetError(f"{table_path}: row {r + 1} is an empty tracklet (start {start} > end {end})")
        if start < 1 or end > len(names):
            raise DatasetError(f"{table_path}: row {r + 1} lines {start}-{end} lie outside {names_path} "
                               f"({len(names)} lines)")
        s = slice(start - 1, end)
        if np.any(name_pid[s] != pid) or np.any(name_cam[s] != cam):
            j = start - 1 + int(np.flatnonzero((name_pid[s] != pid) | (name_cam[s] != cam))[0])
            raise DatasetError(f"{table_path}: row {r + 1} says pid {pid} camera {cam}, but line {j + 1} of "
                               f"{names_path} is {names[j]!r}")
        rows.append({
            "pid": int(pid), "camid": int(cam),
            "frames": [f"{base}/{folder[k]}/{names[k]}" for k in range(start - 1, end)],
            "tracklet": names[start - 1][:11],
        })
    return make_frame_table(rows)


def load_mars(root: str | Path, protocol: str = "standard", name: str = "mars") -> ReIDDataset:
    """Read MARS (or anything written in its layout, like the synthetic set)."""
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown evaluation protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    mroot = find_mars_root(root)
    train = _parse_split(mroot, "train")
    test = _parse_split(mroot, "test")
    qpath = mroot / "info" / "query_IDX.mat"
    qidx = read_mat_table(qpath, "query_IDX").ravel() - 1
    if len(qidx) and (qidx.min() < 0 or qidx.max() >= len(test)):
        raise DatasetError(f"{qpath}: query rows must lie in 1..{len(test)} (the test table), "
                           f"found {qidx.min() + 1}..{qidx.max() + 1}")
    if len(np.unique(qidx)) != len(qidx):
        raise DatasetError(f"{qpath}: a query row is listed twice")
    test["test_index"] = np.arange(len(test))
    query = test.iloc[qidx].reset_index(drop=True)
    is_query = np.zeros(len(test), bool)
    is_query[qidx] = True
    if protocol == "standard":
        gallery = test[~is_query & (test["pid"].to_numpy() != -1)].reset_index(drop=True)
    else:
        gallery = test.reset_index(drop=True)
    notes = [f"protocol {protocol!r}: " + (
        "gallery = test tracklets not in the query set, junk (pid -1) removed" if protocol == "standard"
        else "gallery = all test tracklets (queries and junk included; junk ignored by the metric)")]
    return ReIDDataset(name, Path(mroot), train, query, gallery, protocol, notes)
