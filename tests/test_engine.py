"""The engine behind extract/search/evaluate: onnxruntime gives torch's descriptors and table, from a cache keyed
by the checkpoint's content that is rebuilt when broken, and every fallback to torch says why."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from stgcn_pyg.checkpoint import load_checkpoint
from stgcn_pyg.cli import main
from stgcn_pyg.deploy import (ExportError, InferenceModel, OnnxRuntimeModel, engine, inference_engine,
                              load_for_inference)
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.models import STGCN

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in engine.ENGINE_PACKAGES)
pytestmark = pytest.mark.skipif(not HAS_ONNX, reason="the export extra is not installed: pip install -e '.[export]'")


@pytest.fixture(scope="module")
def run(tmp_path_factory, untrained_checkpoint):
    """A folder and an untrained checkpoint of the tiny run (ResNet-18, 64x32, T=2)."""
    tmp = tmp_path_factory.mktemp("engine")
    return tmp, untrained_checkpoint(tmp)


def clips(batch: int = 3):
    return torch.randn(batch, 2, 3, 64, 32, generator=torch.Generator().manual_seed(batch))


def eager(ckpt, x):
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        return model.eval().encode(x)


def relative_difference(out, ref) -> float:
    return float((out - ref).abs().max() / ref.abs().max())


def test_onnxruntime_engine_gives_torch_descriptors_from_a_cache_keyed_by_content(run, onnx_cache):
    tmp, ckpt = run
    said = []
    model, cfg = load_for_inference(ckpt, "cpu", "auto", "auto", log=said.append)
    assert isinstance(model, OnnxRuntimeModel) and inference_engine(model) == "onnxruntime"
    path = model.cache_path
    assert path.parent == onnx_cache and path.is_file() and path.name.startswith("tiny-")
    assert len(said) <= 1 and all(line.startswith(f"exporting {ckpt} to ONNX") for line in said)
    x = clips()
    out = model.encode(x)
    assert model.engine == "onnxruntime" and model.max_relative_difference <= engine.PARITY_TOLERANCE
    assert relative_difference(out, eager(ckpt, x)) <= 1e-4
    assert relative_difference(model.encode(clips(5)), eager(ckpt, clips(5))) <= 1e-4  # any batch size
    # the model's other attributes are the torch model's (plots use them)
    assert model.feature_dims == model.model.feature_dims and not model.training

    again = []
    model2, _ = load_for_inference(ckpt, "cpu", "auto", "auto", log=again.append)
    assert model2.cache_path == path and again == []  # a cache hit says nothing
    # the same bytes under another folder share the export; other bytes or another clip length do not
    copy = tmp / "copy" / "tiny.pt"
    copy.parent.mkdir()
    shutil.copy(ckpt, copy)
    assert load_for_inference(copy, "cpu", "auto", log=again.append)[0].cache_path == path and again == []
    assert engine.cache_key(ckpt, 3, (64, 32), 23) != engine.cache_key(ckpt, 2, (64, 32), 23)
    assert engine.cache_key(ckpt, 2, (64, 32), 22) != engine.cache_key(ckpt, 2, (64, 32), 23)


def test_a_broken_or_foreign_cache_file_is_exported_again(run):
    tmp, ckpt = run
    model, _ = load_for_inference(ckpt, "cpu", "fp32", log=lambda line: None)
    path = model.cache_path
    x = clips()
    ref = eager(ckpt, x)

    path.write_bytes(b"not an onnx file")  # corrupt
    said = []
    model, _ = load_for_inference(ckpt, "cpu", "fp32", log=said.append)
    assert len(said) == 1 and said[0].startswith(f"{path}: not an ONNX model that onnxruntime can run")
    assert said[0].endswith("exporting the cached model again")
    assert relative_difference(model.encode(x), ref) <= 1e-4 and model.engine == "onnxruntime"

    # a valid export of something else under this name (its key differs): not used
    import onnx

    foreign = onnx.load(path)
    meta = next(p for p in foreign.metadata_props if p.key == "stgcn_pyg")
    meta.value = json.dumps({**json.loads(meta.value), "cache_key": "another checkpoint's"})
    onnx.save(foreign, path)
    said = []
    model, _ = load_for_inference(ckpt, "cpu", "fp32", log=said.append)
    assert said == [f"{path}: the cached model was exported from another checkpoint or with other settings; "
                    "exporting it again"]
    assert relative_difference(model.encode(x), ref) <= 1e-4
    assert json.loads(next(p.value for p in onnx.load(path).metadata_props if p.key == "stgcn_pyg"))["cache_key"] \
        == engine.cache_key(ckpt, 2, (64, 32), 23)

    path.unlink()  # missing
    said = []
    model, _ = load_for_inference(ckpt, "cpu", "fp32", log=said.append)
    assert said == [f"exporting {ckpt} to ONNX for onnxruntime, once: {path}"] and path.is_file()


def test_fallbacks_to_torch_say_why_in_one_line(run, monkeypatch):
    tmp, ckpt = run
    x = clips()
    ref = eager(ckpt, x)

    # onnxruntime not installed
    real_find_spec = importlib.util.find_spec
    with monkeypatch.context() as patch:
        patch.setattr(engine.importlib.util, "find_spec",
                      lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
        said = []
        model, _ = load_for_inference(ckpt, "cpu", "fp32", log=said.append)
        assert isinstance(model, InferenceModel) and inference_engine(model) == "torch"
        assert said == ["engine torch: onnxruntime not installed (pip install 'stgcn-pyg[export]' for the "
                        "onnxruntime engine, up to twice as fast)"]
        with pytest.raises(ConfigError, match="--engine onnxruntime: onnxruntime not installed"):
            load_for_inference(ckpt, "cpu", "fp32", "onnxruntime")

    # the export fails (torch.export cannot trace a branch on values)
    original = STGCN._run

    def data_dependent(self, frames, *args, **kwargs):
        if frames.mean() > 0:
            frames = frames * 2
        return original(self, frames, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(STGCN, "_run", data_dependent)
        patch.setattr(engine, "cache_key", lambda *a: "0" * 64)  # no cached file to find: export afresh
        said = []
        model, _ = load_for_inference(ckpt, "cpu", "fp32", log=said.append)
        assert inference_engine(model) == "torch" and len(said) == 2 and said[0].startswith("exporting")
        assert said[1].startswith(f"engine torch: the checkpoint cannot run in onnxruntime ({ckpt}: the model "
                                  "cannot be exported (torch.export failed: ")
        with pytest.raises(ExportError, match="cannot be exported"):
            load_for_inference(ckpt, "cpu", "fp32", "onnxruntime", log=lambda line: None)

    # onnxruntime disagrees with torch on the first batch: torch's descriptors, from then on torch alone
    said = []
    model, _ = load_for_inference(ckpt, "cpu", "fp32", log=said.append)
    run_session = model.encoder._run
    model.encoder._run = lambda c: run_session(c) * 1.01
    out = model.encode(x)
    assert model.engine == "torch" and inference_engine(model) == "torch"
    assert len(said) == 1 and said[0].startswith(f"engine torch from here on: {model.cache_path}: onnxruntime's "
                                                 "descriptors differ from torch's by 1.0e-02 (max relative) on the "
                                                 "first batch, more than 0.0001")
    assert relative_difference(out, ref) <= 1e-5 and relative_difference(model.encode(x), ref) <= 1e-5
    strict, _ = load_for_inference(ckpt, "cpu", "fp32", "onnxruntime")
    strict.encoder._run = lambda c: run_session(c) * 1.01
    with pytest.raises(ExportError, match=r"--engine onnxruntime: .*differ from torch's.*use --engine torch"):
        strict.encode(x)


def test_engine_choice():
    assert engine.choose_engine("auto", "cpu", "fp32").engine == "onnxruntime"
    assert engine.choose_engine("auto", "cpu", "bf16") == ("torch", "--engine auto: the onnxruntime engine runs "
                                                                    "fp32, not bf16", False)
    assert engine.choose_engine("auto", "cuda", "fp32").engine == "torch"
    assert engine.choose_engine("torch", "cpu", "fp32").engine == "torch"
    with pytest.raises(ConfigError, match="--engine onnxruntime: the onnxruntime engine runs on the CPU, not on cuda"):
        engine.choose_engine("onnxruntime", "cuda", "fp32")
    with pytest.raises(ConfigError, match=r"--engine: 'tensorrt' is not one of auto, torch, onnxruntime"):
        engine.choose_engine("tensorrt", "cpu", "fp32")


def test_cache_folder_follows_the_project_cache(monkeypatch, tmp_path):
    from stgcn_pyg.deploy import engine_cache_dir  # the function itself (the session's fixture patches the module)

    monkeypatch.setenv("STGCN_PYG_CACHE", str(tmp_path))
    assert engine_cache_dir() == tmp_path / "onnx"


def test_the_cache_keeps_the_most_recently_used_exports(tmp_path):
    import os

    for i in range(engine.CACHE_KEEP + 3):
        (tmp_path / f"run{i}-0123.onnx").write_bytes(b"x")
        os.utime(tmp_path / f"run{i}-0123.onnx", (i, i))
    (tmp_path / ".run0-0123.tmp-42.onnx").write_bytes(b"x")  # another process's export in progress
    engine._prune(tmp_path, keep=tmp_path / "run0-0123.onnx")
    left = sorted(p.name for p in tmp_path.iterdir())
    newest = [f"run{i}-0123.onnx" for i in range(4, engine.CACHE_KEEP + 3)]
    assert left == sorted([".run0-0123.tmp-42.onnx", "run0-0123.onnx", *newest])


def test_the_cache_keeps_within_its_size_bound(tmp_path, monkeypatch):
    import os

    for i, size in enumerate([600_000, 300_000, 300_000, 300_000]):  # run3 the newest
        (tmp_path / f"run{i}-0123.onnx").write_bytes(b"x" * size)
        os.utime(tmp_path / f"run{i}-0123.onnx", (i, i))
    monkeypatch.setenv(engine.CACHE_MB_ENV, str(1_000_000 / 2**20))  # 1 MB: the one in use and two more
    engine._prune(tmp_path, keep=tmp_path / "run0-0123.onnx")  # in use, the oldest: it stays whatever its size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run0-0123.onnx", "run3-0123.onnx"]
    monkeypatch.setenv(engine.CACHE_MB_ENV, "0")  # only the one in use
    engine._prune(tmp_path, keep=tmp_path / "run3-0123.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run3-0123.onnx"]
    monkeypatch.setenv(engine.CACHE_MB_ENV, "lots")
    with pytest.raises(ConfigError, match=r"\$STGCN_PYG_ONNX_CACHE_MB: .* a number >= 0, got 'lots'"):
        engine.cache_bound()


# ---------------------------------------------------------------------- the commands
def cli(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_commands_name_the_engine(run, capsys):
    tmp, ckpt = run
    code, out, _ = cli(capsys, ["extract", "--checkpoint", str(ckpt), "--out", str(tmp / "f.pt")])
    said = [line for line in out.splitlines() if line.startswith("descriptors in")]
    assert code == 0 and len(said) == 1
    assert said[0].startswith("descriptors in onnxruntime, fp32 (--engine auto: exported once to ")
    assert said[0].endswith(", checked against torch on the first batch)")
    code, out, _ = cli(capsys, ["extract", "--checkpoint", str(ckpt), "--out", str(tmp / "t.pt"), "--engine", "torch"])
    assert code == 0 and ("descriptors in torch, channels_last, fp32 (--engine torch; --precision auto: the fastest "
                          "measured on a CPU with") in out

    code, out, _ = cli(capsys, ["evaluate", "--checkpoint", str(ckpt)])
    heading = next(line for line in out.splitlines() if line.startswith("tiny.pt on synthetic"))
    assert code == 0 and heading.endswith(", fp32 in onnxruntime)")
    code, out, _ = cli(capsys, ["evaluate", "--checkpoint", str(ckpt), "--engine", "torch"])
    assert code == 0 and out.splitlines()[0].endswith(", fp32 in torch)")
    code, out, _ = cli(capsys, ["evaluate", "--features", str(tmp / "f.pt")])
    assert code == 0 and out.splitlines()[0].endswith(", fp32 in onnxruntime)")  # the file remembers it
    code, out, _ = cli(capsys, ["search", "--checkpoint", str(ckpt), "--query-tracklet", "0", "--json"])
    assert code == 0 and json.loads(out)["engine"] == "onnxruntime"

    for bad, message in ((["--engine", "tvm"], "--engine: 'tvm' is not one of auto, torch, onnxruntime"),
                         (["--engine", "onnxruntime", "--precision", "bf16"],
                          "--engine onnxruntime: the onnxruntime engine runs fp32, not bf16; use --engine torch")):
        code, _, err = cli(capsys, ["evaluate", "--checkpoint", str(ckpt), *bad])
        assert code == 2 and err == f"error: {message}" + ("" if "tvm" in bad else " (or auto)")
    for command in ("evaluate", "extract", "search"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--engine ENGINE" in capsys.readouterr().out


def test_evaluate_gives_the_torch_table_and_ranking(run, tiny_root, capsys):
    """evaluate's default engine must give the table training reports (torch): same descriptors to 1e-4 and
    the same ranking of every query's gallery."""
    from stgcn_pyg.data import load_dataset
    from stgcn_pyg.evaluation import TestOptions, evaluate_model, read_descriptor_file
    from stgcn_pyg.metrics import compute_distance

    tmp, ckpt = run
    model, cfg = load_checkpoint(ckpt)
    dataset = load_dataset("mars", tiny_root)
    for mode in ("evenly", "all"):  # the tiny run's own evaluation mode, and evaluate's default
        code, out, _ = cli(capsys, ["evaluate", "--checkpoint", str(ckpt), "--mode", mode, "--json"])
        scores = json.loads(out)
        assert code == 0 and scores["engine"] == "onnxruntime" and scores["precision"] == "fp32"
        trained = evaluate_model(model, dataset, TestOptions.from_config(cfg, mode=mode, progress=False),
                                 return_features=True)  # what training's evaluation runs
        for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
            assert scores[key] == pytest.approx(trained[key], abs=1e-9), (mode, key)
        assert scores["cmc"] == trained["cmc"]

        code, _, _ = cli(capsys, ["extract", "--checkpoint", str(ckpt), "--mode", mode, "--out", str(tmp / "q.pt")])
        blob = read_descriptor_file(tmp / "q.pt")
        assert code == 0 and blob["engine"] == "onnxruntime"
        for ours, theirs in ((blob["query_features"], trained["qf"]), (blob["gallery_features"], trained["gf"])):
            assert relative_difference(ours, theirs) <= 1e-4
        ranked = compute_distance(blob["query_features"], blob["gallery_features"]).argsort(dim=1, stable=True)
        assert torch.equal(ranked, compute_distance(trained["qf"], trained["gf"]).argsort(dim=1, stable=True))


