"""`stgcn-pyg` subcommands: placeholder until implemented."""


def register(subparsers) -> None:
    pass
