"""`stgcn-pyg data info` and `stgcn-pyg synth`: inspect a dataset, write the synthetic one."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="inspect a dataset on disk",
                              description="Inspect a video re-ID dataset on disk.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    info = sub.add_parser("info", help="ids, tracklets and frames per split (a table)",
                          description="Count a dataset's identities, tracklets and frames per split (train, "
                                      "query, gallery), with the frames per tracklet (min, median, max), the "
                                      "junk and distractor tracklets and the cameras. Reads only; writes nothing.")
    info.add_argument("--dataset", default="synthetic",
                      help="mars, dukemtmc-videoreid, ilids-vid, prid2011, folder or synthetic (default)")
    info.add_argument("--root", default=None, help="dataset folder (synthetic: the cache when omitted)")
    info.add_argument("--protocol", default="standard",
                      help="evaluation protocol that decides the gallery (MARS-style sets): standard or official")
    info.add_argument("--split-id", type=int, default=None, help="iLIDS-VID / PRID2011 split (default 0)")
    info.add_argument("--verify", action="store_true", help="also decode every frame and report unreadable ones")
    info.set_defaults(func=_info)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    s = subparsers.add_parser("synth", help="write the synthetic pedestrian dataset",
                              description="Write the built-in synthetic pedestrian tracklets in the MARS "
                                          "and/or DukeMTMC-VideoReID layout (deterministic by seed).")
    s.add_argument("--out", required=True, help="output folder (gets mars/ and/or dukemtmc-videoreid/)")
    s.add_argument("--layout", default="mars", choices=["mars", "duke", "both"],
                   help="folder and file names of MARS (default), DukeMTMC-VideoReID, or both")
    s.add_argument("--duke-style", default="plain", choices=["plain", "underscore"],
                   help="Duke frame names 0001C6F0099X30823.jpg (plain) or 0001_C6_F0099_X30823.jpg")
    s.add_argument("--num-ids", type=int, default=100, help="identities seen by >= 2 cameras (default 100)")
    s.add_argument("--seed", type=int, default=0,
                   help="random seed: the same seed writes the same frames (default 0)")
    s.add_argument("--num-cameras", type=int, default=6, help="cameras, 2 to 9 (default 6)")
    s.add_argument("--height", type=int, default=128, help="image height in pixels (default 128)")
    s.add_argument("--width", type=int, default=64, help="image width in pixels (default 64)")
    s.add_argument("--min-frames", type=int, default=8,
                   help="fewest frames in a tracklet (default 8; lengths are drawn uniformly in [min, max])")
    s.add_argument("--max-frames", type=int, default=24, help="most frames in a tracklet (default 24, at most 999)")
    s.add_argument("--occlusion-prob", type=float, default=0.35,
                   help="share of tracklets with an occluder (default 0.35: about a fifth of the frames)")
    s.add_argument("--misalignment", type=float, default=1.0,
                   help="scale of the boxes' offset and jitter (default 1; 0 centres every box on the body)")
    s.add_argument("--workers", type=int, default=0, help="processes (0: one per core, up to 8)")
    s.set_defaults(func=_synth)


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..data import load_dataset

    kwargs = {}
    if args.split_id is not None:
        kwargs["split_id"] = args.split_id
    ds = load_dataset(args.dataset, args.root, protocol=args.protocol, **kwargs)
    table = Table(title=f"{ds.name}: {ds.root}", caption=f"protocol {ds.protocol}; min/med/max: frames per tracklet")
    for col in ("split", "ids", "tracklets", "frames", "min", "med", "max", "junk", "distr.", "cams"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for r in ds.summary():
        table.add_row(r["split"], f"{r['ids']:,}", f"{r['tracklets']:,}", f"{r['frames']:,}", str(r["min"]),
                      f"{r['median']:g}", str(r["max"]), str(r["junk"]), str(r["distractors"]),
                      str(len(r["cameras"])))
    console = Console(soft_wrap=True)
    console.print(table)
    for note in ds.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if args.verify:
        from ..data.verify import verify_dataset

        bad = verify_dataset(ds)
        if bad:
            for path, msg in bad[:20]:
                console.print(f"[red]unreadable[/]: {msg}", highlight=False, soft_wrap=True)
            console.print(f"{len(bad)} unreadable frame(s)")
            return 1
        console.print("all frames decode")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..data.synth import SynthConfig, generate_synthetic
    from ..outputs import check_output_folder

    check_output_folder(args.out, "--out")  # before the frames are drawn
    cfg = SynthConfig(num_ids=args.num_ids, seed=args.seed, num_cameras=args.num_cameras, height=args.height,
                      width=args.width, min_frames=args.min_frames, max_frames=args.max_frames,
                      occlusion_prob=args.occlusion_prob, misalignment=args.misalignment)
    out = generate_synthetic(args.out, cfg, layout=args.layout, workers=args.workers, duke_style=args.duke_style)
    Console(soft_wrap=True).print(f"wrote the synthetic dataset ({args.layout} layout) under {out}", highlight=False)
    return 0
