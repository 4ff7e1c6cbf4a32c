"""The dataset object every reader returns, and helpers shared by the readers."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DatasetError
from ...metrics.rank import PROTOCOLS  # the metric's: which gallery items are junk, how AP is summed

__all__ = ["ReIDDataset", "PROTOCOLS", "make_frame_table", "list_dir", "natural_key", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
COLUMNS = ["pid", "camid", "frames", "num_frames", "tracklet"]


def natural_key(name: str):
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_dir(folder: Path, what: str) -> list[str]:
    """Names in ``folder``, or a DatasetError saying which folder is missing."""
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        raise DatasetError(f"{what} not found: {folder}") from None
    except NotADirectoryError:
        raise DatasetError(f"{what} is not a folder: {folder}") from None
    except PermissionError:
        raise DatasetError(f"{what} is not readable: {folder}") from None


def make_frame_table(rows: list[dict]) -> pd.DataFrame:
    """A DataFrame with the standard columns (and any extra ones) from tracklet dicts."""
    df = pd.DataFrame(rows, columns=None if rows else COLUMNS)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object)
    if len(df):
        df["num_frames"] = df["frames"].map(len).astype(np.int64)
    df["pid"] = df["pid"].astype(np.int64)
    df["camid"] = df["camid"].astype(np.int64)
    df["num_frames"] = df["num_frames"].astype(np.int64)
    return df.reset_index(drop=True)


@dataclass
class ReIDDataset:
    """A video re-ID dataset: ``train``, ``query`` and ``gallery`` tracklet tables.

    Each table is a pandas DataFrame with one row per tracklet and at least the
    columns ``pid`` (int; MARS junk -1, distractors 0), ``camid`` (int, the
    dataset's own camera number, e.g. 1-6 for MARS), ``frames`` (list of
    image paths in temporal order), ``num_frames`` and ``tracklet`` (a short
    name for messages). ``protocol`` names the evaluation protocol this split
    follows ("standard" or "official", see the README); evaluation code passes
    it on to the metric.
    """

    name: str
    root: Path
    train: pd.DataFrame
    query: pd.DataFrame
    gallery: pd.DataFrame
    protocol: str = "standard"
    notes: list[str] = field(default_factory=list)

    @property
    def num_train_pids(self) -> int:
        """Distinct identities in the training split (the classifier's size)."""
        return int(self.train["pid"].nunique()) if len(self.train) else 0

    def splits(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "query": self.query, "gallery": self.gallery}

    def summary(self) -> list[dict]:
        """Per split: ids, tracklets, frames and min/median/max frames per tracklet.

        ``ids`` counts people: junk (pid -1) and MARS-style distractors (pid 0, people
        seen once, all sharing that pid) are counted in ``junk`` and ``distractors``.
        """
        out = []
        for split, df in self.splits().items():
            n = df["num_frames"].to_numpy() if len(df) else np.zeros(0, int)
            people = df["pid"][df["pid"] > 0] if len(df) else df["pid"]
            out.append({
                "split": split,
                "ids": int(people.nunique()),
                "tracklets": int(len(df)),
                "frames": int(n.sum()),
                "min": int(n.min()) if len(n) else 0,
                "median": float(np.median(n)) if len(n) else 0.0,
                "max": int(n.max()) if len(n) else 0,
                "junk": int((df["pid"] == -1).sum()) if len(df) else 0,
                "distractors": int((df["pid"] == 0).sum()) if len(df) else 0,
                "cameras": sorted(int(c) for c in df["camid"].unique()) if len(df) else [],
            })
        return out

    def __repr__(self) -> str:
        return (f"ReIDDataset({self.name!r}, root={str(self.root)!r}, protocol={self.protocol!r}, "
                f"train={len(self.train)}, query={len(self.query)}, gallery={len(self.gallery)})")
