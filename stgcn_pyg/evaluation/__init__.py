"""Evaluation: test options, dense tracklet descriptors, scoring a model on a dataset (in one process or
several), the descriptor file, searching a gallery, the results table."""

from .descriptor_file import (DESCRIPTOR_FILE_FORMAT, evaluate_descriptor_file, read_descriptor_file,
                              write_descriptor_file)
from .descriptors import extract_descriptors
from .distributed import evaluate_distributed
from .evaluate import (RANKS, SCORE_KEYS, evaluate_dataset_descriptors, evaluate_descriptors, evaluate_model,
                       extract_query_gallery, extract_split, load_test_dataset, perturbation_text, print_results,
                       print_search_results, tracklet_ids)
from .options import TestOptions, branch_columns
from .search import SearchResult, search_gallery, search_tables

__all__ = [
    "TestOptions",
    "branch_columns",
    "extract_descriptors", "extract_split", "extract_query_gallery", "tracklet_ids",
    "evaluate_model", "evaluate_descriptors", "evaluate_dataset_descriptors", "evaluate_distributed",
    "load_test_dataset", "print_results", "print_search_results", "perturbation_text", "RANKS", "SCORE_KEYS",
    "DESCRIPTOR_FILE_FORMAT", "write_descriptor_file", "read_descriptor_file", "evaluate_descriptor_file",
    "SearchResult", "search_gallery", "search_tables",
]
