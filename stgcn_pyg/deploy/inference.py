"""How descriptors are extracted: the fastest setting measured on the CPU, chosen per machine.

``benchmarks/speed/inference.py`` times descriptor extraction in eager fp32,
channels_last, bf16 autocast, ``torch.compile`` and onnxruntime against the
machine's matmul peak (results under ``benchmarks/speed/results/inference_cpu.*``).

* channels_last (NHWC frames and convolution weights, the layout oneDNN's
  convolutions run in) gives eager fp32's numbers and was as fast (ResNet-50,
  one core) to 1.6 times as fast (MobileNetV2, one core; ResNet-50's body on
  two cores: 1.5 times): it is the CPU default.
* bf16 autocast pays only with AMX tiles (Sapphire Rapids and later), where
  oneDNN's bf16 matmul runs at over twice the fp32 rate (an earlier probe on
  such a CPU, not a committed measurement: ResNet-50 at 256x128, 12.2
  frames/s in eager fp32, 37.0 in channels_last + bf16). With AVX512-BF16
  alone, as on the project's 2-core machine, a bf16 matmul ran at half the
  fp32 rate (47-55 against 103-106 GFLOP/s on one core) and STGCN's
  extraction was 0.7 (ResNet-50) to 0.9 (MobileNetV2) times as fast as in
  channels_last fp32. So bf16 is the default only on a CPU with AMX; there
  the descriptors agree with fp32 to about 1e-2 relative (the graph
  affinities stay in float32, see :class:`~stgcn_pyg.nn.AffinityGCNConv`).

``precision="fp32"`` or ``"bf16"`` overrides the choice. On CUDA the default
is the model's own eager fp32 path (not measured here: no GPU was lent).
``evaluate`` asks for fp32 unless told otherwise, so its numbers do not
depend on the CPU; ``extract`` and ``search`` take the automatic choice and
say which ran (:func:`describe_inference`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .runtime import ExportedEncoder, load_model_file
from .wrapper import ModelWrapper

__all__ = ["PRECISIONS", "InferenceSettings", "InferenceModel", "cpu_has_native_bf16", "cpu_has_amx",
           "inference_settings", "prepare_for_inference", "load_for_inference", "inference_precision",
           "inference_engine", "describe_inference"]

PRECISIONS = ("auto", "fp32", "bf16")


def _torch_cpu_flag(name: str) -> bool:
    # private helpers of torch.cpu (2.1 and later); a torch without them answers "no".
    return bool(getattr(torch.cpu, name, lambda: False)())


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 instructions (AVX512-BF16 or AMX tiles)."""
    return _torch_cpu_flag("_is_avx512_bf16_supported") or cpu_has_amx()


def cpu_has_amx() -> bool:
    """True when this CPU exposes AMX tiles, where oneDNN's bf16 matmuls beat fp32."""
    return _torch_cpu_flag("_is_amx_tile_supported")


@dataclass(frozen=True)
class InferenceSettings:
    """One way of running ``model.encode``: memory layout and autocast dtype."""

    channels_last: bool = False
    """Frames and convolution weights in NHWC, the layout oneDNN's CPU convolutions run fastest in."""
    autocast_dtype: torch.dtype | None = None
    """``torch.bfloat16``: bf16 autocast; None: the model's own dtype (float32)."""

    @property
    def precision(self) -> str:
        """``"bf16"`` (bf16 autocast) or ``"fp32"``."""
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "contiguous"
        return f"{layout}, {'bf16 autocast' if self.precision == 'bf16' else 'fp32'}"


