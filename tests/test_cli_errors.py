"""Bad flags and unwritable places are one `error:` line naming the flag or the path, never a traceback (issue 39):
the clip length, the perturbations' seed, the ranks asked for, an unwritable cache, a run folder that becomes
unwritable mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from stgcn_pyg.checkpoint import read_checkpoint
from stgcn_pyg.cli import main
from stgcn_pyg.errors import ConfigError
from stgcn_pyg.evaluation import TestOptions
from test_outputs import _without_root_override


def command_argv(command: str, tmp_path) -> list[str]:
    """``command`` on a checkpoint that does not exist: a flag checked first is the only error."""
    return [command, "--checkpoint", str(tmp_path / "none.pt"),
            *{"evaluate": [], "extract": ["--out", str(tmp_path / "d.pt")],
              "search": ["--query-tracklet", "0"]}[command]]


def one_error(capsys) -> str:
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("error:") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["evaluate", "extract", "search"])
@pytest.mark.parametrize("argv, said", [
    (["--seq-len", "0"], "--seq-len: must be at least 1, got 0"),
    (["--seq-len", "-2"], "--seq-len: must be at least 1, got -2"),
    (["--batch-size", "-1"], "--batch-size: must be >= 0, got -1"),
    (["--num-workers", "-1"], "--num-workers: must be >= 0, got -1"),
    (["--occlude", "0.5", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    (["--misalign", "0.5", "--seed", "-3"], "--seed: must be >= 0, got -3"),
])
def test_bad_numbers_are_one_line_naming_the_flag_before_any_work(command, argv, said, capsys, tmp_path):
    assert main([*command_argv(command, tmp_path), *argv]) == 2
    assert said in one_error(capsys)
    assert not (tmp_path / "d.pt").exists()


@pytest.mark.parametrize("command, argv, said", [
    ("evaluate", ["--max-rank", "0"], "--max-rank: must be at least 1, got 0"),
    ("evaluate", ["--topk", "0"], "--topk: must be at least 1, got 0"),
    ("search", ["--topk", "0"], "--topk: must be at least 1, got 0"),
])
def test_ranks_asked_for_are_checked_before_the_extraction(command, argv, said, capsys, tmp_path):
    assert main([*command_argv(command, tmp_path), *argv]) == 2
    assert said in one_error(capsys)


def test_the_library_names_the_same_fields():
    with pytest.raises(ConfigError, match=r"--seq-len: must be an integer >= 1, got 0"):
        TestOptions(seq_len=0)
    with pytest.raises(ConfigError, match=r"--seed: the seed of the test-time perturbations is an integer >= 0, got -1"):
        TestOptions(occlude=0.5, occlude_seed=-1)
    from stgcn_pyg.data.misalignment import TestMisalignment

    with pytest.raises(ConfigError, match=r"--seed: .* got -1"):
        TestMisalignment(0.5, seed=-1)


def run_unprivileged(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter that meets file permissions as any user does (root included)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=600, env=env, preexec_fn=_without_root_override if os.geteuid() == 0 else None)


def test_train_with_an_unwritable_cache_is_one_line_naming_it(tmp_path, tiny_overrides):
    locked = tmp_path / "locked"
    locked.mkdir()
    cache = locked / "cache"
    overrides = [o for o in tiny_overrides]
    argv = ["train", "--output", str(tmp_path / "run")] + [a for o in overrides for a in ("--set", o)]
    locked.chmod(0o555)
    try:
        proc = run_unprivileged("import sys; from stgcn_pyg.cli import main; sys.exit(main(sys.argv[1:]))", *argv,
                                env={**os.environ, "STGCN_PYG_CACHE": str(cache)})
    finally:
        locked.chmod(0o755)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert said.startswith(f"error: {cache}: cannot write the synthetic set there (Permission denied); "
                           "set $STGCN_PYG_CACHE to a writable folder"), said
    assert "Traceback" not in said and list(locked.iterdir()) == []


@pytest.mark.slow
def test_a_run_folder_that_becomes_unwritable_keeps_the_last_checkpoint_and_says_how_to_resume(
        tiny_root, tiny_overrides, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--epochs", "4", "--output", str(out), "--set", f'data.root="{tiny_root}"']
    argv += [a for o in tiny_overrides for a in ("--set", o)]
    # Once epoch 2 is saved, the folder turns read-only (as a full disk or a changed mount would stop writes).
    script = """
        import os, sys
        from stgcn_pyg.cli import main
        from stgcn_pyg.training import Trainer

        end_epoch = Trainer._end_epoch

        def end_epoch_then_lock(self, epoch, row):
            end_epoch(self, epoch, row)
            if epoch + 1 == 2:
                os.chmod(self.output, 0o555)

        Trainer._end_epoch = end_epoch_then_lock
        sys.exit(main(sys.argv[1:]))
    """
    try:
        proc = run_unprivileged(script, *argv)
    finally:
        out.chmod(0o755)
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, said
    assert "Traceback" not in said and said.count("error:") == 1
    assert (f"error: {out / 'last.pt'}: cannot write the checkpoint (the file cannot be created: no permission, "
            f"or the folder is gone); {out / 'last.pt'} holds epoch 2; make {out} writable (or free space) and "
            f"continue with: stgcn-pyg train --resume {out}") in said, said
    assert read_checkpoint(out / "last.pt")["epoch"] == 2
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]
    # As the line says: writable again, resume.
    assert main(["train", "--resume", str(out)]) == 0
    capsys.readouterr()
    assert read_checkpoint(out / "last.pt")["epoch"] == 4


def test_a_failed_checkpoint_write_in_the_first_epoch_says_nothing_was_saved(tiny_config, tmp_path, monkeypatch):
    import torch

    from stgcn_pyg.errors import OutputError
    from stgcn_pyg.training import train

    def full_disk(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1024 vs 512 "
                           "PytorchStreamWriter failed writing file data/3: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "run"
    with pytest.raises(OutputError) as caught:
        train(tiny_config(out, "train.epochs=1"))
    assert str(caught.value) == (f"{out / 'last.pt'}: cannot write the checkpoint (writing failed: the disk may be "
                                 f"full); nothing was saved; make {out} writable (or free space) and start the run "
                                 "again")
    assert not (out / "last.pt").exists() and not [p for p in out.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("override, said", [
    ("data.seq_len=0", "data.seq_len: must be a positive integer, got 0"),
    ("data.num_ids=1", "data.num_ids: the triplet loss needs at least 2 identities per batch"),
])
def test_config_values_are_named_as_themselves(override, said):
    from stgcn_pyg.config import load_config

    with pytest.raises(ConfigError, match=f"^--set: {said}"):
        load_config("synthetic", [override])
