"""`stgcn-pyg evaluate` (rank-k, mAP and mINP of a model or of saved descriptors), `extract` (the descriptor
file) and `search` (one query against a gallery).

The work is the library's (stgcn_pyg.evaluation, stgcn_pyg.deploy, stgcn_pyg.viz); this module reads the
flags and prints. Heavy imports happen inside the commands so that ``stgcn-pyg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..outputs import check_output_file, check_output_folder


# --------------------------------------------------------------------------- parser
# --protocol, --mode, --metric, --precision and --engine are checked against their modules' values when a
# command runs (_check_choices), not by argparse: importing those modules would make `--help` take seconds.
def _model_options(p: argparse.ArgumentParser, precision: str = "auto") -> None:
    p.add_argument("--dataset", default=None,
                   help="mars, dukemtmc-videoreid, ilids-vid, prid2011, folder or synthetic "
                        "(default: the checkpoint's training dataset)")
    p.add_argument("--root", default=None, help="dataset folder (default: the checkpoint's)")
    p.add_argument("--protocol", default=None,
                   help="evaluation protocol, standard or official (default: the checkpoint's, else standard)")
    p.add_argument("--mode", default="all",
                   help="all (default): every frame, in consecutive clips of --seq-len, averaged (dense); "
                        "evenly: one clip of evenly spaced frames per tracklet (what `train` reports by default "
                        "on the synthetic set); strided: every frame, in clips that each span the tracklet "
                        "as training's do")
    p.add_argument("--seq-len", type=int, default=None, help="frames per test clip (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per forward pass (default: the config's eval.batch_size; 0 = auto, fastest measured on the device)")
    p.add_argument("--num-workers", type=int, default=None, help="data loader processes")
    p.add_argument("--flip", action="store_true", help="flip test: average with horizontally flipped clips")
    p.add_argument("--branches", default=None, metavar="NAMES",
                   help="describe each tracklet by these branches' slices of f_all only, comma-separated (e.g. "
                        "temporal); default: the whole f_all, the paper's descriptor")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    fastest = "auto: the fastest measured setting for the device (bf16 autocast on a CPU with AMX)"
    choices = (f"fp32 (default: scores that do not depend on the CPU), bf16, or {fastest}" if precision == "fp32"
               else f"{fastest} (default; the command says which ran), fp32 or bf16")
    p.add_argument("--precision", default=precision, help=choices)
    p.add_argument("--engine", default="auto",
                   help="auto (default): onnxruntime when installed (the export extra), on the CPU in fp32 (the "
                        "checkpoint exported once to the cache $STGCN_PYG_CACHE/onnx, default "
                        "~/.cache/stgcn-pyg/onnx, and checked against torch on the first batch), else torch; torch; "
                        "or onnxruntime (an error where it cannot run). The command says which ran")


def _perturbation_options(p: argparse.ArgumentParser) -> None:
    """The test-time perturbations (robustness tests; stgcn_pyg.data.perturbation), the same on evaluate,
    extract and search."""
    p.add_argument("--occlude", default=None, metavar="SHARE",
                   help="robustness test: draw an occluder (a pole, a parked car or a passer-by) into SHARE "
                        "(0 to 1) of every query tracklet's frames, one contiguous run, before the transform "
                        "(docs/evaluation.md shows them)")
    p.add_argument("--occlude-gallery", action="store_true", help="with --occlude: occlude the gallery too")
    p.add_argument("--misalign", default=None, metavar="SHARE",
                   help="robustness test: shift and scale the box of SHARE (0 to 1) of every query tracklet's "
                        "frames, scattered, as an imperfect detector would (centre up to 15 %% of the width and "
                        "10 %% of the height off, size x0.8 to x1.25), before the transform and before "
                        "--occlude's occluder (docs/evaluation.md)")
    p.add_argument("--misalign-gallery", action="store_true", help="with --misalign: misalign the gallery too")
    p.add_argument("--seed", type=int, default=0,
                   help="with --occlude or --misalign: which frames, occluders and boxes (the same pixels in "
                        "every run; default 0)")


def _perturbation_settings(args) -> dict:
    """The TestOptions fields of the --occlude and --misalign flags (shares checked), {} for none.

    Raises:
        ConfigError: a share that is not a number in [0, 1], or --X-gallery without --X.
    """
    from ..data.misalignment import TestMisalignment
    from ..data.occlusion import TestOcclusion
    from ..data.perturbation import check_share
    from ..errors import ConfigError

    settings = {}
    for kind in (TestOcclusion, TestMisalignment):
        name = kind.OPTION[2:]
        share, gallery = getattr(args, name, None), getattr(args, f"{name}_gallery", False)
        if gallery and share is None:
            raise ConfigError(f"{kind.OPTION}-gallery: give the share to {kind.VERB} with {kind.OPTION} SHARE")
        if share is not None:
            settings.update({name: check_share(share, kind.OPTION, kind.VERB), f"{name}_gallery": gallery,
                             f"{name}_seed": args.seed})
    return settings


def register(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate", help="rank-k, mAP and mINP of a checkpoint (or saved descriptors)",
        description="Score a checkpoint on a dataset's query/gallery split, or descriptors saved by "
                    "`stgcn-pyg extract`. Prints rank-1/5/10/20, mAP and mINP and names the protocol and the "
                    "precision (fp32 unless asked) and the engine (onnxruntime or torch).")
    src = ev.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", "--model", help="a checkpoint written by `stgcn-pyg train`, or a model "
                                                    "written by `stgcn-pyg export` (.onnx, .pt2)")
    src.add_argument("--features", help="a descriptor file written by `stgcn-pyg extract`")
    _model_options(ev, precision="fp32")
    ev.add_argument("--metric", default=None, help="distance: euclidean (default) or cosine")
    ev.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    ev.add_argument("--max-rank", type=int, default=50, help="length of the CMC curve")
    ev.add_argument("--json", action="store_true", help="print the results as JSON (for scripts)")
    ev.add_argument("--plots", default=None, metavar="DIR",
                    help="write cmc.png, ranked-results grids and a temporal affinity heatmap here")
    ev.add_argument("--num-grids", type=int, default=4, help="queries drawn as ranked-results grids (with --plots)")
    ev.add_argument("--topk", type=int, default=10, help="gallery tracklets per ranked-results grid")
    _perturbation_options(ev)
    ev.set_defaults(func=_evaluate)

    ex = subparsers.add_parser(
        "extract", help="write query/gallery descriptors with pids and cameras",
        description="Extract the descriptors of a dataset's query and gallery tracklets with a checkpoint "
                    "and save them (with pids and cameras) for `stgcn-pyg evaluate --features`.")
    ex.add_argument("--checkpoint", "--model", required=True, help="a checkpoint, or an exported .onnx/.pt2")
    ex.add_argument("--out", required=True, help="output file (.pt)")
    _model_options(ex)
    _perturbation_options(ex)
    ex.set_defaults(func=_extract)

    se = subparsers.add_parser(
        "search", help="rank a gallery for one query tracklet",
        description="Rank gallery tracklets for one query tracklet with a checkpoint.\n\n"
                    "The query is a tracklet of the dataset's query split (--query-tracklet) or of a folder\n"
                    "of frames (--query); the gallery is a dataset split or a folder of frames (--gallery).\n"
                    "Frames named like MARS (0051C3T0002F001.jpg) or Duke (0001C6F0099X30823.jpg) are\n"
                    "grouped into their tracklets and give pid and camera, so results are marked right\n"
                    "(green) or wrong (red). A gallery tracklet holding the query's own frames, or copies of\n"
                    "them (same file names and bytes, in another folder), is left out. Tracklets of the\n"
                    "query's identity from its own camera stay, and a note names them: evaluate's protocols\n"
                    "ignore them; --cross-camera leaves them out here too.",
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
    se.add_argument("--cross-camera", action="store_true",
                    help="leave out the query identity's tracklets from the query's own camera, as evaluate's "
                         "protocols do (default: keep them, marked in a note and as same_camera in --json)")
    se.add_argument("--topk", type=int, default=10, help="gallery tracklets to list, best first (default 10)")
    se.add_argument("--metric", default=None, help="distance: euclidean (default) or cosine")
    se.add_argument("--grid", default=None, metavar="PNG", help="write the ranked-results grid here")
    se.add_argument("--json", action="store_true", help="print the ranking as JSON")
    _model_options(se)
    _perturbation_options(se)
    se.set_defaults(func=_search)


# --------------------------------------------------------------------------- helpers
# The integer flags and their least values, checked before anything is loaded (a zero once divided by zero deep
# in the loader, or failed only after the extraction).
_LEAST = {"seq_len": 1, "batch_size": 0, "num_workers": 0, "seed": 0, "max_rank": 1, "topk": 1, "num_grids": 0}


def _check_choices(args) -> None:
    from ..data.loader import TEST_MODES
    from ..deploy import ENGINES, PRECISIONS
    from ..errors import ConfigError
    from ..metrics import METRICS, PROTOCOLS

    for flag, allowed in (("protocol", PROTOCOLS), ("mode", TEST_MODES), ("metric", METRICS),
                          ("precision", PRECISIONS), ("engine", ENGINES)):
        value = getattr(args, flag, None)
        if value is not None and value not in allowed:
            raise ConfigError(f"--{flag}: {value!r} is not one of {', '.join(allowed)}")
    branches = getattr(args, "branches", None)
    if branches is not None and not any(b.strip() for b in branches.split(",")):
        raise ConfigError(f"--branches: no branch named in {branches!r}: name one or more of the model's branches, "
                          "comma-separated (e.g. temporal), or leave out --branches for the whole descriptor")
    for name, least in _LEAST.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            raise ConfigError(f"--{name.replace('_', '-')}: must be {'at least 1' if least else '>= 0'}, got {value}")


def load_model_from_args(args, console=None, describe: bool = True):
    """The model (eval mode, on the device, in its engine), its config, and the test options of the config and
    the flags: what `extract`, `search` and `evaluate` run (benchmarks/speed/inference.py times it as "default").
    With a ``console``: lines there on exports into the cache and fallbacks to torch, and with ``describe``
    one on the engine and setting the model runs in."""
    from ..deploy import describe_inference, load_for_inference
    from ..distributed import resolve_device
    from ..evaluation import TestOptions

    device = resolve_device(args.device, option="--device")
    log = None if console is None else (lambda line: _print_lines(console, [line]))
    branches = tuple(b.strip() for b in (args.branches or "").split(",") if b.strip())
    model, cfg = load_for_inference(args.checkpoint, device, args.precision, args.engine, seq_len=args.seq_len,
                                    branches=branches, log=log)  # a bad branch name fails before any export
    if console is not None and describe:
        _print_lines(console, [describe_inference(model, args.precision, args.engine)])
    options = TestOptions.from_config(
        cfg, seq_len=args.seq_len, batch_size=args.batch_size, num_workers=args.num_workers, flip=args.flip,
        branches=args.branches,
        mode=args.mode,  # the documented default (all), not the checkpoint's eval.mode: say which ran
        device=device, progress=not getattr(args, "json", False))
    return model, cfg, options


def _test_dataset(cfg, args):
    from ..evaluation import load_test_dataset

    return load_test_dataset(cfg, dataset=args.dataset, root=args.root, protocol=args.protocol,
                             progress=not getattr(args, "json", False))


def _print_lines(console, lines) -> None:
    for line in lines:
        console.print(line, highlight=False, markup=False)


# --------------------------------------------------------------------------- commands
def _evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..errors import ConfigError
    from ..evaluation import evaluate_model, print_results

    _check_choices(args)
    if args.plots:
        check_output_folder(args.plots, "--plots")
    console = Console(stderr=args.json, soft_wrap=True)  # long paths stay on one line in logs
    model, options = None, None
    perturbed = [f"--{name}" for name in ("occlude", "misalign")
                 if getattr(args, name) is not None or getattr(args, f"{name}_gallery")]
    if args.features and perturbed:
        raise ConfigError(f"{' and '.join(perturbed)} change{'s' if len(perturbed) == 1 else ''} the frames: "
                          f"give --checkpoint or --model, not --features")
    if args.features and args.branches:
        raise ConfigError("--branches slices the descriptors as they are made: give --checkpoint or --model "
                          "(or pass --branches to `stgcn-pyg extract`), not --features")
    perturbations = _perturbation_settings(args)
    if args.features:
        from ..distributed import resolve_device
        from ..evaluation import evaluate_descriptor_file

        results, distmat, ds = evaluate_descriptor_file(
            args.features, protocol=args.protocol, metric=args.metric or "euclidean", rerank=args.rerank,
            max_rank=args.max_rank, device=resolve_device(args.device, option="--device"),
            with_dataset=bool(args.plots))  # the frames for the ranked-results grids
        title = f"descriptors {Path(args.features).name}"
    else:
        from ..deploy import inference_engine, inference_precision

        model, cfg, options = load_model_from_args(args, console, describe=False)  # the heading says it
        options = options.replace(**perturbations)
        ds = _test_dataset(cfg, args)
        results, distmat = evaluate_model(model, ds, options, metric=args.metric or cfg.eval.metric,
                                          rerank=args.rerank, max_rank=args.max_rank, return_distances=True)
        results["precision"], results["engine"] = inference_precision(model), inference_engine(model)
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

    from ..deploy import inference_engine, inference_precision
    from ..evaluation import extract_query_gallery, write_descriptor_file
    from ..evaluation.evaluate import perturbation_text

    _check_choices(args)
    check_output_file(args.out, "--out")
    perturbations = _perturbation_settings(args)
    console = Console(soft_wrap=True)
    model, cfg, options = load_model_from_args(args, console)
    options = options.replace(**perturbations)
    ds = _test_dataset(cfg, args)
    qf, gf = extract_query_gallery(model, ds, options)
    path = write_descriptor_file(args.out, qf, gf, ds, options, precision=inference_precision(model),
                                 engine=inference_engine(model))
    how = ", ".join([f"dim {qf.shape[1]}", f"{ds.protocol} protocol",
                     *perturbation_text(options.perturbation_fields({"query": ds.query, "gallery": ds.gallery}))])
    console.print(f"wrote {len(qf)} query and {len(gf)} gallery descriptors ({how}) to {path}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..deploy import inference_engine, inference_precision
    from ..errors import ConfigError
    from ..evaluation import print_search_results, search_gallery, search_tables
    from ..evaluation.evaluate import perturbation_text

    _check_choices(args)
    if not args.query and args.query_tracklet is None:
        raise ConfigError("search: give the query as --query DIR (a folder of frames) or --query-tracklet ID "
                          "(a tracklet of the dataset's query split)")
    if args.grid:
        check_output_file(args.grid, "--grid")
    perturbations = _perturbation_settings(args)
    console = Console(stderr=args.json, soft_wrap=True)
    model, cfg, options = load_model_from_args(args, console)
    options = options.replace(**perturbations)
    query, qsource, gallery, gsource = search_tables(lambda: _test_dataset(cfg, args), args.query_tracklet,
                                                     query_dir=args.query, gallery_dir=args.gallery, split=args.split)
    metric = args.metric or cfg.eval.metric
    found = search_gallery(model, query, gallery, options, metric=metric, topk=args.topk,
                           query_pid=args.query_pid, gallery_source=gsource, cross_camera=args.cross_camera)
    perturbed = options.perturbation_fields({"query": query, "gallery": gallery})  # and the frames it came to
    if args.grid:
        from ..viz import plot_search_results

        plot_search_results(found, query["frames"].iloc[0], args.grid)
    if args.json:
        json.dump({"query": found.query, "query_source": qsource, "query_pid": found.query_pid,
                   "gallery_source": gsource, "metric": metric, "mode": options.mode,
                   "precision": inference_precision(model), "engine": inference_engine(model),
                   **perturbed, "excluded": found.excluded, "notes": found.notes,
                   "results": found.rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    who = "" if found.query_pid is None else f", pid {found.query_pid}"
    how = ", ".join([metric, f"mode {options.mode}", *perturbation_text(perturbed)])
    print_search_results(found, console=console,
                         title=f"top {len(found.rows)} of {found.num_gallery} tracklets of {gsource} for query "
                               f"{found.query}{who} ({how})")
    if args.grid:
        console.print(f"grid: {args.grid}", highlight=False, markup=False)
    return 0
