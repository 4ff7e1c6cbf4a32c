"""stgcn-pyg: STGCN for video-based person re-identification on PyTorch Geometric."""

import warnings

# torch_geometric scripts a few helpers at import with the deprecated
# torch.jit.script; the warning says nothing actionable to our users.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"
