"""Normalisation of learned affinity scores on an edge list (the edge form of STGCN's adjacency)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter, softmax
from torch_geometric.utils.num_nodes import maybe_num_nodes

__all__ = ["affinity_dtype", "affinity_norm"]


def affinity_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype affinities are computed in: ``dtype``, but at least float32.

    Scores of wide features reach thousands; in bfloat16 they round to whole
    units or more, which changes the softmax, so half-precision inputs are
    promoted (float64 stays float64).
    """
    return torch.promote_types(dtype, torch.float32)


def affinity_norm(edge_index: Tensor, score: Tensor, num_nodes: int | None = None) -> tuple[Tensor, Tensor]:
    r"""Turns affinity scores on the edges of a graph into STGCN's normalised adjacency.

    For every edge :math:`j \to i` (column :math:`k` of ``edge_index``: source
    :math:`j` = ``edge_index[0, k]``, target :math:`i` = ``edge_index[1, k]``)
    with score :math:`e_{ij}` = ``score[..., k]``:

    .. math::
        a_{ij} = \frac{\exp e_{ij}}{\sum_{k \in \mathcal{N}(i)} \exp e_{ik}}, \qquad
        d_i = 1 + \sum_{j \in \mathcal{N}(i)} a_{ij}, \qquad
        \hat{a}_{ij} = \frac{a_{ij}}{\sqrt{d_i d_j}}, \qquad
        \hat{a}_{ii}^{\,\mathrm{loop}} = \frac{1}{d_i},

    i.e. the entries of :math:`\mathbf{D}^{-1/2} (\mathbf{A} + \mathbf{I})
    \mathbf{D}^{-1/2}`, :math:`\mathbf{A}` the row softmax over each node's
    incoming edges and :math:`\mathbf{D}` the row sums of
    :math:`\mathbf{A} + \mathbf{I}` (:math:`d_i = 2`, or 1 for a node without
    incoming edges). The identity is always added as :math:`N` appended
    self-loops: an explicit self-loop :math:`i \to i` in ``edge_index`` is an
    ordinary edge of the softmax, and its weight and the appended loop's sum
    to the diagonal entry :math:`(a_{ii} + 1) / d_i`.

    The softmax and the normalisation run with autocast disabled, in
    ``score``'s dtype promoted to at least float32.

    Args:
        edge_index (torch.Tensor): The edges :math:`j \to i`, shape
            :math:`(2, |\mathcal{E}|)`, in any order.
        score (torch.Tensor): The scores :math:`e_{ij}`, shape
            :math:`(|\mathcal{E}|)`, or :math:`(B, |\mathcal{E}|)` for
            :math:`B` graphs that share ``edge_index``.
        num_nodes (int, optional): The number of nodes :math:`N`.
            (default: :obj:`None`, one more than the largest index in
            ``edge_index``)

    Returns:
        ``(edge_index, weight)``: the input edges followed by the :math:`N`
        self-loops :math:`(0, 0), \dots, (N-1, N-1)`, shape
        :math:`(2, |\mathcal{E}| + N)`, and their weights, shape
        :math:`(|\mathcal{E}| + N)` or :math:`(B, |\mathcal{E}| + N)`;
        column :math:`k < |\mathcal{E}|` is the input's column :math:`k`.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
    if score.dim() not in (1, 2) or score.size(-1) != edge_index.size(1):
        raise ValueError(
            f"score must be [E] or [B, E] with E = {edge_index.size(1)} edges, got shape {tuple(score.shape)}"
        )
    num_nodes = maybe_num_nodes(edge_index, num_nodes)
    src, dst = edge_index[0], edge_index[1]
    with torch.autocast(device_type=score.device.type, enabled=False):
        score = score.to(affinity_dtype(score.dtype))
        alpha = softmax(score, dst, num_nodes=num_nodes, dim=-1)
        deg = scatter(alpha, dst, dim=-1, dim_size=num_nodes, reduce="sum") + 1.0
        deg_inv_sqrt = deg.rsqrt()
        weight = alpha * deg_inv_sqrt[..., dst] * deg_inv_sqrt[..., src]
        weight = torch.cat([weight, deg_inv_sqrt * deg_inv_sqrt], dim=-1)
    loops = torch.arange(num_nodes, device=edge_index.device, dtype=edge_index.dtype)
    return torch.cat([edge_index, torch.stack([loops, loops])], dim=1), weight
