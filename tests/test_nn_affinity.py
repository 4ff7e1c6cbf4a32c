"""AffinityGCNConv against the dense reference, by hand, batched, compiled."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from stgcn_pyg.graphs import build_edge_index
from stgcn_pyg.nn import AffinityGCNConv, DenseAffinityGCN, to_dense_affinity

IMPLS = ["dense", "sparse", "gather"]
MP_IMPLS = ["sparse", "gather"]  # the implementations that also run on batched graphs


def _pair(in_ch, out_ch, seed=0, dtype=torch.double):
    torch.manual_seed(seed)
    conv = AffinityGCNConv(in_ch, out_ch).to(dtype)
    with torch.no_grad():
        conv.bias.normal_()  # a zero bias would hide a bias added at the wrong place
    ref = DenseAffinityGCN(in_ch, out_ch).to(dtype)
    ref.load_state_dict(conv.state_dict())
    return conv, ref


def _batched(edge_index, B, N):
    E = edge_index.size(1)
    return edge_index.repeat(1, B) + (torch.arange(B) * N).repeat_interleave(E)


def _mask(edge_index, N):
    mask = torch.zeros(N, N, dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True
    return mask


def test_hand_computed_two_nodes():
    """Two linked nodes: each softmax row is [0, 1]; A + I = ones; D = 2; A_hat = 1/2."""
    conv = AffinityGCNConv(2, 1, bias=False).double()
    with torch.no_grad():
        conv.phi.weight.copy_(torch.eye(2))
        conv.lin.weight.copy_(torch.tensor([[1.0, 0.0]]))
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0]], dtype=torch.double)
    edge_index = torch.tensor([[0, 1], [1, 0]])
    for impl in MP_IMPLS:
        conv.impl = impl
        out = conv(x, edge_index)
        assert torch.allclose(out, torch.tensor([[2.0], [2.0]], dtype=torch.double)), impl


def test_hand_computed_three_node_path_with_affinity():
    """Node 1 has two neighbours whose softmax weights follow the learned scores."""
    conv = AffinityGCNConv(1, 1, bias=False).double()
    with torch.no_grad():
        conv.phi.weight.fill_(1.0)
        conv.lin.weight.fill_(1.0)
    x = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.double)
    edge_index = torch.tensor([[0, 1, 2, 1], [1, 0, 1, 2]])  # path 0 - 1 - 2
    # Row 1: e_10 = 0, e_12 = 2 -> a = softmax(0, 2); rows 0 and 2 have one neighbour (a = 1).
    a10, a12 = torch.softmax(torch.tensor([0.0, 2.0], dtype=torch.double), 0)
    d = 2.0  # every row of A + I sums to 2
    expected = torch.tensor(
        [
            [(0.0 + 1.0 * 1.0) / d],  # (x0 + a01 x1) / 2
            [(a10 * 0.0 + a12 * 2.0 + 1.0) / d],
            [(1.0 * 1.0 + 2.0) / d],
        ],
        dtype=torch.double,
    )
    for impl in MP_IMPLS:
        conv.impl = impl
        assert torch.allclose(conv(x, edge_index), expected), impl


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("T,P,B", [(2, 2, 1), (4, 4, 3), (8, 4, 2), (3, 5, 4)])
def test_matches_dense_reference_on_complete_graphs(impl, T, P, B):
    conv, ref = _pair(12, 7, seed=T * 100 + P * 10 + B)
    conv.impl = impl
    N = T * P
    edge_index = build_edge_index("temporal-complete", T, P)
    x = torch.randn(B, N, 12, dtype=torch.double, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = conv(x, edge_index)
    expected = ref(x_ref)
    assert out.shape == (B, N, 7)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for (name, p), (_, q) in zip(conv.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=f"{impl}: gradient of {name}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("topology", ["spatial-frame-complete", "temporal-adjacent", "temporal-same-stripe"])
def test_matches_masked_dense_reference_on_sparse_topologies(impl, topology):
    T, P, B = 5, 3, 2
    conv, ref = _pair(6, 9, seed=1)  # out > in: propagation runs in the input width
    conv.impl = impl
    edge_index = build_edge_index(topology, T, P)
    x = torch.randn(B, T * P, 6, dtype=torch.double)
    torch.testing.assert_close(conv(x, edge_index), ref(x, _mask(edge_index, T * P)))


@pytest.mark.parametrize("impl", MP_IMPLS)
def test_batched_graphs_equal_per_graph_outputs(impl):
    """A PyG Batch of graphs of different sizes gives each graph's own output."""
    conv, _ = _pair(8, 5, seed=3)
    conv.impl = impl
    shapes = [(2, 4), (5, 2), (3, 3)]
    graphs = [
        Data(x=torch.randn(T * P, 8, dtype=torch.double), edge_index=build_edge_index("temporal-complete", T, P))
        for T, P in shapes
    ]
    batch = Batch.from_data_list(graphs)
    out = conv(batch.x, batch.edge_index)
    for g, data in enumerate(graphs):
        own = conv(data.x, data.edge_index)
        torch.testing.assert_close(out[batch.ptr[g] : batch.ptr[g + 1]], own)


