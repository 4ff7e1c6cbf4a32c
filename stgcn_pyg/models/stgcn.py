"""STGCN (Yang et al., CVPR 2020): global, temporal-graph and spatial-graph branches over a ResNet.

Forward pass of a batch of tracklet graphs (docs/method.md, "Forward pass"):

1. the backbone runs on every frame: maps [B*T, C, h, w];
2. each map is cut into P = ``num_stripes`` horizontal stripes and
   average-pooled: patch nodes [B*T*P, C], node ``t*P + p`` of each tracklet;
3. the **temporal** branch runs ``temporal_layers`` affinity-GCN layers over
   the temporal topology (all patches of the tracklet) and max-pools over the
   nodes (with the paper's residual from the second layer on);
4. the **spatial** branch runs ``spatial_layers`` layers (256 wide) over the
   per-frame topology, max-pools each frame's patches and fuses the frames:
   concatenated in frame order (the paper's, T x 256 wide), or mean or max;
5. the **global** branch averages each map and then the frames;
6. each branch has a BN neck and a classifier; the descriptor f_all is the
   concatenation of the BN-normalised branch features.

The model owns its graphs: ``model.graph`` (a :class:`~stgcn_pyg.graphs.TrackletGraph`
of ``num_stripes`` and the two topologies of its config). Graph layers run in
the layer's *static* mode whenever every tracklet of the batch has the same T
(the usual case): patch features are viewed as [B, T*P, C] and share the
graph's single-tracklet ``edge_index``. Otherwise they run on the batch's
offset edge sets (PyG's disjoint-union batching); both give the same result,
because a batch whose tracklets were built on another graph is rejected.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

from ..errors import ConfigError
from ..graphs import tracklet_graph
from ..nn import AffinityGCNConv, to_dense_affinity
from ..nn.norm import NORMALIZATIONS
from .backbone import build_backbone
from .heads import BNNeckHead

__all__ = ["STGCN", "STGCNOutput", "GraphBranch", "BRANCHES", "GRAPH_LAYERS", "AFFINITIES", "AFFINITY_NORMALIZATIONS",
           "NORMS", "FRAME_FUSIONS", "CLASSIFIERS"]

# The values of the model options (ModelConfig) that this module understands.
BRANCHES = ("global", "temporal", "spatial")
GRAPH_LAYERS = ("gcn", "fc")
AFFINITIES = ("shared", "per-layer")
AFFINITY_NORMALIZATIONS = NORMALIZATIONS  # the graph layer's own list
NORMS = ("batch", "layer", "none")
FRAME_FUSIONS = ("concat", "mean", "max")
CLASSIFIERS = ("branch", "all")


def temporal_affinity_missing(cfg) -> str | None:
    """Why a model of ``cfg`` (its ModelConfig) has no temporal affinity to show; None when it has one."""
    if "temporal" not in cfg.branches:
        return "model.branches: this model has no temporal branch"
    if cfg.graph_layer != "gcn":
        return f'model.graph_layer: its temporal branch has "{cfg.graph_layer}" layers, no graph'
    return None


@dataclass
class STGCNOutput:
    """What :class:`STGCN` returns for a batch of B tracklets.

    features: branch name -> [B, D_branch], before the BN neck (triplet loss);
    logits: branch name (or "all") -> [B, C], only in training mode;
    descriptor: [B, D_all], f_all = concatenated BN-normalised features.
    """

    features: dict[str, torch.Tensor]
    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    descriptor: torch.Tensor | None = None


@contextlib.contextmanager
def _part_seed(name: str):
    """Initialise one part of the model from (torch's current seed, the part's name).

    So a part starts from the same weights whatever other branches the model
    has: ablation variants trained with the same seed differ only in what
    they add (paired comparisons), not in a reshuffled initialisation.
    """
    seed = (torch.initial_seed() * 1_000_003 + zlib.crc32(name.encode())) % 2**63
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _frames_per_graph(batch, B: int) -> list[int]:
    """T of each tracklet of a batch, read without a GPU->CPU synchronisation when possible.

    ``num_frames`` is a [B] tensor after batching; once the batch is on the GPU,
    reading it would stall the pipeline every step, so the frame counts come
    from the batch's CPU-side slice table when it has one.
    """
    value = batch.num_frames
    if not isinstance(value, torch.Tensor):
        return [int(value)] * B
    if value.device.type != "cpu":
        slices = getattr(batch, "_slice_dict", {}).get("frames")
        if isinstance(slices, torch.Tensor) and slices.device.type == "cpu" and slices.numel() == B + 1:
            return (slices[1:] - slices[:-1]).tolist()
    return value.reshape(-1).tolist()


class _NodeNorm(nn.Module):
    """Batch norm over all nodes of the batch (any leading shape), layer norm, or nothing."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        self.kind = kind
        if kind == "batch":
            self.norm = nn.BatchNorm1d(dim)
        elif kind == "layer":
            self.norm = nn.LayerNorm(dim)
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "batch" and x.dim() != 2:
            return self.norm(x.reshape(-1, x.size(-1))).view_as(x)
        return self.norm(x)


