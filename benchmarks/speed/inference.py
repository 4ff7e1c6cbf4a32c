"""Descriptor extraction on the CPU against what the CPU can do: peak GFLOP/s, model FLOPs, clips/s per setting.

In one run on one machine:

* the machine's peak per dtype: the fastest square GEMM (n = 1024, 2048,
  4096) of any engine, in float32 torch.mm (MKL's sgemm) and onnxruntime's
  MatMul (MLAS), in bfloat16 torch.mm (oneDNN) where the CPU has bf16
  instructions (AVX512-BF16 or AMX), in GFLOP/s: one engine alone can sit
  well below what the CPU does (docs/benchmarks.md, "An honest peak");
* the model's FLOPs per clip (``torch.utils.flop_counter``), the full STGCN
  and the global-branch-only model, split into backbone and graph branches;
* clips/s and frames/s of ``encode`` (clips [B, T, 3, H, W] -> f_all) for
  eager fp32, channels_last fp32, bf16 autocast, channels_last + bf16,
  ``torch.compile`` (fp32 and bf16, channels_last), onnxruntime (fp32) and
  ``default``, what ``stgcn-pyg extract`` runs on a checkpoint with its
  default flags (the commands' own loader, ``load_model_from_args``: on the
  CPU in fp32 with the export extra installed, the onnxruntime engine),
  for resnet50 and mobilenet_v2 at 256x128 and 128x64, over a sweep of batch
  sizes; each as GFLOP/s and as a fraction of the peak of its own dtype;
* the graph branches' share of the time: the full model against the
  global-only model in the same setting and batch;
* each setting's descriptors against eager fp32 (max relative difference).

The last line printed is the default against onnxruntime (frames/s, each at
its best batch): the default should be within 10% of it. The fastest eager
setting is what the torch engine uses on the CPU (``--engine torch``, or no
onnxruntime; ``stgcn_pyg.deploy.inference_settings``, which picks by whether
the CPU has AMX); the report says whether this run agrees. Untrained weights
(``weights=none``): speed does not depend on them.

The results name the CPU's flags that decide it (avx512f, avx512_bf16,
amx_*; from /proc/cpuinfo) and go to a file per kind of CPU, so that both
can be committed side by side: ``results/inference_cpu.*`` without AMX,
``results/inference_cpu_amx.*`` with AMX (amx_bf16 and amx_tile).

    python benchmarks/speed/inference.py           # the full run (tens of minutes on 2 cores): results/inference_cpu[_amx].*
    python benchmarks/speed/inference.py --quick   # tiny models, a minute or two: checks the script (..._quick.*)
    python benchmarks/speed/inference.py --peaks-only   # just the peaks, every engine and n: results/inference_cpu_peaks.csv
    python benchmarks/speed/inference.py --backbones mobilenet_v2 --sizes 128x64 --batches 8 --min-seconds 3 --out DIR
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: `benchmarks` is a package
from benchmarks.common import cpu_flags, device_name, has_amx, to_markdown  # noqa: E402

from stgcn_pyg.config import ModelConfig  # noqa: E402
from stgcn_pyg.deploy import (InferenceModel, InferenceSettings, cpu_has_amx, cpu_has_native_bf16,  # noqa: E402
                              inference_settings)
from stgcn_pyg.models import STGCN  # noqa: E402

RESULTS = HERE / "results"
console = Console()
BF16 = torch.bfloat16
MARS_TEST_FRAMES = 681_089  # query + gallery frames of MARS's test split

# name -> (channels_last, autocast dtype, compiled); onnxruntime and the default are handled apart.
DEFAULT = "default (stgcn-pyg extract)"
ONNXRUNTIME = "onnxruntime fp32"
SETTINGS = {
    "eager fp32": (False, None, False),
    "channels_last fp32": (True, None, False),
    "bf16 autocast": (False, BF16, False),
    "channels_last + bf16": (True, BF16, False),
    "compile fp32 (channels_last)": (True, None, True),
    "compile bf16 (channels_last)": (True, BF16, True),
    ONNXRUNTIME: None,
    DEFAULT: None,
}
BASELINE = "eager fp32"
DEFAULT_RUN: dict = {}  # how the default ran (default_encoder): its line, engine and dtype


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models and sizes, to check the script")
    p.add_argument("--backbones", nargs="+", default=None, help="default: resnet50 mobilenet_v2 (quick: resnet18 mobilenet_v2)")
    p.add_argument("--sizes", nargs="+", default=None, metavar="HxW", help="default: 256x128 128x64 (quick: 64x32)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="clips per call (default: 1 4 16; quick: 1 2)")
    p.add_argument("--seq-len", type=int, default=None, help="frames per clip T (default 8; quick 4)")
    p.add_argument("--settings", nargs="+", default=None, choices=list(SETTINGS), metavar="SETTING",
                   help="default: all of " + "; ".join(SETTINGS))
    p.add_argument("--min-seconds", type=float, default=None,
                   help="time each point for at least this long (default 6; quick 0)")
    p.add_argument("--matmul-sizes", type=int, nargs="+", default=None,
                   help="n of the n x n peak matmuls (default 1024 2048 4096; quick 512 1024)")
    p.add_argument("--peaks-only", action="store_true", help="measure and print the peaks (every engine, every n), "
                   "write <stem>_peaks.csv, and stop")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and onnxruntime threads (default: torch's, one per core); 1 is steadier on a busy machine")
    p.add_argument("--out", default=None,
                   help="a folder (an existing one, or a path ending in /) to write inference_cpu[_amx].* into, or "
                        "a file stem under benchmarks/results (default: benchmarks/speed/results/inference_cpu, or "
                        "inference_cpu_amx on a CPU with AMX; a quick run adds _quick)")
    args = p.parse_args(argv)
    q = args.quick
    args.backbones = args.backbones or (["resnet18", "mobilenet_v2"] if q else ["resnet50", "mobilenet_v2"])
    args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in (args.sizes or (["64x32"] if q else ["256x128", "128x64"]))]
    args.batches = args.batches or ([1, 2] if q else [1, 4, 16])
    args.seq_len = args.seq_len or (4 if q else 8)
    # a quick run leaves out compile's bf16 twin: same code path, and compiling dominates its time
    args.settings = args.settings or [k for k in SETTINGS if not (q and k == "compile bf16 (channels_last)")]
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (0.0 if q else 6.0)
    args.matmul_sizes = args.matmul_sizes or ([512, 1024] if q else [1024, 2048, 4096])
    return args


# ---------------------------------------------------------------------- peak
def matmul_peak(n: int, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best GFLOP/s of torch's n x n x n matmul (2 n^3 FLOPs) over a few seconds (MKL's sgemm for float32,
    oneDNN's for bfloat16)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: oneDNN/BLAS pick their kernels
    return _best_rate(lambda: torch.mm(a, b, out=out), 2 * n**3, seconds)


def _best_rate(fn, flops: float, seconds: float) -> float:
    best, start = 0.0, time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
        if time.perf_counter() - start > seconds:
            return best


def onnxruntime_matmul_peak(n: int, threads: int, tmp: Path, seconds: float = 3.0) -> float:
    """Best GFLOP/s of onnxruntime's float32 n x n x n MatMul (its MLAS sgemm); needs onnx and onnxruntime."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    path = tmp / f"matmul{n}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    session.run(None, feeds)
    return _best_rate(lambda: session.run(None, feeds), 2 * n**3, seconds)


