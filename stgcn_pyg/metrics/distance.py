"""Query-by-gallery distance matrices between descriptors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .rank import EvaluationError, _as_tensor

__all__ = ["compute_distance", "METRICS"]

METRICS = ("euclidean", "cosine")


def _features(x, name: str) -> torch.Tensor:
    x = _as_tensor(x, name)
    if x.dim() != 2:
        raise EvaluationError(f"{name} must be 2-D [num_items, dim], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    return x


def compute_distance(
    qf,
    gf,
    metric: str = "euclidean",
    *,
    squared: bool = False,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Distances between query descriptors ``qf`` [Q, D] and gallery ``gf`` [G, D].

    ``"euclidean"``: the L2 distance (``squared=True`` skips the square root,
    as torchreid's ``compute_distance_matrix`` returns; the ranking is the
    same). ``"cosine"``: ``1 - cos`` of the angle, in [0, 2].

    Computed in blocks of ``chunk_size`` queries through one matrix product
    each (``|q|^2 + |g|^2 - 2 q.g``), so nothing larger than the output is
    ever held. Numpy arrays or tensors; the result is a float tensor on the
    inputs' device, [Q, G].
    """
    if metric not in METRICS:
        raise EvaluationError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    qf, gf = _features(qf, "qf"), _features(gf, "gf")
    if qf.size(1) != gf.size(1):
        raise EvaluationError(
            f"descriptor sizes differ: qf has dimension {qf.size(1)}, gf has {gf.size(1)}"
        )
    dtype = torch.promote_types(qf.dtype, gf.dtype)
    qf, gf = qf.to(dtype), gf.to(device=qf.device, dtype=dtype)
    if metric == "cosine":
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    else:
        g2 = gf.pow(2).sum(1)
    out = torch.empty(qf.size(0), gf.size(0), dtype=dtype, device=qf.device)
    for s in range(0, qf.size(0), chunk_size):
        q = qf[s : s + chunk_size]
        dot = q @ gf.t()
        if metric == "cosine":
            out[s : s + chunk_size] = 1 - dot
        else:
            d2 = (q.pow(2).sum(1, keepdim=True) + g2.unsqueeze(0) - 2 * dot).clamp_min_(0)
            out[s : s + chunk_size] = d2 if squared else d2.sqrt_()
    return out