class GraphBranch(nn.Module):
    """A stack of graph layers, each followed by a norm layer and LeakyReLU.

    ``layer="gcn"``: :class:`~stgcn_pyg.nn.AffinityGCNConv`; with
    ``affinity="shared"`` the first layer computes the normalised affinity
    from the branch's input patches and the others reuse it (passed back as
    ``edge_weight``); with ``"per-layer"`` each layer learns its own.
    ``layer="fc"`` is the paper's ablation: same depth and widths, a Linear
    applied to each node on its own (no graph). ``normalization`` is the
    affinity's row normalisation ("square", the paper's Eq. 2, "softmax" or
    "cosine"); it is passed to every layer, so the model keeps Eq. 2 although
    the standalone layer's default is "cosine".

    ``residual`` is the paper's temporal residual, ``X^m := X^m + X^{m-1}``
    after layer m's norm and activation for ``2 <= m <= M``;
    ``residual_first_layer`` adds one to the first layer too, where its input
    and output widths agree (not in the paper).
    """

    def __init__(self, in_channels: int, width: int, num_layers: int, *, layer: str = "gcn",
                 affinity: str = "shared", normalization: str = "square", residual: bool = False,
                 residual_first_layer: bool = False, norm: str = "batch", negative_slope: float = 0.1,
                 scaled_affinity: bool = False, centered_affinity: bool = False):
        super().__init__()
        self.layer, self.affinity = layer, affinity
        dims = [in_channels] + [width] * num_layers
        # Layer i adds its input to its output (after norm and activation); widths agree from the second on.
        self.residual = [residual and (i > 0 or (residual_first_layer and dims[0] == dims[1]))
                         for i in range(num_layers)]
        # With a shared affinity only the first layer learns one; the others reuse it.
        learns = [i == 0 or affinity != "shared" for i in range(num_layers)]
        self.convs = nn.ModuleList(
            AffinityGCNConv(dims[i], dims[i + 1], learn_affinity=learns[i], normalization=normalization,
                            scale=dims[i] ** -0.5 if scaled_affinity else 1.0,
                            center=centered_affinity) if layer == "gcn"
            else nn.Linear(dims[i], dims[i + 1])
            for i in range(num_layers)
        )
        self.norms = nn.ModuleList(_NodeNorm(norm, width) for _ in range(num_layers))
        self.act = nn.LeakyReLU(negative_slope)
        self.out_channels = width

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None,
                return_layers: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """x [N, F] (batch mode, ``batch`` each node's graph) or [B, N, F] (static mode) -> width out_channels.

        With ``return_layers`` the list of every layer's output (after its norm, activation and
        residual), the last of which is the usual result: for inspecting the stack layer by layer.
        """
        shared_index, shared_weight = None, None
        layers = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if self.layer == "fc":
                h = conv(x)
            elif self.affinity == "per-layer":
                h = conv(x, edge_index, batch=batch)
            elif i == 0:
                h, (shared_index, shared_weight) = conv(x, edge_index, return_attention_weights=True, batch=batch)
            else:
                h = conv(x, shared_index, edge_weight=shared_weight)
            h = self.act(norm(h))
            x = h + x if self.residual[i] else h
            layers.append(x)
        return layers if return_layers else x

    def affinity_weights(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None):
        """The first layer's normalised affinity: ``(edge_index_with_self_loops, weight)``."""
        if self.layer != "gcn":
            raise ConfigError('model.graph_layer: the "fc" ablation has no affinity to show')
        _, (index, weight) = self.convs[0](x, edge_index, return_attention_weights=True, batch=batch)
        return index, weight


