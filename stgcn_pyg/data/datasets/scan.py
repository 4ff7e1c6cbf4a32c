"""Tracklets in any folder of frames, with identities read from MARS/Duke-style names (for search).

Every folder under the root that directly holds image files is read:

* frames named in the MARS convention (``0051C3T0002F001.jpg``: pid, camera,
  tracklet, frame) are grouped into their tracklets, so a MARS pid folder
  (five tracklets from two cameras, say) gives five tracklets, each with its
  pid and camera;
* frames named in the DukeMTMC-VideoReID convention (``0001C6F0099X30823.jpg``
  or ``0001_C6_F0099_X30823.jpg``) make one tracklet per folder, pid and
  camera from the names, ordered by their F number;
* any other frames make one tracklet per folder, in natural order; its
  identity is read from a MARS-style folder name (``0051C3T0002``, as when a
  tracklet is copied into a folder of its own) and is unknown otherwise.

The table has the usual columns (``pid``, ``camid``, ``frames``,
``num_frames``, ``tracklet``: a name to show and to pick a query by) and
``known``: whether pid and camera come from names (-1 in both otherwise).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ...errors import DatasetError
from .base import IMAGE_EXTENSIONS, make_frame_table, natural_key

__all__ = ["scan_tracklets", "parse_tracklet_name", "pick_tracklet"]

_EXT = r"\.(?:jpe?g|png|bmp)"
MARS_FRAME_RE = re.compile(rf"^(\d{{4}}|00-1)C(\d)T(\d{{4}})F(\d+){_EXT}$", re.IGNORECASE)
DUKE_FRAME_RE = re.compile(rf"^(\d{{4}})_?C(\d+)_?F(\d+)_?X(\d+){_EXT}$", re.IGNORECASE)
MARS_TRACKLET_RE = re.compile(r"^(\d{4}|00-1)C(\d)T(\d{4})$")


def _pid(text: str) -> int:
    return -1 if text == "00-1" else int(text)


def parse_tracklet_name(name: str) -> tuple[int, int] | None:
    """(pid, camera) of a MARS-style tracklet name such as ``0051C3T0002``, else None."""
    m = MARS_TRACKLET_RE.match(name)
    return (_pid(m.group(1)), int(m.group(2))) if m else None


def _folder_tracklets(folder: Path, names: list[str], label: str) -> list[dict]:
    """The tracklets of one folder's frames (``label``: the folder's name relative to the scanned root)."""
    mars = [MARS_FRAME_RE.match(n) for n in names]
    if all(mars):
        groups: dict[str, list[tuple[int, str]]] = {}
        for n, m in zip(names, mars):
            groups.setdefault(n[:11], []).append((int(m.group(4)), n))
        return [{"pid": _pid(key[:4]), "camid": int(key[5]), "known": True, "tracklet": key,
                 "frames": [str(folder / n) for _, n in sorted(frames)]}
                for key, frames in sorted(groups.items())]
    duke = [DUKE_FRAME_RE.match(n) for n in names]
    if all(duke) and len({(m.group(1), m.group(2)) for m in duke}) == 1:
        order = sorted(zip((int(m.group(3)) for m in duke), names))
        return [{"pid": int(duke[0].group(1)), "camid": int(duke[0].group(2)), "known": True, "tracklet": label,
                 "frames": [str(folder / n) for _, n in order]}]
    identity = parse_tracklet_name(folder.name)
    return [{"pid": identity[0] if identity else -1, "camid": identity[1] if identity else -1,
             "known": identity is not None, "tracklet": label,
             "frames": [str(folder / n) for n in sorted(names, key=natural_key)]}]


def scan_tracklets(root: str | Path, what: str = "folder") -> pd.DataFrame:
    """Every tracklet under ``root`` (see the module docstring); ``what`` names the folder in errors."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{what} not found: {root}" if not root.exists() else f"{what} is not a folder: {root}")
    rows = []
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    for folder in sorted(folders, key=lambda p: natural_key(str(p))):
        names = [f.name for f in folder.iterdir()
                 if f.is_file() and not f.name.startswith(".") and f.name.lower().endswith(IMAGE_EXTENSIONS)]
        if names:
            label = "." if folder == root else folder.relative_to(root).as_posix()
            rows.extend(_folder_tracklets(folder, names, label))
    if not rows:
        raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the {what} or below")
    table = make_frame_table(rows)
    table["known"] = table["known"].astype(bool)
    return table


def pick_tracklet(table: pd.DataFrame, choice: str | None, source: str,
                  others: dict[str, pd.DataFrame] | None = None) -> int:
    """The row of ``table`` named by ``choice`` (a row number or a tracklet name); the only row when None.

    ``source`` names the table in errors, which say how to pick (``--query-tracklet``); ``others`` are
    tables a name may be in instead (by their names in errors, e.g. the dataset's gallery split), so that
    the error says where a name of theirs is.
    """
    names = ", ".join(table["tracklet"].head(5)) + (", ..." if len(table) > 5 else "")
    if choice is None:
        if len(table) == 1:
            return 0
        raise DatasetError(f"{source} holds {len(table)} tracklets ({names}): "
                           "pick one with --query-tracklet NAME or --query-tracklet ROW")
    if choice.isdigit():
        row = int(choice)
        if row >= len(table):
            raise DatasetError(f"--query-tracklet {choice}: {source} has rows 0..{len(table) - 1}")
        return row
    hits = (table["tracklet"].astype(str) == choice).to_numpy().nonzero()[0]
    if not len(hits):
        where = next((name for name, other in (others or {}).items()
                      if (other["tracklet"].astype(str) == choice).any()), None)
        if where is not None:
            raise DatasetError(f"--query-tracklet {choice}: that is a tracklet of {where}; --query-tracklet "
                               f"takes one of {source} ({names}) or a row number 0..{len(table) - 1}")
        raise DatasetError(f"--query-tracklet {choice}: no such tracklet in {source} (e.g. {names})")
    return int(hits[0])
