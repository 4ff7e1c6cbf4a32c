"""Frame sampling and the identity sampler, num_ids x num_instances (including distributed shares)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from stgcn_pyg.data import RandomIdentitySampler, all_clips, evenly, restricted_random, strided_clips
from stgcn_pyg.errors import ConfigError


@pytest.mark.parametrize("n", [8, 9, 17, 100, 901])
def test_restricted_random_takes_one_frame_per_chunk(n):
    T = 8
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        idx = restricted_random(n, T, rng)
        assert len(idx) == T
        for i, x in enumerate(idx):
            # Chunk i is [floor(i n / T), floor((i+1) n / T)).
            assert (i * n) // T <= x < ((i + 1) * n) // T
        seen.update(idx.tolist())
    if n <= 17:
        assert seen == set(range(n))  # every frame can be drawn


def test_restricted_random_repeats_short_tracklets_in_order():
    assert restricted_random(3, 8, np.random.default_rng(0)).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert restricted_random(1, 4, np.random.default_rng(0)).tolist() == [0, 0, 0, 0]


def test_evenly_and_all_clips():
    assert evenly(16, 4).tolist() == [2, 6, 10, 14]
    assert evenly(2, 4).tolist() == [0, 0, 1, 1]
    clips = all_clips(19, 8)
    assert [c.tolist() for c in clips] == [list(range(8)), list(range(8, 16)), [16, 17, 18, 16, 17, 18, 16, 17]]
    assert [c.tolist() for c in all_clips(3, 4)] == [[0, 1, 2, 0]]
    assert len(all_clips(900, 8)) == 113
    with pytest.raises(ValueError):
        all_clips(0, 8)


def test_strided_clips_span_the_tracklet_and_cover_every_frame():
    # 10 frames, T=4: chunks [0,1] [2,3,4] [5,6] [7,8,9] (restricted_random's); clip k = k-th frame of each.
    assert [c.tolist() for c in strided_clips(10, 4)] == [[0, 2, 5, 7], [1, 3, 6, 8], [1, 4, 6, 9]]
    assert [c.tolist() for c in strided_clips(3, 4)] == [[0, 0, 1, 2]]  # shorter than T: one clip, in order
    assert [c.tolist() for c in strided_clips(8, 8)] == [list(range(8))]
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 31, 64, 900):
        clips = strided_clips(n, 8)
        assert all(len(c) == 8 and (np.diff(c) >= 0).all() for c in clips)  # temporal order kept
        assert set(np.concatenate(clips).tolist()) == set(range(n))  # every frame scored
        assert len(clips) == max(1, -(-n // 8))  # as many clips as the consecutive mode, no more
        # each clip draws its j-th frame where restricted_random draws its j-th: the training spacing
        train = np.stack([restricted_random(n, 8, rng) for _ in range(50)])
        lo, hi = ((np.arange(8) * n) // 8, (np.arange(1, 9) * n) // 8) if n >= 8 else (train.min(0), train.max(0) + 1)
        assert ((train >= lo) & (train < hi)).all()
        assert all(((c >= lo) & (c < hi)).all() for c in clips)
    with pytest.raises(ValueError):
        strided_clips(0, 8)


def _pids(counts):
    return [p for p, n in enumerate(counts) for _ in range(n)]


def test_identity_batches_are_num_ids_times_num_instances_tracklets():
    pids = _pids([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 1])  # 12 identities, some with one tracklet
    s = RandomIdentitySampler(pids, num_instances=4, num_ids=3, seed=1)
    batches = list(s)
    assert len(batches) == len(s) > 0
    for b in batches:
        rows = [r for r, _ in b]
        ids = [pids[r] for r in rows]
        assert len(b) == 12
        assert len(set(ids)) == 3 and all(c == 4 for c in Counter(ids).values())
        # Consecutive groups of num_instances share an identity (the layout the triplet loss expects).
        assert all(len(set(ids[g:g + 4])) == 1 for g in range(0, 12, 4))
    # Identities with >= num_instances tracklets never repeat a tracklet within a group.
    for b in batches:
        for g in range(0, 12, 4):
            rows = [r for r, _ in b[g:g + 4]]
            if pids.count(pids[rows[0]]) >= 4:
                assert len(set(rows)) == 4


def test_epochs_are_deterministic_reshuffled_and_equally_long():
    pids = _pids([9, 1, 5, 3, 4, 8, 2, 6])
    a = RandomIdentitySampler(pids, num_instances=2, num_ids=3, seed=5)
    b = RandomIdentitySampler(pids, num_instances=2, num_ids=3, seed=5)
    lengths = set()
    orders = []
    for e in range(6):
        a.set_epoch(e)
        b.set_epoch(e)
        ea, eb = list(a), list(b)
        assert ea == eb
        lengths.add(len(ea))
        orders.append(ea)
    assert lengths == {len(a)}
    assert orders[0] != orders[1]
    # Groups of num_instances=2: 4+1+2+1+2+4+1+3 = 18 (a lone tracklet is repeated into one group) -> 18 // 3 batches.
    assert len(a) == 6
    # Draw seeds differ between items, so repeated rows get different frames.
    seeds = [s for bt in orders[0] for _, s in bt]
    assert len(set(seeds)) == len(seeds)


def test_distributed_shares_are_disjoint_and_equal():
    pids = _pids([4] * 20 + [2] * 5)
    full = RandomIdentitySampler(pids, num_instances=4, num_ids=4, seed=3)
    shares = [RandomIdentitySampler(pids, num_instances=4, num_ids=4, seed=3, rank=r, world_size=3) for r in range(3)]
    for e in (0, 1):
        full.set_epoch(e)
        for s in shares:
            s.set_epoch(e)
        got = [list(s) for s in shares]
        assert len({len(g) for g in got}) == 1 and len(got[0]) == len(shares[0]) == len(full) // 3
        # Each rank takes every world_size-th global batch: together, no batch twice.
        flat = [tuple(map(tuple, b)) for g in got for b in g]
        assert len(flat) == len(set(flat))
        glob = [tuple(map(tuple, b)) for b in full.global_batches()]
        assert set(flat) <= set(glob)
        assert got[1] == [list(b) for b in full.global_batches()[1::3]][: len(got[1])]


def test_sampler_errors():
    with pytest.raises(ConfigError, match="num_ids=16 identities needs 16 identities but the training split has 2"):
        RandomIdentitySampler([0, 0, 1, 1], num_instances=2, num_ids=16)
    with pytest.raises(ConfigError, match="rank 2 outside world size 2"):
        RandomIdentitySampler([0, 1], num_instances=1, num_ids=1, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="no complete 2 x 4 batch per rank"):
        RandomIdentitySampler([0, 1, 2], num_instances=4, num_ids=2, world_size=2)
