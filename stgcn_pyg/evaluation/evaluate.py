"""Evaluate a model on a dataset's query/gallery split and print the results."""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import compute_distance, evaluate_rank, re_ranking
from ..metrics.rank import EvaluationError
from .descriptors import extract_descriptors

__all__ = ["evaluate_model", "evaluate_descriptors", "extract_split", "print_results", "RANKS"]

RANKS = (1, 5, 10, 20)


def tracklet_ids(df, column: str) -> torch.Tensor:
    """A column of a tracklet table (pid, camid) as a long tensor."""
    if column not in df.columns:
        raise EvaluationError(f"the tracklet table has no {column!r} column")
    return torch.from_numpy(np.array(df[column], dtype=np.int64))


def extract_split(
    model,
    df,
    *,
    seq_len: int = 8,
    mode: str = "all",
    image_size=(256, 128),
    device="cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    flip: bool = False,
    progress: bool = True,
    description: str = "descriptors",
) -> torch.Tensor:
    """Descriptors [len(df), D] of one tracklet table (query or gallery) with ``model.encode``."""
    from ..data import build_test_loader

    loader = build_test_loader(
        df, seq_len=seq_len, mode=mode, image_size=image_size, batch_size=batch_size, num_workers=num_workers
    )
    return extract_descriptors(model.encode, loader, len(df), device, flip=flip, progress=progress,
                               description=description)


def evaluate_descriptors(
    qf,
    gf,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    metric: str = "euclidean",
    rerank: bool = False,
    protocol: str = "standard",
    max_rank: int = 50,
    device=None,
) -> dict:
    """Scores of query/gallery descriptors: the dict that :func:`print_results` shows.

    Keys: ``rank1``, ``rank5``, ``rank10``, ``rank20``, ``mAP``, ``mINP``
    (percentages), ``cmc`` (list of fractions, length ``max_rank``),
    ``protocol``, ``metric``, ``rerank``, ``num_query``, ``num_gallery``.
    """
    qf, gf = torch.as_tensor(qf), torch.as_tensor(gf)
    if device is not None:
        qf, gf = qf.to(device), gf.to(device)
    if rerank:
        distmat = re_ranking(qf, gf, metric=metric)
    else:
        distmat = compute_distance(qf, gf, metric=metric)
    cmc, mAP, mINP = evaluate_rank(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank=min(max_rank, distmat.shape[1]), protocol=protocol, return_minp=True
    )
    out = {f"rank{r}": float(cmc[r - 1]) * 100 if r <= len(cmc) else float("nan") for r in RANKS}
    out.update(
        mAP=mAP * 100,
        mINP=mINP * 100,
        cmc=[float(x) for x in cmc],
        protocol=protocol,
        metric=metric,
        rerank=bool(rerank),
        num_query=int(distmat.shape[0]),
        num_gallery=int(distmat.shape[1]),
    )
    return out


def evaluate_model(
    model,
    dataset,
    *,
    seq_len: int = 8,
    mode: str = "all",
    image_size=(256, 128),
    device="cpu",
    metric: str = "euclidean",
    rerank: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    flip: bool = False,
    max_rank: int = 50,
    progress: bool = True,
    return_features: bool = False,
) -> dict:
    """Rank-k, mAP and mINP of ``model`` on ``dataset.query`` against ``dataset.gallery``.

    Descriptors come from ``model.encode`` over the dataset's test clips:
    ``mode="all"`` (dense: every frame, consecutive clips of ``seq_len``,
    averaged) or ``"evenly"`` (one clip of ``seq_len`` evenly spaced frames).
    The protocol is the dataset's (``dataset.protocol``, "standard" when it
    has none). The model is put in eval mode and restored afterwards.

    Returns the dict of :func:`evaluate_descriptors`; with
    ``return_features=True`` it also holds ``qf``/``gf`` (CPU tensors).
    """
    protocol = getattr(dataset, "protocol", "standard") or "standard"
    was_training = model.training
    model.eval()
    try:
        common = dict(seq_len=seq_len, mode=mode, image_size=image_size, device=device, batch_size=batch_size,
                      num_workers=num_workers, flip=flip, progress=progress)
        qf = extract_split(model, dataset.query, description="query descriptors", **common)
        gf = extract_split(model, dataset.gallery, description="gallery descriptors", **common)
    finally:
        model.train(was_training)
    results = evaluate_descriptors(
        qf, gf,
        tracklet_ids(dataset.query, "pid"), tracklet_ids(dataset.gallery, "pid"),
        tracklet_ids(dataset.query, "camid"), tracklet_ids(dataset.gallery, "camid"),
        metric=metric, rerank=rerank, protocol=protocol, max_rank=max_rank,
        device=device if torch.device(device).type != "cpu" else None,
    )
    results.update(mode=mode, seq_len=seq_len, flip=bool(flip), dataset=getattr(dataset, "name", None))
    if return_features:
        results.update(qf=qf, gf=gf)
    return results


def _mode_text(mode: str, seq_len: int | None) -> str:
    """How the test clips were drawn, in words (``mode`` "all" or "evenly")."""
    of = f" of {seq_len}" if seq_len else ""
    if mode == "all":
        return f"mode all: every frame, clips{of}"
    if mode == "evenly":
        return f"mode evenly: one clip{of} evenly spaced frames"
    return f"mode {mode}"


def print_results(results: dict, title: str | None = None, console=None) -> None:
    """Print rank-1/5/10/20, mAP and mINP as a rich table that names the protocol."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    protocol = results.get("protocol", "standard")
    extras = [f"{protocol} protocol", results.get("metric", "euclidean")]
    if results.get("rerank"):
        extras.append("re-ranked")
    if results.get("mode"):
        extras.append(_mode_text(results["mode"], results.get("seq_len")))
    if results.get("flip"):
        extras.append("flip test")
    heading = f"{title or 'Evaluation'} ({', '.join(extras)})"
    footer = f"{results.get('num_query', '?')} queries x {results.get('num_gallery', '?')} gallery tracklets"
    table = Table()
    table.add_column("metric")
    table.add_column("%", justify="right")
    for r in RANKS:
        table.add_row(f"rank-{r}", f"{results[f'rank{r}']:.1f}")
    table.add_row("mAP", f"{results['mAP']:.1f}")
    table.add_row("mINP", f"{results['mINP']:.1f}")
    # The heading and footer as whole lines: a table title wraps at the console's width (80 in a log).
    console.print(heading, highlight=False, markup=False, soft_wrap=True)
    console.print(table)
    console.print(footer, highlight=False, markup=False, soft_wrap=True)
