"""Checkpoints: plain dicts of tensors and Python values, written atomically by training, read by everyone.

A checkpoint holds ``format``, ``config`` (the resolved config as a plain
dict), ``model`` (state dict), ``optimizer``, ``scheduler``, ``epoch`` (epochs
completed), ``step``, ``best`` (best mAP so far), ``metrics`` and ``rng``
(CPU/CUDA/numpy/python generator states as tensors and ints), so that
``torch.load(path, weights_only=True)`` reads it without unpickling code.
A run's ``best.pt`` is its ``last.pt`` (a hard link) while the last epoch is
the best, and a file of its own with only :data:`EVALUATION_KEYS` (no
optimiser state: a third of the size with Adam) once a later epoch is worse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from .config import Config, config_from_dict
from .errors import CheckpointError, ConfigError, OutputError, state_mismatch

__all__ = ["FORMAT", "EVALUATION_KEYS", "evaluation_payload", "link_checkpoint", "same_file", "save_checkpoint", "read_checkpoint", "load_checkpoint", "checkpoint_config", "get_rng_state",
           "set_rng_state", "model_config_diff", "load_state_into", "unreadable_reason", "upgrade_config"]

FORMAT = "stgcn-pyg/checkpoint-1"


def get_rng_state() -> dict:
    """Every global generator a training step may touch, in weights_only-safe types."""
    state = {"torch": torch.get_rng_state(), "python": _py_state_to_plain(random.getstate())}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_plain_to_py_state(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(st) -> dict:
    version, internal, gauss = st
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _plain_to_py_state(d: dict):
    return (d["version"], tuple(int(v) for v in d["internal"].tolist()), d["gauss"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours, or unknowable: keep its file
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of ``path`` left by writers that were killed mid-write (their process is gone)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (a temporary file in the same folder, then os.replace).

    A process killed mid-write leaves the previous ``path`` intact and a hidden
    ``.NAME.tmp-PID`` file, which the next save removes.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        torch.save({"format": FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save says "open file failed" or "failed writing file"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _write_failure(exc)
        raise OutputError(f"{path}: cannot write the checkpoint ({reason})") from None
    finally:
        with contextlib.suppress(OSError):  # a folder that became read-only keeps it; the next save removes it
            tmp.unlink(missing_ok=True)
    return path


# What evaluation (and export, extract, search) reads: best.pt, once it is a file of its own, holds only these.
EVALUATION_KEYS = ("config", "model", "epoch", "step", "best", "best_epoch", "metrics")


def evaluation_payload(ckpt: dict) -> dict:
    """``ckpt`` without what only resuming needs (optimiser and schedule state, random generators): the weights
    and the run's config, a third of a checkpoint trained with Adam."""
    return {k: ckpt[k] for k in EVALUATION_KEYS if k in ckpt}


def link_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Make ``path`` the same file as ``source`` (a hard link, replacing ``path`` atomically): no bytes written.
    False where the file system has no hard links (``path`` is then left as it was)."""
    source, path = Path(source), Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return False
    return True


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths exist and are one file (hard links of each other)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _write_failure(exc: BaseException) -> str:
    """torch.save's RuntimeError in a few words (its message spans lines and names C++ sources)."""
    text = str(exc).lower()
    if "open" in text:
        return "the file cannot be created: no permission, or the folder is gone"
    if "writ" in text:
        return "writing failed: the disk may be full"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The checkpoint dict (weights_only load), or one clear CheckpointError."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, not a torch file
        raise CheckpointError(f"{path}: not a stgcn-pyg checkpoint ({unreadable_reason(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path}: not a stgcn-pyg checkpoint (no '{FORMAT}' format tag)")
    ckpt["config"] = upgrade_config(ckpt["config"])
    return ckpt


def upgrade_config(raw: dict) -> dict:
    """A saved config in today's keys, keeping the model it was trained with.

    Configs saved before the paper's Eq. 2 and temporal residual became the
    defaults lack ``model.affinity_normalization`` (they used the softmax) and
    have ``model.residual`` (every layer whose widths agree, the first included).
    Their ``spatial_width`` and ``frame_fusion`` were saved explicitly.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        return raw
    model = dict(raw["model"])
    model.setdefault("affinity_normalization", "softmax")
    if "temporal_residual" not in model:
        residual = bool(model.pop("residual", False))
        model.update(temporal_residual=residual, spatial_residual=residual, residual_first_layer=residual)
    return {**raw, "model": model}


def unreadable_reason(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a few words.

    torch's own message advises loading with ``weights_only=False``, which runs any
    code the file holds; a file of unknown origin must never be loaded that way, so
    that advice is not passed on.
    """
    if isinstance(exc, pickle.UnpicklingError):
        return "not a file written by torch.save, or it holds Python objects that a safe load refuses"
    return f"truncated or not a file written by torch.save: {type(exc).__name__}"


def model_config_diff(a: dict, b: dict) -> list[str]:
    """Model keys whose values differ (``num_classes`` compared as well: the classifier's shape)."""
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def load_state_into(model: torch.nn.Module, state: dict, source: str) -> None:
    """``model.load_state_dict`` with a one-line CheckpointError when it does not fit."""
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{source}: the checkpoint is of another model ({problem})")
    model.load_state_dict(state)


def checkpoint_config(ckpt: dict, source: str | os.PathLike) -> Config:
    """The :class:`~stgcn_pyg.config.Config` of a checkpoint dict, or a CheckpointError naming ``source``."""
    try:
        return config_from_dict(ckpt["config"], source="config")
    except ConfigError as exc:
        raise CheckpointError(f"{source}: its config is not valid here ({exc})") from None


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> tuple[torch.nn.Module, Config]:
    """``(model, config)``: the STGCN of a checkpoint (eval mode) and the run's resolved :class:`Config`.

    E.g. ``config.data.image_size`` and ``config.eval.seq_len`` for
    evaluation. The model is built with no pretrained weights (they are in the
    checkpoint), so this never downloads anything.
    """
    from .models import STGCN

    ckpt = read_checkpoint(path, map_location)
    cfg = checkpoint_config(ckpt, path)
    model = STGCN(dataclasses.replace(cfg.resolved_model(), weights="none"))
    load_state_into(model, ckpt["model"], str(path))
    model.eval()
    return model, cfg
