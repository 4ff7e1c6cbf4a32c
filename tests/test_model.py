"""The STGCN model: shapes, gradients, graph modes, options and errors (small ResNet-18 models)."""

from __future__ import annotations

import pytest
import torch

from stgcn_pyg.data import tracklet_batch
from stgcn_pyg.errors import ConfigError, TopologyError
from stgcn_pyg.graphs import build_edge_index
from stgcn_pyg.models import STGCN, STGCNLoss
from stgcn_pyg.models.backbone import ResNetBackbone
from stgcn_pyg.config import ModelConfig

H, W = 64, 32


def model_cfg(**kw) -> ModelConfig:
    """A small model: ResNet-18 from scratch, narrow graph branches, 3 classes, clips of 2 frames."""
    base = dict(backbone="resnet18", weights="none", num_classes=3, temporal_width=64, spatial_width=32, seq_len=2)
    base.update(kw)
    return ModelConfig(**base)


def make_batch(B=4, T=2, seed=0, P=None, **graph):
    """Random clips as a batch; ``graph`` a model's graph= or topology names (default: 4 stripes, the paper's)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(B, T, 3, H, W, generator=g)
    pids = [i // 2 for i in range(B)]
    return tracklet_batch(frames, pids=pids, num_stripes=P, **graph), torch.tensor(pids), frames


def test_output_shapes_and_descriptor_is_concatenated_bn_features():
    torch.manual_seed(0)
    model = STGCN(model_cfg())
    batch, labels, frames = make_batch()
    out = model(batch)
    assert {k: tuple(v.shape) for k, v in out.features.items()} == {
        "global": (4, 512), "temporal": (4, 64), "spatial": (4, 2 * 32)}  # spatial: the 2 frames concatenated
    assert {k: tuple(v.shape) for k, v in out.logits.items()} == {k: (4, 3) for k in out.features}
    assert out.descriptor.shape == (4, 512 + 64 + 2 * 32) == (4, model.descriptor_dim)
    model.eval()
    out = model(batch)
    assert out.logits == {}
    expected = torch.cat([model.heads[b].bn(out.features[b]) for b in ("global", "temporal", "spatial")], 1)
    torch.testing.assert_close(out.descriptor, expected)
    # encode() builds the graphs itself and gives the same descriptor as a batch of TrackletData.
    torch.testing.assert_close(model.encode(frames), out.descriptor)


def test_last_stride_one_doubles_the_feature_map():
    x = torch.randn(1, 3, H, W)
    assert ResNetBackbone("resnet18", "none", last_stride=1).eval()(x).shape == (1, 512, 4, 2)
    assert ResNetBackbone("resnet18", "none", last_stride=2).eval()(x).shape == (1, 512, 2, 1)
    assert ResNetBackbone("resnet50", "none", last_stride=1).eval()(x).shape == (1, 2048, 4, 2)


def test_global_branch_is_mean_of_frame_averages():
    torch.manual_seed(0)
    model = STGCN(model_cfg(branches=["global"])).eval()
    batch, _, frames = make_batch(B=2, T=3)
    maps = model.backbone(frames.flatten(0, 1))
    expected = maps.mean((2, 3)).view(2, 3, -1).mean(1)
    torch.testing.assert_close(model(batch).features["global"], expected)


def _a_hat(nodes, phi_weight, mask, scale=1.0, center=False, normalization="square"):
    """D^-1/2 (A + I) D^-1/2 of nodes [G, N, C], by dense math. A: each row's squared scores over its neighbours
    (``mask``) and itself, over their sum (the paper's Eq. 2); or the softmax over the neighbours."""
    z = nodes - nodes.mean(1, keepdim=True) if center else nodes
    phi = z @ phi_weight.t()
    scores = scale * phi @ phi.transpose(1, 2)
    n = nodes.size(1)
    if normalization == "square":
        sq = scores.square() * (mask | torch.eye(n, dtype=torch.bool))
        a = sq / sq.sum(-1, keepdim=True)
    else:
        a = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    a = a + torch.eye(n)
    d = a.sum(-1).rsqrt()
    return d[:, :, None] * a * d[:, None, :]


@pytest.mark.parametrize("normalization,residual", [("square", True), ("square", False), ("softmax", True)])
def test_temporal_branch_matches_hand_computation(normalization, residual):
    """Three shared-affinity layers + LeakyReLU, the paper's residual X^m + X^{m-1} from the second layer on,
    max over nodes, by dense math."""
    torch.manual_seed(0)
    model = STGCN(model_cfg(branches=["temporal"], temporal_layers=3, norm="none", temporal_width=512,
                            affinity_normalization=normalization, temporal_residual=residual)).eval()
    batch, _, frames = make_batch(B=2, T=2)
    maps = model.backbone(frames.flatten(0, 1))  # [4, 512, 4, 2]
    # node t*P + p = stripe p of frame t: the mean over the stripe's rows (4 rows / 4 stripes = 1 row each).
    nodes = maps.mean(3).transpose(1, 2).reshape(2, 8, 512)
    convs = model.temporal.convs
    a_hat = _a_hat(nodes, convs[0].phi.weight, ~torch.eye(8, dtype=torch.bool), normalization=normalization)
    act = torch.nn.LeakyReLU(0.1)
    h, by_layer = nodes, [nodes]
    for m, conv in enumerate(convs):  # the later layers reuse the first layer's affinity
        out = act(a_hat @ conv.lin(h) + conv.bias)
        h = out + h if residual and m > 0 else out  # none on the first layer, though its widths agree
        by_layer.append(h)
    torch.testing.assert_close(model(batch).features["temporal"], h.amax(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.temporal_affinity(frames[:1]), a_hat[0], rtol=1e-4, atol=1e-6)
    # the inspection API: the branch's input, then each layer's output (after the residual)
    layers = model.branch_layers(frames)
    assert list(layers) == ["temporal"] and len(layers["temporal"]) == 4
    for got, want in zip(layers["temporal"], by_layer):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"scaled_affinity": True, "centered_affinity": True},
                                     {"affinity_normalization": "softmax", "scaled_affinity": True}],
                         ids=["paper", "scaled-centred", "softmax-scaled"])
