"""The per-branch head: BN "neck" + linear classifier (the BNNeck of strong re-ID baselines).

The triplet loss sees the features before BN, the cross-entropy the BN-normalised
features through the classifier, and retrieval uses the BN-normalised features
(docs/method.md, "Testing").
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BNNeckHead"]


class BNNeckHead(nn.Module):
    """``features [B, D] -> (bn_features [B, D], logits [B, C] or None)``.

    The BN shift is frozen at zero (a learnt shift moves every descriptor
    alike and only blurs the triplet/CE split); the classifier has no bias.
    With ``num_classes == 0`` there is no classifier (the descriptor-only
    heads used with ``model.classifier = "all"``).
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, features: torch.Tensor, with_logits: bool = True):
        bn = self.bn(features)
        logits = self.classifier(bn) if (with_logits and self.classifier is not None) else None
        return bn, logits
