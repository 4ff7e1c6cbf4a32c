"""Batch-hard triplet loss and cross-entropy, per branch or on f_all (docs/method.md, "Training")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pairwise_euclidean", "batch_hard_triplet_loss", "STGCNLoss"]


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """[B, D] -> [B, B] euclidean distances (clamped before the sqrt so the gradient stays finite)."""
    sq = x.pow(2).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Hermans et al. (2017): for each anchor its farthest positive and nearest negative.

    ``mean_i max(0, d(a_i, p_i^hard) - d(a_i, n_i^hard) + margin)`` over anchors
    that have at least one positive and one negative in the batch (a batch of
    ``num_ids`` >= 2 identities x ``num_instances`` >= 2 tracklets always does). Computed in float32 for stability under autocast.
    """
    dist = pairwise_euclidean(features.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    # Masked rather than indexed, so no data-dependent shape (and no GPU->CPU sync); a batch without any
    # valid anchor gives 0 with the graph still connected (DDP needs every parameter to get a gradient).
    hardest_pos = torch.where(pos_mask, dist, torch.zeros_like(dist)).amax(1)
    hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, float("inf"))).amin(1)
    per_anchor = F.relu(hardest_pos - torch.where(valid, hardest_neg, hardest_pos) + margin)
    per_anchor = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    return per_anchor.sum() / valid.sum().clamp_min(1)


class STGCNLoss(nn.Module):
    """Sum over branches of ``triplet_weight * triplet + ce_weight * CE``.

    Triplet terms use each branch's features before BN; cross-entropy terms
    use whatever logits the model produced: one per branch (``model.classifier="branch"``)
    or one on f_all (``model.classifier="all"``). Returns ``(total, parts)``, parts a
    dict of detached per-term values for logging.
    """

    def __init__(self, margin: float = 0.3, triplet_weight: float = 1.0, ce_weight: float = 1.0,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.margin = margin
        self.triplet_weight = triplet_weight
        self.ce_weight = ce_weight
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, cfg) -> "STGCNLoss":
        return cls(cfg.margin, cfg.triplet_weight, cfg.ce_weight, cfg.label_smoothing)

    def forward(self, output, labels: torch.Tensor):
        total = torch.zeros((), device=labels.device)
        parts: dict[str, torch.Tensor] = {}
        if self.triplet_weight > 0:
            for name, feat in output.features.items():
                loss = batch_hard_triplet_loss(feat, labels, self.margin)
                parts[f"tri_{name}"] = loss.detach()
                total = total + self.triplet_weight * loss
        if self.ce_weight > 0:
            for name, logits in output.logits.items():
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
                parts[f"ce_{name}"] = loss.detach()
                total = total + self.ce_weight * loss
        return total, parts
