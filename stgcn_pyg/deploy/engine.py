"""The engine behind ``extract``, ``search`` and ``evaluate``: onnxruntime where it gives torch's numbers.

``benchmarks/speed/inference.py`` measured onnxruntime (fp32) at 1.3 to 2.2 times
torch's fastest eager CPU setting on the same model and CPU, with the same
descriptors (about 2e-7 relative). So ``--engine auto`` (the default) runs
a checkpoint through onnxruntime when onnx, onnxscript and onnxruntime are
installed, the device is the CPU and the precision fp32; anywhere else it
runs torch (:mod:`.inference`).

The checkpoint is exported once (:func:`~stgcn_pyg.deploy.export_model`) to
``$STGCN_PYG_CACHE/onnx`` under a key of its content and the export's
settings (:func:`cache_key`); a cached file that is unreadable or carries
another key is exported again, never used. The first batch is also run in
torch: when the two differ by more than :data:`PARITY_TOLERANCE` (max
relative difference), torch takes over. Every fallback to torch prints one
line saying why; ``--engine onnxruntime`` makes each of them an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from ..errors import ConfigError, OutputError
from .exported_file import EXPORT_FORMAT_TAG, ExportError
from .wrapper import ModelWrapper

__all__ = ["ENGINES", "PARITY_TOLERANCE", "EngineChoice", "OnnxRuntimeModel", "engine_cache_dir", "cache_key", "cached_onnx",
           "choose_engine", "use_onnxruntime"]

ENGINES = ("auto", "torch", "onnxruntime")
# The bar of "the same numbers": evaluate's table must stay train's (which runs torch).
PARITY_TOLERANCE = 1e-4
# Cached exports kept (the most recently used): every epoch's last.pt is a new checkpoint, 50-200 MB each. At most
# CACHE_KEEP files and cache_bound() bytes in all ($STGCN_PYG_ONNX_CACHE_MB, default 256), the one in use always kept.
CACHE_KEEP = 4
CACHE_MB_ENV = "STGCN_PYG_ONNX_CACHE_MB"
CACHE_MB_DEFAULT = 256
# Exporting needs the first two, running the third.
ENGINE_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def engine_cache_dir() -> Path:
    """Where checkpoints exported for the onnxruntime engine are kept: ``$STGCN_PYG_CACHE/onnx``."""
    from ..data.synth.cache import default_cache_dir

    return default_cache_dir() / "onnx"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_key(checkpoint: str | os.PathLike, seq_len: int, image_size, opset: int) -> str:
    """sha256 of the checkpoint file's bytes and of everything else the exported graph depends on."""
    from .. import __version__

    with open(checkpoint, "rb") as fh:
        content = hashlib.file_digest(fh, "sha256").hexdigest()
    settings = {"checkpoint_sha256": content, "seq_len": int(seq_len), "image_size": [int(v) for v in image_size],
                "opset": int(opset), "format": EXPORT_FORMAT_TAG, "stgcn_pyg": __version__,
                **{p: _version(p) for p in ("torch", "onnx", "onnxscript")}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def cached_onnx(model, config, checkpoint: str | os.PathLike, seq_len: int, image_size, *, opset: int | None = None,
                log: Callable[[str], None] = _stderr):
    """The :class:`~stgcn_pyg.deploy.ExportedEncoder` of ``model`` (the STGCN of ``checkpoint``) for clips of
    ``seq_len`` frames of ``image_size``, from the cache or exported into it (atomically)."""
    from .export import DEFAULT_OPSET, export_model
    from .runtime import load_exported

    opset = opset or DEFAULT_OPSET
    checkpoint = Path(checkpoint)
    key = cache_key(checkpoint, seq_len, image_size, opset)
    path = engine_cache_dir() / f"{checkpoint.stem}-{key[:16]}.onnx"
    if path.is_file():
        try:
            encoder = load_exported(path, "onnx")
        except ExportError as exc:
            log(f"{exc}; exporting the cached model again")
        else:
            if encoder.metadata.get("cache_key") == key:
                with contextlib.suppress(OSError):  # a read-only cache still serves what it holds
                    os.utime(path)  # recently used: the last to be pruned
                return encoder
            log(f"{path}: the cached model was exported from another checkpoint or with other settings; "
                "exporting it again")
    else:
        log(f"exporting {checkpoint} to ONNX for onnxruntime, once: {path}")
    export_model(model, path, "onnx", seq_len=seq_len, image_size=image_size, config=config, opset=opset,
                 check=False,  # the first batch is compared with torch instead (OnnxRuntimeModel)
                 source=str(checkpoint), metadata={"cache_key": key})
    _prune(path.parent, keep=path)
    return load_exported(path, "onnx")


def cache_bound() -> int:
    """The ONNX cache's size bound in bytes: ``$STGCN_PYG_ONNX_CACHE_MB`` (default 256) MiB.

    Raises:
        ConfigError: a value that is not a number >= 0.
    """
    raw = os.environ.get(CACHE_MB_ENV, "").strip()
    try:
        mb = float(raw) if raw else CACHE_MB_DEFAULT
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise ConfigError(f"${CACHE_MB_ENV}: the ONNX cache's size bound in MiB is a number >= 0, got {raw!r}")
    return int(mb * 2**20)


def _prune(folder: Path, keep: Path) -> None:
    """Remove the least recently used exports until at most CACHE_KEEP remain within :func:`cache_bound` bytes
    (``keep``, the one just written, always stays)."""
    def stat(f: Path):
        try:
            st = f.stat()
            return st.st_mtime, st.st_size
        except OSError:  # removed meanwhile by another process
            return 0.0, 0

    # not the hidden temporaries of an export in progress (export_model's .NAME.tmp-PID.onnx)
    files = sorted(((stat(f), f) for f in folder.glob("*.onnx") if not f.name.startswith(".") and f != keep),
                   key=lambda item: item[0][0], reverse=True)
    total, bound, kept, full = stat(keep)[1], cache_bound(), 1, False
    for (_, size), old in files:
        full = full or kept >= CACHE_KEEP or total + size > bound  # from here on, every older one goes
        if full:
            with contextlib.suppress(OSError):
                old.unlink(missing_ok=True)
        else:
            kept, total = kept + 1, total + size


class EngineChoice(NamedTuple):
    engine: str
    """"torch" or "onnxruntime"."""
    why: str
    """The reason, in words, starting with the flag ("--engine auto: ...")."""
    fallback: bool = False
    """torch for want of a package: the slow path, which deserves a line."""


def choose_engine(engine: str, device, precision: str) -> EngineChoice:
    """The engine for ``--engine engine`` on ``device`` at ``precision`` (the resolved one, "fp32" or "bf16").

    Raises:
        ConfigError: an unknown engine, or ``onnxruntime`` asked for where it cannot run.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    device = torch.device(device)
    if engine == "torch":
        return EngineChoice("torch", "--engine torch")
    problem = None
    if device.type != "cpu":
        problem = f"the onnxruntime engine runs on the CPU, not on {device}"
    elif precision != "fp32":
        problem = "the onnxruntime engine runs fp32, not bf16"
    if problem and engine == "onnxruntime":
        raise ConfigError(f"--engine onnxruntime: {problem}; use --engine torch (or auto)")
    if problem:
        return EngineChoice("torch", f"--engine auto: {problem}")
    missing = [m for m in ENGINE_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        why = (f"{', '.join(missing)} not installed (pip install 'stgcn-pyg[export]' for the onnxruntime engine, "
               "up to twice as fast)")
        if engine == "onnxruntime":
            raise ConfigError(f"--engine onnxruntime: {why}")
        return EngineChoice("torch", f"--engine auto: {why}", fallback=True)
    return EngineChoice("onnxruntime", f"--engine {engine}")


def _relative_difference(out: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.float()
    return float((out.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


class OnnxRuntimeModel(ModelWrapper):
    """A checkpoint's model whose ``encode`` runs in onnxruntime; every other attribute is the torch model's.

    The first batch is encoded by both and compared; from then on onnxruntime
    alone runs, or torch alone when they disagreed (``engine`` says which).
    """

    def __init__(self, model, encoder, *, strict: bool = False, log: Callable[[str], None] = _stderr):
        super().__init__(model)  # the torch model (eval mode, in its inference setting): reference and fallback
        self.encoder = encoder
        """The :class:`~stgcn_pyg.deploy.ExportedEncoder` of the cached ONNX file."""
        self.engine = "onnxruntime"
        self.strict, self.log = strict, log
        self.max_relative_difference: float | None = None
        """onnxruntime against torch on the first batch (None before it)."""

    def __repr__(self) -> str:
        return f"OnnxRuntimeModel({self.encoder.path}, engine {self.engine})"

    @property
    def cache_path(self) -> Path:
        return self.encoder.path

    def _fall_back(self, reason: str):
        if self.strict:
            raise ExportError(f"--engine onnxruntime: {reason}; use --engine torch (or auto)")
        self.engine = "torch"
        self.log(f"engine torch from here on: {reason}")

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        if self.engine == "torch":
            return self.model.encode(clips)
        if self.max_relative_difference is not None:
            return self.encoder.encode(clips)
        ref = self.model.encode(clips)
        try:
            out = self.encoder.encode(clips)
        except Exception as exc:  # ExportError for a shape it was not exported for, onnxruntime's own types
            self._fall_back(f"onnxruntime failed on the first batch ({type(exc).__name__}: {str(exc)[:200]})")
            return ref
        difference = _relative_difference(out, ref)
        if not difference <= PARITY_TOLERANCE:
            self._fall_back(f"{self.encoder.path}: onnxruntime's descriptors differ from torch's by {difference:.1e} "
                            f"(max relative) on the first batch, more than {PARITY_TOLERANCE:g}")
            return ref
        self.max_relative_difference = difference
        return out

    def to(self, device) -> "OnnxRuntimeModel":
        super().to(device)
        if torch.device(device).type != "cpu" and self.engine == "onnxruntime":
            self._fall_back(f"the onnxruntime engine runs on the CPU, not on {device}")
        return self


def use_onnxruntime(model, torch_model, config, checkpoint: str | os.PathLike, seq_len: int, image_size, *,
                    strict: bool = False, log: Callable[[str], None] = _stderr):
    """``torch_model`` (the prepared form of ``model``, the checkpoint's STGCN) with ``encode`` run in
    onnxruntime (:class:`OnnxRuntimeModel`), or ``torch_model`` itself, with a line to ``log`` saying why, when
    the export fails (an error instead when ``strict``)."""
    try:
        encoder = cached_onnx(model, config, checkpoint, seq_len, image_size, log=log)
    except (OSError, OutputError) as exc:  # a cache folder that cannot be written, or a full disk
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
        else:  # check_output_file's "PATH: cannot write in FOLDER (permission denied)", "PATH: ... is a file"
            reason = "permission denied" if "permission denied" in str(exc) else str(exc).split(": ", 1)[-1]
        problem = (f"the ONNX cache {engine_cache_dir()} cannot be written ({reason}); set $STGCN_PYG_CACHE to a "
                   "writable folder to run onnxruntime")
        if strict:
            raise ExportError(f"--engine onnxruntime: {problem}, or use --engine torch (or auto)") from None
        log(f"engine torch: {problem}")
        return torch_model
    except ExportError as exc:
        if strict:
            raise
        log(f"engine torch: the checkpoint cannot run in onnxruntime ({exc})")
        return torch_model
    return OnnxRuntimeModel(torch_model, encoder, strict=strict, log=log)
