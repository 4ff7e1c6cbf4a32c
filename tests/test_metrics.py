"""evaluate_rank and compute_distance: hand-computed cases, a plain per-query reference loop, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stgcn_pyg.errors import STGCNError
from stgcn_pyg.metrics import EvaluationError, compute_distance, evaluate_rank, rank_gallery, rank_order


# --------------------------------------------------------------------------- references
def loop_standard(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Plain per-query loop in the style of torchreid's eval_market1501 (python path)."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        hits = (g_pids[order] == q_pids[i])[keep].astype(np.float64)
        if not hits.any():
            continue
        cmc = np.minimum(hits.cumsum(), 1)
        cmcs.append(cmc[:max_rank])
        prec = hits.cumsum() / np.arange(1, len(hits) + 1)
        aps.append((prec * hits).sum() / hits.sum())
        last = np.nonzero(hits)[0].max()
        inps.append(hits.sum() / (last + 1))
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps))


def matlab_compute_ap(good_index, junk_index, index):
    """Line-by-line transliteration of MARS's compute_AP.m (0-based indices)."""
    good, junk = set(good_index), set(junk_index)
    cmc = np.zeros(len(index))
    ngood = len(good)
    old_recall, old_precision, ap = 0.0, 1.0, 0.0
    intersect_size, j, good_now, njunk = 0, 0, 0, 0
    for n, item in enumerate(index):
        flag = False
        if item in good:
            cmc[n - njunk:] = 1
            flag = True
            good_now += 1
        if item in junk:
            njunk += 1
            continue
        if flag:
            intersect_size += 1
        recall = intersect_size / ngood
        precision = intersect_size / (j + 1)
        ap += (recall - old_recall) * ((old_precision + precision) / 2)
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == ngood:
            break
    return ap, cmc


def loop_official(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """MARS's evaluation.m loop: good/junk index sets per query, compute_AP per query."""
    cmcs, aps, inps = [], [], []
    for k in range(distmat.shape[0]):
        same = g_pids == q_pids[k]
        good = np.nonzero(same & (g_camids != q_camids[k]) & (g_pids != -1))[0]
        junk = np.nonzero((g_pids == -1) | (same & (g_camids == q_camids[k])))[0]
        if len(good) == 0:
            continue
        index = np.argsort(distmat[k], kind="stable")
        ap, cmc = matlab_compute_ap(good, junk, index)
        aps.append(ap)
        cmcs.append(cmc[:max_rank])
        kept = [i for i in index if i not in set(junk)]
        last = max(kept.index(g) for g in good)
        inps.append(len(good) / (last + 1))
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps))


def random_problem(seed, Q=40, G=300, ids=25, cams=4, junk=True):
    rng = np.random.default_rng(seed)
    distmat = rng.random((Q, G)).astype(np.float32)
    q_pids = rng.integers(1, ids, Q)
    g_pids = rng.integers(1 if not junk else -1, ids, G)
    q_camids = rng.integers(0, cams, Q)
    g_camids = rng.integers(0, cams, G)
    return distmat, q_pids, g_pids, q_camids, g_camids


# --------------------------------------------------------------------------- hand-computed
# One query (pid 1, camera 0). Gallery, in distance order:
#   0.05 pid -1 cam 1   (junk in "official", a negative in "standard")
#   0.10 pid 1  cam 0   (same pid and camera: ignored by both)
#   0.20 pid 2  cam 1   negative
#   0.25 pid 0  cam 2   distractor: a negative in both
#   0.30 pid 1  cam 1   match
#   0.40 pid 3  cam 1   negative
#   0.50 pid 1  cam 2   match
HAND = dict(
    distmat=np.array([[0.05, 0.10, 0.20, 0.25, 0.30, 0.40, 0.50]]),
    q_pids=np.array([1]),
    g_pids=np.array([-1, 1, 2, 0, 1, 3, 1]),
    q_camids=np.array([0]),
    g_camids=np.array([1, 0, 1, 2, 1, 1, 2]),
)


def test_hand_computed_standard():
    # kept ranking: -1, 2, 0, [1], 3, [1] -> hits at positions 4 and 6 (1-based)
    cmc, mAP, mINP = evaluate_rank(**HAND, max_rank=6, return_minp=True)
    np.testing.assert_allclose(cmc, [0, 0, 0, 1, 1, 1])
    assert mAP == pytest.approx((1 / 4 + 2 / 6) / 2)
    assert mINP == pytest.approx(2 / 6)


