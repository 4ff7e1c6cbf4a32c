"""k-reciprocal re-ranking against a direct, dense, per-item implementation of the published algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stgcn_pyg.metrics import EvaluationError, evaluate_rank, re_ranking


def direct_re_ranking(qf, gf, k1, k2, lam):
    """Straightforward dense version (loops over items, full argsort), as in Zhong et al. 2017."""
    feat = np.concatenate([qf, gf]).astype(np.float64)
    Q, N = len(qf), len(feat)
    dist = ((feat[:, None, :] - feat[None, :, :]) ** 2).sum(-1)
    dist = dist / dist.max(axis=1, keepdims=True)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        fwd = rank[i, : k + 1]
        return np.array([j for j in fwd if i in rank[j, : k + 1]], dtype=int)

    V = np.zeros((N, N))
    for i in range(N):
        R = reciprocal(i, k1)
        expanded = list(R)
        for j in R:
            C = reciprocal(j, int(np.around(k1 / 2)))
            if len(np.intersect1d(C, R)) > 2 / 3 * len(C):
                expanded.extend(C)
        idx = np.unique(expanded)
        w = np.exp(-dist[i, idx])
        V[i, idx] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(0) for i in range(N)])
    jac = np.zeros((Q, N))
    for i in range(Q):
        m = np.minimum(V[i][None, :], V).sum(1)
        jac[i] = 1 - m / (2 - m)
    return (jac * (1 - lam) + dist[:Q] * lam)[:, Q:]


def clustered(seed, Q=12, G=60, D=6, ids=8):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(ids, D)) * 2
    qp, gp = rng.integers(0, ids, Q), rng.integers(0, ids, G)
    qf = centers[qp] + rng.normal(size=(Q, D))
    gf = centers[gp] + rng.normal(size=(G, D))
    return qf.astype(np.float32), gf.astype(np.float32), qp, gp


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (5, 3, 0.5), (7, 1, 0.0)])
def test_matches_direct_implementation(k1, k2, lam):
    qf, gf, _, _ = clustered(k1)
    ref = direct_re_ranking(qf, gf, k1, k2, lam)
    out = re_ranking(qf, gf, k1=k1, k2=k2, lambda_value=lam)
    assert out.shape == (12, 60) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-5)


def test_small_blocks_give_the_same_result():
    # max_elements forces one-row chunks and tiny Jaccard batches
    qf, gf, _, _ = clustered(1)
    a = re_ranking(qf, gf)
    b = re_ranking(torch.from_numpy(qf), torch.from_numpy(gf), max_elements=50)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_reranking_helps_on_clustered_data():
    qf, gf, qp, gp = clustered(2, Q=20, G=120, ids=10)
    qc, gc = np.zeros(20, int), np.ones(120, int)
    from stgcn_pyg.metrics import compute_distance

    _, base = evaluate_rank(compute_distance(qf, gf), qp, gp, qc, gc, max_rank=10)
    _, rr = evaluate_rank(re_ranking(qf, gf), qp, gp, qc, gc, max_rank=10)
    assert rr > base


def test_reranking_errors():
    with pytest.raises(EvaluationError, match="descriptor sizes differ"):
        re_ranking(np.zeros((2, 3)), np.zeros((4, 2)))
    with pytest.raises(EvaluationError, match="lambda_value"):
        re_ranking(np.zeros((2, 3)), np.zeros((4, 3)), lambda_value=2)
