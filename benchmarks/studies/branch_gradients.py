"""How hard each branch's losses pull on the shared backbone at the start of training.

For one training batch (seed 0's first batch of the identity sampler), the
backbone's gradient norm from each branch's own loss (batch-hard triplet +
cross-entropy), with the model as it starts training: the fine-tune tier of
the pretrained study (ImageNet MobileNetV2) and the from-scratch default run
(ResNet-18, random weights), each for the paper's model (Eq. 2's squared
affinity), its softmax variant and the per-node Linear control (`full`,
`full-softmax`, `full-fc` of benchmarks/studies/ablation.py). A branch whose
gradient dwarfs the global branch's decides where the backbone goes in the
first steps.

    python benchmarks/studies/branch_gradients.py        # writes benchmarks/studies/results/branch_gradients.{csv,md}
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.studies.study_variants import TIERS, VARIANTS  # noqa: E402
from benchmarks.common import parse_no_options, write_table  # noqa: E402

from stgcn_pyg.data import build_train_loader  # noqa: E402
from stgcn_pyg.models import STGCN, STGCNLoss, STGCNOutput  # noqa: E402
from stgcn_pyg.config import load_config  # noqa: E402
from stgcn_pyg.training.run import load_data, seed_everything  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {
    "ImageNet MobileNetV2 (fine-tune tier)": TIERS["finetune"]["overrides"],
    "ResNet-18 from scratch (default run)": [],
}
MODELS = ["full", "full-softmax", "full-fc"]


def branch_gradient_norms(overrides: list[str], seed: int = 0) -> list[dict]:
    cfg = load_config("synthetic", overrides + [f"train.seed={seed}"])
    ds = load_data(cfg)
    d, m = cfg.data, cfg.resolved_model()
    loader = build_train_loader(ds.train, seq_len=d.seq_len, num_ids=d.num_ids, num_instances=d.num_instances,
                                image_size=tuple(d.image_size), num_stripes=m.num_stripes,
                                temporal_topology=m.temporal_topology, spatial_topology=m.spatial_topology, seed=seed)
    m.num_classes = loader.num_classes
    seed_everything(seed)
    model = STGCN(m).train()
    batch = next(iter(loader))
    out = model(batch)
    criterion = STGCNLoss.from_config(cfg.loss)
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    rows = []
    for branch in model.branches:
        # The training loss restricted to this branch's own terms.
        loss, _ = criterion(STGCNOutput(features={branch: out.features[branch]},
                                        logits={branch: out.logits[branch]}), batch.label)
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads)).item()
        rows.append(dict(branch=branch, loss=loss.item(), backbone_grad_norm=norm))
    base = rows[0]["backbone_grad_norm"]
    for r in rows:
        r["vs_global"] = r["backbone_grad_norm"] / base
    return rows


def main() -> None:
    parse_no_options(__doc__)
    torch.set_flush_denormal(True)
    rows = []
    for name, overrides in SETTINGS.items():
        for variant in MODELS:
            start = time.perf_counter()
            for r in branch_gradient_norms(overrides + VARIANTS[variant]):
                rows.append(dict(setting=name, model=variant, **r))
            print(f"{name}, {variant}: {time.perf_counter() - start:.0f} s")
    print(write_table(
        RESULTS, "branch_gradients", "Each branch's pull on the backbone at the start of training",
        "Backbone gradient norm from each branch's own triplet + cross-entropy loss on seed 0's first batch, "
        "the model as it starts training.", pd.DataFrame(rows), __file__))


if __name__ == "__main__":
    main()
