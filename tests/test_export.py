"""`stgcn-pyg export`: ONNX and torch.export files give eager's descriptors; bad models and files give one clear error."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from stgcn_pyg.cli import main
from stgcn_pyg.deploy import ExportError, export_checkpoint, load_exported, load_model_file
from stgcn_pyg.models import STGCN
from stgcn_pyg.checkpoint import save_checkpoint
from stgcn_pyg.config import config_to_dict, load_config

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="the export extra is not installed: pip install -e '.[export]'")

T, H, W = 2, 64, 32
TINY = ["model.temporal_width=16", "model.spatial_width=16", "model.num_classes=4", "model.weights=none",
        f"data.image_size=[{H}, {W}]", f"data.seq_len={T}", f"eval.seq_len={T}"]
MODELS = {
    "resnet18-stgcn": ["model.backbone=resnet18"],
    "resnet18-global": ["model.backbone=resnet18", 'model.branches=["global"]'],
    "mobilenet_v2-stgcn": ["model.backbone=mobilenet_v2"],
    "mobilenet_v2-global": ["model.backbone=mobilenet_v2", 'model.branches=["global"]'],
}


def make_checkpoint(path, overrides):
    cfg = load_config("synthetic", TINY + overrides)
    torch.manual_seed(0)
    model = STGCN(cfg.resolved_model()).eval()
    # Non-trivial BN statistics, so that the necks' eval-mode normalisation is part of what is compared.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, {"config": config_to_dict(cfg), "model": model.state_dict()}), model


def assert_same_descriptors(out, ref):
    # "equal within 1e-4 relative": element-wise, relative to the descriptor's scale
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory):
    """A tiny checkpoint, its eager model and its exported files (ONNX only with the extra)."""
    tmp = tmp_path_factory.mktemp(request.param)
    ckpt, model = make_checkpoint(tmp / "tiny.pt", MODELS[request.param])
    files = {"torch-export": export_checkpoint(ckpt, tmp / "tiny.pt2")}
    if HAS_ONNX:
        files["onnx"] = export_checkpoint(ckpt, tmp / "tiny.onnx")
    return model, files


@pytest.mark.parametrize("fmt", ["torch-export", pytest.param("onnx", marks=needs_onnx)])
def test_exported_descriptors_equal_eager(exported, fmt):
    model, files = exported
    result = files[fmt]
    assert result.seq_len == T and result.image_size == (H, W) and result.descriptor_dim == model.descriptor_dim
    assert result.max_relative_difference is not None and result.max_relative_difference < 1e-4  # export's own check
    encoder = load_exported(result.path)
    assert encoder.feature_dims == model.feature_dims and encoder.num_stripes == model.num_stripes
    for batch in (1, 5):  # one file, any batch size
        clips = torch.randn(batch, T, 3, H, W, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = model.encode(clips)
        out = encoder.encode(clips)
        assert out.shape == (batch, model.descriptor_dim) and out.dtype == torch.float32
        assert_same_descriptors(out, ref)


def test_export_leaves_the_model_untouched(tmp_path):
    from stgcn_pyg.deploy import DescriptorModel
    from stgcn_pyg.nn import AffinityGCNConv

    _, model = make_checkpoint(tmp_path / "m.pt", MODELS["resnet18-stgcn"])
    exportable = DescriptorModel(model)
    assert {c.impl for c in exportable.modules() if isinstance(c, AffinityGCNConv)} == {"dense"}
    assert {c.impl for c in model.modules() if isinstance(c, AffinityGCNConv)} == {"auto"}
    assert isinstance(model.heads, torch.nn.ModuleDict) and "global" in model.heads


def test_exported_file_carries_the_config(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt", MODELS["resnet18-global"])
    export_checkpoint(ckpt, tmp_path / "m.pt2", seq_len=3, check=False, allow_shape_change=True)
    encoder, config = load_model_file(tmp_path / "m.pt2")
    assert config.eval.seq_len == 3 and config.data.image_size == [H, W]
    # the checkpoint's own shapes are recorded beside the export's
    assert encoder.trained_seq_len == T and encoder.trained_image_size == (H, W)
    assert encoder.shape_change() == f"{tmp_path / 'm.pt2'} was exported for clips of 3 frames, its checkpoint is tested on {T}"
    assert config.model.backbone == "resnet18" and encoder.cfg.branches == ["global"]
    with pytest.raises(ExportError, match=r"m\.pt2: exported for clips \[B, 3, 3, 64, 32\].*--seq-len 3"):
        encoder.encode(torch.randn(1, 2, 3, H, W))
    with pytest.raises(ExportError, match="cannot be trained"):
        encoder.train()


def test_export_refuses_shapes_the_checkpoint_was_not_trained_on(tmp_path, capsys, monkeypatch):
    """A model exported for frames twice its training size scored mAP 2.1 against 12.6, and nothing said so."""
    import stgcn_pyg.deploy.export as export

    ckpt, _ = make_checkpoint(tmp_path / "m.pt", MODELS["resnet18-global"])
    monkeypatch.setattr(export, "_trace", lambda *a: pytest.fail("traced before the shapes were checked"))
    argv = ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.pt2")]
    assert main(argv + ["--image-size", "128", "64"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err == (f"error: {ckpt}: --image-size 128 64, but it was trained on {H}x{W} frames; a model scores far "
                   "lower on shapes it was not trained for (pass --allow-shape-change to export anyway)")
    assert main(argv + ["--seq-len", "3", "--image-size", str(H), str(W)]) == 2  # its own size is fine
    err = " ".join(capsys.readouterr().err.split())
    assert f"{ckpt}: --seq-len 3, but it is tested on clips of {T} frames (eval.seq_len; trained on {T});" in err
    assert "--image-size" not in err and list(tmp_path.iterdir()) == [ckpt]
    monkeypatch.undo()

    # with the flag: written, recording the checkpoint's shapes, and evaluate --model says so before any work
    assert main(argv + ["--image-size", "128", "64", "--allow-shape-change", "--no-check"]) == 0
    capsys.readouterr()
    encoder, _ = load_model_file(tmp_path / "m.pt2")
    assert encoder.image_size == (128, 64) and encoder.trained_image_size == (H, W) and encoder.trained_seq_len == T
    assert encoder.metadata["trained_image_size"] == [H, W] and encoder.metadata["trained_seq_len"] == T
    from stgcn_pyg.deploy import ExportedEncoder, load_for_inference

    said = []
    load_for_inference(tmp_path / "m.pt2", "cpu", log=said.append)
    assert said == [f"note: {tmp_path / 'm.pt2'} was exported for 128x64 frames, its checkpoint was trained on "
                    f"{H}x{W} (--allow-shape-change): expect lower scores than the checkpoint's"]
    monkeypatch.setattr(ExportedEncoder, "encode", lambda *a: pytest.fail("encoded before --seq-len was checked"))
    assert main(["evaluate", "--model", str(tmp_path / "m.pt2"), "--seq-len", "3", "--root", str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.endswith(f"error: --seq-len 3: {tmp_path / 'm.pt2'} was exported for clips of {T} frames; evaluate "
                        f"with --seq-len {T} (or export again with the clip length you need)")


def test_unexportable_model_fails_with_one_clear_error(tmp_path, monkeypatch):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt", MODELS["resnet18-global"])
    original = STGCN._run

    def data_dependent(self, frames, *args, **kwargs):
        if frames.mean() > 0:  # a branch on values: torch.export cannot trace it
            frames = frames * 2
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(STGCN, "_run", data_dependent)
    with pytest.raises(ExportError) as info:
        export_checkpoint(ckpt, tmp_path / "m.pt2")
    message = str(info.value)
    assert message.startswith(f"{ckpt}: the model cannot be exported (torch.export failed: ")
    assert "\n" not in message and len(message) < 600
    assert not (tmp_path / "m.pt2").exists() and list(tmp_path.glob(".*")) == []


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    # frames of 32 rows give feature maps of 2 rows: too few for the model's 4 stripes
    small = ["model.backbone=resnet18", "data.image_size=[32, 16]", 'model.branches=["global", "temporal"]']
    ckpt, _ = make_checkpoint(tmp_path / "small.pt", small)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "small.pt2")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{ckpt}: cannot export: model.num_stripes: 4 stripes need feature maps at least that tall" in err
    assert "Traceback" not in err

    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "x.pt2")]) == 2
    assert "x.pt2: a onnx file must be named *.onnx" in " ".join(capsys.readouterr().err.split())
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.pt2")]) == 2
    assert "none.pt: no such checkpoint" in " ".join(capsys.readouterr().err.split())


def test_missing_export_packages_are_named(tmp_path, monkeypatch):
    ckpt, _ = make_checkpoint(tmp_path / "m.pt", MODELS["resnet18-global"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxscript", "onnxruntime") else real(name, *a))
    with pytest.raises(ExportError, match=r"ONNX export needs the package onnxscript, not installed: "
                                          r"pip install 'stgcn-pyg\[export\]'"):
        export_checkpoint(ckpt, tmp_path / "m.onnx")
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(ExportError, match=r"Running an ONNX model needs the package onnxruntime"):
        load_exported(tmp_path / "x.onnx")


def test_unreadable_exported_files(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ExportError, match=r"bad\.pt2: not a torch\.export program"):
        load_model_file(bad)
    with pytest.raises(ExportError, match=r"gone\.onnx: no such file"):
        load_model_file(tmp_path / "gone.onnx")


@needs_onnx
def test_foreign_onnx_files(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00 not protobuf")
    with pytest.raises(ExportError, match=r"garbage\.onnx: not an ONNX model that onnxruntime can run"):
        load_model_file(garbage)
    # a valid ONNX model that stgcn-pyg did not write: no metadata to say what it takes
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "other.onnx")
    with pytest.raises(ExportError, match=r"other\.onnx: an ONNX model not written by `stgcn-pyg export`"):
        load_model_file(tmp_path / "other.onnx")


# ---------------------------------------------------------------------- the exported model scores like the checkpoint
@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, tiny_root, tiny_config):
    """The shared tiny synthetic set, an untrained checkpoint of the tiny run and its export (conftest.py)."""
    tmp = tmp_path_factory.mktemp("export-cli")
    cfg = tiny_config(tmp / "run")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / "tiny.pt", {"config": config_to_dict(cfg), "model": STGCN(cfg.resolved_model()).state_dict()})
    fmt, name = ("onnx", "tiny.onnx") if HAS_ONNX else ("torch-export", "tiny.pt2")
    assert main(["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(tmp / name)]) == 0
    return tmp, ckpt, tmp / name


def run_json(capsys, argv):
    import json

    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_exported_model_scores_the_synthetic_set_like_the_checkpoint(synthetic_run, capsys):
    tmp, ckpt, exported_file = synthetic_run
    capsys.readouterr()
    eager = run_json(capsys, ["evaluate", "--checkpoint", str(ckpt), "--precision", "fp32", "--engine", "torch",
                              "--json"])
    deployed = run_json(capsys, ["evaluate", "--model", str(exported_file), "--json"])
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert deployed[key] == pytest.approx(eager[key], abs=1e-6), key
    assert deployed["cmc"] == pytest.approx(eager["cmc"])
    assert (deployed["num_query"], deployed["seq_len"], deployed["mode"]) == (eager["num_query"], T, "all")
    # evaluate's default is fp32 on every CPU; the fastest setting (auto) gives the same numbers within tolerance
    default = run_json(capsys, ["evaluate", "--checkpoint", str(ckpt), "--json"])
    assert default["cmc"] == eager["cmc"] and default["precision"] == deployed["precision"] == "fp32"
    fastest = run_json(capsys, ["evaluate", "--checkpoint", str(ckpt), "--precision", "auto", "--json"])
    assert fastest["mAP"] == pytest.approx(eager["mAP"], abs=0.5)


def test_extract_and_search_accept_the_exported_model(synthetic_run, capsys):
    from stgcn_pyg.evaluation import read_descriptor_file

    tmp, ckpt, exported_file = synthetic_run
    for source, flags, out in ((ckpt, ["--precision", "fp32", "--engine", "torch"], tmp / "eager.pt"),
                               (exported_file, [], tmp / "dep.pt")):
        assert main(["extract", "--model", str(source), "--out", str(out), *flags]) == 0
    runtime = "onnxruntime" if exported_file.suffix == ".onnx" else "torch.export"
    assert f"descriptors in {runtime}, fp32 (an exported model runs as exported)" in capsys.readouterr().out
    eager, deployed = read_descriptor_file(tmp / "eager.pt"), read_descriptor_file(tmp / "dep.pt")
    for key in ("query_features", "gallery_features"):
        assert_same_descriptors(deployed[key], eager[key])
    capsys.readouterr()
    ranked = [run_json(capsys, ["search", flag, str(source), "--query-tracklet", "0", "--topk", "3", "--json", *extra])
              for flag, source, extra in (("--checkpoint", ckpt, ["--precision", "fp32", "--engine", "torch"]),
                                          ("--model", exported_file, []))]
    assert [r["tracklet"] for r in ranked[0]["results"]] == [r["tracklet"] for r in ranked[1]["results"]]
    assert [r["distance"] for r in ranked[1]["results"]] == pytest.approx([r["distance"] for r in ranked[0]["results"]],
                                                                          rel=1e-4)


def test_exported_model_with_another_clip_length_fails_clearly(synthetic_run, capsys):
    _, _, exported_file = synthetic_run
    assert main(["evaluate", "--model", str(exported_file), "--seq-len", "3"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err == (f"error: --seq-len 3: {exported_file} was exported for clips of {T} frames; evaluate with "
                   f"--seq-len {T} (or export again with the clip length you need)")  # before the query pass
    assert main(["evaluate", "--model", str(exported_file), "--precision", "bf16"]) == 2
    assert "runs as exported, in float32" in " ".join(capsys.readouterr().err.split())
    assert main(["evaluate", "--model", str(exported_file), "--engine", "torch"]) == 2
    runtime = "onnxruntime" if exported_file.suffix == ".onnx" else "torch.export"
    assert f"--engine torch: {exported_file} is an exported model; it runs in {runtime}, as exported" in " ".join(
        capsys.readouterr().err.split())
