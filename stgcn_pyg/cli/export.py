"""`stgcn-pyg export`: the descriptor model of a checkpoint as ONNX or a torch.export program."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint's descriptor model (ONNX or torch.export)",
        description="Export the descriptor model of a checkpoint: clips [B, T, 3, H, W] (float, normalised)\n"
                    "-> f_all [B, D], with a dynamic batch dimension B; T, H and W are fixed. The file is\n"
                    "checked against eager PyTorch on a random batch, and `stgcn-pyg evaluate/extract/search\n"
                    "--model FILE` score it like the checkpoint. ONNX needs the export extra:\n"
                    "pip install 'stgcn-pyg[export]'.",
        epilog="examples:\n"
               "  stgcn-pyg export --checkpoint runs/synthetic/last.pt --format onnx --out stgcn.onnx\n"
               "  stgcn-pyg evaluate --model stgcn.onnx\n"
               "  stgcn-pyg export --checkpoint runs/synthetic/last.pt --format torch-export --out stgcn.pt2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `stgcn-pyg train`")
    p.add_argument("--format", default=None, choices=["onnx", "torch-export"],
                   help="onnx (a .onnx file) or torch-export (a .pt2 program) (default: from --out's suffix)")
    p.add_argument("--out", required=True, help="the file to write: *.onnx or *.pt2")
    p.add_argument("--seq-len", type=int, default=None,
                   help="frames per clip, fixed in the exported graph (default: the checkpoint's eval.seq_len; "
                        "another value needs --allow-shape-change)")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="frame size, fixed in the exported graph (default: the checkpoint's data.image_size; "
                        "another size needs --allow-shape-change)")
    p.add_argument("--allow-shape-change", action="store_true",
                   help="export for a --seq-len or --image-size other than the checkpoint's: the model then sees "
                        "shapes it was not trained on and scores lower (the file records the checkpoint's)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 23)")
    p.add_argument("--no-check", action="store_true",
                   help="skip running the exported file against eager PyTorch on a random batch")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..outputs import check_output_file

    check_output_file(args.out, "--out")  # before loading and tracing the model
    from ..deploy import DEFAULT_OPSET, export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, args.format, seq_len=args.seq_len,
                               image_size=args.image_size, opset=args.opset or DEFAULT_OPSET,
                               check=not args.no_check, allow_shape_change=args.allow_shape_change)
    H, W = result.image_size
    if result.max_relative_difference is not None:
        check = f"max relative difference from eager on 2 random clips: {result.max_relative_difference:.1e}"
    elif args.no_check:
        check = "not checked (--no-check)"
    else:
        check = "not checked: onnxruntime is not installed"
    Console(soft_wrap=True).print(
        f"wrote {result.path} ({result.format}): clips [B, {result.seq_len}, 3, {H}, {W}] -> "
        f"f_all [B, {result.descriptor_dim}]; {check}", highlight=False, markup=False)
    return 0