@pytest.mark.parametrize("fusion", ["concat", "mean", "max"])
def test_spatial_branch_matches_hand_computation(options, fusion):
    """Two shared-affinity layers over each frame's P patches (complete, no self-loops), no residual, max over a
    frame's patches, then the frames concatenated in order (or their mean or max). 128-pixel frames: two
    feature-map rows per stripe."""
    torch.manual_seed(0)
    model = STGCN(model_cfg(branches=["spatial"], spatial_layers=2, norm="none", frame_fusion=fusion, seq_len=3,
                            **options)).eval()
    B, T, P = 2, 3, 4
    frames = torch.randn(B, T, 3, 128, 64, generator=torch.Generator().manual_seed(1))
    batch = tracklet_batch(frames, pids=[0, 1], num_stripes=P)
    maps = model.backbone(frames.flatten(0, 1))
    assert maps.shape[1:] == (512, 8, 4)
    nodes = torch.stack([maps[:, :, 2 * p : 2 * p + 2].mean((2, 3)) for p in range(P)], 1)  # [B*T, P, 512]
    conv0, conv1 = model.spatial.convs
    scale = 512**-0.5 if options.get("scaled_affinity") else 1.0
    a_hat = _a_hat(nodes, conv0.phi.weight, ~torch.eye(P, dtype=torch.bool), scale,
                   center=options.get("centered_affinity", False),
                   normalization=options.get("affinity_normalization", "square"))
    act = torch.nn.LeakyReLU(0.1)
    h1 = act(a_hat @ conv0.lin(nodes) + conv0.bias)
    h = act(a_hat @ conv1.lin(h1) + conv1.bias)  # the second layer reuses the first layer's affinity
    # the inspection API: one row per frame graph of P nodes, input then each layer
    for got, want in zip(model.branch_layers(frames)["spatial"], [nodes, h1, h], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    per_frame = h.amax(1).view(B, T, -1)
    expected = {"concat": per_frame.flatten(1), "mean": per_frame.mean(1), "max": per_frame.amax(1)}[fusion]
    assert expected.shape == (B, (T if fusion == "concat" else 1) * 32) == (B, model.feature_dims["spatial"])
    torch.testing.assert_close(model(batch).features["spatial"], expected, rtol=1e-4, atol=1e-5)
    model.graph_mode = "batched"
    torch.testing.assert_close(model(batch).features["spatial"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "batch-eval", "layer"])
def test_norm_sits_between_each_graph_layer_and_its_activation(norm):
    """x -> LeakyReLU(norm(A_hat x W + b)) per layer; batch norm over every node of the batch (training) or with
    its running statistics (eval). Random affine parameters and statistics, so a misplaced norm shows."""
    torch.manual_seed(0)
    kind = norm.split("-")[0]
    model = STGCN(model_cfg(branches=["temporal"], temporal_layers=2, norm=kind)).eval()
    norms = [n.norm for n in model.temporal.norms]
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 2.0)
            m.bias.normal_()
            if kind == "batch":
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    if norm == "batch":
        model.temporal.norms.train()  # batch statistics (the backbone stays in eval mode)

    def normed(m, h):  # h [B, N, F]
        if kind == "layer":
            mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        elif norm == "batch":
            mu, var = h.mean((0, 1)), h.var((0, 1), unbiased=False)
        else:
            mu, var = m.running_mean, m.running_var
        return (h - mu) / torch.sqrt(var + m.eps) * m.weight + m.bias

    batch, _, frames = make_batch(B=2, T=2)
    maps = model.backbone(frames.flatten(0, 1))
    nodes = maps.mean(3).transpose(1, 2).reshape(2, 8, 512)  # 4 rows / 4 stripes
    conv0, conv1 = model.temporal.convs
    a_hat = _a_hat(nodes, conv0.phi.weight, ~torch.eye(8, dtype=torch.bool))
    act = torch.nn.LeakyReLU(0.1)
    h = act(normed(norms[0], a_hat @ conv0.lin(nodes) + conv0.bias))
    h = act(normed(norms[1], a_hat @ conv1.lin(h) + conv1.bias)) + h  # the temporal residual, after the norm
    torch.testing.assert_close(model(batch).features["temporal"], h.amax(1), rtol=1e-4, atol=1e-5)


