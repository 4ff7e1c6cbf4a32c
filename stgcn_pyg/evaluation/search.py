"""One query against a gallery: the ranked gallery tracklets, marked right or wrong where identities are known."""

from __future__ import annotations

import filecmp
import functools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..metrics import compute_distance, rank_order
from .evaluate import extract_split
from .options import TestOptions

__all__ = ["SearchResult", "search_gallery", "search_tables"]


@dataclass
class SearchResult:
    """What :func:`search_gallery` found.

    ``rows`` holds one dict per result, best first: ``rank``, ``distance``,
    ``tracklet``, ``pid`` and ``camid`` (None when unknown), ``num_frames`` and
    ``match`` (True/False, None when either identity is unknown).
    """

    query: str
    query_pid: int | None
    query_camid: int | None
    rows: list[dict]
    """One dict per result (see the class's docstring), with ``same_camera``: the query's identity seen by its
    own camera (None when either is unknown)."""
    ranked_frames: list[list[str]]
    """The frame paths of each result, in ``rows`` order (for a ranked-results grid)."""
    num_gallery: int
    """Gallery tracklets searched (those holding the query's own frames left out)."""
    excluded: list[str] = field(default_factory=list)
    """Gallery tracklets left out because they hold the query's own frames (or copies of them), and with
    ``cross_camera`` those of the query's identity and camera."""
    notes: list[str] = field(default_factory=list)


def _known(table: pd.DataFrame) -> pd.Series:
    """Whether each tracklet's pid and camera are known (dataset splits always know them)."""
    return table["known"].astype(bool) if "known" in table.columns else pd.Series(True, index=table.index)


def _holds_query_frames(query_frames, gallery: pd.DataFrame) -> list[bool]:
    """Per gallery tracklet: whether it holds one of the query's frames, the same file or a copy of it (a file
    of the same name and the same bytes, e.g. the query's folder copied into the gallery)."""
    files = {str(Path(f).resolve()) for f in query_frames}
    by_name: dict[str, list[str]] = {}
    for f in query_frames:
        by_name.setdefault(Path(f).name, []).append(str(f))

    def copy_of_query(frame) -> bool:
        if str(Path(frame).resolve()) in files:
            return True
        for q in by_name.get(Path(frame).name, ()):  # only same-named files are read (sizes first)
            try:
                if filecmp.cmp(q, frame, shallow=False):
                    return True
            except OSError:  # unreadable: the extraction will say so
                pass
        return False

    return [any(copy_of_query(f) for f in frames) for frames in gallery["frames"]]