def test_hand_computed_official():
    # kept ranking: 2, 0, [1], 3, [1] -> hits at positions 3 and 5 (1-based).
    # trapezoid AP: each hit adds recall step 1/2 times the mean of the
    # precision just before it and at it: (0/2 + 1/3)/2 and (1/4 + 2/5)/2
    cmc, mAP, mINP = evaluate_rank(**HAND, max_rank=5, protocol="official", return_minp=True)
    np.testing.assert_allclose(cmc, [0, 0, 1, 1, 1])
    expected = 0.5 * (0 + 1 / 3) / 2 + 0.5 * (1 / 4 + 2 / 5) / 2
    assert mAP == pytest.approx(expected)
    ap, _ = matlab_compute_ap([4, 6], [0, 1], np.arange(7))
    assert mAP == pytest.approx(ap)
    assert mINP == pytest.approx(2 / 5)


def test_official_first_position_counts_full_precision():
    # a single match ranked first: trapezoid between precision 1 (start) and 1
    d = np.array([[0.1, 0.2, 0.3]])
    cmc, mAP = evaluate_rank(d, [5], [5, 6, 7], [0], [1, 1, 1], max_rank=3, protocol="official")
    assert mAP == pytest.approx(1.0)
    np.testing.assert_allclose(cmc, [1, 1, 1])
    # second: (1/2) * ... -> recall step 1 times (0/1 + 1/2)/2
    d = np.array([[0.2, 0.1, 0.3]])
    _, mAP = evaluate_rank(d, [5], [5, 6, 7], [0], [1, 1, 1], max_rank=3, protocol="official")
    assert mAP == pytest.approx(0.25)
    _, mAP = evaluate_rank(d, [5], [5, 6, 7], [0], [1, 1, 1], max_rank=3, protocol="standard")
    assert mAP == pytest.approx(0.5)


def test_same_camera_rule():
    # the closest item has the query's pid but also its camera: it is ignored,
    # not counted as a hit and not as a negative
    d = np.array([[0.0, 0.5, 0.6]])
    args = ([7], [7, 8, 7], [2], [2, 3, 4])
    cmc, mAP = evaluate_rank(d, *args, max_rank=3)
    np.testing.assert_allclose(cmc, [0, 1, 1])
    assert mAP == pytest.approx(0.5)
    # same pid on another camera at the same place is a hit at rank 1 (and 3)
    cmc, mAP = evaluate_rank(d, [7], [7, 8, 7], [2], [1, 3, 4], max_rank=3)
    np.testing.assert_allclose(cmc, [1, 1, 1])
    assert mAP == pytest.approx((1 + 2 / 3) / 2)
    # same camera but another pid is an ordinary negative
    cmc, _ = evaluate_rank(d, [7], [9, 8, 7], [2], [2, 3, 4], max_rank=3)
    np.testing.assert_allclose(cmc, [0, 0, 1])


def test_queries_without_match_are_skipped():
    d = np.array([[0.3, 0.1, 0.2], [0.1, 0.2, 0.3]])
    # query 1 (pid 9) has no gallery item with its pid: skipped, not scored 0
    cmc, mAP, mINP, per_q = evaluate_rank(
        d, [5, 9], [5, 6, 7], [0, 0], [1, 1, 1], max_rank=3, return_minp=True, return_per_query=True
    )
    np.testing.assert_allclose(cmc, [0, 0, 1])
    assert mAP == pytest.approx(1 / 3)
    assert per_q["valid"].tolist() == [True, False]
    assert np.isnan(per_q["ap"][1].item())
    # only same-camera matches: also skipped
    cmc, mAP = evaluate_rank(d, [5, 6], [5, 6, 7], [0, 1], [1, 1, 1], max_rank=3)
    np.testing.assert_allclose(cmc, [0, 0, 1])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("protocol", ["standard", "official"])