def _engines(threads: int, tmp: Path):
    """(dtype, engine name, rate(n, seconds)) of every GEMM this machine can run, on ``threads`` threads."""
    def torch_rate(dtype):
        def rate(n, seconds):
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return matmul_peak(n, dtype, seconds)
            finally:
                torch.set_num_threads(before)
        return rate

    engines = [("fp32", "torch.mm (MKL sgemm)", torch_rate(torch.float32))]
    if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
        engines.append(("fp32", "onnxruntime MatMul (MLAS sgemm)",
                        lambda n, seconds: onnxruntime_matmul_peak(n, threads, tmp, seconds)))
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        engines.append(("bf16", "torch.mm (oneDNN)", torch_rate(BF16)))
    return engines


def measure_peaks(sizes, threads: int, seconds: float = 2.0, core_sizes=(256, 384, 512)) -> tuple[dict, list[dict]]:
    """Each dtype's peak: the fastest GEMM any engine ran, and every measurement.

    Two ways per engine: square GEMMs of each of ``sizes`` on all ``threads`` threads, and one thread's
    best small GEMM (the fastest n of ``core_sizes``, in cache) times ``threads``: what the cores do if
    each runs at one core's best. Large multi-threaded GEMMs stall on memory and synchronisation below what the cores
    can do, and convolutions can beat them (onnxruntime's did: docs/benchmarks.md, "An honest peak"),
    so a peak of those alone is too low. float32: torch.mm (MKL's sgemm) and onnxruntime's MatMul (MLAS);
    bfloat16 (where oneDNN has it): torch.mm (oneDNN). A fraction of the peak over 100 % would mean the
    peak is still too low.
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engines = _engines(threads, Path(tmp))
        for n in sizes:
            for dtype, engine, rate in engines:
                rows.append(dict(dtype=dtype, engine=engine, n=n, threads=threads, gflop_per_s=rate(n, seconds)))
            console.print(f"matmul n={n}, {threads} threads: " + ", ".join(
                f"{r['engine']} {r['dtype']} {r['gflop_per_s']:.0f}" for r in rows if r["n"] == n) + " GFLOP/s")
        for dtype, engine, rate in _engines(1, Path(tmp)):
            n, one = max(((n, rate(n, seconds)) for n in core_sizes), key=lambda r: r[1])
            rows.append(dict(dtype=dtype, engine=f"{engine}, one thread x {threads}", n=n, threads=1,
                             gflop_per_s=one * threads))
        console.print(f"matmul n={'/'.join(map(str, core_sizes))}, one thread x {threads}: " + ", ".join(
            f"{r['engine'].split(',')[0]} {r['dtype']} {r['gflop_per_s']:.0f}" for r in rows if r["threads"] == 1)
            + " GFLOP/s")
    peak = {}
    for r in rows:
        peak[r["dtype"]] = max(peak.get(r["dtype"], 0.0), r["gflop_per_s"])
    return peak, rows


# ---------------------------------------------------------------------- models
def build_model(backbone: str, branches: list[str], seq_len: int) -> STGCN:
    cfg = ModelConfig(backbone=backbone, weights="none", branches=branches, num_classes=0, seq_len=seq_len)
    torch.manual_seed(0)
    return STGCN(cfg).eval()


def count_flops(model: STGCN, clips: torch.Tensor) -> dict:
    """FLOPs of one encode call (2 per multiply-add), total and by part."""
    from torch.utils.flop_counter import FlopCounterMode

    from stgcn_pyg.deploy import DescriptorModel

    program = DescriptorModel(model)  # encode as a module's forward, so the counter names the parts
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        program(clips)
    by_module = counter.get_flop_counts()

    def part(name):
        return sum(by_module.get(f"DescriptorModel.stgcn.{name}", {}).values())

    return {"total": counter.get_total_flops(), "backbone": part("backbone"),
            "graph": part("temporal") + part("spatial")}


def default_encoder(model: STGCN, seq_len: int, size, tmp: Path):
    """What ``stgcn-pyg extract --checkpoint FILE`` runs, by the commands' own loader with their default flags
    (``--device cpu``: this is the CPU table), on a checkpoint of ``model``: its ``encode``. DEFAULT_RUN says
    how (the line the command prints), in which engine and dtype."""
    from stgcn_pyg.cli import build_parser
    from stgcn_pyg.cli.evaluate import load_model_from_args
    from stgcn_pyg.checkpoint import save_checkpoint
    from stgcn_pyg.config import Config, DataConfig, EvalConfig, config_to_dict
    from stgcn_pyg.deploy import describe_inference, inference_engine, inference_precision

    H, W = size
    cfg = Config(model=model.cfg, data=DataConfig(image_size=[H, W], seq_len=seq_len),
                 eval=EvalConfig(seq_len=seq_len))
    ckpt = save_checkpoint(tmp / f"{model.cfg.backbone}_{H}x{W}.pt", {"config": config_to_dict(cfg),
                                                                        "model": model.state_dict()})
    args = build_parser().parse_args(["extract", "--checkpoint", str(ckpt), "--out", str(tmp / "unused.pt"),
                                      "--device", "cpu"])
    said = []
    cache = os.environ.get("STGCN_PYG_CACHE")
    os.environ["STGCN_PYG_CACHE"] = str(tmp / "cache")  # the export of a throwaway model: not the user's cache
    try:
        wrapped, _, _ = load_model_from_args(args, _Lines(said))
    finally:
        if cache is None:
            os.environ.pop("STGCN_PYG_CACHE")
        else:
            os.environ["STGCN_PYG_CACHE"] = cache
    how = (said[-1] if said else describe_inference(wrapped)).replace(str(tmp / "cache"), "$STGCN_PYG_CACHE")
    DEFAULT_RUN.update(how=how, engine=inference_engine(wrapped),
                       dtype=inference_precision(wrapped))
    return wrapped.encode


class _Lines:
    """A console that keeps what is printed (the lines the command would show)."""

    def __init__(self, lines: list):
        self.lines = lines

    def print(self, text, **_):
        self.lines.append(str(text))


def make_encoder(name: str, model: STGCN, seq_len: int, size, tmp: Path):
    """A callable clips -> f_all in setting ``name``; None with the reason when it cannot run here."""
    if name == DEFAULT:
        encode = default_encoder(model, seq_len, size, tmp)
        console.print(f"{DEFAULT}: {DEFAULT_RUN['how']}", highlight=False, markup=False)
        return encode, None
    if SETTINGS[name] is None:
        if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
            return None, "onnxruntime/onnxscript not installed (pip install 'stgcn-pyg[export]')"
        from stgcn_pyg.deploy import export_model, load_exported

        path = tmp / f"{model.cfg.backbone}_{len(model.branches)}_{size[0]}x{size[1]}.onnx"
        export_model(model, path, "onnx", seq_len=seq_len, image_size=size, check=False)
        return load_exported(path).encode, None
    channels_last, dtype, compiled = SETTINGS[name]
    if dtype is BF16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None, "no bf16 support in this CPU's oneDNN"
    wrapped = InferenceModel(copy.deepcopy(model), InferenceSettings(channels_last, dtype), "cpu")
    if not compiled:
        return wrapped.encode, None
    return torch.compile(wrapped.encode), None


def time_encoder(encode, clips: torch.Tensor, min_seconds: float, warmup: int) -> tuple[float, int]:
    """Median seconds per call (at least 3 calls and min_seconds of timing), and the number of calls."""
    for _ in range(warmup):
        encode(clips)
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        encode(clips)
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)  # the median resists a busy neighbour


def relative_difference(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).abs().max() / ref.abs().max())


# ---------------------------------------------------------------------- run
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    native_bf16 = f"{cpu_has_native_bf16()} (AMX tiles: {cpu_has_amx()})"
    flags = cpu_flags()
    amx = cpu_has_amx() if flags is None else has_amx(flags)  # no /proc/cpuinfo: torch's answer
    cpu = {"cpu_amx": amx, "cpu_flags": "unknown" if flags is None else " ".join(flags) or "none"}
    stem = "inference_cpu_amx" if amx else "inference_cpu"
    if args.out and (args.out.endswith(("/", os.sep)) or Path(args.out).is_dir()):
        out_dir = Path(args.out)
    else:
        out_dir, stem = RESULTS, args.out or stem
    dev = device_name("cpu")
    console.print(f"[bold]{dev}[/]; torch {torch.__version__}; native bf16: {native_bf16}; "
                  f"capability {torch.backends.cpu.get_cpu_capability()}; flags {cpu['cpu_flags']}")
    peak, peak_rows = measure_peaks(args.matmul_sizes, torch.get_num_threads())
    console.print("matmul peak (fastest engine): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    pk = pd.DataFrame(peak_rows).assign(device=dev, threads=torch.get_num_threads(), **cpu)
    if args.peaks_only:
        out_dir.mkdir(parents=True, exist_ok=True)
        pk.to_csv(out_dir / f"{stem}_peaks.csv", index=False, float_format="%.6g")
        console.print(f"wrote {out_dir / (stem + '_peaks.csv')}")
        return 0

    rows, flop_rows = [], []
    T = args.seq_len
    with tempfile.TemporaryDirectory() as tmpdir:
        for backbone in args.backbones:
            for size in args.sizes:
                H, W = size
                models = {"full": build_model(backbone, ["global", "temporal", "spatial"], T),
                          "global-only": build_model(backbone, ["global"], T)}
                one = torch.randn(1, T, 3, H, W)
                flops = {k: count_flops(m, one) for k, m in models.items()}
                for variant, f in flops.items():
                    flop_rows.append(dict(backbone=backbone, size=f"{H}x{W}", variant=variant, T=T,
                                          gflop_per_clip=f["total"] / 1e9, gflop_per_frame=f["total"] / T / 1e9,
                                          backbone_gflop=f["backbone"] / 1e9, graph_gflop=f["graph"] / 1e9, **cpu))
                for name in args.settings:
                    for variant, model in models.items():
                        if name == DEFAULT and variant != "full":
                            continue  # compared with onnxruntime on the full model; the graph share is the others'

                        # the graph branches' share: global-only at the largest batch only
                        compiled = bool(SETTINGS[name] and SETTINGS[name][2])
                        # global-only (for the graph branches' share) at the largest batch only; so is
                        # compile in a quick run, where compiling takes most of the time
                        sweep = variant == "full" and not (compiled and args.quick)
                        batches = args.batches if sweep else args.batches[-1:]
                        encode, why = make_encoder(name, model, T, size, Path(tmpdir))
                        if encode is None:
                            console.print(f"[yellow]skip[/] {name}: {why}")
                            break
                        for B in batches:
                            clips = torch.randn(B, T, 3, H, W, generator=torch.Generator().manual_seed(B))
                            with torch.no_grad():
                                ref = model.encode(clips)
                            warmup = 2 if compiled else 1  # compile: trace, then a first run of the compiled code
                            t0 = time.perf_counter()
                            seconds, calls = time_encoder(encode, clips, args.min_seconds, warmup)
                            with torch.no_grad():
                                diff = relative_difference(encode(clips), ref)
                            dtype = ("bf16" if (SETTINGS[name] and SETTINGS[name][1] is BF16) else
                                     DEFAULT_RUN["dtype"] if name == DEFAULT else "fp32")
                            gflops = flops[variant]["total"] / 1e9 * B / seconds
                            rows.append(dict(
                                backbone=backbone, size=f"{H}x{W}", T=T, variant=variant, setting=name, batch=B,
                                frames=B * T, ms_per_call=seconds * 1e3, clips_per_s=B / seconds,
                                frames_per_s=B * T / seconds, gflop_per_s=gflops, dtype=dtype,
                                peak_gflop_per_s=peak.get(dtype, float("nan")),
                                fraction_of_peak=gflops / peak.get(dtype, float("nan")),
                                fraction_of_fp32_peak=gflops / peak["fp32"],
                                max_rel_diff_vs_eager_fp32=diff, calls=calls, device=dev, **cpu))
                            console.print(f"{backbone} {H}x{W} {variant:11s} {name:28s} B={B:<3d} "
                                          f"{B * T / seconds:8.1f} frames/s  {100 * gflops / peak.get(dtype, 1):5.1f}% "
                                          f"of {dtype} peak  diff {diff:.1e}  ({time.perf_counter() - t0:.0f} s)")
                        del encode
                        torch._dynamo.reset()  # compiled graphs of one model are no use for the next

    df, fl = pd.DataFrame(rows), pd.DataFrame(flop_rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    quick = "_quick" if args.quick else ""  # quick results are not committed (.gitignore: *_quick.*)
    paths = {kind: out_dir / f"{stem}{kind}{quick}" for kind in ("", "_flops", "_peaks")}
    df.to_csv(f"{paths['']}.csv", index=False, float_format="%.6g")
    pk.to_csv(f"{paths['_peaks']}.csv", index=False, float_format="%.6g")
    fl.to_csv(f"{paths['_flops']}.csv", index=False, float_format="%.6g")
    best, default_name = summarise(df)
    write_markdown(df, fl, best, default_name, peak, native_bf16, cpu, args, dev, Path(f"{paths['']}.md"), pk)
    write_plot(df, fl, peak, Path(f"{paths['']}.png"), dev)
    console.print(f"wrote {paths['']}.csv, .md and .png, and {paths['_flops']}.csv")
    ratios = default_ratios(best)
    if ratios:  # the last line: the default against onnxruntime
        console.print(f"{DEFAULT} / {ONNXRUNTIME}, frames/s at each one's best batch: "
                      + ", ".join(f"{b} {s} {r:.2f}" for (b, s), r in ratios.items())
                      + f"; lowest {min(ratios.values()):.2f}", highlight=False)
    return 0


def default_ratios(best: pd.DataFrame) -> dict:
    """(backbone, size) -> frames/s of the default over onnxruntime's, each at its best batch."""
    rate = best.set_index(["backbone", "size", "setting"]).frames_per_s
    return {(b, s): rate[(b, s, DEFAULT)] / rate[(b, s, ONNXRUNTIME)]
            for b, s in dict.fromkeys(zip(best.backbone, best["size"]))
            if (b, s, DEFAULT) in rate and (b, s, ONNXRUNTIME) in rate}


