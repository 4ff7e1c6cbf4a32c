"""Your own tracklets: a folder layout or a CSV index.

Folder layout (``train/`` is optional when you only evaluate)::

    <root>/{train,query,gallery}/<pid>/<camera>/<tracklet>/<frames>.jpg|png

``<pid>`` is an integer (-1 junk, 0 distractor, as in MARS); ``<camera>`` a
name holding a number (``c1``, ``cam2``, ``3``); ``<tracklet>`` any name;
frames are ordered by natural sort of their names (``img2`` before
``img10``).

CSV index (``<root>/index.csv``, or ``root`` the CSV file itself), one row
per frame, in temporal order within a tracklet::

    split,pid,camid,tracklet,path
    train,1,1,t0001,train/0001/c1/t0001/000.jpg

``path`` is relative to the CSV's folder (or absolute); ``split`` is train,
query or gallery; rows with the same (split, pid, camid, tracklet) form one
tracklet.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ...errors import DatasetError
from .base import IMAGE_EXTENSIONS, ReIDDataset, list_dir, make_frame_table, natural_key

__all__ = ["load_folder"]

SPLITS = ("train", "query", "gallery")
CSV_COLUMNS = ("split", "pid", "camid", "tracklet", "path")


def _read_tree(split_dir: Path, split: str) -> list[dict]:
    rows = []
    for pid_name in list_dir(split_dir, f"{split} folder"):
        pdir = split_dir / pid_name
        if not pdir.is_dir():
            continue
        if not re.fullmatch(r"-?\d+", pid_name):
            raise DatasetError(f"{pdir}: identity folder name must be an integer pid")
        for cam_name in list_dir(pdir, "identity folder"):
            cdir = pdir / cam_name
            if not cdir.is_dir():
                continue
            m = re.search(r"(\d+)", cam_name)
            if m is None:
                raise DatasetError(f"{cdir}: camera folder name must hold a number (c1, cam2, 3)")
            for tr_name in list_dir(cdir, "camera folder"):
                tdir = cdir / tr_name
                if not tdir.is_dir():
                    continue
                frames = sorted((f for f in list_dir(tdir, "tracklet folder") if f.lower().endswith(IMAGE_EXTENSIONS)),
                                key=natural_key)
                if not frames:
                    raise DatasetError(f"empty tracklet: {tdir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
                rows.append({"pid": int(pid_name), "camid": int(m.group(1)),
                             "frames": [str(tdir / f) for f in frames],
                             "tracklet": f"{pid_name}/{cam_name}/{tr_name}"})
    return rows


def _read_csv(path: Path) -> dict[str, list[dict]]:
    try:
        df = pd.read_csv(path, dtype={"split": str, "tracklet": str, "path": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{path}: cannot read the CSV index ({exc})") from None
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(CSV_COLUMNS)})")
    if df[list(CSV_COLUMNS)].isna().any().any():
        line = int(df[list(CSV_COLUMNS)].isna().any(axis=1).to_numpy().nonzero()[0][0]) + 2
        raise DatasetError(f"{path}: line {line} has an empty field")
    for col in ("pid", "camid"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() | (num != num.round())
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise DatasetError(f"{path}: line {line}: {col} {df[col].iloc[line - 2]!r} is not an integer")
        df[col] = num.astype("int64")
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        line = int(bad.to_numpy().nonzero()[0][0]) + 2
        raise DatasetError(f"{path}: line {line}: split {df['split'].iloc[line - 2]!r} is not train, query or gallery")
    base = path.parent
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    full = [str(p if Path(p).is_absolute() else base / p) for p in df["path"]]
    for i, p in enumerate(full):
        if not Path(p).is_file():
            raise DatasetError(f"image listed in {path} (line {i + 2}) not found: {p}")
    df = df.assign(full=full, order=range(len(df)))
    for (split, pid, camid, tr), g in df.groupby(["split", "pid", "camid", "tracklet"], sort=False):
        out[split].append({"pid": int(pid), "camid": int(camid), "frames": g.sort_values("order")["full"].tolist(),
                           "tracklet": str(tr)})
    return out


def load_folder(root: str | Path, protocol: str = "standard") -> ReIDDataset:
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset root not found: {root}")
    csv = root if root.is_file() else root / "index.csv"
    if csv.is_file():
        rows = _read_csv(csv)
        base, note = csv.parent, f"CSV index {csv}"
    else:
        for split in ("query", "gallery"):
            if not (root / split).is_dir():
                raise DatasetError(f"folder dataset: {root / split} not found (and no {root / 'index.csv'}); "
                                   "expected <root>/{train,query,gallery}/<pid>/<camera>/<tracklet>/<frames>")
        rows = {s: _read_tree(root / s, s) if (root / s).is_dir() else [] for s in SPLITS}
        base, note = root, f"folder layout {root}"
    if not rows["query"] or not rows["gallery"]:
        raise DatasetError(f"folder dataset {root}: the query and gallery must each hold at least one tracklet")
    t = {s: make_frame_table(rows[s]) for s in SPLITS}
    return ReIDDataset("folder", base, t["train"], t["query"], t["gallery"], protocol, [note])
