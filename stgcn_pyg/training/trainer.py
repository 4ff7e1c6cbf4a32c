"""The training loop behind ``stgcn-pyg train``.

:func:`train` builds the run (:func:`~stgcn_pyg.training.run.build_run`:
data, P x K loader, model, optimiser, step schedule) and trains it epoch by
epoch, evaluating as ``train.eval_every`` says. Every epoch ends with the
checkpoint ``last.pt`` (and ``best.pt`` at the best mAP: the same file while
the last epoch is the best, the weights alone once a later one is worse), each written
atomically, and a row in the run's log (:class:`~stgcn_pyg.training.run_log.RunLog`).
``resume`` continues a run exactly: model, optimiser, schedule and random
generators come back as they were at the end of the last completed epoch,
and the loader's sampling depends only on (seed, epoch).
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import torch

from ..checkpoint import evaluation_payload, link_checkpoint, same_file, save_checkpoint
from ..config import Config
from ..distributed import DistContext, init_distributed
from ..errors import Interrupted, OutputError
from ..evaluation.evaluate import SCORE_KEYS
from .run import Run, build_run
from .run_log import RunLog, epoch_line

__all__ = ["train", "Trainer", "train_step"]


def set_backbone_frozen(model, frozen: bool) -> None:
    """Freeze (or release) the backbone: no gradients, and batch norm on its running statistics."""
    for p in model.backbone.parameters():
        p.requires_grad_(not frozen)
    if frozen:
        model.backbone.eval()


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
    """One training run; :meth:`fit` trains and returns the final evaluation results.

    ``cfg`` is not changed: the run trains a resolved copy (``trainer.cfg``).
    """

    def __init__(self, cfg: Config, *, resume: str | os.PathLike | None = None, console=None,
                 ctx: DistContext | None = None):
        from rich.console import Console

        from .. import quick

        self.quick = quick.enabled()
        # soft_wrap: a log file or CI gets long lines (paths, commands) whole, not cut at 80 columns.
        self.console = console or Console(soft_wrap=True)
        self.run: Run = build_run(cfg, resume=resume, ctx=ctx)
        self.log = RunLog(self.output, self.cfg, self.run.loss_keys, self.console, is_main=self.ctx.is_main,
                          resume_epoch=self.run.start_epoch if self.run.resumed_from is not None else None)
        self.last_results: dict | None = None

    # What a run is made of, read from the run.
    cfg = property(lambda self: self.run.cfg)
    ctx = property(lambda self: self.run.ctx)
    device = property(lambda self: self.run.device)
    output = property(lambda self: self.run.output)
    dataset = property(lambda self: self.run.dataset)
    loader = property(lambda self: self.run.loader)
    model = property(lambda self: self.run.model)

    @property
    def shows_progress_bars(self) -> bool:
        """Live bars only on a terminal: in a file or CI they print nothing until the end."""
        return bool(self.cfg.train.progress and self.ctx.is_main and self.console.is_terminal)

    def fit(self) -> dict | None:
        """Train to ``train.epochs``; returns the last evaluation results (rank 0; None elsewhere)."""
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        run, t = self.run, self.cfg.train
        try:
            self.log.open()
            if self.quick:
                self.log.info("smoke-run mode (STGCN_PYG_QUICK is set): tiny data, one step per epoch; "
                              "the numbers mean nothing", echo=True)
            taken = f" ({run.taken} is taken)" if run.taken is not None else ""
            self.log.info(f"output folder {self.output}{taken}", echo=True)
            self.log.info(f"dataset {self.dataset.name}: {len(self.dataset.train)} training tracklets, "
                          f"{self.loader.num_classes} identities; {len(self.loader)} batches per epoch"
                          f" on rank {self.ctx.rank} of {self.ctx.world_size}")
            if run.start_epoch:
                self.log.info(f"resumed from {run.resumed_from} after epoch {run.start_epoch}", echo=True)
            if run.start_epoch >= t.epochs:
                self.log.info(f"nothing to train: {run.start_epoch} epochs done, train.epochs = {t.epochs} "
                              f"(raise it with --epochs)", echo=True)
            # Transient: the bars go when they stop, and each epoch leaves its line (epoch_line) above them. They
            # stop while the evaluation shows its own: two live displays on one terminal overwrite each other's
            # lines ("loss 24.228gallery descriptors") and leave stale ones ("epochs 2/3" above "epochs 3/3").
            progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
                disable=not self.shows_progress_bars, transient=True,
            )
            fit_start = time.perf_counter()
            with progress:
                epochs_task = progress.add_task("epochs", total=t.epochs, completed=run.start_epoch, info="")
                for epoch in range(run.start_epoch, t.epochs):
                    row = self._train_epoch(epoch, progress)
                    run.scheduler.step()
                    due = t.eval_every and (epoch + 1) % t.eval_every == 0
                    if due or epoch + 1 == t.epochs:
                        progress.stop()  # the evaluation's bars are a live display of their own
                        try:
                            results = self.evaluate()
                        finally:
                            progress.start()
                        if results is not None:
                            row.update({k: round(results[k], 4) for k in SCORE_KEYS})
                            self.last_results = results
                            self.log.info(f"epoch {epoch + 1}: rank-1 {results['rank1']:.1f}%  "
                                          f"mAP {results['mAP']:.1f}%")
                    self._end_epoch(epoch, row)
                    progress.update(epochs_task, advance=1,
                                    info=f"loss {row['loss']:.3f}" + (f"  mAP {row['mAP']:.1f}" if "mAP" in row else ""))
                    if self.ctx.is_main:  # on a terminal too: the loss on its own line, above the bars
                        done = epoch + 1 - run.start_epoch
                        eta = (time.perf_counter() - fit_start) / done * (t.epochs - epoch - 1)
                        self.console.print(epoch_line(row, t.epochs, eta), highlight=False, markup=False,
                                           soft_wrap=True)
        except KeyboardInterrupt:
            last = self.output / "last.pt"
            if last.is_file():
                self.log.info(f"interrupted: {last} holds the last completed epoch; continue with: "
                              f"stgcn-pyg train --resume {self.output}", echo=True)
            else:
                if self.ctx.is_main and run.resumed_from is None:
                    # Its header alone would send the same command to NAME-2.
                    self.log.csv_path.unlink(missing_ok=True)
                self.log.info("interrupted before the first epoch ended: nothing saved and nothing to resume; "
                              "start the run again with the same command", echo=True)
            raise Interrupted from None
        finally:
            self.log.close()
            run.release_output()  # after the last write: from now on its files keep the folder taken
            torch.use_deterministic_algorithms(run.previous_deterministic)
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
        run, t = self.run, self.cfg.train
        run.loader.set_epoch(epoch)
        run.net.train()
        set_backbone_frozen(run.model, epoch < t.freeze_backbone_epochs)
        steps = len(run.loader) if not t.max_steps_per_epoch else min(len(run.loader), t.max_steps_per_epoch)
        task = progress.add_task(f"epoch {epoch + 1}/{t.epochs}", total=steps, info="")
        lr = run.optimizer.param_groups[-1]["lr"]  # the heads' (the backbone's may be scaled down)
        keys = ["loss"] + run.loss_keys
        totals = torch.zeros(len(keys), dtype=torch.float64, device=run.device)  # summed on device: no sync
        n, images, start = 0, 0, time.perf_counter()
        amp = run.autocast()
        for i, batch in enumerate(run.loader):
            if i >= steps:
                break
            loss, parts = train_step(run.net, run.criterion, run.optimizer, batch, run.device, amp)
            totals += torch.stack([loss] + [parts[k] for k in run.loss_keys]).to(totals.dtype)
            run.step += 1
            n += 1
            images += int(batch.frames.size(0))
            last = n == steps
            if run.step % t.log_every == 0 or last or run.device.type == "cpu":
                mean = (totals / n).tolist()  # the one synchronisation point
                if not math.isfinite(mean[0]):
                    raise FloatingPointError(f"epoch {epoch + 1} step {i + 1}: the loss is not finite; "
                                             f"lower optim.lr or check the data")
                rate = images / max(time.perf_counter() - start, 1e-9)
                progress.update(task, completed=n, info=f"loss {mean[0]:.3f}  lr {lr:.2e}  {rate:.0f} img/s")
                if run.step % t.log_every == 0:
                    self.log.info(f"epoch {epoch + 1} step {i + 1}/{steps}: loss {mean[0]:.4f} lr {lr:.2e} "
                                  f"{rate:.1f} img/s")
            else:
                progress.update(task, completed=n)
        mean = (totals / max(n, 1)).tolist()
        progress.remove_task(task)
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "step": run.step, "lr": lr}
        row.update(dict(zip(keys, mean)))
        row.update(seconds=round(seconds, 3), images_per_s=round(images / max(seconds, 1e-9), 2))
        return row

    def _end_epoch(self, epoch: int, row: dict) -> None:
        """The epoch's checkpoints (last.pt; best.pt at a new best mAP) and log row, on rank 0."""
        run = self.run
        if not self.ctx.is_main:
            return
        improved = "mAP" in row and row["mAP"] > run.best
        if improved:
            run.best, run.best_epoch = row["mAP"], epoch + 1
        # The log row first: a stop between the two then leaves a row that resuming drops (rows past last.pt's
        # epoch), never a checkpoint whose row is missing for good.
        self.log.epoch(row)
        payload = run.checkpoint(epoch + 1, row)
        last, best = self.output / "last.pt", self.output / "best.pt"
        # The folder may become read-only or the disk fill up: one line on what is left and how to go on.
        try:
            if not improved and same_file(best, last):
                # best.pt is last.pt's file, which this epoch replaces: best.pt keeps what evaluation needs
                save_checkpoint(best, evaluation_payload(torch.load(last, map_location="cpu", weights_only=True)))
            save_checkpoint(last, payload)
        except OutputError as exc:
            raise OutputError(f"{exc}; {self._resume_hint(epoch)}") from None
        if improved and not link_checkpoint(last, best):  # the same epoch: the same file, no bytes written
            try:
                save_checkpoint(best, evaluation_payload(payload))
            except OutputError as exc:
                raise OutputError(f"{exc}; {self._resume_hint(epoch + 1)}") from None

    def _resume_hint(self, saved: int) -> str:
        """What is left after a failed checkpoint write once last.pt should hold ``saved`` epochs (it is written
        atomically: the earlier epoch's file stays whole), and how to go on."""
        last, fix = self.output / "last.pt", f"make {self.output} writable (or free space)"
        if last.is_file() and (saved > self.run.start_epoch or self.run.resumed_from is not None):
            return f"{last} holds epoch {saved}; {fix} and continue with: stgcn-pyg train --resume {self.output}"
        return f"nothing was saved; {fix} and start the run again"

    def evaluate(self) -> dict | None:
        """Scores on the dataset's query/gallery split (descriptors extracted by all ranks; None off rank 0)."""
        from ..evaluation import TestOptions, evaluate_distributed

        e = self.cfg.eval
        options = TestOptions.from_config(self.cfg, device=self.device,
                                          progress=self.cfg.train.progress and self.ctx.is_main)
        with self.run.autocast():
            return evaluate_distributed(self.model, self.dataset, options, self.ctx, metric=e.metric, rerank=e.rerank)


def train(cfg: Config, *, resume: str | os.PathLike | None = None, console=None) -> dict | None:
    """Train ``cfg`` (joining torchrun's process group when launched by torchrun); see :class:`Trainer`."""
    ctx = init_distributed(cfg.train.device)
    try:
        return Trainer(cfg, resume=resume, console=console, ctx=ctx).fit()
    finally:
        ctx.close()
