"""Benchmark the learned-affinity GCN layer: each AffinityGCNConv path against dense matmul.

Compares, side by side in one run, forward and forward+backward time and
memory of

* ``AffinityGCNConv`` with each implementation (``dense``, ``sparse``,
  ``gather``, and ``auto``, which picks one of them), all with the square
  normalisation (the paper's Eq. 2, what STGCN uses), and ``auto`` once more
  with each other normalisation (``softmax``, and ``cosine``, the standalone
  layer's default),
* ``DenseAffinityGCN`` (the dense batched-matmul reference), and
* PyG's ``DenseGCNConv`` on the same dense mask (a fixed-adjacency GCN, the
  floor: no affinity is learned),

at the paper's training size (64 tracklets, T=8, P=4, 2048 -> 2048) and over
sweeps of T, P and batch size, for the complete temporal graph and the sparse
``temporal-adjacent`` topology.

Memory: on CUDA the peak allocated memory of the step; everywhere the bytes
of the tensors autograd saves for backward (``saved MB``), a device-independent
measure of activation memory.

    python benchmarks/speed/layers.py                # CPU, writes benchmarks/speed/results/layers_cpu.*
    python benchmarks/speed/layers.py --device cuda  # GPU, writes benchmarks/speed/results/layers_cuda.*
    python benchmarks/speed/layers.py --quick        # a tiny smoke run
    python benchmarks/speed/layers.py --only cosine --merge   # measure only the layers named *cosine*, and
                                                        # replace their rows in the existing results
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.progress import track
from torch_geometric.nn import DenseGCNConv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.common import device_name, to_markdown  # noqa: E402

from stgcn_pyg.graphs import build_edge_index
from stgcn_pyg.nn import AffinityGCNConv, DenseAffinityGCN

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_layers(channels: int, device) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    conv = AffinityGCNConv(channels, channels, normalization="square")
    layers = {}
    for impl in ("auto", "dense", "sparse", "gather"):
        layer = AffinityGCNConv(channels, channels, impl=impl, normalization="square")
        layer.load_state_dict(conv.state_dict())
        layers[f"AffinityGCNConv[{impl}]"] = layer
    for normalization in ("softmax", "cosine"):
        other = AffinityGCNConv(channels, channels, normalization=normalization)
        other.load_state_dict(conv.state_dict())
        layers[f"AffinityGCNConv[auto, {normalization}]"] = other
    dense = DenseAffinityGCN(channels, channels, normalization="square")
    dense.load_state_dict(conv.state_dict())
    layers["DenseAffinityGCN"] = dense
    layers["PyG DenseGCNConv (fixed A)"] = DenseGCNConv(channels, channels)
    return {k: v.to(device) for k, v in layers.items()}


def run_layer(name, layer, x, edge_index, mask, backward: bool):
    if name.startswith("AffinityGCNConv"):
        out = layer(x, edge_index)
    elif name.startswith("DenseAffinityGCN"):
        out = layer(x, mask)
    else:
        out = layer(x, mask.float())
    if backward:
        out.sum().backward()
    return out


def measure(name, layer, x, edge_index, mask, backward, repeats, device):
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    x = x.detach().requires_grad_(backward)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run_layer(name, layer, x, edge_index, mask, backward)  # warm-up; counts saved bytes once
    saved_once = saved
    layer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run_layer(name, layer, x, edge_index, mask, backward)
        _sync(device)
        times.append(time.perf_counter() - start)
        layer.zero_grad(set_to_none=True)
    ms = statistics.median(times) * 1000  # the median resists a busy neighbour
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else float("nan")
    return ms, peak, saved_once / 2**20


def cases(args):
    paper = dict(B=64, T=8, P=4, C=args.channels)
    yield "paper", "temporal-complete", paper
    yield "paper", "temporal-adjacent", paper
    sweep_c = args.sweep_channels
    for T in args.sweep_T:
        for topo in ("temporal-complete", "temporal-adjacent"):
            yield "sweep T", topo, dict(B=args.sweep_batch, T=T, P=4, C=sweep_c)
    for P in args.sweep_P:
        for topo in ("temporal-complete", "temporal-adjacent"):
            yield "sweep P", topo, dict(B=args.sweep_batch, T=8, P=P, C=sweep_c)
    for B in args.sweep_B:
        yield "sweep B", "temporal-complete", dict(B=B, T=8, P=4, C=sweep_c)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels", type=int, default=2048, help="width at the paper's size")
    parser.add_argument("--sweep-channels", type=int, default=None, help="width in the sweeps (default: 512 on CPU, 2048 on GPU)")
    parser.add_argument("--sweep-batch", type=int, default=None, help="batch in the T/P sweeps (default: 16 on CPU, 64 on GPU)")
    parser.add_argument("--sweep-T", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--sweep-P", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--sweep-B", type=int, nargs="+", default=[1, 16, 64, 128])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--max-gather-gb", type=float, default=None, help="skip the gather path above this per-edge tensor size")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--out", default=None, help="file stem under benchmarks/results (default layers_<device>)")
    parser.add_argument("--only", nargs="+", default=None, metavar="TEXT",
                        help="measure only the layers whose name contains one of these")
    parser.add_argument("--merge", action="store_true",
                        help="replace the measured layers' rows in the existing results instead of rewriting them")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.sweep_channels = args.sweep_channels or (2048 if gpu else 512)
    args.sweep_batch = args.sweep_batch or (64 if gpu else 16)
    args.repeats = args.repeats or (20 if gpu else 5)
    args.max_gather_gb = args.max_gather_gb or (8.0 if gpu else 1.0)
    if args.quick:
        args.channels, args.sweep_channels, args.sweep_batch, args.repeats = 64, 32, 4, 1
        args.sweep_T, args.sweep_P, args.sweep_B = [4, 8], [2], [1, 4]

    scatter = importlib.util.find_spec("torch_scatter") is not None
    console.print(f"device: [bold]{device_name(device)}[/]; torch {torch.__version__}; torch-scatter installed: {scatter}")
    rows = []
    all_cases = list(cases(args))
    for group, topo, size in track(all_cases, description="benchmarking", console=console):
        B, T, P, C = size["B"], size["T"], size["P"], size["C"]
        N = T * P
        edge_index = build_edge_index(topo, T, P).to(device)
        mask = torch.zeros(N, N, dtype=torch.bool, device=device)
        mask[edge_index[1], edge_index[0]] = True
        layers = build_layers(C, device)
        x = torch.randn(B, N, C, device=device)
        edges = B * edge_index.size(1)
        for name, layer in layers.items():
            if args.only and not any(text in name for text in args.only):
                continue
            if name.endswith("[gather]") and edges * C * 4 / 2**30 > args.max_gather_gb:
                continue  # per-edge tensors would not fit: the point of the other paths
            impl = layer.choose_impl(x, edge_index) if isinstance(layer, AffinityGCNConv) else "dense"
            for backward in (False, True):
                ms, peak, saved = measure(name, layer, x, edge_index, mask, backward, args.repeats, device)
                rows.append(
                    dict(
                        group=group, topology=topo, B=B, T=T, P=P, channels=C, edges=edges,
                        layer=name, runs=impl, pass_="fwd+bwd" if backward else "fwd",
                        ms=round(ms, 3), peak_MB=round(peak, 1), saved_MB=round(saved, 1),
                        torch_scatter=scatter, device=device_name(device),
                    )
                )
        del layers, x
    df = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    stem = args.out or f"layers_{device.type}{'_quick' if args.quick else ''}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.merge and (RESULTS / f"{stem}.csv").exists():
        # Rows of the layers not measured now stay as they were (each row names its device).
        old = pd.read_csv(RESULTS / f"{stem}.csv")
        df = pd.concat([old[~old.layer.isin(df.layer.unique())], df], ignore_index=True)
    df.to_csv(RESULTS / f"{stem}.csv", index=False)
    write_markdown(df, RESULTS / f"{stem}.md", device_name(device), scatter)
    write_plot(df, RESULTS / f"{stem}.png", device_name(device))
    console.print(f"wrote {RESULTS / stem}.{{csv,md,png}}")


def headline(df: pd.DataFrame) -> pd.DataFrame:
    paper = df[df.group == "paper"]
    table = paper.pivot_table(index=["topology", "layer", "runs"], columns="pass", values=["ms", "saved_MB", "peak_MB"])
    table.columns = [f"{a} {b}" for a, b in table.columns]
    table = table.reset_index()
    for topo in table.topology.unique():
        ref = table[(table.topology == topo) & (table.layer == "DenseAffinityGCN")].iloc[0]
        sel = table.topology == topo
        table.loc[sel, "time / dense (fwd+bwd)"] = (table.loc[sel, "ms fwd+bwd"] / ref["ms fwd+bwd"]).round(2)
        table.loc[sel, "saved / dense"] = (table.loc[sel, "saved_MB fwd+bwd"] / ref["saved_MB fwd+bwd"]).round(2)
    return table


def write_markdown(df, path, device, scatter):
    lines = [
        f"# Layer benchmark on {device}",
        "",
        f"torch {torch.__version__}; torch-scatter installed: {scatter}. "
        "`runs` is the path AffinityGCNConv took; `saved_MB` the bytes autograd keeps for backward; "
        "`peak_MB` the CUDA peak (nan on CPU). Generated by `python benchmarks/speed/layers.py`.",
        "",
        "## Paper size: 64 tracklets, T=8, P=4, 2048 -> 2048",
        "",
        to_markdown(headline(df)),
        "",
        "## Sweeps (forward + backward, ms)",
        "",
    ]
    sweep = df[(df.group != "paper") & (df["pass"] == "fwd+bwd")]
    for group, part in sweep.groupby("group", sort=False):
        key = {"sweep T": "T", "sweep P": "P", "sweep B": "B"}[group]
        table = part.pivot_table(index=["topology", key], columns="layer", values="ms").round(2)
        lines += [f"### {group} (channels {part.channels.iloc[0]})", "", to_markdown(table, index=True), ""]
    path.write_text("\n".join(lines) + "\n")


def write_plot(df, path, device):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sweep = df[(df.group == "sweep T") & (df["pass"] == "fwd+bwd")]
    topologies = list(sweep.topology.unique())
    fig, axes = plt.subplots(1, len(topologies), figsize=(6 * len(topologies), 4.5), squeeze=False)
    for ax, topo in zip(axes[0], topologies):
        part = sweep[sweep.topology == topo]
        for layer, rows in part.groupby("layer"):
            ax.plot(rows["T"], rows["ms"], marker="o", label=layer)
        ax.set(xscale="log", yscale="log", xlabel="frames T (P=4)", ylabel="forward+backward ms", title=topo)
        ax.set_xticks(sorted(part["T"].unique()), [str(t) for t in sorted(part["T"].unique())])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"AffinityGCNConv paths vs dense matmul — {device}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
