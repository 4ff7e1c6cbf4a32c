"""Evaluate a model on a dataset's query/gallery split and print the results (and a search's)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EvaluationError
from ..metrics import compute_distance, evaluate_rank, re_ranking
from .descriptors import extract_descriptors
from .options import TestOptions, branch_columns

__all__ = ["evaluate_model", "evaluate_descriptors", "evaluate_dataset_descriptors", "extract_split",
           "extract_query_gallery", "load_test_dataset", "tracklet_ids", "print_results", "print_search_results",
           "perturbation_text",
           "RANKS", "SCORE_KEYS"]

RANKS = (1, 5, 10, 20)
SCORE_KEYS = tuple(f"rank{r}" for r in RANKS) + ("mAP", "mINP")
"""The scores (percentages) of every results dict, in the order tables and logs show them."""


def tracklet_ids(df, column: str) -> torch.Tensor:
    """A column of a tracklet table (pid, camid) as a long tensor."""
    if column not in df.columns:
        raise EvaluationError(f"the tracklet table has no {column!r} column")
    return torch.from_numpy(np.array(df[column], dtype=np.int64))


def _options(options: TestOptions | None, settings: dict) -> TestOptions:
    """``options`` with keyword settings on top (the keyword form: ``seq_len=4, mode="evenly"``)."""
    return (options or TestOptions()).replace(**settings)


def extract_split(model, df, options: TestOptions | None = None, *, description: str = "descriptors",
                  split: str = "query", **settings) -> torch.Tensor:
    """Descriptors [len(df), D] of one tracklet table (query or gallery) with ``model.encode``.

    ``options`` (default :class:`TestOptions`()), or its fields as keywords, say how clips are drawn;
    ``split`` ("query" or "gallery") which of its occlusion settings apply.
    """
    from ..data import build_test_loader

    options = _options(options, settings)
    columns = branch_columns(getattr(model, "feature_dims", None), options.branches)  # checked before the work
    loader = build_test_loader(df, **options.loader_settings(split))
    descriptors = extract_descriptors(model.encode, loader, len(df), options.device, flip=options.flip,
                                      progress=options.progress, description=description,
                                      frames_note=_clip_frames_note(options.mode, options.seq_len))
    return descriptors if columns is None else descriptors[:, columns]


def load_test_dataset(config, *, dataset: str | None = None, root: str | None = None, protocol: str | None = None,
                      progress: bool = True):
    """The test split of a checkpoint's dataset (``config.data``), or of the ``dataset`` named instead.

    ``root`` and ``protocol`` replace the config's; another dataset does not inherit the checkpoint's root.
    """
    from dataclasses import replace

    from ..data import load_configured_dataset

    data = config.data
    if dataset and dataset != data.dataset:
        data = replace(data, dataset=dataset, root="")
    data = replace(data, root=data.root if root is None else root, protocol=protocol or data.protocol)
    return load_configured_dataset(data, progress=progress)


def extract_query_gallery(model, dataset, options: TestOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """``(qf, gf)``: the descriptors of ``dataset.query`` and ``dataset.gallery``."""
    return tuple(extract_split(model, getattr(dataset, split), options, description=f"{split} descriptors",
                               split=split)
                 for split in ("query", "gallery"))


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
    return_distances: bool = False,
):
    """Scores of query/gallery descriptors: the dict that :func:`print_results` shows.

    Keys: ``rank1``, ``rank5``, ``rank10``, ``rank20``, ``mAP``, ``mINP``
    (percentages), ``cmc`` (list of fractions, length ``max_rank``),
    ``protocol``, ``metric``, ``rerank``, ``num_query``, ``num_gallery``.
    With ``return_distances=True``: ``(scores, distmat)``, the (re-ranked)
    distances the scores come from, for pictures of the rankings.
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
    # A CMC cut to the gallery's size is flat beyond it (every valid query has matched by then), so
    # rank-k of a small gallery is its last value; only a shorter max_rank leaves rank-k unknown (nan).
    known = len(cmc) if len(cmc) < distmat.shape[1] else max(RANKS)
    out = {f"rank{r}": float(cmc[min(r, len(cmc)) - 1]) * 100 if r <= known else float("nan") for r in RANKS}
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
    return (out, distmat) if return_distances else out


def evaluate_dataset_descriptors(qf, gf, dataset, options: TestOptions, *, metric: str = "euclidean",
                                 rerank: bool = False, max_rank: int = 50, return_distances: bool = False):
    """:func:`evaluate_descriptors` of ``dataset``'s query and gallery (its ids and protocol), the results
    also naming how the descriptors were made (``mode``, ``seq_len``, ``flip``) and the ``dataset``."""
    q, g = dataset.query, dataset.gallery
    scored = evaluate_descriptors(
        qf, gf, tracklet_ids(q, "pid"), tracklet_ids(g, "pid"), tracklet_ids(q, "camid"), tracklet_ids(g, "camid"),
        metric=metric, rerank=rerank, protocol=getattr(dataset, "protocol", "standard") or "standard",
        max_rank=max_rank, device=options.device, return_distances=return_distances,
    )
    results = scored[0] if return_distances else scored
    results.update(mode=options.mode, seq_len=options.seq_len, flip=bool(options.flip),
                   dataset=getattr(dataset, "name", None))
    # occlude*, misalign* when in force, with the frames they came to (occlude_frames: [perturbed, total])
    results.update(options.perturbation_fields({"query": q, "gallery": g}))
    if options.branches:
        results["branches"] = list(options.branches)
    return scored


