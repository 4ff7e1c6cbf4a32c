"""The training options for CPU speed, each opt-in: train.channels_last, train.amp=bf16 and train.compile."""

from __future__ import annotations

import pytest
import torch
from gradient_checks import assert_same_gradients

from stgcn_pyg.config import load_config
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.training.run import build_run
from stgcn_pyg.training.trainer import train_step


def test_channels_last_has_modes_and_reads_the_earlier_switch(tmp_path):
    assert load_config("synthetic").train.channels_last == "auto"
    assert load_config("synthetic", ["train.channels_last=on"]).train.channels_last == "on"
    # Configs and checkpoints written when it was a switch: true meant "on CUDA" (auto), false off.
    assert load_config("synthetic", ["train.channels_last=true"]).train.channels_last == "auto"
    assert load_config("synthetic", ["train.channels_last=false"]).train.channels_last == "off"
    old = tmp_path / "old.toml"
    old.write_text("[train]\nchannels_last = false\n")
    assert load_config(str(old)).train.channels_last == "off"
    with pytest.raises(ConfigError, match=r"train.channels_last: 'always' is not one of 'auto', 'on', 'off'"):
        load_config("synthetic", ["train.channels_last=always"])
    with pytest.raises(ConfigError, match=r"train.compile: expected true or false, got 'yes'"):
        load_config("synthetic", ["train.compile=yes"])


def _run(tiny_config, folder, *overrides):
    return build_run(tiny_config(folder, "data.num_workers=0", *overrides))


def _step(run, batch):
    run.net.train()
    loss, _ = train_step(run.net, run.criterion, run.optimizer, batch, run.device, run.autocast())
    return loss


def _frames_reaching_the_backbone(model):
    seen = []
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    return seen


def test_cpu_defaults_stay_fp32_and_contiguous(tiny_config, tmp_path):
    run = _run(tiny_config, tmp_path / "run")
    assert run.device.type == "cpu" and not run.use_amp and not run.model.channels_last
    assert run.net is run.model


def test_channels_last_on_the_cpu_is_the_same_step_in_another_layout(tiny_config, tmp_path):
    plain = _run(tiny_config, tmp_path / "plain")
    nhwc = _run(tiny_config, tmp_path / "nhwc", "train.channels_last=on")
    conv = next(m for m in nhwc.model.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert nhwc.model.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = _frames_reaching_the_backbone(nhwc.model)
    batch = next(iter(plain.loader))
    reference = _step(plain, batch)
    loss = _step(nhwc, batch)
    assert seen and seen[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    # not the weights after Adam's first step: an entry moves by lr * g / (|g| + eps), whatever g's size
    assert_same_gradients(plain.model, nhwc.model, tol=0.05)
    # The checkpointed weights load into a model built the usual way.
    fresh = _run(tiny_config, tmp_path / "fresh")
    fresh.model.load_state_dict(nhwc.model.state_dict())


def test_bf16_autocast_trains_on_the_cpu_close_to_fp32(tiny_config, tmp_path):
    fp32 = _run(tiny_config, tmp_path / "fp32")
    bf16 = _run(tiny_config, tmp_path / "bf16", "train.amp=bf16", "train.channels_last=on")
    assert bf16.use_amp
    batch = next(iter(fp32.loader))
    reference = _step(fp32, batch)
    loss = _step(bf16, batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=0.05)
    # Every trained parameter got a finite gradient, and the weights stay float32 (autocast, not a cast).
    for name, p in bf16.model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.dtype == torch.float32, name


@pytest.mark.slow
def test_compiled_training_step_matches_eager(tiny_config, tmp_path):
    """train.compile: the steps run a compiled net with the eager step's numbers; the model itself (what
    evaluation and the checkpoints use) stays the plain module, its state dict names unchanged."""
    eager = _run(tiny_config, tmp_path / "eager")
    compiled = _run(tiny_config, tmp_path / "compiled", "train.compile=true")
    assert compiled.net is not compiled.model and isinstance(compiled.net, torch._dynamo.eval_frame.OptimizedModule)
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())
    for run in (eager, compiled):  # zero rate: both steps see the same weights, and the gradients stay
        run.optimizer = torch.optim.SGD(run.model.parameters(), lr=0.0)
    batches = iter(eager.loader)
    for _ in range(2):  # the second step runs the compiled code without compiling
        batch = next(batches)
        torch.testing.assert_close(_step(compiled, batch), _step(eager, batch), rtol=1e-4, atol=1e-4)
        assert_same_gradients(eager.model, compiled.model, tol=0.05)


def test_fused_optimiser_takes_the_same_step(tiny_config, tmp_path):
    plain = _run(tiny_config, tmp_path / "plain")
    fused = _run(tiny_config, tmp_path / "fused", "optim.fused=true")
    assert all(g["fused"] for g in fused.optimizer.param_groups)
    assert not any(g["fused"] for g in plain.optimizer.param_groups)
    batch = next(iter(plain.loader))
    torch.testing.assert_close(_step(fused, batch), _step(plain, batch))
    # Adam's first step moves each weight by about lr: the two kernels agree to float rounding of that.
    for (name, p), q in zip(plain.model.named_parameters(), fused.model.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-7, msg=lambda m: f"{name}: {m}")


def test_resuming_takes_the_optimiser_kernel_from_the_config(tiny_config, tmp_path):
    from stgcn_pyg.training import Trainer

    Trainer(tiny_config(tmp_path / "run", "train.epochs=1")).fit()
    resumed = build_run(tiny_config(tmp_path / "run", "train.epochs=2", "optim.fused=true"),
                        resume=tmp_path / "run" / "last.pt")
    assert resumed.start_epoch == 1 and all(g["fused"] for g in resumed.optimizer.param_groups)
    resumed.release_output()