# ---------------------------------------------------------------------- report
def summarise(df: pd.DataFrame):
    """Per (backbone, size, setting): the full model at its best batch, with the speedup over eager fp32."""
    full = df[df.variant == "full"]
    best = full.loc[full.groupby(["backbone", "size", "setting"], sort=False).frames_per_s.idxmax()].copy()
    base = best[best.setting == BASELINE].set_index(["backbone", "size"]).frames_per_s
    best["speedup_vs_eager_fp32"] = [r.frames_per_s / base.get((r.backbone, r.size), float("nan"))
                                     for r in best.itertuples()]
    # The graph branches' share at the largest batch: 1 - t(global-only) / t(full), same setting.
    largest = df.groupby(["backbone", "size", "setting", "variant"]).batch.transform("max") == df.batch
    at = df[largest].pivot_table(index=["backbone", "size", "setting"], columns="variant", values="ms_per_call")
    if {"full", "global-only"} <= set(at.columns):
        share = (1 - at["global-only"] / at["full"]).rename("graph_share_of_time")
        best = best.join(share, on=["backbone", "size", "setting"])
    # The default: the eager setting (no compile, no export) with the best mean speedup over all models and sizes.
    eager = best[best.setting.isin([k for k, v in SETTINGS.items() if v and not v[2]])]
    ranking = eager.groupby("setting").speedup_vs_eager_fp32.mean().sort_values(ascending=False)
    return best, (ranking.index[0] if len(ranking) else None)


