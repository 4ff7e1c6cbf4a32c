"""``stgcn-pyg train``: train STGCN from a config (default: the built-in synthetic run)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  stgcn-pyg train                                   # built-in synthetic set, CPU-sized, a few minutes
  stgcn-pyg train --config mars --root /data        # the paper's MARS setting
  stgcn-pyg train --config mars-subset --root /data # a small MARS-layout set at 128x64, on a CPU
  stgcn-pyg train --set model.backbone=resnet34 --set optim.lr=1e-4 --epochs 20
  stgcn-pyg train --resume runs/synthetic           # continue an interrupted run (or train it longer with --epochs)
  torchrun --nproc-per-node 4 -m stgcn_pyg train --config mars --root /data   # several GPUs

Built-in configs: synthetic (the default run), mars and duke (the paper's
setting: ResNet-50, 256x128 frames, 800 epochs, for full-size MARS and
DukeMTMC-VideoReID on GPUs), mars-subset (a small real set in MARS's layout at
128x64, a few hundred identities with short tracklets such as a MARS subset:
an ImageNet MobileNetV2 fine-tuned for 480 steps, CPU-sized; the real-data
study's setting, docs/ablation-real.md).

Any config value can be set with --set SECTION.KEY=VALUE (sections: model, data,
loss, optim, train, eval; see the built-in configs in stgcn_pyg/configs/).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train STGCN (no arguments: the built-in synthetic run)",
        description="Train STGCN. With no arguments: the built-in synthetic dataset on the CPU in a few minutes, "
                    "ending with the evaluation table.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", default=None,
                   help="a built-in config's name (listed below: synthetic, mars, duke, mars-subset) or a "
                        "TOML file; default: synthetic")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set optim.lr=1e-4")
    p.add_argument("--dataset", help="data.dataset (mars, dukemtmc-videoreid, ilids-vid, prid2011, folder, synthetic)")
    p.add_argument("--root", help="data.root: the dataset's root folder")
    p.add_argument("--output", "-o", help="train.output: the run's folder (NAME-2, NAME-3 ... when it holds a run "
                                         "or another run is starting in it; the run says which)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--device", help="train.device: auto, cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue a run from its last.pt (a file or a run folder; alone: train.output's last.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as TOML and exit (nothing is trained)")
    p.set_defaults(func=run)


def _flag_table(args) -> dict:
    """The common flags as config tables (applied after --config and --set)."""
    table: dict[str, dict] = {}
    for flag, section, key in (("dataset", "data", "dataset"), ("root", "data", "root"),
                               ("output", "train", "output"), ("epochs", "train", "epochs"),
                               ("device", "train", "device"), ("seed", "train", "seed")):
        value = getattr(args, flag)
        if value is not None:
            table.setdefault(section, {})[key] = value
    if args.no_progress:
        table.setdefault("train", {})["progress"] = False
    return table


def build_config(args):
    """``(config, resume checkpoint or None)`` from the parsed arguments."""
    from ..config import config_from_dict, load_config
    from ..training import config_for_resume

    flags = _flag_table(args)

    def from_file():
        return config_from_dict(flags, source="command line", base=load_config(args.config, args.overrides))

    if args.resume is None:
        return from_file(), None
    if args.resume:
        resume = Path(args.resume)
        if resume.is_dir():
            resume = resume / "last.pt"
    else:
        resume = Path(from_file().train.output) / "last.pt"
    if args.config is not None:
        # An explicit config: the trainer checks that the checkpoint's model is the one it describes.
        cfg = from_file()
    else:
        cfg = config_from_dict(flags, source="command line", base=config_for_resume(resume, args.overrides))
    if args.output is None:
        cfg.train.output = str(resume.parent)
    return cfg, resume


def run(args) -> int:
    from ..training import train

    cfg, resume = build_config(args)
    if args.print_config:
        from ..config import dump_toml

        print(dump_toml(cfg), end="")
        return 0
    results = train(cfg, resume=resume)
    if results is not None:  # rank 0
        from ..models.stgcn import temporal_affinity_missing

        print_next_steps(results["output"], cfg.train.epochs, affinity=temporal_affinity_missing(cfg.model) is None)
    return 0


def print_next_steps(output: str, epochs: int, *, affinity: bool = True) -> None:
    """Where the run is and the commands a user would try next (``affinity``: --plots draws one)."""
    from rich.console import Console

    run = Path(output)
    last = run / "last.pt"
    files = sorted(p.name for p in run.iterdir() if p.is_file()) if run.is_dir() else []
    lines = [
        f"run saved in {run}/: {', '.join(files)}",
        "next:",
        f"  stgcn-pyg evaluate --checkpoint {last} --plots {run / 'plots'}"
        "     # dense test (every frame), CMC curve, ranked results" + (", affinity" if affinity else ""),
        f"  stgcn-pyg search --checkpoint {last} --query-tracklet 0 --grid {run / 'search.png'}"
        "   # one query against the gallery",
        f"  stgcn-pyg train --resume {run} --epochs {2 * epochs}"
        "   # train the same run longer",
    ]
    Console(soft_wrap=True).print("\n".join(lines), highlight=False, markup=False)
