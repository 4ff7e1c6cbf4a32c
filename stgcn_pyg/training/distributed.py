"""Moved to :mod:`stgcn_pyg.distributed` (evaluation gathers across ranks too); kept for old imports."""

from ..distributed import *  # noqa: F401,F403
from ..distributed import __all__  # noqa: F401
