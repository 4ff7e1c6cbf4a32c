"""User-facing errors: one clear message naming the file and the problem."""

from __future__ import annotations


class STGCNError(Exception):
    """Base class of every error that stgcn-pyg reports to a user.

    The command-line interface prints these as one line, without a traceback.
    """


class TopologyError(STGCNError):
    """An unknown topology name or a malformed topology file."""


class DatasetError(STGCNError):
    """A dataset root, info file or image that is missing or malformed."""


class ConfigError(STGCNError):
    """An unknown configuration key or a bad value."""


class CheckpointError(STGCNError):
    """A checkpoint that cannot be read or belongs to another model."""


class OutputError(STGCNError):
    """An output path that cannot be written (a folder where a file is wanted, no permission ...)."""


class EvaluationError(STGCNError, ValueError):
    """Inputs to an evaluation function that do not fit together, or an unreadable descriptor file."""


class CacheGuardError(RuntimeError):
    """The cache resolved to a folder the test suite guards (``$STGCN_PYG_GUARD_CACHE``: the user's own cache).

    Not an :class:`STGCNError` on purpose: a test that escapes the suite's redirect fails loudly, with a
    traceback, before anything is written there (tests/conftest.py).
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, once the user has been told what the interrupted work left behind.

    The command line exits 130 without adding a line of its own.
    """


def state_mismatch(own: dict, state: dict) -> str:
    """What keeps ``state`` from loading into a module whose state dict is ``own`` ("" when it fits).

    The first three keys of each kind: shape mismatches, missing keys, unexpected keys.
    """

    def first(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")

    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = [f"{label} {first(keys)}" for label, keys in
             (("shape mismatch in", wrong), ("missing", missing), ("unexpected", unexpected)) if keys]
    return "; ".join(parts)
