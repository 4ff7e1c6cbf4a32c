"""Smoke-run mode: ``STGCN_PYG_QUICK=1`` shrinks every run to seconds.

For checking that commands and scripts run end to end (``tests/test_readme.py``
runs every README example this way), never for numbers: the built-in
synthetic set is generated small and training takes one small step per
epoch. ``stgcn-pyg train`` says so when the mode is on, and the run's
``config.toml`` records the settings it used.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "enabled", "SYNTHETIC", "TRAIN_OVERRIDES"]

ENV = "STGCN_PYG_QUICK"

# The built-in synthetic set in smoke runs: 10 training identities, enough for the README's 8 x 4 batches.
SYNTHETIC = {"num_ids": 20, "min_frames": 4, "max_frames": 6, "height": 64, "width": 32}

TRAIN_OVERRIDES = [
    f"data.synthetic_ids={SYNTHETIC['num_ids']}",
    f"data.synthetic_frames=[{SYNTHETIC['min_frames']}, {SYNTHETIC['max_frames']}]",
    f"data.synthetic_image_size=[{SYNTHETIC['height']}, {SYNTHETIC['width']}]",
    "data.image_size=[64, 32]",
    "data.num_ids=2",
    "data.num_instances=2",
    "train.max_steps_per_epoch=1",
    "eval.seq_len=4",
]


def enabled() -> bool:
    """True when ``STGCN_PYG_QUICK`` is set to anything but "" or "0"."""
    return os.environ.get(ENV, "") not in ("", "0")
