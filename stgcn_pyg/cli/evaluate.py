"""`stgcn-pyg evaluate`, `stgcn-pyg extract` and `stgcn-pyg search`.

- evaluate: rank-1/5/10/20, mAP and mINP of a checkpoint on a dataset's
  query/gallery split (or of saved descriptors), as a table or JSON, with
  optional re-ranking and pictures.
- extract: write the query and gallery descriptors with their pids and
  cameras to one file (``torch.save`` of tensors, loadable with
  ``weights_only=True``) that ``evaluate --features`` reads back.
- search: rank a gallery (a dataset split or a folder of tracklet folders)
  for one query tracklet folder.

Heavy imports (torch models, the checkpoint loader) happen inside the
commands so that ``stgcn-pyg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FEATURES_FORMAT = "stgcn-pyg-descriptors/1"
_FEATURE_KEYS = ("query_features", "gallery_features", "query_pids", "query_camids", "gallery_pids", "gallery_camids")


# --------------------------------------------------------------------------- parser
def _model_options(p: argparse.ArgumentParser, *, dataset_required: bool = False) -> None:
    p.add_argument("--dataset", default=None,
                   help="mars, dukemtmc-videoreid, ilids-vid, prid2011, folder or synthetic "
                        "(default: the checkpoint's training dataset)")
    p.add_argument("--root", default=None, help="dataset folder (default: the checkpoint's)")
    p.add_argument("--protocol", default=None, choices=["standard", "official"],
                   help="evaluation protocol (default: the checkpoint's, else standard)")
    p.add_argument("--mode", default="all", choices=["all", "evenly"],
                   help="all (default): every frame, in consecutive clips of --seq-len, averaged (dense); "
                        "evenly: one clip of evenly spaced frames per tracklet (what `train` reports by default "
                        "on the synthetic set)")
    p.add_argument("--seq-len", type=int, default=None, help="frames per test clip (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per forward pass")
    p.add_argument("--num-workers", type=int, default=None, help="data loader processes")
    p.add_argument("--flip", action="store_true", help="flip test: average with horizontally flipped clips")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto (default): the fastest measured setting for the device (stgcn_pyg.deploy.inference)")


def register(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate", help="rank-k, mAP and mINP of a checkpoint (or saved descriptors)",
        description="Score a checkpoint on a dataset's query/gallery split, or descriptors saved by "
                    "`stgcn-pyg extract`. Prints rank-1/5/10/20, mAP and mINP and names the protocol.")
    src = ev.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", "--model", help="a checkpoint written by `stgcn-pyg train`, or a model "
                                                    "written by `stgcn-pyg export` (.onnx, .pt2)")
    src.add_argument("--features", help="a descriptor file written by `stgcn-pyg extract`")
    _model_options(ev)
    ev.add_argument("--metric", default=None, choices=["euclidean", "cosine"], help="distance (default euclidean)")
    ev.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    ev.add_argument("--max-rank", type=int, default=50, help="length of the CMC curve")
    ev.add_argument("--json", action="store_true", help="print the results as JSON (for scripts)")
    ev.add_argument("--plots", default=None, metavar="DIR",
                    help="write cmc.png, ranked-results grids and a temporal affinity heatmap here")
    ev.add_argument("--num-grids", type=int, default=4, help="queries drawn as ranked-results grids (with --plots)")
    ev.add_argument("--topk", type=int, default=10, help="gallery tracklets per ranked-results grid")
    ev.set_defaults(func=_evaluate)

    ex = subparsers.add_parser(
        "extract", help="write query/gallery descriptors with pids and cameras",
        description="Extract the descriptors of a dataset's query and gallery tracklets with a checkpoint "
                    "and save them (with pids and cameras) for `stgcn-pyg evaluate --features`.")
    ex.add_argument("--checkpoint", "--model", required=True, help="a checkpoint, or an exported .onnx/.pt2")
    ex.add_argument("--out", required=True, help="output file (.pt)")
    _model_options(ex)
    ex.set_defaults(func=_extract)

    se = subparsers.add_parser(
        "search", help="rank a gallery for one query tracklet",
        description="Rank gallery tracklets for one query tracklet with a checkpoint.\n\n"
                    "The query is a tracklet of the dataset's query split (--query-tracklet) or of a folder\n"
                    "of frames (--query); the gallery is a dataset split or a folder of frames (--gallery).\n"
                    "Frames named like MARS (0051C3T0002F001.jpg) or Duke (0001C6F0099X30823.jpg) are\n"
                    "grouped into their tracklets and give pid and camera, so results are marked right\n"
                    "(green) or wrong (red). A gallery tracklet holding the query's own frames is left out.",
        epilog="examples:\n"
               "  stgcn-pyg search --checkpoint runs/synthetic/last.pt --query-tracklet 0 --grid ranked.png\n"
               "  stgcn-pyg search --checkpoint runs/synthetic/last.pt --query DATA/mars/bbox_test/0051 "
               "--query-tracklet 0051C1T0001 --gallery DATA/mars/bbox_test",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    se.add_argument("--checkpoint", "--model", required=True, help="a checkpoint, or an exported .onnx/.pt2")
    se.add_argument("--query", default=None, metavar="DIR",
                    help="a folder with the query's frames (or several tracklets: pick one with --query-tracklet)")
    se.add_argument("--query-tracklet", default=None, metavar="ID",
                    help="the query: a row number or tracklet name (e.g. 0051C3T0002) of the dataset's query "
                         "split, or of the --query folder's tracklets")
    se.add_argument("--gallery", default=None, metavar="DIR",
                    help="a folder of frames or of tracklet folders (default: the dataset's --split)")
    se.add_argument("--split", default="gallery", choices=["gallery", "query", "train"],
                    help="dataset split to search when there is no --gallery (default gallery)")
    se.add_argument("--query-pid", type=int, default=None,
                    help="the query's identity when its names do not say, to mark right (green) and wrong (red) "
                         "results")
    se.add_argument("--topk", type=int, default=10)
    se.add_argument("--metric", default=None, choices=["euclidean", "cosine"])
    se.add_argument("--grid", default=None, metavar="PNG", help="write the ranked-results grid here")
    se.add_argument("--json", action="store_true", help="print the ranking as JSON")
    _model_options(se)
    se.set_defaults(func=_search)


# --------------------------------------------------------------------------- helpers
def _section(cfg: dict, name: str) -> dict:
    sec = cfg.get(name) if isinstance(cfg, dict) else None
    return sec if isinstance(sec, dict) else {}


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        from ..errors import ConfigError

        raise ConfigError(f"--device: unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return dev


def _load_model(args):
    """Model (eval mode, on the device) and the resolved options, from the checkpoint and the flags."""
    from ..deploy import load_model_file, prepare_for_inference

    device = _device(args.device)
    model, cfg = load_model_file(args.checkpoint, map_location="cpu")
    model = prepare_for_inference(model, device, args.precision)
    data, ev = _section(cfg, "data"), _section(cfg, "eval")
    trained_on = data.get("dataset") or "synthetic"
    dataset = args.dataset or trained_on
    if args.root is not None:
        root = args.root
    elif dataset == trained_on:  # the checkpoint's root only for the dataset it was trained on
        root = data.get("root") or None
    else:
        root = None
    opts = dict(
        dataset=dataset,
        root=root,
        protocol=args.protocol or data.get("protocol") or "standard",
        seq_len=args.seq_len or ev.get("seq_len") or data.get("seq_len") or 8,
        mode=args.mode,  # the documented default (all), not the checkpoint's eval.mode: say which ran
        image_size=tuple(data.get("image_size") or (256, 128)),
        batch_size=args.batch_size or ev.get("batch_size") or 32,
        num_workers=args.num_workers if args.num_workers is not None else (ev.get("num_workers") or 0),
        metric=getattr(args, "metric", None) or ev.get("metric") or "euclidean",
        device=device,
        flip=bool(args.flip),
    )
    return model, cfg, opts


def _load_dataset(name, root, protocol):
    from ..data import load_dataset

    return load_dataset(name, root, protocol=protocol)


def _extract_kwargs(opts: dict) -> dict:
    """The options of ``extract_split`` among the resolved ones."""
    return {k: opts[k] for k in ("seq_len", "mode", "image_size", "device", "batch_size", "num_workers", "flip")}


def _ids(df, col):
    from ..evaluation.evaluate import tracklet_ids

    return tracklet_ids(df, col)


def _extract_both(model, ds, opts, progress):
    from ..evaluation import extract_split

    common = _extract_kwargs(opts)
    qf = extract_split(model, ds.query, description="query descriptors", progress=progress, **common)
    gf = extract_split(model, ds.gallery, description="gallery descriptors", progress=progress, **common)
    return qf, gf


def read_features(path) -> dict:
    """Load a descriptor file written by ``stgcn-pyg extract`` (checked, weights_only)."""
    import torch

    from ..metrics.rank import EvaluationError

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"descriptor file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        from ..training.checkpoint import unreadable_reason

        raise EvaluationError(
            f"{path}: not a descriptor file written by `stgcn-pyg extract` ({unreadable_reason(exc)})"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FEATURES_FORMAT:
        raise EvaluationError(f"{path}: not a descriptor file written by `stgcn-pyg extract` (no {FEATURES_FORMAT!r} tag)")
    missing = [k for k in _FEATURE_KEYS if k not in blob]
    if missing:
        raise EvaluationError(f"{path}: descriptor file lacks {', '.join(missing)}")
    return blob


def write_features(path, qf, gf, ds, opts) -> Path:
    import torch

    from ..viz._common import prepare_path

    path = prepare_path(path)
    blob = {
        "format": FEATURES_FORMAT,
        "query_features": qf.float().contiguous(),
        "gallery_features": gf.float().contiguous(),
        "query_pids": _ids(ds.query, "pid"),
        "query_camids": _ids(ds.query, "camid"),
        "gallery_pids": _ids(ds.gallery, "pid"),
        "gallery_camids": _ids(ds.gallery, "camid"),
        "dataset": str(getattr(ds, "name", "")),
        "root": str(getattr(ds, "root", "")),
        "protocol": str(opts["protocol"]),
        "mode": str(opts["mode"]),
        "seq_len": int(opts["seq_len"]),
        "flip": bool(opts["flip"]),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def _kept_ranking(dist_row, q_pid, q_cam, g_pids, g_cams, protocol):
    """Gallery indices in distance order without the query's junk (same pid and camera; pid -1 officially)."""
    import torch

    order = torch.argsort(dist_row, stable=True)
    junk = (g_pids[order] == q_pid) & (g_cams[order] == q_cam)
    if protocol == "official":
        junk |= g_pids[order] == -1
    return order[~junk]


