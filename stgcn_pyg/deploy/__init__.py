"""Deployment: export the descriptor model (ONNX, torch.export) and extract descriptors fast on the CPU.

Nothing here imports onnx, onnxscript or onnxruntime until it is used: they
are the optional ``export`` extra (``pip install 'stgcn-pyg[export]'``).
"""

from .engine import ENGINES, PARITY_TOLERANCE, OnnxRuntimeModel, engine_cache_dir
from .export import DEFAULT_OPSET, DescriptorModel, ExportResult, export_checkpoint, export_model
from .exported_file import EXPORT_FORMATS, ExportError, format_from_path
from .inference import (PRECISIONS, InferenceModel, InferenceSettings, cpu_has_amx, cpu_has_native_bf16,
                        describe_inference, inference_engine, inference_precision, inference_settings,
                        load_for_inference, prepare_for_inference)
from .runtime import ExportedEncoder, load_exported, load_model_file

__all__ = [
    "EXPORT_FORMATS", "DEFAULT_OPSET", "ExportError", "ExportResult", "DescriptorModel", "export_model",
    "export_checkpoint", "format_from_path",
    "ExportedEncoder", "load_exported", "load_model_file",
    "ENGINES", "PARITY_TOLERANCE", "OnnxRuntimeModel", "engine_cache_dir",
    "PRECISIONS", "InferenceSettings", "InferenceModel", "inference_settings", "prepare_for_inference",
    "load_for_inference", "inference_precision", "inference_engine", "describe_inference", "cpu_has_native_bf16",
    "cpu_has_amx",
]
