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
for the global-branch-only model gives the graph branches' cost. The data
loader bound comes from this project's measured decode rate per CPU core
(``results/data_loading_cpu.csv``) times N workers.

Nothing runs on a GPU and nothing is timed here; results go to
``benchmarks/results/gpu_model.{csv,md}`` and docs/gpu-model.md explains them.

    python benchmarks/gpu_model.py     # seconds on the CPU (fake tensors do no arithmetic)
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import to_markdown  # noqa: E402

from stgcn_pyg.config import ModelConfig  # noqa: E402
from stgcn_pyg.models import STGCN  # noqa: E402

RESULTS = HERE / "results"

# NVIDIA H100 SXM5 (80 GB) datasheet figures: dense bf16 tensor-core peak and HBM3 bandwidth.
H100 = {"bf16_tflops": 989.0, "hbm_tb_per_s": 3.35}
# A kernel shorter than this still costs it (launch and tail), whatever its FLOPs: a common rule of thumb.
MIN_KERNEL_US = 3.0
# Tensor cores do not reach their datasheet peak on convolutions; the model reports 100% and this share.
REALISTIC_COMPUTE_EFFICIENCY = 0.5
WORKERS = (8, 16, 32, 64)


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


def loader_rates_per_worker() -> tuple[float, float, str]:
    """Slowest and fastest frames/s of one loader worker on this project's CPU (measured, committed)."""
    csv = RESULTS / "data_loading_cpu.csv"
    df = pd.read_csv(csv)
    with_workers = df[df.workers > 0]
    per_worker = with_workers["frames/s"] / with_workers.workers
    return float(per_worker.min()), float(per_worker.max()), csv.name


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
    slow, fast, source = loader_rates_per_worker()
    loader = pd.DataFrame({"workers": list(WORKERS), "frames_per_s_slowest": [n * slow for n in WORKERS],
                           "frames_per_s_fastest": [n * fast for n in WORKERS]})
    needed = full.frames_per_s_per_kernel_roofline
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "gpu_model.csv", index=False, float_format="%.6g")
    lines = [
        "# The paper's training step on one H100: a model, not a measurement",
        "",
        f"Generated by `python benchmarks/gpu_model.py` (fake tensors, no GPU). H100 SXM5: {H100['bf16_tflops']:.0f} "
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
        f"## Data loader at N workers ({slow:.0f} to {fast:.0f} frames/s per worker: the per-worker rates measured "
        f"in {source})",
        "",
        to_markdown(loader, floatfmt=".0f"),
        "",
        f"Workers to feed the per-kernel roofline rate of the full model ({needed:.0f} frames/s): "
        f"{needed / fast:.0f} to {needed / slow:.0f}.",
        "",
    ]
    (RESULTS / "gpu_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
