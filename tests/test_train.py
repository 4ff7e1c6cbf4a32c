"""Training runs end to end on a tiny synthetic set: outputs, checkpoints, exact resume, CLI, errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from stgcn_pyg.cli import main
from stgcn_pyg.data import TrackletTransform, evenly, load_dataset, read_frame
from stgcn_pyg.errors import CheckpointError, ConfigError, DatasetError
from stgcn_pyg.metrics import compute_distance, evaluate_rank
from stgcn_pyg.models import STGCNLoss
from stgcn_pyg.checkpoint import FORMAT, load_checkpoint
from stgcn_pyg.config import config_to_dict, load_config
from stgcn_pyg.training import Trainer, train

# tiny_root, tiny_config and tiny_overrides (the tiny run) come from conftest.py.


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def trained(tiny_config, tmp_path_factory):
    """One finished 2-epoch run (evaluated after each epoch): (trainer, results, output folder)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    trainer = Trainer(tiny_config(out, "train.epochs=2", "train.eval_every=1"))
    return trainer, trainer.fit(), out


def test_run_writes_outputs_and_checkpoint_round_trips(tiny_root, tiny_config, trained):
    trainer, results, out = trained
    assert {"config.toml", "train.log", "metrics.csv", "last.pt", "best.pt"} <= {p.name for p in out.iterdir()}
    rows = read_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["mAP"] != "" for r in rows)
    assert float(rows[-1]["mAP"]) == pytest.approx(results["mAP"], abs=1e-3)
    # The resolved config reloads to the same run settings (num_classes filled in from the data).
    assert load_config(str(out / "config.toml")).model.num_classes == trainer.loader.num_classes
    raw = torch.load(out / "last.pt", weights_only=True)
    assert raw["format"] == FORMAT and raw["epoch"] == 2 and raw["step"] == 2
    assert set(raw) >= {"config", "model", "optimizer", "scheduler", "rng", "best"}
    model, config = load_checkpoint(out / "last.pt")
    assert config.model.backbone == "resnet18" and not model.training
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model.seq_len == config.model.seq_len == config.data.seq_len == 2  # the T of the concatenated frames
    clips = torch.randn(2, 2, 3, 64, 32)
    trainer.model.eval()
    torch.testing.assert_close(model.encode(clips), trainer.model.encode(clips))
    # The reported scores are the checkpointed model's on the test split, recomputed here from the frames:
    # one clip of eval.seq_len=2 evenly spaced frames per tracklet, euclidean distances, standard protocol.
    ds = load_dataset("mars", tiny_root)
    to_clip = TrackletTransform((64, 32), train=False)
    with torch.no_grad():
        qf, gf = (model.encode(torch.stack([to_clip([read_frame(f[i]) for i in evenly(len(f), 2)])
                                            for f in df["frames"]])) for df in (ds.query, ds.gallery))
    cmc, mAP = evaluate_rank(compute_distance(qf, gf), ds.query["pid"], ds.gallery["pid"], ds.query["camid"],
                             ds.gallery["camid"], max_rank=len(ds.gallery))
    assert results["mAP"] == pytest.approx(100 * mAP, abs=1e-3)
    assert results["rank1"] == pytest.approx(100 * cmc[0], abs=1e-3)
    assert (results["num_query"], results["num_gallery"]) == (len(ds.query), len(ds.gallery))
    # best.pt holds the epoch with the best mAP.
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["best"] == max(float(r["mAP"]) for r in rows)
    # A second run into the same folder never overwrites it; the trainer resolves a copy of its config.
    again = tiny_config(out, "train.epochs=1")
    given = config_to_dict(again)
    trainer = Trainer(again)
    assert trainer.output == out.parent / "run-2" and trainer.cfg.train.output == str(out.parent / "run-2")
    assert config_to_dict(again) == given and trainer.cfg.model.num_classes == trainer.loader.num_classes


