"""The synthetic set on first use: generated once into a cache folder (or a given one), atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ...errors import CacheGuardError, DatasetError
from .plan import SynthConfig
from .writers import generate_synthetic

__all__ = ["default_cache_dir", "synthetic_set_folder", "ensure_synthetic"]


# The test suite (tests/conftest.py) names the user's own cache folders here (os.pathsep-separated) and points
# $STGCN_PYG_CACHE and $HOME at a folder of its own; a cache that still resolves into a guarded folder is refused
# before anything is read or written there. Nobody else sets it, so other processes are unaffected.
GUARD_ENV = "STGCN_PYG_GUARD_CACHE"


def default_cache_dir() -> Path:
    """``$STGCN_PYG_CACHE`` or ``~/.cache/stgcn-pyg``.

    Raises:
        CacheGuardError: the folder is (or lies in) one that ``$STGCN_PYG_GUARD_CACHE`` names: a test escaped
            the test suite's redirect.
    """
    env = os.environ.get("STGCN_PYG_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "stgcn-pyg"
    guarded = os.environ.get(GUARD_ENV)
    if guarded:
        resolved = Path(os.path.realpath(path))
        for folder in filter(None, guarded.split(os.pathsep)):
            if resolved.is_relative_to(os.path.realpath(folder)):
                raise CacheGuardError(f"{path}: the cache resolves into {folder}, which ${GUARD_ENV} guards (the "
                                      "user's cache, under the test suite): a test escaped the session's "
                                      "$STGCN_PYG_CACHE/$HOME redirect")
    return path


def _holds_mars_layout(root: Path) -> bool:
    return (root / "mars" / "info" / "query_IDX.mat").is_file() and (root / "synth.json").is_file()


def synthetic_set_folder(path: str | os.PathLike) -> Path:
    """The synthetic set's own folder for a path a user may give: the set or its mars/ or duke/ child.

    ``stgcn-pyg data info`` prints the folder the MARS reader uses (``<set>/mars``);
    that path, the set's folder and its ``dukemtmc-videoreid`` child all name the same set.
    """
    path = Path(path).expanduser()
    if path.name in ("mars", "dukemtmc-videoreid") and (path.parent / "synth.json").is_file():
        return path.parent
    return path


def ensure_synthetic(root: str | os.PathLike | None = None, num_ids: int | None = None, seed: int = 0, *,
                     progress: bool = True, workers: int = 0, **kwargs) -> Path:
    """The built-in synthetic dataset in MARS layout, generated on first use.

    With ``root=None`` it lives in ``<cache>/synthetic-<hash of the settings>``
    (see :func:`default_cache_dir`), so different sizes do not collide. The
    data are written to a temporary folder and renamed into place when
    complete, so an interrupted run never leaves a half-written dataset.
    Extra keyword arguments are :class:`SynthConfig` fields (``num_ids`` defaults
    to 100; in smoke-run mode, ``STGCN_PYG_QUICK=1``, fields not given take the
    small values of :data:`stgcn_pyg.quick.SYNTHETIC`). ``progress``: say
    what is generated and where, with a progress bar on a terminal. Returns
    the root that ``load_dataset("mars", root)`` reads.
    """
    from ... import quick

    settings = dict(quick.SYNTHETIC) if quick.enabled() else {}
    settings.update(kwargs)
    if num_ids is not None:
        settings["num_ids"] = num_ids
    try:
        cfg = SynthConfig(seed=seed, **settings)
    except TypeError as exc:
        raise DatasetError(f"bad synthetic dataset option: {exc}") from None
    if root is None:
        root = default_cache_dir() / f"synthetic-{cfg.key()}"
    else:
        root = synthetic_set_folder(root)
    if _holds_mars_layout(root):
        return root
    # Check the folder before spending seconds on generating: it must be new or empty.
    if (root / "synth.json").is_file():
        raise DatasetError(f"{root}: this synthetic set was written without the MARS layout "
                           "(stgcn-pyg synth --layout duke); read it with --dataset dukemtmc-videoreid")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root}: not a synthetic dataset (no synth.json and mars/info/) and not empty; "
                           "give the folder `stgcn-pyg data info` prints, a new folder to generate into, "
                           "or no --root (the cache)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=root.parent))
    say = _say if progress else lambda text: None
    # Tens of seconds at the default size: without a word (and in a log there is no bar) it looks stuck.
    say(f"generating the synthetic set ({cfg.num_ids} identities; first use only) into {root}")
    start = time.perf_counter()
    try:
        generate_synthetic(tmp, cfg, layout="mars", workers=workers, progress=progress)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
        try:
            tmp.rename(root)
        except OSError:
            # Another process finished first (or root is not empty): keep theirs if it is complete.
            if not (root / "mars" / "info" / "query_IDX.mat").is_file():
                raise DatasetError(f"cannot create the synthetic dataset at {root}: the folder exists and is not one")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"generated the synthetic set in {time.perf_counter() - start:.0f} s")
    return root


def _say(text: str) -> None:
    from rich.console import Console

    Console(soft_wrap=True).print(text, highlight=False, markup=False)
