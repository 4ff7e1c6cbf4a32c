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


class EvaluationError(STGCNError, ValueError):
    """Inputs to an evaluation function that do not fit together, or an unreadable descriptor file."""
