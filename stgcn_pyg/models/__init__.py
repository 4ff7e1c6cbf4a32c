"""The STGCN model: backbone, graph branches, heads and losses."""

from .backbone import BACKBONE_CHANNELS, BACKBONES, MobileNetV2Backbone, ResNetBackbone, build_backbone
from .heads import BNNeckHead
from .losses import STGCNLoss, batch_hard_triplet_loss, pairwise_euclidean
from .stgcn import STGCN, GraphBranch, STGCNOutput

__all__ = [
    "STGCN",
    "STGCNOutput",
    "GraphBranch",
    "BNNeckHead",
    "ResNetBackbone",
    "MobileNetV2Backbone",
    "build_backbone",
    "BACKBONE_CHANNELS",
    "BACKBONES",
    "STGCNLoss",
    "batch_hard_triplet_loss",
    "pairwise_euclidean",
]
