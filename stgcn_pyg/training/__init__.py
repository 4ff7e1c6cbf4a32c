"""Training: the config tree, the loop, checkpoints and multi-process (DDP) support."""

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import (Config, DataConfig, EvalConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig,
                     apply_overrides, builtin_configs, config_from_dict, config_to_dict, dump_toml, load_config)
from .trainer import Trainer, config_for_resume, train

__all__ = [
    "Config", "ModelConfig", "DataConfig", "LossConfig", "OptimConfig", "TrainConfig", "EvalConfig",
    "load_config", "config_from_dict", "config_to_dict", "apply_overrides", "builtin_configs", "dump_toml",
    "train", "Trainer", "config_for_resume",
    "load_checkpoint", "read_checkpoint", "save_checkpoint",
]
