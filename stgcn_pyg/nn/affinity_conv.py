"""The learned-affinity graph convolution of STGCN as a PyG ``MessagePassing`` layer."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor
from torch.nn import Linear, Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter, softmax

from .functional import dense_affinity_gcn

# torch flags CSR tensors as beta on every construction; the sparse path relies
# only on their stable operations (sampled_addmm, spmm).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

Impl = Literal["auto", "dense", "sparse", "gather"]
_IMPLS = ("auto", "dense", "sparse", "gather")


def _sparse_dtype(dtype: torch.dtype) -> torch.dtype:
    # cuSPARSE's SDDMM/SpMM have no bf16/fp16 kernels: reduced precision runs in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class AffinityGCNConv(MessagePassing):
    r"""The graph convolution of STGCN (Yang et al., CVPR 2020) with a learned affinity.

    For the edges :math:`j \to i` of ``edge_index`` it learns the affinity

    .. math::
        e_{ij} = s \, \phi(\mathbf{x}_i)^\top \phi(\mathbf{x}_j), \qquad
        a_{ij} = \frac{\exp e_{ij}}{\sum_{k \in \mathcal{N}(i)} \exp e_{ik}},

    adds the identity on top, :math:`\mathbf{A}' = \mathbf{A} + \mathbf{I}`
    (also where ``edge_index`` already holds the self-loop :math:`i \to i`),
    normalises it symmetrically with the row sums :math:`d_i` of
    :math:`\mathbf{A}'`, and propagates:

    .. math::
        \mathbf{x}'_i = \sum_{j \in \mathcal{N}(i) \cup \{i\}}
        \frac{a'_{ij}}{\sqrt{d_i d_j}} \, \mathbf{W} \mathbf{x}_j + \mathbf{b}.

    With ``center=True`` the scores use :math:`\phi(\mathbf{x}_i - \bar{\mathbf{x}})`,
    :math:`\bar{\mathbf{x}}` the mean of the node's graph (``batch``).

    :math:`\phi` is ``self.phi`` (a bias-free ``Linear(in, in)``) and
    :math:`\mathbf{W}` is ``self.lin`` (a bias-free ``Linear(in, out)``; the
    bias is added after propagation, as in :class:`~torch_geometric.nn.GCNConv`).

    Two input layouts:

    * **batch** -- ``x`` [N, F] and ``edge_index`` [2, E] of a PyG ``Batch`` of
      disjoint graphs;
    * **static** -- ``x`` [B, N, F]: B graphs sharing one ``edge_index`` over
      N nodes (tracklets of equal length).

    Implementations (``impl``), all equal up to float rounding:

    * ``"dense"`` (static only): masked batched matmul over [B, N, N];
      the fastest for complete or nearly complete graphs;
    * ``"sparse"``: the affinity as a sampled dense-dense product
      (``torch.sparse.sampled_addmm``) and propagation as a fused sparse
      matmul (``message_and_aggregate``) -- never materialises per-edge
      feature tensors;
    * ``"gather"``: plain message passing (per-edge messages); the path for
      ``torch.compile`` on batched graphs and the easiest to read;
    * ``"auto"`` (default): ``"dense"`` in static mode when the graph is dense
      enough (``N * N <= dense_ratio * E``), else ``"sparse"``; under
      ``torch.compile`` ``"gather"`` instead of ``"sparse"`` (sparse tensors
      break compiled graphs).

    Args:
        in_channels: input width F.
        out_channels: output width.
        bias: learn an additive bias.
        impl: see above.
        dense_ratio: the ``"auto"`` threshold. On a 2-core CPU the dense path
            beat the sparse one at every size benchmarks/layers.py measured
            (up to N=256 with 1/23 of the pairs linked); sparse pays off only
            for larger, sparser graphs.
        scale: the factor :math:`s` of the scores (1 = the paper's formula;
            ``in_channels ** -0.5`` is the transformer's scaled dot product,
            which keeps the softmax from saturating to one neighbour).
        center: subtract each graph's mean node feature before :math:`\phi`
            (not in the paper). Features after a ReLU share a large common
            component, and then every node's strongest score is with the one
            node of largest norm, a "hub"; centred scores compare what sets
            the nodes apart. Propagation still uses the raw features.
        learn_affinity: ``False`` for a layer that only ever reuses an
            affinity passed as ``edge_weight`` (the later layers of a branch
            that shares one affinity): it has no ``phi``, so no parameter
            without a gradient (which DistributedDataParallel rejects).

    Shapes:
        - input: ``x`` [N, F] or [B, N, F]; ``edge_index`` [2, E];
          ``edge_weight`` (optional) [E] or [B, E]: a normalised adjacency
          that replaces the learned one (typically returned by an earlier
          call with ``return_attention_weights=True``; self-loops must then be
          in ``edge_index`` already); ``batch`` (optional, batch layout with
          ``center=True``) [N]: each node's graph, as in a PyG ``Batch``
          (``None`` = one graph; in static mode each of the B is a graph).
        - output: [N, out] or [B, N, out]; with
          ``return_attention_weights=True`` also
          ``(edge_index_with_self_loops [2, E + N], weight [E + N] or [B, E + N])``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bias: bool = True,
        impl: Impl = "auto",
        dense_ratio: float = 64.0,
        learn_affinity: bool = True,
        scale: float = 1.0,
        center: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.impl = impl
        self.dense_ratio = dense_ratio
        self.scale = scale
        self.center = center
        self.phi = Linear(in_channels, in_channels, bias=False) if learn_affinity else None
        self.lin = Linear(in_channels, out_channels, bias=False)
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.phi is not None:
            self.phi.reset_parameters()
        self.lin.reset_parameters()
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    # ------------------------------------------------------------------ dispatch
    def choose_impl(self, x: Tensor, edge_index: Tensor) -> str:
        """The implementation ``forward`` will run for these inputs."""
        if self.impl != "auto":
            return self.impl
        if x.dim() == 3:
            n = x.size(1)
            if n * n <= self.dense_ratio * max(edge_index.size(1), 1):
                return "dense"
        if torch.compiler.is_compiling():
            return "gather"
        return "sparse"

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        return_attention_weights: bool | None = None,
        batch: Tensor | None = None,
    ):
        if x.dim() not in (2, 3):
            raise ValueError(f"x must be [N, F] or [B, N, F], got shape {tuple(x.shape)}")
        if x.size(-1) != self.in_channels:
            raise ValueError(f"x has {x.size(-1)} channels, the layer expects {self.in_channels}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
        if edge_weight is None and self.phi is None:
            raise ValueError("this layer has no learned affinity (learn_affinity=False): pass edge_weight")
        impl = self.choose_impl(x, edge_index)
        if impl == "dense":
            if x.dim() != 3:
                raise ValueError("impl='dense' needs static mode: x of shape [B, N, F]")
            out, (edge_index, weights) = self._forward_dense(x, edge_index, edge_weight)
        elif x.dim() == 3:
            out, (edge_index, weights) = self._forward_static_sparse(x, edge_index, edge_weight, impl)
        else:
            out, (edge_index, weights) = self._forward_graph(x, edge_index, edge_weight, impl, batch)
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            return out, (edge_index, weights)
        return out

    # ------------------------------------------------------------------ dense
    def _forward_dense(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None):
        B, N, _ = x.shape
        src, dst = edge_index[0], edge_index[1]
        if edge_weight is None:
            mask = torch.zeros(N, N, dtype=torch.bool, device=x.device)
            mask[dst, src] = True
            out, adj = dense_affinity_gcn(x, self.phi.weight, self.lin.weight, None, mask, scale=self.scale,
                                          center=self.center)
            loops = torch.arange(N, device=x.device)
            full_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
            weights = adj[:, full_index[1], full_index[0]]
            return out, (full_index, weights)
        adj = to_dense_affinity(edge_index, edge_weight.expand(B, -1).to(x.dtype), N)
        out, _ = dense_affinity_gcn(x, None, self.lin.weight, None, adj_norm=adj)
        return out, (edge_index, edge_weight)

    # ------------------------------------------------------------------ graph (batch) mode
    def _forward_static_sparse(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, impl: str):
        B, N, F = x.shape
        E = edge_index.size(1)
        offsets = (torch.arange(B, device=x.device) * N).repeat_interleave(E)
        big_index = edge_index.repeat(1, B) + offsets
        big_weight = None
        if edge_weight is not None:
            big_weight = (edge_weight.expand(B, -1) if edge_weight.dim() == 1 else edge_weight).reshape(-1)
        batch = torch.arange(B, device=x.device).repeat_interleave(N) if self.center else None
        out, (full_index, weights) = self._forward_graph(x.reshape(B * N, F), big_index, big_weight, impl, batch)
        out = out.view(B, N, -1)
        if edge_weight is not None:
            return out, (edge_index, edge_weight)
        # _forward_graph returns the B*E edges first, then the B*N self-loops.
        loops = torch.arange(N, device=x.device)
        single = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        w = torch.cat([weights[: B * E].view(B, E), weights[B * E :].view(B, N)], dim=1)
        return out, (single, w)

    def _forward_graph(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, impl: str,
                       batch: Tensor | None = None):
        num_nodes = x.size(0)
        src, dst = edge_index[0], edge_index[1]
        if edge_weight is None:
            if impl == "sparse":
                # CSR order (by target, then source) for the sampled product.
                perm = torch.argsort(dst * num_nodes + src)
                src, dst = src[perm], dst[perm]
                crow = torch._convert_indices_from_coo_to_csr(dst, num_nodes)
                score = self._edge_scores_sparse(x, crow, src, num_nodes, batch)
            else:
                phi = self._phi(x, batch)
                score = (phi[dst] * phi[src]).sum(dim=-1)
            alpha = softmax(score, dst, num_nodes=num_nodes)
            # A + I: every row of A sums to 1 (or 0 without neighbours), plus 1.
            deg = scatter(alpha, dst, dim=0, dim_size=num_nodes, reduce="sum") + 1.0
            deg_inv_sqrt = deg.rsqrt()
            weight = alpha * deg_inv_sqrt[dst] * deg_inv_sqrt[src]
            loops = torch.arange(num_nodes, device=x.device)
            edge_index = torch.cat([torch.stack([src, dst]), torch.stack([loops, loops])], dim=1)
            edge_weight = torch.cat([weight, deg_inv_sqrt * deg_inv_sqrt])
        out = self._propagate(x, edge_index, edge_weight, impl)
        return out, (edge_index, edge_weight)

    def _edge_scores_sparse(self, x: Tensor, crow: Tensor, col: Tensor, num_nodes: int,
                            batch: Tensor | None = None) -> Tensor:
        phi = self._phi(x, batch)
        with torch.autocast(device_type=x.device.type, enabled=False):
            phi = phi.to(_sparse_dtype(phi.dtype))
            pattern = torch.sparse_csr_tensor(
                crow,
                col,
                torch.ones(col.numel(), device=x.device, dtype=phi.dtype),
                (num_nodes, num_nodes),
                check_invariants=False,  # built sorted above; the checks cost a sync
            )
            scores = torch.sparse.sampled_addmm(pattern, phi, phi.t(), beta=0.0)
        return scores.values()

    def _phi(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        if self.center:  # x [N, F] of the graphs in ``batch`` (one graph when None)
            if batch is None:
                x = x - x.mean(0, keepdim=True)
            else:
                x = x - scatter(x, batch, dim=0, reduce="mean")[batch]
        phi = self.phi(x)
        return phi * self.scale**0.5 if self.scale != 1.0 else phi

    def _propagate(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor, impl: str) -> Tensor:
        lin_first = self.out_channels < self.in_channels
        h = self.lin(x) if lin_first else x
        if impl == "sparse":
            # Fused sparse matmul (message_and_aggregate) on the transposed adjacency.
            n = x.size(0)
            with torch.autocast(device_type=x.device.type, enabled=False):
                dtype = _sparse_dtype(h.dtype)
                adj_t = torch.sparse_coo_tensor(
                    edge_index.flip(0), edge_weight.to(dtype), (n, n), check_invariants=False
                )
                graph = adj_t.coalesce().to_sparse_csr()
                out = self.propagate(graph, x=h.to(dtype), edge_weight=None).to(h.dtype)
        else:
            out = self.propagate(edge_index, x=h, edge_weight=edge_weight)
        return out if lin_first else self.lin(out)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.unsqueeze(-1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return adj_t @ x

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, impl={self.impl!r})"


def to_dense_affinity(edge_index: Tensor, weight: Tensor, num_nodes: int) -> Tensor:
    """Scatter edge weights into a dense [N, N] (or [B, N, N]) matrix, ``A[i, j]`` for ``j -> i``.

    Entries on the same position (an explicit self-loop plus the added one) are summed.
    """
    src, dst = edge_index[0], edge_index[1]
    if weight.dim() == 1:
        adj = weight.new_zeros(num_nodes, num_nodes)
        return adj.index_put((dst, src), weight, accumulate=True)
    B = weight.size(0)
    adj = weight.new_zeros(B, num_nodes, num_nodes)
    b = torch.arange(B, device=weight.device).unsqueeze(1).expand_as(weight)
    return adj.index_put((b, dst.expand_as(weight), src.expand_as(weight)), weight, accumulate=True)