def test_rank_gallery_is_the_ranking_evaluate_rank_scores(protocol, ties):
    """One query's ranking without its junk: its matches sit where evaluate_rank finds its hits."""
    g = torch.Generator().manual_seed(3)
    d = torch.rand(12, 40, generator=g)
    if ties:  # four distance values: most matches tie with negatives
        d = (d * 4).floor() / 4
    q_pids, g_pids = torch.randint(-1, 5, (12,), generator=g), torch.randint(-1, 5, (40,), generator=g)
    q_cams, g_cams = torch.randint(0, 3, (12,), generator=g), torch.randint(0, 3, (40,), generator=g)
    *_, per_q = evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=10, protocol=protocol,
                              return_per_query=True, chunk_size=5)
    assert per_q["valid"].sum() >= 6
    for q in range(12):
        order = rank_gallery(d[q], q_pids[q], q_cams[q], g_pids, g_cams, protocol)
        same = (g_pids[order] == q_pids[q]) & (g_cams[order] != q_cams[q])
        assert not ((g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q])).any()
        if protocol == "official":
            assert not (g_pids[order] == -1).any()
        if per_q["valid"][q]:
            hits = same.nonzero().squeeze(1).double() + 1  # 1-based positions of the matches
            assert int(hits[0]) - 1 == int(per_q["first_hit"][q])
            assert float(per_q["inp"][q]) == pytest.approx(len(hits) / float(hits[-1]))
            if protocol == "standard":
                ap = float((torch.arange(1, len(hits) + 1) / hits).mean())
                assert float(per_q["ap"][q]) == pytest.approx(ap)


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_tied_distances_score_as_the_stable_sort_reference_loops(chunk_size):
    """Heavy ties (eight distance values): the torchreid and MATLAB loops over a stable argsort, exactly."""
    d, qp, gp, qc, gc = random_problem(4, Q=30, G=120)
    d = np.floor(d * 8) / 8
    for protocol, loop in (("standard", loop_standard), ("official", loop_official)):
        cmc, mAP, mINP = evaluate_rank(d, qp, gp, qc, gc, max_rank=20, protocol=protocol, return_minp=True,
                                       chunk_size=chunk_size)
        rcmc, rmAP, rmINP = loop(d, qp, gp, qc, gc, max_rank=20)
        np.testing.assert_allclose(cmc, rcmc, atol=1e-6)
        assert mAP == pytest.approx(rmAP, abs=1e-12) and mINP == pytest.approx(rmINP, abs=1e-12)


def test_no_valid_query_is_a_clear_error():
    with pytest.raises(EvaluationError, match="no query has a matching gallery item"):
        evaluate_rank(np.zeros((2, 3)), [1, 2], [3, 4, 5], [0, 0], [1, 1, 1], max_rank=3)


def test_infinite_distances():
    # matches at +inf are ranked last, after every finite negative; query 1's
    # pid list is shorter than query 0's (padded within the block), which
    # must not shift its match at +inf
    d = np.array([[0.1, np.inf, 0.2, 0.3], [0.3, 0.2, np.inf, 0.1]])
    cmc, mAP = evaluate_rank(d, [5, 6], [5, 5, 6, 7], [0, 0], [1, 1, 1, 1], max_rank=4)
    ap0 = (1 + 2 / 4) / 2  # hits at positions 1 and 4
    ap1 = 1 / 4  # its only match, at +inf, is last
    assert mAP == pytest.approx((ap0 + ap1) / 2)
    np.testing.assert_allclose(cmc, [0.5, 0.5, 0.5, 1])


def test_rank_order_keeps_gallery_order_within_ties():
    d = torch.tensor([[0.2, 0.1, 0.2, 0.1, 0.0], [0.5, 0.5, 0.5, 0.5, 0.5]])
    assert rank_order(d).tolist() == [[4, 1, 3, 0, 2], [0, 1, 2, 3, 4]]
    assert rank_order(d[0]).tolist() == [4, 1, 3, 0, 2]
    nan = float("nan")
    assert rank_order(torch.tensor([nan, 1.0, nan, 1.0, 0.0])).tolist() == [4, 1, 3, 0, 2]  # NaN last, in order too
    # on the CPU it is numpy's unstable sort, then the ties put back in gallery order: a stable sort exactly
    g = torch.Generator().manual_seed(0)
    tied = (torch.rand(6, 5000, generator=g) * 7).floor()
    for x in (tied, tied.double(), tied.half(), tied.long(), tied[:, ::3], torch.rand(3, 777, generator=g)):
        assert torch.equal(rank_order(x), torch.argsort(x, dim=-1, stable=True))


