"""The pictures of one evaluation (the CMC curve, ranked-results grids of the first queries, a temporal
affinity) and of one search (its ranked-results grid)."""

from __future__ import annotations

from pathlib import Path

import torch

from .affinity import plot_affinity
from .cmc import plot_cmc
from .ranked_grid import IGNORED, plot_ranked_results

__all__ = ["plot_evaluation", "plot_search_results", "protocol_marks", "PROTOCOL_TITLES"]

PROTOCOL_TITLES = {
    "standard": "ranked by the standard protocol: same pid and same camera ignored",
    "official": "ranked by the official protocol: same pid and same camera, and junk (pid -1), ignored",
}
"""The line a ranked-results grid of an evaluation starts with: which protocol ranked it, and what it ignores."""


def protocol_marks(q_pid, q_camid, g_pids, g_camids, protocol: str = "standard") -> list:
    """Per gallery item, as the protocol scores it for this query: :data:`~stgcn_pyg.viz.ranked_grid.IGNORED`
    (left out: :func:`~stgcn_pyg.metrics.junk_mask`), True (the query's pid) or False."""
    from ..metrics import junk_mask

    g_pids, g_camids = torch.as_tensor(g_pids), torch.as_tensor(g_camids)
    junk = junk_mask(int(q_pid), int(q_camid), g_pids, g_camids, protocol)
    return [IGNORED if j else bool(p == int(q_pid)) for j, p in zip(junk.tolist(), g_pids.tolist())]


def plot_evaluation(out_dir, results: dict, *, distmat: torch.Tensor | None = None, dataset=None, model=None,
                    options=None, num_grids: int = 4, topk: int = 10) -> tuple[list[Path], list[str]]:
    """Write ``cmc.png``, ``query_XXXX.png`` grids and ``affinity.png`` under ``out_dir``.

    ``results`` are :func:`~stgcn_pyg.evaluation.evaluate_descriptors`'s; the
    grids need ``distmat`` (the distances scored) and ``dataset`` (the
    frames), the affinity ``dataset``, ``model`` and ``options`` (a
    :class:`~stgcn_pyg.evaluation.TestOptions`). Returns the files written and
    notes on pictures left out.
    """
    out_dir = Path(out_dir)
    written = [plot_cmc(results["cmc"], out_dir / "cmc.png",
                        title=f"CMC ({results['protocol']} protocol, {results['num_query']} queries)")]
    notes: list[str] = []
    if dataset is not None and distmat is not None:
        written += _ranked_grids(out_dir, distmat, dataset, results["protocol"], num_grids, topk)
    if dataset is not None and model is not None and options is not None and hasattr(model, "temporal_affinity"):
        path = _affinity(model, dataset.query.iloc[[0]], options, out_dir / "affinity.png", notes)
        if path is not None:
            written.append(path)
    return written, notes


def _ranked_grids(out_dir: Path, distmat: torch.Tensor, dataset, protocol: str, num_grids: int,
                  topk: int) -> list[Path]:
    from ..evaluation import tracklet_ids
    from ..metrics import rank_order

    q, g = dataset.query, dataset.gallery
    qp, qc = tracklet_ids(q, "pid"), tracklet_ids(q, "camid")
    gp, gc = tracklet_ids(g, "pid"), tracklet_ids(g, "camid")
    written = []
    for qi in range(min(num_grids, len(q))):
        order = rank_order(distmat[qi].cpu())  # the ranking evaluate_rank scores
        marks = protocol_marks(qp[qi], qc[qi], gp[order], gc[order], protocol)
        # the top-k ranked tracklets, and the ignored ones among them where they fall
        ranks, rank = [], 0
        for mark in marks:
            if rank == topk:
                break
            rank += mark != IGNORED
            ranks.append(None if mark == IGNORED else rank)
        order = order[:len(ranks)].tolist()
        captions = [f"{'ignored' if r is None else f'#{r}'} pid {int(gp[i])} c{int(gc[i])} "
                    f"d={float(distmat[qi, i]):.3f}" for r, i in zip(ranks, order)]
        written.append(plot_ranked_results(
            q["frames"].iloc[qi], [g["frames"].iloc[i] for i in order], out_dir / f"query_{qi:04d}.png",
            matches=marks[:len(ranks)], captions=captions, legend=True,
            query_caption=f"query {qi}: pid {int(qp[qi])}, camera {int(qc[qi])}",
            title=PROTOCOL_TITLES.get(protocol, f"ranked by the {protocol} protocol"),
        ))
    return written


def plot_search_results(found, query_frames, path) -> Path:
    """The ranked-results grid of a :class:`~stgcn_pyg.evaluation.SearchResult` (right green, wrong red, grey
    where an identity is unknown) to ``path``."""
    def caption(r):
        who = "" if r["pid"] is None else f" pid {r['pid']} c{r['camid']}"
        return f"#{r['rank']}{who} d={r['distance']:.3f}"

    who = "" if found.query_pid is None else (
        f", pid {found.query_pid}" + ("" if found.query_camid is None else f" c{found.query_camid}"))
    return plot_ranked_results(query_frames, found.ranked_frames, path, matches=[r["match"] for r in found.rows],
                               captions=[caption(r) for r in found.rows], query_caption=f"query {found.query}{who}")


def _affinity(model, df, options, path: Path, notes: list[str]) -> Path | None:
    from ..data import build_test_loader
    from ..errors import ConfigError

    loader = build_test_loader(df, **options.replace(mode="evenly", batch_size=1, num_workers=0).loader_settings())
    clips, _ = next(iter(loader))
    try:
        with torch.no_grad():
            weights = model.temporal_affinity(clips[:1].to(options.device))
    except ConfigError as exc:  # a model without the temporal branch
        notes.append(f"no affinity plot: {exc}")
        return None
    T = clips.size(1)
    P = weights.shape[-1] // T
    return plot_affinity(weights, list(clips[0]), P, path,
                         title=f"temporal affinity, query 0 (pid {int(df['pid'].iloc[0])})")
