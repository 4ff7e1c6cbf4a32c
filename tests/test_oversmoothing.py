"""benchmarks/studies/oversmoothing.py's measures, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch


def test_identical_nodes_are_fully_smoothed(benchmark_module):
    node_similarity = benchmark_module("oversmoothing").node_similarity
    x = torch.tensor([[1.0, 2.0, 2.0]]).repeat(4, 1)[None]  # one graph of 4 equal nodes
    cos, spread = node_similarity(x)
    assert cos.tolist() == pytest.approx([1.0]) and spread.tolist() == pytest.approx([0.0], abs=1e-12)


def test_hand_computed_graphs(benchmark_module):
    node_similarity = benchmark_module("oversmoothing").node_similarity
    # graph 0: two orthogonal unit nodes; graph 1: (1, 0), (1, 1), (-1, 0)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]],
                      [[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]])
    cos, spread = node_similarity(x)
    # graph 0: pairs (a,b)=0, (a,c)=0, (b,c)=1 -> mean 1/3; mean row (1/3, 2/3)
    # graph 1: pairs 1/sqrt2, -1, -1/sqrt2 -> mean -1/3; mean row (1/3, 1/3)
    assert cos.tolist() == pytest.approx([1 / 3, -1 / 3])
    centred0 = (4 / 9 + 4 / 9) + 2 * (1 / 9 + 1 / 9)  # (2/3,-2/3), (-1/3,1/3) twice
    centred1 = (4 / 9 + 1 / 9) + (4 / 9 + 4 / 9) + (16 / 9 + 1 / 9)
    assert spread.tolist() == pytest.approx([math.sqrt(centred0 / 3), math.sqrt(centred1 / 4)])


def test_one_node_graphs_are_an_error(benchmark_module):
    node_similarity = benchmark_module("oversmoothing").node_similarity
    with pytest.raises(ValueError, match="nodes >= 2"):
        node_similarity(torch.ones(3, 1, 4))


def test_measures_every_branch_and_layer_of_a_run_resumably(benchmark_module, finished_run, tiny_root,
                                                             tmp_path, monkeypatch):
    import pandas as pd

    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import load_dataset

    oversmoothing = benchmark_module("oversmoothing")
    monkeypatch.setattr(oversmoothing, "RESULTS", tmp_path)
    run = finished_run("full-seed3")
    oversmoothing.main([str(run), "--out", "smooth"])
    df = pd.read_csv(tmp_path / "smooth.csv")
    _, cfg = load_checkpoint(run / "last.pt")
    m = cfg.resolved_model()
    layers = {"temporal": m.temporal_layers, "spatial": m.spatial_layers}
    assert sorted(zip(df.branch, df.layer)) == sorted((b, k) for b, n in layers.items() for k in range(n + 1))
    queries = len(load_dataset("synthetic", tiny_root).query)
    T = cfg.eval.seq_len
    # a graph per query tracklet (temporal) and per frame of its clip (spatial, within frames)
    assert dict(zip(df.branch, df.graphs)) == {"temporal": queries, "spatial": queries * T}
    assert df.mean_cos.between(-1, 1).all() and df.spread.between(0, 1 + 1e-9).all()
    assert (df.stage == "trained").all() and set(df.seed) == {3}
    text = (tmp_path / "smooth.md").read_text()
    assert "| full | trained | temporal | input |" in text and (tmp_path / "smooth.png").stat().st_size > 0
    oversmoothing.main([str(run), "--out", "smooth"])  # resumed: nothing measured twice
    assert len(pd.read_csv(tmp_path / "smooth.csv")) == len(df)