# One query (pid 1, camera 0). Gallery by index: a good tied with a negative on each side of it, a junk item
# (same pid and camera), and a good tied with the negative after it.
TIED = dict(
    distmat=np.array([[0.2, 0.2, 0.2, 0.1, 0.3, 0.3]]),
    q_pids=np.array([1]),
    g_pids=np.array([2, 1, 3, 1, 1, 4]),
    q_camids=np.array([0]),
    g_camids=np.array([1, 1, 1, 0, 2, 1]),
)


def test_ties_keep_gallery_order():
    # ranked 3 (junk), 0, [1], 2, [4], 5 -> hits at 2 and 4 of the kept list. Negatives first within a
    # tie would give hits at 3 and 5 (AP 0.367), goods first at 1 and 4 (AP 0.75).
    cmc, mAP, mINP = evaluate_rank(**TIED, max_rank=5, return_minp=True)
    np.testing.assert_allclose(cmc, [0, 1, 1, 1, 1])
    assert mAP == pytest.approx((1 / 2 + 2 / 4) / 2) and mINP == pytest.approx(2 / 4)
    t = {k: torch.as_tensor(v) for k, v in TIED.items()}
    assert rank_gallery(t["distmat"][0], 1, 0, t["g_pids"], t["g_camids"]).tolist() == [0, 1, 2, 4, 5]
    # the same gallery listed backwards: the 0.3 negative now comes before its tied good (hits at 2 and 5)
    rev = dict(TIED, distmat=TIED["distmat"][:, ::-1], g_pids=TIED["g_pids"][::-1], g_camids=TIED["g_camids"][::-1])
    cmc, mAP = evaluate_rank(**rev, max_rank=5)
    np.testing.assert_allclose(cmc, [0, 1, 1, 1, 1])
    assert mAP == pytest.approx((1 / 2 + 2 / 5) / 2)


def test_ties_keep_gallery_order_official():
    # a junk item (pid -1) and a distractor (pid 0) tied with a good: ranked [-1], (1), 0, (1)
    d = np.array([[0.2, 0.2, 0.2, 0.4]])
    args = ([1], [-1, 1, 0, 1], [0], [1, 1, 2, 2])
    cmc, mAP = evaluate_rank(d, *args, max_rank=3, protocol="official")
    np.testing.assert_allclose(cmc, [1, 1, 1])  # kept: (1), 0, (1)
    assert mAP == pytest.approx(0.5 * (1 + 1) / 2 + 0.5 * (1 / 2 + 2 / 3) / 2)
    assert mAP == pytest.approx(matlab_compute_ap([1, 3], [0], np.arange(4))[0])
    cmc, mAP = evaluate_rank(d, *args, max_rank=3, protocol="standard")  # the pid -1 item is a negative
    np.testing.assert_allclose(cmc, [0, 1, 1])
    assert mAP == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_a_constant_model_scores_by_gallery_order():
    # all distances equal: the ranking is the gallery order, so the match at index 3 is 4th
    G = 10
    d = np.zeros((1, G))
    cmc, mAP = evaluate_rank(d, [3], np.arange(G), [0], np.ones(G, int), max_rank=G)
    np.testing.assert_allclose(cmc, [0, 0, 0] + [1] * 7)
    assert mAP == pytest.approx(1 / 4)
    _, mAP = evaluate_rank(d, [3], np.arange(G)[::-1], [0], np.ones(G, int), max_rank=G)  # now at index 6
    assert mAP == pytest.approx(1 / 7)


def test_tied_queries_of_a_wide_gallery_are_ranked_a_few_rows_at_a_time():
    # 300,000 items: the tied rows are ranked 3 at a time (bounded memory), in two passes here
    G = 300_000
    q_pids = [5, 10, 100_000, 299_999]
    cmc, mAP = evaluate_rank(np.zeros((4, G), np.float32), q_pids, np.arange(G), [0] * 4, np.ones(G, int))
    assert mAP == pytest.approx(np.mean([1 / 6, 1 / 11, 1 / 100_001, 1 / 300_000]))
    np.testing.assert_allclose(cmc, [0] * 5 + [0.25] * 5 + [0.5] * 40)


