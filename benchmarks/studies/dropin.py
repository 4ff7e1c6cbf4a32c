"""AffinityGCNConv as a drop-in for PyG's GCNConv on general graphs: which row normalisation learns (issue 26).

Two small node-classification tasks, 10 seeds each, a two-layer model
(layer, ReLU, layer), Adam (lr 0.01, weight decay 5e-4), 200 full-batch
steps, accuracy over all nodes:

* ``karate``: PyG's KarateClub (ships with PyG), one-hot features,
  34 -> 16 -> 4, the 4 labelled nodes of its ``train_mask``; only the
  initialisation changes with the seed;
* ``sbm``: a stochastic block model drawn for each seed (4 blocks of 50
  nodes, edge probability 0.1 within a block and 0.02 across), 16 Gaussian
  features around a random mean per block (signal 0.5, noise 1), 16 -> 16 -> 4,
  4 labelled nodes per block.

The layers: ``GCNConv`` and a per-node ``Linear`` (no graph) as references,
and ``AffinityGCNConv`` with each normalisation (``square``, the paper's
Eq. 2, also with ``center=True``; ``softmax``; ``cosine``, the standalone
default). Two probes, not options of the layer, each change one thing in
Eq. 2 to test a suspected cause: ``square, node left out`` (the sum runs
over the neighbours only; does the node's own e_ii^2 stop propagation?) and
``square of ReLU(e)`` (negative scores get no weight; does sign-blindness
hurt?). The probes start from the same weights as ``square``.

Per layer, the affinity A (before A + I), at initialisation and after
training: ``self`` the node's own share a_ii of its row; ``neg`` the share of
a row's neighbour weight on neighbours with a negative score; ``eff`` the
effective number of neighbours, (sum a)^2 / sum a^2 over the neighbours, as
a fraction of the degree (1: uniform weights, as GCNConv's).

    python benchmarks/studies/dropin.py     # writes benchmarks/studies/results/dropin_cpu.{csv,md,png} and dropin_cpu_runs.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch_geometric.datasets import KarateClub
from torch_geometric.nn import GCNConv
from torch_geometric.utils import stochastic_blockmodel_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.common import device_name, write_table  # noqa: E402

from stgcn_pyg.nn import AffinityGCNConv, dense_affinity, normalize_with_self_loops  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = range(1, 11)
STEPS = 200


class Probe(torch.nn.Module):
    """Eq. 2 changed in one place, dense; the parameters (and their initialisation) of a square AffinityGCNConv."""

    def __init__(self, in_channels: int, out_channels: int, kind: str):
        super().__init__()
        self.kind = kind
        self.conv = AffinityGCNConv(in_channels, out_channels, normalization="square")

    def affinity(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        phi = self.conv.phi(x)
        e = phi @ phi.t()
        eye = torch.eye(x.size(0), dtype=torch.bool)
        if self.kind == "no-self":
            w, allowed = e * e, mask & ~eye
        else:  # "relu": the node itself stays in, negative scores weigh nothing
            w, allowed = F.relu(e) ** 2, mask | eye
        w = w * allowed
        total = w.sum(-1, keepdim=True)
        return w / torch.where(total > 0, total, torch.ones_like(total))

    def forward(self, x, edge_index, mask):
        a_hat = normalize_with_self_loops(self.affinity(x, mask))
        return a_hat @ self.conv.lin(x) + self.conv.bias


def make_layer(option: str, in_channels: int, out_channels: int) -> torch.nn.Module:
    if option == "GCNConv":
        return GCNConv(in_channels, out_channels)
    if option == "Linear (no graph)":
        return torch.nn.Linear(in_channels, out_channels)
    if option == "square, node left out (probe)":
        return Probe(in_channels, out_channels, "no-self")
    if option == "square of ReLU(e) (probe)":
        return Probe(in_channels, out_channels, "relu")
    if option == "square, center=True":
        return AffinityGCNConv(in_channels, out_channels, normalization="square", center=True)
    return AffinityGCNConv(in_channels, out_channels, normalization=option)


OPTIONS = ["GCNConv", "Linear (no graph)", "square", "square, center=True", "square, node left out (probe)",
           "square of ReLU(e) (probe)", "softmax", "cosine"]


def call(layer, x, edge_index, mask):
    if isinstance(layer, Probe):
        return layer(x, edge_index, mask)
    if isinstance(layer, torch.nn.Linear):
        return layer(x)
    return layer(x, edge_index)


def affinity(layer, x, mask) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(A before A + I, the scores) of a learned-affinity layer on x; None for the references."""
    if isinstance(layer, Probe):
        phi = layer.conv.phi(x)
        return layer.affinity(x, mask), phi @ phi.t()
    if not isinstance(layer, AffinityGCNConv):
        return None
    z = x - x.mean(0, keepdim=True) if layer.center else x
    phi = layer.phi(z)
    # dense_affinity is the layer's own normalisation (tested equal to every path of the layer)
    return dense_affinity(phi.unsqueeze(0), mask, layer.scale, layer.normalization)[0], phi @ phi.t()


def affinity_stats(a: torch.Tensor, e: torch.Tensor, mask: torch.Tensor) -> dict:
    nbr = mask & ~torch.eye(mask.size(0), dtype=torch.bool)
    has = nbr.any(-1)
    a_nb = a * nbr
    total = a_nb.sum(-1)
    ok = has & (total > 0)
    neg = (a_nb * (e < 0)).sum(-1)[ok] / total[ok]
    eff = total[ok] ** 2 / (a_nb**2).sum(-1)[ok] / nbr.sum(-1)[ok]
    return dict(self=a.diagonal().mean().item(), neg=neg.mean().item(), eff=eff.mean().item())


