"""One tracklet as a PyG graph over its T*P patch nodes."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data

from ..errors import ConfigError
from ..graphs import TrackletGraph, tracklet_graph

__all__ = ["TrackletData", "tracklet_batch", "resolve_graph"]


def resolve_graph(graph: TrackletGraph | None, num_stripes=None, temporal_topology=None,
                  spatial_topology=None) -> TrackletGraph:
    """``graph`` itself, or the graph of a stripe count and two topologies (each defaulted); not both."""
    described = (num_stripes, temporal_topology, spatial_topology)
    if graph is not None:
        if any(v is not None for v in described):
            raise ConfigError("give either graph= or num_stripes / temporal_topology / spatial_topology, not both")
        if not isinstance(graph, TrackletGraph):
            raise ConfigError(f"graph must be a TrackletGraph (see stgcn_pyg.graphs.tracklet_graph), got {graph!r}")
        return graph
    kwargs = {k: v for k, v in zip(("num_stripes", "temporal", "spatial"), described) if v is not None}
    return tracklet_graph(**kwargs)


class TrackletData(Data):
    """A tracklet: ``frames`` [T, 3, H, W] and two edge sets over N = T*P patch nodes.

    Node ``t * P + p`` is stripe ``p`` of frame ``t``. When batched by
    :class:`torch_geometric.loader.DataLoader`, ``frames`` are concatenated
    along dim 0 ([B*T, 3, H, W]) and both edge sets are offset by the number
    of patch nodes before them, so frame ``g*T + t`` of the batch holds the
    patch nodes ``(g*T + t)*P ... + P - 1``.

    Attributes: ``frames``, ``pid``, ``camid`` (1-element long tensors, so they
    batch into [B]), ``temporal_edge_index``, ``spatial_edge_index``,
    ``num_frames`` (T), ``num_stripes`` (P), ``num_nodes`` (T*P) and ``graph``,
    the :class:`~stgcn_pyg.graphs.TrackletGraph` the edges come from (a list
    of B references in a batch, which the model checks against its own).
    """

    def __inc__(self, key, value, *args, **kwargs):
        if key in ("temporal_edge_index", "spatial_edge_index"):
            return self.num_nodes
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key in ("temporal_edge_index", "spatial_edge_index"):
            return 1
        return super().__cat_dim__(key, value, *args, **kwargs)

    @classmethod
    def from_frames(
        cls,
        frames: torch.Tensor,
        pid: int = -1,
        camid: int = -1,
        num_stripes: int | None = None,
        temporal_topology=None,
        spatial_topology=None,
        *,
        graph: TrackletGraph | None = None,
        **extra,
    ) -> "TrackletData":
        """A tracklet graph from frames [T, 3, H, W] and a :class:`~stgcn_pyg.graphs.TrackletGraph`.

        Without ``graph``, the graph of ``num_stripes`` (default 4) and two
        topology names or files (default the paper's). Loaders pass one shared
        ``graph``, so nothing is resolved per tracklet.
        """
        if frames.dim() != 4:
            raise ValueError(f"frames must be [T, 3, H, W], got shape {tuple(frames.shape)}")
        graph = resolve_graph(graph, num_stripes, temporal_topology, spatial_topology)
        T, P = frames.size(0), graph.num_stripes
        temporal_edge_index, spatial_edge_index = graph.edges(T)
        return cls(
            frames=frames,
            pid=torch.tensor([int(pid)]),
            camid=torch.tensor([int(camid)]),
            temporal_edge_index=temporal_edge_index,
            spatial_edge_index=spatial_edge_index,
            num_frames=T,
            num_stripes=P,
            num_nodes=T * P,
            graph=graph,
            **extra,
        )


def tracklet_batch(
    frames: torch.Tensor,
    pids=None,
    camids=None,
    num_stripes: int | None = None,
    temporal_topology=None,
    spatial_topology=None,
    *,
    graph: TrackletGraph | None = None,
) -> Batch:
    """A :class:`Batch` of tracklet graphs from clips ``frames`` [B, T, 3, H, W] (``graph`` as in ``from_frames``)."""
    if frames.dim() != 5:
        raise ValueError(f"frames must be [B, T, 3, H, W], got shape {tuple(frames.shape)}")
    graph = resolve_graph(graph, num_stripes, temporal_topology, spatial_topology)
    B = frames.size(0)
    pids = [-1] * B if pids is None else [int(p) for p in pids]
    camids = [-1] * B if camids is None else [int(c) for c in camids]
    return Batch.from_data_list([TrackletData.from_frames(frames[b], pids[b], camids[b], graph=graph)
                                 for b in range(B)])
