"""AffinityGCNConv and affinity_norm: by hand, against a per-node formula and the dense reference, batched,
compiled, in half precision; every row normalisation (square, the paper's Eq. 2; softmax; cosine, the layer's
default); and the default layer as a drop-in for GCNConv on KarateClub."""

import subprocess
import sys
import typing

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from stgcn_pyg.graphs import build_edge_index
from stgcn_pyg.nn import (
    AffinityGCNConv,
    DenseAffinityGCN,
    affinity_norm,
    dense_affinity,
    dense_affinity_gcn,
    normalize_with_self_loops,
    to_dense_affinity,
)

IMPLS = ["dense", "sparse", "gather"]
MP_IMPLS = ["sparse", "gather"]  # the implementations that also run on batched graphs
NORMS = ["square", "softmax", "cosine"]


def _pair(in_ch, out_ch, seed=0, dtype=torch.double, normalization="square"):
    torch.manual_seed(seed)
    conv = AffinityGCNConv(in_ch, out_ch, normalization=normalization).to(dtype)
    with torch.no_grad():
        conv.bias.normal_()  # a zero bias would hide a bias added at the wrong place
    ref = DenseAffinityGCN(in_ch, out_ch, normalization=normalization).to(dtype)
    ref.load_state_dict(conv.state_dict())
    return conv, ref


def _batched(edge_index, B, N):
    E = edge_index.size(1)
    return edge_index.repeat(1, B) + (torch.arange(B) * N).repeat_interleave(E)


def _mask(edge_index, N):
    mask = torch.zeros(N, N, dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True
    return mask


def test_default_normalization_is_cosine_and_the_functional_forms_stay_square():
    assert AffinityGCNConv(4, 4).normalization == "cosine"
    assert DenseAffinityGCN(4, 4).normalization == "cosine"
    phi = torch.randn(2, 5, 3, dtype=torch.double)
    torch.testing.assert_close(dense_affinity(phi), dense_affinity(phi, normalization="square"))
    edge_index, score, own = torch.tensor([[0, 1], [1, 0]]), torch.randn(2), torch.rand(2) + 1
    torch.testing.assert_close(affinity_norm(edge_index, score, self_score=own)[1],
                               affinity_norm(edge_index, score, self_score=own, normalization="square")[1])


def test_hand_computed_cosine_three_node_path():
    """Cosine by hand on the path 0 - 1 - 2 with phi = I: rows of 1 + cos over the neighbours only."""
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.double)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # 0->1, 1->0, 1->2, 2->1
    # cos(x0, x1) = cos(x1, x2) = 1/sqrt(2); row 1: two equal neighbours; rows 0 and 2: one neighbour each.
    A = torch.tensor([[0, 1, 0], [1 / 2, 0, 1 / 2], [0, 1, 0]], dtype=torch.double)
    A_hat = (A + torch.eye(3, dtype=torch.double)) / 2  # every row of A + I sums to 2
    conv = AffinityGCNConv(2, 1, bias=False).double()  # the default: cosine
    with torch.no_grad():
        conv.phi.weight.copy_(torch.eye(2))
        conv.lin.weight.copy_(torch.tensor([[1.0, 0.0]]))
    for impl, inp in [("dense", x.unsqueeze(0)), ("sparse", x), ("gather", x)]:
        conv.impl = impl
        out, (index, weight) = conv(inp, edge_index, return_attention_weights=True)
        torch.testing.assert_close(out.reshape(3, 1), A_hat @ x[:, :1])
        torch.testing.assert_close(to_dense_affinity(index, weight.reshape(-1), 3), A_hat)
    # an opposite neighbour gets no weight, an orthogonal one half of an identical one's
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-2.0, 0.0], [0.0, 3.0]], dtype=torch.double)
    star = torch.tensor([[1, 2, 3], [0, 0, 0]])  # 1, 2, 3 -> 0: identical, opposite, orthogonal to node 0
    conv.impl = "gather"
    _, (index, weight) = conv(x, star, return_attention_weights=True)
    row = to_dense_affinity(index, weight, 4)[0]
    torch.testing.assert_close(row, torch.tensor([1 / 2, 2 / 3 / 2**0.5, 0.0, 1 / 3 / 2**0.5], dtype=torch.double))


def test_hand_computed_square_three_node_path():
    """Eq. 2 by hand on the path 0 - 1 - 2 with phi = I: each row over the neighbours and the node itself."""
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.double)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # 0->1, 1->0, 1->2, 2->1
    # e = x x^T: e00 = 1, e01 = 1 | e10 = 1, e11 = 2, e12 = 2 | e21 = 2, e22 = 4; squared over each row:
    A = torch.tensor([[1 / 2, 1 / 2, 0], [1 / 9, 4 / 9, 4 / 9], [0, 1 / 5, 4 / 5]], dtype=torch.double)
    a_hat = (A + torch.eye(3, dtype=torch.double)) / 2  # rows of A sum to 1: d = 2 everywhere
    torch.testing.assert_close(a_hat, torch.tensor([[3 / 4, 1 / 4, 0], [1 / 18, 13 / 18, 4 / 18], [0, 1 / 10, 9 / 10]],
                                                    dtype=torch.double))
    expected_out = torch.tensor([[1, 1 / 4], [14 / 18, 21 / 18], [1 / 10, 19 / 10]], dtype=torch.double)
    # edges in input order (A_hat[i, j] for j -> i), then the loops with the whole diagonal (a_ii + 1) / 2
    expected_weight = torch.tensor([1 / 18, 1 / 4, 1 / 10, 4 / 18, 3 / 4, 13 / 18, 9 / 10], dtype=torch.double)
    conv = AffinityGCNConv(2, 2, bias=False, normalization="square").double()
    with torch.no_grad():
        conv.phi.weight.copy_(torch.eye(2))
        conv.lin.weight.copy_(torch.eye(2))
    for impl in IMPLS:
        conv.impl = impl
        out, (index, weight) = conv(x.unsqueeze(0), edge_index, return_attention_weights=True)
        torch.testing.assert_close(out[0], expected_out, msg=impl)
        torch.testing.assert_close(weight[0], expected_weight, msg=impl)
        torch.testing.assert_close(to_dense_affinity(index, weight[0], 3), a_hat, msg=impl)
        if impl != "dense":
            torch.testing.assert_close(conv(x, edge_index), expected_out, msg=impl)
    torch.testing.assert_close(dense_affinity(x.unsqueeze(0), _mask(edge_index, 3))[0], A)


