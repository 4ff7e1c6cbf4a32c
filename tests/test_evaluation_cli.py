"""`stgcn-pyg evaluate / extract / search` on a tiny synthetic set with a tiny untrained checkpoint."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch
from PIL import Image

from stgcn_pyg.cli import main
from stgcn_pyg.data import load_dataset
from stgcn_pyg.evaluation import TestOptions, read_descriptor_file
from stgcn_pyg.metrics import compute_distance, evaluate_rank, re_ranking


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_root, untrained_checkpoint):
    """A folder, the shared tiny synthetic set and an untrained checkpoint of the tiny run's model (conftest.py)."""
    tmp = tmp_path_factory.mktemp("evalcli")
    return tmp, tiny_root, untrained_checkpoint(tmp)


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long error lines


def test_extract_then_evaluate_features_round_trip(setup, capsys, monkeypatch):
    import stgcn_pyg.evaluation.evaluate as evaluate

    tmp, root, ckpt = setup
    feats = tmp / "feats.pt"
    code, out, _ = run(capsys, ["extract", "--checkpoint", str(ckpt), "--out", str(feats)])
    assert code == 0 and "descriptors" in out
    blob = torch.load(feats, weights_only=True)  # plain tensors and strings only
    ds = load_dataset("mars", root)
    assert blob["query_features"].shape[0] == len(ds.query) and blob["gallery_features"].shape[0] == len(ds.gallery)
    assert blob["query_pids"].tolist() == ds.query["pid"].tolist()
    assert blob["gallery_camids"].tolist() == ds.gallery["camid"].tolist()
    assert read_descriptor_file(feats)["protocol"] == "standard"

    code, out, _ = run(capsys, ["evaluate", "--features", str(feats), "--json"])
    assert code == 0
    res = json.loads(out)
    cmc, mAP, mINP = evaluate_rank(compute_distance(blob["query_features"], blob["gallery_features"]),
                                   blob["query_pids"], blob["gallery_pids"], blob["query_camids"],
                                   blob["gallery_camids"], max_rank=min(50, len(ds.gallery)), return_minp=True)
    assert res["rank1"] == pytest.approx(cmc[0] * 100) and res["mAP"] == pytest.approx(mAP * 100)
    assert res["mINP"] == pytest.approx(mINP * 100) and res["protocol"] == "standard"

    reranked = []
    monkeypatch.setattr(evaluate, "re_ranking", lambda *a, **k: reranked.append(1) or re_ranking(*a, **k))
    code, out, _ = run(capsys, ["evaluate", "--features", str(feats), "--rerank", "--metric", "cosine",
                                "--plots", str(tmp / "fplots"), "--num-grids", "1"])
    assert code == 0 and "rank-1" in out and "mINP" in out and "standard protocol" in out and "re-ranked" in out
    assert len(reranked) == 1  # the grids show the re-ranked distances that were scored
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