def search_gallery(model, query: pd.DataFrame, gallery: pd.DataFrame, options: TestOptions, *,
                   metric: str = "euclidean", topk: int = 10, query_pid: int | None = None,
                   gallery_source: str = "the gallery", cross_camera: bool = False) -> SearchResult:
    """Rank ``gallery``'s tracklets by distance to the one tracklet of ``query`` (a one-row table).

    A gallery tracklet that holds any of the query's own frames, or a copy of one (same file name, same
    bytes), is left out, so the query never finds itself. Tracklets of the query's identity seen by its own
    camera stay (a search finds a person wherever they are) and their rows say ``same_camera``; a note says
    that evaluate's protocols ignore them, and ``cross_camera=True`` leaves them out as those do.
    ``query_pid`` gives the query's identity when its table does not know it (its camera then stays
    unknown); ``gallery_source`` names the gallery in errors and notes. ``options``' test-time perturbations
    (``occlude``, ``misalign``) apply to the query as to a query split's, and with ``*_gallery`` to the
    gallery as to a gallery split's, each seeded by its table's rows.
    """
    if query_pid is not None:
        q_pid, q_cam = query_pid, None
    elif bool(_known(query).iloc[0]):
        q_pid, q_cam = int(query["pid"].iloc[0]), int(query["camid"].iloc[0])
    else:
        q_pid, q_cam = None, None

    itself = _holds_query_frames(query["frames"].iloc[0], gallery)
    excluded = gallery.loc[itself, "tracklet"].astype(str).tolist()
    gallery = gallery.loc[[not x for x in itself]].reset_index(drop=True)
    known = _known(gallery)
    same_camera = pd.Series(False, index=gallery.index)
    if q_pid is not None and q_cam is not None:
        same_camera = known & (gallery["pid"] == q_pid) & (gallery["camid"] == q_cam)
    same_camera_left_out = []
    if cross_camera:
        if q_cam is None:
            raise ConfigError("--cross-camera: the query's camera is unknown (its names are not MARS/Duke-style), "
                              "so its own camera's tracklets cannot be told apart")
        same_camera_left_out = gallery.loc[same_camera, "tracklet"].astype(str).tolist()
        gallery = gallery.loc[~same_camera].reset_index(drop=True)
        same_camera = same_camera.loc[~same_camera].reset_index(drop=True)
        known = _known(gallery)
    if not len(gallery):
        what = "the query's own frames" + (" and its identity's tracklets from its camera" if cross_camera else "")
        raise ConfigError(f"{gallery_source}: no gallery tracklet left once {what} are left out")

    qf = extract_split(model, query, options, description="query")
    gf = extract_split(model, gallery, options, description="gallery", split="gallery")
    dist = compute_distance(qf, gf, metric)[0]
    order = rank_order(dist)[:min(topk, len(gallery))].tolist()

    rows = []
    for r, g in enumerate(order):
        pid = int(gallery["pid"].iloc[g]) if known.iloc[g] else None
        rows.append({"rank": r + 1, "distance": float(dist[g]), "tracklet": str(gallery["tracklet"].iloc[g]),
                     "pid": pid, "camid": int(gallery["camid"].iloc[g]) if known.iloc[g] else None,
                     "num_frames": int(gallery["num_frames"].iloc[g]),
                     # unknown identity: neither right nor wrong
                     "match": None if q_pid is None or pid is None else pid == q_pid,
                     "same_camera": None if q_cam is None or pid is None else bool(same_camera.iloc[g])})
    notes = []
    if excluded:
        notes.append(f"left out {len(excluded)} gallery tracklet(s) holding the query's own frames or copies "
                     f"of them ({', '.join(excluded[:3])})")
    if same_camera_left_out:
        notes.append(f"--cross-camera: left out {len(same_camera_left_out)} tracklet(s) of the query's identity "
                     f"from its own camera c{q_cam} ({', '.join(same_camera_left_out[:3])})")
    same = [str(r["rank"]) for r in rows if r["same_camera"]]
    if same:
        notes.append(f"result(s) #{', #'.join(same)}: the query's identity from its own camera c{q_cam}, which "
                     f"evaluate's protocols ignore; --cross-camera leaves them out")
    excluded = excluded + same_camera_left_out
    if all(r["match"] is None for r in rows):
        why = ("the query's identity is unknown (no --query-pid, and its names are not MARS/Duke-style)"
               if q_pid is None else "the gallery's identities are unknown (no MARS/Duke-style names)")
        notes.append(f"{why}: results are not marked right or wrong")
    return SearchResult(str(query["tracklet"].iloc[0]), q_pid, q_cam, rows,
                        [list(gallery["frames"].iloc[g]) for g in order], len(gallery), excluded, notes)


def search_tables(dataset, query_tracklet: str | None = None, *, query_dir=None, gallery_dir=None,
                  split: str = "gallery") -> tuple[pd.DataFrame, str, pd.DataFrame, str]:
    """``(query, query source, gallery, gallery source)`` of a search: a one-row query table and the gallery.

    Each comes from a folder of frames (``query_dir``, ``gallery_dir``) or else from the dataset's query
    split and its ``split``; ``dataset`` is a function returning the dataset, called only when a split is
    needed (reading one takes time). ``query_tracklet`` picks the query (a row number or tracklet name).
    """
    from ..data.datasets.scan import pick_tracklet, scan_tracklets

    dataset = functools.cache(dataset)
    if query_dir:
        queries, qsource = scan_tracklets(query_dir, "query folder"), f"query folder {query_dir}"
        others = {}
    else:
        queries, qsource = dataset().query.reset_index(drop=True), f"the {dataset().name} query split"
        # A name of another split is named as such, not reported as unknown.
        others = {f"the {dataset().name} {s} split": getattr(dataset(), s) for s in ("gallery", "train")}
    query = queries.iloc[[pick_tracklet(queries, query_tracklet, qsource, others)]].reset_index(drop=True)
    if gallery_dir:
        gallery, gsource = scan_tracklets(gallery_dir, "gallery folder"), f"gallery folder {gallery_dir}"
    else:
        gallery = getattr(dataset(), split).reset_index(drop=True)
        gsource = f"the {dataset().name} {split} split"
    return query, qsource, gallery, gsource
