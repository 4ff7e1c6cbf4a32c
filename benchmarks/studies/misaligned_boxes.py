"""The test-time boxes of `stgcn-pyg evaluate --misalign`: a picture, and how far they are from the true box.

    python benchmarks/studies/misaligned_boxes.py   # under a minute; the built-in synthetic set (generated on first use)

Writes benchmarks/studies/results/test_misalignment_examples.png (query tracklets of the synthetic set at shares
0.25, 0.5 and 1, misaligned frames framed in red) and test_misalignment_boxes.{csv,md}: over 100,000 seeded
draws of a box error, its IoU with the true box (`box_iou`) and the share of the frame's pixels that lie past
the crop (filled by repeating the crop's border), and the IoU at the bounds' worst corner. Never drawn from
real data: the picture uses the synthetic set only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.common import parse_no_options, to_markdown  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def outside_share(dx, dy, sx, sy):
    """Share of the output frame's pixels whose box position lies past the crop (box coordinates: the crop is
    the unit square), per draw: the box's width and height fractions outside [0, 1], combined."""
    def inside(centre, size):
        lo, hi = 0.5 + centre - size / 2, 0.5 + centre + size / 2
        return (np.minimum(hi, 1) - np.maximum(lo, 0)) / size

    return 1 - inside(dx, sx) * inside(dy, sy)


def box_table(draws: int = 100_000) -> pd.DataFrame:
    from stgcn_pyg.data.misalignment import (ASPECT_RANGE, MAX_SHIFT_X, MAX_SHIFT_Y, SCALE_RANGE, BoxMisalignment,
                                             box_iou, draw_misalignment)

    boxes = draw_misalignment(np.random.default_rng(0), draws)
    iou = np.array([box_iou(BoxMisalignment(*(float(v[i]) for v in boxes))) for i in range(draws)])
    out = outside_share(*boxes)
    # The worst corner: the largest shifts with the smallest box, squeezed or stretched, whichever is worse.
    a = np.sqrt(ASPECT_RANGE[1])
    corner = min(box_iou(BoxMisalignment(MAX_SHIFT_X, MAX_SHIFT_Y, SCALE_RANGE[0] * f, SCALE_RANGE[0] / f))
                 for f in (a, 1 / a))
    rows = [dict(measure="IoU with the true box", mean=iou.mean(), p10=np.percentile(iou, 10),
                 p90=np.percentile(iou, 90), worst=corner),
            dict(measure="share of the frame past the crop (border repeated)", mean=out.mean(),
                 p10=np.percentile(out, 10), p90=np.percentile(out, 90), worst=out.max())]
    return pd.DataFrame(rows).round(3)


def examples(path: Path, frames: int = 8, tracklets: int = 3) -> None:
    from benchmarks.studies.occluders import frame_grid
    from stgcn_pyg.data import TestMisalignment, load_dataset
    from stgcn_pyg.data.loader import load_tracklet_frames
    from stgcn_pyg.data.sampling import evenly

    query = load_dataset("synthetic").query
    long_enough = [r for r in range(len(query)) if len(query.frames.iloc[r]) >= frames][:tracklets]
    rows = []  # (label, images, misaligned flags)
    for share in (0.25, 0.5, 1.0):
        for r in long_enough[:1] if share != 0.5 else long_enough:
            paths = query.frames.iloc[r]
            idx = evenly(len(paths), frames)  # what mode evenly gives the model
            mis = TestMisalignment(share, seed=0, split="query")
            imgs, _ = load_tracklet_frames(paths, idx)
            affected = set(mis.affected(r, len(paths)))
            rows.append((f"row {r}, share {share:g}\n({len(paths)} frames, {len(affected)} misaligned)",
                         mis.apply(imgs, idx, r, len(paths)), [int(i) in affected for i in idx]))
    frame_grid(rows, path, "stgcn-pyg evaluate --misalign: query frames as the model sees them (red: misaligned box)")


def main() -> None:
    parse_no_options(__doc__)
    table = box_table()
    table.to_csv(RESULTS / "test_misalignment_boxes.csv", index=False)
    (RESULTS / "test_misalignment_boxes.md").write_text(
        "# How far a test-time box is from the true box\n\n"
        "Over 100,000 seeded draws of the box error of `stgcn-pyg evaluate --misalign` (`python "
        "benchmarks/studies/misaligned_boxes.py`): its IoU with the true box, and the share of the output "
        "frame that lies past the crop (filled by repeating the crop's border pixels); p10/p90: percentiles "
        "over the draws; worst: the bounds' worst corner for the IoU, the largest draw for the share past the "
        "crop.\n\n" + to_markdown(table) + "\n")
    examples(RESULTS / "test_misalignment_examples.png")
    print(to_markdown(table))


if __name__ == "__main__":
    main()
