"""What an exported model file is, shared by the writer (:mod:`.export`) and the reader (:mod:`.runtime`).

Its formats and suffixes, the metadata it carries (key, tag, the .pt2's extra
file), the names of its input and output, and the one error type for writing
or reading one (with the check for the optional packages each side needs).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import STGCNError

__all__ = ["ExportError", "EXPORT_FORMATS", "EXPORT_FORMAT_TAG", "METADATA_KEY", "PT2_METADATA_FILE",
           "INPUT_NAME", "OUTPUT_NAME", "SUFFIX_FORMATS", "format_from_path", "require"]

EXPORT_FORMATS = ("onnx", "torch-export")
EXPORT_FORMAT_TAG = "stgcn-pyg/export-1"
METADATA_KEY = "stgcn_pyg"
PT2_METADATA_FILE = "stgcn_pyg.json"
INPUT_NAME, OUTPUT_NAME = "clips", "f_all"
SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "torch-export"}


class ExportError(STGCNError):
    """A model that cannot be exported, an exported file that cannot be read, or a missing export package."""


def require(purpose: str, *modules: str) -> None:
    """Raise one ExportError naming every missing package of ``modules`` (import names)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(
            f"{purpose} needs the package{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
            f"not installed: pip install 'stgcn-pyg[export]' (or pip install {' '.join(missing)})"
        )


def format_from_path(path: str | os.PathLike) -> str | None:
    """``"onnx"`` for ``*.onnx``, ``"torch-export"`` for ``*.pt2``, else None."""
    return SUFFIX_FORMATS.get(Path(path).suffix.lower())
