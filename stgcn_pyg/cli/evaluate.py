"""`stgcn-pyg evaluate`, `stgcn-pyg extract` and `stgcn-pyg search`.

- evaluate: rank-1/5/10/20, mAP and mINP of a checkpoint on a dataset's
  query/gallery split (or of saved descriptors), as a table or JSON, with
  optional re-ranking and pictures.
- extract: write the query and gallery descriptors with their pids and
  cameras to one file (``torch.save`` of tensors, loadable with
  ``weights_only=True``) that ``evaluate --features`` reads back.
- search: rank a gallery (a dataset split or a folder of tracklet folders)
  for one query tracklet folder.

The work is the library's (stgcn_pyg.evaluation, stgcn_pyg.viz); this module
reads the flags and prints. Heavy imports (torch models, the checkpoint
loader) happen inside the commands so that ``stgcn-pyg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Old names, now stgcn_pyg.evaluation.descriptor_file's (imported on first use: --help stays fast).
_MOVED = {"FEATURES_FORMAT": "DESCRIPTOR_FILE_FORMAT", "read_features": "read_descriptor_file"}


def __getattr__(name: str):
    if name in _MOVED:
        from ..evaluation import descriptor_file

        return getattr(descriptor_file, _MOVED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- parser
# --protocol, --mode, --metric and --precision are checked against their modules' values when a command
# runs (_check_choices), not by argparse: importing those modules would make `--help` take seconds.
def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="mars, dukemtmc-videoreid, ilids-vid, prid2011, folder or synthetic "
                        "(default: the checkpoint's training dataset)")
    p.add_argument("--root", default=None, help="dataset folder (default: the checkpoint's)")
    p.add_argument("--protocol", default=None,
                   help="evaluation protocol, standard or official (default: the checkpoint's, else standard)")
    p.add_argument("--mode", default="all",
                   help="all (default): every frame, in consecutive clips of --seq-len, averaged (dense); "
                        "evenly: one clip of evenly spaced frames per tracklet (what `train` reports by default "
                        "on the synthetic set)")
    p.add_argument("--seq-len", type=int, default=None, help="frames per test clip (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per forward pass (default: the config's eval.batch_size; 0 = auto, fastest measured on the device)")
    p.add_argument("--num-workers", type=int, default=None, help="data loader processes")
    p.add_argument("--flip", action="store_true", help="flip test: average with horizontally flipped clips")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--precision", default="auto",
                   help="auto (default): the fastest measured setting for the device (stgcn_pyg.deploy.inference); "
                        "fp32 or bf16")


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
    ev.add_argument("--metric", default=None, help="distance: euclidean (default) or cosine")
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
                    help="the query: a row number or tracklet name (e.g. 0051C3T0001) of the dataset's query "
                         "split, or of the --query folder's tracklets")
    se.add_argument("--gallery", default=None, metavar="DIR",
                    help="a folder of frames or of tracklet folders (default: the dataset's --split)")
    se.add_argument("--split", default="gallery", choices=["gallery", "query", "train"],
                    help="dataset split to search when there is no --gallery (default gallery)")
    se.add_argument("--query-pid", type=int, default=None,
                    help="the query's identity when its names do not say, to mark right (green) and wrong (red) "
                         "results")
    se.add_argument("--topk", type=int, default=10)
    se.add_argument("--metric", default=None, help="distance: euclidean (default) or cosine")
    se.add_argument("--grid", default=None, metavar="PNG", help="write the ranked-results grid here")
    se.add_argument("--json", action="store_true", help="print the ranking as JSON")
    _model_options(se)
    se.set_defaults(func=_search)


# --------------------------------------------------------------------------- helpers
def _check_choices(args) -> None:
    from ..data.loader import TEST_MODES
    from ..deploy import PRECISIONS
    from ..errors import ConfigError
    from ..metrics import METRICS, PROTOCOLS

    for flag, allowed in (("protocol", PROTOCOLS), ("mode", TEST_MODES), ("metric", METRICS),
                          ("precision", PRECISIONS)):
        value = getattr(args, flag, None)
        if value is not None and value not in allowed:
            raise ConfigError(f"--{flag}: {value!r} is not one of {', '.join(allowed)}")


def _load_model(args):
    """The model (eval mode, on the device), its config, and the test options of the config and the flags."""
    from ..deploy import load_model_file, prepare_for_inference
    from ..distributed import resolve_device
    from ..evaluation import TestOptions

    device = resolve_device(args.device, option="--device")
    model, cfg = load_model_file(args.checkpoint, map_location="cpu")
    model = prepare_for_inference(model, device, args.precision)
    options = TestOptions.from_config(
        cfg, seq_len=args.seq_len, batch_size=args.batch_size, num_workers=args.num_workers, flip=args.flip,
        mode=args.mode,  # the documented default (all), not the checkpoint's eval.mode: say which ran
        device=device, progress=not getattr(args, "json", False))
    return model, cfg, options


def _test_dataset(cfg, args):
    """The checkpoint's dataset, or the one the flags name (the checkpoint's root only for its own dataset)."""
    from dataclasses import replace

    from ..data import load_configured_dataset

    data = cfg.data
    if args.dataset and args.dataset != data.dataset:
        data = replace(data, dataset=args.dataset, root="")
    data = replace(data, root=data.root if args.root is None else args.root, protocol=args.protocol or data.protocol)
    return load_configured_dataset(data, progress=not getattr(args, "json", False))


def _print_lines(console, lines) -> None:
    for line in lines:
        console.print(line, highlight=False, markup=False)


# --------------------------------------------------------------------------- commands
def _evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..evaluation import evaluate_dataset_descriptors, evaluate_descriptors, extract_query_gallery, print_results

    _check_choices(args)
    console = Console(stderr=args.json, soft_wrap=True)  # long paths stay on one line in logs
    model, ds, options = None, None, None
    if args.features:
        from ..distributed import resolve_device
        from ..evaluation.descriptor_file import descriptor_file_dataset, read_descriptor_file

        blob = read_descriptor_file(args.features)
        protocol = args.protocol or blob.get("protocol") or "standard"
        results, distmat = evaluate_descriptors(
            blob["query_features"], blob["gallery_features"], blob["query_pids"], blob["gallery_pids"],
            blob["query_camids"], blob["gallery_camids"], metric=args.metric or "euclidean", rerank=args.rerank,
            protocol=protocol, max_rank=args.max_rank, device=resolve_device(args.device, option="--device"),
            return_distances=True)
        title = f"descriptors {Path(args.features).name}"
        if args.plots:
            ds = descriptor_file_dataset(blob, protocol)  # the frames for the ranked-results grids
    else:
        model, cfg, options = _load_model(args)
        ds = _test_dataset(cfg, args)
        qf, gf = extract_query_gallery(model, ds, options)
        results, distmat = evaluate_dataset_descriptors(qf, gf, ds, options, metric=args.metric or cfg.eval.metric,
                                                        rerank=args.rerank, max_rank=args.max_rank,
                                                        return_distances=True)
        title = f"{Path(args.checkpoint).name} on {ds.name}"
    if args.plots:
        from ..viz import plot_evaluation

        written, notes = plot_evaluation(args.plots, results, distmat=distmat, dataset=ds, model=model,
                                         options=options, num_grids=args.num_grids, topk=args.topk)
        results["plots"] = [str(p) for p in written]
        _print_lines(console, notes)
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

    from ..evaluation import extract_query_gallery, write_descriptor_file

    _check_choices(args)
    model, cfg, options = _load_model(args)
    ds = _test_dataset(cfg, args)
    qf, gf = extract_query_gallery(model, ds, options)
    path = write_descriptor_file(args.out, qf, gf, ds, options)
    Console(soft_wrap=True).print(f"wrote {len(qf)} query and {len(gf)} gallery descriptors (dim {qf.shape[1]}, "
                    f"{ds.protocol} protocol) to {path}")
    return 0


def _search_tables(args, cfg):
    """``(query row as a one-row table, query source name, gallery table, gallery source name)``."""
    from ..data.datasets.scan import pick_tracklet, scan_tracklets

    ds = None

    def dataset():
        nonlocal ds
        if ds is None:
            ds = _test_dataset(cfg, args)
        return ds

    if args.query:
        queries, qsource = scan_tracklets(args.query, "query folder"), f"query folder {args.query}"
        others = {}
    else:
        queries, qsource = dataset().query.reset_index(drop=True), f"the {dataset().name} query split"
        others = {f"the {dataset().name} {split} split": getattr(dataset(), split) for split in ("gallery", "train")}
    query = queries.iloc[[pick_tracklet(queries, args.query_tracklet, qsource, others)]].reset_index(drop=True)
    if args.gallery:
        gallery, gsource = scan_tracklets(args.gallery, "gallery folder"), f"gallery folder {args.gallery}"
    else:
        gallery = getattr(dataset(), args.split).reset_index(drop=True)
        gsource = f"the {dataset().name} {args.split} split"
    return query, qsource, gallery, gsource


def _search(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..errors import ConfigError
    from ..evaluation import search_gallery

    _check_choices(args)
    if not args.query and args.query_tracklet is None:
        raise ConfigError("search: give the query as --query DIR (a folder of frames) or --query-tracklet ID "
                          "(a tracklet of the dataset's query split)")
    console = Console(stderr=args.json, soft_wrap=True)
    model, cfg, options = _load_model(args)
    query, qsource, gallery, gsource = _search_tables(args, cfg)
    metric = args.metric or cfg.eval.metric
    found = search_gallery(model, query, gallery, options, metric=metric, topk=args.topk,
                           query_pid=args.query_pid, gallery_source=gsource)
    rows = found.rows
    if args.grid:
        from ..viz import plot_ranked_results

        def caption(r):
            who = "" if r["pid"] is None else f" pid {r['pid']} c{r['camid']}"
            return f"#{r['rank']}{who} d={r['distance']:.3f}"

        who = "" if found.query_pid is None else (
            f", pid {found.query_pid}" + ("" if found.query_camid is None else f" c{found.query_camid}"))
        plot_ranked_results(query["frames"].iloc[0], found.ranked_frames, args.grid,
                            matches=[r["match"] for r in rows], captions=[caption(r) for r in rows],
                            query_caption=f"query {found.query}{who}")
    if args.json:
        json.dump({"query": found.query, "query_source": qsource, "query_pid": found.query_pid,
                   "gallery_source": gsource, "metric": metric, "mode": options.mode, "excluded": found.excluded,
                   "notes": found.notes, "results": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    who = "" if found.query_pid is None else f", pid {found.query_pid}"
    table = Table(title=f"top {len(rows)} of {found.num_gallery} tracklets of {gsource} for query {found.query}{who} "
                        f"({metric}, mode {options.mode})")
    for col in ("rank", "distance", "tracklet", "pid", "camera", "frames"):
        table.add_column(col, justify="left" if col == "tracklet" else "right")
    for r in rows:
        style = None if r["match"] is None else ("green" if r["match"] else "red")
        table.add_row(str(r["rank"]), f"{r['distance']:.4f}", r["tracklet"],
                      "-" if r["pid"] is None else str(r["pid"]), "-" if r["camid"] is None else str(r["camid"]),
                      str(r["num_frames"]), style=style)
    console.print(table)
    _print_lines(console, [f"note: {note}" for note in found.notes])
    if args.grid:
        console.print(f"grid: {args.grid}", highlight=False, markup=False)
    return 0