def evaluate_model(
    model,
    dataset,
    options: TestOptions | None = None,
    *,
    metric: str = "euclidean",
    rerank: bool = False,
    max_rank: int = 50,
    return_features: bool = False,
    return_distances: bool = False,
    **settings,
):
    """Rank-k, mAP and mINP of ``model`` on ``dataset.query`` against ``dataset.gallery``.

    Descriptors come from ``model.encode`` over the dataset's test clips, drawn
    as ``options`` (or its fields as keywords) say: ``mode="all"`` (dense:
    every frame, consecutive clips of ``seq_len``, averaged), ``"evenly"``
    (one clip of ``seq_len`` evenly spaced frames) or ``"strided"`` (every
    frame, in clips that each span the tracklet, averaged). The protocol is the
    dataset's (``dataset.protocol``, "standard" when it has none). The model
    is put in eval mode and restored afterwards.

    Returns the dict of :func:`evaluate_dataset_descriptors`; with
    ``return_features=True`` it also holds ``qf``/``gf`` (CPU tensors); with
    ``return_distances=True``: ``(results, distmat)``, the distances scored.
    """
    options = _options(options, settings)
    was_training = model.training
    model.eval()
    try:
        qf, gf = extract_query_gallery(model, dataset, options)
    finally:
        model.train(was_training)
    scored = evaluate_dataset_descriptors(qf, gf, dataset, options, metric=metric, rerank=rerank, max_rank=max_rank,
                                          return_distances=return_distances)
    if return_features:
        (scored[0] if return_distances else scored).update(qf=qf, gf=gf)
    return scored


def _clip_frames_note(mode: str, seq_len: int) -> str | None:
    """How a test mode's clips count a tracklet's frames, for the progress's count of the frames encoded: padded
    or repeated frames count, so it can exceed `stgcn-pyg data info`'s count of the dataset's frames."""
    return {"all": f"clips of {seq_len}, each tracklet's last one padded with its own frames",
            "evenly": f"one clip of {seq_len} evenly spaced frames per tracklet, repeated in a shorter one",
            "strided": f"clips of {seq_len} spread over each tracklet, padded with repeated frames"}.get(mode)


def _mode_text(mode: str, seq_len: int | None) -> str:
    """How the test clips were drawn, in words (``mode`` "all", "evenly" or "strided")."""
    of = f" of {seq_len}" if seq_len else ""
    if mode == "all":
        return f"mode all: every frame, clips{of}"
    if mode == "evenly":
        return f"mode evenly: one clip{of} evenly spaced frames"
    if mode == "strided":
        return f"mode strided: every frame, clips{of} spread over the tracklet"
    return f"mode {mode}"


def perturbation_text(fields: dict) -> list[str]:
    """The test-time perturbations of a results dict (or :meth:`TestOptions.perturbation_fields`) in words, in
    the order they are applied: e.g. ``["query misaligned: 50 % of each tracklet's frames (seed 0)"]``."""
    texts = []
    for name, done in (("misalign", "misaligned"), ("occlude", "occluded")):
        if fields.get(name):
            who = "query and gallery" if fields.get(f"{name}_gallery") else "query"
            text = (f"{who} {done}: {100 * fields[name]:g} % of each tracklet's frames "
                    f"(seed {fields.get(f'{name}_seed', 0)})")
            counted = fields.get(f"{name}_frames")  # [perturbed, total], where the tables were at hand
            if counted and counted[1]:
                # The share is rounded per tracklet: say what it came to where that is not what it says
                # (1 % of tracklets under 50 frames is no frame at all).
                actual = counted[0] / counted[1]
                if counted[0] == 0 or abs(actual - fields[name]) >= 0.005:
                    text += (f", rounded per tracklet to {counted[0]:,} of {counted[1]:,} frames "
                             f"({100 * actual:.1f} %)")
            texts.append(text)
    return texts


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
    if results.get("branches"):
        names = results["branches"]
        extras.append(f"descriptor: the {', '.join(names)} slice{'s' if len(names) > 1 else ''} of f_all")
    extras += perturbation_text(results)
    if results.get("precision"):  # a number must say whether bf16 made it, and what ran
        precision = {"bf16": "bf16 autocast"}.get(results["precision"], results["precision"])
        extras.append(f"{precision} in {results['engine']}" if results.get("engine") else precision)
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


def print_search_results(found, title: str, console=None) -> None:
    """Print a :class:`~stgcn_pyg.evaluation.SearchResult` as a table (right green, wrong red) and its notes."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title)
    for col in ("rank", "distance", "tracklet", "pid", "camera", "frames"):
        table.add_column(col, justify="left" if col == "tracklet" else "right")
    for r in found.rows:
        style = None if r["match"] is None else ("green" if r["match"] else "red")
        table.add_row(str(r["rank"]), f"{r['distance']:.4f}", r["tracklet"],
                      "-" if r["pid"] is None else str(r["pid"]), "-" if r["camid"] is None else str(r["camid"]),
                      str(r["num_frames"]), style=style)
    console.print(table)
    for note in found.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
