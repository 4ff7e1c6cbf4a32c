"""Building a training run from a config: what :class:`~stgcn_pyg.training.Trainer` trains.

:func:`build_run` checks a checkpoint to resume against the config, picks a
free output folder, seeds and sets determinism, reads the dataset, builds the
loader, the model, the loss, the optimiser and the step schedule, restores a
resumed run's state and wraps the model for DDP. The config it is given is
left as it was: the run holds a resolved copy (free output folder, dataset
folder, number of classes), the one its ``config.toml`` and checkpoints record.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import (checkpoint_config, get_rng_state, load_state_into, model_config_diff, read_checkpoint,
                          set_rng_state)
from ..config import Config, apply_overrides, config_to_dict
from ..distributed import DistContext
from ..errors import CheckpointError, ConfigError
from ..outputs import RunFolder, claim_run_folder

__all__ = ["Run", "build_run", "load_data", "config_for_resume", "seed_everything", "build_optimizer",
           "StepSchedule"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class StepSchedule:
    """Learning-rate factor per epoch: linear warm-up from 1/10, then ``gamma ** (epoch // step_size)``.

    A callable object (not a lambda) so that LambdaLR's state dict stays plain data.
    """

    def __init__(self, step_size: int, gamma: float, warmup_epochs: int = 0):
        self.step_size, self.gamma, self.warmup_epochs = step_size, gamma, warmup_epochs

    def __call__(self, epoch: int) -> float:
        factor = self.gamma ** (epoch // self.step_size)
        if epoch < self.warmup_epochs:
            factor *= 0.1 + 0.9 * epoch / self.warmup_epochs
        return factor


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` (an OptimConfig); the backbone's rate is ``lr * backbone_lr_scale``."""
    backbone = {id(p) for p in model.backbone.parameters()} if hasattr(model, "backbone") else set()
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.backbone_lr_scale != 1.0 and backbone:
        params = [{"params": [p for p in params if id(p) in backbone], "lr": cfg.lr * cfg.backbone_lr_scale},
                  {"params": [p for p in params if id(p) not in backbone]}]
    fused = {"fused": True} if cfg.fused else {}  # else torch's default: on the CPU a loop over the tensors
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True,
                           **fused)


def load_data(cfg: Config, ctx: DistContext | None = None):
    """The dataset of ``cfg.data``; with several processes rank 0 reads (or generates) it first."""
    from ..data import load_configured_dataset

    if ctx is not None and ctx.enabled and not ctx.is_main:
        ctx.barrier()  # let rank 0 generate / index first
    try:
        # create: training is the one reader asked to generate the synthetic set into a data.root it names
        return load_configured_dataset(cfg.data, progress=ctx is None or ctx.is_main, create=True)
    finally:
        if ctx is not None and ctx.enabled and ctx.is_main:
            ctx.barrier()


def config_for_resume(resume: str | os.PathLike, overrides: list[str]) -> Config:
    """The config of a checkpoint's run with command-line overrides on top (for ``--resume`` alone)."""
    return apply_overrides(checkpoint_config(read_checkpoint(resume), resume), overrides)


def _architecture(model: dict, ignore_classes: bool) -> dict:
    """Model settings that decide the architecture: weights only matter before training starts, and
    num_classes = 0 means "from the data" (checked when the state dict is loaded)."""
    skip = {"weights"} | ({"num_classes"} if ignore_classes else set())
    return {k: v for k, v in model.items() if k not in skip}


def _check_resumable(ckpt: dict, cfg: Config, resume) -> None:
    current = config_to_dict(cfg)["model"]
    ignore_classes = not current.get("num_classes")
    diff = model_config_diff(_architecture(ckpt["config"].get("model", {}), ignore_classes),
                             _architecture(current, ignore_classes))
    if diff:
        raise CheckpointError(
            f"{resume}: the checkpoint is of another model than the config asks for ({'; '.join(diff[:4])})"
        )


def _set_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@dataclass
class Run:
    """Everything one training run trains with, and where it stands (epochs and steps done, best mAP)."""

    cfg: Config
    """The resolved config (a copy of the one given): what ``config.toml`` and the checkpoints hold."""
    ctx: DistContext
    output: Path
    dataset: object
    loader: object
    model: torch.nn.Module
    net: torch.nn.Module
    """The model, or its DDP wrapper, compiled with ``train.compile``: what the training steps call."""
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    use_amp: bool
    loss_keys: list[str]
    """The loss parts logged per epoch (triplet and cross-entropy per branch)."""
    previous_deterministic: bool
    """torch's deterministic-algorithms setting before the run, restored when it ends."""
    resumed_from: Path | None = None
    taken: Path | None = None
    """The ``train.output`` asked for, when it already held a run and this one went to a free name next to it."""
    folder: RunFolder | None = None
    """The lock on ``output`` (rank 0), held until :meth:`release_output`: no other run starts in it."""
    start_epoch: int = 0
    step: int = 0
    best: float = -math.inf
    best_epoch: int = -1

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    def release_output(self) -> None:
        """Let other runs see ``output`` again (taken by its files from now on)."""
        if self.folder is not None:
            self.folder.release()

    def autocast(self):
        """bf16 autocast when the run uses mixed precision, else a no-op context."""
        if self.use_amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def checkpoint(self, epochs_done: int, metrics: dict) -> dict:
        """The run's state once ``epochs_done`` epochs have ended: what :func:`build_run` resumes from."""
        return {
            "config": config_to_dict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epochs_done,
            "step": self.step,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "metrics": dict(metrics),
            "rng": get_rng_state(),
        }


