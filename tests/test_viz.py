"""The pictures are written, are PNGs of the expected pixel size, and show what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stgcn_pyg.errors import DatasetError
from stgcn_pyg.viz import plot_affinity, plot_cmc, plot_ranked_results, ranked_grid_size
from stgcn_pyg.viz.ranked_grid import BORDER, COLORS, GAP, MARGIN, QUERY_COLOR, CAPTION


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