def setting_name(s) -> str:
    return {(False, None): "eager fp32", (True, None): "channels_last fp32", (False, BF16): "bf16 autocast",
            (True, BF16): "channels_last + bf16"}[(s.channels_last, s.autocast_dtype)]


def write_markdown(df, fl, best, default_name, peak, native_bf16, cpu, args, dev, path, peaks=None):
    chosen = setting_name(inference_settings("cpu"))
    agree = "agrees" if chosen == default_name else f"DISAGREES (fastest eager setting here: {default_name})"
    headline = best[["backbone", "size", "setting", "batch", "clips_per_s", "frames_per_s", "gflop_per_s",
                     "fraction_of_peak", "fraction_of_fp32_peak", "speedup_vs_eager_fp32",
                     "max_rel_diff_vs_eager_fp32"] + (["graph_share_of_time"] if "graph_share_of_time" in best else [])]
    headline = headline.rename(columns={"batch": "best batch", "fraction_of_peak": "of own-dtype peak",
                                        "fraction_of_fp32_peak": "of fp32 peak", "speedup_vs_eager_fp32": "x eager fp32",
                                        "max_rel_diff_vs_eager_fp32": "max rel diff", "graph_share_of_time": "graph share"})
    over = bool((headline["of own-dtype peak"] > 1).any())  # bf16 over the fp32 peak is no contradiction
    for col in ("of own-dtype peak", "of fp32 peak", "graph share"):
        if col in headline:
            mark = col == "of own-dtype peak"
            headline[col] = [f"{100 * v:.0f}%{' (!)' if mark and v > 1 else ''}" for v in headline[col]]
    headline["max rel diff"] = [f"{v:.1e}" for v in headline["max rel diff"]]
    mars = []
    for (backbone, size), part in best.groupby(["backbone", "size"], sort=False):
        rate = part.set_index("setting").frames_per_s
        if BASELINE in rate and chosen in rate:
            default = (f", {MARS_TEST_FRAMES / rate[DEFAULT] / 3600:.1f} h in the default ({DEFAULT_RUN['engine']})"
                       if DEFAULT in rate else "")
            mars.append(f"- {backbone} {size}: {MARS_TEST_FRAMES / rate[BASELINE] / 3600:.1f} h in eager fp32, "
                        f"{MARS_TEST_FRAMES / rate[chosen] / 3600:.1f} h in {chosen} (the torch engine's)"
                        + default)
    flops = fl.drop(columns=list(cpu))  # said once, in the header
    flops["graph share of FLOPs"] = [f"{100 * g / c:.1f}%" for g, c in zip(flops.graph_gflop, flops.gflop_per_clip)]
    lines = [
        f"# Descriptor extraction on {dev}, {'with' if cpu['cpu_amx'] else 'without'} AMX"
        f"{' (quick run: tiny models, checks the script)' if args.quick else ''}",
        "",
        f"{datetime.date.today().isoformat()}; torch {torch.__version__}; CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; native bf16 instructions: {native_bf16}; "
        f"CPU flags that decide the precision (/proc/cpuinfo: avx512f, avx512_bf16, amx_*): {cpu['cpu_flags']}; "
        f"AMX (amx_bf16 and amx_tile): {'yes' if cpu['cpu_amx'] else 'no'}. "
        f"Clips of T={args.seq_len} frames, untrained weights; `encode` (clips -> f_all) timed as the median of "
        f"at least 3 calls and {args.min_seconds:g} s per point, after warm-up. "
        f"Generated by `{' '.join(['python', 'benchmarks/speed/inference.py', *sys.argv[1:]])}`.",
        "",
        "## The machine's peak (n x n matmul)",
        "",
        "Each dtype's peak is the fastest GEMM any engine ran here (best call over 2 s per engine and n): "
        f"square GEMMs on {torch.get_num_threads()} threads, and one thread's best small GEMM (n = 256, 384 or 512, "
        f"the fastest) times "
        f"{torch.get_num_threads()} (what the cores do if each runs at one core's best). Large multi-threaded "
        "GEMMs, or one engine alone, sit below what the CPU does.",
        "",
        "| dtype | peak GFLOP/s |",
        "|:---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in peak.items()],
        "",
        *([to_markdown(peaks[["dtype", "engine", "n", "threads", "gflop_per_s"]], floatfmt=".0f"), ""] if peaks is not None else []),
        "",
        "## FLOPs per clip (torch.utils.flop_counter, 2 per multiply-add)",
        "",
        to_markdown(flops.drop(columns=["T"]), floatfmt=".3f"),
        "",
        "## Each setting at its best batch size (full STGCN)",
        "",
        "`of own-dtype peak`: achieved GFLOP/s (the FLOPs counted above, 2 per multiply-add) over the peak of "
        "the dtype the convolutions run in (bf16 for the bf16 settings)"
        + ("; (!) marks a value over 100 %: the peak is below what the CPU does, or the engine does fewer "
           "FLOPs than counted (docs/benchmarks.md)" if over else "")
        + "; `graph share`: 1 - time(global-only) / time(full STGCN) at the largest batch, "
        "same setting; `max rel diff`: max |f_all - eager fp32's| / max |eager fp32's| on the same clips.",
        "",
        to_markdown(headline, floatfmt=".2f"),
        "",
        "## The default",
        "",
        *default_section(best, chosen, agree),
        "",
        f"MARS test split ({MARS_TEST_FRAMES:,} frames), extraction time at these rates:",
        "",
        *mars,
        "",
        "## Every point",
        "",
        to_markdown(df[["backbone", "size", "variant", "setting", "batch", "clips_per_s", "frames_per_s",
                        "gflop_per_s", "fraction_of_peak"]], floatfmt=".2f"),
        "",
    ]
    path.write_text("\n".join(lines) + "\n")