# --------------------------------------------------------------------------- reference loops
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_standard_matches_per_query_loop(seed):
    prob = random_problem(seed)
    cmc, mAP, mINP = evaluate_rank(*prob, max_rank=50, return_minp=True)
    rcmc, rmAP, rmINP = loop_standard(*prob, max_rank=50)
    np.testing.assert_allclose(cmc, rcmc, atol=1e-6)
    assert mAP == pytest.approx(rmAP, abs=1e-12)
    assert mINP == pytest.approx(rmINP, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_matches_matlab_loop(seed):
    prob = random_problem(seed)
    cmc, mAP, mINP = evaluate_rank(*prob, max_rank=50, protocol="official", return_minp=True)
    rcmc, rmAP, rmINP = loop_official(*prob, max_rank=50)
    np.testing.assert_allclose(cmc, rcmc, atol=1e-6)
    assert mAP == pytest.approx(rmAP, abs=1e-12)
    assert mINP == pytest.approx(rmINP, abs=1e-12)


def test_well_separated_features_score_perfectly():
    # gallery items of a pid cluster around the query of that pid
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(10, 16)) * 10
    qf = centers + rng.normal(size=(10, 16)) * 0.01
    g_pids = np.repeat(np.arange(10), 3)
    gf = centers[g_pids] + rng.normal(size=(30, 16)) * 0.01
    d = compute_distance(qf, gf)
    cmc, mAP, mINP = evaluate_rank(d, np.arange(10), g_pids, np.zeros(10), np.ones(30), max_rank=5,
                                   return_minp=True)
    assert cmc[0] == 1 and mAP == pytest.approx(1) and mINP == pytest.approx(1)


@pytest.mark.parametrize("protocol", ["standard", "official"])
def test_chunking_gives_identical_results(protocol):
    prob = random_problem(5, Q=37)
    ref = evaluate_rank(*prob, protocol=protocol, return_minp=True)
    for chunk in (1, 5, 36, 100):
        out = evaluate_rank(*prob, protocol=protocol, return_minp=True, chunk_size=chunk)
        np.testing.assert_array_equal(out[0], ref[0])
        assert out[1] == ref[1] and out[2] == ref[2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threaded_row_sort_into_a_reused_buffer(dtype):
    from stgcn_pyg.metrics.rank import _sort_rows

    g = torch.Generator().manual_seed(0)
    buffer = torch.empty(0, dtype=dtype).numpy().dtype
    buffer = np.full((80, 8192), -1, dtype=buffer)  # more rows than the block, as for the last chunk
    for rows in (80, 67):  # 67 x 8192 > 2 * 2**18 elements: split over two threads
        d = torch.rand(rows, 8192, generator=g, dtype=dtype) * 10 - 5
        out = _sort_rows(d, n_threads=2, buffer=buffer)
        assert out.shape == d.shape and np.shares_memory(out.numpy(), buffer)
        torch.testing.assert_close(out, torch.sort(d, dim=1).values, rtol=0, atol=0)
    strided = torch.rand(8192, 70, generator=g, dtype=dtype).t()  # a transposed view sorts the same
    torch.testing.assert_close(_sort_rows(strided, n_threads=2, buffer=buffer), strided.sort(1).values,
                               rtol=0, atol=0)


def test_numpy_and_tensor_inputs_agree():
    d, qp, gp, qc, gc = random_problem(7)
    a = evaluate_rank(d, qp, gp, qc, gc, return_minp=True)
    b = evaluate_rank(torch.from_numpy(d), torch.from_numpy(qp), torch.from_numpy(gp), torch.from_numpy(qc),
                      torch.from_numpy(gc), return_minp=True)
    c = evaluate_rank(d.astype(np.float64), qp.tolist(), gp.tolist(), qc.astype(np.int32), gc, return_minp=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0], c[0])
    assert a[1:] == b[1:] == c[1:]
    assert isinstance(a[0], np.ndarray) and a[0].dtype == np.float32 and len(a[0]) == 50
    assert isinstance(a[1], float)


