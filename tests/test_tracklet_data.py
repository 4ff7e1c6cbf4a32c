"""TrackletData batching through PyG's DataLoader."""

import pytest
import torch
from torch_geometric.loader import DataLoader

from stgcn_pyg import graphs
from stgcn_pyg.data import TrackletData, tracklet_batch
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.graphs import build_edge_index, tracklet_graph


def _tracklet(T, P, pid, seed):
    g = torch.Generator().manual_seed(seed)
    return TrackletData.from_frames(torch.rand(T, 3, 8, 4, generator=g), pid=pid, camid=pid % 3, num_stripes=P)


def test_single_tracklet_fields():
    data = _tracklet(4, 3, pid=7, seed=0)
    assert data.num_nodes == 12
    assert torch.equal(data.temporal_edge_index, build_edge_index("temporal-complete", 4, 3))
    assert torch.equal(data.spatial_edge_index, build_edge_index("spatial-frame-complete", 4, 3))
    assert data.pid.tolist() == [7] and data.camid.tolist() == [1]


def test_loader_batch_matches_tracklets_one_by_one():
    items = [_tracklet(T, P, pid=i, seed=i) for i, (T, P) in enumerate([(4, 4), (2, 4), (3, 2), (4, 4)])]
    batch = next(iter(DataLoader(items, batch_size=4, shuffle=False)))
    assert batch.num_graphs == 4
    assert batch.frames.shape == (13, 3, 8, 4)
    assert batch.pid.tolist() == [0, 1, 2, 3]
    assert batch.num_nodes == sum(d.num_nodes for d in items)
    node_offset, frame_offset = 0, 0
    for g, d in enumerate(items):
        assert int(batch.ptr[g]) == node_offset
        for key in ("temporal_edge_index", "spatial_edge_index"):
            part = batch[key][:, (batch[key] >= node_offset).all(0) & (batch[key] < node_offset + d.num_nodes).all(0)]
            assert torch.equal(part - node_offset, d[key])
        # frames line up with the patch nodes: node n of graph g is frame n // P.
        T = d.num_frames
        assert torch.equal(batch.frames[frame_offset : frame_offset + T], d.frames)
        assert int(batch.num_frames[g]) == T and int(batch.num_stripes[g]) == d.num_stripes
        node_offset += d.num_nodes
        frame_offset += T
    # No edge crosses two tracklets.
    graph_of = batch.batch
    for key in ("temporal_edge_index", "spatial_edge_index"):
        assert torch.equal(graph_of[batch[key][0]], graph_of[batch[key][1]])


def test_tracklet_batch_from_clips():
    clips = torch.rand(3, 4, 3, 8, 4)
    batch = tracklet_batch(clips, pids=[1, 2, 3], camids=[0, 0, 1], num_stripes=2, temporal_topology="temporal-adjacent")
    assert batch.frames.shape == (12, 3, 8, 4)
    assert batch.temporal_edge_index.size(1) == 3 * build_edge_index("temporal-adjacent", 4, 2).size(1)
    assert torch.equal(batch.frames.view(3, 4, 3, 8, 4), clips)
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        tracklet_batch(torch.rand(4, 3, 8, 4))


def test_edges_are_built_once_per_topology_and_shape_not_per_tracklet(monkeypatch):
    built = []
    adjacency = graphs.Topology.adjacency

    def counting_adjacency(self, T, P):
        built.append((self.name, T, P))
        return adjacency(self, T, P)

    monkeypatch.setattr(graphs.Topology, "adjacency", counting_adjacency)
    graphs._edge_index_cached.cache_clear()
    graph = tracklet_graph(3, "temporal-adjacent", "spatial-frame-complete")
    items = [TrackletData.from_frames(torch.zeros(T, 3, 8, 4), graph=graph) for T in (2, 5, 2, 5, 2)]
    assert sorted(built) == [("spatial-frame-complete", 2, 3), ("spatial-frame-complete", 5, 3),
                             ("temporal-adjacent", 2, 3), ("temporal-adjacent", 5, 3)]
    # every tracklet of a length shares the same edge tensors and the one graph object
    assert items[0].temporal_edge_index is items[2].temporal_edge_index is items[4].temporal_edge_index
    assert all(d.graph is graph for d in items)
    tracklet_batch(torch.zeros(4, 5, 3, 8, 4), graph=graph)
    assert len(built) == 4


def test_graph_arguments():
    graph = tracklet_graph(2, "temporal-adjacent")
    assert tracklet_graph(2, "temporal-adjacent", "spatial-frame-complete") is graph
    # a graph pickled to a loader worker and back is the same object, so the model's check is an identity test
    import pickle

    assert pickle.loads(pickle.dumps(graph)) is graph
    data = TrackletData.from_frames(torch.zeros(3, 3, 8, 4), num_stripes=2, temporal_topology="temporal-adjacent")
    assert data.graph is graph and data.num_stripes == 2
    assert torch.equal(data.temporal_edge_index, build_edge_index("temporal-adjacent", 3, 2))
    with pytest.raises(ConfigError, match="not both"):
        TrackletData.from_frames(torch.zeros(3, 3, 8, 4), num_stripes=2, graph=graph)
    with pytest.raises(ConfigError, match="positive integer"):
        tracklet_graph(0)
