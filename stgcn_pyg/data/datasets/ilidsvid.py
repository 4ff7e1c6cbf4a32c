"""iLIDS-VID (Wang et al., ECCV 2014): 300 people, one sequence in each of two cameras.

::

    <root>/[ilids-vid/]i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png
    <root>/[ilids-vid/]i-LIDS-VID/sequences/cam2/person001/...
    <root>/[ilids-vid/]splits.json           [{"train": [person dirs], "test": [...]}, ...]
    <root>/[ilids-vid/]train-test people splits/train_test_splits_ilidsvid.mat  (ls_set, used when
                                                                                no splits.json)

Split ``split_id`` (default 0 of the 10): the train people's two sequences
train; the test people's cam1 sequences are the queries, their cam2
sequences the gallery. pid = the number in the person folder; camid 1 or 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ...errors import DatasetError
from .base import IMAGE_EXTENSIONS, ReIDDataset, list_dir, make_frame_table, natural_key

__all__ = ["load_ilidsvid", "read_person_sequences", "read_json_splits", "two_camera_dataset"]


def read_person_sequences(cam_dir: Path, what: str) -> dict[str, list[str]]:
    """``{person dir: [frame paths in natural order]}`` for one camera folder."""
    out = {}
    for name in list_dir(cam_dir, what):
        pdir = cam_dir / name
        if not pdir.is_dir():
            continue
        frames = sorted((f for f in list_dir(pdir, "person folder") if f.lower().endswith(IMAGE_EXTENSIONS)),
                        key=natural_key)
        if not frames:
            raise DatasetError(f"empty tracklet: {pdir} holds no images")
        out[name] = [str(pdir / f) for f in frames]
    return out


def person_number(name: str, path: Path) -> int:
    m = re.search(r"(\d+)$", name)
    if m is None:
        raise DatasetError(f"{path / name}: person folder name breaks the convention (expected personNNN)")
    return int(m.group(1))


def read_json_splits(path: Path) -> list[dict]:
    try:
        splits = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the splits ({exc})") from None
    if not isinstance(splits, list) or not all(isinstance(s, dict) and "train" in s and "test" in s for s in splits):
        raise DatasetError(f"{path}: expected a list of {{\"train\": [...], \"test\": [...]}} splits")
    return splits


def two_camera_dataset(name: str, root: Path, cam_dirs: tuple[Path, Path], split: dict, protocol: str,
                       notes: list[str]) -> ReIDDataset:
    seqs = [read_person_sequences(d, f"{name} camera folder") for d in cam_dirs]

    def rows(people, cams):
        out = []
        for person in people:
            for c in cams:
                if person not in seqs[c]:
                    raise DatasetError(f"person {person!r} of the split is not in {cam_dirs[c]}")
                out.append({"pid": person_number(person, cam_dirs[c]), "camid": c + 1, "frames": seqs[c][person],
                            "tracklet": f"cam{c + 1}/{person}"})
        return out

    train = make_frame_table(rows(split["train"], (0, 1)))
    query = make_frame_table(rows(split["test"], (0,)))
    gallery = make_frame_table(rows(split["test"], (1,)))
    return ReIDDataset(name, root, train, query, gallery, protocol, notes)


def seeded_split(people: list[str], seed: int = 0) -> dict:
    """Half train, half test, by a seeded permutation (used only when no split file exists)."""
    perm = np.random.default_rng(seed).permutation(len(people))
    half = len(people) // 2
    return {"train": sorted(people[i] for i in perm[half:]), "test": sorted(people[i] for i in perm[:half])}


def load_ilidsvid(root: str | Path, protocol: str = "standard", split_id: int = 0) -> ReIDDataset:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root not found: {root}")
    base = next((c for c in (root, root / "ilids-vid", root / "iLIDS-VID") if (c / "i-LIDS-VID").is_dir()), None)
    if base is None:
        raise DatasetError(f"iLIDS-VID folder not found: expected {root / 'i-LIDS-VID' / 'sequences'}")
    cams = (base / "i-LIDS-VID" / "sequences" / "cam1", base / "i-LIDS-VID" / "sequences" / "cam2")
    notes = []
    if (base / "splits.json").is_file():
        splits = read_json_splits(base / "splits.json")
        notes.append(f"split {split_id} of {base / 'splits.json'}")
    elif (mat := base / "train-test people splits" / "train_test_splits_ilidsvid.mat").is_file():
        from .mars import read_mat_table

        ls = read_mat_table(mat, "ls_set")
        people = sorted(list_dir(cams[0], "iLIDS-VID camera folder"))
        if ls.ndim != 2 or ls.min() < 1 or ls.max() > len(people):
            raise DatasetError(f"{mat}: ls_set must hold 1-based person indices (1..{len(people)})")
        half = ls.shape[1] // 2  # first half tests, following Wang et al. 2014
        splits = [{"train": [people[i - 1] for i in sorted(r[half:])], "test": [people[i - 1] for i in sorted(r[:half])]}
                  for r in ls]
        notes.append(f"split {split_id} of {mat}")
    else:
        both = sorted(set(list_dir(cams[0], "iLIDS-VID camera folder")) & set(list_dir(cams[1], "iLIDS-VID camera folder")))
        splits = [seeded_split(both, s) for s in range(10)]
        notes.append(f"no splits.json or ls_set .mat under {base}: seeded half/half split {split_id} (not comparable "
                     "with published numbers)")
    if not 0 <= split_id < len(splits):
        raise DatasetError(f"split_id {split_id} out of range: the splits hold {len(splits)} (0..{len(splits) - 1})")
    return two_camera_dataset("ilids-vid", base, cams, splits[split_id], protocol, notes)
