"""Training: building a run from a config, its log, the loop, and multi-process (DDP) runs.

The config and checkpoints are shared with evaluation and export: they live in :mod:`stgcn_pyg.config` and
:mod:`stgcn_pyg.checkpoint`, and their main names are imported here too
(``from stgcn_pyg.training import load_checkpoint, load_config, train``).
"""

from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ..config import (Config, DataConfig, EvalConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig,
                      apply_overrides, builtin_configs, config_from_dict, config_to_dict, dump_toml, load_config)
from .run import Run, build_run, config_for_resume
from .run_log import RunLog
from .trainer import Trainer, train

__all__ = [
    "Config", "ModelConfig", "DataConfig", "LossConfig", "OptimConfig", "TrainConfig", "EvalConfig",
    "load_config", "config_from_dict", "config_to_dict", "apply_overrides", "builtin_configs", "dump_toml",
    "train", "Trainer", "Run", "build_run", "RunLog", "config_for_resume",
    "load_checkpoint", "read_checkpoint", "save_checkpoint",
]