@pytest.mark.parametrize("impl", IMPLS)
def test_static_mode_equals_batch_mode(impl):
    conv, _ = _pair(8, 8, seed=4)
    T, P, B = 4, 3, 3
    N = T * P
    edge_index = build_edge_index("temporal-adjacent", T, P)
    x = torch.randn(B, N, 8, dtype=torch.double)
    conv.impl = impl
    static = conv(x, edge_index)
    conv.impl = "gather"
    batched = conv(x.reshape(B * N, 8), _batched(edge_index, B, N)).view(B, N, 8)
    torch.testing.assert_close(static, batched)


@pytest.mark.parametrize("impl", IMPLS)
def test_permutation_equivariance(impl):
    conv, _ = _pair(6, 4, seed=5)
    conv.impl = impl
    T, P = 3, 4
    N = T * P
    edge_index = build_edge_index("temporal-adjacent", T, P)
    x = torch.randn(1, N, 6, dtype=torch.double)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    out = conv(x, edge_index)
    out_perm = conv(x[:, perm], inv[edge_index])  # node k of the permuted graph is node perm[k]
    torch.testing.assert_close(out_perm, out[:, perm])


@pytest.mark.parametrize("impl", IMPLS)
def test_every_parameter_gets_a_gradient(impl):
    conv, _ = _pair(6, 4, seed=6, dtype=torch.float)
    conv.impl = impl
    x = torch.randn(2, 8, 6)
    conv(x, build_edge_index("temporal-complete", 4, 2)).pow(2).sum().backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{impl}: no gradient for {name}"


@pytest.mark.parametrize("impl", MP_IMPLS)
def test_self_loop_in_edge_index_gets_identity_on_top(impl):
    """A + I also where the softmax gave the diagonal a weight (the PyG-helper trap)."""
    conv, ref = _pair(5, 3, seed=7)
    conv.impl = impl
    N = 6
    full = torch.ones(N, N, dtype=torch.bool)  # complete graph *with* self-loops
    dst, src = full.nonzero(as_tuple=True)
    edge_index = torch.stack([src, dst])
    x = torch.randn(N, 5, dtype=torch.double)
    out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(out, ref(x.unsqueeze(0), full).squeeze(0))
    adj = to_dense_affinity(index, weight, N)
    # Each row of A sums to 1, A + I to 2: A_hat's rows sum to exactly 1 here.
    torch.testing.assert_close(adj.sum(-1), torch.ones(N, dtype=torch.double))
    # The diagonal holds softmax weight + 1, over the degree 2.
    assert bool((adj.diagonal() > 0.5).all())
    # With the loop kept-or-overwritten (what PyG's helpers do) the output differs.
    no_loop = edge_index[:, edge_index[0] != edge_index[1]]
    assert not torch.allclose(conv(x, no_loop), out)


