"""Retrieval metrics: CMC / mAP / mINP under two protocols, distances, k-reciprocal re-ranking."""

from .distance import METRICS, compute_distance
from .rank import PROTOCOLS, EvaluationError, evaluate_rank, junk_mask, rank_gallery, rank_order
from .reranking import re_ranking

__all__ = ["evaluate_rank", "rank_gallery", "rank_order", "junk_mask", "compute_distance", "re_ranking",
           "EvaluationError", "PROTOCOLS", "METRICS"]