class STGCN(nn.Module):
    """The STGCN model built from a :class:`~stgcn_pyg.config.ModelConfig`.

    ``model(batch)`` takes a PyG ``Batch`` of :class:`~stgcn_pyg.data.TrackletData`
    (``frames`` [B*T, 3, H, W], ``num_frames``, ``temporal_edge_index``,
    ``spatial_edge_index``, ``graph``) built on ``model.graph`` and returns an
    :class:`STGCNOutput`.
    ``model.encode(clips)`` maps clips [B, T, 3, H, W] to descriptors.
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        if not cfg.branches:
            raise ConfigError("model.branches: at least one branch is needed")
        self.branches = list(cfg.branches)
        # The one owner of the stripe count and the topologies; resolved now, so a bad name fails here.
        self.graph = tracklet_graph(cfg.num_stripes, cfg.temporal_topology, cfg.spatial_topology)
        self.num_stripes = self.graph.num_stripes
        with _part_seed("backbone"):
            self.backbone = build_backbone(cfg.backbone, cfg.weights, cfg.last_stride)
        C = self.backbone.out_channels
        # True for the paper's per-frame graph (and any topology linking only patches of one frame).
        self._spatial_within_frames = self.graph.spatial.frame_gap in (("max", 0), ("set", frozenset({0})))
        common = dict(layer=cfg.graph_layer, affinity=cfg.affinity, normalization=cfg.affinity_normalization,
                      residual_first_layer=cfg.residual_first_layer, norm=cfg.norm,
                      negative_slope=cfg.negative_slope, scaled_affinity=cfg.scaled_affinity,
                      centered_affinity=cfg.centered_affinity)
        dims = {"global": C}
        if "temporal" in self.branches:
            with _part_seed("temporal"):
                self.temporal = GraphBranch(C, cfg.temporal_width or C, cfg.temporal_layers,
                                            residual=cfg.temporal_residual, **common)
            dims["temporal"] = self.temporal.out_channels
        # The clip length of concatenated frame features: fixed when the model is built.
        self.seq_len = cfg.seq_len if cfg.frame_fusion == "concat" and "spatial" in self.branches else None
        if self.seq_len == 0:
            raise ConfigError('model.seq_len: frame_fusion="concat" needs the clip length T the model is built for '
                              '(Config.resolved_model() fills it in from data.seq_len); set it, or use '
                              'frame_fusion="mean" for any T')
        if "spatial" in self.branches:
            with _part_seed("spatial"):
                self.spatial = GraphBranch(C, cfg.spatial_width or C, cfg.spatial_layers,
                                           residual=cfg.spatial_residual, **common)
            dims["spatial"] = self.spatial.out_channels * (self.seq_len or 1)
        self.ce_on_all = cfg.classifier == "all"
        per_branch_classes = 0 if self.ce_on_all else cfg.num_classes
        self.heads = nn.ModuleDict()
        for b in self.branches:
            with _part_seed(f"heads.{b}"):
                self.heads[b] = BNNeckHead(dims[b], per_branch_classes)
        self.feature_dims = {b: dims[b] for b in self.branches}
        self.descriptor_dim = sum(self.feature_dims.values())
        self.all_classifier = None
        if self.ce_on_all and cfg.num_classes > 0:
            with _part_seed("all_classifier"):
                self.all_classifier = nn.Linear(self.descriptor_dim, cfg.num_classes, bias=False)
                nn.init.normal_(self.all_classifier.weight, std=0.001)
        self._edge_cache: dict = {}
        # "auto": static mode when all tracklets share T; "batched": always the
        # batch's offset edge sets (for tests and benchmarks of the two paths).
        self.graph_mode = "auto"
        self.channels_last = False

    # ------------------------------------------------------------------ graphs
    def _static_edges(self, which: str, T: int, device: torch.device) -> torch.Tensor:
        """The model's own ``edge_index`` of one T-frame tracklet ("temporal" or "spatial"), kept per device."""
        key = (which, T, str(device))
        ei = self._edge_cache.get(key)
        if ei is None:
            temporal, spatial = self.graph.edges(T)
            ei = (temporal if which == "temporal" else spatial).to(device)
            self._edge_cache[key] = ei
        return ei

    def _check_graph(self, batch) -> None:
        """Reject a batch whose tracklets were built on another graph than the model's.

        Host-side references only (no device read), so it costs nothing on the GPU either.
        """
        graphs = getattr(batch, "graph", None)
        if graphs is None:
            raise ConfigError("the batch's tracklets carry no graph: build them with TrackletData.from_frames "
                              "(graph=model.graph)")
        for g in graphs if isinstance(graphs, (list, tuple)) else [graphs]:
            if g is not self.graph and g != self.graph:
                theirs, ours = getattr(g, "describe", lambda: repr(g))(), self.graph.describe()
                if theirs == ours:  # same names, different definitions: name the files
                    theirs = f"{theirs} ({g.temporal.source}, {g.spatial.source})"
                    ours = f"{ours} ({self.graph.temporal.source}, {self.graph.spatial.source})"
                raise ConfigError(
                    f"the batch was built with {theirs}, the model uses {ours}: set them in one place "
                    f"(model.num_stripes / temporal_topology / spatial_topology) and build batches with "
                    f"graph=model.graph"
                )

    def _patches(self, maps: torch.Tensor) -> torch.Tensor:
        """[B*T, C, h, w] -> [B*T*P, C]: P horizontal stripes, average-pooled, node t*P + p."""
        if maps.size(2) < self.num_stripes:
            raise ConfigError(
                f"model.num_stripes: {self.num_stripes} stripes need feature maps at least that tall, "
                f"got {maps.size(2)} rows (use taller images or fewer stripes)"
            )
        stripes = F.adaptive_avg_pool2d(maps, (self.num_stripes, 1)).flatten(2)  # [B*T, C, P]
        return stripes.transpose(1, 2).reshape(-1, maps.size(1))

    # ------------------------------------------------------------------ forward
    def forward(self, batch) -> STGCNOutput:
        frames = batch.frames
        B = int(batch.num_graphs)
        nf = _frames_per_graph(batch, B)
        self._check_graph(batch)
        static = self.graph_mode == "auto" and len(set(nf)) == 1 and frames.size(0) == B * nf[0]
        return self._run(frames, B, nf, static, batch)

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """Descriptors f_all [B, D_all] of clips [B, T, 3, H, W] (tracklet graphs built here)."""
        B, T = clips.shape[:2]
        out = self._run(clips.reshape(B * T, *clips.shape[2:]), B, [T] * B, True, None, with_logits=False)
        return out.descriptor

    def _check_clip_length(self, nf: list[int]) -> None:
        if self.seq_len is not None and any(t != self.seq_len for t in nf):
            got = ", ".join(str(t) for t in sorted(set(nf)))
            raise ConfigError(
                f'this model concatenates the spatial features of its {self.seq_len} frames (model.frame_fusion='
                f'"concat"): it takes clips of exactly {self.seq_len} frames, got {got}; a model trained with '
                f'model.frame_fusion="mean" takes clips of any length'
            )

    def _run(self, frames, B, nf, static, batch, with_logits=None) -> STGCNOutput:
        self._check_clip_length(nf)
        device = next(self.parameters()).device
        frames = frames.to(device, non_blocking=True)
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        maps = self.backbone(frames)  # [sum T, C, h, w]
        C = maps.size(1)
        features: dict[str, torch.Tensor] = {}
        if static:
            T = nf[0]
            if "global" in self.branches:
                features["global"] = maps.mean((2, 3)).view(B, T, C).mean(1)
            if "temporal" in self.branches or "spatial" in self.branches:
                nodes = self._patches(maps).view(B, T * self.num_stripes, C)
            if "temporal" in self.branches:
                ei = self._static_edges("temporal", T, device)
                features["temporal"] = self.temporal(nodes, ei).amax(1)
            if "spatial" in self.branches:
                h = self.spatial(*self._static_spatial_graphs(nodes, T))
                features["spatial"] = self._fuse_frames(h.reshape(B, T, self.num_stripes, -1).amax(2))
        else:
            counts = torch.tensor(nf, device=device)
            frame_graph = torch.repeat_interleave(torch.arange(B, device=device), counts)
            if "global" in self.branches:
                features["global"] = scatter(maps.mean((2, 3)), frame_graph, 0, dim_size=B, reduce="mean")
            if "temporal" in self.branches or "spatial" in self.branches:
                nodes = self._patches(maps)
                node_frame = torch.arange(nodes.size(0), device=device) // self.num_stripes
                node_graph = frame_graph[node_frame]
            if "temporal" in self.branches:
                h = self.temporal(nodes, batch.temporal_edge_index.to(device), node_graph)
                features["temporal"] = scatter(h, node_graph, 0, dim_size=B, reduce="max")
            if "spatial" in self.branches:
                # a spatial graph is one frame's patches when no edge crosses frames
                h = self.spatial(nodes, batch.spatial_edge_index.to(device),
                                 node_frame if self._spatial_within_frames else node_graph)
                per_frame = scatter(h, node_frame, 0, dim_size=frames.size(0), reduce="max")
                if self.seq_len is not None:  # every tracklet is seq_len frames long (checked above)
                    features["spatial"] = self._fuse_frames(per_frame.view(B, self.seq_len, -1))
                else:
                    features["spatial"] = scatter(per_frame, frame_graph, 0, dim_size=B,
                                                  reduce=self.cfg.frame_fusion)
        return self._heads(features, self.training if with_logits is None else with_logits)

    def _heads(self, features: dict[str, torch.Tensor], with_logits: bool) -> STGCNOutput:
        """Each branch's features through its BN neck (and classifier): the descriptor f_all and the logits."""
        logits: dict[str, torch.Tensor] = {}
        normed = []
        for name in self.branches:
            bn, lg = self.heads[name](features[name], with_logits=with_logits)
            normed.append(bn)
            if lg is not None:
                logits[name] = lg
        descriptor = torch.cat(normed, dim=1)
        if with_logits and self.all_classifier is not None:
            logits["all"] = self.all_classifier(descriptor)
        return STGCNOutput(features=features, logits=logits, descriptor=descriptor)

    def _static_spatial_graphs(self, nodes: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The spatial branch's input for static-mode nodes [B, T*P, C]: ``(x, edge_index)``.

        When no spatial edge crosses frames, x is [B*T, P, C] (B*T separate P-node graphs), which keeps
        the layer on its small dense path instead of a sparse block-diagonal one; else [B, T*P, C].
        """
        if self._spatial_within_frames:
            return (nodes.reshape(-1, self.num_stripes, nodes.size(-1)),
                    self._static_edges("spatial", 1, nodes.device))
        return nodes, self._static_edges("spatial", T, nodes.device)

    def _fuse_frames(self, per_frame: torch.Tensor) -> torch.Tensor:
        """[B, T, F] per-frame spatial features -> f_s: [B, T*F] in frame order (concat), or mean / max over T."""
        if self.cfg.frame_fusion == "concat":
            return per_frame.flatten(1)
        return per_frame.mean(1) if self.cfg.frame_fusion == "mean" else per_frame.amax(1)

    # ------------------------------------------------------------------ inspection
    @contextlib.contextmanager
    def _evaluating(self):
        """Eval mode for the block, then the mode the model was in."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @torch.no_grad()
    def temporal_affinity(self, clips: torch.Tensor) -> torch.Tensor:
        """Dense normalised temporal affinity [N, N] (N = T*P) of one clip [1, T, 3, H, W] (or [T, 3, H, W])."""
        missing = temporal_affinity_missing(self.cfg)
        if missing:
            raise ConfigError(missing)
        if clips.dim() == 4:
            clips = clips.unsqueeze(0)
        if clips.size(0) != 1:
            raise ValueError(f"temporal_affinity takes one clip [1, T, 3, H, W], got {tuple(clips.shape)}")
        with self._evaluating():
            T = clips.size(1)
            nodes = self._static_nodes(clips)
            index, weight = self.temporal.affinity_weights(nodes, self._static_edges("temporal", T, nodes.device))
            dense = to_dense_affinity(index, weight.reshape(1, -1), T * self.num_stripes)
        return dense.reshape(T * self.num_stripes, T * self.num_stripes)

    @torch.no_grad()
    def branch_layers(self, clips: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Each graph branch's node features layer by layer, for clips [B, T, 3, H, W] (eval mode).

        ``{"temporal": [input, layer 1, ..., layer M], "spatial": [...]}`` for the branches the model
        has; each entry is [G, n, F], one row per graph: the B tracklet graphs of T*P patch nodes for
        the temporal branch; for the spatial branch the B*T frame graphs of P nodes when no spatial edge
        crosses frames, else the B tracklet graphs. For studying, e.g., over-smoothing with depth.
        """
        out: dict[str, list[torch.Tensor]] = {}
        with self._evaluating():
            T = clips.size(1)
            nodes = self._static_nodes(clips)
            if "temporal" in self.branches:
                ei = self._static_edges("temporal", T, nodes.device)
                out["temporal"] = [nodes] + self.temporal(nodes, ei, return_layers=True)
            if "spatial" in self.branches:
                x, ei = self._static_spatial_graphs(nodes, T)
                out["spatial"] = [x] + self.spatial(x, ei, return_layers=True)
        return out

    def _static_nodes(self, clips: torch.Tensor) -> torch.Tensor:
        """The patch nodes [B, T*P, C] of clips [B, T, 3, H, W], on the model's device."""
        B, T = clips.shape[:2]
        maps = self.backbone(clips.reshape(B * T, *clips.shape[2:]).to(next(self.parameters()).device))
        return self._patches(maps).view(B, T * self.num_stripes, -1)
