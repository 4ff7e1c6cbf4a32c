"""`stgcn-pyg evaluate / extract / search` on a tiny synthetic set with a tiny untrained checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from stgcn_pyg.cli import main
from stgcn_pyg.cli.evaluate import read_features
from stgcn_pyg.data import ensure_synthetic, load_dataset
from stgcn_pyg.metrics import compute_distance, evaluate_rank

TINY = [
    "model.backbone=resnet18", "model.temporal_width=16", "model.spatial_width=16", "model.num_classes=4",
    "data.image_size=[64, 32]", "eval.seq_len=2", "eval.mode=evenly", "eval.batch_size=16",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 4-identity synthetic set and an untrained ResNet-18 STGCN checkpoint (weights: none)."""
    from stgcn_pyg.models import STGCN
    from stgcn_pyg.training.checkpoint import save_checkpoint
    from stgcn_pyg.training.config import config_to_dict, load_config

    tmp = tmp_path_factory.mktemp("evalcli")
    root = ensure_synthetic(tmp / "synth", num_ids=4, min_frames=4, max_frames=6, height=64, width=32,
                            progress=False)
    cfg = load_config("synthetic", TINY + [f'data.root="{root}"', "model.weights=none"])
    torch.manual_seed(0)
    model = STGCN(cfg.model).eval()
    ckpt = save_checkpoint(tmp / "tiny.pt", {"config": config_to_dict(cfg), "model": model.state_dict()})
    return tmp, root, ckpt


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long error lines


def test_extract_then_evaluate_features_round_trip(setup, capsys):
    tmp, root, ckpt = setup
    feats = tmp / "feats.pt"
    code, out, _ = run(capsys, ["extract", "--checkpoint", str(ckpt), "--out", str(feats)])
    assert code == 0 and "descriptors" in out
    blob = torch.load(feats, weights_only=True)  # plain tensors and strings only
    ds = load_dataset("mars", root)
    assert blob["query_features"].shape[0] == len(ds.query) and blob["gallery_features"].shape[0] == len(ds.gallery)
    assert blob["query_pids"].tolist() == ds.query["pid"].tolist()
    assert blob["gallery_camids"].tolist() == ds.gallery["camid"].tolist()
    assert read_features(feats)["protocol"] == "standard"

    code, out, _ = run(capsys, ["evaluate", "--features", str(feats), "--json"])
    assert code == 0
    res = json.loads(out)
    cmc, mAP, mINP = evaluate_rank(compute_distance(blob["query_features"], blob["gallery_features"]),
                                   blob["query_pids"], blob["gallery_pids"], blob["query_camids"],
                                   blob["gallery_camids"], max_rank=min(50, len(ds.gallery)), return_minp=True)
    assert res["rank1"] == pytest.approx(cmc[0] * 100) and res["mAP"] == pytest.approx(mAP * 100)
    assert res["mINP"] == pytest.approx(mINP * 100) and res["protocol"] == "standard"

    code, out, _ = run(capsys, ["evaluate", "--features", str(feats), "--rerank", "--metric", "cosine",
                                "--plots", str(tmp / "fplots"), "--num-grids", "1"])
    assert code == 0 and "rank-1" in out and "mINP" in out and "standard protocol" in out and "re-ranked" in out
    # the frames for the grid are found through the dataset recorded in the file
    assert {p.name for p in (tmp / "fplots").iterdir()} == {"cmc.png", "query_0000.png"}


def test_evaluate_checkpoint_table_and_plots(setup, capsys):
    tmp, root, ckpt = setup
    plots = tmp / "plots"
    code, out, _ = run(capsys, ["evaluate", "--checkpoint", str(ckpt), "--protocol", "official",
                                "--plots", str(plots), "--num-grids", "2", "--topk", "3"])
    assert code == 0
    for needle in ("rank-1", "rank-5", "rank-10", "rank-20", "mAP", "mINP", "official protocol"):
        assert needle in out
    names = {p.name for p in plots.iterdir()}
    assert {"cmc.png", "query_0000.png", "query_0001.png", "affinity.png"} <= names
    assert Image.open(plots / "cmc.png").size == (640, 480)
    assert Image.open(plots / "affinity.png").size == (1200, 560)


def test_search_folder_gallery(setup, capsys):
    tmp, root, ckpt = setup
    ds = load_dataset("mars", root)
    # a query folder and a gallery folder of tracklet folders, copied from the synthetic set
    qdir = tmp / "q"
    qdir.mkdir()
    for i, f in enumerate(ds.query["frames"].iloc[0]):
        Image.open(f).save(qdir / f"{i:03d}.png")
    gdir = tmp / "g"
    for t in range(3):
        d = gdir / f"track{t}"
        d.mkdir(parents=True)
        for i, f in enumerate(ds.gallery["frames"].iloc[t][:3]):
            Image.open(f).save(d / f"{i}.jpg")
    grid = tmp / "search.png"
    code, out, _ = run(capsys, ["search", "--checkpoint", str(ckpt), "--query", str(qdir), "--gallery", str(gdir),
                                "--topk", "2", "--grid", str(grid), "--json"])
    assert code == 0
    res = json.loads(out)
    assert [r["rank"] for r in res["results"]] == [1, 2]
    assert res["results"][0]["distance"] <= res["results"][1]["distance"]
    assert {r["tracklet"] for r in res["results"]} <= {"track0", "track1", "track2"}
    assert grid.is_file()


def test_cli_errors_are_one_line(setup, capsys, tmp_path):
    _, _, ckpt = setup
    code, _, err = run(capsys, ["evaluate", "--features", str(tmp_path / "nope.pt")])
    assert code == 2 and "descriptor file not found" in err and "Traceback" not in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    code, _, err = run(capsys, ["evaluate", "--features", str(bad)])
    assert code == 2 and "not a descriptor file" in err
    code, _, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query", str(tmp_path / "none")])
    assert code == 2 and "query folder not found" in err
