"""`stgcn-pyg cache`: what the cache ($STGCN_PYG_CACHE, default ~/.cache/stgcn-pyg) holds, and `cache clear`."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

# What the project writes into the cache, by kind: the folders `cache clear` may remove (nothing else is touched).
KINDS = {"onnx": "exports of checkpoints for the onnxruntime engine (bounded: $STGCN_PYG_ONNX_CACHE_MB, default 256)",
         "synthetic": "the built-in synthetic sets (synthetic-<key>), generated on first use",
         "frozen-features": "the benchmarks' frozen backbone features"}


def register(subparsers) -> None:
    c = subparsers.add_parser(
        "cache", help="show or clear the cache ($STGCN_PYG_CACHE, default ~/.cache/stgcn-pyg)",
        description="Show what the cache holds (the ONNX exports of --engine auto, the synthetic sets, the "
                    "benchmarks' features) and its size; `stgcn-pyg cache clear` removes them. Everything there "
                    "is made again on next use.")
    sub = c.add_subparsers(dest="action", metavar="ACTION")
    clear = sub.add_parser("clear", help="remove the cache's contents (all kinds, or those named)",
                           description="Remove what stgcn-pyg wrote into the cache: all of it, or the kinds named. "
                                       "Files of other programs in the folder are left alone.")
    for kind, text in KINDS.items():
        clear.add_argument(f"--{kind}", action="store_true", help=f"only {text}")
    c.set_defaults(func=_cache)


def _entries(cache: Path) -> dict[str, list[Path]]:
    if not cache.is_dir():
        return {kind: [] for kind in KINDS}
    return {"onnx": [cache / "onnx"] if (cache / "onnx").is_dir() else [],
            "synthetic": sorted(p for p in cache.glob("synthetic-*") if p.is_dir()),
            "frozen-features": [cache / "frozen-features"] if (cache / "frozen-features").is_dir() else []}


def _size(path: Path) -> int:
    total = 0
    for parent, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _cache(args: argparse.Namespace) -> int:
    from ..data.synth.cache import default_cache_dir

    cache = default_cache_dir()
    entries = _entries(cache)
    if args.action != "clear":
        sizes = {kind: sum(_size(p) for p in paths) for kind, paths in entries.items()}
        print(f"cache {cache} ($STGCN_PYG_CACHE): {_mb(sum(sizes.values()))}")
        for kind, text in KINDS.items():
            print(f"  {kind}: {_mb(sizes[kind])} in {len(entries[kind])} folder(s): {text}")
        print("clear it with: stgcn-pyg cache clear")
        return 0
    chosen = [kind for kind in KINDS if getattr(args, kind.replace("-", "_"))] or list(KINDS)
    freed = 0
    for kind in chosen:
        for path in entries[kind]:
            freed += _size(path)
            shutil.rmtree(path, ignore_errors=True)
    print(f"cleared {', '.join(chosen)} from {cache}: {_mb(freed)} freed")
    return 0