def test_hand_computed_two_nodes():
    """Softmax: two linked nodes: each softmax row is [0, 1]; A + I = ones; D = 2; A_hat = 1/2."""
    conv = AffinityGCNConv(2, 1, bias=False, normalization="softmax").double()
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
    """Softmax: node 1 has two neighbours whose softmax weights follow the learned scores."""
    conv = AffinityGCNConv(1, 1, bias=False, normalization="softmax").double()
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


def _assert_same_gradients(conv, ref, out, expected, x, x_ref, impl):
    """Backward through both with one random output gradient: equal input and parameter gradients."""
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for (name, p), (_, q) in zip(conv.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=f"{impl}: gradient of {name}")


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("T,P,B", [(2, 2, 1), (4, 4, 3), (8, 4, 2), (3, 5, 4)])
def test_matches_dense_reference_on_complete_graphs(impl, T, P, B, normalization):
    conv, ref = _pair(12, 7, seed=T * 100 + P * 10 + B, normalization=normalization)
    conv.impl = impl
    N = T * P
    edge_index = build_edge_index("temporal-complete", T, P)
    x = torch.randn(B, N, 12, dtype=torch.double, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = conv(x, edge_index)
    expected = ref(x_ref)
    assert out.shape == (B, N, 7)
    torch.testing.assert_close(out, expected)
    _assert_same_gradients(conv, ref, out, expected, x, x_ref, impl)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("topology", ["spatial-frame-complete", "temporal-adjacent", "temporal-same-stripe"])
def test_matches_masked_dense_reference_on_sparse_topologies(impl, topology, normalization):
    T, P, B = 5, 3, 2
    conv, ref = _pair(6, 9, seed=1, normalization=normalization)  # out > in: propagation runs in the input width
    conv.impl = impl
    edge_index = build_edge_index(topology, T, P)
    x = torch.randn(B, T * P, 6, dtype=torch.double, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, expected = conv(x, edge_index), ref(x_ref, _mask(edge_index, T * P))
    torch.testing.assert_close(out, expected)
    if impl != "dense":  # the batch layout: the B graphs as one PyG batch
        flat = conv(x.reshape(B * T * P, 6), _batched(edge_index, B, T * P))
        torch.testing.assert_close(flat.view(B, T * P, -1), expected)
    _assert_same_gradients(conv, ref, out, expected, x, x_ref, impl)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", MP_IMPLS)
def test_batched_graphs_equal_per_graph_outputs(impl, normalization):
    """A PyG Batch of graphs of different sizes gives each graph's own output."""
    conv, _ = _pair(8, 5, seed=3, normalization=normalization)
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


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
def test_static_mode_equals_batch_mode(impl, normalization):
    conv, _ = _pair(8, 8, seed=4, normalization=normalization)
    T, P, B = 4, 3, 3
    N = T * P
    edge_index = build_edge_index("temporal-adjacent", T, P)
    x = torch.randn(B, N, 8, dtype=torch.double)
    conv.impl = impl
    static = conv(x, edge_index)
    conv.impl = "gather"
    batched = conv(x.reshape(B * N, 8), _batched(edge_index, B, N)).view(B, N, 8)
    torch.testing.assert_close(static, batched)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
def test_permutation_equivariance(impl, normalization):
    conv, _ = _pair(6, 4, seed=5, normalization=normalization)
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


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
def test_every_parameter_gets_a_gradient(impl, normalization):
    conv, _ = _pair(6, 4, seed=6, dtype=torch.float, normalization=normalization)
    conv.impl = impl
    x = torch.randn(2, 8, 6)
    conv(x, build_edge_index("temporal-complete", 4, 2)).pow(2).sum().backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{impl}: no gradient for {name}"


@pytest.mark.parametrize("impl", MP_IMPLS)
def test_self_loop_in_edge_index_gets_identity_on_top(impl):
    """Softmax: A + I also where the softmax gave the diagonal a weight (the PyG-helper trap)."""
    conv, ref = _pair(5, 3, seed=7, normalization="softmax")
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


@pytest.mark.parametrize("normalization", ["square", "cosine"])
@pytest.mark.parametrize("impl,layout", [("dense", "static"), ("sparse", "static"), ("gather", "static"),
                                         ("sparse", "batch"), ("gather", "batch")])
def test_explicit_self_loops_change_nothing_in_square_and_cosine(impl, layout, normalization):
    """Square: the node itself is always in its row; cosine: never. Either way explicit loops i -> i change
    nothing; they get weight 0."""
    conv, ref = _pair(5, 3, seed=7, normalization=normalization)
    conv.impl = impl
    N = 6
    full = torch.ones(N, N, dtype=torch.bool)
    dst, src = full.nonzero(as_tuple=True)
    with_loops = torch.stack([src, dst])
    no_loops = with_loops[:, src != dst]
    x = torch.randn(1, N, 5, dtype=torch.double)
    if layout == "batch":
        x = x[0]
    out, (index, weight) = conv(x, with_loops, return_attention_weights=True)
    out_nl, (index_nl, weight_nl) = conv(x, no_loops, return_attention_weights=True)
    torch.testing.assert_close(out, out_nl)
    torch.testing.assert_close(to_dense_affinity(index, weight, N), to_dense_affinity(index_nl, weight_nl, N))
    assert bool((weight[..., : with_loops.size(1)][..., src == dst] == 0).all())
    expected = ref(x.view(1, N, 5), full) if layout == "batch" else ref(x, full)
    torch.testing.assert_close(out.view(1, N, -1), expected)
    torch.testing.assert_close(conv(x, index, edge_weight=weight), out)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("topology", ["temporal-complete", "temporal-adjacent"])
def test_returned_weights_reused_and_rows_normalised(impl, topology, normalization):
    conv, ref = _pair(6, 6, seed=8, normalization=normalization)
    conv.impl = impl
    T, P, B = 4, 2, 3
    N = T * P
    edge_index = build_edge_index(topology, T, P)
    x = torch.randn(B, N, 6, dtype=torch.double)
    out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
    assert index.shape == (2, edge_index.size(1) + N)
    assert weight.shape == (B, edge_index.size(1) + N)
    adj = to_dense_affinity(index, weight, N)
    _, expected_adj = ref(x, _mask(edge_index, N), return_adjacency=True)
    torch.testing.assert_close(adj, expected_adj)
    # Every row of A sums to 1, so d = 2 and A = 2 A_hat - I: entries in [0, 1], rows of 1.
    A = 2 * adj - torch.eye(N, dtype=torch.double)
    torch.testing.assert_close(A.sum(-1), torch.ones(B, N, dtype=torch.double))
    assert bool((A > -1e-12).all() and (A < 1 + 1e-12).all())
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


@pytest.mark.parametrize("normalization", NORMS)
def test_isolated_nodes_keep_their_own_features(normalization):
    conv, ref = _pair(4, 4, seed=9, normalization=normalization)
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
    assert repr(conv) == "AffinityGCNConv(16, 8, impl='auto', normalization='cosine')"
    assert repr(DenseAffinityGCN(4, 2, normalization="softmax")) == "DenseAffinityGCN(4, 2, normalization='softmax')"
    ei = build_edge_index("temporal-complete", 2, 2)
    with pytest.raises(ValueError, match="channels"):
        conv(torch.randn(4, 15), ei)
    with pytest.raises(ValueError, match="edge_index"):
        conv(torch.randn(4, 16), ei.t())
    with pytest.raises(ValueError, match="impl"):
        AffinityGCNConv(4, 4, impl="fast")
    with pytest.raises(ValueError, match="static mode"):
        AffinityGCNConv(16, 8, impl="dense")(torch.randn(4, 16), ei)


def test_invalid_normalization_raises_everywhere():
    match = r"normalization must be one of \('square', 'softmax', 'cosine'\), got 'sqaure'"
    with pytest.raises(ValueError, match=match):
        AffinityGCNConv(4, 4, normalization="sqaure")
    with pytest.raises(ValueError, match=match):
        DenseAffinityGCN(4, 4, normalization="sqaure")
    with pytest.raises(ValueError, match=match):
        dense_affinity(torch.randn(1, 3, 4), normalization="sqaure")
    with pytest.raises(ValueError, match=match):
        dense_affinity_gcn(torch.randn(1, 3, 4), torch.eye(4), torch.eye(4), None, normalization="sqaure")
    with pytest.raises(ValueError, match=match):
        affinity_norm(torch.tensor([[0], [1]]), torch.randn(1), 2, normalization="sqaure")


def test_state_dict_moves_between_conv_and_dense():
    conv, ref = _pair(6, 3)
    assert set(conv.state_dict()) == set(ref.state_dict()) == {"phi.weight", "lin.weight", "bias"}


@pytest.mark.parametrize("normalization", NORMS)
def test_lower_precision_runs_sparse_in_float32(normalization):
    conv = AffinityGCNConv(8, 8, impl="sparse", normalization=normalization)
    ei = build_edge_index("temporal-complete", 2, 2)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x, ei)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), conv(x, ei), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("mode", ["static", "batch"])
