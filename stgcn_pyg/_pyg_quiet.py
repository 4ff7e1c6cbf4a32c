"""Keep PyTorch Geometric's import-time noise and temporary files away from our users.

Two things PyG does that a user of stgcn-pyg cannot act on:

* importing ``torch_geometric`` scripts a few helpers with ``torch.jit.script``,
  which torch now deprecates with a FutureWarning. :func:`install` makes that
  one import quiet. The filter is scoped to the import: a user's own
  ``torch.jit.script`` calls still warn, and nothing is filtered when the user
  imported ``torch_geometric`` before stgcn-pyg.
* every ``MessagePassing`` subclass, on first instantiation, renders its
  ``propagate`` into ``<tmp>/<module>_<Class>_propagate_XXXX.py`` and never
  deletes it, so each process leaves one file per class. The file must exist
  while the process runs (TorchScript and tracebacks read its source), so the
  files generated for our classes are removed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import warnings

__all__ = ["install", "remove_generated_modules"]

JIT_DEPRECATION = r"`torch.jit.script` is deprecated"
_GENERATED_SUFFIXES = ("_propagate", "_edge_updater")
_installed = False
# Forked children (DataLoader workers) inherit sys.modules but not the files: only the process that
# imported stgcn_pyg removes them.
_owner_pid = os.getpid()


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader with the jit deprecation warning ignored, then steps aside."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        # Hand the module back to its real loader (importlib.resources and inspect ask it later).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=FutureWarning)
            self._loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietTorchGeometricFinder(importlib.abc.MetaPathFinder):
    """Finds ``torch_geometric`` once, through the normal finders, and wraps its loader."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch_geometric":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # once is enough: the package is then in sys.modules
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def remove_generated_modules() -> list[str]:
    """Delete the propagate/edge_updater modules PyG generated for stgcn_pyg classes in this process."""
    if os.getpid() != _owner_pid:
        return []
    tmp = os.path.realpath(tempfile.gettempdir())
    removed = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("stgcn_pyg.") or not name.endswith(_GENERATED_SUFFIXES):
            continue
        path = getattr(module, "__file__", None)
        if path and os.path.dirname(os.path.realpath(path)) == tmp:
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(path)
    return removed


def install() -> None:
    """Quiet the coming torch_geometric import (if it has not happened) and clean up at exit."""
    global _installed
    if _installed:
        return
    _installed = True
    if "torch_geometric" not in sys.modules:
        sys.meta_path.insert(0, _QuietTorchGeometricFinder())
    atexit.register(remove_generated_modules)
