"""CMC, mAP and mINP for re-identification retrieval, vectorised in torch.

``evaluate_rank`` has the signature and return value of torchreid's function
of the same name (``(cmc, mAP)``), so it can be swapped in, plus a
``protocol`` switch and mINP.

How it works: the scores need only the positions of the *correct* gallery
items ("goods") in each query's ranking, not the full ranking. Each row of
distances is sorted by value only (no argsort, no index gathers); the goods
and the junk of a query are the few gallery items that share its pid (found
through the gallery grouped by pid), plus the pid -1 columns in the official
protocol. The 0-based position of the k-th closest good is then
``k + #items at distance <= its distance - #goods/junk among them``, each
count a ``searchsorted`` of a handful of values into a sorted row. Queries
are handled in chunks, so memory stays bounded whatever the gallery size,
and everything except the CPU row sort (numpy's vectorised sort, several
times faster than ``torch.sort`` there) runs in torch on the chosen device.

Ties have one rule in the project, :func:`rank_order`: equal distances keep
gallery order (a stable sort). It needs no labels, so the list ``search``
shows is the one scored here, and :func:`rank_gallery` returns it. The
counts above cannot see the order within a tie; a query whose good shares
its distance with another item is therefore ranked by :func:`rank_order`
itself (rare with real descriptors; every query for a model that maps
everything to one point, which then scores by gallery order).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import EvaluationError

__all__ = ["EvaluationError", "evaluate_rank", "PROTOCOLS", "junk_mask", "rank_gallery", "rank_order"]

PROTOCOLS = ("standard", "official")
"""How a ranking is scored (see :func:`evaluate_rank`): which gallery items are junk, and how AP is summed."""

# Elements of a [chunk, G] block handled at once. Three blocks are live (the
# distances, the rows being scored and the next rows being sorted), so 2**22
# elements keep the working set near 50 MB whatever the gallery size.
_DEFAULT_MAX_ELEMENTS = 1 << 22


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise EvaluationError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise EvaluationError(f"{name}: expected numbers, got an array of dtype {arr.dtype}")
    try:  # no copy, whatever the strides: a huge distmat is only ever read chunk by chunk
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only arrays: we never write to them
            return torch.from_numpy(arr)
    except ValueError:  # negative strides or a read-only oddity torch cannot view
        return torch.from_numpy(np.ascontiguousarray(arr))


def _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids):
    distmat = _as_tensor(distmat, "distmat")
    ids = {
        name: _as_tensor(v, name)
        for name, v in (("q_pids", q_pids), ("g_pids", g_pids), ("q_camids", q_camids), ("g_camids", g_camids))
    }
    if distmat.dim() != 2:
        raise EvaluationError(
            f"distmat must be 2-D [num_query, num_gallery], got shape {tuple(distmat.shape)}"
        )
    if not distmat.is_floating_point():
        distmat = distmat.double()
    num_q, num_g = distmat.shape
    for name, v in ids.items():
        if v.dim() != 1:
            ids[name] = v = v.reshape(-1) if v.dim() == 2 and 1 in v.shape else v
        if v.dim() != 1:
            raise EvaluationError(f"{name} must be 1-D, got shape {tuple(v.shape)}")
        if v.is_floating_point():
            if not torch.equal(v, v.round()):
                raise EvaluationError(f"{name} must hold integer ids, got non-integer values")
        expected = num_q if name.startswith("q_") else num_g
        side = "rows (queries)" if name.startswith("q_") else "columns (gallery items)"
        if v.numel() != expected:
            raise EvaluationError(
                f"length mismatch: distmat has {expected} {side} but {name} has {v.numel()} entries"
            )
        ids[name] = v.long()
    if num_q == 0 or num_g == 0:
        raise EvaluationError(f"empty query or gallery: distmat has shape {tuple(distmat.shape)}")
    return distmat, ids["q_pids"], ids["g_pids"], ids["q_camids"], ids["g_camids"]


_POOL: ThreadPoolExecutor | None = None


def _sort_pool(n: int) -> ThreadPoolExecutor:
    """A process-wide pool for the row sorts (created once, grown when torch's thread count grows)."""
    global _POOL
    if _POOL is None or _POOL._max_workers < n:
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="stgcn-pyg-sort")
    return _POOL


