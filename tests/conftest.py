"""Fixtures shared by the test modules: one tiny synthetic set and one tiny run configuration.

The whole session, subprocesses included, runs with ``$STGCN_PYG_CACHE`` and ``$HOME`` in a folder of its own
(pytest_configure), so no test writes into the user's cache (a 47 MB ONNX export once did, from a
subprocess that did not inherit an in-process redirect). The guard: ``$STGCN_PYG_GUARD_CACHE`` names the
user's cache folders, and stgcn_pyg refuses a cache that resolves into one of them (CacheGuardError, from
``default_cache_dir``), so a test that escapes the redirect fails at that call, before it writes. The guard lives
in the test processes only: another process using the user's cache meanwhile (an ``evaluate`` in another
terminal) cannot fail the session, as a before/after comparison of the folder once did (issue 39).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/test_isolation.py runs a session inside the session

# The user's cache, as the library would find it without the redirect.
REAL_CACHE: Path | None = None
_SESSION_HOME: Path | None = None
_SAVED_ENV: dict = {}


def pytest_configure(config):
    global REAL_CACHE, _SESSION_HOME
    home_cache = Path.home() / ".cache" / "stgcn-pyg"
    REAL_CACHE = Path(os.environ.get("STGCN_PYG_CACHE") or home_cache)
    guarded = os.pathsep.join(dict.fromkeys(str(p) for p in (REAL_CACHE, home_cache)))
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="stgcn-pyg-tests-"))
    # os.environ, not monkeypatch: every subprocess a test starts inherits it.
    for key, value in (("STGCN_PYG_CACHE", _SESSION_HOME / "cache"), ("HOME", _SESSION_HOME / "home"),
                       ("STGCN_PYG_GUARD_CACHE", guarded)):
        _SAVED_ENV[key] = os.environ.get(key)
        os.environ[key] = str(value)
    (_SESSION_HOME / "home").mkdir()


def pytest_unconfigure(config):
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


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


@pytest.fixture
def finished_run(untrained_checkpoint, tmp_path):
    """``finished_run(name)``: tmp_path/name holding last.pt (:func:`untrained_checkpoint`), a run folder as
    benchmarks/studies/ablation.py leaves it (``<variant>-seed<k>``)."""
    def make(name):
        run = tmp_path / name
        run.mkdir()
        untrained_checkpoint(tmp_path / f"{name}-ckpt").rename(run / "last.pt")
        return run

    return make


@pytest.fixture(scope="session")
def onnx_cache():
    """Where the onnxruntime engine's exports (stgcn_pyg.deploy.engine) go in this session, subprocesses
    included: the session's $STGCN_PYG_CACHE/onnx, one export per checkpoint per session."""
    from stgcn_pyg.deploy.engine import engine_cache_dir

    return engine_cache_dir()


@pytest.fixture(scope="module")
def benchmark_module():
    """``benchmark_module(name)``: benchmarks/<room>/<name>.py (or benchmarks/<name>.py) imported as its scripts
    import each other, ``benchmarks.<room>.<name>`` (the repository root is on sys.path: pyproject's pythonpath)."""
    import importlib
    from pathlib import Path

    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"

    def load(name: str):
        rooms = [path.parent.name for path in benchmarks.glob(f"*/{name}.py")]
        return importlib.import_module(f"benchmarks.{rooms[0]}.{name}" if rooms else f"benchmarks.{name}")

    return load
