"""The command-line dispatcher: one clear line for user errors."""

import pytest

from stgcn_pyg.cli import main


def test_user_error_is_one_line_with_brackets_kept(capsys):
    assert main(["train", "--set", "model.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'model.bogus'" in err
    assert "[model]" in err  # rich must not eat the table name as markup
    assert "Traceback" not in err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "train" in capsys.readouterr().out


def _parsers(parser, path=("stgcn-pyg",)):
    """Every parser of the command line, with the words that reach it."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_subcommand_and_option_has_help():
    import argparse

    from stgcn_pyg.cli import build_parser

    missing = []
    for path, parser in _parsers(build_parser()):
        if len(path) > 1 and not parser.description:
            missing.append(f"{' '.join(path)}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{' '.join(path)} {c.dest}: no help" for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}: no help")
    assert len(list(_parsers(build_parser()))) > 8  # the walk reaches the nested subcommands
    assert not missing, missing



@pytest.mark.parametrize("argv, prog", [
    (["extract", "--occlude"], "stgcn-pyg extract"),  # a missing value
    (["extract", "--checkpoint", "a.pt", "--out", "b.pt", "stray"], "stgcn-pyg extract"),  # an unknown argument
    (["data", "info", "--bogus"], "stgcn-pyg data info"),
    (["cache", "clear", "--bogus"], "stgcn-pyg cache clear"),
])
def test_subcommand_errors_print_the_subcommands_usage(capsys, argv, prog):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog} ")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"{prog}: error: ") and argv[-1] in errors[0]
