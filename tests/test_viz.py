"""The pictures are written, are PNGs of the expected pixel size, and show what they claim."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from stgcn_pyg.errors import DatasetError
from stgcn_pyg.viz import plot_affinity, plot_cmc, plot_ranked_results, ranked_grid_size
from stgcn_pyg.viz.ranked_grid import BORDER, CAPTION, COLORS, DASH, GAP, MARGIN, QUERY_COLOR


def solid_frames(n, color, size=(32, 16)):
    return [np.full((*size, 3), color, dtype=np.uint8) for _ in range(n)]


def test_ranked_grid_size_and_borders(tmp_path):
    h, w = 32, 16
    query = solid_frames(10, (10, 10, 10), (40, 20))  # resized to the frame size
    gallery = [solid_frames(3, (200, 200, 0)) for _ in range(7)]
    matches = [True, False, None, True, False, False, True]
    out = plot_ranked_results(query, gallery, tmp_path / "sub" / "grid.png", matches=matches,
                              num_query_frames=6, frames_per_result=4, per_row=3, frame_size=(h, w))
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "RGB"
    # width: 3 results of 4 frames + 2 gaps; height: query row + 3 result rows
    expected = (2 * MARGIN + 3 * (4 * w + 2 * BORDER) + 2 * GAP,
                2 * MARGIN + CAPTION + h + 2 * BORDER + 3 * (GAP + h + 2 * BORDER + CAPTION))
    assert img.size == expected == ranked_grid_size(6, 7, frames_per_result=4, per_row=3, frame_size=(h, w))
    px = np.asarray(img)
    y_q = MARGIN + CAPTION
    assert tuple(px[y_q + 1, MARGIN + 1]) == QUERY_COLOR  # query border
    assert tuple(px[y_q + BORDER + 2, MARGIN + BORDER + 2]) == (10, 10, 10)  # a query frame
    y0 = y_q + h + 2 * BORDER + GAP
    item_w = 4 * w + 2 * BORDER
    for i, m in enumerate(matches[:3]):  # first row of results: green, red, grey
        assert tuple(px[y0 + 1, MARGIN + i * (item_w + GAP) + 1]) == COLORS[m]
    # result 0 has 3 frames for 4 cells: the last cell is greyed out, the first shows the frame
    assert tuple(px[y0 + BORDER + 2, MARGIN + BORDER + 2]) == (200, 200, 0)
    assert tuple(px[y0 + BORDER + 2, MARGIN + BORDER + 3 * w + 2]) == (235, 235, 235)


def test_ranked_grid_reads_frame_files_and_reports_missing(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.jpg"
        Image.new("RGB", (16, 32), (0, 0, 255)).save(p)
        paths.append(str(p))
    out = plot_ranked_results(paths, [paths], tmp_path / "g.png", matches=[True], frame_size=(32, 16))
    assert Image.open(out).size == ranked_grid_size(3, 1, frame_size=(32, 16))
    with pytest.raises(DatasetError, match="image not found: .*missing.jpg"):
        plot_ranked_results([str(tmp_path / "missing.jpg")], [paths], tmp_path / "g2.png")
    with pytest.raises(ValueError, match="1 gallery results but 2 match flags"):
        plot_ranked_results(paths, [paths], tmp_path / "g3.png", matches=[True, False])


def test_cmc_png_size(tmp_path):
    cmc = np.minimum(np.linspace(0.6, 1.2, 50), 1)
    out = plot_cmc({"plain": cmc, "re-ranked": cmc * 0.9}, tmp_path / "cmc.png", size=(500, 400))
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (500, 400)
    # the plot is not blank: many distinct colours drawn
    assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 20
    assert Image.open(plot_cmc(cmc, tmp_path / "c2.png")).size == (640, 480)


def test_affinity_png_size_and_checks(tmp_path):
    T, P = 6, 4
    w = torch.softmax(torch.randn(T * P, T * P), 1)
    frames = [torch.randn(3, 64, 32) for _ in range(T)]  # normalised tensors, as the loaders give
    out = plot_affinity(w, frames, P, tmp_path / "aff.png", size=(900, 420))
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (900, 420)
    with pytest.raises(ValueError, match="6 frames x 3 stripes = 18 nodes"):
        plot_affinity(w, frames, 3, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="square"):
        plot_affinity(w[:5], frames, P, tmp_path / "bad.png")


def test_protocol_marks_and_border_styles_of_a_hand_made_gallery():
    from stgcn_pyg.viz import protocol_marks
    from stgcn_pyg.viz.ranked_grid import IGNORED, border_style

    # the query is pid 3 seen by camera 1
    g_pids, g_cams = [3, 3, 5, -1, 0], [1, 2, 1, 2, 1]
    assert protocol_marks(3, 1, g_pids, g_cams, "standard") == [IGNORED, True, False, False, False]
    # official: junk (pid -1) is ignored too; distractors (pid 0) stay negatives
    assert protocol_marks(3, 1, g_pids, g_cams, "official") == [IGNORED, True, False, IGNORED, False]
    assert [border_style(m) for m in (True, False, None, IGNORED)] == [
        (COLORS[True], False), (COLORS[False], False), (COLORS[None], False), (COLORS[IGNORED], True)]
    assert len({border_style(m) for m in (True, False, None, IGNORED)}) == 4  # four styles, told apart
    with pytest.raises(ValueError, match="unknown result mark 'junk'"):
        border_style("junk")


def test_evaluation_grid_shows_what_the_protocol_ignores_and_names_it(tmp_path, monkeypatch):
    """Same pid and camera, and junk, are drawn in place with a dashed grey border; ranks skip them."""
    import pandas as pd

    from stgcn_pyg.viz import evaluation_plots, plot_evaluation
    from stgcn_pyg.viz.ranked_grid import IGNORED

    h, w = 128, 64  # the grid's default frame size
    frames = solid_frames(2, (90, 90, 90))
    query = pd.DataFrame({"pid": [3], "camid": [1], "frames": [frames]})
    # by distance: own camera (ignored), junk (ignored in official), a match, a wrong one, one past topk=2
    gallery = pd.DataFrame({"pid": [5, 3, -1, 3, 7], "camid": [2, 1, 2, 2, 1], "frames": [frames] * 5})
    distmat = torch.tensor([[0.4, 0.1, 0.2, 0.3, 0.5]])
    results = {"cmc": [1.0], "protocol": "official", "num_query": 1}
    drawn = []
    monkeypatch.setattr(evaluation_plots, "plot_ranked_results",
                        lambda *a, **k: drawn.append(k) or plot_ranked_results(*a, **k))
    written, _ = plot_evaluation(tmp_path, results, distmat=distmat, dataset=SimpleNamespace(query=query,
                                 gallery=gallery), num_grids=1, topk=2)
    grid = tmp_path / "query_0000.png"
    assert grid in written
    img = Image.open(grid)
    # query of 2 frames; 2 ignored + 2 ranked results; a title line; a legend line per style drawn (3)
    assert img.size == ranked_grid_size(2, 4, title=True, legend_lines=3)
    px = np.asarray(img.convert("RGB"))
    y0 = MARGIN + 2 * CAPTION + h + 2 * BORDER + GAP  # title and query caption, then the query strip
    item_w = 4 * w + 2 * BORDER
    for i, mark in enumerate([IGNORED, IGNORED, True, False]):
        x0 = MARGIN + i * (item_w + GAP)
        assert tuple(px[y0 + 1, x0 + 1]) == COLORS[mark], i
        # a dashed border has gaps, a solid one none
        assert (tuple(px[y0 + 1, x0 + DASH + 1]) == (255, 255, 255)) == (mark == IGNORED), i
    # the picture names the protocol and what it ignores; ranks count only what it scores
    assert drawn[0]["title"] == "ranked by the official protocol: same pid and same camera, and junk (pid -1), ignored"
    assert drawn[0]["captions"] == ["ignored pid 3 c1 d=0.100", "ignored pid -1 c2 d=0.200", "#1 pid 3 c2 d=0.300",
                                    "#2 pid 5 c2 d=0.400"]