def inference_settings(device, precision: str = "auto") -> InferenceSettings:
    """The setting ``extract``, ``evaluate`` and ``search`` use on ``device``.

    ``precision``: ``"auto"`` (on the CPU: channels_last, with bf16 autocast
    where the CPU has AMX), ``"fp32"`` or ``"bf16"``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if device.type != "cpu":
        if precision == "bf16":
            return InferenceSettings(channels_last=True, autocast_dtype=torch.bfloat16)
        return InferenceSettings()  # what the model does on CUDA today; not measured here
    bf16 = precision == "bf16" or (precision == "auto" and cpu_has_amx())
    return InferenceSettings(channels_last=True, autocast_dtype=torch.bfloat16 if bf16 else None)


class InferenceModel(ModelWrapper):
    """``model`` with ``encode`` run in one :class:`InferenceSettings`; every other attribute is the model's.

    ``encode`` returns float32 descriptors whatever the autocast dtype.
    """

    def __init__(self, model, settings: InferenceSettings, device):
        super().__init__(model)
        self.settings = settings
        self.device_type = torch.device(device).type
        if settings.channels_last:
            # In place, on the convolution weights (4-d tensors) only: the numbers do not change.
            model.to(memory_format=torch.channels_last)

    def __repr__(self) -> str:
        return f"InferenceModel({type(self.model).__name__}, {self.settings.describe()})"

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        if self.settings.channels_last and clips.dim() == 5:
            # [B, T, 3, H, W] with channels innermost, so the model's reshape to [B*T, 3, H, W]
            # is a channels_last view and the first convolution needs no layout conversion.
            clips = clips.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        dtype = self.settings.autocast_dtype
        with torch.no_grad(), torch.autocast(self.device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return self.model.encode(clips).float()

    def to(self, device) -> "InferenceModel":
        super().to(device)
        self.device_type = torch.device(device).type
        return self


def prepare_for_inference(model, device, precision: str = "auto"):
    """``model`` (eval mode, on ``device``) set up to extract descriptors in :func:`inference_settings`.

    An exported model (:class:`~stgcn_pyg.deploy.ExportedEncoder`) runs as it
    was exported and comes back unchanged, as does a model whose setting is
    plain fp32 with the default layout.
    """
    if isinstance(model, ExportedEncoder):
        if precision == "bf16":
            raise ConfigError(f"--precision bf16: {model.path} runs as exported, in float32; "
                              "bf16 applies to checkpoints")
        return model.to(device)
    if isinstance(model, InferenceModel):
        return model
    settings = inference_settings(device, precision)
    model = model.to(device).eval()
    if settings == InferenceSettings():
        return model
    return InferenceModel(model, settings, device)


def load_for_inference(path, device, precision: str = "fp32", engine: str = "auto", *, seq_len: int | None = None,
                       image_size=None, branches=(), log=None):
    """``(model, config)`` of a checkpoint or an exported file (:func:`~stgcn_pyg.deploy.load_model_file`),
    the model set up on ``device``: what ``extract``, ``search`` and ``evaluate`` run.

    A checkpoint runs in the engine :func:`~stgcn_pyg.deploy.engine.choose_engine` picks for ``engine``
    ("auto", "torch" or "onnxruntime"): onnxruntime (:class:`~stgcn_pyg.deploy.engine.OnnxRuntimeModel`, for
    clips of ``seq_len`` frames of ``image_size``, default the config's ``eval.seq_len`` and
    ``data.image_size``) or torch (:func:`prepare_for_inference` with ``precision``). ``log`` (default: stderr)
    gets one line for each export into the cache and each fallback to torch. ``branches`` (names of the model's
    branches, as ``--branches`` gives them) are checked against the model before any engine is set up: a bad
    name is refused before an export into the cache, which takes seconds.
    """
    from ..evaluation.options import branch_columns
    from .engine import _stderr, choose_engine, use_onnxruntime

    model, config = load_model_file(path, map_location="cpu")
    branch_columns(getattr(model, "feature_dims", None), tuple(branches or ()))
    if isinstance(model, ExportedEncoder):
        model.check_seq_len(seq_len)
        changed = model.shape_change()
        if changed:
            (log or _stderr)(f"note: {changed} (--allow-shape-change): expect lower scores than the checkpoint's")
        runs_in = inference_engine(model)
        if engine not in ("auto", runs_in):
            choose_engine(engine, device, "fp32")  # an unknown name is named as such
            raise ConfigError(f"--engine {engine}: {model.path} is an exported model; it runs in {runs_in}, "
                              "as exported")
        return prepare_for_inference(model, device, precision), config
    choice = choose_engine(engine, device, inference_settings(device, precision).precision)
    if choice.engine == "torch":
        if choice.fallback:
            (log or _stderr)(f"engine torch: {choice.why.removeprefix('--engine auto: ')}")
        return prepare_for_inference(model, device, precision), config
    seq_len = int(seq_len or config.eval.seq_len)
    image_size = tuple(int(v) for v in (image_size or config.data.image_size))
    # fp32 here even for --precision auto on an AMX CPU: an explicit --engine onnxruntime runs fp32, and so
    # must its reference
    torch_model = prepare_for_inference(model, device, "fp32")
    return use_onnxruntime(model, torch_model, config, path, seq_len, image_size, strict=engine == "onnxruntime",
                           log=log or _stderr), config


def inference_precision(model) -> str:
    """``"bf16"`` when ``model`` (from :func:`prepare_for_inference`) runs in bf16 autocast, else ``"fp32"``."""
    return model.settings.precision if isinstance(model, InferenceModel) else "fp32"


def inference_engine(model) -> str:
    """What computes ``model``'s descriptors (from :func:`load_for_inference`): ``"onnxruntime"``,
    ``"torch"`` or, for an exported .pt2 program, ``"torch.export"``."""
    from .engine import OnnxRuntimeModel

    if isinstance(model, OnnxRuntimeModel):
        return model.engine
    if isinstance(model, ExportedEncoder):
        return "onnxruntime" if model.format == "onnx" else "torch.export"
    return "torch"


def describe_inference(model, precision: str = "auto", engine: str = "auto") -> str:
    """One line: how ``model`` (from :func:`load_for_inference` with ``precision`` and ``engine``) computes
    descriptors, and why."""
    from .engine import OnnxRuntimeModel, choose_engine

    if isinstance(model, ExportedEncoder):
        return f"descriptors in {inference_engine(model)}, fp32 (an exported model runs as exported)"
    if isinstance(model, OnnxRuntimeModel) and model.engine == "onnxruntime":
        return (f"descriptors in onnxruntime, fp32 (--engine {engine}: exported once to {model.cache_path}, "
                f"checked against torch on the first batch)")
    torch_model = model.model if isinstance(model, OnnxRuntimeModel) else model
    if isinstance(torch_model, InferenceModel):
        how, device = torch_model.settings.describe(), torch_model.device_type
    else:
        how, device = InferenceSettings().describe(), next(torch_model.parameters()).device.type
    why = f"--precision {precision}"
    if precision == "auto" and device == "cpu":
        why += f": the fastest measured on a CPU {'with' if cpu_has_amx() else 'without'} AMX"
    precision_now = torch_model.settings.precision if isinstance(torch_model, InferenceModel) else "fp32"
    try:
        choice = choose_engine(engine, device, precision_now)
    except ConfigError:  # only an explicit --engine onnxruntime, which never ends in torch
        choice = None
    if choice is None or choice.fallback or choice.engine == "onnxruntime":
        engine_why = f"--engine {engine}: onnxruntime could not run it (see above)"
    else:
        engine_why = choice.why
    return f"descriptors in torch, {how} ({engine_why}; {why})"