@pytest.mark.parametrize("impl", IMPLS)
def test_returned_weights_reused_and_rows_normalised(impl):
    conv, ref = _pair(6, 6, seed=8)
    conv.impl = impl
    T, P, B = 4, 2, 3
    N = T * P
    edge_index = build_edge_index("temporal-complete", T, P)
    x = torch.randn(B, N, 6, dtype=torch.double)
    out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
    assert index.shape == (2, edge_index.size(1) + N)
    assert weight.shape == (B, edge_index.size(1) + N)
    adj = to_dense_affinity(index, weight, N)
    _, expected_adj = ref(x, return_adjacency=True)
    torch.testing.assert_close(adj, expected_adj)
    # Reusing the weights on new features propagates them without recomputing.
    y = torch.randn(B, N, 6, dtype=torch.double)
    reused = conv(y, index, edge_weight=weight)
    torch.testing.assert_close(reused, ref(y, adj_norm=expected_adj))


def test_auto_picks_dense_for_complete_and_sparse_for_large_sparse_graphs():
    conv = AffinityGCNConv(4, 4)
    x_small = torch.randn(2, 32, 4)
    assert conv.choose_impl(x_small, build_edge_index("temporal-complete", 8, 4)) == "dense"
    # N*N / E: about 23 here (dense), about 128 below (sparse).
    assert conv.choose_impl(torch.randn(2, 256, 4), build_edge_index("temporal-adjacent", 64, 4)) == "dense"
    x_big = torch.randn(2, 256, 4)
    assert conv.choose_impl(x_big, build_edge_index("temporal-adjacent", 256, 1)) == "sparse"
    assert conv.choose_impl(x_small.view(-1, 4), build_edge_index("temporal-complete", 8, 4)) == "sparse"


def test_isolated_nodes_keep_their_own_features():
    conv, ref = _pair(4, 4, seed=9)
    x = torch.randn(1, 5, 4, dtype=torch.double)
    edge_index = torch.tensor([[0, 1], [1, 0]])  # nodes 2..4 have no neighbour
    for impl in IMPLS:
        conv.impl = impl
        out = conv(x, edge_index)
        assert torch.isfinite(out).all()
        expected = x[0, 2:] @ conv.lin.weight.t() + conv.bias
        torch.testing.assert_close(out[0, 2:], expected)
        torch.testing.assert_close(out, ref(x, _mask(edge_index, 5)))


def test_reset_parameters_repr_and_errors():
    conv = AffinityGCNConv(16, 8)
    before = conv.phi.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.phi.weight)
    assert repr(conv) == "AffinityGCNConv(16, 8, impl='auto')"
    ei = build_edge_index("temporal-complete", 2, 2)
    with pytest.raises(ValueError, match="channels"):
        conv(torch.randn(4, 15), ei)
    with pytest.raises(ValueError, match="edge_index"):
        conv(torch.randn(4, 16), ei.t())
    with pytest.raises(ValueError, match="impl"):
        AffinityGCNConv(4, 4, impl="fast")
    with pytest.raises(ValueError, match="static mode"):
        AffinityGCNConv(16, 8, impl="dense")(torch.randn(4, 16), ei)


def test_state_dict_moves_between_conv_and_dense():
    conv, ref = _pair(6, 3)
    assert set(conv.state_dict()) == set(ref.state_dict()) == {"phi.weight", "lin.weight", "bias"}


def test_lower_precision_runs_sparse_in_float32():
    conv = AffinityGCNConv(8, 8, impl="sparse")
    ei = build_edge_index("temporal-complete", 2, 2)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x, ei)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), conv(x, ei), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("mode", ["static", "batch"])
def test_torch_compile_fullgraph_equals_eager(mode):
    torch._dynamo.reset()
    conv = AffinityGCNConv(8, 6)
    T, P, B = 3, 2, 2
    N = T * P
    edge_index = build_edge_index("temporal-complete", T, P)
    x = torch.randn(B, N, 8)
    if mode == "batch":
        x, edge_index = x.reshape(B * N, 8), _batched(edge_index, B, N)
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    torch.testing.assert_close(compiled(x, edge_index), conv(x, edge_index), atol=1e-5, rtol=1e-5)


def test_layer_without_learned_affinity_reuses_given_weights():
    conv, _ = _pair(6, 6, seed=10)
    reuse = AffinityGCNConv(6, 6, learn_affinity=False).double()
    assert reuse.phi is None and "phi.weight" not in reuse.state_dict()
    x = torch.randn(2, 8, 6, dtype=torch.double)
    _, (index, weight) = conv(x, build_edge_index("temporal-complete", 4, 2), return_attention_weights=True)
    reuse.lin.load_state_dict(conv.lin.state_dict())
    reuse.bias.data.copy_(conv.bias.data)
    torch.testing.assert_close(reuse(x, index, edge_weight=weight), conv(x, index, edge_weight=weight))
    with pytest.raises(ValueError, match="learn_affinity=False"):
        reuse(x, build_edge_index("temporal-complete", 4, 2))