def _write_plots(out_dir, results, distmat, ds, model, opts, num_grids, topk, console):
    """cmc.png, query_XXXX.png grids and affinity.png under ``out_dir``."""
    from ..viz import plot_cmc, plot_ranked_results

    out_dir = Path(out_dir)
    written = [plot_cmc(results["cmc"], out_dir / "cmc.png",
                        title=f"CMC ({results['protocol']} protocol, {results['num_query']} queries)")]
    if ds is not None and distmat is not None:
        qp, qc = _ids(ds.query, "pid"), _ids(ds.query, "camid")
        gp, gc = _ids(ds.gallery, "pid"), _ids(ds.gallery, "camid")
        for qi in range(min(num_grids, len(ds.query))):
            order = _kept_ranking(distmat[qi].cpu(), qp[qi], qc[qi], gp, gc, results["protocol"])[:topk].tolist()
            written.append(plot_ranked_results(
                ds.query["frames"].iloc[qi],
                [ds.gallery["frames"].iloc[g] for g in order],
                out_dir / f"query_{qi:04d}.png",
                matches=[bool(gp[g] == qp[qi]) for g in order],
                captions=[f"#{r + 1} pid {int(gp[g])} c{int(gc[g])} d={float(distmat[qi, g]):.3f}"
                          for r, g in enumerate(order)],
                query_caption=f"query {qi}: pid {int(qp[qi])}, camera {int(qc[qi])}",
            ))
    if ds is not None and model is not None and hasattr(model, "temporal_affinity"):
        path = _affinity_plot(model, ds.query.iloc[[0]], opts, out_dir / "affinity.png", console)
        if path is not None:
            written.append(path)
    return written


