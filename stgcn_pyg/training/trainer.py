"""The training loop behind ``stgcn-pyg train``.

:func:`train` reads the dataset, builds the P x K loader, the model, the
optimiser and the step schedule, and trains epoch by epoch. The output folder
gets ``config.toml`` (the resolved config, loadable with ``--config``),
``train.log``, ``metrics.csv`` (one row per epoch; TensorBoard events too
when ``tensorboard`` is installed), and the checkpoints ``last.pt`` (every
epoch) and ``best.pt`` (best mAP), each written atomically. ``resume``
continues a run exactly: model, optimiser, schedule and random generators
come back as they were at the end of the last completed epoch, and the
loader's sampling depends only on (seed, epoch).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DatasetError
from .checkpoint import (get_rng_state, load_state_into, model_config_diff, read_checkpoint, save_checkpoint,
                         set_rng_state)
from .config import Config, config_from_dict, config_to_dict, dump_toml
from .distributed import DistContext, gather_rows, init_distributed, shard_indices

__all__ = ["train", "Trainer", "train_step", "StepSchedule", "seed_everything", "build_optimizer", "load_data"]

log = logging.getLogger("stgcn_pyg.train")

EVAL_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


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
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)


def _free_output(path: Path) -> Path:
    """``path`` if it holds no run yet, else the first free ``path-2``, ``path-3``, ... (never overwrite)."""
    if not (path / "last.pt").exists() and not (path / "metrics.csv").exists():
        return path
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.name}-{i}")
        if not (candidate / "last.pt").exists() and not (candidate / "metrics.csv").exists():
            return candidate
    raise ConfigError(f"train.output: no free folder next to {path}")  # pragma: no cover


def load_data(cfg: Config, ctx: DistContext | None = None):
    """The dataset of ``cfg.data`` (the synthetic set is generated once, by rank 0)."""
    from ..data import load_dataset

    d = cfg.data
    name = d.dataset.lower()
    kwargs = {}
    root = d.root or None
    if name in ("synthetic", "synth"):
        kwargs = dict(num_ids=d.synthetic_ids, min_frames=d.synthetic_frames[0], max_frames=d.synthetic_frames[1],
                      height=d.synthetic_image_size[0], width=d.synthetic_image_size[1])
    elif root is None:
        raise ConfigError(f"data.root: dataset {d.dataset!r} needs its root folder (--root DIR)")
    elif not Path(root).expanduser().is_dir():
        raise DatasetError(f"{root}: dataset root folder not found (data.root / --root)")
    if root is not None:
        root = str(Path(root).expanduser())
    if ctx is not None and ctx.enabled and not ctx.is_main:
        ctx.barrier()  # let rank 0 generate / index first
    try:
        if kwargs and root is None:
            from ..data import ensure_synthetic

            # Resolve the cache folder now and record it, so that the saved config (and
            # `stgcn-pyg evaluate --checkpoint`) reads exactly this set back.
            root = str(ensure_synthetic(None, progress=ctx is None or ctx.is_main, **kwargs))
            d.root = root
        ds = load_dataset(name, root, protocol=d.protocol, **kwargs)
    finally:
        if ctx is not None and ctx.enabled and ctx.is_main:
            ctx.barrier()
    return ds


def train_step(net, criterion, optimizer, batch, device, amp=None):
    """One optimisation step on a batch of tracklet graphs; returns ``(loss, parts)`` (not synchronised).

    ``amp`` is an autocast context (or None). No host synchronisation: the caller reads the loss when it
    needs it (and reports a non-finite one).
    """
    labels = batch.label.to(device, non_blocking=True)
    with amp if amp is not None else contextlib.nullcontext():
        out = net(batch)
        loss, parts = criterion(out, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), parts


class Trainer:
    """One training run; :meth:`fit` trains and returns the final evaluation results."""

    def __init__(self, cfg: Config, *, resume: str | os.PathLike | None = None, console=None,
                 ctx: DistContext | None = None):
        from rich.console import Console

        from .. import quick
        from ..data import build_train_loader
        from ..models import STGCN, STGCNLoss

        self.ctx = ctx or DistContext()
        # soft_wrap: a log file or CI gets long lines (paths, commands) whole, not cut at 80 columns.
        self.console = console or Console(soft_wrap=True)
        self.quick = quick.enabled()
        if self.quick:
            from .config import apply_overrides

            cfg = apply_overrides(cfg, quick.TRAIN_OVERRIDES)
        ckpt = None
        if resume is not None:
            ckpt = read_checkpoint(resume)
            diff = model_config_diff(*_comparable(ckpt["config"].get("model", {}), config_to_dict(cfg)["model"]))
            if diff:
                raise CheckpointError(
                    f"{resume}: the checkpoint is of another model than the config asks for ({'; '.join(diff[:4])})"
                )
        self.cfg = cfg
        t = cfg.train
        out = Path(t.output).expanduser()
        if ckpt is None and self.ctx.is_main:
            out = _free_output(out)
        self.output = out
        cfg.train.output = str(out)

        seed_everything(t.seed)
        self._previous_deterministic = torch.are_deterministic_algorithms_enabled()
        if t.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.device = self.ctx.device
        self.use_amp = t.amp == "bf16" or (t.amp == "auto" and self.device.type == "cuda")

        self.dataset = load_data(cfg, self.ctx)
        d, m = cfg.data, cfg.model
        self.loader = build_train_loader(
            self.dataset.train, seq_len=d.seq_len, num_ids=d.num_ids, num_instances=d.num_instances,
            image_size=tuple(d.image_size), num_stripes=m.num_stripes, temporal_topology=m.temporal_topology,
            spatial_topology=m.spatial_topology, num_workers=d.num_workers, seed=t.seed,
            random_erasing=d.random_erasing, rank=self.ctx.rank, world_size=self.ctx.world_size,
            # On CUDA, uint8 frames travel from the workers and are normalised on the device.
            device=self.device if self.device.type == "cuda" else None,
        )
        if m.num_classes == 0:
            m.num_classes = self.loader.num_classes
        elif m.num_classes < self.loader.num_classes:
            raise ConfigError(
                f"model.num_classes: {m.num_classes} is fewer than the {self.loader.num_classes} training identities"
            )
        if ckpt is not None:
            m.weights = "none"  # the checkpoint holds the weights: no download on resume
        self.model = STGCN(m).to(self.device)
        if self.device.type == "cuda" and t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.model.channels_last = True
        self.criterion = STGCNLoss.from_config(cfg.loss)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, StepSchedule(cfg.optim.step_size, cfg.optim.gamma, cfg.optim.warmup_epochs)
        )
        self.start_epoch, self.step, self.best, self.best_epoch = 0, 0, -math.inf, -1
        if ckpt is not None:
            load_state_into(self.model, ckpt["model"], str(resume))
            try:
                self.optimizer.load_state_dict(ckpt["optimizer"])
                self.scheduler.load_state_dict(ckpt["scheduler"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(f"{resume}: optimizer state does not fit this run ({exc})") from None
            self.start_epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
            self.best, self.best_epoch = float(ckpt.get("best", -math.inf)), int(ckpt.get("best_epoch", -1))
            set_rng_state(ckpt["rng"])
        self.net = self.model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids)
        self.loss_keys = [f"tri_{b}" for b in m.branches] if cfg.loss.triplet_weight > 0 else []
        if cfg.loss.ce_weight > 0:
            self.loss_keys += ["ce_all"] if m.classifier == "all" else [f"ce_{b}" for b in m.branches]
        self.last_results: dict | None = None
        self._resumed_from = resume

    # ------------------------------------------------------------------ output
    def _open_outputs(self) -> None:
        self.writer = None
        if not self.ctx.is_main:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        (self.output / "config.toml").write_text(dump_toml(self.cfg))
        handler = logging.FileHandler(self.output / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._log_handler = handler
        self.csv_path = self.output / "metrics.csv"
        self.csv_fields = (["epoch", "step", "lr", "loss"] + self.loss_keys
                           + ["seconds", "images_per_s"] + list(EVAL_KEYS))
        rows = []
        if self._resumed_from is not None and self.csv_path.exists():
            # Drop rows of epochs after the checkpoint (an interrupted epoch may have logged one).
            with open(self.csv_path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= self.start_epoch]
        with open(self.csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.csv_fields)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in self.csv_fields} for r in rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output / "tensorboard"))
        except Exception:  # tensorboard not installed: CSV only
            self.writer = None

    def _close_outputs(self) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()
        handler = getattr(self, "_log_handler", None)
        if handler is not None:
            log.removeHandler(handler)
            handler.close()

    def _info(self, text: str, echo: bool = False) -> None:
        """A line for train.log (rank 0); ``echo`` also prints it on the console."""
        if self.ctx.is_main:
            log.info(text)
            if echo:
                self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    @property
    def shows_progress_bars(self) -> bool:
        """Live bars only on a terminal: in a file or CI they print nothing until the end."""
        return bool(self.cfg.train.progress and self.ctx.is_main and self.console.is_terminal)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict | None:
        """Train to ``train.epochs``; returns the last evaluation results (rank 0; None elsewhere)."""
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        t = self.cfg.train
        self._open_outputs()
        try:
            if self.quick:
                self._info("smoke-run mode (STGCN_PYG_QUICK is set): tiny data, one step per epoch; "
                           "the numbers mean nothing", echo=True)
            self._info(f"output folder {self.output}", echo=True)
            self._info(f"dataset {self.dataset.name}: {len(self.dataset.train)} training tracklets, "
                       f"{self.loader.num_classes} identities; {len(self.loader)} batches per epoch"
                       f" on rank {self.ctx.rank} of {self.ctx.world_size}")
            if self.start_epoch:
                self._info(f"resumed from {self._resumed_from} after epoch {self.start_epoch}", echo=True)
            if self.start_epoch >= t.epochs:
                self._info(f"nothing to train: {self.start_epoch} epochs done, train.epochs = {t.epochs} "
                           f"(raise it with --epochs)", echo=True)
            progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
                disable=not self.shows_progress_bars, transient=False,
            )
            fit_start = time.perf_counter()
            with progress:
                epochs_task = progress.add_task("epochs", total=t.epochs, completed=self.start_epoch, info="")
                for epoch in range(self.start_epoch, t.epochs):
                    row = self._train_epoch(epoch, progress)
                    self.scheduler.step()
                    due = t.eval_every and (epoch + 1) % t.eval_every == 0
                    if due or epoch + 1 == t.epochs:
                        results = self.evaluate()
                        if results is not None:
                            row.update({k: round(results[k], 4) for k in EVAL_KEYS})
                            self.last_results = results
                            self._info(f"epoch {epoch + 1}: rank-1 {results['rank1']:.1f}%  mAP {results['mAP']:.1f}%")
                    self._end_epoch(epoch, row)
                    progress.update(epochs_task, advance=1,
                                    info=f"loss {row['loss']:.3f}" + (f"  mAP {row['mAP']:.1f}" if "mAP" in row else ""))
                    if self.ctx.is_main and not self.shows_progress_bars:
                        done = epoch + 1 - self.start_epoch
                        eta = (time.perf_counter() - fit_start) / done * (t.epochs - epoch - 1)
                        self.console.print(_epoch_line(row, t.epochs, eta), highlight=False, markup=False,
                                           soft_wrap=True)
        except KeyboardInterrupt:
            last = self.output / "last.pt"
            if last.is_file():
                self._info(f"interrupted: {last} holds the last completed epoch; continue with: "
                           f"stgcn-pyg train --resume {self.output}", echo=True)
            else:
                self._info("interrupted before the first epoch ended: nothing saved", echo=True)
            raise
        finally:
            self._close_outputs()
            torch.use_deterministic_algorithms(self._previous_deterministic)
        if not self.ctx.is_main:
            return None
        if self.last_results is not None:
            from ..evaluation import print_results

            print_results(self.last_results, title=f"STGCN on {self.dataset.name}, epoch {t.epochs}",
                          console=self.console)
        # Say where the run went: a taken train.output sends it to NAME-2, NAME-3, ...
        return {**(self.last_results or {}), "output": str(self.output),
                "checkpoint": str(self.output / "last.pt")}

    def _train_epoch(self, epoch: int, progress) -> dict:
        t = self.cfg.train
        self.loader.set_epoch(epoch)
        self.net.train()
        steps = len(self.loader) if not t.max_steps_per_epoch else min(len(self.loader), t.max_steps_per_epoch)
        task = progress.add_task(f"epoch {epoch + 1}/{t.epochs}", total=steps, info="")
        lr = self.optimizer.param_groups[0]["lr"]
        keys = ["loss"] + self.loss_keys
        totals = torch.zeros(len(keys), dtype=torch.float64, device=self.device)  # summed on device: no sync
        n, images, start = 0, 0, time.perf_counter()
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.use_amp else contextlib.nullcontext()
        for i, batch in enumerate(self.loader):
            if i >= steps:
                break
            loss, parts = train_step(self.net, self.criterion, self.optimizer, batch, self.device, amp)
            totals += torch.stack([loss] + [parts[k] for k in self.loss_keys]).to(totals.dtype)
            self.step += 1
            n += 1
            images += int(batch.frames.size(0))
            last = n == steps
            if self.step % t.log_every == 0 or last or self.device.type == "cpu":
                mean = (totals / n).tolist()  # the one synchronisation point
                if not math.isfinite(mean[0]):
                    raise FloatingPointError(f"epoch {epoch + 1} step {i + 1}: the loss is not finite; "
                                             f"lower optim.lr or check the data")
                rate = images / max(time.perf_counter() - start, 1e-9)
                progress.update(task, completed=n, info=f"loss {mean[0]:.3f}  lr {lr:.2e}  {rate:.0f} img/s")
                if self.step % t.log_every == 0:
                    self._info(f"epoch {epoch + 1} step {i + 1}/{steps}: loss {mean[0]:.4f} lr {lr:.2e} "
                               f"{rate:.1f} img/s")
            else:
                progress.update(task, completed=n)
        mean = (totals / max(n, 1)).tolist()
        progress.remove_task(task)
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "step": self.step, "lr": lr}
        row.update(dict(zip(keys, mean)))
        row.update(seconds=round(seconds, 3), images_per_s=round(images / max(seconds, 1e-9), 2))
        return row

    def _end_epoch(self, epoch: int, row: dict) -> None:
        if not self.ctx.is_main:
            return
        improved = "mAP" in row and row["mAP"] > self.best
        if improved:
            self.best, self.best_epoch = row["mAP"], epoch + 1
        payload = {
            "config": config_to_dict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch + 1,
            "step": self.step,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "metrics": {k: v for k, v in row.items()},
            "rng": get_rng_state(),
        }
        save_checkpoint(self.output / "last.pt", payload)
        if improved:
            save_checkpoint(self.output / "best.pt", payload)
        with open(self.csv_path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.csv_fields).writerow({k: row.get(k, "") for k in self.csv_fields})
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, epoch + 1)
        self._info("epoch {}: ".format(epoch + 1) + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "epoch"))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict | None:
        """Scores on the dataset's query/gallery split; features are extracted by all ranks and gathered."""
        from ..evaluation import evaluate_model
        from ..evaluation.evaluate import evaluate_descriptors, extract_split, tracklet_ids

        e, d = self.cfg.eval, self.cfg.data
        common = dict(seq_len=e.seq_len, mode=e.mode, image_size=tuple(d.image_size), device=self.device,
                      batch_size=e.batch_size, num_workers=e.num_workers,
                      progress=self.cfg.train.progress and self.ctx.is_main)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.use_amp else contextlib.nullcontext()
        was_training = self.model.training
        self.model.eval()
        if self.ctx.enabled:
            # BN running statistics drift apart on each rank between DDP's buffer broadcasts: evaluate
            # every shard with rank 0's (the ones the checkpoint stores).
            import torch.distributed as dist

            for buf in self.model.buffers():
                dist.broadcast(buf.data, src=0)
        try:
            with amp:
                if not self.ctx.enabled:
                    return evaluate_model(self.model, self.dataset, metric=e.metric, rerank=e.rerank, **common)
                feats = []
                for name in ("query", "gallery"):
                    df = getattr(self.dataset, name)
                    rows = shard_indices(len(df), self.ctx.rank, self.ctx.world_size)
                    if rows:
                        local = extract_split(self.model, df.iloc[rows], description=f"{name} descriptors", **common)
                    else:
                        local = torch.zeros(0, self.model.descriptor_dim)
                    feats.append(gather_rows(local.float(), len(df), self.ctx))
        finally:
            self.model.train(was_training)
        if not self.ctx.is_main:
            return None
        q, g = self.dataset.query, self.dataset.gallery
        ids = tracklet_ids
        results = evaluate_descriptors(feats[0], feats[1], ids(q, "pid"), ids(g, "pid"), ids(q, "camid"),
                                       ids(g, "camid"), metric=e.metric, rerank=e.rerank,
                                       protocol=getattr(self.dataset, "protocol", "standard") or "standard")
        results.update(mode=e.mode, seq_len=e.seq_len, flip=False, dataset=getattr(self.dataset, "name", None))
        return results


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _epoch_line(row: dict, epochs: int, eta_seconds: float) -> str:
    """One console line per epoch, for logs and CI where progress bars do not show."""
    line = (f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.3f}  lr {row['lr']:.2e}  "
            f"{row['images_per_s']:.0f} img/s  {_duration(row['seconds'])}")
    if "mAP" in row:
        line += f"  rank-1 {row['rank1']:.1f}  mAP {row['mAP']:.1f}"
    return line + (f"  ETA {_duration(eta_seconds)}" if row["epoch"] < epochs else "")


def _comparable(saved: dict, current: dict) -> tuple[dict, dict]:
    """Model settings that decide the architecture: weights only matter before training starts, and
    num_classes = 0 means "from the data" (checked when the state dict is loaded)."""
    skip = {"weights"} | ({"num_classes"} if not current.get("num_classes") else set())
    return ({k: v for k, v in saved.items() if k not in skip}, {k: v for k, v in current.items() if k not in skip})


def config_for_resume(resume: str | os.PathLike, overrides: list[str]) -> Config:
    """The config of a checkpoint's run with command-line overrides on top (for ``--resume`` alone)."""
    from .config import apply_overrides

    ckpt = read_checkpoint(resume)
    try:
        cfg = config_from_dict(ckpt["config"], source=f"{resume} (config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    return apply_overrides(cfg, overrides)


def train(cfg: Config, *, resume: str | os.PathLike | None = None, console=None) -> dict | None:
    """Train ``cfg`` (joining torchrun's process group when launched by torchrun); see :class:`Trainer`."""
    ctx = init_distributed(cfg.train.device)
    try:
        return Trainer(cfg, resume=resume, console=console, ctx=ctx).fit()
    finally:
        ctx.close()
