"""stgcn-pyg: STGCN for video-based person re-identification on PyTorch Geometric."""

from . import _pyg_quiet

# torch_geometric is imported lazily by the modules that need it (so `stgcn-pyg --help` stays fast);
# this makes that import quiet and removes PyG's generated temporary modules at exit.
_pyg_quiet.install()

__version__ = "0.1.0"
