"""Evaluation: dense tracklet descriptors, scoring a model on a dataset, the results table."""

from .descriptors import extract_descriptors
from .evaluate import RANKS, evaluate_descriptors, evaluate_model, extract_split, print_results

__all__ = ["extract_descriptors", "evaluate_model", "evaluate_descriptors", "extract_split", "print_results", "RANKS"]
