"""Normalisation of learned affinity scores on an edge list (the edge form of STGCN's adjacency)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch_geometric.utils import scatter, softmax
from torch_geometric.utils.num_nodes import maybe_num_nodes

__all__ = [
    "NORMALIZATIONS",
    "affinity_dtype",
    "affinity_norm",
    "check_normalization",
    "cosine_normalize",
    "softmax_normalize",
    "square_normalize",
]

Normalization = Literal["square", "softmax", "cosine"]
NORMALIZATIONS = ("square", "softmax", "cosine")
# The modes that read each node's own score e_ii (square: in its row; cosine: for the norms).
_NEEDS_SELF_SCORE = ("square", "cosine")


def check_normalization(normalization: str) -> str:
    """``normalization`` if it is one of :data:`NORMALIZATIONS`, else a :class:`ValueError`."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


def affinity_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype affinities are computed in: ``dtype``, but at least float32.

    Scores of wide features reach thousands; in bfloat16 they round to whole
    units or more, which changes the normalised affinity, so half-precision
    inputs are promoted (float64 stays float64).
    """
    return torch.promote_types(dtype, torch.float32)


def _row_reduce(t: Tensor, index: Tensor | None, num_nodes: int | None, reduce: str) -> Tensor:
    # The max or sum of each entry's row, broadcastable to t: over dim -1, or over the entries sharing index.
    if index is None:
        return t.amax(-1, keepdim=True) if reduce == "max" else t.sum(-1, keepdim=True)
    return scatter(t, index, dim=-1, dim_size=num_nodes, reduce=reduce)[..., index]


def square_normalize(
    score: Tensor, index: Tensor | None = None, num_nodes: int | None = None, mask: Tensor | None = None
) -> Tensor:
    r"""The paper's Eq. 2 on rows of scores: :math:`a_{ij} = e_{ij}^2 / \sum_k e_{ik}^2`.

    A row is the last dimension of ``score`` (``index`` :obj:`None`; entries
    where the boolean ``mask`` is false are left out) or, in the edge form,
    the entries of the last dimension that share ``index``. A row whose
    scores are all zero gives all zeros, with finite gradients.
    """
    if mask is not None:
        score = score.masked_fill(~mask, 0.0)
    # Divided by the row's largest |e| first (a is invariant to it), as a stable softmax subtracts the
    # max: the squares neither overflow nor underflow, and a non-zero row's total is at least 1.
    peak = _row_reduce(score.detach().abs(), index, num_nodes, "max")
    r = score / _nonzero(peak)
    sq = r * r
    # An all-zero row has total 0: divided by 1 instead, it stays all zeros, with a finite gradient.
    return sq / _nonzero(_row_reduce(sq, index, num_nodes, "sum"))


def _nonzero(t: Tensor) -> Tensor:
    # t where positive, else 1; unlike clamp_min(1) it passes the gradient at t = 1 (a row of one term).
    return torch.where(t > 0, t, torch.ones_like(t))


def _cosine(score: Tensor, self_i: Tensor, self_j: Tensor) -> Tensor:
    # e_ij / sqrt(e_ii e_jj) = cos(phi_i, phi_j) (for a scale s > 0); 0 where a node's phi is zero.
    prod = self_i * self_j
    pos = prod > 0
    return torch.where(pos, score * torch.where(pos, prod, torch.ones_like(prod)).rsqrt(), torch.zeros_like(score))


def cosine_normalize(
    score: Tensor,
    self_i: Tensor,
    self_j: Tensor,
    index: Tensor | None = None,
    num_nodes: int | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Rows of :math:`1 + \cos`: :math:`a_{ij} = (1 + c_{ij}) / \sum_k (1 + c_{ik})`.

    :math:`c_{ij} = e_{ij} / \sqrt{e_{ii} e_{jj}}`, the cosine of
    :math:`\phi_i` and :math:`\phi_j`, from the scores ``score`` and each
    entry's two own scores ``self_i`` (:math:`e_{ii}`, of the row) and
    ``self_j`` (:math:`e_{jj}`), broadcastable to ``score``; a node whose
    :math:`\phi` is zero has cosine 0 with every other. Rows as in
    :func:`square_normalize` (the last dimension, entries where ``mask`` is
    false left out, or the entries sharing ``index``). A row whose weights
    are all zero (no entry, or every neighbour exactly opposite) gives all
    zeros, with finite gradients.
    """
    w = (1.0 + _cosine(score, self_i, self_j)).clamp_min(0.0)  # rounding may push a cosine below -1
    if mask is not None:
        w = w.masked_fill(~mask.to(torch.bool), 0.0)
    return w / _nonzero(_row_reduce(w, index, num_nodes, "sum"))


