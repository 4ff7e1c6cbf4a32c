"""The command-line dispatcher: one clear line for user errors."""

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
