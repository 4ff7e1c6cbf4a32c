"""Fixtures shared by the test modules: one tiny synthetic set and one tiny run configuration.

The whole session, subprocesses included, runs with ``$STGCN_PYG_CACHE`` and ``$HOME`` in a folder of its own
(pytest_configure), so no test writes into the user's cache (a 47 MB ONNX export once did, from a
subprocess that did not inherit an in-process redirect); the session fails if the real cache changed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/test_isolation.py runs a session inside the session

# The user's cache, as the library would find it without the redirect, and what it held when the session began.
REAL_CACHE: Path | None = None
_REAL_CACHE_BEFORE: dict | None = None
_SESSION_HOME: Path | None = None
_SAVED_ENV: dict = {}


def cache_listing(folder: Path) -> dict | None:
    """Every file under ``folder`` with its size and modification time (None: no such folder)."""
    if not folder.is_dir():
        return None
    listing = {}
    for parent, _, files in os.walk(folder):
        for name in files:
            path = Path(parent, name)
            try:
                st = path.stat()
            except OSError:  # a file removed while listing
                continue
            listing[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return listing


def pytest_configure(config):
    global REAL_CACHE, _REAL_CACHE_BEFORE, _SESSION_HOME
    REAL_CACHE = Path(os.environ.get("STGCN_PYG_CACHE") or Path.home() / ".cache" / "stgcn-pyg")
    _REAL_CACHE_BEFORE = cache_listing(REAL_CACHE)
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="stgcn-pyg-tests-"))
    # os.environ, not monkeypatch: every subprocess a test starts inherits it.
    for key, value in (("STGCN_PYG_CACHE", _SESSION_HOME / "cache"), ("HOME", _SESSION_HOME / "home"),
                       ("STGCN_PYG_REAL_CACHE", REAL_CACHE)):
        _SAVED_ENV[key] = os.environ.get(key)
        os.environ[key] = str(value)
    (_SESSION_HOME / "home").mkdir()


def pytest_sessionfinish(session, exitstatus):
    if REAL_CACHE is None:
        return
    before, after = _REAL_CACHE_BEFORE or {}, cache_listing(REAL_CACHE) or {}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        # Named, since another job writing the same cache meanwhile (a shared machine) trips this too.
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"FAILED: the test session changed the user's cache {REAL_CACHE} (tests must write only under "
            f"their temporary folders): {shown}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
