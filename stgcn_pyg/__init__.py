"""stgcn-pyg: STGCN for video-based person re-identification on PyTorch Geometric."""

__version__ = "0.1.0"