def test_stripes_average_every_row_and_column_of_their_band():
    """STGCN._patches: P horizontal bands of h/P rows each (here 3), node t*P + p of frame t."""
    model = STGCN(model_cfg(branches=["global"]))
    maps = torch.randn(6, 5, 12, 3)
    expected = torch.stack([maps[t, :, 3 * p : 3 * p + 3, :].mean((1, 2)) for t in range(6) for p in range(4)])
    torch.testing.assert_close(model._patches(maps), expected)


@pytest.mark.parametrize("impl,layout", [("dense", "static"), ("sparse", "static"), ("gather", "static"),
                                         ("sparse", "batch"), ("gather", "batch")])
def test_shared_affinity_branch_reuses_the_first_layers_weights(impl, layout):
    """GraphBranch passes layer 0's returned (edge_index, weight) to the later layers as edge_weight: with
    self-loops in edge_index and edges out of CSR order, every path reproduces the dense formula."""
    from stgcn_pyg.models.stgcn import GraphBranch

    torch.manual_seed(0)
    branch = GraphBranch(6, 5, 3, norm="none").double()
    for conv in branch.convs:
        conv.impl = impl
    B, N = 2, 6
    mask = torch.rand(N, N, generator=torch.Generator().manual_seed(2)) < 0.6
    mask[0, 0] = mask[3, 3] = True
    dst, src = mask.nonzero(as_tuple=True)
    edge_index = torch.stack([src, dst])[:, torch.randperm(src.numel(), generator=torch.Generator().manual_seed(3))]
    x = torch.randn(B, N, 6, dtype=torch.double)
    a_hat = _a_hat(x, branch.convs[0].phi.weight, mask)  # the explicit loop is a softmax entry, I on top
    act = torch.nn.LeakyReLU(0.1)
    h = x
    for conv in branch.convs:
        h = act(a_hat @ conv.lin(h) + conv.bias)
    if layout == "static":
        out = branch(x, edge_index)
    else:
        big = edge_index.repeat(1, B) + (torch.arange(B) * N).repeat_interleave(edge_index.size(1))
        out = branch(x.reshape(B * N, 6), big, torch.arange(B).repeat_interleave(N)).view(B, N, -1)
    torch.testing.assert_close(out, h)


OPTIONS = [
    {},
    {"affinity": "per-layer", "norm": "layer", "scaled_affinity": True},
    {"centered_affinity": True, "affinity": "per-layer", "scaled_affinity": True},
    {"centered_affinity": True, "scaled_affinity": True},
    {"spatial_residual": True, "residual_first_layer": True, "temporal_width": 0, "spatial_width": 0,
     "norm": "none", "frame_fusion": "max"},
    {"affinity_normalization": "softmax", "frame_fusion": "mean", "temporal_residual": False},
    {"graph_layer": "fc", "classifier": "all"},
    {"branches": ["temporal"], "temporal_topology": "temporal-adjacent"},
    {"branches": ["spatial", "global"]},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_every_parameter_gets_a_gradient(options):
    torch.manual_seed(0)
    model = STGCN(model_cfg(**options))
    batch, labels, _ = make_batch(graph=model.graph)
    loss, parts = STGCNLoss()(model(batch), labels)
    loss.backward()
    bad = [n for n, p in model.named_parameters()
           if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0)]
    assert bad == []  # every parameter: a finite, non-zero gradient
    if options.get("classifier") == "all":
        assert set(k for k in parts if k.startswith("ce_")) == {"ce_all"}
    else:
        assert {k for k in parts if k.startswith("ce_")} == {f"ce_{b}" for b in model.branches}