@pytest.mark.parametrize("impl", IMPLS)
def test_score_scale_matches_reference_and_softens_the_affinity(impl):
    torch.manual_seed(11)
    conv = AffinityGCNConv(16, 8, impl=impl, scale=16**-0.5).double()
    ref = DenseAffinityGCN(16, 8, scale=16**-0.5).double()
    ref.load_state_dict(conv.state_dict())
    edge_index = build_edge_index("temporal-complete", 4, 2)
    x = 3 * torch.randn(2, 8, 16, dtype=torch.double)
    out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(out, ref(x))
    conv.scale = 1.0
    _, (_, sharp) = conv(x, edge_index, return_attention_weights=True)
    # The largest off-diagonal weight per row is smaller (less one-hot) with the scale.
    off = lambda w: to_dense_affinity(index, w, 8).diagonal_scatter(torch.zeros(2, 8, dtype=torch.double), dim1=-2, dim2=-1)  # noqa: E731
    assert off(weight).amax(-1).mean() < off(sharp).amax(-1).mean()


@pytest.mark.parametrize("impl", IMPLS)
def test_centered_scores_match_reference_and_ignore_a_shift_of_the_graph(impl):
    torch.manual_seed(12)
    conv = AffinityGCNConv(16, 8, impl=impl, center=True).double()
    ref = DenseAffinityGCN(16, 8, center=True).double()
    ref.load_state_dict(conv.state_dict())
    edge_index = build_edge_index("temporal-complete", 4, 2)
    x = torch.randn(3, 8, 16, dtype=torch.double)
    out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(out, ref(x))
    # the hand-written formula: phi of the features minus each graph's mean
    phi = (x - x.mean(1, keepdim=True)) @ conv.phi.weight.t()
    scores = (phi @ phi.transpose(1, 2)).masked_fill(torch.eye(8, dtype=torch.bool), float("-inf"))
    a = scores.softmax(-1) + torch.eye(8, dtype=torch.double)
    d = a.sum(-1).rsqrt()
    torch.testing.assert_close(to_dense_affinity(index, weight, 8), d[..., :, None] * a * d[..., None, :])
    # a different constant added to each graph's nodes leaves its affinity as it was ...
    shift = 5 * torch.randn(3, 1, 16, dtype=torch.double)
    _, (_, shifted) = conv(x + shift, edge_index, return_attention_weights=True)
    torch.testing.assert_close(shifted, weight)
    # ... which the paper's uncentred scores do not
    conv.center = False
    _, (_, raw) = conv(x, edge_index, return_attention_weights=True)
    _, (_, raw_shifted) = conv(x + shift, edge_index, return_attention_weights=True)
    assert not torch.allclose(raw, raw_shifted, atol=1e-3)


@pytest.mark.parametrize("impl", MP_IMPLS)
def test_centered_scores_in_batch_mode_use_each_nodes_graph(impl):
    """Graphs of different sizes in one Batch: centred on their own mean, the same as each alone."""
    torch.manual_seed(13)
    conv = AffinityGCNConv(6, 5, impl=impl, center=True).double()
    graphs = [(build_edge_index("temporal-complete", t, 2), 2 * t) for t in (2, 3, 1)]
    data = [Data(x=torch.randn(n, 6, dtype=torch.double) + 3 * i, edge_index=ei, num_nodes=n)
            for i, (ei, n) in enumerate(graphs)]
    batch = Batch.from_data_list(data)
    out = conv(batch.x, batch.edge_index, batch=batch.batch)
    alone = torch.cat([conv(d.x, d.edge_index) for d in data])  # batch=None: the input is one graph
    torch.testing.assert_close(out, alone)
    wrong = conv(batch.x, batch.edge_index)  # centred on the mean of all graphs together
    assert not torch.allclose(wrong, out, atol=1e-4)