@pytest.mark.slow
def test_a_zero_byte_frame_is_skipped_with_one_plain_line(setup, tmp_path):
    """What a terminal shows: the message (and the count), not Python's source line of a warnings.warn."""
    import shutil
    import subprocess
    import sys

    _, root, ckpt = setup
    copy = shutil.copytree(root, tmp_path / "set")
    bad = load_dataset("mars", copy).query["frames"].iloc[0][1]
    open(bad, "wb").close()
    # --engine torch: the reading is what is tested, not an ONNX export (this one used to land in the user's
    # cache, a subprocess missing the in-process redirect; conftest.py now redirects the whole session)
    proc = subprocess.run([sys.executable, "-m", "stgcn_pyg", "evaluate", "--checkpoint", str(ckpt), "--root",
                           str(copy), "--mode", "all", "--engine", "torch"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr.splitlines()
    assert said and said[0].startswith(f"skipping a frame: corrupt or unsupported image file: {bad} ("), said
    assert all(ln.startswith(("skipping a frame: ", "skipped 1 unreadable frame(s)")) for ln in said), said


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
    # values the library defines (protocols, test modes, metrics), checked before any work
    code, _, err = run(capsys, ["evaluate", "--checkpoint", str(ckpt), "--mode", "every"])
    assert code == 2 and "--mode: 'every' is not one of all, evenly" in err
    code, _, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query-tracklet", "0", "--metric", "l1"])
    assert code == 2 and "--metric: 'l1' is not one of euclidean, cosine" in err


def _border_colour(grid_png, result: int):
    """Colour of the border of the ``result``-th ranked strip (0-based, first row) of a search grid."""
    from stgcn_pyg.viz import ranked_grid as rg

    h, w = 128, 64  # the grid's default frame size
    x0 = rg.MARGIN + result * (4 * w + 2 * rg.BORDER + rg.GAP)
    y0 = rg.MARGIN + rg.CAPTION + h + 2 * rg.BORDER + rg.GAP
    return Image.open(grid_png).convert("RGB").getpixel((x0 + 1, y0 + 1))


def test_search_reads_identities_from_mars_style_tracklet_folders(setup, capsys):
    """Tracklets copied into folders named like 0051C3T0002 are marked right/wrong against --query-pid."""
    from stgcn_pyg.viz.ranked_grid import COLORS

    tmp, root, ckpt = setup
    ds = load_dataset("mars", root)
    gdir = tmp / "named-tracks"
    for _, row in ds.gallery.iterrows():
        d = gdir / row["tracklet"]
        d.mkdir(parents=True)
        for i, f in enumerate(row["frames"]):
            Image.open(f).save(d / f"{i:03d}.png")  # plain frame names: the identity is in the folder name
    q = ds.query.iloc[0]
    qdir = tmp / "named-query"
    qdir.mkdir()
    for i, f in enumerate(q["frames"]):
        Image.open(f).save(qdir / f"{i:03d}.png")
    grid = tmp / "named.png"
    k = len(ds.gallery)
    code, out, _ = run(capsys, ["search", "--checkpoint", str(ckpt), "--query", str(qdir), "--gallery", str(gdir),
                                "--query-pid", str(q["pid"]), "--topk", str(k), "--grid", str(grid), "--json"])
    assert code == 0
    res = json.loads(out)
    by_name = ds.gallery.set_index("tracklet")
    for r in res["results"]:
        assert r["pid"] == by_name.loc[r["tracklet"], "pid"] and r["camid"] == by_name.loc[r["tracklet"], "camid"]
        assert r["match"] == (r["pid"] == q["pid"])
    assert any(r["match"] for r in res["results"]) and not all(r["match"] for r in res["results"])
    for i, r in enumerate(res["results"][:min(k, 5)]):  # first row of the grid
        assert _border_colour(grid, i) == COLORS[r["match"]]


def test_search_groups_a_mars_folder_into_tracklets_and_never_matches_the_query_itself(setup, capsys):
    tmp, root, ckpt = setup
    ds = load_dataset("mars", root, protocol="official")  # every test tracklet, as in bbox_test
    bbox_test = root / "mars" / "bbox_test"
    pid = int(ds.query["pid"].iloc[0])
    own = ds.gallery[ds.gallery["pid"] == pid]
    assert len(own) > 1
    # A pid folder holds several tracklets: the query must be picked, not silently merged.
    code, _, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query", str(bbox_test / f"{pid:04d}"),
                                "--gallery", str(bbox_test)])
    assert code == 2 and f"holds {len(own)} tracklets" in err and "--query-tracklet" in err
    name = str(own["tracklet"].iloc[0])
    code, out, _ = run(capsys, ["search", "--checkpoint", str(ckpt), "--query", str(bbox_test / f"{pid:04d}"),
                                "--query-tracklet", name, "--gallery", str(bbox_test), "--topk", "100", "--json"])
    assert code == 0
    res = json.loads(out)
    assert res["query"] == name and res["query_pid"] == pid and res["excluded"] == [name]
    names = [r["tracklet"] for r in res["results"]]
    # every other test tracklet, once, with its own identity; the query itself is not among them
    assert sorted(names) == sorted(t for t in ds.gallery["tracklet"] if t != name)
    assert all(r["distance"] > 0 for r in res["results"])
    assert all(r["match"] == (r["pid"] == pid) for r in res["results"])