def _affinity_plot(model, df, opts, path, console):
    import torch

    from ..data import build_test_loader
    from ..errors import ConfigError
    from ..viz import plot_affinity

    loader = build_test_loader(df, seq_len=opts["seq_len"], mode="evenly", image_size=opts["image_size"],
                               batch_size=1, num_workers=0)
    clips, _ = next(iter(loader))
    try:
        with torch.no_grad():
            weights = model.temporal_affinity(clips[:1].to(opts["device"]))
    except ConfigError as exc:  # a model without the temporal branch
        console.print(f"[yellow]no affinity plot:[/] {exc}")
        return None
    T = clips.size(1)
    P = weights.shape[-1] // T
    return plot_affinity(weights, list(clips[0]), P, path,
                         title=f"temporal affinity, query 0 (pid {int(df['pid'].iloc[0])})")


# --------------------------------------------------------------------------- commands
def _evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..evaluation import evaluate_descriptors, print_results

    console = Console(stderr=args.json)
    progress = not args.json
    model, ds, opts = None, None, {}
    if args.features:
        blob = read_features(args.features)
        qf, gf = blob["query_features"], blob["gallery_features"]
        q_pids, q_cams = blob["query_pids"], blob["query_camids"]
        g_pids, g_cams = blob["gallery_pids"], blob["gallery_camids"]
        protocol = args.protocol or blob.get("protocol") or "standard"
        metric = args.metric or "euclidean"
        device = _device(args.device)
        title = f"descriptors {Path(args.features).name}"
        if args.plots and blob.get("dataset") and blob.get("root"):
            try:  # frames for the ranked-results grids
                # the synthetic set is read back as the MARS-layout folder it was generated into
                name = "mars" if blob["dataset"] == "synthetic" else blob["dataset"]
                ds = _load_dataset(name, blob["root"], protocol)
                if len(ds.query) != len(qf) or len(ds.gallery) != len(gf):
                    ds = None
            except Exception:  # the dataset moved: draw the CMC curve only
                ds = None
    else:
        model, cfg, opts = _load_model(args)
        ds = _load_dataset(opts["dataset"], opts["root"], opts["protocol"])
        qf, gf = _extract_both(model, ds, opts, progress)
        q_pids, q_cams, g_pids, g_cams = (_ids(ds.query, "pid"), _ids(ds.query, "camid"),
                                          _ids(ds.gallery, "pid"), _ids(ds.gallery, "camid"))
        protocol, metric, device = opts["protocol"], opts["metric"], opts["device"]
        title = f"{Path(args.checkpoint).name} on {getattr(ds, 'name', opts['dataset'])}"
    results = evaluate_descriptors(
        qf, gf, q_pids, g_pids, q_cams, g_cams, metric=metric, rerank=args.rerank, protocol=protocol,
        max_rank=args.max_rank, device=device if device.type != "cpu" else None,
    )
    if opts:
        results.update(mode=opts["mode"], seq_len=opts["seq_len"], flip=opts["flip"],
                       dataset=getattr(ds, "name", None))
    if args.plots:
        from ..metrics import compute_distance, re_ranking

        distmat = None
        if ds is not None:
            distmat = re_ranking(qf, gf, metric=metric) if args.rerank else compute_distance(qf, gf, metric)
        written = _write_plots(args.plots, results, distmat, ds, model, opts or {"device": device},
                               args.num_grids, args.topk, console)
        results["plots"] = [str(p) for p in written]
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_results(results, title=title, console=console)
        if args.plots:
            console.print(f"pictures: {', '.join(results['plots'])}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from rich.console import Console

    model, cfg, opts = _load_model(args)
    ds = _load_dataset(opts["dataset"], opts["root"], opts["protocol"])
    qf, gf = _extract_both(model, ds, opts, progress=True)
    path = write_features(args.out, qf, gf, ds, opts)
    Console().print(f"wrote {len(qf)} query and {len(gf)} gallery descriptors (dim {qf.shape[1]}, "
                    f"{opts['protocol']} protocol) to {path}")
    return 0


def _pick_tracklet(table, choice: str | None, source: str):
    """Row of ``table`` named by ``choice`` (a row number or a tracklet name); the only row when None."""
    from ..errors import ConfigError

    if choice is None:
        if len(table) == 1:
            return 0
        names = ", ".join(table["tracklet"].head(5))
        raise ConfigError(f"{source} holds {len(table)} tracklets ({names}{', ...' if len(table) > 5 else ''}): "
                          "pick one with --query-tracklet NAME or --query-tracklet ROW")
    if choice.isdigit():
        row = int(choice)
        if row >= len(table):
            raise ConfigError(f"--query-tracklet {choice}: {source} has rows 0..{len(table) - 1}")
        return row
    hits = (table["tracklet"].astype(str) == choice).to_numpy().nonzero()[0]
    if not len(hits):
        names = ", ".join(table["tracklet"].head(5))
        raise ConfigError(f"--query-tracklet {choice}: no such tracklet in {source} (e.g. {names})")
    return int(hits[0])


def _search_tables(args, opts):
    """``(query row as a one-row table, query source name, gallery table, gallery source name)``."""
    import pandas as pd

    from ..data.datasets.scan import scan_tracklets

    ds = None

    def dataset():
        nonlocal ds
        if ds is None:
            ds = _load_dataset(opts["dataset"], opts["root"], opts["protocol"])
        return ds

    if args.query:
        queries, qsource = scan_tracklets(args.query, "query folder"), f"query folder {args.query}"
    else:
        queries, qsource = dataset().query.reset_index(drop=True), f"the {dataset().name} query split"
    query = queries.iloc[[_pick_tracklet(queries, args.query_tracklet, qsource)]].reset_index(drop=True)
    if args.gallery:
        gallery, gsource = scan_tracklets(args.gallery, "gallery folder"), f"gallery folder {args.gallery}"
    else:
        gallery = getattr(dataset(), args.split).reset_index(drop=True)
        gsource = f"the {dataset().name} {args.split} split"
    for table in (query, gallery):
        if "known" not in table.columns:  # dataset splits: identities come from the dataset's own tables
            table["known"] = True
    gallery["tracklet"] = gallery["tracklet"].astype(str)
    return query, qsource, pd.DataFrame(gallery), gsource


def _search(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from ..errors import ConfigError
    from ..evaluation import extract_split
    from ..metrics import compute_distance

    if not args.query and args.query_tracklet is None:
        raise ConfigError("search: give the query as --query DIR (a folder of frames) or --query-tracklet ID "
                          "(a tracklet of the dataset's query split)")
    console = Console(stderr=args.json, soft_wrap=True)
    model, cfg, opts = _load_model(args)
    query, qsource, gallery, gsource = _search_tables(args, opts)

    # Never let the query find itself: drop gallery tracklets that share frames with it.
    query_files = {str(Path(f).resolve()) for f in query["frames"].iloc[0]}
    itself = [bool(query_files.intersection(str(Path(f).resolve()) for f in frames)) for frames in gallery["frames"]]
    excluded = gallery.loc[itself, "tracklet"].tolist()
    gallery = gallery.loc[[not x for x in itself]].reset_index(drop=True)
    if not len(gallery):
        raise ConfigError(f"{gsource}: no gallery tracklet left once the query's own frames are left out")

    q_name = str(query["tracklet"].iloc[0])
    if args.query_pid is not None:
        q_pid, q_cam = args.query_pid, None
    elif bool(query["known"].iloc[0]):
        q_pid, q_cam = int(query["pid"].iloc[0]), int(query["camid"].iloc[0])
    else:
        q_pid, q_cam = None, None

    common = _extract_kwargs(opts)
    qf = extract_split(model, query, description="query", progress=not args.json, **common)
    gf = extract_split(model, gallery, description="gallery", progress=not args.json, **common)
    dist = compute_distance(qf, gf, opts["metric"])[0]
    k = min(args.topk, len(gallery))
    order = torch.argsort(dist, stable=True)[:k].tolist()

    def match(g):
        if q_pid is None or not bool(gallery["known"].iloc[g]):
            return None  # unknown identity: neither right nor wrong
        return int(gallery["pid"].iloc[g]) == q_pid

    rows = [{"rank": r + 1, "distance": float(dist[g]), "tracklet": str(gallery["tracklet"].iloc[g]),
             "pid": int(gallery["pid"].iloc[g]) if gallery["known"].iloc[g] else None,
             "camid": int(gallery["camid"].iloc[g]) if gallery["known"].iloc[g] else None,
             "num_frames": int(gallery["num_frames"].iloc[g]), "match": match(g)}
            for r, g in enumerate(order)]
    notes = []
    if excluded:
        notes.append(f"left out {len(excluded)} gallery tracklet(s) holding the query's own frames "
                     f"({', '.join(excluded[:3])})")
    if all(r["match"] is None for r in rows):
        why = ("the query's identity is unknown (no --query-pid, and its names are not MARS/Duke-style)"
               if q_pid is None else "the gallery's identities are unknown (no MARS/Duke-style names)")
        notes.append(f"{why}: results are not marked right or wrong")
    if args.grid:
        from ..viz import plot_ranked_results

        def caption(r):
            who = "" if r["pid"] is None else f" pid {r['pid']} c{r['camid']}"
            return f"#{r['rank']}{who} d={r['distance']:.3f}"

        who = "" if q_pid is None else f", pid {q_pid}" + ("" if q_cam is None else f" c{q_cam}")
        plot_ranked_results(query["frames"].iloc[0], [gallery["frames"].iloc[g] for g in order], args.grid,
                            matches=[r["match"] for r in rows], captions=[caption(r) for r in rows],
                            query_caption=f"query {q_name}{who}")
    if args.json:
        json.dump({"query": q_name, "query_source": qsource, "query_pid": q_pid, "gallery_source": gsource,
                   "metric": opts["metric"], "mode": opts["mode"], "excluded": excluded, "notes": notes,
                   "results": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    who = "" if q_pid is None else f", pid {q_pid}"
    table = Table(title=f"top {k} of {len(gallery)} tracklets of {gsource} for query {q_name}{who} "
                        f"({opts['metric']}, {opts['mode']} frames)")
    for col in ("rank", "distance", "tracklet", "pid", "camera", "frames"):
        table.add_column(col, justify="left" if col == "tracklet" else "right")
    for r in rows:
        style = None if r["match"] is None else ("green" if r["match"] else "red")
        table.add_row(str(r["rank"]), f"{r['distance']:.4f}", r["tracklet"],
                      "-" if r["pid"] is None else str(r["pid"]), "-" if r["camid"] is None else str(r["camid"]),
                      str(r["num_frames"]), style=style)
    console.print(table)
    for note in notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    if args.grid:
        console.print(f"grid: {args.grid}", highlight=False, markup=False)
    return 0
