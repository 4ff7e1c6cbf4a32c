"""What a training run writes besides its checkpoints, and what it says on the console.

In the run folder: ``config.toml`` (the resolved config, loadable with
``--config``), ``train.log``, ``metrics.csv`` (one row per epoch) and, when
``tensorboard`` is installed, TensorBoard events. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ..config import Config, dump_toml
from ..evaluation.evaluate import SCORE_KEYS

__all__ = ["RunLog", "epoch_line", "duration"]

log = logging.getLogger("stgcn_pyg.train")


class RunLog:
    """The run folder's log, metrics table and TensorBoard events; open from :meth:`open` to :meth:`close`.

    ``resume_epoch``: the epochs a resumed run had done; rows of later epochs
    (an interrupted epoch may have logged one) are dropped from ``metrics.csv``.
    """

    def __init__(self, output: Path, cfg: Config, loss_keys: list[str], console, *, is_main: bool = True,
                 resume_epoch: int | None = None):
        self.output, self.cfg, self.console, self.is_main = output, cfg, console, is_main
        self.resume_epoch = resume_epoch
        self.csv_path = output / "metrics.csv"
        self.csv_fields = ["epoch", "step", "lr", "loss"] + loss_keys + ["seconds", "images_per_s"] + list(SCORE_KEYS)
        self.writer = None
        self._handler: logging.Handler | None = None

    def open(self) -> None:
        if not self.is_main:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        (self.output / "config.toml").write_text(dump_toml(self.cfg))
        handler = logging.FileHandler(self.output / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._handler = handler
        rows = []
        if self.resume_epoch is not None and self.csv_path.exists():
            with open(self.csv_path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= self.resume_epoch]
        with open(self.csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.csv_fields)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in self.csv_fields} for r in rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output / "tensorboard"))
        except Exception:  # tensorboard not installed: CSV only
            self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def info(self, text: str, echo: bool = False) -> None:
        """A line for train.log (rank 0); ``echo`` also prints it on the console."""
        if self.is_main:
            log.info(text)
            if echo:
                self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def epoch(self, row: dict) -> None:
        """An epoch's row (``epoch``, ``step``, ``lr``, losses, timings, scores) in every output."""
        if not self.is_main:
            return
        with open(self.csv_path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.csv_fields).writerow({k: row.get(k, "") for k in self.csv_fields})
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["epoch"])
        self.info(f"epoch {row['epoch']}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "epoch"))


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def epoch_line(row: dict, epochs: int, eta_seconds: float) -> str:
    """One console line per epoch: in logs and CI, where progress bars do not show, and above the bars on a
    terminal (they are transient)."""
    line = (f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.3f}  lr {row['lr']:.2e}  "
            f"{row['images_per_s']:.0f} img/s  {duration(row['seconds'])}")
    if "mAP" in row:
        line += f"  rank-1 {row['rank1']:.1f}  mAP {row['mAP']:.1f}"
    return line + (f"  ETA {duration(eta_seconds)}" if row["epoch"] < epochs else "")
