"""DukeMTMC-VideoReID (Wu et al., CVPR 2018).

::

    <root>/[dukemtmc-videoreid/ | DukeMTMC-VideoReID/ | dukemtmc-vidreid/DukeMTMC-VideoReID/]
        {train,query,gallery}/<pid: 4 digits>/<tracklet: 4 digits>/<frame>.jpg

Frame names: ``0001C6F0099X30823.jpg`` (pid, Camera, Frame within the
tracklet, X frame in the camera's video), or ``0001_C6_F0099_X30823.jpg`` in
some copies; both are read, frames ordered by their F number. The query has
one tracklet per test identity; the gallery holds the other test tracklets
and distractor identities. There is no junk, so the two protocols give the
same tables (the metric still differs).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DatasetError
from .base import ReIDDataset, list_dir, make_frame_table

__all__ = ["load_duke", "find_duke_root", "DUKE_NAME_RE"]

DUKE_NAME_RE = re.compile(r"^(\d{4})_?C(\d+)_?F(\d+)_?X(\d+)\.jpg$")


def find_duke_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root not found: {root}" if not root.exists()
                           else f"dataset root is not a folder: {root}")
    for cand in (root, root / "dukemtmc-videoreid", root / "DukeMTMC-VideoReID",
                 root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID", root / "dukemtmc-vidreid"):
        if (cand / "query").is_dir() and (cand / "gallery").is_dir():
            return cand
    raise DatasetError(f"DukeMTMC-VideoReID folders not found: expected {root}/query and {root}/gallery "
                       f"(or under {root}/dukemtmc-videoreid)")


def _read_split(droot: Path, split: str) -> list[dict]:
    folder = droot / split
    rows = []
    for pid_name in list_dir(folder, f"Duke {split} folder"):
        pdir = folder / pid_name
        if not pdir.is_dir():
            continue
        if not re.fullmatch(r"\d{4}", pid_name):
            raise DatasetError(f"{pdir}: identity folder name breaks the Duke convention (expected 4 digits)")
        pid = int(pid_name)
        for tr_name in list_dir(pdir, "Duke identity folder"):
            tdir = pdir / tr_name
            if not tdir.is_dir():
                continue
            frames = []
            cams = set()
            for fn in list_dir(tdir, "Duke tracklet folder"):
                if fn.startswith(".") or not fn.lower().endswith((".jpg", ".jpeg", ".png")):
                    continue  # stray files (Thumbs.db, .DS_Store) are not frames
                m = DUKE_NAME_RE.match(fn)
                if m is None:
                    raise DatasetError(f"{tdir / fn}: frame name breaks the Duke convention "
                                       "(expected like 0001C6F0099X30823.jpg or 0001_C6_F0099_X30823.jpg)")
                if int(m.group(1)) != pid:
                    raise DatasetError(f"{tdir / fn}: frame name says pid {int(m.group(1))} but the folder is {pid_name}")
                cams.add(int(m.group(2)))
                frames.append((int(m.group(3)), fn))
            if not frames:
                raise DatasetError(f"empty tracklet: {tdir} holds no frames")
            if len(cams) > 1:
                raise DatasetError(f"{tdir}: frames from several cameras {sorted(cams)} in one tracklet")
            frames.sort()
            rows.append({"pid": pid, "camid": cams.pop(), "frames": [str(tdir / fn) for _, fn in frames],
                         "tracklet": f"{pid_name}/{tr_name}"})
    return rows


def load_duke(root: str | Path, protocol: str = "standard") -> ReIDDataset:
    droot = find_duke_root(root)
    train = make_frame_table(_read_split(droot, "train")) if (droot / "train").is_dir() else make_frame_table([])
    query = make_frame_table(_read_split(droot, "query"))
    gallery = make_frame_table(_read_split(droot, "gallery"))
    return ReIDDataset("dukemtmc-videoreid", droot, train, query, gallery, protocol,
                       [f"protocol {protocol!r}: query/gallery as distributed (Duke has no junk tracklets)"])
