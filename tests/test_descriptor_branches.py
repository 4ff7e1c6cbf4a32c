"""Scoring some branches' slices of f_all (`--branches`, TestOptions.branches): which columns, against the
descriptor sliced by hand, through every command and the descriptor file, and the errors."""

from __future__ import annotations

import json

import pytest
import torch

from stgcn_pyg.cli import main
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.evaluation import TestOptions, branch_columns


def test_columns_by_hand():
    dims = {"global": 3, "temporal": 2, "spatial": 4}
    assert branch_columns(dims, ()) is None
    assert branch_columns(dims, ("temporal",)).tolist() == [3, 4]
    # f_all's order, whatever order they are named in
    assert branch_columns(dims, ("spatial", "global")).tolist() == [0, 1, 2, 5, 6, 7, 8]


def test_options_take_a_comma_list_and_drop_repeats():
    assert TestOptions(branches="temporal, spatial,temporal").branches == ("temporal", "spatial")
    assert TestOptions().replace(branches=["global"]).branches == ("global",)
    assert TestOptions().branches == ()


def test_an_unknown_branch_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"'spatail' is not a branch of this model \(its branches: global, "
                                          r"temporal, spatial\)"):
        branch_columns({"global": 3, "temporal": 2, "spatial": 4}, ("spatail",))
    with pytest.raises(ConfigError, match="does not say how its descriptor splits"):
        branch_columns(None, ("temporal",))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, untrained_checkpoint):
    return untrained_checkpoint(tmp_path_factory.mktemp("branches"))


def evaluate_json(capsys, *argv):
    assert main(["evaluate", *argv, "--mode", "evenly", "--engine", "torch", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_scores_the_hand_sliced_descriptor(checkpoint, capsys):
    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.evaluation import evaluate_dataset_descriptors, extract_split, load_test_dataset

    model, cfg = load_checkpoint(checkpoint)
    ds = load_test_dataset(cfg, progress=False)
    options = TestOptions.from_config(cfg, mode="evenly", progress=False)
    with torch.no_grad():
        qf, gf = (extract_split(model, df, options) for df in (ds.query, ds.gallery))
    dims = model.feature_dims
    temporal = slice(dims["global"], dims["global"] + dims["temporal"])
    want = evaluate_dataset_descriptors(qf[:, temporal], gf[:, temporal], ds, options)
    got = evaluate_json(capsys, "--checkpoint", str(checkpoint), "--branches", "temporal")
    assert got["branches"] == ["temporal"]
    for key in ("rank1", "mAP", "mINP"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    whole = evaluate_json(capsys, "--checkpoint", str(checkpoint))
    assert "branches" not in whole and whole["mAP"] != got["mAP"]
    every = evaluate_json(capsys, "--checkpoint", str(checkpoint), "--branches", ",".join(dims))
    assert every["mAP"] == pytest.approx(whole["mAP"], abs=1e-6)  # all the slices are f_all


def test_the_heading_names_the_slices(checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--mode", "evenly", "--engine", "torch",
                 "--branches", "temporal,spatial"]) == 0
    assert "descriptor: the temporal, spatial slices of f_all" in " ".join(capsys.readouterr().out.split())


def test_extract_writes_the_slices_and_evaluate_reads_them(checkpoint, tmp_path, capsys):
    out = tmp_path / "temporal.pt"
    assert main(["extract", "--checkpoint", str(checkpoint), "--mode", "evenly", "--engine", "torch",
                 "--branches", "temporal", "--out", str(out)]) == 0
    capsys.readouterr()
    blob = torch.load(out, weights_only=True)
    from stgcn_pyg.checkpoint import load_checkpoint

    assert blob["query_features"].shape[1] == load_checkpoint(checkpoint)[0].feature_dims["temporal"]
    assert blob["branches"] == ["temporal"]
    assert main(["evaluate", "--features", str(out), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    direct = evaluate_json(capsys, "--checkpoint", str(checkpoint), "--branches", "temporal")
    assert from_file["branches"] == ["temporal"] and from_file["mAP"] == pytest.approx(direct["mAP"], abs=1e-6)


def test_an_exported_model_slices_like_its_checkpoint(checkpoint, tmp_path, capsys):
    exported = tmp_path / "tiny.pt2"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torch-export", "--out", str(exported)]) == 0
    capsys.readouterr()
    eager = evaluate_json(capsys, "--checkpoint", str(checkpoint), "--branches", "spatial")
    assert main(["evaluate", "--model", str(exported), "--mode", "evenly", "--branches", "spatial", "--json"]) == 0
    deployed = json.loads(capsys.readouterr().out)
    assert deployed["mAP"] == pytest.approx(eager["mAP"], abs=1e-6)


def test_cli_errors_before_any_work(checkpoint, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--branches", "tempral", "--dataset", "mars",
                 "--root", str(tmp_path / "nowhere")]) == 2  # the name is checked before the data is looked for
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("error:") == 1 and "'tempral' is not a branch of this model" in err
    assert main(["evaluate", "--features", str(tmp_path / "f.pt"), "--branches", "temporal"]) == 2
    assert "not --features" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("command", ["evaluate", "extract", "search"])
def test_a_bad_branch_is_refused_before_any_export_or_data(checkpoint, tmp_path, capsys, monkeypatch, command):
    import stgcn_pyg.deploy.engine as engine

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was set up (an ONNX export) before the branch names were checked")

    monkeypatch.setattr(engine, "choose_engine", no_engine)
    monkeypatch.setattr(engine, "cached_onnx", no_engine)
    extra = {"evaluate": [], "extract": ["--out", str(tmp_path / "f.pt")], "search": ["--query-tracklet", "0"]}
    assert main([command, "--checkpoint", str(checkpoint), "--engine", "onnxruntime", "--branches", "tempral",
                 "--dataset", "mars", "--root", str(tmp_path / "nowhere"), *extra[command]]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("error:") == 1 and "'tempral' is not a branch of this model" in err
    assert not (tmp_path / "f.pt").exists()


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_branches_naming_nothing_is_one_error(tmp_path, capsys, value):
    # before the checkpoint is read: the file need not exist
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--branches", value]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("error:") == 1 and "--branches: no branch named" in err
    assert main(["evaluate", "--features", str(tmp_path / "f.pt"), "--branches", value]) == 2
    assert "--branches: no branch named" in capsys.readouterr().err