def test_strided_and_read_only_inputs_are_not_copied_and_agree():
    d, qp, gp, qc, gc = random_problem(11)
    ref = evaluate_rank(d, qp, gp, qc, gc, return_minp=True)
    fortran = np.asfortranarray(d)
    ro = d.copy()
    ro.setflags(write=False)
    for arr in (fortran, ro):
        out = evaluate_rank(arr, qp, gp, qc, gc, return_minp=True)
        np.testing.assert_array_equal(out[0], ref[0])
        assert out[1:] == ref[1:]
    # a column-strided view (every other column of a wider matrix) is read in place
    wide = np.zeros((d.shape[0], 2 * d.shape[1]), np.float32)
    wide[:, ::2] = d
    out = evaluate_rank(wide[:, ::2], qp, gp, qc, gc, return_minp=True)
    np.testing.assert_array_equal(out[0], ref[0])
    assert out[1:] == ref[1:]


def test_torchreid_compatible_return_and_max_rank_cut():
    d, qp, gp, qc, gc = random_problem(8, Q=5, G=20)
    out = evaluate_rank(d, qp, gp, qc, gc, max_rank=20)
    assert len(out) == 2
    with pytest.warns(UserWarning, match="max_rank cut"):
        cmc, _ = evaluate_rank(d, qp, gp, qc, gc, max_rank=50)
    assert len(cmc) == 20 and cmc[-1] == pytest.approx(1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    prob = random_problem(9)
    a = evaluate_rank(*prob, return_minp=True)
    b = evaluate_rank(*prob, return_minp=True, device="cuda")
    np.testing.assert_allclose(a[0], b[0])
    assert a[1] == pytest.approx(b[1]) and a[2] == pytest.approx(b[2])


# --------------------------------------------------------------------------- errors
def test_length_mismatch_is_one_clear_error():
    d, qp, gp, qc, gc = random_problem(0, Q=4, G=6)
    with pytest.raises(EvaluationError, match=r"distmat has 6 columns \(gallery items\) but g_pids has 5"):
        evaluate_rank(d, qp, gp[:5], qc, gc)
    with pytest.raises(EvaluationError, match=r"distmat has 4 rows \(queries\) but q_camids has 3"):
        evaluate_rank(d, qp, gp, qc[:3], gc)
    with pytest.raises(EvaluationError, match="must be 2-D"):
        evaluate_rank(d[0], qp, gp, qc, gc)
    with pytest.raises(EvaluationError, match="q_pids must be 1-D"):
        evaluate_rank(d, np.zeros((2, 2)), gp, qc, gc)
    with pytest.raises(EvaluationError, match="unknown protocol 'mars'"):
        evaluate_rank(d, qp, gp, qc, gc, protocol="mars")
    # errors are user-facing STGCNErrors (and ValueErrors)
    assert issubclass(EvaluationError, STGCNError) and issubclass(EvaluationError, ValueError)


def test_nan_distances_are_reported():
    d, qp, gp, qc, gc = random_problem(0, Q=4, G=60)
    d[2, 7] = np.nan
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate_rank(d, qp, gp, qc, gc)


# --------------------------------------------------------------------------- distances
def test_compute_distance_euclidean_and_cosine():
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    ref = np.sqrt(((qf[:, None] - gf[None]) ** 2).sum(-1))
    np.testing.assert_allclose(compute_distance(qf, gf).numpy(), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(compute_distance(qf, gf, squared=True, chunk_size=2).numpy(), ref**2, rtol=1e-6)
    cos = (qf @ gf.T) / np.linalg.norm(qf, axis=1)[:, None] / np.linalg.norm(gf, axis=1)[None]
    np.testing.assert_allclose(compute_distance(torch.from_numpy(qf), gf, "cosine").numpy(), 1 - cos, atol=1e-6)
    # a descriptor at distance zero from itself (the clamp avoids sqrt of a tiny negative)
    assert compute_distance(qf, qf).diagonal().abs().max() < 1e-6


def test_compute_distance_errors():
    with pytest.raises(EvaluationError, match="descriptor sizes differ"):
        compute_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(EvaluationError, match="unknown metric 'l1'"):
        compute_distance(np.zeros((2, 3)), np.zeros((2, 3)), "l1")
    with pytest.raises(EvaluationError, match="qf must be 2-D"):
        compute_distance(np.zeros(3), np.zeros((2, 3)))
