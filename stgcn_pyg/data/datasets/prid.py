"""PRID2011 (Hirzer et al., SCIA 2011), multi-shot version.

::

    <root>/[prid2011/]prid_2011/multi_shot/cam_a/person_0001/0001.png
    <root>/[prid2011/]prid_2011/multi_shot/cam_b/person_0001/...
    <root>/[prid2011/]splits_prid2011.json   [{"train": [person dirs], "test": [...]}, ...]

The usual splits (from the iLIDS-VID authors) use the 178 people seen by
both cameras with at least 27 frames. Split ``split_id`` (default 0):
train people's two sequences train, test people's cam_a sequences are the
queries, cam_b the gallery. pid = the person number; camid 1 (a) or 2 (b).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DatasetError
from .base import ReIDDataset, list_dir
from .ilidsvid import read_json_splits, seeded_split, two_camera_dataset

__all__ = ["load_prid2011"]


def load_prid2011(root: str | Path, protocol: str = "standard", split_id: int = 0) -> ReIDDataset:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root not found: {root}")
    base = next((c for c in (root, root / "prid2011", root / "prid_2011")
                 if (c / "prid_2011" / "multi_shot").is_dir() or (c / "multi_shot").is_dir()), None)
    if base is None:
        raise DatasetError(f"PRID2011 folder not found: expected {root / 'prid_2011' / 'multi_shot'}")
    ms = base / "prid_2011" / "multi_shot" if (base / "prid_2011" / "multi_shot").is_dir() else base / "multi_shot"
    cams = (ms / "cam_a", ms / "cam_b")
    notes = []
    split_file = next((p for p in (base / "splits_prid2011.json", ms.parent / "splits_prid2011.json") if p.is_file()), None)
    if split_file is not None:
        splits = read_json_splits(split_file)
        notes.append(f"split {split_id} of {split_file}")
    else:
        both = sorted(set(list_dir(cams[0], "PRID2011 camera folder")) & set(list_dir(cams[1], "PRID2011 camera folder")))
        splits = [seeded_split(both, s) for s in range(10)]
        notes.append(f"no splits_prid2011.json under {base}: seeded half/half split {split_id} of the "
                     f"{len(both)} people in both cameras (not comparable with published numbers)")
    if not 0 <= split_id < len(splits):
        raise DatasetError(f"split_id {split_id} out of range: the splits hold {len(splits)} (0..{len(splits) - 1})")
    return two_camera_dataset("prid2011", base, cams, splits[split_id], protocol, notes)