def default_section(best: pd.DataFrame, chosen: str, agree: str) -> list[str]:
    """What the default ran, its speed against onnxruntime's, and the torch engine's setting."""
    lines = []
    if DEFAULT_RUN:
        lines += [f"`{DEFAULT}`: what `stgcn-pyg extract --checkpoint FILE` runs with its default flags, through "
                  "the commands' own loader (`stgcn_pyg.cli.evaluate.load_model_from_args`, `--device cpu`); it "
                  f"printed: `{DEFAULT_RUN['how']}`.", ""]
    ratios = default_ratios(best)
    if ratios:
        lines += ["| backbone | size | default frames/s | onnxruntime frames/s | default / onnxruntime |",
                  "|:---|:---|---:|---:|---:|"]
        rate = best.set_index(["backbone", "size", "setting"]).frames_per_s
        lines += [f"| {b} | {s} | {rate[(b, s, DEFAULT)]:.1f} | {rate[(b, s, ONNXRUNTIME)]:.1f} | {r:.2f} |"
                  for (b, s), r in ratios.items()]
        lines += ["", f"Lowest ratio: {min(ratios.values()):.2f} (each at its best batch).", ""]
    lines.append(f"The torch engine (`--engine torch`, or where onnxruntime is not installed) runs {chosen} on this "
                 f"kind of CPU (`stgcn_pyg.deploy.inference_settings`, `--precision auto`); this run {agree}. "
                 "`evaluate` runs fp32 on every CPU unless asked, so that its scores do not depend on the machine. "
                 "torch.compile is not a candidate: it compiles for minutes per input shape on 2 cores.")
    return lines


def write_plot(df, fl, peak, path, dev):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = df[df.variant == "full"]
    panels = list(full.groupby(["backbone", "size"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.3), squeeze=False)
    for ax, ((backbone, size), part) in zip(axes[0], panels):
        for name, rows in part.groupby("setting", sort=False):
            ax.plot(rows.batch, rows.frames_per_s, marker="o", label=name)
        per_frame = fl[(fl.backbone == backbone) & (fl["size"] == size) & (fl.variant == "full")].gflop_per_frame
        if len(per_frame):
            for dtype, style in (("fp32", "--"), ("bf16", ":")):
                if dtype in peak:
                    ax.axhline(peak[dtype] / per_frame.iloc[0], color="grey", ls=style, lw=1)
                    ax.annotate(f"{dtype} matmul peak", (part.batch.min(), peak[dtype] / per_frame.iloc[0]),
                                fontsize=7, color="grey", va="bottom")
        ax.set(xscale="log", yscale="log", xlabel="clips per call", ylabel="frames/s",
               title=f"{backbone} {size}")
        ax.set_xticks(sorted(part.batch.unique()), [str(b) for b in sorted(part.batch.unique())])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"STGCN descriptor extraction (full model) — {dev}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
