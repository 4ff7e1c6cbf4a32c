"""Dense, batched-matmul form of the learned-affinity GCN (the reference math)."""

from __future__ import annotations

import torch
from torch import Tensor


def dense_affinity(phi: Tensor, mask: Tensor | None = None) -> Tensor:
    """Row-softmax affinity ``A`` [B, N, N] from projected features ``phi`` [B, N, F].

    ``A[b, i, j] = softmax_j(phi_i . phi_j)`` over the allowed neighbours ``j`` of
    ``i`` (``mask[i, j]`` true; ``None`` = every node, the diagonal included).
    Rows without any neighbour are all zero.
    """
    scores = phi @ phi.transpose(-1, -2)
    if mask is None:
        return scores.softmax(dim=-1)
    mask = mask.to(torch.bool)
    # A row with no neighbour is left unmasked before the softmax and zeroed
    # after it, so that no NaN ever enters the graph (nor its gradient).
    has_neighbour = mask.any(dim=-1, keepdim=True)
    soft_mask = mask | ~has_neighbour
    scores = scores.masked_fill(~soft_mask, float("-inf"))
    return scores.softmax(dim=-1) * mask.to(scores.dtype)


def normalize_with_self_loops(adj: Tensor) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` with ``D`` the row sums of ``A + I``.

    The identity is added on top of whatever the diagonal already holds.
    """
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
) -> tuple[Tensor, Tensor]:
    """One learned-affinity GCN layer on dense batches.

    Args:
        x: node features [B, N, F_in].
        phi_weight, lin_weight, bias: the layer's parameters (``Linear`` layout);
            ``phi_weight`` is unused (may be None) when ``adj_norm`` is given.
        mask: allowed neighbours [N, N] or [B, N, N] (no self-loops needed);
            ``None`` = complete graph without self-loops.
        adj_norm: a precomputed normalised adjacency [B, N, N] to reuse
            instead of computing the affinity from ``x``.
        scale: multiplies the scores ``phi_i . phi_j`` before the softmax.
        center: score ``phi(x_i - mean_k x_k)`` instead of ``phi(x_i)``, the
            mean over the nodes of each graph (dim -2).

    Returns:
        ``(out [B, N, F_out], adj_norm [B, N, N])``.
    """
    if adj_norm is None:
        n = x.size(-2)
        if mask is None:
            mask = ~torch.eye(n, dtype=torch.bool, device=x.device)
        phi = (x - x.mean(-2, keepdim=True) if center else x) @ phi_weight.t()
        if scale != 1.0:
            phi = phi * scale**0.5
        adj_norm = normalize_with_self_loops(dense_affinity(phi, mask))
    if lin_weight.size(0) < lin_weight.size(1):
        out = adj_norm @ (x @ lin_weight.t())  # propagate in the smaller width
    else:
        out = (adj_norm @ x) @ lin_weight.t()
    if bias is not None:
        out = out + bias
    return out, adj_norm
