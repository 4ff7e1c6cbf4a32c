"""Where commands write: every output is checked before any work, and two runs never share a folder."""

from __future__ import annotations

import ctypes
import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from stgcn_pyg.cli import main
from stgcn_pyg.errors import OutputError
from stgcn_pyg.outputs import check_output_file, check_output_folder, claim_run_folder


def err_line(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps long error lines


@pytest.fixture
def no_work(monkeypatch):
    """Every command's first piece of work fails the test: an output error must come before it."""
    import stgcn_pyg.cli.evaluate as evaluate_cli
    import stgcn_pyg.data.synth as synth
    import stgcn_pyg.deploy as deploy
    import stgcn_pyg.training.run as run

    def work(*args, **kwargs):
        pytest.fail("the command started its work before checking its output")

    monkeypatch.setattr(evaluate_cli, "load_model_from_args", work)
    monkeypatch.setattr(deploy, "export_checkpoint", work)
    monkeypatch.setattr(run, "load_data", work)
    monkeypatch.setattr(synth, "generate_synthetic", work)


def commands(out: str, ckpt: str) -> dict[str, tuple[list[str], str]]:
    """Each command writing to ``out``, with the option and the kind of output it takes."""
    return {
        "extract": (["extract", "--checkpoint", ckpt, "--out", out], "--out"),
        "search": (["search", "--checkpoint", ckpt, "--query-tracklet", "0", "--grid", out], "--grid"),
        "export": (["export", "--checkpoint", ckpt, "--out", out], "--out"),
        "evaluate": (["evaluate", "--checkpoint", ckpt, "--plots", out], "--plots"),
        "train": (["train", "--output", out, "--epochs", "1"], "train.output"),
        "synth": (["synth", "--out", out, "--num-ids", "2"], "--out"),
    }


FILE_OUTPUTS = ("extract", "search", "export")


@pytest.mark.parametrize("command", list(commands("", "")))
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(command, tmp_path, capsys, no_work):
    ckpt = str(tmp_path / "missing.pt")  # never read: the output is refused first
    folder, file = tmp_path / "taken-folder", tmp_path / "a-file"
    folder.mkdir()
    file.write_text("x")
    before = sorted(tmp_path.rglob("*"))

    if command in FILE_OUTPUTS:  # a file path that is a folder
        argv, option = commands(str(folder), ckpt)[command]
        assert main(argv) == 2
        assert err_line(capsys) == f"error: {option} {folder}: is a folder; give a file name"
    else:  # a folder path that is a file
        argv, option = commands(str(file), ckpt)[command]
        assert main(argv) == 2
        assert err_line(capsys) == f"error: {option} {file}: is a file, not a folder"
    # a parent that is a file
    inside = file / "sub" / ("out.png" if command == "search" else "out.onnx" if command == "export" else "out")
    argv, option = commands(str(inside), ckpt)[command]
    assert main(argv) == 2
    assert err_line(capsys) == f"error: {option} {inside}: {file} is a file, not a folder"
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no temporary file


def _without_root_override():
    """In the child, before exec: root loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set, so
    the command it runs meets file permissions as any user does."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_folder_without_write_permission_is_one_line_before_any_work(tmp_path):
    locked = tmp_path / "read-only"
    locked.mkdir()
    ckpt = str(tmp_path / "missing.pt")
    cases = {}
    for command in commands("", ""):
        name = {"search": "grid.png", "export": "m.onnx", "extract": "f.pt"}.get(command, "run")
        cases[command] = commands(str(locked / name), ckpt)[command]
    # the existing folder itself, for the commands that write into a folder
    cases["train into it"] = commands(str(locked), ckpt)["train"]
    cases["evaluate into it"] = commands(str(locked), ckpt)["evaluate"]
    script = textwrap.dedent("""
        import contextlib, io, json, sys
        from stgcn_pyg.cli import main
        said = {}
        for name, argv in json.loads(sys.argv[1]).items():
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            said[name] = [code, " ".join(err.getvalue().split())]
        print(json.dumps(said))
    """)
    locked.chmod(0o555)
    try:
        proc = subprocess.run([sys.executable, "-c", script, json.dumps({k: v[0] for k, v in cases.items()})],
                              capture_output=True, text=True, timeout=300,
                              preexec_fn=_without_root_override if os.geteuid() == 0 else None)
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    said = json.loads(proc.stdout.splitlines()[-1])
    for name, (argv, option) in cases.items():
        path = argv[argv.index({"train.output": "--output"}.get(option, option)) + 1]
        assert said[name] == [2, f"error: {option} {path}: cannot write in {locked} (permission denied)"], name
    assert list(locked.iterdir()) == []


def test_the_library_checks_refuse_the_same_paths(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"^--out .*/f/x\.pt: .*/f is a file, not a folder$"):
        check_output_file(tmp_path / "f" / "x.pt", "--out")
    with pytest.raises(OutputError, match=r"^.*/f: is a file, not a folder$"):
        check_output_folder(tmp_path / "f")
    assert check_output_file(tmp_path / "new" / "deeper" / "x.pt") == tmp_path / "new" / "deeper" / "x.pt"
    assert not (tmp_path / "new").exists()  # a check creates nothing

    # write_descriptor_file: a folder path used to raise IsADirectoryError and leave FOLDER.tmp behind
    from stgcn_pyg.evaluation import write_descriptor_file

    (tmp_path / "feats").mkdir()
    with pytest.raises(OutputError, match=r"feats: is a folder; give a file name"):
        write_descriptor_file(tmp_path / "feats", torch.zeros(1, 2), torch.zeros(1, 2), None, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "feats"]


def test_a_claimed_run_folder_is_not_given_to_another_run_until_released(tmp_path):
    first = claim_run_folder(tmp_path / "run")
    second = claim_run_folder(tmp_path / "run")  # a second lock, as a second process would take it
    assert (first.path, second.path) == (tmp_path / "run", tmp_path / "run-2")
    with pytest.raises(OutputError, match=r"^train\.output .*/run: another process is training this run now$"):
        claim_run_folder(tmp_path / "run", lock_only=True)  # a --resume of a run being trained
    first.release()
    assert claim_run_folder(tmp_path / "run").path == tmp_path / "run"  # nothing written in it: free again
    (tmp_path / "run-2" / "last.pt").write_bytes(b"")
    second.release()
    assert claim_run_folder(tmp_path / "run-2").path == tmp_path / "run-2-2"  # a run's files keep it taken
    # a run that fails before it starts leaves no empty folder behind
    claim = claim_run_folder(tmp_path / "fails")
    claim.abandon()
    assert not (tmp_path / "fails").exists()


def test_a_forked_worker_does_not_keep_the_folder_locked(tmp_path):
    """DataLoader workers are forked: their copy of the lock's descriptor must not outlive the run's release."""
    import multiprocessing

    claim = claim_run_folder(tmp_path / "run")
    ctx = multiprocessing.get_context("fork")
    started, done = ctx.Event(), ctx.Event()
    worker = ctx.Process(target=lambda: started.set() or done.wait(60))
    worker.start()
    try:
        assert started.wait(60)  # the child runs (its fork hooks have run)
        claim.release()
        assert claim_run_folder(tmp_path / "run", lock_only=True).path == tmp_path / "run"
    finally:
        done.set()
        worker.join()


@pytest.mark.slow
def test_two_trainings_started_together_get_two_folders(tiny_root, tiny_overrides, tmp_path):
    """Both used to print `output folder runs/same`, log every line twice and keep the second one's weights."""
    out = tmp_path / "same"
    go = tmp_path / "go"
    # Each run waits at its first epoch until both have claimed a folder: they surely run at the same time.
    script = tmp_path / "together.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        from stgcn_pyg.cli import main
        from stgcn_pyg.training import Trainer

        train_epoch = Trainer._train_epoch

        def wait_then_train(self, *args):
            for _ in range(2400):
                if os.path.exists({str(go)!r}):
                    break
                time.sleep(0.05)
            return train_epoch(self, *args)

        Trainer._train_epoch = wait_then_train
        sys.exit(main(sys.argv[1:]))
    """))
    procs = {}
    for seed in (1, 2):
        argv = [sys.executable, str(script), "train", "--epochs", "1", "--output", str(out), "--seed", str(seed),
                "--set", f'data.root="{tiny_root}"']
        for s in tiny_overrides:
            argv += ["--set", s]
        procs[seed] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = {}
        for seed, proc in procs.items():  # each says where it is before it trains
            said[seed] = [next(line for line in proc.stdout if line.startswith("output folder"))]
        go.touch()
        for seed, proc in procs.items():
            said[seed] += proc.communicate(timeout=300)[0].splitlines()
            assert proc.returncode == 0, said[seed]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    folders = {}
    for seed, lines in said.items():
        heading = lines[0].strip()
        folder = heading.split()[2]
        folders[seed] = folder
        assert heading in (f"output folder {out}", f"output folder {out}-2 ({out} is taken)"), heading
    assert sorted(folders.values()) == [str(out), f"{out}-2"]
    for seed, folder in folders.items():
        ckpt = torch.load(f"{folder}/last.pt", weights_only=True)
        assert ckpt["config"]["train"]["seed"] == seed and ckpt["config"]["train"]["output"] == folder
        log = open(f"{folder}/train.log").read()
        assert log.count("output folder") == 1 and log.count("epoch 1:") == 2, log  # its row and its scores
        with open(f"{folder}/metrics.csv", newline="") as fh:
            assert [r["epoch"] for r in csv.DictReader(fh)] == ["1"]
