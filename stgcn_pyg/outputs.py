"""Where commands write: checked before any work, and run folders claimed for one run at a time.

A command told to write somewhere it cannot used to find out at the end, after all its work, with a
traceback. :func:`check_output_file` and :func:`check_output_folder` say so first, in one line naming the
path (an :class:`~stgcn_pyg.errors.OutputError`). :func:`claim_run_folder` gives a training run a folder no
other run uses: a lock on the folder held for the run's life (``flock``, released by the kernel when the
process ends, however it ends).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputError

__all__ = ["check_output_file", "check_output_folder", "RunFolder", "claim_run_folder", "holds_run"]


def _named(path: Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (as anything: a file ancestor is an error to report)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")  # pragma: no cover - "." always exists


def _check_can_create_in(path: Path, option: str | None) -> None:
    """``path`` (missing) can be created: its nearest existing ancestor is a folder this process may write in."""
    base = _nearest_existing(path.parent if path.parent != path else path)
    if not base.is_dir():
        raise OutputError(f"{_named(path, option)}: {base} is a file, not a folder")
    # os.access, not a trial write: nothing is created before the command decides to write. (root passes it
    # unless its capabilities were dropped, as root's writes would.)
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{_named(path, option)}: cannot write in {base} (permission denied)")


def check_output_file(path: str | os.PathLike, option: str | None = None) -> Path:
    """``path`` as a Path, once it is known that a file can be written there (atomically: a temporary file in
    its folder, then a rename); else an OutputError naming ``option`` (e.g. ``--out``) and the path."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{_named(path, option)}: is a folder; give a file name")
    _check_can_create_in(path, option)
    return path


def check_output_folder(path: str | os.PathLike, option: str | None = None) -> Path:
    """``path`` as a Path, once it is known that files can be written in it (it need not exist yet); else an
    OutputError naming ``option`` and the path."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{_named(path, option)}: is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{_named(path, option)}: cannot write in {path} (permission denied)")
        return path
    _check_can_create_in(path, option)
    return path


def holds_run(path: Path) -> bool:
    """True when ``path`` holds a training run's files (a checkpoint, or the metrics of a started epoch)."""
    return (path / "last.pt").exists() or (path / "metrics.csv").exists()


# The descriptors holding run-folder locks. A forked child (a DataLoader worker) closes its copies: a flock
# lasts while any copy is open, and a worker must not keep the folder locked after the run released it.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class RunFolder:
    """A run folder locked for this process (:func:`claim_run_folder`) until :meth:`release` or its end."""

    def __init__(self, path: Path, fd: int | None, created: bool):
        self.path, self._fd, self._created = path, fd, created
        if fd is not None:
            _HELD.add(fd)

    def release(self) -> None:
        """Unlock the folder (once the run's files are written: they keep it taken)."""
        if self._fd is not None:
            _HELD.discard(self._fd)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def abandon(self) -> None:
        """Unlock the folder and remove it when this claim created it and nothing was written (a run that
        failed before it started)."""
        self.release()
        if self._created:
            try:
                self.path.rmdir()
            except OSError:  # not empty, or gone: leave it
                pass

    def __del__(self) -> None:
        self.release()


def _lock(path: Path) -> int | None:
    """A descriptor holding an exclusive flock on the folder ``path``, or None when another process holds it."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim_run_folder(path: str | os.PathLike, option: str = "train.output", *, lock_only: bool = False) -> RunFolder:
    """The folder for a new run: ``path`` when it holds no run and no other run is starting in it, else the
    first such ``path-2``, ``path-3``, ... (never overwrite, never share).

    The folder is locked for the caller until :meth:`RunFolder.release` (or the process's end), so a run
    started at the same moment takes the next name. ``lock_only``: lock ``path`` itself (a resumed run), or
    raise an OutputError when another process holds it.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file, not a folder")
    candidates = [path] if lock_only else [path] + [path.with_name(f"{path.name}-{i}") for i in range(2, 10_000)]
    for candidate in candidates:
        if candidate.exists() and (not candidate.is_dir() or (holds_run(candidate) and not lock_only)):
            continue  # taken: a file of that name, or a run's folder
        check_output_folder(candidate, option)
        created = not candidate.exists()
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{option} {candidate}: cannot create the folder ({exc.strerror})") from None
        fd = _lock(candidate)
        if fd is None:
            if lock_only:
                raise OutputError(f"{option} {candidate}: another process is training this run now")
            continue
        claim = RunFolder(candidate, fd, created)
        if lock_only or not holds_run(candidate):  # checked again under the lock: a run may have just ended
            return claim
        claim.release()
    raise OutputError(f"{option}: no free folder next to {path}")  # pragma: no cover
