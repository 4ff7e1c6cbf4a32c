"""Fixtures shared by the test modules: one tiny synthetic set and one tiny run configuration."""

from __future__ import annotations

import pytest

# The tiny run: ResNet-18 at 64x32, T=2, 2 identities x 2 tracklets per batch, 1 step per epoch, quick test mode.
TINY_OVERRIDES = [
    "model.temporal_width=32", "model.spatial_width=32",
    "data.image_size=[64, 32]", "data.seq_len=2", "data.num_ids=2", "data.num_instances=2",
    "data.synthetic_ids=6", "data.synthetic_frames=[4, 6]", "data.synthetic_image_size=[64, 32]",
    "train.max_steps_per_epoch=1", "train.progress=false", "train.deterministic=true",
    "eval.seq_len=2", "eval.mode=evenly", "eval.batch_size=16",
]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A 6-identity synthetic set in MARS layout (64x32 frames, 4 to 6 per tracklet), generated once."""
    from stgcn_pyg.data import ensure_synthetic

    return ensure_synthetic(tmp_path_factory.mktemp("tiny-synth"), num_ids=6, min_frames=4, max_frames=6,
                            height=64, width=32, progress=False)


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The tiny run as ``section.key=value`` overrides of the built-in synthetic config (for ``--set``)."""
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_config(tiny_root, tiny_overrides):
    """``tiny_config(output, *overrides)``: the tiny run's Config on ``tiny_root``, writing to ``output``."""
    from stgcn_pyg.config import load_config

    def make(output, *extra):
        return load_config("synthetic", tiny_overrides + [f'data.root="{tiny_root}"', f'train.output="{output}"',
                                                          *extra])

    return make


@pytest.fixture(scope="session")
def untrained_checkpoint(tiny_config):
    """``untrained_checkpoint(folder)``: a checkpoint (folder/tiny.pt) of the tiny run's model at seed 0's
    initialisation, untrained; its config writes to folder/run, so each folder's file has its own bytes."""
    import torch

    from stgcn_pyg.checkpoint import save_checkpoint
    from stgcn_pyg.config import config_to_dict
    from stgcn_pyg.models import STGCN

    def make(folder):
        cfg = tiny_config(folder / "run")
        torch.manual_seed(0)
        model = STGCN(cfg.resolved_model()).eval()
        return save_checkpoint(folder / "tiny.pt", {"config": config_to_dict(cfg), "model": model.state_dict()})

    return make


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory):
    """The onnxruntime engine's exports (stgcn_pyg.deploy.engine) go to a folder of this session, not the user's
    cache: one export per checkpoint per session."""
    import stgcn_pyg.deploy.engine as engine

    folder = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "engine_cache_dir", lambda: folder)
        yield folder
