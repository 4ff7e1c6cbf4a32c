"""CPU inference settings: which one is the default, and each gives eager fp32's descriptors within tolerance."""

from __future__ import annotations

import copy

import pytest
import torch

from stgcn_pyg.deploy import (InferenceModel, InferenceSettings, inference, inference_settings,
                              prepare_for_inference)
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.models import STGCN
from stgcn_pyg.config import ModelConfig

T, H, W = 2, 64, 32


@pytest.fixture(scope="module", params=["resnet18", "mobilenet_v2"])
def model(request):
    torch.manual_seed(0)
    return STGCN(ModelConfig(backbone=request.param, weights="none", temporal_width=16, spatial_width=16,
                             seq_len=T)).eval()


@pytest.fixture(scope="module")
def clips():
    return torch.randn(3, T, 3, H, W, generator=torch.Generator().manual_seed(0))


def test_default_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(inference, "cpu_has_amx", lambda: True)
    assert inference_settings("cpu") == InferenceSettings(channels_last=True, autocast_dtype=torch.bfloat16)
    monkeypatch.setattr(inference, "cpu_has_amx", lambda: False)
    # AVX512-BF16 alone (this project's machine) runs bf16 slower than fp32: channels_last fp32
    assert inference_settings("cpu") == InferenceSettings(channels_last=True, autocast_dtype=None)
    assert inference_settings("cpu", "bf16").autocast_dtype == torch.bfloat16
    assert inference_settings("cpu", "fp32") == InferenceSettings(channels_last=True)
    assert inference_settings("cuda") == InferenceSettings()  # the model's own path on a GPU
    with pytest.raises(ConfigError, match=r"--precision: 'fp16' is not one of auto, fp32, bf16"):
        inference_settings("cpu", "fp16")


def test_fp32_setting_gives_eager_descriptors(model, clips):
    with torch.no_grad():
        ref = model.encode(clips)
    fast = prepare_for_inference(copy.deepcopy(model), "cpu", "fp32")
    assert isinstance(fast, InferenceModel) and fast.settings.channels_last
    out = fast.encode(clips)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_bf16_setting_agrees_with_fp32(model, clips):
    with torch.no_grad():
        ref = model.encode(clips)
    fast = prepare_for_inference(copy.deepcopy(model), "cpu", "bf16")
    out = fast.encode(clips)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # bf16 keeps 8 bits of mantissa; the affinities stay in float32. Measured: about 6e-3 relative.
    assert float((out - ref).abs().max() / ref.abs().max()) < 3e-2
    assert float(torch.nn.functional.cosine_similarity(out, ref).min()) > 0.999


def test_wrapper_keeps_the_model_interface(model, clips):
    fast = prepare_for_inference(copy.deepcopy(model), "cpu", "bf16")
    assert fast.feature_dims == model.feature_dims and fast.num_stripes == model.num_stripes
    assert not fast.training and fast.eval() is fast
    affinity = fast.temporal_affinity(clips[:1])  # outside encode: float32, as the plots expect
    assert affinity.dtype == torch.float32 and affinity.shape == (T * model.num_stripes,) * 2
    assert prepare_for_inference(fast, "cpu") is fast
    assert copy.deepcopy(fast).settings == fast.settings  # copies build the wrapper before its model


def test_auto_batch_size_per_device():
    from stgcn_pyg.evaluation import TestOptions
    from stgcn_pyg.evaluation.options import clips_per_call

    # About 2^18 pixels per call on the CPU: 8 x 256 x 128 = 2^18 exactly, so one clip; 4 at 128x64.
    assert clips_per_call(0, 8, (256, 128), "cpu") == 1
    assert clips_per_call(0, 8, (128, 64), "cpu") == 4
    assert clips_per_call(0, 8, (64, 32), "cpu") == 16
    assert clips_per_call(0, 4, (64, 32), "cpu") == 32
    assert clips_per_call(0, 16, (384, 192), "cpu") == 1  # never fewer than one clip
    assert clips_per_call(0, 8, (256, 128), "cuda") == 32
    assert clips_per_call(5, 8, (256, 128), "cpu") == 5  # a set size is kept
    options = TestOptions(seq_len=8, image_size=(128, 64), device="cpu")
    assert options.loader_settings()["batch_size"] == 4
    assert options.replace(batch_size=7).loader_settings()["batch_size"] == 7


def test_auto_batch_size_gives_the_same_descriptors(tiny_root, tiny_config, tmp_path):
    from stgcn_pyg.data import load_configured_dataset
    from stgcn_pyg.evaluation import TestOptions, extract_split

    cfg = tiny_config(tmp_path / "run", "eval.batch_size=0", "eval.mode=all")
    assert cfg.eval.batch_size == 0
    dataset = load_configured_dataset(cfg.data, progress=False)
    torch.manual_seed(0)
    net = STGCN(ModelConfig(backbone="resnet18", weights="none", temporal_width=16, spatial_width=16,
                            seq_len=cfg.eval.seq_len)).eval()
    auto = TestOptions.from_config(cfg, progress=False)
    assert auto.loader_settings()["batch_size"] == 2**18 // (2 * 64 * 32)  # 64 clips of T=2 at 64x32
    one = extract_split(net, dataset.gallery, auto.replace(batch_size=1))
    many = extract_split(net, dataset.gallery, auto)
    torch.testing.assert_close(many, one, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="eval.batch_size"):
        tiny_config(tmp_path / "bad", "eval.batch_size=-1")


def test_benchmark_reads_the_cpu_flags_that_decide_the_precision():
    """benchmarks/speed/inference.py names its results by AMX as /proc/cpuinfo says; the library asks torch."""
    from benchmarks import common

    sapphire = ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8\n"
                "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8\n")
    assert common.cpu_flags(sapphire) == ["amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512f"]
    assert common.has_amx(common.cpu_flags(sapphire))
    no_amx = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"  # this project's machine: no AMX
    assert common.cpu_flags(no_amx) == ["avx512_bf16", "avx512f"] and not common.has_amx(["avx512_bf16", "avx512f"])
    assert common.cpu_flags("flags\t: fpu sse2\n") == [] and not common.has_amx([])
    flags = common.cpu_flags()
    if flags is not None:  # the benchmark's file name and the library's automatic choice see the same CPU
        assert common.has_amx(flags) == inference.cpu_has_amx()
