"""Descriptor extraction (dense, bounded memory, flip test), evaluate_model with fakes, the results table."""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
import pytest
import torch

from stgcn_pyg.evaluation import evaluate_descriptors, evaluate_model, extract_descriptors, print_results
from stgcn_pyg.metrics import EvaluationError, compute_distance, evaluate_rank, re_ranking

H, W, T = 8, 4, 8


def clip_of(tracklet: int, clip: int, flipped: bool = False) -> torch.Tensor:
    """A deterministic clip [T, 3, H, W] whose left and right halves differ."""
    x = torch.zeros(T, 3, H, W)
    x[..., : W // 2] = tracklet + 0.01 * clip
    x[..., W // 2 :] = 2.0 * tracklet
    return x.flip(-1) if flipped else x


def encode(clips: torch.Tensor) -> torch.Tensor:
    """A fake model: descriptor = (mean of the left half, mean of the right half)."""
    left = clips[..., : W // 2].mean(dim=(1, 2, 3, 4))
    right = clips[..., W // 2 :].mean(dim=(1, 2, 3, 4))
    return torch.stack([left, right], 1)


class DenseLoader:
    """Yields consecutive clips of the given tracklet lengths in batches, lazily, like build_test_loader."""

    def __init__(self, lengths, batch_size=4):
        self.clips = [(t, c) for t, n in enumerate(lengths) for c in range(-(-n // T))]
        self.batch_size = batch_size
        self.live = []  # weak references to every batch handed out

    def __len__(self):
        return -(-len(self.clips) // self.batch_size)

    def __iter__(self):
        for s in range(0, len(self.clips), self.batch_size):
            part = self.clips[s : s + self.batch_size]
            clips = torch.stack([clip_of(t, c) for t, c in part])
            self.live.append(weakref.ref(clips))
            yield clips, torch.tensor([t for t, _ in part])
            del clips


def test_dense_descriptors_average_all_clips_in_bounded_memory():
    lengths = [900, 17, 8]  # 113 + 3 + 1 clips over 30 batches of 4
    loader = DenseLoader(lengths)
    peak = []

    def counting_encode(clips):
        peak.append(sum(r() is not None for r in loader.live))
        return encode(clips)

    f = extract_descriptors(counting_encode, loader, len(lengths), "cpu", progress=False)
    assert f.shape == (3, 2) and f.dtype == torch.float32
    # every clip contributed: the mean over the 113 clips of tracklet 0
    n0 = -(-900 // T)
    assert n0 == 113
    assert f[0, 0].item() == pytest.approx(np.mean([0 + 0.01 * c for c in range(n0)]), abs=1e-6)
    assert f[1, 0].item() == pytest.approx(1 + 0.01 * 1, abs=1e-6)  # clips 0, 1, 2
    assert f[2].tolist() == pytest.approx([2.0, 4.0])
    # the batches are not accumulated: only the current one is alive while
    # encoding (tensors are freed by reference counting, no gc needed)
    assert len(peak) == len(loader) == 30
    assert max(peak) == 1


def test_flip_test_averages_both_orientations():
    loader = DenseLoader([16], batch_size=2)
    f = extract_descriptors(encode, loader, 1, flip=False, progress=False)
    ff = extract_descriptors(encode, loader, 1, flip=True, progress=False)
    # the fake descriptor swaps its halves under a horizontal flip
    assert f[0].tolist() == pytest.approx([0.005, 0.0])
    assert ff[0].tolist() == pytest.approx([0.0025, 0.0025])


def test_extract_descriptors_errors():
    with pytest.raises(EvaluationError, match="1 of 3 tracklets received no clip"):
        extract_descriptors(encode, DenseLoader([8, 8]), 3, progress=False)
    with pytest.raises(EvaluationError, match="tracklet index 1"):
        extract_descriptors(encode, DenseLoader([8, 8]), 1, progress=False)
    with pytest.raises(EvaluationError, match="encode returned shape"):
        extract_descriptors(lambda c: torch.zeros(1), DenseLoader([8]), 1, progress=False)


def test_progress_off_a_terminal_is_a_start_and_an_end_line(capsys):
    import re

    from stgcn_pyg.evaluation import descriptors

    loader = DenseLoader([900, 17, 8])  # 30 batches of up to 4 clips of 8 frames: 117 clips
    extract_descriptors(encode, loader, 3, description="gallery descriptors")
    lines = capsys.readouterr().out.splitlines()  # captured: not a terminal
    assert len(lines) == 2 and lines[0] == "gallery descriptors: 3 tracklets in 30 batches ..."
    assert re.fullmatch(r"gallery descriptors: 3 tracklets, 936 frames in \d+\.\d s \([\d,]+ frames/s\)", lines[1])
    # a short extraction (a search's query) says nothing; nor does one that fails
    extract_descriptors(encode, DenseLoader([8]), 1)
    with pytest.raises(EvaluationError):
        extract_descriptors(encode, loader, 2)
    out = capsys.readouterr().out
    assert out.splitlines() == ["descriptors: 2 tracklets in 30 batches ..."]
    assert descriptors.PLAIN_LINES_FROM_BATCHES == 10
    extract_descriptors(encode, loader, 3, progress=False)
    assert capsys.readouterr().out == ""


def test_progress_on_a_terminal_is_a_bar_with_frames_per_second():
    import io

    from rich.console import Console

    from stgcn_pyg.evaluation.descriptors import _Progress

    screen = io.StringIO()
    bar = _Progress(3, 10, "gallery descriptors", Console(file=screen, force_terminal=True, width=120))
    bar.start()
    for _ in range(3):
        bar.advance(32)
    bar.bar.refresh()
    bar.stop(True)
    shown = screen.getvalue()
    assert "gallery descriptors" in shown and "3/3" in shown and "frames/s" in shown
    assert "tracklets" not in shown  # no plain lines on a terminal


# --------------------------------------------------------------------------- evaluate_model with fakes
class FakeModel(torch.nn.Module):
    """encode(clips) = a pid-dependent point plus noise: a near-perfect re-ID model."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode(self, clips):
        self.calls += 1
        assert not self.training
        pid = clips[:, 0, 0, 0, 0]
        return torch.stack([pid, pid * 0.5, torch.ones_like(pid)], 1) + 0.001 * clips[:, 0, 1, 0, 0:1]


class FakeDataset:
    def __init__(self, protocol="standard"):
        self.name = "fake"
        self.protocol = protocol
        self.query = pd.DataFrame({"pid": [1, 2, 3], "camid": [0, 0, 0], "num_frames": [20, 9, 8]})
        self.gallery = pd.DataFrame(
            {"pid": [1, 2, 3, 1, 4], "camid": [1, 1, 1, 0, 2], "num_frames": [8, 8, 30, 8, 8]}
        )


def fake_build_test_loader(df, *, seq_len, mode, image_size, batch_size, num_workers):
    """Stands in for stgcn_pyg.data.build_test_loader: clips carry the pid in pixel (0,0,0,0)."""
    assert mode in ("all", "evenly")
    items = []
    for t, (pid, n) in enumerate(zip(df["pid"], df["num_frames"])):
        n_clips = -(-n // seq_len) if mode == "all" else 1
        for c in range(n_clips):
            x = torch.zeros(seq_len, 3, *image_size)
            x[0, 0, 0, 0] = float(pid)
            x[0, 1, 0, 0] = float(c)
            items.append((x, t))
    return [
        (torch.stack([x for x, _ in items[s : s + batch_size]]), torch.tensor([t for _, t in items[s : s + batch_size]]))
        for s in range(0, len(items), batch_size)
    ]


@pytest.fixture
def fake_loader(monkeypatch):
    import stgcn_pyg.data

    monkeypatch.setattr(stgcn_pyg.data, "build_test_loader", fake_build_test_loader, raising=False)


@pytest.mark.parametrize("protocol", ["standard", "official"])
def test_evaluate_model_end_to_end_with_fakes(fake_loader, protocol):
    model = FakeModel().train()
    res = evaluate_model(model, FakeDataset(protocol), seq_len=4, image_size=(4, 2), batch_size=3, progress=False)
    assert model.training  # restored
    assert res["protocol"] == protocol and res["num_query"] == 3 and res["num_gallery"] == 5
    # query 3's only match is on another camera; query 1's same-camera copy is ignored
    assert res["rank1"] == pytest.approx(100.0) and res["mAP"] == pytest.approx(100.0)
    assert res["mINP"] == pytest.approx(100.0)
    assert len(res["cmc"]) == 5 and set(res) >= {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "cmc"}
    # 5 gallery items: rank-10 and rank-20 are the flat CMC's last value, not unknown
    assert res["rank10"] == res["rank20"] == pytest.approx(res["cmc"][-1] * 100)
    # dense mode visits every clip: 5+3+2 query clips and 2+2+8+2+2 gallery clips (seq_len 4)
    assert model.calls == -(-10 // 3) + -(-16 // 3)


def test_the_progress_says_its_frame_count_is_of_padded_clips(fake_loader, capsys):
    # 37 frames on disk (what `data info` counts) make 10 clips of 4: 40 frames encoded, and the line says why
    assert int(FakeDataset().query["num_frames"].sum()) == 37
    evaluate_model(FakeModel(), FakeDataset(), seq_len=4, image_size=(4, 2), batch_size=1, progress=True)
    lines = capsys.readouterr().out.splitlines()  # captured: not a terminal, so plain lines
    assert any(line.startswith("query descriptors: 3 tracklets, 40 clip frames (clips of 4, each tracklet's last "
                               "one padded with its own frames) in ") for line in lines), lines


def test_evaluate_descriptors_matches_evaluate_rank_and_rerank_option():
    rng = np.random.default_rng(0)
    qf, gf = torch.randn(6, 5), torch.randn(30, 5)
    qp, gp = rng.integers(0, 4, 6), rng.integers(0, 4, 30)
    qc, gc = np.zeros(6, int), np.ones(30, int)
    res = evaluate_descriptors(qf, gf, qp, gp, qc, gc, metric="cosine")
    cmc, mAP, mINP = evaluate_rank(compute_distance(qf, gf, "cosine"), qp, gp, qc, gc, return_minp=True, max_rank=30)
    assert res["rank1"] == pytest.approx(cmc[0] * 100) and res["rank5"] == pytest.approx(cmc[4] * 100)
    assert res["mAP"] == pytest.approx(mAP * 100) and res["mINP"] == pytest.approx(mINP * 100)
    short = evaluate_descriptors(qf, gf, qp, gp, qc, gc, metric="cosine", max_rank=5)
    assert short["rank5"] == pytest.approx(cmc[4] * 100) and np.isnan(short["rank10"])  # cut by the caller
    small = evaluate_descriptors(qf, gf[:7], qp, gp[:7], qc, gc[:7], metric="cosine")
    cmc7 = evaluate_rank(compute_distance(qf, gf[:7], "cosine"), qp, gp[:7], qc, gc[:7], max_rank=7)[0]
    assert small["rank5"] == pytest.approx(cmc7[4] * 100)
    assert small["rank10"] == small["rank20"] == pytest.approx(cmc7[-1] * 100)
    rr = evaluate_descriptors(qf, gf, qp, gp, qc, gc, rerank=True)
    cmc, mAP, mINP = evaluate_rank(re_ranking(qf, gf), qp, gp, qc, gc, return_minp=True, max_rank=30)
    assert rr["rerank"] is True and rr["rank1"] == pytest.approx(cmc[0] * 100)
    assert rr["mAP"] == pytest.approx(mAP * 100) and rr["mINP"] == pytest.approx(mINP * 100)


def test_print_results_names_the_protocol():
    from rich.console import Console

    console = Console(record=True, width=100)
    res = {"rank1": 90.04, "rank5": 95.0, "rank10": 97.0, "rank20": 98.5, "mAP": 83.66, "mINP": 60.0,
           "protocol": "official", "metric": "euclidean", "num_query": 1980, "num_gallery": 12180}
    print_results(res, "MARS", console=console)
    text = console.export_text()
    assert "official protocol" in text and "MARS" in text
    for needle in ("rank-1", "90.0", "rank-20", "98.5", "mAP", "83.7", "mINP", "60.0", "1980 queries"):
        assert needle in text
