"""Evaluation by every process of a run: each extracts a share of the tracklets, rank 0 scores them all."""

from __future__ import annotations

import torch

from ..distributed import DistContext, gather_rows, shard_indices
from .evaluate import evaluate_dataset_descriptors, evaluate_model, extract_split
from .options import TestOptions

__all__ = ["evaluate_distributed"]


def evaluate_distributed(model, dataset, options: TestOptions, ctx: DistContext, *, metric: str = "euclidean",
                         rerank: bool = False) -> dict | None:
    """:func:`~stgcn_pyg.evaluation.evaluate_model` over the ranks of ``ctx``: the results on rank 0, None elsewhere.

    Every rank extracts the descriptors of its rows of the query and gallery
    tables (:func:`~stgcn_pyg.distributed.shard_indices`); they are gathered
    on every rank and rank 0 scores them. One process: ``evaluate_model``.
    """
    if not ctx.enabled:
        return evaluate_model(model, dataset, options, metric=metric, rerank=rerank)
    import torch.distributed as dist

    was_training = model.training
    model.eval()
    # BN running statistics drift apart on each rank between DDP's buffer broadcasts: evaluate
    # every shard with rank 0's (the ones the checkpoint stores).
    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)
    try:
        feats = []
        for split in ("query", "gallery"):
            df = getattr(dataset, split)
            rows = shard_indices(len(df), ctx.rank, ctx.world_size)
            if rows:
                local = extract_split(model, df.iloc[rows], options, description=f"{split} descriptors",
                                      split=split)
            else:
                local = torch.zeros(0, model.descriptor_dim)
            feats.append(gather_rows(local.float(), len(df), ctx))
    finally:
        model.train(was_training)
    if not ctx.is_main:
        return None
    return evaluate_dataset_descriptors(feats[0], feats[1], dataset, options, metric=metric, rerank=rerank)