def test_search_dataset_query_tracklet_against_its_gallery(setup, capsys):
    tmp, root, ckpt = setup
    ds = load_dataset("mars", root)
    q = ds.query.iloc[1]
    code, out, _ = run(capsys, ["search", "--checkpoint", str(ckpt), "--query-tracklet", q["tracklet"],
                                "--topk", "3", "--json"])
    assert code == 0
    res = json.loads(out)
    assert res["query"] == q["tracklet"] and res["query_pid"] == q["pid"] and res["mode"] == "all"
    gallery = ds.gallery.set_index("tracklet")
    assert all(r["match"] == (gallery.loc[r["tracklet"], "pid"] == q["pid"]) for r in res["results"])
    code, _, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query-tracklet", "9999"])
    assert code == 2 and f"has rows 0..{len(ds.query) - 1}" in err
    # A name of the other split says so, and lists names that work.
    elsewhere = next(t for t in ds.gallery["tracklet"] if t not in set(ds.query["tracklet"]))
    code, _, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query-tracklet", elsewhere])
    assert code == 2 and f"--query-tracklet {elsewhere}: that is a tracklet of the synthetic gallery split;" in err
    assert f"takes one of the synthetic query split ({', '.join(ds.query['tracklet'].head(5))}" in err
    code, _, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query-tracklet", "0999C1T0001"])
    assert code == 2 and "0999C1T0001: no such tracklet in the synthetic query split (e.g." in err
    code, _, err = run(capsys, ["search", "--checkpoint", str(ckpt)])
    assert code == 2 and "--query-tracklet" in err


def test_search_with_unknown_identities_draws_neutral_borders_and_says_so(setup, capsys):
    from stgcn_pyg.viz.ranked_grid import COLORS

    tmp, root, ckpt = setup
    ds = load_dataset("mars", root)
    # plain frame and folder names, and no --query-pid: nobody's identity is known
    for name, frames in [("neutral-q/frames", ds.query["frames"].iloc[0])] + [
            (f"neutral-g/person{t}", ds.gallery["frames"].iloc[t]) for t in range(2)]:
        (tmp / name).mkdir(parents=True)
        for i, f in enumerate(frames):
            Image.open(f).save(tmp / name / f"img{i}.png")
    grid = tmp / "neutral.png"
    code, out, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query", str(tmp / "neutral-q"),
                                  "--gallery", str(tmp / "neutral-g"), "--topk", "2", "--grid", str(grid)])
    assert code == 0 and "not marked right or wrong" in out
    assert _border_colour(grid, 0) == COLORS[None] and _border_colour(grid, 1) == COLORS[None]


def test_evaluate_default_mode_is_dense_and_said(setup, capsys):
    """The checkpoint was trained with eval.mode=evenly; `evaluate` defaults to the documented dense mode."""
    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.evaluation import evaluate_model

    tmp, root, ckpt = setup
    code, out, _ = run(capsys, ["evaluate", "--checkpoint", str(ckpt), "--json"])
    assert code == 0
    res = json.loads(out)
    model, cfg = load_checkpoint(ckpt)
    assert cfg.eval.mode == "evenly" and res["mode"] == "all"
    dense = evaluate_model(model, load_dataset("mars", root), TestOptions.from_config(cfg, mode="all", progress=False))
    assert res["mAP"] == pytest.approx(dense["mAP"]) and res["rank1"] == pytest.approx(dense["rank1"])
    code, out, _ = run(capsys, ["evaluate", "--checkpoint", str(ckpt)])
    assert code == 0 and "mode all: every frame, clips of 2" in out
    code, out, _ = run(capsys, ["evaluate", "--checkpoint", str(ckpt), "--mode", "evenly"])
    assert code == 0 and "mode evenly: one clip of 2 evenly spaced frames" in out