def softmax_normalize(
    score: Tensor, index: Tensor | None = None, num_nodes: int | None = None, mask: Tensor | None = None
) -> Tensor:
    r"""Row softmax of scores: :math:`a_{ij} = \exp e_{ij} / \sum_k \exp e_{ik}`.

    Rows as in :func:`square_normalize`: the last dimension (entries where
    ``mask`` is false left out; a row without any entry gives all zeros) or
    the entries sharing ``index`` (PyG's :func:`~torch_geometric.utils.softmax`).
    """
    if index is not None:
        return softmax(score, index, num_nodes=num_nodes, dim=-1)
    if mask is None:
        return score.softmax(dim=-1)
    mask = mask.to(torch.bool)
    # A row with no neighbour is left unmasked before the softmax and zeroed
    # after it, so that no NaN ever enters the graph (nor its gradient).
    has_neighbour = mask.any(dim=-1, keepdim=True)
    soft_mask = mask | ~has_neighbour
    score = score.masked_fill(~soft_mask, float("-inf"))
    return score.softmax(dim=-1) * mask.to(score.dtype)


def affinity_norm(
    edge_index: Tensor,
    score: Tensor,
    num_nodes: int | None = None,
    *,
    self_score: Tensor | None = None,
    normalization: Normalization = "square",
) -> tuple[Tensor, Tensor]:
    r"""Turns affinity scores on the edges of a graph into STGCN's normalised adjacency.

    For every edge :math:`j \to i` (column :math:`k` of ``edge_index``: source
    :math:`j` = ``edge_index[0, k]``, target :math:`i` = ``edge_index[1, k]``)
    with score :math:`e_{ij}` = ``score[..., k]``, the affinity :math:`a_{ij}`
    is, with ``normalization="square"`` (the default, the paper's Eq. 2),

    .. math::
        a_{ij} = \frac{e_{ij}^2}{\sum_{k \in \mathcal{N}(i) \cup \{i\}} e_{ik}^2},
        \qquad j \in \mathcal{N}(i) \cup \{i\},

    over the node's neighbours *and the node itself*, whose score
    :math:`e_{ii}` is ``self_score[..., i]`` (required in this mode); with
    ``normalization="softmax"`` (what checkpoints from before the square
    normalisation use)

    .. math::
        a_{ij} = \frac{\exp e_{ij}}{\sum_{k \in \mathcal{N}(i)} \exp e_{ik}},
        \qquad j \in \mathcal{N}(i);

    with ``normalization="cosine"`` (the standalone layer's default, see
    :class:`~stgcn_pyg.nn.AffinityGCNConv`), over the neighbours other than
    the node itself,

    .. math::
        a_{ij} = \frac{1 + c_{ij}}{\sum_{k \in \mathcal{N}(i) \setminus \{i\}} (1 + c_{ik})},
        \qquad c_{ij} = \frac{e_{ij}}{\sqrt{e_{ii} \, e_{jj}}},
        \qquad j \in \mathcal{N}(i) \setminus \{i\},

    :math:`c_{ij}` the cosine of :math:`\phi_i` and :math:`\phi_j` (needs
    ``self_score`` too; 0 where a node's :math:`e_{ii}` is 0).

    Then, in all modes, with :math:`a_{ii} = 0` where the softmax has no
    self-loop, and always with cosine,

    .. math::
        d_i = 1 + \sum_j a_{ij}, \qquad
        \hat{a}_{ij} = \frac{a_{ij}}{\sqrt{d_i d_j}}, \qquad
        \hat{a}_{ii} = \frac{a_{ii} + 1}{d_i},

    i.e. the entries of :math:`\mathbf{D}^{-1/2} (\mathbf{A} + \mathbf{I})
    \mathbf{D}^{-1/2}`, :math:`\mathbf{D}` the row sums of
    :math:`\mathbf{A} + \mathbf{I}`. Rows of :math:`\mathbf{A}` sum to 1, so
    :math:`d_i = 2`, except where a row is empty (softmax, cosine: no
    incoming edge; cosine: every neighbour exactly opposite) or all its
    square-mode scores are zero (then :math:`\mathbf{A}`'s row is zero):
    :math:`d_i = 1` and the node keeps only its identity.

    The identity is always added, as :math:`N` appended self-loops. An
    explicit self-loop :math:`i \to i` in ``edge_index`` is, with softmax, an
    ordinary edge: its weight and the appended loop's sum to the diagonal
    entry. In square mode the node itself is in the sum exactly once, through
    ``self_score``: an explicit self-loop's score is ignored, its weight is
    0, and the appended loop carries the whole diagonal entry
    :math:`(a_{ii} + 1) / d_i`. With cosine the node is not in its row: an
    explicit self-loop's weight is 0 and the appended loop carries
    :math:`1 / d_i`.

    Square and cosine normalisation are scale-free (scaling the scores by
    :math:`s > 0` changes nothing);
    rows are divided by their largest :math:`|e_{ik}|` before squaring, so
    squares never overflow. The normalisation runs with autocast disabled, in
    ``score``'s dtype promoted to at least float32.

    Args:
        edge_index (torch.Tensor): The edges :math:`j \to i`, shape
            :math:`(2, |\mathcal{E}|)`, in any order.
        score (torch.Tensor): The scores :math:`e_{ij}`, shape
            :math:`(|\mathcal{E}|)`, or :math:`(B, |\mathcal{E}|)` for
            :math:`B` graphs that share ``edge_index``.
        num_nodes (int, optional): The number of nodes :math:`N`.
            (default: :obj:`None`, the length of ``self_score`` if given,
            else one more than the largest index in ``edge_index``)
        self_score (torch.Tensor, optional): Each node's own score
            :math:`e_{ii}`, shape :math:`(N)` or :math:`(B, N)` (as
            ``score``); required with ``normalization="square"`` and
            ``"cosine"``, ignored with ``"softmax"``. (default: :obj:`None`)
        normalization (str, optional): :obj:`"square"` (the paper's Eq. 2),
            :obj:`"softmax"` or :obj:`"cosine"`. (default: :obj:`"square"`)

    Returns:
        ``(edge_index, weight)``: the input edges followed by the :math:`N`
        self-loops :math:`(0, 0), \dots, (N-1, N-1)`, shape
        :math:`(2, |\mathcal{E}| + N)`, and their weights, shape
        :math:`(|\mathcal{E}| + N)` or :math:`(B, |\mathcal{E}| + N)`;
        column :math:`k < |\mathcal{E}|` is the input's column :math:`k`.
    """
    check_normalization(normalization)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
    if score.dim() not in (1, 2) or score.size(-1) != edge_index.size(1):
        raise ValueError(
            f"score must be [E] or [B, E] with E = {edge_index.size(1)} edges, got shape {tuple(score.shape)}"
        )
    square = normalization == "square"
    if normalization in _NEEDS_SELF_SCORE:
        if self_score is None:
            raise ValueError(f"normalization={normalization!r} needs self_score, each node's own score e_ii")
        if num_nodes is None:
            num_nodes = self_score.size(-1)
        if self_score.shape != (*score.shape[:-1], num_nodes):
            raise ValueError(
                f"self_score must be [N] or [B, N] like score, with N = {num_nodes} nodes, "
                f"got shape {tuple(self_score.shape)} for score of shape {tuple(score.shape)}"
            )
    num_nodes = maybe_num_nodes(edge_index, num_nodes)
    src, dst = edge_index[0], edge_index[1]
    loops = torch.arange(num_nodes, device=edge_index.device, dtype=edge_index.dtype)
    with torch.autocast(device_type=score.device.type, enabled=False):
        score = score.to(affinity_dtype(score.dtype))
        if square:
            # The row of node i: its edges (an explicit loop zeroed, i is counted once) and i itself.
            rows = torch.cat([dst, loops])
            both = torch.cat([score.masked_fill(src == dst, 0.0), self_score.to(score.dtype)], dim=-1)
            alpha = square_normalize(both, rows, num_nodes)
            deg_inv_sqrt = (scatter(alpha, rows, dim=-1, dim_size=num_nodes, reduce="sum") + 1.0).rsqrt()
            edge_alpha, self_alpha = alpha[..., : src.numel()], alpha[..., src.numel() :]
            weight = edge_alpha * deg_inv_sqrt[..., dst] * deg_inv_sqrt[..., src]
            weight = torch.cat([weight, (self_alpha + 1.0) * deg_inv_sqrt * deg_inv_sqrt], dim=-1)
        else:
            if normalization == "softmax":
                alpha = softmax_normalize(score, dst, num_nodes)
            else:  # cosine: the node is left out of its row (an explicit loop gets 0), A + I adds it once
                own = self_score.to(score.dtype)
                alpha = cosine_normalize(score, own[..., dst], own[..., src], dst, num_nodes, mask=src != dst)
            deg = scatter(alpha, dst, dim=-1, dim_size=num_nodes, reduce="sum") + 1.0
            deg_inv_sqrt = deg.rsqrt()
            weight = alpha * deg_inv_sqrt[..., dst] * deg_inv_sqrt[..., src]
            weight = torch.cat([weight, deg_inv_sqrt * deg_inv_sqrt], dim=-1)
    return torch.cat([edge_index, torch.stack([loops, loops])], dim=1), weight
