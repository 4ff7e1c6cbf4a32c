"""Dense batched-matmul reference of :class:`AffinityGCNConv`."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Linear, Module, Parameter

from .functional import dense_affinity_gcn
from .norm import Normalization, check_normalization


class DenseAffinityGCN(Module):
    r"""The learned-affinity GCN layer of STGCN on dense batches [B, N, F].

    .. math::
        \mathbf{X}' = \hat{\mathbf{A}} \mathbf{X} \mathbf{W}^\top + \mathbf{b}, \quad
        \hat{\mathbf{A}} = \mathbf{D}^{-1/2} (\mathbf{A} + \mathbf{I}) \mathbf{D}^{-1/2}, \quad
        e_{ij} = s \, \phi(\mathbf{x}_i)^\top \phi(\mathbf{x}_j),

    with :math:`\mathbf{A}` the row-normalised scores: by default
    (``normalization="cosine"``, as :class:`~stgcn_pyg.nn.AffinityGCNConv`)
    :math:`a_{ij} = (1 + c_{ij}) / \sum_k (1 + c_{ik})`, :math:`c_{ij}` the
    cosine of :math:`\phi_i` and :math:`\phi_j`, over the allowed neighbours
    but the node itself; with ``normalization="square"`` (the paper's Eq. 2)
    :math:`a_{ij} = e_{ij}^2 / \sum_k e_{ik}^2` over the allowed neighbours
    and the node itself; with ``normalization="softmax"`` (checkpoints from
    before the square normalisation) :math:`a_{ij} = \mathrm{softmax}_j(e_{ij})`
    over the allowed neighbours (see :func:`~stgcn_pyg.nn.dense_affinity`).
    With ``center=True`` :math:`\phi` is applied to
    :math:`\mathbf{x}_i - \bar{\mathbf{x}}`, the mean over each graph's nodes.
    The affinity is computed in at least float32, autocast disabled; the
    propagation follows autocast.

    Same parameters and ``state_dict`` keys as
    :class:`~stgcn_pyg.nn.AffinityGCNConv` (``phi.weight``, ``lin.weight``,
    ``bias``), so weights move freely between the two.

    Args:
        in_channels (int): Size of each input node feature.
        out_channels (int): Size of each output node feature.
        bias (bool, optional): If set to :obj:`False`, the layer will not learn
            an additive bias. (default: :obj:`True`)
        scale (float, optional): The factor :math:`s` of the scores; only the
            softmax depends on it (a positive one). (default: :obj:`1.0`)
        center (bool, optional): Score the features minus each graph's mean.
            (default: :obj:`False`)
        normalization (str, optional): :obj:`"cosine"`, :obj:`"square"` (the
            paper's Eq. 2) or :obj:`"softmax"`. (default: :obj:`"cosine"`)

    ``forward(x, adj=None, adj_norm=None, return_adjacency=False)``: ``x``
    [B, N, F]; ``adj`` a boolean [N, N] or [B, N, N] mask of allowed
    neighbours (``None`` = complete graph without self-loops); ``adj_norm`` a
    normalised adjacency [B, N, N] to reuse; with ``return_adjacency=True``
    returns ``(out, adj_norm)``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, scale: float = 1.0,
                 center: bool = False, normalization: Normalization = "cosine"):
        super().__init__()
        self.normalization = check_normalization(normalization)
        self.scale = scale
        self.center = center
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.phi = Linear(in_channels, in_channels, bias=False)
        self.lin = Linear(in_channels, out_channels, bias=False)
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.phi.reset_parameters()
        self.lin.reset_parameters()
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def forward(
        self,
        x: Tensor,
        adj: Tensor | None = None,
        adj_norm: Tensor | None = None,
        return_adjacency: bool = False,
    ):
        if x.dim() != 3:
            raise ValueError(f"x must be [B, N, F], got shape {tuple(x.shape)}")
        out, adj_norm = dense_affinity_gcn(x, self.phi.weight, self.lin.weight, self.bias, adj, adj_norm, self.scale,
                                           self.center, self.normalization)
        return (out, adj_norm) if return_adjacency else out

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"normalization={self.normalization!r})"
        )
