"""Dense, batched-matmul form of the learned-affinity GCN (the reference math).

The affinity (``phi``, the scores, their row normalisation and the GCN
normalisation) is computed with autocast disabled, in at least float32
(:func:`affinity_dtype`); only the propagation ``A_hat @ X @ W^T`` follows
autocast or the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .norm import (Normalization, affinity_dtype, check_normalization, cosine_normalize, softmax_normalize,
                   square_normalize)


def dense_affinity(
    phi: Tensor, mask: Tensor | None = None, scale: float = 1.0, normalization: Normalization = "square"
) -> Tensor:
    r"""Row-normalised affinity ``A`` [B, N, N] from projected features ``phi`` [B, N, F].

    With ``e_ij = scale * phi_i . phi_j`` and ``normalization``:

    * ``"square"`` (the default, the paper's Eq. 2): ``A[b, i, j] = e_ij^2 /
      sum_k e_ik^2`` over the allowed neighbours ``j`` of ``i`` (``mask[i, j]``
      true) *and* ``i`` itself, whatever the mask's diagonal; ``scale`` changes
      nothing. A row whose scores are all zero is all zero.
    * ``"softmax"`` (checkpoints from before the square normalisation):
      ``A[b, i, j] = softmax_j(e_ij)`` over the allowed neighbours only (the
      diagonal where the mask has it). Rows without any neighbour are all zero.
    * ``"cosine"``: ``A[b, i, j] = (1 + c_ij) / sum_k (1 + c_ik)``, ``c_ij =
      e_ij / sqrt(e_ii e_jj)`` the cosine of ``phi_i`` and ``phi_j``, over the
      allowed neighbours other than ``i`` (the diagonal is always 0, whatever
      the mask's); ``scale`` > 0 changes nothing. Rows without any neighbour
      are all zero.

    ``mask`` is boolean [N, N] or [B, N, N]; ``None`` = every node, the diagonal
    included (except for cosine). Computed in ``phi``'s dtype promoted to at least float32,
    autocast disabled.
    """
    check_normalization(normalization)
    with torch.autocast(device_type=phi.device.type, enabled=False):
        phi = phi.to(affinity_dtype(phi.dtype))
        scores = phi @ phi.transpose(-1, -2)
        if scale != 1.0:
            scores = scores * scale
        if normalization == "softmax":
            return softmax_normalize(scores, mask=mask)
        eye = torch.eye(scores.size(-1), dtype=torch.bool, device=scores.device)
        if normalization == "cosine":
            own = scores.diagonal(dim1=-2, dim2=-1)
            allowed = ~eye if mask is None else mask.to(torch.bool) & ~eye
            return cosine_normalize(scores, own.unsqueeze(-1), own.unsqueeze(-2), mask=allowed)
        if mask is not None:
            mask = mask.to(torch.bool) | eye
        return square_normalize(scores, mask=mask)


def normalize_with_self_loops(adj: Tensor) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` with ``D`` the row sums of ``A + I``.

    The identity is added on top of whatever the diagonal already holds.
    Computed in ``adj``'s dtype promoted to at least float32, autocast disabled.
    """
    with torch.autocast(device_type=adj.device.type, enabled=False):
        adj = adj.to(affinity_dtype(adj.dtype))
        n = adj.size(-1)
        adj = adj + torch.eye(n, dtype=adj.dtype, device=adj.device)
        deg_inv_sqrt = adj.sum(dim=-1).rsqrt()
        return deg_inv_sqrt.unsqueeze(-1) * adj * deg_inv_sqrt.unsqueeze(-2)


def dense_affinity_gcn(
    x: Tensor,
    phi_weight: Tensor | None,
    lin_weight: Tensor,
    bias: Tensor | None,
    mask: Tensor | None = None,
    adj_norm: Tensor | None = None,
    scale: float = 1.0,
    center: bool = False,
    normalization: Normalization = "square",
) -> tuple[Tensor, Tensor]:
    """One learned-affinity GCN layer on dense batches.

    Args:
        x (torch.Tensor): Node features, shape [B, N, F_in].
        phi_weight (torch.Tensor, optional): The affinity projection [F_in, F_in]
            (``Linear`` layout); unused (may be :obj:`None`) when ``adj_norm``
            is given.
        lin_weight (torch.Tensor): The propagation weight [F_out, F_in].
        bias (torch.Tensor, optional): Added to the output [F_out].
        mask (torch.Tensor, optional): Allowed neighbours, boolean [N, N] or
            [B, N, N], ``mask[i, j]`` for the edge ``j -> i`` (no self-loops
            needed). (default: :obj:`None`, the complete graph without
            self-loops)
        adj_norm (torch.Tensor, optional): A precomputed normalised adjacency
            [B, N, N] to reuse instead of computing the affinity from ``x``.
            (default: :obj:`None`)
        scale (float, optional): Multiplies the scores ``phi_i . phi_j``; only
            the softmax depends on it. (default: :obj:`1.0`)
        center (bool, optional): Score ``phi(x_i - mean_k x_k)`` instead of
            ``phi(x_i)``, the mean over the nodes of each graph (dim -2).
            (default: :obj:`False`)
        normalization (str, optional): The rows of the affinity,
            :obj:`"square"` (the paper's Eq. 2, over the neighbours and the
            node itself), :obj:`"softmax"` (over the neighbours) or
            :obj:`"cosine"` (over the neighbours but the node itself); see
            :func:`dense_affinity`. (default: :obj:`"square"`)

    Returns:
        ``(out [B, N, F_out], adj_norm [B, N, N])``; a computed ``adj_norm`` is
        in at least float32.
    """
    check_normalization(normalization)
    if adj_norm is None:
        n = x.size(-2)
        if mask is None:
            mask = ~torch.eye(n, dtype=torch.bool, device=x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = affinity_dtype(x.dtype)
            xf = x.to(dtype)
            if center:
                xf = xf - xf.mean(-2, keepdim=True)
            phi = xf @ phi_weight.to(dtype).t()
            adj_norm = normalize_with_self_loops(dense_affinity(phi, mask, scale, normalization))
    if lin_weight.size(0) < lin_weight.size(1):
        h = x @ lin_weight.t()
        out = adj_norm.to(h.dtype) @ h  # propagate in the smaller width
    else:
        out = (adj_norm.to(x.dtype) @ x) @ lin_weight.t()
    if bias is not None:
        out = out + bias
    return out, adj_norm
