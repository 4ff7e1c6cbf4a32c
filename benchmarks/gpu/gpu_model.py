"""A model (not a measurement) of the paper's training step on one H100: compute, memory traffic, data loader.

Traces the paper's training configuration (ResNet-50, last stride 1, 256x128,
T=8, 16 ids x 4 tracklets = 64 clips = 512 frames per step, M=3 temporal and
K=2 spatial layers of width 2048, 625 MARS training identities) once forward
and backward on fake tensors (shapes only, no arithmetic), in bfloat16 (what bf16 autocast runs the
convolutions and matmuls in), and records for every aten operation:

* its FLOPs (torch's flop formulas, 2 per multiply-add);
* the bytes it reads and writes (its tensor inputs and outputs; views move
  nothing): the traffic of unfused eager execution.

Each operation then takes ``max(FLOPs / peak, bytes / bandwidth, min kernel
time)`` on the GPU (a per-kernel roofline), and a step is their sum. The same
for the global-branch-only model gives the graph branches' cost.

The data loader's supply at N workers, for CPU decode and GPU decode
(``data.decode = "cuda"``), is built from the per-core figures measured by
``python benchmarks/speed/data.py --per-core`` (``benchmarks/speed/results/data_per_core.csv`` and
``data_per_core_stages.csv``; see :func:`loader_model` for what is measured
and what is modelled), and the mean JPEG size of the same two synthetic sets.

Nothing runs on a GPU and nothing is timed here; results go to
``benchmarks/gpu/results/gpu_model.{csv,md}`` and docs/gpu-model.md explains them.

    python benchmarks/gpu/gpu_model.py     # seconds on the CPU (fake tensors do no arithmetic)
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: `benchmarks` is a package
from benchmarks.common import to_markdown  # noqa: E402

from stgcn_pyg.config import ModelConfig  # noqa: E402
from stgcn_pyg.models import STGCN  # noqa: E402

RESULTS = HERE / "results"

# NVIDIA H100 SXM5 (80 GB) datasheet figures: dense bf16 tensor-core peak and HBM3 bandwidth.
H100 = {"bf16_tflops": 989.0, "hbm_tb_per_s": 3.35}
# A kernel shorter than this still costs it (launch and tail), whatever its FLOPs: a common rule of thumb.
MIN_KERNEL_US = 3.0
# Tensor cores do not reach their datasheet peak on convolutions; the model reports 100% and this share.
REALISTIC_COMPUTE_EFFICIENCY = 0.5
WORKERS = (1, 2, 4, 8, 16)
FRAME_BYTES = 256 * 128 * 3  # a uint8 frame at the training size, what a worker hands over with CPU decode


class OpRecorder(TorchDispatchMode):
    """Per aten operation: FLOPs (where torch has a formula) and bytes of its tensor inputs and outputs."""

    def __init__(self):
        super().__init__()
        self.ops: list[dict] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if getattr(func, "is_view", False) or func.overloadpacket in (torch.ops.aten.detach,):
            return out
        tensors_in = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        tensors_out = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        nbytes = sum(t.numel() * t.element_size() for t in tensors_in + tensors_out)
        formula = flop_registry.get(func.overloadpacket)
        flops = formula(*args, **kwargs, out_val=out) if formula else 0
        self.ops.append({"op": str(func.overloadpacket), "flops": int(flops), "bytes": int(nbytes)})
        return out


def record_step(branches: list[str], B: int, T: int, size: tuple[int, int], num_classes: int) -> list[dict]:
    """The aten operations of one training step's forward and backward (bf16, meta device)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg = ModelConfig(backbone="resnet50", weights="none", branches=branches, num_classes=num_classes,
                      seq_len=T)
    recorder = OpRecorder()
    # Fake CPU tensors: shapes and dtypes without storage or arithmetic (the meta device has no autocast,
    # which the graph layers switch off around their affinity).
    model = STGCN(cfg).to(torch.bfloat16).train()  # real weights (a few hundred MB), turned fake on use
    with torch.no_grad():  # builds the model's edge lists for T frames, which fake tensors cannot
        model.eval()._run(torch.zeros(T, 3, 64, 32, dtype=torch.bfloat16), 1, [T], True, None, with_logits=False)
    model.train()
    with FakeTensorMode(allow_non_fake_inputs=True):
        frames = torch.empty(B * T, 3, *size, dtype=torch.bfloat16)
        with recorder:
            out = model._run(frames, B, [T], True, None, with_logits=True)  # the static path training takes
            # a stand-in for the losses: every output gets a gradient, as with triplet + cross-entropy
            loss = (sum(f.float().sum() for f in out.features.values())
                    + sum(l.float().sum() for l in out.logits.values()))
            loss.backward()
    return recorder.ops