# ---------------------------------------------------------------------- a cache that cannot be written (issue 39)
def test_a_full_cache_falls_back_to_torch_with_one_line_and_onnxruntime_names_it(run, monkeypatch, tmp_path):
    import errno

    from stgcn_pyg.deploy import export as export_module

    tmp, ckpt = run
    monkeypatch.setenv("STGCN_PYG_CACHE", str(tmp_path / "cache"))  # empty: the export is needed

    def full_disk(model, out, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(export_module, "export_model", full_disk)
    said = []
    model, _ = load_for_inference(ckpt, "cpu", "fp32", log=said.append)
    assert isinstance(model, InferenceModel) and inference_engine(model) == "torch"
    assert said[1:] == [f"engine torch: the ONNX cache {tmp_path / 'cache' / 'onnx'} cannot be written (No space "
                        "left on device); set $STGCN_PYG_CACHE to a writable folder to run onnxruntime"]
    with pytest.raises(ExportError, match=r"^--engine onnxruntime: the ONNX cache .* cannot be written \(No space "
                                          r"left on device\); .*, or use --engine torch \(or auto\)$"):
        load_for_inference(ckpt, "cpu", "fp32", "onnxruntime", log=lambda line: None)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "extract", "search"])
def test_an_unwritable_cache_means_the_torch_engine_with_one_note(command, run, tmp_path):
    import os
    import subprocess
    import sys

    from test_outputs import _without_root_override

    tmp, ckpt = run
    locked = tmp_path / "cache"
    locked.mkdir(mode=0o555)
    argv = [command, "--checkpoint", str(ckpt), "--mode", "evenly",
            *{"evaluate": [], "extract": ["--out", str(tmp_path / "f.pt")],
              "search": ["--query-tracklet", "0"]}[command]]
    try:
        proc = subprocess.run([sys.executable, "-m", "stgcn_pyg", *argv], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "STGCN_PYG_CACHE": str(locked)},
                              preexec_fn=_without_root_override if os.geteuid() == 0 else None)
    finally:
        locked.chmod(0o755)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    notes = [line for line in said.splitlines() if line.startswith("engine torch")]
    assert notes == [f"engine torch: the ONNX cache {locked / 'onnx'} cannot be written (permission denied); set "
                     "$STGCN_PYG_CACHE to a writable folder to run onnxruntime"], said
    assert "Traceback" not in said and "error:" not in said and list(locked.iterdir()) == []
    if command == "extract":
        assert (tmp_path / "f.pt").is_file()