def test_shared_affinity_layers_have_no_own_phi_but_per_layer_do():
    shared = STGCN(model_cfg(temporal_layers=3))
    per_layer = STGCN(model_cfg(temporal_layers=3, affinity="per-layer"))
    count = lambda m: sum(1 for n, _ in m.temporal.named_parameters() if ".phi." in n)  # noqa: E731
    assert count(shared) == 1 and count(per_layer) == 3


def test_fc_ablation_ignores_the_graph():
    """With graph_layer="fc" a node's output depends only on that node: shuffling frames across tracklets in
    the temporal graph changes nothing but the order, so per-node features equal a plain MLP."""
    torch.manual_seed(0)
    model = STGCN(model_cfg(graph_layer="fc", norm="none", branches=["temporal"])).eval()
    batch, _, frames = make_batch(B=2, T=2)
    maps = model.backbone(frames.flatten(0, 1))
    nodes = maps.mean(3).transpose(1, 2).reshape(2, 8, 512)
    act = torch.nn.LeakyReLU(0.1)
    h = nodes
    for m, lin in enumerate(model.temporal.convs):
        h = act(lin(h)) + (h if m > 0 else 0)  # with the temporal residual, as the GCN
    torch.testing.assert_close(model(batch).features["temporal"], h.amax(1))


@pytest.mark.parametrize("topologies", [
    ("temporal-complete", "spatial-frame-complete", False),  # spatial graph run as B*T separate frame graphs
    ("temporal-same-stripe", "temporal-adjacent", False),  # sparse temporal graph; a spatial graph across frames
    ("temporal-complete", "spatial-frame-complete", True),  # centred scores: each node's graph must be known
    ("temporal-adjacent", "temporal-same-stripe", True),
])
def test_static_mode_equals_batched_graphs(topologies):
    torch.manual_seed(0)
    t_top, s_top, centered = topologies
    model = STGCN(model_cfg(temporal_topology=t_top, spatial_topology=s_top, affinity="shared",
                           centered_affinity=centered))
    assert model._spatial_within_frames == (s_top == "spatial-frame-complete")
    batch, labels, _ = make_batch(temporal_topology=t_top, spatial_topology=s_top)
    for train in (True, False):
        model.train(train)
        model.graph_mode = "auto"
        a = model(batch)
        model.graph_mode = "batched"
        b = model(batch)
        for k in a.features:
            torch.testing.assert_close(a.features[k], b.features[k], rtol=1e-4, atol=1e-5)
        # BN over a batch of 4 amplifies float rounding of the dense vs sparse layer paths a little.
        torch.testing.assert_close(a.descriptor, b.descriptor, rtol=1e-3, atol=2e-4)


