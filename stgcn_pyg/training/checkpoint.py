"""Moved to :mod:`stgcn_pyg.checkpoint` (evaluation and export read checkpoints too); kept for old imports."""

from ..checkpoint import *  # noqa: F401,F403
from ..checkpoint import __all__  # noqa: F401