def build_run(cfg: Config, *, resume: str | os.PathLike | None = None, ctx: DistContext | None = None) -> Run:
    """The run of ``cfg`` (continuing the checkpoint ``resume``), ready to train; ``cfg`` is not changed."""
    from .. import quick

    ctx = ctx or DistContext()
    cfg = apply_overrides(cfg, quick.TRAIN_OVERRIDES) if quick.enabled() else copy.deepcopy(cfg)
    cfg.model = cfg.resolved_model()  # the clip length the model is built for (frame_fusion="concat")
    ckpt = None
    if resume is not None:
        ckpt = read_checkpoint(resume)
        if "optimizer" not in ckpt or "rng" not in ckpt:
            raise CheckpointError(f"{resume}: holds the weights for evaluation only (a best.pt of an earlier epoch "
                                  "than the last, or a checkpoint written by hand); resume from the run's last.pt")
        _check_resumable(ckpt, cfg, resume)
    t = cfg.train
    asked = output = Path(t.output).expanduser()
    folder = None
    if ctx.is_main:
        # Claimed (locked) before any work: a run started at the same moment goes to the next free name, and
        # an output that cannot be written is said now, not after the first epoch.
        folder = claim_run_folder(asked, lock_only=ckpt is not None)
        output = folder.path
    t.output = str(output)
    try:
        run = _build(cfg, ckpt, resume, ctx, output, asked)
    except BaseException:
        if folder is not None:
            folder.abandon()
        raise
    run.folder = folder
    return run


def _build(cfg: Config, ckpt, resume, ctx: DistContext, output: Path, asked: Path) -> Run:
    from ..data import build_train_loader
    from ..data.synth import synthetic_set_folder
    from ..models import STGCN, STGCNLoss

    t, d, m = cfg.train, cfg.data, cfg.model
    if ctx.device.type == "cpu" and t.flush_denormal:
        # Before any parallel work where possible: torch's worker threads copy the flag when they are created.
        torch.set_flush_denormal(True)
    seed_everything(t.seed)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    _set_determinism(t.deterministic, ctx.device)
    device = ctx.device

    dataset = load_data(cfg, ctx)
    if not d.root and dataset.name == "synthetic":
        # Record the cache folder, so that the saved config (and `stgcn-pyg evaluate --checkpoint`)
        # reads exactly this set back.
        d.root = str(synthetic_set_folder(dataset.root))
    loader = build_train_loader(
        dataset.train, seq_len=d.seq_len, num_ids=d.num_ids, num_instances=d.num_instances,
        image_size=tuple(d.image_size), num_stripes=m.num_stripes, temporal_topology=m.temporal_topology,
        spatial_topology=m.spatial_topology, num_workers=d.num_workers, seed=t.seed,
        random_erasing=d.random_erasing, rank=ctx.rank, world_size=ctx.world_size,
        # On CUDA, uint8 frames (or with data.decode = "cuda" the JPEG bytes) travel from the workers and are
        # normalised (decoded) on the device.
        device=device if device.type == "cuda" else None, decode=d.decode,
    )
    if m.num_classes == 0:
        m.num_classes = loader.num_classes
    elif m.num_classes < loader.num_classes:
        raise ConfigError(
            f"model.num_classes: {m.num_classes} is fewer than the {loader.num_classes} training identities"
        )
    # A resumed run's weights are in the checkpoint: no download.
    model = STGCN(dataclasses.replace(m, weights="none") if ckpt is not None else m).to(device)
    if t.channels_last == "on" or (t.channels_last == "auto" and device.type == "cuda"):
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, StepSchedule(cfg.optim.step_size, cfg.optim.gamma, cfg.optim.warmup_epochs)
    )
    loss_keys = [f"tri_{b}" for b in m.branches] if cfg.loss.triplet_weight > 0 else []
    if cfg.loss.ce_weight > 0:
        loss_keys += ["ce_all"] if m.classifier == "all" else [f"ce_{b}" for b in m.branches]
    run = Run(cfg, ctx, output, dataset, loader, model, model, STGCNLoss.from_config(cfg.loss), optimizer, scheduler,
              use_amp=t.amp == "bf16" or (t.amp == "auto" and device.type == "cuda"), loss_keys=loss_keys,
              previous_deterministic=previous_deterministic, taken=asked if output != asked else None)
    if ckpt is not None:
        _restore(run, ckpt, resume)
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if t.freeze_backbone_epochs:
            raise ConfigError("train.freeze_backbone_epochs: not supported with DistributedDataParallel "
                              "(it fixes the trained parameters when it wraps the model); train on one device")
        run.net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        # The training steps call the compiled net; evaluation and the checkpoints use the model itself, so
        # the state dict keeps its names and evaluating (other shapes, eval mode) compiles nothing.
        run.net = torch.compile(run.net)
    return run


def _restore(run: Run, ckpt: dict, resume) -> None:
    """Continue ``run`` from the checkpoint: weights, optimiser, schedule, counters and random generators."""
    load_state_into(run.model, ckpt["model"], str(resume))
    asked = [{k: g.get(k) for k in ("fused", "foreach")} for g in run.optimizer.param_groups]
    try:
        run.optimizer.load_state_dict(ckpt["optimizer"])
        for group, kernels in zip(run.optimizer.param_groups, asked):
            group.update(kernels)  # the kernels this run's config asks for (optim.fused), not the checkpoint's
        run.scheduler.load_state_dict(ckpt["scheduler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{resume}: optimizer state does not fit this run ({exc})") from None
    run.start_epoch, run.step = int(ckpt["epoch"]), int(ckpt["step"])
    run.best, run.best_epoch = float(ckpt.get("best", -math.inf)), int(ckpt.get("best_epoch", -1))
    run.resumed_from = Path(resume)
    set_rng_state(ckpt["rng"])
