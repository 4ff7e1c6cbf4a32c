"""The test-time occluders of `stgcn-pyg evaluate --occlude`: a picture, and how much of the box they cover.

    python benchmarks/studies/occluders.py        # about a minute; the built-in synthetic set (generated on first use)

Writes benchmarks/studies/results/test_occlusion_examples.png (query tracklets of the synthetic set at shares 0.25,
0.5 and 0.75, and one tracklet per occluder kind at share 1) and test_occlusion_coverage.{csv,md}: per kind,
the share of the box's pixels the occluder changes, over 2,000 draws at each frame size (the synthetic set's
128x64 and MARS's 256x128), counted on a blank frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `benchmarks` is a package
from benchmarks.common import parse_no_options, to_markdown  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def coverage(sizes=((128, 64), (256, 128)), draws: int = 2000) -> pd.DataFrame:
    """Per kind and frame size: mean and 10th/90th percentiles of the share of pixels an occluder changes."""
    from stgcn_pyg.data.occlusion import OCCLUDER_KINDS, TestOcclusion

    rows = []
    for height, width in sizes:
        # Two blank frames of different grey: a pixel counts as covered if either changes (an occluder the
        # colour of one background still counts).
        blanks = [torch.full((3, height, width), v, dtype=torch.uint8) for v in (0, 255)]
        found = {k: [] for k in OCCLUDER_KINDS}
        occ = TestOcclusion(1.0, seed=0)
        for key in range(draws):
            kind = occ.plan(key, 1, height, width)["kind"]
            changed = torch.zeros(height, width, dtype=torch.bool)
            for blank in blanks:
                drawn = occ.apply([blank], [0], key, 1)[0]
                changed |= (drawn != blank).any(0)
            found[kind].append(changed.float().mean().item())
        for kind, shares in found.items():
            s = np.array(shares)
            rows.append(dict(frame=f"{height}x{width}", kind=kind, draws=len(s), mean=round(100 * s.mean(), 1),
                             p10=round(100 * np.percentile(s, 10), 1), p90=round(100 * np.percentile(s, 90), 1)))
    return pd.DataFrame(rows)


def examples(path: Path, tracklets: int = 3, frames: int = 8) -> None:
    from stgcn_pyg.data import load_dataset
    from stgcn_pyg.data.loader import load_tracklet_frames
    from stgcn_pyg.data.occlusion import OCCLUDER_KINDS, TestOcclusion
    from stgcn_pyg.data.sampling import evenly

    query = load_dataset("synthetic").query
    rows = []  # (label, images, occluded flags)
    long_enough = [r for r in range(len(query)) if len(query.frames.iloc[r]) >= frames][:tracklets]
    for share in (0.25, 0.5, 0.75):
        for r in long_enough[:1] if share != 0.5 else long_enough:
            paths = query.frames.iloc[r]
            idx = evenly(len(paths), frames)  # what mode evenly gives the model
            occ = TestOcclusion(share, seed=0)
            imgs, _ = load_tracklet_frames(paths, idx)
            run = occ.occluded(r, len(paths))
            rows.append((f"row {r}, share {share:g}\n({len(paths)} frames, {len(run)} occluded)",
                         occ.apply(imgs, idx, r, len(paths)), [int(i) in run for i in idx]))
    occ = TestOcclusion(1.0, seed=0)
    for kind in OCCLUDER_KINDS:  # the first query row whose occluder is of this kind
        r = next(r for r in range(len(query)) if occ.plan(r, 1, 1, 1)["kind"] == kind)
        paths = query.frames.iloc[r]
        idx = evenly(len(paths), frames)
        imgs, _ = load_tracklet_frames(paths, idx)
        rows.append((f"{kind} (row {r}, share 1)", occ.apply(imgs, idx, r, len(paths)), [True] * len(idx)))
    frame_grid(rows, path, "stgcn-pyg evaluate --occlude: query frames as the model sees them (red: occluded frame)")


def frame_grid(rows: list, path: Path, title: str) -> None:
    """A PNG of tracklets, one a row: ``rows`` of (label, uint8 frames [3, H, W], flags); a flagged frame (one
    the perturbation changed) is framed in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = max(len(imgs) for _, imgs, _ in rows)
    fig, axes = plt.subplots(len(rows), frames, figsize=(frames * 0.9, len(rows) * 1.75), squeeze=False)
    for ax_row, (label, imgs, flags) in zip(axes, rows):
        for ax, img, flag in zip(ax_row, imgs, flags):
            ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_color("red" if flag else "lightgrey")
                side.set_linewidth(2 if flag else 1)
        ax_row[0].set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parse_no_options(__doc__)
    table = coverage()
    table.to_csv(RESULTS / "test_occlusion_coverage.csv", index=False)
    (RESULTS / "test_occlusion_coverage.md").write_text(
        "# How much of the box a test-time occluder covers\n\n"
        "Share of a frame's pixels (%) the occluder of `stgcn-pyg evaluate --occlude` changes, over 2,000 "
        "seeded draws per frame size (`python benchmarks/studies/occluders.py`); p10/p90: percentiles over the draws "
        "of that kind.\n\n" + to_markdown(table) + "\n")
    examples(RESULTS / "test_occlusion_examples.png")
    print(to_markdown(table))


if __name__ == "__main__":
    main()
