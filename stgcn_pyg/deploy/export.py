"""Export the descriptor model of a checkpoint: ONNX (torch's exporter) or a torch.export program (.pt2).

The exported graph maps clips ``[B, T, 3, H, W]`` (float, normalised like the
test loader's) to the descriptors ``f_all`` ``[B, D]`` that ``model.encode``
returns, with a dynamic batch dimension ``B``; ``T``, ``H`` and ``W`` are
fixed at export (the temporal graph is built for ``T`` frames). Every graph
layer runs on its dense static path, which is plain batched matmuls.

Each file carries the checkpoint's config and the export's shapes (ONNX:
``metadata_props["stgcn_pyg"]``; .pt2: the extra file ``stgcn_pyg.json``), so
``stgcn-pyg evaluate/extract/search --model FILE`` find their defaults the way
they do for a checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import Config, config_to_dict
from ..data.transforms import DEFAULT_IMAGE_SIZE
from ..errors import STGCNError
from ..outputs import check_output_file
from .exported_file import (EXPORT_FORMAT_TAG, EXPORT_FORMATS, INPUT_NAME, METADATA_KEY, OUTPUT_NAME,
                            PT2_METADATA_FILE, SUFFIX_FORMATS, ExportError, format_from_path, require)
from .runtime import load_exported

__all__ = ["DEFAULT_OPSET", "DescriptorModel", "ExportResult", "export_model", "export_checkpoint"]

# The newest opset torch's exporter writes; onnxruntime 1.20 and later run it.
DEFAULT_OPSET = 23
# An export whose output drifts further than this from eager is broken, not rounded.
CHECK_TOLERANCE = 1e-3

# torch's ONNX exporter imports both; onnxruntime (the check) is optional.
_ONNX_EXPORT_NEEDS = ("onnx", "onnxscript")


class _HeadsByBranch(nn.Module):
    """The model's heads under names that are Python identifiers.

    The ONNX exporter turns the traced program back into Python source, where
    a submodule path such as ``heads.global`` is a syntax error ("global" is
    a keyword). Indexing by branch name still works, as ``STGCN`` does it.
    """

    def __init__(self, heads: nn.ModuleDict):
        super().__init__()
        for branch, head in heads.items():
            self.add_module(f"{branch}_head", head)

    def __getitem__(self, branch: str) -> nn.Module:
        return getattr(self, f"{branch}_head")


class DescriptorModel(nn.Module):
    """``clips [B, T, 3, H, W] -> f_all [B, D]``: an exportable copy of ``model.encode`` (eval mode).

    The copy's graph layers are set to their dense path (``impl="dense"``,
    which the static layout always allows), so the program holds no sparse
    tensors; the caller's model is left as it was.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        from ..nn import AffinityGCNConv

        model = copy.deepcopy(model).eval()
        for module in model.modules():
            if isinstance(module, AffinityGCNConv):
                module.impl = "dense"
        model.heads = _HeadsByBranch(model.heads)
        self.stgcn = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        B, T = clips.shape[:2]
        frames = clips.reshape(B * T, *clips.shape[2:])
        # Not model.encode: it passes the frame counts as [T] * B, a Python list whose length fixes
        # B at the traced value. The static path reads only the first count.
        return self.stgcn._run(frames, B, [T], True, None, with_logits=False).descriptor


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how close it is to eager PyTorch."""

    path: Path
    format: str
    seq_len: int
    image_size: tuple[int, int]
    descriptor_dim: int
    max_relative_difference: float | None
    """max |exported - eager| / max |eager| on a random batch of 2 clips (None when not checked)."""


def _metadata(model, config: Config | dict | None, seq_len: int, image_size: tuple[int, int]) -> dict:
    config = config_to_dict(config) if isinstance(config, Config) else copy.deepcopy(config or {})
    # The checkpoint's own frame size and test clip length, before they are set to the export's: a reader
    # (evaluate --model) says when the file was exported for other shapes (--allow-shape-change).
    trained = {}
    if "image_size" in config.get("data", {}):
        trained["trained_image_size"] = [int(v) for v in config["data"]["image_size"]]
    if "seq_len" in config.get("eval", {}):
        trained["trained_seq_len"] = int(config["eval"]["seq_len"])
    # The defaults evaluate/extract/search read from a checkpoint's config, set to what the file accepts.
    config.setdefault("eval", {})["seq_len"] = seq_len
    config.setdefault("data", {})["image_size"] = list(image_size)
    return {
        "format": EXPORT_FORMAT_TAG,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "seq_len": seq_len,
        "image_size": list(image_size),
        "branches": list(model.branches),
        "feature_dims": dict(model.feature_dims),
        "descriptor_dim": int(model.descriptor_dim),
        "num_stripes": int(model.num_stripes),
        "torch": torch.__version__,
        "config": config,
        **trained,
    }


@contextlib.contextmanager
def _exporter_quiet():
    # onnx_ir logs a warning per empty attribute list (e.g. a reduction's empty axes); torch.export
    # warns about tensors the model caches outside its buffers (the graphs' edge lists, constants here).
    logger = logging.getLogger("onnx_ir")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n\n")[0].split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _trace(module: DescriptorModel, example: torch.Tensor, source: str):
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad():
            module(example)  # builds and caches the graphs' edge lists: constants of the program
        with _exporter_quiet():
            return torch.export.export(module, (example,), dynamic_shapes={INPUT_NAME: {0: batch}}, strict=False)
    except STGCNError as exc:  # the model itself refuses these clips (e.g. too few rows for its stripes)
        raise ExportError(f"{source}: cannot export: {exc}") from None
    except Exception as exc:  # torch.export's many error types all mean "not traceable"
        raise ExportError(f"{source}: the model cannot be exported (torch.export failed: {_first_line(exc)})") from None


def _relative_difference(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-12))


def export_model(model: nn.Module, out: str | os.PathLike, fmt: str | None = None, *, seq_len: int,
                 image_size=DEFAULT_IMAGE_SIZE, config: Config | dict | None = None, opset: int = DEFAULT_OPSET,
                 check: bool = True, source: str | None = None, metadata: dict | None = None) -> ExportResult:
    """Export the descriptor model of ``model`` (an ``STGCN``) to ``out``.

    Args:
        model: the model; a copy is exported (its graph layers on the dense path).
        out: the file to write (``.onnx`` or ``.pt2``); replaced atomically.
        fmt: ``"onnx"`` or ``"torch-export"`` (default: from ``out``'s suffix).
        seq_len: frames per clip, ``T``, fixed in the exported graph.
        image_size: ``(H, W)`` of the frames, fixed in the exported graph.
        config: the checkpoint's config, stored in the file.
        opset: the ONNX opset.
        check: run the exported file on a random batch and compare with eager
            (needs onnxruntime for ONNX; skipped when it is not installed).
        source: the name used in error messages (default: the class name).
        metadata: more keys for the file's ``stgcn_pyg`` metadata (the engine's cache key).

    Raises:
        ExportError: a missing package, a model that cannot be traced or
            converted, or an export whose output disagrees with eager.
    """
    out = Path(out)
    fmt = fmt or format_from_path(out)
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"{out}: name the file *.onnx (ONNX) or *.pt2 (torch.export)")
    suffix = {v: k for k, v in SUFFIX_FORMATS.items()}[fmt]
    if out.suffix.lower() != suffix:
        # evaluate/extract/search tell an exported model from a checkpoint by its suffix.
        raise ExportError(f"{out}: a {fmt} file must be named *{suffix}")
    source = source or type(model).__name__
    check_output_file(out)  # before the trace: minutes on a large model
    if fmt == "onnx":
        require("ONNX export", *_ONNX_EXPORT_NEEDS)
    H, W = (int(v) for v in image_size)
    seq_len = int(seq_len)
    if seq_len < 1 or H < 1 or W < 1:
        raise ExportError(f"{source}: clips of {seq_len} frames of {H}x{W} pixels cannot be exported")
    module = DescriptorModel(model)
    device = next(module.parameters()).device
    example = torch.randn(2, seq_len, 3, H, W, device=device)
    program = _trace(module, example, source)
    meta = {**_metadata(model, config, seq_len, (H, W)), **(metadata or {})}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{suffix}")  # torch.export wants the suffix
    try:
        if fmt == "onnx":
            _write_onnx(program, example, tmp, meta, opset, source)
        else:
            torch.export.save(program, tmp, extra_files={PT2_METADATA_FILE: json.dumps(meta)})
        difference = _check(tmp, fmt, module, seq_len, (H, W), device) if check else None
        if difference is not None and not difference <= CHECK_TOLERANCE:
            raise ExportError(
                f"{source}: the exported {fmt} model disagrees with eager PyTorch "
                f"(max relative difference {difference:.2e} > {CHECK_TOLERANCE:g}); nothing written to {out}"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, fmt, seq_len, (H, W), int(model.descriptor_dim), difference)


def _write_onnx(program, example, path: Path, meta: dict, opset: int, source: str) -> None:
    try:
        with _exporter_quiet():
            onnx_program = torch.onnx.export(program, (example,), dynamo=True, opset_version=opset,
                                             input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                             verbose=False, optimize=True)
    except Exception as exc:  # the converter's errors carry a multi-page report: keep its first line
        raise ExportError(f"{source}: the model cannot be converted to ONNX opset {opset} ({_first_line(exc)})") from None
    onnx_program.model.metadata_props[METADATA_KEY] = json.dumps(meta)
    onnx_program.model.producer_name = "stgcn-pyg"
    # One self-contained file: the weights inline (external data would not survive the rename).
    onnx_program.save(path, external_data=False)


def _check(path: Path, fmt: str, module: DescriptorModel, seq_len: int, image_size, device) -> float | None:
    """max relative difference between the file just written and eager, on 2 random clips (None: no runtime)."""
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        return None
    clips = torch.randn(2, seq_len, 3, *image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = module(clips.to(device)).cpu()
    exported = load_exported(path, fmt)
    return _relative_difference(exported.encode(clips), ref)


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None, *,
                      seq_len: int | None = None, image_size=None, opset: int = DEFAULT_OPSET,
                      check: bool = True, allow_shape_change: bool = False) -> ExportResult:
    """Export the descriptor model of a checkpoint written by ``stgcn-pyg train``.

    ``seq_len`` defaults to the checkpoint's ``eval.seq_len``, ``image_size``
    to its ``data.image_size``. Other values are refused (an ExportError naming both): a model fed frames of
    another size or clips of another length scores far below its checkpoint (mAP 2.1 against 12.6 for a
    3-epoch default run at twice its frame size), so ``allow_shape_change=True`` must say that is meant.
    """
    from ..checkpoint import load_checkpoint

    model, config = load_checkpoint(checkpoint, map_location="cpu")
    trained_size = tuple(int(v) for v in config.data.image_size)
    seq_len = int(seq_len or config.eval.seq_len)
    image_size = tuple(int(v) for v in (image_size or trained_size))
    if not allow_shape_change:
        changed = []
        if image_size != trained_size:
            changed.append(f"--image-size {image_size[0]} {image_size[1]}, but it was trained on "
                           f"{trained_size[0]}x{trained_size[1]} frames")
        if seq_len != config.eval.seq_len:
            changed.append(f"--seq-len {seq_len}, but it is tested on clips of {config.eval.seq_len} frames "
                           f"(eval.seq_len; trained on {config.data.seq_len})")
        if changed:
            raise ExportError(f"{checkpoint}: {'; and '.join(changed)}; a model scores far lower on shapes it "
                              f"was not trained for (pass --allow-shape-change to export anyway)")
    return export_model(model, out, fmt, seq_len=seq_len, image_size=image_size, config=config, opset=opset,
                        check=check, source=str(checkpoint))