@pytest.mark.parametrize("centered", [False, True])
def test_tracklets_of_different_lengths_fall_back_to_batched_graphs(centered):
    """A batch mixing T=2 and T=4 (eval mode) gives each tracklet the descriptor it gets on its own."""
    from torch_geometric.data import Batch

    from stgcn_pyg.data import TrackletData

    torch.manual_seed(0)
    model = STGCN(model_cfg(frame_fusion="mean", centered_affinity=centered)).eval()
    clips = [torch.randn(2, 3, H, W), torch.randn(4, 3, H, W), torch.randn(3, 3, H, W)]
    batch = Batch.from_data_list([TrackletData.from_frames(c, num_stripes=4) for c in clips])
    mixed = model(batch).descriptor
    alone = torch.cat([model.encode(c[None]) for c in clips])
    torch.testing.assert_close(mixed, alone, rtol=1e-4, atol=1e-5)


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    model = STGCN(model_cfg(num_classes=3))
    batch, labels, _ = make_batch(B=6, T=2)  # three identities
    crit = STGCNLoss(margin=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss, _ = crit(model(batch), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_bad_inputs_raise_config_errors():
    with pytest.raises(TopologyError, match="unknown topology 'no-such-graph'"):
        STGCN(model_cfg(temporal_topology="no-such-graph"))
    with pytest.raises(ConfigError, match="model.branches"):
        STGCN(model_cfg(branches=[]))
    with pytest.raises(ConfigError, match="no temporal branch"):
        STGCN(model_cfg(branches=["global"])).temporal_affinity(torch.randn(1, 2, 3, H, W))
    with pytest.raises(ConfigError, match="num_stripes"):
        STGCN(model_cfg(num_stripes=8)).eval().encode(torch.randn(1, 2, 3, H, W))


@pytest.mark.parametrize("graph_mode", ["auto", "batched"])
def test_a_batch_built_on_another_graph_is_rejected(graph_mode):
    """The model owns stripe count and topologies: a batch built with others fails with one message, in static
    mode (which would ignore the batch's edges) as in batched mode (which would use them)."""
    model = STGCN(model_cfg())
    model.graph_mode = graph_mode
    ours = "4 stripes, temporal graph 'temporal-complete', spatial graph 'spatial-frame-complete'"
    for kw, theirs in [
        ({"P": 2}, "2 stripes, temporal graph 'temporal-complete', spatial graph 'spatial-frame-complete'"),
        ({"temporal_topology": "temporal-adjacent"},
         "4 stripes, temporal graph 'temporal-adjacent', spatial graph 'spatial-frame-complete'"),
        ({"spatial_topology": "temporal-same-stripe"},
         "4 stripes, temporal graph 'temporal-complete', spatial graph 'temporal-same-stripe'"),
    ]:
        batch, _, _ = make_batch(B=2, **kw)
        with pytest.raises(ConfigError) as err:
            model(batch)
        assert f"built with {theirs}" in str(err.value) and f"the model uses {ours}" in str(err.value)
    batch, _, _ = make_batch(B=2)
    del batch.graph  # tracklets built by hand, without a graph to check
    with pytest.raises(ConfigError, match="carry no graph"):
        model(batch)


def test_batches_from_the_model_config_values_carry_the_models_graph():
    """Built from the same config values, a batch's tracklets hold the model's graph object itself, and the
    static mode's edges are that graph's."""
    model = STGCN(model_cfg(temporal_topology="temporal-adjacent")).eval()
    batch, _, frames = make_batch(B=2, temporal_topology="temporal-adjacent")
    assert all(g is model.graph for g in batch.graph)
    torch.testing.assert_close(model(batch).descriptor, model.encode(frames))
    assert torch.equal(model._static_edges("temporal", 2, torch.device("cpu")),
                       build_edge_index("temporal-adjacent", 2, 4))


def test_weights_local_file_and_errors(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    bb = ResNetBackbone("resnet18", str(path))
    torch.testing.assert_close(bb.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    with pytest.raises(ConfigError, match="does not fit"):
        ResNetBackbone("resnet34", str(path))
    with pytest.raises(ConfigError, match="no such file"):
        ResNetBackbone("resnet18", str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        ResNetBackbone("resnet18", str(tmp_path / "junk.pth"))
    # ImageNet weights offline: an empty hub cache and no network -> a clear error, quickly.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    import stgcn_pyg.models.backbone as backbone

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match="model.weights=none"):
        backbone.ResNetBackbone("resnet18", "imagenet")


def test_default_model_config_is_the_papers_network():
    """ResNet-50 with last stride 1 (16x8 maps at 256x128), 4 stripes, 3 temporal graph layers of 2048 channels
    with the residual from the second on, 2 spatial layers of 256 with the 8 frames concatenated (8 x 256), one
    squared-affinity projection per branch, a BN neck per branch and f_all of 3 x 2048; parameter counts by
    hand."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = STGCN(ModelConfig(weights="none", num_classes=625, seq_len=8))
        maps = model.backbone(torch.empty(2, 3, 256, 128))
    C, S = 2048, 256
    assert maps.shape == (2, C, 16, 8)
    assert model.feature_dims == {"global": C, "temporal": C, "spatial": 8 * S} and model.descriptor_dim == 3 * C
    assert model.temporal.residual == [False, True, True] and model.spatial.residual == [False, False]
    assert {c.normalization for c in [*model.temporal.convs, *model.spatial.convs]} == {"square"}
    assert model.graph.describe() == ("4 stripes, temporal graph 'temporal-complete', "
                                      "spatial graph 'spatial-frame-complete'")
    resnet50_without_fc = 25_557_032 - (2048 * 1000 + 1000)
    temporal = 3 * (C * C + C) + C * C + 3 * 2 * C  # 3 layers (weight, bias), one shared phi, 3 batch norms
    spatial = (C * S + S) + (S * S + S) + C * C + 2 * 2 * S
    heads = 3 * (2 * C + 625 * C)  # per branch: BN (scale, frozen shift) and a bias-free classifier

    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(model.backbone) == resnet50_without_fc
    assert (count(model.temporal), count(model.spatial), count(model.heads)) == (temporal, spatial, heads)


@pytest.mark.parametrize("graph_mode", ["auto", "batched"])
def test_bf16_autocast_and_channels_last_train_step(graph_mode):
    """The GPU recipe (bf16 autocast + channels_last) on the CPU: finite loss and gradients on both graph paths,
    close to the float32 loss."""
    torch.manual_seed(0)
    model = STGCN(model_cfg()).to(memory_format=torch.channels_last)
    model.graph_mode = graph_mode
    batch, labels, _ = make_batch()
    reference, _ = STGCNLoss()(model(batch), labels)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = STGCNLoss()(model(batch), labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=0.05)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_frames_per_graph_reads_the_cpu_slice_table_for_device_batches():
    from torch_geometric.data import Batch

    from stgcn_pyg.data import TrackletData
    from stgcn_pyg.models.stgcn import _frames_per_graph

    batch = Batch.from_data_list([TrackletData.from_frames(torch.zeros(t, 3, 8, 4), num_stripes=2) for t in (2, 5, 3)])
    assert _frames_per_graph(batch, 3) == [2, 5, 3]
    # A tensor on another device ("meta" stands in for CUDA: it has no values to read back at all).
    batch.num_frames = batch.num_frames.to("meta")
    assert _frames_per_graph(batch, 3) == [2, 5, 3]


def test_concatenated_frames_need_the_models_clip_length():
    """frame_fusion="concat" fixes T: clips or batches of another T, or of mixed T, fail with one message that
    names the way to variable T; the same clips run on a mean-fused model."""
    from torch_geometric.data import Batch

    from stgcn_pyg.data import TrackletData

    torch.manual_seed(0)
    model = STGCN(model_cfg()).eval()  # seq_len=2
    assert model.encode(torch.randn(1, 2, 3, H, W)).shape == (1, model.descriptor_dim)
    with pytest.raises(ConfigError, match=r'exactly 2 frames, got 3; .*frame_fusion="mean" takes clips of any'):
        model.encode(torch.randn(1, 3, 3, H, W))
    mixed = Batch.from_data_list([TrackletData.from_frames(torch.randn(t, 3, H, W), num_stripes=4) for t in (2, 3)])
    with pytest.raises(ConfigError, match="exactly 2 frames, got 2, 3"):
        model(mixed)
    mean = STGCN(model_cfg(frame_fusion="mean")).eval()
    assert mean(mixed).descriptor.shape == (2, mean.descriptor_dim)
    # The temporal affinity is per clip: any T.
    assert model.temporal_affinity(torch.randn(1, 3, 3, H, W)).shape == (12, 12)
    with pytest.raises(ConfigError, match=r"model.seq_len: .*concat.* needs the clip length"):
        STGCN(model_cfg(seq_len=0))
    assert STGCN(model_cfg(seq_len=0, branches=["global", "temporal"])).seq_len is None  # no spatial branch


def test_residual_first_layer_adds_the_first_layers_input_where_widths_agree():
    """The former model.residual = true: every layer, the first included where in and out widths agree."""
    from stgcn_pyg.models.stgcn import GraphBranch

    assert GraphBranch(8, 8, 3, residual=True).residual == [False, True, True]
    assert GraphBranch(8, 8, 3, residual=True, residual_first_layer=True).residual == [True, True, True]
    assert GraphBranch(8, 4, 2, residual=True, residual_first_layer=True).residual == [False, True]
    assert GraphBranch(8, 8, 2, residual=False, residual_first_layer=True).residual == [False, False]
    torch.manual_seed(0)
    branch = GraphBranch(8, 8, 1, residual=True, residual_first_layer=True, norm="none", layer="fc").eval()
    x = torch.randn(5, 8)
    torch.testing.assert_close(branch(x, torch.empty(2, 0, dtype=torch.long)),
                               torch.nn.functional.leaky_relu(branch.convs[0](x), 0.1) + x)