def step_time_s(ops: list[dict], peak_flops: float, bandwidth: float) -> dict:
    compute = sum(o["flops"] for o in ops) / peak_flops
    memory = sum(o["bytes"] for o in ops) / bandwidth
    per_op = sum(max(o["flops"] / peak_flops, o["bytes"] / bandwidth, MIN_KERNEL_US * 1e-6) for o in ops)
    return {"compute_s": compute, "memory_s": memory, "roofline_s": per_op}


def jpeg_bytes_per_frame() -> dict[str, float]:
    """Mean JPEG file size of the training frames of ``benchmarks/speed/data.py --per-core``'s two sets (cached;
    generated on first use, about 30 s)."""
    from benchmarks.speed.data import SOURCES

    from stgcn_pyg.data import ensure_synthetic, load_dataset

    out = {}
    for source, kw in SOURCES.items():
        ds = load_dataset("mars", ensure_synthetic(progress=False, **kw))
        files = [f for frames in ds.train.frames for f in frames]
        out[source] = sum(Path(f).stat().st_size for f in files) / len(files)
    return out


def loader_model(per_core: pd.DataFrame, stages: pd.DataFrame, jpeg_bytes: dict[str, float]) -> pd.DataFrame:
    """Per source and decode mode, a low and a high estimate of one worker's frames/s and the main process's
    us/frame, from the per-core figures (``per_core``: data_per_core.csv; ``stages``: its _stages.csv).

    Measured: the in-process loader uint8 rate (``u``), each stage's us/frame, the transfer's cost in the
    worker (``tw``) and in the main process (``tm``), one worker's rate beside the main process.

    * CPU decode, high: a worker costs ``u + tw`` (modelled: a sum of measured figures); low: the measured
      1-worker rate. Main process: ``tm``.
    * GPU decode (workers read the bytes; nvjpeg decodes on the GPU): a worker costs sampling + read +
      graph/Data + the transfer of the bytes; the main process, their transfer. High: the transfers scaled
      by JPEG bytes / uint8 frame bytes; low: the transfers as for uint8 frames (modelled, both). The GPU's
      decode time and the main process's decode call are not modelled.
    """
    rows = []
    for source, st in stages.groupby("source", sort=False):
        us = dict(zip(st.stage, st["us/frame"]))
        pc = per_core[(per_core.source == source) & (per_core.path == "loader uint8")]
        loader_us = 1e6 / float(pc[pc.workers == 0]["frames/s"].iloc[0])
        one_worker = float(pc[pc.workers == 1]["frames/s"].iloc[0])
        tw, tm = us["transfer: worker (fresh shared memory)"], us["transfer: main process"]
        r = jpeg_bytes[source] / FRAME_BYTES
        read_only = us["sampling"] + us["read"] + us["graph/Data + collation"]
        for decode, estimate, worker_us, main_us, basis in (
                ("cpu", "high", loader_us + tw, tm, "in-process loader + worker transfer"),
                ("cpu", "low", 1e6 / one_worker, tm, "1 worker, measured"),
                ("cuda", "high", read_only + tw * r, tm * r, f"transfers x {r:.3f} (JPEG / uint8 bytes)"),
                ("cuda", "low", read_only + tw, tm, "transfers as for uint8 frames")):
            rows.append({"decode": decode, "source": source, "estimate": estimate, "basis": basis,
                         "jpeg_kb": jpeg_bytes[source] / 1e3, "worker_us_per_frame": worker_us,
                         "main_us_per_frame": main_us, "frames_per_s_per_worker": 1e6 / worker_us,
                         "main_process_cap_frames_per_s": 1e6 / main_us})
    return pd.DataFrame(rows)