def karate() -> tuple:
    data = KarateClub()[0]
    return data.x, data.edge_index, data.y, data.train_mask


def sbm(seed: int, blocks: int = 4, size: int = 50, p_in: float = 0.1, p_out: float = 0.02, dim: int = 16,
        signal: float = 0.5, per_block: int = 4) -> tuple:
    torch.manual_seed(1000 + seed)  # stochastic_blockmodel_graph draws from the global generator
    probs = torch.full((blocks, blocks), p_out) + torch.eye(blocks) * (p_in - p_out)
    edge_index = stochastic_blockmodel_graph([size] * blocks, probs)
    g = torch.Generator().manual_seed(1000 + seed)
    y = torch.arange(blocks).repeat_interleave(size)
    x = signal * torch.randn(blocks, dim, generator=g)[y] + torch.randn(blocks * size, dim, generator=g)
    train = torch.zeros(blocks * size, dtype=torch.bool)
    for b in range(blocks):
        train[b * size : b * size + per_block] = True
    return x, edge_index, y, train


def run(option: str, data: tuple, seed: int, hidden: int = 16) -> dict:
    x, edge_index, y, train = data
    n = x.size(0)
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True
    torch.manual_seed(seed)
    layer1, layer2 = make_layer(option, x.size(1), hidden), make_layer(option, hidden, int(y.max()) + 1)
    params = [*layer1.parameters(), *layer2.parameters()]
    opt = torch.optim.Adam(params, lr=0.01, weight_decay=5e-4)

    def forward():
        h = F.relu(call(layer1, x, edge_index, mask))
        return call(layer2, h, edge_index, mask), h

    def stats(when: str) -> dict:
        out = {}
        with torch.no_grad():
            _, h = forward()
            for name, layer, inp in (("L1", layer1, x), ("L2", layer2, h)):
                got = affinity(layer, inp, mask)
                if got is not None:
                    out.update({f"{name} {k} {when}": v for k, v in affinity_stats(*got, mask).items()})
        return out

    row = stats("init")
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(forward()[0][train], y[train]).backward()
        opt.step()
    row.update(stats("trained"))
    with torch.no_grad():
        row["accuracy"] = (forward()[0].argmax(-1) == y).double().mean().item()
    return row


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (task, option), part in runs.groupby(["task", "option"], sort=False):
        acc = part.accuracy
        row = {"task": task, "option": option, "acc mean": acc.mean(), "acc min": acc.min(), "acc max": acc.max(),
               "seeds 1-3": " ".join(f"{a:.2f}" for a in part[part.seed <= 3].accuracy)}
        for col in ("L1 self init", "L1 self trained", "L1 neg init", "L1 eff init", "L1 eff trained",
                    "L2 self init"):
            row[col] = part[col].mean() if col in part else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def plot(runs: pd.DataFrame, path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(runs.task.unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = runs[runs.task == task]
        options = list(part.option.unique())
        for i, option in enumerate(options):
            acc = part[part.option == option].accuracy
            ax.scatter([i] * len(acc), acc, s=14, alpha=0.6)
            ax.hlines(acc.mean(), i - 0.3, i + 0.3, color="black")
        ax.axhline(part[part.option == "GCNConv"].accuracy.mean(), ls="--", color="grey", lw=1)
        ax.set_xticks(range(len(options)), options, rotation=35, ha="right", fontsize=8)
        ax.set(ylabel="accuracy, all nodes", title=f"{task}: {len(SEEDS)} seeds (bar: mean; dashed: GCNConv)")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"AffinityGCNConv as a drop-in for GCNConv - {device}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds, to check the script (writes *_quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny graphs: threads only add overhead (and the figures name the setting)
    seeds = list(SEEDS)[:2] if args.quick else list(SEEDS)
    rows = []
    for task in ("karate", "sbm"):
        for option in OPTIONS:
            start = time.perf_counter()
            for seed in seeds:
                data = karate() if task == "karate" else sbm(seed)
                rows.append(dict(task=task, option=option, seed=seed, **run(option, data, seed)))
            accs = [r["accuracy"] for r in rows[-len(seeds):]]
            print(f"{task:6s} {option:30s} mean {sum(accs) / len(accs):.3f} min {min(accs):.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    runs = pd.DataFrame(rows)
    stem = "dropin_cpu_quick" if args.quick else "dropin_cpu"
    RESULTS.mkdir(exist_ok=True)
    runs.to_csv(RESULTS / f"{stem}_runs.csv", index=False)
    plot(runs, RESULTS / f"{stem}.png", device_name("cpu"))
    print(write_table(
        RESULTS, stem, "AffinityGCNConv as a drop-in for GCNConv",
        f"Two-layer models, Adam (lr 0.01, weight decay 5e-4), {STEPS} steps, accuracy over all nodes, seeds "
        f"{seeds[0]}-{seeds[-1]}: KarateClub (one-hot features, 34 -> 16 -> 4, its 4 labelled nodes) and a "
        "stochastic block model drawn per seed (4 blocks of 50, p 0.1 within / 0.02 across, 16 Gaussian features, "
        "4 labelled nodes per block). The probes change Eq. 2 in one place (the node left out of its row's sum; "
        "negative scores weighing nothing). Affinity A before A + I, means over seeds: `self` the node's own share "
        "a_ii, `neg` the share of the neighbour weight on negative scores, `eff` the effective neighbours as a "
        "fraction of the degree (1 = uniform, as GCNConv). Per-seed rows: "
        f"`{stem}_runs.csv`; plot `{stem}.png`.",
        summarise(runs), __file__, floatfmt=".2f"))


if __name__ == "__main__":
    main()
