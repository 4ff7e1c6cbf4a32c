"""The learned-affinity graph convolution of STGCN as a PyG ``MessagePassing`` layer."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from .functional import dense_affinity, dense_affinity_gcn
from .norm import Normalization, affinity_dtype, affinity_norm, check_normalization

Impl = Literal["auto", "dense", "sparse", "gather"]
_IMPLS = ("auto", "dense", "sparse", "gather")


def _sparse_dtype(dtype: torch.dtype) -> torch.dtype:
    # cuSPARSE's SDDMM/SpMM have no bf16/fp16 kernels: reduced precision runs in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@contextlib.contextmanager
def _sparse_csr_quiet() -> Iterator[None]:
    # torch flags CSR tensors as beta on construction; the sparse path relies
    # only on their stable operations (sampled_addmm, spmm).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


class AffinityGCNConv(MessagePassing):
    r"""The graph convolution of STGCN (Yang et al., CVPR 2020) with a learned affinity.

    For the edges :math:`j \to i` of ``edge_index`` it learns the scores
    :math:`e_{ij} = s \, \phi(\mathbf{x}_i)^\top \phi(\mathbf{x}_j)` and
    normalises each node's row of them into the affinity :math:`\mathbf{A}`
    (``normalization``):

    * ``"square"``, the paper's Eq. 2 and what STGCN's model sets, over the
      node's neighbours and the node itself,

      .. math::
          a_{ij} = \frac{e_{ij}^2}{\sum_{k \in \mathcal{N}(i) \cup \{i\}} e_{ik}^2},
          \qquad j \in \mathcal{N}(i) \cup \{i\}

      (entries in :math:`[0, 1]`, rows summing to 1, free of the scale of
      the scores; a row whose scores are all zero is left all zero, and the
      node keeps only its identity);
    * ``"cosine"`` (the default here, not in the paper), over the
      neighbours but the node itself, with
      :math:`c_{ij} = e_{ij} / \sqrt{e_{ii} e_{jj}}` the cosine of
      :math:`\phi(\mathbf{x}_i)` and :math:`\phi(\mathbf{x}_j)` (0 for a
      node whose :math:`\phi` is zero),

      .. math::
          a_{ij} = \frac{1 + c_{ij}}{\sum_{k \in \mathcal{N}(i) \setminus \{i\}} (1 + c_{ik})},
          \qquad j \in \mathcal{N}(i) \setminus \{i\};

    * ``"softmax"`` (what checkpoints from before the square normalisation
      use) over the neighbours,

      .. math::
          a_{ij} = \frac{\exp e_{ij}}{\sum_{k \in \mathcal{N}(i)} \exp e_{ik}},
          \qquad j \in \mathcal{N}(i).

    Why the default is not Eq. 2: as a drop-in for
    :class:`~torch_geometric.nn.GCNConv` on a general graph, Eq. 2 often
    barely propagates. With near-orthogonal :math:`\phi(\mathbf{x}_i)`
    (one-hot features, or any fresh initialisation) :math:`e_{ii}^2`
    outweighs every :math:`e_{ij}^2` (on KarateClub the node's own share
    :math:`a_{ii}` in the first layer is 0.89 at initialisation), and the
    squares of random scores put each row's weight on a few neighbours,
    whatever the sign of their score. Cosine leaves the node out of its row
    (:math:`\mathbf{A} + \mathbf{I}` adds it, with half the row's weight),
    starts near uniform weights as ``GCNConv`` (random embeddings have
    cosines near 0), and gives an opposite neighbour no weight, yet, unlike
    a ReLU of the scores, does not empty rows; like Eq. 2 it is free of the scale of :math:`\phi`.
    STGCN's patch features follow a ReLU, their scores are all positive and
    the paper's setting hides this: the STGCN model sets
    ``normalization="square"`` (``model.affinity_normalization``). The
    figures are in ``docs/method.md`` and ``benchmarks/studies/results/dropin_cpu.md``.

    In all modes it adds the identity on top, :math:`\mathbf{A}' = \mathbf{A} + \mathbf{I}`:
    in square mode the diagonal becomes :math:`a_{ii} + 1` (an explicit
    self-loop :math:`i \to i` in ``edge_index`` is the node itself, counted
    once); with cosine it is 1 (an explicit self-loop gets no weight); with
    softmax the identity is added also where ``edge_index`` already holds
    the self-loop. It normalises :math:`\mathbf{A}'`
    symmetrically with its row sums :math:`d_i` (see
    :func:`~stgcn_pyg.nn.affinity_norm`) and propagates:

    .. math::
        \mathbf{x}'_i = \sum_{j \in \mathcal{N}(i) \cup \{i\}}
        \frac{a'_{ij}}{\sqrt{d_i d_j}} \, \mathbf{W} \mathbf{x}_j + \mathbf{b}.

    With ``center=True`` the scores use :math:`\phi(\mathbf{x}_i - \bar{\mathbf{x}})`,
    :math:`\bar{\mathbf{x}}` the mean of the node's graph.

    :math:`\phi` is ``self.phi`` (a bias-free ``Linear(in, in)``) and
    :math:`\mathbf{W}` is ``self.lin`` (a bias-free ``Linear(in, out)``; the
    bias is added after propagation, as in :class:`~torch_geometric.nn.GCNConv`).
    :math:`\phi`, the scores, the row normalisation and the GCN normalisation
    run with autocast disabled, in at least float32 (scores of wide features lose
    whole units in bfloat16); only the propagation follows autocast.

    Two input layouts:

    * **batch** -- ``x`` :math:`(N, F)` and ``edge_index`` :math:`(2, E)` of a
      PyG ``Batch`` of disjoint graphs;
    * **static** -- ``x`` :math:`(B, N, F)`: :math:`B` graphs sharing one
      ``edge_index`` over :math:`N` nodes (tracklets of equal length).

    Implementations (``impl``), all equal up to float rounding:

    * ``"dense"`` (static only): masked batched matmul over :math:`(B, N, N)`,
      for complete or nearly complete graphs;
    * ``"sparse"``: the scores as a sampled dense-dense product
      (``torch.sparse.sampled_addmm``) and propagation as a fused sparse
      matmul (``message_and_aggregate``) -- never materialises per-edge
      feature tensors;
    * ``"gather"``: plain message passing (per-edge messages); the path for
      ``torch.compile`` on batched graphs and the easiest to read;
    * ``"auto"``: ``"dense"`` in static mode when the graph is dense enough
      (:math:`N^2 \le` ``dense_ratio`` :math:`\cdot E`), else ``"sparse"``;
      under ``torch.compile`` ``"gather"`` instead of ``"sparse"`` (sparse
      tensors break compiled graphs).

    Args:
        in_channels (int): Size of each input node feature :math:`F`.
        out_channels (int): Size of each output node feature.
        bias (bool, optional): If set to :obj:`False`, the layer will not learn
            an additive bias. (default: :obj:`True`)
        impl (str, optional): The implementation, :obj:`"auto"`,
            :obj:`"dense"`, :obj:`"sparse"` or :obj:`"gather"` (see above).
            (default: :obj:`"auto"`)
        dense_ratio (float, optional): The :obj:`"auto"` threshold: in the
            static layout the dense path runs while :math:`N^2 \le`
            ``dense_ratio`` :math:`\cdot E`, i.e. while at least one in
            ``dense_ratio`` node pairs is linked. (default: :obj:`64.0`)
        learn_affinity (bool, optional): If set to :obj:`False`, the layer
            only ever reuses an affinity passed as ``edge_weight`` (the later
            layers of a branch that shares one affinity): it has no
            :math:`\phi`, so no parameter without a gradient (which
            ``DistributedDataParallel`` rejects). (default: :obj:`True`)
        scale (float, optional): The factor :math:`s` of the scores. Square
            normalisation does not depend on it (:math:`s` multiplies every
            :math:`e_{ik}` of a row, and cancels in
            :math:`e_{ij}^2 / \sum_k e_{ik}^2`; :math:`s = 0` leaves every
            row zero), nor does cosine for :math:`s > 0`; it matters only for softmax, where 1 is the formula
            of earlier versions and ``in_channels ** -0.5`` the
            transformer's scaled dot product, which keeps the softmax from
            saturating to one neighbour. (default: :obj:`1.0`)
        center (bool, optional): If set to :obj:`True`, subtracts each graph's
            mean node feature before :math:`\phi` (not in the paper). Features
            after a ReLU share a large common component, and then every node's
            strongest score is with the one node of largest norm, a "hub";
            centred scores compare what sets the nodes apart. Propagation
            still uses the raw features. (default: :obj:`False`)
        normalization (str, optional): The rows of the affinity,
            :obj:`"cosine"` (for general graphs), :obj:`"square"` (the
            paper's Eq. 2, what STGCN uses) or :obj:`"softmax"` (the formula
            of checkpoints from before the square normalisation); see above.
            (default: :obj:`"cosine"`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(N, F)` or :math:`(B, N, F)`,
          edge indices :math:`(2, E)` (no duplicate edges),
          edge weights :math:`(E)` or :math:`(B, E)` *(optional)*,
          graph assignment :math:`(N)` *(optional)*
        - **output:** node features :math:`(N, F_{out})` or
          :math:`(B, N, F_{out})`; with ``return_attention_weights=True``
          also ``(edge_index, weight)`` of shapes :math:`(2, E + N)` and
          :math:`(E + N)` or :math:`(B, E + N)`
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
        normalization: Normalization = "cosine",
        **kwargs,
    ):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
        self.normalization = check_normalization(normalization)
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

    @overload
    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        return_attention_weights: Literal[False] | None = None,
        batch: Tensor | None = None,
    ) -> Tensor: ...

    @overload
    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        return_attention_weights: Literal[True],
        batch: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]: ...

    @overload
    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        return_attention_weights: Literal[True],
        batch: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]: ...

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        return_attention_weights: bool | None = None,
        batch: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor): The node features, :math:`(N, F)` (batch
                layout) or :math:`(B, N, F)` (static layout).
            edge_index (torch.Tensor): The edges :math:`j \to i`,
                :math:`(2, E)`, without duplicates.
            edge_weight (torch.Tensor, optional): A normalised adjacency,
                :math:`(E)` or :math:`(B, E)`, that replaces the learned one:
                typically the ``(edge_index, weight)`` an earlier call returned
                with ``return_attention_weights=True``, passed back as
                ``edge_index`` and ``edge_weight`` (no self-loops are added
                to it). (default: :obj:`None`)
            return_attention_weights (bool, optional): If set to :obj:`True`,
                also returns ``(edge_index, weight)``: the input edges followed
                by :math:`N` self-loops, and their normalised weights in at
                least float32 (column :math:`k` of the input keeps index
                :math:`k`; in square mode a loop carries the whole diagonal
                entry :math:`(a_{ii} + 1) / d_i` and an explicit self-loop of
                the input 0; see :func:`~stgcn_pyg.nn.affinity_norm`). With
                ``edge_weight`` given, returns it as it came.
                (default: :obj:`None`)
            batch (torch.Tensor, optional): The graph of each node,
                :math:`(N)`, as in a PyG ``Batch``; used by ``center=True`` in
                the batch layout. (default: :obj:`None`, one graph; in the
                static layout each of the :math:`B` is a graph)
        """
        if x.dim() not in (2, 3):
            raise ValueError(f"x must be [N, F] or [B, N, F], got shape {tuple(x.shape)}")
        if x.size(-1) != self.in_channels:
            raise ValueError(f"x has {x.size(-1)} channels, the layer expects {self.in_channels}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
        if edge_weight is None and self.phi is None:
            raise ValueError("this layer has no learned affinity (learn_affinity=False): pass edge_weight")
        if edge_weight is not None and (edge_weight.dim() not in (1, 2) or edge_weight.size(-1) != edge_index.size(1)):
            raise ValueError(
                f"edge_weight must be [E] or [B, E] with E = {edge_index.size(1)} edges, "
                f"got shape {tuple(edge_weight.shape)}"
            )
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

    # ------------------------------------------------------------------ affinity
    def _phi(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        r""":math:`\phi(x)` (of centred features with ``center``) in at least float32; call with autocast off.

        ``x`` [B, N, F] is centred per graph (dim -2); [N, F] per ``batch``
        (``None`` = one graph).
        """
        dtype = affinity_dtype(x.dtype)
        x = x.to(dtype)
        if self.center:
            if x.dim() == 3:
                x = x - x.mean(-2, keepdim=True)
            elif batch is None:
                x = x - x.mean(0, keepdim=True)
            else:
                x = x - scatter(x, batch, dim=0, reduce="mean")[batch]
        return F.linear(x, self.phi.weight.to(dtype))

    def _edge_scores_sparse(self, phi: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
        """Scores of the edges, in ``edge_index``'s order, as a sampled product in CSR order."""
        src, dst = edge_index[0], edge_index[1]
        perm = torch.argsort(dst * num_nodes + src)  # CSR order: by target, then source
        crow = torch._convert_indices_from_coo_to_csr(dst[perm], num_nodes)
        with _sparse_csr_quiet():
            pattern = torch.sparse_csr_tensor(
                crow,
                src[perm],
                torch.ones(perm.numel(), device=phi.device, dtype=phi.dtype),
                (num_nodes, num_nodes),
                check_invariants=False,  # built sorted above; the checks cost a sync
            )
            sorted_scores = torch.sparse.sampled_addmm(pattern, phi, phi.t(), beta=0.0, alpha=self.scale).values()
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=perm.device)
        return sorted_scores[inv]

    # ------------------------------------------------------------------ dense (static layout)
    def _forward_dense(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None):
        B, N, _ = x.shape
        if edge_weight is not None:
            adj = to_dense_affinity(edge_index, edge_weight.expand(B, -1), N)
            out, _ = dense_affinity_gcn(x, None, self.lin.weight, None, adj_norm=adj)
            return out, (edge_index, edge_weight)
        src, dst = edge_index[0], edge_index[1]
        with torch.autocast(device_type=x.device.type, enabled=False):
            mask = torch.zeros(N, N, dtype=torch.bool, device=x.device)
            mask[dst, src] = True
            alpha = dense_affinity(self._phi(x), mask, self.scale, self.normalization)  # [B, N, N], diagonal included
            deg_inv_sqrt = (alpha.sum(-1) + 1.0).rsqrt()  # [B, N]: rows of A + I
            eye = torch.eye(N, dtype=alpha.dtype, device=x.device)
            adj = deg_inv_sqrt.unsqueeze(-1) * (alpha + eye) * deg_inv_sqrt.unsqueeze(-2)
            # Per edge A's part only; the identity goes to the appended loops (as affinity_norm) ...
            edge_w = alpha[:, dst, src] * deg_inv_sqrt[:, dst] * deg_inv_sqrt[:, src]
            if self.normalization != "softmax":
                # ... with the node's own a_ii (0 with cosine), which an explicit loop must not repeat.
                edge_w = edge_w.masked_fill(src == dst, 0.0)
                loop_w = (alpha.diagonal(dim1=-2, dim2=-1) + 1.0) * deg_inv_sqrt * deg_inv_sqrt
            else:
                loop_w = deg_inv_sqrt * deg_inv_sqrt
            weights = torch.cat([edge_w, loop_w], dim=1)
        out, _ = dense_affinity_gcn(x, None, self.lin.weight, None, adj_norm=adj)
        loops = torch.arange(N, device=edge_index.device, dtype=edge_index.dtype)
        return out, (torch.cat([edge_index, torch.stack([loops, loops])], dim=1), weights)

    # ------------------------------------------------------------------ message passing
    def _forward_static_sparse(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, impl: str):
        B, N, F_in = x.shape
        E = edge_index.size(1)
        offsets = (torch.arange(B, device=x.device) * N).repeat_interleave(E)
        big_index = edge_index.repeat(1, B) + offsets
        big_weight = None
        if edge_weight is not None:
            big_weight = edge_weight.expand(B, -1).reshape(-1)
        batch = torch.arange(B, device=x.device).repeat_interleave(N) if self.center else None
        out, (_, weights) = self._forward_graph(x.reshape(B * N, F_in), big_index, big_weight, impl, batch)
        out = out.view(B, N, -1)
        if edge_weight is not None:
            return out, (edge_index, edge_weight)
        # _forward_graph keeps the order of big_index (graph by graph), then the B*N self-loops.
        loops = torch.arange(N, device=edge_index.device, dtype=edge_index.dtype)
        single = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        w = torch.cat([weights[: B * E].view(B, E), weights[B * E :].view(B, N)], dim=1)
        return out, (single, w)

    def _forward_graph(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, impl: str,
                       batch: Tensor | None = None):
        num_nodes = x.size(0)
        if edge_weight is None:
            with torch.autocast(device_type=x.device.type, enabled=False):
                phi = self._phi(x, batch)
                if impl == "sparse":
                    score = self._edge_scores_sparse(phi, edge_index, num_nodes)
                else:
                    score = (phi[edge_index[1]] * phi[edge_index[0]]).sum(dim=-1)
                    if self.scale != 1.0:
                        score = score * self.scale
                self_score = None
                if self.normalization != "softmax":  # e_ii: square's row holds the node; cosine's norms
                    self_score = (phi * phi).sum(dim=-1)
                    if self.scale != 1.0:
                        self_score = self_score * self.scale
                edge_index, edge_weight = affinity_norm(
                    edge_index, score, num_nodes, self_score=self_score, normalization=self.normalization
                )
        out = self._propagate(x, edge_index, edge_weight, impl)
        return out, (edge_index, edge_weight)

    def _propagate(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor, impl: str) -> Tensor:
        lin_first = self.out_channels < self.in_channels
        h = self.lin(x) if lin_first else x
        if impl == "sparse":
            # Fused sparse matmul (message_and_aggregate) on the transposed adjacency.
            n = x.size(0)
            with torch.autocast(device_type=x.device.type, enabled=False), _sparse_csr_quiet():
                dtype = _sparse_dtype(h.dtype)
                adj_t = torch.sparse_coo_tensor(
                    edge_index.flip(0), edge_weight.to(dtype), (n, n), check_invariants=False
                )
                graph = adj_t.coalesce().to_sparse_csr()
                out = self.propagate(graph, x=h.to(dtype), edge_weight=None).to(h.dtype)
        else:
            # Messages in the features' dtype (low precision under autocast).
            out = self.propagate(edge_index, x=h, edge_weight=edge_weight.to(h.dtype))
        return out if lin_first else self.lin(out)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.unsqueeze(-1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return adj_t @ x

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, impl={self.impl!r}, "
            f"normalization={self.normalization!r})"
        )


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
