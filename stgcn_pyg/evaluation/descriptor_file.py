"""The descriptor file: a dataset's query and gallery descriptors with their pids and cameras.

``stgcn-pyg extract`` writes it and ``stgcn-pyg evaluate --features`` reads
it: one ``torch.save`` of tensors, strings and numbers, loadable with
``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import EvaluationError, STGCNError
from ..outputs import check_output_file
from .evaluate import evaluate_descriptors, tracklet_ids
from .options import TestOptions

__all__ = ["DESCRIPTOR_FILE_FORMAT", "DESCRIPTOR_KEYS", "write_descriptor_file", "read_descriptor_file",
           "descriptor_file_dataset", "evaluate_descriptor_file"]

DESCRIPTOR_FILE_FORMAT = "stgcn-pyg-descriptors/1"
DESCRIPTOR_KEYS = ("query_features", "gallery_features", "query_pids", "query_camids", "gallery_pids",
                   "gallery_camids")
"""What every descriptor file holds; it also names its ``dataset``, ``root``, ``protocol`` and how the
descriptors were made (``mode``, ``seq_len``, ``flip``, and ``precision`` and ``engine`` in files written since
they were added; ``branches`` when the descriptors are some branches' slices of f_all; the test-time
perturbations ``occlude``, ``misalign`` with their ``*_gallery`` and ``*_seed`` when in force, and in files
written since it was added ``*_frames`` (the frames perturbed, of all), as
:meth:`~stgcn_pyg.evaluation.TestOptions.perturbation_fields` names them)."""


def write_descriptor_file(path: str | os.PathLike, qf: torch.Tensor, gf: torch.Tensor, dataset,
                          options: TestOptions, precision: str = "fp32", engine: str | None = None) -> Path:
    """Save the descriptors ``qf``/``gf`` of ``dataset``'s query and gallery (made as ``options`` say, in
    ``precision``: "fp32" or "bf16", by ``engine``: "onnxruntime", "torch" ...)."""
    path = check_output_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"cannot create the folder for {path}: {exc.strerror}") from None
    blob = {
        "format": DESCRIPTOR_FILE_FORMAT,
        "query_features": qf.float().contiguous(),
        "gallery_features": gf.float().contiguous(),
        "query_pids": tracklet_ids(dataset.query, "pid"),
        "query_camids": tracklet_ids(dataset.query, "camid"),
        "gallery_pids": tracklet_ids(dataset.gallery, "pid"),
        "gallery_camids": tracklet_ids(dataset.gallery, "camid"),
        "dataset": str(getattr(dataset, "name", "")),
        "root": str(getattr(dataset, "root", "")),
        "protocol": str(getattr(dataset, "protocol", "standard") or "standard"),
        "mode": str(options.mode),
        "seq_len": int(options.seq_len),
        "flip": bool(options.flip),
        "precision": str(precision),
    }
    if engine:
        blob["engine"] = str(engine)
    if options.branches:
        blob["branches"] = list(options.branches)
    blob.update(options.perturbation_fields({"query": dataset.query, "gallery": dataset.gallery}))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # hidden, and one per writer
    try:
        torch.save(blob, tmp)
        tmp.replace(path)
    except OSError as exc:  # a disk that filled up, a folder that changed since the check
        raise EvaluationError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_descriptor_file(path: str | os.PathLike) -> dict:
    """The dict :func:`write_descriptor_file` saved (a weights_only load, checked), or an EvaluationError."""
    from ..checkpoint import unreadable_reason

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"descriptor file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise EvaluationError(
            f"{path}: not a descriptor file written by `stgcn-pyg extract` ({unreadable_reason(exc)})"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != DESCRIPTOR_FILE_FORMAT:
        raise EvaluationError(
            f"{path}: not a descriptor file written by `stgcn-pyg extract` (no {DESCRIPTOR_FILE_FORMAT!r} tag)"
        )
    missing = [k for k in DESCRIPTOR_KEYS if k not in blob]
    if missing:
        raise EvaluationError(f"{path}: descriptor file lacks {', '.join(missing)}")
    return blob


def descriptor_file_dataset(blob: dict, protocol: str = "standard"):
    """The dataset a descriptor file was extracted from (for its frames), or None when it moved or changed."""
    from ..data import load_dataset

    if not blob.get("dataset") or not blob.get("root"):
        return None
    # the synthetic set is read back as the MARS-layout folder it was generated into
    name = "mars" if blob["dataset"] == "synthetic" else blob["dataset"]
    try:
        dataset = load_dataset(name, blob["root"], protocol=protocol)
    except STGCNError:
        return None
    if len(dataset.query) != len(blob["query_features"]) or len(dataset.gallery) != len(blob["gallery_features"]):
        return None
    return dataset


def evaluate_descriptor_file(path: str | os.PathLike, *, protocol: str | None = None, metric: str = "euclidean",
                             rerank: bool = False, max_rank: int = 50, device=None, with_dataset: bool = False):
    """``(results, distmat, dataset)``: :func:`~stgcn_pyg.evaluation.evaluate_descriptors` of a descriptor
    file (in the file's protocol unless ``protocol`` is given), the distances scored, and with
    ``with_dataset`` the dataset it was extracted from (for pictures; None when it moved or changed)."""
    blob = read_descriptor_file(path)
    protocol = protocol or blob.get("protocol") or "standard"
    results, distmat = evaluate_descriptors(
        blob["query_features"], blob["gallery_features"], blob["query_pids"], blob["gallery_pids"],
        blob["query_camids"], blob["gallery_camids"], metric=metric, rerank=rerank, protocol=protocol,
        max_rank=max_rank, device=device, return_distances=True)
    for key in ("precision", "engine", "branches"):
        if blob.get(key):
            results[key] = blob[key]
    for name in ("occlude", "misalign"):  # the descriptors' perturbations, for the heading and --json
        if blob.get(name):
            results.update({k: blob[k] for k in (name, f"{name}_gallery", f"{name}_seed", f"{name}_frames")
                            if k in blob})
    return results, distmat, descriptor_file_dataset(blob, protocol) if with_dataset else None
