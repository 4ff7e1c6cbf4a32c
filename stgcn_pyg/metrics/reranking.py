"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) in torch, in bounded memory.

The reference implementation holds several dense (Q+G) x (Q+G) matrices
(distances, a full argsort, the encoding V): 1.5 GB at MARS size and 100x
that for a ten times larger gallery. Here nothing of that size is ever
built:

- only the ``k1 + 1`` nearest neighbours of every item are kept (``topk``
  over row chunks of the distance matrix);
- the k-reciprocal encoding ``V`` is sparse (each row has at most
  ``(k1+1) * (round(k1/2)+2)`` non-zeros) and so is its query expansion
  (a sparse-sparse product);
- the Jaccard distance ``sum_k min(V_ik, V_jk)`` is accumulated for the
  queries only, over the sparse column structure of ``V`` (the "inverted
  index" of the reference), in batches of bounded size.

The output is the [Q, G] re-ranked distance, which is as large as the plain
distance matrix it replaces.
"""

from __future__ import annotations

import warnings

import torch

from .distance import _features
from .rank import EvaluationError

__all__ = ["re_ranking"]

_DEFAULT_MAX_ELEMENTS = 1 << 23


def _dist_rows(a: torch.Tensor, feat: torch.Tensor, feat_sq: torch.Tensor, metric: str) -> torch.Tensor:
    """Distances of the rows ``a`` [c, D] to all ``feat`` [N, D]."""
    dot = a @ feat.t()
    if metric == "cosine":
        return 1 - dot
    return (a.pow(2).sum(1, keepdim=True) + feat_sq.unsqueeze(0) - 2 * dot).clamp_min_(0)


def _pair_dist(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return 1 - (a * b).sum(-1)
    return (a - b).pow(2).sum(-1)


def _reciprocal_mask(fwd: torch.Tensor, chunk: int) -> torch.Tensor:
    """mask[i, a] = item i is among the neighbours of its neighbour fwd[i, a]."""
    n, m = fwd.shape
    out = torch.empty(n, m, dtype=torch.bool, device=fwd.device)
    for s in range(0, n, chunk):
        rows = torch.arange(s, min(s + chunk, n), device=fwd.device)
        back = fwd[fwd[rows]]  # [c, m, m]
        out[rows] = (back == rows.view(-1, 1, 1)).any(-1)
    return out


@torch.no_grad()
def re_ranking(
    qf,
    gf,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    metric: str = "euclidean",
    max_elements: int = _DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:
    """Re-ranked [Q, G] distances from query ``qf`` [Q, D] and gallery ``gf`` [G, D] descriptors.

    Follows the published algorithm: original distance = squared euclidean
    (or cosine with ``metric="cosine"``) over all Q+G items, each row divided
    by its maximum; k-reciprocal neighbour sets R(i, k1) expanded with the
    R(j, round(k1/2)) of their members that share more than 2/3 of their
    items; Gaussian-weighted encoding V; query expansion over the k2 nearest
    neighbours; Jaccard distance; final = (1 - lambda) * Jaccard + lambda *
    original.

    ``max_elements`` bounds the size of every intermediate block (rows x
    items); the total memory is O((Q+G) * k1^2 * k2) for the sparse
    encoding plus the [Q, G] output. Numpy arrays or tensors; runs on the
    descriptors' device; returns a float32 tensor there.
    """
    if metric not in ("euclidean", "cosine"):
        raise EvaluationError(f"unknown metric {metric!r}; choose euclidean or cosine")
    qf, gf = _features(qf, "qf"), _features(gf, "gf")
    if qf.size(1) != gf.size(1):
        raise EvaluationError(f"descriptor sizes differ: qf has dimension {qf.size(1)}, gf has {gf.size(1)}")
    if k1 < 1 or k2 < 1:
        raise EvaluationError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise EvaluationError(f"lambda_value must be in [0, 1], got {lambda_value}")
    device = qf.device
    feat = torch.cat([qf.float(), gf.to(device).float()])
    if metric == "cosine":
        feat = torch.nn.functional.normalize(feat, dim=1)
    Q, N = qf.size(0), feat.size(0)
    G = N - Q
    k1 = int(min(k1, N - 1))
    kh = int(round(k1 / 2))  # banker's rounding, as numpy.around in the reference
    m = max(k1 + 1, k2)
    m = min(m, N)
    feat_sq = feat.pow(2).sum(1)
    row_chunk = max(1, max_elements // N)

    # Pass 1: each item's nearest neighbours, the row maxima that normalise
    # the original distance, and the normalised query-gallery block.
    fwd = torch.empty(N, m, dtype=torch.long, device=device)
    row_max = torch.empty(N, device=device)
    orig_qg = torch.empty(Q, G, device=device)
    for s in range(0, N, row_chunk):
        d = _dist_rows(feat[s : s + row_chunk], feat, feat_sq, metric)
        row_max[s : s + d.size(0)] = d.max(1).values.clamp_min(1e-12)
        fwd[s : s + d.size(0)] = d.topk(m, dim=1, largest=False, sorted=True).indices
        if s < Q:
            nq = min(d.size(0), Q - s)
            orig_qg[s : s + nq] = d[:nq, Q:] / row_max[s : s + nq].unsqueeze(1)
        del d

    # Pass 2: k-reciprocal sets and their expansion, as a padded index list per item.
    fk = fwd[:, : k1 + 1]
    fh = fwd[:, : kh + 1]
    rmask = _reciprocal_mask(fk, max(1, max_elements // (k1 + 1) ** 2))
    hmask = _reciprocal_mask(fh, max(1, max_elements // (kh + 1) ** 2))
    L = (k1 + 1) * (kh + 2)
    chunk = max(1, max_elements // ((k1 + 1) ** 2 * (kh + 1)))
    rows_all, cols_all = [], []
    for s in range(0, N, chunk):
        rows = torch.arange(s, min(s + chunk, N), device=device)
        R, Rm = fk[rows], rmask[rows]  # [c, k1+1]
        C, Cm = fh[R], hmask[R]  # candidates' half-size reciprocal sets [c, k1+1, kh+1]
        in_R = ((C.unsqueeze(-1) == R.view(-1, 1, 1, k1 + 1)) & Rm.view(-1, 1, 1, k1 + 1)).any(-1)
        inter = (in_R & Cm).sum(-1)
        # |C ∩ R| > 2/3 |C|, in integers
        accept = Rm & (3 * inter > 2 * Cm.sum(-1))
        keep = torch.cat([Rm, (Cm & accept.unsqueeze(-1)).flatten(1)], 1)
        idx = torch.cat([R, C.flatten(1)], 1).masked_fill(~keep, N)  # N = padding
        idx = idx.sort(1).values
        uniq = idx < N
        uniq[:, 1:] &= idx[:, 1:] != idx[:, :-1]
        r, a = uniq.nonzero(as_tuple=True)
        rows_all.append(rows[r])
        cols_all.append(idx[r, a])
    del rmask, hmask
    v_rows, v_cols = torch.cat(rows_all), torch.cat(cols_all)
    assert v_cols.numel() <= N * L

    # Gaussian kernel of the original distance on those pairs, normalised per row.
    w = torch.empty(v_rows.numel(), device=device)
    pair_chunk = max(1, max_elements // feat.size(1))
    for s in range(0, v_rows.numel(), pair_chunk):
        i, j = v_rows[s : s + pair_chunk], v_cols[s : s + pair_chunk]
        w[s : s + pair_chunk] = torch.exp(-_pair_dist(feat[i], feat[j], metric) / row_max[i])
    w = w / torch.zeros(N, device=device).index_add_(0, v_rows, w)[v_rows]
    V = torch.sparse_coo_tensor(torch.stack([v_rows, v_cols]), w, (N, N), check_invariants=False).coalesce()

    # Query expansion: each row becomes the mean of its k2 nearest neighbours' rows.
    if k2 != 1:
        a_rows = torch.arange(N, device=device).repeat_interleave(k2)
        A = torch.sparse_coo_tensor(
            torch.stack([a_rows, fwd[:, :k2].reshape(-1)]),
            torch.full((N * k2,), 1.0 / k2, device=device),
            (N, N),
            check_invariants=False,
        ).coalesce()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse support is in beta"
            V = torch.sparse.mm(A, V).coalesce()
    del fwd

    # Jaccard over the queries: min(V_ik, V_jk) summed over shared columns k,
    # visiting for each non-zero V_ik the items j that are non-zero in column k.
    Vt = V.t().coalesce()  # rows = columns k of V; entries (k, j, v_jk)
    col_k, col_j = Vt.indices()
    col_v = Vt.values()
    col_count = torch.bincount(col_k, minlength=N)
    col_start = torch.cumsum(col_count, 0) - col_count
    vi, vk = V.indices()
    vv = V.values()
    qsel = vi < Q
    qi, qk, qv = vi[qsel], vk[qsel], vv[qsel]
    del V, Vt
    sim = torch.zeros(Q * G, device=device)
    lens = col_count[qk]
    ends = torch.cumsum(lens, 0)
    pair_budget = max(1, max_elements // 4)  # ~6 int64/float tensors of this length are live
    e0 = 0
    n_entries = qi.numel()
    while e0 < n_entries:
        base = int(ends[e0 - 1]) if e0 > 0 else 0
        e1 = int(torch.searchsorted(ends, torch.tensor(base + pair_budget, device=device), right=True))
        e1 = max(e1, e0 + 1)
        e1 = min(e1, n_entries)
        ln = lens[e0:e1]
        rep = torch.repeat_interleave(torch.arange(e1 - e0, device=device), ln)
        offs = torch.arange(rep.numel(), device=device) - (torch.cumsum(ln, 0) - ln)[rep]
        pos = col_start[qk[e0:e1]][rep] + offs
        j = col_j[pos]
        gal = j >= Q
        contrib = torch.minimum(qv[e0:e1][rep], col_v[pos])
        flat = qi[e0:e1][rep] * G + (j - Q)
        sim.index_add_(0, flat[gal], contrib[gal])
        e0 = e1
    # final = (1 - lambda) * (1 - m / (2 - m)) + lambda * original, in place
    sim = sim.view(Q, G)
    jac = sim.neg_().add_(2).reciprocal_().mul_(-2).add_(2)  # 1 - m/(2-m) = 2 - 2/(2-m)
    return jac.mul_(1 - lambda_value).add_(orig_qg, alpha=lambda_value)
