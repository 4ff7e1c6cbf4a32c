"""Run an exported descriptor model (ONNX with onnxruntime, or a torch.export .pt2) where a checkpoint's STGCN runs.

:class:`ExportedEncoder` has what evaluation asks of a model: ``encode(clips)``
-> ``f_all``, ``eval()``, ``train(False)``, ``to(device)``, ``training``, and
the model's description (``feature_dims``, ``descriptor_dim``,
``num_stripes``, ``branches``, ``cfg``). :func:`load_model_file` opens a
checkpoint or an exported file alike, so ``evaluate``, ``extract`` and
``search`` score a deployment with the same code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..config import Config, config_from_dict
from ..errors import STGCNError
from .exported_file import (EXPORT_FORMAT_TAG, INPUT_NAME, METADATA_KEY, PT2_METADATA_FILE, ExportError,
                            format_from_path, require)

__all__ = ["ExportedEncoder", "load_exported", "load_model_file"]


class ExportedEncoder:
    """An exported descriptor model: clips ``[B, T, 3, H, W]`` -> ``f_all [B, D]`` (float32, on the CPU).

    ``T``, ``H`` and ``W`` are the export's (``seq_len``, ``image_size``);
    ``config`` is the checkpoint's :class:`~stgcn_pyg.config.Config` (the
    defaults where this version cannot read it) with ``eval.seq_len`` and
    ``data.image_size`` set to them; ``cfg`` its model section (None when
    unreadable).
    """

    training = False

    def __init__(self, path: Path, fmt: str, metadata: dict, runner, device: torch.device):
        self.path, self.format = path, fmt
        self.metadata = metadata
        self.seq_len = int(metadata["seq_len"])
        self.image_size = tuple(int(v) for v in metadata["image_size"])
        self.feature_dims = {str(k): int(v) for k, v in metadata["feature_dims"].items()}
        self.descriptor_dim = int(metadata["descriptor_dim"])
        self.num_stripes = int(metadata["num_stripes"])
        self.branches = list(metadata["branches"])
        # The checkpoint's frame size and test clip length (files written before they were recorded: None).
        trained = metadata.get("trained_image_size")
        self.trained_image_size = tuple(int(v) for v in trained) if trained else None
        self.trained_seq_len = int(metadata["trained_seq_len"]) if "trained_seq_len" in metadata else None
        self.config, readable = _stored_config(metadata.get("config") or {})
        self.config.eval.seq_len, self.config.data.image_size = self.seq_len, list(self.image_size)
        self.cfg = self.config.model if readable else None
        self._run = runner
        self.device = device

    def __repr__(self) -> str:
        return (f"ExportedEncoder({str(self.path)!r}, format={self.format!r}, clips=[B, {self.seq_len}, 3, "
                f"{self.image_size[0]}, {self.image_size[1]}], f_all dim {self.descriptor_dim})")

    def shape_change(self) -> str | None:
        """How the export's shapes differ from its checkpoint's (exported with --allow-shape-change), or None."""
        changed = []
        if self.trained_image_size is not None and self.trained_image_size != self.image_size:
            changed.append(f"{self.image_size[0]}x{self.image_size[1]} frames, its checkpoint was trained on "
                           f"{self.trained_image_size[0]}x{self.trained_image_size[1]}")
        if self.trained_seq_len is not None and self.trained_seq_len != self.seq_len:
            changed.append(f"clips of {self.seq_len} frames, its checkpoint is tested on {self.trained_seq_len}")
        return f"{self.path} was exported for {'; and for '.join(changed)}" if changed else None

    def check_seq_len(self, seq_len: int | None) -> None:
        """Refuse a clip length the file cannot run, before any work (``None``: the export's)."""
        if seq_len is not None and int(seq_len) != self.seq_len:
            raise ExportError(f"--seq-len {seq_len}: {self.path} was exported for clips of {self.seq_len} frames; "
                              f"evaluate with --seq-len {self.seq_len} (or export again with the clip length "
                              f"you need)")

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """Descriptors f_all ``[B, D]`` of clips ``[B, T, 3, H, W]``."""
        expected = (self.seq_len, 3, *self.image_size)
        if clips.dim() != 5 or tuple(clips.shape[1:]) != expected:
            raise ExportError(
                f"{self.path}: exported for clips [B, {self.seq_len}, 3, {self.image_size[0]}, {self.image_size[1]}], "
                f"got {list(clips.shape)}; evaluate with --seq-len {self.seq_len} "
                f"(or export again with the clip length you need)"
            )
        return self._run(clips)

    __call__ = encode

    def eval(self) -> "ExportedEncoder":
        return self

    def train(self, mode: bool = True) -> "ExportedEncoder":
        if mode:
            raise ExportError(f"{self.path}: an exported model cannot be trained; train from the checkpoint")
        return self

    def to(self, device) -> "ExportedEncoder":
        device = torch.device(device)
        if device.type != self.device.type:
            self._run, self.device = self._move(device), device
        return self

    def _move(self, device: torch.device):
        raise ExportError(f"{self.path}: this {self.format} model runs on the CPU only; pass --device cpu")


class _ONNXEncoder(ExportedEncoder):
    def __init__(self, path: Path, session_path: Path):
        require("Running an ONNX model", "onnxruntime")
        self._session_path = session_path
        session = _session(session_path, path, "CPUExecutionProvider")
        meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        metadata = _parse_metadata(meta, path, "an ONNX model")
        self._session = session
        super().__init__(path, "onnx", metadata, self._run_session, torch.device("cpu"))

    def _run_session(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self._session.run(None, {INPUT_NAME: x})
        return torch.from_numpy(out)

    def _move(self, device: torch.device):
        import onnxruntime

        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            self._session = _session(self._session_path, self.path, "CUDAExecutionProvider")
            return self._run_session
        return super()._move(device)


def _session(path: Path, name: Path, provider: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # As many threads as torch uses, so the two runtimes are compared on the same cores.
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: the graph optimiser's notes are not for users
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=[provider])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        text = " ".join(str(exc).split())[:200]
        raise ExportError(f"{name}: not an ONNX model that onnxruntime can run ({type(exc).__name__}: {text})") from None


class _ProgramEncoder(ExportedEncoder):
    def __init__(self, path: Path, file: Path):
        extra = {PT2_METADATA_FILE: ""}
        try:
            program = torch.export.load(str(file), extra_files=extra)
        except Exception as exc:  # zip, JSON and schema errors all mean "not a .pt2 program"
            raise ExportError(f"{path}: not a torch.export program ({type(exc).__name__})") from None
        metadata = _parse_metadata(extra[PT2_METADATA_FILE] or None, path, "a torch.export program")
        self._program, self._module = program, program.module()
        super().__init__(path, "torch-export", metadata, self._run_program, torch.device("cpu"))

    def _run_program(self, clips: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._module(clips.to(self.device, torch.float32)).cpu()

    def _move(self, device: torch.device):
        from torch.export.passes import move_to_device_pass

        self._program = move_to_device_pass(self._program, device)
        self._module = self._program.module()
        return self._run_program


def _parse_metadata(raw: str | None, path: Path, kind: str) -> dict:
    if not raw:
        raise ExportError(f"{path}: {kind} not written by `stgcn-pyg export` (no {METADATA_KEY!r} metadata)")
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT_TAG:
        raise ExportError(f"{path}: its {METADATA_KEY!r} metadata is not of {EXPORT_FORMAT_TAG!r}")
    missing = [k for k in ("seq_len", "image_size", "feature_dims", "descriptor_dim", "num_stripes", "branches")
               if k not in meta]
    if missing:
        raise ExportError(f"{path}: its {METADATA_KEY!r} metadata lacks {', '.join(missing)}")
    return meta


def _stored_config(config: dict) -> tuple[Config, bool]:
    """``(config, readable)``: the stored config, or the defaults when this version cannot read it."""
    try:
        return config_from_dict(config), True
    except (STGCNError, TypeError, ValueError):
        return Config(), False


def load_exported(path: str | os.PathLike, fmt: str | None = None) -> ExportedEncoder:
    """Open a file written by ``stgcn-pyg export`` (``fmt`` default: from the suffix, .onnx or .pt2)."""
    file = Path(path)
    fmt = fmt or format_from_path(file)
    if not file.is_file():
        raise ExportError(f"{file}: no such file")
    if fmt == "onnx":
        return _ONNXEncoder(file, file)
    if fmt == "torch-export":
        return _ProgramEncoder(file, file)
    raise ExportError(f"{file}: not an exported model (expected a .onnx or .pt2 file)")


def load_model_file(path: str | os.PathLike, map_location="cpu") -> tuple[object, Config]:
    """``(model, config)`` of a checkpoint, or of a file written by ``stgcn-pyg export``.

    An exported file (``*.onnx``, ``*.pt2``) gives an :class:`ExportedEncoder`
    and the config stored in it; anything else is read as a checkpoint
    (:func:`stgcn_pyg.checkpoint.load_checkpoint`).
    """
    if format_from_path(path) is not None:
        encoder = load_exported(path)
        return encoder, encoder.config
    from ..checkpoint import load_checkpoint

    return load_checkpoint(path, map_location=map_location)
