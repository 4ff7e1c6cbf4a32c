"""Batch-hard triplet loss and the summed STGCN loss against direct computations."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from stgcn_pyg.models import STGCNLoss, STGCNOutput, batch_hard_triplet_loss, pairwise_euclidean


def brute_force_triplet(x, labels, margin):
    """Loop over anchors: farthest positive, nearest negative (Hermans et al. 2017)."""
    losses = []
    for i in range(len(x)):
        pos = [torch.dist(x[i], x[j]) for j in range(len(x)) if j != i and labels[j] == labels[i]]
        neg = [torch.dist(x[i], x[j]) for j in range(len(x)) if labels[j] != labels[i]]
        if pos and neg:
            losses.append(torch.clamp(max(pos) - min(neg) + margin, min=0))
    return torch.stack(losses).mean()


def test_pairwise_euclidean_matches_cdist():
    x = torch.randn(7, 5, dtype=torch.float64)
    torch.testing.assert_close(pairwise_euclidean(x), torch.cdist(x, x), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("margin", [0.3, 5.0])
def test_batch_hard_triplet_matches_brute_force(margin):
    torch.manual_seed(0)
    x = torch.randn(8, 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])  # id 3 has no positive: not an anchor
    x.requires_grad_(True)
    loss = batch_hard_triplet_loss(x, labels, margin)
    torch.testing.assert_close(loss, brute_force_triplet(x.detach(), labels, margin).float())
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad[7].abs().sum() > 0  # id 3 is still a negative for others


def test_triplet_without_valid_anchor_is_zero_but_connected():
    x = torch.randn(3, 4, requires_grad=True)
    loss = batch_hard_triplet_loss(x, torch.tensor([0, 1, 2]), 0.3)  # no positives at all
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None and torch.isfinite(x.grad).all()


def test_triplet_hand_computed_on_a_line():
    # Points on a line: ids 0 at 0 and 1, id 1 at 3 and 3.5. Hardest pos/neg per anchor:
    # a=0: pos 1, neg 3 -> 1-3+0.3 <0 -> 0; a=1: pos 1, neg 2 -> 1-2+.3 -> 0
    # a=3: pos .5, neg 2 -> 0;             a=3.5: pos .5, neg 2.5 -> 0
    x = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    assert batch_hard_triplet_loss(x, labels, 0.3).item() == pytest.approx(0.0, abs=1e-5)
    # With margin 2.0: a=0: 1-3+2=0 ; a=1: 1-2+2=1 ; a=3: .5-2+2=.5 ; a=3.5: .5-2.5+2=0 -> mean 0.375
    assert batch_hard_triplet_loss(x, labels, 2.0).item() == pytest.approx(0.375, abs=1e-5)


def test_triplet_gradient_is_finite_for_identical_features():
    x = torch.zeros(4, 3, requires_grad=True)
    loss = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), 0.3)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert loss.item() == pytest.approx(0.3, abs=1e-4)


def test_stgcn_loss_sums_branches_with_weights_and_label_smoothing():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    feats = {b: torch.randn(6, 8) for b in ("global", "temporal")}
    logits = {b: torch.randn(6, 3) for b in ("global", "temporal")}
    out = STGCNOutput(features=feats, logits=logits, descriptor=torch.randn(6, 16))
    crit = STGCNLoss(margin=0.3, triplet_weight=0.5, ce_weight=2.0, label_smoothing=0.1)
    total, parts = crit(out, labels)
    expected = sum(0.5 * brute_force_triplet(feats[b].double(), labels, 0.3).float()
                   + 2.0 * F.cross_entropy(logits[b], labels, label_smoothing=0.1) for b in feats)
    torch.testing.assert_close(total, expected)
    assert set(parts) == {f"{k}_{b}" for k, b in itertools.product(("tri", "ce"), feats)}
    # Smoothed CE by hand: (1-eps) * NLL + eps * mean(-log p).
    logp = logits["global"].log_softmax(1)
    by_hand = (0.9 * -logp[torch.arange(6), labels] + 0.1 * -logp.mean(1)).mean()
    torch.testing.assert_close(parts["ce_global"], by_hand)
