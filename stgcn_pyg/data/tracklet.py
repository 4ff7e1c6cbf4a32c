"""One tracklet as a PyG graph over its T*P patch nodes."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data

from ..graphs import build_edge_index

__all__ = ["TrackletData", "tracklet_batch"]


class TrackletData(Data):
    """A tracklet: ``frames`` [T, 3, H, W] and two edge sets over N = T*P patch nodes.

    Node ``t * P + p`` is stripe ``p`` of frame ``t``. When batched by
    :class:`torch_geometric.loader.DataLoader`, ``frames`` are concatenated
    along dim 0 ([B*T, 3, H, W]) and both edge sets are offset by the number
    of patch nodes before them, so frame ``g*T + t`` of the batch holds the
    patch nodes ``(g*T + t)*P ... + P - 1``.

    Attributes: ``frames``, ``pid``, ``camid`` (1-element long tensors, so they
    batch into [B]), ``temporal_edge_index``, ``spatial_edge_index``,
    ``num_frames`` (T), ``num_stripes`` (P), ``num_nodes`` (T*P).
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
        num_stripes: int = 4,
        temporal_topology="temporal-complete",
        spatial_topology="spatial-frame-complete",
        **extra,
    ) -> "TrackletData":
        """Build a tracklet graph from frames [T, 3, H, W] and two topology names/files."""
        if frames.dim() != 4:
            raise ValueError(f"frames must be [T, 3, H, W], got shape {tuple(frames.shape)}")
        T, P = frames.size(0), int(num_stripes)
        return cls(
            frames=frames,
            pid=torch.tensor([int(pid)]),
            camid=torch.tensor([int(camid)]),
            temporal_edge_index=build_edge_index(temporal_topology, T, P),
            spatial_edge_index=build_edge_index(spatial_topology, T, P),
            num_frames=T,
            num_stripes=P,
            num_nodes=T * P,
            **extra,
        )


def tracklet_batch(
    frames: torch.Tensor,
    pids=None,
    camids=None,
    num_stripes: int = 4,
    temporal_topology="temporal-complete",
    spatial_topology="spatial-frame-complete",
) -> Batch:
    """A :class:`Batch` of tracklet graphs from clips ``frames`` [B, T, 3, H, W]."""
    if frames.dim() != 5:
        raise ValueError(f"frames must be [B, T, 3, H, W], got shape {tuple(frames.shape)}")
    B = frames.size(0)
    pids = [-1] * B if pids is None else [int(p) for p in pids]
    camids = [-1] * B if camids is None else [int(c) for c in camids]
    items = [
        TrackletData.from_frames(frames[b], pids[b], camids[b], num_stripes, temporal_topology, spatial_topology)
        for b in range(B)
    ]
    return Batch.from_data_list(items)