def test_torch_compile_fullgraph_equals_eager(mode, normalization):
    torch._dynamo.reset()
    conv = AffinityGCNConv(8, 6, normalization=normalization)
    T, P, B = 3, 2, 2
    N = T * P
    edge_index = build_edge_index("temporal-complete", T, P)
    x = torch.randn(B, N, 8)
    if mode == "batch":
        x, edge_index = x.reshape(B * N, 8), _batched(edge_index, B, N)
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    torch.testing.assert_close(compiled(x, edge_index), conv(x, edge_index), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("normalization", NORMS)
def test_layer_without_learned_affinity_reuses_given_weights(normalization):
    conv, _ = _pair(6, 6, seed=10, normalization=normalization)
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
    """Softmax: the scale of the scores sets how peaked the rows are."""
    torch.manual_seed(11)
    conv = AffinityGCNConv(16, 8, impl=impl, scale=16**-0.5, normalization="softmax").double()
    ref = DenseAffinityGCN(16, 8, scale=16**-0.5, normalization="softmax").double()
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


@pytest.mark.parametrize("normalization", ["square", "cosine"])
@pytest.mark.parametrize("impl,layout", [("dense", "static"), ("sparse", "static"), ("gather", "static"),
                                         ("sparse", "batch"), ("gather", "batch")])
def test_square_and_cosine_normalizations_are_scale_free(impl, layout, normalization):
    """Square: s multiplies every score of a row and cancels in e_ij^2 / sum_k e_ik^2; cosine: a positive s
    cancels in e_ij / sqrt(e_ii e_jj) (also against the reference)."""
    torch.manual_seed(11)
    conv = AffinityGCNConv(16, 8, impl=impl, normalization=normalization).double()
    edge_index = build_edge_index("temporal-adjacent", 4, 2)
    x = 3 * torch.randn(2, 8, 16, dtype=torch.double)
    if layout == "batch":
        x, edge_index = x.reshape(16, 16), _batched(edge_index, 2, 8)
    out, (_, weight) = conv(x, edge_index, return_attention_weights=True)
    for scale in (16**-0.5, 1e-6, 1e6) + ((-2.0,) if normalization == "square" else ()):
        conv.scale = scale
        scaled, (_, scaled_weight) = conv(x, edge_index, return_attention_weights=True)
        torch.testing.assert_close(scaled_weight, weight)
        torch.testing.assert_close(scaled, out)
    ref = DenseAffinityGCN(16, 8, scale=1e3, normalization=normalization).double()
    ref.load_state_dict(conv.state_dict())
    mask = _mask(build_edge_index("temporal-adjacent", 4, 2), 8)
    torch.testing.assert_close(out.view(2, 8, 8), ref(x.view(2, 8, 16), mask))


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
def test_centered_scores_match_reference_and_ignore_a_shift_of_the_graph(impl, normalization):
    torch.manual_seed(12)
    conv = AffinityGCNConv(16, 8, impl=impl, center=True, normalization=normalization).double()
    ref = DenseAffinityGCN(16, 8, center=True, normalization=normalization).double()
    ref.load_state_dict(conv.state_dict())
    edge_index = build_edge_index("temporal-complete", 4, 2)
    x = torch.randn(3, 8, 16, dtype=torch.double)
    out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(out, ref(x))
    # the hand-written formula: phi of the features minus each graph's mean
    phi = (x - x.mean(1, keepdim=True)) @ conv.phi.weight.t()
    scores = phi @ phi.transpose(1, 2)
    if normalization == "square":  # the complete graph and the node itself: every score of the row
        a = scores**2 / (scores**2).sum(-1, keepdim=True)
    elif normalization == "cosine":  # the complete graph without the node itself
        norm = phi.norm(dim=-1)
        w = (1 + scores / (norm[..., :, None] * norm[..., None, :])).masked_fill(torch.eye(8, dtype=torch.bool), 0)
        a = w / w.sum(-1, keepdim=True)
    else:
        a = scores.masked_fill(torch.eye(8, dtype=torch.bool), float("-inf")).softmax(-1)
    a = a + torch.eye(8, dtype=torch.double)
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


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", MP_IMPLS)
def test_centered_scores_in_batch_mode_use_each_nodes_graph(impl, normalization):
    """Graphs of different sizes in one Batch: centred on their own mean, the same as each alone."""
    torch.manual_seed(13)
    conv = AffinityGCNConv(6, 5, impl=impl, center=True, normalization=normalization).double()
    graphs = [(build_edge_index("temporal-complete", t, 2), 2 * t) for t in (2, 3, 1)]
    data = [Data(x=torch.randn(n, 6, dtype=torch.double) + 3 * i, edge_index=ei, num_nodes=n)
            for i, (ei, n) in enumerate(graphs)]
    batch = Batch.from_data_list(data)
    out = conv(batch.x, batch.edge_index, batch=batch.batch)
    alone = torch.cat([conv(d.x, d.edge_index) for d in data])  # batch=None: the input is one graph
    torch.testing.assert_close(out, alone)
    wrong = conv(batch.x, batch.edge_index)  # centred on the mean of all graphs together
    assert not torch.allclose(wrong, out, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# affinity_norm, the layer against an independent per-node formula, explicit self-loops and edge order


def test_affinity_norm_square_by_hand():
    """3 nodes: node 1 has neighbours 0, 2 and an explicit loop; node 0 has neighbour 1; node 2 none, score 0."""
    edge_index = torch.tensor([[0, 2, 1, 1], [1, 1, 1, 0]])  # 0->1, 2->1, 1->1 (explicit self-loop), 1->0
    score = torch.tensor([1.0, 2.0, 99.0, 3.0], dtype=torch.double)  # the explicit loop's score is not used ...
    self_score = torch.tensor([4.0, 2.0, 0.0], dtype=torch.double)  # ... e_11 is self_score[1], counted once
    index, weight = affinity_norm(edge_index, score, 3, self_score=self_score)
    # row 1: e^2 = 1, 4 (neighbours), 4 (itself) -> 1/9, 4/9, 4/9; row 0: 9 (node 1), 16 (itself) -> 9/25, 16/25;
    # row 2: all zero -> A's row is zero and d_2 = 1 (the node keeps only its identity); d = [2, 2, 1].
    r2 = 2**0.5
    expected = torch.tensor(
        [1 / 9 / 2, 4 / 9 / r2, 0.0, 9 / 25 / 2, (16 / 25 + 1) / 2, (4 / 9 + 1) / 2, 1.0], dtype=torch.double
    )
    assert torch.equal(index, torch.tensor([[0, 2, 1, 1, 0, 1, 2], [1, 1, 1, 0, 0, 1, 2]]))
    torch.testing.assert_close(weight, expected)
    # the default normalisation is square; num_nodes defaults to the length of self_score
    torch.testing.assert_close(affinity_norm(edge_index, score, self_score=self_score)[1], weight)
    # B graphs sharing edge_index normalise each row of scores on its own
    other, other_self = torch.randn(4, dtype=torch.double), torch.randn(3, dtype=torch.double)
    _, both = affinity_norm(edge_index, torch.stack([score, other]), 3,
                            self_score=torch.stack([self_score, other_self]))
    _, other_weight = affinity_norm(edge_index, other, 3, self_score=other_self)
    torch.testing.assert_close(both, torch.stack([weight, other_weight]))


def test_affinity_norm_softmax_by_hand():
    """3 nodes: node 1 has neighbours 0, 2 and itself with exp-scores 1 : 2 : 1; node 0 has neighbour 1; node 2 none."""
    edge_index = torch.tensor([[0, 2, 1, 1], [1, 1, 1, 0]])  # 0->1, 2->1, 1->1 (explicit self-loop), 1->0
    score = torch.log(torch.tensor([1.0, 2.0, 1.0, 5.0], dtype=torch.double))
    index, weight = affinity_norm(edge_index, score, num_nodes=3, normalization="softmax")
    # a_10 = 1/4, a_12 = 1/2, a_11 = 1/4, a_01 = 1; d = 1 + row sums of A = [2, 2, 1].
    r2 = 2**0.5
    expected = torch.tensor([1 / 4 / 2, 1 / 2 / r2, 1 / 4 / 2, 1 / 2, 1 / 2, 1 / 2, 1.0], dtype=torch.double)
    assert torch.equal(index, torch.tensor([[0, 2, 1, 1, 0, 1, 2], [1, 1, 1, 0, 0, 1, 2]]))
    torch.testing.assert_close(weight, expected)
    # the explicit loop and the appended one sum to the diagonal entry (a_11 + 1) / d_1
    torch.testing.assert_close(to_dense_affinity(index, weight, 3)[1, 1], torch.tensor(5 / 8, dtype=torch.double))
    # num_nodes defaults to max index + 1 (here 2: node 2 is only a source) ...
    assert affinity_norm(edge_index[:, 3:], score[3:], normalization="softmax")[0].shape == (2, 3)
    # ... and B graphs sharing edge_index normalise each row of scores on its own
    other = torch.randn(4, dtype=torch.double)
    _, both = affinity_norm(edge_index, torch.stack([score, other]), 3, normalization="softmax")
    _, other_weight = affinity_norm(edge_index, other, 3, normalization="softmax")
    torch.testing.assert_close(both, torch.stack([weight, other_weight]))


def test_affinity_norm_cosine_by_hand():
    """3 nodes: node 1 has neighbours 0, 2 and an explicit loop; node 0 has neighbours 1 and 2; node 2 none."""
    edge_index = torch.tensor([[0, 2, 1, 1, 2], [1, 1, 1, 0, 0]])  # 0->1, 2->1, 1->1, 1->0, 2->0
    self_score = torch.tensor([4.0, 1.0, 9.0], dtype=torch.double)  # |phi| = 2, 1, 3
    # cosines e_ij / sqrt(e_ii e_jj): c_10 = 1/2, c_12 = -1 (opposite), c_01 = 0, c_02 = -1/3; the loop's 99 unused
    score = torch.tensor([1.0, -3.0, 99.0, 0.0, -2.0], dtype=torch.double)
    index, weight = affinity_norm(edge_index, score, 3, self_score=self_score, normalization="cosine")
    # row 1: 1 + c = 3/2, 0 -> a_10 = 1, a_12 = 0; row 0: 1, 2/3 -> a_01 = 3/5, a_02 = 2/5; row 2 empty.
    # d = [2, 2, 1]; explicit loop weight 0, appended loops 1 / d.
    expected = torch.tensor([1 / 2, 0.0, 0.0, 3 / 5 / 2, 2 / 5 / 2**0.5, 1 / 2, 1 / 2, 1.0], dtype=torch.double)
    assert torch.equal(index, torch.tensor([[0, 2, 1, 1, 2, 0, 1, 2], [1, 1, 1, 0, 0, 0, 1, 2]]))
    torch.testing.assert_close(weight, expected)
    # a node with e_ii = 0 (phi zero) has cosine 0 with every neighbour: node 0's row becomes uniform
    zero = self_score.clone()
    zero[2] = 0.0
    _, w = affinity_norm(edge_index, score, 3, self_score=zero, normalization="cosine")
    torch.testing.assert_close(w[3:5], torch.tensor([1 / 2 / 2, 1 / 2 / 2**0.5], dtype=torch.double))
    # every neighbour exactly opposite: an empty row of A, the node keeps its identity (d = 1)
    _, w = affinity_norm(torch.tensor([[1], [0]]), torch.tensor([-2.0]), 2, self_score=torch.tensor([1.0, 4.0]),
                         normalization="cosine")
    torch.testing.assert_close(w, torch.tensor([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("normalization", NORMS)
def test_affinity_norm_gradient_dtype_and_errors(normalization):
    edge_index = torch.tensor([[0, 2, 1, 1, 2], [1, 1, 1, 0, 0]])
    score = torch.randn(5, dtype=torch.double, requires_grad=True)
    self_score = torch.randn(3, dtype=torch.double, requires_grad=True)

    def norm(s, s_self, **kw):
        return affinity_norm(edge_index, s, 3, self_score=s_self, normalization=normalization, **kw)[1]

    assert torch.autograd.gradcheck(norm, (score, self_score))
    # half-precision scores are normalised in float32, also under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = norm(score.detach().to(torch.bfloat16), self_score.detach().to(torch.bfloat16))
    assert w.dtype == torch.float32
    with pytest.raises(ValueError, match="score must be"):
        norm(torch.randn(4), self_score)
    with pytest.raises(ValueError, match="edge_index must be"):
        affinity_norm(edge_index.t(), torch.randn(5), 3, self_score=self_score, normalization=normalization)


@pytest.mark.parametrize("normalization", ["square", "cosine"])
def test_affinity_norm_square_and_cosine_need_each_nodes_own_score(normalization):
    edge_index = torch.tensor([[0, 2, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match=f"normalization='{normalization}' needs self_score"):
        affinity_norm(edge_index, torch.randn(3), 3, normalization=normalization)
    with pytest.raises(ValueError, match="self_score must be"):
        affinity_norm(edge_index, torch.randn(3), 3, self_score=torch.randn(4), normalization=normalization)
    with pytest.raises(ValueError, match="self_score must be"):
        affinity_norm(edge_index, torch.randn(2, 3), 3, self_score=torch.randn(3), normalization=normalization)
    # softmax does not use it
    index, weight = affinity_norm(edge_index, torch.zeros(3), 3, self_score=torch.randn(3), normalization="softmax")
    torch.testing.assert_close(weight, affinity_norm(edge_index, torch.zeros(3), 3, normalization="softmax")[1])


@pytest.mark.parametrize("normalization", NORMS)
def test_dense_affinity_rows_sum_to_one_before_the_identity(normalization):
    """A (before A + I) on a partial topology: entries in [0, 1], zero off the allowed set, rows of 1."""
    torch.manual_seed(14)
    N = 12
    edge_index = build_edge_index("temporal-adjacent", 4, 3)
    mask = _mask(edge_index, N)
    mask[5] = False  # a node without neighbours
    phi = torch.randn(3, N, 6, dtype=torch.double)
    A = dense_affinity(phi, mask, normalization=normalization)
    eye = torch.eye(N, dtype=torch.bool)
    allowed = {"square": mask | eye, "softmax": mask, "cosine": mask & ~eye}[normalization]
    assert bool((A[:, ~allowed] == 0).all())
    assert bool(((A >= 0) & (A <= 1)).all())
    rows = torch.ones(3, N, dtype=torch.double)
    if normalization != "square":
        rows[:, 5] = 0  # softmax, cosine: an empty row stays empty; square: the node itself is its row, a_55 = 1
    torch.testing.assert_close(A.sum(-1), rows)
    if normalization == "square":
        torch.testing.assert_close(A[:, 5, 5], torch.ones(3, dtype=torch.double))
        # the mask's diagonal makes no difference: the node itself is always in
        torch.testing.assert_close(dense_affinity(phi, mask | torch.eye(N, dtype=torch.bool)), A)
        torch.testing.assert_close(dense_affinity(phi), dense_affinity(phi, torch.ones(N, N, dtype=torch.bool)))
    if normalization == "cosine":
        # nor for cosine: the node itself is never in
        torch.testing.assert_close(dense_affinity(phi, mask | eye, normalization="cosine"), A)


def _loop_reference(x, edge_index, conv):
    """The layer's formula one node at a time in numpy float64 (shares no code with the layer), per
    ``conv.normalization``: square over the neighbours and the node itself, softmax over the neighbours, or
    1 + cos over the neighbours but the node itself.

    x [B, N, F] -> (out [B, N, F_out], A_hat [B, N, N]).
    """
    x = x.detach().double().numpy()
    phi_w = conv.phi.weight.detach().double().numpy()
    lin_w = conv.lin.weight.detach().double().numpy()
    bias = conv.bias.detach().double().numpy()
    src, dst = edge_index.tolist()
    B, N, _ = x.shape
    outs, adjs = [], []
    for g in range(B):
        z = x[g] - x[g].mean(0) if conv.center else x[g]
        phi = z @ phi_w.T
        adj = np.eye(N)  # the identity on top of the rows of A
        for i in range(N):
            nbrs = sorted({j for j, t in zip(src, dst) if t == i})
            if conv.normalization == "square":
                nbrs = sorted(set(nbrs) | {i})  # the node itself, once
            elif conv.normalization == "cosine":
                nbrs = [j for j in nbrs if j != i]
            if not nbrs:
                continue
            e = np.array([conv.scale * phi[i] @ phi[j] for j in nbrs])
            if conv.normalization == "cosine":
                n_i, n_j = np.linalg.norm(phi[i]), np.array([np.linalg.norm(phi[j]) for j in nbrs])
                w = 1 + np.where(n_i * n_j > 0, phi[nbrs] @ phi[i] / np.maximum(n_i * n_j, 1e-300), 0.0)
                if not w.sum():
                    continue
                a = w / w.sum()
            elif conv.normalization == "square":
                if not (e**2).sum():
                    continue  # an all-zero row: A's row is zero
                a = e**2 / (e**2).sum()
            else:
                a = np.exp(e - e.max())
                a = a / a.sum()
            for j, a_ij in zip(nbrs, a):
                adj[i, j] += a_ij
        d = adj.sum(1)
        adj = adj / np.sqrt(np.outer(d, d))
        outs.append(adj @ x[g] @ lin_w.T + bias)
        adjs.append(adj)
    return torch.from_numpy(np.stack(outs)), torch.from_numpy(np.stack(adjs))


def _messy_graph(N=7, seed=0):
    """Random edges with self-loops on some nodes, none into the last node, columns shuffled (not CSR order)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(N, N, generator=g) < 0.5
    mask[-1] = False  # the last node has no neighbour
    mask[0, 0] = mask[1, 1] = True
    mask[0, 1] = mask[2, 0] = True
    dst, src = mask.nonzero(as_tuple=True)
    perm = torch.randperm(dst.numel(), generator=g)
    return torch.stack([src, dst])[:, perm]


LAYOUTS = [("dense", "static"), ("sparse", "static"), ("gather", "static"), ("sparse", "batch"), ("gather", "batch")]


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl,layout", LAYOUTS)
@pytest.mark.parametrize("options", [{}, {"scale": 0.3, "center": True}], ids=["plain", "scaled-centred"])
def test_matches_per_node_formula_with_self_loops_and_unsorted_edges(impl, layout, options, normalization):
    torch.manual_seed(15)
    conv = AffinityGCNConv(5, 4, impl=impl, normalization=normalization, **options).double()
    with torch.no_grad():
        conv.bias.normal_()
    B, N = 3, 7
    edge_index = _messy_graph(N)
    x = torch.randn(B, N, 5, dtype=torch.double)
    expected, expected_adj = _loop_reference(x, edge_index, conv)
    if layout == "static":
        out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
        adj = to_dense_affinity(index, weight, N)
        reused = conv(x, index, edge_weight=weight)
    else:
        batch = torch.arange(B).repeat_interleave(N)
        flat, big = x.reshape(B * N, 5), _batched(edge_index, B, N)
        out, (index, weight) = conv(flat, big, return_attention_weights=True, batch=batch)
        full = to_dense_affinity(index, weight, B * N)
        adj = torch.stack([full[g * N : (g + 1) * N, g * N : (g + 1) * N] for g in range(B)])
        torch.testing.assert_close(full.sum(), adj.sum())  # nothing outside the graphs' blocks
        reused = conv(flat, index, edge_weight=weight)
        out, reused = out.view(B, N, -1), reused.view(B, N, -1)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(adj, expected_adj)
    # the returned (edge_index, weight) propagate to the same output
    torch.testing.assert_close(reused, out)


@pytest.mark.parametrize("normalization", NORMS)
def test_dense_path_with_self_loops_in_edge_index_returns_each_weight_once(normalization):
    """Regression: the dense path gave an explicit loop the whole diagonal entry, and the appended loop again."""
    torch.manual_seed(16)
    conv = AffinityGCNConv(5, 3, impl="dense", normalization=normalization).double()
    N = 6
    dst, src = torch.ones(N, N).nonzero(as_tuple=True)  # complete graph *with* self-loops
    edge_index = torch.stack([src, dst])
    x = torch.randn(2, N, 5, dtype=torch.double)
    out, (index, weight) = conv(x, edge_index, return_attention_weights=True)
    # every row of A sums to 1, so d = 2 everywhere and every row of A_hat sums to exactly 1
    torch.testing.assert_close(to_dense_affinity(index, weight, N).sum(-1), torch.ones(2, N, dtype=torch.double))
    torch.testing.assert_close(conv(x, index, edge_weight=weight), out)
    conv.impl = "gather"
    gather_out, (gather_index, gather_weight) = conv(x, edge_index, return_attention_weights=True)
    assert torch.equal(index, gather_index)
    torch.testing.assert_close(weight, gather_weight)
    torch.testing.assert_close(out, gather_out)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
def test_returned_weights_follow_the_order_of_edge_index(impl, normalization):
    """Regression: the static sparse path paired CSR-sorted weights with the caller's unsorted edge_index."""
    torch.manual_seed(17)
    conv = AffinityGCNConv(6, 4, impl=impl, normalization=normalization).double()
    T, P, B = 3, 2, 2
    sorted_index = build_edge_index("temporal-adjacent", T, P)
    perm = torch.randperm(sorted_index.size(1), generator=torch.Generator().manual_seed(1))
    x = torch.randn(B, T * P, 6, dtype=torch.double)
    out, (index, weight) = conv(x, sorted_index[:, perm], return_attention_weights=True)
    ref_out, (_, ref_weight) = conv(x, sorted_index, return_attention_weights=True)
    E = sorted_index.size(1)
    assert torch.equal(index[:, :E], sorted_index[:, perm])
    torch.testing.assert_close(weight[:, :E], ref_weight[:, perm])
    torch.testing.assert_close(weight[:, E:], ref_weight[:, E:])
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(conv(x, index, edge_weight=weight), out)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
def test_graph_without_edges_is_a_linear_layer(impl, normalization):
    conv, _ = _pair(4, 3, seed=18, normalization=normalization)
    conv.impl = impl
    x = torch.randn(2, 5, 4, dtype=torch.double)
    out, (index, weight) = conv(x, torch.empty(2, 0, dtype=torch.long), return_attention_weights=True)
    torch.testing.assert_close(out, conv.lin(x) + conv.bias)
    assert torch.equal(index, torch.arange(5).repeat(2, 1))
    torch.testing.assert_close(weight, torch.ones(2, 5, dtype=torch.double))


def _zero_score_cases():
    """(name, conv options, how to break the inputs): rows whose scores are all zero."""
    def dead_phi(conv, x):
        with torch.no_grad():
            conv.phi.weight.zero_()
        return x

    def zero_nodes(conv, x):
        return x * (torch.arange(x.size(-2)) % 3 != 0).to(x.dtype).unsqueeze(-1)  # every third node x = 0

    def zero_features(conv, x):
        return torch.zeros_like(x)

    def constant_graph(conv, x):  # centred on its mean, every node is 0
        return x[..., :1, :].expand_as(x).clone()

    return [("dead-phi", {}, dead_phi), ("zero-nodes", {}, zero_nodes), ("zero-x", {}, zero_features),
            ("constant-centred", {"center": True}, constant_graph)]


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl,layout", LAYOUTS)
@pytest.mark.parametrize("case", _zero_score_cases(), ids=lambda c: c[0])
def test_all_zero_scores_give_finite_outputs_and_gradients(case, impl, layout, normalization):
    """A row of zero scores (zero features, a dead phi): A's row is zero (square), no NaN/inf anywhere."""
    _, options, breaking = case
    torch.manual_seed(23)
    conv = AffinityGCNConv(5, 4, impl=impl, normalization=normalization, **options).double()
    ref = DenseAffinityGCN(5, 4, normalization=normalization, **options).double()
    B, N = 2, 7
    edge_index = _messy_graph(N)
    x = breaking(conv, torch.randn(B, N, 5, dtype=torch.double))
    ref.load_state_dict(conv.state_dict())
    x_in = x.clone().requires_grad_(True)
    if layout == "batch":
        out = conv(x_in.reshape(B * N, 5), _batched(edge_index, B, N),
                   batch=torch.arange(B).repeat_interleave(N)).view(B, N, -1)
    else:
        out = conv(x_in, edge_index)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref(x, _mask(edge_index, N)))
    out.pow(2).sum().backward()
    for name, g in [("x", x_in.grad)] + [(n, p.grad) for n, p in conv.named_parameters()]:
        assert g is not None and torch.isfinite(g).all(), f"gradient of {name}"
    if normalization == "square" and case[0] == "zero-nodes":
        # a zero node's row is zero (it keeps only its identity: W 0 + b), and it weighs nothing in other rows
        zero = torch.arange(N) % 3 == 0
        torch.testing.assert_close(out[:, zero], conv.bias.expand(B, int(zero.sum()), -1))
        A = dense_affinity(x @ conv.phi.weight.t(), _mask(edge_index, N))
        assert bool((A[:, zero] == 0).all() and (A[:, :, zero] == 0).all())
    elif normalization == "square":
        # every row is zero: A = 0, A_hat = I, a linear layer
        torch.testing.assert_close(out, conv.lin(x) + conv.bias)
    elif normalization == "cosine" and case[0] != "zero-nodes":
        # every cosine is 0: uniform rows over the neighbours but the node itself, a fixed-adjacency GCN
        nbr = _mask(edge_index, N) & ~torch.eye(N, dtype=torch.bool)
        A = nbr.double() / nbr.sum(-1, keepdim=True).clamp_min(1)
        torch.testing.assert_close(out, ref(x, adj_norm=normalize_with_self_loops(A).expand(B, N, N)))


def test_all_zero_scores_in_the_functional_forms_are_finite():
    edge_index = torch.tensor([[0, 2, 1, 1], [1, 1, 1, 0]])
    score = torch.zeros(4, dtype=torch.double, requires_grad=True)
    self_score = torch.zeros(3, dtype=torch.double, requires_grad=True)
    index, weight = affinity_norm(edge_index, score, 3, self_score=self_score)
    torch.testing.assert_close(to_dense_affinity(index, weight, 3), torch.eye(3, dtype=torch.double))
    weight.sum().backward()
    assert torch.isfinite(score.grad).all() and torch.isfinite(self_score.grad).all()
    phi = torch.zeros(2, 4, 3, dtype=torch.double, requires_grad=True)
    A = dense_affinity(phi)
    assert bool((A == 0).all())
    normalize_with_self_loops(A).sum().backward()
    assert torch.isfinite(phi.grad).all()


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl,layout", LAYOUTS)
def test_gradcheck_in_double(impl, layout, normalization):
    """Gradients with respect to x, phi, lin and bias, on a graph with explicit loops and an empty row."""
    torch.manual_seed(24)
    conv = AffinityGCNConv(3, 2, impl=impl, normalization=normalization, center=True).double()
    B, N = 2, 5
    edge_index = _messy_graph(N, seed=2)
    x = torch.randn(B, N, 3, dtype=torch.double, requires_grad=True)
    names = [n for n, _ in conv.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in conv.named_parameters()]

    def run(x, *params):
        state = dict(zip(names, params))
        if layout == "batch":
            args = (x.reshape(B * N, 3), _batched(edge_index, B, N))
            return torch.func.functional_call(conv, state, args, {"batch": torch.arange(B).repeat_interleave(N)})
        return torch.func.functional_call(conv, state, (x, edge_index))

    assert torch.autograd.gradcheck(run, (x, *params))


def test_edge_weight_of_the_wrong_length_raises():
    conv = AffinityGCNConv(4, 4)
    ei = build_edge_index("temporal-complete", 2, 2)
    with pytest.raises(ValueError, match="edge_weight must be"):
        conv(torch.randn(2, 4, 4), ei, edge_weight=torch.rand(ei.size(1) + 4))


def test_forward_overloads_type_the_attention_return():
    get_overloads = getattr(typing, "get_overloads", None)
    if get_overloads is None:
        pytest.skip("typing.get_overloads needs Python 3.11")
    returns = [typing.get_type_hints(f)["return"] for f in get_overloads(AffinityGCNConv.forward)]
    assert torch.Tensor in returns
    assert tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] in returns


def test_import_and_sparse_path_leave_the_warning_filters_alone():
    """The CSR 'beta' warning is silenced around the sparse calls only, not for the whole process.

    In a fresh interpreter: torch warns once per process, and pytest's own filters would hide it here.
    """
    code = (
        "import warnings, torch\n"
        "from stgcn_pyg.nn import AffinityGCNConv\n"
        "patterns = [f[1].pattern for f in warnings.filters if f[1] is not None]\n"
        "assert not any('Sparse CSR' in p for p in patterns), 'import installed a filter for the CSR warning'\n"
        "before = list(warnings.filters)\n"
        "conv = AffinityGCNConv(4, 4, impl='sparse')\n"
        "conv(torch.randn(2, 4, 4), torch.tensor([[0, 1, 2], [1, 2, 3]]))\n"  # -W error: a warning would raise
        "assert warnings.filters == before, 'the call changed the warning filters'\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------------
# half precision: the affinity in float32, the propagation in bf16


def _wide_features(B=2, N=16, F=2048, seed=19):
    # post-ReLU features with a large norm: scores phi_i . phi_j in the thousands, whole units apart in bf16
    g = torch.Generator().manual_seed(seed)
    return 4 * torch.relu(torch.randn(B, N, F, generator=g))


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl,layout", LAYOUTS)
def test_bf16_autocast_computes_the_affinity_in_float32(impl, layout, normalization):
    torch.manual_seed(20)
    conv = AffinityGCNConv(2048, 64, impl=impl, normalization=normalization)
    x = _wide_features()
    B, N, _ = x.shape
    edge_index = build_edge_index("temporal-complete", 4, 4)
    if layout == "batch":
        x, edge_index = x.reshape(B * N, -1), _batched(edge_index, B, N)
    out32, (_, w32) = conv(x, edge_index, return_attention_weights=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16, (_, w16) = conv(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(w16.float(), w32)
    assert w16.dtype == torch.float32
    # only the propagation (lin, A @ X) is in bf16: a fraction of a percent of the output's scale
    assert (out16.float() - out32).abs().max() < 0.01 * out32.abs().max()


@pytest.mark.parametrize("normalization", NORMS)
def test_bf16_autocast_dense_reference_computes_the_affinity_in_float32(normalization):
    torch.manual_seed(21)
    ref = DenseAffinityGCN(2048, 64, normalization=normalization)
    x = _wide_features()
    out32, adj32 = ref(x, return_adjacency=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16, adj16 = ref(x, return_adjacency=True)
        # phi in bf16 here, the normalisation still in float32
        alpha16 = dense_affinity(x @ ref.phi.weight.t(), normalization=normalization)
    torch.testing.assert_close(adj16.float(), adj32)
    assert adj16.dtype == alpha16.dtype == torch.float32
    assert (out16.float() - out32).abs().max() < 0.01 * out32.abs().max()
    assert normalize_with_self_loops(alpha16.to(torch.bfloat16)).dtype == torch.float32


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("impl", IMPLS)
def test_bf16_layer_scores_its_bf16_values_in_float32(impl, normalization):
    """A layer cast to bf16 (no autocast): the affinity equals float32 math on the same bf16-rounded values."""
    torch.manual_seed(22)
    conv = AffinityGCNConv(2048, 64, impl=impl, normalization=normalization)
    half = AffinityGCNConv(2048, 64, impl=impl, normalization=normalization).to(torch.bfloat16)
    half.load_state_dict(conv.state_dict())
    conv.load_state_dict(half.state_dict())  # float32 copies of the bf16-rounded parameters
    x16 = _wide_features().to(torch.bfloat16)
    edge_index = build_edge_index("temporal-complete", 4, 4)
    out16, (_, w16) = half(x16, edge_index, return_attention_weights=True)
    out32, (_, w32) = conv(x16.float(), edge_index, return_attention_weights=True)
    torch.testing.assert_close(w16.float(), w32)
    assert out16.dtype == torch.bfloat16 and w16.dtype == torch.float32
    assert (out16.float() - out32).abs().max() < 0.02 * out32.abs().max()


# ---------------------------------------------------------------------------------------------------------------
# the default layer as a drop-in for GCNConv (issue 26; the figures over 10 seeds: benchmarks/studies/dropin.py)


def _karate_accuracy(make_conv, seed: int) -> float:
    """KarateClub as in PyG's example: one-hot features, 34 -> 16 -> 4, Adam 0.01 (weight decay 5e-4),
    200 steps on the 4 labelled nodes, accuracy over all 34 nodes."""
    from torch_geometric.datasets import KarateClub

    data = KarateClub()[0]
    torch.manual_seed(seed)
    conv1, conv2 = make_conv(34, 16), make_conv(16, 4)
    params = [*conv1.parameters(), *conv2.parameters()]
    opt = torch.optim.Adam(params, lr=0.01, weight_decay=5e-4)

    def forward():
        return conv2(torch.relu(conv1(data.x, data.edge_index)), data.edge_index)

    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(forward()[data.train_mask], data.y[data.train_mask]).backward()
        opt.step()
    with torch.no_grad():
        return (forward().argmax(-1) == data.y).double().mean().item()


def test_default_layer_learns_karate_club_like_gcnconv():
    """Worst of seeds 1-3 of the default layer within 0.15 of GCNConv's mean; the paper's Eq. 2 is not
    (its first layer keeps most of each row for the node itself: one-hot features make phi orthogonal)."""
    from torch_geometric.nn import GCNConv

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 34 nodes: threads only add overhead
    try:
        gcn = [_karate_accuracy(GCNConv, seed) for seed in (1, 2, 3)]
        default = [_karate_accuracy(AffinityGCNConv, seed) for seed in (1, 2, 3)]
    finally:
        torch.set_num_threads(threads)
    assert min(default) >= sum(gcn) / 3 - 0.15, (default, gcn)
