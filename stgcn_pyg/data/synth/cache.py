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
                     progress: bool = True, workers: int = 0, create: bool = True, **kwargs) -> Path:
    """The built-in synthetic dataset in MARS layout, generated on first use.

    With ``root=None`` it lives in ``<cache>/synthetic-<hash of the settings>``
    (see :func:`default_cache_dir`), so different sizes do not collide. The
    data are written to a temporary folder and moved into place when
    complete, so an interrupted run never leaves a half-written dataset.
    A given ``root`` is generated into only with ``create`` (``train`` naming
    it; commands that only read a dataset pass False and get a DatasetError
    for a folder without a set), and only when it is new or empty: an existing
    folder is kept, with its mode, and the set moved into it; a new one gets
    the usual mode (umask), not a temporary folder's 700.
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
    in_cache = root is None
    if in_cache:
        root = default_cache_dir() / f"synthetic-{cfg.key()}"
    else:
        root = synthetic_set_folder(root)
        # a set of the cache named by its path (a descriptor file records it): the cache's, regenerated there
        in_cache = Path(os.path.realpath(root)).is_relative_to(os.path.realpath(default_cache_dir()))
    if _holds_mars_layout(root):
        return root
    # Check the folder before spending seconds on generating: it must be new or empty.
    if (root / "synth.json").is_file():
        raise DatasetError(f"{root}: this synthetic set was written without the MARS layout "
                           "(stgcn-pyg synth --layout duke); read it with --dataset dukemtmc-videoreid")
    if not in_cache and not create:
        raise DatasetError(f"{root}: no synthetic set here (no synth.json and mars/info/); reading a dataset "
                           f"writes nothing into its folder: generate one with `stgcn-pyg synth --out {root}` "
                           "(or `stgcn-pyg train --root` naming a new or empty folder), or leave out --root "
                           "for the one in the cache")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root}: not a synthetic dataset (no synth.json and mars/info/) and not empty; "
                           "give the folder `stgcn-pyg data info` prints, a new folder to generate into, "
                           "or no --root (the cache)")
    existing = root.is_dir()  # empty: filled in place, never replaced
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        # In the folder itself when it exists (its parent may not be writable), else beside it.
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root if existing else root.parent))
        if not existing:  # renamed into place as root: the mode a new folder gets, not mkdtemp's 700
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)
    except OSError as exc:
        where = ("set $STGCN_PYG_CACHE to a writable folder, or give --root (data.root) a set generated by "
                 "`stgcn-pyg synth`" if in_cache else "give a writable folder")
        raise DatasetError(f"{exc.filename or root.parent}: cannot write the synthetic set there "
                           f"({exc.strerror or exc}); {where}") from None
    say = _say if progress else lambda text: None
    # Tens of seconds at the default size: without a word (and in a log there is no bar) it looks stuck.
    say(f"generating the synthetic set ({cfg.num_ids} identities; first use only) into {root}")
    start = time.perf_counter()
    try:
        try:
            generate_synthetic(tmp, cfg, layout="mars", workers=workers, progress=progress)
        except OSError as exc:  # a disk that fills up meanwhile
            raise DatasetError(f"{exc.filename or root.parent}: writing the synthetic set failed "
                               f"({exc.strerror or exc}); nothing was left behind") from None
        try:
            if existing:  # synth.json last: the mark of a complete set
                for child in sorted(tmp.iterdir(), key=lambda c: c.name == "synth.json"):
                    child.rename(root / child.name)
            else:
                tmp.rename(root)
        except OSError:
            # Another process finished first (or root is not empty): keep theirs if it is complete.
            if not _holds_mars_layout(root):
                raise DatasetError(f"cannot create the synthetic dataset at {root}: the folder exists and is not one")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"generated the synthetic set in {time.perf_counter() - start:.0f} s")
    return root


def _say(text: str) -> None:
    from rich.console import Console

    Console(soft_wrap=True).print(text, highlight=False, markup=False)
