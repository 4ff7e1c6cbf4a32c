"""Moved to :mod:`stgcn_pyg.config` (the config is shared by training, evaluation and export); kept for old imports."""

from ..config import *  # noqa: F401,F403
from ..config import __all__  # noqa: F401
