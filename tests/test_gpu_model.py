"""benchmarks/gpu/gpu_model.py's loader model: its arithmetic on the per-core figures (no tracing, no data)."""

from __future__ import annotations

import pandas as pd
import pytest


def test_loader_model_and_needs(benchmark_module):
    gm = benchmark_module("gpu_model")
    per_core = pd.DataFrame({"source": ["s"] * 3, "path": ["bare decode (+resize)", "loader uint8", "loader uint8"],
                             "workers": [0, 0, 1], "frames/s": [6000.0, 5000.0, 4000.0]})
    stages = pd.DataFrame({"source": "s", "stage": ["sampling", "read", "decode", "graph/Data + collation",
                                                   "transfer: main process", "transfer: worker (fresh shared memory)"],
                           "us/frame": [10.0, 10.0, 100.0, 1.0, 80.0, 50.0]})
    lm = gm.loader_model(per_core, stages, {"s": gm.FRAME_BYTES / 10})
    row = lm.set_index(["decode", "estimate"]).loc
    assert row[("cpu", "high")].worker_us_per_frame == pytest.approx(200 + 50)  # in-process loader + transfer
    assert row[("cpu", "low")].frames_per_s_per_worker == pytest.approx(4000)  # one worker, measured
    assert row[("cpu", "low")].main_us_per_frame == pytest.approx(80)
    assert row[("cuda", "high")].worker_us_per_frame == pytest.approx(21 + 5)  # no decode; a tenth of the bytes
    assert row[("cuda", "high")].main_us_per_frame == pytest.approx(8)
    assert row[("cuda", "low")].worker_us_per_frame == pytest.approx(21 + 50)
    needs = gm.loader_needs(lm, 8000).set_index(["decode", "estimate"]).loc
    assert needs[("cpu", "high")].workers == 2 and needs[("cpu", "low")].workers == 2
    assert needs[("cpu", "high")].main_process_cores == pytest.approx(0.64)
    assert needs[("cuda", "high")].workers == 1