def _start_row_sort(d: torch.Tensor, n_threads: int | None = None, buffer: np.ndarray | None = None):
    """Start sorting each row of ``d`` ascending (values only; NaN last); returns ``wait() -> sorted``.

    On the CPU numpy's vectorised sort is several times faster than
    ``torch.sort``, and it releases the GIL, so row blocks are sorted on as
    many threads as torch uses, in the background: the caller scores one
    chunk while the next is being sorted. Each block is copied into
    ``buffer`` (reused across chunks: no fresh pages to fault in) and sorted
    there in place.
    """
    if d.device.type != "cpu":
        return lambda: torch.sort(d, dim=1).values
    if d.dtype not in (torch.float32, torch.float64):
        d = d.float()
    a = d.numpy()
    rows, cols = a.shape
    if buffer is not None and buffer.dtype == a.dtype and buffer.shape[1] == cols and buffer.shape[0] >= rows:
        out = buffer[:rows]
    else:
        out = np.empty(a.shape, a.dtype)  # C order whatever the input layout
    # split by rows when there is enough work (a 93,300-wide gallery has few rows per block)
    n_threads = max(1, min(n_threads or torch.get_num_threads(), rows, a.size // (1 << 18)))
    bounds = np.linspace(0, rows, n_threads + 1).astype(int)

    def work(i):
        block = out[bounds[i] : bounds[i + 1]]
        block[...] = a[bounds[i] : bounds[i + 1]]
        block.sort(axis=1)

    pool = _sort_pool(max(n_threads, 2))
    jobs = [pool.submit(work, i) for i in range(n_threads)]

    def wait() -> torch.Tensor:
        for job in jobs:
            job.result()
        return torch.from_numpy(out)

    return wait


def _sort_rows(d: torch.Tensor, n_threads: int | None = None, buffer: np.ndarray | None = None) -> torch.Tensor:
    """Each row of ``d`` sorted ascending (values only; NaN last)."""
    return _start_row_sort(d, n_threads, buffer)()


class _Gallery:
    """Gallery ids on the compute device, grouped by pid for sparse look-ups."""

    def __init__(self, g_pids, g_camids, device, protocol, sort_threads=None):
        self.sort_threads = sort_threads
        self.sort_buffers: list[np.ndarray] = []  # the CPU row sorts' output: two, used by turns
        self.pids, self.camids = g_pids.to(device), g_camids.to(device)
        self.order = torch.argsort(self.pids, stable=True)
        self.uniq, counts = torch.unique_consecutive(self.pids[self.order], return_counts=True)
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts
        # official protocol: pid -1 items are junk for every query
        self.junk_cols = (self.pids == -1).nonzero().squeeze(1) if protocol == "official" else None
        if self.junk_cols is not None and self.junk_cols.numel() == 0:
            self.junk_cols = None


def _check_nan(row_has_nan: torch.Tensor) -> None:
    if bool(row_has_nan.any()):
        raise EvaluationError(
            f"distmat has NaN distances ({int(row_has_nan.sum())} rows in this block); "
            "check the descriptors for NaN or inf"
        )


def _chunk_ranks(d, qp, qc, gal: _Gallery, protocol: str, sorted_rows):
    """Positions of each query's goods among its kept gallery items.

    Returns ``(rank [c, max_good] long, valid [c, max_good] bool, n_good [c] long)``: the
    0-based position of the k-th closest good, counted over the gallery items
    that are not junk for that query. Only the distances are sorted; the
    goods and junk of a query are the gallery items sharing its pid (a short
    list), plus, in the official protocol, the pid -1 columns.
    """
    c, G = d.shape
    dev = d.device
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=dev)
    # the gallery items that share each query's pid, padded to S per row
    pos = torch.searchsorted(gal.uniq, qp).clamp_max(max(gal.uniq.numel() - 1, 0))
    found = gal.uniq[pos] == qp
    cnt = torch.where(found, gal.counts[pos], torch.zeros_like(pos))
    S = int(cnt.max()) if c else 0
    if S == 0:
        _check_nan(torch.isnan(d).any(1))
        empty = torch.zeros(c, 0, dtype=torch.long, device=dev)
        return empty, empty.bool(), cnt
    ar = torch.arange(S, device=dev)
    in_list = ar.unsqueeze(0) < cnt.unsqueeze(1)
    gidx = gal.order[(gal.starts[pos].unsqueeze(1) + ar).clamp_max(G - 1)]
    sp_d = torch.where(in_list, d.gather(1, gidx), inf)
    good = in_list & (gal.camids[gidx] != qc.unsqueeze(1))
    if protocol == "official":
        good &= (qp != -1).unsqueeze(1)
    n_good = good.sum(1)
    max_good = int(n_good.max())
    d_sorted = sorted_rows().to(dev)
    _check_nan(d_sorted[:, -1].isnan())  # NaN sorts last
    if max_good == 0:
        empty = torch.zeros(c, 0, dtype=torch.long, device=dev)
        return empty, empty.bool(), n_good
    t = torch.where(good, sp_d, inf).sort(1).values[:, :max_good].contiguous()  # the goods' distances, ascending
    # items at a distance <= t_k, minus those that are goods or junk of the query
    le = torch.searchsorted(d_sorted, t, right=True)
    k = torch.arange(max_good, device=dev)
    valid = k.unsqueeze(0) < n_good.unsqueeze(1)
    tied = (valid & (le - torch.searchsorted(d_sorted, t) > 1)).any(1)  # a good shares its distance with another item
    le -= torch.searchsorted(sp_d.sort(1).values.contiguous(), t, right=True)
    # the +inf padding of the short lists was counted for a good at +inf
    le += (t == float("inf")) * (S - cnt).unsqueeze(1)
    if gal.junk_cols is not None:
        junk_sorted = _sort_rows(d.index_select(1, gal.junk_cols), gal.sort_threads).to(dev)
        le -= torch.searchsorted(junk_sorted, t, right=True)
    rank = k.unsqueeze(0) + le
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        rank[rows] = _ranks_in_order(d[rows], qp[rows], qc[rows], gal, protocol, max_good)
    return rank, valid, n_good


def _ranks_in_order(d, qp, qc, gal: _Gallery, protocol: str, width: int) -> torch.Tensor:
    """Positions of each query's goods in its :func:`rank_order` ranking, junk left out ([n, width], long;
    entries past a query's goods are the gallery size). The rows are ranked a few at a time: bounded memory."""
    G = d.size(1)
    out = []
    step = max(1, (1 << 20) // G)
    for s in range(0, d.size(0), step):
        q_pid, q_cam = qp[s : s + step].unsqueeze(1), qc[s : s + step].unsqueeze(1)
        order = rank_order(d[s : s + step])
        pids, cams = gal.pids[order], gal.camids[order]
        kept = ~junk_mask(q_pid, q_cam, pids, cams, protocol)
        good = kept & (pids == q_pid)  # same pid, not junk: another camera
        if protocol == "official":
            good &= q_pid != -1
        pos = kept.cumsum(1) - 1
        r, c = good.nonzero(as_tuple=True)  # row by row, each row's goods in ranking order
        per_row = good.sum(1)
        k = torch.arange(r.numel(), device=d.device) - (per_row.cumsum(0) - per_row)[r]
        block = torch.full((good.size(0), width), G, dtype=torch.long, device=d.device)
        block[r, k] = pos[r, c]
        out.append(block)
    return torch.cat(out)


def _score_chunks(distmat, q_pids, q_camids, gal, protocol, device, chunk_size, max_rank, return_per_query):
    """AP, INP and first-hit histogram of every query, a chunk of queries at a time."""
    num_q, num_g = distmat.shape
    first_counts = torch.zeros(max_rank + 1, dtype=torch.float64, device=device)
    aps, inps, firsts, valids = [], [], [], []
    starts = list(range(0, num_q, chunk_size))

    def chunk(i):
        return distmat[starts[i] : min(starts[i] + chunk_size, num_q)].to(device)

    def start_sort(i, d):
        # two buffers used by turns: chunk i+1 is sorted into one while chunk i is scored from the other
        if device.type == "cpu" and d.dtype in (torch.float32, torch.float64) and len(gal.sort_buffers) < 2:
            gal.sort_buffers.append(np.empty(tuple(d.shape), dtype=d.numpy().dtype))
        buffer = gal.sort_buffers[i % 2] if gal.sort_buffers else None
        return _start_row_sort(d, gal.sort_threads, buffer)

    d_next = chunk(0)
    sort_next = start_sort(0, d_next)
    for i, start in enumerate(starts):
        stop = min(start + chunk_size, num_q)
        d, sorted_rows = d_next, sort_next
        if i + 1 < len(starts):
            d_next = chunk(i + 1)
            sort_next = start_sort(i + 1, d_next)
        qp, qc = q_pids[start:stop].to(device), q_camids[start:stop].to(device)
        try:
            rank, valid, n_good = _chunk_ranks(d, qp, qc, gal, protocol, sorted_rows)
        finally:
            sorted_rows()  # this chunk's buffer is free only once its sort has finished
        del d
        has = n_good > 0
        n = n_good.clamp_min(1).double()
        max_good = rank.size(1)
        if max_good == 0:
            ap = torch.zeros(stop - start, dtype=torch.float64, device=device)
            inp = ap.clone()
            first = torch.full_like(n_good, num_g)
        else:
            r = rank.double()
            hits = torch.arange(1, max_good + 1, device=device, dtype=torch.float64).unsqueeze(0)  # k + 1
            prec_at_hit = hits / (r + 1)
            if protocol == "standard":
                contrib = prec_at_hit
            else:
                # trapezoid between the precision just before the hit
                # (k / r, or 1 at the very first position) and at the hit
                prev = torch.where(r > 0, (hits - 1) / r.clamp_min(1), torch.ones_like(r))
                contrib = (prev + prec_at_hit) / 2
            ap = (contrib * valid).sum(1) / n
            last = rank.gather(1, (n_good - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
            inp = n / (last.double() + 1)
            first = rank[:, 0]
        first = torch.where(has, first, torch.full_like(first, num_g))
        idx = first.clamp_max(max_rank)[has]
        first_counts.scatter_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))
        aps.append(ap[has])
        inps.append(inp[has])
        if return_per_query:
            firsts.append(first)
            valids.append(has)

    return first_counts, aps, inps, firsts, valids


def junk_mask(q_pid, q_camid, g_pids, g_camids, protocol: str = "standard"):
    """The gallery items one query ignores: its own pid seen by its own camera, and in the official
    protocol every pid -1 item. A bool array like ``g_pids`` (tensors or numpy arrays)."""
    junk = (g_pids == q_pid) & (g_camids == q_camid)
    if protocol == "official":
        junk = junk | (g_pids == -1)
    return junk


def rank_order(distances: torch.Tensor) -> torch.Tensor:
    """Gallery indices by ascending distance, along the last dimension: the project's rule for ties.

    Equal distances keep gallery order (a stable sort), so a ranking depends on
    the distances and the gallery's order only, never on the labels. Search,
    the ranked-results pictures, :func:`rank_gallery` and :func:`evaluate_rank`
    all rank by it.
    """
    distances = distances.detach()
    if distances.device.type != "cpu":
        return torch.argsort(distances, dim=-1, stable=True)
    if distances.dtype in (torch.float16, torch.bfloat16):
        distances = distances.float()  # exact: the order does not change
    # numpy's unstable argsort and integer sort are vectorised, its stable argsort is several times slower:
    # sort, number the runs of equal distances, then sort (run, gallery index)
    a = distances.numpy()
    n = a.shape[-1]
    order = np.argsort(a, axis=-1)
    v = np.take_along_axis(a, order, axis=-1)
    new_run = v[..., 1:] != v[..., :-1]
    if np.issubdtype(a.dtype, np.floating):
        new_run &= ~(np.isnan(v[..., 1:]) & np.isnan(v[..., :-1]))  # NaNs (last) are one run too
    key = np.zeros(order.shape, np.int64)
    np.cumsum(new_run, axis=-1, out=key[..., 1:])
    key *= n
    key += order
    key.sort(axis=-1)
    return torch.from_numpy(key % n)


def rank_gallery(distances: torch.Tensor, q_pid, q_camid, g_pids, g_camids, protocol: str = "standard"):
    """One query's ranking as :func:`evaluate_rank` scores it: :func:`rank_order` of its distances,
    its junk left out."""
    order = rank_order(distances)
    return order[~junk_mask(q_pid, q_camid, g_pids[order], g_camids[order], protocol)]


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    protocol: str = "standard",
    return_minp: bool = False,
    *,
    device=None,
    chunk_size: int | None = None,
    return_per_query: bool = False,
):
    """CMC curve and mAP (and mINP) of a query-by-gallery distance matrix.

    Each query's gallery is ranked by :func:`rank_order` (equal distances in
    gallery order), the list :func:`rank_gallery` returns.

    Args:
        distmat: [num_query, num_gallery] distances (smaller = more similar),
            a numpy array or a tensor on any device.
        q_pids, g_pids, q_camids, g_camids: 1-D person and camera ids.
        max_rank: length of the returned CMC curve (cut to the gallery size,
            with a warning, as torchreid does).
        protocol: ``"standard"`` — gallery items with the query's pid *and*
            camera are ignored, queries without a remaining match are
            skipped, AP is the mean of the precisions at each hit (torchreid's
            ``eval_market1501``/MARS logic). ``"official"`` — MARS's own
            MATLAB evaluation: junk is pid -1 plus same pid and camera,
            distractors (pid 0) stay as negatives, AP by the trapezoid rule
            of its ``compute_AP.m``. A query with no match at all would make
            that code's AP NaN; here it is skipped as in "standard".
        return_minp: also return mINP (Ye et al., AGW): the mean over queries
            of ``#matches / position of the hardest match``.
        device: where to compute (default: the distmat's device). A CPU
            distmat can be scored on a GPU chunk by chunk.
        chunk_size: queries per chunk (default: blocks of about 4M distances).
        return_per_query: also return a dict of per-query tensors
            (``ap``, ``inp``, ``first_hit``, ``valid``) for plots and tests.

    Returns:
        ``(cmc, mAP)`` or ``(cmc, mAP, mINP)``: ``cmc`` a float32 numpy array
        of length ``max_rank`` (fraction of queries with a match within the
        first r+1 positions), ``mAP``/``mINP`` floats in [0, 1].

    Raises:
        EvaluationError: shapes or lengths that do not fit, NaN distances, an
            unknown protocol, or no query with a match in the gallery.
    """
    if protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = distmat.shape
    if int(max_rank) < 1:
        raise EvaluationError(f"max_rank must be >= 1, got {max_rank}")
    max_rank = int(max_rank)
    if num_g < max_rank:
        warnings.warn(f"the gallery has only {num_g} items: max_rank cut from {max_rank} to {num_g}", stacklevel=2)
        max_rank = num_g
    device = torch.device(device) if device is not None else distmat.device
    if chunk_size is None:
        chunk_size = max(1, _DEFAULT_MAX_ELEMENTS // max(num_g, 1))
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise EvaluationError(f"chunk_size must be >= 1, got {chunk_size}")

    # On the CPU the work is the row sorts, threaded here; torch's own
    # (OpenMP) threads would only spin between the small tensor ops and take
    # cores from those sorts, so torch runs single-threaded meanwhile.
    torch_threads = torch.get_num_threads()
    on_cpu = device.type == "cpu"
    gal = _Gallery(g_pids, g_camids, device, protocol, sort_threads=torch_threads)
    if on_cpu:
        torch.set_num_threads(1)
    try:
        first_counts, aps, inps, firsts, valids = _score_chunks(
            distmat, q_pids, q_camids, gal, protocol, device, chunk_size, max_rank, return_per_query
        )
    finally:
        if on_cpu:
            torch.set_num_threads(torch_threads)

    ap_all = torch.cat(aps)
    num_valid = ap_all.numel()
    if num_valid == 0:
        raise EvaluationError(
            "no query has a matching gallery item (same pid, another camera): nothing to score; "
            "check that query and gallery come from the same test split"
        )
    cmc = (first_counts[:max_rank].cumsum(0) / num_valid).float().cpu().numpy()
    mAP = float(ap_all.mean())
    out = [cmc, mAP]
    if return_minp:
        out.append(float(torch.cat(inps).mean()))
    if return_per_query:
        valid_all = torch.cat(valids).cpu()
        per_q = {
            "valid": valid_all,
            "first_hit": torch.cat(firsts).cpu(),
            "ap": torch.full((num_q,), float("nan"), dtype=torch.float64),
            "inp": torch.full((num_q,), float("nan"), dtype=torch.float64),
        }
        per_q["ap"][valid_all] = ap_all.cpu()
        per_q["inp"][valid_all] = torch.cat(inps).cpu()
        out.append(per_q)
    return tuple(out)