def test_commands_print_no_leading_blank_lines_and_do_not_wrap_in_logs(setup, capsys):
    """Progress bars are for terminals: in a log they used to leave blank lines before the output.
    And a log gets long lines whole (they were cut at 80 columns)."""
    tmp, root, ckpt = setup
    far = tmp / "a-folder-with-a-name-long-enough-to-push-the-line-past-eighty-columns"
    for argv in (["evaluate", "--checkpoint", str(ckpt), "--plots", str(far / "plots"), "--num-grids", "1"],
                 ["extract", "--checkpoint", str(ckpt), "--out", str(far / "blank.pt")],
                 ["search", "--checkpoint", str(ckpt), "--query-tracklet", "0", "--topk", "2"],
                 ["synth", "--out", str(far / "synth"), "--num-ids", "2", "--num-cameras", "2", "--min-frames", "1",
                  "--max-frames", "1", "--height", "32", "--width", "16", "--workers", "1"]):
        code = main(argv)
        out = capsys.readouterr().out
        assert code == 0 and out.strip() and out.splitlines()[0].strip(), (argv, out[:200])
        assert any(str(far) in line for line in out.splitlines()) or argv[0] == "search", (argv, out)
        assert not re.search(r"━ *\d+/\d+", out), (argv, out)  # no progress bar's last state


def _table(out: str) -> dict:
    """The scores of the last results table printed in ``out`` (rank-1 ... mINP, as shown)."""
    return dict(re.findall(r"(rank-\d+|mAP|mINP)\s*│\s*(\S+)", out))


@pytest.mark.slow
def test_evaluate_scores_in_fp32_on_an_amx_cpu_and_extract_says_what_it_ran(
        tiny_root, tiny_overrides, tmp_path, capsys, monkeypatch):
    """On a CPU with AMX the fastest setting is bf16; `evaluate` must still give the run's own table (fp32)."""
    from stgcn_pyg.deploy import inference, inference_settings

    monkeypatch.setattr(inference, "cpu_has_amx", lambda: True)  # the AMX branch of the capability check
    assert inference_settings("cpu").precision == "bf16"
    out = tmp_path / "run"
    argv = ["train", "--epochs", "1", "--output", str(out), "--no-progress", "--set", f'data.root="{tiny_root}"']
    for s in tiny_overrides:
        argv += ["--set", s]
    assert main(argv) == 0
    trained = _table(capsys.readouterr().out)
    assert set(trained) == {"rank-1", "rank-5", "rank-10", "rank-20", "mAP", "mINP"}
    ckpt = out / "last.pt"
    # the run evaluates in its config's eval.mode (evenly in the tiny run), as the README's command does
    # (the default engine: onnxruntime where the export extra is installed, which must give torch's table)
    code, printed, _ = run(capsys, ["evaluate", "--checkpoint", str(ckpt), "--mode", "evenly"])
    assert code == 0 and _table(printed) == trained
    heading = next(line for line in printed.splitlines() if line.startswith("last.pt on synthetic"))
    assert re.search(r", fp32 in (onnxruntime|torch)\)$", heading) and "bf16" not in printed
    code, printed, _ = run(capsys, ["evaluate", "--checkpoint", str(ckpt), "--mode", "evenly", "--json"])
    scores = json.loads(printed)
    assert code == 0 and scores["precision"] == "fp32"
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert scores[key] == pytest.approx(float(rows[-1][key]), abs=1e-3), key
    # bf16 when asked
    code, printed, _ = run(capsys, ["evaluate", "--checkpoint", str(ckpt), "--mode", "evenly", "--precision", "bf16"])
    assert code == 0 and "bf16 autocast in torch" in printed.splitlines()[0]

    # extract keeps the fastest setting, says so in one line, and the file remembers it
    feats = tmp_path / "feats.pt"
    code, printed, _ = run(capsys, ["extract", "--checkpoint", str(ckpt), "--out", str(feats)])
    said = [line for line in printed.splitlines() if line.startswith("descriptors in")]
    assert code == 0 and said == ["descriptors in torch, channels_last, bf16 autocast (--engine auto: the onnxruntime "
                                  "engine runs fp32, not bf16; --precision auto: the fastest measured on a CPU with AMX)"]
    assert read_descriptor_file(feats)["precision"] == "bf16"
    code, printed, _ = run(capsys, ["evaluate", "--features", str(feats)])
    assert code == 0 and printed.splitlines()[0].endswith(", bf16 autocast in torch)")
    code, printed, err = run(capsys, ["search", "--checkpoint", str(ckpt), "--query-tracklet", "0", "--topk", "2",
                                      "--json"])
    assert code == 0 and json.loads(printed)["precision"] == "bf16" and "bf16 autocast" in err