def loader_needs(model: pd.DataFrame, demand: float) -> pd.DataFrame:
    """Worker cores (whole) and main-process cores (a share of one) to supply ``demand`` frames/s."""
    out = model[["decode", "source", "estimate"]].copy()
    out["workers"] = [max(1, math.ceil(demand / r - 1e-9)) for r in model.frames_per_s_per_worker]
    out["main_process_cores"] = demand * model.main_us_per_frame / 1e6
    return out


def _span(lo, hi, fmt: str) -> str:
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{lo:{fmt}} to {hi:{fmt}}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="clips per step (16 ids x 4 tracklets)")
    p.add_argument("--seq-len", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=625, help="identities of MARS's training split")
    args = p.parse_args(argv)
    size, B, T = (256, 128), args.batch, args.seq_len
    frames = B * T
    peak, bw = H100["bf16_tflops"] * 1e12, H100["hbm_tb_per_s"] * 1e12
    rows = []
    for name, branches in (("STGCN (all three)", ["global", "temporal", "spatial"]), ("global-only", ["global"])):
        ops = record_step(branches, B, T, size, args.num_classes)
        t = step_time_s(ops, peak, bw)
        flops, nbytes = sum(o["flops"] for o in ops), sum(o["bytes"] for o in ops)
        rows.append({
            "model": name, "kernels_per_step": len(ops), "tflop_per_step": flops / 1e12,
            "gflop_per_frame": flops / frames / 1e9, "gb_per_step": nbytes / 1e9, "mb_per_frame": nbytes / frames / 1e6,
            "frames_per_s_compute_bound": frames / t["compute_s"],
            f"frames_per_s_at_{int(REALISTIC_COMPUTE_EFFICIENCY * 100)}pct_compute":
                frames / (t["compute_s"] / REALISTIC_COMPUTE_EFFICIENCY),
            "frames_per_s_memory_bound": frames / t["memory_s"],
            "frames_per_s_per_kernel_roofline": frames / t["roofline_s"],
            "ms_per_step_roofline": 1e3 * t["roofline_s"],
        })
    df = pd.DataFrame(rows)
    full, glob = df.iloc[0], df.iloc[1]
    per_core = pd.read_csv(RESULTS / "data_per_core.csv")
    lm = loader_model(per_core, pd.read_csv(RESULTS / "data_per_core_stages.csv"), jpeg_bytes_per_frame())
    lm = lm.sort_values("decode", kind="stable", ignore_index=True)
    demands = {"eager (per-kernel roofline)": full.frames_per_s_per_kernel_roofline,
               f"fused ({int(REALISTIC_COMPUTE_EFFICIENCY * 100)} % of compute)":
                   full[f"frames_per_s_at_{int(REALISTIC_COMPUTE_EFFICIENCY * 100)}pct_compute"]}
    needs = lm[["decode", "source", "estimate"]].copy()
    for name, d in demands.items():
        n = loader_needs(lm, d)
        needs[f"workers: {name}"] = n.workers
        needs[f"main-process cores: {name}"] = n.main_process_cores
    supply = []
    for (decode, source), g in lm.groupby(["decode", "source"], sort=False):
        row = {"decode": decode, "source": source}
        for n in WORKERS:
            lo, hi = (min(n * e.frames_per_s_per_worker, e.main_process_cap_frames_per_s)
                      for e in (g[g.estimate == "low"].iloc[0], g[g.estimate == "high"].iloc[0]))
            row[f"workers: {n}"] = f"{lo:,.0f} – {hi:,.0f}"
        supply.append(row)
    supply = pd.DataFrame(supply)
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "gpu_model.csv", index=False, float_format="%.6g")
    lm.merge(needs).to_csv(RESULTS / "gpu_model_loader.csv", index=False, float_format="%.6g")
    when = re.search(r"\d{4}-\d{2}-\d{2}", (RESULTS / "data_per_core.md").read_text())
    lines = [
        "# The paper's training step on one H100: a model, not a measurement",
        "",
        f"Generated by `python benchmarks/gpu/gpu_model.py` (fake tensors, no GPU). H100 SXM5: {H100['bf16_tflops']:.0f} "
        f"TFLOP/s dense bf16, {H100['hbm_tb_per_s']} TB/s HBM3. ResNet-50 (last stride 1), 256x128, T={T}, "
        f"{B} clips = {frames} frames per step, forward + backward in bf16; bytes = every eager kernel's inputs and "
        f"outputs (no fusion); per-kernel roofline = sum of max(FLOPs/peak, bytes/bandwidth, {MIN_KERNEL_US:g} us).",
        "",
        to_markdown(df, floatfmt=".3g"),
        "",
        f"Graph branches (STGCN minus global-only): {100 * (1 - glob.tflop_per_step / full.tflop_per_step):.1f}% of "
        f"the FLOPs, {100 * (1 - glob.gb_per_step / full.gb_per_step):.1f}% of the bytes, "
        f"{int(full.kernels_per_step - glob.kernels_per_step)} of {int(full.kernels_per_step)} kernels, "
        f"{100 * (1 - glob.ms_per_step_roofline / full.ms_per_step_roofline):.1f}% of the per-kernel roofline time.",
        "",
        "## The data loader (also in gpu_model_loader.csv)",
        "",
        f"From the per-core figures of `python benchmarks/speed/data.py --per-core` (data_per_core.csv and "
        f"data_per_core_stages.csv: {per_core.cpu.iloc[0]}, {when.group(0) if when else 'date not found'}), one "
        f"loader worker per core. CPU decode: a worker decodes, resizes and flips and hands over uint8 frames "
        f"({FRAME_BYTES / 1e3:.1f} kB); high = the in-process loader plus the worker's side of the transfer "
        f"(modelled from measured figures), low = one worker measured beside the main process. GPU decode "
        f"(`data.decode = \"cuda\"`): a worker samples, reads the JPEG bytes and builds the graphs; high = the "
        f"transfer scaled by the JPEG's bytes, low = the transfer as for uint8 frames (both modelled); the GPU's "
        f"decode time and the main process's decode call are not modelled. Main process: the transfer's cost on "
        f"its side; it caps the supply at 1e6 / main_us_per_frame frames/s.",
        "",
        to_markdown(lm, floatfmt=".1f"),
        "",
        "Frames/s supplied at N workers (low – high; min of N x per worker and the main process's cap):",
        "",
        to_markdown(supply),
        "",
        "Cores needed for the step's demand (" + "; ".join(f"{k}: {v:,.0f} frames/s" for k, v in demands.items())
        + "): whole worker cores, and the share of one core the main process spends receiving:",
        "",
        to_markdown(needs, floatfmt=".2f"),
        "",
    ]
    for name, d in demands.items():
        for decode in ("cpu", "cuda"):
            n, g = needs[needs.decode == decode], lm[lm.decode == decode]
            w, m = n[f"workers: {name}"], n[f"main-process cores: {name}"]
            cap = g.main_process_cap_frames_per_s.min()
            over = ("" if m.max() <= 1 else " (more than one" + (" at the low estimate" if m.min() <= 1 else "")
                    + f": the main process caps the supply at {cap:,.0f} frames/s)")
            lines.append(f"{name}, {decode} decode: {_span(w.min(), w.max(), '.0f')} worker "
                         f"core{'s' if w.max() > 1 else ''}, plus {_span(m.min(), m.max(), '.2f')} of the main "
                         f"process's core{over}.")
    lines.append("")
    (RESULTS / "gpu_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
