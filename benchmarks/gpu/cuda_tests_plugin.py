"""A pytest plugin that keeps only the tests that need CUDA (``benchmarks/gpu/gpu_check.py`` loads it with ``-p``).

The suite marks a GPU test by skipping it where there is none:
``@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")``. Kept: a test with such a
``skipif`` (its reason or condition names CUDA or a GPU), a ``cuda`` or ``gpu`` marker, or "cuda" or "gpu"
in its name. Every other collected test is deselected, so ``pytest -p cuda_tests_plugin`` runs the GPU
tests and nothing else; on a machine without CUDA they are collected and skipped.
"""

from __future__ import annotations

import re

NEEDS_GPU = re.compile(r"cuda|gpu", re.IGNORECASE)


def needs_cuda(item) -> bool:
    """Whether a collected test item is one of the suite's GPU tests."""
    for mark in item.iter_markers():
        if mark.name in ("cuda", "gpu"):
            return True
        if mark.name == "skipif":
            said = " ".join(str(v) for v in (*mark.args, mark.kwargs.get("reason", "")))
            if NEEDS_GPU.search(said):
                return True
    return bool(NEEDS_GPU.search(item.name))


def pytest_collection_modifyitems(config, items):
    keep = [item for item in items if needs_cuda(item)]
    dropped = [item for item in items if not needs_cuda(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