@pytest.mark.slow
def test_resume_after_interruption_equals_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    train(tiny_config(tmp_path / "straight", "train.epochs=2"))
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)

    # Interrupt the second run during its second epoch (at its second step).
    calls = {"n": 0}
    original = STGCNLoss.forward

    def interrupting(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(STGCNLoss, "forward", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "broken", "train.epochs=2"))
    monkeypatch.setattr(STGCNLoss, "forward", original)
    assert torch.load(tmp_path / "broken" / "last.pt", weights_only=True)["epoch"] == 1

    train(tiny_config(tmp_path / "broken", "train.epochs=2"), resume=tmp_path / "broken" / "last.pt")
    resumed = torch.load(tmp_path / "broken" / "last.pt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["step"] == straight["step"] == 2
    for k, v in straight["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    a, b = read_csv(tmp_path / "straight" / "metrics.csv"), read_csv(tmp_path / "broken" / "metrics.csv")
    assert [r["epoch"] for r in b] == ["1", "2"]
    for ra, rb in zip(a, b):
        assert ra["loss"] == rb["loss"] and ra["lr"] == rb["lr"] and ra["mAP"] == rb["mAP"]
    assert "resumed from" in (tmp_path / "broken" / "train.log").read_text()


@pytest.mark.slow
def test_cli_default_dataset_end_to_end_and_resume(tiny_overrides, tmp_path, monkeypatch, capsys):
    """`stgcn-pyg train` on the built-in synthetic set (generated into a fresh cache), then --resume alone."""
    monkeypatch.setenv("STGCN_PYG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cli-run"
    args = ["train", "--epochs", "1", "--output", str(out)]
    for s in tiny_overrides:
        args += ["--set", s]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "rank-1" in printed and "mAP" in printed and "synthetic" in printed
    assert (out / "last.pt").is_file() and any((tmp_path / "cache").iterdir())
    # Continue the same run for one more epoch: the config comes from the checkpoint, --epochs on top.
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    rows = read_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    # The config records the generated set's folder, so `stgcn-pyg evaluate` scores the same split again.
    assert ckpt["config"]["data"]["root"].startswith(str(tmp_path / "cache"))
    capsys.readouterr()
    # `evaluate` defaults to the dense test; the run's own mode (evenly, in the tiny run) gives its table again.
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--mode", "evenly", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["mAP"] == pytest.approx(float(rows[-1]["mAP"]), abs=1e-3)


def test_bad_input_gives_one_clear_message(tiny_config, trained, tmp_path, capsys):
    def fails(argv):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        return " ".join(err.split())

    assert "unknown key 'optim.lrr'" in fails(["train", "--set", "optim.lrr=1"])
    assert "model.backbone: 'resnet999' is not one of" in fails(["train", "--set", "model.backbone=resnet999"])
    assert "dataset root folder not found" in fails(["train", "--dataset", "mars", "--root", str(tmp_path / "nope")])
    assert "needs its root folder" in fails(["train", "--dataset", "mars"])
    assert "no such checkpoint" in fails(["train", "--resume", str(tmp_path / "missing.pt")])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    msg = fails(["train", "--resume", str(junk)])
    # torch's own message advises weights_only=False (runs the file's code): never pass that on.
    assert "not a stgcn-pyg checkpoint" in msg and "weights_only" not in msg

    # A checkpoint of another model: resuming it with a config that asks for resnet34 fails before training.
    run = trained[2]
    other = tmp_path / "other.toml"
    other.write_text((run / "config.toml").read_text().replace('"resnet18"', '"resnet34"'))
    msg = fails(["train", "--config", str(other), "--resume", str(run / "last.pt")])
    assert "another model" in msg and "backbone: 'resnet18' vs 'resnet34'" in msg
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a stgcn-pyg checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    # A state dict that does not fit the model in the config (tampered checkpoint).
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["config"]["model"]["temporal_width"] = 64
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="of another model.*shape mismatch"):
        load_checkpoint(tmp_path / "tampered.pt")
    with pytest.raises(DatasetError):
        train(tiny_config(tmp_path / "x", f'data.root="{tmp_path / "empty-root"}"', "data.dataset=mars"))
    with pytest.raises(ConfigError, match="fewer than"):
        Trainer(tiny_config(tmp_path / "y", "model.num_classes=1"))


def test_train_logs_each_epoch_off_a_terminal_and_ends_with_where_and_what_next(tiny_root, tiny_overrides, tmp_path,
                                                                                 capsys):
    out = tmp_path / "a-rather-long-folder-name-so-that-the-commands-pass-eighty-columns" / "run"
    args = ["train", "--epochs", "2", "--output", str(out), "--set", f'data.root="{tiny_root}"']
    for s in tiny_overrides:
        args += ["--set", s]
    assert main(args) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    # captured output is not a terminal: one line per epoch instead of progress bars
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epoch_lines] == ["1/2", "2/2"]
    assert all("loss" in ln and "lr" in ln and "img/s" in ln for ln in epoch_lines)
    assert "ETA" in epoch_lines[0] and "mAP" in epoch_lines[1]
    # where the run is, and the next commands, each whole on one line
    assert f"run saved in {out}/" in printed
    assert any(ln.endswith("# dense test (every frame), CMC curve, ranked results, affinity") for ln in lines)
    for command in (f"stgcn-pyg evaluate --checkpoint {out / 'last.pt'} --plots {out / 'plots'}",
                    f"stgcn-pyg search --checkpoint {out / 'last.pt'} --query-tracklet 0",
                    f"stgcn-pyg train --resume {out} --epochs 4"):
        assert any(command in ln for ln in lines), command


@pytest.mark.parametrize("model", ['model.branches=["global"]', 'model.graph_layer="fc"'])
def test_a_run_without_a_temporal_graph_promises_no_affinity_picture_and_evaluate_says_why(
        model, tiny_root, tiny_overrides, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--epochs", "1", "--output", str(out), "--set", f'data.root="{tiny_root}"', "--set", model]
    for s in tiny_overrides:
        args += ["--set", s]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.endswith("# dense test (every frame), CMC curve, ranked results") for ln in lines), lines
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--plots", str(out / "plots"), "--mode", "evenly",
                 "--num-grids", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    why = ("model.branches: this model has no temporal branch" if "branches" in model
           else 'model.graph_layer: its temporal branch has "fc" layers, no graph')
    assert f"no affinity plot: {why}" in printed
    assert {p.name for p in (out / "plots").iterdir()} == {"cmc.png", "query_0000.png"}


def test_results_say_where_the_run_went(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    results = train(tiny_config(out, "train.epochs=1"))
    assert results["output"] == str(out) and results["checkpoint"] == str(out / "last.pt")
    assert f"output folder {out}\n" in capsys.readouterr().out
    # The folder is taken: the next run goes to run-2, and the results and the console say so.
    again = train(tiny_config(out, "train.epochs=1"))
    assert again["output"] == str(out.parent / "run-2") and (out.parent / "run-2" / "last.pt").is_file()
    assert f"output folder {out.parent / 'run-2'} ({out} is taken)\n" in capsys.readouterr().out
    assert load_checkpoint(again["checkpoint"])[1].train.output == again["output"]


@pytest.mark.parametrize("flush", [True, False])
def test_cpu_run_flushes_denormals_when_configured(tiny_config, tmp_path, flush):
    from stgcn_pyg.training.run import build_run

    denormal = torch.tensor([1e-39], dtype=torch.float64)  # a float32 denormal once converted
    torch.set_flush_denormal(False)
    try:
        build_run(tiny_config(tmp_path / "run", f"train.flush_denormal={str(flush).lower()}", "train.device=cpu"))
        # With FTZ/DAZ the float32 product is zero; without, the denormal survives.
        product = (denormal.float() * 1.0).item()
        assert (product == 0.0) == flush
    finally:
        torch.set_flush_denormal(False)


def test_backbone_learning_rate_scale_gives_the_backbone_its_own_group():
    from stgcn_pyg.config import OptimConfig
    from stgcn_pyg.models import STGCN
    from stgcn_pyg.config import ModelConfig
    from stgcn_pyg.training.run import build_optimizer

    model = STGCN(ModelConfig(backbone="resnet18", weights="none", num_classes=3, temporal_width=8,
                              spatial_width=8, seq_len=2))
    one = build_optimizer(model, OptimConfig(lr=1e-3))
    assert len(one.param_groups) == 1 and one.param_groups[0]["lr"] == 1e-3
    two = build_optimizer(model, OptimConfig(lr=1e-3, backbone_lr_scale=0.1))
    backbone, rest = two.param_groups
    assert backbone["lr"] == pytest.approx(1e-4) and rest["lr"] == 1e-3
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    trained = [p for p in model.parameters() if p.requires_grad]  # the BN necks' shifts are frozen
    assert len(backbone["params"]) + len(rest["params"]) == len(trained)


def test_frozen_backbone_epochs_train_only_the_heads_first(tiny_config, tmp_path):
    """LP-FT: in the frozen epoch the backbone's weights and batch-norm statistics stay as they started, the
    graph layers and heads learn; afterwards the backbone learns too."""
    cfg = tiny_config(tmp_path / "run", "train.epochs=2", "train.freeze_backbone_epochs=1")
    trainer = Trainer(cfg)
    model = trainer.run.model
    start = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots = []
    original = trainer._end_epoch

    def record(epoch, row):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        original(epoch, row)

    trainer._end_epoch = record
    trainer.fit()
    first, second = snapshots
    backbone = [k for k in start if k.startswith("backbone.")]
    assert all(torch.equal(first[k], start[k]) for k in backbone)  # running stats included
    assert not torch.equal(first["temporal.convs.0.lin.weight"], start["temporal.convs.0.lin.weight"])
    assert any(not torch.equal(second[k], first[k]) for k in backbone if k.endswith("conv1.weight"))
    with pytest.raises(ConfigError, match="optim.backbone_lr_scale"):
        tiny_config(tmp_path / "bad", "optim.backbone_lr_scale=0")


def test_best_pt_is_last_pt_while_the_last_epoch_is_best_and_the_weights_alone_after(tiny_config, tmp_path,
                                                                                      monkeypatch):
    """Issue 39: best.pt and last.pt were two full copies (optimiser state included), 153 MB each on the default
    run. mAP by epoch here: 50, 40 (worse: best.pt becomes epoch 1's weights alone), 60 (best again)."""
    from stgcn_pyg.checkpoint import EVALUATION_KEYS, same_file

    maps, seen = iter([50.0, 40.0, 60.0]), []
    real_evaluate, real_end_epoch = Trainer.evaluate, Trainer._end_epoch

    def evaluate(self):
        return {**real_evaluate(self), "mAP": next(maps)}

    def end_epoch(self, epoch, row):
        real_end_epoch(self, epoch, row)
        last, best = self.output / "last.pt", self.output / "best.pt"
        seen.append((same_file(last, best), torch.load(best, weights_only=True), last.stat().st_size,
                     best.stat().st_size))

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    monkeypatch.setattr(Trainer, "_end_epoch", end_epoch)
    out = tmp_path / "run"
    train(tiny_config(out, "train.epochs=3", "train.eval_every=1"))
    (linked1, best1, _, _), (linked2, best2, last2, size2), (linked3, best3, _, _) = seen
    assert linked1 and best1["epoch"] == 1 and "optimizer" in best1
    assert not linked2 and best2["epoch"] == 1 and best2["best"] == 50.0
    assert set(best2) == {"format", *EVALUATION_KEYS} and size2 < last2 / 2  # no optimiser, schedule or rng
    for k, v in best1["model"].items():
        assert torch.equal(best2["model"][k], v), k
    assert linked3 and best3["epoch"] == 3 and best3["best"] == 60.0
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]


def test_a_weights_only_best_pt_evaluates_but_does_not_resume(tiny_config, untrained_checkpoint, tmp_path, capsys):
    from stgcn_pyg.checkpoint import evaluation_payload, read_checkpoint, save_checkpoint

    full = read_checkpoint(untrained_checkpoint(tmp_path))
    best = save_checkpoint(tmp_path / "best.pt", evaluation_payload({**full, "optimizer": {}, "rng": {}}))
    model, _ = load_checkpoint(best)
    assert main(["evaluate", "--checkpoint", str(best), "--engine", "torch", "--mode", "evenly", "--json"]) == 0
    assert "mAP" in json.loads(capsys.readouterr().out)
    assert main(["train", "--resume", str(best)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: {best}: holds the weights for evaluation only" in err and "resume from the run's last.pt" in err


def test_on_a_terminal_the_bars_stop_for_the_evaluation_and_each_epoch_leaves_its_line(tiny_config, tmp_path):
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, width=100, record=True)
    trainer = Trainer(tiny_config(tmp_path / "run", "train.epochs=3", "train.eval_every=1", "train.progress=true"),
                      console=console)
    assert trainer.shows_progress_bars
    live_during_evaluation = []
    evaluate = trainer.evaluate

    def watched():
        # the training bars' live display, stopped while the evaluation draws its own
        live_during_evaluation.append(bool(getattr(console, "_live_stack", None) or getattr(console, "_live", None)))
        return evaluate()

    trainer.evaluate = watched
    trainer.fit()
    assert live_during_evaluation == [False, False, False]
    import re

    # the loss on a line of its own (epoch_line), one per epoch, on a terminal as in a log (the record holds the
    # bars' renders too, without the cursor moves that clear them)
    epochs = re.findall(r"epoch (\d)/3  loss \d+\.\d{3}  lr \S+  \d+ img/s", console.export_text())
    assert epochs == ["1", "2", "3"]
