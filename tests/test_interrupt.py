"""Interrupting training: Ctrl-C leaves a resumable run, a kill mid-write leaves the previous checkpoint."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from stgcn_pyg.cli import main
from stgcn_pyg.checkpoint import read_checkpoint, save_checkpoint


def interrupt_when_ready(script, args, ready: str):
    """Run ``script`` (a patched entry point) with ``args``, wait for the line ``ready``, send SIGINT (what Ctrl-C
    sends); return (return code, all it said). Waiting on a line makes the interrupt land at a known point,
    however loaded the machine."""
    # A shell that starts the tests in the background (`cmd &`) makes them ignore SIGINT, and children inherit
    # that: give the run the disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        before = []
        for line in proc.stdout:
            before.append(line)
            if line.strip() == ready:
                break
        assert before[-1:] == [ready + "\n"], (before, proc.communicate())
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed test leaves no run sleeping behind it
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(before) + stdout + stderr



@pytest.mark.slow
def test_ctrl_c_during_training_leaves_a_resumable_last_pt_and_says_how(tiny_root, tiny_overrides, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--epochs", "1000", "--output", str(out), "--set", f'data.root="{tiny_root}"']
    for s in tiny_overrides:
        args += ["--set", s]
    # The run says when epoch 2 has ended (last.pt and its log row written) and waits there, so that Ctrl-C
    # surely lands mid-training after a completed epoch, however loaded the machine.
    waits = tmp_path / "waits.py"
    waits.write_text(textwrap.dedent("""
        import sys, time
        from stgcn_pyg.cli import main
        from stgcn_pyg.training import Trainer

        end_epoch = Trainer._end_epoch

        def end_epoch_then_wait(self, epoch, row):
            end_epoch(self, epoch, row)
            if epoch + 1 == 2:
                print("epoch 2 saved", flush=True)
                time.sleep(600)

        Trainer._end_epoch = end_epoch_then_wait
        sys.exit(main(sys.argv[1:]))
    """))
    returncode, said = interrupt_when_ready(waits, args, "epoch 2 saved")
    assert returncode == 130, said
    said = " ".join(said.split())
    assert f"interrupted: {out / 'last.pt'} holds the last completed epoch" in said
    assert f"continue with: stgcn-pyg train --resume {out}" in said and "Traceback" not in said
    assert said.count("interrupted") == 1  # said once

    done = read_checkpoint(out / "last.pt")["epoch"]
    assert done == 2  # mid-training (of 1000 epochs), after the epoch it waited at
    # Resume exactly as the message says (a shorter budget, to finish now).
    assert main(["train", "--resume", str(out), "--epochs", str(done + 1)]) == 0
    capsys.readouterr()
    assert read_checkpoint(out / "last.pt")["epoch"] == done + 1
    with open(out / "metrics.csv", newline="") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == list(range(1, done + 2))


@pytest.mark.slow
def test_ctrl_c_in_the_first_epoch_says_so_once_and_the_same_command_starts_over(tiny_root, tiny_overrides, tmp_path,
                                                                                 capsys):
    out = tmp_path / "run"
    args = ["train", "--epochs", "1", "--output", str(out), "--set", f'data.root="{tiny_root}"']
    for s in tiny_overrides:
        args += ["--set", s]
    # The run's first training step waits, so that Ctrl-C surely lands in the first epoch.
    stuck = tmp_path / "stuck.py"
    stuck.write_text(textwrap.dedent("""
        import sys, time
        from stgcn_pyg.cli import main
        from stgcn_pyg.models import STGCNLoss

        def first_step(self, *args, **kwargs):
            print("in the first step", flush=True)
            time.sleep(600)

        STGCNLoss.forward = first_step
        sys.exit(main(sys.argv[1:]))
    """))
    returncode, said = interrupt_when_ready(stuck, args, "in the first step")
    assert returncode == 130, said
    assert said.count("interrupted") == 1 and "Traceback" not in said, said
    assert ("interrupted before the first epoch ended: nothing saved and nothing to resume; "
            "start the run again with the same command") in " ".join(said.split())
    assert not (out / "last.pt").exists()

    # The same command again: the folder holds no run, so it trains there (not in run-2).
    assert main(args) == 0
    assert f"output folder {out}\n" in capsys.readouterr().out
    assert (out / "last.pt").is_file() and not (tmp_path / "run-2").exists()


def test_kill_during_a_checkpoint_write_leaves_the_previous_one_readable(tmp_path):
    path = tmp_path / "last.pt"
    writer = tmp_path / "writer.py"
    writer.write_text(textwrap.dedent("""
        import io, sys, time
        import torch
        from stgcn_pyg.checkpoint import save_checkpoint

        path = sys.argv[1]
        save_checkpoint(path, {"config": {}, "model": {"w": torch.zeros(3)}, "epoch": 1})
        real_save = torch.save

        def half_written_then_stuck(obj, f, *args, **kwargs):
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            with open(f, "wb") as fh:
                fh.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            print("writing", flush=True)
            time.sleep(600)

        torch.save = half_written_then_stuck
        save_checkpoint(path, {"config": {}, "model": {"w": torch.ones(3)}, "epoch": 2})
    """))
    proc = subprocess.Popen([sys.executable, str(writer), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    previous = read_checkpoint(path)
    assert previous["epoch"] == 1 and torch.equal(previous["model"]["w"], torch.zeros(3))
    leftover = tmp_path / f".last.pt.tmp-{proc.pid}"
    assert leftover.is_file() and 0 < leftover.stat().st_size  # the half-written file, never renamed
    # The next save replaces the checkpoint and removes the dead writer's temporary file.
    save_checkpoint(path, {"config": {}, "model": {"w": torch.ones(3)}, "epoch": 3})
    assert read_checkpoint(path)["epoch"] == 3 and not leftover.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".last.pt.tmp-")]


def test_a_stop_right_after_a_checkpoint_write_loses_no_log_row(tiny_config, tmp_path, monkeypatch, capsys):
    from stgcn_pyg.errors import Interrupted
    from stgcn_pyg.training import train, trainer

    real_save = trainer.save_checkpoint

    def save_then_stop(path, payload):
        real_save(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 2:
            raise KeyboardInterrupt  # Ctrl-C the moment epoch 2's last.pt is on disk

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(tiny_config(out, "train.epochs=3"))
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    assert read_checkpoint(out / "last.pt")["epoch"] == 2
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0
    capsys.readouterr()
    with open(out / "metrics.csv", newline="") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]
