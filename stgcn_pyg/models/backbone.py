"""The per-frame CNN: a torchvision ResNet cut before its pooling, last stride 1.

Weights are ``"imagenet"`` (torchvision's ImageNet checkpoint, read from the
torch hub cache or downloaded with a short timeout), ``"none"`` (random
initialisation), or a path to a local state-dict file (a torchvision ResNet
checkpoint; the ``fc`` layer is ignored).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..errors import ConfigError

__all__ = ["ResNetBackbone", "build_backbone", "BACKBONE_CHANNELS"]

BACKBONE_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}

# The classic ImageNet weights (V1) that re-ID papers of this era start from.
_IMAGENET = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
}

DOWNLOAD_TIMEOUT_S = 15.0


class ResNetBackbone(nn.Module):
    """ResNet stem + 4 stages: frames [N, 3, H, W] -> feature maps [N, C, H/16, W/16] (last stride 1)."""

    def __init__(self, name: str = "resnet50", weights: str = "none", last_stride: int = 1):
        super().__init__()
        if name not in BACKBONE_CHANNELS:
            raise ConfigError(f"model.backbone: {name!r} is not one of {', '.join(BACKBONE_CHANNELS)}")
        net = getattr(torchvision.models, name)(weights=None)
        state = _load_weights(name, weights)
        if state is not None:
            _load_into(net, state, weights)
        if last_stride != 2:
            block = net.layer4[0]
            # Bottleneck strides in conv2, BasicBlock in conv1; the shortcut in downsample[0].
            conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
            conv.stride = (last_stride, last_stride)
            if block.downsample is not None:
                block.downsample[0].stride = (last_stride, last_stride)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = BACKBONE_CHANNELS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def build_backbone(name: str, weights: str = "none", last_stride: int = 1) -> ResNetBackbone:
    return ResNetBackbone(name, weights, last_stride)


def _load_weights(name: str, weights: str) -> dict | None:
    if weights in ("", "none", "None"):
        return None
    if weights == "imagenet":
        return _imagenet_state(name)
    path = Path(os.path.expanduser(weights))
    if not path.is_file():
        raise ConfigError(
            f'model.weights: {weights}: no such file (use "imagenet", "none" or a path to a state-dict file)'
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean "not a weights file"
        raise ConfigError(f"model.weights: {path}: cannot read as a PyTorch state dict ({exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ConfigError(f"model.weights: {path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in raw.items()}


def _imagenet_state(name: str) -> dict:
    """torchvision's ImageNet weights: from the hub cache, else a download that fails fast offline."""
    enum = getattr(torchvision.models, _IMAGENET[name]).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, timeouts, HTTP errors, a corrupt partial file
        raise ConfigError(
            f"model.weights: cannot download the ImageNet {name} weights from {enum.url} ({exc}); "
            f"when offline, put that file at {cached}, or pass model.weights=<local .pth file> "
            f"or model.weights=none (train from scratch)"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _load_into(net: nn.Module, state: dict, source: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = net.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith("fc.")]
    if wrong or missing:
        detail = []
        if wrong:
            detail.append(f"shape mismatch for {', '.join(wrong[:3])}")
        if missing:
            detail.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        raise ConfigError(
            f"model.weights: {source}: does not fit the {type(net).__name__} backbone ({'; '.join(detail)}); "
            f"is it a checkpoint of another model.backbone?"
        )
    net.load_state_dict(state, strict=False)
