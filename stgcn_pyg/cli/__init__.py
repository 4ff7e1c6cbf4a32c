"""The ``stgcn-pyg`` command line: one module per group of subcommands.

Each module listed in ``_COMMAND_MODULES`` exposes ``register(subparsers)``,
which adds its subcommands and sets ``func`` (called with the parsed args,
returning an exit code) on each.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import Interrupted, STGCNError

_COMMAND_MODULES = ["train", "data", "evaluate", "export", "cache"]


class _SubcommandParsers(argparse._SubParsersAction):
    """Subcommands that refuse arguments they do not know with their own usage (``stgcn-pyg extract: error:
    ...``), where argparse hands the leftovers up to the top-level parser, whose usage names no option."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        extras = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extras:
            self._name_parser_map[values[0]].error(f"unrecognized arguments: {' '.join(extras)}")


class _Parser(argparse.ArgumentParser):
    """The command's parsers (add_parser makes its subcommands of the same class)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubcommandParsers)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stgcn-pyg",
        description="STGCN for video-based person re-identification (PyTorch Geometric).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except STGCNError as exc:
        from rich.console import Console
        from rich.markup import escape

        # escape: messages name config tables like [model], which are not markup.
        # soft_wrap: one line, whatever the width (logs and CI get it whole).
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except Interrupted:  # already said what it left behind
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
